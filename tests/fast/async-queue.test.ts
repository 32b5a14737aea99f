import { describe, expect, it } from "vitest";
import { AsyncQueue } from "../../src/engine/llama/async-queue.js";

async function drain<Item>(queue: AsyncQueue<Item>): Promise<Item[]> {
  const items: Item[] = [];
  for await (const item of queue) items.push(item);
  return items;
}

describe("AsyncQueue", () => {
  it("delivers every item in order, then ends", async () => {
    const queue = new AsyncQueue<number>();
    const drained = drain(queue);
    for (let index = 0; index < 50; index++) {
      queue.push(index);
      if (index % 7 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    queue.end();
    expect(await drained).toEqual(Array.from({ length: 50 }, (_, index) => index));
  });

  it("ends right after the last item even when end() follows a push at once", async () => {
    const queue = new AsyncQueue<string>();
    const drained = drain(queue);
    await Promise.resolve();
    queue.push("last");
    queue.end();
    expect(await drained).toEqual(["last"]);
  });

  it("delivers buffered items before the failure, then throws it", async () => {
    const queue = new AsyncQueue<string>();
    const seen: string[] = [];
    const consumed = (async () => {
      for await (const item of queue) seen.push(item);
    })();
    queue.push("a");
    queue.push("b");
    queue.fail(new Error("generation failed"));
    await expect(consumed).rejects.toThrow("generation failed");
    expect(seen).toEqual(["a", "b"]);
  });

  it("wakes a waiting consumer only after work the producer schedules with setImmediate right after the push", async () => {
    // node-llama-cpp queues the next decode this way (LlamaContext._scheduleDecode, "nextCycle"): the
    // consumer's per-token work must run after it, not before it on the token's critical path.
    const queue = new AsyncQueue<string>();
    const order: string[] = [];
    const consumed = (async () => {
      for await (const item of queue) order.push(`consumer got ${item}`);
    })();
    await new Promise((resolve) => setImmediate(resolve)); // the consumer is now waiting
    queue.push("token");
    // LlamaChat returns from its callback and reaches the next evaluation a few promise hops later.
    await Promise.resolve();
    await Promise.resolve();
    setImmediate(() => order.push("next decode dispatched"));
    queue.end();
    await consumed;
    expect(order).toEqual(["next decode dispatched", "consumer got token"]);
  });
});
