/**
 * A streamed response whose engine is slow to produce its first part (a model loading, a wait for a free
 * sequence) starts streaming anyway after `streamStartAfterMilliseconds`: `response.created` and keep-alive
 * comments reach the client, and a refusal that comes later is a `response.failed` event, stored as such.
 * A refusal that comes at once stays a plain HTTP error.
 */
import { describe, expect, it } from "vitest";
import type { EngineRequest } from "../../src/engine/types.js";
import { ApiError } from "../../src/shared/errors.js";
import { createFastApp, parseSse, TEST_MODEL, type FastApp } from "../helpers/fast-app.js";
import { loadSpecValidator } from "../helpers/spec-validator.js";

const spec = loadSpecValidator();

/** Holds the next generation before its first part until `open()` (or fails it with `fail(error)`). */
function gateEngine(fast: FastApp) {
  let release!: (error?: Error) => void;
  const gate = new Promise<Error | undefined>((resolve) => {
    release = resolve;
  });
  const generate = fast.engine.generate.bind(fast.engine);
  let gated = false;
  fast.engine.generate = (request: EngineRequest, signal: AbortSignal) =>
    (async function* () {
      const error = gated ? undefined : await gate;
      gated = true;
      if (error !== undefined) throw error;
      yield* generate(request, signal);
    })();
  return { open: () => release(), fail: (error: Error) => release(error) };
}

/** Reads the body until `text` has appeared; returns everything read so far. */
async function readUntil(reader: ReadableStreamDefaultReader<Uint8Array>, seen: string, text: string) {
  const decoder = new TextDecoder();
  let all = seen;
  while (!all.includes(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the stream ended before '${text}': ${all}`);
    all += decoder.decode(value, { stream: true });
  }
  return all;
}

async function readAll(reader: ReadableStreamDefaultReader<Uint8Array>, seen: string) {
  const decoder = new TextDecoder();
  let all = seen;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return all;
    all += decoder.decode(value, { stream: true });
  }
}

async function waitUntil(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error("Timed out waiting for a condition.");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const events = (text: string) =>
  parseSse(text)
    .filter((event) => event.data !== "[DONE]")
    .map((event) => JSON.parse(event.data) as { type: string; response?: { id: string; status: string } });

describe("a stream whose first part is slow", () => {
  it("starts with response.created and keep-alives while it waits, then streams the answer", async () => {
    const fast = createFastApp({ streamStartAfterMilliseconds: 20, keepAliveSeconds: 0.05 });
    const gate = gateEngine(fast);
    const response = await fast.post("/v1/responses", { model: TEST_MODEL, input: "hello", stream: true });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/text\/event-stream/);
    const reader = response.body!.getReader();
    let text = await readUntil(reader, "", "event: response.created");
    text = await readUntil(reader, text, ": keep-alive");
    // Nothing but the created event has been sent while the engine holds the first part.
    expect(events(text).map((event) => event.type)).toEqual(["response.created"]);
    gate.open();
    text = await readAll(reader, text);
    const all = events(text);
    for (const event of all) spec.assertStreamEvent(event);
    expect(all.map((event) => event.type).slice(0, 3)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
    ]);
    expect(all.at(-1)?.type).toBe("response.completed");
    expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
  });

  it("turns a refusal after the start into response.failed, stores it, and keeps serving", async () => {
    const fast = createFastApp({ streamStartAfterMilliseconds: 20 });
    const gate = gateEngine(fast);
    const response = await fast.post("/v1/responses", { model: TEST_MODEL, input: "hello", stream: true });
    const reader = response.body!.getReader();
    const text = await readUntil(reader, "", "event: response.created");
    gate.fail(
      new ApiError({ status: 429, message: "All sequences are busy.", code: "queue_full", retryAfter: 1 }),
    );
    const all = events(await readAll(reader, text));
    for (const event of all) spec.assertStreamEvent(event);
    expect(all.map((event) => event.type)).toEqual(["response.created", "response.failed"]);
    const failed = all[1] as unknown as { response: { id: string; status: string; error: unknown } };
    expect(failed.response.status).toBe("failed");
    expect(failed.response.error).toEqual({
      code: "rate_limit_exceeded",
      message: "All sequences are busy.",
    });
    const stored = await fast.request(`/v1/responses/${failed.response.id}`);
    expect(await stored.json()).toMatchObject({ status: "failed", error: { code: "rate_limit_exceeded" } });
    const again = await fast.post("/v1/responses", { model: TEST_MODEL, input: "hi" });
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({
      status: "completed",
      output: [{ content: [{ text: "You said: hi" }] }],
    });
  });

  it("stops the generation when the client leaves before the first part", async () => {
    const longText = Array.from({ length: 200 }, (_unused, index) => `w${index}`).join(" ");
    const fast = createFastApp({
      streamStartAfterMilliseconds: 20,
      respond: () => ({ text: longText, delayMs: 5 }),
    });
    const gate = gateEngine(fast);
    const response = await fast.post("/v1/responses", { model: TEST_MODEL, input: "hello", stream: true });
    const reader = response.body!.getReader();
    const text = await readUntil(reader, "", "event: response.created");
    const id = (events(text)[0]?.response as { id: string }).id;
    await reader.cancel();
    gate.open();
    await waitUntil(() => fast.store.get(id)?.status === "cancelled" && fast.engine.active === 0);
    // It stopped at its first part, not after all 200 words (about a second at 5 ms each).
    const stored = fast.store.get(id)?.response as { output: { content?: { text: string }[] }[] };
    const words = stored.output
      .flatMap((item) => item.content ?? [])
      .map((part) => part.text)
      .join("");
    expect(words.split(" ").length).toBeLessThan(20);
  });

  it("keeps a refusal that comes at once an HTTP error", async () => {
    const fast = createFastApp({ streamStartAfterMilliseconds: 1_000, contextLength: 5 });
    const response = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: "far too many words for this tiny context",
      stream: true,
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: "context_length_exceeded" } });
  });

  it("does not change non-streaming requests: they wait and answer with the final object", async () => {
    const fast = createFastApp({ streamStartAfterMilliseconds: 5 });
    const gate = gateEngine(fast);
    const pending = fast.post("/v1/responses", { model: TEST_MODEL, input: "hello" });
    await new Promise((resolve) => setTimeout(resolve, 30));
    gate.fail(new ApiError({ status: 429, message: "busy", code: "queue_full", retryAfter: 1 }));
    const response = await pending;
    // The engine's own error (queue_full, Retry-After), not a folded response.failed (rate_limit_exceeded).
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("1");
    expect(await response.json()).toMatchObject({ error: { code: "queue_full", message: "busy" } });
  });
});
