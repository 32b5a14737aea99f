/**
 * The sequence pool's scheduling with fake sequences (no native code): longest-prefix choice, FIFO waiting,
 * the 429 bound, aborted waiters; plus the AsyncQueue and PartEmitter the engine streams through.
 */
import { describe, expect, it } from "vitest";
import { AsyncQueue } from "../../src/engine/llama/async-queue.js";
import { PartEmitter } from "../../src/engine/llama/generation.js";
import { SequencePool } from "../../src/engine/llama/sequence-pool.js";
import type { EnginePart } from "../../src/engine/types.js";
import { ApiError } from "../../src/shared/errors.js";

class FakeSequence {
  constructor(
    readonly name: string,
    public contextTokens: number[] = [],
  ) {}

  compareContextTokens(tokens: number[]): { firstDifferentIndex: number } {
    let index = 0;
    while (
      index < tokens.length &&
      index < this.contextTokens.length &&
      tokens[index] === this.contextTokens[index]
    )
      index += 1;
    return { firstDifferentIndex: index };
  }
}

function pool(sequences: FakeSequence[], maxQueue = 64): SequencePool<FakeSequence, number[]> {
  return new SequencePool<FakeSequence, number[]>({ sequences, maxQueue });
}

describe("SequencePool", () => {
  it("hands out the free sequence with the longest common prefix", async () => {
    const sequences = [
      new FakeSequence("a", [1, 2]),
      new FakeSequence("b", [1, 2, 3, 4]),
      new FakeSequence("c", [9]),
    ];
    const subject = pool(sequences);
    const lease = await subject.acquire([1, 2, 3, 4, 5]);
    expect(lease.sequence.name).toBe("b");
    expect(lease.commonPrefixLength).toBe(4);
    const second = await subject.acquire([1, 2, 3, 4, 5]);
    expect(second.sequence.name).toBe("a");
    expect(second.commonPrefixLength).toBe(2);
    expect(subject.stats).toMatchObject({ active: 2, waiting: 0, maxActiveSeen: 2 });
    lease.release();
    lease.release(); // idempotent
    second.release();
    expect(subject.active).toBe(0);
  });

  it("counts only the prefix a sequence can go back to (reusablePrefix), and reports that as held", async () => {
    // "a" shares 4 tokens but (like a sliding-window sequence far past them) can keep none of them.
    const sequences = [new FakeSequence("a", [1, 2, 3, 4, 7, 7, 7]), new FakeSequence("b", [1, 2])];
    const subject = new SequencePool<FakeSequence, number[]>({
      sequences,
      reusablePrefix: (sequence, shared) => (sequence.name === "a" ? 0 : shared),
    });
    const lease = await subject.acquire([1, 2, 3, 4, 5]);
    expect(lease.sequence.name).toBe("b");
    expect(lease.commonPrefixLength).toBe(2);
  });

  it("queues beyond the pool size in FIFO order and hands released sequences over", async () => {
    const subject = pool([new FakeSequence("only")]);
    const first = await subject.acquire([1]);
    const order: string[] = [];
    const second = subject.acquire([2]).then((lease) => {
      order.push("second");
      return lease;
    });
    const third = subject.acquire([3]).then((lease) => {
      order.push("third");
      return lease;
    });
    expect(subject.waiting).toBe(2);
    first.release();
    const secondLease = await second;
    expect(subject.waiting).toBe(1);
    secondLease.release();
    (await third).release();
    expect(order).toEqual(["second", "third"]);
    expect(subject.maxActiveSeen).toBe(1);
    expect(subject.stats.maxWaitingSeen).toBe(2);
  });

  it("rejects with 429 queue_full when the queue is full", async () => {
    const subject = pool([new FakeSequence("only")], 1);
    const held = await subject.acquire([1]);
    const waiting = subject.acquire([1]);
    const overflow = subject.acquire([1]);
    await expect(overflow).rejects.toBeInstanceOf(ApiError);
    await overflow.catch((error: unknown) => {
      const apiError = error as ApiError;
      expect(apiError.status).toBe(429);
      expect(apiError.code).toBe("queue_full");
      expect(apiError.retryAfter).toBe(1);
    });
    held.release();
    (await waiting).release();
  });

  it("a per-acquire maxQueue overrides the pool's (0: never wait)", async () => {
    const subject = pool([new FakeSequence("only")], 64);
    const held = await subject.acquire([1]);
    await expect(subject.acquire([1], { maxQueue: 0 })).rejects.toMatchObject({
      status: 429,
      code: "queue_full",
    });
    held.release();
  });

  it("removes an aborted waiter from the queue", async () => {
    const subject = pool([new FakeSequence("only")], 1);
    const held = await subject.acquire([1]);
    const controller = new AbortController();
    const aborted = subject.acquire([1], { signal: controller.signal });
    expect(subject.waiting).toBe(1);
    controller.abort(new Error("client went away"));
    await expect(aborted).rejects.toThrow("client went away");
    expect(subject.waiting).toBe(0);
    // The freed queue slot is usable again.
    const next = subject.acquire([1]);
    held.release();
    (await next).release();
    expect(subject.active).toBe(0);
  });

  it("rejects immediately when the signal is already aborted", async () => {
    const subject = pool([new FakeSequence("only")]);
    await expect(subject.acquire([1], { signal: AbortSignal.abort(new Error("late")) })).rejects.toThrow(
      "late",
    );
    expect(subject.active).toBe(0);
  });

  it("routes a prompt_cache_key to the sequence that served it last, unless another holds a longer prefix", async () => {
    // Three sequences holding the same shared prefix (the instructions) and different conversations.
    const shared = [1, 2, 3];
    const sequences = [
      new FakeSequence("a", [...shared, 10]),
      new FakeSequence("b", [...shared, 20]),
      new FakeSequence("c", [...shared, 30]),
    ];
    const subject = pool(sequences);
    const serve = async (tokens: number[], cacheKey: string | undefined) => {
      const lease = await subject.acquire(tokens, { cacheKey });
      lease.sequence.contextTokens = tokens;
      lease.release();
      return lease.sequence.name;
    };
    expect(await serve([...shared, 10], "k1")).toBe("a");
    expect(await serve([...shared, 20], "k2")).toBe("b");
    expect(await serve([...shared, 30], "k3")).toBe("c");
    // A new turn of k2 whose prompt shares only the instructions with every sequence: k2's sequence.
    expect(await serve([...shared, 21], "k2")).toBe("b");
    expect(await serve([...shared, 11], "k1")).toBe("a");
    // Without a key, ties go to the least recently used sequence (c), never the lowest index.
    expect(await serve([...shared, 40], undefined)).toBe("c");
    // k3's sequence was overwritten by the keyless request: k3 no longer owns it, and a tie goes to an
    // unowned or least recently used sequence, which is c again (unowned now).
    expect(await serve([...shared, 31], "k3")).toBe("c");
    // A longer prefix still wins over the key: k1's prompt continues b's conversation.
    expect(await serve([...shared, 21, 5], "k1")).toBe("b");
    // The keyed sequence busy: the best free one.
    const held = await subject.acquire([...shared, 11], { cacheKey: "k1" });
    expect(held.sequence.name).toBe("a");
    const other = await subject.acquire([...shared, 11], { cacheKey: "k1" });
    expect(other.sequence.name).not.toBe("a");
    held.release();
    other.release();
  });

  it("hands a released keyed sequence to a waiter with that key in FIFO order", async () => {
    const sequences = [new FakeSequence("a"), new FakeSequence("b")];
    const subject = pool(sequences);
    const first = await subject.acquire([1], { cacheKey: "k1" });
    const second = await subject.acquire([2], { cacheKey: "k2" });
    const waiting = subject.acquire([3], { cacheKey: "k2" });
    first.release();
    // The only free sequence goes to the first waiter, whatever its key.
    expect((await waiting).sequence.name).toBe("a");
    second.release();
  });

  it("close() rejects waiters and later acquisitions", async () => {
    const subject = pool([new FakeSequence("only")]);
    const held = await subject.acquire([1]);
    const waiting = subject.acquire([1]);
    const closedError = new ApiError({ status: 503, message: "closing" });
    subject.close(closedError);
    await expect(waiting).rejects.toBe(closedError);
    await expect(subject.acquire([1])).rejects.toBe(closedError);
    held.release();
  });
});

