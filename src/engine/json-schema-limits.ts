/**
 * What a client's JSON schema may cost, checked before anything expensive walks it (the grammar build is
 * at least linear in these sizes, node-llama-cpp's own builder quadratic in the number of listed values).
 * The defaults are OpenAI's published structured-output limits, plus lmhost's own backstops:
 *
 * - at most 5,000 object properties in total;
 * - at most 1,000 `enum` values across the schema; a string `enum` with more than 250 values may total at
 *   most 15,000 characters;
 * - property names + definition names + `enum` and `const` strings total at most 120,000 characters;
 * - (lmhost) at most 20,000 subschemas, at most 1,000 alternatives in one `anyOf` / `oneOf` (llama.cpp
 *   follows every alternative at every token), at most 5,000 `required` names in one object, and
 *   `pattern`s of at most 1,000 characters.
 *
 * The walk is iterative and linear in the schema's size; it follows only the keywords that hold schemas,
 * so values under `default` or `examples` are not counted. Pure: no node-llama-cpp, no errors thrown.
 */

/** Where a keyword is: property names and keywords as strings, array indexes as numbers. */
export type SchemaPath = readonly (string | number)[];

export interface SchemaLimits {
  maxProperties: number;
  maxEnumValues: number;
  /** A string enum with more values than this must stay within `maxLargeEnumCharacters`. */
  largeEnumValues: number;
  maxLargeEnumCharacters: number;
  maxStringCharacters: number;
  maxSubschemas: number;
  maxAlternatives: number;
  maxPatternLength: number;
}

export const defaultSchemaLimits: SchemaLimits = {
  maxProperties: 5_000,
  maxEnumValues: 1_000,
  largeEnumValues: 250,
  maxLargeEnumCharacters: 15_000,
  maxStringCharacters: 120_000,
  maxSubschemas: 20_000,
  maxAlternatives: 1_000,
  maxPatternLength: 1_000,
};

export interface SchemaCostProblem {
  /** The path of the keyword that crossed the limit, below the schema's own param. */
  path: SchemaPath;
  message: string;
}

