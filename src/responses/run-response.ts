/**
 * Every request runs as one async generator of Responses stream events. With `stream: true` the events
 * go out as SSE; otherwise finalResponse folds them into the final object; and the stored record is the
 * snapshot carried by the same terminal event. Streamed, non-streamed and stored results are therefore
 * equal by construction. The record is stored (unless `store: false`) before the terminal event is
 * yielded, so a client that sees `response.completed` can immediately chain to it.
 *
 * Endings: finish → completed / incomplete (max_output_tokens) / cancelled (signal aborted); an error
 * after the stream started → `response.failed`; a consumer that stops iterating → cancelled and stored.
 */
import type { Engine, EnginePart } from "../engine/types.js";
import type { ResponseStore } from "../store/types.js";
import type { Logger } from "../shared/logger.js";
import { silentLogger } from "../shared/logger.js";
import { ResponseEventWriter } from "./event-writer.js";
import type { PreparedResponse } from "./prepare-response.js";
import { toResponseError } from "./response-object.js";
import {
  isLifecycleEvent,
  isTerminalEvent,
  type ResponseObject,
  type ResponseStreamEvent,
} from "./wire-types.js";

export interface RunDependencies {
  engine: Engine;
  store: ResponseStore;
  /** Retention limits applied after each stored final response. */
  retention?: { maxAgeSeconds?: number; maxCount?: number };
  logger?: Logger;
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
}

type PartIterator = AsyncIterator<EnginePart, unknown, undefined>;
interface StartedGeneration {
  parts: PartIterator;
  first: IteratorResult<EnginePart, unknown>;
}

/**
 * Starts a foreground response: calls the engine and waits for its first part before any event exists,
 * so problems the engine reports up front (unknown model, context overflow, queue full) reach the client
 * as plain HTTP errors and nothing is stored.
 */
export async function startResponseRun(
  dependencies: RunDependencies,
  prepared: PreparedResponse,
  signal: AbortSignal,
): Promise<ResponseRun> {
  const parts = dependencies.engine.generate(prepared.engineRequest, signal)[Symbol.asyncIterator]();
  const first = await parts.next();
  const writer = new ResponseEventWriter(prepared.initial, prepared.request.functionNames);
  const state: RunState = { discarded: false };
  return {
    events: runEvents(dependencies, prepared, writer, signal, state, { parts, first }),
    snapshot: () => writer.snapshot(),
    discard: () => {
      state.discarded = true;
    },
  };
}

/**
 * A background response: `response.created` (status queued) comes at once and every failure, including
 * one the engine raises before its first part, becomes `response.failed`. Each lifecycle snapshot is
 * stored, so GET polls see queued → in_progress → final.
 */
export function startBackgroundRun(
  dependencies: RunDependencies,
  prepared: PreparedResponse,
  signal: AbortSignal,
): ResponseRun {
  const writer = new ResponseEventWriter(prepared.initial, prepared.request.functionNames);
  const state: RunState = { discarded: false };
  return {
    events: runEvents(dependencies, prepared, writer, signal, state, undefined),
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
  started: StartedGeneration | undefined,
): AsyncGenerator<ResponseStreamEvent, void, undefined> {
  const logger = dependencies.logger ?? silentLogger;
  const persistEvery = prepared.request.background;
  let finalStored = false;
  function* deliver(events: ResponseStreamEvent[]): Generator<ResponseStreamEvent, void, undefined> {
    for (const event of events) {
      const terminal = isTerminalEvent(event);
      if (terminal || (persistEvery && isLifecycleEvent(event))) {
        persistResponse(dependencies, prepared, state, event.response, logger);
        finalStored ||= terminal;
      }
      yield event;
    }
  }

  let parts = started?.parts;
  try {
    yield* deliver(writer.created());
    let next: IteratorResult<EnginePart, unknown>;
    if (started === undefined) {
      parts = dependencies.engine.generate(prepared.engineRequest, signal)[Symbol.asyncIterator]();
      next = await parts.next();
    } else {
      next = started.first;
    }
    yield* deliver(writer.inProgress());
    while (next.done !== true) {
      yield* deliver(writer.write(next.value));
      if (writer.finished || parts === undefined) break;
      next = await parts.next();
    }
    if (!writer.finished) throw new Error("The engine ended its part stream without a finish part.");
  } catch (error) {
    if (writer.finished) throw error;
    if (signal.aborted) {
      // An engine that throws on abort instead of finishing with "cancelled" still ends as cancelled.
      yield* deliver(writer.cancel());
      return;
    }
    logger.error(`Response ${prepared.initial.id} failed: ${(error as Error).stack ?? String(error)}`);
    yield* deliver(writer.fail(toResponseError(error)));
  } finally {
    // The consumer stopped iterating (the client went away), possibly after the writer finished but
    // before the terminal event was delivered: record the final state all the same.
    if (!writer.finished) writer.cancel();
    if (!finalStored) persistResponse(dependencies, prepared, state, writer.snapshot(), logger);
    await parts?.return?.();
  }
}

/**
 * Stores a snapshot (unless store: false or discarded); after a final one, applies the retention limits.
 * Pruning ranks by created_at (request start), so it is told to keep the response just stored: a long
 * generation that started before many newer ones finished must still be there when its terminal event
 * says it is stored. The store itself never prunes unfinished (queued / in_progress) responses.
 */
function persistResponse(
  dependencies: RunDependencies,
  prepared: PreparedResponse,
  state: RunState,
  response: ResponseObject,
  logger: Logger,
): void {
  if (!prepared.request.store || state.discarded) return;
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
    const retention = dependencies.retention;
    const final = response.status !== "queued" && response.status !== "in_progress";
    if (
      final &&
      retention !== undefined &&
      (retention.maxAgeSeconds !== undefined || retention.maxCount !== undefined)
    ) {
      dependencies.store.prune(retention, { keepIds: [response.id] });
    }
  } catch (error) {
    // The stream still ends properly; a later GET or chain to this id answers 404 instead.
    logger.error(`Storing response ${response.id} failed: ${(error as Error).message}`);
  }
}
