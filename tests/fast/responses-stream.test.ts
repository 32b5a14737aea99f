/**
 * The SSE stream on the wire: the golden event order against OpenAI's recorded stream, schema validation
 * of every event in every kind of ending, the exact Codex CLI request, SSE framing (one write per event,
 * keep-alive comments, `[DONE]`), and a client that disconnects mid-stream.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { ScriptedTurn } from "../../src/engine/scripted/scripted-engine.js";
import { createFastApp, parseSse, readResponseEvents, slowReply, TEST_MODEL } from "../helpers/fast-app.js";
import { capturesDir } from "../helpers/paths.js";
import { loadSpecValidator, type SpecValidator } from "../helpers/spec-validator.js";

type Event = Record<string, unknown> & { type: string };

let spec: SpecValidator;
beforeAll(() => {
  spec = loadSpecValidator();
});

function captureEvents(): Event[] {
  const text = readFileSync(path.join(capturesDir, "openai-basic-event-stream.txt"), "utf8");
  return parseSse(text).map((entry) => JSON.parse(entry.data) as Event);
}

/** Event types with runs of the same delta type collapsed to one. */
function collapsedTypes(events: Event[]): string[] {
  return events
    .map((event) => event.type)
    .filter((type, index, all) => !(type.endsWith(".delta") && all[index - 1] === type));
}

async function streamEvents(body: Record<string, unknown>, turn?: ScriptedTurn): Promise<Event[]> {
  const fast = createFastApp(turn === undefined ? {} : { respond: () => turn });
  const response = await fast.post("/v1/responses", {
    model: TEST_MODEL,
    input: "hello",
    stream: true,
    ...body,
  });
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toContain("text/event-stream");
  return (await readResponseEvents(response)) as Event[];
}

