/**
 * /v1/chat/completions and /v1/completions on the REAL engine (node-llama-cpp on assets/models): the
 * official `openai` SDK unmodified (create and stream with a forced tool round trip, response_format
 * json_schema, completions create and stream), the Vercel AI SDK's `@ai-sdk/openai-compatible` provider
 * (generateText with a tool), every object and chunk validated against OpenAI's spec, KV reuse
 * (`cached_tokens` of a re-sent history and of an extended raw prompt), reasoning streamed as
 * `reasoning_content` under the fixture thinking template, and a full queue (429). The tiny models do not
 * follow instructions, so tool calls and JSON are forced by grammar.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, tool } from "ai";
import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { parseSse } from "../helpers/fast-app.js";
import { templatesDir } from "../helpers/paths.js";
import { BASE_URL, createRealApp, type RealApp } from "../helpers/real-app.js";
import { loadSpecValidator, type SpecValidator } from "../helpers/spec-validator.js";

const CHATML = "stories260K-chatml";
const STORIES = "stories260K";
type Json = Record<string, unknown>;

let spec: SpecValidator;
beforeAll(() => {
  spec = loadSpecValidator();
});

/** The JSON chunks of an SSE body ending with [DONE], each validated against `schema`. */
async function readChunks(response: Response, schema: string): Promise<Json[]> {
  expect(response.status).toBe(200);
  const events = parseSse(await response.text());
  expect(events.at(-1)?.data).toBe("[DONE]");
  return events.slice(0, -1).map((event) => {
    const chunk = JSON.parse(event.data) as Json;
    spec.assertOpenAiSchema(schema, chunk);
    return chunk;
  });
}

const deltas = (chunks: Json[]): Json[] =>
  chunks.flatMap((chunk) => (chunk.choices as { delta: Json }[]).map((choice) => choice.delta));

const weatherTool = {
  type: "function" as const,
  function: {
    name: "get_weather",
    description: "The weather in a city",
    strict: true,
    parameters: {
      type: "object",
      properties: { city: { type: "string", enum: ["Paris", "Rome"] } },
      required: ["city"],
      additionalProperties: false,
    },
  },
};

