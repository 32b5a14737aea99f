/**
 * The bad-input table over HTTP: every malformed or unsupported request gets the right status with
 * `param` naming the exact field, and the app keeps serving afterwards.
 */
import { describe, expect, it } from "vitest";
import { createFastApp, TEST_MODEL } from "../helpers/fast-app.js";

interface BadCase {
  name: string;
  body: unknown;
  status: number;
  param: string | null;
  code?: string;
  message?: RegExp;
}

const ok = { model: TEST_MODEL, input: "hi" };

/** A schema exactly `levels` JSON levels deep (each object level with `properties` takes two). */
function nested(levels: number): Record<string, unknown> {
  let schema: Record<string, unknown> = { type: "string" };
  let depth = 1;
  for (; depth + 2 <= levels; depth += 2) schema = { type: "object", properties: { child: schema } };
  return depth < levels ? { type: "array", items: schema } : schema;
}

/** `{"a": {"a": … {}}}` nested `levels` deep, as JSON text (JSON.stringify itself would overflow). */
function deepJson(levels: number): string {
  return `${'{"a":'.repeat(levels - 1)}{}${"}".repeat(levels - 1)}`;
}

const badCases: BadCase[] = [
  {
    name: "missing model",
    body: { input: "hi" },
    status: 400,
    param: "model",
    code: "missing_required_parameter",
  },
  {
    name: "unknown model",
    body: { model: "nobody/nothing", input: "hi" },
    status: 404,
    param: "model",
    code: "model_not_found",
  },
  { name: "model of the wrong type", body: { model: 7, input: "hi" }, status: 400, param: "model" },
  {
    // It was code invalid_type, "expected a string or an array, but got undefined".
    name: "a function_call_output without its output",
    body: { ...ok, input: [{ type: "function_call_output", call_id: "call_1" }] },
    status: 400,
    param: "input[0].output",
    code: "missing_required_parameter",
  },
  {
    name: "two input items with one id",
    body: {
      ...ok,
      input: [
        { type: "message", id: "msg_a", role: "user", content: "one" },
        { type: "message", id: "msg_a", role: "user", content: "two" },
      ],
    },
    status: 400,
    param: "input",
  },
  {
    name: "input of the wrong type",
    body: { ...ok, input: 42 },
    status: 400,
    param: "input",
    message: /expected a string or an array/,
  },
  {
    name: "an input item that is not an object",
    body: { ...ok, input: ["hi"] },
    status: 400,
    param: "input[0]",
  },
  {
    name: "an unknown item type",
    body: { ...ok, input: [{ type: "telepathy", content: "x" }] },
    status: 400,
    param: "input[0].type",
  },
  {
    name: "an item type lmhost does not run",
    body: { ...ok, input: [{ type: "computer_call", id: "m" }] },
    status: 400,
    param: "input[0].type",
  },
  {
    name: "a bad role",
    body: {
      ...ok,
      input: [
        { role: "user", content: "a" },
        { role: "user", content: "b" },
        { role: "narrator", content: "c" },
      ],
    },
    status: 400,
    param: "input[2].role",
  },
  {
    name: "content of the wrong type",
    body: { ...ok, input: [{ role: "user", content: 5 }] },
    status: 400,
    param: "input[0].content",
  },
  {
    name: "an image part",
    body: {
      ...ok,
      input: [
        {
          role: "user",
          content: [
            { type: "input_text", text: "see" },
            { type: "input_image", image_url: "https://x/y.png" },
          ],
        },
      ],
    },
    status: 400,
    param: "input[0].content[1]",
    message: /does not accept images\/files/,
  },
  {
    name: "a file part in a tool output",
    body: {
      ...ok,
      input: [{ type: "function_call_output", call_id: "c", output: [{ type: "input_file", file_id: "f" }] }],
    },
    status: 400,
    param: "input[0].output[0]",
    message: /does not accept images\/files/,
  },
  {
    name: "a part without text",
    body: { ...ok, input: [{ role: "user", content: [{ type: "input_text" }] }] },
    status: 400,
    param: "input[0].content[0].text",
  },
  {
    name: "a function call without call_id",
    body: { ...ok, input: [{ type: "function_call", name: "f", arguments: "{}" }] },
    status: 400,
    param: "input[0].call_id",
  },
  {
    name: "an unknown item reference",
    body: { ...ok, input: [{ type: "item_reference", id: "msg_nope" }] },
    status: 400,
    param: "input[0].id",
  },
  { name: "temperature above 2", body: { ...ok, temperature: 2.5 }, status: 400, param: "temperature" },
  { name: "temperature below 0", body: { ...ok, temperature: -0.1 }, status: 400, param: "temperature" },
  {
    name: "temperature as a string",
    body: { ...ok, temperature: "warm" },
    status: 400,
    param: "temperature",
  },
  { name: "top_p above 1", body: { ...ok, top_p: 1.5 }, status: 400, param: "top_p" },
  {
    name: "max_output_tokens of 0",
    body: { ...ok, max_output_tokens: 0 },
    status: 400,
    param: "max_output_tokens",
  },
  {
    name: "a fractional max_output_tokens",
    body: { ...ok, max_output_tokens: 10.5 },
    status: 400,
    param: "max_output_tokens",
  },
  { name: "top_logprobs above 20", body: { ...ok, top_logprobs: 21 }, status: 400, param: "top_logprobs" },
  {
    name: "top_logprobs the engine cannot give",
    body: { ...ok, top_logprobs: 5 },
    status: 400,
    param: "top_logprobs",
    code: "unsupported_parameter",
  },
  {
    name: "presence_penalty out of range",
    body: { ...ok, presence_penalty: 3 },
    status: 400,
    param: "presence_penalty",
  },
  { name: "a bad truncation", body: { ...ok, truncation: "middle" }, status: 400, param: "truncation" },
  {
    name: "an unknown service_tier",
    body: { ...ok, service_tier: "gold" },
    status: 400,
    param: "service_tier",
  },
  {
    name: "17 metadata pairs",
    body: {
      ...ok,
      metadata: Object.fromEntries(Array.from({ length: 17 }, (_, index) => [`key${index}`, "v"])),
    },
    status: 400,
    param: "metadata",
  },
  {
    name: "a metadata key over 64 characters",
    body: { ...ok, metadata: { ["k".repeat(65)]: "v" } },
    status: 400,
    param: "metadata",
  },
  {
    name: "a metadata value over 512 characters",
    body: { ...ok, metadata: { note: "v".repeat(513) } },
    status: 400,
    param: "metadata.note",
  },
  {
    name: "a metadata value that is not a string",
    body: { ...ok, metadata: { count: 3 } },
    status: 400,
    param: "metadata.count",
  },
  {
    name: "a JSON schema that is not an object",
    body: { ...ok, text: { format: { type: "json_schema", name: "out", schema: "object" } } },
    status: 400,
    param: "text.format.schema",
  },
  {
    name: "a JSON schema with an unknown type",
    body: {
      ...ok,
      text: {
        format: {
          type: "json_schema",
          name: "out",
          schema: { type: "object", properties: { age: { type: "int" } } },
        },
      },
    },
    status: 400,
    param: "text.format.schema.properties.age.type",
    code: "invalid_json_schema",
  },
  {
    name: "a json_schema format without a name",
    body: { ...ok, text: { format: { type: "json_schema", schema: {} } } },
    status: 400,
    param: "text.format.name",
  },
  {
    name: "an unknown text format",
    body: { ...ok, text: { format: { type: "yaml" } } },
    status: 400,
    param: "text.format.type",
  },
  {
    name: "a bad verbosity",
    body: { ...ok, text: { verbosity: "loud" } },
    status: 400,
    param: "text.verbosity",
  },
  {
    name: "a function name with a dot",
    body: { ...ok, tools: [{ type: "function", name: "a.b" }] },
    status: 400,
    param: "tools[0].name",
  },
  {
    name: "an unknown tool type",
    body: { ...ok, tools: [{ type: "teleport" }] },
    status: 400,
    param: "tools[0].type",
  },
  {
    name: "duplicate function names",
    body: {
      ...ok,
      tools: [
        { type: "function", name: "f" },
        { type: "function", name: "f" },
      ],
    },
    status: 400,
    param: "tools[1].name",
  },
  {
    name: "tool_choice naming a missing function",
    body: { ...ok, tool_choice: { type: "function", name: "ghost" } },
    status: 400,
    param: "tool_choice.name",
  },
  {
    name: "tool_choice required without tools",
    body: { ...ok, tool_choice: "required" },
    status: 400,
    param: "tool_choice",
  },
  {
    name: "forcing a hosted tool",
    body: { ...ok, tool_choice: { type: "web_search_preview" } },
    status: 400,
    param: "tool_choice.type",
  },
  {
    name: "a bad reasoning effort",
    body: { ...ok, reasoning: { effort: "extreme" } },
    status: 400,
    param: "reasoning.effort",
  },
  {
    name: "an unknown top-level property",
    body: { ...ok, temprature: 0.5 },
    status: 400,
    param: "temprature",
    message: /^Unrecognized request argument supplied: temprature$/,
  },
  {
    name: "a conversation",
    body: { ...ok, conversation: "conv_123" },
    status: 400,
    param: "conversation",
    code: "unsupported_parameter",
  },
  {
    name: "a reusable prompt",
    body: { ...ok, prompt: { id: "pmpt_1" } },
    status: 400,
    param: "prompt",
    code: "unsupported_parameter",
  },
  {
    name: "logprobs in include",
    body: { ...ok, include: ["reasoning.encrypted_content", "message.output_text.logprobs"] },
    status: 400,
    param: "include[1]",
  },
  {
    name: "an include value OpenAI does not define",
    body: { ...ok, include: ["reasoning.encrypted_content", "bogus"] },
    status: 400,
    param: "include[1]",
    code: "invalid_value",
    message: /Supported values are: .*"reasoning\.encrypted_content"/,
  },
  {
    name: "a JSON schema nested too deeply",
    body: { ...ok, text: { format: { type: "json_schema", name: "deep", schema: nested(65) } } },
    status: 400,
    param: "text.format.schema",
    code: "invalid_json_schema",
    message: /nested more than 64 levels deep/,
  },
  {
    name: "function parameters nested too deeply",
    body: {
      ...ok,
      tools: [
        { type: "function", name: "f" },
        { type: "function", name: "g", parameters: nested(65) },
      ],
    },
    status: 400,
    param: "tools[1].parameters",
    message: /nested more than 64 levels deep/,
  },
  {
    name: "background without store",
    body: { ...ok, background: true, store: false },
    status: 400,
    param: "background",
  },
  {
    name: "an unknown previous_response_id",
    body: { ...ok, previous_response_id: "resp_missing" },
    status: 404,
    param: "previous_response_id",
    code: "previous_response_not_found",
  },
  { name: "no input at all", body: { model: TEST_MODEL }, status: 400, param: "input" },
  { name: "a JSON array body", body: [ok], status: 400, param: null },
  { name: "a ttl of zero", body: { ...ok, ttl: 0 }, status: 400, param: "ttl" },
];