/** `text.format.schema.properties.n.pattern`, `tools[0].parameters.anyOf[1]`: a path as an API param. */
export function paramPath(param: string, path: SchemaPath): string {
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

const schemaMapKeywords = ["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"];
const schemaListKeywords = ["anyOf", "oneOf", "allOf", "prefixItems"];
const singleSchemaKeywords = [
  "not",
  "if",
  "then",
  "else",
  "additionalProperties",
  "additionalItems",
  "unevaluatedProperties",
  "unevaluatedItems",
  "contains",
  "propertyNames",
];

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** The first limit `schema` crosses, or undefined when it is within every limit. Iterative, linear. */
export function findSchemaCostProblem(
  schema: unknown,
  limits: SchemaLimits = defaultSchemaLimits,
): SchemaCostProblem | undefined {
  let properties = 0;
  let enumValues = 0;
  let characters = 0;
  let subschemas = 0;
  const tooManyCharacters = (path: SchemaPath): SchemaCostProblem => ({
    path,
    message: `property names, definition names, enum and const strings total more than ${limits.maxStringCharacters} characters`,
  });
  // Each entry keeps its parent and its own step, not a copy of its path: a path is built only for an
  // error, so a long list deep in a schema costs one small object per element.
  interface Pending {
    schema: unknown;
    parent: Pending | undefined;
    steps: readonly (string | number)[];
  }
  const pathOf = (entry: Pending | undefined): SchemaPath => {
    const reversed: (string | number)[] = [];
    for (let current = entry; current !== undefined; current = current.parent)
      reversed.push(...[...current.steps].reverse());
    return reversed.reverse();
  };
  const pending: Pending[] = [{ schema, parent: undefined, steps: [] }];
  let queued = 1;
  /** Queues a child; every element of a list or map counts, objects or not, so no list is too long to refuse. */
  const push = (
    child: unknown,
    parent: Pending,
    ...steps: (string | number)[]
  ): SchemaCostProblem | undefined => {
    queued += 1;
    if (queued > limits.maxSubschemas)
      return { path: pathOf(parent), message: `the schema has more than ${limits.maxSubschemas} subschemas` };
    if (isRecord(child) || Array.isArray(child)) pending.push({ schema: child, parent, steps });
    return undefined;
  };
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const entry = next;
    const node = entry.schema;
    if (!isRecord(node)) continue;
    const path = pathOf(entry);
    subschemas += 1;
    if (subschemas > limits.maxSubschemas)
      return { path, message: `the schema has more than ${limits.maxSubschemas} subschemas` };

    for (const keyword of schemaMapKeywords) {
      const map = node[keyword];
      if (!isRecord(map)) continue;
      const names = Object.keys(map);
      if (keyword === "properties") {
        properties += names.length;
        if (properties > limits.maxProperties)
          return {
            path: [...path, keyword],
            message: `the schema has more than ${limits.maxProperties} object properties in total`,
          };
      }
      if (keyword === "properties" || keyword === "$defs" || keyword === "definitions") {
        for (const name of names) characters += name.length;
        if (characters > limits.maxStringCharacters) return tooManyCharacters([...path, keyword]);
      }
      for (const name of names) {
        const problem = push(map[name], entry, keyword, name);
        if (problem !== undefined) return problem;
      }
    }
    for (const keyword of schemaListKeywords) {
      const list = node[keyword];
      if (!Array.isArray(list)) continue;
      if ((keyword === "anyOf" || keyword === "oneOf") && list.length > limits.maxAlternatives)
        return {
          path: [...path, keyword],
          message: `'${keyword}' lists more than ${limits.maxAlternatives} alternatives`,
        };
      for (const [index, child] of list.entries()) {
        const problem = push(child, entry, keyword, index);
        if (problem !== undefined) return problem;
      }
    }
    for (const keyword of [...singleSchemaKeywords, "items"]) {
      const child = node[keyword];
      if (Array.isArray(child) && keyword === "items") {
        for (const [index, item] of child.entries()) {
          const problem = push(item, entry, keyword, index);
          if (problem !== undefined) return problem;
        }
      } else if (isRecord(child)) {
        const problem = push(child, entry, keyword);
        if (problem !== undefined) return problem;
      }
    }

    const listed = node.enum;
    if (Array.isArray(listed)) {
      enumValues += listed.length;
      if (enumValues > limits.maxEnumValues)
        return {
          path: [...path, "enum"],
          message: `the schema lists more than ${limits.maxEnumValues} enum values in total`,
        };
      let enumCharacters = 0;
      let allStrings = true;
      for (const value of listed) {
        if (typeof value === "string") enumCharacters += value.length;
        else allStrings = false;
      }
      characters += enumCharacters;
      if (
        allStrings &&
        listed.length > limits.largeEnumValues &&
        enumCharacters > limits.maxLargeEnumCharacters
      )
        return {
          path: [...path, "enum"],
          message: `a string enum with more than ${limits.largeEnumValues} values may total at most ${limits.maxLargeEnumCharacters} characters (this one has ${enumCharacters})`,
        };
      if (characters > limits.maxStringCharacters) return tooManyCharacters([...path, "enum"]);
    }
    // Required names missing from `properties` become generated properties too.
    if (Array.isArray(node.required)) {
      if (node.required.length > limits.maxProperties)
        return {
          path: [...path, "required"],
          message: `'required' lists more than ${limits.maxProperties} names`,
        };
      for (const name of node.required) if (typeof name === "string") characters += name.length;
      if (characters > limits.maxStringCharacters) return tooManyCharacters([...path, "required"]);
    }
    if (typeof node.const === "string") {
      characters += node.const.length;
      if (characters > limits.maxStringCharacters) return tooManyCharacters([...path, "const"]);
    }
    if (typeof node.pattern === "string" && node.pattern.length > limits.maxPatternLength)
      return {
        path: [...path, "pattern"],
        message: `the pattern is longer than ${limits.maxPatternLength} characters`,
      };
  }
  return undefined;
}
