/**
 * node-llama-cpp alone, the baseline of the decode figures: a greedy `sequence.evaluate` loop on one
 * sequence (no chat wrapper, no server, no JSON), threads passed explicitly. Driven by bench/servers.ts:
 * reads `{prompt, maxTokens}` lines on stdin, answers `{firstMs, totalMs, outputTokens}` lines on stdout.
 *
 *   node --import tsx bench/raw-worker.ts MODEL.gguf THREADS [lmhost-context]
 */
import { createInterface } from "node:readline";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [modelFile, threadsText, layout] = process.argv.slice(2);
if (modelFile === undefined) throw new Error("usage: raw-worker.ts MODEL.gguf THREADS [lmhost-context]");
const threads = Number(threadsText ?? "1");
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: modelFile });
// "lmhost-context": the context as lmhost's loader creates it (4 sequences, flash attention "auto" above
// 128 MiB), to tell the context's cost from the server path's.
const context = await model.createContext({
  contextSize: Math.min(4096, model.trainContextSize),
  threads,
  ...(layout === "lmhost-context"
    ? { sequences: 4, flashAttention: model.size < 128 * 1024 * 1024 ? false : ("auto" as const) }
    : {}),
});
const sequence = context.getSequence();
// Warm up once (as lmhost does when it loads a model).
for await (const token of sequence.evaluate(model.tokenize("Hello"), { temperature: 0 })) {
  void token;
  break;
}
process.stdout.write("ready\n");

for await (const line of createInterface({ input: process.stdin })) {
  const { prompt, maxTokens, budgetMs } = JSON.parse(line) as {
    prompt: string;
    maxTokens: number;
    budgetMs?: number;
  };
  const started = performance.now();
  await sequence.clearHistory();
  let firstMs = Number.NaN;
  let outputTokens = 0;
  for await (const token of sequence.evaluate(model.tokenize(prompt), { temperature: 0 })) {
    void token;
    outputTokens++;
    if (outputTokens === 1) firstMs = performance.now() - started;
    if (outputTokens >= maxTokens || performance.now() - started > (budgetMs ?? Infinity)) break;
  }
  process.stdout.write(
    `${JSON.stringify({ firstMs, totalMs: performance.now() - started, outputTokens })}\n`,
  );
}
await context.dispose();
await model.dispose();
await llama.dispose();
