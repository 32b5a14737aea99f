/**
 * The state of one conversion and how it reports problems: `SchemaContext` (the param, `strict`, the
 * keywords dropped so far, the root's raw definitions; `error` for invalid schemas, `unenforceable` for
 * keywords the grammar cannot enforce), the paths those name (`pointer`, `paramPath`), and the readers that
 * validate a keyword's value before it is used (a 400 when it is malformed).
 */
import { ApiError } from "../../../shared/errors.js";
import { allTypes, annotationKeywords, inferTypes } from "./keywords.js";
import { isRecord, tryCompile, type JsonObject, type Path } from "./values.js";

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

/** One conversion's settings and findings; `SchemaConverter` extends it, the helpers take it as `context`. */
export class SchemaContext {
  readonly ignored: string[] = [];
  /** The root's `$defs` / `definitions`, unconverted (to look through `$ref` when comparing alternatives). */
  rawDefinitions: JsonObject = {};

  constructor(
    readonly param: string,
    readonly strict: boolean,
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
}

export function asSchemaObject(value: unknown, path: Path, context: SchemaContext): JsonObject | true {
  if (value === true) return true;
  if (value === false) throw context.error(path, "is `false`, which no value can satisfy");
  if (!isRecord(value)) throw context.error(path, "must be a schema object");
  const keys = Object.keys(value).filter((key) => !annotationKeywords.has(key) && key !== "description");
  return keys.length === 0 ? true : value;
}

export function compilePattern(pattern: string, path: Path, context: SchemaContext): RegExp {
  const regex = tryCompile(pattern);
  if (regex === undefined) throw context.error(path, "is not a valid regular expression");
  return regex;
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
): number | undefined {
  const value = schema[keyword];
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw context.error([...path, keyword], "must be a non-negative integer");
  }
  return value;
}
