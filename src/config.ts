/**
 * Server configuration: defaults, then `<data-dir>/config.json`, then environment variables, then CLI
 * flags (each overriding the one before). Validated with zod so a bad value names its source.
 */
import { existsSync, readFileSync } from "node:fs";
import { availableParallelism, homedir } from "node:os";
import path from "node:path";
import { z } from "zod";

export const DEFAULT_DATA_DIR = path.join(homedir(), ".lmhost");

/**
 * Thought-token budgets per reasoning effort (`{"low": 256, "xhigh": null}`; null = unlimited); efforts left
 * out keep the server's or the default budget (engine/reasoning-budgets.ts).
 */
const reasoningBudgetsSchema = z
  .object({
    minimal: z.number().int().min(0).nullable().optional(),
    low: z.number().int().min(0).nullable().optional(),
    medium: z.number().int().min(0).nullable().optional(),
    high: z.number().int().min(0).nullable().optional(),
    xhigh: z.number().int().min(0).nullable().optional(),
  })
  .strict();

/** Per-model overrides in config.json: `{"models": {"publisher/model": {"chatTemplate": "chatml"}}}`. */
const modelOverrideSchema = z
  .object({
    chatTemplate: z.string().optional(),
    contextLength: z.number().int().positive().optional(),
    reasoningBudgets: reasoningBudgetsSchema.optional(),
    /**
     * Reasoning summaries (`reasoning.summary`): "reasoning" (default) fills them with the reasoning text
     * itself (lmhost runs no summariser model); "none" leaves them empty.
     */
    reasoningSummary: z.enum(["reasoning", "none"]).default("reasoning"),
  })
  .strict();

export const configSchema = z
  .object({
    host: z.string().default("127.0.0.1"),
    port: z.number().int().min(0).max(65535).default(1234),
    dataDir: z.string().default(DEFAULT_DATA_DIR),
    modelsDir: z.string().optional(),
    /** Single model files added besides the models directory. */
    models: z.array(z.string()).default([]),
    /** Chat template override for the `--model` files (a wrapper name like "chatml" or a Jinja template). */
    chatTemplate: z.string().optional(),
    /** The built-in demo model (models/demo.ts): unset = only when no model is found; true = always; false = never. */
    demo: z.boolean().optional(),
    modelOverrides: z.record(z.string(), modelOverrideSchema).default({}),
    reasoningBudgets: reasoningBudgetsSchema.optional(),
    /**
     * Reasoning summaries (`reasoning.summary`): "reasoning" (default) fills them with the reasoning text
     * itself (lmhost runs no summariser model); "none" leaves them empty.
     */
    reasoningSummary: z.enum(["reasoning", "none"]).default("reasoning"),
    threads: z.number().int().positive().optional(),
    /**
     * With one thread, pin the server process to one CPU. Off by default: on the shared 2-vCPU machines
     * lmhost is measured on, pinning was slower (×0.61–0.92 in three `npm run bench` runs) because a
     * pinned process cannot move away from a busy CPU; on a quiet machine it can gain ×1.25–1.30.
     */
    pinCpu: z.boolean().default(false),
    /** Unset: 4, and fewer when that leaves a sequence too little context (engine/llama/context-length.ts). */
    parallel: z.number().int().positive().optional(),
    maxQueue: z.number().int().min(0).default(64),
    contextLength: z.number().int().positive().optional(),
    ttlSeconds: z.number().positive().default(3600),
    maxLoaded: z.number().int().positive().default(1),
    /** Required as `Authorization: Bearer <key>` or `x-api-key: <key>`; never empty (resolveConfig names the source). */
    apiKey: z
      .string()
      .refine(
        (key) => key.trim() !== "",
        "the API key is empty; give a key, or leave it out to run without auth",
      )
      .optional(),
    /**
     * Browser origins allowed to call lmhost (CORS): a list (or comma-separated string) of
     * `scheme://host[:port]` origins, `scheme://host:*` for any port, `"*"` (or `true`, the old boolean
     * form) for every origin; `false` or an empty list (the default) for none.
     */
    cors: z
      .union([z.boolean(), z.string(), z.array(z.string())])
      .default(false)
      .superRefine((setting, context) => {
        const problem = firstProblem(() => corsOriginList(setting));
        if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
      }),
    /**
     * Host names (besides localhost, loopback addresses and the bound address) that requests may be
     * addressed to, as a list or comma-separated string; `.example.com` allows its subdomains; `"*"`
     * turns the Host check off.
     */
    allowedHosts: z
      .union([z.string(), z.array(z.string())])
      .default([])
      .superRefine((setting, context) => {
        const problem = firstProblem(() => allowedHostList(setting));
        if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
      }),
    logLevel: z.enum(["silent", "error", "warn", "info", "debug"]).default("info"),
    /** "text" (default): human-readable lines; "json": one JSON object per line (time, level, msg, fields). */
    logFormat: z.enum(["text", "json"]).default("text"),
    bodyLimitBytes: z
      .number()
      .int()
      .positive()
      .default(20 * 1024 * 1024),
    storeMaxAgeSeconds: z.number().positive().optional(),
    storeMaxCount: z.number().int().positive().optional(),
    /**
     * Cap on the response store's database size in bytes (SQLite `max_page_count`; the WAL beside it is
     * not counted). Beyond it a response cannot be stored and fails visibly, as on a full disk.
     */
    storeMaxBytes: z.number().int().positive().optional(),
    /** Requests may use remote MCP servers (`{"type": "mcp", "server_url": ...}`); off by default. */
    allowRemoteMcp: z.boolean().default(false),
    /**
     * Hosts whose loopback, private or unique-local addresses remote MCP servers may use (e.g.
     * `["127.0.0.1", "localhost"]`); link-local and cloud-metadata addresses are refused always.
     */
    mcpAllowedHosts: z
      .union([z.string(), z.array(z.string())])
      .transform((value) =>
        (typeof value === "string" ? value.split(",") : value)
          .map((host) => host.trim())
          .filter((host) => host !== ""),
      )
      .default([]),
    /** Seconds an MCP call (or tool listing) may take before it fails with an error the model sees. */
    mcpCallTimeoutSeconds: z.number().positive().default(60),
    /**
     * Bound in bytes on `<data-dir>/prompt-cache/`, the saved KV states of long prompt prefixes (least
     * recently used deleted first); 0 turns the cache off. Default 2 GiB.
     */
    promptCacheSize: z
      .number()
      .int()
      .min(0)
      .default(2 * 1024 ** 3),
  })
  // An unknown key (a typo, or a flag name such as `ttl` instead of `ttlSeconds`) is an error, not ignored.
  .strict();

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type CorsSetting = Config["cors"];
export type AllowedHostsSetting = Config["allowedHosts"];

