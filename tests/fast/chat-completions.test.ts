/**
 * /v1/chat/completions and /v1/completions over the scripted engine: the official `openai` SDK unmodified
 * (create, stream with a tool round trip, completions create and stream), every object and chunk validated
 * against OpenAI's published schemas, the request → EngineRequest mapping (sampling, response_format,
 * tools, tool_choice, reasoning effort, ttl, raw prompts), the bad-input table (status and `param` per row),
 * --api-key, a full queue (429 with Retry-After), a mid-stream failure, a graceful shutdown (503) and a
 * client that goes away (the generation stops).
 */
import { beforeAll, describe, expect, it } from "vitest";
import type { ScriptedTurn } from "../../src/engine/scripted/scripted-engine.js";
import type { EngineRequest } from "../../src/engine/types.js";
import { ApiError, ShutdownError } from "../../src/shared/errors.js";
import { createFastApp, parseSse, slowReply, TEST_MODEL, type FastApp } from "../helpers/fast-app.js";
import { loadSpecValidator, type SpecValidator } from "../helpers/spec-validator.js";

let spec: SpecValidator;
beforeAll(() => {
  spec = loadSpecValidator();
});

type Json = Record<string, unknown>;

/** The JSON chunks of an SSE body that must end with `data: [DONE]`, each validated against `schema`. */
async function readChunks(response: Response, schema: string): Promise<Json[]> {
  expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
  const events = parseSse(await response.text());
  expect(events.at(-1)?.data).toBe("[DONE]");
  return events.slice(0, -1).map((event) => {
    expect(event.event).toBeUndefined();
    const chunk = JSON.parse(event.data) as Json;
    spec.assertOpenAiSchema(schema, chunk);
    return chunk;
  });
}

const deltas = (chunks: Json[]) =>
  chunks.flatMap((chunk) => (chunk.choices as { delta: Json }[]).map((choice) => choice.delta));

const hasResult = (request: EngineRequest) => request.items.some((item) => item.type === "function-result");

/** Calls get_weather for Paris (after thinking), then answers from the tool's result. */
function weatherTurns(request: EngineRequest): ScriptedTurn {
  if (hasResult(request)) {
    const result = request.items.findLast((item) => item.type === "function-result");
    return { text: `It is ${result?.type === "function-result" ? result.output : "?"} in Paris.` };
  }
  return {
    reasoning: "The user wants weather.",
    toolCalls: [{ callId: "call_paris", name: "get_weather", arguments: '{"city":"Paris"}' }],
  };
}

