/**
 * A small GBNF toolkit for tests, with no model: `parseGbnf` reads the llama.cpp grammar syntax lmhost and
 * node-llama-cpp emit (rules, literals, classes, groups, alternation, `? * + {n} {n,} {n,m}`),
 * `sampleGbnf` generates random strings FROM a grammar (seeded; repetitions and recursion are kept short),
 * and `matchesGbnf` tells whether a grammar generates a given string (memoised: polynomial, no model).
 */

type GbnfNode =
  | { kind: "literal"; id: number; codePoints: number[] }
  | { kind: "class"; id: number; ranges: [number, number][]; negated: boolean }
  | { kind: "reference"; id: number; name: string }
  | { kind: "sequence"; id: number; items: GbnfNode[] }
  | { kind: "alternatives"; id: number; options: GbnfNode[] }
  | { kind: "repeat"; id: number; item: GbnfNode; min: number; max: number | undefined };

export interface Gbnf {
  rules: Map<string, GbnfNode>;
  root: string;
}

let nextId = 0;

export function parseGbnf(text: string, root = "root"): Gbnf {
  const characters = [...text];
  let position = 0;
  const rules = new Map<string, GbnfNode>();
  const peek = (offset = 0): string | undefined => characters[position + offset];
  const fail = (message: string): never => {
    throw new Error(`GBNF: ${message} at ${position}: ${characters.slice(position, position + 40).join("")}`);
  };
  const skipSpace = (newlines: boolean): void => {
    for (;;) {
      const character = peek();
      if (character === " " || character === "\t" || (newlines && (character === "\n" || character === "\r")))
        position += 1;
      else if (character === "#") while (peek() !== undefined && peek() !== "\n") position += 1;
      else return;
    }
  };
  const readName = (): string => {
    let name = "";
    while (/[A-Za-z0-9_-]/.test(peek() ?? "")) name += characters[position++];
    if (name === "") fail("expected a rule name");
    return name;
  };
  const readEscape = (): number => {
    position += 1; // the backslash
    const character = peek();
    position += 1;
    const hex = (length: number): number => {
      const digits = characters.slice(position, position + length).join("");
      position += length;
      return Number.parseInt(digits, 16);
    };
    switch (character) {
      case "x":
        return hex(2);
      case "u":
        return hex(4);
      case "U":
        return hex(8);
      case "t":
        return 9;
      case "n":
        return 10;
      case "r":
        return 13;
      case undefined:
        return fail("unterminated escape");
      default:
        return character.codePointAt(0) ?? 0;
    }
  };
  const readCharacter = (): number => {
    if (peek() === "\\") return readEscape();
    const character = peek();
    if (character === undefined) fail("unexpected end");
    position += 1;
    return character?.codePointAt(0) ?? 0;
  };
  const parseAlternatives = (): GbnfNode => {
    const options = [parseSequence()];
    while (peek() === "|") {
      position += 1;
      options.push(parseSequence());
    }
    return options.length === 1 && options[0] !== undefined
      ? options[0]
      : { kind: "alternatives", id: nextId++, options };
  };
  const parseSequence = (): GbnfNode => {
    const items: GbnfNode[] = [];
    for (;;) {
      skipSpace(true);
      const character = peek();
      if (character === undefined || character === "|" || character === ")") break;
      // The next rule starts: `name ::=`.
      const rest = characters.slice(position, position + 200).join("");
      if (/^[A-Za-z0-9_-]+\s*::=/.test(rest)) break;
      let item: GbnfNode;
      if (character === '"') {
        position += 1;
        const codePoints: number[] = [];
        while (peek() !== '"') codePoints.push(readCharacter());
        position += 1;
        item = { kind: "literal", id: nextId++, codePoints };
      } else if (character === "[") {
        position += 1;
        const negated = peek() === "^";
        if (negated) position += 1;
        const ranges: [number, number][] = [];
        while (peek() !== "]") {
          const from = readCharacter();
          if (peek() === "-" && peek(1) !== "]") {
            position += 1;
            ranges.push([from, readCharacter()]);
          } else ranges.push([from, from]);
        }
        position += 1;
        item = { kind: "class", id: nextId++, ranges, negated };
      } else if (character === "(") {
        position += 1;
        item = parseAlternatives();
        skipSpace(true);
        if (peek() !== ")") fail("expected )");
        position += 1;
      } else item = { kind: "reference", id: nextId++, name: readName() };
      for (;;) {
        const quantifier = peek();
        if (quantifier === "?") item = { kind: "repeat", id: nextId++, item, min: 0, max: 1 };
        else if (quantifier === "*") item = { kind: "repeat", id: nextId++, item, min: 0, max: undefined };
        else if (quantifier === "+") item = { kind: "repeat", id: nextId++, item, min: 1, max: undefined };
        else if (quantifier === "{") {
          const match = /^\{(\d+)(,(\d*))?\}/.exec(characters.slice(position, position + 30).join(""));
          if (match === null) fail("bad {n,m}");
          const min = Number(match?.[1]);
          const max = match?.[2] === undefined ? min : match[3] === "" ? undefined : Number(match[3]);
          position += match?.[0].length ?? 0;
          item = { kind: "repeat", id: nextId++, item, min, max };
          continue;
        } else break;
        position += 1;
      }
      items.push(item);
    }
    return items.length === 1 && items[0] !== undefined
      ? items[0]
      : { kind: "sequence", id: nextId++, items };
  };
  for (;;) {
    skipSpace(true);
    if (peek() === undefined) break;
    const name = readName();
    skipSpace(false);
    if (characters.slice(position, position + 3).join("") !== "::=") fail("expected ::=");
    position += 3;
    rules.set(name, parseAlternatives());
  }
  if (!rules.has(root)) throw new Error(`GBNF: no rule ${root}`);
  return { rules, root };
}

