/**
 * A pool of the context sequences of one loaded model. One request owns a sequence at a time (two
 * generations on one sequence corrupt each other). A request gets the free sequence whose KV cache shares the
 * longest prefix with its prompt, so a follow-up turn re-evaluates only the new tokens. Requests beyond the
 * number of sequences wait in a bounded FIFO queue; a full queue is a 429, and an aborted waiter leaves it.
 * The loader creates one pool per loaded model, so every engine using the model shares it.
 *
 * A request may carry a cache key (the Responses API's `prompt_cache_key`): it goes to the sequence that last
 * served that key when that one is free and no other free sequence shares a longer prefix; among sequences
 * sharing equally long prefixes, one no key owns and then the least recently used is taken, so a keyed
 * conversation's sequence is the last to be overwritten.
 *
 * Generic over the sequence type so the scheduling can be tested without native code.
 */
import { ApiError } from "../../shared/errors.js";

export interface PooledSequence<Tokens> {
  compareContextTokens(tokens: Tokens): { firstDifferentIndex: number };
}

export interface SequenceLease<Sequence> {
  sequence: Sequence;
  /** Index of the sequence in the pool (stable; for diagnostics). */
  index: number;
  /** Prompt tokens already held by the sequence's KV cache when it was handed out. */
  commonPrefixLength: number;
  /** Returns the sequence to the pool; idempotent. */
  release(): void;
}

export interface SequencePoolStats {
  size: number;
  active: number;
  waiting: number;
  maxActiveSeen: number;
  maxWaitingSeen: number;
}

interface Waiter<Sequence, Tokens> {
  tokens: Tokens;
  cacheKey: string | undefined;
  resolve(lease: SequenceLease<Sequence>): void;
  reject(error: unknown): void;
  detach(): void;
}

export const defaultMaxQueue = 64;

export class SequencePool<Sequence extends PooledSequence<Tokens>, Tokens> {
  private readonly sequences: readonly Sequence[];
  private readonly busy: boolean[];
  /** The cache key of the request each sequence served last (undefined: a request without one). */
  private readonly owners: (string | undefined)[];
  /** Where each key was served last (valid while `owners` still names the key there). */
  private readonly keyed = new Map<string, number>();
  /** Release order of each sequence (0: never used), for least-recently-used ties. */
  private readonly lastUsed: number[];
  private useCounter = 0;
  private readonly waiters: Waiter<Sequence, Tokens>[] = [];
  private readonly defaultMaxQueue: number;
  private closedError: ApiError | undefined;
  private activeCount = 0;
  private maxActive = 0;
  private maxWaiting = 0;
  private readonly reusablePrefix: (sequence: Sequence, sharedPrefix: number, tokens: Tokens) => number;

  /**
   * `reusablePrefix(sequence, shared, tokens)`: how much of the `shared` tokens a sequence holds of a prompt its KV
   * cache can really keep (a sliding-window model cannot always go back to where a prompt leaves it;
   * loader.ts). Default: all of them.
   */
  constructor(options: {
    sequences: readonly Sequence[];
    maxQueue?: number;
    reusablePrefix?: (sequence: Sequence, sharedPrefix: number, tokens: Tokens) => number;
  }) {
    if (options.sequences.length === 0) throw new Error("A sequence pool needs at least one sequence");
    this.sequences = options.sequences;
    this.busy = options.sequences.map(() => false);
    this.owners = options.sequences.map(() => undefined);
    this.lastUsed = options.sequences.map(() => 0);
    this.defaultMaxQueue = options.maxQueue ?? defaultMaxQueue;
    this.reusablePrefix = options.reusablePrefix ?? ((_sequence, sharedPrefix) => sharedPrefix);
  }

  get stats(): SequencePoolStats {
    return {
      size: this.sequences.length,
      active: this.activeCount,
      waiting: this.waiters.length,
      maxActiveSeen: this.maxActive,
      maxWaitingSeen: this.maxWaiting,
    };
  }

