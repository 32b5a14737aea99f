/**
 * Table tests for the JSON schema → node-llama-cpp grammar schema conversion (the pitfalls in ENGINE-NOTES)
 * and for tool / tool_choice selection, which uses it for function parameters.
 */
import { describe, expect, it } from "vitest";
import {
  convertJsonSchema,
  literalAlternatives,
  maxEnumeratedValues,
} from "../../src/engine/llama/json-schema/index.js";
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
      name: "a strict OpenAI object schema keeps its properties; `required` holds (every property is generated)",
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
      ignored: [],
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
      name: "allOf members merge into one object; a member's additionalProperties: false that rejects another member's property is reported",
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
      ignored: ["/allOf/1/additionalProperties"],
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
    {
      // It was accepted, and the value it named came out unconstrained.
      name: "a $ref to a definition the schema does not have",
      input: {
        type: "object",
        properties: { a: { $ref: "#/$defs/nope" } },
        $defs: { yes: { type: "string" } },
      },
      path: /properties\/a\/\$ref.*does not have/,
    },
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

describe("convertJsonSchema: enforcing constraints by conversion", () => {
  const max = Number.MAX_SAFE_INTEGER;
  it.each([
    {
      name: "a bounded integer range becomes an enum",
      input: { type: "integer", minimum: 5, maximum: 7 },
      expected: { enum: [5, 6, 7] },
    },
    {
      name: "exclusive bounds and multipleOf narrow the enum",
      input: { type: "integer", exclusiveMinimum: 0, exclusiveMaximum: 10, multipleOf: 3 },
      expected: { enum: [3, 6, 9] },
    },
    {
      name: "draft-4 boolean exclusiveMinimum",
      input: { type: "integer", minimum: 1, exclusiveMinimum: true, maximum: 3 },
      expected: { enum: [2, 3] },
    },
    {
      name: "a number with an integer multipleOf and bounds is an enum of integers",
      input: { type: "number", minimum: 0, maximum: 10, multipleOf: 5, description: "step" },
      expected: { description: "step", enum: [0, 5, 10] },
    },
    {
      name: "a single allowed value becomes const",
      input: { type: "number", minimum: 2.5, maximum: 2.5 },
      expected: { const: 2.5 },
    },
    {
      name: "multipleOf 1 means integer",
      input: { type: "number", multipleOf: 1 },
      expected: { type: "integer" },
    },
    {
      name: "safe-integer bounds (zod's .int()) do not restrict",
      input: { type: "integer", minimum: -max, maximum: max },
      expected: { type: "integer" },
    },
    {
      name: "a type list with bounds splits, the integer part an enum",
      input: { type: ["integer", "null"], minimum: 1, maximum: 3 },
      expected: { oneOf: [{ enum: [1, 2, 3] }, { type: "null" }] },
    },
    {
      name: "an anchored list of literals becomes an enum, filtered by the length bounds",
      input: { type: "string", pattern: "^(red|green|blue)$", maxLength: 4 },
      expected: { enum: ["red", "blue"] },
    },
    {
      name: "an anchored literal with escapes becomes const",
      input: { type: "string", pattern: "^v1\\.0$" },
      expected: { const: "v1.0" },
    },
    {
      name: "enum values that break type, length, pattern or bounds are left out",
      input: {
        type: ["string", "integer"],
        enum: ["a", "bb", "cc", 3, 40, 2.5],
        minLength: 2,
        pattern: "^b",
        maximum: 10,
      },
      expected: { enum: ["bb", 3] },
    },
    {
      name: "const is checked against the date format",
      input: { type: "string", format: "date", enum: ["2024-02-29", "2023-02-29", "2024-13-01"] },
      expected: { const: "2024-02-29" },
    },
    {
      name: "a required name missing from properties is added with the additionalProperties schema",
      input: {
        type: "object",
        properties: { a: { type: "string" } },
        additionalProperties: { type: "boolean" },
        required: ["a", "b"],
      },
      expected: {
        type: "object",
        properties: { a: { type: "string" }, b: { type: "boolean" } },
        additionalProperties: { type: "boolean" },
      },
    },
    {
      name: "items: false allows only the empty array; uniqueItems holds for at most one item",
      input: {
        type: "object",
        properties: {
          none: { type: "array", items: false },
          one: { type: "array", items: { type: "string" }, maxItems: 1, uniqueItems: true },
        },
      },
      expected: {
        type: "object",
        properties: {
          none: { type: "array", maxItems: 0 },
          one: { type: "array", items: { type: "string" }, maxItems: 1 },
        },
        additionalProperties: false,
      },
    },
    {
      name: "allOf merges bounds of the same property (tighter wins) and unites required",
      input: {
        allOf: [
          { type: "object", properties: { n: { type: "integer", minimum: 0, maximum: 9 } }, required: ["n"] },
          { properties: { n: { maximum: 3 }, s: { const: "x" } }, required: ["s"] },
        ],
      },
      expected: {
        type: "object",
        properties: { n: { enum: [0, 1, 2, 3] }, s: { const: "x" } },
        additionalProperties: false,
      },
    },
    {
      name: "allOf through a local $ref",
      input: {
        $defs: { Base: { type: "object", properties: { id: { type: "integer", minimum: 1, maximum: 2 } } } },
        allOf: [{ $ref: "#/$defs/Base" }, { properties: { name: { type: "string" } } }],
      },
      expected: {
        type: "object",
        properties: { id: { enum: [1, 2] }, name: { type: "string" } },
        additionalProperties: false,
        $defs: {
          Base: { type: "object", properties: { id: { enum: [1, 2] } }, additionalProperties: false },
        },
      },
    },
    {
      name: "a date format within the length bounds is kept",
      input: { type: "string", format: "date", minLength: 10, maxLength: 10 },
      expected: { type: "string", format: "date" },
    },
  ])("$name", ({ input, expected }) => {
    for (const strict of [false, true]) {
      const converted = convertJsonSchema(input, param, { strict });
      expect(converted.schema).toEqual(expected);
      expect(converted.ignoredKeywords).toEqual([]);
    }
  });
});

