/**
 * Validates what the server emits against the published wire contracts in tests/fixtures/spec: OpenAI's
 * OpenAPI 3.1 document (`Response`, `ResponseStreamEvent`, `ResponseItemList`) and the Open Responses
 * document (`ResponseResource` and its streaming events). Both are compiled once per test process with
 * Ajv's 2020-12 dialect, with every `$ref` resolved inside its own document.
 *
 * A few spec errata are patched, each listed in SPEC_ERRATA with the evidence; nothing else is relaxed.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { parse as parseYaml } from "yaml";
import { specDir } from "./paths.js";

type JsonObject = Record<string, unknown>;

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

/**
 * Where a published schema contradicts the published traffic or itself. Each entry edits one schema.
 */
const SPEC_ERRATA: {
  document: "openai" | "openresponses";
  schema: string;
  why: string;
  patch: (schema: JsonObject) => void;
}[] = [
  {
    document: "openai",
    schema: "ModelResponseProperties",
    why: '`user` is declared as a string, but OpenAI itself sends `"user": null` (captures/openai-basic-event-stream.txt).',
    patch: (schema) => {
      const properties = schema.properties as JsonObject;
      properties.user = { anyOf: [{ type: "string" }, { type: "null" }] };
    },
  },
  {
    document: "openai",
    schema: "Response",
    why: '`usage` is not nullable, but OpenAI sends `"usage": null` until the response finishes (captures/openai-basic-event-stream.txt, and Open Responses allows null).',
    patch: (schema) => {
      for (const part of schema.allOf as JsonObject[]) {
        const properties = part.properties as JsonObject | undefined;
        if (properties?.usage !== undefined)
          properties.usage = { anyOf: [properties.usage, { type: "null" }] };
      }
    },
  },
  ...(["MCPApprovalResponseResource", "MCPApprovalResponse"] as const).map((name) => ({
    document: "openai" as const,
    schema: name,
    why:
      "`request_id` is required but not defined among the properties; the official openai SDK's " +
      "McpApprovalResponse (input and stored item) has no such field, only `approval_request_id`.",
    patch: (schema: JsonObject) => {
      schema.required = (schema.required as string[]).filter((field) => field !== "request_id");
    },
  })),
  {
    document: "openai",
    schema: "CreateChatCompletionStreamResponse",
    why:
      "`finish_reason` and `usage` are `nullable: true` beside an enum / a `$ref`, which the 3.0 → 3.1 conversion " +
      "(convertNullable) cannot express; every chunk before the last carries `finish_reason: null` (and, with " +
      "`stream_options.include_usage`, `usage: null`), as the schema's own descriptions say.",
    patch: (schema) => {
      const properties = schema.properties as JsonObject;
      const choice = (properties.choices as JsonObject).items as JsonObject;
      const finishReason = (choice.properties as JsonObject).finish_reason as JsonObject;
      finishReason.type = ["string", "null"];
      finishReason.enum = [...(finishReason.enum as unknown[]), null];
      delete finishReason.nullable;
      const { nullable: _nullable, ...usage } = properties.usage as JsonObject;
      properties.usage = { anyOf: [usage, { type: "null" }] };
    },
  },
  {
    document: "openai",
    schema: "CreateCompletionResponse",
    why:
      "Streamed and non-streamed completions share this shape (its description says so), but every streamed " +
      "chunk before the last has `finish_reason: null`, which the schema does not allow.",
    patch: (schema) => {
      const choice = ((schema.properties as JsonObject).choices as JsonObject).items as JsonObject;
      const finishReason = (choice.properties as JsonObject).finish_reason as JsonObject;
      finishReason.type = ["string", "null"];
      finishReason.enum = [...(finishReason.enum as unknown[]), null];
    },
  },
  {
    document: "openresponses",
    schema: "JsonSchemaResponseFormat",
    why:
      'Unfinished: `schema` is declared as `{type: "null"}` (so no response that used a JSON schema could validate) ' +
      "and `description` is required though OpenAI's TextResponseFormatJsonSchema forbids null there; OpenAI's shape is used.",
    patch: (schema) => {
      const properties = schema.properties as JsonObject;
      properties.schema = { anyOf: [{ type: "object" }, { type: "null" }] };
      schema.required = (schema.required as string[]).filter((name) => name !== "description");
    },
  },
];

