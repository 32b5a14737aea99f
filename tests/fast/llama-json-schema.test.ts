/**
 * Table tests for the JSON schema → node-llama-cpp grammar schema conversion (the pitfalls in ENGINE-NOTES)
 * and for tool / tool_choice selection, which uses it for function parameters.
 */
import { describe, expect, it } from "vitest";
import { convertJsonSchema } from "../../src/engine/llama/json-schema.js";
import { selectFunctions } from "../../src/engine/llama/prompt.js";
import { ApiError } from "../../src/shared/errors.js";

const param = "text.format.schema";
const anyJson = {
  oneOf: [
    { type: ["string", "number", "boolean", "null"] },
    { type: "object", additionalProperties: true },
    { type: "array" },
  ],
};

describe("convertJsonSchema", () => {
  it.each([
    {
      name: "a strict OpenAI object schema keeps its properties and drops `required`",
      input: {
        type: "object",
        properties: { name: { type: "string" }, age: { type: "integer" } },
        required: ["name", "age"],
        additionalProperties: false,
      },
      expected: {
        type: "object",
        properties: { name: { type: "string" }, age: { type: "integer" } },
        additionalProperties: false,
      },
      ignored: ["/required"],
    },
    {
      name: "anyOf becomes oneOf",
      input: { anyOf: [{ type: "string" }, { type: "null" }] },
      expected: { oneOf: [{ type: "string" }, { type: "null" }] },
      ignored: [],
    },
    {
      name: "a type list with object splits into oneOf",
      input: { type: ["object", "null"], properties: { a: { type: "boolean" } } },
      expected: {
        oneOf: [
          { type: "object", properties: { a: { type: "boolean" } }, additionalProperties: false },
          { type: "null" },
        ],
      },
      ignored: [],
    },
    {
      name: "a plain primitive type list stays a list",
      input: { type: ["string", "number"] },
      expected: { type: ["string", "number"] },
      ignored: [],
    },
    {
      name: "an object without properties accepts any keys",
      input: { type: "object" },
      expected: { type: "object", additionalProperties: true },
      ignored: [],
    },
    {
      name: "an empty schema is any JSON value",
      input: { description: "anything", title: "Any" },
      expected: anyJson,
      ignored: [],
    },
    {
      name: "an unknown string format is dropped (it would compile to the empty string)",
      input: { type: "string", format: "email", maxLength: 40 },
      expected: { type: "string", maxLength: 40 },
      ignored: ["/format"],
    },
    {
      name: "a supported string format is kept",
      input: { type: "string", format: "date-time" },
      expected: { type: "string", format: "date-time" },
      ignored: [],
    },
    {
      name: "definitions and their references move to $defs",
      input: {
        type: "object",
        properties: { child: { $ref: "#/definitions/Node" } },
        definitions: { Node: { type: "object", properties: { value: { type: "number" } } } },
      },
      expected: {
        type: "object",
        properties: { child: { $ref: "#/$defs/Node" } },
        additionalProperties: false,
        $defs: {
          Node: { type: "object", properties: { value: { type: "number" } }, additionalProperties: false },
        },
      },
      ignored: [],
    },
    {
      name: "nullable adds a null alternative",
      input: { type: "integer", nullable: true },
      expected: { oneOf: [{ type: "integer" }, { type: "null" }] },
      ignored: [],
    },
    {
      name: "allOf members merge into one object",
      input: {
        allOf: [
          { type: "object", properties: { a: { type: "string" } } },
          { properties: { b: { type: "number" } }, additionalProperties: false },
        ],
      },
      expected: {
        type: "object",
        properties: { a: { type: "string" }, b: { type: "number" } },
        additionalProperties: false,
      },
      ignored: [],
    },
    {
      name: "enum and const are kept; unenforceable number bounds are reported",
      input: {
        type: "object",
        properties: {
          unit: { enum: ["c", "f"] },
          version: { const: 2 },
          count: { type: "integer", minimum: 0 },
        },
      },
      expected: {
        type: "object",
        properties: { unit: { enum: ["c", "f"] }, version: { const: 2 }, count: { type: "integer" } },
        additionalProperties: false,
      },
      ignored: ["/properties/count/minimum"],
    },
    {
      name: "arrays keep items and bounds; draft-4 tuples become prefixItems",
      input: {
        type: "object",
        properties: {
          tags: { type: "array", items: { type: "string" }, minItems: 1, maxItems: 3 },
          pair: { type: "array", items: [{ type: "number" }, { type: "number" }], additionalItems: false },
        },
      },
      expected: {
        type: "object",
        properties: {
          tags: { type: "array", items: { type: "string" }, minItems: 1, maxItems: 3 },
          pair: {
            type: "array",
            prefixItems: [{ type: "number" }, { type: "number" }],
            minItems: 2,
            maxItems: 2,
          },
        },
        additionalProperties: false,
      },
      ignored: [],
    },
    {
      name: "anyOf siblings are merged into each alternative",
      input: {
        type: "object",
        properties: { a: { type: "string" } },
        anyOf: [{ additionalProperties: false }, { additionalProperties: true }],
      },
      expected: {
        oneOf: [
          { type: "object", properties: { a: { type: "string" } }, additionalProperties: false },
          { type: "object", properties: { a: { type: "string" } }, additionalProperties: true },
        ],
      },
      ignored: [],
    },
  ])("$name", ({ input, expected, ignored }) => {
    const converted = convertJsonSchema(input, param);
    expect(converted.schema).toEqual(expected);
    expect(converted.ignoredKeywords).toEqual(ignored);
  });

  it("closedObjects makes property-less objects allow no keys (function parameters)", () => {
    expect(
      convertJsonSchema({ type: "object" }, "tools[0].parameters", { closedObjects: true }).schema,
    ).toEqual({
      type: "object",
      additionalProperties: false,
    });
  });

  it.each([
    { name: "not", input: { not: { type: "string" } }, path: /\/not/ },
    { name: "if/then", input: { type: "object", if: { properties: {} }, then: {} }, path: /\/if/ },
    {
      name: "patternProperties",
      input: { type: "object", patternProperties: { "^x": { type: "string" } } },
      path: /patternProperties/,
    },
    { name: "a remote $ref", input: { $ref: "https://example.com/schema.json" }, path: /\$ref/ },
    { name: "an unknown type", input: { type: "date" }, path: /unknown type/ },
    { name: "a false schema", input: { type: "object", properties: { a: false } }, path: /\/properties\/a/ },
    { name: "a non-object schema", input: "string", path: /must be a schema object/ },
    { name: "an empty enum", input: { enum: [] }, path: /\/enum/ },
  ])("rejects $name with a 400 naming the param", ({ input, path }) => {
    let caught: unknown;
    try {
      convertJsonSchema(input, param);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ApiError);
    const apiError = caught as ApiError;
    expect(apiError.status).toBe(400);
    expect(apiError.param).toBe(param);
    expect(apiError.code).toBe("invalid_json_schema");
    expect(apiError.message).toMatch(path);
  });
});

