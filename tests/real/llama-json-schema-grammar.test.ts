/**
 * lmhost's own text.format grammar on the real tiny model (stories260K-chatml, one thread): for schemas
 * with integer ranges (two-sided, one-sided, exclusive, negative, ±2^53), number bounds, string formats and
 * patterns, several samples at temperature 1 (fixed seeds) under strict json_schema all validate with ajv.
 * Strings are bounded by the schemas, so the tiny model cannot run to the token cap. Also: a backtracking
 * pattern beside an enum is a quick 400 on every path that took 10-120 s, and a `$ref` cycle is a 400
 * naming the `$ref`, not a stack overflow. And node-llama-cpp's own grammar for tool parameters, as
 * patched: integers without an exponent, so a forced call's arguments always pass its check.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LlamaEngine } from "../../src/engine/llama/engine.js";
import { LlamaModelLoader, type LlamaLoadedModel } from "../../src/engine/llama/loader.js";
import type { EnginePart, EngineRequest } from "../../src/engine/types.js";
import type { ModelAcquirer, ModelEntry } from "../../src/models/types.js";
import { ApiError } from "../../src/shared/errors.js";
import { storiesChatmlModel } from "../helpers/paths.js";

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;
const modelId = "stories-chatml";

let llama: Llama;
let loader: LlamaModelLoader;
let model: LlamaLoadedModel;

const acquirer: ModelAcquirer<LlamaLoadedModel> = {
  async acquire(): Promise<{ entry: ModelEntry; loaded: LlamaLoadedModel; release(): void }> {
    return { entry: model.entry, loaded: model, release: () => undefined };
  },
};

beforeAll(async () => {
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  loader = new LlamaModelLoader({ llama, threads: 1, parallel: 1 });
  model = await loader.load({ id: modelId, path: storiesChatmlModel, sizeBytes: 0, publisher: "test" });
});

afterAll(async () => {
  if (model !== undefined) await loader.unload(model);
  await llama?.dispose();
});

async function generate(
  engine: LlamaEngine,
  request: EngineRequest,
): Promise<{ text: string; reason: string }> {
  const parts: EnginePart[] = [];
  for await (const part of engine.generate(request, new AbortController().signal)) parts.push(part);
  const finish = parts.at(-1);
  if (finish?.type !== "finish") throw new Error("no finish part");
  const text = parts.map((part) => (part.type === "text-delta" ? part.text : "")).join("");
  return { text, reason: finish.reason };
}

const object = (properties: Record<string, unknown>) => ({
  type: "object",
  properties,
  required: Object.keys(properties),
  additionalProperties: false,
});

const schemas: { name: string; schema: Record<string, unknown> }[] = [
  {
    name: "integer ranges",
    schema: object({
      wide: { type: "integer", minimum: -1000, maximum: 1000 },
      adult: { type: "integer", minimum: 18 },
      negative: { type: "integer", exclusiveMaximum: 0 },
      between: { type: "integer", exclusiveMinimum: -3, exclusiveMaximum: 7 },
      safe: { type: "integer", minimum: -9007199254740991, maximum: 9007199254740991 },
    }),
  },
  {
    name: "number bounds",
    schema: object({
      fraction: { type: "number", minimum: 0, maximum: 1 },
      positive: { type: "number", exclusiveMinimum: 0 },
      small: { type: "number", minimum: -5, maximum: 5 },
    }),
  },
  {
    name: "string formats",
    schema: object({
      day: { type: "string", format: "date" },
      time: { type: "string", format: "time" },
      moment: { type: "string", format: "date-time" },
      id: { type: "string", format: "uuid" },
      mail: { type: "string", format: "email" },
    }),
  },
  {
    name: "patterns",
    schema: object({
      code: { type: "string", pattern: "^[A-Z]{3}-\\d{2}$" },
      word: { type: "string", pattern: "^[a-z]{1,8}$" },
      colors: { type: "string", pattern: "^(red|green)(,(red|green)){0,2}$" },
      quoted: { type: "string", pattern: '^a["\\\\]b$' },
    }),
  },
];

describe("integers in node-llama-cpp's own grammar (tool parameters), patched", () => {
  it("an integer has no exponent; a number keeps one", async () => {
    // node-llama-cpp 3.21.1 let an integer take an exponent (`-1e-200`); its own check of the call's
    // arguments then threw "Expected type integer", and the request was a 500 (patches/, second hunk).
    const grammar = await llama.createGrammarForJsonSchema({
      type: "object",
      properties: { count: { type: "integer" }, ratio: { type: "number" } },
    });
    const rules = new Map(
      grammar.grammar.split("\n").flatMap((line) => {
        const match = /^([\w-]+) ::= (.*)$/.exec(line);
        return match === null ? [] : [[match[1] ?? "", match[2] ?? ""] as const];
      }),
    );
    const integerRule = [...rules].find(([name]) => name.includes("integer"));
    const numberRule = [...rules].find(([name]) => name.includes("fractional"));
    expect(integerRule?.[1]).toBeDefined();
    expect(integerRule?.[1]).not.toMatch(/eE/);
    expect(numberRule?.[1]).toMatch(/eE/);
  });

  it("forced calls with unbounded integer arguments always parse (10 of 40 seeds were a 500)", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const parameters = object({ x: { type: "integer" }, y: { type: "integer" } });
    for (let seed = 0; seed < 24; seed++) {
      const parts: EnginePart[] = [];
      const request: EngineRequest = {
        model: modelId,
        items: [{ type: "message", role: "user", text: "Weather?" }],
        tools: [{ name: "add", parameters, strict: true }],
        toolChoice: "required",
        sampling: { temperature: 1, seed, maxTokens: 200 },
      };
      for await (const part of engine.generate(request, new AbortController().signal)) parts.push(part);
      const call = parts.find((part) => part.type === "tool-call-end");
      expect(call, `seed ${seed}`).toBeDefined();
      if (call?.type !== "tool-call-end") continue;
      const args = JSON.parse(call.arguments) as { x: unknown; y: unknown };
      expect([seed, Number.isInteger(args.x), Number.isInteger(args.y)]).toEqual([seed, true, true]);
    }
    await engine.close();
  });
});

describe("strict json_schema under lmhost's grammar on the real model", () => {
  it.each(schemas)("$name: every sample at temperature 1 validates with ajv", async ({ name, schema }) => {
    const engine = new LlamaEngine({ models: acquirer });
    const validate = addFormats(new Ajv2020({ strict: false })).compile(schema);
    for (const seed of [1, 2, 3, 4]) {
      const result = await generate(engine, {
        model: modelId,
        items: [{ type: "message", role: "user", text: "Describe Lily as JSON." }],
        responseFormat: { type: "json_schema", name: name.replace(/\s/g, "_"), schema, strict: true },
        sampling: { temperature: 1, seed, maxTokens: 400 },
      });
      expect(result.reason).toBe("stop");
      const parsed: unknown = JSON.parse(result.text);
      expect([result.text, validate(parsed) ? [] : validate.errors]).toEqual([result.text, []]);
    }
    await engine.close();
  });

  it("a backtracking pattern beside an enum is a quick 400 on text.format, tool parameters and token counting", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const hostile = { type: "string", enum: [`${"a".repeat(30)}!`], pattern: "^(a+)+$" };
    const items: EngineRequest["items"] = [{ type: "message", role: "user", text: "x" }];
    const tools = [{ name: "f", parameters: { type: "object", properties: { s: hostile } }, strict: true }];
    const started = performance.now();
    const refusals = await Promise.allSettled([
      generate(engine, {
        model: modelId,
        items,
        responseFormat: { type: "json_schema", name: "hostile", schema: hostile, strict: true },
      }),
      generate(engine, { model: modelId, items, tools }),
      engine.countTokens({ model: modelId, items, tools }),
    ]);
    // A backtracking engine took 10-120 s here (each extra "a" doubles it).
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(
      refusals.map((refusal) => (refusal.status === "rejected" ? (refusal.reason as ApiError).param : "ok")),
    ).toEqual([
      "text.format.schema.enum",
      "tools[0].parameters.properties.s.enum",
      "tools[0].parameters.properties.s.enum",
    ]);
    await engine.close();
  });

  it("a self-referencing allOf is a 400 naming the $ref (was a 500: maximum call stack size exceeded)", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    let caught: unknown;
    try {
      await generate(engine, {
        model: modelId,
        items: [{ type: "message", role: "user", text: "x" }],
        responseFormat: {
          type: "json_schema",
          name: "cycle",
          schema: { $defs: { a: { allOf: [{ $ref: "#/$defs/a" }] } }, $ref: "#/$defs/a" },
        },
      });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ApiError);
    expect(caught).toMatchObject({
      status: 400,
      code: "invalid_json_schema",
      param: "text.format.schema.$defs.a.allOf[0].$ref",
    });
    await engine.close();
  });
});
