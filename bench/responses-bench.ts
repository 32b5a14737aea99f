/**
 * Time to first token of the 10th turn of a conversation, three ways, side by side in one run:
 *   chained    — the client sends only the new message and `previous_response_id` (lmhost rebuilds the
 *                history from SQLite and the sequence already holds it in its KV cache);
 *   stateless  — the client re-sends the whole history every turn (lmhost's prefix reuse still applies);
 *   cold       — the same full history on a freshly loaded model: every prompt token is evaluated, as on
 *                a server without prefix reuse.
 * Each runs through the whole HTTP app in-process (no socket) on stories260K-chatml with one thread.
 * Runnable alone: `npx tsx bench/responses-bench.ts`.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";
import { createLlamaEngine } from "../src/engine/llama/index.js";
import { ModelCatalog } from "../src/models/catalog.js";
import { ModelManager } from "../src/models/manager.js";
import { createApp } from "../src/server/app.js";
import type { App } from "../src/server/deps.js";
import { silentLogger } from "../src/shared/logger.js";
import { SqliteResponseStore } from "../src/store/sqlite/sqlite-store.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const MODEL_FILE = path.resolve(here, "../assets/models/stories260K-chatml.gguf");
export const MODEL = "stories260K-chatml";
const TURNS = 10;
const REPETITIONS = 5;

export interface Harness {
  app: App;
  /** The id the loaded model is served under. */
  modelId: string;
  /** The engine behind the app, for figures that compare the HTTP path with the engine called directly. */
  engine: Awaited<ReturnType<typeof createLlamaEngine>>["engine"];
  close(): Promise<void>;
}

export async function harness(
  llama: Llama,
  options: { stableTruncation?: boolean; parallel?: number; modelFile?: string; threads?: number } = {},
): Promise<Harness> {
  const store = SqliteResponseStore.open(
    path.join(mkdtempSync(path.join(tmpdir(), "lmhost-bench-")), "r.sqlite"),
  );
  const modelFile = options.modelFile ?? MODEL_FILE;
  const modelId = path.basename(modelFile, ".gguf");
  const catalog = new ModelCatalog({ files: [modelFile] });
  const { engine, models } = await createLlamaEngine({
    llama,
    threads: options.threads ?? 1,
    parallel: options.parallel ?? 1,
    ...(options.stableTruncation === undefined ? {} : { stableTruncation: options.stableTruncation }),
    createModels: (loader) =>
      new ModelManager({ source: catalog, loader, ttlSeconds: 600, maxLoaded: 1, logger: silentLogger }),
  });
  await models.load(modelId);
  const app = createApp({ engine, models, store, config: { cors: false, bodyLimitBytes: 20 * 1024 * 1024 } });
  return {
    app,
    modelId,
    engine,
    async close() {
      await engine.close();
      await models.close();
      store.close();
    },
  };
}

export interface TurnResult {
  id: string;
  /** The answer's text (its deltas joined). */
  text: string;
  ttftMs: number;
  cachedTokens: number;
  inputTokens: number;
}

/**
 * Streams one request through the harness's app (in process) and measures the time until the first
 * output_text.delta. `body` overrides the defaults (the harness's model, 24 output tokens, temperature 0).
 */
export async function streamTurn(
  server: Pick<Harness, "app" | "modelId">,
  body: Record<string, unknown>,
): Promise<TurnResult> {
  const started = performance.now();
  const response = await server.app.request("http://bench/v1/responses", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: server.modelId,
      stream: true,
      max_output_tokens: 24,
      temperature: 0,
      ...body,
    }),
  });
  if (!response.ok || !response.body)
    throw new Error(`bench request failed: ${response.status} ${await response.text()}`);
  const decoder = new TextDecoder();
  let buffer = "";
  let ttftMs = Number.NaN;
  let text = "";
  let final:
    | { id: string; usage: { input_tokens: number; input_tokens_details: { cached_tokens: number } } }
    | undefined;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let boundary: number;
    while ((boundary = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      const data = block
        .split("\n")
        .find((line) => line.startsWith("data: "))
        ?.slice(6);
      if (data === undefined || data === "[DONE]") continue;
      const event = JSON.parse(data) as { type: string; delta?: string; response?: typeof final };
      if (event.type === "response.output_text.delta") {
        if (Number.isNaN(ttftMs)) ttftMs = performance.now() - started;
        text += event.delta ?? "";
      }
      if (event.type === "response.completed" || event.type === "response.incomplete") {
        final = event.response;
        // A random-weight model may end its answer at once: its first token is then the end.
        if (Number.isNaN(ttftMs)) ttftMs = performance.now() - started;
      }
    }
  }
  if (final === undefined) throw new Error("the stream ended without a final response");
  return {
    id: final.id,
    text,
    ttftMs,
    cachedTokens: final.usage.input_tokens_details.cached_tokens,
    inputTokens: final.usage.input_tokens,
  };
}

function userMessage(repetition: number, turn: number): string {
  return `Turn ${turn} of story ${repetition}: Tom and his little sister Lily walked to the big green park near the river, where they saw a happy dog, a red kite and an old man who sold sweet apples. What happened next?`;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
};

