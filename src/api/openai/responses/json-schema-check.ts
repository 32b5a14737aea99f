/**
 * A structural check of the JSON schema in `text.format` (json_schema), so a broken schema is a 400
 * naming the exact spot (`text.format.schema.properties.age.type`) instead of a grammar failure later.
 * It checks the keywords that shape output (types, properties, items, required, enum, combinators,
 * patterns); it is not a full meta-schema validation. A schema nested deeper than MAX_SCHEMA_DEPTH is
 * refused before anything walks it recursively (this check, structuredClone, JSON.stringify and the
 * engine's grammar all recurse, and a deep enough schema overflows the stack: a 500 instead of a 400).
 * Then what the schema may cost (`findSchemaCostProblem`: properties, enum values, string lengths, pattern
 * lengths) is checked, iteratively and in linear time, before anything expensive runs.
 */
import { findSchemaCostProblem, paramPath } from "../../../engine/json-schema-limits.js";
import { ApiError } from "../../../shared/errors.js";

const JSON_TYPES = new Set(["string", "number", "integer", "boolean", "object", "array", "null"]);
const SCHEMA_MAP_KEYWORDS = ["properties", "patternProperties", "$defs", "definitions"] as const;
const SCHEMA_LIST_KEYWORDS = ["anyOf", "oneOf", "allOf", "prefixItems"] as const;
const SINGLE_SCHEMA_KEYWORDS = ["not", "additionalProperties", "contains", "if", "then", "else"] as const;
const NUMBER_KEYWORDS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"] as const;
const COUNT_KEYWORDS = [
  "minLength",
  "maxLength",
  "minItems",
  "maxItems",
  "minProperties",
  "maxProperties",
] as const;

export interface SchemaProblem {
  /** The field path, e.g. `text.format.schema.properties.age.type`. */
  path: string;
  message: string;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === "object" && !Array.isArray(value);

/**
 * How deeply a schema may nest, counting every JSON object and array (the schema itself is level 1; one
 * `properties` level of an object schema takes two). Real schemas stay far below it (OpenAI's structured
 * outputs allow 10 levels of object nesting); stack overflows start in the thousands.
 */
export const MAX_SCHEMA_DEPTH = 64;

/** Whether `value` nests objects/arrays more than `maxDepth` levels deep (iterative: no recursion). */
export function nestsDeeperThan(value: unknown, maxDepth: number): boolean {
  const pending: { value: unknown; depth: number }[] = [{ value, depth: 1 }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (next.value === null || typeof next.value !== "object") continue;
    if (next.depth > maxDepth) return true;
    for (const child of Object.values(next.value)) {
      if (child !== null && typeof child === "object") pending.push({ value: child, depth: next.depth + 1 });
    }
  }
  return false;
}

/**
 * Throws the 400 `invalid_json_schema` naming the first problem of `schema` (at `path`); returns when it is
 * usable. `prefix` begins the message: "Invalid" for tool parameters, "Invalid JSON schema in" for formats.
 */
export function assertUsableSchema(schema: unknown, path: string, prefix = "Invalid"): void {
  const problem = findSchemaProblem(schema, path);
  if (problem !== undefined)
    throw ApiError.invalid(
      `${prefix} '${problem.path}': ${problem.message}.`,
      problem.path,
      "invalid_json_schema",
    );
}

/** The first problem found in `schema` (at `path`), or undefined when it is usable. */
export function findSchemaProblem(schema: unknown, path: string): SchemaProblem | undefined {
  if (nestsDeeperThan(schema, MAX_SCHEMA_DEPTH)) {
    return { path, message: `the schema is nested more than ${MAX_SCHEMA_DEPTH} levels deep` };
  }
  const cost = findSchemaCostProblem(schema);
  if (cost !== undefined) return { path: paramPath(path, cost.path), message: cost.message };
  return findProblem(schema, path);
}

function findProblem(schema: unknown, path: string): SchemaProblem | undefined {
  if (typeof schema === "boolean") return undefined;
  if (!isObject(schema)) return { path, message: "a JSON schema must be an object (or a boolean)" };

  const type = schema.type;
  if (type !== undefined) {
    const types = Array.isArray(type) ? type : [type];
    const bad = types.find((entry) => typeof entry !== "string" || !JSON_TYPES.has(entry));
    if (types.length === 0 || bad !== undefined) {
      return {
        path: `${path}.type`,
        message: `unknown type ${JSON.stringify(bad)}; expected one of ${[...JSON_TYPES].join(", ")}`,
      };
    }
  }
  for (const keyword of SCHEMA_MAP_KEYWORDS) {
    const map = schema[keyword];
    if (map === undefined) continue;
    if (!isObject(map)) {
      return { path: `${path}.${keyword}`, message: `'${keyword}' must be an object of schemas` };
    }
    for (const [name, child] of Object.entries(map)) {
      const problem = findProblem(child, `${path}.${keyword}.${name}`);
      if (problem !== undefined) return problem;
    }
  }
  for (const keyword of SCHEMA_LIST_KEYWORDS) {
    const list = schema[keyword];
    if (list === undefined) continue;
    if (!Array.isArray(list) || list.length === 0) {
      return { path: `${path}.${keyword}`, message: `'${keyword}' must be a non-empty array of schemas` };
    }
    for (const [index, child] of list.entries()) {
      const problem = findProblem(child, `${path}.${keyword}[${index}]`);
      if (problem !== undefined) return problem;
    }
  }
  for (const keyword of [...SINGLE_SCHEMA_KEYWORDS, "items"] as const) {
    if (schema[keyword] === undefined) continue;
    const problem = findProblem(schema[keyword], `${path}.${keyword}`);
    if (problem !== undefined) return problem;
  }
  const required = schema.required;
  if (
    required !== undefined &&
    (!Array.isArray(required) || required.some((name) => typeof name !== "string"))
  ) {
    return { path: `${path}.required`, message: "'required' must be an array of property names" };
  }
  if (schema.enum !== undefined && (!Array.isArray(schema.enum) || schema.enum.length === 0)) {
    return { path: `${path}.enum`, message: "'enum' must be a non-empty array" };
  }
  for (const keyword of NUMBER_KEYWORDS) {
    if (schema[keyword] !== undefined && typeof schema[keyword] !== "number") {
      return { path: `${path}.${keyword}`, message: `'${keyword}' must be a number` };
    }
  }
  for (const keyword of COUNT_KEYWORDS) {
    const count = schema[keyword];
    if (count !== undefined && (typeof count !== "number" || !Number.isInteger(count) || count < 0)) {
      return { path: `${path}.${keyword}`, message: `'${keyword}' must be a non-negative integer` };
    }
  }
  if (schema.pattern !== undefined) {
    if (typeof schema.pattern !== "string") {
      return { path: `${path}.pattern`, message: "'pattern' must be a string" };
    }
    try {
      new RegExp(schema.pattern, "u");
    } catch (error) {
      return {
        path: `${path}.pattern`,
        message: `'pattern' is not a valid regular expression: ${(error as Error).message}`,
      };
    }
  }
  if (schema.$ref !== undefined && typeof schema.$ref !== "string") {
    return { path: `${path}.$ref`, message: "'$ref' must be a string" };
  }
  return undefined;
}
