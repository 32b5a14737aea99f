/**
 * Starts a real lmhost server: the SQLite store in the data dir, model discovery, the llama engine,
 * createApp, and an HTTP listener. Also owns graceful shutdown: stop accepting, abort in-flight
 * generations with a ShutdownError (their streams end with `response.failed`, error code
 * `server_error` "lmhost is shutting down", and they are stored as failed), unload models, close the store — all within a
 * few seconds. Used by `lmhost serve` and by tests that need a real socket.
 */
import { setMaxListeners } from "node:events";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { serve, type ServerType } from "@hono/node-server";
import { modelsDirOf, physicalCores, type Config } from "../config.js";
import { createLlamaEngine } from "../engine/llama/index.js";
import { ModelCatalog } from "../models/catalog.js";
import { withDemoModel } from "../models/demo.js";
import { ModelManager } from "../models/manager.js";
import { SqliteResponseStore } from "../store/sqlite/sqlite-store.js";
import { pinToOneCpu } from "../shared/cpu-affinity.js";
import { ShutdownError } from "../shared/errors.js";
import { createLogger, type Logger } from "../shared/logger.js";
import { McpService, readMcpConfig, type LocalMcpServers } from "../tools/mcp/service.js";
import { loadOrCreateReasoningKey } from "../responses/reasoning-seal.js";
import { createApp } from "./app.js";
import type { App, AppDeps } from "./deps.js";
import { describeGuards } from "./request-guards.js";

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

export async function startServer(
  config: Config,
  logger: Logger = createLogger(config.logLevel),
): Promise<RunningServer> {
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
  // The operator's MCP servers; a broken mcp.json stops start-up, naming the file.
  let localServers: LocalMcpServers;
  try {
    localServers = readMcpConfig(config.dataDir);
  } catch (error) {
    store.close();
    throw error;
  }
  const threads = config.threads ?? physicalCores();
  if (threads === 1 && config.pinCpu) {
    const pin = pinToOneCpu();
    logger.debug(pin.pinned ? `pinned to CPU ${pin.cpu}` : `not pinned to one CPU: ${pin.reason}`);
  }
  const llama = await createLlamaEngine({
    threads,
    parallel: config.parallel,
    maxQueue: config.maxQueue,
    // Tiny models decode fastest on one thread; an explicit --threads is always honoured.
    ...(config.threads === undefined ? {} : { singleThreadBelowBytes: 0 }),
    ...(config.contextLength === undefined ? {} : { contextLength: config.contextLength }),
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
  const deps: AppDeps = {
    engine: llama.engine,
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

  const server = await new Promise<ServerType>((resolve, reject) => {
    const listening = serve({ fetch: app.fetch, hostname: config.host, port: config.port }, () =>
      resolve(listening),
    );
    listening.once("error", reject);
  });
  const port = (server.address() as AddressInfo).port;
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  const threadNote = config.threads === undefined ? "; models under 32 MiB use 1" : "";
  logger.info(
    `lmhost listening on ${url} (pid ${process.pid}, threads ${threads}${threadNote}, parallel ${config.parallel})`,
  );
  logger.info(`who may call: ${describeGuards(config)}`);
  logger.info(
    `MCP: remote servers ${config.allowRemoteMcp ? `on${config.mcpAllowedHosts.length > 0 ? ` (private hosts allowed: ${config.mcpAllowedHosts.join(", ")})` : " (public addresses only)"}` : "off (--allow-remote-mcp)"}; mcp.json servers: ${localServers.size > 0 ? [...localServers.keys()].join(", ") : "none"}`,
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
      await llama.models.close();
      await mcp.close();
      store.close();
      logger.info("stopped");
    })());
  return { url, port, app, deps, close };
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