function classHas(node: GbnfNode & { kind: "class" }, codePoint: number): boolean {
  const inside = node.ranges.some(([from, to]) => codePoint >= from && codePoint <= to);
  return inside !== node.negated;
}

/** The shortest string each node can generate (by length), for steering generation out of recursion. */
function shortestLengths(grammar: Gbnf): Map<number, number> {
  const lengths = new Map<number, number>();
  const measure = (node: GbnfNode): number => {
    switch (node.kind) {
      case "literal":
        return node.codePoints.length;
      case "class":
        return 1;
      case "reference":
        return lengths.get(-1 - ruleIndex(node.name)) ?? Number.POSITIVE_INFINITY;
      case "sequence":
        return node.items.reduce((total, item) => total + remember(item), 0);
      case "alternatives":
        return Math.min(...node.options.map(remember));
      case "repeat":
        return node.min === 0 ? (remember(node.item), 0) : node.min * remember(node.item);
    }
  };
  const names = [...grammar.rules.keys()];
  const ruleIndex = (name: string): number => names.indexOf(name);
  const remember = (node: GbnfNode): number => {
    const length = measure(node);
    lengths.set(node.id, length);
    return length;
  };
  for (let round = 0; round < names.length + 2; round++) {
    for (const [name, body] of grammar.rules) lengths.set(-1 - ruleIndex(name), remember(body));
  }
  return lengths;
}

/** A seeded pseudo-random number generator (mulberry32). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random string the grammar generates. Repetitions are geometric; deep recursion takes the shortest way. */
export function sampleGbnf(grammar: Gbnf, random: () => number): string {
  const shortest = shortestLengths(grammar);
  const length = (node: GbnfNode): number => shortest.get(node.id) ?? 0;
  const output: number[] = [];
  const generate = (node: GbnfNode, depth: number): void => {
    const constrained = depth > 30;
    switch (node.kind) {
      case "literal":
        output.push(...node.codePoints);
        return;
      case "class":
        output.push(pickCharacter(node, random));
        return;
      case "reference": {
        const body = grammar.rules.get(node.name);
        if (body === undefined) throw new Error(`GBNF: unknown rule ${node.name}`);
        generate(body, depth + 1);
        return;
      }
      case "sequence":
        for (const item of node.items) generate(item, depth + 1);
        return;
      case "alternatives": {
        const options = constrained
          ? node.options.filter((option) => length(option) === Math.min(...node.options.map(length)))
          : node.options.filter((option) => Number.isFinite(length(option)));
        const option = options[Math.floor(random() * options.length)] ?? node.options[0];
        if (option !== undefined) generate(option, depth + 1);
        return;
      }
      case "repeat": {
        let count = node.min;
        const max = node.max ?? Number.POSITIVE_INFINITY;
        if (!constrained) while (count < max && random() < 0.6) count += 1;
        for (let index = 0; index < count; index++) generate(node.item, depth + 1);
        return;
      }
    }
  };
  const root = grammar.rules.get(grammar.root);
  if (root === undefined) throw new Error("GBNF: no root");
  generate(root, 0);
  return String.fromCodePoint(...output);
}

