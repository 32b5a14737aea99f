/**
 * The whole app in-process for fast tests: createApp with the scripted engine, the in-memory response
 * store and a ModelManager over a fixed source and a no-op loader. No socket: `request` and the real
 * `openai` SDK (whose fetch is routed into `app.request`) talk to the app directly.
 * Set LMHOST_TEST_LOG=1 to see the app's log (errors the core records instead of throwing) on stderr.
 */
import OpenAI from "openai";
import { ScriptedEngine, type ScriptedEngineOptions } from "../../src/engine/scripted/scripted-engine.js";
import type { EngineRequest } from "../../src/engine/types.js";
import { ModelManager } from "../../src/models/manager.js";
import type { ModelEntry } from "../../src/models/types.js";
import { createApp } from "../../src/server/app.js";
import type { App, AppConfig, AppDeps } from "../../src/server/deps.js";
import { createLogger, silentLogger, type Logger } from "../../src/shared/logger.js";
import { MemoryResponseStore } from "../../src/store/memory/memory-store.js";
import type { ResponseStore } from "../../src/store/types.js";

export const TEST_MODEL = "lmhost-test/scripted";
export const BASE_URL = "http://lmhost.test";

const testModels: ModelEntry[] = [
  {
    id: TEST_MODEL,
    path: "/models/lmhost-test/scripted/scripted.gguf",
    sizeBytes: 1,
    publisher: "lmhost-test",
    contextLength: 4096,
  },
];

export interface FastAppOptions {
  /** `reasoningSummary` and `reasoningKey` as createApp takes them. */
  reasoningSummary?: AppDeps["reasoningSummary"];
  reasoningKey?: Buffer;
  respond?: ScriptedEngineOptions["respond"];
  contextLength?: number;
  config?: Partial<AppConfig>;
  shutdownSignal?: AbortSignal;
  keepAliveSeconds?: number;
  maxWaitingBackground?: number;
  streamStartAfterMilliseconds?: number;
  /** The response store (default: a new MemoryResponseStore), e.g. a SqliteResponseStore on a temp file. */
  store?: ResponseStore;
  /** The app's logger (default: silent, or debug on stderr with LMHOST_TEST_LOG=1). */
  logger?: Logger;
  /** The MCP servers requests may use (default: none, so MCP tools are a 400). */
  mcp?: AppDeps["mcp"];
}

export interface FastApp {
  app: App;
  engine: ScriptedEngine;
  store: ResponseStore;
  models: ModelManager<object>;
  /** Every EngineRequest the engine received, in order (for prompt assertions). */
  engineRequests: EngineRequest[];
  /** The official SDK pointed at the app. */
  client: OpenAI;
  /** `app.request` with the base URL; a body object is sent as JSON. */
  request(
    path: string,
    init?: { method?: string; body?: unknown; signal?: AbortSignal; headers?: Record<string, string> },
  ): Promise<Response>;
  post(path: string, body: unknown, signal?: AbortSignal): Promise<Response>;
}

export function createFastApp(options: FastAppOptions = {}): FastApp {
  const models = new ModelManager<object>({
    source: { list: async () => testModels },
    loader: { load: async () => ({}), unload: async () => undefined },
    ttlSeconds: Number.POSITIVE_INFINITY,
    maxLoaded: 1,
    logger: silentLogger,
  });
  const engineRequests: EngineRequest[] = [];
  const engine = new ScriptedEngine({
    models,
    ...(options.respond === undefined ? {} : { respond: options.respond }),
    ...(options.contextLength === undefined ? {} : { contextLength: options.contextLength }),
  });
  const generate = engine.generate.bind(engine);
  engine.generate = (request, signal) => {
    engineRequests.push(structuredClone(request));
    return generate(request, signal);
  };
  const store = options.store ?? new MemoryResponseStore();
  const app = createApp({
    engine,
    models,
    store,
    config: { cors: false, bodyLimitBytes: 1024 * 1024, ...options.config },
    logger: options.logger ?? (process.env.LMHOST_TEST_LOG ? createLogger("debug") : silentLogger),
    ...(options.shutdownSignal === undefined ? {} : { shutdownSignal: options.shutdownSignal }),
    ...(options.mcp === undefined ? {} : { mcp: options.mcp }),
    ...(options.reasoningSummary === undefined ? {} : { reasoningSummary: options.reasoningSummary }),
    ...(options.reasoningKey === undefined ? {} : { reasoningKey: options.reasoningKey }),
    ...(options.keepAliveSeconds === undefined ? {} : { keepAliveSeconds: options.keepAliveSeconds }),
    ...(options.maxWaitingBackground === undefined
      ? {}
      : { maxWaitingBackground: options.maxWaitingBackground }),
    ...(options.streamStartAfterMilliseconds === undefined
      ? {}
      : { streamStartAfterMilliseconds: options.streamStartAfterMilliseconds }),
  });
  const request: FastApp["request"] = (path, init = {}) => {
    const body =
      init.body === undefined || typeof init.body === "string" ? init.body : JSON.stringify(init.body);
    return Promise.resolve(
      app.request(`${BASE_URL}${path}`, {
        method: init.method ?? (body === undefined ? "GET" : "POST"),
        headers: { "content-type": "application/json", ...init.headers },
        ...(body === undefined ? {} : { body }),
        ...(init.signal === undefined ? {} : { signal: init.signal }),
      }),
    );
  };
  const client = new OpenAI({
    baseURL: `${BASE_URL}/v1`,
    apiKey: "test",
    maxRetries: 0,
    fetch: (url, init) => Promise.resolve(app.request(String(url), init)),
  });
  return {
    app,
    engine,
    store,
    models,
    engineRequests,
    client,
    request,
    post: (path, body, signal) =>
      request(path, { method: "POST", body, ...(signal === undefined ? {} : { signal }) }),
  };
}

export interface ParsedSseEvent {
  /** The `event:` line (undefined for `data: [DONE]`). */
  event: string | undefined;
  /** The raw `data:` payload. */
  data: string;
}

/** Splits an SSE body into events (comments such as keep-alives are dropped). */
export function parseSse(text: string): ParsedSseEvent[] {
  const events: ParsedSseEvent[] = [];
  for (const block of text.split("\n\n")) {
    let event: string | undefined;
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) event = line.slice("event: ".length);
      else if (line.startsWith("data: ")) data.push(line.slice("data: ".length));
    }
    if (data.length > 0) events.push({ event, data: data.join("\n") });
  }
  return events;
}

/** The JSON events of a Responses SSE body, checking that every `event:` line equals the JSON type and that it ends with [DONE]. */
export async function readResponseEvents(response: Response): Promise<Record<string, unknown>[]> {
  const parsed = parseSse(await response.text());
  const last = parsed.at(-1);
  if (last?.data !== "[DONE]")
    throw new Error(`The stream did not end with data: [DONE] (last: ${last?.data ?? "nothing"})`);
  return parsed.slice(0, -1).map((entry) => {
    const json = JSON.parse(entry.data) as Record<string, unknown>;
    if (entry.event !== json.type)
      throw new Error(`event line '${entry.event ?? ""}' differs from JSON type '${String(json.type)}'`);
    return json;
  });
}

/** A turn that speaks slowly, so a test can cancel or disconnect midway. */
export function slowReply(text: string, delayMs = 20): ScriptedEngineOptions["respond"] {
  return () => ({ text, delayMs });
}
