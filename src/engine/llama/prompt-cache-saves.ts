/**
 * The prompt cache's side of a generation (prompt-cache.ts keeps the folder): restoring a saved state into
 * the sequence a request got, saving a long prompt's state once its model falls idle, writing a waiting
 * state before another conversation overwrites its sequence, and the wait of a request for a state being
 * written. One per engine; the engine tells it when a model is busy and tracks its background work.
 *
 * Why a save waits for an idle model: writing a state takes node-llama-cpp's context lock (and libuv's one
 * pool thread) for the whole native write, so a save right after the response made an agent's next turn
 * wait for it (Codex's 10,533-token instructions on the 89M bench model: a 521 MB state, 0.7 s).
 */
import type { LlamaContextSequence, Token } from "node-llama-cpp";
import type { LlamaLoadedModel } from "./loader.js";
import { commonPrefixLength, type PromptCache } from "./prompt-cache.js";
import type { SequenceLease } from "./sequence-pool.js";
import type { ModelLease } from "../../models/types.js";

export interface PromptCacheSavesOptions {
  /** How long a model must have had no generation in progress before a state is saved (default 2,000 ms). */
  idleMs?: number;
  /** A save that waited this long runs at its sequence's next free moment anyway (default 60,000 ms). */
  maxDeferMs?: number;
  /** Whether a generation of `loaded` is in progress (from its model lease on) or waits for a sequence. */
  busy: (loaded: LlamaLoadedModel) => boolean;
  /** Whether the engine is closing (no new saves). */
  closed: () => boolean;
  /** Background work the engine's settled() and close() wait for. */
  track: (task: Promise<void>) => void;
  /** Where failures are reported (they never fail a request). */
  warn: (message: string) => void;
}

export class PromptCacheSaves {
  /** Saves being written (they hold their sequence until written), and the model of each. */
  private readonly writing = new Map<Promise<void>, LlamaLoadedModel>();
  /** Saves waiting for their model to fall idle, by sequence. */
  private readonly waiting = new Map<LlamaContextSequence, WaitingSave>();
  private readonly idleMs: number;
  private readonly maxDeferMs: number;

  constructor(
    private readonly cache: PromptCache,
    private readonly options: PromptCacheSavesOptions,
  ) {
    this.idleMs = options.idleMs ?? 2000;
    this.maxDeferMs = options.maxDeferMs ?? 60_000;
  }

  /**
   * Before a request takes a sequence of `loaded`: a state being saved holds its sequence for a moment, and
   * the request it belongs to most likely continues there (a follow-up turn, the tool loop's next call), so
   * wait for it instead of taking a worse sequence. Only this model's saves matter; a cancelled request
   * stops waiting.
   */
  async untilWritten(loaded: LlamaLoadedModel, signal: AbortSignal): Promise<void> {
    const saves = [...this.writing].filter(([, model]) => model === loaded).map(([save]) => save);
    if (saves.length > 0) await untilSettledOrAborted(saves, signal);
  }

  /** Writes every waiting save now, where its sequence is free and unchanged (settled, close). */
  flush(): void {
    for (const save of [...this.waiting.values()]) save.run();
  }

  /**
   * Restores the prompt cache's state sharing the longest prefix with the prompt when it holds enough more
   * than the sequence does; returns the prompt tokens the sequence holds afterwards. Never throws: a state
   * that cannot be restored is deleted with a warning and the sequence is left empty.
   */
  async restore(
    loaded: LlamaLoadedModel,
    sequenceLease: SequenceLease<LlamaContextSequence>,
    tokens: readonly Token[],
  ): Promise<number> {
    const cache = this.cache;
    const identity = loaded.promptCacheIdentity;
    const held = sequenceLease.commonPrefixLength;
    if (identity === undefined) return held;
    const sequence = sequenceLease.sequence;
    try {
      await cache.ready();
      const match = cache.lookup(identity, tokens);
      if (!cache.worthRestoring(match, held) || match.entry.tokens.length >= loaded.contextLength)
        return held;
      // Emptied first: a load that fails before llama.cpp clears the sequence would leave its old cells
      // behind node-llama-cpp's (then empty) token list.
      await sequence.clearHistory();
      const restored = await cache.restore(match.entry, async (file) => {
        await asExclusiveWaiter(sequence, () => sequence.loadStateFromFile(file, { acceptRisk: true }));
        return sequence.contextTokens;
      });
      if (!restored) await sequence.clearHistory();
    } catch (error) {
      this.options.warn(
        `prompt cache: restoring failed: ${error instanceof Error ? error.message : String(error)}`,
      );
      await sequence.clearHistory().catch(() => undefined);
    }
    // Sliding-window and recurrent models never get here: they have no prompt cache identity (loader.ts).
    return sequence.compareContextTokens(tokens as Token[]).firstDifferentIndex;
  }

