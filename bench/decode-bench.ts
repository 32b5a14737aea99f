/**
 * Decode figures: lmhost (the real binary on a loopback port) beside node-llama-cpp alone, in ABBA rounds
 * (lmhost, raw, raw, lmhost, then BAAB) so each ratio compares runs made under the same load:
 *   decode_full_threads_over_raw      realistic model, lmhost's default threads vs raw at the same count
 *   streaming_overhead_ratio          realistic model, 1 thread (and stories260K, 1 thread)
 *   concurrency4_speedup              realistic model, default threads: 4 streams aggregate ÷ 1 stream
 * With `--vs-llama-server PATH` also decode / prefill / follow-up / 4 streams against llama-server.
 */
import os from "node:os";
import path from "node:path";
import { physicalCores } from "../src/config.js";
import { figureOf, ratioOf, type BenchOptions, type Figure } from "./figures.js";
import { makeModel } from "./make-model.js";
import {
  cpuSeconds,
  decodeRate,
  repositoryRoot,
  startLlamaServer,
  startLmhost,
  startRaw,
  steadyRate,
  ttftMs,
  type Generation,
  type LmhostServer,
} from "./servers.js";

const storiesFile = path.join(repositoryRoot, "assets/models/stories260K-chatml.gguf");
const PROMPT = "Once upon a time there was a little cat who";

export interface DecodeBenchOptions extends BenchOptions {
  llamaServer?: string;
  /** Which scenarios to run (default all): one, stories, full, concurrency. */
  scenarios?: string[];
}

/** Round r runs `first` then `second` when r is even, else the other way round. */
async function interleaved<A, B>(round: number, first: () => Promise<A>, second: () => Promise<B>) {
  if (round % 2 === 0) {
    const a = await first();
    return [a, await second()] as const;
  }
  const b = await second();
  return [await first(), b] as const;
}

/**
 * lmhost beside raw node-llama-cpp at the same thread count (and, with `sameContext`, beside raw
 * node-llama-cpp on a context made as lmhost makes its own: 4 sequences, flash attention above 128 MiB).
 * Each round runs every side twice in mirrored order (ABBA, or ABCCBA; the next round the other way
 * round): on this shared machine speed drifts by 10–40% over minutes, and a mirrored block cancels a
 * linear drift within it, where a single AB pair leaves it in the ratio. A round's figure per side is the
 * mean of its two runs.
 */
