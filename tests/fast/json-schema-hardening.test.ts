/**
 * Hostile JSON schemas get a quick 400 instead of freezing or crashing the server:
 * - a backtracking `pattern` beside an `enum` is checked by the linear matcher (was a 19.7 s freeze);
 * - schemas past OpenAI's published size limits are refused before any expensive work, on every path that
 *   takes a schema (`text.format`, `tools[].parameters`, `/v1/responses/input_tokens`; was a 30 s freeze);
 * - `$ref` cycles that never bottom out are a 400 naming the `$ref` (was a 500 "Maximum call stack size
 *   exceeded"), while a recursive tree keeps working.
 */
import { describe, expect, it } from "vitest";
import {
  convertJsonSchema,
  convertJsonSchemaToGbnf,
  type ConversionTarget,
} from "../../src/engine/llama/json-schema/index.js";
import { selectFunctions } from "../../src/engine/llama/prompt.js";
import { ApiError } from "../../src/shared/errors.js";
import { createFastApp, TEST_MODEL } from "../helpers/fast-app.js";

const param = "text.format.schema";
const targets: ConversionTarget[] = ["node-llama-cpp", "gbnf"];

function apiError(run: () => unknown): ApiError {
  try {
    run();
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  throw new Error("expected an ApiError");
}

describe("a backtracking pattern never runs on the event loop", () => {
  const hostile = { type: "string", enum: [`${"a".repeat(30)}!`], pattern: "^(a+)+$" };

  it.each(targets)("strict (%s target): a 400 on the enum, in milliseconds", (target) => {
    const started = performance.now();
    const error = apiError(() => convertJsonSchema(hostile, param, { strict: true, target }));
    expect(performance.now() - started).toBeLessThan(500);
    expect(error.status).toBe(400);
    expect(error.code).toBe("invalid_json_schema");
    expect(error.param).toBe(`${param}.enum`);
  });

  it("not strict: the value is dropped as not matching, in milliseconds; a matching value is kept", () => {
    const started = performance.now();
    expect(convertJsonSchema(hostile, param).ignoredKeywords).toEqual(["/enum"]);
    const kept = convertJsonSchema({ ...hostile, enum: [hostile.enum[0], "a".repeat(5000)] }, param);
    expect(kept.schema).toEqual({ const: "a".repeat(5000) });
    expect(performance.now() - started).toBeLessThan(500);
  });

  it("tools[].parameters: the same, through function selection", () => {
    const started = performance.now();
    const error = apiError(() =>
      selectFunctions(
        [{ name: "f", parameters: { type: "object", properties: { s: hostile } }, strict: true }],
        "auto",
      ),
    );
    expect(performance.now() - started).toBeLessThan(500);
    expect(error.param).toBe("tools[0].parameters.properties.s.enum");
  });

  it("checking many long values against a large pattern has a bounded cost: a 400 naming the pattern", () => {
    const values = Array.from({ length: 8 }, (_, index) => `${"ab".repeat(7_450)}!${index}`);
    const started = performance.now();
    const error = apiError(() =>
      convertJsonSchema({ type: "string", pattern: "^(.*a.{20}){1,30}$", enum: values }, param, {
        strict: true,
      }),
    );
    expect(performance.now() - started).toBeLessThan(1_500);
    expect(error.param).toBe(`${param}.pattern`);
    expect(error.message).toMatch(/costs too much to check the listed values/);
  });

  it("under lmhost's own grammar the pattern is enforced, not refused", () => {
    const { grammar } = convertJsonSchemaToGbnf({ type: "string", pattern: "^(a+)+$" }, param, {
      strict: true,
    });
    expect(grammar).toContain("[a]");
  });
});

describe("schema size limits (OpenAI's published structured-output limits)", () => {
  const enumOf = (count: number, length = 6): string[] =>
    Array.from({ length: count }, (_, index) => `v${String(index).padStart(length - 1, "0")}`);
  const objectWith = (properties: Record<string, unknown>) => ({
    type: "object",
    properties,
    additionalProperties: false,
  });
  const limitCases: { name: string; schema: unknown; path: string; message: RegExp }[] = [
    {
      name: "a 100k-value enum (~1.3 MB)",
      schema: objectWith({ s: { type: "string", enum: enumOf(100_000) } }),
      path: ".properties.s.enum",
      message: /more than 1000 enum values/,
    },
    {
      name: "1,001 enum values across two enums",
      schema: objectWith({ a: { enum: enumOf(600) }, b: { enum: enumOf(401) } }),
      path: ".properties.a.enum",
      message: /more than 1000 enum values in total/,
    },
    {
      name: "a 251-value string enum totalling more than 15,000 characters",
      schema: objectWith({ s: { type: "string", enum: enumOf(251, 60) } }),
      path: ".properties.s.enum",
      message: /at most 15000 characters/,
    },
    {
      name: "5,001 object properties",
      schema: objectWith(Object.fromEntries(enumOf(5_001).map((name) => [name, { type: "boolean" }]))),
      path: ".properties",
      message: /more than 5000 object properties/,
    },
    {
      name: "more than 120,000 characters of names and values",
      schema: objectWith({ a: { const: "x".repeat(60_000) }, b: { const: "y".repeat(60_001) } }),
      path: ".properties.a.const",
      message: /more than 120000 characters/,
    },
    {
      name: "an anyOf of 1,001 alternatives",
      schema: objectWith({ s: { anyOf: enumOf(1_001).map((value) => ({ const: value })) } }),
      path: ".properties.s.anyOf",
      message: /more than 1000 alternatives/,
    },
    {
      name: "5,001 required names",
      schema: { type: "object", required: enumOf(5_001) },
      path: ".required",
      message: /more than 5000 names/,
    },
    {
      name: "a pattern longer than 1,000 characters",
      schema: objectWith({ s: { type: "string", pattern: `^${"(a|b)".repeat(300)}$` } }),
      path: ".properties.s.pattern",
      message: /longer than 1000 characters/,
    },
  ];
  const within = objectWith({ s: { type: "string", enum: enumOf(250, 60) }, n: { enum: enumOf(750) } });

  it.each(limitCases)("$name: a 400 from text.format, tools[].parameters and input_tokens", async (entry) => {
    const { app } = createFastApp();
    const post = async (route: string, body: unknown) => {
      const started = performance.now();
      const response = await app.request(`http://lmhost.test${route}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      const elapsed = performance.now() - started;
      return { response, elapsed, body: (await response.json()) as { error: ApiError } };
    };
    const format = { format: { type: "json_schema", name: "out", schema: entry.schema, strict: true } };
    const tools = [{ type: "function", name: "f", parameters: entry.schema, strict: true }];
    for (const [route, body, prefix] of [
      ["/v1/responses", { model: TEST_MODEL, input: "hi", text: format }, param],
      ["/v1/responses", { model: TEST_MODEL, input: "hi", tools }, "tools[0].parameters"],
      ["/v1/responses/input_tokens", { model: TEST_MODEL, input: "hi", tools }, "tools[0].parameters"],
      ["/v1/responses/input_tokens", { model: TEST_MODEL, input: "hi", text: format }, param],
    ] as const) {
      const result = await post(route, body);
      expect(result.response.status).toBe(400);
      expect(result.body.error.code).toBe("invalid_json_schema");
      expect(result.body.error.param).toBe(`${prefix}${entry.path}`);
      expect(result.body.error.message).toMatch(entry.message);
      expect(result.elapsed).toBeLessThan(2_000);
    }
    // The engine's converter refuses it too, for callers that do not come through the API.
    expect(apiError(() => convertJsonSchema(entry.schema, param)).param).toBe(`${param}${entry.path}`);
  });

  it("a schema just within the limits is accepted", async () => {
    const { app } = createFastApp();
    const response = await app.request("http://lmhost.test/v1/responses/input_tokens", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: TEST_MODEL,
        input: "hi",
        text: { format: { type: "json_schema", name: "out", schema: within, strict: true } },
      }),
    });
    expect(response.status).toBe(200);
    expect(convertJsonSchemaToGbnf(within, param, { strict: true }).grammar.length).toBeGreaterThan(15_000);
  });
});

describe("a long list deep in a schema", () => {
  it("is refused after counting its first elements, not after copying a path for each", async () => {
    // 500,000 zeros in an allOf 60 levels down: it took 2.7 s and 500 MB before every element counted.
    let schema: unknown = { allOf: new Array<number>(500_000).fill(0) };
    for (let level = 0; level < 30; level++) schema = { type: "object", properties: { x: schema } };
    const fast = createFastApp({ config: { bodyLimitBytes: 4 * 1024 * 1024 } });
    const response = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: "hi",
      text: { format: { type: "json_schema", name: "deep", schema } },
    });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("invalid_json_schema");
    expect(body.error.message).toMatch(/more than \d+ subschemas/);
    // Refused by the cost check (counting every element) before anything walks the list.
    expect(fast.engineRequests).toHaveLength(0);
  });
});

describe("$ref cycles", () => {
  const refusedCycles: { name: string; schema: unknown; path: string }[] = [
    {
      name: "a definition that is allOf itself",
      schema: { $defs: { a: { allOf: [{ $ref: "#/$defs/a" }] } }, $ref: "#/$defs/a" },
      path: ".$defs.a.allOf[0].$ref",
    },
    {
      name: "two definitions that are allOf each other",
      schema: {
        $defs: {
          a: { allOf: [{ $ref: "#/$defs/b" }] },
          b: { allOf: [{ $ref: "#/$defs/a" }, { type: "object" }] },
        },
        $ref: "#/$defs/a",
      },
      path: ".$defs.b.allOf[0].$ref",
    },
    {
      name: "a definition that is anyOf itself or null",
      schema: {
        definitions: { a: { anyOf: [{ $ref: "#/definitions/a" }, { type: "null" }] } },
        $ref: "#/definitions/a",
      },
      path: ".definitions.a.anyOf[0].$ref",
    },
    {
      name: "a $ref chain back to itself",
      schema: { $defs: { a: { $ref: "#/$defs/b" }, b: { $ref: "#/$defs/a" } }, $ref: "#/$defs/a" },
      path: ".$defs.b.$ref",
    },
  ];

  it.each(targets.flatMap((target) => refusedCycles.map((entry) => ({ ...entry, target }))))(
    "$name ($target target): a 400 naming the $ref",
    ({ schema, path, target }) => {
      const error = apiError(() => convertJsonSchema(schema, param, { target }));
      expect(error.status).toBe(400);
      expect(error.code).toBe("invalid_json_schema");
      expect(error.param).toBe(`${param}${path}`);
    },
  );

  it("a definition inlined into itself through a property's allOf: a 400, not a stack overflow", () => {
    const schema = {
      $defs: {
        a: {
          allOf: [
            { type: "object", properties: { x: { $ref: "#/$defs/a" } } },
            { properties: { x: { type: "object" } } },
          ],
        },
      },
      $ref: "#/$defs/a",
    };
    for (const target of targets) {
      const error = apiError(() => convertJsonSchema(schema, param, { target }));
      expect(error.param).toBe(`${param}.$defs.a.properties.x.allOf[0].$ref`);
      expect(error.message).toMatch(/merges '#\/\$defs\/a' into itself/);
    }
  });

  it("tools[].parameters: the same 400 on the tool's path", () => {
    const error = apiError(() =>
      selectFunctions(
        [{ name: "f", parameters: refusedCycles[0]?.schema as Record<string, unknown> }],
        "auto",
      ),
    );
    expect(error.param).toBe("tools[0].parameters.$defs.a.allOf[0].$ref");
  });

  it("a recursive tree (through properties / items, also under allOf) keeps working", () => {
    const node = {
      type: "object",
      properties: { label: { type: "string" }, children: { type: "array", items: { $ref: "#/$defs/node" } } },
      required: ["label", "children"],
      additionalProperties: false,
    };
    for (const schema of [
      { $defs: { node }, $ref: "#/$defs/node" },
      { $defs: { node }, allOf: [{ $ref: "#/$defs/node" }] },
      { $defs: { node: { anyOf: [node, { type: "null" }] } }, $ref: "#/$defs/node" },
      // allOf: [{$ref}] is the reference itself (was inlined into itself: a stack overflow).
      {
        $defs: {
          node: {
            ...node,
            properties: {
              ...node.properties,
              children: { type: "array", items: { allOf: [{ $ref: "#/$defs/node" }] } },
            },
          },
        },
        $ref: "#/$defs/node",
      },
    ]) {
      for (const target of targets) {
        const { schema: converted } = convertJsonSchema(schema, param, { strict: true, target });
        expect(JSON.stringify(converted)).toContain("#/$defs/node");
      }
      expect(convertJsonSchemaToGbnf(schema, param, { strict: true }).grammar).toMatch(/def-0/);
    }
  });
});
