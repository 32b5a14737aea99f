/**
 * A sliding-window model on the real engine: a Gemma 2 GGUF written by bench/make-model.ts (2 layers, dim
 * 64, random weights, a window of 32 tokens) into a temporary folder. Such a model cannot cut a sequence's
 * tail off its KV cache; node-llama-cpp keeps checkpoints of the sequence's state instead, and without a
 * bound it keeps up to 32 a sequence (Gemma 3 4B: ~170 MiB each). The loader bounds them by what the memory
 * budget leaves after the context (context-length.ts, checkpointBytesPerSequence); follow-up turns must
 * still evaluate only their new tokens.
 */
import type { LlamaContextSequence } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import { LlamaEngine } from "../../src/engine/llama/engine.js";
import { LlamaModelLoader, type LlamaModelLoaderOptions } from "../../src/engine/llama/loader.js";
import type { EngineRequest } from "../../src/engine/types.js";
import type { ModelEntry } from "../../src/models/types.js";
import { useGeneratedModel } from "../helpers/generated-model.js";

const window = 32;
const generated = useGeneratedModel(
  { layers: 2, dim: 64, ffn: 128, heads: 4, contextLength: 4096, slidingWindow: window },
  "lmhost-sliding-",
);

const entry = (): ModelEntry => ({
  id: "sliding",
  path: generated.modelPath,
  sizeBytes: 0,
  publisher: "test",
});

interface Turn {
  inputTokens: number;
  /** What lmhost reported as cached (the prefix the sequence held). */
  cachedInputTokens: number;
  /** Prompt tokens node-llama-cpp really evaluated (its token meter), not what lmhost predicted. */
  evaluatedInputTokens: number;
  checkpointBytes: number;
}

/**
 * A conversation of six turns on one sequence: each prompt is the previous one, its answer (8 tokens) and
 * a new user message. The answer's tokens as rendered again need not be the tokens generated, so
 * node-llama-cpp may go back over a few of them, which needs a checkpoint.
 */
async function sixTurns(
  options: Partial<LlamaModelLoaderOptions>,
): Promise<{ turns: Turn[]; described: string }> {
  const loader = new LlamaModelLoader({
    llama: generated.llama,
    threads: 1,
    parallel: 1,
    warmup: false,
    ...options,
  });
  const loaded = await loader.load(entry());
  try {
    const engine = new LlamaEngine({
      models: { acquire: async () => ({ entry: loaded.entry, loaded, release: () => undefined }) },
    });
    const sequence = loaded.sequences[0]!;
    const items: EngineRequest["items"] = [];
    const turns: Turn[] = [];
    for (let turn = 0; turn < 6; turn++) {
      items.push({
        type: "message",
        role: "user",
        text: `Tell me about the cat number ${turn} in the garden.`,
      });
      const before = sequence.tokenMeter.getState().usedInputTokens;
      let inputTokens = 0;
      let cachedInputTokens = 0;
      let answer = "";
      for await (const part of engine.generate(
        { model: "sliding", items: [...items], sampling: { maxTokens: 8, temperature: 0, seed: 1 } },
        new AbortController().signal,
      )) {
        if (part.type === "text-delta") answer += part.text;
        if (part.type === "finish") ({ inputTokens, cachedInputTokens } = part.usage);
      }
      items.push({ type: "message", role: "assistant", text: answer });
      // LlamaChat takes its end-of-generation checkpoint without waiting for it; this one queues behind it
      // on the context's lock and, finding one at the same position, takes none (a barrier, not a copy).
      await sequence.takeCheckpoint();
      turns.push({
        inputTokens,
        cachedInputTokens,
        evaluatedInputTokens: sequence.tokenMeter.getState().usedInputTokens - before,
        checkpointBytes: sequence.checkpointsMemoryUsage,
      });
    }
    return { turns, described: loader.describe(loaded) };
  } finally {
    await loader.unload(loaded);
  }
}

/** One generation on `engine` over `sequence`: lmhost's usage and what node-llama-cpp really evaluated. */
async function turn(
  engine: LlamaEngine,
  sequence: LlamaContextSequence,
  items: EngineRequest["items"],
  maxTokens = 8,
): Promise<{ inputTokens: number; cachedInputTokens: number; evaluatedInputTokens: number }> {
  const before = sequence.tokenMeter.getState().usedInputTokens;
  let usage = { inputTokens: 0, cachedInputTokens: 0 };
  for await (const part of engine.generate(
    { model: "sliding", items, sampling: { maxTokens, temperature: 0, seed: 1 } },
    new AbortController().signal,
  ))
    if (part.type === "finish") usage = part.usage;
  return {
    inputTokens: usage.inputTokens,
    cachedInputTokens: usage.cachedInputTokens,
    evaluatedInputTokens: sequence.tokenMeter.getState().usedInputTokens - before,
  };
}

