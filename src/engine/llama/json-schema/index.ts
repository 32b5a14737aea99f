/**
 * Pure conversion of a client's JSON schema (OpenAI structured outputs, function parameters) into what a
 * grammar can enforce, so that what the grammar generates validates against the client's schema. Two
 * targets (`ConversionTarget`):
 *
 * - "gbnf" — `text.format` json_schema. lmhost emits the GBNF itself (`convertJsonSchemaToGbnf` →
 *   `../grammar/json-schema-gbnf.ts`) and creates it with `llama.createGrammar`. Output shape (whitespace,
 *   property order = `properties` order, every property always present) is node-llama-cpp's.
 * - "node-llama-cpp" — `tools[].parameters`: LlamaChat's function calling builds its own grammar from a
 *   `GbnfJsonSchema`, so the output must stay within that subset (`convertJsonSchema`).
 *
 * node-llama-cpp's subset has pitfalls (ENGINE-NOTES), worked around for both targets:
 * - `anyOf` silently compiles to `null` → rewritten to `oneOf`; `allOf` members are merged;
 * - `type: [...]` listing object/array, or combined with constraints, only keeps primitives → split into `oneOf`;
 * - an object without `properties` and without `additionalProperties` would only allow `{}` → any keys;
 * - a schema without keywords (`{}` / `true`) compiles to `null` → any JSON value;
 * - `definitions` / `#/definitions/...` → `$defs` / `#/$defs/...`; `nullable: true` → `oneOf [..., null]`.
 *
 * Enforced by the grammar on both targets: `type`, `enum`, `const`, `properties`, `additionalProperties`,
 * `minLength`/`maxLength`, `format` date / time / date-time, `items`/`prefixItems`, `minItems`/`maxItems`,
 * `minProperties`/`maxProperties`, local `$ref`. `required` holds because every listed property is always
 * generated (a required name missing from `properties` is added with the `additionalProperties` schema).
 *
 * Only on the "gbnf" target (exact unless noted):
 * - integer bounds of any size: one- or two-sided, `exclusive*` (also fractional bounds, rounded inward),
 *   negative ranges → digit-range rules; integers are written without exponent;
 * - number bounds at integer values (`minimum: 0` → no leading minus; `[-5, 5]`; `exclusiveMinimum: 0`):
 *   the integer part is a digit range and the fraction is constrained only at the bounds. Bounded numbers
 *   are written without exponent (so `1e-7` is not generated, though it is valid); non-integer bounds
 *   (`minimum: 0.5`) are not enforceable;
 * - `pattern` through lmhost's regex module (`../grammar/regex.ts`), JSON-escaped inside the string; not
 *   together with `minLength` / `maxLength` / `format` (those are then unenforceable);
 * - formats `uuid` and `email` (a subset: dot-separated atoms, `@`, two to four labels), and `date` only
 *   with real days (node-llama-cpp's allows 02-30).
 *
 * Only on the "node-llama-cpp" target, enforced by conversion: integer bounds (`minimum`/`maximum`/
 * `exclusive*`) with both ends and at most {@link maxEnumeratedValues} values → an `enum` of those
 * integers; bounds at or beyond ±(2^53 − 1) (what zod emits for `.int()`) do not restrict and are left out.
 *
 * Enforced by conversion on both targets:
 * - `multipleOf` with both bounds and at most {@link maxEnumeratedValues} values → an `enum`;
 * - `pattern` that is an anchored list of literals (`^(red|green)$`, `^abc$`) → an `enum`;
 * - `enum` / `const` with other keywords (`type`, `pattern`, `minLength`, `minimum`, ...) → only the listed
 *   values that satisfy them; patterns are checked by the regex module's linear matcher, never by a
 *   backtracking engine (a client's `^(a+)+$` froze the server), so a pattern outside its subset
 *   (lookarounds, backreferences) cannot be checked and is unenforceable;
 * - `allOf` → one schema: properties united (a property in two members gets both schemas), `required`
 *   united, the tighter of two bounds, `type` and `enum` intersected.
 *
 * What cannot be enforced (the rest of `pattern` / bounds / formats per target, `uniqueItems` on arrays of
 * more than one item, `oneOf` alternatives that can match the same value, `allOf` members that disagree,
 * keywords beside `$ref`, unsatisfiable combinations): with `strict` a 400 `invalid_json_schema` whose
 * param names the keyword (`text.format.schema.properties.n.pattern`); without, the keyword is dropped,
 * reported in `ignoredKeywords`, and everything else is still enforced. Keywords whose meaning the grammar
 * would change (`not`, `if`, `patternProperties`, non-local `$ref`, ...) are a 400 either way.
 *
 * Hostile schemas are bounded before any expensive work: the size limits of `../../json-schema-limits.ts`
 * (OpenAI's published limits; also checked at the API boundary), a cap on conversion steps, on `oneOf`
 * alternatives checked for overlap, on regex expansion and on the emitted grammar; `$ref` cycles that
 * never write an object or array (`references.ts`) and `allOf` that would inline a definition into itself
 * are a 400 naming the `$ref`, while recursion through `properties` / `items` (a tree) works.
 *
 * This file is the public API. The rest of the folder: `converter.ts` (the recursive walk: structure,
 * objects, arrays, `$defs`), `scalars.ts` (strings, numbers, `const` / `enum`), `merge-all-of.ts`,
 * `one-of.ts` (can two alternatives match one value), `references.ts` (`$ref` cycles), `context.ts`
 * (errors, unenforceable keywords, keyword readers, the target), `keywords.ts` (what each keyword means
 * here), `values.ts` (pure value helpers).
 */
