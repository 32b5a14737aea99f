/**
 * How the loader chooses a context length per sequence (src/engine/llama/context-length.ts): a length the
 * user set is taken as it is (capped at the training context); otherwise the longest default step that
 * fits the memory budget, never more than the model was trained for; and what the log, the load error and
 * the overflow hint say for each.
 */
import { describe, expect, it } from "vitest";
import {
  checkpointBytesPerSequence,
  chooseContextLength,
  contextMemoryBudget,
  describeContextLength,
  moreContextHint,
  refusedContextAdvice,
  sequenceCountsFor,
  type ContextLengthChoice,
} from "../../src/engine/llama/context-length.js";

const GiB = 2 ** 30;
/** 1 MiB per token per sequence × 4 sequences, like a wide KV cache. */
const bytesFor = (contextLength: number) => contextLength * 4 * 2 ** 20;
const flag = (contextLength: number) => ({ contextLength, setBy: "flag" as const });

describe("chooseContextLength", () => {
  it("takes a length the user set, capped at the training context (with one --parallel count, whatever the memory)", async () => {
    expect(
      await chooseContextLength({
        sequenceCounts: [4],
        trained: 131072,
        requested: flag(65536),
        bytesFor,
        budgetBytes: 1,
      }),
    ).toEqual({
      contextLength: 65536,
      sequences: 4,
      reason: "requested",
      setBy: "flag",
      bytes: bytesFor(65536),
    });
    expect(
      await chooseContextLength({
        sequenceCounts: [4],
        trained: 2048,
        requested: { contextLength: 65536, setBy: "model" },
        bytesFor,
        budgetBytes: 1,
      }),
    ).toMatchObject({ contextLength: 2048, reason: "requested", setBy: "model" });
  });

  it("stops at 32,768 for a model trained for more, when that fits", async () => {
    expect(
      await chooseContextLength({ sequenceCounts: [4], trained: 131072, bytesFor, budgetBytes: 1000 * GiB }),
    ).toEqual({
      contextLength: 32768,
      sequences: 4,
      reason: "default",
      bytes: bytesFor(32768),
    });
  });

  it("takes the whole training context up to 32,768 when it fits", async () => {
    expect(
      await chooseContextLength({ sequenceCounts: [4], trained: 20000, bytesFor, budgetBytes: 1000 * GiB }),
    ).toMatchObject({
      contextLength: 20000,
      reason: "trained",
    });
    expect(
      await chooseContextLength({ sequenceCounts: [4], trained: 2048, bytesFor, budgetBytes: 1000 * GiB }),
    ).toMatchObject({
      contextLength: 2048,
      reason: "trained",
    });
  });

  it("steps down to the longest length within the budget", async () => {
    // 16,384 × 4 MiB = 64 GiB fits a 100 GiB budget, 32,768 (128 GiB) does not.
    expect(
      await chooseContextLength({ sequenceCounts: [4], trained: 131072, bytesFor, budgetBytes: 100 * GiB }),
    ).toEqual({
      contextLength: 16384,
      sequences: 4,
      reason: "memory",
      bytes: 64 * GiB,
    });
    expect(
      await chooseContextLength({ sequenceCounts: [4], trained: 131072, bytesFor, budgetBytes: 20 * GiB }),
    ).toMatchObject({
      contextLength: 4096,
      reason: "memory",
    });
  });

  it("falls back to the shortest step when none fits (node-llama-cpp then decides)", async () => {
    expect(
      await chooseContextLength({ sequenceCounts: [4], trained: 131072, bytesFor, budgetBytes: GiB }),
    ).toMatchObject({
      contextLength: 4096,
      reason: "minimum",
    });
    expect(
      await chooseContextLength({ sequenceCounts: [4], trained: 512, bytesFor, budgetBytes: 1 }),
    ).toMatchObject({
      contextLength: 512,
      reason: "minimum",
    });
  });

  it("takes an async estimate", async () => {
    const estimate = async (contextLength: number) => bytesFor(contextLength);
    expect(
      await chooseContextLength({
        sequenceCounts: [4],
        trained: 131072,
        bytesFor: estimate,
        budgetBytes: 40 * GiB,
      }),
    ).toMatchObject({
      contextLength: 8192,
      reason: "memory",
    });
  });
});

