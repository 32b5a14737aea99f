/**
 * Server-sent events framing. Each event (its `event:` line, `data:` line and blank line) goes out in a
 * single write: some real clients' parsers drop an event whose closing blank line arrives in a later
 * chunk. While the source is silent (long prompt processing), a `: keep-alive` comment goes out every
 * `keepAliveSeconds` so proxies and clients do not time out.
 */
import type { Context } from "hono";
import { stream } from "hono/streaming";

export interface SseEvent {
  /** The `event:` line; for the Responses API always equal to the JSON `type`. */
  event?: string;
  /** Serialised as JSON on the `data:` line; a string is sent as is (e.g. "[DONE]"). */
  data: unknown;
}

export function formatSseEvent(event: SseEvent): string {
  const data = typeof event.data === "string" ? event.data : JSON.stringify(event.data);
  return `${event.event === undefined ? "" : `event: ${event.event}\n`}data: ${data}\n\n`;
}

/** Characters of events waiting for a write beyond which the source waits (backpressure). */
const maxPending = 64 * 1024;

export interface SseOptions {
  keepAliveSeconds?: number;
  /** What a keep-alive writes (default the comment `: keep-alive`; Anthropic's API sends `ping` events). */
  keepAliveText?: string;
  /** Called when the client goes away before the source ends. */
  onAbort?: () => void;
}

/** Streams `events` as SSE. Errors thrown by the source must be turned into events by the source itself. */
export function streamSse(
  context: Context,
  events: AsyncIterable<SseEvent>,
  options: SseOptions = {},
): Response {
  context.header("Content-Type", "text/event-stream; charset=utf-8");
  context.header("Cache-Control", "no-cache");
  // No `Connection` header: Node sets it from the request. Setting `keep-alive` here made Node keep the
  // socket open after the stream even when the client had asked for `Connection: close`.
  context.header("X-Accel-Buffering", "no");
  return stream(context, async (output) => {
    output.onAbort(() => options.onAbort?.());
    let lastWrite = Date.now();
    // Events waiting for the write in flight (see below).
    let pending = "";
    let writing: Promise<void> | undefined;
    const intervalMs = (options.keepAliveSeconds ?? 10) * 1000;
    const keepAlive = setInterval(
      () => {
        // Never while events wait to be written: a keep-alive must not land after the stream's last event.
        if (Date.now() - lastWrite >= intervalMs && !output.aborted && writing === undefined) {
          lastWrite = Date.now();
          output.write(options.keepAliveText ?? ": keep-alive\n\n").catch(() => undefined);
        }
      },
      Math.min(intervalMs, 1000),
    );
    keepAlive.unref();
    // Events that arrive while a write is in flight are joined into the next write (whole events only),
    // so a busy stream makes one socket write per batch instead of one per token; past `maxPending`
    // characters the source waits for the write, keeping the old backpressure on slow clients.
    let failure: { error: unknown } | undefined;
    const drain = async (): Promise<void> => {
      await Promise.resolve(); // events of the same tick go out in this write too
      try {
        while (pending !== "" && !output.aborted) {
          const text = pending;
          pending = "";
          await output.write(text);
        }
      } catch (error) {
        failure ??= { error };
      } finally {
        writing = undefined;
      }
    };
    try {
      for await (const event of events) {
        if (failure !== undefined) throw failure.error;
        if (output.aborted) break;
        lastWrite = Date.now();
        pending += formatSseEvent(event);
        writing ??= drain();
        if (pending.length > maxPending) await writing;
      }
      await writing;
      if (failure !== undefined) throw failure.error;
    } finally {
      clearInterval(keepAlive);
      // Events queued before the source threw still go out (drain never rejects).
      await writing;
    }
  });
}
