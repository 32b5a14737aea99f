/**
 * linkAbortSignals: a per-request signal tied to long-lived ones by listeners that dispose() removes, so
 * nothing accumulates on the long-lived signal (AbortSignal.any does on Node 20).
 */
import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { linkAbortSignals } from "../../src/shared/abort-signals.js";

const listeners = (signal: AbortSignal) => getEventListeners(signal, "abort").length;

describe("linkAbortSignals", () => {
  it("aborts when any source aborts, with that source's reason, and then lets go of the others", () => {
    const shutdown = new AbortController();
    const client = new AbortController();
    const link = linkAbortSignals(client.signal, undefined, shutdown.signal);
    expect(link.signal.aborted).toBe(false);
    expect(listeners(shutdown.signal)).toBe(1);
    client.abort(new Error("client gone"));
    expect(link.signal.aborted).toBe(true);
    expect((link.signal.reason as Error).message).toBe("client gone");
    expect(listeners(shutdown.signal)).toBe(0);
    expect(listeners(client.signal)).toBe(0);
  });

  it("aborts from its own side without touching the sources", () => {
    const shutdown = new AbortController();
    const link = linkAbortSignals(shutdown.signal);
    link.abort();
    expect(link.signal.aborted).toBe(true);
    expect(shutdown.signal.aborted).toBe(false);
    expect(listeners(shutdown.signal)).toBe(0);
  });

  it("starts aborted when a source already is", () => {
    const shutdown = new AbortController();
    shutdown.abort("stopping");
    const link = linkAbortSignals(new AbortController().signal, shutdown.signal);
    expect(link.signal.aborted).toBe(true);
    expect(link.signal.reason).toBe("stopping");
  });

  it("leaves nothing on a long-lived signal after many links are disposed", () => {
    const shutdown = new AbortController();
    for (let index = 0; index < 1_000; index++) {
      const link = linkAbortSignals(new AbortController().signal, shutdown.signal);
      link.dispose();
      link.dispose();
    }
    expect(listeners(shutdown.signal)).toBe(0);
    // A disposed link no longer follows its sources.
    const link = linkAbortSignals(shutdown.signal);
    link.dispose();
    shutdown.abort();
    expect(link.signal.aborted).toBe(false);
  });
});
