/**
 * Engine benchmark: load time and decode speed of stories260K through lmhost's llama engine, beside
 * node-llama-cpp used with its defaults (default getLlama and context threads, LlamaChatSession with its
 * default system prompt, default repeat penalty).
 *
 * Variants: "lmhost" (the engine as `lmhost serve` builds it with the default config: threads = physical
 * cores, which the loader lowers to 1 for tiny models; no CPU pinning), "lmhost-pinned" (`--threads 1
 * --pin-cpu`: the process pinned to one CPU), "default" (node-llama-cpp's defaults) and "default-1thread" (the same with
 * `threads: 1`, separating the thread default from the rest of lmhost's tuning).
 *
 * Each variant runs in its own child process so each gets the process environment it runs with in real
 * life (lmhost's `bin/lmhost.js` sets UV_THREADPOOL_SIZE=1; the default variants get the libuv default).
 * Rounds rotate the variants' order; every figure is a median over all runs.
 * A run is a 256-token greedy generation of the same prompt on a warm sequence (prompt cached on both sides),
 * cut off after `runBudgetMs` (node-llama-cpp's default thread count decodes at a few tokens/s on a 2-vCPU
 * machine, where a full run would take minutes); speed is output tokens / wall time either way.
 *
 *   npx tsx bench/engine-bench.ts
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { getLlama, LlamaChatSession, LlamaLogLevel } from "node-llama-cpp";
import { physicalCores } from "../src/config.js";
import { createLlamaEngine } from "../src/engine/llama/index.js";
import type { LlamaLoadedModel } from "../src/engine/llama/loader.js";
import type { ModelAcquirer, ModelEntry } from "../src/models/types.js";
import { pinToOneCpu } from "../src/shared/cpu-affinity.js";

const benchFile = fileURLToPath(import.meta.url);
const repositoryRoot = path.resolve(path.dirname(benchFile), "..");
const modelPath = path.resolve(repositoryRoot, "assets/models/stories260K.gguf");
const prompt = "Once upon a time";
const maxTokens = 256;
const defaultRunBudgetMs = 10_000;

type Variant = "lmhost" | "lmhost-pinned" | "default" | "default-1thread";
const variants: readonly Variant[] = ["lmhost", "lmhost-pinned", "default", "default-1thread"];

interface RunMeasurement {
  milliseconds: number;
  outputTokens: number;
}

interface ChildResult {
  variant: Variant;
  threads: number;
  loadMilliseconds: number;
  /** Part of the load time spent in lmhost's warm-up generation. */
  warmupMilliseconds: number;
  runs: RunMeasurement[];
}

export interface EngineBenchOptions {
  rounds?: number;
  runsPerRound?: number;
  /** Wall-time cap of one generation (default 10 s). */
  runBudgetMs?: number;
}

export async function runEngineBench(options: EngineBenchOptions = {}): Promise<Record<string, number>> {
  const rounds = options.rounds ?? 3;
  const runsPerRound = options.runsPerRound ?? 3;
  const runBudgetMs = options.runBudgetMs ?? defaultRunBudgetMs;
  const results = new Map<Variant, ChildResult[]>(variants.map((variant) => [variant, []]));
  for (let round = 0; round < rounds; round++) {
    // Rotate the order so no variant always runs first (or right after another) in a round.
    const order = variants.map((_, index) => variants[(index + round) % variants.length] as Variant);
    for (const variant of order)
      results.get(variant)?.push(await runChild(variant, runsPerRound, runBudgetMs));
  }

  const figures: Record<string, number> = {};
  for (const variant of variants) {
    const childResults = results.get(variant) ?? [];
    const runs = childResults.flatMap((result) => result.runs);
    figures[`${variant}.loadMs`] = round1(median(childResults.map((result) => result.loadMilliseconds)));
    if (variant === "lmhost" || variant === "lmhost-pinned") {
      figures[`${variant}.warmupMs`] = round1(
        median(childResults.map((result) => result.warmupMilliseconds)),
      );
    }
    figures[`${variant}.decodeTokensPerSecond`] = round1(
      median(runs.map((run) => (run.outputTokens / run.milliseconds) * 1000)),
    );
    figures[`${variant}.outputTokens`] = median(runs.map((run) => run.outputTokens));
    figures[`${variant}.threads`] = childResults[0]?.threads ?? Number.NaN;
  }
  const ratio = (numerator: string, denominator: string): number =>
    round2((figures[numerator] ?? Number.NaN) / (figures[denominator] ?? Number.NaN));
  figures["ratio.decode.lmhostOverDefault"] = ratio(
    "lmhost.decodeTokensPerSecond",
    "default.decodeTokensPerSecond",
  );
  figures["ratio.decode.lmhostPinnedOverDefault"] = ratio(
    "lmhost-pinned.decodeTokensPerSecond",
    "default.decodeTokensPerSecond",
  );
  figures["ratio.decode.lmhostOverDefault1thread"] = ratio(
    "lmhost.decodeTokensPerSecond",
    "default-1thread.decodeTokensPerSecond",
  );
  figures["ratio.load.lmhostOverDefault"] = ratio("lmhost.loadMs", "default.loadMs");

  console.log(
    `engine bench: stories260K, ${maxTokens}-token greedy generations, ${rounds} rounds × ${runsPerRound} runs, medians`,
  );
  for (const [name, value] of Object.entries(figures)) console.log(`  ${name.padEnd(44)} ${value}`);
  return figures;
}

