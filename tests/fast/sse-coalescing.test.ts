import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { streamSse, type SseEvent } from "../../src/server/sse.js";

/** Events produced faster than they can be written, as a fast model's deltas are. */
async function* burst(count: number): AsyncGenerator<SseEvent> {
  for (let index = 0; index < count; index++) yield { event: "delta", data: { type: "delta", index } };
}

async function chunksOf(count: number): Promise<string[]> {
  const app = new Hono();
  app.get("/", (context) => streamSse(context, burst(count)));
  const response = await app.request("/");
  const decoder = new TextDecoder();
  const chunks: string[] = [];
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>)
    chunks.push(decoder.decode(chunk));
  return chunks;
}

describe("streamSse write coalescing", () => {
  it("joins events that arrive during a write into one write, whole events only, none lost", async () => {
    const chunks = await chunksOf(200);
    // Every write holds whole events (some clients drop an event split across chunks)...
    for (const chunk of chunks) expect(chunk.endsWith("\n\n")).toBe(true);
    // ...all of them, in order...
    const indexes = chunks
      .join("")
      .split("\n\n")
      .filter((block) => block !== "")
      .map((block) => (JSON.parse(block.split("\n")[1]!.slice(6)) as { index: number }).index);
    expect(indexes).toEqual(Array.from({ length: 200 }, (_, index) => index));
    // ...in fewer writes than events (one write per event before).
    expect(chunks.length).toBeLessThan(200);
  });
});
