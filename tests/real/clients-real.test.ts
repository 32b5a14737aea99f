/**
 * Real clients on real inference: the official `openai` SDK, the Vercel AI SDK and the OpenAI Agents SDK
 * drive a function-tool
 * round trip through the whole app on stories260K-chatml (node-llama-cpp, SQLite). The tiny model does not
 * choose tools by itself, so the first step forces a call (`tool_choice: "required"`, which constrains the
 * output to a call of a listed tool with arguments matching its schema) and the second step answers in
 * text with the tool's result in its prompt.
 */
import { createOpenAI } from "@ai-sdk/openai";
import { Agent, OpenAIResponsesModel, run, setTracingDisabled, tool as agentTool } from "@openai/agents";
import { generateText, stepCountIs, tool } from "ai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { agentsClientFor } from "../helpers/agents-openai.js";
import { createRealApp, type RealApp } from "../helpers/real-app.js";

const CHATML = "stories260K-chatml";

let real: RealApp;
beforeAll(async () => {
  setTracingDisabled(true);
  real = await createRealApp();
});
afterAll(async () => {
  await real.close();
});

const weatherTool = {
  type: "function" as const,
  name: "get_weather",
  description: "The weather in a city",
  strict: true,
  parameters: {
    type: "object",
    properties: { city: { type: "string", maxLength: 20 }, unit: { type: "string", enum: ["C", "F"] } },
    required: ["city", "unit"],
    additionalProperties: false,
  },
};

describe("real clients on the real engine", () => {
  it("openai SDK: a forced function call, its output chained with previous_response_id, then text", async () => {
    const first = await real.client.responses.create({
      model: CHATML,
      input: "What is the weather in Paris?",
      tools: [weatherTool],
      tool_choice: "required",
      temperature: 0,
      max_output_tokens: 128,
    });
    expect(first.status).toBe("completed");
    const call = first.output.find((item) => item.type === "function_call");
    expect(call).toBeDefined();
    if (call?.type !== "function_call") throw new Error("no function call");
    expect(call.name).toBe("get_weather");
    const args = JSON.parse(call.arguments) as { city: unknown; unit: unknown };
    expect(typeof args.city).toBe("string");
    expect(["C", "F"]).toContain(args.unit);

    const second = await real.client.responses.create({
      model: CHATML,
      previous_response_id: first.id,
      input: [{ type: "function_call_output", call_id: call.call_id, output: "Sunny, 21 degrees." }],
      tools: [weatherTool],
      tool_choice: "none",
      temperature: 0,
      max_output_tokens: 16,
    });
    expect(["completed", "incomplete"]).toContain(second.status);
    expect(second.output_text.length).toBeGreaterThan(0);
    expect(second.output.some((item) => item.type === "function_call")).toBe(false);
    // The chained turn reused the first turn's KV cache.
    expect(second.usage?.input_tokens_details.cached_tokens ?? 0).toBeGreaterThan(0);
    const items = await real.client.responses.inputItems.list(second.id);
    expect(items.data.map((item) => item.type)).toEqual(["function_call_output"]);
  });

  it("Vercel AI SDK: generateText runs the tool the model called and sends its result back", async () => {
    const provider = createOpenAI({
      baseURL: "http://lmhost.test/v1",
      apiKey: "unused",
      fetch: (url, init) => Promise.resolve(real.app.request(String(url), init)),
    });
    const seen: { city: string; unit: string }[] = [];
    const result = await generateText({
      model: provider.responses(CHATML),
      prompt: "What is the weather in Paris?",
      temperature: 0,
      maxOutputTokens: 128,
      tools: {
        get_weather: tool({
          description: "The weather in a city",
          inputSchema: z.object({ city: z.string().max(20), unit: z.enum(["C", "F"]) }),
          execute: async (input) => {
            seen.push(input);
            return "Sunny, 21 degrees.";
          },
        }),
      },
      // Step 1 must call the tool (the tiny model would not); step 2 answers in text.
      prepareStep: ({ stepNumber }) => ({ toolChoice: stepNumber === 0 ? "required" : "none" }),
      stopWhen: stepCountIs(2),
    });
    expect(seen).toHaveLength(1);
    expect(["C", "F"]).toContain(seen[0]?.unit);
    expect(result.steps).toHaveLength(2);
    expect(result.steps[0]?.toolCalls.map((call) => call.toolName)).toEqual(["get_weather"]);
    expect(result.steps[0]?.toolResults.map((toolResult) => toolResult.output)).toEqual([
      "Sunny, 21 degrees.",
    ]);
    expect(result.text.length).toBeGreaterThan(0);
    // The second step's request carried the tool's result to the model.
    expect(JSON.stringify(result.steps[1]?.request.body)).toContain("Sunny, 21 degrees.");
  });

  it("OpenAI Agents SDK: run() executes the tool the model was made to call", async () => {
    const client = agentsClientFor((url, init) => real.app.request(url, init));
    const seen: string[] = [];
    const agent = new Agent({
      name: "Weather",
      instructions: "Answer questions about the weather.",
      model: new OpenAIResponsesModel(client, CHATML),
      modelSettings: { toolChoice: "required", temperature: 0, maxTokens: 128 },
      tools: [
        agentTool({
          name: "get_weather",
          description: "The weather in a city",
          parameters: z.object({ city: z.string().max(20), unit: z.enum(["C", "F"]) }),
          execute: async ({ city, unit }) => {
            seen.push(unit);
            return `Sunny in ${city}, 21 degrees ${unit}.`;
          },
        }),
      ],
      // The tool's output is the answer: the run ends after one model call and one tool call.
      toolUseBehavior: "stop_on_first_tool",
    });
    const result = await run(agent, "What is the weather in Paris?");
    expect(seen).toHaveLength(1);
    expect(result.finalOutput).toMatch(/^Sunny in .*, 21 degrees [CF]\.$/);
    const called = result.newItems.filter((item) => item.type === "tool_call_item");
    expect(called).toHaveLength(1);
  });

  it("OpenAI Agents SDK: an agent with tools and an outputType gets a parsed object", async () => {
    // The Agents SDK sends tools and text.format json_schema together (peers answer 400): the model may
    // call a tool, and its final text follows the schema.
    const client = agentsClientFor((url, init) => real.app.request(url, init));
    const agent = new Agent({
      name: "Weather",
      instructions: "Answer questions about the weather.",
      model: new OpenAIResponsesModel(client, CHATML),
      modelSettings: { temperature: 0, maxTokens: 128 },
      tools: [
        agentTool({
          name: "get_weather",
          description: "The weather in a city",
          parameters: z.object({ city: z.string().max(20) }),
          execute: async ({ city }) => `Sunny in ${city}.`,
        }),
      ],
      outputType: z.object({ answer: z.string().max(40), sunny: z.boolean() }),
    });
    const result = await run(agent, "Is it sunny in Paris?", { maxTurns: 4 });
    const output = result.finalOutput;
    expect(output).toBeDefined();
    expect(Object.keys(output ?? {}).sort()).toEqual(["answer", "sunny"]);
    expect(typeof output?.sunny).toBe("boolean");
  });
});
