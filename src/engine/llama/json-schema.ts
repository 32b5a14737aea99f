/**
 * Pure conversion of a client's JSON schema (OpenAI structured outputs, function parameters) into the
 * subset node-llama-cpp's grammar compiler understands, so that what the grammar generates validates
 * against the client's schema. Its pitfalls (ENGINE-NOTES) are worked around:
 *
 * - `anyOf` silently compiles to `null` → rewritten to `oneOf`; `allOf` members are merged;
 * - `type: [...]` listing object/array, or combined with constraints, only keeps primitives → split into `oneOf`;
 * - an object without `properties` and without `additionalProperties` would only allow `{}` → any keys;
 * - a schema without keywords (`{}` / `true`) compiles to `null` → any JSON value;
 * - `definitions` / `#/definitions/...` → `$defs` / `#/$defs/...`; `nullable: true` → `oneOf [..., null]`.
 *
 * Enforced natively by the grammar: `type`, `enum`, `const`, `properties`, `additionalProperties`,
 * `minLength`/`maxLength`, `format` date / time / date-time, `items`/`prefixItems`, `minItems`/`maxItems`,
 * `minProperties`/`maxProperties`, local `$ref`. `required` holds because every listed property is always
 * generated (a required name missing from `properties` is added with the `additionalProperties` schema).
 *
 * Enforced by conversion:
 * - integer bounds (`minimum`/`maximum`/`exclusive*`, `multipleOf`) with both ends and at most
 *   {@link maxEnumeratedValues} values → an `enum` of those integers (one value → `const`); bounds at or
 *   beyond ±(2^53 − 1) (what zod emits for `.int()`) do not restrict and are left out;
 * - `pattern` that is an anchored list of literals (`^(red|green)$`, `^abc$`) → an `enum`;
 * - `enum` / `const` with other keywords (`type`, `pattern`, `minLength`, `minimum`, ...) → only the listed
 *   values that satisfy them;
 * - `allOf` → one schema: properties united (a property in two members gets both schemas), `required`
 *   united, the tighter of two bounds, `type` and `enum` intersected.
 *
 * What cannot be enforced (any other `pattern`, unbounded or too-wide numeric ranges, non-integer bounds,
 * `uniqueItems` on arrays of more than one item, formats other than date / time / date-time, `oneOf`
 * alternatives that can match the same value, `allOf` members that disagree, keywords beside `$ref`,
 * unsatisfiable combinations): with `strict` a 400 `invalid_json_schema` whose param names the keyword
 * (`text.format.schema.properties.n.pattern`); without, the keyword is dropped, reported in
 * `ignoredKeywords`, and everything else is still enforced. Keywords whose meaning the grammar would change
 * (`not`, `if`, `patternProperties`, non-local `$ref`, ...) are a 400 either way.
 */
import type { GbnfJsonSchema } from "node-llama-cpp";
import { ApiError } from "../../shared/errors.js";

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
}

/** The most values an integer range or a pattern is expanded into (an enum). */
export const maxEnumeratedValues = 256;

type JsonObject = Record<string, unknown>;
type Primitive = string | number | boolean | null;
/** Where a keyword is: property names and keywords as strings, array indexes as numbers. */
type Path = readonly (string | number)[];

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
  // Without `contains` (which is refused) these have no effect.
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

/** Keywords that may sit beside `$ref` without changing what is valid. */
const referenceCompanions = new Set([...annotationKeywords, "$ref", "description", "$defs", "definitions"]);

/** Formats the grammar generates natively, with the lengths of the strings it generates for them. */
const supportedStringFormats = new Map<string, { shortest: number; longest: number }>([
  ["date", { shortest: 10, longest: 10 }],
  ["time", { shortest: 9, longest: 18 }],
  ["date-time", { shortest: 20, longest: 29 }],
]);
const primitiveTypes = new Set(["string", "number", "integer", "boolean", "null"]);
const allTypes = new Set([...primitiveTypes, "object", "array"]);
const numberKeywords = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"];
const stringKeywords = ["minLength", "maxLength", "format", "pattern"];
const arrayKeywords = ["items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems"];
const objectKeywords = ["properties", "additionalProperties", "required", "minProperties", "maxProperties"];

/** Any JSON value, in a form the grammar compiler accepts (what `{}` and `true` convert to). */
export const anyJsonSchema: GbnfJsonSchema = {
  oneOf: [
    { type: ["string", "number", "boolean", "null"] },
    { type: "object", additionalProperties: true },
    { type: "array" },
  ],
};

