/**
 * The whole app in-process on the REAL path: node-llama-cpp on assets/models, a SQLite file for
 * stored responses, the model catalog and manager — wired exactly as `lmhost serve` wires them, minus
 * the socket. The official `openai` SDK talks to it through a custom fetch routed into `app.request`.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import OpenAI from "openai";
import type { ReasoningBudgets } from "../../src/engine/reasoning-budgets.js";
import {
  createLlamaEngine,
  type LlamaEngine,
  type LlamaLoadedModel,
  type PromptCache,
} from "../../src/engine/llama/index.js";
import { ModelCatalog, type ModelOverride } from "../../src/models/catalog.js";
import { ModelManager } from "../../src/models/manager.js";
import { createApp } from "../../src/server/app.js";
import type { App, AppDeps } from "../../src/server/deps.js";
import { silentLogger } from "../../src/shared/logger.js";
import { SqliteResponseStore } from "../../src/store/sqlite/sqlite-store.js";
import { storiesChatmlModel, storiesModel } from "./paths.js";

export const BASE_URL = "http://lmhost.test";

export interface RealApp {
  app: App;
  engine: LlamaEngine;
  models: ModelManager<LlamaLoadedModel>;
  store: SqliteResponseStore;
  databaseFile: string;
  client: OpenAI;
  post(pathName: string, body: unknown): Promise<Response>;
  close(): Promise<void>;
}

export async function createRealApp(
  options: {
    databaseFile?: string;
    parallel?: number;
    maxQueue?: number;
    maxLoaded?: number;
    ttlSeconds?: number;
    streamStartAfterMilliseconds?: number;
    /** The MCP servers requests may use (default none). */
    mcp?: AppDeps["mcp"];
    /** Per-model settings by id, as config.json `modelOverrides` sets them (e.g. a chat template). */
    modelOverrides?: Record<string, ModelOverride>;
    /** Server-wide thought-token budgets per effort, as config.json `reasoningBudgets` sets them. */
    reasoningBudgets?: ReasoningBudgets;
    /** The persistent prompt cache (`lmhost serve` always has one; none by default here). */
    promptCache?: PromptCache;
  } = {},
): Promise<RealApp> {
  const databaseFile =
    options.databaseFile ?? path.join(mkdtempSync(path.join(tmpdir(), "lmhost-real-")), "responses.sqlite");
  const store = SqliteResponseStore.open(databaseFile);
  const catalog = new ModelCatalog({
    files: [storiesModel, storiesChatmlModel],
    ...(options.modelOverrides === undefined ? {} : { overrides: options.modelOverrides }),
    ...(options.reasoningBudgets === undefined ? {} : { reasoningBudgets: options.reasoningBudgets }),
  });
  const { engine, models } = await createLlamaEngine({
    threads: 1,
    logLevel: "error",
    parallel: options.parallel ?? 2,
    ...(options.maxQueue === undefined ? {} : { maxQueue: options.maxQueue }),
    ...(options.promptCache === undefined ? {} : { promptCache: options.promptCache }),
    createModels: (loader) =>
      new ModelManager({
        source: catalog,
        loader,
        ttlSeconds: options.ttlSeconds ?? 600,
        maxLoaded: options.maxLoaded ?? 2,
        logger: silentLogger,
      }),
  });
  const app = createApp({
    engine,
    models,
    store,
    config: { cors: false, bodyLimitBytes: 20 * 1024 * 1024 },
    ...(options.mcp === undefined ? {} : { mcp: options.mcp }),
    ...(options.streamStartAfterMilliseconds === undefined
      ? {}
      : { streamStartAfterMilliseconds: options.streamStartAfterMilliseconds }),
  });
  const client = new OpenAI({
    baseURL: `${BASE_URL}/v1`,
    apiKey: "unused",
    maxRetries: 0,
    fetch: async (url, init) => app.request(String(url), init as RequestInit),
  });
  return {
    app,
    engine,
    models,
    store,
    databaseFile,
    client,
    post: async (pathName, body) =>
      app.request(`${BASE_URL}${pathName}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      }),
    async close() {
      await engine.close();
      await models.close();
      store.close();
    },
  };
}
