/**
 * lmhost's own JSON schema → GBNF emitter for `text.format` (json_schema). Its input is the converter's
 * normalized output for the "gbnf" target (`json-schema/index.ts`): node-llama-cpp's `GbnfJsonSchema`
 * subset plus integer and number bounds, `pattern` and the formats uuid / email.
 *
 * The JSON it allows has the same shape as node-llama-cpp's `createGrammarForJsonSchema` (whose terminals
 * this mirrors): the same whitespace (a newline plus indentation of 4 spaces or a tab per level, or one
 * optional space; none of it inside `$defs` rules), properties in `properties` order, all of them always
 * present, the same string characters and escapes, and the same `"\n\n\n\n"` terminator. It differs where
 * node-llama-cpp's was wrong or could not say more:
 *
 * - integers have no exponent (node-llama-cpp allowed `1e-1`); number exponents have at most two digits
 *   (a 16-digit exponent overflows to Infinity);
 * - integer ranges of any size, one- or two-sided, negative, are digit-range rules (as llama.cpp's own
 *   `json-schema-to-grammar` does); number bounds at integer values are exact: the integer part is a
 *   digit range and the fraction is constrained only at the bounds themselves;
 * - `date` allows only real days (leap years included); `uuid` and an email-like subset are generated;
 * - `pattern` is enforced through `regexToGbnf` (JSON-escaped inside the string).
 *
 * Linear in the schema's size: every rule body is built once and deduplicated through a map. The grammar
 * is capped at {@link maxGrammarCharacters}, repetition counts at {@link maxRepetitionCount}.
 */
import type { GbnfJsonSchema } from "node-llama-cpp";
import { gbnfLiteral, parseRegex, regexToGbnf } from "./regex.js";

/** The largest grammar text emitted (a backstop: the schema limits keep real grammars far below it). */
export const maxGrammarCharacters = 2_000_000;
/** The largest `{n,m}` count emitted: llama.cpp expands counted repetition into that many rules. */
export const maxRepetitionCount = 10_000;

export class GrammarLimitError extends Error {
  override readonly name = "GrammarLimitError";
}

/** What the emitter reads: the converter's output (node-llama-cpp's subset plus the "gbnf" extensions). */
interface GrammarSchema {
  description?: string;
  type?: string | readonly string[];
  const?: unknown;
  enum?: readonly unknown[];
  oneOf?: readonly GrammarSchema[];
  $ref?: string;
  $defs?: Record<string, GrammarSchema>;
  properties?: Record<string, GrammarSchema>;
  additionalProperties?: boolean | GrammarSchema;
  minProperties?: number;
  maxProperties?: number;
  items?: GrammarSchema;
  prefixItems?: readonly GrammarSchema[];
  minItems?: number;
  maxItems?: number;
  minLength?: number;
  maxLength?: number;
  format?: string;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
}

interface Scope {
  nesting: number;
  newLines: boolean;
}

const stringCharacter = '[^"\\\\\\x7F\\x00-\\x1F] | "\\\\" ["\\\\/bfnrt] | "\\\\u" [0-9a-fA-F]{4}';
const quote = '"\\""';

/** The GBNF grammar (root rule `root`) for a converted schema. Throws GrammarLimitError past the caps. */
export function jsonSchemaToGbnf(schema: GbnfJsonSchema): string {
  const emitter = new GbnfEmitter();
  const root = emitter.value(schema as GrammarSchema, { nesting: 0, newLines: true }, new Map());
  return emitter.file(`${root} "\\n\\n\\n\\n" [\\n]*`);
}

class GbnfEmitter {
  private readonly rules = new Map<string, string>();
  private readonly namesByBody = new Map<string, string>();
  private readonly definitionRules = new Map<GrammarSchema, string>();
  private size = 0;
  private nextRule = 0;

  file(rootBody: string): string {
    return [`root ::= ${rootBody}`, ...[...this.rules].map(([name, body]) => `${name} ::= ${body}`)].join(
      "\n",
    );
  }

  /** A rule for `body` (one per distinct body), or the body itself when it is a single name already. */
  private rule(body: string, name?: string): string {
    if (this.rules.has(body)) return body; // already a rule's name
    const existing = this.namesByBody.get(body);
    if (existing !== undefined) return existing;
    const ruleName = name ?? `r${this.nextRule++}`;
    this.define(ruleName, body);
    this.namesByBody.set(body, ruleName);
    return ruleName;
  }

