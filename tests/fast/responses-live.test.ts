/**
 * Responses while they run: foreground runs are visible to GET (live snapshot), refuse cancel, refuse
 * being chained to; DELETE stops a running response and forgets its buffered events; and no request
 * leaves anything behind on the long-lived shutdown signal.
 */
import { getEventListeners } from "node:events";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createFastApp, parseSse, readResponseEvents, slowReply, TEST_MODEL } from "../helpers/fast-app.js";

const longText = Array.from({ length: 200 }, (_, index) => `w${index}`).join(" ");

type Json = Record<string, unknown>;

async function waitUntil(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error("Timed out waiting for a condition.");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Reads an SSE body until an event of `type` arrived; returns the events so far and the reader. */
async function readUntil(response: Response, type: string) {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const events = () =>
    parseSse(text)
      .filter((entry) => entry.data !== "[DONE]")
      .map((entry) => JSON.parse(entry.data) as Json & { type: string });
  while (!events().some((event) => event.type === type)) {
    const next = await reader.read();
    if (next.done) break;
    text += decoder.decode(next.value, { stream: true });
  }
  const rest = async () => {
    for (;;) {
      const next = await reader.read();
      if (next.done) return events();
      text += decoder.decode(next.value, { stream: true });
    }
  };
  return { events: events(), rest, cancel: () => reader.cancel().catch(() => undefined) };
}

/** The response id that `response.created` (the first event) carries. */
function createdId(events: readonly Json[]): string {
  const id = (events[0]?.response as { id?: unknown } | undefined)?.id;
  if (typeof id !== "string") throw new Error("The stream did not begin with response.created.");
  return id;
}

/** Starts a streaming foreground response and returns its id once text is flowing. */
async function startStreaming(fast: ReturnType<typeof createFastApp>, body: Json = {}) {
  const response = await fast.post("/v1/responses", { model: TEST_MODEL, input: "x", stream: true, ...body });
  expect(response.status).toBe(200);
  const stream = await readUntil(response, "response.output_text.delta");
  return { id: createdId(stream.events), stream };
}

describe("a running foreground response", () => {
  it("is visible to GET as its live in_progress snapshot and lists its input items, then is the stored final object", async () => {
    const fast = createFastApp({ respond: slowReply(longText, 2) });
    const { id, stream } = await startStreaming(fast, { input: [{ role: "user", content: "tell me" }] });
    // Stored as in_progress from its first event, so its input items can be listed while it runs.
    expect(fast.store.get(id)?.status).toBe("in_progress");
    const items = (await (await fast.request(`/v1/responses/${id}/input_items`)).json()) as Json;
    expect(items).toMatchObject({
      object: "list",
      data: [{ type: "message", role: "user" }],
      has_more: false,
    });

    const live = await fast.request(`/v1/responses/${id}`);
    expect(live.status).toBe(200);
    const snapshot = (await live.json()) as Json & { output: unknown[] };
    expect(snapshot).toMatchObject({ id, object: "response", status: "in_progress", background: false });
    expect(snapshot.output).toHaveLength(1);

    const events = await stream.rest();
    expect(events.at(-1)?.type).toBe("response.completed");
    const final = (await (await fast.request(`/v1/responses/${id}`)).json()) as Json;
    expect(final).toMatchObject({ id, status: "completed" });
    expect(fast.store.get(id)?.status).toBe("completed");
  });

  it("is not listed when store: false", async () => {
    const fast = createFastApp({ respond: slowReply(longText, 2) });
    const { id, stream } = await startStreaming(fast, { store: false });
    expect((await fast.request(`/v1/responses/${id}`)).status).toBe(404);
    await stream.rest();
  });

  it("cannot be cancelled (400, as OpenAI) and keeps running", async () => {
    const fast = createFastApp({ respond: slowReply("a b c d e f g h i j k l", 5) });
    const { id, stream } = await startStreaming(fast);
    const cancel = await fast.request(`/v1/responses/${id}/cancel`, { method: "POST" });
    expect(cancel.status).toBe(400);
    expect(await cancel.json()).toMatchObject({
      error: {
        param: "response_id",
        message: expect.stringMatching(/^Only background responses can be cancelled/),
      },
    });
    expect((await stream.rest()).at(-1)?.type).toBe("response.completed");
    expect(fast.store.get(id)?.status).toBe("completed");
  });

  it("cannot be streamed again: 400 naming stream, not 404", async () => {
    const fast = createFastApp({ respond: slowReply(longText, 2) });
    const { id, stream } = await startStreaming(fast);
    const again = await fast.request(`/v1/responses/${id}?stream=true`);
    expect(again.status).toBe(400);
    expect(await again.json()).toMatchObject({ error: { param: "stream" } });
    await stream.cancel();
  });

  it("cannot be continued with previous_response_id until it finishes (400, not 404)", async () => {
    const fast = createFastApp({ respond: slowReply("a b c d e f g h i j", 5) });
    const { id, stream } = await startStreaming(fast);
    for (const path of ["/v1/responses", "/v1/responses/input_tokens"]) {
      const chained = await fast.post(path, { model: TEST_MODEL, input: "next", previous_response_id: id });
      expect(chained.status, path).toBe(400);
      expect(await chained.json()).toMatchObject({
        error: {
          param: "previous_response_id",
          message: expect.stringMatching(new RegExp(`'${id}' is still in_progress.*previous_response_id`)),
        },
      });
    }
    await stream.rest();
    const chained = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: "next",
      previous_response_id: id,
    });
    expect(chained.status).toBe(200);
  });

  it("is stopped by DELETE: its stream ends as cancelled and nothing of it is stored", async () => {
    const fast = createFastApp({ respond: slowReply(longText, 2) });
    const { id, stream } = await startStreaming(fast);
    const deleted = await fast.request(`/v1/responses/${id}`, { method: "DELETE" });
    expect(deleted.status).toBe(200);
    expect(await deleted.json()).toEqual({ id, object: "response", deleted: true });
    const events = await stream.rest();
    expect(events.at(-1)).toMatchObject({ type: "response.incomplete", response: { status: "cancelled" } });
    await waitUntil(() => fast.engine.active === 0);
    expect(fast.store.get(id)).toBeUndefined();
    expect((await fast.request(`/v1/responses/${id}`)).status).toBe(404);
    expect((await fast.request(`/v1/responses/${id}`, { method: "DELETE" })).status).toBe(404);
  });
});