describe("the official openai SDK on the real engine", () => {
  let real: RealApp;
  beforeAll(async () => {
    real = await createRealApp();
  }, 60_000);
  afterAll(async () => {
    await real.close();
  });

  it("stream and create make a forced tool round trip; chunks and objects are spec-valid", async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "Weather in Paris?" }];
    const stream = real.client.chat.completions.stream({
      model: CHATML,
      messages,
      tools: [weatherTool],
      tool_choice: "required",
      seed: 1,
      max_tokens: 100,
      stream_options: { include_usage: true },
    });
    const chunks: unknown[] = [];
    stream.on("chunk", (chunk) => chunks.push(chunk));
    const first = await stream.finalChatCompletion();
    for (const chunk of chunks) spec.assertOpenAiSchema("CreateChatCompletionStreamResponse", chunk);
    const call = first.choices[0]?.message.tool_calls?.[0];
    expect(first.choices[0]?.finish_reason).toBe("tool_calls");
    expect(call?.type).toBe("function");
    if (call?.type !== "function") throw new Error("no function call");
    expect(call.function.name).toBe("get_weather");
    expect(["Paris", "Rome"]).toContain((JSON.parse(call.function.arguments) as { city: string }).city);
    // The arguments came as deltas of one call (index 0).
    const argumentChunks = chunks.filter((chunk) =>
      (
        chunk as { choices: { delta: { tool_calls?: { function?: { arguments?: string } }[] } }[] }
      ).choices.some((choice) => (choice.delta.tool_calls?.[0]?.function?.arguments ?? "") !== ""),
    );
    expect(argumentChunks.length).toBeGreaterThan(1);

    const second = await real.client.chat.completions.create({
      model: CHATML,
      messages: [
        ...messages,
        { role: "assistant", content: null, tool_calls: first.choices[0]?.message.tool_calls ?? [] },
        { role: "tool", tool_call_id: call.id, content: "21 degrees and sunny" },
      ],
      tools: [weatherTool],
      tool_choice: "none",
      seed: 1,
      max_tokens: 12,
    });
    spec.assertOpenAiSchema("CreateChatCompletionResponse", second);
    expect(second.choices[0]?.message.content?.length).toBeGreaterThan(0);
    expect(second.choices[0]?.message.tool_calls).toBeUndefined();
    expect(["stop", "length"]).toContain(second.choices[0]?.finish_reason);
    // The history up to the tool result was in the KV cache of the first turn's sequence.
    expect(second.usage?.prompt_tokens_details?.cached_tokens).toBeGreaterThan(0);
  }, 60_000);

  it("response_format json_schema (strict) answers JSON that parses and matches the schema", async () => {
    const completion = await real.client.chat.completions.create({
      model: CHATML,
      messages: [{ role: "user", content: "Give me a number." }],
      response_format: {
        type: "json_schema",
        json_schema: {
          name: "answer",
          strict: true,
          schema: {
            type: "object",
            properties: {
              n: { type: "integer", minimum: 0, maximum: 9 },
              word: { type: "string", maxLength: 8 },
            },
            required: ["n", "word"],
            additionalProperties: false,
          },
        },
      },
      seed: 3,
      max_tokens: 60,
    });
    spec.assertOpenAiSchema("CreateChatCompletionResponse", completion);
    expect(completion.choices[0]?.finish_reason).toBe("stop");
    const parsed = JSON.parse(completion.choices[0]?.message.content ?? "") as { n: number; word: string };
    expect(Number.isInteger(parsed.n) && parsed.n >= 0 && parsed.n <= 9).toBe(true);
    expect(typeof parsed.word === "string" && parsed.word.length <= 8).toBe(true);
  }, 60_000);

  it("a re-sent history evaluates only its new tokens (cached_tokens)", async () => {
    const history: OpenAI.ChatCompletionMessageParam[] = [
      { role: "system", content: "You tell stories." },
      { role: "user", content: "Tell me about a cat named Tom who lived in a big house." },
    ];
    const first = await real.client.chat.completions.create({
      model: CHATML,
      messages: history,
      seed: 5,
      max_tokens: 16,
    });
    const second = await real.client.chat.completions.create({
      model: CHATML,
      messages: [
        ...history,
        { role: "assistant", content: first.choices[0]?.message.content ?? "" },
        { role: "user", content: "And then?" },
      ],
      seed: 5,
      max_tokens: 4,
    });
    const promptTokens = second.usage?.prompt_tokens ?? 0;
    const cached = second.usage?.prompt_tokens_details?.cached_tokens ?? 0;
    expect(cached).toBeGreaterThanOrEqual(first.usage?.prompt_tokens ?? Number.POSITIVE_INFINITY);
    expect(cached).toBeLessThan(promptTokens);
  }, 60_000);

  it("completions create and stream continue the raw prompt, spec-valid, with prefix reuse", async () => {
    const prompt = "Once upon a time, there was a little girl named Lily.";
    const created = await real.client.completions.create({ model: STORIES, prompt, max_tokens: 12, seed: 2 });
    spec.assertOpenAiSchema("CreateCompletionResponse", created);
    expect(created.choices[0]?.text.length).toBeGreaterThan(0);
    expect(created.usage?.completion_tokens).toBe(12);
    expect(created.choices[0]?.finish_reason).toBe("length");
    // The continuation keeps the leading space of its first word (node-llama-cpp alone drops it: "Lily.She").
    expect(created.choices[0]?.text).toMatch(/^ \S/);

    // The same seed and prompt give the same text streamed; the prompt's prefix is reused.
    const response = await real.post("/v1/completions", {
      model: STORIES,
      prompt,
      max_tokens: 12,
      seed: 2,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = await readChunks(response, "CreateCompletionResponse");
    const text = chunks
      .flatMap((chunk) => (chunk.choices as { text: string }[]).map((choice) => choice.text))
      .join("");
    expect(text).toBe(created.choices[0]?.text);
    const usage = chunks.at(-1)?.usage as {
      prompt_tokens: number;
      prompt_tokens_details: { cached_tokens: number };
    };
    expect(usage.prompt_tokens).toBe(created.usage?.prompt_tokens);
    expect(usage.prompt_tokens_details.cached_tokens).toBe(usage.prompt_tokens - 1);

    // echo and stop through the SDK's stream.
    const stream = await real.client.completions.create({
      model: STORIES,
      prompt: "Once upon a time",
      max_tokens: 8,
      echo: true,
      stream: true,
      seed: 2,
    });
    let streamed = "";
    for await (const chunk of stream) {
      spec.assertOpenAiSchema("CreateCompletionResponse", chunk);
      streamed += chunk.choices[0]?.text ?? "";
    }
    expect(streamed.startsWith("Once upon a time")).toBe(true);
    expect(streamed.length).toBeGreaterThan("Once upon a time".length);
  }, 60_000);

  it("the Vercel AI SDK's openai-compatible provider runs generateText with a tool", async () => {
    const provider = createOpenAICompatible({
      name: "lmhost",
      baseURL: `${BASE_URL}/v1`,
      includeUsage: true,
      fetch: async (url, init) => real.app.request(String(url), init),
    });
    const calls: string[] = [];
    const result = await generateText({
      model: provider.chatModel(CHATML),
      prompt: "What is the weather in Rome?",
      tools: {
        get_weather: tool({
          description: "The weather in a city",
          inputSchema: z.object({ city: z.enum(["Paris", "Rome"]) }),
          execute: async ({ city }) => {
            calls.push(city);
            return { city, celsius: 21 };
          },
        }),
      },
      toolChoice: "required",
      seed: 4,
      maxOutputTokens: 100,
    });
    expect(result.finishReason).toBe("tool-calls");
    expect(result.toolCalls).toHaveLength(1);
    expect(result.toolCalls[0]?.toolName).toBe("get_weather");
    expect(calls).toHaveLength(1);
    expect(result.toolResults[0]?.output).toEqual({ city: calls[0], celsius: 21 });
    expect(result.usage.inputTokens).toBeGreaterThan(0);
  }, 60_000);
});

