/**
 * `oneOf` overlap analysis: the grammar generates any one alternative, so with `strict` the alternatives
 * must be unable to match the same value. A `Shape` (types, listed values, discriminator properties) is
 * what an alternative can produce; two are disjoint when their types, literals or a discriminator differ.
 */
import type { SchemaContext } from "./context.js";
import { inferTypes } from "./keywords.js";
import {
  isRecord,
  jsonTypeOf,
  literalsOf,
  localReferenceName,
  type JsonObject,
  type Path,
  type Primitive,
} from "./values.js";

/** What an alternative of `oneOf` can produce, to tell whether two alternatives can match one value. */
interface Shape {
  /** JSON types it allows (`integer` is a subset of `number`); undefined: any. */
  types: Set<string> | undefined;
  /** The only values it allows (const / enum), when listed. */
  literals: Primitive[] | undefined;
  /** Object properties restricted to listed values (discriminators). */
  propertyLiterals: Map<string, Primitive[]>;
}

/** With strict, oneOf alternatives must be unable to match the same value (the grammar picks any one). */
export function checkExclusive(
  alternatives: readonly (JsonObject | true)[],
  path: Path,
  context: SchemaContext,
): void {
  if (!context.strict) return;
  if (alternatives.length > maxCheckedAlternatives) {
    context.unenforceable(
      path,
      "oneOf",
      `lmhost checks at most ${maxCheckedAlternatives} oneOf alternatives for overlap; use anyOf`,
    );
    return;
  }
  const budget = { left: maxShapeSteps };
  const shapes = alternatives.map((alternative) => shapeOf(alternative, 0, context, budget));
  for (let first = 0; first < shapes.length; first++) {
    for (let second = first + 1; second < shapes.length; second++) {
      const [left, right] = [shapes[first], shapes[second]];
      if (left === undefined || right === undefined || !disjoint(left, right)) {
        context.unenforceable(
          path,
          "oneOf",
          `alternatives ${first} and ${second} can match the same value, which oneOf forbids; use anyOf, or make them distinct (different types, or a property with different const values)`,
        );
        return;
      }
    }
  }
}

/** Pairs of alternatives are compared, so their number is bounded (quadratic work otherwise). */
const maxCheckedAlternatives = 256;
/** Shapes looked at through `$ref` and nested alternatives per check ("any" beyond: never disjoint). */
const maxShapeSteps = 10_000;

function shapeOf(
  schema: JsonObject | true,
  depth: number,
  context: SchemaContext,
  budget: { left: number },
): Shape {
  const any: Shape = { types: undefined, literals: undefined, propertyLiterals: new Map() };
  budget.left -= 1;
  if (schema === true || depth > 8 || budget.left < 0) return any;
  if (typeof schema.$ref === "string") {
    const name = localReferenceName(schema.$ref);
    const target = name === undefined ? undefined : context.rawDefinitions[name];
    return isRecord(target) ? shapeOf(target, depth + 1, context, budget) : any;
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
      shapeOf(isRecord(alternative) ? alternative : true, depth + 1, context, budget),
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
