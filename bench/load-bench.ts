/**
 * Does continuous batching admit newcomers? Time to first token of a short streamed request on an idle
 * server and while three long generations stream, side by side in one run (stories260K-chatml, 4 sequences,
 * one thread, every sequence holding an older conversation, so the newcomer's must erase it first). The
 * ratio `ttft_under_load_over_idle` is the figure (target ≤ 2); before lmhost's node-llama-cpp patch a
 * newcomer waited until a long generation ended (~4.5 s).
 * Runnable alone: `npx tsx bench/load-bench.ts`.
 */
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import type { App } from "../src/server/deps.js";
import { harness, MODEL } from "./responses-bench.js";

const DEFAULT_ROUNDS = 5;

/** Streams a request; resolves with the milliseconds to its first text delta, and when it ends. */
function stream(app: App, input: string, maxOutputTokens: number) {
  const started = performance.now();
  let resolveFirst!: (milliseconds: number) => void;
  const firstText = new Promise<number>((resolve) => (resolveFirst = resolve));
  const done = (async () => {
    const response = await app.request("http://localhost/v1/responses", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: MODEL,
        input,
        max_output_tokens: maxOutputTokens,
        temperature: 0,
        stream: true,
      }),
    });
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    let seen = false;
    for (;;) {
      const { done: ended, value } = await reader.read();
      if (ended) break;
      text += decoder.decode(value, { stream: true });
      if (!seen && text.includes("response.output_text.delta")) {
        seen = true;
        resolveFirst(performance.now() - started);
      }
    }
  })();
  return { firstText, done };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;

export async function runLoadBench(options: { rounds?: number } = {}): Promise<{
  idle: number[];
  loaded: number[];
  ttft_idle_ms: number;
  ttft_under_load_ms: number;
  ttft_under_load_over_idle: number;
}> {
  const ROUNDS = options.rounds ?? DEFAULT_ROUNDS;
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const server = await harness(llama, { parallel: 4 });
  const idle: number[] = [];
  const loaded: number[] = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // Every sequence holds an older conversation.
      await Promise.all(
        ["One day", "Once there", "A cat", "The sun"].map(
          async (input) => stream(server.app, `${input} ${round}`, 24).done,
        ),
      );
      idle.push(await stream(server.app, `A short one ${round}`, 4).firstText);
      const longOnes = [0, 1, 2].map((index) => stream(server.app, `Long story ${index} ${round}`, 600));
      await Promise.all(longOnes.map(async (long) => long.firstText));
      loaded.push(await stream(server.app, `Another short one ${round}`, 4).firstText);
      await Promise.all(longOnes.map(async (long) => long.done));
    }
  } finally {
    await server.close();
    await llama.dispose();
  }
  const result = {
    idle,
    loaded,
    ttft_idle_ms: median(idle),
    ttft_under_load_ms: median(loaded),
    ttft_under_load_over_idle: median(loaded) / median(idle),
  };
  console.log(
    `\nNewcomer TTFT (median of ${ROUNDS}): idle ${result.ttft_idle_ms.toFixed(1)} ms [${idle.map((value) => value.toFixed(0)).join(", ")}], ` +
      `while 3 long generations stream ${result.ttft_under_load_ms.toFixed(1)} ms [${loaded.map((value) => value.toFixed(0)).join(", ")}] ` +
      `→ ttft_under_load_over_idle ${result.ttft_under_load_over_idle.toFixed(2)} (target ≤ 2)`,
  );
  return result;
}

if (import.meta.url === `file://${process.argv[1]}`) await runLoadBench();
