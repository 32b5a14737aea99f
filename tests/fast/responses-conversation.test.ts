/**
 * Conversation assembly over the in-memory store: previous_response_id chains (inputs then outputs,
 * oldest first), instructions from the current request only, item references (to the chain, this input
 * or any stored response), and the 404/400 cases.
 */
import { describe, expect, it } from "vitest";
import { assembleConversation, chainItems } from "../../src/responses/conversation.js";
import { createFastApp, TEST_MODEL } from "../helpers/fast-app.js";
import type { ConversationWireItem, ResponseObject } from "../../src/responses/wire-types.js";
import { MemoryResponseStore } from "../../src/store/memory/memory-store.js";

function userItem(id: string, text: string): ConversationWireItem {
  return { id, type: "message", role: "user", status: "completed", content: [{ type: "input_text", text }] };
}
function assistantItem(id: string, text: string): ConversationWireItem {
  return {
    id,
    type: "message",
    role: "assistant",
    status: "completed",
    content: [{ type: "output_text", text, annotations: [], logprobs: [] }],
  };
}

function storeTurn(
  store: MemoryResponseStore,
  id: string,
  previous: string | null,
  input: ConversationWireItem[],
  output: ConversationWireItem[],
  extra: Partial<ResponseObject> = {},
) {
  store.put({
    id,
    createdAt: 1,
    previousResponseId: previous,
    model: "m",
    status: extra.status ?? "completed",
    response: { id, status: "completed", output, instructions: "old instructions", ...extra },
    inputItems: input,
  });
}

function chainStore() {
  const store = new MemoryResponseStore();
  storeTurn(store, "resp_1", null, [userItem("msg_u1", "one")], [assistantItem("msg_a1", "reply one")]);
  storeTurn(store, "resp_2", "resp_1", [userItem("msg_u2", "two")], [assistantItem("msg_a2", "reply two")]);
  return store;
}

