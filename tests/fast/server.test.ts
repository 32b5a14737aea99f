/**
 * The HTTP shell of createApp: auth, request ids, CORS, body limit, error shapes, unknown routes,
 * /health, /v1/models and the native /api/v0 endpoints — in-process, with the scripted engine, the
 * in-memory store and a ModelManager over a fake loader. The Host / Origin / Content-Type guards and the
 * body checks are in server-guards.test.ts.
 */
import { describe, expect, it } from "vitest";
import { ScriptedEngine } from "../../src/engine/scripted/scripted-engine.js";
import type { ModelEntry } from "../../src/models/types.js";
import { ModelManager } from "../../src/models/manager.js";
import { createApp } from "../../src/server/app.js";
import type { AppConfig } from "../../src/server/deps.js";
import { MemoryResponseStore } from "../../src/store/memory/memory-store.js";
import { silentLogger } from "../../src/shared/logger.js";

const entries: ModelEntry[] = [
  {
    id: "acme/tiny",
    path: "/models/acme/tiny/tiny.gguf",
    sizeBytes: 1000,
    publisher: "acme",
    architecture: "llama",
    quantization: "F32",
    contextLength: 2048,
    hasChatTemplate: false,
  },
  {
    id: "local/broken",
    path: "/models/broken.gguf",
    sizeBytes: 10,
    publisher: "local",
    error: "not a GGUF file",
  },
];

const json = { "content-type": "application/json" };

function build(config: Partial<AppConfig> = {}) {
  const loads: string[] = [];
  const models = new ModelManager<{ id: string }>({
    source: { list: async () => entries },
    loader: {
      load: async (entry) => {
        loads.push(entry.id);
        return { id: entry.id };
      },
      unload: async () => undefined,
      contextLength: () => 2048,
    },
    ttlSeconds: 60,
    maxLoaded: 1,
    logger: silentLogger,
  });
  const app = createApp({
    engine: new ScriptedEngine({ models }),
    models,
    store: new MemoryResponseStore(),
    config: { cors: false, bodyLimitBytes: 1024 * 1024, ...config },
  });
  return { app, models, loads };
}

