/**
 * Model lifecycle on the real engine, seen through the HTTP API: the first request JIT-loads a model, a
 * request's own `ttl` unloads it when idle, and with --max-loaded 1 loading a second model evicts the
 * least recently used one.
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
        ttl: 1,
      });
      expect(response.status).toBe(200);
      expect((await states(real))["stories260K"]).toBe("loaded");
      const deadline = Date.now() + 5000;
      while ((await states(real))["stories260K"] !== "not-loaded" && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect((await states(real))["stories260K"]).toBe("not-loaded");
      // It loads again on demand.
      expect(
        (await real.post("/v1/responses", { model: "stories260K", input: "Once", max_output_tokens: 4 }))
          .status,
      ).toBe(200);
    } finally {
      await real.close();
    }
  });

  it("evicts the least recently used model when --max-loaded is reached", async () => {
    const real = await createRealApp({ maxLoaded: 1 });
    try {
      await real.post("/v1/responses", { model: "stories260K", input: "Once", max_output_tokens: 4 });
      expect(await states(real)).toMatchObject({ stories260K: "loaded", "stories260K-chatml": "not-loaded" });
      await real.post("/v1/responses", { model: "stories260K-chatml", input: "Once", max_output_tokens: 4 });
      expect(await states(real)).toMatchObject({ stories260K: "not-loaded", "stories260K-chatml": "loaded" });
    } finally {
      await real.close();
    }
  });
});
