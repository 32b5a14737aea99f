/**
 * The event writer state machine: event order per item kind, index and id bookkeeping, and how every
 * ending (finish, length, cancel, failure) closes open items. Each scenario is also replayed through the
 * openai SDK's own accumulator, which throws on any index, id or ordering mistake, and the result must
 * equal the writer's final snapshot.
 */
import { accumulateResponse } from "openai/lib/responses/ResponseAccumulator";
import type {
  Response as SdkResponse,
  ResponseStreamEvent as SdkEvent,
} from "openai/resources/responses/responses";
import { beforeAll, describe, expect, it } from "vitest";
import type { EnginePart, Usage } from "../../src/engine/types.js";
import { ResponseEventWriter, outcomeOfFinish } from "../../src/responses/event-writer.js";
import { newResponseObject } from "../../src/responses/response-object.js";
import type { ResponseEcho, ResponseStreamEvent } from "../../src/responses/wire-types.js";
import { loadSpecValidator, type SpecValidator } from "../helpers/spec-validator.js";

const usage: Usage = { inputTokens: 10, cachedInputTokens: 4, outputTokens: 5, reasoningTokens: 2 };

const echo: ResponseEcho = {
  instructions: null,
  model: "lmhost-test/scripted",
  tools: [
    {
      type: "function",
      name: "get_weather",
      description: null,
      parameters: { type: "object" },
      strict: null,
    },
  ],
  tool_choice: "auto",
  parallel_tool_calls: true,
  temperature: 1,
  top_p: 1,
  presence_penalty: 0,
  frequency_penalty: 0,
  top_logprobs: 0,
  max_output_tokens: null,
  max_tool_calls: null,
  previous_response_id: null,
  reasoning: { effort: null, summary: null },
  text: { format: { type: "text" }, verbosity: "medium" },
  truncation: "disabled",
  store: true,
  background: false,
  metadata: {},
  user: null,
  safety_identifier: null,
  prompt_cache_key: null,
  prompt_cache_retention: null,
  service_tier: "default",
  prompt: null,
  conversation: null,
  moderation: null,
};

function newWriter(functionNames = new Map<string, { name: string; namespace?: string }>()) {
  const initial = newResponseObject({
    id: "resp_test",
    createdAt: 1_700_000_000,
    echo,
    status: "in_progress",
  });
  return new ResponseEventWriter(initial, functionNames);
}

/** Runs parts through a fresh writer: created, in_progress, then one write per part. */
function play(
  parts: EnginePart[],
  writer = newWriter(),
): { events: ResponseStreamEvent[]; writer: ResponseEventWriter } {
  const events = [...writer.created(), ...writer.inProgress()];
  for (const part of parts) events.push(...writer.write(part));
  return { events, writer };
}

function accumulate(events: ResponseStreamEvent[]): SdkResponse {
  let snapshot: SdkResponse | undefined;
  for (const event of events) snapshot = accumulateResponse(event as unknown as SdkEvent, snapshot);
  if (snapshot === undefined) throw new Error("no events");
  return snapshot;
}

const types = (events: ResponseStreamEvent[]) => events.map((event) => event.type);
const text = (value: string): EnginePart => ({ type: "text-delta", text: value });
const finish = (reason: "stop" | "length" | "tool-calls" | "cancelled"): EnginePart => ({
  type: "finish",
  reason,
  usage,
});

let spec: SpecValidator;
beforeAll(() => {
  spec = loadSpecValidator();
});