  /**
   * After a generation: saves the sequence's state (prompt and answer) when the prompt is long and enough of
   * it is not cached yet, once the model has had no generation in progress for `idleMs` (see the file
   * comment). An agent's next turn usually comes before that; it extends the same sequence, and its own save
   * replaces this one, which is dropped when the sequence no longer holds these tokens. Returns true when it
   * took over the model lease (held until the save is written or dropped, so the model is not unloaded
   * under it). The lease gives way: when the model is to be unloaded or another model needs its slot, the
   * state is written at once instead of after the idle wait.
   */
  afterGeneration(
    loaded: LlamaLoadedModel,
    promptTokens: number,
    sequence: LlamaContextSequence,
    modelLease: Pick<ModelLease<LlamaLoadedModel>, "release" | "yieldWhenWanted">,
  ): boolean {
    const releaseModel = modelLease.release;
    const cache = this.cache;
    const identity = loaded.promptCacheIdentity;
    // A cancelled generation's state is saved too: its sequence holds what it evaluated (an interrupted next
    // turn holds the whole prompt it shares with a waiting save it replaced). Not while the engine closes.
    if (identity === undefined || this.options.closed()) return false;
    const tokens = sequence.contextTokens.slice();
    if (tokens.length > loaded.contextLength || !cache.shouldSave(identity, promptTokens, tokens))
      return false;
    const since = performance.now();
    let timer: NodeJS.Timeout | undefined;
    let settle = noop;
    const task = new Promise<void>((resolve) => (settle = resolve));
    this.options.track(task);
    const leave = (): boolean => {
      if (this.waiting.get(sequence) !== waiting) return false;
      this.waiting.delete(sequence);
      clearTimeout(timer);
      return true;
    };
    const write = (sequenceLease: SequenceLease<LlamaContextSequence>): Promise<void> => {
      const { written, done } = this.write(loaded, identity, tokens, sequenceLease, releaseModel);
      void done.then(settle, settle);
      return written;
    };
    /**
     * "idle": the timer (writes once the model is idle or the save overdue); "wanted": the model is wanted gone
     * (writes if the sequence is free, else keeps waiting: a request on it writes it first, beforeOverwrite);
     * "flush": settled() and close() (writes if the sequence is free, else gives up).
     */
    const attempt = (mode: "idle" | "wanted" | "flush") => {
      if (this.waiting.get(sequence) !== waiting) return;
      clearTimeout(timer);
      // Another request used the sequence since: it holds other tokens, and saves its own state if it should.
      if (!sameTokens(sequence.contextTokens, tokens)) return waiting.drop();
      const overdue = performance.now() - since >= this.maxDeferMs;
      const wait = mode === "idle" && !overdue && this.options.busy(loaded);
      const sequenceLease = wait ? undefined : loaded.pool.tryAcquire(sequence);
      if (sequenceLease === undefined) {
        if (mode === "flush") return waiting.drop();
        timer = setTimeout(() => attempt("idle"), this.idleMs).unref();
        return;
      }
      leave();
      void write(sequenceLease);
    };
    const waiting: WaitingSave = {
      tokens,
      promptLength: promptTokens,
      run: () => attempt("flush"),
      drop: () => {
        if (!leave()) return;
        releaseModel();
        settle();
      },
      writeOn: (sequenceLease) => {
        // Only the state it was asked for (a continuation that failed may have left other tokens there).
        if (!sameTokens(sequence.contextTokens, tokens)) {
          waiting.drop();
          return Promise.resolve();
        }
        if (!leave()) return Promise.resolve();
        // The request keeps its sequence: the save only borrows it.
        return write({ ...sequenceLease, release: noop });
      },
    };
    // A newer state of the same sequence replaces one still waiting (the conversation went on).
    this.waiting.get(sequence)?.drop();
    this.waiting.set(sequence, waiting);
    timer = setTimeout(() => attempt("idle"), this.idleMs).unref();
    modelLease.yieldWhenWanted?.(() => attempt("wanted"));
    return true;
  }

