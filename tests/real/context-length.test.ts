/**
 * The context length a real load gets (src/engine/llama/context-length.ts) on a model whose GGUF says it
 * was trained for 16,777,216 tokens (written by bench/make-model.ts: 2 layers, dim 256, random weights,
 * into a temporary folder). Before, the loader asked node-llama-cpp for the whole training context on
 * every sequence, and such a model (like any 131,072-token Llama 3.x with a wide KV cache) failed to load.
 */
import os from "node:os";
import { describe, expect, it } from "vitest";
import { LlamaEngine } from "../../src/engine/llama/engine.js";
import {
  LlamaModelLoader,
  type LlamaLoadedModel,
  type LlamaModelLoaderOptions,
} from "../../src/engine/llama/loader.js";
import type { EngineRequest } from "../../src/engine/types.js";
import type { ModelEntry } from "../../src/models/types.js";
import { ApiError } from "../../src/shared/errors.js";
import { useGeneratedModel } from "../helpers/generated-model.js";

const trained = 16_777_216;
const generated = useGeneratedModel(
  { layers: 2, dim: 256, ffn: 256, heads: 4, contextLength: trained },
  "lmhost-context-",
);

const entry = (extra: Partial<ModelEntry> = {}): ModelEntry => ({
  id: "long-context",
  path: generated.modelPath,
  sizeBytes: 0,
  publisher: "test",
  ...extra,
});

/** A loader on one thread, 4 sequences, no warm-up, unless `options` says otherwise. */
const loaderWith = (options: Partial<LlamaModelLoaderOptions> = {}) =>
  new LlamaModelLoader({ llama: generated.llama, threads: 1, parallel: 4, warmup: false, ...options });

/** Loads the model with `loader`, runs `use` on it and unloads it again, whatever `use` does. */
async function withLoaded(
  loader: LlamaModelLoader,
  use: (loaded: LlamaLoadedModel) => Promise<void> | void,
  modelEntry = entry(),
): Promise<void> {
  const loaded = await loader.load(modelEntry);
  try {
    await use(loaded);
  } finally {
    await loader.unload(loaded);
  }
}

/** Runs `request` on the real engine over `loaded`; the error it throws, if any. */
async function generate(
  loaded: LlamaLoadedModel,
  request: EngineRequest,
): Promise<{ outputTokens: number; error?: unknown }> {
  const engine = new LlamaEngine({
    models: { acquire: async () => ({ entry: loaded.entry, loaded, release: () => undefined }) },
  });
  let outputTokens = 0;
  try {
    for await (const part of engine.generate(request, new AbortController().signal))
      if (part.type === "finish") outputTokens = part.usage.outputTokens;
  } catch (error) {
    return { outputTokens, error };
  }
  return { outputTokens };
}

