/**
 * Pure conversion of a client's JSON schema (OpenAI structured outputs, function parameters) into the
 * subset node-llama-cpp's grammar compiler understands, working around its pitfalls (ENGINE-NOTES):
 *
 * - `anyOf` silently compiles to `null` → rewritten to `oneOf`; `allOf` is merged shallowly;
 * - `type: [...]` listing object/array, or combined with constraints, only keeps primitives → split into `oneOf`;
 * - an unknown string `format` (email, uri, uuid, ...) compiles to the empty string → dropped;
 * - an object without `properties` and without `additionalProperties` would only allow `{}` → any keys;
 * - a schema without keywords (`{}` / `true`) compiles to `null` → any JSON value;
 * - `definitions` / `#/definitions/...` → `$defs` / `#/$defs/...`; `nullable: true` → `oneOf [..., null]`.
 *
 * Constraints the grammar cannot enforce (`pattern`, `minimum`, `multipleOf`, `uniqueItems`, `required`
 * subsets: every listed property is always generated, which still validates) are dropped and reported in
 * `ignoredKeywords`. Keywords that change what is valid in ways we cannot express (`not`, `if`,
 * `patternProperties`, non-local `$ref`, ...) are a 400 naming `param`.
 */
import type { GbnfJsonSchema } from "node-llama-cpp";
import { ApiError } from "../../shared/errors.js";

export interface ConvertedJsonSchema {
  schema: GbnfJsonSchema;
  /** JSON-pointer-like paths of keywords that were accepted but cannot be enforced by the grammar. */
  ignoredKeywords: string[];
}

type JsonObject = Record<string, unknown>;

/** Keywords that carry no constraint (or none the output must satisfy). */
const annotationKeywords = new Set([
  "title",
  "default",
  "examples",
  "example",
  "$schema",
  "$id",
  "$comment",
  "$anchor",
  "deprecated",
  "readOnly",
  "writeOnly",
  "contentEncoding",
  "contentMediaType",
  "strict",
  "discriminator",
  "markdownDescription",
]);

/** Constraints we accept but cannot enforce with a grammar. */
const unenforcedKeywords = new Set([
  "pattern",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "multipleOf",
  "uniqueItems",
  "required",
  "minContains",
  "maxContains",
]);

/** Keywords that would make the grammar accept invalid output or reject valid output. */
const unsupportedKeywords = new Set([
  "not",
  "if",
  "then",
  "else",
  "patternProperties",
  "propertyNames",
  "dependentRequired",
  "dependentSchemas",
  "dependencies",
  "unevaluatedProperties",
  "unevaluatedItems",
  "contains",
  "$dynamicRef",
  "$recursiveRef",
]);

const supportedStringFormats = new Set(["date", "time", "date-time"]);
const primitiveTypes = new Set(["string", "number", "integer", "boolean", "null"]);
const allTypes = new Set([...primitiveTypes, "object", "array"]);

/** Any JSON value, in a form the grammar compiler accepts (what `{}` and `true` convert to). */
export const anyJsonSchema: GbnfJsonSchema = {
  oneOf: [
    { type: ["string", "number", "boolean", "null"] },
    { type: "object", additionalProperties: true },
    { type: "array" },
  ],
};

export interface ConvertJsonSchemaOptions {
  /**
   * Objects without `properties` and without `additionalProperties` allow no keys (`{}`) instead of any
   * keys. Used for function parameters, where `{"type": "object"}` means "no arguments".
   */
  closedObjects?: boolean;
}

export function convertJsonSchema(
  input: unknown,
  param: string,
  options: ConvertJsonSchemaOptions = {},
): ConvertedJsonSchema {
  const converter = new SchemaConverter(param, options.closedObjects ?? false);
  const root = asSchemaObject(input, "", converter);
  const rootDefinitions = collectDefinitions(root, "", converter);
  const schema = converter.convert(root, "");
  if (rootDefinitions !== undefined && isRecord(schema)) {
    return {
      schema: { ...schema, $defs: rootDefinitions } as GbnfJsonSchema,
      ignoredKeywords: converter.ignored,
    };
  }
  return { schema, ignoredKeywords: converter.ignored };
}

