/**
 * The persistent prompt cache's figures, on the real binary (bin/lmhost.js → dist/, one thread,
 * `--parallel 2`) over loopback:
 *
 * - `ttft_long_prefix_after_restart_over_cold`: time to first token of a request whose ~2,000-token
 *   prefix (instructions) was saved by an earlier server process on the same data dir, ÷ the time to first
 *   token of a request of the same length whose prefix is evaluated, in the same (new) process. Target ≤ 0.3.
 * - `ttft_long_prefix_after_reuse_over_cold`: the same after the prefix's sequence was reused by other
 *   requests (both sequences overwritten), ÷ the cold first request of that prefix in the same process.
 *
 * Each round uses a fresh data dir; figures are medians over the rounds with min and max. The model is
 * stories260K-chatml from assets/models unless `--model PATH` names another (a realistic random-weight
 * model from the benchmark's cache, say); the prefix is 2,000 tokens or what fits its context.
 *
 *   npx tsx bench/prompt-cache-bench.ts [--quick] [--model PATH] [--rounds N]
 */
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { getLlama, LlamaLogLevel, readGgufFileInfo } from "node-llama-cpp";
import buildOnce from "../tests/helpers/build-once.js";
import { storiesChatmlModel } from "../tests/helpers/paths.js";
import { spawnServer, type SpawnedServer } from "../tests/helpers/spawn-server.js";

export interface Figure {
  name: string;
  value: number;
  min: number;
  max: number;
  unit: string;
  target?: { op: "<=" | ">="; value: number };
  note?: string;
}

export interface PromptCacheBenchOptions {
  quick: boolean;
  /** A GGUF file (default: stories260K-chatml from assets/models). */
  model?: string;
  /** Rounds (default 2 with quick, 5 without). */
  rounds?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

interface Timed {
  ttftMs: number;
  cachedTokens: number;
  inputTokens: number;
}

const prefixTarget = 2000;

export async function runPromptCacheBench(options: PromptCacheBenchOptions): Promise<Figure[]> {
  const log = options.log ?? (() => undefined);
  const model = options.model ?? storiesChatmlModel;
  const rounds = options.rounds ?? (options.quick ? 2 : 5);
  buildOnce();
  const { instructionsOf, prefixTokens } = await calibrate(model);
  log(`prompt cache: ${path.basename(model)}, prefix ${prefixTokens} tokens, ${rounds} rounds`);

  const reuse: number[] = [];
  const restart: number[] = [];
  const coldMs: number[] = [];
  const restoredMs: number[] = [];
  const cached: number[] = [];
  for (let round = 0; round < rounds; round += 1) {
    const dataDir = mkdtempSync(path.join(tmpdir(), "lmhost-pcache-bench-"));
    const args = ["--model", model, "--parallel", "2", "--prompt-cache-size", "4GiB"];
    const modelId = path.basename(model, ".gguf");
    const instructions = instructionsOf(`round ${round}`);

    // First process: the prefix evaluated (cold), saved, the sequences reused, the prefix restored.
    let server = await spawnServer(args, { dataDir });
    try {
      await ask(server, modelId, "Be brief.", "Say hi.");
      const cold = await ask(server, modelId, instructions, "Tell me about a cat.");
      await savedStates(dataDir, 1);
      await Promise.all([
        ask(server, modelId, "Be brief.", "Say hello."),
        ask(server, modelId, "Be short.", "Say hi there."),
      ]);
      const restored = await ask(server, modelId, instructions, "Tell me about a dog.");
      reuse.push(restored.ttftMs / cold.ttftMs);
      coldMs.push(cold.ttftMs);
      restoredMs.push(restored.ttftMs);
      cached.push(restored.cachedTokens);
      log(
        `  round ${round + 1}: cold ${cold.ttftMs.toFixed(0)} ms (${cold.inputTokens} tokens), after reuse ${restored.ttftMs.toFixed(0)} ms (${restored.cachedTokens} cached)`,
      );
    } finally {
      await server.stop();
    }

    // A new process on the same data dir: a cold prefix of the same length, then the saved one.
    server = await spawnServer(args, { dataDir });
    try {
      await ask(server, modelId, "Be brief.", "Say hi.");
      const cold = await ask(server, modelId, instructionsOf(`other ${round}`), "Tell me about a cat.");
      const restored = await ask(server, modelId, instructions, "Tell me about a bird.");
      restart.push(restored.ttftMs / cold.ttftMs);
      coldMs.push(cold.ttftMs);
      restoredMs.push(restored.ttftMs);
      cached.push(restored.cachedTokens);
      log(
        `  round ${round + 1}: new process: cold ${cold.ttftMs.toFixed(0)} ms, restored ${restored.ttftMs.toFixed(0)} ms (${restored.cachedTokens} cached)`,
      );
    } finally {
      await server.stop();
    }
  }
  const note = `${path.basename(model)}, ${prefixTokens}-token prefix, 1 thread, --parallel 2, ${rounds} rounds`;
  return [
    figure("ttft_long_prefix_after_restart_over_cold", restart, "ratio", { op: "<=", value: 0.3 }, note),
    figure("ttft_long_prefix_after_reuse_over_cold", reuse, "ratio", { op: "<=", value: 0.3 }, note),
    figure("ttft_long_prefix_cold_ms", coldMs, "ms", undefined, note),
    figure("ttft_long_prefix_restored_ms", restoredMs, "ms", undefined, note),
    figure(
      "long_prefix_restored_cached_tokens",
      cached,
      "tokens",
      { op: ">=", value: prefixTokens - 8 },
      note,
    ),
  ];
}

/** Instructions of ~`prefixTarget` tokens (less when the model's context is smaller), per seed text. */
async function calibrate(
  model: string,
): Promise<{ instructionsOf: (seed: string) => string; prefixTokens: number }> {
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  // The context length comes from the GGUF metadata (a vocabulary-only load reports 0).
  const metadata = await readGgufFileInfo(model, { readTensorInfo: false });
  const vocabulary = await llama.loadModel({ modelPath: model, vocabOnly: true });
  try {
    const architecture = metadata.metadata.general.architecture;
    const trained = Number(
      (metadata.metadata as unknown as Record<string, Record<string, unknown>>)[architecture]
        ?.context_length ?? prefixTarget + 200,
    );
    const target = Math.min(prefixTarget, trained - 120);
    const sentence = "Once upon a time a little girl named Lily played in the park with her dog. ";
    const head = (seed: string) => `You write short stories (${seed}). `;
    let count = Math.max(1, Math.floor(target / (vocabulary.tokenize(sentence.repeat(20)).length / 20)));
    while (count > 1 && vocabulary.tokenize(head("round 00") + sentence.repeat(count)).length > target)
      count -= 1;
    const instructionsOf = (seed: string) => head(seed) + sentence.repeat(count);
    return { instructionsOf, prefixTokens: vocabulary.tokenize(instructionsOf("round 0")).length };
  } finally {
    await vocabulary.dispose();
    await llama.dispose();
  }
}

/** A streamed request: time to the first output text delta, and its usage. */
async function ask(
  server: SpawnedServer,
  model: string,
  instructions: string,
  question: string,
): Promise<Timed> {
  const started = performance.now();
  const response = await fetch(`${server.url}/v1/responses`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model,
      instructions,
      input: question,
      stream: true,
      store: false,
      max_output_tokens: 8,
      temperature: 0,
      seed: 1,
    }),
  });
  if (!response.ok || response.body === null)
    throw new Error(`request failed: ${response.status} ${await response.text()}\n${server.output()}`);
  let ttftMs: number | undefined;
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of response.body) {
    text += decoder.decode(chunk as Uint8Array, { stream: true });
    if (ttftMs === undefined && text.includes('"response.output_text.delta"'))
      ttftMs = performance.now() - started;
  }
  const completed = text
    .split("\n")
    .filter((line) => line.startsWith("data: {"))
    .map((line) => JSON.parse(line.slice(6)) as { type: string; response?: { usage?: Usage } })
    .find((event) => event.type === "response.completed" || event.type === "response.incomplete");
  const usage = completed?.response?.usage;
  if (usage === undefined) throw new Error(`no response.completed:\n${text.slice(-2000)}`);
  return {
    ttftMs: ttftMs ?? performance.now() - started,
    cachedTokens: usage.input_tokens_details.cached_tokens,
    inputTokens: usage.input_tokens,
  };
}