describe("DELETE of a background response", () => {
  it("drops its buffered events: a resumed stream is 404 like a plain GET", async () => {
    const fast = createFastApp();
    const created = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: "hello there",
      background: true,
      stream: true,
    });
    const events = await readResponseEvents(created);
    const id = createdId(events);
    expect(events.length).toBeGreaterThan(6);
    const resumed = await fast.request(`/v1/responses/${id}?stream=true&starting_after=5`);
    expect(resumed.status).toBe(200);
    expect((await readResponseEvents(resumed))[0]).toMatchObject({ sequence_number: 6 });

    expect((await fast.request(`/v1/responses/${id}`, { method: "DELETE" })).status).toBe(200);
    for (const path of [`/v1/responses/${id}?stream=true&starting_after=5`, `/v1/responses/${id}`]) {
      const response = await fast.request(path);
      expect(response.status, path).toBe(404);
      expect(await response.json()).toMatchObject({ error: { code: "response_not_found" } });
    }
  });

  it("cancels a running one, which then stores nothing and cannot be resumed", async () => {
    const fast = createFastApp({ respond: slowReply(longText, 2) });
    const queued = (await (
      await fast.post("/v1/responses", { model: TEST_MODEL, input: "x", background: true, stream: false })
    ).json()) as { id: string };
    await waitUntil(() => fast.store.get(queued.id)?.status === "in_progress");
    expect(fast.engine.active).toBe(1);

    expect((await fast.request(`/v1/responses/${queued.id}`, { method: "DELETE" })).status).toBe(200);
    await waitUntil(() => fast.engine.active === 0);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(fast.store.get(queued.id)).toBeUndefined();
    expect((await fast.request(`/v1/responses/${queued.id}`)).status).toBe(404);
    expect((await fast.request(`/v1/responses/${queued.id}/cancel`, { method: "POST" })).status).toBe(404);
  });

  it("of a running background stream ends that stream and its resumption", async () => {
    const fast = createFastApp({ respond: slowReply(longText, 2) });
    const created = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: "x",
      background: true,
      stream: true,
    });
    const stream = await readUntil(created, "response.output_text.delta");
    const id = createdId(stream.events);
    expect((await fast.request(`/v1/responses/${id}`, { method: "DELETE" })).status).toBe(200);
    const events = await stream.rest();
    expect(events.at(-1)).toMatchObject({ type: "response.incomplete", response: { status: "cancelled" } });
    expect((await fast.request(`/v1/responses/${id}?stream=true`)).status).toBe(404);
    expect(fast.store.get(id)).toBeUndefined();
  });
});