function collectDefinitions(
  schema: JsonObject | true,
  path: string,
  converter: SchemaConverter,
): Record<string, GbnfJsonSchema> | undefined {
  if (schema === true) return undefined;
  const definitions: Record<string, GbnfJsonSchema> = {};
  let found = false;
  for (const keyword of ["$defs", "definitions"]) {
    const value = schema[keyword];
    if (value === undefined) continue;
    if (!isRecord(value)) throw converter.error(`${path}/${keyword}`, "must be an object of schemas");
    for (const [name, definition] of Object.entries(value)) {
      definitions[name] = converter.convert(
        asSchemaObject(definition, `${path}/${keyword}/${name}`, converter),
        `${path}/${keyword}/${name}`,
      );
      found = true;
    }
  }
  return found ? definitions : undefined;
}

class SchemaConverter {
  readonly ignored: string[] = [];

  constructor(
    private readonly param: string,
    private readonly closedObjects: boolean,
  ) {}

  error(path: string, message: string): ApiError {
    return new ApiError({
      status: 400,
      message: `Invalid schema for ${this.param}: ${path === "" ? "(root)" : path} ${message}.`,
      param: this.param,
      code: "invalid_json_schema",
    });
  }

  convert(schema: JsonObject | true, path: string): GbnfJsonSchema {
    if (schema === true) return anyJsonSchema;
    const description = typeof schema.description === "string" ? { description: schema.description } : {};

    for (const keyword of Object.keys(schema)) {
      if (unsupportedKeywords.has(keyword))
        throw this.error(`${path}/${keyword}`, "uses a keyword that is not supported");
      if (unenforcedKeywords.has(keyword)) this.ignored.push(`${path}/${keyword}`);
    }

    if (typeof schema.$ref === "string")
      return { ...description, $ref: this.convertReference(schema.$ref, path) } as GbnfJsonSchema;
    if (schema.$ref !== undefined) throw this.error(`${path}/$ref`, "must be a string");

    if (schema.allOf !== undefined) return this.convert(this.mergeAllOf(schema, path), path);

    if (schema.nullable === true) {
      const { nullable: _nullable, ...rest } = schema;
      return { ...description, oneOf: [this.convert(rest, path), { type: "null" }] };
    }

    const alternatives = schema.anyOf ?? schema.oneOf;
    if (alternatives !== undefined) {
      const keyword = schema.anyOf !== undefined ? "anyOf" : "oneOf";
      if (schema.anyOf !== undefined && schema.oneOf !== undefined) {
        throw this.error(path, "uses both anyOf and oneOf");
      }
      if (!Array.isArray(alternatives) || alternatives.length === 0) {
        throw this.error(`${path}/${keyword}`, "must be a non-empty array");
      }
      const { anyOf: _anyOf, oneOf: _oneOf, description: _description, ...siblings } = schema;
      const siblingConstraints = Object.keys(siblings).filter((key) => !annotationKeywords.has(key));
      return {
        ...description,
        oneOf: alternatives.map((alternative: unknown, index) => {
          const alternativePath = `${path}/${keyword}/${index}`;
          const alternativeSchema = asSchemaObject(alternative, alternativePath, this);
          if (siblingConstraints.length === 0 || alternativeSchema === true)
            return this.convert(alternativeSchema, alternativePath);
          return this.convert({ ...siblings, ...alternativeSchema }, alternativePath);
        }),
      };
    }

    if (schema.const !== undefined) {
      if (!isPrimitive(schema.const))
        throw this.error(`${path}/const`, "must be a string, number, boolean or null");
      return { ...description, const: schema.const };
    }
    if (schema.enum !== undefined) {
      if (!Array.isArray(schema.enum) || schema.enum.length === 0 || !schema.enum.every(isPrimitive)) {
        throw this.error(`${path}/enum`, "must be a non-empty array of strings, numbers, booleans or null");
      }
      return { ...description, enum: schema.enum as (string | number | boolean | null)[] };
    }

    const types = this.readTypes(schema, path);
    if (types.length === 0) return anyJsonSchema;
    if (types.length > 1) {
      const onlyPlainPrimitives =
        types.every((type) => primitiveTypes.has(type)) && !hasTypeSpecificKeywords(schema);
      if (onlyPlainPrimitives) return { ...description, type: types } as GbnfJsonSchema;
      return { ...description, oneOf: types.map((type) => this.convertSingleType(schema, type, path)) };
    }
    const [type] = types;
    return this.convertSingleType(schema, type ?? "null", path);
  }

