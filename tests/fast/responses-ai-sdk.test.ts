/**
 * The Vercel AI SDK (`ai` v6 with `@ai-sdk/openai` v3, `provider.responses(...)`) against lmhost, its
 * fetch routed into `app.request`: generateText and streamText (text, usage, finish reasons, the response
 * id in providerMetadata), function tool calls (with and without the SDK executing the tool), structured
 * output, previous_response_id chains, and multi-turn conversations that re-send earlier output as
 * `item_reference` items, as the SDK does by default (store: true).
 */
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, Output, stepCountIs, streamText, tool, type ModelMessage } from "ai";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { renderScriptedPrompt, type ScriptedTurn } from "../../src/engine/scripted/scripted-engine.js";
import type { EngineRequest } from "../../src/engine/types.js";
import { createFastApp, TEST_MODEL, type FastApp } from "../helpers/fast-app.js";

interface AiSdkClient {
  fast: FastApp;
  model: ReturnType<ReturnType<typeof createOpenAI>["responses"]>;
  /** The JSON body of every POST /v1/responses the SDK sent, in order. */
  bodies: Record<string, unknown>[];
}

function aiSdkClient(respond?: (request: EngineRequest) => ScriptedTurn): AiSdkClient {
  const fast = createFastApp(respond === undefined ? {} : { respond });
  const bodies: Record<string, unknown>[] = [];
  const provider = createOpenAI({
    baseURL: "http://lmhost.test/v1",
    apiKey: "x",
    fetch: (url, init) => {
      if (typeof init?.body === "string") bodies.push(JSON.parse(init.body) as Record<string, unknown>);
      return Promise.resolve(fast.app.request(String(url), init));
    },
  });
  return { fast, model: provider.responses(TEST_MODEL), bodies };
}

/** The stored Response object (what GET /v1/responses/{id} returns). */
function stored(fast: FastApp, id: unknown): Record<string, unknown> {
  const record = fast.store.get(String(id));
  if (record === undefined) throw new Error(`response ${String(id)} is not stored`);
  return record.response;
}

const hasResult = (request: EngineRequest) => request.items.some((item) => item.type === "function-result");

/** Calls `weather` for Paris, then answers from the tool's result. */
function weatherTurns(options: { textBeforeCall?: string } = {}) {
  return (request: EngineRequest): ScriptedTurn => {
    if (hasResult(request)) {
      const result = request.items.findLast((item) => item.type === "function-result");
      return { text: `The tool said: ${result?.type === "function-result" ? result.output : "?"}` };
    }
    return {
      ...(options.textBeforeCall === undefined ? {} : { text: options.textBeforeCall }),
      toolCalls: [{ callId: "call_paris", name: "weather", arguments: '{"city":"Paris","unit":"C"}' }],
    };
  };
}

const weatherInput = z.object({ city: z.string(), unit: z.enum(["C", "F"]) });

