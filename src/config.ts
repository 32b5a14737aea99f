/**
 * Server configuration: defaults, then `<data-dir>/config.json`, then environment variables, then CLI
 * flags (each overriding the one before). Validated with zod so a bad value names its source.
 */
import { existsSync, readFileSync } from "node:fs";
import { availableParallelism, homedir } from "node:os";
import path from "node:path";
import { z } from "zod";

export const DEFAULT_DATA_DIR = path.join(homedir(), ".lmhost");

/** Per-model overrides in config.json: `{"models": {"publisher/model": {"chatTemplate": "chatml"}}}`. */
const modelOverrideSchema = z.object({
  chatTemplate: z.string().optional(),
  contextLength: z.number().int().positive().optional(),
});

export const configSchema = z.object({
  host: z.string().default("127.0.0.1"),
  port: z.number().int().min(0).max(65535).default(1234),
  dataDir: z.string().default(DEFAULT_DATA_DIR),
  modelsDir: z.string().optional(),
  /** Single model files added besides the models directory. */
  models: z.array(z.string()).default([]),
  /** Chat template override for the `--model` files (a wrapper name like "chatml" or a Jinja template). */
  chatTemplate: z.string().optional(),
  modelOverrides: z.record(z.string(), modelOverrideSchema).default({}),
  threads: z.number().int().positive().optional(),
  parallel: z.number().int().positive().default(4),
  maxQueue: z.number().int().min(0).default(64),
  contextLength: z.number().int().positive().optional(),
  ttlSeconds: z.number().positive().default(3600),
  maxLoaded: z.number().int().positive().default(1),
  apiKey: z.string().optional(),
  cors: z.boolean().default(false),
  logLevel: z.enum(["silent", "error", "warn", "info", "debug"]).default("info"),
  bodyLimitBytes: z.number().int().positive().default(20 * 1024 * 1024),
  storeMaxAgeSeconds: z.number().positive().optional(),
  storeMaxCount: z.number().int().positive().optional(),
});

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

/** Physical cores are not exposed by Node; logical CPUs / 2 (at least 1) approximates them on SMT machines. */
export function defaultThreads(): number {
  const logical = availableParallelism();
  return logical >= 4 ? Math.floor(logical / 2) : Math.max(1, logical === 2 ? 2 : logical);
}

function fromEnvironment(environment: NodeJS.ProcessEnv): ConfigInput {
  const result: Record<string, unknown> = {};
  if (environment.LMHOST_MODELS_DIR) result.modelsDir = environment.LMHOST_MODELS_DIR;
  if (environment.LMHOST_API_KEY) result.apiKey = environment.LMHOST_API_KEY;
  if (environment.LMHOST_DATA_DIR) result.dataDir = environment.LMHOST_DATA_DIR;
  if (environment.LMHOST_HOST) result.host = environment.LMHOST_HOST;
  if (environment.LMHOST_PORT) result.port = Number(environment.LMHOST_PORT);
  return result as ConfigInput;
}

function fromFile(dataDir: string): ConfigInput {
  const file = path.join(dataDir, "config.json");
  if (!existsSync(file)) return {};
  try {
    return JSON.parse(readFileSync(file, "utf8")) as ConfigInput;
  } catch (error) {
    throw new Error(`Cannot read ${file}: ${(error as Error).message}`);
  }
}

/** Merges file < environment < flags and validates. `flags` holds only the flags the user gave. */
export function resolveConfig(flags: ConfigInput, environment: NodeJS.ProcessEnv = process.env): Config {
  const environmentValues = fromEnvironment(environment);
  const dataDir = flags.dataDir ?? environmentValues.dataDir ?? DEFAULT_DATA_DIR;
  const merged = { ...fromFile(dataDir), ...environmentValues, ...flags, dataDir };
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`Invalid configuration ${issue?.path.join(".") ?? ""}: ${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}
