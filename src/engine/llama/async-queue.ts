/**
 * A single-consumer async queue: node-llama-cpp's callbacks push parts, the engine's async generator pulls
 * them. `end()` finishes iteration after the buffered items; `fail(error)` makes the next pull throw.
 */
export class AsyncQueue<Item> implements AsyncIterable<Item> {
  private readonly buffer: Item[] = [];
  private pendingPull:
    { resolve(result: IteratorResult<Item>): void; reject(error: unknown): void } | undefined;
  private ended = false;
  private failure: { error: unknown } | undefined;

  push(item: Item): void {
    if (this.ended || this.failure !== undefined) return;
    const pull = this.pendingPull;
    if (pull !== undefined) {
      this.pendingPull = undefined;
      // The waiting consumer is woken two macrotasks later, not in a microtask. node-llama-cpp queues the
      // next decode from a setImmediate scheduled after this push (LlamaContext's "nextCycle" dispatch);
      // woken at once, the consumer ran all of lmhost's per-token work (event writer, SSE, the socket
      // write) before that decode started, on the critical path of every token. The outer setImmediate
      // runs in the same check phase as the dispatch, before it; the inner one in the next loop turn,
      // after the decode went to its worker thread. Measured (docs/PERFORMANCE.md): +22–33% tokens/s on
      // stories260K, +5–10% on the 471M model at 1 thread, neutral at 2 threads.
      setImmediate(() => setImmediate(() => pull.resolve({ value: item, done: false })));
    } else {
      this.buffer.push(item);
    }
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    const pull = this.pendingPull;
    if (pull !== undefined && this.buffer.length === 0) {
      this.pendingPull = undefined;
      pull.resolve({ value: undefined, done: true });
    }
  }

  fail(error: unknown): void {
    if (this.ended || this.failure !== undefined) return;
    this.failure = { error };
    const pull = this.pendingPull;
    if (pull !== undefined && this.buffer.length === 0) {
      this.pendingPull = undefined;
      pull.reject(error);
    }
  }

  private next(): Promise<IteratorResult<Item>> {
    const item = this.buffer.shift();
    if (item !== undefined) return Promise.resolve({ value: item, done: false });
    if (this.failure !== undefined) return Promise.reject(this.failure.error);
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.pendingPull = { resolve, reject };
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<Item> {
    return { next: () => this.next() };
  }
}
