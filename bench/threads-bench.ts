/**
 * `npm run bench -- --only threads`: where a second compute thread starts to pay, by model size. The
 * loader runs models under `singleThreadModelBytes` on one thread unless `--threads` is given; this
 * bench is the measurement behind that number.
 *
 * For each size (stories260K and random-weight llamas written by bench/make-model.ts, 6 MB to 480 MiB),
 * node-llama-cpp alone (bench/raw-worker.ts, the floor lmhost is held to) decodes the same prompt at one
 * thread and at every physical core, the two runs interleaved each round. Figure per size: decode at all
 * cores ÷ decode at one thread (> 1: the extra threads pay).
 */
import path from "node:path";
import { physicalCores } from "../src/config.js";
import { figureOf, ratioOf, type BenchOptions, type Figure } from "./figures.js";
import { makeModel, realisticShape, type ModelShape } from "./make-model.js";
import { decodeRate, repositoryRoot, startRaw, type Generation } from "./servers.js";

const PROMPT = "Once upon a time there was a little girl who liked to play in the park with her dog";

interface Size {
  label: string;
  model: () => Promise<string>;
  tokens: { quick: number; full: number };
}

const shape = (layers: number, dim: number, ffn: number, heads: number): ModelShape => ({
  layers,
  dim,
  ffn,
  heads,
  contextLength: 4096,
});

export const threadBenchSizes: Size[] = [
  {
    label: "stories260K (1.1 MB)",
    model: async () => path.join(repositoryRoot, "assets/models/stories260K-chatml.gguf"),
    tokens: { quick: 256, full: 512 },
  },
  { label: "7M (7 MB)", model: () => makeModel(shape(6, 288, 768, 6)), tokens: { quick: 256, full: 512 } },
  { label: "27M (29 MB)", model: () => makeModel(shape(8, 512, 1536, 8)), tokens: { quick: 128, full: 256 } },
  {
    label: "85M (90 MB)",
    model: () => makeModel(shape(12, 768, 2048, 12)),
    tokens: { quick: 64, full: 128 },
  },
  {
    label: "205M (218 MB)",
    model: () => makeModel(shape(16, 1024, 2816, 16)),
    tokens: { quick: 32, full: 64 },
  },
  { label: "471M (480 MiB)", model: () => makeModel(realisticShape), tokens: { quick: 32, full: 64 } },
];

export async function runThreadsBench(options: BenchOptions): Promise<Figure[]> {
  const cores = physicalCores();
  const figures: Figure[] = [];
  if (cores < 2) {
    options.log(`threads: ${cores} physical core, nothing to compare`);
    return figures;
  }
  const rounds = options.quick ? 3 : 7;
  for (const size of threadBenchSizes) {
    const modelFile = await size.model();
    const tokens = options.quick ? size.tokens.quick : size.tokens.full;
    options.log(`threads: ${size.label}, 1 vs ${cores} threads, ${rounds} rounds of ${tokens} tokens`);
    const one = await startRaw({ modelFile, threads: 1 });
    const all = await startRaw({ modelFile, threads: cores });
    const rates = { one: [] as number[], all: [] as number[] };
    try {
      await one.generate(PROMPT, 8);
      await all.generate(PROMPT, 8);
      for (let round = 0; round < rounds; round++) {
        const run = (worker: typeof one): Promise<Generation> =>
          worker.generate(`${PROMPT} ${round}`, tokens, 30_000);
        const order = round % 2 === 0 ? [one, all] : [all, one];
        const results = new Map<typeof one, Generation>();
        for (const worker of order) results.set(worker, await run(worker));
        rates.one.push(decodeRate(results.get(one)!));
        rates.all.push(decodeRate(results.get(all)!));
        options.log(
          `  round ${round + 1}/${rounds}: 1 thread ${rates.one.at(-1)!.toFixed(1)} tok/s, ${cores} threads ${rates.all.at(-1)!.toFixed(1)} tok/s`,
        );
      }
    } finally {
      await Promise.all([one.stop(), all.stop()]);
    }
    const key = size.label.split(" ")[0]!;
    figures.push(
      figureOf(`decode_${key}_1thread`, rates.one, "tok/s"),
      figureOf(`decode_${key}_${cores}threads`, rates.all, "tok/s"),
      ratioOf(`threads_${cores}_over_1_${key}`, rates.all, rates.one, {
        note: `${size.label}: raw node-llama-cpp decode at ${cores} threads ÷ 1 thread (> 1: more threads pay)`,
      }),
    );
  }
  return figures;
}
