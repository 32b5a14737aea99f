/**
 * Custom (freeform) tools through the HTTP API with the scripted engine: a call of a custom tool becomes a
 * `custom_tool_call` item (`ctc_…`, call_id, name, input, status), streamed as output_item.added →
 * custom_tool_call_input.delta → custom_tool_call_input.done → output_item.done; the official `openai`
 * SDK's accumulator accepts the stream and its final response equals the stored one; every event and
 * response validates against OpenAI's spec; a custom tool inside a namespace carries `namespace`; the
 * engine gets the tool as freeform with its grammar and `tool_choice: {type: "custom"}` as a forced call;
 * `custom_tool_call_output` sent back reaches the model as the call's result.
 */
import { beforeAll, describe, expect, it } from "vitest";
import type { EngineRequest } from "../../src/engine/types.js";
import { createFastApp, readResponseEvents, TEST_MODEL } from "../helpers/fast-app.js";
import { loadSpecValidator, type SpecValidator } from "../helpers/spec-validator.js";

let spec: SpecValidator;
beforeAll(() => {
  spec = loadSpecValidator();
});

const patch = "*** Begin Patch\n*** Add File: hello.txt\n+Hello\n*** End Patch\n";
const applyPatchTool = {
  type: "custom" as const,
  name: "apply_patch",
  description: "Edit files with a patch.",
  format: {
    type: "grammar" as const,
    syntax: "lark" as const,
    definition: 'start: "*** Begin Patch" LF /(.*)/ LF\n%import common.LF',
  },
};

/** Calls the first custom tool offered, or answers with the result it got back. */
function respond(request: EngineRequest) {
  const result = request.items.findLast((item) => item.type === "function-result");
  if (result !== undefined) return { text: `Result: ${result.output}` };
  const tool = request.tools?.find((candidate) => candidate.freeform !== undefined);
  return tool === undefined
    ? { text: "no custom tool" }
    : { toolCalls: [{ callId: "call_patch", name: tool.name, arguments: patch }] };
}

const openResponses = { openResponses: false };

