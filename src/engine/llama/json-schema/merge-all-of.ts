/**
 * `allOf` as one schema: members merged keyword by keyword (properties and `required` united, the tighter
 * bound, `type` / `enum` intersected); a member that is only a local `$ref` is merged as its definition.
 * What cannot be combined is reported as unenforceable.
 */
import { asSchemaObject, type SchemaContext } from "./context.js";
import { annotationKeywords, referenceCompanions } from "./keywords.js";
import { deepEqual, isRecord, localReferenceName, type JsonObject, type Path } from "./values.js";

/**
 * Merges `allOf` members (and the parent's own keywords) into one schema. Lossless merges: properties
 * (a property in several members gets all their schemas), `required`, the tighter bound, intersected
 * `type` / `enum`, `uniqueItems`, `items`. Other keywords on which members disagree, and
 * `additionalProperties` that would reject another member's properties, cannot be enforced.
 */
export function mergeAllOf(
  schema: JsonObject,
  path: Path,
  context: SchemaContext,
  /** Out: the definitions this merge inlined (the caller holds them in `context.inlining` while it converts). */
  inlined: string[] = [],
  chain: readonly string[] = context.inlining,
): JsonObject {
  context.step(path);
  const { allOf, ...parent } = schema;
  if (!Array.isArray(allOf) || allOf.length === 0)
    throw context.error([...path, "allOf"], "must be a non-empty array");
  const members: { schema: JsonObject; path: Path }[] = [{ schema: parent, path }];
  allOf.forEach((member: unknown, index) => {
    const memberPath = [...path, "allOf", index];
    let memberSchema = asSchemaObject(member, memberPath, context);
    if (memberSchema === true) return;
    const followed: string[] = [];
    memberSchema = resolveForMerge(memberSchema, memberPath, context, [...chain], followed);
    inlined.push(...followed);
    if (memberSchema.allOf !== undefined)
      memberSchema = mergeAllOf(memberSchema, memberPath, context, inlined, [...chain, ...followed]);
    if (
      memberSchema.$ref !== undefined ||
      memberSchema.anyOf !== undefined ||
      memberSchema.oneOf !== undefined
    ) {
      throw context.error(memberPath, "cannot be merged (only plain schemas are supported inside allOf)");
    }
    members.push({ schema: memberSchema, path: memberPath });
  });
  let merged: JsonObject = {};
  for (const member of members) merged = mergeTwo(merged, member.schema, member.path, context);

  // additionalProperties of one member also applies to the properties the other members add.
  const allNames = isRecord(merged.properties) ? Object.keys(merged.properties) : [];
  for (const member of members) {
    const additional = member.schema.additionalProperties;
    if (additional === undefined || additional === true) continue;
    const own = isRecord(member.schema.properties) ? member.schema.properties : {};
    const foreign = allNames.filter((name) => !Object.hasOwn(own, name));
    if (foreign.length > 0) {
      context.unenforceable(
        member.path,
        "additionalProperties",
        `inside allOf it also applies to ${foreign.map((name) => `'${name}'`).join(", ")} from other members, which the merged object always has`,
      );
    }
  }
  return merged;
}

/**
 * An allOf member that is only a local `$ref` is merged as the definition it names (followed through
 * `$ref` chains). A definition already being inlined (`chain`) would be inlined forever: a 400 naming it.
 */
function resolveForMerge(
  member: JsonObject,
  path: Path,
  context: SchemaContext,
  chain: string[],
  followed: string[],
): JsonObject {
  let current = member;
  for (;;) {
    if (typeof current.$ref !== "string") return current;
    if (Object.keys(current).some((keyword) => !referenceCompanions.has(keyword))) return current;
    const name = localReferenceName(current.$ref);
    const target = name === undefined ? undefined : context.rawDefinitions[name];
    if (name === undefined || !isRecord(target)) return current;
    if (chain.includes(name) || followed.includes(name))
      throw context.errorAt(
        [...path, "$ref"],
        `merges '${current.$ref}' into itself through allOf, which never ends; a recursive schema must recurse through properties or items, outside allOf`,
      );
    followed.push(name);
    current = target;
  }
}

function mergeTwo(into: JsonObject, from: JsonObject, fromPath: Path, context: SchemaContext): JsonObject {
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
      context.unenforceable(fromPath, key, "allOf members disagree on it, and lmhost cannot combine the two");
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
          ...new Set([...(Array.isArray(existing) ? existing : []), ...(Array.isArray(value) ? value : [])]),
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
          context.unenforceable(fromPath, key, "no type satisfies every allOf member");
          result[key] = value;
        } else result[key] = both.length === 1 ? both[0] : both;
        break;
      }
      case "enum": {
        if (!Array.isArray(existing) || !Array.isArray(value)) {
          disagree();
          break;
        }
        // Linear: listed values are primitives, so their JSON text identifies them.
        const other = new Set(value.map((entry) => JSON.stringify(entry)));
        const both = existing.filter((entry) => other.has(JSON.stringify(entry)));
        if (both.length === 0) {
          context.unenforceable(fromPath, key, "no value is listed by every allOf member");
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
