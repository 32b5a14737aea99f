/**
 * Conversion of the schemas that produce one value: strings (lengths, patterns, formats), numbers (bounds
 * and `multipleOf`, enforced as an enum of integers), and `const` / `enum` filtered by the other keywords.
 */
import type { GbnfJsonSchema } from "node-llama-cpp";
import { compileRegex, matchRegex, RegexError, type CompiledRegex } from "../grammar/regex.js";
import { readCount, readPattern, readTypes, type SchemaContext } from "./context.js";
import { grammarStringFormats, supportedStringFormats } from "./keywords.js";
import {
  descriptionOf,
  enumerateIntegers,
  formatCheckers,
  hasJsonType,
  isPrimitive,
  literalAlternatives,
  literalSchema,
  maxEnumeratedValues,
  tryCompile,
  type JsonObject,
  type Path,
  type Primitive,
} from "./values.js";

interface Bound {
  value: number;
  exclusive: boolean;
  /** The keyword to name when the bound cannot be enforced. */
  keyword: string;
}

/** `const` / `enum`: the listed values that also satisfy the schema's other keywords. */
export function convertLiterals(schema: JsonObject, path: Path, context: SchemaContext): GbnfJsonSchema {
  const description = descriptionOf(schema);
  let listed: Primitive[] | undefined;
  if (schema.enum !== undefined) {
    if (!Array.isArray(schema.enum) || schema.enum.length === 0 || !schema.enum.every(isPrimitive)) {
      throw context.error(
        [...path, "enum"],
        "must be a non-empty array of strings, numbers, booleans or null",
      );
    }
    listed = schema.enum as Primitive[];
  }
  let values = listed ?? [];
  let keyword = "enum";
  if (schema.const !== undefined) {
    if (!isPrimitive(schema.const))
      throw context.error([...path, "const"], "must be a string, number, boolean or null");
    const constant = schema.const;
    keyword = "const";
    values = listed === undefined || listed.includes(constant) ? [constant] : [];
  }
  values = [...new Set(values)];
  const accepts = valueCheck(schema, path, context);
  const kept = values.filter(accepts);
  if (kept.length === 0) {
    context.unenforceable(path, keyword, "no listed value satisfies the schema's other keywords");
    return literalSchema(description, values.length > 0 ? values : (listed ?? []));
  }
  return literalSchema(description, kept);
}

export function convertString(schema: JsonObject, path: Path, context: SchemaContext): GbnfJsonSchema {
  const description = descriptionOf(schema);
  const minLength = readCount(schema, "minLength", path, context, { grammar: true });
  let maxLength = readCount(schema, "maxLength", path, context, { grammar: true });
  if (minLength !== undefined && maxLength !== undefined && maxLength < minLength) {
    context.unenforceable(path, "maxLength", "it is less than minLength, so no string satisfies both");
    maxLength = undefined;
  }

  let pattern: string | undefined;
  if (schema.pattern !== undefined) {
    if (typeof schema.pattern !== "string") throw context.error([...path, "pattern"], "must be a string");
    const literals = literalAlternatives(schema.pattern);
    if (literals !== undefined) {
      const accepts = valueCheck({ ...schema, type: "string" }, path, context);
      const kept = literals.filter(accepts);
      if (kept.length > 0) return literalSchema(description, kept);
      context.unenforceable(path, "pattern", "none of the strings it allows satisfies the other keywords");
    } else if (context.target === "gbnf") {
      // lmhost's own grammar enforces the pattern (regexToGbnf), but not together with lengths.
      const parsed = readPattern(schema.pattern, path, context);
      if (parsed !== undefined && schema.pattern !== "") pattern = schema.pattern;
    } else {
      if (tryCompile(schema.pattern) === undefined)
        throw context.error([...path, "pattern"], "is not a valid regular expression");
      if (schema.pattern !== "")
        context.unenforceable(
          path,
          "pattern",
          "function-calling grammars (node-llama-cpp) cannot express regular expressions; only an anchored list of literal strings such as ^(red|green)$ is enforced (as an enum)",
        );
    }
  }
  if (pattern !== undefined) {
    for (const keyword of ["minLength", "maxLength", "format"] as const) {
      if (schema[keyword] !== undefined)
        context.unenforceable(path, keyword, "the output grammar cannot combine it with a pattern");
    }
    return { ...description, type: "string", pattern } as GbnfJsonSchema;
  }

  const format = schema.format;
  if (format !== undefined) {
    if (typeof format !== "string") throw context.error([...path, "format"], "must be a string");
    const formats = context.target === "gbnf" ? grammarStringFormats : supportedStringFormats;
    const lengths = formats.get(format);
    if (lengths !== undefined) {
      if (minLength !== undefined && minLength > lengths.shortest)
        context.unenforceable(path, "minLength", `'${format}' strings can be ${lengths.shortest} characters`);
      if (maxLength !== undefined && maxLength < lengths.longest)
        context.unenforceable(path, "maxLength", `'${format}' strings can be ${lengths.longest} characters`);
      return { ...description, type: "string", format } as GbnfJsonSchema;
    }
    context.unenforceable(
      path,
      "format",
      `the output grammar supports only the formats ${[...formats.keys()].join(", ")}, not '${format}'`,
    );
  }
  return {
    ...description,
    type: "string",
    ...(minLength !== undefined ? { minLength } : {}),
    ...(maxLength !== undefined ? { maxLength } : {}),
  };
}

