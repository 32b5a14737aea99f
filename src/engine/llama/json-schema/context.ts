/**
 * The state of one conversion and how it reports problems: `SchemaContext` (the param, `strict`, the
 * keywords dropped so far, the root's raw definitions; `error` for invalid schemas, `unenforceable` for
 * keywords the grammar cannot enforce), the paths those name (`pointer`, `paramPath`), and the readers that
 * validate a keyword's value before it is used (a 400 when it is malformed).
 */
import { paramPath } from "../../json-schema-limits.js";
import { ApiError } from "../../../shared/errors.js";
import { maxRepetitionCount } from "../grammar/json-schema-gbnf.js";
import { parseRegex, RegexError, type MatchBudget, type ParsedRegex } from "../grammar/regex.js";
import { allTypes, annotationKeywords, inferTypes } from "./keywords.js";
import { isRecord, tryCompile, type JsonObject, type Path } from "./values.js";

export { paramPath };

/**
 * What the conversion produces. "node-llama-cpp": the `GbnfJsonSchema` subset its grammar compiler (and
 * LlamaChat's function calling) understands. "gbnf": the same, plus keywords lmhost's own GBNF emitter
 * enforces (`grammar/json-schema-gbnf.ts`): integer and number bounds, `pattern`, more string formats.
 */
export type ConversionTarget = "node-llama-cpp" | "gbnf";

/** NFA state visits one conversion may spend checking enum / const values against patterns (~0.1 s worst). */
export const maxPatternMatchSteps = 500_000;

/** How many subschemas one conversion may convert (allOf merging and $ref inlining included). */
export const maxConversionSteps = 50_000;

/** `/properties/n/pattern`: a JSON pointer (unescaped) for messages and `ignoredKeywords`. */
export function pointer(path: Path): string {
  return path.map((segment) => `/${segment}`).join("");
}

/** One conversion's settings and findings; `SchemaConverter` extends it, the helpers take it as `context`. */
export class SchemaContext {
  readonly ignored: string[] = [];
  /** The root's `$defs` / `definitions`, unconverted (to look through `$ref` when comparing alternatives). */
  rawDefinitions: JsonObject = {};
  /** Every name defined in a `$defs` / `definitions` anywhere in the schema (a `$ref` must name one). */
  definitionNames: ReadonlySet<string> = new Set();
  /** Definitions being merged into the schema being converted (an allOf member that is a `$ref`). */
  readonly inlining: string[] = [];
  /** NFA steps left for checking listed values against patterns (linear, but states × characters). */
  readonly matchBudget: MatchBudget = { steps: maxPatternMatchSteps };
  private steps = 0;

  constructor(
    readonly param: string,
    readonly strict: boolean,
    readonly target: ConversionTarget = "node-llama-cpp",
  ) {}

  /** Counts one unit of work; a 400 once a schema costs more than any real one does. */
  step(path: Path): void {
    this.steps += 1;
    if (this.steps > maxConversionSteps)
      throw this.errorAt(
        path,
        `makes the conversion expand more than ${maxConversionSteps} subschemas (allOf merges and the definitions they inline); simplify the schema`,
      );
  }

  /** A schema that is not valid (or that no grammar could honour): always a 400 on the schema's param. */
  error(path: Path, message: string): ApiError {
    return new ApiError({
      status: 400,
      message: `Invalid schema for ${this.param}: ${path.length === 0 ? "(root)" : pointer(path)} ${message}.`,
      param: this.param,
      code: "invalid_json_schema",
    });
  }

  /** Like `error`, with `param` naming the exact keyword (`text.format.schema.$defs.a.allOf[0].$ref`). */
  errorAt(path: Path, message: string): ApiError {
    const where = paramPath(this.param, path);
    return new ApiError({
      status: 400,
      message: `Invalid schema at ${where}: it ${message}.`,
      param: where,
      code: "invalid_json_schema",
    });
  }

  /** A keyword the grammar cannot enforce: a 400 naming it with `strict`, otherwise dropped and reported. */
  unenforceable(path: Path, keyword: string, reason: string): void {
    const at = [...path, keyword];
    if (this.strict) {
      const where = paramPath(this.param, at);
      throw new ApiError({
        status: 400,
        message: `lmhost cannot enforce '${keyword}' at ${where}: ${reason}. With strict: true every keyword must be enforced by the output grammar, so the output always validates; remove the keyword, or set strict to false to have lmhost ignore it.`,
        param: where,
        code: "invalid_json_schema",
      });
    }
    const location = pointer(at);
    if (!this.ignored.includes(location)) this.ignored.push(location);
  }
}

export function asSchemaObject(value: unknown, path: Path, context: SchemaContext): JsonObject | true {
  if (value === true) return true;
  if (value === false) throw context.error(path, "is `false`, which no value can satisfy");
  if (!isRecord(value)) throw context.error(path, "must be a schema object");
  const keys = Object.keys(value).filter((key) => !annotationKeywords.has(key) && key !== "description");
  return keys.length === 0 ? true : value;
}

/**
 * A client's `pattern`, parsed by lmhost's own regex module (never run by a backtracking engine). Not an
 * ECMAScript pattern: a 400. Valid but outside the supported subset (lookarounds, backreferences, ...):
 * undefined, after reporting `pattern` as unenforceable with the construct named.
 */
export function readPattern(pattern: unknown, path: Path, context: SchemaContext): ParsedRegex | undefined {
  const at = [...path, "pattern"];
  if (typeof pattern !== "string") throw context.error(at, "must be a string");
  try {
    return parseRegex(pattern);
  } catch (error) {
    if (!(error instanceof RegexError)) throw error;
    // Compiling (never running) with V8 tells an invalid pattern from one lmhost does not support.
    if (error.kind === "invalid" && tryCompile(pattern) === undefined)
      throw context.error(at, `is not a valid regular expression: ${error.message}`);
    context.unenforceable(path, "pattern", `lmhost cannot enforce this pattern: ${error.message}`);
    return undefined;
  }
}

export function readTypes(schema: JsonObject, path: Path, context: SchemaContext): string[] {
  const type = schema.type;
  if (type === undefined) return inferTypes(schema);
  const types = Array.isArray(type) ? type : [type];
  if (types.length === 0) throw context.error([...path, "type"], "must not be empty");
  for (const entry of types) {
    if (typeof entry !== "string" || !allTypes.has(entry)) {
      throw context.error([...path, "type"], `has an unknown type ${JSON.stringify(entry)}`);
    }
  }
  return [...new Set(types as string[])];
}

export function readCount(
  schema: JsonObject,
  keyword: string,
  path: Path,
  context: SchemaContext,
  /** The count goes into lmhost's grammar: beyond `maxRepetitionCount` it cannot be enforced. */
  options: { grammar?: boolean } = {},
): number | undefined {
  const value = schema[keyword];
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw context.error([...path, keyword], "must be a non-negative integer");
  }
  if (options.grammar === true && context.target === "gbnf" && value > maxRepetitionCount) {
    context.unenforceable(
      path,
      keyword,
      `the output grammar supports counts up to ${maxRepetitionCount} (llama.cpp expands a count into as many rules)`,
    );
    return undefined;
  }
  return value;
}
