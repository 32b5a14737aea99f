/**
 * POST /v1/embeddings on the real engine (node-llama-cpp's embedding context on stories260K, 64-dimensional
 * vectors): the official `openai` SDK unmodified (float, base64 decoded by the SDK, and against a spawned
 * server on loopback with its own fetch), the Vercel AI SDK's openai-compatible provider (`embed`,
 * `embedMany`), one set of weights for generation and embeddings, the per-input context limit, the queue's
 * 429, and generation unaffected by embeddings running beside it.
 */
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { embed, embedMany } from "ai";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { LlamaModelLoader } from "../../src/engine/llama/index.js";
import { createRealApp, type RealApp } from "../helpers/real-app.js";
import { storiesModel } from "../helpers/paths.js";
import { spawnServer } from "../helpers/spawn-server.js";

const MODEL = "stories260K";

let real: RealApp;
beforeAll(async () => {
  real = await createRealApp();
});
afterAll(async () => {
  await real.close();
});

async function floats(input: string | string[] | number[] | number[][]): Promise<number[][]> {
  const result = await real.client.embeddings.create({ model: MODEL, input, encoding_format: "float" });
  return result.data.map((item) => item.embedding);
}

/** The model's own tokens of `text` (no special tokens), from the loaded model. */
async function tokensOf(text: string): Promise<number[]> {
  const lease = await real.models.acquire(MODEL);
  try {
    return [...lease.loaded.model.tokenize(text)];
  } finally {
    lease.release();
  }
}

describe("POST /v1/embeddings on the real engine", () => {
  it("openai SDK: float and base64 agree; equal texts are equal, different texts differ; a batch equals single calls", async () => {
    const texts = ["Once upon a time", "The cat sat on the mat", "Once upon a time"];
    const batch = await real.client.embeddings.create({
      model: MODEL,
      input: texts,
      encoding_format: "float",
    });
    expect(batch.data.map((item) => item.index)).toEqual([0, 1, 2]);
    const [first, second, third] = batch.data.map((item) => item.embedding);
    expect(first).toHaveLength(64);
    expect(first?.every((value) => Number.isFinite(value))).toBe(true);
    expect(third).toEqual(first);
    expect(second).not.toEqual(first);
    // Usage counts the tokens evaluated (the BOS token the model adds included).
    const tokenCounts = await Promise.all(texts.map(async (text) => (await tokensOf(text)).length + 1));
    expect(batch.usage.prompt_tokens).toBe(tokenCounts.reduce((sum, count) => sum + count, 0));
    expect(batch.usage.total_tokens).toBe(batch.usage.prompt_tokens);
    for (const [index, text] of texts.entries()) {
      expect(await floats(text)).toEqual([batch.data[index]?.embedding]);
    }
    // No encoding_format: the SDK asks for base64 and decodes it; float32 values survive exactly.
    const viaBase64 = await real.client.embeddings.create({ model: MODEL, input: texts });
    const decoded = viaBase64.data.map((item) => item.embedding);
    decoded.flat().forEach((value, index) => {
      expect(value).toBeCloseTo(batch.data.flatMap((item) => item.embedding)[index] ?? NaN, 6);
    });
    expect(decoded).toEqual(batch.data.map((item) => item.embedding));
  });

  it("token ids embed exactly like the text they tokenize", async () => {
    const text = "The little dog ran home";
    const tokens = await tokensOf(text);
    const [fromText] = await floats(text);
    expect(await floats(tokens)).toEqual([fromText]);
    expect(await floats([tokens, tokens])).toEqual([fromText, fromText]);
    // A token id outside the vocabulary (512 entries) is a 400 naming the token, not a native failure; one
    // input (not a list) is `input` itself, as the API's own checks name a malformed id (`[-1]` → input[0]).
    for (const [input, param] of [
      [[tokens, [1, 9999]], "input[1][1]"],
      [[1, 9999], "input[1]"],
    ] as const) {
      const bad = await real.post("/v1/embeddings", { model: MODEL, input });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { error: { param: string } }).error.param).toBe(param);
    }
  });

  it("refuses an input longer than the embedding context by name, short or far over, and keeps serving", async () => {
    const over = "Once ".repeat(2100); // > 2,047 tokens, tokenized whole
    const farOver = "Once ".repeat(12_000); // counted in slices first
    for (const [input, param] of [
      [["short", over], "input[1]"],
      [farOver, "input"],
    ] as const) {
      const response = await real.post("/v1/embeddings", { model: MODEL, input });
      expect(response.status).toBe(400);
      const error = ((await response.json()) as { error: { param: string; code: string; message: string } })
        .error;
      expect(error.param).toBe(param);
      expect(error.code).toBe("context_length_exceeded");
      expect(error.message).toContain("2047 tokens per input");
    }
    expect((await real.post("/v1/embeddings", { model: MODEL, input: "Once" })).status).toBe(200);
  });

  it("refuses more than 300,000 tokens summed over one request's inputs, naming input", async () => {
    const input = Array.from({ length: 160 }, () => "Once ".repeat(2000)); // each fits, ~320,000 in all
    const response = await real.post("/v1/embeddings", { model: MODEL, input });
    expect(response.status).toBe(400);
    const error = ((await response.json()) as { error: { param: string; code: string } }).error;
    expect(error).toMatchObject({ param: "input", code: "max_tokens_per_request" });
  });

  it("refuses dimensions other than the model's own length, saying why", async () => {
    const response = await real.post("/v1/embeddings", { model: MODEL, input: "a", dimensions: 32 });
    expect(response.status).toBe(400);
    const error = ((await response.json()) as { error: { param: string; message: string } }).error;
    expect(error.param).toBe("dimensions");
    expect(error.message).toContain("64-dimensional");
    expect((await real.post("/v1/embeddings", { model: MODEL, input: "a", dimensions: 64 })).status).toBe(
      200,
    );
  });

  it("Vercel AI SDK (@ai-sdk/openai-compatible): embed and embedMany give the openai SDK's vectors", async () => {
    const provider = createOpenAICompatible({
      name: "lmhost",
      baseURL: "http://lmhost.test/v1",
      fetch: async (url, init) => real.app.request(String(url), init as RequestInit),
    });
    const model = provider.embeddingModel(MODEL);
    const texts = ["Once upon a time", "The cat sat on the mat"];
    const expected = await floats(texts);
    const one = await embed({ model, value: texts[0] ?? "", maxRetries: 0 });
    expect(one.embedding).toEqual(expected[0]);
    const many = await embedMany({ model, values: texts, maxRetries: 0 });
    expect(many.embeddings).toEqual(expected);
    expect(many.usage.tokens).toBeGreaterThan(0);
  });

  it("generation is unaffected by embeddings running beside it", async () => {
    const request = {
      model: MODEL,
      input: "Tell me a story.",
      temperature: 0,
      seed: 7,
      max_output_tokens: 48,
    };
    const alone = await real.client.responses.create(request);
    const texts = Array.from({ length: 24 }, (_unused, index) => `Story number ${index} about a cat`);
    const [beside, embeddings] = await Promise.all([
      real.client.responses.create(request),
      real.client.embeddings.create({ model: MODEL, input: texts, encoding_format: "float" }),
    ]);
    expect(beside.output_text).toBe(alone.output_text);
    expect(embeddings.data).toHaveLength(texts.length);
    expect(embeddings.data[0]?.embedding).toEqual((await floats(texts[0] ?? ""))[0]);
  });
});

