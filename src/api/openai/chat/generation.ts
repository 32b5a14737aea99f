/**
 * One engine generation for the stateless endpoints (/v1/chat/completions, /v1/completions), run the way
 * /v1/responses runs its foreground requests (run-response.ts):
 *
 * - the generation is aborted when the client goes away or the server shuts down (its signal links both);
 * - the engine's first part is awaited before any byte is written, so what the engine refuses up front
 *   (unknown model, context overflow, a full queue: 429 with Retry-After) is a plain HTTP error — but a
 *   stream whose first part takes longer than `startAfterMilliseconds` (a model loading, a wait for a free
 *   sequence) starts anyway, SSE keep-alives go out, and a later refusal becomes an error event;
 * - errors the engine raises with the Responses API's field names are renamed for this API (`params`);
 * - a run stopped by a graceful shutdown is a 503 (or an error event), not a silent cut.
 */
import type { Context } from "hono";
import type { Engine, EnginePart, EngineRequest, Usage } from "../../../engine/types.js";
import type { AppDeps } from "../../../server/deps.js";
import { streamSse, type SseEvent } from "../../../server/sse.js";
import { firstWithin, linkAbortSignals } from "../../../shared/abort-signals.js";
import { ApiError, shutdownError, toApiError } from "../../../shared/errors.js";
import type { Logger } from "../../../shared/logger.js";
import { renameParam } from "./to-engine-request.js";

export interface Generation {
  /** The engine's parts (the first included), ending after `finish`. Always iterate or `close()`. */
  parts: AsyncGenerator<EnginePart, void, undefined>;
  /** The signal the generation runs under (aborted by the client going away or shutdown). */
  signal: AbortSignal;
}

/**
 * Why a non-streamed generation ended without a result: the 503 of a shutdown, or (the client went away, so
 * nobody reads it) a 499 that is not logged as a server error.
 */
export function cancelledError(signal: AbortSignal): ApiError {
  return (
    shutdownError(signal) ??
    new ApiError({ status: 499, message: "The client closed the request.", code: "client_closed_request" })
  );
}

/**
 * Starts a generation and waits for its first part (for at most `startAfterMilliseconds` when given).
 * Throws (renamed) ApiErrors the engine raises before that.
 */
export async function startGeneration(
  deps: Pick<AppDeps, "engine" | "shutdownSignal">,
  request: EngineRequest,
  requestSignal: AbortSignal,
  options: {
    params: readonly [RegExp, string][];
    startAfterMilliseconds?: number;
    /** Called with the usage of the `finish` part (the request log line, request-log.ts). */
    onUsage?: (usage: Usage) => void;
  },
): Promise<Generation> {
  const link = linkAbortSignals(requestSignal, deps.shutdownSignal);
  const engine: Engine = deps.engine;
  const iterator = engine.generate(request, link.signal)[Symbol.asyncIterator]();
  const rename = (error: unknown): never => {
    throw shutdownError(link.signal) ?? renameParam(error, options.params);
  };
  const first = iterator.next().catch(rename);
  let settled: IteratorResult<EnginePart, unknown> | undefined;
  try {
    settled = await firstWithin(first, options.startAfterMilliseconds);
  } catch (error) {
    link.dispose();
    throw error;
  }
  if (settled === undefined) first.catch(() => undefined);
  async function* parts(): AsyncGenerator<EnginePart, void, undefined> {
    try {
      let next = settled ?? (await first);
      while (next.done !== true) {
        if (next.value.type === "finish") options.onUsage?.(next.value.usage);
        yield next.value;
        if (next.value.type === "finish") return;
        next = await iterator.next().catch(rename);
      }
    } finally {
      link.dispose();
      await iterator.return?.();
    }
  }
  return { parts: parts(), signal: link.signal };
}

/**
 * Streams `chunks` as SSE `data:` lines ending with `data: [DONE]`. An error thrown by the source after the
 * stream started goes out as one `data: {"error": {...}}` event (OpenAI's mid-stream error), without [DONE].
 */
export function streamChunks(
  context: Context,
  deps: Pick<AppDeps, "keepAliveSeconds">,
  chunks: AsyncIterable<unknown>,
  logger: Logger,
): Response {
  async function* events(): AsyncGenerator<SseEvent, void, undefined> {
    try {
      for await (const chunk of chunks) yield { data: chunk };
    } catch (error) {
      const apiError = toApiError(error);
      if (apiError.status >= 500) logger.error(`${context.req.path} failed mid-stream: ${apiError.message}`);
      yield { data: apiError.toJSON() };
      return;
    }
    yield { data: "[DONE]" };
  }
  return streamSse(
    context,
    events(),
    deps.keepAliveSeconds === undefined ? {} : { keepAliveSeconds: deps.keepAliveSeconds },
  );
}