  get active(): number {
    return this.activeCount;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  get maxActiveSeen(): number {
    return this.maxActive;
  }

  /** Restarts the high-water marks (tests). */
  resetStats(): void {
    this.maxActive = this.activeCount;
    this.maxWaiting = this.waiters.length;
  }

  /** All sequences, free or not (tests read their token meters). */
  get allSequences(): readonly Sequence[] {
    return this.sequences;
  }

  /**
   * Resolves with the free sequence sharing the longest prefix with `tokens` (or the one that last served
   * `cacheKey`, see the class comment), waiting in FIFO order when all are busy. Throws ApiError 429 `queue_full` when `maxQueue` requests already wait (default: the pool's),
   * and rejects with the signal's reason when `signal` aborts while waiting.
   */
  acquire(
    tokens: Tokens,
    options: {
      signal?: AbortSignal | undefined;
      maxQueue?: number | undefined;
      cacheKey?: string | undefined;
    } = {},
  ): Promise<SequenceLease<Sequence>> {
    const signal = options.signal;
    const cacheKey = options.cacheKey;
    const maxQueue = options.maxQueue ?? this.defaultMaxQueue;
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    if (signal?.aborted === true) return Promise.reject(abortReason(signal));
    if (this.waiters.length === 0) {
      const lease = this.takeBestFree(tokens, cacheKey);
      if (lease !== undefined) return Promise.resolve(lease);
    }
    if (this.waiters.length >= maxQueue) {
      return Promise.reject(
        new ApiError({
          status: 429,
          message: `Too many requests: all ${this.sequences.length} sequences are busy and ${this.waiters.length} requests are already waiting. Retry shortly.`,
          code: "queue_full",
          retryAfter: 1,
        }),
      );
    }
    return new Promise<SequenceLease<Sequence>>((resolve, reject) => {
      const onAbort = (): void => {
        const position = this.waiters.indexOf(waiter);
        if (position >= 0) this.waiters.splice(position, 1);
        reject(abortReason(signal));
      };
      const waiter: Waiter<Sequence, Tokens> = {
        tokens,
        cacheKey,
        resolve,
        reject,
        detach: () => signal?.removeEventListener("abort", onAbort),
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
      this.maxWaiting = Math.max(this.maxWaiting, this.waiters.length);
    });
  }

  /**
   * `sequence` itself, leased at once when it is free and no request waits for one; otherwise undefined.
   * For background work on a sequence (a prompt-cache save): it changes no key's ownership nor the
   * least-recently-used order.
   */
  tryAcquire(sequence: Sequence): SequenceLease<Sequence> | undefined {
    const index = this.sequences.indexOf(sequence);
    if (index < 0 || this.busy[index] === true || this.closedError !== undefined || this.waiters.length > 0)
      return undefined;
    this.busy[index] = true;
    this.activeCount += 1;
    let released = false;
    return {
      sequence,
      index,
      commonPrefixLength: 0,
      release: () => {
        if (released) return;
        released = true;
        this.busy[index] = false;
        this.activeCount -= 1;
        this.dispatch();
      },
    };
  }

  /** Rejects every waiter and all later acquisitions with `error`; held leases stay valid until released. */
  close(error: ApiError): void {
    this.closedError = error;
    for (const waiter of this.waiters.splice(0)) {
      waiter.detach();
      waiter.reject(error);
    }
  }

  private takeBestFree(tokens: Tokens, cacheKey: string | undefined): SequenceLease<Sequence> | undefined {
    const keyedIndex = cacheKey === undefined ? undefined : this.keyed.get(cacheKey);
    let bestIndex = -1;
    let bestLength = -1;
    this.sequences.forEach((sequence, index) => {
      if (this.busy[index] === true) return;
      const length = this.reusablePrefix(
        sequence,
        sequence.compareContextTokens(tokens).firstDifferentIndex,
        tokens,
      );
      if (length > bestLength || (length === bestLength && this.preferOnTie(index, bestIndex, keyedIndex))) {
        bestIndex = index;
        bestLength = length;
      }
    });
    const sequence = this.sequences[bestIndex];
    if (sequence === undefined) return undefined;
    this.busy[bestIndex] = true;
    const previousOwner = this.owners[bestIndex];
    if (previousOwner !== undefined && this.keyed.get(previousOwner) === bestIndex)
      this.keyed.delete(previousOwner);
    this.owners[bestIndex] = cacheKey;
    if (cacheKey !== undefined) this.keyed.set(cacheKey, bestIndex);
    this.activeCount += 1;
    this.maxActive = Math.max(this.maxActive, this.activeCount);
    let released = false;
    return {
      sequence,
      index: bestIndex,
      commonPrefixLength: bestLength,
      release: () => {
        if (released) return;
        released = true;
        this.busy[bestIndex] = false;
        this.useCounter += 1;
        this.lastUsed[bestIndex] = this.useCounter;
        this.activeCount -= 1;
        this.dispatch();
      },
    };
  }

  /**
   * Among sequences sharing equally long prefixes: the one that last served the request's key, then one no
   * other key owns, then the least recently used.
   */
  private preferOnTie(candidate: number, current: number, keyedIndex: number | undefined): boolean {
    if (current < 0) return true;
    if (keyedIndex !== undefined && (candidate === keyedIndex) !== (current === keyedIndex))
      return candidate === keyedIndex;
    const candidateOwned = this.owners[candidate] !== undefined;
    const currentOwned = this.owners[current] !== undefined;
    if (candidateOwned !== currentOwned) return !candidateOwned;
    return (this.lastUsed[candidate] ?? 0) < (this.lastUsed[current] ?? 0);
  }

  /** Hands free sequences to waiters in arrival order. */
  private dispatch(): void {
    while (this.waiters.length > 0) {
      const waiter = this.waiters[0];
      if (waiter === undefined) return;
      const lease = this.takeBestFree(waiter.tokens, waiter.cacheKey);
      if (lease === undefined) return;
      this.waiters.shift();
      waiter.detach();
      waiter.resolve(lease);
    }
  }
}

function abortReason(signal: AbortSignal | undefined): unknown {
  return signal?.reason ?? new DOMException("This operation was aborted", "AbortError");
}
