/**
 * Model lifecycle on the real engine, seen through the HTTP API: the first request JIT-loads a model, a
 * request's own `ttl` unloads it when idle, a stream started before the load finishes still delivers, and
 * with --max-loaded 1 loading a second model evicts the least recently used one.
 */
import { describe, expect, it } from "vitest";
import { createRealApp } from "../helpers/real-app.js";

interface NativeModel {
  id: string;
  state: string;
}

async function states(real: Awaited<ReturnType<typeof createRealApp>>): Promise<Record<string, string>> {
  const list = (await (await real.app.request("http://lmhost.test/api/v0/models")).json()) as {
    data: NativeModel[];
  };
  return Object.fromEntries(list.data.map((model) => [model.id, model.state]));
}

describe("model lifecycle on the real engine", () => {
  it("JIT-loads on the first request and unloads after the request's ttl", async () => {
    const real = await createRealApp();
    try {
      expect((await states(real))["stories260K"]).toBe("not-loaded");
      const response = await real.post("/v1/responses", {
        model: "stories260K",
        input: "Once",
        max_output_tokens: 4,
        temperature: 0,
        ttl: 3,
      });
      expect(response.status).toBe(200);
      expect((await states(real))["stories260K"]).toBe("loaded");
      const deadline = Date.now() + 10_000;
      while ((await states(real))["stories260K"] !== "not-loaded" && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect((await states(real))["stories260K"]).toBe("not-loaded");
      // It loads again on demand.
      expect(
        (
          await real.post("/v1/responses", {
            model: "stories260K",
            input: "Once",
            max_output_tokens: 4,
            temperature: 0,
          })
        ).status,
      ).toBe(200);
    } finally {
      await real.close();
    }
  });

  it("streams through a JIT load when the stream starts before the engine's first part", async () => {
    // Start streaming at once, whatever the engine is doing: the run then waits for the load after
    // response.created (the fast tier proves the order with a gated engine; this runs it for real).
    const real = await createRealApp({ streamStartAfterMilliseconds: 0 });
    try {
      expect((await states(real))["stories260K"]).toBe("not-loaded");
      const stream = real.client.responses.stream({
        model: "stories260K",
        input: "Once upon a time",
        max_output_tokens: 8,
        temperature: 0,
      });
      const types: string[] = [];
      let deltas = "";
      for await (const event of stream) {
        types.push(event.type);
        if (event.type === "response.output_text.delta") deltas += event.delta;
      }
      const final = await stream.finalResponse();
      expect(types.slice(0, 2)).toEqual(["response.created", "response.in_progress"]);
      expect(types.at(-1)).toBe("response.incomplete");
      expect(final.output_text).toBe(deltas);
      expect(deltas.length).toBeGreaterThan(0);
      expect((await states(real))["stories260K"]).toBe("loaded");
    } finally {
      await real.close();
    }
  });

  it("evicts the least recently used model when --max-loaded is reached", async () => {
    const real = await createRealApp({ maxLoaded: 1 });
    try {
      await real.post("/v1/responses", {
        model: "stories260K",
        input: "Once",
        max_output_tokens: 4,
        temperature: 0,
      });
      expect(await states(real)).toMatchObject({ stories260K: "loaded", "stories260K-chatml": "not-loaded" });
      await real.post("/v1/responses", {
        model: "stories260K-chatml",
        input: "Once",
        max_output_tokens: 4,
        temperature: 0,
      });
      expect(await states(real)).toMatchObject({ stories260K: "not-loaded", "stories260K-chatml": "loaded" });
    } finally {
      await real.close();
    }
  });
});