const weatherTool = {
  type: "function" as const,
  function: {
    name: "get_weather",
    description: "Weather for a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

describe("POST /v1/chat/completions with the openai SDK", () => {
  it("create answers a spec-valid chat.completion with usage and reasoning_content", async () => {
    const fast = createFastApp({ respond: () => ({ reasoning: "Let me think.", text: "Hello there." }) });
    const completion = await fast.client.chat.completions.create({
      model: TEST_MODEL,
      messages: [
        { role: "developer", content: "Be brief." },
        {
          role: "user",
          content: [
            { type: "text", text: "Hi" },
            { type: "text", text: " you" },
          ],
        },
      ],
      seed: 7,
    });
    spec.assertOpenAiSchema("CreateChatCompletionResponse", completion);
    expect(completion.object).toBe("chat.completion");
    expect(completion.id).toMatch(/^chatcmpl-/);
    const choice = completion.choices[0];
    expect(choice?.message).toMatchObject({ role: "assistant", content: "Hello there.", refusal: null });
    expect((choice?.message as unknown as Json).reasoning_content).toBe("Let me think. ");
    expect(choice?.finish_reason).toBe("stop");
    expect(completion.usage).toMatchObject({
      completion_tokens: 5,
      completion_tokens_details: { reasoning_tokens: 3 },
      prompt_tokens_details: { cached_tokens: 0 },
    });
    expect(completion.usage?.total_tokens).toBe(
      (completion.usage?.prompt_tokens ?? 0) + (completion.usage?.completion_tokens ?? 0),
    );
    expect(fast.engineRequests[0]?.items).toEqual([
      { type: "message", role: "system", text: "Be brief." },
      { type: "message", role: "user", text: "Hi you" },
    ]);
  });

  it("stream and create make a forced tool round trip: tool_calls, then a tool message", async () => {
    const fast = createFastApp({ respond: weatherTurns });
    const stream = fast.client.chat.completions.stream({
      model: TEST_MODEL,
      messages: [{ role: "user", content: "Weather in Paris?" }],
      tools: [weatherTool],
      tool_choice: { type: "function", function: { name: "get_weather" } },
      parallel_tool_calls: false,
      stream_options: { include_usage: true },
    });
    const argumentDeltas: string[] = [];
    stream.on("tool_calls.function.arguments.delta", (event) => argumentDeltas.push(event.arguments_delta));
    const first = await stream.finalChatCompletion();
    const call = first.choices[0]?.message.tool_calls?.[0];
    expect(first.choices[0]?.finish_reason).toBe("tool_calls");
    expect(call).toMatchObject({
      id: "call_paris",
      type: "function",
      function: { name: "get_weather", arguments: '{"city":"Paris"}' },
    });
    expect(argumentDeltas.join("")).toBe('{"city":"Paris"}');
    expect(first.usage?.completion_tokens_details?.reasoning_tokens).toBe(4);
    expect(fast.engineRequests[0]).toMatchObject({
      toolChoice: { name: "get_weather" },
      parallelToolCalls: false,
    });

    const second = await fast.client.chat.completions.create({
      model: TEST_MODEL,
      messages: [
        { role: "user", content: "Weather in Paris?" },
        { role: "assistant", content: null, tool_calls: first.choices[0]?.message.tool_calls ?? [] },
        { role: "tool", tool_call_id: "call_paris", content: "21 °C" },
      ],
      tools: [weatherTool],
    });
    spec.assertOpenAiSchema("CreateChatCompletionResponse", second);
    expect(second.choices[0]?.message.content).toBe("It is 21 °C in Paris.");
    expect(fast.engineRequests[1]?.items.slice(1)).toEqual([
      { type: "function-call", callId: "call_paris", name: "get_weather", arguments: '{"city":"Paris"}' },
      { type: "function-result", callId: "call_paris", name: "get_weather", output: "21 °C" },
    ]);
  });

  it("streams spec-valid chunks: role first, reasoning_content and tool_calls deltas with index, usage last", async () => {
    const fast = createFastApp({ respond: weatherTurns });
    const response = await fast.post("/v1/chat/completions", {
      model: TEST_MODEL,
      messages: [{ role: "user", content: "Weather?" }],
      tools: [weatherTool],
      tool_choice: "required",
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = await readChunks(response, "CreateChatCompletionStreamResponse");
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    expect(deltas(chunks)[0]).toEqual({ role: "assistant", content: "", refusal: null });
    const reasoning = deltas(chunks).flatMap((delta) =>
      typeof delta.reasoning_content === "string" ? [delta.reasoning_content] : [],
    );
    expect(reasoning.join("")).toBe("The user wants weather. ");
    const calls = deltas(chunks).flatMap((delta) => (delta.tool_calls as Json[] | undefined) ?? []);
    expect(calls[0]).toEqual({
      index: 0,
      id: "call_paris",
      type: "function",
      function: { name: "get_weather", arguments: "" },
    });
    expect(calls.slice(1).every((entry) => entry.index === 0 && entry.id === undefined)).toBe(true);
    const finishing = chunks.at(-2) as { choices: { finish_reason: string }[]; usage: unknown };
    expect(finishing.choices[0]?.finish_reason).toBe("tool_calls");
    expect(finishing.usage).toBeNull();
    const last = chunks.at(-1) as { choices: unknown[]; usage: Json };
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ completion_tokens_details: { reasoning_tokens: 4 } });
  });

  it("without include_usage no chunk carries usage; max_tokens reached is finish_reason length", async () => {
    const fast = createFastApp({ respond: () => ({ text: "one two three four" }) });
    const response = await fast.post("/v1/chat/completions", {
      model: TEST_MODEL,
      messages: [{ role: "user", content: "count" }],
      max_tokens: 2,
      stream: true,
    });
    const chunks = await readChunks(response, "CreateChatCompletionStreamResponse");
    expect(chunks.every((chunk) => !("usage" in chunk))).toBe(true);
    expect(
      deltas(chunks)
        .map((delta) => delta.content ?? "")
        .join(""),
    ).toBe("one two ");
    expect((chunks.at(-1)?.choices as { finish_reason: string }[])[0]?.finish_reason).toBe("length");
  });

  it("reports cached_tokens when a history is sent again", async () => {
    const fast = createFastApp();
    const messages = [{ role: "user" as const, content: "first question" }];
    const first = await fast.client.chat.completions.create({ model: TEST_MODEL, messages });
    const second = await fast.client.chat.completions.create({
      model: TEST_MODEL,
      messages: [
        ...messages,
        { role: "assistant", content: first.choices[0]?.message.content ?? "" },
        { role: "user", content: "second question" },
      ],
    });
    expect(second.usage?.prompt_tokens_details?.cached_tokens).toBeGreaterThan(0);
    expect(second.usage?.prompt_tokens_details?.cached_tokens).toBeLessThan(second.usage?.prompt_tokens ?? 0);
  });
});

describe("chat request mapping onto the EngineRequest", () => {
  it("maps sampling, response_format, tools, tool_choice, reasoning_effort and ttl; ignores unknown fields", async () => {
    const fast = createFastApp();
    const schema = { type: "object", properties: { said: { type: "string" } }, required: ["said"] };
    const response = await fast.post("/v1/chat/completions", {
      model: TEST_MODEL,
      messages: [
        { role: "system", content: "sys" },
        { role: "user", content: "hi", name: "ann" },
        { role: "assistant", content: "earlier", reasoning_content: "thought" },
        { role: "user", content: "again" },
      ],
      temperature: 0.2,
      top_p: 0.9,
      max_tokens: 50,
      max_completion_tokens: 40,
      stop: "END",
      seed: 42,
      presence_penalty: 0.5,
      frequency_penalty: 0.25,
      top_k: 20,
      min_p: 0.05,
      repeat_penalty: 1.1,
      n: 1,
      logprobs: false,
      response_format: { type: "json_schema", json_schema: { name: "out", schema, strict: true } },
      tools: [weatherTool],
      tool_choice: {
        type: "allowed_tools",
        allowed_tools: { mode: "required", tools: [{ type: "function", function: { name: "get_weather" } }] },
      },
      reasoning_effort: "low",
      ttl: 120,
      prompt_cache_key: "session-1",
      store: false,
      metadata: { a: "b" },
      user: "u",
      some_vendor_field: { anything: true },
    });
    expect(response.status, await response.clone().text()).toBe(200);
    const body = (await response.json()) as Json;
    spec.assertOpenAiSchema("CreateChatCompletionResponse", body);
    expect(fast.engineRequests[0]).toEqual({
      model: TEST_MODEL,
      items: [
        { type: "message", role: "system", text: "sys" },
        { type: "message", role: "user", text: "hi" },
        { type: "reasoning", text: "thought" },
        { type: "message", role: "assistant", text: "earlier" },
        { type: "message", role: "user", text: "again" },
      ],
      sampling: {
        temperature: 0.2,
        topP: 0.9,
        maxTokens: 40,
        stop: ["END"],
        seed: 42,
        presencePenalty: 0.5,
        frequencyPenalty: 0.25,
        topK: 20,
        minP: 0.05,
        repeatPenalty: 1.1,
      },
      responseFormat: { type: "json_schema", name: "out", schema, strict: true },
      tools: [
        {
          name: "get_weather",
          description: "Weather for a city",
          parameters: weatherTool.function.parameters,
        },
      ],
      toolChoice: "required",
      reasoningEffort: "low",
      ttlSeconds: 120,
      promptCacheKey: "session-1",
    });
  });

  it("defaults temperature and top_p to OpenAI's 1; json_object and a schema-less json_schema ask for JSON", async () => {
    const fast = createFastApp();
    for (const format of [{ type: "json_object" }, { type: "json_schema", json_schema: { name: "any" } }]) {
      const response = await fast.post("/v1/chat/completions", {
        model: TEST_MODEL,
        messages: [{ role: "user", content: "x" }],
        response_format: format,
      });
      expect(response.status).toBe(200);
    }
    expect(fast.engineRequests.map((request) => request.responseFormat)).toEqual([
      { type: "json_object" },
      { type: "json_object" },
    ]);
    expect(fast.engineRequests[0]?.sampling).toEqual({ temperature: 1, topP: 1 });
  });
});

interface BadCase {
  name: string;
  path?: "/v1/chat/completions" | "/v1/completions";
  body: unknown;
  status: number;
  param: string | null;
  /** What the error message must say, where the param alone does not tell the cases apart. */
  message?: RegExp;
}

const chat = { model: TEST_MODEL, messages: [{ role: "user", content: "hi" }] };
const completion = { model: TEST_MODEL, prompt: "Once" };

const badCases: BadCase[] = [
  { name: "missing model", body: { messages: chat.messages }, status: 400, param: "model" },
  { name: "unknown model", body: { ...chat, model: "nobody/nothing" }, status: 404, param: "model" },
  { name: "missing messages", body: { model: TEST_MODEL }, status: 400, param: "messages" },
  { name: "empty messages", body: { ...chat, messages: [] }, status: 400, param: "messages" },
  {
    name: "unknown role",
    body: {
      ...chat,
      messages: [
        { role: "user", content: "a" },
        { role: "wizard", content: "b" },
      ],
    },
    status: 400,
    param: "messages[1].role",
  },
  {
    name: "an image part",
    body: {
      ...chat,
      messages: [
        { role: "system", content: "s" },
        { role: "user", content: "a" },
        { role: "user", content: [{ type: "image_url", image_url: { url: "https://x/y.png" } }] },
      ],
    },
    status: 400,
    param: "messages[2].content[0].type",
  },
  {
    name: "an audio part",
    body: {
      ...chat,
      messages: [{ role: "user", content: [{ type: "text", text: "a" }, { type: "input_audio" }] }],
    },
    status: 400,
    param: "messages[0].content[1].type",
  },
  {
    name: "a tool message without tool_call_id",
    body: { ...chat, messages: [{ role: "tool", content: "x" }] },
    status: 400,
    param: "messages[0].tool_call_id",
  },
  {
    name: "a tool message answering no earlier call",
    body: {
      ...chat,
      messages: [
        { role: "user", content: "a" },
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }],
        },
        { role: "tool", tool_call_id: "c2", content: "x" },
      ],
    },
    status: 400,
    param: "messages[2].tool_call_id",
  },
  {
    name: "the deprecated function role",
    body: { ...chat, messages: [{ role: "function", name: "f", content: "x" }] },
    status: 400,
    param: "messages[0].role",
  },
  { name: "n = 2", body: { ...chat, n: 2 }, status: 400, param: "n" },
  { name: "logprobs", body: { ...chat, logprobs: true }, status: 400, param: "logprobs" },
  { name: "top_logprobs", body: { ...chat, top_logprobs: 3 }, status: 400, param: "top_logprobs" },
  { name: "temperature too high", body: { ...chat, temperature: 3 }, status: 400, param: "temperature" },
  { name: "top_p too high", body: { ...chat, top_p: 1.5 }, status: 400, param: "top_p" },
  { name: "max_tokens 0", body: { ...chat, max_tokens: 0 }, status: 400, param: "max_tokens" },
  { name: "stop of the wrong type", body: { ...chat, stop: 5 }, status: 400, param: "stop" },
  { name: "negative seed", body: { ...chat, seed: -1 }, status: 400, param: "seed" },
  { name: "logit_bias", body: { ...chat, logit_bias: { "50256": -100 } }, status: 400, param: "logit_bias" },
  { name: "audio output", body: { ...chat, audio: { voice: "x" } }, status: 400, param: "audio" },
  {
    name: "audio modality",
    body: { ...chat, modalities: ["text", "audio"] },
    status: 400,
    param: "modalities[1]",
  },
  {
    name: "deprecated functions",
    body: { ...chat, functions: [{ name: "f" }] },
    status: 400,
    param: "functions",
  },
  {
    name: "a bad response_format type",
    body: { ...chat, response_format: { type: "yaml" } },
    status: 400,
    param: "response_format.type",
  },
  {
    name: "a broken json_schema",
    body: {
      ...chat,
      response_format: {
        type: "json_schema",
        json_schema: { name: "x", schema: { type: "object", properties: { a: { type: "strin" } } } },
      },
    },
    status: 400,
    param: "response_format.json_schema.schema.properties.a.type",
  },
  {
    name: "a tool with a broken parameters schema",
    body: {
      ...chat,
      tools: [weatherTool, { type: "function", function: { name: "f", parameters: { type: "objekt" } } }],
    },
    status: 400,
    param: "tools[1].function.parameters.type",
  },
  {
    name: "a tool name with a space",
    body: { ...chat, tools: [{ type: "function", function: { name: "a b" } }] },
    status: 400,
    param: "tools[0].function.name",
  },
  {
    name: "a custom tool",
    body: { ...chat, tools: [{ type: "custom", custom: { name: "x" } }] },
    status: 400,
    param: "tools[0].type",
  },
  {
    name: "tool_choice naming a missing function",
    body: { ...chat, tools: [weatherTool], tool_choice: { type: "function", function: { name: "nope" } } },
    status: 400,
    param: "tool_choice.function.name",
  },
  {
    name: "tool_choice required without tools",
    body: { ...chat, tool_choice: "required" },
    status: 400,
    param: "tool_choice",
  },
  {
    name: "a bad reasoning_effort",
    body: { ...chat, reasoning_effort: "huge" },
    status: 400,
    param: "reasoning_effort",
  },
  { name: "a bad ttl", body: { ...chat, ttl: -5 }, status: 400, param: "ttl" },
  { name: "a body that is an array", body: [chat], status: 400, param: null },
  // /v1/completions
  {
    name: "completions: missing prompt",
    path: "/v1/completions",
    body: { model: TEST_MODEL },
    status: 400,
    param: "prompt",
  },
  {
    name: "completions: two prompts",
    path: "/v1/completions",
    body: { ...completion, prompt: ["a", "b"] },
    status: 400,
    param: "prompt",
  },
  {
    name: "completions: a token-array prompt",
    path: "/v1/completions",
    body: { ...completion, prompt: [[1, 2, 3]] },
    status: 400,
    param: "prompt[0]",
  },
  {
    // One prompt of token ids in OpenAI's API (was refused as three prompts).
    name: "completions: a flat token-array prompt",
    path: "/v1/completions",
    body: { ...completion, prompt: [1, 2, 3] },
    status: 400,
    param: "prompt",
    message: /Token-array prompts are not supported/,
  },
  {
    name: "completions: suffix",
    path: "/v1/completions",
    body: { ...completion, suffix: "end" },
    status: 400,
    param: "suffix",
  },
  {
    name: "completions: logprobs",
    path: "/v1/completions",
    body: { ...completion, logprobs: 2 },
    status: 400,
    param: "logprobs",
  },
  {
    name: "completions: n = 3",
    path: "/v1/completions",
    body: { ...completion, n: 3 },
    status: 400,
    param: "n",
  },
  {
    name: "completions: best_of = 2",
    path: "/v1/completions",
    body: { ...completion, best_of: 2 },
    status: 400,
    param: "best_of",
  },
  {
    name: "completions: negative max_tokens",
    path: "/v1/completions",
    body: { ...completion, max_tokens: -1 },
    status: 400,
    param: "max_tokens",
  },
  {
    name: "completions: unknown model",
    path: "/v1/completions",
    body: { ...completion, model: "nobody/nothing" },
    status: 404,
    param: "model",
  },
  {
    name: "completions: a prompt over the context",
    path: "/v1/completions",
    body: { ...completion, prompt: "word ".repeat(5000) },
    status: 400,
    param: "prompt",
  },
];

