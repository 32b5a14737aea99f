/**
 * Input translation, table-driven: validated request items → stored items with ids, and stored or
 * output items → the engine's neutral conversation.
 */
import { describe, expect, it } from "vitest";
import type { ConversationItem } from "../../src/engine/types.js";
import { toConversationItems, toMessageItem, toWireInputItems } from "../../src/responses/convert-input.js";
import type { ConversationWireItem, InputItem } from "../../src/responses/wire-types.js";

const noHistory = () => undefined;

describe("toWireInputItems", () => {
  const cases: { name: string; input: InputItem; expected: Record<string, unknown>; idPrefix: string }[] = [
    {
      name: "a user message with string content",
      input: { type: "message", role: "user", content: "Hi" },
      expected: {
        type: "message",
        role: "user",
        status: "completed",
        content: [{ type: "input_text", text: "Hi" }],
      },
      idPrefix: "msg_",
    },
    {
      name: "an assistant message with string content",
      input: { type: "message", role: "assistant", content: "Hello" },
      expected: {
        type: "message",
        role: "assistant",
        status: "completed",
        content: [{ type: "output_text", text: "Hello", annotations: [], logprobs: [] }],
      },
      idPrefix: "msg_",
    },
    {
      name: "a developer message with parts (kept as developer)",
      input: { type: "message", role: "developer", content: [{ type: "input_text", text: "Rules" }] },
      expected: { role: "developer", content: [{ type: "input_text", text: "Rules" }] },
      idPrefix: "msg_",
    },
    {
      name: "an assistant refusal",
      input: { type: "message", role: "assistant", content: [{ type: "refusal", refusal: "No." }] },
      expected: { content: [{ type: "refusal", refusal: "No." }] },
      idPrefix: "msg_",
    },
    {
      name: "a user message that sent output_text (normalised to input_text)",
      input: { type: "message", role: "user", content: [{ type: "output_text", text: "echo" }] },
      expected: { content: [{ type: "input_text", text: "echo" }] },
      idPrefix: "msg_",
    },
    {
      name: "a function call",
      input: { type: "function_call", call_id: "call_1", name: "f", arguments: "{}" },
      expected: { type: "function_call", status: "completed", call_id: "call_1", name: "f", arguments: "{}" },
      idPrefix: "fc_",
    },
    {
      name: "a function call output",
      input: { type: "function_call_output", call_id: "call_1", output: "42" },
      expected: { type: "function_call_output", status: "completed", call_id: "call_1", output: "42" },
      idPrefix: "item_",
    },
    {
      name: "a reasoning item",
      input: { type: "reasoning", summary: [{ type: "summary_text", text: "s" }], encrypted_content: "xyz" },
      expected: {
        type: "reasoning",
        summary: [{ type: "summary_text", text: "s" }],
        encrypted_content: "xyz",
      },
      idPrefix: "rs_",
    },
    {
      name: "a custom tool call",
      input: { type: "custom_tool_call", call_id: "call_2", name: "apply_patch", input: "*** Begin Patch" },
      expected: {
        type: "custom_tool_call",
        status: "completed",
        name: "apply_patch",
        input: "*** Begin Patch",
      },
      idPrefix: "ctc_",
    },
  ];
  for (const testCase of cases) {
    it(`stores ${testCase.name}`, () => {
      const [item] = toWireInputItems([testCase.input], noHistory);
      expect(item).toMatchObject(testCase.expected);
      expect(item?.id.startsWith(testCase.idPrefix)).toBe(true);
    });
  }

  it("keeps ids the client sent", () => {
    const [item] = toWireInputItems(
      [{ type: "message", id: "msg_client-1", role: "user", content: "x" }],
      noHistory,
    );
    expect(item?.id).toBe("msg_client-1");
  });

  it("resolves item references from the history and from earlier items of the same input", () => {
    const earlier: ConversationWireItem = {
      id: "msg_old",
      type: "message",
      role: "assistant",
      status: "completed",
      content: [{ type: "output_text", text: "Earlier", annotations: [], logprobs: [] }],
    };
    const items = toWireInputItems(
      [
        { type: "item_reference", id: "msg_old" },
        { type: "message", id: "msg_new", role: "user", content: "Again" },
        { type: "item_reference", id: "msg_new" },
      ],
      (id) => (id === "msg_old" ? earlier : undefined),
    );
    expect(items.map((item) => item.id)).toEqual(["msg_old", "msg_new", "msg_new"]);
    expect(items[0]).toEqual(earlier);
  });

  it("names the input index of an unknown reference", () => {
    expect(() => toWireInputItems([{ type: "item_reference", id: "msg_missing" }], noHistory)).toThrow(
      expect.objectContaining({ status: 400, param: "input[0].id" }),
    );
  });

  it("stores an assistant phase only when present", () => {
    expect(
      toMessageItem({ type: "message", role: "assistant", content: "x", phase: "final_answer" }).phase,
    ).toBe("final_answer");
    expect("phase" in toMessageItem({ type: "message", role: "assistant", content: "x", phase: null })).toBe(
      false,
    );
  });
});