  private convertSingleType(schema: JsonObject, type: string, path: string): GbnfJsonSchema {
    const description = typeof schema.description === "string" ? { description: schema.description } : {};
    switch (type) {
      case "string": {
        const format = schema.format;
        if (typeof format === "string" && supportedStringFormats.has(format)) {
          return { ...description, type: "string", format: format as "date" | "time" | "date-time" };
        }
        if (format !== undefined) this.ignored.push(`${path}/format`);
        const minLength = this.readCount(schema, "minLength", path);
        const maxLength = this.readCount(schema, "maxLength", path);
        return {
          ...description,
          type: "string",
          ...(minLength !== undefined ? { minLength } : {}),
          ...(maxLength !== undefined ? { maxLength } : {}),
        };
      }
      case "number":
      case "integer":
      case "boolean":
      case "null":
        return { ...description, type };
      case "object":
        return this.convertObject(schema, path);
      case "array":
        return this.convertArray(schema, path);
      default:
        throw this.error(`${path}/type`, `has an unknown type '${type}'`);
    }
  }

  private convertObject(schema: JsonObject, path: string): GbnfJsonSchema {
    const description = typeof schema.description === "string" ? { description: schema.description } : {};
    const properties: Record<string, GbnfJsonSchema> = {};
    if (schema.properties !== undefined) {
      if (!isRecord(schema.properties)) throw this.error(`${path}/properties`, "must be an object");
      for (const [name, propertySchema] of Object.entries(schema.properties)) {
        const propertyPath = `${path}/properties/${name}`;
        properties[name] = this.convert(asSchemaObject(propertySchema, propertyPath, this), propertyPath);
      }
    }
    const hasProperties = Object.keys(properties).length > 0;
    let additionalProperties: boolean | GbnfJsonSchema;
    const additional = schema.additionalProperties;
    if (additional === undefined) additionalProperties = !hasProperties && !this.closedObjects;
    else if (typeof additional === "boolean") additionalProperties = additional;
    else
      additionalProperties = this.convert(
        asSchemaObject(additional, `${path}/additionalProperties`, this),
        `${path}/additionalProperties`,
      );
    const minProperties = this.readCount(schema, "minProperties", path);
    const maxProperties = this.readCount(schema, "maxProperties", path);
    const nestedDefinitions = path === "" ? undefined : collectDefinitions(schema, path, this);
    return {
      ...description,
      type: "object",
      ...(hasProperties ? { properties } : {}),
      additionalProperties,
      ...(minProperties !== undefined ? { minProperties } : {}),
      ...(maxProperties !== undefined ? { maxProperties } : {}),
      ...(nestedDefinitions !== undefined ? { $defs: nestedDefinitions } : {}),
    } as GbnfJsonSchema;
  }

  private convertArray(schema: JsonObject, path: string): GbnfJsonSchema {
    const description = typeof schema.description === "string" ? { description: schema.description } : {};
    let items: GbnfJsonSchema | undefined;
    let prefixItems: GbnfJsonSchema[] | undefined;
    if (Array.isArray(schema.items)) {
      // Draft-4 tuple form.
      prefixItems = schema.items.map((item: unknown, index) =>
        this.convert(asSchemaObject(item, `${path}/items/${index}`, this), `${path}/items/${index}`),
      );
      if (schema.additionalItems !== undefined && schema.additionalItems !== true) {
        if (schema.additionalItems === false) items = undefined;
        else
          items = this.convert(
            asSchemaObject(schema.additionalItems, `${path}/additionalItems`, this),
            `${path}/additionalItems`,
          );
      }
    } else if (schema.items !== undefined) {
      if (schema.items === false) items = undefined;
      else items = this.convert(asSchemaObject(schema.items, `${path}/items`, this), `${path}/items`);
    }
    if (Array.isArray(schema.prefixItems)) {
      prefixItems = schema.prefixItems.map((item: unknown, index) =>
        this.convert(
          asSchemaObject(item, `${path}/prefixItems/${index}`, this),
          `${path}/prefixItems/${index}`,
        ),
      );
    } else if (schema.prefixItems !== undefined) {
      throw this.error(`${path}/prefixItems`, "must be an array");
    }
    let minItems = this.readCount(schema, "minItems", path);
    let maxItems = this.readCount(schema, "maxItems", path);
    if (prefixItems !== undefined && (schema.items === false || schema.additionalItems === false)) {
      maxItems = prefixItems.length;
      minItems = Math.min(minItems ?? prefixItems.length, prefixItems.length);
    }
    return {
      ...description,
      type: "array",
      ...(items !== undefined ? { items } : {}),
      ...(prefixItems !== undefined ? { prefixItems } : {}),
      ...(minItems !== undefined ? { minItems } : {}),
      ...(maxItems !== undefined ? { maxItems } : {}),
    } as GbnfJsonSchema;
  }