describe("assembleConversation", () => {
  it("puts the chain's inputs and outputs in order, then the new input", () => {
    const assembled = assembleConversation(chainStore(), {
      previousResponseId: "resp_2",
      instructions: null,
      input: [{ type: "message", role: "user", content: "three" }],
    });
    expect(assembled.items).toEqual([
      { type: "message", role: "user", text: "one" },
      { type: "message", role: "assistant", text: "reply one" },
      { type: "message", role: "user", text: "two" },
      { type: "message", role: "assistant", text: "reply two" },
      { type: "message", role: "user", text: "three" },
    ]);
    expect(assembled.inputItems).toHaveLength(1);
  });

  it("uses only the current request's instructions, first", () => {
    const assembled = assembleConversation(chainStore(), {
      previousResponseId: "resp_2",
      instructions: "Be brief.",
      input: [{ type: "message", role: "user", content: "three" }],
    });
    expect(assembled.items[0]).toEqual({ type: "message", role: "system", text: "Be brief." });
    expect(assembled.items.filter((item) => item.type === "message" && item.role === "system")).toHaveLength(
      1,
    );
  });

  it("resolves item references against the chain", () => {
    const assembled = assembleConversation(chainStore(), {
      previousResponseId: "resp_2",
      instructions: null,
      input: [{ type: "item_reference", id: "msg_a1" }],
    });
    expect(assembled.inputItems[0]?.id).toBe("msg_a1");
    expect(assembled.items.at(-1)).toEqual({ type: "message", role: "assistant", text: "reply one" });
  });

  it("resolves an item_reference to an item of any stored response, without previous_response_id", () => {
    // The AI SDK (store: true) re-sends earlier output as item references and no previous_response_id.
    const assembled = assembleConversation(chainStore(), {
      previousResponseId: null,
      instructions: null,
      input: [
        { type: "message", role: "user", content: "one" },
        { type: "item_reference", id: "msg_a1" },
        { type: "item_reference", id: "msg_u2" },
      ],
    });
    expect(assembled.inputItems.map((item) => item.id)).toEqual([
      expect.stringMatching(/^msg_/),
      "msg_a1",
      "msg_u2",
    ]);
    expect(assembled.items).toEqual([
      { type: "message", role: "user", text: "one" },
      { type: "message", role: "assistant", text: "reply one" },
      { type: "message", role: "user", text: "two" },
    ]);
  });

  it("resolves a reference from the chain and this input before other stored responses", () => {
    const store = chainStore();
    storeTurn(
      store,
      "resp_other",
      null,
      [assistantItem("msg_a1", "other copy")],
      [assistantItem("msg_new", "x")],
    );
    const fromChain = assembleConversation(store, {
      previousResponseId: "resp_1",
      instructions: null,
      input: [{ type: "item_reference", id: "msg_a1" }],
    });
    expect(fromChain.items.at(-1)).toEqual({ type: "message", role: "assistant", text: "reply one" });
    const fromInput = assembleConversation(store, {
      previousResponseId: null,
      instructions: null,
      input: [
        { type: "message", id: "msg_new", role: "user", content: "mine" },
        { type: "item_reference", id: "msg_new" },
      ],
    });
    expect(fromInput.items.at(-1)).toEqual({ type: "message", role: "user", text: "mine" });
  });

  it("refuses a reference to an item no stored response holds, naming its index", () => {
    const store = chainStore();
    store.delete("resp_1");
    expect(() =>
      assembleConversation(store, {
        previousResponseId: null,
        instructions: null,
        input: [
          { type: "message", role: "user", content: "x" },
          { type: "item_reference", id: "msg_a1" },
        ],
      }),
    ).toThrow(expect.objectContaining({ status: 400, param: "input[1].id" }));
  });

  const notFound = expect.objectContaining({
    status: 404,
    code: "previous_response_not_found",
    param: "previous_response_id",
  });

  it("answers 404 previous_response_not_found for an unknown id", () => {
    expect(() =>
      assembleConversation(chainStore(), { previousResponseId: "resp_nope", instructions: null, input: [] }),
    ).toThrow(notFound);
  });

  it("answers 404 previous_response_not_found when an ancestor was deleted, naming that ancestor", () => {
    const store = chainStore();
    storeTurn(store, "resp_3", "resp_2", [userItem("msg_u3", "three")], [assistantItem("msg_a3", "3")]);
    store.delete("resp_1");
    const assemble = () =>
      assembleConversation(store, { previousResponseId: "resp_3", instructions: null, input: [] });
    expect(assemble).toThrow(notFound);
    expect(assemble).toThrow(
      /Previous response 'resp_3' cannot be continued: the response 'resp_1' it follows/,
    );
    // The id the client passed, when that one is the missing response.
    expect(() =>
      assembleConversation(store, { previousResponseId: "resp_nope", instructions: null, input: [] }),
    ).toThrow(/Previous response with id 'resp_nope' not found/);
  });

  it("refuses to continue from a response that is still running", () => {
    const store = chainStore();
    storeTurn(store, "resp_3", "resp_2", [userItem("msg_u3", "x")], [], { status: "in_progress" });
    expect(() =>
      assembleConversation(store, { previousResponseId: "resp_3", instructions: null, input: [] }),
    ).toThrow(expect.objectContaining({ status: 400, param: "previous_response_id" }));
  });

  it("refuses to continue from a response running in this process (not stored yet), naming previous_response_id", () => {
    const store = chainStore();
    const runningStatus = (id: string) => (id === "resp_live" ? "in_progress" : undefined);
    expect(() =>
      assembleConversation(
        store,
        { previousResponseId: "resp_live", instructions: null, input: [] },
        { runningStatus },
      ),
    ).toThrow(
      expect.objectContaining({
        status: 400,
        param: "previous_response_id",
        message: expect.stringContaining("'resp_live' is still in_progress"),
      }),
    );
    // A stored, finished response is not affected.
    expect(
      assembleConversation(
        store,
        { previousResponseId: "resp_2", instructions: null, input: [] },
        { runningStatus },
      ).items,
    ).toHaveLength(4);
  });

  it("lists chain items per response: inputs, then outputs", () => {
    const store = chainStore();
    const chain = store.chain("resp_2") ?? [];
    expect(chainItems(chain).map((item) => item.id)).toEqual(["msg_u1", "msg_a1", "msg_u2", "msg_a2"]);
  });
});

describe("the engine request", () => {
  it("truncation auto drops re-sent history in the input too, never the instructions or the current turn", async () => {
    // The scripted engine counts words; 40 of them fit.
    const fast = createFastApp({ contextLength: 40 });
    const words = (count: number) => Array.from({ length: count }, () => "old").join(" ");
    const input = [
      { role: "user", content: words(20) },
      { role: "assistant", content: words(20) },
      { role: "user", content: "the current question" },
    ];
    const refused = await fast.post("/v1/responses", { model: TEST_MODEL, instructions: "rules", input });
    expect(refused.status).toBe(400);
    expect(await refused.json()).toMatchObject({
      error: { code: "context_length_exceeded", param: "input" },
    });
    const truncated = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      instructions: "rules",
      input,
      truncation: "auto",
    });
    expect(truncated.status).toBe(200);
    const request = fast.engineRequests.at(-1);
    expect(request?.protectedTailItems).toBeUndefined();
    expect(request?.items.at(0)).toEqual({ type: "message", role: "system", text: "rules" });
    // What the engine saw after truncation: the scripted engine echoes its prompt's word count.
    const body = (await truncated.json()) as { usage: { input_tokens: number } };
    expect(body.usage.input_tokens).toBeLessThan(40);
    // The current turn alone over the limit is still a 400, never an answer to nothing.
    const tooLong = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: [{ role: "user", content: words(50) }],
      truncation: "auto",
    });
    expect(tooLong.status).toBe(400);
  });
});