describe("a sliding-window model", () => {
  it("keeps its KV checkpoints within the memory budget, and follow-ups evaluate only their new tokens", async () => {
    const [contextBytes = 0] = await generated.estimates([4096, 1]);
    const model = await generated.llama.loadModel({ modelPath: generated.modelPath });
    expect(model.fileInsights.swaSize).toBe(window);
    await model.dispose();

    // A budget that holds the context and nothing more: one checkpoint, the newest, is kept.
    const bounded = await sixTurns({ contextMemoryBudgetBytes: contextBytes });
    expect(bounded.described).toContain(
      `KV checkpoints (a sliding window of ${window} tokens) up to 0 MiB a sequence, the newest always kept`,
    );
    const one = bounded.turns[0]!.checkpointBytes;
    expect(one).toBeGreaterThan(0);
    for (const turn of bounded.turns) expect(turn.checkpointBytes).toBeLessThanOrEqual(one * 1.5);
    // Each follow-up reuses the previous prompt, and node-llama-cpp evaluates only what lmhost reports as
    // not cached: `cached_tokens` stays true with one checkpoint.
    for (const [index, turn] of bounded.turns.entries()) {
      if (index === 0) continue;
      expect(turn.cachedInputTokens).toBeGreaterThanOrEqual(bounded.turns[index - 1]!.inputTokens);
      expect(turn.evaluatedInputTokens).toBeGreaterThan(0);
      expect(turn.evaluatedInputTokens).toBeLessThanOrEqual(turn.inputTokens - turn.cachedInputTokens);
    }

    // With room to spare (a 1 GiB budget on top of the context), node-llama-cpp keeps one more each turn:
    // what the bound above stops.
    const roomy = await sixTurns({ contextMemoryBudgetBytes: contextBytes + 2 ** 30 });
    expect(roomy.described).toContain("up to 1024 MiB a sequence");
    expect(roomy.turns.at(-1)!.checkpointBytes).toBeGreaterThan(one * 4);
    expect(roomy.turns.map((turn) => turn.evaluatedInputTokens)).toEqual(
      bounded.turns.map((turn) => turn.evaluatedInputTokens),
    );
  });

  it("reports as cached only the prefix the sequence can go back to", async () => {
    const loader = new LlamaModelLoader({ llama: generated.llama, threads: 1, parallel: 1, warmup: false });
    const loaded = await loader.load(entry());
    try {
      const engine = new LlamaEngine({
        models: { acquire: async () => ({ entry: loaded.entry, loaded, release: () => undefined }) },
      });
      const sequence = loaded.sequences[0]!;
      // reusablePrefix reads node-llama-cpp 3.21.1's checkpoint list where it keeps it (else it falls back
      // to the public estimate, which looks at the newest checkpoint only): an upgrade that moves it fails here.
      expect(
        Array.isArray(
          (sequence as unknown as { _checkpoints?: { _checkpoints?: unknown } })._checkpoints?._checkpoints,
        ),
      ).toBe(true);
      const instructions = {
        type: "message",
        role: "system",
        text: "You are a helpful storyteller who likes cats. ".repeat(20),
      } as const;
      const ask = (text: string) => [instructions, { type: "message", role: "user", text } as const];
      // A conversation whose message (~1,200 tokens) takes the KV cache far past the instructions.
      await turn(engine, sequence, ask("Tell me about the dogs in the park today. ".repeat(60)));
      // A new one sharing the instructions: the sequence cannot go back to them (no checkpoint there, and
      // the window's cells are long gone), so node-llama-cpp evaluates it all and nothing is cached.
      const other = await turn(engine, sequence, ask("What about the birds?"));
      expect(other.evaluatedInputTokens).toBeGreaterThanOrEqual(other.inputTokens - 1);
      expect(other.cachedInputTokens).toBe(0);
      // The same again: now the sequence holds it, a few answer tokens past (within the window's cells).
      const again = await turn(engine, sequence, ask("What about the birds?"));
      expect(again.cachedInputTokens).toBeGreaterThan(again.inputTokens - 16);
      expect(again.evaluatedInputTokens).toBeLessThanOrEqual(again.inputTokens - again.cachedInputTokens);
      // An answer longer than the window's cells (~800 here), then the same prompt again (a regenerated
      // answer): LlamaChat evaluates the prompt's last token again, so it goes back one token before the
      // checkpoint it took there, which is pruned; lmhost must not count the whole prompt as kept.
      const question = ask("Sing me a song.");
      await turn(engine, sequence, question, 1200);
      const regenerated = await turn(engine, sequence, question, 1200);
      expect(regenerated.evaluatedInputTokens).toBeLessThanOrEqual(
        regenerated.inputTokens - regenerated.cachedInputTokens,
      );
    } finally {
      await loader.unload(loaded);
    }
  });
});