describe("AsyncQueue", () => {
  it("delivers pushed items, then ends", async () => {
    const queue = new AsyncQueue<number>();
    queue.push(1);
    setTimeout(() => {
      queue.push(2);
      queue.end();
    }, 5);
    const seen: number[] = [];
    for await (const item of queue) seen.push(item);
    expect(seen).toEqual([1, 2]);
  });

  it("throws the failure after the buffered items", async () => {
    const queue = new AsyncQueue<number>();
    queue.push(1);
    queue.fail(new Error("boom"));
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const item of queue) seen.push(item);
      })(),
    ).rejects.toThrow("boom");
    expect(seen).toEqual([1]);
  });
});

describe("PartEmitter", () => {
  function collect(run: (emitter: PartEmitter) => void): EnginePart[] {
    const queue = new AsyncQueue<EnginePart>();
    const parts: EnginePart[] = [];
    const realPush = queue.push.bind(queue);
    queue.push = (part: EnginePart) => {
      parts.push(part);
      realPush(part);
    };
    run(new PartEmitter(queue));
    return parts;
  }

  const token = (count: number) => Array.from({ length: count }, (_, index) => index as never);

  it("turns thought segments into reasoning parts and counts their tokens", () => {
    const parts = collect((emitter) => {
      emitter.onResponseChunk({
        type: "segment",
        segmentType: "thought",
        text: "",
        tokens: [],
        segmentStartTime: new Date(),
      });
      emitter.onResponseChunk({ type: "segment", segmentType: "thought", text: "Let me", tokens: token(2) });
      emitter.onResponseChunk({ type: "segment", segmentType: "thought", text: " think", tokens: token(1) });
      emitter.onResponseChunk({
        type: "segment",
        segmentType: "thought",
        text: "",
        tokens: [],
        segmentEndTime: new Date(),
      });
      emitter.onResponseChunk({ type: undefined, segmentType: undefined, text: "Answer", tokens: token(1) });
      expect(emitter.reasoningTokens).toBe(3);
    });
    expect(parts).toEqual([
      { type: "reasoning-start" },
      { type: "reasoning-delta", text: "Let me" },
      { type: "reasoning-delta", text: " think" },
      { type: "reasoning-end" },
      { type: "text-delta", text: "Answer" },
    ]);
  });

  it("closes an open thought when text starts without an end marker", () => {
    const parts = collect((emitter) => {
      emitter.onResponseChunk({
        type: "segment",
        segmentType: "thought",
        text: "hmm",
        tokens: token(1),
        segmentStartTime: new Date(),
      });
      emitter.onResponseChunk({ type: undefined, segmentType: undefined, text: "Hi", tokens: token(1) });
    });
    expect(parts.map((part) => part.type)).toEqual([
      "reasoning-start",
      "reasoning-delta",
      "reasoning-end",
      "text-delta",
    ]);
  });

  it("streams call arguments, holds back the grammar's trailing newlines and ends each call in order", () => {
    const parts = collect((emitter) => {
      emitter.onFunctionCallParamsChunk({
        callIndex: 0,
        functionName: "get_weather",
        paramsChunk: '{"city": ',
        done: false,
      });
      emitter.onFunctionCallParamsChunk({
        callIndex: 0,
        functionName: "get_weather",
        paramsChunk: '"Paris"}',
        done: false,
      });
      emitter.onFunctionCallParamsChunk({
        callIndex: 0,
        functionName: "get_weather",
        paramsChunk: "\n\n",
        done: false,
      });
      emitter.onFunctionCallParamsChunk({
        callIndex: 0,
        functionName: "get_weather",
        paramsChunk: "\n\n",
        done: true,
      });
      emitter.onFunctionCall("get_weather", { city: "Paris" });
      emitter.onFunctionCall("no_params", undefined);
    });
    const [start, ...rest] = parts;
    expect(start).toMatchObject({ type: "tool-call-start", name: "get_weather" });
    const callId = start?.type === "tool-call-start" ? start.callId : "";
    expect(callId).toMatch(/^call_[0-9a-f]{48}$/);
    expect(rest.slice(0, 3)).toEqual([
      { type: "tool-call-delta", callId, argumentsDelta: '{"city":' },
      { type: "tool-call-delta", callId, argumentsDelta: ' "Paris"}' },
      { type: "tool-call-end", callId, name: "get_weather", arguments: '{"city": "Paris"}' },
    ]);
    expect(rest.slice(3).map((part) => part.type)).toEqual([
      "tool-call-start",
      "tool-call-delta",
      "tool-call-end",
    ]);
    expect(rest.at(-1)).toMatchObject({ type: "tool-call-end", name: "no_params", arguments: "{}" });
  });
});