describe("one set of weights", () => {
  it("a model used for /v1/responses and /v1/embeddings is loaded once; unloading frees its embedding context", async () => {
    const load = vi.spyOn(LlamaModelLoader.prototype, "load");
    const own = await createRealApp();
    try {
      const generated = await own.post("/v1/responses", {
        model: MODEL,
        input: "Once",
        max_output_tokens: 4,
      });
      expect(generated.status).toBe(200);
      expect((await own.post("/v1/embeddings", { model: MODEL, input: ["a", "b"] })).status).toBe(200);
      expect(
        (await own.post("/v1/responses", { model: MODEL, input: "Once", max_output_tokens: 4 })).status,
      ).toBe(200);
      expect(load).toHaveBeenCalledTimes(1);
      const listed = (await (await own.app.request("http://lmhost.test/api/v0/models")).json()) as {
        data: { id: string; state: string }[];
      };
      expect(listed.data.filter((model) => model.state === "loaded").map((model) => model.id)).toEqual([
        MODEL,
      ]);
      const lease = await own.models.acquire(MODEL);
      const embeddings = await lease.loaded.embeddings;
      lease.release();
      if (embeddings === undefined) throw new Error("no embedding context on the loaded model");
      // The embedding context runs on the very LlamaModel the generation context runs on.
      expect(embeddings.context.model).toBe(lease.loaded.model);
      expect(lease.loaded.context.model).toBe(lease.loaded.model);
      expect(embeddings.pooling).toBe("none");
      expect(await own.models.unload(MODEL)).toBe(true);
      expect(embeddings.context.disposed).toBe(true);
      // It loads again on demand, embedding context included.
      expect((await own.post("/v1/embeddings", { model: MODEL, input: "a" })).status).toBe(200);
      expect(load).toHaveBeenCalledTimes(2);
    } finally {
      load.mockRestore();
      await own.close();
    }
  });

  it("a full embedding queue is a 429 with Retry-After, like generation's", async () => {
    const own = await createRealApp({ maxQueue: 0 });
    try {
      const body = { model: MODEL, input: Array.from({ length: 16 }, (_unused, index) => `text ${index}`) };
      const statuses = await Promise.all([
        own.post("/v1/embeddings", body),
        own.post("/v1/embeddings", body),
      ]);
      expect(statuses.map((response) => response.status).sort()).toEqual([200, 429]);
      const refused = statuses.find((response) => response.status === 429);
      expect(refused?.headers.get("retry-after")).toBe("1");
      expect(((await refused?.json()) as { error: { code: string } }).error.code).toBe("queue_full");
    } finally {
      await own.close();
    }
  });
});

describe("against a real server on loopback", () => {
  it("the openai SDK with its own fetch: float and base64", async () => {
    const server = await spawnServer(["--model", storiesModel]);
    try {
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const input = ["Once upon a time", "The cat"];
      const asFloats = await client.embeddings.create({ model: MODEL, input, encoding_format: "float" });
      const viaBase64 = await client.embeddings.create({ model: MODEL, input });
      expect(asFloats.data[0]?.embedding).toHaveLength(64);
      expect(viaBase64.data.map((item) => item.embedding)).toEqual(
        asFloats.data.map((item) => item.embedding),
      );
      expect(asFloats.data[0]?.embedding).not.toEqual(asFloats.data[1]?.embedding);
    } finally {
      await server.stop();
    }
  });
});
