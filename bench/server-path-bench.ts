/**
 * Figures of lmhost's own server path, in-process:
 *   ttft_turn32_over_turn1                      a chained conversation (previous_response_id): turn 32 ÷ turn 1,
 *                                               on the realistic 471M model at all cores (not in --quick) and (suffix
 *                                               _stories260K) on stories260K-chatml at one thread; beside each,
 *                                               `_raw_floor`: node-llama-cpp alone evaluating as many new tokens
 *                                               at the same positions (what attention over the history costs)
 *   ttft_turn32_chained_over_full_history_cold  turn 32 chained ÷ the same history on a fresh model (stories260K)
 *   added_latency_ms_p50                        a small non-streaming request over HTTP (loopback socket)
 *                                               minus the same generation asked of the engine directly
 *   chain100_rebuild_ms_p95                     rebuilding a 100-turn chain from SQLite holding 10,000
 *                                               responses (store read + conversation assembly)
 *   rss_growth_after_1000_requests              (bench/memory-bench.ts, its own process for a clean RSS)
 */
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { serve } from "@hono/node-server";
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";
import { assembleConversation } from "../src/responses/conversation.js";
import type { InputItem } from "../src/responses/wire-types.js";
import { SqliteResponseStore } from "../src/store/sqlite/sqlite-store.js";
import type { StoredResponse } from "../src/store/types.js";
import { figureOf, median, percentile, ratioOf, type BenchOptions, type Figure } from "./figures.js";
import { physicalCores } from "../src/config.js";
import { tinyModelBytes } from "../src/engine/llama/loader.js";
import { makeModel, realisticShape } from "./make-model.js";
import { harness, MODEL, streamTurn, type Harness, type TurnResult } from "./responses-bench.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const storiesFile = path.resolve(here, "../assets/models/stories260K-chatml.gguf");

/** One streamed turn in process, 4 output tokens (TTFT is what these figures read). */
const turnOf = (server: Pick<Harness, "app" | "modelId">, body: Record<string, unknown>) =>
  streamTurn(server, { max_output_tokens: 4, ...body });

/**
 * A 32-turn conversation chained through previous_response_id, `repetitions` times: turn 1's and turn 32's
 * TTFT, and (with `cold`) turn 32's history re-sent whole to a freshly loaded model. `suffix` names the
 * figures of a model other than stories260K-chatml.
 */