export function convertNumber(
  schema: JsonObject,
  requestedType: "number" | "integer",
  path: Path,
  context: SchemaContext,
): GbnfJsonSchema {
  const description = descriptionOf(schema);
  const bounds = readNumberBounds(schema, path, { dropUnrestrictive: true }, context);
  const { lower, upper } = bounds;
  let multipleOf = bounds.multipleOf;
  let type = requestedType;
  // Multiples of 1 are the integers.
  if (multipleOf === 1) {
    type = "integer";
    multipleOf = undefined;
  }
  if (context.target === "gbnf") return convertNumberForGrammar(schema, type, multipleOf, path, context);
  const plain: GbnfJsonSchema = { ...description, type };
  if (lower === undefined && upper === undefined && multipleOf === undefined) return plain;

  const integral = type === "integer" || (multipleOf !== undefined && Number.isInteger(multipleOf));
  const named = [lower?.keyword, upper?.keyword, multipleOf !== undefined ? "multipleOf" : undefined].filter(
    (keyword): keyword is string => keyword !== undefined,
  );
  const unenforced = (reason: string): GbnfJsonSchema => {
    for (const keyword of named) context.unenforceable(path, keyword, reason);
    return plain;
  };

  if (integral && lower !== undefined && upper !== undefined) {
    const low = lower.exclusive ? Math.floor(lower.value) + 1 : Math.ceil(lower.value);
    const high = upper.exclusive ? Math.ceil(upper.value) - 1 : Math.floor(upper.value);
    const values = enumerateIntegers(low, high, multipleOf);
    if (values === undefined) {
      return unenforced(
        `integer bounds are enforced by listing the allowed integers, and this range allows more than ${maxEnumeratedValues}`,
      );
    }
    if (values.length === 0) return unenforced("no integer satisfies these bounds");
    return literalSchema(description, values);
  }
  if (
    lower !== undefined &&
    upper !== undefined &&
    lower.value === upper.value &&
    !lower.exclusive &&
    !upper.exclusive &&
    (multipleOf === undefined || Number.isInteger(lower.value / multipleOf))
  ) {
    return { ...description, const: lower.value };
  }
  if (!integral) {
    return unenforced(
      "the output grammar cannot bound numbers that are not integers (use type integer with both bounds, at most " +
        `${maxEnumeratedValues} values)`,
    );
  }
  return unenforced(
    `integer bounds are enforced by listing the allowed integers, which needs both a lower and an upper bound (at most ${maxEnumeratedValues} values)`,
  );
}

/**
 * Numbers for lmhost's own grammar: any integer range (one- or two-sided, exclusive, negative) is kept as
 * inclusive integer `minimum` / `maximum` and emitted as digit-range rules; number bounds at integer
 * values are kept (`minimum` / `exclusiveMinimum` / `maximum` / `exclusiveMaximum`) and emitted exactly;
 * `multipleOf` is enforced as an enum where both bounds allow at most {@link maxEnumeratedValues} values.
 */
