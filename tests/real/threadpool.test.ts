/**
 * The `lmhost` binary sets UV_THREADPOOL_SIZE before libuv's threadpool starts (bin/lmhost.js is
 * CommonJS for that): a server started without the variable in its environment runs with exactly the
 * threads of one started with UV_THREADPOOL_SIZE=1 already set. When the entry was an ES module, Node's
 * loader had started the default pool of 4 first (11 threads instead of 8 here), and decoding at 2 threads
 * lost about a third of its speed to the extra pool threads.
 */
import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { storiesModel } from "../helpers/paths.js";
import { spawnServer } from "../helpers/spawn-server.js";

async function threadsAfterOneRequest(threadpoolSize: string | undefined): Promise<number> {
  const server = await spawnServer(["--model", storiesModel], {
    env: { UV_THREADPOOL_SIZE: threadpoolSize },
  });
  try {
    const response = await fetch(`${server.url}/v1/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "stories260K", input: "hi", max_output_tokens: 4, temperature: 0 }),
    });
    expect(response.status).toBe(200);
    return readdirSync(`/proc/${server.child.pid}/task`).length;
  } finally {
    await server.stop();
  }
}

describe.runIf(process.platform === "linux")("the libuv threadpool", () => {
  it("is sized by the binary itself, before the pool starts", async () => {
    const preset = await threadsAfterOneRequest("1");
    const unset = await threadsAfterOneRequest(undefined);
    expect(unset).toBe(preset);
  });
});