describe("the response stream", () => {
  it("follows the event order of OpenAI's recorded stream for a message item (golden)", async () => {
    const capture = captureEvents();
    // The capture's first item is a reasoning item (output_index 0); the message is the rest.
    const captureMessage = capture.filter(
      (event) => event.output_index === undefined || event.output_index === 1,
    );
    const ours = await streamEvents({});
    expect(collapsedTypes(ours)).toEqual(collapsedTypes(captureMessage));
    // Same fields on each event type, and every response field OpenAI sent is present in ours.
    for (const event of ours) {
      const counterpart = capture.find((candidate) => candidate.type === event.type);
      if (counterpart === undefined) continue;
      expect(Object.keys(event).sort(), event.type).toEqual(Object.keys(counterpart).sort());
      if (typeof counterpart.response === "object" && counterpart.response !== null) {
        for (const key of Object.keys(counterpart.response))
          expect(event.response, `${event.type}.response.${key}`).toHaveProperty(key);
      }
    }
  });

  const scenarios: [string, Record<string, unknown>, ScriptedTurn | undefined, string][] = [
    [
      "a plain completion",
      { instructions: "Be brief.", metadata: { a: "b" } },
      undefined,
      "response.completed",
    ],
    ["an incomplete one", { max_output_tokens: 2 }, { text: "one two three four" }, "response.incomplete"],
    [
      "a failure after the first tokens",
      {},
      { text: "a b c d", failWith: new Error("engine crashed"), failAfterParts: 2 },
      "response.failed",
    ],
    [
      "reasoning and function calls",
      {
        tools: [
          {
            type: "function",
            name: "get_weather",
            parameters: { type: "object", properties: { city: { type: "string" } } },
          },
        ],
      },
      {
        reasoning: "I should look it up",
        text: "Checking.",
        toolCalls: [{ callId: "call_1", name: "get_weather", arguments: '{"city":"Oslo"}' }],
      },
      "response.completed",
    ],
    [
      "structured output",
      {
        text: {
          format: {
            type: "json_schema",
            name: "said",
            schema: { type: "object", properties: { said: { type: "string" } } },
            strict: true,
          },
        },
      },
      undefined,
      "response.completed",
    ],
    ["a background stream", { background: true }, undefined, "response.completed"],
  ];
  for (const [name, body, turn, terminal] of scenarios) {
    it(`validates every event of ${name} against both specs`, async () => {
      const events = await streamEvents(body, turn);
      expect(events.at(-1)?.type).toBe(terminal);
      expect(events.map((event) => event.sequence_number)).toEqual(events.map((_, index) => index));
      for (const event of events) spec.assertStreamEvent(event);
      const ids = new Map<number, string>();
      for (const event of events) {
        if (typeof event.output_index !== "number") continue;
        const id = typeof event.item_id === "string" ? event.item_id : (event.item as { id: string }).id;
        expect(
          ids.get(event.output_index) ?? id,
          `${event.type} changed the id at ${event.output_index}`,
        ).toBe(id);
        ids.set(event.output_index, id);
      }
    });
  }

  it("accepts the exact body Codex CLI 0.169 sends and streams a valid response", async () => {
    const fast = createFastApp();
    const body = JSON.parse(
      readFileSync(path.join(capturesDir, "codex-cli-0.169-request.json"), "utf8"),
    ) as Record<string, unknown>;
    const response = await fast.post("/v1/responses", { ...body, model: TEST_MODEL });
    expect(response.status).toBe(200);
    const events = (await readResponseEvents(response)) as Event[];
    expect(events.at(-1)?.type).toBe("response.completed");
    // The echoed tools include namespace and web_search, which Open Responses does not define.
    for (const event of events) spec.assertStreamEvent(event, { openResponses: false });
    const request = fast.engineRequests[0];
    expect(request?.items[0]).toMatchObject({ type: "message", role: "system" });
    expect(request?.items.at(-1)).toEqual({ type: "message", role: "user", text: "Say hello" });
    const toolNames = request?.tools?.map((tool) => tool.name) ?? [];
    expect(toolNames).toContain("exec_command");
    expect(toolNames).toContain("multi_agent_v1.close_agent");
    // store: false: nothing was kept.
    const final = events.at(-1)?.response as { id: string; store: boolean };
    expect(final.store).toBe(false);
    expect((await fast.request(`/v1/responses/${final.id}`)).status).toBe(404);
  });

  it("writes each event in one chunk and ends with data: [DONE]", async () => {
    const fast = createFastApp({ respond: slowReply("a b c", 2) });
    const response = await fast.post("/v1/responses", { model: TEST_MODEL, input: "x", stream: true });
    const reader = response.body?.getReader();
    const decoder = new TextDecoder();
    const chunks: string[] = [];
    for (;;) {
      const next = await reader?.read();
      if (next === undefined || next.done) break;
      chunks.push(decoder.decode(next.value));
    }
    expect(chunks.length).toBeGreaterThan(5);
    for (const chunk of chunks) {
      expect(chunk.endsWith("\n\n"), JSON.stringify(chunk)).toBe(true);
      for (const block of chunk.trim().split("\n\n")) {
        if (block.startsWith("data: [DONE]")) continue;
        expect(block).toMatch(/^event: (\S+)\ndata: \{"type":"\1",/);
      }
    }
    expect(chunks.at(-1)).toBe("data: [DONE]\n\n");
  });

  it("sends keep-alive comments while the engine is silent", async () => {
    const fast = createFastApp({ respond: slowReply("late words", 250), keepAliveSeconds: 0.05 });
    const response = await fast.post("/v1/responses", { model: TEST_MODEL, input: "x", stream: true });
    const text = await response.text();
    expect(text).toContain(": keep-alive\n\n");
    expect(parseSse(text).at(-1)?.data).toBe("[DONE]");
  });

  it("stops generating when the client disconnects, records the response as cancelled, and keeps serving", async () => {
    const fast = createFastApp({
      respond: slowReply(Array.from({ length: 200 }, (_, index) => `w${index}`).join(" "), 5),
    });
    const controller = new AbortController();
    const response = await fast.post(
      "/v1/responses",
      { model: TEST_MODEL, input: "x", stream: true },
      controller.signal,
    );
    const reader = response.body?.getReader();
    const decoder = new TextDecoder();
    let seen = "";
    while (!seen.includes("response.output_text.delta")) {
      const next = await reader?.read();
      if (next === undefined || next.done) break;
      seen += decoder.decode(next.value);
    }
    const id = (JSON.parse(parseSse(seen)[0]?.data ?? "{}") as { response: { id: string } }).response.id;
    controller.abort();
    await reader?.cancel().catch(() => undefined);
    const started = Date.now();
    while ((fast.engine.active > 0 || fast.store.get(id) === undefined) && Date.now() - started < 3000) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(fast.engine.active).toBe(0);
    const stored = fast.store.get(id)?.response as
      { status: string; output: { content: { text: string }[] }[] } | undefined;
    expect(stored?.status).toBe("cancelled");
    expect(stored?.output[0]?.content[0]?.text.split(" ").length ?? 0).toBeLessThan(200);
    expect((await fast.post("/v1/responses", { model: TEST_MODEL, input: "again" })).status).toBe(200);
  });
});
