/**
 * Background responses (`background: true`): the request answers at once with the `queued` snapshot
 * while the run goes on here, detached from the HTTP request. GET polls the live snapshot, cancel aborts
 * the run and waits for its `cancelled` record. With `stream: true` every event is kept in memory, so a
 * client that dropped can resume with `GET /v1/responses/{id}?stream=true&starting_after=N`; the buffer
 * stays replayable for a while after the run ends, then is released.
 */
import type { ResponseRun } from "./run-response.js";
import type { ResponseObject, ResponseStreamEvent } from "./wire-types.js";

interface BackgroundEntry {
  controller: AbortController;
  run: ResponseRun;
  /** Every event so far, when the response was created with stream: true. */
  events: ResponseStreamEvent[] | undefined;
  finished: boolean;
  done: Promise<void>;
  /** Resolves (and is replaced) whenever an event arrives or the run ends. */
  changed: Promise<void>;
  signalChange: () => void;
}

export interface BackgroundResponsesOptions {
  /** How long a finished run stays in memory for polling and stream resumption (default 10 minutes). */
  retainFinishedMilliseconds?: number;
  /** Aborted at server shutdown: every run is cancelled. */
  shutdownSignal?: AbortSignal;
  onError?: (message: string) => void;
}

export class BackgroundResponses {
  readonly #entries = new Map<string, BackgroundEntry>();
  readonly #retainMilliseconds: number;
  readonly #shutdownSignal: AbortSignal | undefined;
  readonly #onError: (message: string) => void;

  constructor(options: BackgroundResponsesOptions = {}) {
    this.#retainMilliseconds = options.retainFinishedMilliseconds ?? 10 * 60 * 1000;
    this.#shutdownSignal = options.shutdownSignal;
    this.#onError = options.onError ?? (() => undefined);
  }

  /** The signal a new run must generate under: aborted by cancel() or by server shutdown. */
  newSignal(): { controller: AbortController; signal: AbortSignal } {
    const controller = new AbortController();
    const signals =
      this.#shutdownSignal === undefined ? [controller.signal] : [controller.signal, this.#shutdownSignal];
    return { controller, signal: AbortSignal.any(signals) };
  }

  /**
   * Takes over a run started with a signal from newSignal(): waits for its first event
   * (`response.created`, already stored) and returns that snapshot; the rest runs detached.
   */
  async start(
    id: string,
    controller: AbortController,
    run: ResponseRun,
    options: { bufferEvents: boolean },
  ): Promise<ResponseObject> {
    let resolveChange: () => void = () => undefined;
    const nextChange = () => new Promise<void>((resolve) => (resolveChange = resolve));
    const entry: BackgroundEntry = {
      controller,
      run,
      events: options.bufferEvents ? [] : undefined,
      finished: false,
      done: Promise.resolve(),
      changed: nextChange(),
      signalChange: () => {
        const resolve = resolveChange;
        entry.changed = nextChange();
        resolve();
      },
    };
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
      this.#entries.delete(id);
      throw error;
    }
  }

  /** The live snapshot of a response this process is running (or ran recently). */
  snapshot(id: string): ResponseObject | undefined {
    return this.#entries.get(id)?.run.snapshot();
  }

  isRunning(id: string): boolean {
    const entry = this.#entries.get(id);
    return entry !== undefined && !entry.finished;
  }

  /** Whether `id` was created with stream: true and its events are still buffered. */
  canReplay(id: string): boolean {
    return this.#entries.get(id)?.events !== undefined;
  }

  /** Cancels a running response and resolves with its final snapshot (undefined when unknown here). */
  async cancel(id: string): Promise<ResponseObject | undefined> {
    const entry = this.#entries.get(id);
    if (entry === undefined) return undefined;
    entry.controller.abort();
    await entry.done;
    return entry.run.snapshot();
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

  async #pump(id: string, entry: BackgroundEntry): Promise<void> {
    try {
      for await (const event of entry.run.events) {
        entry.events?.push(event);
        entry.signalChange();
      }
    } catch (error) {
      this.#onError(`Background response ${id} stopped: ${(error as Error).stack ?? String(error)}`);
    } finally {
      entry.finished = true;
      entry.signalChange();
      setTimeout(() => {
        if (this.#entries.get(id) === entry) this.#entries.delete(id);
      }, this.#retainMilliseconds).unref();
    }
  }
}