describe("fewer sequences when --parallel is lmhost's default", () => {
  // An 8B model's KV cache: 128 KiB a token per sequence.
  const kv = (contextLength: number, sequences: number) => contextLength * sequences * 128 * 2 ** 10;
  /** The choice for such a model (trained for 131,072 unless said), --parallel unset (4, 2 or 1 sequences). */
  const choose = (budgetBytes: number, options: { trained?: number; setLength?: number } = {}) =>
    chooseContextLength({
      trained: options.trained ?? 131072,
      ...(options.setLength === undefined
        ? {}
        : { requested: { contextLength: options.setLength, setBy: "flag" } }),
      sequenceCounts: [4, 2, 1],
      bytesFor: kv,
      budgetBytes,
    });

  it("keeps 4 sequences while each gets 16,384 tokens", async () => {
    expect(await choose(8 * GiB)).toMatchObject({ contextLength: 16384, sequences: 4, reason: "memory" });
  });

  it("takes 2 or 1 sequences before going under 16,384 (a 16 GiB machine's 4 GiB budget)", async () => {
    const choice = await choose(4 * GiB);
    expect(choice).toMatchObject({ contextLength: 16384, sequences: 2, reason: "memory", fewerThan: 4 });
    expect(describeContextLength(choice, 131072)).toBe(
      "context 16,384 tokens per sequence × 2 (not 4: each would get less than 16,384; --parallel sets it) " +
        "(4.0 GiB): a longer one would take more than a quarter of this machine's memory or 80% of what is " +
        "free (trained for 131,072; --context-length sets it)",
    );
    expect(await choose(3 * GiB)).toMatchObject({ contextLength: 16384, sequences: 1, fewerThan: 4 });
  });

  it("takes the longest context any count gives when none reaches 16,384", async () => {
    expect(await choose(1.5 * GiB)).toMatchObject({ contextLength: 8192, sequences: 1 });
  });

  it("keeps every sequence for a model trained for less than 16,384 that fits", async () => {
    expect(await choose(4 * GiB, { trained: 4096 })).toMatchObject({
      contextLength: 4096,
      sequences: 4,
      reason: "trained",
    });
  });

  it("fits the sequences to a length the user set", async () => {
    expect(await choose(9 * GiB, { setLength: 32768 })).toMatchObject({
      contextLength: 32768,
      sequences: 2,
      reason: "requested",
      fewerThan: 4,
    });
  });

  it("takes a --parallel the user set as it is", async () => {
    expect(
      await chooseContextLength({ trained: 131072, sequenceCounts: [4], bytesFor: kv, budgetBytes: 4 * GiB }),
    ).toMatchObject({ contextLength: 8192, sequences: 4 });
  });

  it("says why fewer were taken, and leaves out --parallel once there is one sequence", async () => {
    const forLength = await choose(9 * GiB, { setLength: 32768 });
    expect(describeContextLength(forLength, 131072)).toMatch(
      /× 2 \(not 4: as many of this length would take more than a quarter of the memory; --parallel sets it\)/,
    );
    const short = await choose(1.5 * GiB);
    expect(describeContextLength(short, 131072)).toMatch(
      /× 1 \(not 4: too little memory for more; --parallel sets it\)/,
    );
    expect(moreContextHint(short, 8192, 131072)).toMatch(
      /start lmhost with a longer --context-length for more \(it may not fit\)\.$/,
    );
    expect(refusedContextAdvice(short)).toMatch(/set a shorter --context-length$/);
  });

  it("halves the default count down to 1", () => {
    expect(sequenceCountsFor(4, false)).toEqual([4, 2, 1]);
    expect(sequenceCountsFor(6, false)).toEqual([6, 3, 1]);
    expect(sequenceCountsFor(4, true)).toEqual([4]);
  });
});