async function pairedDecode(
  options: BenchOptions,
  label: string,
  /** The lmhost server, or its start (the raw workers start beside it: each start of the 471M model costs ~5–10 s). */
  lmhostServer: LmhostServer | Promise<LmhostServer>,
  modelFile: string,
  threads: number,
  rounds: number,
  maxTokens: number,
  budgetMs: number,
  sameContext = false,
): Promise<{
  lmhost: number[];
  raw: number[];
  rawSameContext: number[];
  threads: number;
  cpuRatio: number[];
  clientCpuMsPerToken: number[];
}> {
  const [lmhost, raw, rawSame] = await Promise.all([
    lmhostServer,
    startRaw({ modelFile, threads }),
    sameContext ? startRaw({ modelFile, threads, lmhostContext: true }) : undefined,
  ]);
  const rates = {
    lmhost: [] as number[],
    raw: [] as number[],
    rawSameContext: [] as number[],
    threads,
    /** lmhost's CPU seconds per token ÷ raw's, per round. */
    cpuRatio: [] as number[],
    /** This process's CPU per token while it read lmhost's stream (the client's own cost), per round. */
    clientCpuMsPerToken: [] as number[],
  };
  interface Run {
    rate: number;
    cpu: number;
    tokens: number;
    /** CPU seconds this (client) process used meanwhile. */
    clientCpu: number;
  }
  const measured = async (pid: number, run: () => Promise<Generation>): Promise<Run> => {
    const before = cpuSeconds(pid);
    const clientBefore = process.cpuUsage();
    const generation = await run();
    const client = process.cpuUsage(clientBefore);
    return {
      rate: decodeRate(generation),
      cpu: cpuSeconds(pid) - before,
      tokens: generation.outputTokens,
      clientCpu: (client.user + client.system) / 1e6,
    };
  };
  const sides = [
    {
      name: "lmhost",
      pid: lmhost.pid,
      generate: (input: string) => lmhost.generate({ input, maxTokens, budgetMs }),
    },
    { name: "raw", pid: raw.pid, generate: (input: string) => raw.generate(input, maxTokens, budgetMs) },
    ...(rawSame === undefined
      ? []
      : [
          {
            name: "raw (lmhost's context)",
            pid: rawSame.pid,
            generate: (input: string) => rawSame.generate(input, maxTokens, budgetMs),
          },
        ]),
  ];
  try {
    // One unmeasured run each (first-touch of the weights, lazy allocations).
    for (const side of sides) await side.generate(PROMPT);
    for (let round = 0; round < rounds; round++) {
      const runs = sides.map(() => [] as Run[]);
      const forward = sides.map((_, index) => index);
      const order =
        round % 2 === 0 ? [...forward, ...forward.toReversed()] : [...forward.toReversed(), ...forward];
      for (const [step, index] of order.entries()) {
        const side = sides[index]!;
        runs[index]!.push(await measured(side.pid, () => side.generate(`${PROMPT} ${round}.${step}`)));
      }
      const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length;
      const cpuPerToken = (list: Run[]) =>
        list.reduce((sum, run) => sum + run.cpu, 0) / list.reduce((sum, run) => sum + run.tokens, 0);
      const [ours = [], theirs = [], same] = runs;
      rates.lmhost.push(mean(ours.map((run) => run.rate)));
      rates.raw.push(mean(theirs.map((run) => run.rate)));
      if (same !== undefined) rates.rawSameContext.push(mean(same.map((run) => run.rate)));
      rates.cpuRatio.push(cpuPerToken(ours) / cpuPerToken(theirs));
      rates.clientCpuMsPerToken.push(
        (ours.reduce((sum, run) => sum + run.clientCpu, 0) / ours.reduce((sum, run) => sum + run.tokens, 0)) *
          1e3,
      );
      const rateText = sides
        .map((side, index) => `${side.name} ${runs[index]!.map((run) => run.rate.toFixed(1)).join(" ")}`)
        .join(", ");
      options.log(
        `  ${label} round ${round + 1}/${rounds}: ${rateText} tok/s (${maxTokens} tokens); CPU per token ${(cpuPerToken(ours) * 1e3).toFixed(2)} vs ${(cpuPerToken(theirs) * 1e3).toFixed(2)} ms`,
      );
    }
  } finally {
    await Promise.all([raw.stop(), rawSame?.stop()]);
  }
  return rates;
}

/**
 * `streams` concurrent generations on one server. `total`: all output tokens over the wall time (each
 * stream's prefill included, as a client sees it); `steady`: the aggregate decode rate while all streams
 * decode (see steadyRate), what batching the sequences gives.
 */
async function aggregate(
  server: Pick<LmhostServer, "generate">,
  streams: number,
  maxTokens: number,
  tag: string,
  budgetMs?: number,
): Promise<{ total: number; steady: number }> {
  const started = performance.now();
  const generations = await Promise.all(
    Array.from({ length: streams }, (_, index) =>
      server.generate({
        input: `${PROMPT} ${tag} ${index}`,
        maxTokens,
        ...(budgetMs === undefined ? {} : { budgetMs }),
      }),
    ),
  );
  const tokens = generations.reduce((sum, generation) => sum + generation.outputTokens, 0);
  return { total: (tokens / (performance.now() - started)) * 1000, steady: steadyRate(generations) };
}

/** 1 stream against 4 concurrent ones on one lmhost server (lmhost's default threads), rounds interleaved. */
async function concurrency(
  options: BenchOptions,
  server: LmhostServer,
  maxTokens: number,
  budgetMs: number,
): Promise<Figure[]> {
  options.log("concurrency: realistic model, default threads, 1 vs 4 streams");
  const single: number[] = [];
  const four: number[] = [];
  const singleSteady: number[] = [];
  const fourSteady: number[] = [];
  await server.generate({ input: PROMPT, maxTokens: 4 });
  const rounds = options.quick ? 2 : 5;
  for (let round = 0; round < rounds; round++) {
    const [one, many] = await interleaved(
      round,
      () => aggregate(server, 1, maxTokens, `a${round}`, budgetMs),
      () => aggregate(server, 4, maxTokens, `b${round}`, budgetMs),
    );
    single.push(one.total);
    four.push(many.total);
    singleSteady.push(one.steady);
    fourSteady.push(many.steady);
    options.log(
      `  round ${round + 1}/${rounds}: 1 stream ${one.total.toFixed(1)} tok/s, 4 streams ${many.total.toFixed(1)} tok/s aggregate ` +
        `(decode only: ${one.steady.toFixed(1)} vs ${many.steady.toFixed(1)})`,
    );
  }
  return [
    ratioOf("concurrency4_speedup", four, single, {
      target: { op: ">=", value: 2 },
      note: `470M, ${physicalCores()} threads, ${os.cpus().length} CPUs: aggregate of 4 streams ÷ 1, prefill included`,
    }),
    ratioOf("concurrency4_decode_speedup", fourSteady, singleSteady, {
      note: "the same runs, decode only: aggregate while all 4 streams decode ÷ 1 stream's decode rate",
    }),
  ];
}