function runChild(variant: Variant, runs: number, runBudgetMs: number): Promise<ChildResult> {
  const environment: NodeJS.ProcessEnv = { ...process.env };
  if (variant === "default" || variant === "default-1thread") delete environment.UV_THREADPOOL_SIZE;
  else environment.UV_THREADPOOL_SIZE = "1";
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", benchFile, "--child", variant, String(runs), String(runBudgetMs)],
      {
        cwd: repositoryRoot,
        env: environment,
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    let output = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      output += chunk;
    });
    child.once("error", reject);
    child.once("exit", (code) => {
      const line = output.split("\n").find((candidate) => candidate.startsWith("RESULT "));
      if (code !== 0 || line === undefined) {
        reject(new Error(`bench child '${variant}' exited with ${code}: ${output.slice(-2000)}`));
        return;
      }
      try {
        resolve(JSON.parse(line.slice("RESULT ".length)) as ChildResult);
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
  });
}

/**
 * lmhost: the engine as `lmhost serve` builds it. "lmhost": default config (threads = physical cores, no
 * pinning). "lmhost-pinned": `--threads 1 --pin-cpu`.
 */
async function childLmhost(variant: Variant, runs: number, runBudgetMs: number): Promise<ChildResult> {
  const threads = variant === "lmhost-pinned" ? 1 : physicalCores();
  if (variant === "lmhost-pinned") pinToOneCpu();
  const entry: ModelEntry = { id: "stories260K", path: modelPath, sizeBytes: 0, publisher: "bench" };
  // The engine is built before the model is loaded (as in the server), so the acquirer reads it late.
  const holder: { loaded?: LlamaLoadedModel } = {};
  const acquirer: ModelAcquirer<LlamaLoadedModel> = {
    acquire: async () => {
      if (holder.loaded === undefined) throw new Error("model not loaded");
      return { entry, loaded: holder.loaded, release: () => undefined };
    },
  };
  const { llama, loader, engine } = await createLlamaEngine({
    threads,
    parallel: 4,
    createModels: () => acquirer,
    logLevel: "error",
  });
  const loadStarted = performance.now();
  const loadedModel = await loader.load(entry);
  holder.loaded = loadedModel;
  const loadMilliseconds = performance.now() - loadStarted;
  const effectiveThreads = loadedModel.threads;
  const measurements: RunMeasurement[] = [];
  for (let run = 0; run < runs; run++) {
    const started = performance.now();
    let outputTokens = 0;
    for await (const part of engine.generate(
      {
        model: entry.id,
        items: [{ type: "message", role: "user", text: prompt }],
        sampling: { temperature: 0, maxTokens },
      },
      AbortSignal.timeout(runBudgetMs),
    )) {
      if (part.type === "finish") outputTokens = part.usage.outputTokens;
    }
    measurements.push({ milliseconds: performance.now() - started, outputTokens });
    report(variant, run, measurements);
  }
  await engine.close();
  await loader.unload(loadedModel);
  await llama.dispose();
  return {
    variant,
    threads: effectiveThreads,
    loadMilliseconds,
    warmupMilliseconds: loadedModel.warmupMilliseconds,
    runs: measurements,
  };
}

/**
 * node-llama-cpp as its documentation's first example uses it: all defaults ("default"), or the same with
 * `threads: 1` for the context ("default-1thread"), to separate the thread default from everything else.
 */
async function childDefault(variant: Variant, runs: number, runBudgetMs: number): Promise<ChildResult> {
  const llama = await getLlama({ logLevel: LlamaLogLevel.error });
  const loadStarted = performance.now();
  const model = await llama.loadModel({ modelPath });
  const context = await model.createContext(variant === "default-1thread" ? { threads: 1 } : {});
  const sequence = context.getSequence();
  const loadMilliseconds = performance.now() - loadStarted;
  const measurements: RunMeasurement[] = [];
  for (let run = 0; run < runs; run++) {
    // A fresh session per run (same prompt each time); the sequence keeps its cached prefix, as lmhost's does.
    const session = new LlamaChatSession({ contextSequence: sequence });
    const meterBefore = sequence.tokenMeter.getState();
    const started = performance.now();
    await session.prompt(prompt, {
      maxTokens,
      signal: AbortSignal.timeout(runBudgetMs),
      stopOnAbortSignal: true,
    });
    const milliseconds = performance.now() - started;
    measurements.push({ milliseconds, outputTokens: sequence.tokenMeter.diff(meterBefore).usedOutputTokens });
    report(variant, run, measurements);
    session.dispose({ disposeSequence: false });
  }
  const threads = context.idealThreads;
  await context.dispose();
  await model.dispose();
  await llama.dispose();
  return { variant, threads, loadMilliseconds, warmupMilliseconds: 0, runs: measurements };
}

function report(variant: Variant, run: number, measurements: RunMeasurement[]): void {
  const last = measurements.at(-1);
  if (last === undefined) return;
  const rate = ((last.outputTokens / last.milliseconds) * 1000).toFixed(1);
  process.stderr.write(
    `  [${variant}] run ${run + 1}: ${last.outputTokens} tokens in ${last.milliseconds.toFixed(0)} ms (${rate} tok/s)\n`,
  );
}

function median(values: number[]): number {
  const sorted = [...values].sort((left, right) => left - right);
  if (sorted.length === 0) return Number.NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

const round1 = (value: number): number => Math.round(value * 10) / 10;
const round2 = (value: number): number => Math.round(value * 100) / 100;

async function main(argv: string[]): Promise<void> {
  const childIndex = argv.indexOf("--child");
  if (childIndex >= 0) {
    const variant = argv[childIndex + 1] as Variant;
    const runs = Number(argv[childIndex + 2] ?? "5");
    const runBudgetMs = Number(argv[childIndex + 3] ?? String(defaultRunBudgetMs));
    const result =
      variant === "default" || variant === "default-1thread"
        ? await childDefault(variant, runs, runBudgetMs)
        : await childLmhost(variant, runs, runBudgetMs);
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
    return;
  }
  await runEngineBench();
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === benchFile) {
  await main(process.argv);
}