function pickCharacter(node: GbnfNode & { kind: "class" }, random: () => number): number {
  // Mostly printable ASCII (what the pattern tests are about), sometimes anything the class allows.
  const candidates: number[] = [];
  for (let codePoint = 0x20; codePoint < 0x7f; codePoint++)
    if (classHas(node, codePoint)) candidates.push(codePoint);
  if (candidates.length > 0 && random() < 0.9)
    return candidates[Math.floor(random() * candidates.length)] ?? 0x20;
  for (let attempt = 0; attempt < 1000; attempt++) {
    const codePoint = random() < 0.5 ? Math.floor(random() * 0x3000) : Math.floor(random() * 0x110000);
    if ((codePoint < 0xd800 || codePoint > 0xdfff) && classHas(node, codePoint)) return codePoint;
  }
  const first = node.negated ? 0x20 : (node.ranges[0]?.[0] ?? 0x20);
  return first;
}

/** Whether the grammar generates exactly `text`. */
export function matchesGbnf(grammar: Gbnf, text: string): boolean {
  const codePoints = [...text].map((character) => character.codePointAt(0) ?? 0);
  const memo = new Map<string, ReadonlySet<number>>();
  const ends = (node: GbnfNode, start: number): ReadonlySet<number> => {
    const key = `${node.id}:${start}`;
    const known = memo.get(key);
    if (known !== undefined) return known;
    memo.set(key, new Set()); // in progress: left recursion matches nothing
    const result = new Set<number>();
    switch (node.kind) {
      case "literal":
        if (node.codePoints.every((codePoint, index) => codePoints[start + index] === codePoint))
          result.add(start + node.codePoints.length);
        break;
      case "class": {
        const codePoint = codePoints[start];
        if (codePoint !== undefined && classHas(node, codePoint)) result.add(start + 1);
        break;
      }
      case "reference": {
        const body = grammar.rules.get(node.name);
        if (body !== undefined) for (const end of ends(body, start)) result.add(end);
        break;
      }
      case "sequence": {
        let positions = new Set([start]);
        for (const item of node.items) {
          const next = new Set<number>();
          for (const position of positions) for (const end of ends(item, position)) next.add(end);
          positions = next;
        }
        for (const position of positions) result.add(position);
        break;
      }
      case "alternatives":
        for (const option of node.options) for (const end of ends(option, start)) result.add(end);
        break;
      case "repeat": {
        let frontier = new Set([start]);
        const seen = new Set<number>();
        if (node.min === 0) result.add(start);
        const max = node.max ?? Number.POSITIVE_INFINITY;
        for (let count = 1; count <= max && frontier.size > 0; count++) {
          const next = new Set<number>();
          for (const position of frontier) for (const end of ends(node.item, position)) next.add(end);
          if (count >= node.min) for (const end of next) result.add(end);
          if (node.max === undefined && count >= node.min) {
            // Unbounded: only positions not seen at an earlier count can lead anywhere new.
            frontier = new Set([...next].filter((position) => !seen.has(position)));
            for (const position of next) seen.add(position);
          } else frontier = next;
        }
        break;
      }
    }
    memo.set(key, result);
    return result;
  };
  const root = grammar.rules.get(grammar.root);
  return root !== undefined && ends(root, 0).has(codePoints.length);
}