/** OpenAPI 3.0 leftovers inside the 3.1 document: `nullable: true` beside a `type`. */
function convertNullable(node: unknown): void {
  if (Array.isArray(node)) {
    node.forEach(convertNullable);
    return;
  }
  if (node === null || typeof node !== "object") return;
  const schema = node as JsonObject;
  if (schema.nullable === true) {
    if (typeof schema.type === "string") schema.type = [schema.type, "null"];
    else if (Array.isArray(schema.enum) && !schema.enum.includes(null)) schema.enum = [...schema.enum, null];
    delete schema.nullable;
  }
  for (const value of Object.values(schema)) convertNullable(value);
}

function collectFormats(node: unknown, formats: Set<string>): void {
  if (Array.isArray(node)) {
    for (const value of node) collectFormats(value, formats);
    return;
  }
  if (node === null || typeof node !== "object") return;
  const schema = node as JsonObject;
  if (typeof schema.format === "string") formats.add(schema.format);
  for (const value of Object.values(schema)) collectFormats(value, formats);
}

export interface ValidationResult {
  valid: boolean;
  errors: string[];
}

export interface ValidateOptions {
  /**
   * Also validate against Open Responses (default true). Its contract only knows function tools, so a
   * response that echoes OpenAI's hosted tool types (Codex's `namespace`, `web_search`) is outside it.
   */
  openResponses?: boolean;
}

export interface SpecValidator {
  /** A Response object (non-streaming result, retrieve, cancel, and every lifecycle event's snapshot). */
  response(value: unknown, options?: ValidateOptions): ValidationResult;
  /** One stream event (validated against OpenAI's union and, when Open Responses defines its type, theirs). */
  streamEvent(value: unknown, options?: ValidateOptions): ValidationResult;
  /** The `input_items` list page. */
  itemList(value: unknown): ValidationResult;
  /** Throw with every problem listed when the value does not validate. */
  assertResponse(value: unknown, options?: ValidateOptions): void;
  assertStreamEvent(value: unknown, options?: ValidateOptions): void;
  assertItemList(value: unknown): void;
  /**
   * Any schema of OpenAI's document by name (e.g. `CreateChatCompletionResponse`,
   * `CreateChatCompletionStreamResponse`, `CreateCompletionResponse`); throws listing every problem.
   */
  assertOpenAiSchema(name: string, value: unknown): void;
}

let cached: SpecValidator | undefined;

/** Compiles the validators once per process (parsing the 3 MB OpenAPI document takes a moment). */
export function loadSpecValidator(): SpecValidator {
  cached ??= buildSpecValidator();
  return cached;
}