describe("context length per sequence", () => {
  it("loads a model trained for 16M tokens with 32,768 per sequence, and generates", async () => {
    const loader = loaderWith();
    await withLoaded(loader, async (loaded) => {
      expect(loaded.model.trainContextSize).toBe(trained);
      expect(loaded.contextLength).toBe(32768);
      expect(loaded.context.contextSize).toBe(32768);
      expect(loader.describe(loaded)).toMatch(
        /^context 32,768 tokens per sequence × 4 \(\d+\.\d GiB\); trained for 16,777,216, --context-length sets more$/,
      );
      // It serves: a generation on the real engine.
      const result = await generate(loaded, {
        model: "long-context",
        items: [{ type: "message", role: "user", text: "Hello" }],
        sampling: { maxTokens: 4 },
      });
      expect(result.error).toBeUndefined();
      expect(result.outputTokens).toBe(4);
    });
  });

  it("steps down to what the memory budget holds", async () => {
    // A budget between node-llama-cpp's 8,192 and 16,384 figures (4 sequences) must give 8,192.
    const [at8k, at16k] = await generated.estimates([8192, 4], [16384, 4]);
    const loader = loaderWith({ contextMemoryBudgetBytes: (at8k! + at16k!) / 2 });
    await withLoaded(loader, (loaded) => {
      expect(loaded.contextLength).toBe(8192);
      expect(loader.describe(loaded)).toContain("context 8,192 tokens per sequence × 4 (0.");
      expect(loader.describe(loaded)).toContain("a longer one would take more than a quarter");
    });
  });

  it("with --parallel unset, takes fewer sequences before a sequence gets less than 16,384 tokens", async () => {
    const [fourOf16k, twoOf32k, twoOf16k] = await generated.estimates([16384, 4], [32768, 2], [16384, 2]);
    // Room for 2 sequences of 16,384 but not 4 (nor 2 of 32,768).
    const budget = Math.min(fourOf16k!, twoOf32k!) - 1;
    expect(budget).toBeGreaterThanOrEqual(twoOf16k!);
    const loader = loaderWith({ parallelSetByUser: false, contextMemoryBudgetBytes: budget });
    await withLoaded(loader, (loaded) => {
      expect(loaded.contextLength).toBe(16384);
      expect(loaded.sequences).toHaveLength(2);
      expect(loaded.context.totalSequences).toBe(2);
      expect(loader.describe(loaded)).toMatch(
        /^context 16,384 tokens per sequence × 2 \(not 4: each would get less than 16,384; --parallel sets it\)/,
      );
    });
    // The same budget with --parallel 4 set: 4 sequences, shorter.
    await withLoaded(loaderWith({ contextMemoryBudgetBytes: budget }), (four) => {
      expect(four.sequences).toHaveLength(4);
      expect(four.contextLength).toBeLessThan(16384);
    });
  });

  it("takes a length the user set, from --context-length or the model's override", async () => {
    const fromFlag = loaderWith({ parallel: 2, contextLength: 65536 });
    await withLoaded(fromFlag, (flagged) => {
      expect(flagged.contextLength).toBe(65536);
      expect(fromFlag.describe(flagged)).toMatch(
        /^context 65,536 tokens per sequence × 2 \(\d+\.\d GiB\), set by --context-length$/,
      );
    });
    // The model's own setting in config.json is the more specific one: it wins over the flag.
    await withLoaded(
      fromFlag,
      (overridden) => {
        expect(overridden.contextLength).toBe(1024);
        expect(fromFlag.describe(overridden)).toMatch(/, set by config\.json$/);
      },
      entry({ contextLengthOverride: 1024 }),
    );
  });

  it("says how to get more context when a prompt overflows a context shorter than the training one", async () => {
    await withLoaded(loaderWith({ parallel: 1, contextLength: 256 }), async (loaded) => {
      const { error } = await generate(loaded, {
        model: "long-context",
        items: [{ type: "message", role: "user", text: "Once upon a time ".repeat(80) }],
        sampling: { maxTokens: 4 },
      });
      expect(error).toBeInstanceOf(ApiError);
      expect(error).toMatchObject({ status: 400, code: "context_length_exceeded", param: "input" });
      expect((error as ApiError).message).toMatch(
        /^This model's maximum context length is 256 tokens\. .* lmhost runs this model with 256 tokens per sequence \(it was trained for 16777216\): start lmhost with a longer --context-length for more\.$/,
      );
    });
  });

  it("refuses a set length that does not fit in memory with what to change, and loads again after", async () => {
    // A power of two whose KV cache alone (2 layers × 256 × K and V × 2 bytes = 2 KiB a cell, × 4
    // sequences) is at least twice the machine's memory (node-llama-cpp counts free swap too); its check
    // takes longer the longer the context (~3 s at 4M tokens here), so no longer than that.
    const tooLong = 2 ** Math.ceil(Math.log2((2 * os.totalmem()) / (4 * 2048)));
    const failure = await loaderWith({ contextLength: tooLong })
      .load(entry())
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(failure).toBeInstanceOf(Error);
    expect((failure as Error).message).toMatch(/too large for the available RAM/);
    expect((failure as Error).message).toContain(
      `${tooLong.toLocaleString("en-US")} tokens per sequence × 4 sequences (as --context-length sets it); set a shorter --context-length or fewer --parallel sequences`,
    );
    // Nothing was left behind: the same model loads at a length that fits.
    await withLoaded(loaderWith(), (again) => {
      expect(again.contextLength).toBe(32768);
    });
  });
});