describe("Vercel AI SDK (ai v6, @ai-sdk/openai v3) against lmhost", () => {
  it("generateText: text, usage, finish reason and the stored response's id", async () => {
    const { fast, model, bodies } = aiSdkClient();
    const result = await generateText({
      model,
      system: "Be brief.",
      prompt: "Hello there",
      temperature: 0.5,
    });
    expect(result.text).toBe("You said: Hello there");
    expect(result.finishReason).toBe("stop");
    expect(result.warnings).toEqual([]);
    const responseId = result.providerMetadata?.openai?.responseId;
    expect(responseId).toMatch(/^resp_/);
    expect(result.response.id).toBe(responseId);
    expect(result.response.modelId).toBe(TEST_MODEL);

    const response = stored(fast, responseId);
    const usage = response.usage as { input_tokens: number; output_tokens: number; total_tokens: number };
    expect(result.usage).toMatchObject({
      inputTokens: usage.input_tokens,
      outputTokens: usage.output_tokens,
      totalTokens: usage.total_tokens,
    });
    expect(result.usage.outputTokens).toBe(4); // "You said: Hello there" is four scripted tokens
    expect(response.temperature).toBe(0.5);
    // The system prompt went as a system message in the input, not as instructions.
    expect(bodies[0]).toMatchObject({ model: TEST_MODEL, temperature: 0.5 });
    expect(renderScriptedPrompt(fast.engineRequests[0]?.items ?? [])).toBe(
      "<system> Be brief.\n<user> Hello there",
    );
  });

  it("generateText: max output tokens ends with finish reason 'length'", async () => {
    const { model } = aiSdkClient(() => ({ text: "one two three four five six" }));
    const result = await generateText({ model, prompt: "long", maxOutputTokens: 3 });
    expect(result.text).toBe("one two three ");
    expect(result.finishReason).toBe("length");
    expect(result.usage.outputTokens).toBe(3);
  });

  it("streamText: the text deltas concatenate to the final text", async () => {
    const { fast, model, bodies } = aiSdkClient(() => ({ text: "Once upon a time there was a llama." }));
    const result = streamText({ model, prompt: "Tell me a story" });
    const deltas: string[] = [];
    for await (const delta of result.textStream) deltas.push(delta);
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join("")).toBe("Once upon a time there was a llama.");
    expect(await result.text).toBe(deltas.join(""));
    expect(await result.finishReason).toBe("stop");
    expect(bodies[0]).toMatchObject({ stream: true });

    const responseId = (await result.providerMetadata)?.openai?.responseId;
    expect(responseId).toMatch(/^resp_/);
    const response = stored(fast, responseId);
    expect(response.status).toBe("completed");
    const usage = response.usage as { input_tokens: number; output_tokens: number };
    expect(await result.usage).toMatchObject({
      inputTokens: usage.input_tokens,
      outputTokens: usage.output_tokens,
    });
  });

  it("generateText: a scripted function call reaches the SDK with parsed arguments", async () => {
    const { model, bodies } = aiSdkClient(weatherTurns());
    const result = await generateText({
      model,
      prompt: "Weather in Paris?",
      tools: { weather: tool({ description: "Current weather", inputSchema: weatherInput }) },
    });
    expect(result.finishReason).toBe("tool-calls");
    expect(result.toolCalls).toHaveLength(1);
    expect(result.toolCalls[0]).toMatchObject({
      type: "tool-call",
      toolCallId: "call_paris",
      toolName: "weather",
      input: { city: "Paris", unit: "C" },
    });
    expect(result.text).toBe("");
    expect(bodies[0]?.tools).toEqual([
      expect.objectContaining({ type: "function", name: "weather", description: "Current weather" }),
    ]);
  });

  it("generateText: the SDK executes the tool and sends its output back (a round trip)", async () => {
    const { fast, model, bodies } = aiSdkClient(weatherTurns());
    const result = await generateText({
      model,
      prompt: "Weather in Paris?",
      tools: {
        weather: tool({
          inputSchema: weatherInput,
          execute: async ({ city, unit }) => ({ city, temperature: `21 ${unit}` }),
        }),
      },
      stopWhen: stepCountIs(3),
    });
    expect(result.steps).toHaveLength(2);
    expect(result.steps[0]?.toolResults[0]).toMatchObject({
      toolCallId: "call_paris",
      output: { city: "Paris", temperature: "21 C" },
    });
    expect(result.text).toBe('The tool said: {"city":"Paris","temperature":"21 C"}');
    expect(result.finishReason).toBe("stop");
    expect(bodies[1]?.input).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ type: "function_call", call_id: "call_paris", name: "weather" }),
        {
          type: "function_call_output",
          call_id: "call_paris",
          output: '{"city":"Paris","temperature":"21 C"}',
        },
      ]),
    );
    expect(fast.engineRequests[1]?.items.at(-1)).toEqual({
      type: "function-result",
      callId: "call_paris",
      name: "weather",
      output: '{"city":"Paris","temperature":"21 C"}',
    });
  });

  it("streamText: a tool call streams its arguments and arrives parsed", async () => {
    const { model } = aiSdkClient(weatherTurns());
    const result = streamText({
      model,
      prompt: "Weather in Paris?",
      tools: { weather: tool({ inputSchema: weatherInput }) },
    });
    const argumentDeltas: string[] = [];
    for await (const part of result.fullStream) {
      if (part.type === "tool-input-delta") argumentDeltas.push(part.delta);
      if (part.type === "error") throw part.error;
    }
    expect(argumentDeltas.join("")).toBe('{"city":"Paris","unit":"C"}');
    expect(await result.toolCalls).toEqual([
      expect.objectContaining({
        toolCallId: "call_paris",
        toolName: "weather",
        input: { city: "Paris", unit: "C" },
      }),
    ]);
    expect(await result.finishReason).toBe("tool-calls");
  });

  it("regression: text before a tool call comes back as an item_reference in the next step", async () => {
    const { fast, model, bodies } = aiSdkClient(weatherTurns({ textBeforeCall: "Let me check." }));
    const result = await generateText({
      model,
      prompt: "Weather in Paris?",
      tools: { weather: tool({ inputSchema: weatherInput, execute: async () => "sunny" }) },
      stopWhen: stepCountIs(3),
    });
    expect(result.text).toBe("The tool said: sunny");
    const [reference] = (bodies[1]?.input as { type?: string; id?: string }[]).filter(
      (item) => item.type === "item_reference",
    );
    expect(reference?.id).toMatch(/^msg_/);
    expect(renderScriptedPrompt(fast.engineRequests[1]?.items ?? [])).toBe(
      [
        "<user> Weather in Paris?",
        "<assistant> Let me check.",
        '<call call_paris> weather {"city":"Paris","unit":"C"}',
        "<result call_paris> sunny",
      ].join("\n"),
    );
  });

  it("regression: a multi-turn chat re-sends the assistant's earlier reply as an item_reference", async () => {
    const { fast, model, bodies } = aiSdkClient();
    const messages: ModelMessage[] = [{ role: "user", content: "My name is Ada." }];
    const first = await generateText({ model, messages });
    messages.push(...first.response.messages, { role: "user", content: "What is my name?" });
    const second = await generateText({ model, messages });
    expect(second.text).toBe("You said: What is my name?");
    expect(bodies[1]).not.toHaveProperty("previous_response_id");
    expect(bodies[1]?.input).toContainEqual({ type: "item_reference", id: expect.stringMatching(/^msg_/) });
    expect(renderScriptedPrompt(fast.engineRequests[1]?.items ?? [])).toBe(
      "<user> My name is Ada.\n<assistant> You said: My name is Ada.\n<user> What is my name?",
    );
    // The referenced item is stored as the new response's input, resolved.
    const inputItems = fast.store.get(String(second.providerMetadata?.openai?.responseId))?.inputItems;
    expect(inputItems?.[1]).toMatchObject({ type: "message", role: "assistant" });
  });

  it("continues a conversation through providerOptions.openai.previousResponseId", async () => {
    const { fast, model, bodies } = aiSdkClient();
    const first = await generateText({ model, prompt: "My name is Ada." });
    const previousResponseId = String(first.providerMetadata?.openai?.responseId);
    const second = await generateText({
      model,
      prompt: "What is my name?",
      providerOptions: { openai: { previousResponseId } },
    });
    expect(bodies[1]).toMatchObject({ previous_response_id: previousResponseId });
    expect(stored(fast, second.providerMetadata?.openai?.responseId).previous_response_id).toBe(
      previousResponseId,
    );
    expect(renderScriptedPrompt(fast.engineRequests[1]?.items ?? [])).toBe(
      "<user> My name is Ada.\n<assistant> You said: My name is Ada.\n<user> What is my name?",
    );
  });

  it("returns structured output (Output.object → text.format json_schema), also streamed", async () => {
    const { fast, model } = aiSdkClient();
    const schema = z.object({ said: z.string() });
    const result = await generateText({ model, prompt: "json please", output: Output.object({ schema }) });
    expect(result.output).toEqual({ said: "json please" });
    expect(fast.engineRequests[0]?.responseFormat).toMatchObject({ type: "json_schema" });

    const streamed = streamText({ model, prompt: "stream json", output: Output.object({ schema }) });
    const partials: unknown[] = [];
    for await (const partial of streamed.partialOutputStream) partials.push(partial);
    expect(partials.at(-1)).toEqual({ said: "stream json" });
    expect(await streamed.output).toEqual({ said: "stream json" });
  });
});
