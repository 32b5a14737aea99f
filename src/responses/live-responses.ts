/**
 * The responses this process is running right now, so GET, cancel, delete and `previous_response_id`
 * see them before their final record is stored.
 *
 * - Background (`background: true`): the request answers at once with the `queued` snapshot while the
 *   run goes on here, detached from the HTTP request. Cancel aborts the run and waits for its `cancelled`
 *   record. With `stream: true` every event is kept in memory, so a client that dropped can resume with
 *   `GET /v1/responses/{id}?stream=true&starting_after=N`; the entry (and that buffer) stays for a while
 *   after the run ends, then is released.
 * - Foreground (store: true): listed while its request consumes the events, so GET answers the live
 *   snapshot (`in_progress`); no events are buffered (a foreground stream cannot be resumed) and the
 *   entry goes as soon as the run ends, its final record being in the store by then.
 *
 * A run counts as running until its terminal event, which run-response yields only after storing the
 * final record: from then on the store answers. `delete` forgets a response at once: a running one is
 * aborted and stores nothing more (ResponseRun.discard), and its event buffer is dropped.
 *
 * It also bounds how many background responses may wait (`queued`) for room in the engine's full queue
 * (`queueWait`, `assertBackgroundRoom`), and lists what running responses chain from (`chainedFrom`), so
 * pruning keeps it until they are stored.
 */
import { linkAbortSignals, type LinkedAbortSignal } from "../shared/abort-signals.js";
import { ApiError } from "../shared/errors.js";
import type { ResponseRun } from "./run-response.js";
import { isTerminalEvent, type ResponseObject, type ResponseStreamEvent } from "./wire-types.js";

interface LiveEntry {
  background: boolean;
  link: LinkedAbortSignal;
  run: ResponseRun;
  /** Every event so far, when a background response was created with stream: true. */
  events: ResponseStreamEvent[] | undefined;
  /** Set at the terminal event (the final record is stored by then) or when the run stops. */
  finished: boolean;
  /** Resolves when the run has ended and released everything. */
  done: Promise<void>;
  /** Resolves (and is replaced) whenever an event arrives or the run ends. */
  changed: Promise<void>;
  signalChange: () => void;
}

export interface LiveResponsesOptions {
  /** How long a finished background run stays in memory for polling and stream resumption (default 10 minutes). */
  retainFinishedMilliseconds?: number;
  /** Aborted at server shutdown: every run stops (as failed, when aborted with a ShutdownError). */
  shutdownSignal?: AbortSignal;
  /**
   * How many background responses may wait for room in the engine's full queue at once (default 1,024);
   * while that many wait, a new background request is refused with 429 `queue_full`.
   */
  maxWaitingBackground?: number;
  onError?: (message: string) => void;
}

/** The default of LiveResponsesOptions.maxWaitingBackground. */
export const MAX_WAITING_BACKGROUND = 1_024;

export class LiveResponses {
  readonly #entries = new Map<string, LiveEntry>();
  readonly #retainMilliseconds: number;
  readonly #shutdownSignal: AbortSignal | undefined;
  readonly #onError: (message: string) => void;
  readonly #maxWaitingBackground: number;
  #waitingBackground = 0;
  /** previous_response_id of each run whose signal is not disposed yet, with how many runs name it. */
  readonly #chainedFrom = new Map<string, number>();

  constructor(options: LiveResponsesOptions = {}) {
    this.#retainMilliseconds = options.retainFinishedMilliseconds ?? 10 * 60 * 1000;
    this.#shutdownSignal = options.shutdownSignal;
    this.#maxWaitingBackground = options.maxWaitingBackground ?? MAX_WAITING_BACKGROUND;
    this.#onError = options.onError ?? (() => undefined);
  }

