/**
 * Pure helpers on schema values, shared by the whole conversion: the types (`JsonObject`, `Primitive`,
 * `Path`), listed values (`literalsOf`, `literalSchema`), integer ranges as lists (`enumerateIntegers`),
 * patterns (`literalAlternatives`, `tryCompile`), format checks for listed values, JSON types,
 * local `$ref` names, `deepEqual`. No state, no errors.
 */
import type { GbnfJsonSchema } from "node-llama-cpp";
import { compileRegex, matchRegex, parseRegex, type CompiledRegex } from "../grammar/regex.js";

/** The most values an integer range or a pattern is expanded into (an enum). */
export const maxEnumeratedValues = 256;

export type JsonObject = Record<string, unknown>;
export type Primitive = string | number | boolean | null;
/** Where a keyword is: property names and keywords as strings, array indexes as numbers. */
export type Path = readonly (string | number)[];

export function literalsOf(schema: JsonObject): Primitive[] | undefined {
  if (schema.const !== undefined && isPrimitive(schema.const)) return [schema.const];
  if (Array.isArray(schema.enum) && schema.enum.every(isPrimitive)) return schema.enum as Primitive[];
  return undefined;
}

export function localReferenceName(reference: string): string | undefined {
  for (const prefix of ["#/$defs/", "#/definitions/"]) {
    if (
      reference.startsWith(prefix) &&
      reference.length > prefix.length &&
      !reference.slice(prefix.length).includes("/")
    ) {
      return reference.slice(prefix.length);
    }
  }
  return undefined;
}

/** The integers in [low, high] (that are multiples of `multipleOf`), or undefined when there are too many. */
export function enumerateIntegers(
  low: number,
  high: number,
  multipleOf: number | undefined,
): number[] | undefined {
  if (high < low) return [];
  if (multipleOf !== undefined && Number.isInteger(multipleOf)) {
    const first = Math.ceil(low / multipleOf) * multipleOf;
    if (first > high) return [];
    const count = Math.floor((high - first) / multipleOf) + 1;
    if (count > maxEnumeratedValues) return undefined;
    return Array.from({ length: count }, (_, index) => first + index * multipleOf + 0);
  }
  // A fractional multipleOf of integers (e.g. 0.5 allows every integer, 2.5 every multiple of 5).
  const span = high - low + 1;
  if (span > (multipleOf === undefined ? maxEnumeratedValues : 100 * maxEnumeratedValues)) return undefined;
  const values: number[] = [];
  for (let value = low; value <= high; value++) {
    if (multipleOf === undefined || Number.isInteger(value / multipleOf)) values.push(value + 0);
    if (values.length > maxEnumeratedValues) return undefined;
  }
  return values;
}

/** An anchored list of literal strings: `^abc$`, `^(a|b)$`, `^(?:a|b\.c)$` → its strings; else undefined. */
export function literalAlternatives(pattern: string): string[] | undefined {
  if (!pattern.startsWith("^") || !pattern.endsWith("$") || pattern.endsWith("\\$") || pattern.length < 2)
    return undefined;
  let body = pattern.slice(1, -1);
  let grouped = false;
  const group = /^\((?:\?:)?(.*)\)$/su.exec(body);
  if (group?.[1] !== undefined) {
    body = group[1];
    grouped = true;
  }
  const alternatives: string[] = [];
  let current = "";
  for (let index = 0; index < body.length; index++) {
    const character = body[index] ?? "";
    if (character === "\\") {
      const next = body[index + 1];
      // \d, \w, \b, \n, \u..., back-references: not a literal character (keep it simple).
      if (next === undefined || /[A-Za-z0-9]/.test(next)) return undefined;
      current += next;
      index++;
    } else if (character === "|") {
      // Without a group, ^a|b$ means "starts with a, or ends with b".
      if (!grouped) return undefined;
      alternatives.push(current);
      current = "";
    } else if ("^$.*+?()[]{}".includes(character)) {
      return undefined;
    } else {
      current += character;
    }
  }
  alternatives.push(current);
  let regex: CompiledRegex;
  try {
    regex = compileRegex(parseRegex(pattern));
  } catch {
    return undefined;
  }
  const unique = [...new Set(alternatives)];
  if (unique.length > maxEnumeratedValues || !unique.every((literal) => matchRegex(regex, literal)))
    return undefined;
  return unique;
}

/**
 * ECMA-262 regular expression (JSON Schema's dialect): with the `u` flag when it allows, else without. Only
 * to tell whether a client's pattern is valid: a client's pattern is never run with it (backtracking).
 */
export function tryCompile(pattern: string): RegExp | undefined {
  for (const flags of ["u", ""]) {
    try {
      return new RegExp(pattern, flags);
    } catch {
      // Try the next flags.
    }
  }
  return undefined;
}

const daysInMonth = (year: number, month: number): number => new Date(Date.UTC(year, month, 0)).getUTCDate();
const dateRegex = /^(\d{4})-(\d{2})-(\d{2})$/;
const timeRegex = /^([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?(z|[+-]([01]\d|2[0-3]):[0-5]\d)$/i;
function isDate(value: string): boolean {
  const match = dateRegex.exec(value);
  if (match === null) return false;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  return month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month);
}
/** uuid and email as ajv-formats defines them, run by the linear matcher (listed values are the client's). */
const uuidMatcher = compileRegex(
  parseRegex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
);
const emailMatcher = compileRegex(
  parseRegex(
    "^[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]+(?:\\.[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\\.)+[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$",
  ),
);

/** Checks for listed values (enum / const) with a format. */
export const formatCheckers = new Map<string, (value: string) => boolean>([
  ["uuid", (value) => matchRegex(uuidMatcher, value)],
  ["email", (value) => matchRegex(emailMatcher, value)],
  ["date", isDate],
  ["time", (value) => timeRegex.test(value)],
  [
    "date-time",
    (value) => {
      const [date, time, ...rest] = value.split(/[Tt ]/);
      return (
        rest.length === 0 && date !== undefined && time !== undefined && isDate(date) && timeRegex.test(time)
      );
    },
  ],
]);

export function literalSchema(
  description: { description?: string },
  values: readonly Primitive[],
): GbnfJsonSchema {
  const [only] = values;
  if (values.length === 1 && only !== undefined) return { ...description, const: only };
  return { ...description, enum: [...values] };
}

export function hasJsonType(value: Primitive, type: string): boolean {
  if (type === "integer") return typeof value === "number" && Number.isInteger(value);
  if (type === "number") return typeof value === "number";
  return jsonTypeOf(value) === type;
}

export function jsonTypeOf(value: Primitive): string {
  if (value === null) return "null";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

export function descriptionOf(schema: JsonObject): { description?: string } {
  return typeof schema.description === "string" ? { description: schema.description } : {};
}

export function deepEqual(left: unknown, right: unknown): boolean {
  if (left === right) return true;
  if (typeof left !== "object" || typeof right !== "object" || left === null || right === null) return false;
  if (Array.isArray(left) !== Array.isArray(right)) return false;
  const leftKeys = Object.keys(left);
  const rightKeys = Object.keys(right);
  return (
    leftKeys.length === rightKeys.length &&
    leftKeys.every(
      (key) =>
        Object.hasOwn(right, key) &&
        deepEqual((left as Record<string, unknown>)[key], (right as Record<string, unknown>)[key]),
    )
  );
}

export function isRecord(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function isPrimitive(value: unknown): value is Primitive {
  return (
    value === null || typeof value === "string" || typeof value === "number" || typeof value === "boolean"
  );
}