async function conversationFigures(
  options: BenchOptions,
  model: {
    label: string;
    suffix: string;
    file?: string;
    threads?: number;
    repetitions: number;
    cold: boolean;
  },
): Promise<Figure[]> {
  const turns = 32;
  const { repetitions } = model;
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const serverOptions = {
    ...(model.file === undefined ? {} : { modelFile: model.file }),
    ...(model.threads === undefined ? {} : { threads: model.threads }),
  };
  const chained = await harness(llama, serverOptions);
  const turn1: number[] = [];
  const turn32: number[] = [];
  const cold: number[] = [];
  let promptTokens = 0;
  let cachedTokens = 0;
  let turn1Tokens = 0;
  try {
    for (let repetition = 0; repetition < repetitions; repetition++) {
      let previous: TurnResult | undefined;
      const history: { role: string; content: string }[] = [];
      for (let turn = 1; turn <= turns; turn++) {
        const message = `${repetition}.${turn} Tom ran.`;
        const result = await turnOf(chained, {
          input: message,
          ...(previous === undefined ? {} : { previous_response_id: previous.id }),
        });
        history.push({ role: "user", content: message });
        if (turn < turns) history.push({ role: "assistant", content: result.text });
        if (turn === 1) {
          turn1.push(result.ttftMs);
          turn1Tokens = result.inputTokens;
        }
        if (turn === turns) {
          turn32.push(result.ttftMs);
          promptTokens = result.inputTokens;
          cachedTokens = result.cachedTokens;
        }
        previous = result;
      }
      if (model.cold) {
        // The same 32-turn history re-sent to a freshly loaded model: every prompt token evaluated.
        const fresh = await harness(llama, serverOptions);
        try {
          cold.push((await turnOf(fresh, { input: history })).ttftMs);
        } finally {
          await fresh.close();
        }
      }
      options.log(
        `  ${model.label} conversation ${repetition + 1}/${repetitions}: turn 1 ${turn1.at(-1)?.toFixed(1)} ms, turn 32 ${turn32.at(-1)?.toFixed(1)} ms ` +
          `(${promptTokens} prompt tokens, ${cachedTokens} cached)` +
          (model.cold ? `, cold full history ${cold.at(-1)?.toFixed(1)} ms` : ""),
      );
    }
    await chained.close();
    // The floor: node-llama-cpp alone evaluating as many new tokens at the same positions.
    const floor = await rawTurnFloor(llama, model.file ?? storiesFile, model.threads ?? 1, {
      turn1Tokens,
      cachedTokens,
      newTokens: promptTokens - cachedTokens,
      rounds: Math.max(3, repetitions),
    });
    options.log(
      `  ${model.label} raw node-llama-cpp: ${turn1Tokens} tokens at position 0 ${median(floor.turn1).toFixed(1)} ms, ` +
        `${promptTokens - cachedTokens} tokens after ${cachedTokens} ${median(floor.turn32).toFixed(1)} ms`,
    );
    const s = model.suffix;
    return [
      figureOf(`ttft_turn1_ms${s}`, turn1, "ms"),
      figureOf(`ttft_turn32_ms${s}`, turn32, "ms", {
        note: `${promptTokens} prompt tokens, ${cachedTokens} cached`,
      }),
      ratioOf(`ttft_turn32_over_turn1${s}`, turn32, turn1, {
        target: { op: "<=", value: 1.5 },
        note: `${model.label}, chained through previous_response_id`,
      }),
      figureOf(`ttft_turn32_over_turn1_raw_floor${s}`, [median(floor.turn32) / median(floor.turn1)], "×", {
        note: `${model.label}: raw node-llama-cpp, the same new tokens at turn 32's position ÷ turn 1's at position 0 (attention over the history)`,
      }),
      ...(model.cold
        ? [
            ratioOf(`ttft_turn32_chained_over_full_history_cold${s}`, turn32, cold, {
              target: { op: "<=", value: 0.3 },
              note: "same history evaluated on a freshly loaded model",
            }),
          ]
        : []),
    ];
  } finally {
    await llama.dispose();
  }
}

/**
 * node-llama-cpp alone: the time to the first generated token after evaluating `turn1Tokens` prompt tokens
 * on an empty sequence, and after `newTokens` on a sequence already holding `cachedTokens`: what the
 * engine itself costs at turn 1 and turn 32, whatever the server does around it.
 */
async function rawTurnFloor(
  llama: Awaited<ReturnType<typeof getLlama>>,
  file: string,
  threads: number,
  shape: { turn1Tokens: number; cachedTokens: number; newTokens: number; rounds: number },
): Promise<{ turn1: number[]; turn32: number[] }> {
  const model = await llama.loadModel({ modelPath: file });
  const context = await model.createContext({
    contextSize: Math.min(4096, model.trainContextSize),
    sequences: 2,
    threads,
    flashAttention: model.size < tinyModelBytes ? false : "auto",
  });
  // One sequence for turn 1, one holding the history: evaluated once, each round's new tokens erased after
  // (a 1,900-token prefill per round took ~10 s on the 471M model at 2 threads).
  const sequence = context.getSequence();
  const history = context.getSequence();
  const story = model.tokenize("Tom ran to the park. He saw a big red ball and a little dog. ".repeat(200));
  const firstToken = async (tokens: Token[], on = sequence) => {
    const started = performance.now();
    for await (const token of on.evaluate(tokens, { temperature: 0 })) {
      void token;
      break;
    }
    return performance.now() - started;
  };
  const turn1: number[] = [];
  const turn32: number[] = [];
  try {
    await history.evaluateWithoutGeneratingNewTokens(story.slice(0, shape.cachedTokens));
    for (let round = 0; round < shape.rounds; round++) {
      await sequence.clearHistory();
      turn1.push(await firstToken(story.slice(round, round + shape.turn1Tokens)));
      const from = shape.cachedTokens + round;
      turn32.push(await firstToken(story.slice(from, from + shape.newTokens), history));
      await history.eraseContextTokenRanges([{ start: shape.cachedTokens, end: history.nextTokenIndex }]);
    }
  } finally {
    await context.dispose();
    await model.dispose();
  }
  return { turn1, turn32 };
}

