/**
 * Every request runs as one async generator of Responses stream events. With `stream: true` the events
 * go out as SSE; otherwise finalResponse folds them into the final object; and the stored record is the
 * snapshot carried by the same terminal event. Streamed, non-streamed and stored results are therefore
 * equal by construction. The record is stored (unless `store: false`) first as the `in_progress` snapshot
 * of `response.created` (so input_items answers while it runs, and a crash leaves a record the next start
 * marks failed), then as the final object before the terminal event is yielded, so a client that sees
 * `response.completed` can immediately chain to it.
 *
 * Endings: finish → completed / incomplete (max_output_tokens) / cancelled (signal aborted); an error
 * after the stream started → `response.failed`; a consumer that stops iterating → cancelled and stored.
 * A signal aborted with a ShutdownError (graceful shutdown) is no cancel: the run ends `failed` with code
 * `server_error` ("lmhost is shutting down"). A background run the engine refuses up front with a 429 (queue full) waits and
 * retries while it stays `queued`.
 *
 * A response that cannot be stored fails visibly (the store is full, its disk failed): when any write of
 * its record fails — the `in_progress` snapshot at `response.created`, a background lifecycle snapshot or
 * the final object — the run stops generating and ends with `response.failed` (`server_error`, "The
 * response could not be stored: …" naming the store file) instead of its usual terminal event, nothing
 * more of it is stored, and the record stored earlier is deleted (if even that fails it stays
 * `in_progress` until the next start marks it failed). A non-streaming request then answers 500. Pruning
 * after a stored final object is not part of the response: its failure is only logged.
 */