describe("bad input: status and param per row, and the app keeps serving", () => {
  const fast = createFastApp();
  it.each(badCases)("$name", async ({ path, body, status, param, message }) => {
    const response = await fast.post(path ?? "/v1/chat/completions", body);
    const json = (await response.json()) as {
      error: { param: string | null; type: string; message: string };
    };
    expect(response.status, JSON.stringify(json)).toBe(status);
    expect(json.error.param).toBe(param);
    expect(json.error.message.length).toBeGreaterThan(10);
    if (message !== undefined) expect(json.error.message).toMatch(message);
    const healthy = await fast.post("/v1/chat/completions", chat);
    expect(healthy.status).toBe(200);
  });

  it("a history over the context is a 400 naming messages", async () => {
    const small = createFastApp({ contextLength: 10 });
    const response = await small.post("/v1/chat/completions", {
      ...chat,
      messages: [{ role: "user", content: "word ".repeat(50) }],
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { param: string } }).error.param).toBe("messages");
  });
});

describe("POST /v1/completions with the openai SDK", () => {
  it("create sends the raw prompt (no template), defaults max_tokens to 16, and echoes on request", async () => {
    const fast = createFastApp();
    const result = await fast.client.completions.create({ model: TEST_MODEL, prompt: "Once upon", seed: 3 });
    spec.assertOpenAiSchema("CreateCompletionResponse", result);
    expect(result.object).toBe("text_completion");
    expect(result.id).toMatch(/^cmpl-/);
    expect(result.choices[0]).toMatchObject({
      index: 0,
      text: " and then Once upon",
      finish_reason: "stop",
      logprobs: null,
    });
    expect(result.usage).toMatchObject({ prompt_tokens: 2, completion_tokens: 5 });
    expect(fast.engineRequests[0]).toMatchObject({
      rawPrompt: "Once upon",
      items: [],
      sampling: { maxTokens: 16, seed: 3, temperature: 1, topP: 1 },
    });

    const echoed = await fast.client.completions.create({
      model: TEST_MODEL,
      prompt: ["Twice"],
      echo: true,
      max_tokens: 2,
      stop: ["\n", "END"],
    });
    spec.assertOpenAiSchema("CreateCompletionResponse", echoed);
    expect(echoed.choices[0]).toMatchObject({ text: "Twice and ", finish_reason: "length" });
    expect(fast.engineRequests[1]?.sampling).toMatchObject({ maxTokens: 2, stop: ["\n", "END"] });

    // max_tokens 0: nothing is generated, the echo alone comes back.
    const nothing = await fast.client.completions.create({
      model: TEST_MODEL,
      prompt: "a b c",
      max_tokens: 0,
      echo: true,
    });
    spec.assertOpenAiSchema("CreateCompletionResponse", nothing);
    expect(nothing.choices[0]).toMatchObject({ text: "a b c", finish_reason: "length" });
    expect(nothing.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 0 });
    expect(fast.engineRequests).toHaveLength(2);
  });

  it("streams text_completion chunks ending with finish_reason, usage and [DONE]", async () => {
    const fast = createFastApp();
    const response = await fast.post("/v1/completions", {
      model: TEST_MODEL,
      prompt: "Once",
      stream: true,
      echo: true,
      stream_options: { include_usage: true },
    });
    const chunks = await readChunks(response, "CreateCompletionResponse");
    const texts = chunks.flatMap((chunk) =>
      (chunk.choices as { text: string }[]).map((choice) => choice.text),
    );
    expect(texts.join("")).toBe("Once and then Once");
    expect(texts[0]).toBe("Once");
    const finishing = chunks.at(-2) as { choices: { finish_reason: string }[] };
    expect(finishing.choices[0]?.finish_reason).toBe("stop");
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 1 } });

    const viaSdk = await fast.client.completions.create({ model: TEST_MODEL, prompt: "Hello", stream: true });
    let text = "";
    for await (const chunk of viaSdk) text += chunk.choices[0]?.text ?? "";
    expect(text).toBe(" and then Hello");
  });

  it("reports cached_tokens for a prompt that extends the previous one", async () => {
    const fast = createFastApp();
    await fast.client.completions.create({ model: TEST_MODEL, prompt: "a b c d" });
    const second = await fast.client.completions.create({ model: TEST_MODEL, prompt: "a b c d e f" });
    expect(second.usage?.prompt_tokens_details?.cached_tokens).toBe(4);
  });
});

