/**
 * The embedding context's size when memory is short (src/engine/llama/embeddings.ts): node-llama-cpp refuses
 * a context that does not fit with InsufficientMemoryError, and lmhost then tries shorter ones (4,096 down to
 * 512 tokens) instead of failing the request, and answers 503 (retry) when not even that fits. A stand-in model refuses contexts over a given size; real
 * embedding contexts are created in tests/real (embeddings on the real engine), where memory is plentiful.
 */
import { InsufficientMemoryError, type LlamaModel } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import { createModelEmbeddings } from "../../src/engine/llama/embeddings.js";
import { ApiError } from "../../src/shared/errors.js";

/** A mean-pooled, non-causal embedding model (BERT-like) that has memory for contexts up to `fits` tokens. */
function modelWithRoomFor(fits: number) {
  const attempts: { contextSize: number; batchSize?: number | undefined }[] = [];
  const model = {
    fileInfo: {
      metadata: {
        general: { architecture: "bert" },
        bert: { pooling_type: 1, attention: { causal: false } },
        tokenizer: { ggml: { tokens: ["a", "b", "c"] } },
      },
    },
    embeddingVectorSize: 8,
    createEmbeddingContext: async (options: { contextSize: number; batchSize?: number }) => {
      attempts.push({ contextSize: options.contextSize, batchSize: options.batchSize });
      if (options.contextSize > fits)
        throw new InsufficientMemoryError(
          "A context size of this many tokens is too large for the available RAM",
        );
      return { dispose: async () => undefined };
    },
  };
  return { model: model as unknown as LlamaModel, attempts };
}

describe("createModelEmbeddings under memory pressure", () => {
  it("steps down to the longest context that fits, its batch as long (pooled inputs go in one batch)", async () => {
    const { model, attempts } = modelWithRoomFor(1024);
    const embeddings = await createModelEmbeddings(model, { contextLength: 8192, threads: 1, maxQueue: 4 });
    expect(attempts).toEqual([
      { contextSize: 8192, batchSize: 8192 },
      { contextSize: 4096, batchSize: 4096 },
      { contextSize: 2048, batchSize: 2048 },
      { contextSize: 1024, batchSize: 1024 },
    ]);
    expect(embeddings.maxInputTokens).toBe(1023);
  });

  it("takes the first size when it fits, and starts from the generation context when that is shorter", async () => {
    const roomy = modelWithRoomFor(1_000_000);
    expect(
      (await createModelEmbeddings(roomy.model, { contextLength: 8192, threads: 1, maxQueue: 4 }))
        .maxInputTokens,
    ).toBe(8191);
    expect(roomy.attempts).toHaveLength(1);
    const short = modelWithRoomFor(256);
    await expect(
      createModelEmbeddings(short.model, { contextLength: 3000, threads: 1, maxQueue: 4 }),
    ).rejects.toThrow(ApiError);
    expect(short.attempts.map((attempt) => attempt.contextSize)).toEqual([3000, 2048, 1024, 512]);
  });

  it("is a 503 to retry, naming the shortest size tried, when none fits", async () => {
    const { model } = modelWithRoomFor(100);
    const error = await createModelEmbeddings(model, { contextLength: 8192, threads: 1, maxQueue: 4 }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(503);
    expect((error as ApiError).code).toBe("insufficient_memory");
    expect((error as ApiError).message).toMatch(/not even 512 tokens fit in what is left/);
  });
});