async function addedLatency(options: BenchOptions): Promise<Figure[]> {
  const samples = options.quick ? 30 : 100;
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const server = await harness(llama);
  const listening = serve({ fetch: server.app.fetch, hostname: "127.0.0.1", port: 0 });
  await new Promise((resolve) => listening.once("listening", resolve));
  const url = `http://127.0.0.1:${(listening.address() as AddressInfo).port}/v1/responses`;
  const http: number[] = [];
  const direct: number[] = [];
  const added: number[] = [];
  const input = "Tom saw a dog";
  const viaHttp = async () => {
    const started = performance.now();
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, input, max_output_tokens: 4, temperature: 0 }),
    });
    await response.arrayBuffer();
    if (!response.ok) throw new Error(`request failed: ${response.status}`);
    return performance.now() - started;
  };
  const viaEngine = async () => {
    const started = performance.now();
    for await (const part of server.engine.generate(
      {
        model: MODEL,
        items: [{ type: "message", role: "user", text: input }],
        sampling: { temperature: 0, maxTokens: 4 },
      },
      new AbortController().signal,
    ))
      void part;
    return performance.now() - started;
  };
  try {
    for (let index = 0; index < 5; index++) {
      await viaHttp();
      await viaEngine();
    }
    for (let index = 0; index < samples; index++) {
      const first = index % 2 === 0;
      const a = first ? await viaHttp() : await viaEngine();
      const b = first ? await viaEngine() : await viaHttp();
      const [h, e] = first ? [a, b] : [b, a];
      http.push(h);
      direct.push(e);
      added.push(h - e);
    }
  } finally {
    await new Promise((resolve) => listening.close(resolve));
    await server.close();
    await llama.dispose();
  }
  options.log(
    `  small non-streaming request: HTTP ${median(http).toFixed(2)} ms, engine directly ${median(direct).toFixed(2)} ms (medians of ${samples})`,
  );
  return [
    figureOf("small_request_http_ms", http, "ms"),
    figureOf("small_request_engine_ms", direct, "ms"),
    {
      ...figureOf("added_latency_ms_p50", added, "ms", {
        note: "HTTP + Responses API + store, over the engine's own time (4 tokens, stories260K)",
      }),
      value: percentile(added, 0.5),
    },
  ];
}

