/**
 * How long hostile JSON schemas hold the event loop: the whole app in-process on the real engine (the tiny
 * ChatML model), each body sent to `POST /v1/responses` (text.format), `POST /v1/responses` with the schema
 * as tool parameters, and `POST /v1/responses/input_tokens`, while `GET /health` is requested every 5 ms.
 * Prints the time to the answer and the slowest /health answer during it.
 *
 *   [ONLY=<part of a case name>] npx tsx bench/schema-cost.ts [source root, default: this checkout]
 *
 * The source root lets the same script time another checkout (e.g. an export of main) for a before/after;
 * ONLY runs the cases whose name contains it (before this work, the regex cases took minutes).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const root = path.resolve(process.argv[2] ?? here);
const modelFile = path.resolve(here, "assets/models/stories260K-chatml.gguf");
const load = async <Module>(relative: string): Promise<Module> =>
  (await import(pathToFileURL(path.join(root, relative)).href)) as Module;

interface AppLike {
  request(url: string, init?: RequestInit): Response | Promise<Response>;
}

async function createBenchApp(): Promise<{ app: AppLike; close(): Promise<void> }> {
  const { createLlamaEngine } =
    await load<typeof import("../src/engine/llama/index.js")>("src/engine/llama/index.ts");
  const { ModelCatalog } = await load<typeof import("../src/models/catalog.js")>("src/models/catalog.ts");
  const { ModelManager } = await load<typeof import("../src/models/manager.js")>("src/models/manager.ts");
  const { createApp } = await load<typeof import("../src/server/app.js")>("src/server/app.ts");
  const { SqliteResponseStore } = await load<typeof import("../src/store/sqlite/sqlite-store.js")>(
    "src/store/sqlite/sqlite-store.ts",
  );
  const { silentLogger } = await load<typeof import("../src/shared/logger.js")>("src/shared/logger.ts");
  const store = SqliteResponseStore.open(
    path.join(mkdtempSync(path.join(tmpdir(), "lmhost-bench-")), "r.sqlite"),
  );
  const catalog = new ModelCatalog({ files: [modelFile] });
  const { engine, models } = await createLlamaEngine({
    threads: 1,
    logLevel: "error",
    parallel: 1,
    createModels: (loader) =>
      new ModelManager({ source: catalog, loader, ttlSeconds: 600, maxLoaded: 1, logger: silentLogger }),
  });
  const app = createApp({ engine, models, store, config: { cors: false, bodyLimitBytes: 50 * 1024 * 1024 } });
  return {
    app,
    close: async () => {
      await engine.close();
      store.close();
    },
  };
}

const model = "stories260K-chatml";
const regexSchema = {
  type: "object",
  properties: { s: { type: "string", enum: ["a".repeat(30) + "!"], pattern: "^(a+)+$" } },
  required: ["s"],
  additionalProperties: false,
};
const enumSchema = (count: number) => ({
  type: "object",
  properties: { s: { type: "string", enum: Array.from({ length: count }, (_, index) => `value${index}`) } },
  required: ["s"],
  additionalProperties: false,
});

/** Values of about 4 characters, as in the report (a 100k-value enum in a ~700 KB body). */
const shortEnumSchema = (count: number) => ({
  type: "string",
  enum: Array.from({ length: count }, (_, index) => index.toString(36)),
});

function bodies(name: string, schema: object): { label: string; path: string; body: object }[] {
  const format = { format: { type: "json_schema", name: "out", schema, strict: true } };
  const tools = [{ type: "function", name: "f", parameters: schema, strict: true }];
  return [
    {
      label: `${name} text.format`,
      path: "/v1/responses",
      body: { model, input: "hi", max_output_tokens: 4, text: format },
    },
    {
      label: `${name} tools[].parameters`,
      path: "/v1/responses",
      body: { model, input: "hi", max_output_tokens: 4, tools },
    },
    {
      label: `${name} input_tokens`,
      path: "/v1/responses/input_tokens",
      body: { model, input: "hi", tools },
    },
  ];
}

/**
 * Sends one request while `GET /health` is sent every 5 ms. A blocked event loop delays the health request
 * itself, so its latency counts from when it was due (the previous answer + 5 ms), not from when it ran.
 */
async function timed(app: AppLike, route: string, body: object) {
  let slowestHealth = 0;
  let pinging = true;
  const pinger = (async () => {
    while (pinging) {
      const due = performance.now() + 5;
      await new Promise((resolve) => setTimeout(resolve, 5));
      await app.request("http://bench/health");
      slowestHealth = Math.max(slowestHealth, performance.now() - due);
    }
  })();
  await new Promise((resolve) => setTimeout(resolve, 20));
  const started = performance.now();
  const response = await app.request(`http://bench${route}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  const elapsed = performance.now() - started;
  pinging = false;
  await pinger;
  return { status: response.status, elapsed, slowestHealth, text };
}

const { app, close } = await createBenchApp();
// Load the model first so its load time is not measured.
await timed(app, "/v1/responses/input_tokens", { model, input: "hi" });
const only = process.env.ONLY;
for (const [name, schema] of [
  ["regex (a+)+ 31 chars", regexSchema],
  ["enum 50k", enumSchema(50_000)],
  ["enum 100k", enumSchema(100_000)],
  ["short enum 50k (~350 KB)", shortEnumSchema(50_000)],
  ["short enum 100k (~700 KB)", shortEnumSchema(100_000)],
  ["integer enum 50k", { type: "integer", enum: Array.from({ length: 50_000 }, (_, index) => index) }],
  ["integer enum 100k", { type: "integer", enum: Array.from({ length: 100_000 }, (_, index) => index) }],
  ["within limits: enum 1000", enumSchema(1_000)],
  [
    "within limits: 5000 integer ranges",
    {
      type: "object",
      properties: Object.fromEntries(
        Array.from({ length: 5_000 }, (_, index) => [
          `p${index}`,
          { type: "integer", minimum: index, maximum: 10 ** 6 + index },
        ]),
      ),
    },
  ],
] as const) {
  if (only !== undefined && !name.includes(only)) continue;
  for (const { label, path: route, body } of bodies(name, schema)) {
    const result = await timed(app, route, body);
    const detail = result.status === 200 ? "" : ` ${result.text.slice(0, 140)}`;
    console.log(
      `${label.padEnd(40)} HTTP ${result.status} in ${result.elapsed.toFixed(0).padStart(6)} ms; ` +
        `slowest /health ${result.slowestHealth.toFixed(0).padStart(6)} ms${detail}`,
    );
  }
}
await close();
