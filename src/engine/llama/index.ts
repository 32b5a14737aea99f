/**
 * Wiring for the llama engine: loads node-llama-cpp's prebuilt CPU binding once, builds the loader, hands it
 * to the model manager (which the caller creates, since the manager needs the loader and the engine needs
 * the manager), and builds the engine over the manager.
 *
 *   const { engine, models } = await createLlamaEngine({
 *     threads, parallel, contextLength, maxQueue,
 *     createModels: (loader) => new ModelManager({ loader, ... }),
 *   });
 */
import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";
import type { ModelAcquirer } from "../../models/types.js";
import { assertNever } from "../../shared/errors.js";
import { LlamaEngine } from "./engine.js";
import { LlamaModelLoader, type LlamaLoadedModel, type LlamaModelLoaderOptions } from "./loader.js";
import { nodeLlamaCppPatched, unpatchedWarning } from "./patch-check.js";
import type { PromptCache } from "./prompt-cache.js";

export { LlamaEngine, type LlamaEngineOptions } from "./engine.js";
export {
  LlamaModelLoader,
  tinyModelBytes,
  type LlamaLoadedModel,
  type LlamaModelLoaderOptions,
} from "./loader.js";
export { SequencePool, type SequencePoolStats } from "./sequence-pool.js";
export { PromptCache, type PromptCacheOptions } from "./prompt-cache.js";

export interface CreateLlamaEngineOptions<Models extends ModelAcquirer<LlamaLoadedModel>> extends Omit<
  LlamaModelLoaderOptions,
  "llama"
> {
  /** Builds the model manager from the loader. */
  createModels(loader: LlamaModelLoader): Models;
  /** Queue bound per loaded model (default 64). */
  maxQueue?: number;
  /** See LlamaEngineOptions.stableTruncation (default true). */
  stableTruncation?: boolean;
  /** llama.cpp log level (default "warn"). */
  logLevel?: LogLevelName;
  /**
   * Where llama.cpp's and node-llama-cpp's own log lines go (default: node-llama-cpp's console logger), at
   * lmhost's level names; only lines at or above `logLevel` arrive.
   */
  log?: (level: "error" | "warn" | "info" | "debug", message: string) => void;
  /** Pass an existing node-llama-cpp instance instead of loading one (tests share one per process). */
  llama?: Llama;
  /** The persistent KV prefix cache (see LlamaEngineOptions.promptCache); absent: none. */
  promptCache?: PromptCache;
  /** Where warnings go: the prompt cache's, and an unpatched node-llama-cpp (patch-check.ts). */
  warn?: (message: string) => void;
}

export interface LlamaEngineWiring<Models extends ModelAcquirer<LlamaLoadedModel>> {
  llama: Llama;
  loader: LlamaModelLoader;
  models: Models;
  engine: LlamaEngine;
}

/**
 * Loads the binding (`getLlama({gpu: false, build: "never"})`: the prebuilt CPU binary, never a source build)
 * and wires loader → model manager → engine.
 */
export async function createLlamaEngine<Models extends ModelAcquirer<LlamaLoadedModel>>(
  options: CreateLlamaEngineOptions<Models>,
): Promise<LlamaEngineWiring<Models>> {
  const llama =
    options.llama ??
    (await getLlama({
      gpu: false,
      build: "never",
      logLevel: toLogLevel(options.logLevel ?? "warn"),
      ...(options.log === undefined ? {} : { logger: llamaLogger(options.log) }),
    }));
  const {
    maxQueue,
    stableTruncation,
    logLevel: _logLevel,
    log: _log,
    llama: _llama,
    createModels,
    promptCache,
    warn,
    ...loaderOptions
  } = options;
  if (!nodeLlamaCppPatched()) warn?.(unpatchedWarning);
  const loader = new LlamaModelLoader({ ...loaderOptions, llama });
  const models = createModels(loader);
  const engine = new LlamaEngine({
    models,
    ...(maxQueue !== undefined ? { maxQueue } : {}),
    ...(stableTruncation !== undefined ? { stableTruncation } : {}),
    ...(promptCache !== undefined ? { promptCache } : {}),
    ...(warn !== undefined ? { warn } : {}),
  });
  return { llama, loader, models, engine };
}

type LogLevelName = "disabled" | "fatal" | "error" | "warn" | "info" | "debug";

function toLogLevel(level: LogLevelName): LlamaLogLevel {
  switch (level) {
    case "disabled":
      return LlamaLogLevel.disabled;
    case "fatal":
      return LlamaLogLevel.fatal;
    case "error":
      return LlamaLogLevel.error;
    case "warn":
      return LlamaLogLevel.warn;
    case "info":
      return LlamaLogLevel.info;
    case "debug":
      return LlamaLogLevel.debug;
    default:
      return assertNever(level, "log level");
  }
}

function llamaLogger(
  log: NonNullable<CreateLlamaEngineOptions<ModelAcquirer<LlamaLoadedModel>>["log"]>,
): (level: LlamaLogLevel, message: string) => void {
  return (level, message) => {
    const text = message.trimEnd();
    if (text === "") return;
    if (level === LlamaLogLevel.fatal || level === LlamaLogLevel.error) log("error", text);
    else if (level === LlamaLogLevel.warn) log("warn", text);
    else if (level === LlamaLogLevel.info) log("info", text);
    else log("debug", text);
  };
}
