/**
 * Starts a real lmhost server: the SQLite store in the data dir, model discovery, the llama engine,
 * createApp, and an HTTP listener. Also owns graceful shutdown: stop accepting, abort in-flight
 * generations with a ShutdownError (their streams end with `response.failed`, error code
 * `server_error` "lmhost is shutting down", and they are stored as failed), unload models, close the store — all within a
 * few seconds. Used by `lmhost serve` and by tests that need a real socket.
 *
 * Before anything touches the data dir, the server takes its lock (data-dir-lock.ts): a second server on the
 * same data dir fails naming the first's pid and port, and never opens the store — only the lock holder
 * repairs the responses an earlier process left unfinished. `--model` files that do not exist and a bad
 * `--chat-template` stop the start with one line naming the flag; a port in use says how to pick another.
 */
import { setMaxListeners } from "node:events";
import type { AddressInfo } from "node:net";
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { serve, type ServerType } from "@hono/node-server";
import { modelsDirOf, physicalCores, type Config } from "../config.js";
import { chatTemplateProblem } from "../engine/llama/chat-wrapper.js";
import { createLlamaEngine, PromptCache } from "../engine/llama/index.js";
import { ModelCatalog } from "../models/catalog.js";
import { DownloadJobs } from "../models/download/jobs.js";
import { withDemoModel, type DemoModelSource } from "../models/demo.js";
import { ModelManager } from "../models/manager.js";
import { SqliteResponseStore } from "../store/sqlite/sqlite-store.js";
import { pinToOneCpu } from "../shared/cpu-affinity.js";
import { ShutdownError } from "../shared/errors.js";
import { createLogger, levelEnabled, type Logger } from "../shared/logger.js";
import { formatBytes } from "../shared/format.js";
import { McpService, readMcpConfig, type LocalMcpServers } from "../tools/mcp/service.js";
import { loadOrCreateReasoningKey } from "../responses/reasoning-seal.js";
import { createApp } from "./app.js";
import { acquireDataDirLock, type DataDirLock } from "./data-dir-lock.js";
import type { App, AppDeps } from "./deps.js";
import type { ModelEntry } from "../models/types.js";
import { describeGuards } from "./request-guards.js";
import { directStreamsFetch } from "./sse.js";

export interface RunningServer {
  url: string;
  port: number;
  app: App;
  deps: AppDeps;
  /** Graceful stop; resolves when every resource is released. Safe to call twice. */
  close(): Promise<void>;
}

/** The error of a response an earlier lmhost process left queued or in_progress. */
export const RESTARTED_ERROR = {
  code: "server_error",
  message: "lmhost restarted before this response finished",
} as const;

/** A start-up problem the user fixes with a flag: `lmhost serve` prints its message as one line and exits 1. */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StartupError";
  }
}

/**
 * The flags checked before anything starts: every `--model` file exists, and `--chat-template` (and each
 * config.json model's `chatTemplate`) is a wrapper name or a Jinja template that parses.
 */
export function checkStartupConfig(config: Config): void {
  for (const file of config.models) {
    const resolved = path.resolve(file);
    if (!existsSync(resolved))
      throw new StartupError(
        `--model ${resolved}: no such file (check the path, or list models with \`lmhost ls\`)`,
      );
    if (statSync(resolved).isDirectory())
      throw new StartupError(
        `--model ${resolved}: is a folder; give a .gguf file (or the folder as --models-dir)`,
      );
  }
  if (config.chatTemplate !== undefined) {
    const problem = chatTemplateProblem(config.chatTemplate);
    if (problem !== undefined) throw new StartupError(`--chat-template: ${problem}`);
  }
  for (const [id, override] of Object.entries(config.modelOverrides)) {
    if (override.chatTemplate === undefined) continue;
    const problem = chatTemplateProblem(override.chatTemplate);
    if (problem !== undefined)
      throw new StartupError(
        `${path.join(config.dataDir, "config.json")} modelOverrides["${id}"].chatTemplate: ${problem}`,
      );
  }
}

export async function startServer(
  config: Config,
  logger: Logger = createLogger(config.logLevel, { format: config.logFormat }),
): Promise<RunningServer> {
  checkStartupConfig(config);
  // First the lock: a second server on this data dir stops here, before it opens (or repairs) the store.
  const lock = acquireDataDirLock(config.dataDir, { notice: (message) => logger.warn(message) });
  try {
    return await startLocked(config, logger, lock);
  } catch (error) {
    lock.release();
    throw error;
  }
}