describe("convertJsonSchema: what the grammar cannot enforce", () => {
  it.each([
    {
      name: "the review's repro: a regular expression (the integer range is fine)",
      input: {
        type: "object",
        properties: {
          n: { type: "integer", minimum: 5, maximum: 7 },
          s: { type: "string", pattern: "^a+$" },
        },
        required: ["n", "s"],
        additionalProperties: false,
      },
      lenient: {
        type: "object",
        properties: { n: { enum: [5, 6, 7] }, s: { type: "string" } },
        additionalProperties: false,
      },
      ignored: ["/properties/s/pattern"],
      param: "text.format.schema.properties.s.pattern",
    },
    {
      name: "a half-bounded integer",
      input: { type: "object", properties: { n: { type: "integer", minimum: 0 } } },
      lenient: { type: "object", properties: { n: { type: "integer" } }, additionalProperties: false },
      ignored: ["/properties/n/minimum"],
      param: "text.format.schema.properties.n.minimum",
    },
    {
      name: "a zod non-negative integer (the upper bound does not count)",
      input: { type: "integer", minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
      lenient: { type: "integer" },
      ignored: ["/minimum"],
      param: "text.format.schema.minimum",
    },
    {
      name: "an integer range wider than the enum limit",
      input: { type: "integer", minimum: 0, maximum: maxEnumeratedValues },
      lenient: { type: "integer" },
      ignored: ["/minimum", "/maximum"],
      param: "text.format.schema.minimum",
    },
    {
      name: "bounds on a non-integer number",
      input: { type: "number", minimum: 0, maximum: 1 },
      lenient: { type: "number" },
      ignored: ["/minimum", "/maximum"],
      param: "text.format.schema.minimum",
    },
    {
      name: "a fractional multipleOf without bounds",
      input: { type: "number", multipleOf: 0.5 },
      lenient: { type: "number" },
      ignored: ["/multipleOf"],
      param: "text.format.schema.multipleOf",
    },
    {
      name: "uniqueItems on arrays of more than one item",
      input: { type: "array", items: { type: "string" }, uniqueItems: true },
      lenient: { type: "array", items: { type: "string" } },
      ignored: ["/uniqueItems"],
      param: "text.format.schema.uniqueItems",
    },
    {
      name: "a format other than date / time / date-time, deep inside anyOf (indexes in brackets)",
      input: {
        type: "object",
        properties: {
          links: { type: "array", items: { anyOf: [{ type: "string", format: "uri" }, { type: "null" }] } },
        },
      },
      lenient: {
        type: "object",
        properties: { links: { type: "array", items: { oneOf: [{ type: "string" }, { type: "null" }] } } },
        additionalProperties: false,
      },
      ignored: ["/properties/links/items/anyOf/0/format"],
      param: "text.format.schema.properties.links.items.anyOf[0].format",
    },
    {
      name: "a property name that is not an identifier",
      input: { type: "object", properties: { "a.b": { type: "string", format: "email" } } },
      lenient: { type: "object", properties: { "a.b": { type: "string" } }, additionalProperties: false },
      ignored: ["/properties/a.b/format"],
      param: 'text.format.schema.properties["a.b"].format',
    },
    {
      name: "a time format that may be longer than maxLength",
      input: { type: "string", format: "time", maxLength: 8 },
      lenient: { type: "string", format: "time" },
      ignored: ["/maxLength"],
      param: "text.format.schema.maxLength",
    },
    {
      name: "oneOf alternatives that can match the same value",
      input: { oneOf: [{ type: "number" }, { type: "integer" }] },
      lenient: { oneOf: [{ type: "number" }, { type: "integer" }] },
      ignored: [],
      param: "text.format.schema.oneOf",
    },
    {
      name: "allOf members that disagree on a pattern",
      input: { allOf: [{ type: "string", pattern: "^(a|b)$" }, { pattern: "^(b|c)$" }] },
      lenient: { enum: ["b", "c"] },
      ignored: ["/allOf/1/pattern"],
      param: "text.format.schema.allOf[1].pattern",
    },
    {
      name: "a keyword beside $ref",
      input: {
        $defs: { Name: { type: "string" } },
        type: "object",
        properties: { name: { $ref: "#/$defs/Name", maxLength: 3 } },
      },
      lenient: {
        type: "object",
        properties: { name: { $ref: "#/$defs/Name" } },
        additionalProperties: false,
        $defs: { Name: { type: "string" } },
      },
      ignored: ["/properties/name/maxLength"],
      param: "text.format.schema.properties.name.maxLength",
    },
    {
      name: "a required property that additionalProperties: false forbids",
      input: {
        type: "object",
        properties: { a: { type: "string" } },
        required: ["b"],
        additionalProperties: false,
      },
      lenient: { type: "object", properties: { a: { type: "string" } }, additionalProperties: false },
      ignored: ["/required"],
      param: "text.format.schema.required",
    },
    {
      name: "maxProperties below the number of properties (all are generated)",
      input: {
        type: "object",
        properties: { a: { type: "string" }, b: { type: "string" } },
        maxProperties: 1,
      },
      lenient: {
        type: "object",
        properties: { a: { type: "string" }, b: { type: "string" } },
        additionalProperties: false,
      },
      ignored: ["/maxProperties"],
      param: "text.format.schema.maxProperties",
    },
    {
      name: "an enum none of whose values satisfies the type",
      input: { type: "string", enum: [1, 2] },
      lenient: { enum: [1, 2] },
      ignored: ["/enum"],
      param: "text.format.schema.enum",
    },
  ])(
    "$name: dropped without strict, a 400 naming it with strict",
    ({ input, lenient, ignored, param: keywordParam }) => {
      const converted = convertJsonSchema(input, param);
      expect(converted.schema).toEqual(lenient);
      expect(converted.ignoredKeywords).toEqual(ignored);

      let caught: unknown;
      try {
        convertJsonSchema(input, param, { strict: true });
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(ApiError);
      const apiError = caught as ApiError;
      expect(apiError).toMatchObject({ status: 400, code: "invalid_json_schema", param: keywordParam });
      expect(apiError.message).toContain("lmhost cannot enforce");
      expect(apiError.message).toContain(keywordParam);
    },
  );

  it("strict accepts oneOf alternatives that cannot overlap (types, literals, discriminators, $ref)", () => {
    const schema = {
      $defs: { Cat: { type: "object", properties: { kind: { const: "cat" }, lives: { type: "integer" } } } },
      type: "object",
      properties: {
        value: { oneOf: [{ type: "string" }, { type: "integer" }, { type: "null" }] },
        unit: { oneOf: [{ const: "c" }, { enum: ["f", "k"] }] },
        pet: {
          oneOf: [
            { $ref: "#/$defs/Cat" },
            { type: "object", properties: { kind: { const: "dog" }, good: { type: "boolean" } } },
          ],
        },
      },
    };
    expect(() => convertJsonSchema(schema, param, { strict: true })).not.toThrow();
  });
});

describe("literalAlternatives", () => {
  it.each([
    ["^abc$", ["abc"]],
    ["^(a|b)$", ["a", "b"]],
    ["^(?:a\\.b|c)$", ["a.b", "c"]],
    ["^$", [""]],
    ["^a|b$", undefined],
    ["^a+$", undefined],
    ["^\\d$", undefined],
    ["abc", undefined],
    ["^(a)|(b)$", undefined],
  ])("%j → %j", (pattern, expected) => {
    expect(literalAlternatives(pattern)).toEqual(expected);
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

  it("parallelToolCalls false allows one call (auto and required); true or absent sets no limit", () => {
    expect(selectFunctions([weather, clock], "auto", false).maxParallelFunctionCalls).toBe(1);
    expect(selectFunctions([weather, clock], "required", false).maxParallelFunctionCalls).toBe(1);
    expect(selectFunctions([weather, clock], undefined, false).maxParallelFunctionCalls).toBe(1);
    expect(selectFunctions([weather, clock], "auto", true).maxParallelFunctionCalls).toBeUndefined();
    expect(selectFunctions([weather, clock], "auto").maxParallelFunctionCalls).toBeUndefined();
    expect(selectFunctions([weather], "none", false).maxParallelFunctionCalls).toBeUndefined();
  });

  it("strict tools refuse parameter keywords the grammar cannot enforce; others drop them", () => {
    const counter = {
      name: "count",
      parameters: {
        type: "object",
        properties: {
          n: { type: "integer", minimum: 1, maximum: 3 },
          tag: { type: "string", pattern: "^#\\w+$" },
        },
      },
    };
    expect(selectFunctions([counter], "auto").functions).toEqual({
      count: {
        params: {
          type: "object",
          properties: { n: { enum: [1, 2, 3] }, tag: { type: "string" } },
          additionalProperties: false,
        },
      },
    });
    let caught: unknown;
    try {
      selectFunctions([weather, { ...counter, strict: true }], "auto");
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({
      status: 400,
      code: "invalid_json_schema",
      param: "tools[1].parameters.properties.tag.pattern",
    });
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