describe("contextMemoryBudget", () => {
  it("is a quarter of the memory, at most 80% of what is free besides the weights", () => {
    expect(contextMemoryBudget(0, { total: 24 * GiB, free: 20 * GiB })).toBe(6 * GiB);
    expect(contextMemoryBudget(0, { total: 24 * GiB, free: 5 * GiB })).toBe(4 * GiB);
    expect(contextMemoryBudget(3 * GiB, { total: 24 * GiB, free: 8 * GiB })).toBe(4 * GiB);
    expect(contextMemoryBudget(9 * GiB, { total: 24 * GiB, free: 8 * GiB })).toBe(0);
  });
});

describe("checkpointBytesPerSequence", () => {
  it("shares what the budget leaves after the context among the sequences, never below 0", () => {
    const choice = (bytes: number, sequences: number): ContextLengthChoice => ({
      contextLength: 16384,
      sequences,
      reason: "default",
      bytes,
    });
    expect(checkpointBytesPerSequence(4 * GiB, choice(2 * GiB, 4))).toBe(GiB / 2);
    expect(checkpointBytesPerSequence(4 * GiB, choice(3 * GiB, 1))).toBe(GiB);
    // A set length over the budget, or a step-down (whose budget is then its own context): nothing left.
    expect(checkpointBytesPerSequence(4 * GiB, choice(5 * GiB, 2))).toBe(0);
    expect(checkpointBytesPerSequence(3, choice(3, 1))).toBe(0);
  });
});

describe("what the choice says", () => {
  const choice = (fields: Partial<ContextLengthChoice>): ContextLengthChoice => ({
    contextLength: 16384,
    sequences: 4,
    reason: "memory",
    bytes: 3 * GiB,
    ...fields,
  });

  it("in the load's log line: why, and how to change it", () => {
    expect(describeContextLength(choice({}), 131072)).toBe(
      "context 16,384 tokens per sequence × 4 (3.0 GiB): a longer one would take more than a quarter of this " +
        "machine's memory or 80% of what is free (trained for 131,072; --context-length sets it)",
    );
    expect(
      describeContextLength(choice({ contextLength: 32768, reason: "default", sequences: 2 }), 131072),
    ).toBe(
      "context 32,768 tokens per sequence × 2 (3.0 GiB); trained for 131,072, --context-length sets more",
    );
    expect(
      describeContextLength(choice({ contextLength: 2048, reason: "requested", setBy: "model" }), 4096),
    ).toBe("context 2,048 tokens per sequence × 4 (3.0 GiB), set by config.json");
  });

  it("in a context_length_exceeded: the lever that gives more", () => {
    expect(moreContextHint(choice({ reason: "requested", setBy: "model" }), 16384, 131072)).toBe(
      "lmhost runs this model with 16384 tokens per sequence (it was trained for 131072): a longer contextLength for it in lmhost's config.json gives more.",
    );
    expect(moreContextHint(choice({ reason: "default" }), 32768, 131072)).toMatch(
      /: start lmhost with a longer --context-length for more\.$/,
    );
    expect(moreContextHint(choice({}), 16384, 131072)).toMatch(
      /, what fits in memory: start lmhost with a longer --context-length and fewer --parallel sequences for more\.$/,
    );
  });

  it("in a refused load: what was asked, by whom, and what to lower", () => {
    expect(refusedContextAdvice(choice({ reason: "requested", setBy: "flag" }))).toBe(
      "16,384 tokens per sequence × 4 sequences (as --context-length sets it); set a shorter --context-length or fewer --parallel sequences",
    );
    expect(refusedContextAdvice(choice({ reason: "requested", setBy: "model", sequences: 2 }))).toBe(
      "16,384 tokens per sequence × 2 sequences (as config.json sets it for this model); set a shorter contextLength for this model in config.json or fewer --parallel sequences",
    );
    expect(refusedContextAdvice(choice({ contextLength: 4096 }))).toMatch(/\(lmhost's shortest default\)/);
  });
});