function buildSpecValidator(): SpecValidator {
  const openai = parseYaml(readFileSync(path.join(specDir, "openai-openapi.yaml"), "utf8"), {
    maxAliasCount: -1,
  }) as JsonObject;
  const openResponses = JSON.parse(
    readFileSync(path.join(specDir, "openresponses-openapi.json"), "utf8"),
  ) as JsonObject;
  const documents = { openai, openresponses: openResponses };
  for (const erratum of SPEC_ERRATA) {
    const schemas = (documents[erratum.document].components as JsonObject).schemas as JsonObject;
    const schema = schemas[erratum.schema] as JsonObject | undefined;
    if (schema === undefined) throw new Error(`Spec erratum target ${erratum.schema} is missing.`);
    erratum.patch(schema);
  }

  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
  addFormats(ajv);
  const formats = new Set<string>();
  for (const document of Object.values(documents)) {
    convertNullable(document.components);
    collectFormats(document.components, formats);
  }
  for (const format of formats) {
    if (!ajv.formats[format]) ajv.addFormat(format, true);
  }
  ajv.addSchema({ $id: "openai.json", components: openai.components }, "openai.json");
  ajv.addSchema({ $id: "openresponses.json", components: openResponses.components }, "openresponses.json");

  const compile = (document: string, name: string): ValidateFunction => {
    const validate = ajv.getSchema(`${document}#/components/schemas/${name}`);
    if (validate === undefined) throw new Error(`No schema ${name} in ${document}`);
    return validate;
  };
  const openaiResponse = compile("openai.json", "Response");
  const openaiEvent = compile("openai.json", "ResponseStreamEvent");
  const openaiItemList = compile("openai.json", "ResponseItemList");
  const openResponsesResource = compile("openresponses.json", "ResponseResource");

  const openResponsesSchemas = (openResponses.components as JsonObject).schemas as Record<string, JsonObject>;
  const openResponsesEvents = new Map<string, ValidateFunction>();
  for (const [name, schema] of Object.entries(openResponsesSchemas)) {
    const typeEnum = ((schema.properties as JsonObject | undefined)?.type as JsonObject | undefined)?.enum;
    if (name.endsWith("StreamingEvent") && Array.isArray(typeEnum) && typeof typeEnum[0] === "string") {
      openResponsesEvents.set(typeEnum[0], compile("openresponses.json", name));
    }
  }

  const run = (label: string, validate: ValidateFunction, value: unknown): string[] =>
    validate(value)
      ? []
      : (validate.errors ?? []).map(
          (error) => `${label}${error.instancePath} ${error.message ?? ""} ${JSON.stringify(error.params)}`,
        );

  const response = (value: unknown, options: ValidateOptions = {}): ValidationResult => {
    const errors = run("openai Response", openaiResponse, value);
    if (options.openResponses !== false)
      errors.push(...run("openresponses ResponseResource", openResponsesResource, value));
    return { valid: errors.length === 0, errors };
  };
  const streamEvent = (value: unknown, options: ValidateOptions = {}): ValidationResult => {
    const type = (value as JsonObject | null)?.type;
    const errors = run("openai ResponseStreamEvent", openaiEvent, value);
    // OpenAI's union is an anyOf of 58 branches, so its error list is noise; name the event instead.
    if (errors.length > 0) {
      errors.splice(
        0,
        errors.length,
        `openai ResponseStreamEvent: no branch accepts ${JSON.stringify(value).slice(0, 400)}`,
      );
    }
    const openResponsesEvent = typeof type === "string" ? openResponsesEvents.get(type) : undefined;
    if (openResponsesEvent !== undefined && options.openResponses !== false) {
      errors.push(...run(`openresponses ${String(type)}`, openResponsesEvent, value));
    }
    const snapshot = (value as JsonObject | null)?.response;
    if (snapshot !== undefined) errors.push(...response(snapshot, options).errors);
    return { valid: errors.length === 0, errors };
  };
  const itemList = (value: unknown): ValidationResult => {
    const errors = run("openai ResponseItemList", openaiItemList, value);
    return { valid: errors.length === 0, errors };
  };
  const fail = (result: ValidationResult): void => {
    if (!result.valid) throw new Error(`Schema validation failed:\n${result.errors.join("\n")}`);
  };
  return {
    response,
    streamEvent,
    itemList,
    assertResponse: (value, options) => fail(response(value, options)),
    assertStreamEvent: (value, options) => fail(streamEvent(value, options)),
    assertItemList: (value) => fail(itemList(value)),
    assertOpenAiSchema: (name, value) => {
      const validate = compile("openai.json", name);
      fail({ valid: validate(value), errors: run(`openai ${name}`, validate, value) });
    },
  };
}

export { SPEC_ERRATA };
