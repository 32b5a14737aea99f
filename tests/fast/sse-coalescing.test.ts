import { Hono } from "hono";
import { describe, expect, it, vi } from "vitest";
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

  it("still writes the events queued before the source threw", async () => {
    async function* failing(): AsyncGenerator<SseEvent> {
      for (let index = 0; index < 50; index++) yield { event: "delta", data: { type: "delta", index } };
      throw new Error("source failed after its events");
    }
    // hono's stream helper logs the source's error; the test keeps its output quiet.
    const logged = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const app = new Hono();
    app.get("/", (context) => streamSse(context, failing()));
    const response = await app.request("/");
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>)
      text += decoder.decode(chunk);
    const blocks = text.split("\n\n").filter((block) => block.startsWith("event: delta"));
    logged.mockRestore();
    expect(blocks).toHaveLength(50);
  });
});