  private readTypes(schema: JsonObject, path: string): string[] {
    const type = schema.type;
    if (type === undefined) {
      if (schema.properties !== undefined || schema.additionalProperties !== undefined) return ["object"];
      if (schema.items !== undefined || schema.prefixItems !== undefined) return ["array"];
      if (schema.minLength !== undefined || schema.maxLength !== undefined || schema.format !== undefined)
        return ["string"];
      return [];
    }
    const types = Array.isArray(type) ? type : [type];
    if (types.length === 0) throw this.error(`${path}/type`, "must not be empty");
    for (const entry of types) {
      if (typeof entry !== "string" || !allTypes.has(entry)) {
        throw this.error(`${path}/type`, `has an unknown type ${JSON.stringify(entry)}`);
      }
    }
    return [...new Set(types as string[])];
  }

  private readCount(schema: JsonObject, keyword: string, path: string): number | undefined {
    const value = schema[keyword];
    if (value === undefined) return undefined;
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
      throw this.error(`${path}/${keyword}`, "must be a non-negative integer");
    }
    return value;
  }

  private convertReference(reference: string, path: string): string {
    for (const prefix of ["#/$defs/", "#/definitions/"]) {
      if (
        reference.startsWith(prefix) &&
        reference.length > prefix.length &&
        !reference.slice(prefix.length).includes("/")
      ) {
        return `#/$defs/${reference.slice(prefix.length)}`;
      }
    }
    throw this.error(
      `${path}/$ref`,
      `'${reference}' is not supported (only '#/$defs/<name>' and '#/definitions/<name>')`,
    );
  }

  /** Merges `allOf` members into their parent: properties are united, other keywords from later members win. */
  private mergeAllOf(schema: JsonObject, path: string): JsonObject {
    const { allOf, ...parent } = schema;
    if (!Array.isArray(allOf) || allOf.length === 0)
      throw this.error(`${path}/allOf`, "must be a non-empty array");
    let merged: JsonObject = { ...parent };
    allOf.forEach((member: unknown, index) => {
      const memberSchema = asSchemaObject(member, `${path}/allOf/${index}`, this);
      if (memberSchema === true) return;
      if (
        memberSchema.$ref !== undefined ||
        memberSchema.anyOf !== undefined ||
        memberSchema.oneOf !== undefined
      ) {
        throw this.error(
          `${path}/allOf/${index}`,
          "cannot be merged (only plain schemas are supported inside allOf)",
        );
      }
      const properties = {
        ...(isRecord(merged.properties) ? merged.properties : {}),
        ...(isRecord(memberSchema.properties) ? memberSchema.properties : {}),
      };
      merged = { ...merged, ...memberSchema };
      if (Object.keys(properties).length > 0) merged.properties = properties;
    });
    return merged;
  }
}

function asSchemaObject(value: unknown, path: string, converter: SchemaConverter): JsonObject | true {
  if (value === true) return true;
  if (value === false) throw converter.error(path, "is `false`, which no value can satisfy");
  if (!isRecord(value)) throw converter.error(path, "must be a schema object");
  const keys = Object.keys(value).filter((key) => !annotationKeywords.has(key) && key !== "description");
  return keys.length === 0 ? true : value;
}

function hasTypeSpecificKeywords(schema: JsonObject): boolean {
  return [
    "minLength",
    "maxLength",
    "format",
    "properties",
    "additionalProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
  ].some((keyword) => schema[keyword] !== undefined);
}

function isRecord(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isPrimitive(value: unknown): value is string | number | boolean | null {
  return (
    value === null || typeof value === "string" || typeof value === "number" || typeof value === "boolean"
  );
}