  /**
   * The abort handle a new run must generate under: aborted by cancel()/delete(), by server shutdown and
   * by any of `signals` (a foreground request's client signal). Hand it to startBackground/startForeground,
   * which dispose it when the run ends; dispose it yourself if the run never gets there. Until it is
   * disposed, `chainsFrom` (the run's previous_response_id) is listed by chainedFrom().
   */
  newSignal(chainsFrom: string | null, ...signals: readonly AbortSignal[]): LinkedAbortSignal {
    const link = linkAbortSignals(...signals, this.#shutdownSignal);
    if (chainsFrom === null) return link;
    this.#chainedFrom.set(chainsFrom, (this.#chainedFrom.get(chainsFrom) ?? 0) + 1);
    let released = false;
    return {
      signal: link.signal,
      abort: (reason?: unknown) => link.abort(reason),
      dispose: () => {
        link.dispose();
        if (released) return;
        released = true;
        const runs = (this.#chainedFrom.get(chainsFrom) ?? 1) - 1;
        if (runs > 0) this.#chainedFrom.set(chainsFrom, runs);
        else this.#chainedFrom.delete(chainsFrom);
      },
    };
  }

  /**
   * The ids runs here chain from (their previous_response_id) and have not stored a final record for yet:
   * pruning must keep them (RunDependencies.protectedIds).
   */
  chainedFrom(): string[] {
    return [...this.#chainedFrom.keys()];
  }

  /** Background runs report through this while they wait for room in the engine's queue. */
  readonly queueWait = {
    enter: (): void => {
      this.#waitingBackground++;
    },
    leave: (): void => {
      this.#waitingBackground--;
    },
  };

  /** 429 `queue_full` when `maxWaitingBackground` background responses already wait for the engine. */
  assertBackgroundRoom(): void {
    if (this.#waitingBackground < this.#maxWaitingBackground) return;
    throw new ApiError({
      status: 429,
      message: `Too many requests: ${this.#waitingBackground} background responses are already waiting for the engine. Retry shortly.`,
      code: "queue_full",
      retryAfter: 1,
    });
  }

  /**
   * Takes over a background run started with newSignal()'s signal: waits for its first event
   * (`response.created`, already stored) and returns that snapshot; the rest runs detached.
   */
  async startBackground(
    id: string,
    link: LinkedAbortSignal,
    run: ResponseRun,
    options: { bufferEvents: boolean },
  ): Promise<ResponseObject> {
    const entry = this.#newEntry(true, link, run, options.bufferEvents ? [] : undefined);
    this.#entries.set(id, entry);
    try {
      const first = await run.events.next();
      if (first.done === true || !("response" in first.value)) {
        throw new Error("A response run must begin with response.created.");
      }
      entry.events?.push(first.value);
      entry.done = this.#pump(id, entry);
      return first.value.response;
    } catch (error) {
      if (this.#entries.get(id) === entry) this.#entries.delete(id);
      link.dispose();
      throw error;
    }
  }

  /**
   * A foreground run's events, passed through: while the caller consumes them the response is listed
   * (when `listed`, i.e. store: true), and when they end (or the caller stops) the entry goes and the
   * signal is disposed. The caller must start iterating the result: a generator that never started
   * cannot run its cleanup (return() on it skips the body).
   */
  startForeground(
    id: string,
    link: LinkedAbortSignal,
    run: ResponseRun,
    options: { listed: boolean },
  ): AsyncGenerator<ResponseStreamEvent, void, undefined> {
    const entry = this.#newEntry(false, link, run, undefined);
    let release: () => void = () => undefined;
    entry.done = new Promise<void>((resolve) => (release = resolve));
    if (options.listed) this.#entries.set(id, entry);
    const entries = this.#entries;
    return (async function* follow() {
      try {
        for await (const event of run.events) {
          if (isTerminalEvent(event)) entry.finished = true;
          yield event;
        }
      } finally {
        entry.finished = true;
        if (entries.get(id) === entry) entries.delete(id);
        link.dispose();
        release();
      }
    })();
  }

  /** The live snapshot of a response this process is running (or, in the background, ran recently). */
  snapshot(id: string): ResponseObject | undefined {
    return this.#entries.get(id)?.run.snapshot();
  }

  /** Whether `id` is running here and has not reached its terminal event yet. */
  isRunning(id: string): boolean {
    const entry = this.#entries.get(id);
    return entry !== undefined && !entry.finished;
  }

  /** Whether `id` is known here and was created with background: true. */
  isBackground(id: string): boolean {
    return this.#entries.get(id)?.background === true;
  }

  /** Whether `id` was created with background: true and stream: true and its events are still buffered. */
  canReplay(id: string): boolean {
    return this.#entries.get(id)?.events !== undefined;
  }

  /** Cancels a running response and resolves with its final snapshot (undefined when unknown here). */
  async cancel(id: string): Promise<ResponseObject | undefined> {
    const entry = this.#entries.get(id);
    if (entry === undefined) return undefined;
    entry.link.abort();
    await entry.done;
    return entry.run.snapshot();
  }

  /**
   * Forgets `id` (a DELETE): a running response is aborted and stores nothing more, its buffered events
   * are dropped, and from now on this registry does not know it. Returns whether it knew it.
   */
  delete(id: string): boolean {
    const entry = this.#entries.get(id);
    if (entry === undefined) return false;
    this.#entries.delete(id);
    entry.run.discard();
    entry.link.abort();
    return true;
  }

  /** The buffered events after `startingAfter`, then the live ones until the run ends. */
  async *replay(id: string, startingAfter: number): AsyncGenerator<ResponseStreamEvent, void, undefined> {
    const entry = this.#entries.get(id);
    const events = entry?.events;
    if (entry === undefined || events === undefined) return;
    let index = 0;
    for (;;) {
      while (index < events.length) {
        const event = events[index++];
        if (event !== undefined && event.sequence_number > startingAfter) yield event;
      }
      if (entry.finished) return;
      await entry.changed;
    }
  }

  #newEntry(
    background: boolean,
    link: LinkedAbortSignal,
    run: ResponseRun,
    events: ResponseStreamEvent[] | undefined,
  ): LiveEntry {
    let resolveChange: () => void = () => undefined;
    const nextChange = () => new Promise<void>((resolve) => (resolveChange = resolve));
    const entry: LiveEntry = {
      background,
      link,
      run,
      events,
      finished: false,
      done: Promise.resolve(),
      changed: nextChange(),
      signalChange: () => {
        const resolve = resolveChange;
        entry.changed = nextChange();
        resolve();
      },
    };
    return entry;
  }

  async #pump(id: string, entry: LiveEntry): Promise<void> {
    try {
      for await (const event of entry.run.events) {
        entry.events?.push(event);
        if (isTerminalEvent(event)) entry.finished = true;
        entry.signalChange();
      }
    } catch (error) {
      this.#onError(`Background response ${id} stopped: ${(error as Error).stack ?? String(error)}`);
    } finally {
      entry.finished = true;
      entry.link.dispose();
      entry.signalChange();
      setTimeout(() => {
        if (this.#entries.get(id) === entry) this.#entries.delete(id);
      }, this.#retainMilliseconds).unref();
    }
  }
}