export async function runDecodeBench(options: DecodeBenchOptions): Promise<Figure[]> {
  const rounds = options.quick ? 3 : 7;
  const realisticTokens = options.quick ? 32 : 64;
  const modelFile = await makeModel(undefined, { log: options.log });
  const figures: Figure[] = [];
  // A cut-off per generation: on a loaded machine a 2-thread decode can stall (spinning threads waiting
  // for a busy CPU); it is then measured as far as it got instead of holding the bench for minutes.
  const budgetMs = options.quick ? 30_000 : 60_000;

  const runs = (scenario: string) => options.scenarios?.includes(scenario) ?? true;
  /** `run` with an lmhost server on `modelFile` (at `threads`, or lmhost's default), stopped after. */
  const withLmhost = async <T>(
    file: string,
    threads: number,
    run: (server: Promise<LmhostServer>) => Promise<T>,
  ) => {
    const server = startLmhost({ modelFile: file, threads });
    try {
      return await run(server);
    } finally {
      await (await server).stop();
    }
  };
  if (runs("one")) {
    options.log("decode: realistic model, 1 thread");
    const one = await withLmhost(modelFile, 1, (server) =>
      pairedDecode(options, "1 thread", server, modelFile, 1, rounds, realisticTokens, budgetMs),
    );
    figures.push(
      figureOf("decode_1thread_lmhost", one.lmhost, "tok/s"),
      ratioOf("streaming_overhead_ratio", one.lmhost, one.raw, {
        target: { op: ">=", value: 0.95 },
        note: "470M Q8_0, 1 thread: lmhost streamed ÷ raw node-llama-cpp",
      }),
      figureOf("cpu_per_token_1thread_lmhost_over_raw", one.cpuRatio, "×"),
    );
  }
  if (runs("stories")) {
    options.log("decode: stories260K, 1 thread");
    const tiny = await withLmhost(storiesFile, 1, (server) =>
      pairedDecode(
        options,
        "stories260K",
        server,
        storiesFile,
        1,
        // A round takes about a second here, and wall time per token on this model swings with every
        // hand-off between threads: more rounds for a steadier median.
        options.quick ? 5 : 9,
        512,
        budgetMs,
      ),
    );
    figures.push(
      figureOf("decode_stories260K_lmhost", tiny.lmhost, "tok/s"),
      figureOf("decode_stories260K_raw", tiny.raw, "tok/s"),
      ratioOf("streaming_overhead_ratio_stories260K", tiny.lmhost, tiny.raw, {
        target: { op: ">=", value: 0.8 },
        note: "stories260K, 1 thread: the per-token server path dominates",
      }),
      figureOf("cpu_per_token_stories260K_lmhost_over_raw", tiny.cpuRatio, "×", {
        note: "CPU time per token of the lmhost process ÷ raw node-llama-cpp's (less load-sensitive than wall time)",
      }),
    );
  }
  // The full-thread decode and the 4-stream figure run on one server (lmhost's defaults for both): a
  // start of the 471M model with its 4-sequence context costs ~10 s here.
  const sharedStart = runs("full") || runs("concurrency") ? startLmhost({ modelFile }) : undefined;
  try {
    if (sharedStart !== undefined && runs("full")) {
      options.log(
        `decode: realistic model, lmhost default threads (${physicalCores()}) vs raw node-llama-cpp`,
      );
      const full = await pairedDecode(
        options,
        "full threads",
        sharedStart,
        modelFile,
        physicalCores(),
        rounds,
        realisticTokens,
        budgetMs,
        true,
      );
      figures.push(
        figureOf("decode_full_threads_lmhost", full.lmhost, "tok/s"),
        figureOf("decode_full_threads_raw", full.raw, "tok/s"),
        ratioOf("decode_full_threads_over_raw", full.lmhost, full.raw, {
          target: { op: ">=", value: 0.95 },
          note: `470M Q8_0, ${full.threads} threads (lmhost's default), ${realisticTokens} tokens, mirrored rounds`,
        }),
        ratioOf("decode_full_threads_over_raw_same_context", full.lmhost, full.rawSameContext, {
          note: "the same, raw node-llama-cpp on a context made as lmhost's (4 sequences, flash attention): what the server path costs",
        }),
        figureOf("decode_full_threads_client_cpu_ms_per_token", full.clientCpuMsPerToken, "ms", {
          note: "the bench's own CPU per token while it reads lmhost's stream, on the same cores (raw has no client)",
        }),
        ratioOf("decode_full_threads_raw_lmhost_context_over_raw", full.rawSameContext, full.raw, {
          note: "raw node-llama-cpp, lmhost's context ÷ a 1-sequence context without flash attention: what the context layout costs",
        }),
      );
    }
    if (sharedStart !== undefined && runs("concurrency"))
      figures.push(...(await concurrency(options, await sharedStart, realisticTokens, budgetMs)));
  } finally {
    await (await sharedStart)?.stop();
  }
  if (options.llamaServer !== undefined)
    // At all cores (lmhost's default), and at one thread too in a full run (issue 9's two columns).
    for (const threads of options.quick ? [physicalCores()] : [1, physicalCores()])
      figures.push(...(await versusLlamaServer(options, options.llamaServer, modelFile, rounds, threads)));
  return figures;
}