async function startLocked(config: Config, logger: Logger, lock: DataDirLock): Promise<RunningServer> {
  const shutdown = new AbortController();
  // Every request in flight links its own signal to this one with a listener (shared/abort-signals.ts).
  setMaxListeners(0, shutdown.signal);
  // Every store error names the file (a file that is not SQLite, a full disk, an unreadable row).
  const store = SqliteResponseStore.open(path.join(config.dataDir, "responses.sqlite"), {
    ...(config.storeMaxBytes === undefined ? {} : { maxBytes: config.storeMaxBytes }),
    warn: (message) => logger.warn(message),
  });
  try {
    // No run of an earlier process can finish what it left queued or in_progress: say so, once. A row
    // that cannot be read is skipped with a warning; a store that cannot be written stops the start.
    const unfinished = store.failUnfinished(RESTARTED_ERROR);
    if (unfinished > 0)
      logger.info(`marked ${unfinished} unfinished response(s) of an earlier run as failed`);
  } catch (error) {
    store.close();
    throw error;
  }
  const catalog = new ModelCatalog({
    modelsDir: modelsDirOf(config),
    files: config.models,
    ...(config.chatTemplate === undefined ? {} : { chatTemplate: config.chatTemplate }),
    overrides: config.modelOverrides,
    ...(config.reasoningBudgets === undefined ? {} : { reasoningBudgets: config.reasoningBudgets }),
  });
  for (const entry of await catalog.list()) {
    if (entry.error !== undefined)
      logger.warn(`model ${entry.id} (${entry.path}) cannot be used: ${entry.error}`);
  }
  // No model anywhere: the built-in demo (models/demo.ts), announced loudly.
  const modelSource = await withDemoModel(catalog, config.demo, logger);
  const served = await modelSource.list();
  // The operator's MCP servers; a broken mcp.json stops start-up, naming the file.
  let localServers: LocalMcpServers;
  try {
    localServers = readMcpConfig(config.dataDir);
  } catch (error) {
    store.close();
    throw error;
  }
  try {
    return await startEngineAndListen(config, logger, lock, {
      store,
      modelSource,
      served,
      localServers,
      shutdown,
    });
  } catch (error) {
    store.close();
    throw error;
  }
}

interface Opened {
  store: SqliteResponseStore;
  modelSource: DemoModelSource;
  served: ModelEntry[];
  localServers: LocalMcpServers;
  shutdown: AbortController;
}

async function startEngineAndListen(
  config: Config,
  logger: Logger,
  lock: DataDirLock,
  { store, modelSource, served, localServers, shutdown }: Opened,
): Promise<RunningServer> {
  const threads = config.threads ?? physicalCores();
  if (threads === 1 && config.pinCpu) {
    const pin = pinToOneCpu();
    logger.debug(pin.pinned ? `pinned to CPU ${pin.cpu}` : `not pinned to one CPU: ${pin.reason}`);
  }
  const llama = await createLlamaEngine({
    threads,
    parallel: config.parallel ?? defaultParallel,
    parallelSetByUser: config.parallel !== undefined,
    maxQueue: config.maxQueue,
    // llama.cpp's and node-llama-cpp's own lines go through lmhost's logger and follow --log-level.
    logLevel: llamaLogLevel(config.logLevel),
    log: (level, message) => logger[level](`llama.cpp: ${message}`),
    // Tiny models decode fastest on one thread; an explicit --threads is always honoured.
    ...(config.threads === undefined ? {} : { singleThreadBelowBytes: 0 }),
    ...(config.contextLength === undefined ? {} : { contextLength: config.contextLength }),
    // Saved KV states of long prompt prefixes, restored after a sequence was reused, a reload or a restart.
    promptCache: new PromptCache({
      dir: path.join(config.dataDir, "prompt-cache"),
      maxBytes: config.promptCacheSize,
      warn: (message) => logger.warn(message),
    }),
    warn: (message) => logger.warn(message),
    createModels: (loader) =>
      new ModelManager({
        source: modelSource,
        loader,
        ttlSeconds: config.ttlSeconds,
        maxLoaded: config.maxLoaded,
        logger,
      }),
  });
  const mcp = new McpService({
    allowRemote: config.allowRemoteMcp,
    allowedHosts: config.mcpAllowedHosts,
    localServers,
    callTimeoutSeconds: config.mcpCallTimeoutSeconds,
    logger,
  });
  // Downloads started through /api/v0/download; shutdown aborts them and waits before releasing the lock.
  const downloads = new DownloadJobs({ modelsDir: modelsDirOf(config), logger, signal: shutdown.signal });
  const deps: AppDeps = {
    engine: llama.engine,
    downloads,
    models: llama.models,
    store,
    config,
    mcp,
    logger,
    shutdownSignal: shutdown.signal,
    reasoningSummary: config.reasoningSummary,
    // Created on first start (mode 0600): encrypted_content a client holds opens again after a restart.
    reasoningKey: loadOrCreateReasoningKey(config.dataDir),
  };
  const app = createApp(deps);

  let server: ServerType;
  try {
    server = await listen(app, config);
  } catch (error) {
    await llama.engine.close();
    await llama.models.close();
    await mcp.close();
    throw error;
  }
  const port = (server.address() as AddressInfo).port;
  lock.setAddress(config.host, port);
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  const threadNote = config.threads === undefined ? "; models under 128 MiB use 1" : "";
  logger.info(`who may call: ${describeGuards(config)}`);
  logger.info(
    `MCP: remote servers ${config.allowRemoteMcp ? `on${config.mcpAllowedHosts.length > 0 ? ` (private hosts allowed: ${config.mcpAllowedHosts.join(", ")})` : " (public addresses only)"}` : "off (--allow-remote-mcp)"}; mcp.json servers: ${localServers.size > 0 ? [...localServers.keys()].join(", ") : "none"}`,
  );
  logger.info(
    `models folder: ${path.resolve(modelsDirOf(config))}; data dir: ${path.resolve(config.dataDir)}`,
  );
  for (const line of describeModels(served)) logger.info(line);
  // Last, so that a reader waiting for it (a test, a supervisor script) has the whole account.
  logger.info(
    `lmhost listening on ${url} (pid ${process.pid}, threads ${threads}${threadNote}, parallel ${config.parallel ?? `${defaultParallel}, fewer when memory is short`})`,
  );

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      logger.info("shutting down");
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      shutdown.abort(new ShutdownError("lmhost is shutting down"));
      await llama.engine.close();
      // Streams that were aborted finish their last events; each keep-alive socket is dropped as soon as
      // it falls idle (checked every 50 ms), and whatever is still open after 2 s is cut.
      const idleTimer = setInterval(() => closeIdleConnections(server), 50);
      const forceTimer = setTimeout(() => closeAllConnections(server), 2000);
      idleTimer.unref();
      forceTimer.unref();
      closeIdleConnections(server);
      await closed;
      clearInterval(idleTimer);
      clearTimeout(forceTimer);
      // Each step runs even when an earlier one failed; the data-dir lock is released last, whatever happened.
      try {
        // Downloads were aborted with the shutdown signal; one stuck in the downloader's own retries is
        // not waited for beyond 2 s. Every step runs even when another fails.
        const results = await Promise.allSettled([
          Promise.race([
            downloads.settled(),
            new Promise<void>((resolve) => setTimeout(resolve, 2000).unref()),
          ]),
          llama.models.close(),
          mcp.close(),
        ]);
        for (const result of results)
          if (result.status === "rejected") logger.warn(`shutdown step failed: ${String(result.reason)}`);
      } finally {
        try {
          store.close();
        } finally {
          lock.release();
        }
      }
      logger.info("stopped");
    })());
  return { url, port, app, deps, close };
}

