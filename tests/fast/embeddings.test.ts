/**
 * POST /v1/embeddings on the scripted engine (hash-derived vectors): the wire shape through the official
 * openai SDK (float, base64 decoded by the SDK, base64 as sent), the bad-input table (each body → status and
 * the field it names), and the server's guards (API key, body limit, request ids) on this route.
 */
import { describe, expect, it } from "vitest";
import { scriptedEmbedding, scriptedEmbeddingDimensions } from "../../src/engine/scripted/scripted-engine.js";
import { createFastApp, TEST_MODEL } from "../helpers/fast-app.js";

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

describe("POST /v1/embeddings (scripted engine)", () => {
  it("answers OpenAI's shape: one embedding per input, in order, with usage", async () => {
    const { client } = createFastApp();
    const result = await client.embeddings.create({
      model: TEST_MODEL,
      input: ["the cat sat", "a dog"],
      encoding_format: "float",
    });
    expect(result.object).toBe("list");
    expect(result.model).toBe(TEST_MODEL);
    expect(result.data.map((item) => [item.object, item.index])).toEqual([
      ["embedding", 0],
      ["embedding", 1],
    ]);
    expect(result.data[0]?.embedding).toEqual(scriptedEmbedding("the cat sat"));
    expect(result.data[1]?.embedding).toEqual(scriptedEmbedding("a dog"));
    // Scripted tokens are words.
    expect(result.usage).toEqual({ prompt_tokens: 5, total_tokens: 5 });
  });

  it("encodes base64 as little-endian float32: the SDK's default decoding and a manual decoding equal the floats", async () => {
    const { client } = createFastApp();
    const input = ["one", "two words", "three little words"];
    const floats = await client.embeddings.create({ model: TEST_MODEL, input, encoding_format: "float" });
    // No encoding_format: the SDK asks for base64 and decodes it itself.
    const decodedBySdk = await client.embeddings.create({ model: TEST_MODEL, input });
    expect(decodedBySdk.data.map((item) => item.embedding)).toEqual(
      floats.data.map((item) => item.embedding),
    );
    const raw = await client.embeddings.create({ model: TEST_MODEL, input, encoding_format: "base64" });
    const decoded = raw.data.map((item) => {
      const bytes = Buffer.from(item.embedding as unknown as string, "base64");
      expect(bytes.length).toBe(scriptedEmbeddingDimensions * 4);
      return Array.from({ length: bytes.length / 4 }, (_unused, index) => bytes.readFloatLE(index * 4));
    });
    expect(decoded).toEqual(floats.data.map((item) => item.embedding));
  });

  it("takes a string, a token array and token arrays; equal inputs give equal vectors", async () => {
    const { post } = createFastApp();
    const embed = async (input: unknown) => {
      const response = await post("/v1/embeddings", { model: TEST_MODEL, input });
      expect(response.status).toBe(200);
      return (await response.json()) as {
        data: { embedding: number[] }[];
        usage: { prompt_tokens: number };
      };
    };
    const single = await embed("hello there");
    expect(single.data).toHaveLength(1);
    expect((await embed(["hello there"])).data[0]?.embedding).toEqual(single.data[0]?.embedding);
    const tokens = await embed([5, 6, 7]);
    expect(tokens.data[0]?.embedding).toEqual(scriptedEmbedding([5, 6, 7]));
    expect(tokens.usage.prompt_tokens).toBe(3);
    const lists = await embed([[5, 6, 7], [8]]);
    expect(lists.data.map((item) => item.embedding)).toEqual([
      scriptedEmbedding([5, 6, 7]),
      scriptedEmbedding([8]),
    ]);
    expect(single.data[0]?.embedding).not.toEqual(tokens.data[0]?.embedding);
  });

  it("accepts user, ttl, null optional fields and dimensions equal to the model's length", async () => {
    const { post } = createFastApp();
    const response = await post("/v1/embeddings", {
      model: TEST_MODEL,
      input: "x",
      user: "someone",
      ttl: 60,
      encoding_format: null,
      dimensions: scriptedEmbeddingDimensions,
    });
    expect(response.status).toBe(200);
  });

  const tooMany = Array.from({ length: 2049 }, () => "a");
  const longText = Array.from({ length: 9 }, () => "word").join(" ");
  const table: { name: string; body: Record<string, unknown>; status: number; param: string | null }[] = [
    { name: "empty string", body: { input: "" }, status: 400, param: "input" },
    { name: "empty array", body: { input: [] }, status: 400, param: "input" },
    { name: "missing input", body: {}, status: 400, param: "input" },
    { name: "null input", body: { input: null }, status: 400, param: "input" },
    { name: "a number", body: { input: 42 }, status: 400, param: "input" },
    { name: "an object", body: { input: { text: "a" } }, status: 400, param: "input" },
    { name: "too many items", body: { input: tooMany }, status: 400, param: "input" },
    { name: "an empty string item", body: { input: ["a", "b", "c", ""] }, status: 400, param: "input[3]" },
    { name: "a number among strings", body: { input: ["a", 3] }, status: 400, param: "input[1]" },
    { name: "a string among token ids", body: { input: [1, "x"] }, status: 400, param: "input[1]" },
    { name: "a fractional token id", body: { input: [1, 2.5] }, status: 400, param: "input[1]" },
    { name: "a negative token id", body: { input: [-1] }, status: 400, param: "input[0]" },
    { name: "an empty token array", body: { input: [[1, 2], []] }, status: 400, param: "input[1]" },
    { name: "a bad id in a token array", body: { input: [[1], [1, -2]] }, status: 400, param: "input[1]" },
    { name: "a string among token arrays", body: { input: [[1], "a"] }, status: 400, param: "input[1]" },
    { name: "input over the context", body: { input: longText }, status: 400, param: "input" },
    {
      name: "an item over the context",
      body: { input: ["a", "b", "c", longText] },
      status: 400,
      param: "input[3]",
    },
    {
      name: "token ids over the context",
      body: { input: [1, 2, 3, 4, 5, 6, 7, 8, 9] },
      status: 400,
      param: "input",
    },
    { name: "missing model", body: { model: undefined, input: "a" }, status: 400, param: "model" },
    { name: "unknown model", body: { model: "nobody/nothing", input: "a" }, status: 404, param: "model" },
    {
      name: "unknown format",
      body: { input: "a", encoding_format: "int8" },
      status: 400,
      param: "encoding_format",
    },
    { name: "dimensions", body: { input: "a", dimensions: 8 }, status: 400, param: "dimensions" },
    { name: "zero dimensions", body: { input: "a", dimensions: 0 }, status: 400, param: "dimensions" },
    { name: "dimensions as text", body: { input: "a", dimensions: "8" }, status: 400, param: "dimensions" },
    { name: "user not a string", body: { input: "a", user: 5 }, status: 400, param: "user" },
    { name: "an unknown field", body: { input: "a", stream: true }, status: 400, param: "stream" },
  ];

  it.each(table)("refuses $name: $status naming $param", async ({ body, status, param }) => {
    const { post } = createFastApp({ contextLength: 8 });
    const response = await post("/v1/embeddings", { model: TEST_MODEL, ...body });
    expect(response.status).toBe(status);
    const error = ((await response.json()) as ErrorBody).error;
    expect(error.param).toBe(param);
    expect(error.type).toBe("invalid_request_error");
    expect(error.message.length).toBeGreaterThan(10);
  });

  it("says why dimensions cannot be honoured", async () => {
    const { post } = createFastApp();
    const response = await post("/v1/embeddings", { model: TEST_MODEL, input: "a", dimensions: 8 });
    const error = ((await response.json()) as ErrorBody).error;
    expect(error.message).toContain(`${scriptedEmbeddingDimensions}-dimensional`);
    expect(error.message).toContain("cannot shorten");
  });

  it("keeps serving after bad input", async () => {
    const { post } = createFastApp();
    expect((await post("/v1/embeddings", { model: TEST_MODEL, input: [] })).status).toBe(400);
    expect((await post("/v1/embeddings", { model: TEST_MODEL, input: "ok" })).status).toBe(200);
  });

  it("answers 503 once the server is shutting down", async () => {
    const shutdown = new AbortController();
    const { post } = createFastApp({ shutdownSignal: shutdown.signal });
    expect((await post("/v1/embeddings", { model: TEST_MODEL, input: "a" })).status).toBe(200);
    shutdown.abort(new Error("lmhost is shutting down"));
    const response = await post("/v1/embeddings", { model: TEST_MODEL, input: "a" });
    expect(response.status).toBe(503);
    expect(((await response.json()) as ErrorBody).error.code).toBe("server_shutting_down");
  });

  it("is behind --api-key, the body limit and request ids like every /v1 route", async () => {
    const guarded = createFastApp({ config: { apiKey: "sekret", bodyLimitBytes: 2000 } });
    const body = { model: TEST_MODEL, input: "a" };
    const noKey = await guarded.post("/v1/embeddings", body);
    expect(noKey.status).toBe(401);
    const withKey = await guarded.request("/v1/embeddings", {
      body,
      headers: { authorization: "Bearer sekret", "x-request-id": "req_embed_1" },
    });
    expect(withKey.status).toBe(200);
    expect(withKey.headers.get("x-request-id")).toBe("req_embed_1");
    const tooLarge = await guarded.request("/v1/embeddings", {
      body: { model: TEST_MODEL, input: "a ".repeat(2000) },
      headers: { authorization: "Bearer sekret" },
    });
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.headers.get("x-request-id")).toMatch(/^req_/);
  });
});