/** A prompt of about `tokens` tokens for the stories tokenizer (≈ 1 token per short word), unique by tag. */
function longPrompt(tokens: number, tag: string): string {
  const words = ["the", "cat", "sat", "on", "a", "mat", "and", "saw", "big", "dog", "run", "far"];
  const parts = [`Story ${tag}:`];
  for (let index = 0; parts.length < tokens / 1.3; index++) parts.push(words[index % words.length] ?? "a");
  return parts.join(" ");
}

/**
 * The same scenarios against llama-server (same model, threads, 4 slots of the same context), rounds
 * interleaved with lmhost, both through `/v1/responses` (so both render the model's ChatML template):
 * decode (with node-llama-cpp alone as a third column), prefill of a ~1,000-token prompt, a follow-up
 * after it (lmhost chained by previous_response_id, llama-server sent the whole history, which its slot's
 * prompt cache reuses), 4 concurrent streams.
 */
async function versusLlamaServer(
  options: BenchOptions,
  binary: string,
  modelFile: string,
  rounds: number,
  threads: number,
): Promise<Figure[]> {
  const maxTokens = options.quick ? 24 : 64;
  options.log(`llama-server side by side: ${binary}, ${threads} threads`);
  const lmhost = await startLmhost({ modelFile, threads, parallel: 4 });
  const llamaServer = await startLlamaServer({
    binary,
    modelFile,
    threads,
    contextPerSequence: 4096,
    parallel: 4,
  });
  // node-llama-cpp alone beside them for decode: tells what lmhost adds from what the binding costs.
  const raw = await startRaw({ modelFile, threads });
  const rawDecode: number[] = [];
  const samples = {
    decode: [[], []] as number[][],
    prefill: [[], []] as number[][],
    followUp: [[], []] as number[][],
    four: [[], []] as number[][],
    fourSteady: [[], []] as number[][],
  };
  try {
    await lmhost.generate({ input: PROMPT, maxTokens: 4 });
    await llamaServer.generate({ input: PROMPT, maxTokens: 4 });
    await raw.generate(PROMPT, 4);
    for (let round = 0; round < rounds; round++) {
      const [[ours, theirs], bare] = await interleaved(
        round,
        () =>
          interleaved(
            round,
            () => lmhost.generate({ input: `${PROMPT} ${round}`, maxTokens }),
            () => llamaServer.generate({ input: `${PROMPT} ${round}`, maxTokens }),
          ),
        () => raw.generate(`${PROMPT} ${round}`, maxTokens),
      );
      samples.decode[0]?.push(decodeRate(ours));
      samples.decode[1]?.push(decodeRate(theirs));
      rawDecode.push(decodeRate(bare));
      const prompt = longPrompt(1000, `r${round}`);
      const [ourFirst, theirFirst] = await interleaved(
        round,
        () => lmhost.generate({ input: prompt, maxTokens: 16 }),
        () => llamaServer.generate({ input: prompt, maxTokens: 16 }),
      );
      samples.prefill[0]?.push(ttftMs(ourFirst));
      samples.prefill[1]?.push(ttftMs(theirFirst));
      const followUp = "And then what happened to the cat?";
      const [ourNext, theirNext] = await interleaved(
        round,
        () =>
          lmhost.generate({
            input: followUp,
            maxTokens: 16,
            ...(ourFirst.responseId === undefined ? {} : { previousResponseId: ourFirst.responseId }),
          }),
        // llama-server keeps no responses: the client re-sends the history, its prompt cache reuses it.
        () =>
          llamaServer.generate({
            // llama-server's item parser wants typed content parts and an assistant item of type message.
            input: [
              { role: "user", content: [{ type: "input_text", text: prompt }] },
              {
                type: "message",
                role: "assistant",
                content: [{ type: "output_text", text: theirFirst.text ?? "" }],
              },
              { role: "user", content: [{ type: "input_text", text: followUp }] },
            ],
            maxTokens: 16,
          }),
      );
      samples.followUp[0]?.push(ttftMs(ourNext));
      samples.followUp[1]?.push(ttftMs(theirNext));
      const [ourFour, theirFour] = await interleaved(
        round,
        () => aggregate(lmhost, 4, maxTokens, `c${round}`),
        () => aggregate(llamaServer, 4, maxTokens, `c${round}`),
      );
      samples.four[0]?.push(ourFour.total);
      samples.four[1]?.push(theirFour.total);
      samples.fourSteady[0]?.push(ourFour.steady);
      samples.fourSteady[1]?.push(theirFour.steady);
      options.log(
        `  round ${round + 1}/${rounds}: decode ${decodeRate(ours).toFixed(1)} vs ${decodeRate(theirs).toFixed(1)} tok/s ` +
          `(raw node-llama-cpp ${decodeRate(bare).toFixed(1)}), ` +
          `prefill TTFT ${ttftMs(ourFirst).toFixed(0)} vs ${ttftMs(theirFirst).toFixed(0)} ms, ` +
          `follow-up TTFT ${ttftMs(ourNext).toFixed(0)} vs ${ttftMs(theirNext).toFixed(0)} ms ` +
          `(cached ${ourNext.cachedTokens}/${ourNext.promptTokens} vs ${theirNext.cachedTokens}/${theirNext.promptTokens}), ` +
          `4 streams ${ourFour.total.toFixed(1)} vs ${theirFour.total.toFixed(1)} tok/s ` +
          `(decode only ${ourFour.steady.toFixed(1)} vs ${theirFour.steady.toFixed(1)})`,
      );
    }
  } finally {
    await Promise.all([lmhost.stop(), llamaServer.stop(), raw.stop()]);
  }
  const pair = (name: string, unit: string, values: number[][], higherIsBetter: boolean): Figure[] => [
    figureOf(`vs_llama_server.t${threads}.${name}.lmhost`, values[0] ?? [], unit),
    figureOf(`vs_llama_server.t${threads}.${name}.llama_server`, values[1] ?? [], unit),
    ratioOf(
      `vs_llama_server.t${threads}.${name}.lmhost_over_llama_server`,
      values[0] ?? [],
      values[1] ?? [],
      {
        note: higherIsBetter ? "higher is better for lmhost" : "lower is better for lmhost",
      },
    ),
  ];
  return [
    ...pair("decode", "tok/s", samples.decode, true),
    figureOf(`vs_llama_server.t${threads}.decode.raw_node_llama_cpp`, rawDecode, "tok/s"),
    ratioOf(`vs_llama_server.t${threads}.decode.raw_over_llama_server`, rawDecode, samples.decode[1] ?? [], {
      note: "node-llama-cpp alone ÷ llama-server: what the binding costs before lmhost adds anything",
    }),
    ...pair("prefill_1000_ttft", "ms", samples.prefill, false),
    ...pair("follow_up_ttft", "ms", samples.followUp, false),
    ...pair("concurrency4_aggregate", "tok/s", samples.four, true),
    ...pair("concurrency4_decode_aggregate", "tok/s", samples.fourSteady, true),
  ];
}