/** Binds the port; a port in use is one line saying so and how to pick another (no stack trace). */
async function listen(app: App, config: Config): Promise<ServerType> {
  return new Promise<ServerType>((resolve, reject) => {
    const listening = serve(
      { fetch: directStreamsFetch(app.fetch), hostname: config.host, port: config.port },
      () => resolve(listening),
    );
    listening.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EADDRINUSE")
        reject(
          new StartupError(
            `port ${config.port} on ${config.host} is already in use (another lmhost, or another program); ` +
              `stop it, or pick another port with --port <n> (--port 0 takes any free port)`,
          ),
        );
      else if (error.code === "EACCES")
        reject(
          new StartupError(
            `no permission to listen on port ${config.port} on ${config.host}; pick a port above 1023 with --port <n>`,
          ),
        );
      else if (error.code === "EADDRNOTAVAIL")
        reject(new StartupError(`--host ${config.host}: not an address of this machine`));
      else reject(error);
    });
  });
}

/** Sequences per model when `--parallel` is not given (the loader may take fewer: context-length.ts). */
const defaultParallel = 4;

/** The context a listed model has before it loads: its own length in config.json, or what it was trained for. */
function contextOf(entry: ModelEntry): string {
  if (entry.contextLengthOverride !== undefined)
    return `context ${entry.contextLengthOverride} (config.json)`;
  return `trained for ${entry.contextLength ?? "?"} tokens`;
}

/** One line per model served: id, size, quantization, context length (or why it cannot be used). */
export function describeModels(entries: readonly ModelEntry[]): string[] {
  if (entries.length === 0)
    return ["models: none found (put .gguf files in the models folder, or pass -m <file>)"];
  return [
    `models: ${entries.length}`,
    ...entries.map((entry) =>
      entry.error !== undefined
        ? `  ${entry.id}  cannot be used: ${entry.error}`
        : `  ${entry.id}  ${formatBytes(entry.sizeBytes)}  ${entry.quantization ?? "?"}  ${contextOf(entry)}`,
    ),
  ];
}

function llamaLogLevel(level: Config["logLevel"]): "disabled" | "error" | "warn" | "debug" {
  if (level === "silent") return "disabled";
  if (level === "debug") return "debug";
  // At info, llama.cpp's own info lines (tensor loading, KV cache sizes) would bury lmhost's.
  return levelEnabled(level, "warn") ? "warn" : "error";
}

function closeIdleConnections(server: ServerType): void {
  if ("closeIdleConnections" in server && typeof server.closeIdleConnections === "function") {
    server.closeIdleConnections();
  }
}

function closeAllConnections(server: ServerType): void {
  if ("closeAllConnections" in server && typeof server.closeAllConnections === "function") {
    server.closeAllConnections();
  }
}
