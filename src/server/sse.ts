/**
 * Server-sent events framing. Each event (its `event:` line, `data:` line and blank line) goes out in a
 * single write: some real clients' parsers drop an event whose closing blank line arrives in a later
 * chunk. While the source is silent (long prompt processing), a `: keep-alive` comment goes out every
 * `keepAliveSeconds` so proxies and clients do not time out.
 *
 * Two sinks, one loop. Under `lmhost serve` (@hono/node-server, through directStreamsFetch) the events
 * are written straight to Node's ServerResponse: a token's event then costs one socket write and nothing else, where hono's
 * stream helper passed each write through two web streams (hono's and the request log's), a dozen
 * promises and an encode per token, all on the main thread that node-llama-cpp's compute threads share
 * the cores with (docs/PERFORMANCE.md). Otherwise (tests calling `app.request`, a bare `app.fetch`),
 * hono's stream helper is the sink.
 */
import { ServerResponse } from "node:http";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
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

/** Where the loop writes: hono's StreamingApi, or Node's response (nodeSink). */
interface Sink {
  readonly aborted: boolean;
  onAbort(listener: () => void): void;
  /** Resolves when the text was handed to the socket (or once the socket drained, under backpressure). */
  write(text: string): Promise<unknown>;
}

/** The headers every event stream answers with. */
const sseHeaders = {
  "Content-Type": "text/event-stream; charset=utf-8",
  "Cache-Control": "no-cache",
  // No `Connection` header: Node sets it from the request. Setting `keep-alive` here made Node keep the
  // socket open after the stream even when the client had asked for `Connection: close`.
  "X-Accel-Buffering": "no",
};

/** The header by which @hono/node-server leaves a response to the route that wrote it itself. */
const alreadySentHeader = [...RESPONSE_ALREADY_SENT.headers.keys()][0] ?? "x-hono-already-sent";

/** Set in the env by directStreamsFetch: the server hands a route's marked response over to the route. */
const directStreams = "lmhostDirectStreams";

/**
 * The fetch handler to give @hono/node-server (`serve({ fetch: directStreamsFetch(app.fetch) })`): event
 * streams are then written straight to Node's response. Served with a bare `app.fetch`, they go through
 * hono's stream helper as before. After the middleware, a streamed response still carries the marker
 * header; it is swapped for node-server's own "already sent" response, the one form node-server leaves
 * alone (a marked response that middleware rebuilt would be written and ended by node-server).
 */
export function directStreamsFetch<Env extends object>(
  fetch: (request: Request, env: Env) => Response | Promise<Response>,
): (request: Request, env: Env) => Promise<Response> {
  return async (request, env) => {
    const response = await fetch(request, { ...env, [directStreams]: true });
    return response.headers.has(alreadySentHeader) ? RESPONSE_ALREADY_SENT : response;
  };
}

/**
 * Streams `events` as SSE. Errors thrown by the source must be turned into events by the source itself.
 * Under a Node server, `streamEnd` (set on the context) calls its listeners when the stream is over, with a
 * note when it did not end normally: the request log writes its line then (request-log.ts).
 */
export function streamSse(
  context: Context,
  events: AsyncIterable<SseEvent>,
  options: SseOptions = {},
): Response {
  // On the context too, not only on the returned response: without middleware hono does not keep the
  // route's response as `context.res`, where the direct sink reads its head.
  for (const [name, value] of Object.entries(sseHeaders)) context.header(name, value);
  const env = context.env as { outgoing?: unknown; [directStreams]?: boolean } | undefined;
  const outgoing = env?.outgoing;
  if (env?.[directStreams] === true && outgoing instanceof ServerResponse) {
    const sink = nodeSink(context, outgoing);
    const endListeners: ((note?: string) => void)[] = [];
    context.set("streamEnd", { onEnd: (listener: (note?: string) => void) => endListeners.push(listener) });
    // The end listeners (the request log) run before the last bytes go out, so the log line is there by
    // the time the client has the whole stream.
    const finish = async (note: string | undefined) => {
      await sink.head();
      for (const listener of endListeners) listener(note);
      outgoing.end();
    };
    void pump(sink, events, options).then(
      () => finish(sink.aborted ? "client closed the stream" : undefined),
      (error: unknown) => {
        console.error(error);
        return finish("stream failed");
      },
    );
    return context.newResponse(null, { headers: { [alreadySentHeader]: "true" } });
  }
  return stream(context, (output) => pump(output, events, options));
}

/**
 * A Node response as a sink. Its head goes out with the first write, one macrotask after the route
 * returned, so it carries every header the middleware set on the way out (CORS, x-request-id).
 */
function nodeSink(context: Context, outgoing: ServerResponse): Sink & { head(): Promise<void> } {
  let aborted = false;
  const listeners: (() => void)[] = [];
  outgoing.once("close", () => {
    if (outgoing.writableFinished) return;
    aborted = true;
    for (const listener of listeners) listener();
  });
  const headersReady = new Promise<void>((resolve) => setImmediate(resolve));
  const writeHead = () => {
    const headers: Record<string, string> = {};
    context.res.headers.forEach((value, name) => {
      if (name !== alreadySentHeader) headers[name] = value;
    });
    outgoing.writeHead(context.res.status, headers);
  };
  const drained = () =>
    new Promise<void>((resolve) => {
      const done = () => {
        outgoing.off("drain", done);
        outgoing.off("close", done);
        resolve();
      };
      outgoing.on("drain", done);
      outgoing.on("close", done);
    });
  const head = async () => {
    if (outgoing.headersSent) return;
    await headersReady;
    if (!outgoing.headersSent && !outgoing.destroyed) writeHead();
  };
  return {
    get aborted() {
      return aborted;
    },
    onAbort: (listener) => listeners.push(listener),
    head,
    async write(text) {
      if (!outgoing.headersSent) await head();
      if (aborted || outgoing.destroyed) return;
      if (!outgoing.write(text)) await drained();
    },
  };
}

/** The event loop shared by both sinks: keep-alives, write coalescing and backpressure. */
async function pump(output: Sink, events: AsyncIterable<SseEvent>, options: SseOptions): Promise<void> {
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
}