describe("toConversationItems", () => {
  const message = (
    role: "user" | "assistant" | "system" | "developer",
    text: string,
  ): ConversationWireItem => ({
    id: `msg_${text}`,
    type: "message",
    role,
    status: "completed",
    content:
      role === "assistant"
        ? [{ type: "output_text", text, annotations: [], logprobs: [] }]
        : [{ type: "input_text", text }],
  });
  const cases: { name: string; items: ConversationWireItem[]; expected: ConversationItem[] }[] = [
    {
      name: "developer and system become system",
      items: [
        message("developer", "d"),
        message("system", "s"),
        message("user", "u"),
        message("assistant", "a"),
      ],
      expected: [
        { type: "message", role: "system", text: "d" },
        { type: "message", role: "system", text: "s" },
        { type: "message", role: "user", text: "u" },
        { type: "message", role: "assistant", text: "a" },
      ],
    },
    {
      name: "multi-part messages join with newlines",
      items: [
        {
          id: "msg_1",
          type: "message",
          role: "user",
          status: "completed",
          content: [
            { type: "input_text", text: "one" },
            { type: "input_text", text: "two" },
          ],
        },
      ],
      expected: [{ type: "message", role: "user", text: "one\ntwo" }],
    },
    {
      name: "tool results carry the name of their call, including namespaced ones",
      items: [
        {
          id: "fc_1",
          type: "function_call",
          status: "completed",
          call_id: "c1",
          name: "close_agent",
          namespace: "multi_agent_v1",
          arguments: "{}",
        },
        {
          id: "item_1",
          type: "function_call_output",
          status: "completed",
          call_id: "c1",
          output: [{ type: "input_text", text: "done" }],
        },
        {
          id: "item_2",
          type: "function_call_output",
          status: "completed",
          call_id: "unknown",
          output: "orphan",
        },
      ],
      expected: [
        { type: "function-call", callId: "c1", name: "multi_agent_v1.close_agent", arguments: "{}" },
        { type: "function-result", callId: "c1", name: "multi_agent_v1.close_agent", output: "done" },
        { type: "function-result", callId: "unknown", output: "orphan" },
      ],
    },
    {
      name: "custom tool calls and outputs",
      items: [
        {
          id: "ctc_1",
          type: "custom_tool_call",
          status: "completed",
          call_id: "c2",
          name: "apply_patch",
          input: "patch",
        },
        { id: "item_3", type: "custom_tool_call_output", status: "completed", call_id: "c2", output: "ok" },
      ],
      expected: [
        { type: "function-call", callId: "c2", name: "apply_patch", arguments: "patch" },
        { type: "function-result", callId: "c2", name: "apply_patch", output: "ok" },
      ],
    },
    {
      name: "reasoning text wins over summary; encrypted-only reasoning is left out",
      items: [
        {
          id: "rs_1",
          type: "reasoning",
          summary: [{ type: "summary_text", text: "short" }],
          content: [{ type: "reasoning_text", text: "long" }],
        },
        { id: "rs_2", type: "reasoning", summary: [{ type: "summary_text", text: "only summary" }] },
        { id: "rs_3", type: "reasoning", summary: [], encrypted_content: "opaque" },
      ],
      expected: [
        { type: "reasoning", text: "long" },
        { type: "reasoning", text: "only summary" },
      ],
    },
  ];
  for (const testCase of cases) {
    it(testCase.name, () => {
      expect(toConversationItems(testCase.items)).toEqual(testCase.expected);
    });
  }
});
