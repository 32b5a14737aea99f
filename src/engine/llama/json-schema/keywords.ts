/**
 * What each JSON Schema keyword means to the conversion: annotations (no constraint), keywords refused
 * outright, what may sit beside `$ref`, the formats the grammar generates natively, and the keywords that
 * belong to one JSON type (to infer the type of a schema without `type`).
 */
import type { JsonObject } from "./values.js";

/** Keywords that carry no constraint (or none the output must satisfy). */
export const annotationKeywords = new Set([
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
  // Without `contains` (which is refused) these have no effect.
  "minContains",
  "maxContains",
]);

/** Keywords that would make the grammar accept invalid output or reject valid output. */
export const unsupportedKeywords = new Set([
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

/** Keywords that may sit beside `$ref` without changing what is valid. */
export const referenceCompanions = new Set([
  ...annotationKeywords,
  "$ref",
  "description",
  "$defs",
  "definitions",
]);

/** Formats the grammar generates natively, with the lengths of the strings it generates for them. */
export const supportedStringFormats = new Map<string, { shortest: number; longest: number }>([
  ["date", { shortest: 10, longest: 10 }],
  ["time", { shortest: 9, longest: 18 }],
  ["date-time", { shortest: 20, longest: 29 }],
]);
/** Formats lmhost's own grammar (the "gbnf" target) generates: the native ones plus uuid and email. */
export const grammarStringFormats = new Map<string, { shortest: number; longest: number }>([
  ...supportedStringFormats,
  ["uuid", { shortest: 36, longest: 36 }],
  // An email-like subset: dot-separated atoms, @, two to four dot-separated labels (see json-schema-gbnf.ts).
  ["email", { shortest: 5, longest: 263 }],
]);
export const primitiveTypes = new Set(["string", "number", "integer", "boolean", "null"]);
export const allTypes = new Set([...primitiveTypes, "object", "array"]);
const numberKeywords = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"];
const stringKeywords = ["minLength", "maxLength", "format", "pattern"];
const arrayKeywords = ["items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems"];
const objectKeywords = ["properties", "additionalProperties", "required", "minProperties", "maxProperties"];

/** The JSON types a schema without `type` can only mean, from its type-specific keywords (or none). */
export function inferTypes(schema: JsonObject): string[] {
  const has = (keywords: readonly string[]): boolean =>
    keywords.some((keyword) => schema[keyword] !== undefined);
  const types: string[] = [];
  if (has(objectKeywords)) types.push("object");
  if (has(arrayKeywords)) types.push("array");
  if (has(stringKeywords)) types.push("string");
  if (has(numberKeywords)) types.push("number");
  return types;
}

export function hasTypeSpecificKeywords(schema: JsonObject): boolean {
  return [...stringKeywords, ...numberKeywords, ...arrayKeywords, ...objectKeywords].some(
    (keyword) => schema[keyword] !== undefined,
  );
}