function chainRebuild(options: BenchOptions): Figure[] {
  const store = SqliteResponseStore.open(
    path.join(mkdtempSync(path.join(tmpdir(), "lmhost-bench-store-")), "r.sqlite"),
  );
  const chains = 100;
  const turns = 100;
  const now = Math.floor(Date.now() / 1000);
  const text = "Tom and his little sister Lily walked to the big green park near the river.";
  try {
    for (let chain = 0; chain < chains; chain++) {
      let previous: string | null = null;
      for (let turn = 0; turn < turns; turn++) {
        const id = `resp_${chain}_${turn}`;
        const record: StoredResponse = {
          id,
          createdAt: now,
          previousResponseId: previous,
          model: MODEL,
          status: "completed",
          inputItems: [
            {
              id: `msg_in_${chain}_${turn}`,
              type: "message",
              role: "user",
              content: [{ type: "input_text", text }],
            },
          ],
          response: {
            id,
            object: "response",
            status: "completed",
            model: MODEL,
            previous_response_id: previous,
            output: [
              {
                id: `msg_out_${chain}_${turn}`,
                type: "message",
                role: "assistant",
                status: "completed",
                content: [{ type: "output_text", text, annotations: [] }],
              },
            ],
          },
        };
        store.put(record);
        previous = id;
      }
    }
    const samples: number[] = [];
    const reads = options.quick ? 100 : 400;
    for (let index = 0; index < reads; index++) {
      const chain = (index * 37) % chains;
      const started = performance.now();
      const assembled = assembleConversation(store, {
        previousResponseId: `resp_${chain}_${turns - 1}`,
        instructions: null,
        input: [{ type: "message", role: "user", content: "next" }] as InputItem[],
      });
      samples.push(performance.now() - started);
      if (assembled.items.length !== turns * 2 + 1)
        throw new Error(`chain of ${assembled.items.length} items`);
    }
    options.log(
      `  chain of 100 from 10,000 stored: p50 ${percentile(samples, 0.5).toFixed(2)} ms, p95 ${percentile(samples, 0.95).toFixed(2)} ms`,
    );
    return [
      {
        ...figureOf("chain100_rebuild_ms_p95", samples, "ms", {
          target: { op: "<=", value: 20 },
          note: `p95 of ${reads} rebuilds (store.chain + assembly), 10,000 responses in SQLite`,
        }),
        value: percentile(samples, 0.95),
      },
    ];
  } finally {
    store.close();
  }
}

/** RSS growth in a child process with --expose-gc (bench/memory-bench.ts). */
async function memoryFigure(options: BenchOptions): Promise<Figure[]> {
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--expose-gc", "--import", "tsx", path.join(here, "memory-bench.ts")],
      { env: { ...process.env, UV_THREADPOOL_SIZE: "1" }, stdio: ["ignore", "pipe", "inherit"] },
    );
    let text = "";
    child.stdout.on("data", (chunk: Buffer) => {
      text += chunk.toString();
      for (const line of chunk.toString().split("\n")) if (line.startsWith("  ")) options.log(line);
    });
    child.once("error", reject);
    child.once("exit", (code) =>
      code === 0 ? resolve(text) : reject(new Error(`memory bench exited with ${code}`)),
    );
  });
  const line = output.split("\n").find((candidate) => candidate.startsWith("RESULT "));
  if (line === undefined) throw new Error("memory bench printed no result");
  const result = JSON.parse(line.slice(7)) as { warmRss: number; rss: number[]; growth: number[] };
  return [
    figureOf("rss_after_warmup_mib", [result.warmRss / 2 ** 20], "MiB"),
    figureOf("rss_growth_after_1000_requests", result.growth, "×", {
      target: { op: "<=", value: 0.05 },
      note: "(RSS after 1,000 more requests − RSS after 500) ÷ RSS after 500, gc() before each reading",
    }),
  ];
}

export async function runServerPathBench(options: BenchOptions): Promise<Figure[]> {
  options.log("conversation: 32 chained turns on stories260K-chatml");
  const conversation = await conversationFigures(options, {
    label: "stories260K-chatml, 1 thread",
    suffix: "_stories260K",
    repetitions: options.quick ? 3 : 7,
    cold: true,
  });
  // On the 471M model a conversation and its raw floor take ~50 s on 2 cores (a model load, 32 turns, a
  // 1,900-token prefill): full runs only, so --quick stays under 3 minutes with the stories260K one.
  let realistic: Figure[] = [];
  if (!options.quick) {
    options.log("conversation: 32 chained turns on the realistic model (471M), all cores");
    realistic = await conversationFigures(options, {
      label: "471M random-weight Q8_0, all cores",
      suffix: "",
      file: await makeModel(realisticShape, { log: options.log }),
      threads: physicalCores(),
      repetitions: 5,
      cold: false,
    });
  }
  options.log("added latency: small non-streaming requests, HTTP vs engine");
  const latency = await addedLatency(options);
  options.log("store: 10,000 responses, rebuilding 100-turn chains");
  const store = chainRebuild(options);
  options.log("memory: 1,000 requests");
  const memory = await memoryFigure(options);
  return [...realistic, ...conversation, ...latency, ...store, ...memory];
}