describe("POST /v1/responses bad input", () => {
  const fast = createFastApp({ config: { bodyLimitBytes: 64 * 1024 } });

  for (const badCase of badCases) {
    it(`answers ${badCase.status} for ${badCase.name}, naming ${badCase.param ?? "no field"}`, async () => {
      const response = await fast.post("/v1/responses", badCase.body);
      const body = (await response.json()) as {
        error: { message: string; type: string; param: string | null; code: string | null };
      };
      expect(response.status, body.error.message).toBe(badCase.status);
      expect(body.error.param).toBe(badCase.param);
      expect(body.error.type).toBe("invalid_request_error");
      expect(body.error.message.length).toBeGreaterThan(10);
      if (badCase.code !== undefined) expect(body.error.code).toBe(badCase.code);
      if (badCase.message !== undefined) expect(body.error.message).toMatch(badCase.message);
      // The app still serves.
      expect((await fast.post("/v1/responses", ok)).status).toBe(200);
    });
  }

  it.each([
    [
      "text.format.schema",
      (deep: string) => `"text": {"format": {"type": "json_schema", "name": "x", "schema": ${deep}}}`,
    ],
    [
      "tools[0].parameters",
      (deep: string) => `"tools": [{"type": "function", "name": "f", "parameters": ${deep}}]`,
    ],
    [
      "tools[0].tools[0].parameters",
      (deep: string) =>
        `"tools": [{"type": "namespace", "name": "n", "tools": [{"type": "function", "name": "f", "parameters": ${deep}}]}]`,
    ],
    ["tools[0]", (deep: string) => `"tools": [{"type": "web_search", "filters": ${deep}}]`],
    ["tools[0]", (deep: string) => `"tools": [{"type": "mcp", "server_label": "s", "x": ${deep}}]`],
    [
      "tool_choice",
      (deep: string) =>
        `"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "f", "x": ${deep}}]}`,
    ],
  ])("answers 400 naming %s, not 500, for deep nesting", async (param, field) => {
    const big = createFastApp({ config: { bodyLimitBytes: 1024 * 1024 } });
    for (const path of ["/v1/responses", "/v1/responses/input_tokens"]) {
      // 200 levels pass the body's own depth limit (server/json-body.ts) and are refused by the field.
      const response = await big.request(path, {
        method: "POST",
        body: `{"model": "${TEST_MODEL}", "input": "hi", ${field(deepJson(200))}}`,
      });
      const body = (await response.json()) as { error: { param: string; message: string } };
      expect(response.status, body.error.message).toBe(400);
      expect(body.error.param).toBe(param);
      expect(body.error.message).toMatch(/nested more than \d+ levels deep/);
      // 20,000 levels are refused before JSON.parse, for the body as a whole.
      const deeper = await big.request(path, {
        method: "POST",
        body: `{"model": "${TEST_MODEL}", "input": "hi", ${field(deepJson(20_000))}}`,
      });
      expect(deeper.status).toBe(400);
      expect(await deeper.json()).toMatchObject({ error: { param: null, code: "json_too_deep" } });
    }
    expect((await big.post("/v1/responses", ok)).status).toBe(200);
  });

  it("accepts a schema nested exactly 64 levels deep", async () => {
    const response = await fast.post("/v1/responses", {
      ...ok,
      text: { format: { type: "json_schema", name: "deep", schema: nested(64) } },
      tools: [{ type: "function", name: "f", parameters: nested(64) }],
    });
    expect(response.status).toBe(200);
  });

  it("answers 400 invalid_json for malformed JSON and an empty body", async () => {
    for (const body of ['{"model": "x", "input": ', ""]) {
      const response = await fast.request("/v1/responses", { method: "POST", body });
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({ error: { code: "invalid_json" } });
    }
    expect((await fast.post("/v1/responses", ok)).status).toBe(200);
  });

  it("answers 413 for a body over the limit, then keeps serving", async () => {
    const response = await fast.post("/v1/responses", { ...ok, input: "x".repeat(100 * 1024) });
    expect(response.status).toBe(413);
    expect(await response.json()).toMatchObject({ error: { code: "request_too_large" } });
    expect((await fast.post("/v1/responses", ok)).status).toBe(200);
  });

  it("answers 400 context_length_exceeded for a prompt over the context with truncation disabled, and fits it with auto", async () => {
    const small = createFastApp({ contextLength: 8 });
    const long = "one two three four five six seven eight nine ten";
    const refused = await small.post("/v1/responses", {
      model: TEST_MODEL,
      instructions: "keep",
      input: [
        { role: "user", content: "old turn" },
        { role: "user", content: long },
      ],
    });
    expect(refused.status).toBe(400);
    expect(await refused.json()).toMatchObject({ error: { code: "context_length_exceeded" } });
    const truncated = await small.post("/v1/responses", {
      model: TEST_MODEL,
      instructions: "keep",
      truncation: "auto",
      input: [
        { role: "user", content: "old turn" },
        { role: "user", content: "short" },
      ],
    });
    expect(truncated.status).toBe(200);
  });
});