function convertNumberForGrammar(
  schema: JsonObject,
  type: "number" | "integer",
  multipleOf: number | undefined,
  path: Path,
  context: SchemaContext,
): GbnfJsonSchema {
  const description = descriptionOf(schema);
  const { lower, upper } = readNumberBounds(schema, path, { dropUnrestrictive: false }, context);
  const integral = type === "integer" || (multipleOf !== undefined && Number.isInteger(multipleOf));
  if (multipleOf !== undefined) {
    if (integral && lower !== undefined && upper !== undefined) {
      const low = lower.exclusive ? Math.floor(lower.value) + 1 : Math.ceil(lower.value);
      const high = upper.exclusive ? Math.ceil(upper.value) - 1 : Math.floor(upper.value);
      const values = enumerateIntegers(low, high, multipleOf);
      if (values !== undefined && values.length > 0) return literalSchema(description, values);
      if (values !== undefined) {
        context.unenforceable(path, "multipleOf", "no integer within the bounds is a multiple of it");
        return { ...description, type };
      }
    }
    context.unenforceable(
      path,
      "multipleOf",
      `the output grammar enforces multipleOf only by listing the values, which needs integer values with both bounds (at most ${maxEnumeratedValues})`,
    );
  }
  if (type === "integer") {
    const low =
      lower === undefined
        ? undefined
        : lower.exclusive
          ? Math.floor(lower.value) + 1
          : Math.ceil(lower.value);
    const high =
      upper === undefined
        ? undefined
        : upper.exclusive
          ? Math.ceil(upper.value) - 1
          : Math.floor(upper.value);
    if (low !== undefined && high !== undefined && low > high) {
      context.unenforceable(path, upper?.keyword ?? "maximum", "no integer satisfies these bounds");
      return { ...description, type };
    }
    if (low !== undefined && low === high) return { ...description, const: low };
    return {
      ...description,
      type,
      ...(low !== undefined ? { minimum: low } : {}),
      ...(high !== undefined ? { maximum: high } : {}),
    } as GbnfJsonSchema;
  }
  const kept: Record<string, number> = {};
  for (const [bound, inclusiveKeyword, exclusiveKeyword] of [
    [lower, "minimum", "exclusiveMinimum"],
    [upper, "maximum", "exclusiveMaximum"],
  ] as const) {
    if (bound === undefined) continue;
    if (!Number.isInteger(bound.value)) {
      context.unenforceable(
        path,
        bound.keyword,
        "the output grammar bounds numbers exactly only at integer values (use an integer bound, or type integer)",
      );
      continue;
    }
    kept[bound.exclusive ? exclusiveKeyword : inclusiveKeyword] = bound.value;
  }
  if (
    lower !== undefined &&
    upper !== undefined &&
    Number.isInteger(lower.value) &&
    Number.isInteger(upper.value)
  ) {
    if (lower.value > upper.value || (lower.value === upper.value && (lower.exclusive || upper.exclusive))) {
      context.unenforceable(path, upper.keyword, "no number satisfies these bounds");
      return { ...description, type };
    }
    if (lower.value === upper.value) return { ...description, const: lower.value };
  }
  return { ...description, type, ...kept } as GbnfJsonSchema;
}

/**
 * The tightest lower and upper bound and `multipleOf`. With `dropUnrestrictive`, bounds at or beyond
 * ±(2^53 − 1) are left out: they do not restrict what the grammar generates in practice.
 */