/** Makes the engine refuse every request up front with 429 queue_full, as a full pool does. */
function refuseWithQueueFull(fast: FastApp): void {
  fast.engine.generate = () =>
    (async function* refuse() {
      yield* [];
      throw new ApiError({ status: 429, message: "queue full", code: "queue_full", retryAfter: 1 });
    })();
}

describe("serving like /v1/responses", () => {
  it("--api-key covers both endpoints", async () => {
    const fast = createFastApp({ config: { apiKey: "sekret" } });
    for (const [path, body] of [
      ["/v1/chat/completions", chat],
      ["/v1/completions", completion],
    ] as const) {
      const refused = await fast.post(path, body);
      expect(refused.status).toBe(401);
      const allowed = await fast.request(path, { body, headers: { authorization: "Bearer sekret" } });
      expect(allowed.status).toBe(200);
    }
  });

  it("a full queue is a 429 with Retry-After, streamed or not, on both endpoints", async () => {
    const fast = createFastApp();
    refuseWithQueueFull(fast);
    for (const [path, body] of [
      ["/v1/chat/completions", chat],
      ["/v1/chat/completions", { ...chat, stream: true }],
      ["/v1/completions", completion],
      ["/v1/completions", { ...completion, stream: true }],
    ] as const) {
      const response = await fast.post(path, body);
      expect(response.status).toBe(429);
      expect(response.headers.get("retry-after")).toBe("1");
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe("queue_full");
    }
  });

  it("an engine failure after the stream started is an error event, without [DONE]", async () => {
    const fast = createFastApp({
      respond: () => ({ text: "a b c", failWith: new Error("boom"), failAfterParts: 1 }),
    });
    const response = await fast.post("/v1/chat/completions", { ...chat, stream: true });
    expect(response.status).toBe(200);
    const events = parseSse(await response.text());
    expect(events.at(-1)?.data).not.toBe("[DONE]");
    expect(JSON.parse(events.at(-1)?.data ?? "{}")).toMatchObject({ error: { type: "server_error" } });
  });

  it("a graceful shutdown ends a running request with 503", async () => {
    const shutdown = new AbortController();
    const fast = createFastApp({
      respond: slowReply("a b c d e f g h", 30),
      shutdownSignal: shutdown.signal,
    });
    const pending = fast.post("/v1/chat/completions", chat);
    setTimeout(() => shutdown.abort(new ShutdownError()), 60);
    const response = await pending;
    expect(response.status).toBe(503);
  });

  it("a graceful shutdown ends a running stream with an error event", async () => {
    const shutdown = new AbortController();
    const fast = createFastApp({
      respond: slowReply("a b c d e f g h", 30),
      shutdownSignal: shutdown.signal,
    });
    const response = await fast.post("/v1/completions", { ...completion, stream: true });
    const reader = response.body!.getReader();
    const text = await readUntil(reader, "", '"text":');
    shutdown.abort(new ShutdownError());
    const events = parseSse(await readUntil(reader, text));
    expect(JSON.parse(events.at(-1)?.data ?? "{}")).toMatchObject({
      error: { type: "service_unavailable", code: "server_shutting_down" },
    });
  });

  it("a client that goes away stops the generation", async () => {
    const fast = createFastApp({ respond: slowReply("a b c d e f g h i j k l m n o p", 20) });
    const controller = new AbortController();
    const response = await fast.post("/v1/chat/completions", { ...chat, stream: true }, controller.signal);
    const reader = response.body?.getReader();
    await reader?.read();
    expect(fast.engine.active).toBe(1);
    controller.abort();
    await reader?.cancel().catch(() => undefined);
    await expect.poll(() => fast.engine.active).toBe(0);
  });
});

