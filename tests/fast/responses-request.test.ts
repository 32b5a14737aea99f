/**
 * The request schema and its translation into the core's ResponseRequest: every CreateResponse property
 * of the spec is known, short forms are normalised, and sampling, tools, tool choice, text format,
 * reasoning and the echo map as documented.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { createResponseSchema, inputTokensSchema } from "../../src/api/openai/responses/request-schema.js";
import {
  toResponseRequest,
  type ToResponseRequestOptions,
} from "../../src/api/openai/responses/to-response-request.js";
import { parseRequestBody } from "../../src/api/openai/responses/validation-errors.js";
import { ApiError } from "../../src/shared/errors.js";
import { specDir } from "../helpers/paths.js";

const translate = (body: Record<string, unknown>, options: ToResponseRequestOptions = {}) =>
  toResponseRequest(parseRequestBody(createResponseSchema, { model: "m", input: "hi", ...body }), options);
/** The ApiError a body is refused with (fails the test when it is accepted). */
function translateError(body: Record<string, unknown>): ApiError {
  try {
    translate(body);
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  throw new Error(`Expected ${JSON.stringify(body)} to be refused.`);
}
const remoteMcp: ToResponseRequestOptions = { mcp: { allowRemote: true, localServers: new Set() } };

type Schema = { $ref?: string; allOf?: Schema[]; properties?: Record<string, unknown> };
function specProperties(schemas: Record<string, Schema>, name: string): string[] {
  const collect = (schema: Schema | undefined): string[] => {
    if (schema === undefined) return [];
    if (schema.$ref !== undefined) return collect(schemas[schema.$ref.split("/").pop() ?? ""]);
    return [...(schema.allOf ?? []).flatMap(collect), ...Object.keys(schema.properties ?? {})];
  };
  return [...new Set(collect(schemas[name]))];
}

describe("the request schema", () => {
  const document = parseYaml(readFileSync(path.join(specDir, "openai-openapi.yaml"), "utf8"), {
    maxAliasCount: -1,
  }) as {
    components: { schemas: Record<string, Schema> };
  };

  it("knows every property of OpenAI's CreateResponse", () => {
    const properties = specProperties(document.components.schemas, "CreateResponse");
    expect(properties.length).toBeGreaterThan(25);
    expect(Object.keys(createResponseSchema.shape)).toEqual(expect.arrayContaining(properties));
  });

  it("knows every property of OpenAI's TokenCountsBody for input_tokens", () => {
    const properties = specProperties(document.components.schemas, "TokenCountsBody");
    expect(Object.keys(inputTokensSchema.shape)).toEqual(expect.arrayContaining(properties));
  });

  it("accepts the fields real clients send", () => {
    const request = translate({
      input: [
        { type: "message", role: "developer", content: [{ type: "input_text", text: "rules" }] },
        { role: "user", content: "short form" },
        {
          type: "message",
          id: "msg_61536b44-3d9d",
          role: "user",
          content: [{ type: "input_text", text: "codex id" }],
        },
        { type: "reasoning", id: "rs_1", summary: [], encrypted_content: "opaque" },
        { type: "function_call", call_id: "call_1", name: "f", arguments: "{}", status: "completed" },
        { type: "function_call_output", call_id: "call_1", output: "ok", id: null },
        {
          role: "assistant",
          content: [{ type: "output_text", text: "done", annotations: [] }],
          phase: "final_answer",
        },
      ],
      include: ["reasoning.encrypted_content"],
      prompt_cache_key: "01a2157b-6caa-75e3-9d3a-56133f968541",
      client_metadata: { turn_id: "t" },
      stream_options: { include_obfuscation: false },
      prompt_cache_retention: "24h",
      service_tier: "flex",
      safety_identifier: "user-1",
      user: "legacy",
      reasoning: { summary: "auto" },
      text: {},
      truncation: "auto",
      parallel_tool_calls: false,
      ttl: 300,
      conversation: null,
      prompt: null,
    });
    expect(request.input.map((item) => item.type)).toEqual([
      "message",
      "message",
      "message",
      "reasoning",
      "function_call",
      "function_call_output",
      "message",
    ]);
    expect(request.generation).toMatchObject({
      truncation: "auto",
      ttlSeconds: 300,
      // Passed to the engine, which routes the request to the sequence that served the key last.
      promptCacheKey: "01a2157b-6caa-75e3-9d3a-56133f968541",
    });
    expect(request.echo).toMatchObject({
      prompt_cache_key: "01a2157b-6caa-75e3-9d3a-56133f968541",
      prompt_cache_retention: "24h",
      safety_identifier: "user-1",
      user: "legacy",
      service_tier: "default",
      reasoning: { effort: null, summary: "auto" },
      text: { format: { type: "text" }, verbosity: "medium" },
      parallel_tool_calls: false,
    });
  });

  it("reads {id} and {type: null, id} as item references and a string input as one user message", () => {
    const references = translate({ input: [{ id: "msg_1" }, { type: null, id: "msg_2" }] }).input;
    expect(references).toEqual([
      { type: "item_reference", id: "msg_1" },
      { type: "item_reference", id: "msg_2" },
    ]);
    expect(translate({ input: "hello" }).input).toEqual([
      { type: "message", role: "user", content: "hello" },
    ]);
  });
});

describe("toResponseRequest", () => {
  it("echoes OpenAI's defaults and passes temperature and top_p explicitly", () => {
    const request = translate({});
    expect(request).toMatchObject({
      store: true,
      background: false,
      stream: false,
      instructions: null,
      previousResponseId: null,
    });
    expect(request.generation).toEqual({ sampling: { temperature: 1, topP: 1 }, truncation: "disabled" });
    expect(request.echo).toEqual({
      instructions: null,
      model: "m",
      tools: [],
      tool_choice: "auto",
      parallel_tool_calls: true,
      temperature: 1,
      top_p: 1,
      presence_penalty: 0,
      frequency_penalty: 0,
      top_logprobs: 0,
      max_output_tokens: null,
      max_tool_calls: null,
      previous_response_id: null,
      reasoning: { effort: null, summary: null },
      text: { format: { type: "text" }, verbosity: "medium" },
      truncation: "disabled",
      store: true,
      background: false,
      metadata: {},
      user: null,
      safety_identifier: null,
      prompt_cache_key: null,
      prompt_cache_retention: null,
      service_tier: "default",
      prompt: null,
      conversation: null,
      moderation: null,
    });
  });

  it.each([
    [{ temperature: 0.2 }, { temperature: 0.2, topP: 1 }],
    [{ top_p: 0.5 }, { temperature: 1, topP: 0.5 }],
    [{ max_output_tokens: 16 }, { temperature: 1, topP: 1, maxTokens: 16 }],
    [
      { presence_penalty: 0.5, frequency_penalty: -0.5 },
      { temperature: 1, topP: 1, presencePenalty: 0.5, frequencyPenalty: -0.5 },
    ],
    [
      { temperature: 0, top_p: 0 },
      { temperature: 0, topP: 0 },
    ],
  ])("maps sampling %j", (body, sampling) => {
    expect(translate(body).generation.sampling).toEqual(sampling);
  });

  it("sends function and custom tools (also inside namespaces) to the engine and echoes every tool", () => {
    const request = translate(
      {
        tools: [
          {
            type: "function",
            name: "get_weather",
            parameters: { type: "object", properties: { city: { type: "string" } } },
            strict: true,
          },
          {
            type: "namespace",
            name: "agents",
            description: "Sub-agents",
            tools: [
              { type: "function", name: "spawn", description: "Spawn one" },
              { type: "custom", name: "free" },
            ],
          },
          { type: "web_search", external_web_access: false },
          { type: "custom", name: "apply_patch" },
          {
            type: "mcp",
            server_label: "docs",
            server_url: "https://example.com/mcp",
            headers: { "X-Key": "secret-header" },
            authorization: "secret-token",
          },
        ],
      },
      remoteMcp,
    );
    expect(request.generation.tools).toEqual([
      {
        name: "get_weather",
        parameters: { type: "object", properties: { city: { type: "string" } } },
        strict: true,
      },
      { name: "agents.spawn", description: "Spawn one" },
      { name: "agents.free", freeform: {} },
      { name: "apply_patch", freeform: {} },
    ]);
    expect([...request.functionNames]).toEqual([
      ["get_weather", { name: "get_weather" }],
      ["agents.spawn", { name: "spawn", namespace: "agents" }],
      ["agents.free", { name: "free", namespace: "agents", custom: true }],
      ["apply_patch", { name: "apply_patch", custom: true }],
    ]);
    expect(request.echo.tools).toHaveLength(5);
    expect(request.echo.tools[0]).toEqual({
      type: "function",
      name: "get_weather",
      description: null,
      parameters: { type: "object", properties: { city: { type: "string" } } },
      strict: true,
    });
    expect(request.echo.tools[2]).toEqual({ type: "web_search", external_web_access: false });
    // MCP credentials reach the server only: never echoed (so never stored).
    expect(request.echo.tools[4]).toEqual({
      type: "mcp",
      server_label: "docs",
      server_url: "https://example.com/mcp",
    });
    expect(request.mcpServers).toEqual([
      {
        param: "tools[4]",
        serverLabel: "docs",
        serverUrl: "https://example.com/mcp",
        headers: { "X-Key": "secret-header", Authorization: "Bearer secret-token" },
        requireApproval: { default: "always", always: [], never: [] },
      },
    ]);
  });

  it("sends a custom tool's grammar format to the engine and forces it with tool_choice custom", () => {
    const request = translate({
      tools: [
        { type: "function", name: "digits_as_json" },
        {
          type: "custom",
          name: "apply_patch",
          description: "Patch files",
          format: { type: "grammar", syntax: "lark", definition: 'start: "*** Begin Patch"' },
        },
        {
          type: "custom",
          name: "digits",
          format: { type: "grammar", syntax: "regex", definition: "[0-9]+" },
        },
        { type: "custom", name: "note", format: { type: "text" } },
      ],
      tool_choice: { type: "custom", name: "digits" },
    });
    expect(request.generation.tools?.slice(1)).toEqual([
      {
        name: "apply_patch",
        description: "Patch files",
        freeform: { grammar: { syntax: "lark", definition: 'start: "*** Begin Patch"' } },
      },
      { name: "digits", freeform: { grammar: { syntax: "regex", definition: "[0-9]+" } } },
      { name: "note", freeform: {} },
    ]);
    expect(request.generation.toolChoice).toEqual({ name: "digits" });
  });

  it.each([
    [
      {
        type: "custom",
        name: "x",
        format: { type: "grammar", syntax: "lark", definition: 'start: "a"\n%ignore " "' },
      },
      "tools[0].format.definition",
      /%ignore is not supported/,
    ],
    [
      {
        type: "custom",
        name: "x",
        format: { type: "grammar", syntax: "lark", definition: 'start: e\ne: e "+" | "1"' },
      },
      "tools[0].format.definition",
      /left recursion \(e → e\)/,
    ],
    [
      { type: "custom", name: "x", format: { type: "grammar", syntax: "regex", definition: "a(?=b)" } },
      "tools[0].format.definition",
      /regular expression cannot be used: .*lookahead/,
    ],
    [
      {
        type: "namespace",
        name: "ns",
        description: "",
        tools: [
          {
            type: "custom",
            name: "x",
            format: { type: "grammar", syntax: "lark", definition: "start: nope" },
          },
        ],
      },
      "tools[0].tools[0].format.definition",
      /'nope' is used but never defined/,
    ],
  ])("refuses a grammar that cannot be converted, naming the field: %j", (tool, param, message) => {
    const error = translateError({ tools: [tool] });
    expect(error).toMatchObject({ status: 400, param });
    expect(error.message).toMatch(message);
  });

  it("tool_choice custom must name a custom tool, function a function; allowed_tools may list custom tools", () => {
    const tools = [
      { type: "function", name: "f" },
      { type: "custom", name: "c" },
    ];
    expect(translate({ tools, tool_choice: { type: "custom", name: "c" } }).generation.toolChoice).toEqual({
      name: "c",
    });
    expect(translateError({ tools, tool_choice: { type: "custom", name: "f" } })).toMatchObject({
      status: 400,
      param: "tool_choice.name",
    });
    expect(translateError({ tools, tool_choice: { type: "function", name: "c" } })).toMatchObject({
      status: 400,
      param: "tool_choice.name",
    });
    const allowed = translate({
      tools,
      tool_choice: { type: "allowed_tools", mode: "required", tools: [{ type: "custom", name: "c" }] },
    });
    expect(allowed.generation.toolChoice).toBe("required");
    expect(allowed.generation.tools).toEqual([{ name: "c", freeform: {} }]);
    expect(
      translateError({
        tools,
        tool_choice: { type: "allowed_tools", mode: "auto", tools: [{ type: "function", name: "c" }] },
      }),
    ).toMatchObject({ status: 400, param: "tool_choice.tools[0]" });
  });

  it("maps tool_choice", () => {
    const tools = [
      { type: "function", name: "a" },
      { type: "function", name: "b" },
      { type: "namespace", name: "ns", description: "", tools: [{ type: "function", name: "c" }] },
    ];
    expect(translate({ tools, tool_choice: "none" }).generation.toolChoice).toBe("none");
    expect(translate({ tools, tool_choice: "required" }).generation.toolChoice).toBe("required");
    expect(translate({ tools, tool_choice: { type: "function", name: "b" } }).generation.toolChoice).toEqual({
      name: "b",
    });
    expect(translate({ tools, tool_choice: { type: "function", name: "c" } }).generation.toolChoice).toEqual({
      name: "ns.c",
    });
    const allowed = translate({
      tools,
      tool_choice: { type: "allowed_tools", mode: "required", tools: [{ type: "function", name: "a" }] },
    });
    expect(allowed.generation.toolChoice).toBe("required");
    expect(allowed.generation.tools?.map((tool) => tool.name)).toEqual(["a"]);
    expect(allowed.echo.tool_choice).toEqual({
      type: "allowed_tools",
      mode: "required",
      tools: [{ type: "function", name: "a" }],
    });
  });

  it("maps text formats", () => {
    expect(translate({ text: { format: { type: "json_object" } } }).generation.responseFormat).toEqual({
      type: "json_object",
    });
    const schema = { type: "object", properties: { name: { type: "string" } }, required: ["name"] };
    const request = translate({
      text: { format: { type: "json_schema", name: "person", schema }, verbosity: "low" },
    });
    expect(request.generation.responseFormat).toEqual({ type: "json_schema", name: "person", schema });
    expect(request.echo.text).toEqual({
      format: { type: "json_schema", name: "person", schema, strict: false },
      verbosity: "low",
    });
  });

  it.each([
    ["none", "none"],
    ["minimal", "minimal"],
    ["medium", "medium"],
    ["high", "high"],
    ["xhigh", "xhigh"],
    ["max", "xhigh"],
  ] as const)("maps reasoning effort %s to the engine's %s", (effort, engineEffort) => {
    const request = translate({ reasoning: { effort, summary: "detailed" } });
    expect(request.generation.reasoningEffort).toBe(engineEffort);
    expect(request.echo.reasoning).toEqual({ effort, summary: "detailed" });
  });

  it("asks reasoning items for a summary and encrypted_content as the request says, unless summaries are off", () => {
    const request = translate({
      reasoning: { effort: "low", summary: "concise" },
      include: ["reasoning.encrypted_content"],
    });
    expect(request.reasoningOutput).toEqual({ summary: "concise", encryptedContent: true });
    expect(translate({ reasoning: { generate_summary: "auto" } }).reasoningOutput).toEqual({
      summary: "auto",
      encryptedContent: false,
    });
    expect(translate({}).reasoningOutput).toEqual({ encryptedContent: false });
    const off = translate({ reasoning: { summary: "auto" } }, { reasoningSummaries: false });
    expect(off.reasoningOutput).toEqual({ encryptedContent: false });
    expect(off.echo.reasoning).toEqual({ effort: null, summary: "auto" });
  });

  it("passes parallel_tool_calls: false to the engine (true and absent are the engine's default)", () => {
    const tools = [{ type: "function", name: "a" }];
    expect(translate({ tools, parallel_tool_calls: false }).generation.parallelToolCalls).toBe(false);
    expect(translate({ tools, parallel_tool_calls: false }).echo.parallel_tool_calls).toBe(false);
    expect(translate({ tools, parallel_tool_calls: true }).generation).not.toHaveProperty(
      "parallelToolCalls",
    );
    expect(translate({ tools }).generation).not.toHaveProperty("parallelToolCalls");
  });

  it("passes text.format.strict to the engine's json_schema format when given", () => {
    const schema = { type: "object", properties: { n: { type: "integer" } } };
    const format = (strict?: boolean | null) =>
      translate({
        text: {
          format: { type: "json_schema", name: "n", schema, ...(strict === undefined ? {} : { strict }) },
        },
      }).generation.responseFormat;
    expect(format(true)).toEqual({ type: "json_schema", name: "n", schema, strict: true });
    expect(format(false)).toEqual({ type: "json_schema", name: "n", schema, strict: false });
    expect(format(null)).toEqual({ type: "json_schema", name: "n", schema });
    expect(format()).toEqual({ type: "json_schema", name: "n", schema });
  });

  it("passes strict: true of a function tool to the engine, and nothing for false or absent", () => {
    const parameters = { type: "object", properties: { n: { type: "integer" } } };
    const definition = (strict?: boolean) =>
      translate({
        tools: [{ type: "function", name: "f", parameters, ...(strict === undefined ? {} : { strict }) }],
      }).generation.tools?.[0];
    expect(definition(true)).toMatchObject({ name: "f", strict: true });
    expect(definition(false)).not.toHaveProperty("strict");
    expect(definition()).not.toHaveProperty("strict");
  });

  it("accepts every include value of OpenAI's IncludeEnum but logprobs, and nothing else", () => {
    const document = parseYaml(readFileSync(path.join(specDir, "openai-openapi.yaml"), "utf8"), {
      maxAliasCount: -1,
    }) as { components: { schemas: Record<string, { enum?: string[] }> } };
    const includable = document.components.schemas.IncludeEnum?.enum ?? [];
    expect(includable).toContain("reasoning.encrypted_content");
    const honoured = includable.filter((value) => value !== "message.output_text.logprobs");
    expect(() => translate({ include: honoured })).not.toThrow();
    expect(() => translate({ include: ["reasoning.encrypted_content", "bogus"] })).toThrow(
      expect.objectContaining({ status: 400, param: "include[1]", code: "invalid_value" }),
    );
    expect(() => translate({ include: ["message.output_text.logprobs"] })).toThrow(
      expect.objectContaining({ status: 400, param: "include[0]", code: "unsupported_parameter" }),
    );
  });

  it("accepts an input_tokens body without generation-only fields", () => {
    const body = parseRequestBody(inputTokensSchema, {
      model: "m",
      input: "x",
      personality: "friendly",
      instructions: "be",
    });
    expect(toResponseRequest(body)).toMatchObject({ model: "m", instructions: "be" });
  });
});