function readNumberBounds(
  schema: JsonObject,
  path: Path,
  options: { dropUnrestrictive: boolean },
  context: SchemaContext,
): { lower: Bound | undefined; upper: Bound | undefined; multipleOf: number | undefined } {
  const read = (keyword: string): number | boolean | undefined => {
    const value = schema[keyword];
    if (value === undefined) return undefined;
    const draft4Flag =
      (keyword === "exclusiveMinimum" || keyword === "exclusiveMaximum") && typeof value === "boolean";
    if (!draft4Flag && (typeof value !== "number" || !Number.isFinite(value)))
      throw context.error([...path, keyword], "must be a number");
    return value as number | boolean;
  };
  const minimum = read("minimum") as number | undefined;
  const maximum = read("maximum") as number | undefined;
  const exclusiveMinimum = read("exclusiveMinimum");
  const exclusiveMaximum = read("exclusiveMaximum");
  const multipleOf = read("multipleOf") as number | undefined;
  if (multipleOf !== undefined && multipleOf <= 0)
    throw context.error([...path, "multipleOf"], "must be greater than 0");

  const lowers: Bound[] = [];
  if (minimum !== undefined)
    lowers.push({ value: minimum, exclusive: exclusiveMinimum === true, keyword: "minimum" });
  if (typeof exclusiveMinimum === "number")
    lowers.push({ value: exclusiveMinimum, exclusive: true, keyword: "exclusiveMinimum" });
  const uppers: Bound[] = [];
  if (maximum !== undefined)
    uppers.push({ value: maximum, exclusive: exclusiveMaximum === true, keyword: "maximum" });
  if (typeof exclusiveMaximum === "number")
    uppers.push({ value: exclusiveMaximum, exclusive: true, keyword: "exclusiveMaximum" });

  const lower = lowers
    .filter((bound) => !options.dropUnrestrictive || bound.value > -Number.MAX_SAFE_INTEGER)
    .reduce<Bound | undefined>(
      (tightest, bound) =>
        tightest === undefined ||
        bound.value > tightest.value ||
        (bound.value === tightest.value && bound.exclusive)
          ? bound
          : tightest,
      undefined,
    );
  const upper = uppers
    .filter((bound) => !options.dropUnrestrictive || bound.value < Number.MAX_SAFE_INTEGER)
    .reduce<Bound | undefined>(
      (tightest, bound) =>
        tightest === undefined ||
        bound.value < tightest.value ||
        (bound.value === tightest.value && bound.exclusive)
          ? bound
          : tightest,
      undefined,
    );
  return { lower, upper, multipleOf };
}

function matchesWithin(regex: CompiledRegex, value: string, path: Path, context: SchemaContext): boolean {
  try {
    return matchRegex(regex, value, context.matchBudget);
  } catch (error) {
    if (!(error instanceof RegexError)) throw error;
    throw context.errorAt(
      [...path, "pattern"],
      `costs too much to check the listed values against (a pattern of many states and long strings); simplify the pattern or shorten the values`,
    );
  }
}

/**
 * A predicate for listed values (enum / const / pattern literals): type, string and number keywords.
 * Keywords for objects and arrays hold vacuously for primitives.
 */
function valueCheck(schema: JsonObject, path: Path, context: SchemaContext): (value: Primitive) => boolean {
  const types = schema.type === undefined ? undefined : readTypes({ type: schema.type }, path, context);
  const minLength = readCount(schema, "minLength", path, context);
  const maxLength = readCount(schema, "maxLength", path, context);
  let regex: CompiledRegex | undefined;
  if (schema.pattern !== undefined) {
    const parsed = readPattern(schema.pattern, path, context);
    // Linear time whatever the pattern (a backtracking engine froze the server on ^(a+)+$).
    if (parsed !== undefined) regex = compileRegex(parsed);
  }
  let format: ((value: string) => boolean) | undefined;
  if (schema.format !== undefined) {
    if (typeof schema.format !== "string") throw context.error([...path, "format"], "must be a string");
    format = formatCheckers.get(schema.format);
    if (format === undefined)
      context.unenforceable(
        path,
        "format",
        `lmhost cannot check listed values against format '${schema.format}'`,
      );
  }
  const { lower, upper, multipleOf } = readNumberBounds(schema, path, { dropUnrestrictive: false }, context);
  return (value) => {
    if (types !== undefined && !types.some((type) => hasJsonType(value, type))) return false;
    if (typeof value === "string") {
      const length = [...value].length;
      if (minLength !== undefined && length < minLength) return false;
      if (maxLength !== undefined && length > maxLength) return false;
      if (regex !== undefined && !matchesWithin(regex, value, path, context)) return false;
      if (format !== undefined && !format(value)) return false;
    }
    if (typeof value === "number") {
      if (lower !== undefined && (lower.exclusive ? value <= lower.value : value < lower.value)) return false;
      if (upper !== undefined && (upper.exclusive ? value >= upper.value : value > upper.value)) return false;
      if (multipleOf !== undefined && !Number.isInteger(value / multipleOf)) return false;
    }
    return true;
  };
}
