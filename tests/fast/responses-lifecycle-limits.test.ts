/**
 * How a response's life meets the server's limits, over HTTP: retention never breaks a conversation
 * (`--store-max-count`), a background response waits `queued` while the engine's queue is full (and only
 * so many may wait), and a graceful shutdown fails in-flight responses (server_error, "lmhost is shutting down")
 * instead of calling them cancelled.
 */
import { describe, expect, it } from "vitest";
import type { EngineRequest } from "../../src/engine/types.js";
import { ApiError, ShutdownError } from "../../src/shared/errors.js";
import { createFastApp, readResponseEvents, TEST_MODEL, type FastApp } from "../helpers/fast-app.js";

type Json = Record<string, unknown>;

async function waitUntil(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error("Timed out waiting for a condition.");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function lastUserText(request: EngineRequest): string {
  const last = [...request.items].reverse().find((item) => item.type === "message" && item.role === "user");
  return last?.type === "message" ? last.text : "";
}

async function create(fast: FastApp, body: Json): Promise<Json & { id: string; status: string }> {
  const response = await fast.post("/v1/responses", { model: TEST_MODEL, ...body });
  const json = (await response.json()) as Json & { id: string; status: string };
  expect(response.status, JSON.stringify(json)).toBe(200);
  return json;
}

/** Every status the store was given for each response id, in order (repeats folded). */
function recordStatuses(fast: FastApp): Map<string, string[]> {
  const statuses = new Map<string, string[]>();
  const put = fast.store.put.bind(fast.store);
  fast.store.put = (record) => {
    const seen = statuses.get(record.id) ?? [];
    if (seen.at(-1) !== record.status) seen.push(record.status);
    statuses.set(record.id, seen);
    put(record);
  };
  return statuses;
}

/** Makes the engine refuse the next `count` requests up front with 429 queue_full, as a full pool does. */
function refuseWithQueueFull(fast: FastApp, count: number): { attempts: () => number } {
  let attempts = 0;
  let refusals = count;
  const generate = fast.engine.generate.bind(fast.engine);
  fast.engine.generate = (request, signal) => {
    attempts++;
    if (refusals <= 0) return generate(request, signal);
    refusals--;
    return (async function* refuse() {
      yield* [];
      throw new ApiError({ status: 429, message: "queue full", code: "queue_full", retryAfter: 1 });
    })();
  };
  return { attempts: () => attempts };
}

describe("retention (--store-max-count) and conversations", () => {
  it("keeps a conversation of 5 turns whole with --store-max-count 3", async () => {
    const fast = createFastApp({ config: { storeMaxCount: 3 } });
    const ids: string[] = [];
    for (let turn = 1; turn <= 5; turn++) {
      const response = await create(fast, {
        input: `turn ${turn}`,
        ...(ids.length === 0 ? {} : { previous_response_id: ids.at(-1) }),
      });
      expect(response.status).toBe("completed");
      ids.push(response.id);
    }
    for (const id of ids) expect((await fast.request(`/v1/responses/${id}`)).status).toBe(200);
    // A sixth turn still sees the whole conversation.
    await create(fast, { input: "turn 6", previous_response_id: ids.at(-1) });
    const prompt = fast.engineRequests
      .at(-1)
      ?.items.map((item) => (item.type === "message" ? item.text : ""));
    expect(prompt).toEqual(expect.arrayContaining(["turn 1", "turn 5", "turn 6"]));
  });

  it("keeps what a running foreground response chains from until that response is stored", async () => {
    const fast = createFastApp({
      config: { storeMaxCount: 1 },
      respond: (request) =>
        lastUserText(request) === "slow" ? { text: "a b c d e f g h", delayMs: 10 } : { text: "ok" },
    });
    const first = await create(fast, { input: "first" });
    const slow = fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: "slow",
      previous_response_id: first.id,
    });
    await waitUntil(() => fast.engine.active > 0);
    // Two unrelated responses finish (and prune) while the chained one runs.
    await create(fast, { input: "other 1" });
    await create(fast, { input: "other 2" });
    expect(fast.store.get(first.id)).toBeDefined();
    const chained = (await (await slow).json()) as { id: string; status: string };
    expect(chained.status).toBe("completed");
    await create(fast, { input: "next", previous_response_id: chained.id });
  });

  it("names the missing ancestor in the 404 when a chain is broken", async () => {
    const fast = createFastApp();
    const first = await create(fast, { input: "one" });
    const second = await create(fast, { input: "two", previous_response_id: first.id });
    expect((await fast.request(`/v1/responses/${first.id}`, { method: "DELETE" })).status).toBe(200);
    const broken = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: "three",
      previous_response_id: second.id,
    });
    expect(broken.status).toBe(404);
    const { error } = (await broken.json()) as { error: Json & { message: string } };
    expect(error).toMatchObject({ code: "previous_response_not_found", param: "previous_response_id" });
    expect(error.message).toContain(`'${second.id}'`);
    expect(error.message).toContain(`'${first.id}'`);
  });
});

