/**
 * Reasoning on the REAL engine: stories260K-chatml served under the fixture thinking template
 * (tests/fixtures/templates/thinking-chatml.jinja, whose generation prompt opens `<think>` and which reads
 * `enable_thinking`). Small budgets from config (low 8, high 32) keep it fast: low thinks fewer tokens than
 * high, none has no reasoning item, max_output_tokens spent inside the thought ends `incomplete` with the
 * reasoning item only, the stream orders reasoning deltas before text, and usage counts them. Summaries
 * (the reasoning text itself) stream spec-valid; encrypted_content round-trips through a second
 * `store: false` request and a tampered blob is a 400 naming the item; the official SDK's stream
 * accumulator accepts it all.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readResponseEvents } from "../helpers/fast-app.js";
import { templatesDir } from "../helpers/paths.js";
import { createRealApp, type RealApp } from "../helpers/real-app.js";
import { loadSpecValidator, type SpecValidator } from "../helpers/spec-validator.js";

const CHATML = "stories260K-chatml";
const template = readFileSync(path.join(templatesDir, "thinking-chatml.jinja"), "utf8");

interface OutputItem {
  type: string;
  id?: string;
  encrypted_content?: string | null;
  content?: { type: string; text: string }[];
  summary?: { type: string; text: string }[];
}
interface ResponseBody {
  status: string;
  output: OutputItem[];
  reasoning: unknown;
  usage: { output_tokens: number; output_tokens_details: { reasoning_tokens: number } };
  incomplete_details: { reason: string } | null;
}

let real: RealApp;
let spec: SpecValidator;

beforeAll(async () => {
  // Only the ChatML model thinks; stories260K keeps its own (Llama 2) template, which has no thought.
  real = await createRealApp({
    modelOverrides: { [CHATML]: { chatTemplate: template } },
    reasoningBudgets: { low: 8, high: 32 },
  });
  spec = loadSpecValidator();
}, 60_000);

afterAll(async () => {
  await real.close();
});

async function create(body: Record<string, unknown>): Promise<ResponseBody> {
  const response = await real.post("/v1/responses", { model: CHATML, input: "Tell me a story.", ...body });
  const json = (await response.json()) as ResponseBody;
  expect(response.status, JSON.stringify(json)).toBe(200);
  // Open Responses lists no "minimal" effort; OpenAI's spec does (the echo is what the client sent).
  const minimal = (body["reasoning"] as { effort?: string } | undefined)?.effort === "minimal";
  spec.assertResponse(json, { openResponses: !minimal });
  return json;
}

describe("reasoning effort on the fixture thinking template", () => {
  it("low thinks fewer tokens than high, each within its budget, and the answer follows the thought", async () => {
    const low = await create({ reasoning: { effort: "low" }, max_output_tokens: 64, temperature: 0 });
    const high = await create({ reasoning: { effort: "high" }, max_output_tokens: 64, temperature: 0 });
    for (const [response, budget] of [
      [low, 8],
      [high, 32],
    ] as const) {
      expect(response.output.map((item) => item.type)).toEqual(["reasoning", "message"]);
      // A budget of N lets N thought tokens through; the thought is then closed and the answer begins.
      expect(response.usage.output_tokens_details.reasoning_tokens).toBe(budget);
      expect(response.usage.output_tokens).toBeGreaterThan(budget);
    }
    expect(low.usage.output_tokens_details.reasoning_tokens).toBeLessThan(
      high.usage.output_tokens_details.reasoning_tokens,
    );
    expect(low.reasoning).toMatchObject({ effort: "low" });
  }, 60_000);

  it.each(["none", "minimal"] as const)(
    "%s turns thinking off through the template's enable_thinking: no reasoning item, 0 reasoning tokens",
    async (effort) => {
      const response = await create({ reasoning: { effort }, max_output_tokens: 24 });
      expect(response.output.map((item) => item.type)).toEqual(["message"]);
      expect(response.usage.output_tokens_details.reasoning_tokens).toBe(0);
      expect(response.reasoning).toMatchObject({ effort });
    },
    60_000,
  );

  it("a model that cannot think: the request succeeds, reasoning is echoed, no reasoning item", async () => {
    const response = await create({
      model: "stories260K",
      reasoning: { effort: "high", summary: "auto" },
      max_output_tokens: 16,
    });
    expect(response.output.map((item) => item.type)).toEqual(["message"]);
    expect(response.usage.output_tokens_details.reasoning_tokens).toBe(0);
    expect(response.reasoning).toEqual({ effort: "high", summary: "auto" });
  }, 60_000);

  it.each([1, 2, 3])(
    "max_output_tokens spent inside the thought: incomplete, with the reasoning item only (run %i)",
    async () => {
      const response = await create({ reasoning: { effort: "xhigh" }, max_output_tokens: 16 });
      expect(response.status).toBe("incomplete");
      expect(response.incomplete_details).toEqual({ reason: "max_output_tokens" });
      expect(response.output.map((item) => item.type)).toEqual(["reasoning"]);
      // The thought was cut short: its item is incomplete too.
      expect((response.output[0] as { status?: string }).status).toBe("incomplete");
      expect(response.usage.output_tokens).toBe(16);
      expect(response.usage.output_tokens_details.reasoning_tokens, JSON.stringify(response)).toBe(16);
    },
    60_000,
  );

  it("streams the reasoning item token by token before the message, spec-valid, with usage counting it", async () => {
    const response = await real.post("/v1/responses", {
      model: CHATML,
      input: "Tell me a story.",
      reasoning: { effort: "low" },
      max_output_tokens: 48,
      stream: true,
    });
    const events = await readResponseEvents(response);
    for (const event of events) spec.assertStreamEvent(event);
    const types = events.map((event) => event.type as string);
    const firstText = types.indexOf("response.output_text.delta");
    const reasoningDeltas = types.filter((type) => type === "response.reasoning_text.delta").length;
    expect(reasoningDeltas).toBeGreaterThan(1);
    expect(firstText).toBeGreaterThan(types.lastIndexOf("response.reasoning_text.delta"));
    const order = types.filter(
      (type) =>
        type === "response.output_item.added" ||
        type === "response.reasoning_text.done" ||
        type === "response.output_item.done",
    );
    expect(order).toEqual([
      "response.output_item.added",
      "response.reasoning_text.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.output_item.done",
    ]);
    // The story may run past max_output_tokens (incomplete) or end (completed); the thought is 8 tokens either way.
    const final = events.at(-1) as { type: string; response: ResponseBody };
    expect(["response.completed", "response.incomplete"]).toContain(final.type);
    expect(final.response.usage.output_tokens_details.reasoning_tokens).toBe(8);
  }, 60_000);
});

describe("a JSON format on the thinking template", () => {
  const format = {
    type: "json_schema",
    name: "pet",
    strict: true,
    schema: {
      type: "object",
      properties: {
        name: { type: "string", maxLength: 12 },
        age: { type: "integer", minimum: 0, maximum: 20 },
      },
      required: ["name", "age"],
      additionalProperties: false,
    },
  };

  // The grammar applied from the first token, inside the thought the prompt opens: the JSON came back as
  // the reasoning item, with no message (and output_parsed null in the SDK).
  it.each([
    ["low", 8],
    ["high", 32],
  ] as const)(
    "effort %s: the thought (%i tokens) is reasoning, then the message holds JSON valid for the schema",
    async (effort, budget) => {
      for (const seed of [1, 2]) {
        const response = await create({
          reasoning: { effort },
          text: { format },
          max_output_tokens: 160,
          temperature: 1,
          seed,
        });
        expect(response.output.map((item) => item.type)).toEqual(["reasoning", "message"]);
        expect(response.status).toBe("completed");
        const text = response.output[1]?.content?.[0]?.text ?? "";
        const parsed = JSON.parse(text) as { name: unknown; age: unknown };
        expect(typeof parsed.name).toBe("string");
        expect(Number.isInteger(parsed.age)).toBe(true);
        const thought = response.output[0]?.content?.[0]?.text ?? "";
        expect(thought).not.toContain('"age"');
        expect(response.usage.output_tokens_details.reasoning_tokens).toBe(budget);
        expect(response.usage.output_tokens).toBeGreaterThan(budget);
      }
    },
    60_000,
  );

  it("beside tools the model may call: a text answer is the thought, then the JSON message", async () => {
    const tools = [{ type: "function", name: "get_weather", parameters: { type: "object", properties: {} } }];
    const answered: string[][] = [];
    for (const seed of [1, 2, 3, 4]) {
      const response = await create({
        reasoning: { effort: "low" },
        text: { format },
        tools,
        max_output_tokens: 160,
        temperature: 1,
        seed,
      });
      const types = response.output.map((item) => item.type);
      if (types.includes("function_call")) continue;
      answered.push(types);
      JSON.parse(response.output.at(-1)?.content?.[0]?.text ?? "");
      expect(response.usage.output_tokens_details.reasoning_tokens).toBe(8);
    }
    expect(answered.length).toBeGreaterThan(0);
    for (const types of answered) expect(types).toEqual(["reasoning", "message"]);
  }, 60_000);

  it("in a short context the answer after the thought stops at the context's end, never shifting it", async () => {
    // The answer's room was the context less the prompt and the thought, without the closing tags and the
    // re-rendered thought: with max_output_tokens unset, node-llama-cpp shifted the context mid-answer.
    const small = await createRealApp({
      modelOverrides: { [CHATML]: { chatTemplate: template, contextLength: 256 } },
      reasoningBudgets: { low: 8 },
    });
    try {
      const long = {
        ...format,
        schema: {
          type: "object",
          properties: { story: { type: "string", minLength: 600, maxLength: 700 } },
          required: ["story"],
          additionalProperties: false,
        },
      };
      const response = await small.post("/v1/responses", {
        model: CHATML,
        input: "Tell me a story.",
        reasoning: { effort: "low" },
        text: { format: long },
      });
      const json = (await response.json()) as ResponseBody & { usage: { input_tokens: number } };
      expect(response.status, JSON.stringify(json)).toBe(200);
      expect(json.status).toBe("incomplete");
      expect(json.output.map((item) => item.type)).toEqual(["reasoning", "message"]);
      // The prompt, the thought, its closing tags (`\n</think>\n\n`: more than 8 tokens in this 512-token
      // vocabulary) and the answer must share the 256 tokens; a shifted context let them reach 255.
      expect(json.usage.input_tokens + json.usage.output_tokens).toBeLessThanOrEqual(256 - 8);
    } finally {
      await small.close();
    }
  }, 60_000);

  it("thinking off (effort none): no reasoning item, the message is the JSON", async () => {
    const response = await create({
      reasoning: { effort: "none" },
      text: { format },
      max_output_tokens: 160,
    });
    expect(response.output.map((item) => item.type)).toEqual(["message"]);
    JSON.parse(response.output[0]?.content?.[0]?.text ?? "");
    expect(response.usage.output_tokens_details.reasoning_tokens).toBe(0);
  }, 60_000);

  it("streamed: reasoning deltas, then JSON deltas in the message, spec-valid", async () => {
    const response = await real.post("/v1/responses", {
      model: CHATML,
      input: "Tell me a story.",
      reasoning: { effort: "low" },
      text: { format },
      max_output_tokens: 160,
      stream: true,
    });
    const events = await readResponseEvents(response);
    for (const event of events) spec.assertStreamEvent(event);
    const types = events.map((event) => event.type as string);
    expect(types.lastIndexOf("response.reasoning_text.delta")).toBeLessThan(
      types.indexOf("response.output_text.delta"),
    );
    const final = events.at(-1) as { type: string; response: ResponseBody };
    expect(final.type).toBe("response.completed");
    JSON.parse(final.response.output[1]?.content?.[0]?.text ?? "");
  }, 60_000);
});

describe("a forced call on the thinking template", () => {
  const tools = [
    {
      type: "function",
      name: "get_weather",
      strict: true,
      parameters: {
        type: "object",
        properties: { city: { type: "string", maxLength: 20 } },
        required: ["city"],
        additionalProperties: false,
      },
    },
  ];

  // The call's prefix ended the prompt inside the thought it opens: the arguments were counted as
  // reasoning, empty reasoning items came before and after the call, and a call cut short was "completed".
  it("effort low: the thought (8 tokens), then the call with valid arguments", async () => {
    for (const seed of [1, 2]) {
      const response = await create({
        reasoning: { effort: "low" },
        tools,
        tool_choice: "required",
        max_output_tokens: 120,
        seed,
      });
      expect(response.output.map((item) => item.type)).toEqual(["reasoning", "function_call"]);
      const call = response.output[1] as { status?: string; arguments?: string };
      expect(call.status).toBe("completed");
      expect(typeof (JSON.parse(call.arguments ?? "") as { city: unknown }).city).toBe("string");
      expect(response.usage.output_tokens_details.reasoning_tokens).toBe(8);
      expect(response.usage.output_tokens).toBeGreaterThan(8);
    }
  }, 60_000);

  it("a call cut short by max_output_tokens after the thought is incomplete", async () => {
    const response = await create({
      reasoning: { effort: "low" },
      tools,
      tool_choice: "required",
      max_output_tokens: 24,
      seed: 1,
    });
    expect(response.status).toBe("incomplete");
    expect(response.output.map((item) => item.type)).toEqual(["reasoning", "function_call"]);
    expect((response.output[1] as { status?: string }).status).toBe("incomplete");
    expect(response.usage.output_tokens).toBe(24);
    expect(response.usage.output_tokens_details.reasoning_tokens).toBe(8);
  }, 60_000);
});

describe("reasoning summaries and encrypted_content", () => {
  it("streams a summary (the reasoning text itself) after the reasoning text, spec-valid", async () => {
    const response = await real.post("/v1/responses", {
      model: CHATML,
      input: "Tell me a story.",
      reasoning: { effort: "low", summary: "auto" },
      max_output_tokens: 24,
      stream: true,
    });
    const events = await readResponseEvents(response);
    for (const event of events) spec.assertStreamEvent(event);
    const types = events.map((event) => event.type as string);
    const summaryTypes = types.filter((type) => type.startsWith("response.reasoning_summary_"));
    expect(summaryTypes).toEqual([
      "response.reasoning_summary_part.added",
      "response.reasoning_summary_text.delta",
      "response.reasoning_summary_text.done",
      "response.reasoning_summary_part.done",
    ]);
    expect(types.indexOf("response.reasoning_summary_part.added")).toBeGreaterThan(
      types.indexOf("response.reasoning_text.done"),
    );
    expect(types.indexOf("response.reasoning_summary_part.done")).toBeLessThan(
      types.indexOf("response.output_item.done"),
    );
    const final = events.at(-1) as { response: ResponseBody };
    const reasoning = final.response.output[0]!;
    const reasoningText = reasoning.content![0]!.text;
    expect(reasoning.summary).toEqual([{ type: "summary_text", text: reasoningText.trim() }]);
    const done = events.find((event) => event.type === "response.reasoning_summary_text.done") as {
      text: string;
    };
    expect(done.text).toBe(reasoningText.trim());
  }, 60_000);

  it("concise keeps the first paragraph; no summary asked, none given", async () => {
    const concise = await create({ reasoning: { effort: "low", summary: "concise" }, max_output_tokens: 24 });
    const text = concise.output[0]!.content![0]!.text.trim();
    const firstParagraph = text.split(/\n\s*\n/)[0]!.trim();
    expect(concise.output[0]!.summary).toEqual(
      firstParagraph === "" ? [] : [{ type: "summary_text", text: firstParagraph }],
    );
    const plain = await create({ reasoning: { effort: "low" }, max_output_tokens: 24 });
    expect(plain.output[0]!.summary).toEqual([]);
    expect(plain.output[0]!.encrypted_content).toBeUndefined();
  }, 60_000);

  it("encrypted_content round-trips through a second store: false request; a tampered blob is a 400 naming the item", async () => {
    const first = await create({
      reasoning: { effort: "low", summary: "auto" },
      include: ["reasoning.encrypted_content"],
      store: false,
      max_output_tokens: 24,
    });
    const reasoning = first.output[0] as OutputItem & { id: string; encrypted_content: string };
    expect(reasoning.type).toBe("reasoning");
    expect(typeof reasoning.encrypted_content).toBe("string");
    expect(reasoning.encrypted_content).not.toContain(reasoning.content![0]!.text);
    // What a stateless client (Codex) sends back: the item with its summary and blob, not the text.
    const returned = {
      type: "reasoning",
      id: reasoning.id,
      summary: [],
      encrypted_content: reasoning.encrypted_content,
    };
    const input = (item: unknown) => [
      { role: "user", content: "Tell me a story." },
      item,
      { role: "user", content: "More." },
    ];
    const second = await real.post("/v1/responses", {
      model: CHATML,
      input: input(returned),
      reasoning: { effort: "low" },
      include: ["reasoning.encrypted_content"],
      store: false,
      max_output_tokens: 8,
    });
    expect(second.status).toBe(200);
    spec.assertResponse(await second.json());
    // The restored text is in the prompt: the same turn counts more input tokens than without the item.
    const count = async (item: unknown) => {
      const response = await real.post("/v1/responses/input_tokens", { model: CHATML, input: input(item) });
      expect(response.status).toBe(200);
      return ((await response.json()) as { input_tokens: number }).input_tokens;
    };
    const withRestored = await count(returned);
    const withoutText = await count({ type: "reasoning", id: reasoning.id, summary: [] });
    expect(withRestored).toBeGreaterThan(withoutText);

    const blob = Buffer.from(reasoning.encrypted_content, "base64");
    blob[blob.length - 1] = blob[blob.length - 1]! ^ 1;
    for (const bad of [
      { ...returned, encrypted_content: blob.toString("base64") },
      { ...returned, id: "rs_someoneelse" },
    ]) {
      const refused = await real.post("/v1/responses", { model: CHATML, input: input(bad), store: false });
      expect(refused.status).toBe(400);
      const error = ((await refused.json()) as { error: { param: string; message: string } }).error;
      expect(error.param).toBe("input[1].encrypted_content");
      expect(error.message).toContain("input[1]");
    }
  }, 60_000);

  it("the official SDK's responses.stream(...).finalResponse() accepts reasoning, summary and encrypted_content", async () => {
    const stream = real.client.responses.stream({
      model: CHATML,
      input: "Tell me a story.",
      reasoning: { effort: "low", summary: "auto" },
      include: ["reasoning.encrypted_content"],
      store: false,
      max_output_tokens: 24,
    });
    const summaryDeltas: string[] = [];
    stream.on("response.reasoning_summary_text.delta", (event) => summaryDeltas.push(event.delta));
    const final = await stream.finalResponse();
    const reasoning = final.output[0];
    expect(reasoning?.type).toBe("reasoning");
    if (reasoning?.type !== "reasoning") return;
    expect(reasoning.summary[0]?.text).toBe(summaryDeltas.join(""));
    expect(reasoning.summary[0]?.text).toBe(reasoning.content?.[0]?.text.trim());
    expect(typeof reasoning.encrypted_content).toBe("string");
    expect(final.usage?.output_tokens_details.reasoning_tokens).toBe(8);
  }, 60_000);
});