describe("the long-lived shutdown signal", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("carries no listener once requests of every kind are over, and is never passed to AbortSignal.any", async () => {
    const shutdown = new AbortController();
    const any = vi.spyOn(AbortSignal, "any");
    const fast = createFastApp({ shutdownSignal: shutdown.signal, contextLength: 50 });
    const listeners = () => getEventListeners(shutdown.signal, "abort").length;

    for (let round = 0; round < 5; round++) {
      expect((await fast.post("/v1/responses", { model: TEST_MODEL, input: "json" })).status).toBe(200);
      const streamed = await fast.post("/v1/responses", { model: TEST_MODEL, input: "sse", stream: true });
      await readResponseEvents(streamed);
      const notStored = await fast.post("/v1/responses", { model: TEST_MODEL, input: "x", store: false });
      expect(notStored.status).toBe(200);
      // The engine refuses before its first part (context overflow): the link is released too.
      const tooLong = await fast.post("/v1/responses", { model: TEST_MODEL, input: "w ".repeat(100) });
      expect(tooLong.status).toBe(400);
      const background = (await (
        await fast.post("/v1/responses", { model: TEST_MODEL, input: "bg", background: true })
      ).json()) as { id: string };
      await waitUntil(() => fast.store.get(background.id)?.status === "completed");
      const backgroundStream = await fast.post("/v1/responses", {
        model: TEST_MODEL,
        input: "bg",
        background: true,
        stream: true,
      });
      await readResponseEvents(backgroundStream);
    }
    // A client that goes away mid-stream.
    const slow = createFastApp({ shutdownSignal: shutdown.signal, respond: slowReply(longText, 2) });
    const controller = new AbortController();
    const gone = await slow.post(
      "/v1/responses",
      { model: TEST_MODEL, input: "x", stream: true },
      controller.signal,
    );
    const stream = await readUntil(gone, "response.output_text.delta");
    expect(listeners()).toBe(1);
    controller.abort();
    await stream.cancel();
    await waitUntil(() => slow.engine.active === 0);

    await waitUntil(() => listeners() === 0);
    expect(any).not.toHaveBeenCalled();
  });

  it("still cancels everything in flight when it aborts", async () => {
    const shutdown = new AbortController();
    const fast = createFastApp({ shutdownSignal: shutdown.signal, respond: slowReply(longText, 2) });
    const { id, stream } = await startStreaming(fast);
    const background = (await (
      await fast.post("/v1/responses", { model: TEST_MODEL, input: "bg", background: true })
    ).json()) as { id: string };
    await waitUntil(() => fast.engine.active === 2);
    shutdown.abort();
    expect((await stream.rest()).at(-1)).toMatchObject({ response: { status: "cancelled" } });
    await waitUntil(() => fast.store.get(background.id)?.status === "cancelled");
    expect(fast.store.get(id)?.status).toBe("cancelled");
    expect(getEventListeners(shutdown.signal, "abort")).toHaveLength(0);
  });
});