  private define(name: string, body: string): void {
    this.size += name.length + body.length + 6;
    if (this.size > maxGrammarCharacters)
      throw new GrammarLimitError(
        `the grammar for this schema would exceed ${maxGrammarCharacters} characters`,
      );
    this.rules.set(name, body);
  }

  private whitespace(scope: Scope): string {
    if (!scope.newLines) return this.rule("[ ]?", "ws");
    const indent =
      scope.nesting === 0
        ? "[\\n]"
        : `[\\n] (${gbnfLiteral(" ".repeat(4 * scope.nesting))} | "\\t"{${scope.nesting}})`;
    return this.rule(`(${indent} | [ ]?)`, `ws-${scope.nesting}`);
  }

  private commaWhitespace(scope: Scope): string {
    return this.rule(
      `"," ${this.whitespace(scope)}`,
      scope.newLines ? `comma-ws-${scope.nesting}` : "comma-ws",
    );
  }

  /** The rule generating one JSON value valid against `schema`. */
  value(
    schema: GrammarSchema | boolean,
    scope: Scope,
    definitions: ReadonlyMap<string, GrammarSchema>,
  ): string {
    if (schema === true) return this.anyJson(scope);
    if (schema === false) return this.rule('"null"', "null");
    const scoped =
      schema.$defs === undefined ? definitions : new Map([...definitions, ...Object.entries(schema.$defs)]);
    if (schema.$ref !== undefined) return this.reference(schema.$ref, scoped);
    if (schema.oneOf !== undefined)
      return this.rule(
        alternatives(schema.oneOf.map((alternative) => this.value(alternative, scope, scoped))),
      );
    if (schema.const !== undefined) return this.rule(gbnfLiteral(JSON.stringify(schema.const)));
    if (schema.enum !== undefined)
      return this.rule(alternatives(schema.enum.map((value) => gbnfLiteral(JSON.stringify(value)))));
    const types = schema.type === undefined ? [] : Array.isArray(schema.type) ? schema.type : [schema.type];
    const options = types.map((type) => this.typed(schema, type as string, scope, scoped));
    return options.length === 0 ? this.rule('"null"', "null") : this.rule(alternatives(options));
  }

  private typed(
    schema: GrammarSchema,
    type: string,
    scope: Scope,
    definitions: ReadonlyMap<string, GrammarSchema>,
  ): string {
    switch (type) {
      case "string":
        return this.string(schema);
      case "integer":
        return this.rule(integerRule(toBigInt(schema.minimum), toBigInt(schema.maximum)));
      case "number":
        return this.rule(numberRule(schema));
      case "boolean":
        return this.rule('"true" | "false"', "boolean");
      case "null":
        return this.rule('"null"', "null");
      case "object":
        return this.object(schema, scope, definitions);
      case "array":
        return this.array(schema, scope, definitions);
      default:
        throw new Error(`Unknown JSON type '${type}' in a converted schema`);
    }
  }