interface Usage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
}

/** Waits until the prompt cache folder holds `count` saved states (the save runs after the response). */
async function savedStates(dataDir: string, count: number): Promise<void> {
  const folder = path.join(dataDir, "prompt-cache");
  for (let attempt = 0; attempt < 200; attempt += 1) {
    let files: string[] = [];
    try {
      files = readdirSync(folder);
    } catch {
      // not created yet
    }
    if (files.filter((file) => file.endsWith(".json") && !file.includes(".tmp")).length >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no prompt cache state was saved in ${folder}`);
}

function figure(
  name: string,
  values: number[],
  unit: string,
  target: Figure["target"],
  note: string,
): Figure {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const value =
    sorted.length % 2 === 1 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
  return {
    name,
    value,
    min: sorted[0] ?? 0,
    max: sorted.at(-1) ?? 0,
    unit,
    ...(target === undefined ? {} : { target }),
    note,
  };
}

function option(name: string): string | undefined {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const rounds = option("rounds");
  const model = option("model");
  const figures = await runPromptCacheBench({
    quick: process.argv.includes("--quick"),
    ...(model === undefined ? {} : { model: path.resolve(model) }),
    ...(rounds === undefined ? {} : { rounds: Number(rounds) }),
    log: (line) => console.log(line),
  });
  for (const result of figures) {
    const target = result.target === undefined ? "" : ` (target ${result.target.op} ${result.target.value})`;
    const met =
      result.target === undefined
        ? ""
        : (
              result.target.op === "<="
                ? result.value <= result.target.value
                : result.value >= result.target.value
            )
          ? "  met"
          : "  MISSED";
    console.log(
      `${result.name.padEnd(44)} ${result.value.toFixed(3).padStart(10)} ${result.unit}  [${result.min.toFixed(3)} – ${result.max.toFixed(3)}]${target}${met}`,
    );
  }
  console.log(`\nJSON: ${JSON.stringify(figures)}`);
}
