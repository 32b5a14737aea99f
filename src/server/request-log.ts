/**
 * One log line per request at info level: method, path, status, model, input/output/cached tokens,
 * tokens/s and ms. The seam for endpoints: a route calls `reportUsage(context, {...})` once it knows the
 * model and the token counts (a JSON answer: before returning; a stream: when its last event is written,
 * e.g. on `response.completed` / the final chunk / `message_stop`). The middleware writes the line when
 * the answer is complete — at once for a JSON body, when the body ends (or the client goes away) for a
 * stream — so a stream's usage, reported late, still reaches its line. Routes that report nothing get
 * the line without token fields.
 */
import type { Context, MiddlewareHandler } from "hono";
import type { LogFields, Logger } from "../shared/logger.js";
import type { AppEnv } from "./deps.js";

export interface RequestUsage {
  /** The model id the request ran on. */
  model?: string | undefined;
  inputTokens?: number | undefined;
  outputTokens?: number | undefined;
  /** Input tokens served from the KV cache (prefix reuse). */
  cachedTokens?: number | undefined;
}

/** Records (or adds to) the usage of the request `context` belongs to; the request's log line shows it. */
export function reportUsage(context: Context, usage: RequestUsage): void {
  const previous = (context.get("usage") as RequestUsage | undefined) ?? {};
  const merged = { ...previous };
  for (const [key, value] of Object.entries(usage) as [keyof RequestUsage, unknown][]) {
    if (value !== undefined) (merged as Record<string, unknown>)[key] = value;
  }
  context.set("usage", merged);
}

/** The middleware createApp installs first: request ids and the per-request log line. */
export function requestLog(logger: Logger, newRequestId: () => string): MiddlewareHandler<AppEnv> {
  return async (context, next) => {
    const requestId = context.req.header("x-request-id") ?? newRequestId();
    context.set("requestId", requestId);
    const started = performance.now();
    await next();
    context.header("x-request-id", requestId);
    const write = (note?: string) => logRequest(logger, context, started, note);
    const streamEnd = context.get("streamEnd");
    if (streamEnd !== undefined) {
      streamEnd.onEnd(write);
      return;
    }
    const body = context.res.body;
    const streaming = (context.res.headers.get("content-type") ?? "").startsWith("text/event-stream");
    if (!streaming || body === null) {
      write();
      return;
    }
    context.res = new Response(endWith(body, write), context.res);
  };
}

/** `body` passed through unchanged; `onEnd` runs once when it ends, fails or is cancelled by the client. */
function endWith(
  body: ReadableStream<Uint8Array>,
  onEnd: (note?: string) => void,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let ended = false;
  const end = (note?: string) => {
    if (ended) return;
    ended = true;
    onEnd(note);
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          end();
          controller.close();
        } else controller.enqueue(value);
      } catch (error) {
        end("stream failed");
        controller.error(error);
      }
    },
    async cancel(reason) {
      end("client closed the stream");
      await reader.cancel(reason);
    },
  });
}

function logRequest(logger: Logger, context: Context<AppEnv>, started: number, note?: string): void {
  const ms = Math.round(performance.now() - started);
  const usage = (context.get("usage") as RequestUsage | undefined) ?? {};
  const fields: LogFields = {
    method: context.req.method,
    path: context.req.path,
    status: context.res.status,
    model: usage.model,
    input_tokens: usage.inputTokens,
    output_tokens: usage.outputTokens,
    cached_tokens: usage.cachedTokens,
    // Output tokens over the whole request's time (loading, queueing and prompt included).
    tokens_per_second:
      usage.outputTokens !== undefined && ms > 0
        ? Math.round((usage.outputTokens / ms) * 10_000) / 10
        : undefined,
    ms,
    request_id: context.get("requestId"),
    note,
  };
  const summary = `${context.req.method} ${context.req.path} ${context.res.status}`;
  // Health checks and polling would drown the log at info level.
  if (context.req.path === "/health") logger.debug(summary, fields);
  else logger.info(summary, fields);
}