describe("selectFunctions", () => {
  const weather = {
    name: "get_weather",
    description: "Weather",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  };
  const clock = { name: "get_time", parameters: { type: "object", properties: {} } };

  it("auto passes every tool; tools without arguments get no params", () => {
    const selection = selectFunctions([weather, clock], undefined);
    expect(selection.forced).toBe(false);
    expect(selection.functions).toEqual({
      get_weather: {
        description: "Weather",
        params: { type: "object", properties: { city: { type: "string" } }, additionalProperties: false },
      },
      get_time: {},
    });
  });

  it("none passes no functions; required forces any; a name forces one call of that function", () => {
    expect(selectFunctions([weather], "none").functions).toBeUndefined();
    expect(selectFunctions([weather, clock], "required")).toMatchObject({
      forced: true,
      maxParallelFunctionCalls: undefined,
    });
    const named = selectFunctions([weather, clock], { name: "get_time" });
    expect(named).toMatchObject({ forced: true, maxParallelFunctionCalls: 1 });
    expect(Object.keys(named.functions ?? {})).toEqual(["get_time"]);
  });

  it.each([
    { name: "required without tools", tools: [], choice: "required" as const, param: "tool_choice" },
    { name: "an unknown named tool", tools: [weather], choice: { name: "toString" }, param: "tool_choice" },
    {
      name: "a name with spaces",
      tools: [{ name: "get weather" }],
      choice: undefined,
      param: "tools[0].name",
    },
    { name: "a duplicate name", tools: [clock, clock], choice: undefined, param: "tools[1].name" },
    {
      name: "an unsupported parameter schema",
      tools: [{ name: "f", parameters: { not: {} } }],
      choice: undefined,
      param: "tools[0].parameters",
    },
  ])("rejects $name with a 400 naming $param", ({ tools, choice, param: expectedParam }) => {
    let caught: unknown;
    try {
      selectFunctions(tools, choice);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ApiError);
    expect((caught as ApiError).param).toBe(expectedParam);
  });
});
