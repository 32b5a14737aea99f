/**
 * POST /v1/messages and /v1/messages/count_tokens on the scripted engine, through the official
 * @anthropic-ai/sdk (unmodified, its fetch routed into app.request) and raw HTTP: the message object, the
 * stream grammar event by event, a forced tool round trip, thinking blocks and their signatures,
 * stop_sequences, max_tokens, usage, Anthropic's error shape for every error on these paths (guards, body
 * limit, 404, 429 from a full queue, shutdown), and the bad-input table.
 */
import Anthropic from "@anthropic-ai/sdk";
import { describe, expect, it } from "vitest";
import type { EngineRequest } from "../../src/engine/types.js";
import { ApiError } from "../../src/shared/errors.js";
import { anthropicClient, assertMessageStreamGrammar, readAnthropicEvents } from "../helpers/anthropic.js";
import { createFastApp, TEST_MODEL, type FastApp } from "../helpers/fast-app.js";

const weatherTool = {
  name: "get_weather",
  description: "The weather in a city.",
  input_schema: {
    type: "object" as const,
    properties: { city: { type: "string" } },
    required: ["city"],
  },
};

/** Calls get_weather when the request forces it; otherwise answers. */
function toolOrText(request: EngineRequest) {
  const forced = typeof request.toolChoice === "object" || request.toolChoice === "required";
  if (forced) {
    return {
      reasoning: "I should look it up.",
      toolCalls: [{ callId: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' }],
    };
  }
  return { reasoning: "The tool said sunny.", text: "It is sunny in Paris." };
}

function post(fast: FastApp, path: string, body: unknown, headers: Record<string, string> = {}) {
  return fast.request(path, { method: "POST", body, headers });
}

async function errorOf(
  response: Response,
): Promise<{ type: string; error: { type: string; message: string } }> {
  return (await response.json()) as { type: string; error: { type: string; message: string } };
}

describe("models through the official SDK", () => {
  // They came back in OpenAI's shape: display_name and created_at undefined, an OpenAI-shaped 404.
  it("lists and retrieves models in Anthropic's shape; an unknown id is a not_found_error", async () => {
    const fast = createFastApp();
    const client = anthropicClient(fast.app);
    const models = [];
    for await (const model of client.models.list()) models.push(model);
    expect(models.map((model) => model.id)).toContain(TEST_MODEL);
    for (const model of models) {
      expect(model.type).toBe("model");
      expect(model.display_name).toBe(model.id);
      expect(Number.isNaN(Date.parse(model.created_at))).toBe(false);
    }
    expect(await client.models.retrieve(TEST_MODEL)).toMatchObject({ type: "model", id: TEST_MODEL });
    const missing = await client.models.retrieve("nobody/nothing").catch((thrown: unknown) => thrown);
    expect(missing).toBeInstanceOf(Anthropic.NotFoundError);
    expect((missing as { error: unknown }).error).toMatchObject({
      type: "error",
      error: { type: "not_found_error" },
    });
    // Without the header: OpenAI's shape, as before.
    const openai = (await (await fast.request("/v1/models")).json()) as { object: string };
    expect(openai.object).toBe("list");
  });
});

describe("messages.create through the official SDK", () => {
  it("answers a message object: id, role, model, text content, end_turn, usage", async () => {
    const fast = createFastApp();
    const client = anthropicClient(fast.app);
    const message = await client.messages.create({
      model: TEST_MODEL,
      max_tokens: 64,
      system: [{ type: "text", text: "Be brief." }],
      messages: [{ role: "user", content: "hello there" }],
      metadata: { user_id: "someone" },
      service_tier: "auto",
    });
    expect(message.id).toMatch(/^msg_/);
    expect(message).toMatchObject({
      type: "message",
      role: "assistant",
      model: TEST_MODEL,
      content: [{ type: "text", text: "You said: hello there" }],
      stop_reason: "end_turn",
      stop_sequence: null,
    });
    // The scripted engine counts words: "<system> Be brief.\n<user> hello there" = 6 tokens.
    expect(message.usage).toMatchObject({
      input_tokens: 6,
      output_tokens: 4,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
    });
    expect(fast.engineRequests[0]!.items).toEqual([
      { type: "message", role: "system", text: "Be brief." },
      { type: "message", role: "user", text: "hello there" },
    ]);
    expect(fast.engineRequests[0]!.sampling).toEqual({ maxTokens: 64, temperature: 1 });
  });

  it("a message thread (the SDK's beta) falls back to the whole conversation; a raw thread field is a 400 it reads", async () => {
    const fast = createFastApp();
    const client = anthropicClient(fast.app);
    // lmhost keeps no threads: the SDK sends `thread`, reads the refusal's error_code and resends without it.
    const thread = client.beta.messages.thread({
      model: TEST_MODEL,
      max_tokens: 16,
      unsupportedRequestBehavior: "continue_unthreaded",
    });
    const first = await thread.send({ role: "user", content: "hello there" });
    expect(first.content[0]).toMatchObject({ type: "text", text: "You said: hello there" });
    const second = await thread.send({ role: "user", content: "and again" });
    expect(second.content[0]).toMatchObject({ type: "text" });
    // The second turn carried the whole conversation.
    expect(fast.engineRequests.at(-1)!.items.map((item) => (item as { text?: string }).text)).toEqual([
      "hello there",
      "You said: hello there",
      "and again",
    ]);

    const refused = await fast.post("/v1/messages", {
      model: TEST_MODEL,
      max_tokens: 8,
      messages: [{ role: "user", content: "x" }],
      thread: { type: "create" },
    });
    expect(refused.status).toBe(400);
    expect(await refused.json()).toMatchObject({
      type: "error",
      error: {
        type: "invalid_request_error",
        details: { error_code: "thread_unsupported_request", unsupported: ["thread"] },
      },
    });
  });

  it("reports the KV-cached prefix of a follow-up turn as cache_read_input_tokens", async () => {
    const fast = createFastApp();
    const client = anthropicClient(fast.app);
    const first = await client.messages.create({
      model: TEST_MODEL,
      max_tokens: 64,
      messages: [{ role: "user", content: "one two" }],
    });
    const second = await client.messages.create({
      model: TEST_MODEL,
      max_tokens: 64,
      messages: [
        { role: "user", content: "one two" },
        { role: "assistant", content: first.content },
        { role: "user", content: "three" },
      ],
    });
    expect(second.usage.cache_read_input_tokens).toBeGreaterThan(0);
    // input_tokens + cache_read_input_tokens is the whole prompt, as in Anthropic's usage.
    const prompt = await client.messages.countTokens({
      model: TEST_MODEL,
      messages: [
        { role: "user", content: "one two" },
        { role: "assistant", content: first.content },
        { role: "user", content: "three" },
      ],
    });
    expect(second.usage.input_tokens + second.usage.cache_read_input_tokens!).toBe(prompt.input_tokens);
  });

  it("honours sampling, stop_sequences (stop_reason stop_sequence) and max_tokens (max_tokens)", async () => {
    const fast = createFastApp({ respond: () => ({ text: "alpha beta STOP gamma delta" }) });
    const client = anthropicClient(fast.app);
    const stopped = await client.messages.create({
      model: TEST_MODEL,
      max_tokens: 64,
      messages: [{ role: "user", content: "go" }],
      stop_sequences: ["NEVER", "STOP"],
      temperature: 0.5,
      top_p: 0.9,
      top_k: 40,
    } as Anthropic.MessageCreateParamsNonStreaming);
    expect(stopped.stop_reason).toBe("stop_sequence");
    expect(stopped.stop_sequence).toBe("STOP");
    expect(stopped.content).toEqual([{ type: "text", text: "alpha beta ", citations: null }]);
    expect(fast.engineRequests[0]!.sampling).toEqual({
      maxTokens: 64,
      temperature: 0.5,
      topP: 0.9,
      topK: 40,
      stop: ["NEVER", "STOP"],
    });
    const cut = await client.messages.create({
      model: TEST_MODEL,
      max_tokens: 2,
      messages: [{ role: "user", content: "go" }],
    });
    expect(cut.stop_reason).toBe("max_tokens");
    expect(cut.stop_sequence).toBeNull();
    expect(cut.usage.output_tokens).toBe(2);
  });
});

describe("a forced tool round trip", () => {
  it("tool_choice tool → tool_use (stop_reason tool_use) → a tool_result turn is answered", async () => {
    const fast = createFastApp({ respond: toolOrText });
    const client = anthropicClient(fast.app);
    const question: Anthropic.MessageParam = { role: "user", content: "Weather in Paris?" };
    const first = await client.messages.create({
      model: TEST_MODEL,
      max_tokens: 128,
      messages: [question],
      tools: [weatherTool],
      tool_choice: { type: "tool", name: "get_weather", disable_parallel_tool_use: true },
    });
    expect(first.stop_reason).toBe("tool_use");
    const types = first.content.map((block) => block.type);
    expect(types).toEqual(["thinking", "tool_use"]);
    const use = first.content[1] as Anthropic.ToolUseBlock;
    expect(use).toMatchObject({ name: "get_weather", input: { city: "Paris" } });
    expect(use.id).toMatch(/^toolu_/);
    expect(fast.engineRequests[0]).toMatchObject({
      toolChoice: { name: "get_weather" },
      parallelToolCalls: false,
      tools: [
        { name: "get_weather", description: "The weather in a city.", parameters: weatherTool.input_schema },
      ],
    });

    const second = await client.messages.create({
      model: TEST_MODEL,
      max_tokens: 128,
      tools: [weatherTool],
      messages: [
        question,
        { role: "assistant", content: first.content },
        {
          role: "user",
          content: [
            { type: "tool_result", tool_use_id: use.id, content: [{ type: "text", text: "sunny, 21 C" }] },
            { type: "text", text: "And now?" },
          ],
        },
      ],
    });
    expect(second.stop_reason).toBe("end_turn");
    expect(second.content.map((block) => block.type)).toEqual(["thinking", "text"]);
    expect(fast.engineRequests[1]!.items).toEqual([
      { type: "message", role: "user", text: "Weather in Paris?" },
      { type: "reasoning", text: "I should look it up. " },
      { type: "function-call", callId: use.id, name: "get_weather", arguments: '{"city":"Paris"}' },
      { type: "function-result", callId: use.id, name: "get_weather", output: "sunny, 21 C" },
      { type: "message", role: "user", text: "And now?" },
    ]);
  });

  it("maps tool_choice any / auto / none, and is_error reaches the model as an error", async () => {
    const fast = createFastApp({ respond: toolOrText });
    const client = anthropicClient(fast.app);
    const any = await client.messages.create({
      model: TEST_MODEL,
      max_tokens: 64,
      messages: [{ role: "user", content: "x" }],
      tools: [weatherTool],
      tool_choice: { type: "any" },
    });
    expect(any.stop_reason).toBe("tool_use");
    expect(fast.engineRequests[0]!.toolChoice).toBe("required");
    const use = any.content.find((block) => block.type === "tool_use")!;
    for (const type of ["auto", "none"] as const) {
      await client.messages.create({
        model: TEST_MODEL,
        max_tokens: 64,
        messages: [
          { role: "user", content: "x" },
          { role: "assistant", content: [use] },
          {
            role: "user",
            content: [{ type: "tool_result", tool_use_id: use.id, content: "no such city", is_error: true }],
          },
        ],
        tools: [weatherTool],
        tool_choice: { type },
      });
      expect(fast.engineRequests.at(-1)!.toolChoice).toBe(type);
    }
    expect(fast.engineRequests.at(-1)!.items.at(-1)).toMatchObject({
      type: "function-result",
      output: "Error: no such city",
    });
  });

  it("accepts Anthropic's server tools without offering them to the model", async () => {
    const fast = createFastApp();
    const client = anthropicClient(fast.app);
    await client.messages.create({
      model: TEST_MODEL,
      max_tokens: 16,
      messages: [{ role: "user", content: "x" }],
      tools: [{ type: "web_search_20250305", name: "web_search" }, weatherTool],
    });
    expect(fast.engineRequests[0]!.tools?.map((tool) => tool.name)).toEqual(["get_weather"]);
  });
});

describe("messages.stream through the official SDK", () => {
  it("streams Anthropic's event grammar, and finalMessage equals the non-streamed message", async () => {
    const fast = createFastApp({ respond: toolOrText });
    const client = anthropicClient(fast.app);
    const params = {
      model: TEST_MODEL,
      max_tokens: 128,
      messages: [{ role: "user" as const, content: "Weather?" }],
      tools: [weatherTool],
      tool_choice: { type: "tool" as const, name: "get_weather" },
    };
    const stream = client.messages.stream(params);
    const seen: string[] = [];
    let thinking = "";
    let signature = "";
    stream.on("streamEvent", (event) => seen.push(event.type));
    stream.on("thinking", (delta) => (thinking += delta));
    stream.on("signature", (value) => (signature = value));
    const final = await stream.finalMessage();
    expect(seen).toEqual([
      "message_start",
      "content_block_start",
      // Five words of thought, then the signature.
      "content_block_delta",
      "content_block_delta",
      "content_block_delta",
      "content_block_delta",
      "content_block_delta",
      "content_block_delta",
      "content_block_stop",
      "content_block_start",
      "content_block_delta",
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    expect(thinking).toBe("I should look it up. ");
    expect(signature.length).toBeGreaterThan(20);
    expect(final.stop_reason).toBe("tool_use");
    expect(final.content[0]).toEqual({ type: "thinking", thinking: "I should look it up. ", signature });
    expect(final.content[1]).toMatchObject({
      type: "tool_use",
      name: "get_weather",
      input: { city: "Paris" },
    });
    expect(final.usage.output_tokens).toBeGreaterThan(0);

    const plain = await client.messages.create(params);
    // The stream helper adds parsed_output (null without output_config.format).
    const normalise = ({
      parsed_output: _parsed,
      ...message
    }: Anthropic.Message & { parsed_output?: unknown }) => ({
      ...message,
      id: "msg",
      content: message.content.map((block) =>
        block.type === "tool_use"
          ? { ...block, id: "toolu" }
          : block.type === "thinking"
            ? { ...block, signature: "s" }
            : block,
      ),
      usage: { ...message.usage, cache_read_input_tokens: 0, input_tokens: 0 },
    });
    expect(normalise(plain)).toEqual(normalise(final));
  });

  it("checks the raw grammar event by event: ping, indexes, every block started and stopped", async () => {
    const fast = createFastApp({ respond: () => ({ reasoning: "hmm yes", text: "one two three" }) });
    const response = await post(fast, "/v1/messages", {
      model: TEST_MODEL,
      max_tokens: 32,
      stream: true,
      messages: [{ role: "user", content: "hi" }],
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = await readAnthropicEvents(response);
    expect(events[1]).toEqual({ type: "ping" });
    expect(assertMessageStreamGrammar(events)).toEqual(["thinking", "text"]);
    expect(events.at(-2)).toMatchObject({
      type: "message_delta",
      delta: { stop_reason: "end_turn", stop_sequence: null },
      usage: {
        output_tokens: 5,
        input_tokens: 2,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
      },
    });
  });
});

describe("thinking", () => {
  it("enabled: budget_tokens reaches the engine; the block comes back signed and is accepted next turn", async () => {
    const fast = createFastApp({ respond: () => ({ reasoning: "deep thought", text: "42" }) });
    const client = anthropicClient(fast.app);
    const first = await client.messages.create({
      model: TEST_MODEL,
      max_tokens: 2048,
      thinking: { type: "enabled", budget_tokens: 1024 },
      messages: [{ role: "user", content: "meaning?" }],
    });
    expect(fast.engineRequests[0]!.reasoningBudgetTokens).toBe(1024);
    expect(fast.engineRequests[0]!.reasoningEffort).toBeUndefined();
    const block = first.content[0] as Anthropic.ThinkingBlock;
    expect(block).toMatchObject({ type: "thinking", thinking: "deep thought " });
    expect(first.usage.output_tokens_details?.thinking_tokens).toBe(2);
    await client.messages.create({
      model: TEST_MODEL,
      max_tokens: 2048,
      thinking: { type: "enabled", budget_tokens: 1024 },
      messages: [
        { role: "user", content: "meaning?" },
        { role: "assistant", content: [...first.content, { type: "redacted_thinking", data: "opaque" }] },
        { role: "user", content: "sure?" },
      ],
    });
    expect(fast.engineRequests[1]!.items).toEqual([
      { type: "message", role: "user", text: "meaning?" },
      { type: "reasoning", text: "deep thought " },
      { type: "message", role: "assistant", text: "42" },
      { type: "message", role: "user", text: "sure?" },
    ]);
  });

  it("display omitted: no thinking text, and the signature alone restores it next turn", async () => {
    const fast = createFastApp({ respond: () => ({ reasoning: "secret plan", text: "ok" }) });
    const client = anthropicClient(fast.app);
    const stream = client.messages.stream({
      model: TEST_MODEL,
      max_tokens: 64,
      thinking: { type: "enabled", budget_tokens: 16, display: "omitted" },
      messages: [{ role: "user", content: "go" }],
    });
    const deltas: string[] = [];
    stream.on("thinking", (delta) => deltas.push(delta));
    const first = await stream.finalMessage();
    expect(deltas).toEqual([]);
    const block = first.content[0] as Anthropic.ThinkingBlock;
    expect(block.thinking).toBe("");
    await client.messages.create({
      model: TEST_MODEL,
      max_tokens: 64,
      messages: [
        { role: "user", content: "go" },
        { role: "assistant", content: first.content },
        { role: "user", content: "again" },
      ],
    });
    expect(fast.engineRequests[1]!.items[1]).toEqual({ type: "reasoning", text: "secret plan " });
  });

  it("disabled turns thinking off (effort none) and returns no thinking block; output_config.effort maps", async () => {
    const fast = createFastApp({ respond: () => ({ reasoning: "should not show", text: "hello" }) });
    const client = anthropicClient(fast.app);
    const message = await client.messages.create({
      model: TEST_MODEL,
      max_tokens: 64,
      thinking: { type: "disabled" },
      messages: [{ role: "user", content: "go" }],
    });
    expect(fast.engineRequests[0]!.reasoningEffort).toBe("none");
    expect(message.content.map((block) => block.type)).toEqual(["text"]);
    await client.messages.create({
      model: TEST_MODEL,
      max_tokens: 64,
      output_config: { effort: "max" },
      messages: [{ role: "user", content: "go" }],
    });
    expect(fast.engineRequests[1]!.reasoningEffort).toBe("xhigh");
  });
});

describe("count_tokens", () => {
  it("counts the prompt the same body would evaluate (system, tools, tool results)", async () => {
    const fast = createFastApp();
    const client = anthropicClient(fast.app);
    const count = await client.messages.countTokens({
      model: TEST_MODEL,
      system: "Be brief.",
      messages: [{ role: "user", content: "hello there friend" }],
      tools: [weatherTool],
    });
    // "<system> Be brief.\n<user> hello there friend": 7 words.
    expect(count.input_tokens).toBe(7);
    const missing = await post(fast, "/v1/messages/count_tokens", { model: "nope/nope", messages: [] });
    expect(missing.status).toBe(400);
    const unknown = await post(fast, "/v1/messages/count_tokens", {
      model: "nope/nope",
      messages: [{ role: "user", content: "x" }],
    });
    expect(unknown.status).toBe(404);
    expect((await errorOf(unknown)).error.type).toBe("not_found_error");
  });
});

describe("errors in Anthropic's shape", () => {
  const base = { model: TEST_MODEL, max_tokens: 16, messages: [{ role: "user", content: "hi" }] };
  const image = { type: "image", source: { type: "base64", media_type: "image/png", data: "AAAA" } };
  const table: [string, Record<string, unknown>, number, string, RegExp][] = [
    ["max_tokens missing", { ...base, max_tokens: undefined }, 400, "invalid_request_error", /'max_tokens'/],
    ["max_tokens 0", { ...base, max_tokens: 0 }, 400, "invalid_request_error", /'max_tokens'/],
    ["model missing", { ...base, model: undefined }, 400, "invalid_request_error", /'model'/],
    ["messages empty", { ...base, messages: [] }, 400, "invalid_request_error", /messages/],
    [
      "a bad role",
      { ...base, messages: [{ role: "tool", content: "x" }] },
      400,
      "invalid_request_error",
      /'messages\[0\]\.role'/,
    ],
    [
      "an image",
      { ...base, messages: [{ role: "user", content: [{ type: "text", text: "look" }, image] }] },
      400,
      "invalid_request_error",
      /image blocks are not supported/,
    ],
    [
      "an image inside a tool result",
      {
        ...base,
        messages: [
          { role: "user", content: "x" },
          { role: "assistant", content: [{ type: "tool_use", id: "toolu_1", name: "f", input: {} }] },
          { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: [image] }] },
        ],
      },
      400,
      "invalid_request_error",
      /image/,
    ],
    ["temperature 3", { ...base, temperature: 3 }, 400, "invalid_request_error", /'temperature'/],
    ["top_k -1", { ...base, top_k: -1 }, 400, "invalid_request_error", /'top_k'/],
    [
      "an empty stop sequence",
      { ...base, stop_sequences: [""] },
      400,
      "invalid_request_error",
      /'stop_sequences\[0\]'/,
    ],
    ["an unknown field", { ...base, frequency: 1 }, 400, "invalid_request_error", /frequency/],
    [
      "a text block without text",
      { ...base, messages: [{ role: "user", content: [{ type: "text" }] }] },
      400,
      "invalid_request_error",
      /'messages\[0\]\.content\[0\]\.text'/,
    ],
    [
      "a prefilled assistant turn",
      {
        ...base,
        messages: [
          { role: "user", content: "x" },
          { role: "assistant", content: "{" },
        ],
      },
      400,
      "invalid_request_error",
      /prefilled/,
    ],
    [
      "a tool_result without its tool_use",
      { ...base, messages: [{ role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_9" }] }] },
      400,
      "invalid_request_error",
      /toolu_9/,
    ],
    [
      "a tool_use without its result",
      {
        ...base,
        messages: [
          { role: "user", content: "x" },
          { role: "assistant", content: [{ type: "tool_use", id: "toolu_1", name: "f", input: {} }] },
          { role: "user", content: "y" },
        ],
      },
      400,
      "invalid_request_error",
      /toolu_1/,
    ],
    [
      "thinking in a user message",
      {
        ...base,
        messages: [{ role: "user", content: [{ type: "thinking", thinking: "x", signature: "y" }] }],
      },
      400,
      "invalid_request_error",
      /messages\[0\]\.content\[0\]\.type/,
    ],
    [
      "a tool without input_schema",
      { ...base, tools: [{ name: "f" }] },
      400,
      "invalid_request_error",
      /tools\[0\]\.input_schema/,
    ],
    [
      "a bad tool name",
      { ...base, tools: [{ name: "a b", input_schema: { type: "object" } }] },
      400,
      "invalid_request_error",
      /'tools\[0\]\.name'/,
    ],
    [
      "a bad input_schema",
      {
        ...base,
        tools: [{ name: "f", input_schema: { type: "object", properties: { a: { type: "frog" } } } }],
      },
      400,
      "invalid_request_error",
      /tools\[0\]\.input_schema\.properties\.a\.type/,
    ],
    [
      "tool_choice naming no tool",
      { ...base, tools: [weatherTool], tool_choice: { type: "tool", name: "other" } },
      400,
      "invalid_request_error",
      /tool_choice\.name/,
    ],
    [
      "tool_choice any without tools",
      { ...base, tool_choice: { type: "any" } },
      400,
      "invalid_request_error",
      /tool_choice/,
    ],
    [
      "a bad tool_choice type",
      { ...base, tool_choice: { type: "some" } },
      400,
      "invalid_request_error",
      /'tool_choice\.type'/,
    ],
    [
      "thinking without budget_tokens",
      { ...base, thinking: { type: "enabled" } },
      400,
      "invalid_request_error",
      /'thinking\.budget_tokens'/,
    ],
    [
      "mcp_servers",
      { ...base, mcp_servers: [{ type: "url", url: "http://x", name: "x" }] },
      400,
      "invalid_request_error",
      /mcp_servers|MCP/,
    ],
    ["an unknown model", { ...base, model: "nobody/nothing" }, 404, "not_found_error", /nobody\/nothing/],
  ];

  it.each(table)("%s → an error naming the field", async (_name, body, status, type, message) => {
    const fast = createFastApp();
    const response = await post(fast, "/v1/messages", body);
    expect(response.status).toBe(status);
    const error = await errorOf(response);
    expect(error).toMatchObject({ type: "error", error: { type } });
    expect(error.error.message).toMatch(message);
    // The server keeps serving.
    expect((await post(fast, "/v1/messages", base)).status).toBe(200);
  });

  it("the SDK raises its own error classes with the type", async () => {
    const fast = createFastApp();
    const client = anthropicClient(fast.app);
    const error = await client.messages
      .create({
        model: TEST_MODEL,
        messages: [{ role: "user", content: "x" }],
      } as unknown as Anthropic.MessageCreateParamsNonStreaming)
      .catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(Anthropic.BadRequestError);
    expect((error as InstanceType<typeof Anthropic.APIError>).type).toBe("invalid_request_error");
  });

  it("guards, body limit, content type, JSON and unknown routes answer in Anthropic's shape; /v1/responses keeps OpenAI's", async () => {
    const fast = createFastApp({ config: { apiKey: "sekrit", bodyLimitBytes: 2_000 } });
    const body = { model: TEST_MODEL, max_tokens: 8, messages: [{ role: "user", content: "hi" }] };
    const noKey = await post(fast, "/v1/messages", body);
    expect(noKey.status).toBe(401);
    expect(await errorOf(noKey)).toMatchObject({ type: "error", error: { type: "authentication_error" } });
    const wrongKey = await post(fast, "/v1/messages", body, { "x-api-key": "wrong" });
    expect(wrongKey.status).toBe(401);
    const withKey = await post(fast, "/v1/messages", body, {
      "x-api-key": "sekrit",
      "anthropic-version": "2023-06-01",
    });
    expect(withKey.status).toBe(200);
    const bearer = await post(fast, "/v1/messages", body, { authorization: "Bearer sekrit" });
    expect(bearer.status).toBe(200);
    const big = await post(
      fast,
      "/v1/messages",
      { ...body, system: "x".repeat(5_000) },
      { "x-api-key": "sekrit" },
    );
    expect(big.status).toBe(413);
    expect((await errorOf(big)).error.type).toBe("request_too_large");
    const notJson = await fast.request("/v1/messages", {
      method: "POST",
      body: "{",
      headers: { "x-api-key": "sekrit" },
    });
    expect(notJson.status).toBe(400);
    expect((await errorOf(notJson)).error.type).toBe("invalid_request_error");
    const unknown = await post(fast, "/v1/messages/batches", body, { "x-api-key": "sekrit" });
    expect(unknown.status).toBe(404);
    expect(await errorOf(unknown)).toMatchObject({ type: "error", error: { type: "not_found_error" } });
    const openai = await post(fast, "/v1/responses", { model: TEST_MODEL, input: "x" });
    expect(((await openai.json()) as { error: { code: string } }).error.code).toBe("invalid_api_key");
    // The official SDK sends its key as x-api-key.
    const client = anthropicClient(fast.app, "http://lmhost.test", "sekrit");
    expect(
      (await client.messages.create({ ...body, messages: [{ role: "user", content: "hi" }] })).type,
    ).toBe("message");
    const refused = await anthropicClient(fast.app, "http://lmhost.test", "nope")
      .messages.create({ ...body, messages: [{ role: "user", content: "hi" }] })
      .catch((thrown: unknown) => thrown);
    expect(refused).toBeInstanceOf(Anthropic.AuthenticationError);
  });

  it("a full queue is a 429 rate_limit_error with Retry-After (the SDK's RateLimitError)", async () => {
    const fast = createFastApp();
    fast.engine.generate = () =>
      (async function* refuse() {
        yield* [];
        throw new ApiError({
          status: 429,
          message: "All sequences are busy.",
          code: "queue_full",
          retryAfter: 1,
        });
      })();
    const response = await post(fast, "/v1/messages", {
      model: TEST_MODEL,
      max_tokens: 8,
      stream: true,
      messages: [{ role: "user", content: "hi" }],
    });
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("1");
    expect(await errorOf(response)).toMatchObject({
      type: "error",
      error: { type: "rate_limit_error", message: "All sequences are busy." },
    });
    const error = await anthropicClient(fast.app)
      .messages.create({ model: TEST_MODEL, max_tokens: 8, messages: [{ role: "user", content: "hi" }] })
      .catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(Anthropic.RateLimitError);
  });

  it("a failure after the stream started is an error event; the SDK's stream rejects with it", async () => {
    const fast = createFastApp({
      respond: () => ({ text: "one two three four", failWith: new Error("boom"), failAfterParts: 2 }),
    });
    const response = await post(fast, "/v1/messages", {
      model: TEST_MODEL,
      max_tokens: 32,
      stream: true,
      messages: [{ role: "user", content: "hi" }],
    });
    const events = await readAnthropicEvents(response);
    expect(events.map((event) => event.type)).toEqual([
      "message_start",
      "ping",
      "content_block_start",
      "content_block_delta",
      "content_block_delta",
      "error",
    ]);
    expect(events.at(-1)).toMatchObject({ type: "error", error: { type: "api_error" } });
    const failed = await anthropicClient(fast.app)
      .messages.stream({ model: TEST_MODEL, max_tokens: 32, messages: [{ role: "user", content: "hi" }] })
      .finalMessage()
      .catch((thrown: unknown) => thrown);
    expect(failed).toBeInstanceOf(Anthropic.APIError);
    expect((failed as InstanceType<typeof Anthropic.APIError>).type).toBe("api_error");
  });
});

describe("slow starts and keep-alives", () => {
  it("a stream waiting past streamStartAfterMilliseconds starts; a later 429 is a rate_limit_error event", async () => {
    const fast = createFastApp({ streamStartAfterMilliseconds: 20 });
    fast.engine.generate = () =>
      (async function* refuseLate() {
        await new Promise((resolve) => setTimeout(resolve, 150));
        yield* [];
        throw new ApiError({
          status: 429,
          message: "All sequences are busy.",
          code: "queue_full",
          retryAfter: 1,
        });
      })();
    const response = await post(fast, "/v1/messages", {
      model: TEST_MODEL,
      max_tokens: 8,
      stream: true,
      messages: [{ role: "user", content: "hi" }],
    });
    expect(response.status).toBe(200);
    const events = await readAnthropicEvents(response);
    expect(events.map((event) => event.type)).toEqual(["message_start", "ping", "error"]);
    expect(events[2]).toMatchObject({
      error: { type: "rate_limit_error", message: "All sequences are busy." },
    });
  });

  it("a silent stream gets ping events as keep-alives, and the message still completes", async () => {
    const fast = createFastApp({
      keepAliveSeconds: 0.05,
      respond: () => ({ text: "slow words here", delayMs: 400 }),
    });
    const response = await post(fast, "/v1/messages", {
      model: TEST_MODEL,
      max_tokens: 8,
      stream: true,
      messages: [{ role: "user", content: "hi" }],
    });
    const events = await readAnthropicEvents(response);
    // message_start's own ping, then at least one keep-alive while the first word is awaited.
    expect(events.filter((event) => event.type === "ping").length).toBeGreaterThan(1);
    expect(assertMessageStreamGrammar(events)).toEqual(["text"]);
  });

  it("output_config.format (or the beta output_format) is a JSON schema answer; context_management is accepted", async () => {
    const fast = createFastApp();
    const schema = { type: "object", properties: { said: { type: "string" } }, required: ["said"] };
    for (const body of [
      { output_config: { format: { type: "json_schema", schema } } },
      { output_format: { type: "json_schema", schema } },
    ]) {
      const response = await post(fast, "/v1/messages", {
        model: TEST_MODEL,
        max_tokens: 32,
        messages: [{ role: "user", content: "hi" }],
        context_management: { edits: [] },
        ...body,
      });
      const message = (await response.json()) as { content: { text: string }[] };
      expect(JSON.parse(message.content[0]!.text)).toEqual({ said: "hi" });
      expect(fast.engineRequests.at(-1)!.responseFormat).toEqual({
        type: "json_schema",
        name: "output",
        schema,
      });
    }
    const bad = await post(fast, "/v1/messages", {
      model: TEST_MODEL,
      max_tokens: 32,
      messages: [{ role: "user", content: "hi" }],
      output_format: { type: "json_schema", schema: { type: "object", properties: { a: { type: "frog" } } } },
    });
    expect(bad.status).toBe(400);
    expect((await errorOf(bad)).error.message).toMatch(/output_format\.schema\.properties\.a\.type/);
  });

  it("passes the lmhost extensions seed and ttl to the engine", async () => {
    const fast = createFastApp();
    const response = await post(fast, "/v1/messages", {
      model: TEST_MODEL,
      max_tokens: 8,
      seed: 7,
      ttl: 60,
      messages: [{ role: "user", content: "hi" }],
    });
    expect(response.status).toBe(200);
    expect(fast.engineRequests[0]).toMatchObject({ sampling: { seed: 7 }, ttlSeconds: 60 });
  });
});

describe("cancellation and shutdown", () => {
  it("a client that goes away stops the generation", async () => {
    const fast = createFastApp({ respond: () => ({ text: "a b c d e f g h i j k l m n o p", delayMs: 20 }) });
    const controller = new AbortController();
    const response = await fast.request("/v1/messages", {
      method: "POST",
      body: { model: TEST_MODEL, max_tokens: 64, stream: true, messages: [{ role: "user", content: "hi" }] },
      signal: controller.signal,
    });
    const reader = response.body!.getReader();
    await reader.read();
    expect(fast.engine.active).toBe(1);
    controller.abort();
    await reader.cancel().catch(() => undefined);
    for (let attempt = 0; attempt < 100 && fast.engine.active > 0; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(fast.engine.active).toBe(0);
  });

  it("a shutdown ends a stream with an overloaded_error event and a non-streamed request with 503", async () => {
    const { ShutdownError } = await import("../../src/shared/errors.js");
    for (const stream of [true, false]) {
      const shutdown = new AbortController();
      const fast = createFastApp({
        shutdownSignal: shutdown.signal,
        respond: () => ({ text: "a b c d e f g h", delayMs: 20 }),
      });
      const pending = post(fast, "/v1/messages", {
        model: TEST_MODEL,
        max_tokens: 64,
        stream,
        messages: [{ role: "user", content: "hi" }],
      });
      setTimeout(() => shutdown.abort(new ShutdownError()), 60);
      const response = await pending;
      if (stream) {
        const events = await readAnthropicEvents(response);
        expect(events.at(-1)).toMatchObject({
          type: "error",
          error: { type: "overloaded_error", message: "lmhost is shutting down" },
        });
      } else {
        expect(response.status).toBe(503);
        expect((await errorOf(response)).error.type).toBe("overloaded_error");
      }
    }
  });
});