const scenarios: {
  name: string;
  parts: EnginePart[];
  order: string[];
  status: string;
  itemStatuses: string[];
}[] = [
  {
    name: "a text message",
    parts: [text("Hello"), text(" there"), finish("stop")],
    order: [
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ],
    status: "completed",
    itemStatuses: ["completed"],
  },
  {
    name: "reasoning, then text",
    parts: [
      { type: "reasoning-start" },
      { type: "reasoning-delta", text: "think" },
      { type: "reasoning-end" },
      text("answer"),
      finish("stop"),
    ],
    order: [
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.reasoning_text.delta",
      "response.reasoning_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ],
    status: "completed",
    itemStatuses: ["completed", "completed"],
  },
  {
    name: "text, then two function calls",
    parts: [
      text("Let me check."),
      { type: "tool-call-start", callId: "call_1", name: "get_weather" },
      { type: "tool-call-delta", callId: "call_1", argumentsDelta: '{"city":' },
      { type: "tool-call-delta", callId: "call_1", argumentsDelta: '"Oslo"}' },
      { type: "tool-call-end", callId: "call_1", name: "get_weather", arguments: '{"city":"Oslo"}' },
      { type: "tool-call-start", callId: "call_2", name: "get_weather" },
      { type: "tool-call-end", callId: "call_2", name: "get_weather", arguments: '{"city":"Rome"}' },
      finish("tool-calls"),
    ],
    order: [
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.completed",
    ],
    status: "completed",
    itemStatuses: ["completed", "completed", "completed"],
  },
  {
    name: "max_output_tokens reached",
    parts: [text("Once upon"), finish("length")],
    order: [
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.incomplete",
    ],
    status: "incomplete",
    itemStatuses: ["incomplete"],
  },
  {
    name: "cancelled by the engine mid-message",
    parts: [text("Once"), finish("cancelled")],
    order: [
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.incomplete",
    ],
    status: "cancelled",
    itemStatuses: ["incomplete"],
  },
  {
    name: "nothing generated",
    parts: [{ type: "prompt-progress", evaluatedTokens: 5, totalTokens: 10 }, finish("stop")],
    order: ["response.created", "response.in_progress", "response.completed"],
    status: "completed",
    itemStatuses: [],
  },
];

describe("ResponseEventWriter", () => {
  for (const scenario of scenarios) {
    it(`emits the right events for ${scenario.name}`, () => {
      const { events, writer } = play(scenario.parts);
      expect(types(events)).toEqual(scenario.order);
      expect(events.map((event) => event.sequence_number)).toEqual(events.map((_, index) => index));
      const final = writer.snapshot();
      expect(final.status).toBe(scenario.status);
      expect(final.output.map((item) => ("status" in item ? item.status : undefined))).toEqual(
        scenario.itemStatuses,
      );
      expect(writer.finished).toBe(true);
      // The SDK's accumulator agrees with the writer on every index and id.
      const accumulated = accumulate(events);
      expect(JSON.parse(JSON.stringify({ ...accumulated, output_text: undefined }))).toEqual(final);
      for (const event of events) spec.assertStreamEvent(event);
    });
  }

  it("adds a summary (the reasoning text) and encrypted_content when asked, events the SDK accumulates", () => {
    const initial = newResponseObject({
      id: "resp_test",
      createdAt: 1_700_000_000,
      echo,
      status: "in_progress",
    });
    const sealed: string[] = [];
    const writer = new ResponseEventWriter(initial, new Map(), {
      summary: "concise",
      seal: (itemId, reasoningText) => {
        sealed.push(`${itemId}:${reasoningText}`);
        return "sealed-blob";
      },
    });
    const { events } = play(
      [
        { type: "reasoning-start" },
        { type: "reasoning-delta", text: "First idea.\n\n" },
        { type: "reasoning-delta", text: "Second idea." },
        { type: "reasoning-end" },
        text("answer"),
        finish("stop"),
      ],
      writer,
    );
    expect(types(events).slice(6, 13)).toEqual([
      "response.reasoning_text.done",
      "response.content_part.done",
      "response.reasoning_summary_part.added",
      "response.reasoning_summary_text.delta",
      "response.reasoning_summary_text.done",
      "response.reasoning_summary_part.done",
      "response.output_item.done",
    ]);
    const final = writer.snapshot();
    const reasoning = final.output[0];
    expect(reasoning).toMatchObject({
      type: "reasoning",
      summary: [{ type: "summary_text", text: "First idea." }],
      encrypted_content: "sealed-blob",
    });
    expect(sealed).toEqual([`${reasoning?.id}:First idea.\n\nSecond idea.`]);
    const accumulated = accumulate(events);
    expect(JSON.parse(JSON.stringify({ ...accumulated, output_text: undefined }))).toEqual(final);
    for (const event of events) spec.assertStreamEvent(event);
  });

  it("keeps item ids stable and output_index equal to the position in output", () => {
    const { events, writer } = play(scenarios[2]?.parts ?? []);
    const final = writer.snapshot();
    for (const event of events) {
      if ("output_index" in event) {
        const item = final.output[event.output_index];
        expect(item).toBeDefined();
        const eventItemId = "item" in event ? event.item.id : event.item_id;
        expect(eventItemId).toBe(item?.id);
      }
    }
    expect(final.output.map((item) => item.type)).toEqual(["message", "function_call", "function_call"]);
    expect(final.output[1]).toMatchObject({
      call_id: "call_1",
      name: "get_weather",
      arguments: '{"city":"Oslo"}',
    });
    expect(final.usage).toEqual({
      input_tokens: 10,
      input_tokens_details: { cached_tokens: 4, cache_write_tokens: 0 },
      output_tokens: 5,
      output_tokens_details: { reasoning_tokens: 2 },
      total_tokens: 15,
    });
  });

  it("sets incomplete_details for max_output_tokens and completed_at only when completed", () => {
    const incomplete = play([text("a"), finish("length")]).writer.snapshot();
    expect(incomplete.incomplete_details).toEqual({ reason: "max_output_tokens" });
    expect(incomplete.completed_at).toBeNull();
    const completed = play([text("a"), finish("stop")]).writer.snapshot();
    expect(completed.incomplete_details).toBeNull();
    expect(completed.completed_at).toEqual(expect.any(Number));
  });

  it("closes the open item and ends with response.failed on failure", () => {
    const { events, writer } = play([text("partial")]);
    events.push(...writer.fail({ code: "server_error", message: "boom" }));
    expect(types(events).slice(-4)).toEqual([
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.failed",
    ]);
    const final = writer.snapshot();
    expect(final.status).toBe("failed");
    expect(final.error).toEqual({ code: "server_error", message: "boom" });
    expect(final.output[0]).toMatchObject({ status: "incomplete" });
    for (const event of events) spec.assertStreamEvent(event);
    expect(accumulate(events).status).toBe("failed");
  });

  it("closes an open function call when the consumer goes away", () => {
    const { events, writer } = play([{ type: "tool-call-start", callId: "call_9", name: "get_weather" }]);
    events.push(...writer.cancel());
    expect(types(events).slice(-3)).toEqual([
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.incomplete",
    ]);
    expect(writer.snapshot().status).toBe("cancelled");
    expect(accumulate(events).status).toBe("cancelled");
  });

  it("splits namespaced function names back into name and namespace", () => {
    const writer = newWriter(
      new Map([["multi_agent_v1.close_agent", { name: "close_agent", namespace: "multi_agent_v1" }]]),
    );
    const { writer: played } = play(
      [
        { type: "tool-call-start", callId: "call_1", name: "multi_agent_v1.close_agent" },
        { type: "tool-call-end", callId: "call_1", name: "multi_agent_v1.close_agent", arguments: "{}" },
        finish("tool-calls"),
      ],
      writer,
    );
    expect(played.snapshot().output[0]).toMatchObject({
      type: "function_call",
      name: "close_agent",
      namespace: "multi_agent_v1",
    });
  });

  it("announces a queued response with response.queued and refuses parts after the end", () => {
    const initial = newResponseObject({
      id: "resp_bg",
      createdAt: 1,
      echo: { ...echo, background: true },
      status: "queued",
    });
    const writer = new ResponseEventWriter(initial);
    expect(types(writer.created())).toEqual(["response.created", "response.queued"]);
    writer.inProgress();
    writer.write(finish("stop"));
    expect(() => writer.write(text("late"))).toThrow(/already ended/);
  });

  it("refuses arguments for a call that is not open", () => {
    const writer = newWriter();
    writer.created();
    expect(() => writer.write({ type: "tool-call-delta", callId: "nope", argumentsDelta: "{" })).toThrow(
      /not the open item/,
    );
  });

  it("does not change events already handed out when the snapshot moves on", () => {
    const { events, writer } = play([text("one")]);
    const added = events.find((event) => event.type === "response.output_item.added");
    writer.write(text(" two"));
    writer.write(finish("stop"));
    expect(added).toMatchObject({ item: { status: "in_progress", content: [] } });
  });

  it.each([
    ["stop", "completed", "completed"],
    ["tool-calls", "completed", "completed"],
    ["length", "incomplete", "incomplete"],
    ["cancelled", "cancelled", "incomplete"],
  ] as const)("maps finish reason %s to status %s (items %s)", (reason, status, itemStatus) => {
    expect(outcomeOfFinish(reason)).toEqual({ status, itemStatus });
  });
});