import { setTimeout as delay } from "node:timers/promises";
import type { Engine } from "../engine/types.js";
import type { ResponseStore } from "../store/types.js";
import { firstWithin } from "../shared/abort-signals.js";
import { ApiError, ShutdownError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import { silentLogger } from "../shared/logger.js";
import { ResponseEventWriter } from "./event-writer.js";
import { sealReasoning } from "./reasoning-seal.js";
import type { PreparedResponse } from "./prepare-response.js";
import { toResponseError } from "./response-object.js";
import { generateResponseParts, type McpTools, type ResponsePart } from "./tool-loop.js";
import {
  isLifecycleEvent,
  isTerminalEvent,
  type ResponseError,
  type ResponseObject,
  type ResponseStreamEvent,
} from "./wire-types.js";

export interface RunDependencies {
  engine: Engine;
  /** Seals reasoning into `encrypted_content` when a request includes it (reasoning-seal.ts). */
  reasoningKey?: Buffer;
  /** The MCP servers requests may use (absent: MCP tools are refused before a run starts). */
  mcp?: McpTools;
  store: ResponseStore;
  /** Retention limits applied after each stored final response. */
  retention?: { maxAgeSeconds?: number; maxCount?: number };
  /**
   * Ids pruning must keep besides the response just stored: those that responses running here chain from
   * (a `store: false` run has no record of its own that would protect its chain).
   */
  protectedIds?: () => readonly string[];
  logger?: Logger;
}

/** How a background run waits while the engine's queue is full. */
export interface BackgroundRunOptions {
  /** Told when the run starts waiting for room in the engine's queue and when it stops waiting. */
  queueWait?: { enter(): void; leave(): void };
  /** The first retry delay, doubling up to `maxRetryDelayMilliseconds` (default 200). */
  retryDelayMilliseconds?: number;
  /** Default 2,000. */
  maxRetryDelayMilliseconds?: number;
}

export interface ResponseRun {
  events: AsyncGenerator<ResponseStreamEvent, void, undefined>;
  /** The response as the events produced so far describe it (for polling a running response). */
  snapshot(): ResponseObject;
  /** The response was deleted while it ran: store nothing more of it (abort its signal to stop it). */
  discard(): void;
}

/** What a run's storage needs to know beyond the prepared request. */
interface RunState {
  /** Set by ResponseRun.discard(): nothing more is stored. */
  discarded: boolean;
  /** Set when a write of the record failed: the run ends failed with this error, nothing more is stored. */
  storeFailure?: ResponseError;
}

/** Thrown inside a run when a non-final snapshot could not be stored: the run ends failed with `failure`. */
class ResponseNotStoredError extends Error {
  readonly failure: ResponseError;

  constructor(failure: ResponseError) {
    super(failure.message);
    this.name = "ResponseNotStoredError";
    this.failure = failure;
  }
}

type PartIterator = AsyncIterator<ResponsePart, unknown, undefined>;

/** The parts of a response: the engine's, inside the MCP tool loop when the request has MCP tools. */
function generateParts(
  dependencies: RunDependencies,
  prepared: PreparedResponse,
  signal: AbortSignal,
): PartIterator {
  return generateResponseParts(
    dependencies.engine,
    dependencies.mcp,
    {
      request: prepared.request,
      engineRequest: prepared.engineRequest,
      history: prepared.history,
      inputItems: prepared.inputItems,
    },
    signal,
  )[Symbol.asyncIterator]();
}
interface StartedGeneration {
  parts: PartIterator;
  first: IteratorResult<ResponsePart, unknown>;
}
/** A generation whose first part is still to come (`parts` is known when the engine was already called). */
interface DelayedStart {
  parts?: PartIterator;
  start(): Promise<StartedGeneration>;
}

export interface ForegroundRunOptions {
  /**
   * For streams: when the engine has not produced its first part after this many milliseconds (a model
   * loading, a wait for a free sequence), start anyway — `response.created` goes out, SSE keep-alives
   * follow, and a refusal that comes later becomes `response.failed`. Undefined: always wait.
   */
  startAfterMilliseconds?: number;
}

/**
 * Starts a foreground response: calls the engine and waits for its first part before any event exists,
 * so problems the engine reports up front (unknown model, context overflow, queue full) reach the client
 * as plain HTTP errors and nothing is stored — unless the wait outlasts `startAfterMilliseconds`.
 */
export async function startResponseRun(
  dependencies: RunDependencies,
  prepared: PreparedResponse,
  signal: AbortSignal,
  options: ForegroundRunOptions = {},
): Promise<ResponseRun> {
  const parts = generateParts(dependencies, prepared, signal);
  const firstPart = parts.next().catch((error: unknown) => {
    const shutdown = shutdownFailure(signal);
    throw shutdown === undefined
      ? error
      : new ApiError({ status: 503, message: shutdown.message, code: shutdown.code });
  });
  let started: StartedGeneration | DelayedStart;
  const first = await firstWithin(firstPart, options.startAfterMilliseconds);
  if (first !== undefined) {
    started = { parts, first };
  } else {
    // Handled here so a run that is never iterated leaves no unhandled rejection; runEvents awaits it.
    firstPart.catch(() => undefined);
    // `parts` goes along so a consumer that stops before the first part still stops the generation.
    started = { parts, start: async () => ({ parts, first: await firstPart }) };
  }
  const writer = newWriter(dependencies, prepared);
  const state: RunState = { discarded: false };
  return {
    events: runEvents(dependencies, prepared, writer, signal, state, started),
    snapshot: () => writer.snapshot(),
    discard: () => {
      state.discarded = true;
    },
  };
}

/** The event writer of a run, with the reasoning summary and sealing the request asks for. */
function newWriter(dependencies: RunDependencies, prepared: PreparedResponse): ResponseEventWriter {
  const output = prepared.request.reasoningOutput ?? {};
  const key = dependencies.reasoningKey;
  return new ResponseEventWriter(prepared.initial, prepared.request.functionNames, {
    summary: output.summary,
    seal:
      output.encryptedContent === true && key !== undefined
        ? (itemId, text) => sealReasoning(key, itemId, text)
        : undefined,
  });
}

/**
 * A background response: `response.created` (status queued) comes at once and every failure, including
 * one the engine raises before its first part, becomes `response.failed` — except a 429 before the first
 * part (the engine's queue is full): then the run waits and retries (200 ms doubling to 2 s) while it stays
 * `queued`, until the engine takes it or the signal aborts (cancel, delete, shutdown). Each lifecycle
 * snapshot is stored, so GET polls see queued → in_progress → final.
 */
export function startBackgroundRun(
  dependencies: RunDependencies,
  prepared: PreparedResponse,
  signal: AbortSignal,
  options: BackgroundRunOptions = {},
): ResponseRun {
  const writer = newWriter(dependencies, prepared);
  const state: RunState = { discarded: false };
  const start = () => startWhenQueueHasRoom(dependencies, prepared, signal, options);
  return {
    events: runEvents(dependencies, prepared, writer, signal, state, { start }),
    snapshot: () => writer.snapshot(),
    discard: () => {
      state.discarded = true;
    },
  };
}

/** The non-streaming result: the snapshot of the terminal event (the fold of the whole stream). */
export async function finalResponse(
  events: AsyncIterable<ResponseStreamEvent> | Iterable<ResponseStreamEvent>,
): Promise<ResponseObject> {
  let final: ResponseObject | undefined;
  for await (const event of events) {
    if (isTerminalEvent(event)) final = event.response;
  }
  if (final === undefined) throw new Error("The response stream ended without a final event.");
  return final;
}

async function* runEvents(
  dependencies: RunDependencies,
  prepared: PreparedResponse,
  writer: ResponseEventWriter,
  signal: AbortSignal,
  state: RunState,
  started: StartedGeneration | DelayedStart,
): AsyncGenerator<ResponseStreamEvent, void, undefined> {
  const logger = dependencies.logger ?? silentLogger;
  // Stored: the created snapshot (so GET and input_items find a running response, and a crash leaves a
  // record the next start marks failed), every lifecycle change of a background run, and the final object.
  const persistEvery = prepared.request.background;
  let finalStored = false;
  function* deliver(events: ResponseStreamEvent[]): Generator<ResponseStreamEvent, void, undefined> {
    for (const event of events) {
      const created = event.type === "response.created";
      const terminal = isTerminalEvent(event);
      if (isLifecycleEvent(event) && (terminal || created || persistEvery)) {
        const stored = persistResponse(dependencies, prepared, state, event.response, logger);
        if (!stored && state.storeFailure !== undefined) {
          if (!terminal) {
            yield event;
            throw new ResponseNotStoredError(state.storeFailure);
          }
          // A failed run stays failed (its own error says why); any other ending becomes a failure.
          if (event.type !== "response.failed") {
            yield* writer.failInsteadOf(event, state.storeFailure);
            return;
          }
        }
        finalStored ||= terminal;
      }
      yield event;
    }
  }

  let parts = started.parts;
  try {
    yield* deliver(writer.created());
    let next: IteratorResult<ResponsePart, unknown>;
    if ("start" in started) {
      const generation = await started.start();
      parts = generation.parts;
      next = generation.first;
    } else {
      next = started.first;
    }
    yield* deliver(writer.inProgress());
    while (next.done !== true) {
      const part = next.value;
      const shutdown =
        part.type === "finish" && part.reason === "cancelled" ? shutdownFailure(signal) : undefined;
      yield* deliver(shutdown === undefined ? writer.write(part) : writer.fail(shutdown));
      if (writer.finished || parts === undefined) break;
      next = await parts.next();
    }
    if (!writer.finished) throw new Error("The engine ended its part stream without a finish part.");
  } catch (error) {
    if (writer.finished) throw error;
    if (error instanceof ResponseNotStoredError) {
      yield* deliver(writer.fail(error.failure));
      return;
    }
    if (signal.aborted) {
      // An engine that throws on abort instead of finishing with "cancelled" still ends as cancelled
      // (or, at shutdown, as failed).
      const shutdown = shutdownFailure(signal);
      yield* deliver(shutdown === undefined ? writer.cancel() : writer.fail(shutdown));
      return;
    }
    logger.error(`Response ${prepared.initial.id} failed: ${(error as Error).stack ?? String(error)}`);
    yield* deliver(writer.fail(toResponseError(error)));
  } finally {
    // The consumer stopped iterating (the client went away), possibly after the writer finished but
    // before the terminal event was delivered: record the final state all the same.
    if (!writer.finished) {
      const shutdown = shutdownFailure(signal);
      if (shutdown === undefined) writer.cancel();
      else writer.fail(shutdown);
    }
    if (!finalStored) persistResponse(dependencies, prepared, state, writer.snapshot(), logger);
    await parts?.return?.();
  }
}

/**
 * The error of a run stopped by a graceful shutdown (its signal aborted with a ShutdownError); undefined
 * when the signal is not aborted or was aborted for another reason (client gone, cancel, delete).
 */
function shutdownFailure(signal: AbortSignal): ResponseError | undefined {
  if (!signal.aborted || !(signal.reason instanceof ShutdownError)) return undefined;
  return { code: "server_error", message: signal.reason.message };
}

/**
 * Calls the engine until it takes the request: a 429 before the first part (its queue is full) is retried
 * after a delay growing from 200 ms to 2 s, until the signal aborts (then the last refusal is thrown, and
 * runEvents ends the run as cancelled or failed by the signal). Any other error is thrown at once.
 */
async function startWhenQueueHasRoom(
  dependencies: RunDependencies,
  prepared: PreparedResponse,
  signal: AbortSignal,
  options: BackgroundRunOptions,
): Promise<StartedGeneration> {
  const maxDelay = options.maxRetryDelayMilliseconds ?? 2_000;
  let retryDelay = Math.min(options.retryDelayMilliseconds ?? 200, maxDelay);
  let waiting = false;
  try {
    for (;;) {
      try {
        const parts = generateParts(dependencies, prepared, signal);
        return { parts, first: await parts.next() };
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 429) || signal.aborted) throw error;
        if (!waiting) {
          waiting = true;
          options.queueWait?.enter();
          dependencies.logger?.debug(
            `Response ${prepared.initial.id} waits for room in the engine's queue: ${error.message}`,
          );
        }
        // Rejects when the signal aborts: runEvents then ends the run by the signal's reason.
        await delay(retryDelay, undefined, { signal });
        retryDelay = Math.min(retryDelay * 2, maxDelay);
      }
    }
  } finally {
    if (waiting) options.queueWait?.leave();
  }
}

