/**
 * RSS growth over 1,000 small requests (run by bench/server-path-bench.ts with --expose-gc, in its own
 * process so nothing else the bench did shows in its RSS): the whole app in-process on stories260K-chatml
 * with a SQLite store, 500 warm-up requests, RSS read after gc() and a pause, 1,000 more, RSS again.
 * Prints progress lines (indented) and a `RESULT {...}` line.
 */
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { harness, MODEL } from "./responses-bench.js";

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --expose-gc");

async function settledRss(): Promise<number> {
  for (let index = 0; index < 3; index++) {
    gc!();
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return process.memoryUsage().rss;
}

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const server = await harness(llama, { parallel: 4 });
let counter = 0;
/** Requests before the first reading: V8's code and inline caches and SQLite's page cache fill first. */
const warmup = 500;
async function requests(count: number): Promise<void> {
  // Four at a time, half streamed, as a few clients would send them.
  for (let index = 0; index < count; index += 4) {
    await Promise.all(
      [0, 1, 2, 3].map(async (lane) => {
        const response = await server.app.request("http://bench/v1/responses", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            model: MODEL,
            input: `Request ${counter++}: Tom saw a dog`,
            max_output_tokens: 8,
            temperature: 0,
            stream: lane % 2 === 0,
          }),
        });
        await response.arrayBuffer();
        if (!response.ok) throw new Error(`request failed: ${response.status}`);
      }),
    );
  }
}
await requests(warmup);
const warmRss = await settledRss();
console.log(`  RSS after ${warmup} requests: ${(warmRss / 2 ** 20).toFixed(1)} MiB`);
const rss: number[] = [];
for (let block = 0; block < 5; block++) {
  await requests(200);
  rss.push(await settledRss());
  console.log(
    `  RSS after ${warmup + 200 * (block + 1)} requests: ${((rss.at(-1) ?? 0) / 2 ** 20).toFixed(1)} MiB`,
  );
}
await server.close();
await llama.dispose();
const growth = [((rss.at(-1) ?? 0) - warmRss) / warmRss];
console.log(`RESULT ${JSON.stringify({ warmRss, rss, growth })}`);