  private reference(reference: string, definitions: ReadonlyMap<string, GrammarSchema>): string {
    const name = reference.replace(/^#\/\$defs\//, "");
    const definition = definitions.get(name);
    if (definition === undefined) return this.anyJson({ nesting: 0, newLines: true });
    const existing = this.definitionRules.get(definition);
    if (existing !== undefined) return existing;
    // Reserve the name first: a recursive definition refers to itself.
    const ruleName = `def-${this.definitionRules.size}`;
    this.definitionRules.set(definition, ruleName);
    const body = this.value(definition, { nesting: 0, newLines: false }, definitions);
    this.define(ruleName, body);
    return ruleName;
  }

  private string(schema: GrammarSchema): string {
    const character = this.rule(stringCharacter, "char");
    if (schema.pattern !== undefined) {
      const inside = regexToGbnf(parseRegex(schema.pattern), { target: "json-string" });
      return this.rule(`${quote} ${inside} ${quote}`);
    }
    if (schema.format !== undefined) return this.rule(`${quote} ${this.format(schema.format)} ${quote}`);
    const minLength = schema.minLength ?? 0;
    const maxLength = schema.maxLength;
    if (minLength === 0 && maxLength === undefined)
      return this.rule(`${quote} ${character}* ${quote}`, "string");
    if (maxLength === 0) return this.rule('"\\"\\""');
    return this.rule(`${quote} ${repetition(character, undefined, minLength, maxLength)} ${quote}`);
  }

  private format(format: string): string {
    const date = (): string =>
      this.rule(
        [
          '[0-9]{4} "-" (("0" [13578] | "1" [02]) "-" ("0" [1-9] | [12] [0-9] | "3" [01])',
          '("0" [469] | "11") "-" ("0" [1-9] | [12] [0-9] | "30")',
          '"02-" ("0" [1-9] | "1" [0-9] | "2" [0-8]))',
          '([0-9] [0-9] ("0" [48] | [2468] [048] | [13579] [26]) | ("0" [048] | [2468] [048] | [13579] [26]) "00") "-02-29"',
        ].join(" | "),
        "date",
      );
    const time = (): string =>
      this.rule(
        '([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{3})? ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])',
        "time",
      );
    switch (format) {
      case "date":
        return date();
      case "time":
        return time();
      case "date-time":
        return `${date()} "T" ${time()}`;
      case "uuid": {
        const hex = "[0-9a-fA-F]";
        return `${hex}{8} "-" ${hex}{4} "-" ${hex}{4} "-" ${hex}{4} "-" ${hex}{12}`;
      }
      case "email": {
        const atom = this.rule("[A-Za-z0-9_%+-]{1,32}", "email-atom");
        const label = this.rule("[A-Za-z0-9] ([A-Za-z0-9-]{0,30} [A-Za-z0-9])?", "email-label");
        return `${atom} ("." ${atom}){0,3} "@" ${label} ("." ${label}){1,3}`;
      }
      default:
        throw new Error(`Unknown string format '${format}' in a converted schema`);
    }
  }

  private anyJson(scope: Scope): string {
    const name = `any-json-${scope.newLines ? "" : "flat-"}${scope.nesting}`;
    const known = this.rules.get(name);
    if (known !== undefined) return name;
    this.define(name, '""'); // reserved: the flat form refers to itself
    const inner: Scope = scope.newLines ? { nesting: scope.nesting, newLines: false } : scope;
    const sub = scope.newLines ? this.anyJson(inner) : name;
    const body = alternatives([
      this.string({}),
      this.rule(numberRule({}), "number"),
      this.rule('"true" | "false"', "boolean"),
      this.rule('"null"', "null"),
      this.arrayOf(scope, [], sub, 0, undefined),
      this.objectOf(scope, [], sub, 0, undefined),
    ]);
    this.rules.set(name, body);
    this.size += body.length;
    return name;
  }

  private object(
    schema: GrammarSchema,
    scope: Scope,
    definitions: ReadonlyMap<string, GrammarSchema>,
  ): string {
    const inner: Scope = { nesting: scope.nesting + 1, newLines: scope.newLines };
    const fields = Object.entries(schema.properties ?? {}).map(
      ([name, propertySchema]) =>
        `${gbnfLiteral(JSON.stringify(name))} ":" [ ]? ${this.value(propertySchema, inner, definitions)}`,
    );
    const additional = schema.additionalProperties;
    const additionalValue =
      additional === undefined || additional === false
        ? undefined
        : additional === true
          ? this.anyJson(inner)
          : this.value(additional, inner, definitions);
    return this.objectOf(scope, fields, additionalValue, schema.minProperties ?? 0, schema.maxProperties);
  }

  /** GbnfObjectMap: the listed fields in order, then additional properties within the property counts. */
  private objectOf(
    scope: Scope,
    fields: readonly string[],
    additionalValue: string | undefined,
    minPropertiesRequested: number,
    maxPropertiesRequested: number | undefined,
  ): string {
    const inner: Scope = { nesting: scope.nesting + 1, newLines: scope.newLines };
    const comma = this.commaWhitespace(inner);
    const minProperties = Math.max(Math.floor(minPropertiesRequested), fields.length);
    let maxProperties = maxPropertiesRequested === undefined ? undefined : Math.floor(maxPropertiesRequested);
    if (maxProperties !== undefined && maxProperties < minProperties) maxProperties = minProperties;
    const items: string[] = [];
    for (const field of fields) {
      if (items.length > 0) items.push(comma);
      items.push(field);
    }
    if (additionalValue !== undefined) {
      const pair = this.rule(`${this.string({})} ":" [ ]? ${additionalValue}`);
      const extraMax = maxProperties === undefined ? undefined : maxProperties - fields.length;
      if (minProperties > fields.length) {
        if (items.length > 0) items.push(comma);
        items.push(repetition(pair, comma, minProperties - fields.length, extraMax));
      } else if (extraMax === undefined || extraMax > 0) {
        if (items.length === 0) items.push(repetition(pair, comma, 0, extraMax));
        else items.push(repetition(this.rule(`${comma} ${pair}`), undefined, 0, extraMax));
      }
    }
    return this.rule(join(['"{"', this.whitespace(inner), ...items, this.whitespace(scope), '"}"']));
  }

  private array(
    schema: GrammarSchema,
    scope: Scope,
    definitions: ReadonlyMap<string, GrammarSchema>,
  ): string {
    const inner: Scope = { nesting: scope.nesting + 1, newLines: scope.newLines };
    const prefix = (schema.prefixItems ?? []).map((item) => this.value(item, inner, definitions));
    // node-llama-cpp generates items without a schema as any JSON at the outermost scope.
    const item =
      schema.items === undefined
        ? this.anyJson({ nesting: 0, newLines: true })
        : this.value(schema.items, inner, definitions);
    return this.arrayOf(scope, prefix, item, schema.minItems ?? 0, schema.maxItems);
  }

  /** GbnfArray: the prefix items, then `item` repeated within the item counts. */
  private arrayOf(
    scope: Scope,
    prefix: readonly string[],
    item: string,
    minItemsRequested: number,
    maxItemsRequested: number | undefined,
  ): string {
    const inner: Scope = { nesting: scope.nesting + 1, newLines: scope.newLines };
    const comma = this.commaWhitespace(inner);
    const minItems = Math.max(Math.floor(minItemsRequested), prefix.length);
    let maxItems = maxItemsRequested === undefined ? undefined : Math.floor(maxItemsRequested);
    if (maxItems !== undefined && maxItems < minItems) maxItems = minItems;
    const items: string[] = [];
    for (const prefixItem of prefix) {
      if (items.length > 0) items.push(comma);
      items.push(prefixItem);
    }
    const restMin = minItems - prefix.length;
    const restMax = maxItems === undefined ? undefined : maxItems - prefix.length;
    if (restMax === undefined || restMax > 0) {
      if (items.length > 0)
        items.push(repetition(this.rule(`${comma} ${item}`), undefined, restMin, restMax));
      else items.push(repetition(item, comma, restMin, restMax));
    }
    return this.rule(join(['"["', this.whitespace(inner), ...items, this.whitespace(scope), '"]"']));
  }
}

/** A sequence of GBNF items, leaving out empty ones. */
function join(items: readonly string[]): string {
  return items.filter((item) => item !== "" && item !== '""').join(" ");
}

function alternatives(options: readonly string[]): string {
  const unique = [...new Set(options)];
  return unique.length === 1 ? (unique[0] ?? '""') : unique.join(" | ");
}

/** GbnfRepetition: `value` repeated min..max times, `separator` between repetitions. */
function repetition(
  value: string,
  separator: string | undefined,
  min: number,
  max: number | undefined,
): string {
  for (const count of [min, max]) {
    if (count !== undefined && count > maxRepetitionCount)
      throw new GrammarLimitError(
        `a count of ${count} is more than the grammar supports (${maxRepetitionCount})`,
      );
  }
  if (max === 0) return '""';
  const item = `(${value})`;
  if (separator === undefined) {
    if (max === undefined) return min === 0 ? `${item}*` : min === 1 ? `${item}+` : `${item}{${min},}`;
    if (min === 0 && max === 1) return `${item}?`;
    return min === max ? `${item}{${min}}` : `${item}{${min},${max}}`;
  }
  const more = (low: number, high: number | undefined): string => {
    const pair = `(${separator} ${value})`;
    if (high === undefined) return low === 0 ? `${pair}*` : `${pair}{${low},}`;
    if (low === high) return low === 0 ? "" : `${pair}{${low}}`;
    return low === 0 && high === 1 ? `${pair}?` : `${pair}{${low},${high}}`;
  };
  if (min === 0) return `(${value} ${more(0, max === undefined ? undefined : max - 1)})?`;
  return `${value} ${more(min - 1, max === undefined ? undefined : max - 1)}`.trim();
}

// ---- Numbers ----

function toBigInt(value: number | undefined): bigint | undefined {
  return value === undefined ? undefined : BigInt(value);
}

const unboundedDigits = 16;

const largestExact = 10n ** BigInt(unboundedDigits) - 1n;

/** `value` rounded to its two leading digits (up or down), e.g. 123456 → 130000 (up) / 120000 (down). */
function roundToLeadingDigits(value: bigint, direction: "up" | "down"): bigint {
  const scale = 10n ** BigInt(Math.max(0, value.toString().length - 2));
  const rounded = (value / scale) * scale;
  return direction === "up" && rounded < value ? rounded + scale : rounded;
}

/**
 * Non-negative integers with no leading zero, in [low, high] (high undefined: up to 16 digits, or low's
 * length). Exact for ends of at most 16 digits (±(2^53 − 1) has 16). Beyond, a subset that keeps the
 * grammar linear in the number of digits: nothing longer than 16 digits unless low is, and then only
 * numbers between low and high rounded inward to their two leading digits (or low itself).
 */
function naturalRange(lowRequested: bigint, highRequested: bigint | undefined): string[] {
  let low = lowRequested;
  let high = highRequested;
  if (low > largestExact) {
    const roundedLow = roundToLeadingDigits(low, "up");
    const top = 10n ** BigInt(low.toString().length) - 1n;
    const roundedHigh = roundToLeadingDigits(high === undefined || high > top ? top : high, "down");
    if (high !== undefined && roundedLow > high) return [gbnfLiteral(low.toString())];
    if (roundedLow > roundedHigh) return [gbnfLiteral(roundedLow.toString())];
    [low, high] = [roundedLow, roundedHigh === roundToLeadingDigits(top, "down") ? top : roundedHigh];
  } else if (high !== undefined && high > largestExact) high = largestExact;
  const lowText = low.toString();
  const options: string[] = [];
  if (high === undefined) {
    // Numbers as long as low, from low up; then every longer number up to 16 digits.
    options.push(...naturalRange(low, 10n ** BigInt(lowText.length) - 1n));
    if (lowText.length < unboundedDigits)
      options.push(`[1-9] [0-9]{${lowText.length},${unboundedDigits - 1}}`);
    return options;
  }
  const maxDigits = high.toString().length;
  for (let digits = lowText.length; digits <= maxDigits; digits++) {
    const smallest = digits === 1 ? 0n : 10n ** BigInt(digits - 1);
    const largest = 10n ** BigInt(digits) - 1n;
    const from = low > smallest ? low : smallest;
    const to = high < largest ? high : largest;
    if (from > to) continue;
    options.push(...sameLengthRange(from.toString(), to.toString()));
  }
  return options;
}

/** Digit strings of one length between `low` and `high` (inclusive), as GBNF alternatives. */
function sameLengthRange(low: string, high: string): string[] {
  if (low.length === 0) return ['""'];
  if (low === high) return [gbnfLiteral(low)];
  const [first, last] = [Number(low[0]), Number(high[0])];
  const restLow = low.slice(1);
  const restHigh = high.slice(1);
  const rest = restLow.length;
  const anyRest = rest === 0 ? "" : rest === 1 ? " [0-9]" : ` [0-9]{${rest}}`;
  if (first === last) return sameLengthRange(restLow, restHigh).map((tail) => `"${first}" ${tail}`.trim());
  const options: string[] = [];
  const lowFull = /^0*$/.test(restLow);
  const highFull = /^9*$/.test(restHigh);
  const middleFrom = lowFull ? first : first + 1;
  const middleTo = highFull ? last : last - 1;
  if (!lowFull)
    options.push(...sameLengthRange(restLow, "9".repeat(rest)).map((tail) => `"${first}" ${tail}`.trim()));
  if (middleFrom <= middleTo)
    options.push(`${middleFrom === middleTo ? `"${middleFrom}"` : `[${middleFrom}-${middleTo}]`}${anyRest}`);
  if (!highFull)
    options.push(...sameLengthRange("0".repeat(rest), restHigh).map((tail) => `"${last}" ${tail}`.trim()));
  return options;
}

/** Integers in [low, high] (either side open), written without exponent or leading zeros. */
export function integerRule(low: bigint | undefined, high: bigint | undefined): string {
  const options: string[] = [];
  // Non-negative part.
  if (high === undefined || high >= 0n) {
    const from = low === undefined || low < 0n ? 0n : low;
    options.push(...naturalRange(from, high));
  }
  // Negative part: "-" and a magnitude in [max(1, -high), -low].
  if (low === undefined || low < 0n) {
    const magnitudeFrom = high === undefined || high >= 0n ? 1n : -high;
    const magnitudeTo = low === undefined ? undefined : -low;
    const magnitudes = naturalRange(magnitudeFrom, magnitudeTo);
    if (magnitudes.length > 0) options.push(`"-" (${magnitudes.join(" | ")})`);
  }
  return options.length === 0 ? '"0"' : options.join(" | ");
}

const fractionDigits = '"." [0-9]{1,16}';
const nonZeroFraction = '"." [0-9]{0,15} [1-9]';
const zeroFraction = '("." "0"{1,16})?';

/**
 * A magnitude m = I.F ≥ 0 (integer part I without leading zeros, optional fraction F, no exponent) in an
 * interval with integer ends: exact, because I.F ≥ a ⇔ I ≥ a and I.F ≤ b ⇔ I < b or (I = b and F = 0).
 */
function magnitudeRule(
  low: { value: bigint; exclusive: boolean },
  high: { value: bigint; exclusive: boolean } | undefined,
): string[] {
  const options: string[] = [];
  // Integer parts with any fraction: I in [low (+1 when exclusive), high - 1].
  const from = low.exclusive ? low.value + 1n : low.value;
  const to = high === undefined ? undefined : high.value - 1n;
  if (to === undefined || from <= to) {
    const integers = naturalRange(from, to);
    if (integers.length > 0) options.push(`(${integers.join(" | ")}) (${fractionDigits})?`);
  }
  // An exclusive lower end: I = low with a fraction that is not zero (below high, which is ≥ low + 1 then).
  if (low.exclusive && (high === undefined || high.value > low.value))
    options.push(`${gbnfLiteral(low.value.toString())} ${nonZeroFraction}`);
  // An inclusive upper end: exactly high (a zero fraction allowed).
  if (
    high !== undefined &&
    !high.exclusive &&
    (high.value > low.value || (high.value === low.value && !low.exclusive))
  )
    options.push(`${gbnfLiteral(high.value.toString())} ${zeroFraction}`);
  return options;
}

/** Numbers, with bounds at integer values when given (then without exponent). */
function numberRule(schema: GrammarSchema): string {
  const lowerValue = schema.exclusiveMinimum ?? schema.minimum;
  const upperValue = schema.exclusiveMaximum ?? schema.maximum;
  if (lowerValue === undefined && upperValue === undefined)
    return `"-"? ("0" | [1-9] [0-9]{0,15}) (${fractionDigits})? ([eE] [-+]? ("0" | [1-9] [0-9]?))?`;
  const lower =
    lowerValue === undefined
      ? undefined
      : { value: BigInt(lowerValue), exclusive: schema.exclusiveMinimum !== undefined };
  const upper =
    upperValue === undefined
      ? undefined
      : { value: BigInt(upperValue), exclusive: schema.exclusiveMaximum !== undefined };
  const options: string[] = [];
  // x ≥ 0 (written without "-"): magnitude in [max(lower, 0), upper].
  if (upper === undefined || upper.value > 0n || (upper.value === 0n && !upper.exclusive)) {
    const low = lower === undefined || lower.value < 0n ? { value: 0n, exclusive: false } : lower;
    options.push(...magnitudeRule(low, upper));
  }
  // x < 0: "-" and a magnitude m > 0 with -m within the bounds: m in (max(0, -upper), -lower].
  if (lower === undefined || lower.value < 0n) {
    const low =
      upper === undefined || upper.value >= 0n
        ? { value: 0n, exclusive: true }
        : { value: -upper.value, exclusive: upper.exclusive };
    const high = lower === undefined ? undefined : { value: -lower.value, exclusive: lower.exclusive };
    const magnitudes = magnitudeRule(low, high);
    if (magnitudes.length > 0) options.push(`"-" (${magnitudes.join(" | ")})`);
  }
  return options.length === 0 ? '"0"' : options.join(" | ");
}
