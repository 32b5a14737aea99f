/**
 * linkAbortSignals: a per-request signal tied to long-lived ones by listeners that dispose() removes, so
 * nothing accumulates on the long-lived signal (AbortSignal.any does on Node 20); a reason that is not
 * an Error becomes a 499 ApiError, so a request whose client went away is answered and logged.
 */
import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { linkAbortSignals } from "../../src/shared/abort-signals.js";
import { ApiError } from "../../src/shared/errors.js";
import { createLogger } from "../../src/shared/logger.js";
import { createFastApp, TEST_MODEL } from "../helpers/fast-app.js";

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
    expect(link.signal.reason).toMatchObject({ message: "stopping" });
  });

  it("turns a reason that is not an Error (@hono/node-server's string for a client gone) into a 499 ApiError", () => {
    const client = new AbortController();
    const link = linkAbortSignals(client.signal);
    client.abort("Client connection prematurely closed.");
    expect(link.signal.reason).toBeInstanceOf(ApiError);
    expect(link.signal.reason).toMatchObject({
      status: 499,
      code: "client_closed_request",
      message: "Client connection prematurely closed.",
    });
    // An Error stays itself (a shutdown's reason is told apart by its class).
    const shutdown = new AbortController();
    const reason = new Error("shutting down");
    shutdown.abort(reason);
    expect(linkAbortSignals(shutdown.signal).signal.reason).toBe(reason);
  });

  it("an embeddings request whose client went away is a 499 with its log line (it got neither)", async () => {
    const lines: string[] = [];
    const fast = createFastApp({ logger: createLogger("info", (line) => lines.push(line)) });
    const client = new AbortController();
    client.abort("Client connection prematurely closed.");
    const response = await fast.app.request("/v1/embeddings", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: TEST_MODEL, input: "hello" }),
      signal: client.signal,
    });
    expect(response.status).toBe(499);
    expect(lines.join("")).toContain("POST /v1/embeddings 499");
    expect(lines.some((line) => line.includes(" error "))).toBe(false);
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