describe("reasoning on the fixture thinking template", () => {
  let real: RealApp;
  beforeAll(async () => {
    const template = readFileSync(path.join(templatesDir, "thinking-chatml.jinja"), "utf8");
    real = await createRealApp({
      modelOverrides: { [CHATML]: { chatTemplate: template } },
      reasoningBudgets: { low: 8, high: 32 },
    });
  }, 60_000);
  afterAll(async () => {
    await real.close();
  });

  it("streams reasoning_content deltas before the content, and counts reasoning_tokens", async () => {
    const response = await real.post("/v1/chat/completions", {
      model: CHATML,
      messages: [{ role: "user", content: "Tell me a story." }],
      reasoning_effort: "low",
      max_tokens: 40,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = await readChunks(response, "CreateChatCompletionStreamResponse");
    const kinds = deltas(chunks).flatMap((delta) =>
      typeof delta.reasoning_content === "string"
        ? ["reasoning"]
        : typeof delta.content === "string" && delta.content !== ""
          ? ["content"]
          : [],
    );
    expect(kinds[0]).toBe("reasoning");
    expect(kinds).toContain("content");
    expect(kinds.lastIndexOf("reasoning")).toBeLessThan(kinds.indexOf("content"));
    const usage = chunks.at(-1)?.usage as { completion_tokens_details: { reasoning_tokens: number } };
    expect(usage.completion_tokens_details.reasoning_tokens).toBe(8);

    // Not streamed: the same reasoning as message.reasoning_content; effort none thinks nothing.
    const created = (await (
      await real.post("/v1/chat/completions", {
        model: CHATML,
        messages: [{ role: "user", content: "Tell me a story." }],
        reasoning_effort: "low",
        max_tokens: 40,
        temperature: 0,
      })
    ).json()) as { choices: { message: { reasoning_content?: string; content: string } }[] };
    spec.assertOpenAiSchema("CreateChatCompletionResponse", created);
    const streamedReasoning = deltas(chunks)
      .map((delta) => (typeof delta.reasoning_content === "string" ? delta.reasoning_content : ""))
      .join("");
    expect(created.choices[0]?.message.reasoning_content).toBe(streamedReasoning);
    const none = (await (
      await real.post("/v1/chat/completions", {
        model: CHATML,
        messages: [{ role: "user", content: "Tell me a story." }],
        reasoning_effort: "none",
        max_tokens: 10,
        temperature: 0,
      })
    ).json()) as {
      choices: { message: Json }[];
      usage: { completion_tokens_details: { reasoning_tokens: number } };
    };
    expect(none.choices[0]?.message.reasoning_content).toBeUndefined();
    expect(none.usage.completion_tokens_details.reasoning_tokens).toBe(0);
  }, 60_000);
});

describe("a full queue on the real engine", () => {
  let real: RealApp;
  beforeAll(async () => {
    real = await createRealApp({ parallel: 1, maxQueue: 0 });
  }, 60_000);
  afterAll(async () => {
    await real.close();
  });

  it("is a 429 with Retry-After while the only sequence is busy, on both endpoints", async () => {
    const controller = new AbortController();
    const running = await real.app.request(`${BASE_URL}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: STORIES,
        messages: [{ role: "user", content: "Tell me a long story." }],
        max_tokens: 2000,
        stream: true,
      }),
      signal: controller.signal,
    });
    const reader = running.body?.getReader();
    // The first chunk is written once the sequence is held.
    await reader?.read();
    for (const [pathName, body] of [
      ["/v1/chat/completions", { model: STORIES, messages: [{ role: "user", content: "Hi" }] }],
      ["/v1/completions", { model: STORIES, prompt: "Hi", stream: true }],
    ] as const) {
      const refused = await real.post(pathName, body);
      expect(refused.status).toBe(429);
      expect(refused.headers.get("retry-after")).not.toBeNull();
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("queue_full");
    }
    controller.abort();
    await reader?.cancel().catch(() => undefined);
    // The sequence is free again once the stream is gone.
    await expect
      .poll(
        async () =>
          (await real.post("/v1/completions", { model: STORIES, prompt: "Hi", max_tokens: 2 })).status,
        {
          timeout: 20_000,
        },
      )
      .toBe(200);
  }, 60_000);
});