export async function runResponsesBench(): Promise<Record<string, number>> {
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const chained = await harness(llama);
  const stateless = await harness(llama);
  const chainedTtft: number[] = [];
  const statelessTtft: number[] = [];
  const coldTtft: number[] = [];
  let promptTokens = 0;
  let chainedCached = 0;
  for (let repetition = 0; repetition < REPETITIONS; repetition++) {
    let previous: string | undefined;
    const history: { role: string; content: string }[] = [];
    let chainedTurn: TurnResult | undefined;
    let statelessTurn: TurnResult | undefined;
    for (let turn = 1; turn <= TURNS; turn++) {
      const message = userMessage(repetition, turn);
      chainedTurn = await streamTurn(chained, {
        input: message,
        ...(previous ? { previous_response_id: previous } : {}),
      });
      previous = chainedTurn.id;
      history.push({ role: "user", content: message });
      statelessTurn = await streamTurn(stateless, { input: history });
      history.push({ role: "assistant", content: statelessTurn.text });
    }
    chainedTtft.push(chainedTurn!.ttftMs);
    statelessTtft.push(statelessTurn!.ttftMs);
    promptTokens = chainedTurn!.inputTokens;
    chainedCached = chainedTurn!.cachedTokens;
    // Cold: the 10th turn's full history on a freshly loaded model (nothing in the KV cache).
    const cold = await harness(llama);
    coldTtft.push((await streamTurn(cold, { input: history.slice(0, -1) })).ttftMs);
    await cold.close();
  }
  await chained.close();
  await stateless.close();
  const results = {
    turn10PromptTokens: promptTokens,
    turn10ChainedCachedTokens: chainedCached,
    turn10ChainedTtftMs: median(chainedTtft),
    turn10StatelessTtftMs: median(statelessTtft),
    turn10ColdTtftMs: median(coldTtft),
    coldOverChained: median(coldTtft) / median(chainedTtft),
  };
  console.log(
    `\nResponses API — 10th turn time to first token (stories260K-chatml, 1 thread, median of ${REPETITIONS})`,
  );
  console.log(
    `  prompt tokens at turn 10:               ${promptTokens} (${chainedCached} cached when chained)`,
  );
  console.log(`  chained (previous_response_id):         ${results.turn10ChainedTtftMs.toFixed(1)} ms`);
  console.log(`  stateless, full history re-sent:        ${results.turn10StatelessTtftMs.toFixed(1)} ms`);
  console.log(`  full history on a cold sequence:        ${results.turn10ColdTtftMs.toFixed(1)} ms`);
  console.log(`  cold / chained:                         ${results.coldOverChained.toFixed(2)}x`);
  return results;
}

const TRUNCATION_TURNS = 40;

/**
 * A conversation that outgrows the 2,048-token window with `truncation: "auto"`, the full history re-sent
 * each turn (fixed texts, so both variants see identical prompts), turn by turn on two servers side by side:
 *   stable — lmhost's default: a drop frees a quarter of the window and later turns keep the same start,
 *            so their prompt extends what the KV cache holds;
 *   fewest — drop the fewest oldest items each turn (the prompt starts at a new item every turn, so
 *            nearly all of it is evaluated again).
 * Figures cover the turns after the first drop.
 */
export async function runTruncationBench(): Promise<Record<string, number>> {
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const stable = await harness(llama);
  const fewest = await harness(llama, { stableTruncation: false });
  const history: { role: string; content: string }[] = [];
  const past = { stable: [] as TurnResult[], fewest: [] as TurnResult[] };
  let truncating = false;
  let previousInputTokens = 0;
  for (let turn = 1; turn <= TRUNCATION_TURNS; turn++) {
    history.push({ role: "user", content: userMessage(0, turn) });
    const body = { input: history, truncation: "auto", max_output_tokens: 4 };
    // Alternate which server goes first so neither always runs on a warmer CPU cache.
    const [first, second] = turn % 2 === 0 ? [stable, fewest] : [fewest, stable];
    const firstResult = await streamTurn(first, body);
    const secondResult = await streamTurn(second, body);
    const stableResult = first === stable ? firstResult : secondResult;
    const fewestResult = first === stable ? secondResult : firstResult;
    history.push({ role: "assistant", content: `Turn ${turn}: ${userMessage(1, turn)}` });
    // The first drop shows as a prompt shorter than the previous turn's.
    if (stableResult.inputTokens < previousInputTokens) truncating = true;
    previousInputTokens = stableResult.inputTokens;
    if (truncating) {
      past.stable.push(stableResult);
      past.fewest.push(fewestResult);
    }
  }
  await stable.close();
  await fewest.close();
  const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length;
  const summary = (turns: TurnResult[]) => ({
    ttftMs: mean(turns.map((turn) => turn.ttftMs)),
    evaluated: mean(turns.map((turn) => turn.inputTokens - turn.cachedTokens)),
    prompt: mean(turns.map((turn) => turn.inputTokens)),
  });
  const stableSummary = summary(past.stable);
  const fewestSummary = summary(past.fewest);
  const results = {
    truncationTurnsPastWindow: past.stable.length,
    truncationStableTtftMs: stableSummary.ttftMs,
    truncationFewestTtftMs: fewestSummary.ttftMs,
    truncationStableEvaluatedTokens: stableSummary.evaluated,
    truncationFewestEvaluatedTokens: fewestSummary.evaluated,
    fewestOverStable: fewestSummary.ttftMs / stableSummary.ttftMs,
  };
  console.log(
    `\nResponses API — truncation auto past a 2,048-token window (${past.stable.length} of ${TRUNCATION_TURNS} turns, mean per turn)`,
  );
  console.log(
    `  stable start (lmhost):   TTFT ${stableSummary.ttftMs.toFixed(1)} ms, ${stableSummary.evaluated.toFixed(0)} of ${stableSummary.prompt.toFixed(0)} prompt tokens evaluated`,
  );
  console.log(
    `  fewest dropped:          TTFT ${fewestSummary.ttftMs.toFixed(1)} ms, ${fewestSummary.evaluated.toFixed(0)} of ${fewestSummary.prompt.toFixed(0)} prompt tokens evaluated`,
  );
  console.log(`  fewest / stable:         ${results.fewestOverStable.toFixed(2)}x`);
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runResponsesBench();
  await runTruncationBench();
}
