/**
 * `SchemaConverter`: the recursive walk from a client schema to a grammar schema. It handles the
 * structure (`$ref`, `nullable`, `allOf` / `anyOf` / `oneOf`, `type` lists, objects, arrays, `$defs`) and
 * hands strings, numbers and listed values to `scalars.ts`, `allOf` to `merge-all-of.ts` and the `oneOf`
 * overlap check to `one-of.ts`.
 */
import type { GbnfJsonSchema } from "node-llama-cpp";
import { asSchemaObject, readCount, readTypes, SchemaContext, type ConversionTarget } from "./context.js";
import {
  annotationKeywords,
  hasTypeSpecificKeywords,
  primitiveTypes,
  referenceCompanions,
  unsupportedKeywords,
} from "./keywords.js";
import { mergeAllOf } from "./merge-all-of.js";
import { checkExclusive } from "./one-of.js";
import { convertLiterals, convertNumber, convertString } from "./scalars.js";
import { descriptionOf, isRecord, localReferenceName, type JsonObject, type Path } from "./values.js";

/** Any JSON value, in a form the grammar compiler accepts (what `{}` and `true` convert to). */
export const anyJsonSchema: GbnfJsonSchema = {
  oneOf: [
    { type: ["string", "number", "boolean", "null"] },
    { type: "object", additionalProperties: true },
    { type: "array" },
  ],
};

/** A schema's `$defs` / `definitions`, converted (undefined when it has none). */
export function collectDefinitions(
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
      // While a definition is converted, an allOf inside it that inlines it again never ends (see mergeAllOf).
      converter.inlining.push(name);
      try {
        definitions[name] = converter.convert(
          asSchemaObject(definition, definitionPath, converter),
          definitionPath,
        );
      } finally {
        converter.inlining.pop();
      }
      found = true;
    }
  }
  return found ? definitions : undefined;
}

/** The `$ref` of `allOf: [{$ref}]` when nothing else restricts the schema; otherwise undefined. */
function singleReference(schema: JsonObject): string | undefined {
  const [member, ...others] = Array.isArray(schema.allOf) ? (schema.allOf as unknown[]) : [];
  if (others.length > 0 || !isRecord(member) || typeof member.$ref !== "string") return undefined;
  const companions = (object: JsonObject) =>
    Object.keys(object).every((keyword) => referenceCompanions.has(keyword));
  const { allOf: _allOf, ...rest } = schema;
  return companions(member) && companions(rest) && rest.$ref === undefined ? member.$ref : undefined;
}

export class SchemaConverter extends SchemaContext {
  constructor(
    param: string,
    private readonly closedObjects: boolean,
    strict: boolean,
    target: ConversionTarget = "node-llama-cpp",
  ) {
    super(param, strict, target);
  }

  convert(schema: JsonObject | true, path: Path): GbnfJsonSchema {
    this.step(path);
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

    const onlyReference = singleReference(schema);
    if (onlyReference !== undefined) {
      // `allOf: [{$ref}]` (as some generators write a described reference) is the reference itself, so
      // a recursive definition referred to that way stays a rule instead of being inlined into itself.
      const { allOf: _allOf, ...rest } = schema;
      return this.convert({ ...rest, $ref: onlyReference }, path);
    }
    if (schema.allOf !== undefined) {
      // Definitions inlined by the merge stay on `inlining` while the merged schema is converted, so a
      // definition that inlines itself again (through a property's allOf) is caught instead of looping.
      const inlined: string[] = [];
      const merged = mergeAllOf(schema, path, this, inlined);
      this.inlining.push(...inlined);
      try {
        return this.convert(merged, path);
      } finally {
        this.inlining.length -= inlined.length;
      }
    }

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
      if (keyword === "oneOf") checkExclusive(merged, path, this);
      return {
        ...description,
        oneOf: merged.map((alternativeSchema, index) =>
          this.convert(alternativeSchema, [...path, keyword, index]),
        ),
      };
    }

    if (schema.const !== undefined || schema.enum !== undefined) return convertLiterals(schema, path, this);

    const types = readTypes(schema, path, this);
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
        return convertString(schema, path, this);
      case "number":
      case "integer":
        return convertNumber(schema, type, path, this);
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

    let minProperties = readCount(schema, "minProperties", path, this, { grammar: true });
    let maxProperties = readCount(schema, "maxProperties", path, this, { grammar: true });
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
    let minItems = readCount(schema, "minItems", path, this, { grammar: true });
    let maxItems = readCount(schema, "maxItems", path, this, { grammar: true });
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

  private convertReference(reference: string, path: Path): string {
    const name = localReferenceName(reference);
    // A reference to nothing left the value unconstrained (any JSON), whatever `strict` promised.
    if (name !== undefined && !this.definitionNames.has(name))
      throw this.error([...path, "$ref"], `'${reference}' names a definition the schema does not have`);
    if (name !== undefined) return `#/$defs/${name}`;
    throw this.error(
      [...path, "$ref"],
      `'${reference}' is not supported (only '#/$defs/<name>' and '#/definitions/<name>')`,
    );
  }
}
