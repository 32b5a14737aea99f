/**
 * How many sequences each llama decode carries when 4 sequences generate at once on raw node-llama-cpp
 * (greedy `sequence.evaluate` loops), and the aggregate tok/s of 4 streams ÷ 1 stream.
 *
 *   UV_THREADPOOL_SIZE=8 node --import tsx bench/batch-fill.ts MODEL.gguf [THREADS] [TOKENS]
 */
import { getLlama, LlamaLogLevel, type LlamaContext, type LlamaContextSequence } from "node-llama-cpp";

const [modelFile, threadsText, tokensText] = process.argv.slice(2);
if (modelFile === undefined) throw new Error("usage: batch-fill.ts MODEL.gguf [THREADS] [TOKENS]");
const threads = Number(threadsText ?? "2");
const maxTokens = Number(tokensText ?? "32");
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: modelFile });
const context = await model.createContext({
  contextSize: Math.min(4096, model.trainContextSize),
  sequences: 4,
  threads,
  flashAttention: "auto",
});

/** Sequences per decode call: counts addToBatch calls between decodeBatch calls. */
const histogram = new Map<number, number>();
function instrument(target: LlamaContext) {
  const holder = target as unknown as { _ctx: Record<string, (...args: unknown[]) => unknown> };
  const ctx = holder._ctx;
  let added = 0;
  holder._ctx = new Proxy(ctx, {
    get(object, key) {
      const value = Reflect.get(object, key) as unknown;
      if (typeof value !== "function") return value;
      const bound = (value as (...args: unknown[]) => unknown).bind(object);
      if (key === "addToBatch")
        return (...args: unknown[]) => {
          added++;
          return bound(...args);
        };
      if (key === "decodeBatch")
        return (...args: unknown[]) => {
          histogram.set(added, (histogram.get(added) ?? 0) + 1);
          added = 0;
          return bound(...args);
        };
      return bound;
    },
  });
}
instrument(context);
const sequences: LlamaContextSequence[] = [];
while (context.sequencesLeft > 0) sequences.push(context.getSequence());

async function stream(sequence: LlamaContextSequence, prompt: string) {
  await sequence.clearHistory();
  let count = 0;
  for await (const token of sequence.evaluate(model.tokenize(prompt), { temperature: 0 })) {
    void token;
    if (++count >= maxTokens) break;
  }
  return count;
}
async function aggregate(streams: number, tag: string) {
  const started = performance.now();
  const counts = await Promise.all(
    sequences
      .slice(0, streams)
      .map((sequence, index) =>
        stream(sequence, `${process.env.BATCH_FILL_PROMPT ?? "Once upon a time"} ${tag} ${index}`),
      ),
  );
  return (counts.reduce((a, b) => a + b, 0) / (performance.now() - started)) * 1000;
}
await aggregate(1, "warm");
for (let round = 0; round < 3; round++) {
  const one = await aggregate(1, `a${round}`);
  histogram.clear();
  const four = await aggregate(4, `b${round}`);
  const hist = [...histogram.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([k, v]) => `${k}:${v}`)
    .join(" ");
  console.log(
    `round ${round}: 1 stream ${one.toFixed(1)} tok/s, 4 streams ${four.toFixed(1)} tok/s (${(four / one).toFixed(2)}x); seqs/decode ${hist}`,
  );
}
await context.dispose();
await model.dispose();
await llama.dispose();