function firstProblem(check: () => unknown): string | undefined {
  try {
    check();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

function listOf(setting: string | readonly string[]): string[] {
  const entries = typeof setting === "string" ? setting.split(",") : setting;
  return entries.map((entry) => entry.trim()).filter((entry) => entry !== "");
}

/**
 * The allowed browser origins of a `cors` setting, normalised (`http://localhost:5173`, or
 * `http://localhost:*` for any port): `["*"]` for every origin, `[]` for none. Throws naming a bad entry.
 */
export function corsOriginList(setting: CorsSetting): string[] {
  if (setting === true) return ["*"];
  if (setting === false) return [];
  const entries = listOf(setting);
  if (entries.includes("*")) return ["*"];
  return entries.map(normaliseOrigin);
}

function normaliseOrigin(entry: string): string {
  const anyPort = entry.endsWith(":*");
  const problem = `'${entry}' is not an origin: write scheme://host[:port] (e.g. http://localhost:5173), scheme://host:* for any port, or '*' for every origin`;
  let url: URL;
  try {
    url = new URL(anyPort ? entry.slice(0, -2) : entry);
  } catch {
    throw new Error(problem);
  }
  const bare = url.pathname === "/" && url.search === "" && url.hash === "" && url.username === "";
  if (url.origin === "null" || !bare || (anyPort && url.port !== "")) throw new Error(problem);
  return anyPort ? `${url.protocol}//${url.hostname}:*` : url.origin;
}

/**
 * The extra host names of an `allowedHosts` setting, lower-case (IPv6 addresses in brackets, a leading
 * dot kept for "this domain and its subdomains"): `["*"]` when the check is off. Throws naming a bad entry.
 */
export function allowedHostList(setting: AllowedHostsSetting): string[] {
  const entries = listOf(setting);
  if (entries.includes("*")) return ["*"];
  return entries.map((entry) => {
    const subdomains = entry.startsWith(".");
    const problem = `'${entry}' is not a host name: write a name or address without scheme or port (every port is allowed), '.example.com' for a domain and its subdomains, or '*' to turn the Host check off`;
    let url: URL;
    try {
      url = new URL(`http://${subdomains ? entry.slice(1) : entry}`);
    } catch {
      throw new Error(problem);
    }
    if (
      url.port !== "" ||
      url.pathname !== "/" ||
      url.search !== "" ||
      url.username !== "" ||
      entry.includes("/")
    )
      throw new Error(problem);
    return subdomains ? `.${url.hostname}` : url.hostname;
  });
}

/**
 * The machine's physical cores (the default thread count): distinct (physical id, core id) pairs in
 * /proc/cpuinfo on Linux, else the logical CPU count. Hyper-threads add nothing to llama.cpp decoding.
 */
export function physicalCores(): number {
  try {
    const pairs = new Set<string>();
    let physicalId = "0";
    for (const line of readFileSync("/proc/cpuinfo", "utf8").split("\n")) {
      const [key, value] = line.split(":").map((part) => part.trim());
      if (key === "physical id") physicalId = value ?? "0";
      if (key === "core id") pairs.add(`${physicalId}:${value ?? ""}`);
    }
    if (pairs.size > 0) return pairs.size;
  } catch {
    // not Linux: fall through
  }
  return Math.max(1, availableParallelism());
}

function fromEnvironment(environment: NodeJS.ProcessEnv): ConfigInput {
  const result: Record<string, unknown> = {};
  if (environment.LMHOST_MODELS_DIR) result.modelsDir = environment.LMHOST_MODELS_DIR;
  // Set but empty is kept, so resolveConfig refuses it instead of silently running without auth.
  if (environment.LMHOST_API_KEY !== undefined) result.apiKey = environment.LMHOST_API_KEY;
  if (environment.LMHOST_DATA_DIR) result.dataDir = environment.LMHOST_DATA_DIR;
  if (environment.LMHOST_HOST) result.host = environment.LMHOST_HOST;
  if (environment.LMHOST_PORT) result.port = Number(environment.LMHOST_PORT);
  if (environment.LMHOST_PROMPT_CACHE_SIZE)
    result.promptCacheSize = parseByteSize(environment.LMHOST_PROMPT_CACHE_SIZE);
  return result as ConfigInput;
}

function fromFile(dataDir: string): ConfigInput {
  const file = path.join(dataDir, "config.json");
  if (!existsSync(file)) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new Error(`Cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
  const checked = configSchema.partial().strict().safeParse(parsed);
  if (!checked.success) throw new Error(`Invalid ${file}: ${describeIssue(checked.error.issues[0])}`);
  return parsed as ConfigInput;
}

/** Merges file < environment < flags and validates. `flags` holds only the flags the user gave. */
export function resolveConfig(flags: ConfigInput, environment: NodeJS.ProcessEnv = process.env): Config {
  const environmentValues = fromEnvironment(environment);
  const dataDir = flags.dataDir ?? environmentValues.dataDir ?? DEFAULT_DATA_DIR;
  const fileValues = fromFile(dataDir);
  // Each source is checked on its own, so an empty `--api-key "$KEY"` neither turns auth off nor
  // overrides a good LMHOST_API_KEY: it is an error naming where it came from.
  checkApiKey(fileValues.apiKey, `${path.join(dataDir, "config.json")} (apiKey)`);
  checkApiKey(environmentValues.apiKey, "LMHOST_API_KEY");
  checkApiKey(flags.apiKey, "--api-key");
  const merged = { ...fileValues, ...environmentValues, ...flags, dataDir };
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) throw new Error(`Invalid configuration: ${describeIssue(parsed.error.issues[0])}`);
  return parsed.data;
}

function checkApiKey(key: string | undefined, source: string): void {
  if (key === undefined) return;
  if (key.trim() === "")
    throw new Error(
      `Invalid configuration: the API key from ${source} is empty (an unset variable?); give a key, or leave it out to run without auth`,
    );
  if (key !== key.trim())
    throw new Error(
      `Invalid configuration: the API key from ${source} starts or ends with whitespace, which no client can send in a header`,
    );
}

function describeIssue(issue: z.core.$ZodIssue | undefined): string {
  if (issue === undefined) return "invalid";
  return `${issue.path.length > 0 ? `${issue.path.join(".")}: ` : ""}${issue.message}`;
}

/**
 * A size in bytes: a plain number, or with a unit (`512MiB`, `2GiB`, `2G`, `100kB`; binary and decimal
 * units). Anything else comes back as NaN, which the schema then refuses naming the setting.
 */
export function parseByteSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$/i.exec(text);
  if (match === null) return Number.NaN;
  const [, amount = "", unit = "", binary = ""] = match;
  const power = " kmgt".indexOf(unit.toLowerCase() || " ");
  const base = binary !== "" || unit === "" ? 1024 : 1000;
  return Math.round(Number(amount) * base ** power);
}

/** The models directory: `--models-dir`, else `<data-dir>/models` (so `~/.lmhost/models` by default). */
export function modelsDirOf(config: Config): string {
  return config.modelsDir ?? path.join(config.dataDir, "models");
}