export function convertJsonSchema(
  input: unknown,
  param: string,
  options: ConvertJsonSchemaOptions = {},
): ConvertedJsonSchema {
  const converter = new SchemaConverter(param, options.closedObjects ?? false, options.strict ?? false);
  const root = asSchemaObject(input, [], converter);
  converter.rawDefinitions = root === true ? {} : rawDefinitions(root);
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

/** `/properties/n/pattern`: a JSON pointer (unescaped) for messages and `ignoredKeywords`. */
export function pointer(path: Path): string {
  return path.map((segment) => `/${segment}`).join("");
}

/** `text.format.schema.properties.n.pattern`, `tools[0].parameters.anyOf[1]`: a path as an API param. */
export function paramPath(param: string, path: Path): string {
  return (
    param +
    path
      .map((segment) => {
        if (typeof segment === "number") return `[${segment}]`;
        return /^[A-Za-z_$][\w$]*$/.test(segment) ? `.${segment}` : `[${JSON.stringify(segment)}]`;
      })
      .join("")
  );
}

function rawDefinitions(schema: JsonObject): JsonObject {
  return {
    ...(isRecord(schema.definitions) ? schema.definitions : {}),
    ...(isRecord(schema.$defs) ? schema.$defs : {}),
  };
}

function collectDefinitions(
  schema: JsonObject | true,
  path: Path,
  converter: SchemaConverter,
): Record<string, GbnfJsonSchema> | undefined {
  if (schema === true) return undefined;
  const definitions: Record<string, GbnfJsonSchema> = {};
  let found = false;
  for (const keyword of ["$defs", "definitions"]) {
    const value = schema[keyword];
    if (value === undefined) continue;
    if (!isRecord(value)) throw converter.error([...path, keyword], "must be an object of schemas");
    for (const [name, definition] of Object.entries(value)) {
      const definitionPath = [...path, keyword, name];
      definitions[name] = converter.convert(
        asSchemaObject(definition, definitionPath, converter),
        definitionPath,
      );
      found = true;
    }
  }
  return found ? definitions : undefined;
}

interface Bound {
  value: number;
  exclusive: boolean;
  /** The keyword to name when the bound cannot be enforced. */
  keyword: string;
}

/** What an alternative of `oneOf` can produce, to tell whether two alternatives can match one value. */
interface Shape {
  /** JSON types it allows (`integer` is a subset of `number`); undefined: any. */
  types: Set<string> | undefined;
  /** The only values it allows (const / enum), when listed. */
  literals: Primitive[] | undefined;
  /** Object properties restricted to listed values (discriminators). */
  propertyLiterals: Map<string, Primitive[]>;
}

class SchemaConverter {
  readonly ignored: string[] = [];
  /** The root's `$defs` / `definitions`, unconverted (to look through `$ref` when comparing alternatives). */
  rawDefinitions: JsonObject = {};

  constructor(
    private readonly param: string,
    private readonly closedObjects: boolean,
    private readonly strict: boolean,
  ) {}

  /** A schema that is not valid (or that no grammar could honour): always a 400 on the schema's param. */
  error(path: Path, message: string): ApiError {
    return new ApiError({
      status: 400,
      message: `Invalid schema for ${this.param}: ${path.length === 0 ? "(root)" : pointer(path)} ${message}.`,
      param: this.param,
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

  convert(schema: JsonObject | true, path: Path): GbnfJsonSchema {
    if (schema === true) return anyJsonSchema;
    const description = descriptionOf(schema);

    for (const keyword of Object.keys(schema)) {
      if (unsupportedKeywords.has(keyword))
        throw this.error([...path, keyword], "uses a keyword that is not supported");
    }

    if (schema.nullable === true) {
      const { nullable: _nullable, ...rest } = schema;
      const inner = asSchemaObject(rest, path, this);
      return { ...description, oneOf: [this.convert(inner, path), { type: "null" }] };
    }

    if (typeof schema.$ref === "string") {
      for (const keyword of Object.keys(schema)) {
        if (!referenceCompanions.has(keyword) && keyword !== "nullable")
          this.unenforceable(path, keyword, "keywords beside $ref are not applied");
      }
      return { ...description, $ref: this.convertReference(schema.$ref, path) } as GbnfJsonSchema;
    }
    if (schema.$ref !== undefined) throw this.error([...path, "$ref"], "must be a string");

    if (schema.allOf !== undefined) return this.convert(this.mergeAllOf(schema, path), path);

    const alternatives = schema.anyOf ?? schema.oneOf;
    if (alternatives !== undefined) {
      const keyword = schema.anyOf !== undefined ? "anyOf" : "oneOf";
      if (schema.anyOf !== undefined && schema.oneOf !== undefined) {
        throw this.error(path, "uses both anyOf and oneOf");
      }
      if (!Array.isArray(alternatives) || alternatives.length === 0) {
        throw this.error([...path, keyword], "must be a non-empty array");
      }
      const { anyOf: _anyOf, oneOf: _oneOf, description: _description, ...siblings } = schema;
      const siblingConstraints = Object.keys(siblings).filter((key) => !annotationKeywords.has(key));
      const merged = alternatives.map((alternative: unknown, index): JsonObject | true => {
        const alternativeSchema = asSchemaObject(alternative, [...path, keyword, index], this);
        if (siblingConstraints.length === 0 || alternativeSchema === true) return alternativeSchema;
        return { ...siblings, ...alternativeSchema };
      });
      // The grammar generates one alternative; for oneOf that value must match no other alternative.
      if (keyword === "oneOf") this.checkExclusive(merged, path);
      return {
        ...description,
        oneOf: merged.map((alternativeSchema, index) =>
          this.convert(alternativeSchema, [...path, keyword, index]),
        ),
      };
    }

    if (schema.const !== undefined || schema.enum !== undefined) return this.convertLiterals(schema, path);

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

  private convertSingleType(schema: JsonObject, type: string, path: Path): GbnfJsonSchema {
    switch (type) {
      case "string":
        return this.convertString(schema, path);
      case "number":
      case "integer":
        return this.convertNumber(schema, type, path);
      case "boolean":
      case "null":
        return { ...descriptionOf(schema), type };
      case "object":
        return this.convertObject(schema, path);
      case "array":
        return this.convertArray(schema, path);
      default:
        throw this.error([...path, "type"], `has an unknown type '${type}'`);
    }
  }

  /** `const` / `enum`: the listed values that also satisfy the schema's other keywords. */
  private convertLiterals(schema: JsonObject, path: Path): GbnfJsonSchema {
    const description = descriptionOf(schema);
    let listed: Primitive[] | undefined;
    if (schema.enum !== undefined) {
      if (!Array.isArray(schema.enum) || schema.enum.length === 0 || !schema.enum.every(isPrimitive)) {
        throw this.error(
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
        throw this.error([...path, "const"], "must be a string, number, boolean or null");
      const constant = schema.const;
      keyword = "const";
      values = listed === undefined || listed.includes(constant) ? [constant] : [];
    }
    values = [...new Set(values)];
    const accepts = this.valueCheck(schema, path);
    const kept = values.filter(accepts);
    if (kept.length === 0) {
      this.unenforceable(path, keyword, "no listed value satisfies the schema's other keywords");
      return literalSchema(description, values.length > 0 ? values : (listed ?? []));
    }
    return literalSchema(description, kept);
  }

  private convertString(schema: JsonObject, path: Path): GbnfJsonSchema {
    const description = descriptionOf(schema);
    const minLength = this.readCount(schema, "minLength", path);
    let maxLength = this.readCount(schema, "maxLength", path);
    if (minLength !== undefined && maxLength !== undefined && maxLength < minLength) {
      this.unenforceable(path, "maxLength", "it is less than minLength, so no string satisfies both");
      maxLength = undefined;
    }

    const pattern = schema.pattern;
    if (pattern !== undefined) {
      if (typeof pattern !== "string") throw this.error([...path, "pattern"], "must be a string");
      compilePattern(pattern, [...path, "pattern"], this);
      const literals = literalAlternatives(pattern);
      if (literals !== undefined) {
        const accepts = this.valueCheck({ ...schema, type: "string" }, path);
        const kept = literals.filter(accepts);
        if (kept.length > 0) return literalSchema(description, kept);
        this.unenforceable(path, "pattern", "none of the strings it allows satisfies the other keywords");
      } else if (pattern !== "") {
        this.unenforceable(
          path,
          "pattern",
          "the output grammar cannot express regular expressions; only an anchored list of literal strings such as ^(red|green)$ is enforced (as an enum)",
        );
      }
    }

    const format = schema.format;
    if (format !== undefined) {
      if (typeof format !== "string") throw this.error([...path, "format"], "must be a string");
      const lengths = supportedStringFormats.get(format);
      if (lengths !== undefined) {
        if (minLength !== undefined && minLength > lengths.shortest)
          this.unenforceable(path, "minLength", `'${format}' strings can be ${lengths.shortest} characters`);
        if (maxLength !== undefined && maxLength < lengths.longest)
          this.unenforceable(path, "maxLength", `'${format}' strings can be ${lengths.longest} characters`);
        return { ...description, type: "string", format: format as "date" | "time" | "date-time" };
      }
      this.unenforceable(
        path,
        "format",
        `the output grammar supports only the formats date, time and date-time, not '${format}'`,
      );
    }
    return {
      ...description,
      type: "string",
      ...(minLength !== undefined ? { minLength } : {}),
      ...(maxLength !== undefined ? { maxLength } : {}),
    };
  }

  private convertNumber(schema: JsonObject, requestedType: "number" | "integer", path: Path): GbnfJsonSchema {
    const description = descriptionOf(schema);
    const bounds = this.readNumberBounds(schema, path, { dropUnrestrictive: true });
    const { lower, upper } = bounds;
    let multipleOf = bounds.multipleOf;
    let type = requestedType;
    // Multiples of 1 are the integers.
    if (multipleOf === 1) {
      type = "integer";
      multipleOf = undefined;
    }
    const plain: GbnfJsonSchema = { ...description, type };
    if (lower === undefined && upper === undefined && multipleOf === undefined) return plain;

    const integral = type === "integer" || (multipleOf !== undefined && Number.isInteger(multipleOf));
    const named = [
      lower?.keyword,
      upper?.keyword,
      multipleOf !== undefined ? "multipleOf" : undefined,
    ].filter((keyword): keyword is string => keyword !== undefined);
    const unenforced = (reason: string): GbnfJsonSchema => {
      for (const keyword of named) this.unenforceable(path, keyword, reason);
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
   * The tightest lower and upper bound and `multipleOf`. With `dropUnrestrictive`, bounds at or beyond
   * ±(2^53 − 1) are left out: they do not restrict what the grammar generates in practice.
   */
  private readNumberBounds(
    schema: JsonObject,
    path: Path,
    options: { dropUnrestrictive: boolean },
  ): { lower: Bound | undefined; upper: Bound | undefined; multipleOf: number | undefined } {
    const read = (keyword: string): number | boolean | undefined => {
      const value = schema[keyword];
      if (value === undefined) return undefined;
      const draft4Flag =
        (keyword === "exclusiveMinimum" || keyword === "exclusiveMaximum") && typeof value === "boolean";
      if (!draft4Flag && (typeof value !== "number" || !Number.isFinite(value)))
        throw this.error([...path, keyword], "must be a number");
      return value as number | boolean;
    };
    const minimum = read("minimum") as number | undefined;
    const maximum = read("maximum") as number | undefined;
    const exclusiveMinimum = read("exclusiveMinimum");
    const exclusiveMaximum = read("exclusiveMaximum");
    const multipleOf = read("multipleOf") as number | undefined;
    if (multipleOf !== undefined && multipleOf <= 0)
      throw this.error([...path, "multipleOf"], "must be greater than 0");

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

  private convertObject(schema: JsonObject, path: Path): GbnfJsonSchema {
    const description = descriptionOf(schema);
    const properties: Record<string, GbnfJsonSchema> = {};
    if (schema.properties !== undefined) {
      if (!isRecord(schema.properties)) throw this.error([...path, "properties"], "must be an object");
      for (const [name, propertySchema] of Object.entries(schema.properties)) {
        const propertyPath = [...path, "properties", name];
        properties[name] = this.convert(asSchemaObject(propertySchema, propertyPath, this), propertyPath);
      }
    }
    const additional = schema.additionalProperties;
    let additionalSchema: GbnfJsonSchema | undefined;
    if (additional !== undefined && typeof additional !== "boolean") {
      additionalSchema = this.convert(asSchemaObject(additional, [...path, "additionalProperties"], this), [
        ...path,
        "additionalProperties",
      ]);
    }

    // Every property is always generated, so `required` holds for listed names; others are added.
    if (schema.required !== undefined) {
      if (!Array.isArray(schema.required) || !schema.required.every((name) => typeof name === "string"))
        throw this.error([...path, "required"], "must be an array of strings");
      for (const name of schema.required as string[]) {
        if (Object.hasOwn(properties, name)) continue;
        if (additional === false) {
          this.unenforceable(
            path,
            "required",
            `'${name}' is required, but it is not in properties and additionalProperties is false, so no object satisfies it`,
          );
          continue;
        }
        properties[name] = additionalSchema ?? anyJsonSchema;
      }
    }

    const propertyCount = Object.keys(properties).length;
    const hasProperties = propertyCount > 0;
    let additionalProperties: boolean | GbnfJsonSchema;
    if (additional === undefined) additionalProperties = !hasProperties && !this.closedObjects;
    else if (typeof additional === "boolean") additionalProperties = additional;
    else additionalProperties = additionalSchema ?? anyJsonSchema;

    let minProperties = this.readCount(schema, "minProperties", path);
    let maxProperties = this.readCount(schema, "maxProperties", path);
    if (maxProperties !== undefined && maxProperties < propertyCount) {
      this.unenforceable(
        path,
        "maxProperties",
        `all ${propertyCount} properties are always generated, more than maxProperties allows`,
      );
      maxProperties = undefined;
    }
    if (minProperties !== undefined && maxProperties !== undefined && maxProperties < minProperties) {
      this.unenforceable(path, "maxProperties", "it is less than minProperties, so no object satisfies both");
      maxProperties = undefined;
    }
    if (minProperties !== undefined && minProperties > propertyCount && additionalProperties === false) {
      this.unenforceable(
        path,
        "minProperties",
        "it asks for more properties than the object may have (properties are listed and additionalProperties is false)",
      );
      minProperties = undefined;
    }
    const nestedDefinitions = path.length === 0 ? undefined : collectDefinitions(schema, path, this);
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

  private convertArray(schema: JsonObject, path: Path): GbnfJsonSchema {
    const description = descriptionOf(schema);
    let items: GbnfJsonSchema | undefined;
    let prefixItems: GbnfJsonSchema[] | undefined;
    /** No items beyond the prefix (`items: false`, or a draft-4 tuple with `additionalItems: false`). */
    let closed = false;
    if (Array.isArray(schema.items)) {
      // Draft-4 tuple form.
      prefixItems = schema.items.map((item: unknown, index) =>
        this.convert(asSchemaObject(item, [...path, "items", index], this), [...path, "items", index]),
      );
      if (schema.additionalItems === false) closed = true;
      else if (schema.additionalItems !== undefined && schema.additionalItems !== true)
        items = this.convert(asSchemaObject(schema.additionalItems, [...path, "additionalItems"], this), [
          ...path,
          "additionalItems",
        ]);
    } else if (schema.items === false) {
      closed = true;
    } else if (schema.items !== undefined) {
      items = this.convert(asSchemaObject(schema.items, [...path, "items"], this), [...path, "items"]);
    }
    if (Array.isArray(schema.prefixItems)) {
      prefixItems = schema.prefixItems.map((item: unknown, index) =>
        this.convert(asSchemaObject(item, [...path, "prefixItems", index], this), [
          ...path,
          "prefixItems",
          index,
        ]),
      );
    } else if (schema.prefixItems !== undefined) {
      throw this.error([...path, "prefixItems"], "must be an array");
    }

    const prefixLength = prefixItems?.length ?? 0;
    let minItems = this.readCount(schema, "minItems", path);
    let maxItems = this.readCount(schema, "maxItems", path);
    if (closed) {
      maxItems = Math.min(maxItems ?? prefixLength, prefixLength);
      if (minItems !== undefined && minItems > prefixLength)
        this.unenforceable(path, "minItems", "it asks for more items than the array may have");
      if (prefixLength > 0) minItems = Math.min(minItems ?? prefixLength, prefixLength);
      else minItems = undefined;
    }
    if (maxItems !== undefined && maxItems < prefixLength) {
      this.unenforceable(
        path,
        "maxItems",
        `all ${prefixLength} prefixItems are always generated, more than maxItems allows`,
      );
      maxItems = undefined;
    }
    if (minItems !== undefined && maxItems !== undefined && maxItems < minItems) {
      this.unenforceable(path, "maxItems", "it is less than minItems, so no array satisfies both");
      maxItems = undefined;
    }

    if (schema.uniqueItems !== undefined) {
      if (typeof schema.uniqueItems !== "boolean")
        throw this.error([...path, "uniqueItems"], "must be a boolean");
      if (schema.uniqueItems && (maxItems === undefined || maxItems > 1))
        this.unenforceable(
          path,
          "uniqueItems",
          "the output grammar cannot keep array items distinct (only arrays of at most one item, maxItems: 1)",
        );
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

  /**
   * A predicate for listed values (enum / const / pattern literals): type, string and number keywords.
   * Keywords for objects and arrays hold vacuously for primitives.
   */
  private valueCheck(schema: JsonObject, path: Path): (value: Primitive) => boolean {
    const types = schema.type === undefined ? undefined : this.readTypes({ type: schema.type }, path);
    const minLength = this.readCount(schema, "minLength", path);
    const maxLength = this.readCount(schema, "maxLength", path);
    let regex: RegExp | undefined;
    if (schema.pattern !== undefined) {
      if (typeof schema.pattern !== "string") throw this.error([...path, "pattern"], "must be a string");
      regex = compilePattern(schema.pattern, [...path, "pattern"], this);
    }
    let format: ((value: string) => boolean) | undefined;
    if (schema.format !== undefined) {
      if (typeof schema.format !== "string") throw this.error([...path, "format"], "must be a string");
      format = formatCheckers.get(schema.format);
      if (format === undefined)
        this.unenforceable(
          path,
          "format",
          `lmhost cannot check listed values against format '${schema.format}'`,
        );
    }
    const { lower, upper, multipleOf } = this.readNumberBounds(schema, path, { dropUnrestrictive: false });
    return (value) => {
      if (types !== undefined && !types.some((type) => hasJsonType(value, type))) return false;
      if (typeof value === "string") {
        const length = [...value].length;
        if (minLength !== undefined && length < minLength) return false;
        if (maxLength !== undefined && length > maxLength) return false;
        if (regex !== undefined && !regex.test(value)) return false;
        if (format !== undefined && !format(value)) return false;
      }
      if (typeof value === "number") {
        if (lower !== undefined && (lower.exclusive ? value <= lower.value : value < lower.value))
          return false;
        if (upper !== undefined && (upper.exclusive ? value >= upper.value : value > upper.value))
          return false;
        if (multipleOf !== undefined && !Number.isInteger(value / multipleOf)) return false;
      }
      return true;
    };
  }

  private readTypes(schema: JsonObject, path: Path): string[] {
    const type = schema.type;
    if (type === undefined) return inferTypes(schema);
    const types = Array.isArray(type) ? type : [type];
    if (types.length === 0) throw this.error([...path, "type"], "must not be empty");
    for (const entry of types) {
      if (typeof entry !== "string" || !allTypes.has(entry)) {
        throw this.error([...path, "type"], `has an unknown type ${JSON.stringify(entry)}`);
      }
    }
    return [...new Set(types as string[])];
  }

  private readCount(schema: JsonObject, keyword: string, path: Path): number | undefined {
    const value = schema[keyword];
    if (value === undefined) return undefined;
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
      throw this.error([...path, keyword], "must be a non-negative integer");
    }
    return value;
  }

  private convertReference(reference: string, path: Path): string {
    const name = localReferenceName(reference);
    if (name !== undefined) return `#/$defs/${name}`;
    throw this.error(
      [...path, "$ref"],
      `'${reference}' is not supported (only '#/$defs/<name>' and '#/definitions/<name>')`,
    );
  }

  /**
   * Merges `allOf` members (and the parent's own keywords) into one schema. Lossless merges: properties
   * (a property in several members gets all their schemas), `required`, the tighter bound, intersected
   * `type` / `enum`, `uniqueItems`, `items`. Other keywords on which members disagree, and
   * `additionalProperties` that would reject another member's properties, cannot be enforced.
   */
  private mergeAllOf(schema: JsonObject, path: Path): JsonObject {
    const { allOf, ...parent } = schema;
    if (!Array.isArray(allOf) || allOf.length === 0)
      throw this.error([...path, "allOf"], "must be a non-empty array");
    const members: { schema: JsonObject; path: Path }[] = [{ schema: parent, path }];
    allOf.forEach((member: unknown, index) => {
      const memberPath = [...path, "allOf", index];
      let memberSchema = asSchemaObject(member, memberPath, this);
      if (memberSchema === true) return;
      memberSchema = this.resolveForMerge(memberSchema, memberPath);
      if (memberSchema.allOf !== undefined) memberSchema = this.mergeAllOf(memberSchema, memberPath);
      if (
        memberSchema.$ref !== undefined ||
        memberSchema.anyOf !== undefined ||
        memberSchema.oneOf !== undefined
      ) {
        throw this.error(memberPath, "cannot be merged (only plain schemas are supported inside allOf)");
      }
      members.push({ schema: memberSchema, path: memberPath });
    });
    let merged: JsonObject = {};
    for (const member of members) merged = this.mergeTwo(merged, member.schema, member.path);

    // additionalProperties of one member also applies to the properties the other members add.
    const allNames = isRecord(merged.properties) ? Object.keys(merged.properties) : [];
    for (const member of members) {
      const additional = member.schema.additionalProperties;
      if (additional === undefined || additional === true) continue;
      const own = isRecord(member.schema.properties) ? member.schema.properties : {};
      const foreign = allNames.filter((name) => !Object.hasOwn(own, name));
      if (foreign.length > 0) {
        this.unenforceable(
          member.path,
          "additionalProperties",
          `inside allOf it also applies to ${foreign.map((name) => `'${name}'`).join(", ")} from other members, which the merged object always has`,
        );
      }
    }
    return merged;
  }

  /** An allOf member that is only a local `$ref` is merged as the definition it names. */
  private resolveForMerge(member: JsonObject, path: Path, depth = 0): JsonObject {
    if (typeof member.$ref !== "string" || depth > 8) return member;
    if (Object.keys(member).some((keyword) => !referenceCompanions.has(keyword))) return member;
    const name = localReferenceName(member.$ref);
    const target = name === undefined ? undefined : this.rawDefinitions[name];
    if (!isRecord(target)) return member;
    return this.resolveForMerge(target, path, depth + 1);
  }

  private mergeTwo(into: JsonObject, from: JsonObject, fromPath: Path): JsonObject {
    const result: JsonObject = { ...into };
    for (const [key, value] of Object.entries(from)) {
      const existing = into[key];
      if (
        existing === undefined ||
        deepEqual(existing, value) ||
        annotationKeywords.has(key) ||
        key === "description"
      ) {
        result[key] = value;
        continue;
      }
      const disagree = (): void => {
        this.unenforceable(fromPath, key, "allOf members disagree on it, and lmhost cannot combine the two");
        result[key] = value;
      };
      switch (key) {
        case "properties": {
          if (!isRecord(existing) || !isRecord(value)) {
            result[key] = value;
            break;
          }
          const properties: JsonObject = { ...existing };
          for (const [name, propertySchema] of Object.entries(value)) {
            const previous = properties[name];
            properties[name] =
              previous === undefined || deepEqual(previous, propertySchema)
                ? propertySchema
                : { allOf: [previous, propertySchema] };
          }
          result[key] = properties;
          break;
        }
        case "items":
          if (isRecord(existing) && isRecord(value)) result[key] = { allOf: [existing, value] };
          else disagree();
          break;
        case "required":
          result[key] = [
            ...new Set([
              ...(Array.isArray(existing) ? existing : []),
              ...(Array.isArray(value) ? value : []),
            ]),
          ];
          break;
        case "minimum":
        case "exclusiveMinimum":
        case "minLength":
        case "minItems":
        case "minProperties":
          if (typeof existing === "number" && typeof value === "number")
            result[key] = Math.max(existing, value);
          else disagree();
          break;
        case "maximum":
        case "exclusiveMaximum":
        case "maxLength":
        case "maxItems":
        case "maxProperties":
          if (typeof existing === "number" && typeof value === "number")
            result[key] = Math.min(existing, value);
          else disagree();
          break;
        case "uniqueItems":
          result[key] = existing === true || value === true;
          break;
        case "type": {
          const left = new Set(Array.isArray(existing) ? existing : [existing]);
          const right = new Set(Array.isArray(value) ? value : [value]);
          const both = [...left].filter(
            (type) => right.has(type) || (type === "integer" && right.has("number")),
          );
          for (const type of right)
            if (type === "integer" && left.has("number") && !both.includes("integer")) both.push("integer");
          if (both.length === 0) {
            this.unenforceable(fromPath, key, "no type satisfies every allOf member");
            result[key] = value;
          } else result[key] = both.length === 1 ? both[0] : both;
          break;
        }
        case "enum": {
          if (!Array.isArray(existing) || !Array.isArray(value)) {
            disagree();
            break;
          }
          const both = existing.filter((entry) => value.some((other) => deepEqual(entry, other)));
          if (both.length === 0) {
            this.unenforceable(fromPath, key, "no value is listed by every allOf member");
            result[key] = value;
          } else result[key] = both;
          break;
        }
        default:
          disagree();
      }
    }
    return result;
  }

  /** With strict, oneOf alternatives must be unable to match the same value (the grammar picks any one). */
  private checkExclusive(alternatives: readonly (JsonObject | true)[], path: Path): void {
    if (!this.strict) return;
    const shapes = alternatives.map((alternative) => this.shapeOf(alternative, 0));
    for (let first = 0; first < shapes.length; first++) {
      for (let second = first + 1; second < shapes.length; second++) {
        const [left, right] = [shapes[first], shapes[second]];
        if (left === undefined || right === undefined || !disjoint(left, right)) {
          this.unenforceable(
            path,
            "oneOf",
            `alternatives ${first} and ${second} can match the same value, which oneOf forbids; use anyOf, or make them distinct (different types, or a property with different const values)`,
          );
          return;
        }
      }
    }
  }

  private shapeOf(schema: JsonObject | true, depth: number): Shape {
    const any: Shape = { types: undefined, literals: undefined, propertyLiterals: new Map() };
    if (schema === true || depth > 8) return any;
    if (typeof schema.$ref === "string") {
      const name = localReferenceName(schema.$ref);
      const target = name === undefined ? undefined : this.rawDefinitions[name];
      return isRecord(target) ? this.shapeOf(target, depth + 1) : any;
    }
    const literals = literalsOf(schema);
    let types: Set<string> | undefined;
    if (schema.type !== undefined)
      types = new Set(Array.isArray(schema.type) ? (schema.type as string[]) : [String(schema.type)]);
    else if (literals !== undefined) types = new Set(literals.map(jsonTypeOf));
    else {
      const inferred = inferTypes(schema);
      types = inferred.length > 0 ? new Set(inferred) : undefined;
    }
    const alternatives = schema.anyOf ?? schema.oneOf;
    if (Array.isArray(alternatives) && schema.type === undefined) {
      const inner = alternatives.map((alternative: unknown) =>
        this.shapeOf(isRecord(alternative) ? alternative : true, depth + 1),
      );
      types = inner.some((shape) => shape.types === undefined)
        ? undefined
        : new Set(inner.flatMap((shape) => [...(shape.types ?? [])]));
    }
    if (types !== undefined && schema.nullable === true) types.add("null");
    const propertyLiterals = new Map<string, Primitive[]>();
    if (isRecord(schema.properties)) {
      for (const [name, propertySchema] of Object.entries(schema.properties)) {
        const values = isRecord(propertySchema) ? literalsOf(propertySchema) : undefined;
        if (values !== undefined) propertyLiterals.set(name, values);
      }
    }
    return { types, literals, propertyLiterals };
  }
}

function disjoint(left: Shape, right: Shape): boolean {
  if (left.types !== undefined && right.types !== undefined) {
    const overlaps = [...left.types].some(
      (type) =>
        right.types?.has(type) === true ||
        (type === "integer" && right.types?.has("number") === true) ||
        (type === "number" && right.types?.has("integer") === true),
    );
    if (!overlaps) return true;
  }
  if (left.literals !== undefined && right.literals !== undefined) {
    return !left.literals.some((value) => right.literals?.some((other) => other === value));
  }
  for (const [name, values] of left.propertyLiterals) {
    const others = right.propertyLiterals.get(name);
    if (others !== undefined && !values.some((value) => others.includes(value))) return true;
  }
  return false;
}

function literalsOf(schema: JsonObject): Primitive[] | undefined {
  if (schema.const !== undefined && isPrimitive(schema.const)) return [schema.const];
  if (Array.isArray(schema.enum) && schema.enum.every(isPrimitive)) return schema.enum as Primitive[];
  return undefined;
}

/** The JSON types a schema without `type` can only mean, from its type-specific keywords (or none). */
function inferTypes(schema: JsonObject): string[] {
  const has = (keywords: readonly string[]): boolean =>
    keywords.some((keyword) => schema[keyword] !== undefined);
  const types: string[] = [];
  if (has(objectKeywords)) types.push("object");
  if (has(arrayKeywords)) types.push("array");
  if (has(stringKeywords)) types.push("string");
  if (has(numberKeywords)) types.push("number");
  return types;
}

function localReferenceName(reference: string): string | undefined {
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
function enumerateIntegers(low: number, high: number, multipleOf: number | undefined): number[] | undefined {
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
  const regex = tryCompile(pattern);
  if (regex === undefined) return undefined;
  const unique = [...new Set(alternatives)];
  if (unique.length > maxEnumeratedValues || !unique.every((literal) => regex.test(literal)))
    return undefined;
  return unique;
}

/** ECMA-262 regular expression (JSON Schema's dialect): with the `u` flag when it allows, else without. */
function tryCompile(pattern: string): RegExp | undefined {
  for (const flags of ["u", ""]) {
    try {
      return new RegExp(pattern, flags);
    } catch {
      // Try the next flags.
    }
  }
  return undefined;
}

function compilePattern(pattern: string, path: Path, converter: SchemaConverter): RegExp {
  const regex = tryCompile(pattern);
  if (regex === undefined) throw converter.error(path, "is not a valid regular expression");
  return regex;
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
/** Checks for listed values (enum / const) with a format. */
const formatCheckers = new Map<string, (value: string) => boolean>([
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

function literalSchema(description: { description?: string }, values: readonly Primitive[]): GbnfJsonSchema {
  const [only] = values;
  if (values.length === 1 && only !== undefined) return { ...description, const: only };
  return { ...description, enum: [...values] };
}

function hasJsonType(value: Primitive, type: string): boolean {
  if (type === "integer") return typeof value === "number" && Number.isInteger(value);
  if (type === "number") return typeof value === "number";
  return jsonTypeOf(value) === type;
}

function jsonTypeOf(value: Primitive): string {
  if (value === null) return "null";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function descriptionOf(schema: JsonObject): { description?: string } {
  return typeof schema.description === "string" ? { description: schema.description } : {};
}

function asSchemaObject(value: unknown, path: Path, converter: SchemaConverter): JsonObject | true {
  if (value === true) return true;
  if (value === false) throw converter.error(path, "is `false`, which no value can satisfy");
  if (!isRecord(value)) throw converter.error(path, "must be a schema object");
  const keys = Object.keys(value).filter((key) => !annotationKeywords.has(key) && key !== "description");
  return keys.length === 0 ? true : value;
}

function hasTypeSpecificKeywords(schema: JsonObject): boolean {
  return [...stringKeywords, ...numberKeywords, ...arrayKeywords, ...objectKeywords].some(
    (keyword) => schema[keyword] !== undefined,
  );
}

function deepEqual(left: unknown, right: unknown): boolean {
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

function isRecord(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isPrimitive(value: unknown): value is Primitive {
  return (
    value === null || typeof value === "string" || typeof value === "number" || typeof value === "boolean"
  );
}