describe("custom tools", () => {
  it("streams a custom_tool_call that the SDK accumulates, matching the stored response", async () => {
    const fast = createFastApp({ respond });
    const stream = fast.client.responses.stream({
      model: TEST_MODEL,
      input: "Add hello.txt",
      tools: [applyPatchTool],
      tool_choice: { type: "custom", name: "apply_patch" },
    });
    const types: string[] = [];
    for await (const event of stream) {
      spec.assertStreamEvent(event, openResponses);
      types.push(event.type);
    }
    const final = await stream.finalResponse();
    spec.assertResponse(final, openResponses);
    expect(types).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.custom_tool_call_input.delta",
      "response.custom_tool_call_input.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(final.output).toEqual([
      {
        id: expect.stringMatching(/^ctc_/) as unknown,
        type: "custom_tool_call",
        status: "completed",
        call_id: "call_patch",
        name: "apply_patch",
        input: patch,
      },
    ]);
    const stored = await fast.client.responses.retrieve(final.id);
    expect(stored.output).toEqual(final.output);

    // The engine saw the tool as freeform with its grammar, and the call forced.
    expect(fast.engineRequests[0]?.tools).toEqual([
      {
        name: "apply_patch",
        description: "Edit files with a patch.",
        freeform: { grammar: { syntax: "lark", definition: applyPatchTool.format.definition } },
      },
    ]);
    expect(fast.engineRequests[0]?.toolChoice).toEqual({ name: "apply_patch" });
  });

  it("streams the event shapes OpenAI documents", async () => {
    const fast = createFastApp({ respond });
    const response = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: "Add hello.txt",
      tools: [applyPatchTool],
      stream: true,
    });
    const events = await readResponseEvents(response);
    for (const event of events) spec.assertStreamEvent(event, openResponses);
    const added = events.find((event) => event.type === "response.output_item.added");
    const itemId = (added?.item as { id: string }).id;
    expect(added).toMatchObject({
      output_index: 0,
      item: { type: "custom_tool_call", status: "in_progress", call_id: "call_patch", input: "" },
    });
    expect(events.find((event) => event.type === "response.custom_tool_call_input.delta")).toEqual({
      type: "response.custom_tool_call_input.delta",
      sequence_number: 3,
      item_id: itemId,
      output_index: 0,
      delta: patch,
    });
    expect(events.find((event) => event.type === "response.custom_tool_call_input.done")).toEqual({
      type: "response.custom_tool_call_input.done",
      sequence_number: 4,
      item_id: itemId,
      output_index: 0,
      input: patch,
    });
  });

  it("a custom tool inside a namespace: the call carries the namespace; its output reaches the model", async () => {
    const fast = createFastApp({ respond });
    const first = await fast.client.responses.create({
      model: TEST_MODEL,
      input: "Add hello.txt",
      tools: [
        {
          type: "namespace",
          name: "files",
          description: "File tools",
          tools: [{ type: "custom", name: "apply_patch", format: { type: "text" } }],
        },
      ] as never,
    });
    spec.assertResponse(first, openResponses);
    expect(first.output[0]).toMatchObject({
      type: "custom_tool_call",
      name: "apply_patch",
      namespace: "files",
      call_id: "call_patch",
      input: patch,
    });
    expect(fast.engineRequests[0]?.tools?.[0]).toEqual({ name: "files.apply_patch", freeform: {} });

    const second = await fast.client.responses.create({
      model: TEST_MODEL,
      previous_response_id: first.id,
      input: [{ type: "custom_tool_call_output", call_id: "call_patch", output: "Done: A hello.txt" }],
      tools: [
        {
          type: "namespace",
          name: "files",
          description: "File tools",
          tools: [{ type: "custom", name: "apply_patch" }],
        },
      ] as never,
    });
    expect(second.output_text).toBe("Result: Done: A hello.txt");
    const items = fast.engineRequests[1]?.items ?? [];
    expect(items).toContainEqual({
      type: "function-call",
      callId: "call_patch",
      name: "files.apply_patch",
      arguments: patch,
    });
    expect(items).toContainEqual(
      expect.objectContaining({ type: "function-result", callId: "call_patch", output: "Done: A hello.txt" }),
    );
  });

  it("refuses a grammar that cannot be converted with a 400 naming tools[i].format.definition", async () => {
    const fast = createFastApp({ respond });
    const response = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: "x",
      tools: [
        { type: "function", name: "f" },
        {
          type: "custom",
          name: "bad",
          format: {
            type: "grammar",
            syntax: "lark",
            definition: 'start: "a"\n%ignore WS\n%import common.WS',
          },
        },
      ],
    });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { type: string; param: string; message: string } };
    expect(body.error).toMatchObject({ type: "invalid_request_error", param: "tools[1].format.definition" });
    expect(body.error.message).toMatch(/%ignore is not supported/);
  });

  it("refuses a huge or deeply nested regex definition with a 400 before parsing it (was 7.5 s, or a 500)", async () => {
    const fast = createFastApp({ respond, config: { bodyLimitBytes: 8 * 1024 * 1024 } });
    for (const [definition, message] of [
      ["a".repeat(5_000_000), /at most 100000 are supported/],
      ["(".repeat(40_000) + "a" + ")".repeat(40_000), /groups nest more than 64 levels deep/],
    ] as const) {
      const response = await fast.post("/v1/responses", {
        model: TEST_MODEL,
        input: "x",
        tools: [{ type: "custom", name: "re", format: { type: "grammar", syntax: "regex", definition } }],
      });
      expect(response.status).toBe(400);
      const body = (await response.json()) as { error: { param: string; message: string } };
      expect(body.error.param).toBe("tools[0].format.definition");
      expect(body.error.message).toMatch(message);
    }
    expect(fast.engineRequests).toHaveLength(0);
  });
});