  /**
   * Before a request overwrites its sequence: a state waiting there to be saved is written first, unless the
   * request continues it; its own state is saved after it instead. A sequence handed to another conversation
   * before its model fell idle would otherwise lose the state; this one write is then on the request's path,
   * as every save used to be. It is waited for whatever the request's signal says: the write reads the
   * sequence the request holds.
   *
   * A request continues the waiting state when it shares all of it but the last `continuationSlackTokens`,
   * or all of its prompt: the next turn of a reasoning model whose client does not send the thoughts back
   * differs from the state right after the prompt, and so does one whose client re-renders the answer.
   */
  async beforeOverwrite(
    sequenceLease: SequenceLease<LlamaContextSequence>,
    tokens: readonly Token[],
  ): Promise<void> {
    const waiting = this.waiting.get(sequenceLease.sequence);
    if (waiting === undefined) return;
    const shared = commonPrefixLength(waiting.tokens, tokens);
    if (shared >= Math.min(waiting.promptLength, waiting.tokens.length - continuationSlackTokens)) return;
    await waiting.writeOn(sequenceLease);
  }

  /**
   * Writes a state to the prompt cache, holding the sequence until the state file is written (requests
   * meanwhile wait for it): `written` then; `done` once the checksum and renames are over too.
   */
  private write(
    loaded: LlamaLoadedModel,
    identity: string,
    tokens: readonly Token[],
    sequenceLease: SequenceLease<LlamaContextSequence>,
    releaseModel: () => void,
  ): { written: Promise<void>; done: Promise<void> } {
    const sequence = sequenceLease.sequence;
    let written = noop;
    const writing = new Promise<void>((resolve) => (written = resolve));
    this.writing.set(writing, loaded);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      sequenceLease.release();
      releaseModel();
      this.writing.delete(writing);
      written();
    };
    const done = this.cache
      .save(
        identity,
        tokens,
        (file) => asExclusiveWaiter(sequence, () => sequence.saveStateToFile(file)),
        release,
      )
      .then(noop, (error: unknown) => {
        this.options.warn(
          `prompt cache: saving failed: ${error instanceof Error ? error.message : String(error)}`,
        );
      })
      .finally(release);
    return { written: writing, done };
  }
}

/** A prompt-cache save waiting for its model to fall idle (PromptCacheSaves.afterGeneration). */
interface WaitingSave {
  /** The sequence's tokens when the save was asked for. */
  tokens: readonly Token[];
  /** How many of them were the prompt (the rest is the answer, thoughts included). */
  promptLength: number;
  /** Writes it now if its sequence is free and unchanged, else drops it (settled, close). */
  run(): void;
  /** Gives it up, releasing the model lease. */
  drop(): void;
  /** Writes it on a sequence lease the caller keeps (beforeOverwrite). */
  writeOn(sequenceLease: SequenceLease<LlamaContextSequence>): Promise<void>;
}

/** A later prompt sharing all but this many of a waiting save's tokens continues it (beforeOverwrite). */
const continuationSlackTokens = 64;

/** Whether a sequence still holds exactly `tokens`. */
function sameTokens(held: readonly Token[], tokens: readonly Token[]): boolean {
  return held.length === tokens.length && commonPrefixLength(held, tokens) === tokens.length;
}

function noop(): void {}

/**
 * Runs a node-llama-cpp call that takes the context lock (saving or loading a sequence's state) as an
 * exclusive waiter of lmhost's patch (patches/node-llama-cpp+3.21.1.patch): the batch dispatcher then yields
 * the lock between two decode steps instead of holding it until every running generation ends, as it does for
 * erasing a sequence's tokens. Without the patch the counter is an unused property.
 */
async function asExclusiveWaiter<Result>(
  sequence: LlamaContextSequence,
  operation: () => Promise<Result>,
): Promise<Result> {
  const context = sequence.context as unknown as { _exclusiveLockWaiters?: number };
  context._exclusiveLockWaiters = (context._exclusiveLockWaiters ?? 0) + 1;
  try {
    return await operation();
  } finally {
    context._exclusiveLockWaiters -= 1;
  }
}

/** Waits until every promise of `promises` has settled, or `signal` is aborted (whichever comes first). */
async function untilSettledOrAborted(
  promises: readonly Promise<unknown>[],
  signal: AbortSignal,
): Promise<void> {
  if (signal.aborted) return;
  let onAbort = noop;
  const aborted = new Promise<void>((resolve) => {
    onAbort = resolve;
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    await Promise.race([Promise.allSettled(promises), aborted]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}