/**
 * Stores a snapshot (unless store: false, discarded, or an earlier write of this run failed); after a
 * final one, applies the retention limits. Pruning ranks by created_at (request start), so it is told to
 * keep the response just stored: a long generation that started before many newer ones finished must
 * still be there when its terminal event says it is stored. It also keeps what runs not stored yet chain
 * from (`protectedIds`). The store itself never prunes unfinished (queued / in_progress) responses nor what
 * a remaining response chains from.
 *
 * Returns false when this write failed: `state.storeFailure` then says why (naming the store file), and
 * the record an earlier write left is deleted, so no record of the response stays `in_progress`.
 */
function persistResponse(
  dependencies: RunDependencies,
  prepared: PreparedResponse,
  state: RunState,
  response: ResponseObject,
  logger: Logger,
): boolean {
  if (!prepared.request.store || state.discarded || state.storeFailure !== undefined) return true;
  try {
    dependencies.store.put({
      id: response.id,
      createdAt: response.created_at,
      previousResponseId: response.previous_response_id,
      model: response.model,
      status: response.status,
      response,
      inputItems: prepared.inputItems,
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    state.storeFailure = { code: "server_error", message: `The response could not be stored: ${reason}` };
    logger.error(
      `Response ${response.id} fails: its ${response.status} record could not be stored: ${reason}`,
    );
    forgetUnstored(dependencies.store, response.id, logger);
    return false;
  }
  const retention = dependencies.retention;
  const final = response.status !== "queued" && response.status !== "in_progress";
  if (
    final &&
    retention !== undefined &&
    (retention.maxAgeSeconds !== undefined || retention.maxCount !== undefined)
  ) {
    try {
      const keepIds = [response.id, ...(dependencies.protectedIds?.() ?? [])];
      dependencies.store.prune(retention, { keepIds });
    } catch (error) {
      // The response is stored, so it stands; only the retention limits were not applied this time.
      logger.error(`Pruning after storing response ${response.id} failed: ${(error as Error).message}`);
    }
  }
  return true;
}

/** Deletes what earlier writes stored of a response whose later write failed (it has failed). */
function forgetUnstored(store: ResponseStore, id: string, logger: Logger): void {
  try {
    store.delete(id);
  } catch (error) {
    logger.error(
      `Response ${id} could not be deleted after its write failed; its record may stay in_progress until the next start marks it failed: ${(error as Error).message}`,
    );
  }
}