describe("a background response while the engine's queue is full", () => {
  it("stays queued and retries until the engine takes it, instead of failing", async () => {
    const fast = createFastApp();
    const statuses = recordStatuses(fast);
    const refusals = refuseWithQueueFull(fast, 2);
    const queued = await create(fast, { input: "x", background: true });
    expect(queued.status).toBe("queued");
    await waitUntil(() => refusals.attempts() >= 1);
    const polled = (await (await fast.request(`/v1/responses/${queued.id}`)).json()) as Json;
    expect(polled).toMatchObject({ status: "queued", error: null });

    await waitUntil(() => fast.store.get(queued.id)?.status === "completed");
    expect(refusals.attempts()).toBe(3);
    expect(statuses.get(queued.id)).toEqual(["queued", "in_progress", "completed"]);
  });

  it("streams queued, then the run, once the engine takes it", async () => {
    const fast = createFastApp();
    refuseWithQueueFull(fast, 1);
    const streamed = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: "x",
      background: true,
      stream: true,
    });
    const types = (await readResponseEvents(streamed)).map((event) => event.type);
    expect(types.slice(0, 3)).toEqual(["response.created", "response.queued", "response.in_progress"]);
    expect(types.at(-1)).toBe("response.completed");
  });

  it("stops waiting when cancelled", async () => {
    const fast = createFastApp();
    const refusals = refuseWithQueueFull(fast, Number.POSITIVE_INFINITY);
    const queued = await create(fast, { input: "x", background: true });
    await waitUntil(() => refusals.attempts() >= 2);
    const cancel = await fast.request(`/v1/responses/${queued.id}/cancel`, { method: "POST" });
    expect(await cancel.json()).toMatchObject({ id: queued.id, status: "cancelled", error: null });
    expect(fast.store.get(queued.id)?.status).toBe("cancelled");
    const attempts = refusals.attempts();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(refusals.attempts()).toBe(attempts);
  });

  it("answers 429 queue_full up front while the most background responses allowed already wait", async () => {
    const fast = createFastApp({ maxWaitingBackground: 2 });
    const refusals = refuseWithQueueFull(fast, Number.POSITIVE_INFINITY);
    const waiting = [await create(fast, { input: "a", background: true })];
    await waitUntil(() => refusals.attempts() >= 1);
    waiting.push(await create(fast, { input: "b", background: true }));
    await waitUntil(() => refusals.attempts() >= 2);

    const refused = await fast.post("/v1/responses", { model: TEST_MODEL, input: "c", background: true });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(await refused.json()).toMatchObject({ error: { code: "queue_full", type: "rate_limit_error" } });

    // One stops waiting: there is room again.
    await fast.request(`/v1/responses/${waiting[0]!.id}`, { method: "DELETE" });
    waiting.push(await create(fast, { input: "d", background: true }));
    for (const { id } of waiting.slice(1)) {
      await fast.request(`/v1/responses/${id}/cancel`, { method: "POST" });
    }
  });
});

describe("a graceful shutdown", () => {
  const longText = Array.from({ length: 200 }, (_, index) => `w${index}`).join(" ");

  it("fails in-flight foreground and background responses with a shutdown error, not cancelled", async () => {
    const shutdown = new AbortController();
    const fast = createFastApp({
      shutdownSignal: shutdown.signal,
      respond: () => ({ text: longText, delayMs: 2 }),
    });
    const statuses = recordStatuses(fast);
    const streamed = await fast.post("/v1/responses", { model: TEST_MODEL, input: "fg", stream: true });
    const background = await create(fast, { input: "bg", background: true });
    await waitUntil(() => fast.engine.active === 2);
    shutdown.abort(new ShutdownError("lmhost is shutting down"));

    const events = await readResponseEvents(streamed);
    const expectedError = { code: "server_error", message: "lmhost is shutting down" };
    expect(events.at(-1)).toMatchObject({
      type: "response.failed",
      response: { status: "failed", error: expectedError },
    });
    const foregroundId = (events[0]?.response as { id: string }).id;
    expect(fast.store.get(foregroundId)?.response).toMatchObject({ status: "failed", error: expectedError });
    await waitUntil(() => fast.store.get(background.id)?.status === "failed");
    expect(fast.store.get(background.id)?.response).toMatchObject({ error: expectedError });
    expect(statuses.get(background.id)).toEqual(["queued", "in_progress", "failed"]);
    expect(fast.engine.active).toBe(0);
  });

  it("fails a background response still waiting for the engine's queue", async () => {
    const shutdown = new AbortController();
    const fast = createFastApp({ shutdownSignal: shutdown.signal });
    const refusals = refuseWithQueueFull(fast, Number.POSITIVE_INFINITY);
    const queued = await create(fast, { input: "x", background: true });
    await waitUntil(() => refusals.attempts() >= 1);
    shutdown.abort(new ShutdownError("lmhost is shutting down"));
    await waitUntil(() => fast.store.get(queued.id)?.status === "failed");
    expect(fast.store.get(queued.id)?.response).toMatchObject({
      error: { code: "server_error", message: "lmhost is shutting down" },
    });
  });

  it("answers a non-streaming request it stopped with 503 server_shutting_down", async () => {
    const shutdown = new AbortController();
    const fast = createFastApp({
      shutdownSignal: shutdown.signal,
      respond: () => ({ text: longText, delayMs: 2 }),
    });
    const pending = fast.post("/v1/responses", { model: TEST_MODEL, input: "x" });
    await waitUntil(() => fast.engine.active === 1);
    shutdown.abort(new ShutdownError("lmhost is shutting down"));
    const answer = await pending;
    expect(answer.status).toBe(503);
    expect(await answer.json()).toMatchObject({ error: { code: "server_shutting_down" } });
  });

  it("leaves client disconnects and cancels as cancelled", async () => {
    const fast = createFastApp({ respond: () => ({ text: longText, delayMs: 2 }) });
    const background = await create(fast, { input: "bg", background: true });
    await waitUntil(() => fast.engine.active === 1);
    const cancel = await fast.request(`/v1/responses/${background.id}/cancel`, { method: "POST" });
    expect(await cancel.json()).toMatchObject({ status: "cancelled", error: null });
  });
});
