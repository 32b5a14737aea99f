/**
 * How the loader chooses a context length per sequence (src/engine/llama/context-length.ts): a length the
 * user set is taken as it is (capped at the training context); otherwise the longest default step that
 * fits the memory budget, never more than the model was trained for.
 */
import { describe, expect, it } from "vitest";
import {
  chooseContextLength,
  contextMemoryBudget,
  describeContextLength,
} from "../../src/engine/llama/context-length.js";

const GiB = 2 ** 30;
/** 1 MiB per token per sequence × 4 sequences, like a wide KV cache. */
const bytesFor = (contextLength: number) => contextLength * 4 * 2 ** 20;

describe("chooseContextLength", () => {
  it("takes a length the user set, capped at the training context, whatever the memory", () => {
    expect(chooseContextLength({ trained: 131072, requested: 65536, bytesFor, budgetBytes: 1 })).toEqual({
      contextLength: 65536,
      reason: "requested",
      bytes: bytesFor(65536),
    });
    expect(chooseContextLength({ trained: 2048, requested: 65536, bytesFor, budgetBytes: 1 })).toMatchObject({
      contextLength: 2048,
      reason: "requested",
    });
  });

  it("stops at 32,768 for a model trained for more, when that fits", () => {
    expect(chooseContextLength({ trained: 131072, bytesFor, budgetBytes: 1000 * GiB })).toEqual({
      contextLength: 32768,
      reason: "default",
      bytes: bytesFor(32768),
    });
  });

  it("takes the whole training context up to 32,768 when it fits", () => {
    expect(chooseContextLength({ trained: 20000, bytesFor, budgetBytes: 1000 * GiB })).toMatchObject({
      contextLength: 20000,
      reason: "trained",
    });
    expect(chooseContextLength({ trained: 2048, bytesFor, budgetBytes: 1000 * GiB })).toMatchObject({
      contextLength: 2048,
      reason: "trained",
    });
  });

  it("steps down to the longest length within the budget", () => {
    // 16,384 × 4 MiB = 64 GiB fits a 100 GiB budget, 32,768 (128 GiB) does not.
    expect(chooseContextLength({ trained: 131072, bytesFor, budgetBytes: 100 * GiB })).toEqual({
      contextLength: 16384,
      reason: "memory",
      bytes: 64 * GiB,
    });
    expect(chooseContextLength({ trained: 131072, bytesFor, budgetBytes: 20 * GiB })).toMatchObject({
      contextLength: 4096,
      reason: "memory",
    });
  });

  it("falls back to the shortest step when none fits (node-llama-cpp then decides)", () => {
    expect(chooseContextLength({ trained: 131072, bytesFor, budgetBytes: GiB })).toMatchObject({
      contextLength: 4096,
      reason: "minimum",
    });
    expect(chooseContextLength({ trained: 512, bytesFor, budgetBytes: 1 })).toMatchObject({
      contextLength: 512,
      reason: "minimum",
    });
  });
});

describe("contextMemoryBudget", () => {
  it("is a quarter of the memory, at most 80% of what is free", () => {
    expect(contextMemoryBudget({ total: 24 * GiB, free: 20 * GiB })).toBe(6 * GiB);
    expect(contextMemoryBudget({ total: 24 * GiB, free: 5 * GiB })).toBe(4 * GiB);
  });
});

describe("describeContextLength", () => {
  it("says why a length was chosen and how to change it", () => {
    const memory = describeContextLength(
      { contextLength: 16384, reason: "memory", bytes: 3 * GiB },
      4,
      131072,
    );
    expect(memory).toBe(
      "context 16,384 tokens per sequence × 4 (3.0 GiB): a longer one would take more than a quarter of this " +
        "machine's memory or 80% of what is free (trained for 131,072; --context-length sets it)",
    );
    expect(describeContextLength({ contextLength: 32768, reason: "default" }, 2, 131072)).toBe(
      "context 32,768 tokens per sequence × 2; trained for 131,072, --context-length sets more",
    );
    expect(describeContextLength({ contextLength: 2048, reason: "requested" }, 4, 4096)).toBe(
      "context 2,048 tokens per sequence × 4",
    );
  });
});
