/**
 * `$ref` cycles that no grammar can hold: a definition that reaches itself through `$ref`, `allOf`,
 * `anyOf`, `oneOf` (or `not` / `if` / `then` / `else`) alone, without first writing an object or an array.
 * `allOf` merging would inline it forever (the stack overflow this replaces: a 500), and as a grammar
 * rule it is left-recursive (`a ::= a | ...`), which llama.cpp refuses. A cycle through `properties`,
 * `items`, `additionalProperties` or `prefixItems` is a legitimately recursive value (a tree node) and is
 * kept. Iterative; linear in the size of the schema.
 */
import type { SchemaContext } from "./context.js";
import { isRecord, localReferenceName, type JsonObject, type Path } from "./values.js";

/** Keywords whose schemas apply to the same value (no object or array is written in between). */
const sameValueListKeywords = ["allOf", "anyOf", "oneOf"];
const sameValueSingleKeywords = ["not", "if", "then", "else"];

interface ReferenceEdge {
  target: string;
  /** The `$ref` keyword's path from the root. */
  path: Path;
}

/** Throws a 400 `invalid_json_schema` naming the `$ref` that closes the first unguarded cycle. */
export function checkReferenceCycles(root: JsonObject | true, context: SchemaContext): void {
  if (root === true) return;
  const definitions = new Map<string, { schema: unknown; path: Path }>();
  for (const keyword of ["definitions", "$defs"]) {
    const map = root[keyword];
    if (!isRecord(map)) continue;
    for (const [name, schema] of Object.entries(map))
      definitions.set(name, { schema, path: [keyword, name] });
  }
  if (definitions.size === 0) return;
  const edges = new Map<string, ReferenceEdge[]>();
  for (const [name, { schema, path }] of definitions) edges.set(name, unguardedReferences(schema, path));

  // Depth-first search with colours, iterative: grey = on the current path.
  const colour = new Map<string, "grey" | "black">();
  for (const start of definitions.keys()) {
    if (colour.has(start)) continue;
    const stack: { name: string; next: number }[] = [{ name: start, next: 0 }];
    colour.set(start, "grey");
    while (stack.length > 0) {
      const frame = stack[stack.length - 1];
      if (frame === undefined) break;
      const edge = edges.get(frame.name)?.[frame.next];
      if (edge === undefined) {
        colour.set(frame.name, "black");
        stack.pop();
        continue;
      }
      frame.next += 1;
      if (!definitions.has(edge.target)) continue;
      const seen = colour.get(edge.target);
      if (seen === "grey") {
        throw context.errorAt(
          [...edge.path],
          `refers back to '${edge.target}' through $ref / allOf / anyOf / oneOf alone (no object or array in between), so the schema never bottoms out; a recursive schema must recurse through properties or items`,
        );
      }
      if (seen === undefined) {
        colour.set(edge.target, "grey");
        stack.push({ name: edge.target, next: 0 });
      }
    }
  }
}

/** The local `$ref`s that apply to the same value as `schema` (not under properties, items, ...). */
function unguardedReferences(schema: unknown, path: Path): ReferenceEdge[] {
  const found: ReferenceEdge[] = [];
  const pending: { schema: unknown; path: Path }[] = [{ schema, path }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (!isRecord(next.schema)) continue;
    const { schema: node, path: at } = next;
    if (typeof node.$ref === "string") {
      const target = localReferenceName(node.$ref);
      if (target !== undefined) found.push({ target, path: [...at, "$ref"] });
    }
    for (const keyword of sameValueListKeywords) {
      const list = node[keyword];
      if (Array.isArray(list))
        list.forEach((member: unknown, index) =>
          pending.push({ schema: member, path: [...at, keyword, index] }),
        );
    }
    for (const keyword of sameValueSingleKeywords) {
      if (isRecord(node[keyword])) pending.push({ schema: node[keyword], path: [...at, keyword] });
    }
  }
  return found;
}