describe("HTTP shell", () => {
  it("answers /health and sets x-request-id on every response", async () => {
    const { app } = build();
    const response = await app.request("/health");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ok" });
    expect(response.headers.get("x-request-id")).toMatch(/^req_/);
    const echoed = await app.request("/health", { headers: { "x-request-id": "abc-123" } });
    expect(echoed.headers.get("x-request-id")).toBe("abc-123");
  });

  it("returns a 404 JSON error for unknown routes, with a request id", async () => {
    const { app } = build();
    const response = await app.request("/v1/nope", { method: "POST" });
    expect(response.status).toBe(404);
    expect(response.headers.get("content-type")).toContain("application/json");
    const body = (await response.json()) as { error: { code: string; type: string; message: string } };
    expect(body.error.code).toBe("unknown_route");
    expect(body.error.message).toContain("/v1/nope");
    expect(response.headers.get("x-request-id")).toMatch(/^req_/);
  });

  it("lists models in OpenAI's shape and 404s an unknown one, listing what exists", async () => {
    const { app } = build();
    const list = (await (await app.request("/v1/models")).json()) as {
      object: string;
      data: { id: string; object: string; owned_by: string }[];
    };
    expect(list.object).toBe("list");
    expect(list.data.map((model) => model.id)).toEqual(["acme/tiny", "local/broken"]);
    expect(list.data[0]).toMatchObject({ object: "model", owned_by: "acme" });
    const one = await app.request("/v1/models/acme/tiny");
    expect(one.status).toBe(200);
    expect(((await one.json()) as { id: string }).id).toBe("acme/tiny");
    const missing = await app.request("/v1/models/acme/huge");
    expect(missing.status).toBe(404);
    const error = ((await missing.json()) as { error: { code: string; param: string; message: string } })
      .error;
    expect(error.code).toBe("model_not_found");
    expect(error.message).toContain("acme/tiny");
  });

  it("reports load state on /api/v0/models and loads/unloads on request", async () => {
    const { app, loads } = build();
    const before = (await (await app.request("/api/v0/models")).json()) as {
      data: { id: string; state: string; arch: string | null; error: string | null }[];
    };
    expect(before.data.find((model) => model.id === "acme/tiny")).toMatchObject({
      state: "not-loaded",
      arch: "llama",
    });
    expect(before.data.find((model) => model.id === "local/broken")?.error).toBe("not a GGUF file");
    const loaded = await app.request("/api/v0/load", {
      method: "POST",
      headers: json,
      body: JSON.stringify({ model: "acme/tiny", ttl: 5 }),
    });
    expect(loaded.status).toBe(200);
    expect(((await loaded.json()) as { state: string }).state).toBe("loaded");
    expect(loads).toEqual(["acme/tiny"]);
    const after = (await (await app.request("/api/v0/models/acme/tiny")).json()) as {
      state: string;
      ttl_expires_at: number;
    };
    expect(after.state).toBe("loaded");
    expect(after.ttl_expires_at).toBeGreaterThan(Date.now() / 1000);
    const unloaded = await app.request("/api/v0/unload", {
      method: "POST",
      headers: json,
      body: JSON.stringify({ model: "acme/tiny" }),
    });
    expect(await unloaded.json()).toEqual({ id: "acme/tiny", unloaded: true });
    const badLoad = await app.request("/api/v0/load", {
      method: "POST",
      headers: json,
      body: JSON.stringify({ model: "local/broken" }),
    });
    expect(badLoad.status).toBe(400);
    expect(((await badLoad.json()) as { error: { param: string } }).error.param).toBe("model");
  });

  it("rejects malformed JSON with a 400 and keeps serving", async () => {
    const { app } = build();
    const response = await app.request("/api/v0/load", { method: "POST", headers: json, body: "{not json" });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("invalid_json");
    expect((await app.request("/health")).status).toBe(200);
  });

  it("rejects a body over the limit with 413", async () => {
    const { app } = build({ bodyLimitBytes: 1000 });
    const response = await app.request("/api/v0/load", {
      method: "POST",
      body: JSON.stringify({ model: "x".repeat(5000) }),
      headers: { "content-type": "application/json" },
    });
    expect(response.status).toBe(413);
    const body = (await response.json()) as { error: { code: string; type: string } };
    expect(body.error.code).toBe("request_too_large");
  });

  it("requires the API key on /v1 and /api when one is set, but not on /health", async () => {
    const { app } = build({ apiKey: "sekret" });
    const missing = await app.request("/v1/models");
    expect(missing.status).toBe(401);
    expect(((await missing.json()) as { error: { type: string; code: string } }).error).toMatchObject({
      type: "authentication_error",
      code: "invalid_api_key",
    });
    expect(
      (await app.request("/api/v0/models", { headers: { authorization: "Bearer wrong!" } })).status,
    ).toBe(401);
    expect((await app.request("/v1/models", { headers: { authorization: "Bearer sekret" } })).status).toBe(
      200,
    );
    expect((await app.request("/health")).status).toBe(200);
  });

  it("accepts the API key as x-api-key too, and refuses an empty key instead of turning auth off", async () => {
    const { app } = build({ apiKey: "sekret" });
    expect((await app.request("/v1/models", { headers: { "x-api-key": "sekret" } })).status).toBe(200);
    const wrong = await app.request("/v1/models", { headers: { "x-api-key": "sekre" } });
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: { message: string } }).error.message).toBe(
      "Incorrect API key provided.",
    );
    const missing = await app.request("/api/v0/models");
    expect(((await missing.json()) as { error: { message: string } }).error.message).toContain("x-api-key");
    // Before: an empty key silently served everyone.
    expect(() => build({ apiKey: "" })).toThrow(/empty/);
    expect(() => build({ apiKey: "   " })).toThrow(/empty/);
  });

  it("answers CORS for the listed origins only, and keeps `cors: true` as every origin", async () => {
    const off = build();
    const foreign = await off.app.request("/v1/models", { headers: { origin: "http://example.test" } });
    expect(foreign.status).toBe(403);
    expect(foreign.headers.get("access-control-allow-origin")).toBeNull();
    const on = build({ cors: true });
    const preflight = await on.app.request("/v1/responses", {
      method: "OPTIONS",
      headers: { origin: "http://example.test", "access-control-request-method": "POST" },
    });
    expect(preflight.headers.get("access-control-allow-origin")).toBe("*");
    const listed = build({ cors: "http://localhost:5173,https://app.example" });
    // The official SDK's browser build sends X-Stainless-* headers; the preflight must allow them.
    const sdkPreflight = await listed.app.request("/v1/responses", {
      method: "OPTIONS",
      headers: {
        origin: "http://localhost:5173",
        "access-control-request-method": "POST",
        "access-control-request-headers":
          "authorization,content-type,x-stainless-lang,x-stainless-retry-count",
      },
    });
    expect(sdkPreflight.status).toBe(204);
    expect(sdkPreflight.headers.get("access-control-allow-origin")).toBe("http://localhost:5173");
    expect(sdkPreflight.headers.get("access-control-allow-headers")?.toLowerCase()).toContain(
      "x-stainless-retry-count",
    );
    const actual = await listed.app.request("/v1/models", { headers: { origin: "https://app.example" } });
    expect(actual.status).toBe(200);
    expect(actual.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(actual.headers.get("access-control-expose-headers")?.toLowerCase()).toContain("x-request-id");
    const unlisted = await listed.app.request("/v1/models", { headers: { origin: "http://localhost:5174" } });
    expect(unlisted.status).toBe(403);
  });
});
