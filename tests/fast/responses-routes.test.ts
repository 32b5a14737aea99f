/**
 * The other Responses routes over HTTP: query parameters of input_items and retrieve, 404s for unknown
 * ids, what cannot be cancelled or streamed, input_tokens validation, and cancellation by a client that
 * goes away or by server shutdown.
 */
import { describe, expect, it } from "vitest";
import { createFastApp, slowReply, TEST_MODEL } from "../helpers/fast-app.js";

describe("query parameters of the other routes", () => {
  const fast = createFastApp();

  it.each([
    ["limit=0", "limit"],
    ["limit=101", "limit"],
    ["limit=ten", "limit"],
    ["order=sideways", "order"],
    ["after=msg_unknown", "after"],
    // Both were answered 200 as if absent: `before` paged nothing backwards, `include` took any value.
    ["before=msg_any", "before"],
    ["include=bogus", "include[0]"],
    ["include[]=reasoning.encrypted_content&include[]=bogus", "include[1]"],
  ])("GET input_items?%s → 400 naming %s", async (query, param) => {
    const created = (await (await fast.post("/v1/responses", { model: TEST_MODEL, input: "x" })).json()) as {
      id: string;
    };
    const response = await fast.request(`/v1/responses/${created.id}/input_items?${query}`);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { param } });
  });

  it("GET input_items accepts an include value OpenAI lists", async () => {
    const created = (await (await fast.post("/v1/responses", { model: TEST_MODEL, input: "x" })).json()) as {
      id: string;
    };
    const response = await fast.request(
      `/v1/responses/${created.id}/input_items?include=reasoning.encrypted_content`,
    );
    expect(response.status).toBe(200);
    expect(((await response.json()) as { data: unknown[] }).data).toHaveLength(1);
  });

  it("answers 404 response_not_found on every route for an unknown id", async () => {
    for (const [method, path] of [
      ["GET", "/v1/responses/resp_nope"],
      ["DELETE", "/v1/responses/resp_nope"],
      ["GET", "/v1/responses/resp_nope/input_items"],
      ["POST", "/v1/responses/resp_nope/cancel"],
      ["GET", "/v1/responses/resp_nope?stream=true"],
    ] as const) {
      const response = await fast.request(path, { method });
      expect(response.status, `${method} ${path}`).toBe(404);
      expect(await response.json()).toMatchObject({ error: { code: "response_not_found" } });
    }
  });

  it("refuses to cancel a foreground response and to stream one that was not a background stream", async () => {
    const created = (await (await fast.post("/v1/responses", { model: TEST_MODEL, input: "x" })).json()) as {
      id: string;
    };
    const cancel = await fast.request(`/v1/responses/${created.id}/cancel`, { method: "POST" });
    expect(cancel.status).toBe(400);
    const stream = await fast.request(`/v1/responses/${created.id}?stream=true`);
    expect(stream.status).toBe(400);
    expect(await stream.json()).toMatchObject({ error: { param: "stream" } });
    const badFlag = await fast.request(`/v1/responses/${created.id}?stream=maybe`);
    expect(badFlag.status).toBe(400);
  });

  it("validates input_tokens bodies like create bodies", async () => {
    const unknown = await fast.post("/v1/responses/input_tokens", {
      model: TEST_MODEL,
      input: "x",
      stream: true,
    });
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toMatchObject({
      error: { param: "stream", message: "Unrecognized request argument supplied: stream" },
    });
    const missingModel = await fast.post("/v1/responses/input_tokens", {
      model: "nobody/nothing",
      input: "x",
    });
    expect(missingModel.status).toBe(404);
  });
});

describe("cancellation from outside the response", () => {
  const longText = Array.from({ length: 100 }, (_, index) => `w${index}`).join(" ");

  it("stops a non-streaming request whose client went away and stores it as cancelled", async () => {
    const fast = createFastApp({ respond: slowReply(longText, 5) });
    const statuses: string[] = [];
    const put = fast.store.put.bind(fast.store);
    fast.store.put = (record) => {
      statuses.push(record.status);
      put(record);
    };
    const controller = new AbortController();
    const pending = fast.post("/v1/responses", { model: TEST_MODEL, input: "x" }, controller.signal);
    await waitUntil(() => fast.engine.active > 0);
    await new Promise((resolve) => setTimeout(resolve, 30));
    controller.abort();
    await pending.catch(() => undefined);
    await waitUntil(() => fast.engine.active === 0 && statuses.length > 1);
    expect(statuses).toEqual(["in_progress", "cancelled"]);
  });

  it("cancels background responses when the server shuts down", async () => {
    const shutdown = new AbortController();
    const fast = createFastApp({ respond: slowReply(longText, 5), shutdownSignal: shutdown.signal });
    const queued = (await (
      await fast.post("/v1/responses", { model: TEST_MODEL, input: "x", background: true })
    ).json()) as {
      id: string;
    };
    await waitUntil(() => fast.engine.active > 0);
    shutdown.abort();
    await waitUntil(() => (fast.store.get(queued.id)?.status ?? "") === "cancelled");
    expect(fast.engine.active).toBe(0);
  });
});

async function waitUntil(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error("Timed out waiting for a condition.");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