import type { GbnfJsonSchema } from "node-llama-cpp";
import { findSchemaCostProblem } from "../../json-schema-limits.js";
import { ApiError } from "../../../shared/errors.js";
import { GrammarLimitError, jsonSchemaToGbnf } from "../grammar/json-schema-gbnf.js";
import { RegexError } from "../grammar/regex.js";
import { SchemaConverter, collectDefinitions } from "./converter.js";
import { asSchemaObject, type ConversionTarget } from "./context.js";
import { checkReferenceCycles } from "./references.js";
import { isRecord, type JsonObject } from "./values.js";

export { anyJsonSchema } from "./converter.js";
export { paramPath, pointer, type ConversionTarget } from "./context.js";
export { literalAlternatives, maxEnumeratedValues } from "./values.js";

export interface ConvertedJsonSchema {
  schema: GbnfJsonSchema;
  /**
   * JSON-pointer paths (`/properties/n/pattern`) of keywords that were dropped because the grammar cannot
   * enforce them. Always empty with `strict` (they are a 400 instead).
   */
  ignoredKeywords: string[];
}

export interface ConvertJsonSchemaOptions {
  /**
   * Objects without `properties` and without `additionalProperties` allow no keys (`{}`) instead of any
   * keys. Used for function parameters, where `{"type": "object"}` means "no arguments".
   */
  closedObjects?: boolean;
  /**
   * true: a keyword the grammar cannot enforce is an ApiError 400 `invalid_json_schema` whose param is its
   * path (`<param>.properties.n.pattern`). false (default): it is dropped and listed in `ignoredKeywords`.
   */
  strict?: boolean;
  /** Which grammar builder the output is for (default "node-llama-cpp"; see `ConversionTarget`). */
  target?: ConversionTarget;
}

export function convertJsonSchema(
  input: unknown,
  param: string,
  options: ConvertJsonSchemaOptions = {},
): ConvertedJsonSchema {
  const converter = new SchemaConverter(
    param,
    options.closedObjects ?? false,
    options.strict ?? false,
    options.target ?? "node-llama-cpp",
  );
  // The API checks this first (json-schema-check.ts); checked again for any other caller. Linear.
  const cost = findSchemaCostProblem(input);
  if (cost !== undefined) throw converter.errorAt(cost.path, `crosses a limit: ${cost.message}`);
  const root = asSchemaObject(input, [], converter);
  checkReferenceCycles(root, converter);
  converter.rawDefinitions = root === true ? {} : rawDefinitions(root);
  converter.definitionNames = definitionNamesIn(root);
  const rootDefinitions = collectDefinitions(root, [], converter);
  const schema = converter.convert(root, []);
  if (rootDefinitions !== undefined && isRecord(schema)) {
    return {
      schema: { ...schema, $defs: rootDefinitions } as GbnfJsonSchema,
      ignoredKeywords: converter.ignored,
    };
  }
  return { schema, ignoredKeywords: converter.ignored };
}

export interface JsonSchemaGrammar {
  /** GBNF text (root rule `root`), for `llama.createGrammar({grammar})`. */
  grammar: string;
  ignoredKeywords: string[];
}

/**
 * The GBNF grammar lmhost itself builds for a `text.format` json_schema: the "gbnf" conversion, then
 * `jsonSchemaToGbnf`. A grammar past its caps is a 400 on `param`.
 */
export function convertJsonSchemaToGbnf(
  input: unknown,
  param: string,
  options: Omit<ConvertJsonSchemaOptions, "target"> = {},
): JsonSchemaGrammar {
  const { schema, ignoredKeywords } = convertJsonSchema(input, param, { ...options, target: "gbnf" });
  try {
    return { grammar: jsonSchemaToGbnf(schema), ignoredKeywords };
  } catch (error) {
    if (!(error instanceof GrammarLimitError) && !(error instanceof RegexError)) throw error;
    throw new ApiError({
      status: 400,
      message: `The JSON schema in ${param} is too large for an output grammar: ${error.message}.`,
      param,
      code: "invalid_json_schema",
    });
  }
}

function rawDefinitions(schema: JsonObject): JsonObject {
  return {
    ...(isRecord(schema.definitions) ? schema.definitions : {}),
    ...(isRecord(schema.$defs) ? schema.$defs : {}),
  };
}

/** The names of every `$defs` / `definitions` entry anywhere in `schema`. Iterative; linear in its size. */
function definitionNamesIn(schema: unknown): Set<string> {
  const names = new Set<string>();
  const pending: unknown[] = [schema];
  for (let node = pending.pop(); node !== undefined; node = pending.pop()) {
    if (Array.isArray(node)) {
      for (const member of node as unknown[]) pending.push(member);
      continue;
    }
    if (!isRecord(node)) continue;
    for (const keyword of ["$defs", "definitions"]) {
      const map = node[keyword];
      if (isRecord(map)) for (const name of Object.keys(map)) names.add(name);
    }
    for (const value of Object.values(node)) pending.push(value);
  }
  return names;
}
