/**
 * Per-request abort signals tied to long-lived ones (server shutdown, a client's request) without
 * `AbortSignal.any`: on Node 20 every `AbortSignal.any([...])` that includes a long-lived signal leaves an
 * entry on it that is never dropped, so a server that does it per request grows without bound. Here each
 * source gets a plain `abort` listener that `dispose()` removes again; call it in `finally` when the work
 * ends. A long-lived source then carries one listener per request in flight: its owner should lift the
 * listener warning with `events.setMaxListeners(0, signal)` (start.ts does for the shutdown signal).
 */
import { clientClosedError } from "./errors.js";

export interface LinkedAbortSignal {
  /** Aborted by `abort()` or as soon as any source aborts (with that source's reason, as an Error). */
  readonly signal: AbortSignal;
  /** Aborts `signal` from this side (e.g. a cancel); the sources are left alone. Also disposes. */
  abort(reason?: unknown): void;
  /** Removes the listeners from the sources. Idempotent; `signal` keeps whatever state it has. */
  dispose(): void;
}

/**
 * A source's abort reason as an Error. @hono/node-server aborts a request's signal with a plain string
 * ("Client connection prematurely closed.") when the client goes away; thrown as it is, hono passes a
 * non-Error by its error handler, so such a request got no answer and no log line. As an ApiError 499 it
 * is logged as a client that closed, without a stack trace.
 */
function asErrorReason(reason: unknown): unknown {
  if (reason instanceof Error || reason === undefined) return reason;
  return clientClosedError(String(reason));
}

/** A new signal that aborts when any of `sources` does (undefined entries are skipped). */
export function linkAbortSignals(...sources: readonly (AbortSignal | undefined)[]): LinkedAbortSignal {
  const controller = new AbortController();
  const attached: { source: AbortSignal; listener: () => void }[] = [];
  const dispose = () => {
    for (const { source, listener } of attached.splice(0)) source.removeEventListener("abort", listener);
  };
  const abort = (reason?: unknown) => {
    dispose();
    if (!controller.signal.aborted) controller.abort(reason);
  };
  for (const source of sources) {
    if (source === undefined) continue;
    if (source.aborted) {
      abort(asErrorReason(source.reason));
      break;
    }
    const listener = () => abort(asErrorReason(source.reason));
    source.addEventListener("abort", listener, { once: true });
    attached.push({ source, listener });
  }
  return { signal: controller.signal, abort, dispose };
}

/**
 * What `first` settles to, or undefined when `milliseconds` pass first (never, when undefined); rejects as
 * `first` does. Runs use it to wait for an engine's first part before deciding to start a stream.
 */
export async function firstWithin<Value>(
  first: Promise<Value>,
  milliseconds: number | undefined,
): Promise<Value | undefined> {
  if (milliseconds === undefined) return first;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), milliseconds);
  });
  try {
    return await Promise.race([first, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
