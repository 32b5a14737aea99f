/**
 * The Responses routes when the store misbehaves or holds odd data: a full store (a real SQLite file
 * capped with `PRAGMA max_page_count`, which answers SQLITE_FULL exactly like a full disk), unreadable
 * rows, previous_response_id cycles and chains over the depth limit crafted directly in the file, and
 * metadata keys such as `__proto__` that plain-object code loses.
 */
import { describe, expect, it } from "vitest";
import { createFastApp, TEST_MODEL } from "../helpers/fast-app.js";

describe("metadata keys", () => {
  it("stores and returns a `__proto__` key like any other (sent as a real JSON body string)", async () => {
    const fast = createFastApp();
    const body = `{"model": "${TEST_MODEL}", "input": "hi", "metadata": {"__proto__": "x", "topic": "y"}}`;
    const created = await fast.request("/v1/responses", { method: "POST", body });
    expect(created.status).toBe(200);
    const createdText = await created.text();
    expect(createdText).toContain('"metadata":{"__proto__":"x","topic":"y"}');
    const id = (JSON.parse(createdText) as { id: string }).id;

    const fetched = await (await fast.request(`/v1/responses/${id}`)).text();
    expect(fetched).toContain('"metadata":{"__proto__":"x","topic":"y"}');

    const streamBody = body.replace('"input": "hi"', '"input": "hi", "stream": true');
    const streamed = await (await fast.request("/v1/responses", { method: "POST", body: streamBody })).text();
    const completed = streamed.split("\n").find((line) => line.includes('"type":"response.completed"'));
    expect(completed).toContain('"metadata":{"__proto__":"x","topic":"y"}');
  });

  it("validates a `__proto__` value like any other value", async () => {
    const fast = createFastApp();
    const body = `{"model": "${TEST_MODEL}", "input": "hi", "metadata": {"__proto__": 3}}`;
    const response = await fast.request("/v1/responses", { method: "POST", body });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { param: "metadata.__proto__" } });
  });
});
