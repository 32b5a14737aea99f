/**
 * Conformance through the real `openai` SDK (v6), its fetch routed into the app: create, stream (whose
 * accumulator throws on any index or id mistake), retrieve, delete, input items with paging, input token
 * counts, chains through previous_response_id, structured output, cancel, background polling and stream
 * resumption. Every response and event the SDK receives is validated against both specs.
 */
import OpenAI from "openai";
import { zodTextFormat } from "openai/helpers/zod";
import type { ResponseStreamEvent } from "openai/resources/responses/responses";
import { beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { renderScriptedPrompt } from "../../src/engine/scripted/scripted-engine.js";
import { createFastApp, slowReply, TEST_MODEL } from "../helpers/fast-app.js";
import { loadSpecValidator, type SpecValidator } from "../helpers/spec-validator.js";

/** The wire object behind an SDK result (the SDK adds output_text, output_parsed and parts' `parsed`). */
function wire(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(value, (key, entry: unknown) =>
      key === "output_text" || key === "output_parsed" || key === "parsed" ? undefined : entry,
    ),
  );
}

let spec: SpecValidator;
beforeAll(() => {
  spec = loadSpecValidator();
});

async function waitFor<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 5000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() - started > timeoutMs)
      throw new Error(`Timed out waiting; last value: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("openai SDK against lmhost", () => {
  it("creates a response (non-streaming) that validates and can be retrieved unchanged", async () => {
    const { client } = createFastApp();
    const response = await client.responses.create({
      model: TEST_MODEL,
      input: "Hello there",
      metadata: { run: "1" },
    });
    expect(response.id).toMatch(/^resp_/);
    expect(response.status).toBe("completed");
    expect(response.output_text).toBe("You said: Hello there");
    expect(response.output[0]).toMatchObject({
      id: expect.stringMatching(/^msg_/),
      type: "message",
      role: "assistant",
      status: "completed",
    });
    expect(response.metadata).toEqual({ run: "1" });
    expect(response.usage?.total_tokens).toBe(
      (response.usage?.input_tokens ?? 0) + (response.usage?.output_tokens ?? 0),
    );
    spec.assertResponse(wire(response));
    const retrieved = await client.responses.retrieve(response.id);
    expect(wire(retrieved)).toEqual(wire(response));
  });

  it("streams through responses.stream(): the accumulator accepts every event and equals the stored response", async () => {
    const { client } = createFastApp();
    const stream = client.responses.stream({
      model: TEST_MODEL,
      input: "stream me please",
      instructions: "Be brief.",
    });
    const deltas: string[] = [];
    const sequence: number[] = [];
    stream.on("response.output_text.delta", (event) => deltas.push(event.delta));
    stream.on("event", (event) => {
      sequence.push(event.sequence_number);
      spec.assertStreamEvent(event);
    });
    const final = await stream.finalResponse();
    expect(final.status).toBe("completed");
    expect(deltas.join("")).toBe(final.output_text);
    expect(sequence).toEqual(sequence.map((_, index) => index));
    const retrieved = await client.responses.retrieve(final.id);
    expect(wire(retrieved)).toEqual(wire(final));
  });

  it("deletes a response: 200 with {id, object, deleted}, then 404", async () => {
    const fast = createFastApp();
    const response = await fast.client.responses.create({ model: TEST_MODEL, input: "bye" });
    const raw = await fast.request(`/v1/responses/${response.id}`, { method: "DELETE" });
    expect(raw.status).toBe(200);
    expect(await raw.json()).toEqual({ id: response.id, object: "response", deleted: true });
    await expect(fast.client.responses.retrieve(response.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(fast.client.responses.delete(response.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const again = await fast.client.responses.create({ model: TEST_MODEL, input: "still here" });
    await expect(fast.client.responses.delete(again.id)).resolves.not.toThrow();
  });

  it("pages through input items (desc by default, asc on request) and every page validates", async () => {
    const fast = createFastApp();
    const input = ["one", "two", "three", "four", "five"].map((text) => ({
      role: "user" as const,
      content: text,
    }));
    const response = await fast.client.responses.create({ model: TEST_MODEL, input });
    const ascending: string[] = [];
    for await (const item of fast.client.responses.inputItems.list(response.id, { limit: 2, order: "asc" })) {
      ascending.push(
        item.type === "message" && item.content[0]?.type === "input_text" ? item.content[0].text : "?",
      );
    }
    expect(ascending).toEqual(["one", "two", "three", "four", "five"]);
    const firstPage = await fast.client.responses.inputItems.list(response.id, { limit: 2 });
    expect(
      firstPage.data.map((item) =>
        item.type === "message" && item.content[0]?.type === "input_text" ? item.content[0].text : "?",
      ),
    ).toEqual(["five", "four"]);
    expect(firstPage.has_more).toBe(true);
    const raw = await fast.request(`/v1/responses/${response.id}/input_items?limit=20`);
    const page = (await raw.json()) as {
      data: { id: string }[];
      first_id: string;
      last_id: string;
      has_more: boolean;
    };
    spec.assertItemList(page);
    expect(page.data).toHaveLength(5);
    expect(page.has_more).toBe(false);
    expect(page.first_id).toBe(page.data[0]?.id);
    expect(page.last_id).toBe(page.data[4]?.id);
  });

  it("counts input tokens for a would-be request", async () => {
    const { client } = createFastApp();
    const count = await client.responses.inputTokens.count({
      model: TEST_MODEL,
      input: "one two three",
      instructions: "sys",
    });
    expect(count).toEqual({ object: "response.input_tokens", input_tokens: 6 });
  });

  it("carries a 3-turn chain through previous_response_id, without inheriting instructions, reusing the cache", async () => {
    const fast = createFastApp();
    const first = await fast.client.responses.create({
      model: TEST_MODEL,
      input: "My name is Ada.",
      instructions: "Talk like a pirate.",
    });
    const second = await fast.client.responses.create({
      model: TEST_MODEL,
      input: "What is my name?",
      previous_response_id: first.id,
    });
    const third = await fast.client.responses.create({
      model: TEST_MODEL,
      input: "Say it again.",
      previous_response_id: second.id,
    });
    expect(third.previous_response_id).toBe(second.id);
    expect(third.instructions).toBeNull();
    const [firstRequest, secondRequest, thirdRequest] = fast.engineRequests;
    expect(renderScriptedPrompt(firstRequest?.items ?? [])).toBe(
      "<system> Talk like a pirate.\n<user> My name is Ada.",
    );
    expect(renderScriptedPrompt(secondRequest?.items ?? [])).toBe(
      "<user> My name is Ada.\n<assistant> You said: My name is Ada.\n<user> What is my name?",
    );
    const prompt = await fast.engine.renderPrompt(thirdRequest ?? { model: TEST_MODEL, items: [] });
    expect(prompt).toBe(
      [
        "<user> My name is Ada.",
        "<assistant> You said: My name is Ada.",
        "<user> What is my name?",
        "<assistant> You said: What is my name?",
        "<user> Say it again.",
      ].join("\n"),
    );
    expect(prompt).not.toContain("pirate");
    expect(third.usage?.input_tokens_details.cached_tokens).toBeGreaterThan(0);
    // Only the new turn's input is listed as this response's input.
    const items = await fast.client.responses.inputItems.list(third.id);
    expect(items.data).toHaveLength(1);
  });

  it("answers 404 previous_response_not_found for unknown, deleted and store:false ids", async () => {
    const { client } = createFastApp();
    const unstored = await client.responses.create({ model: TEST_MODEL, input: "x", store: false });
    const deleted = await client.responses.create({ model: TEST_MODEL, input: "y" });
    await client.responses.delete(deleted.id);
    for (const id of ["resp_unknown", unstored.id, deleted.id]) {
      const error = await client.responses
        .create({ model: TEST_MODEL, input: "z", previous_response_id: id })
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(OpenAI.NotFoundError);
      expect(error).toMatchObject({ code: "previous_response_not_found", param: "previous_response_id" });
    }
  });

  it("returns structured output for text.format json_schema (responses.parse)", async () => {
    const fast = createFastApp();
    const format = zodTextFormat(z.object({ said: z.string() }), "echo");
    const parsed = await fast.client.responses.parse({
      model: TEST_MODEL,
      input: "json please",
      text: { format },
    });
    expect(parsed.output_parsed).toEqual({ said: "json please" });
    expect(fast.engineRequests[0]?.responseFormat).toMatchObject({ type: "json_schema", name: "echo" });
    expect(parsed.text?.format).toMatchObject({ type: "json_schema", name: "echo", strict: true });
    spec.assertResponse(wire(parsed));
  });

  it("reports max_output_tokens as incomplete", async () => {
    const { client } = createFastApp({ respond: () => ({ text: "one two three four five six" }) });
    const response = await client.responses.create({
      model: TEST_MODEL,
      input: "long",
      max_output_tokens: 3,
    });
    expect(response.status).toBe("incomplete");
    expect(response.incomplete_details).toEqual({ reason: "max_output_tokens" });
    expect(response.usage?.output_tokens).toBe(3);
  });

  it("runs in the background: queued at once, polled to completion", async () => {
    const { client } = createFastApp({ respond: slowReply("slow background answer", 5) });
    const queued = await client.responses.create({ model: TEST_MODEL, input: "bg", background: true });
    expect(queued.status).toBe("queued");
    expect(queued.background).toBe(true);
    spec.assertResponse(wire(queued));
    const done = await waitFor(
      () => client.responses.retrieve(queued.id),
      (response) => response.status === "completed",
    );
    expect(done.output_text).toBe("slow background answer");
    spec.assertResponse(wire(done));
  });

  it("cancels a background response", async () => {
    const fast = createFastApp({ respond: slowReply("a b c d e f g h i j k l m n o p", 20) });
    const queued = await fast.client.responses.create({ model: TEST_MODEL, input: "bg", background: true });
    await waitFor(
      () => fast.client.responses.retrieve(queued.id),
      (response) => response.output_text.length > 0,
    );
    const cancelled = await fast.client.responses.cancel(queued.id);
    expect(cancelled.status).toBe("cancelled");
    expect((await fast.client.responses.retrieve(queued.id)).status).toBe("cancelled");
    expect(fast.engine.active).toBe(0);
    spec.assertResponse(wire(cancelled));
    // Cancelling again is a no-op that returns the final state.
    expect((await fast.client.responses.cancel(queued.id)).status).toBe("cancelled");
  });

  it("resumes a background stream after a disconnect with starting_after", async () => {
    const fast = createFastApp({ respond: slowReply("w1 w2 w3 w4 w5 w6 w7 w8", 10) });
    const controller = new AbortController();
    const stream = await fast.client.responses.create(
      { model: TEST_MODEL, input: "bg", background: true, stream: true },
      { signal: controller.signal },
    );
    const seen: ResponseStreamEvent[] = [];
    for await (const event of stream) {
      seen.push(event);
      if (event.type === "response.output_text.delta") break; // drops the connection
    }
    const lastSeen = seen.at(-1)?.sequence_number ?? -1;
    const id = seen[0]?.type === "response.created" ? seen[0].response.id : "";
    const resumed = await fast.client.responses.retrieve(id, { stream: true, starting_after: lastSeen });
    const rest: ResponseStreamEvent[] = [];
    for await (const event of resumed) rest.push(event);
    expect(rest[0]?.sequence_number).toBe(lastSeen + 1);
    const all = [...seen, ...rest];
    expect(all.map((event) => event.sequence_number)).toEqual(all.map((_, index) => index));
    expect(all.at(-1)?.type).toBe("response.completed");
    for (const event of all) spec.assertStreamEvent(event);
    // The SDK's own helper replays from the start and accumulates the final response.
    const final = await fast.client.responses.stream({ response_id: id, starting_after: 3 }).finalResponse();
    expect(final.output_text).toBe("w1 w2 w3 w4 w5 w6 w7 w8");
  });

  it("turns bad requests into typed SDK errors naming the field", async () => {
    const { client } = createFastApp();
    const error = await client.responses
      .create({ model: TEST_MODEL, input: [{ role: "robot" as "user", content: "x" }] })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({ status: 400, param: "input[0].role" });
    const missing = await client.responses
      .create({ model: "nobody/nothing", input: "x" })
      .catch((caught: unknown) => caught);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect(missing).toMatchObject({ code: "model_not_found" });
  });
});