/** Holds the next generation before its first part until `open()` (or fails it with `fail(error)`). */
function gateEngine(fast: FastApp) {
  let release!: (error?: Error) => void;
  const gate = new Promise<Error | undefined>((resolve) => {
    release = resolve;
  });
  const generate = fast.engine.generate.bind(fast.engine);
  fast.engine.generate = (request: EngineRequest, signal: AbortSignal) =>
    (async function* () {
      const error = await gate;
      if (error !== undefined) throw error;
      yield* generate(request, signal);
    })();
  return { open: () => release(), fail: (error: Error) => release(error) };
}

/** Reads the body until `text` has appeared (or to its end with `text` undefined). */
async function readUntil(reader: ReadableStreamDefaultReader<Uint8Array>, seen: string, text?: string) {
  const decoder = new TextDecoder();
  let all = seen;
  while (text === undefined || !all.includes(text)) {
    const { value, done } = await reader.read();
    if (done) {
      if (text === undefined) return all;
      throw new Error(`the stream ended before '${text}': ${all}`);
    }
    all += decoder.decode(value, { stream: true });
  }
  return all;
}

describe("a stream whose first part is slow (a model loading, a wait for a sequence)", () => {
  it("starts with the role chunk and keep-alives, then streams the answer", async () => {
    const fast = createFastApp({ streamStartAfterMilliseconds: 20, keepAliveSeconds: 0.05 });
    const gate = gateEngine(fast);
    const response = await fast.post("/v1/chat/completions", { ...chat, stream: true });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    let text = await readUntil(reader, "", '"role":"assistant"');
    text = await readUntil(reader, text, ": keep-alive");
    gate.open();
    text = await readUntil(reader, text);
    const events = parseSse(text);
    expect(events.at(-1)?.data).toBe("[DONE]");
    const content = events
      .slice(0, -1)
      .map((event) => JSON.parse(event.data) as { choices: { delta: { content?: string } }[] })
      .map((chunk) => chunk.choices[0]?.delta.content ?? "")
      .join("");
    expect(content).toBe("You said: hi");
  });

  it("turns a refusal after the start into an error event without [DONE]", async () => {
    const fast = createFastApp({ streamStartAfterMilliseconds: 20 });
    const gate = gateEngine(fast);
    const response = await fast.post("/v1/completions", { ...completion, stream: true, echo: true });
    const reader = response.body!.getReader();
    const text = await readUntil(reader, "", '"text":"Once"');
    gate.fail(
      new ApiError({ status: 429, message: "All sequences are busy.", code: "queue_full", retryAfter: 1 }),
    );
    const events = parseSse(await readUntil(reader, text));
    expect(events.some((event) => event.data === "[DONE]")).toBe(false);
    expect(JSON.parse(events.at(-1)?.data ?? "{}")).toEqual({
      error: {
        message: "All sequences are busy.",
        type: "rate_limit_error",
        param: null,
        code: "queue_full",
      },
    });
  });
});
