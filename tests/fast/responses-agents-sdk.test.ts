/**
 * The OpenAI Agents SDK (`@openai/agents`) against lmhost: `OpenAIResponsesModel` over the `openai`
 * client the Agents SDK itself depends on (v7, resolved from its own dependency tree), its fetch routed
 * into `app.request`, tracing off. Runs (plain and streamed), a function tool the agent executes (the
 * follow-up request carries the function_call_output), server-side chains through previousResponseId,
 * structured output, handoffs, and the global setDefaultOpenAIClient + setOpenAIAPI("responses") setup.
 */
import {
  Agent,
  OpenAIResponsesModel,
  run,
  setDefaultOpenAIClient,
  setOpenAIAPI,
  setTracingDisabled,
  tool,
  user,
} from "@openai/agents";
import { beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { renderScriptedPrompt, type ScriptedTurn } from "../../src/engine/scripted/scripted-engine.js";
import type { EngineRequest } from "../../src/engine/types.js";
import { agentsOpenAI, requireFromAgents, type AgentsOpenAIClient } from "../helpers/agents-openai.js";
import { createFastApp, TEST_MODEL, type FastApp } from "../helpers/fast-app.js";

interface AgentsClient {
  fast: FastApp;
  client: AgentsOpenAIClient;
  model: OpenAIResponsesModel;
  /** The JSON body of every POST /v1/responses the SDK sent, in order. */
  bodies: Record<string, unknown>[];
}

function agentsClient(respond?: (request: EngineRequest) => ScriptedTurn): AgentsClient {
  const fast = createFastApp(respond === undefined ? {} : { respond });
  const bodies: Record<string, unknown>[] = [];
  const client = new agentsOpenAI.OpenAI({
    baseURL: "http://lmhost.test/v1",
    apiKey: "x",
    maxRetries: 0,
    fetch: (url, init) => {
      if (typeof init?.body === "string") bodies.push(JSON.parse(init.body) as Record<string, unknown>);
      return Promise.resolve(fast.app.request(String(url), init));
    },
  });
  return { fast, client, model: new OpenAIResponsesModel(client, TEST_MODEL), bodies };
}

/** Calls `weather` for Paris (after some text) after a user turn, answers with the tool's output after one. */
function weatherTurns(request: EngineRequest): ScriptedTurn {
  const last = request.items.at(-1);
  if (last?.type === "function-result") return { text: `Forecast: ${last.output}` };
  const earlierCalls = request.items.filter((item) => item.type === "function-call").length;
  return {
    text: "Let me check.",
    toolCalls: [
      {
        callId: earlierCalls === 0 ? "call_paris" : `call_paris_${earlierCalls + 1}`,
        name: "weather",
        arguments: '{"city":"Paris"}',
      },
    ],
  };
}

function weatherTool(calls: string[]) {
  return tool({
    name: "weather",
    description: "Current weather for a city",
    parameters: z.object({ city: z.string() }),
    execute: async ({ city }) => {
      calls.push(city);
      return `sunny in ${city}`;
    },
  });
}

beforeAll(() => {
  setTracingDisabled(true);
});

describe("OpenAI Agents SDK against lmhost", () => {
  it("uses the openai v7 client the Agents SDK depends on", () => {
    const { VERSION } = requireFromAgents("openai/version") as {
      VERSION: string;
    };
    expect(VERSION).toMatch(/^7\./);
  });

  it("run(agent, 'hello'): finalOutput is the scripted reply", async () => {
    const { fast, model, bodies } = agentsClient();
    const agent = new Agent({ name: "Greeter", instructions: "Be nice.", model });
    const result = await run(agent, "hello");
    expect(result.finalOutput).toBe("You said: hello");
    expect(result.lastResponseId).toMatch(/^resp_/);
    expect(fast.store.get(result.lastResponseId ?? "")?.status).toBe("completed");
    expect(bodies[0]).toMatchObject({ model: TEST_MODEL, instructions: "Be nice.", stream: false });
    expect(renderScriptedPrompt(fast.engineRequests[0]?.items ?? [])).toBe("<system> Be nice.\n<user> hello");
    expect(result.rawResponses[0]?.usage.outputTokens).toBe(3);
  });

  it("accepts the model settings the SDK sends", async () => {
    const { fast, model, bodies } = agentsClient();
    const agent = new Agent({
      name: "Tuned",
      model,
      modelSettings: {
        temperature: 0.3,
        topP: 0.9,
        maxTokens: 50,
        truncation: "auto",
        store: true,
        text: { verbosity: "low" },
        reasoning: { effort: "low", summary: "auto" },
        promptCacheRetention: "24h",
      },
    });
    const result = await run(agent, "tuned");
    expect(result.finalOutput).toBe("You said: tuned");
    expect(bodies[0]).toMatchObject({ temperature: 0.3, top_p: 0.9, max_output_tokens: 50 });
    expect(fast.engineRequests[0]).toMatchObject({
      sampling: { temperature: 0.3, topP: 0.9, maxTokens: 50 },
      truncation: "auto",
      reasoningEffort: "low",
    });
  });

  it("executes a function tool: the follow-up request carries the function_call_output", async () => {
    const { fast, model, bodies } = agentsClient(weatherTurns);
    const calls: string[] = [];
    const agent = new Agent({ name: "Weather", model, tools: [weatherTool(calls)] });
    const result = await run(agent, "Weather in Paris?");
    expect(calls).toEqual(["Paris"]);
    expect(result.finalOutput).toBe("Forecast: sunny in Paris");
    expect(bodies).toHaveLength(2);
    expect(bodies[0]?.tools).toEqual([
      expect.objectContaining({ type: "function", name: "weather", strict: true }),
    ]);
    expect(bodies[1]?.input).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ type: "function_call", call_id: "call_paris", name: "weather" }),
        expect.objectContaining({
          type: "function_call_output",
          call_id: "call_paris",
          output: "sunny in Paris",
        }),
      ]),
    );
    expect(renderScriptedPrompt(fast.engineRequests[1]?.items ?? [])).toBe(
      [
        "<user> Weather in Paris?",
        "<assistant> Let me check.",
        '<call call_paris> weather {"city":"Paris"}',
        "<result call_paris> sunny in Paris",
      ].join("\n"),
    );
    expect(result.newItems.map((item) => item.type)).toEqual([
      "message_output_item",
      "tool_call_item",
      "tool_call_output_item",
      "message_output_item",
    ]);
  });

  it("streams a run with a tool call: the text stream holds both turns' text", async () => {
    const { model, bodies } = agentsClient(weatherTurns);
    const calls: string[] = [];
    const agent = new Agent({ name: "Weather", model, tools: [weatherTool(calls)] });
    const result = await run(agent, "Weather in Paris?", { stream: true });
    let text = "";
    for await (const delta of result.toTextStream()) text += delta;
    await result.completed;
    expect(result.error).toBeNull();
    expect(calls).toEqual(["Paris"]);
    expect(text).toBe("Let me check.Forecast: sunny in Paris");
    expect(result.finalOutput).toBe("Forecast: sunny in Paris");
    expect(bodies.map((body) => body.stream)).toEqual([true, true]);
  });

  it("chains runs and tool loops server-side through previousResponseId", async () => {
    const { fast, model, bodies } = agentsClient(weatherTurns);
    const calls: string[] = [];
    const agent = new Agent({ name: "Weather", model, tools: [weatherTool(calls)] });
    const first = await run(agent, "Weather in Paris?");
    const previousResponseId = first.lastResponseId ?? "";
    expect(previousResponseId).toMatch(/^resp_/);
    const second = await run(agent, "And tomorrow?", { previousResponseId });
    expect(calls).toEqual(["Paris", "Paris"]);
    expect(second.finalOutput).toBe("Forecast: sunny in Paris");
    expect(bodies).toHaveLength(4);
    // The second run sends only what is new: the user turn, then only the tool output.
    expect(bodies[2]).toMatchObject({
      previous_response_id: previousResponseId,
      input: [{ role: "user", content: "And tomorrow?" }],
    });
    const thirdResponseId = second.rawResponses[0]?.responseId;
    expect(thirdResponseId).toMatch(/^resp_/);
    expect(bodies[3]).toMatchObject({
      previous_response_id: thirdResponseId,
      input: [{ type: "function_call_output", call_id: "call_paris_2", output: "sunny in Paris" }],
    });
    expect(renderScriptedPrompt(fast.engineRequests[3]?.items ?? [])).toBe(
      [
        "<user> Weather in Paris?",
        "<assistant> Let me check.",
        '<call call_paris> weather {"city":"Paris"}',
        "<result call_paris> sunny in Paris",
        "<assistant> Forecast: sunny in Paris",
        "<user> And tomorrow?",
        "<assistant> Let me check.",
        '<call call_paris_2> weather {"city":"Paris"}',
        "<result call_paris_2> sunny in Paris",
      ].join("\n"),
    );
  });

  it("continues a conversation by re-sending result.history (items with their lmhost ids)", async () => {
    const { fast, model, bodies } = agentsClient();
    const agent = new Agent({ name: "Chat", model });
    const first = await run(agent, "My name is Ada.");
    const second = await run(agent, [...first.history, user("What is my name?")]);
    expect(second.finalOutput).toBe("You said: What is my name?");
    expect(bodies[1]?.input).toContainEqual(
      expect.objectContaining({ type: "message", role: "assistant", id: expect.stringMatching(/^msg_/) }),
    );
    expect(renderScriptedPrompt(fast.engineRequests[1]?.items ?? [])).toBe(
      "<user> My name is Ada.\n<assistant> You said: My name is Ada.\n<user> What is my name?",
    );
  });

  it("returns structured output for an outputType", async () => {
    const { fast, model } = agentsClient();
    const agent = new Agent({ name: "Json", model, outputType: z.object({ said: z.string() }) });
    const result = await run(agent, "json please");
    expect(result.finalOutput).toEqual({ said: "json please" });
    expect(fast.engineRequests[0]?.responseFormat).toMatchObject({ type: "json_schema" });
  });

  it("hands off to another agent through a transfer tool call", async () => {
    const { model, bodies } = agentsClient((request) =>
      request.items.some((item) => item.type === "message" && item.text === "You are the French agent.")
        ? { text: "Bonjour !" }
        : { toolCalls: [{ callId: "call_handoff", name: "transfer_to_French", arguments: "{}" }] },
    );
    const french = new Agent({ name: "French", instructions: "You are the French agent.", model });
    const triage = new Agent({ name: "Triage", model, handoffs: [french] });
    const result = await run(triage, "Parlez-vous français ?");
    expect(result.finalOutput).toBe("Bonjour !");
    expect(result.lastAgent?.name).toBe("French");
    expect(bodies[1]).toMatchObject({ instructions: "You are the French agent." });
    expect(bodies[1]?.input).toContainEqual(
      expect.objectContaining({ type: "function_call_output", call_id: "call_handoff" }),
    );
  });

  it("works with setDefaultOpenAIClient + setOpenAIAPI('responses') and a model name", async () => {
    const { fast, client } = agentsClient();
    setDefaultOpenAIClient(client);
    setOpenAIAPI("responses");
    const agent = new Agent({ name: "Default", model: TEST_MODEL });
    const result = await run(agent, "hello");
    expect(result.finalOutput).toBe("You said: hello");
    expect(fast.engineRequests).toHaveLength(1);
  });
});
