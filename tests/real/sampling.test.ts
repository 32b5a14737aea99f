/**
 * Sampling is random unless a seed is given (real engine, stories260K-chatml over HTTP): identical
 * temperature-1 requests sent at once (so within the same second, which node-llama-cpp's own default seed
 * would give them all) sample different text; a `seed` reproduces its output; a bad seed is a 400.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRealApp, type RealApp } from "../helpers/real-app.js";

let real: RealApp;

beforeAll(async () => {
  real = await createRealApp({ parallel: 4 });
});

afterAll(async () => {
  await real?.close();
});

async function sample(extra: Record<string, unknown> = {}): Promise<string> {
  const response = await real.post("/v1/responses", {
    model: "stories260K-chatml",
    input: "Once upon a time",
    temperature: 1,
    max_output_tokens: 24,
    ...extra,
  });
  expect(response.status).toBe(200);
  const body = (await response.json()) as { output: { content?: { text: string }[] }[] };
  return body.output.flatMap((item) => (item.content ?? []).map((part) => part.text)).join("");
}

describe("sampling seeds", () => {
  it("identical temperature-1 requests sent at once sample different text", async () => {
    const texts = await Promise.all(Array.from({ length: 4 }, async () => sample()));
    expect(texts.every((text) => text.length > 0)).toBe(true);
    // With node-llama-cpp's default (the current second) all four were the same text.
    expect(new Set(texts).size).toBeGreaterThan(1);
  });

  it("a given seed reproduces its output; other seeds sample other text", async () => {
    const first = await sample({ seed: 7 });
    const again = await sample({ seed: 7 });
    expect(again).toBe(first);
    const others = [await sample({ seed: 8 }), await sample({ seed: 9 })];
    expect(others.some((text) => text !== first)).toBe(true);
  });

  it("refuses a seed that is not an unsigned 32-bit integer, naming it", async () => {
    for (const seed of [-1, 1.5, 2 ** 32, "7"]) {
      const response = await real.post("/v1/responses", { model: "stories260K-chatml", input: "hi", seed });
      expect(response.status).toBe(400);
      const body = (await response.json()) as { error: { param: string } };
      expect(body.error.param).toBe("seed");
    }
  });
});
