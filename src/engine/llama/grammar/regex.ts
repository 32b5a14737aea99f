/**
 * Client-supplied regular expressions (JSON Schema `pattern`, later Codex custom tools with a regex
 * grammar) without backtracking: one parser for the ECMAScript subset patterns use, producing an AST, and
 * from the AST a linear-time matcher (a Thompson NFA simulated as a set of states: time O(pattern × text),
 * never exponential) and a GBNF emitter (llama.cpp grammar syntax) that makes generation follow the pattern.
 *
 * Supported: literal characters and escapes (`\n \r \t \v \f \0 \xHH \uHHHH \u{H…} \cX`, escaped syntax
 * characters), `.`, classes `[...]` / `[^...]` with ranges, `\d \w \s \D \W \S`, groups `( )` / `(?: )`,
 * alternation, `? * + {n} {n,} {n,m}` (lazy `?` suffixes too: they change which match is found, never
 * whether one exists), and anchors `^` / `$` at the start / end of a top-level alternative. Patterns are
 * read with the `u` flag's meaning (code points), as JSON Schema validators such as ajv do.
 *
 * Refused as unsupported, naming the construct: lookarounds, backreferences, named groups, word
 * boundaries, Unicode property escapes, anchors anywhere else; and counted repetition whose expansion
 * exceeds {@link maxRegexStates} NFA states. Refused as invalid: what is not an ECMAScript pattern.
 *
 * Semantics are JSON Schema's: a pattern matches when it matches anywhere in the string, so an
 * unanchored side is padded with "any characters" (`parseRegex` builds that into the AST it returns, and
 * `matchRegex` / `regexToGbnf` then match the whole string against it).
 */
import { assertNever } from "../../../shared/errors.js";

/** A set of code points as sorted, disjoint, non-adjacent inclusive ranges. */
export type CodePointSet = readonly (readonly [number, number])[];

export type RegexNode =
  | { type: "empty" }
  | { type: "characters"; set: CodePointSet }
  | { type: "sequence"; items: RegexNode[] }
  | { type: "alternation"; alternatives: RegexNode[] }
  | { type: "repeat"; item: RegexNode; min: number; max: number | undefined };

export interface ParsedRegex {
  source: string;
  /** Matches the WHOLE string: unanchored sides are already padded with any-character repetitions. */
  node: RegexNode;
}

/** Why a client's grammar (a regex, a Lark grammar) cannot be used: malformed, unsupported, or too large. */
export class GrammarError extends Error {
  constructor(
    readonly kind: "invalid" | "unsupported" | "too-large",
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class RegexError extends GrammarError {}

/** The most NFA states a pattern may expand to (counted repetition is expanded). */
export const maxRegexStates = 10_000;

const maxCodePoint = 0x10ffff;
const anyCodePoint: CodePointSet = [[0, maxCodePoint]];
const lineTerminators: CodePointSet = [
  [0x0a, 0x0a],
  [0x0d, 0x0d],
  [0x2028, 0x2029],
];
const digits: CodePointSet = [[0x30, 0x39]];
const wordCharacters: CodePointSet = normalizeSet([
  [0x30, 0x39],
  [0x41, 0x5a],
  [0x5f, 0x5f],
  [0x61, 0x7a],
]);
const whitespace: CodePointSet = normalizeSet([
  [0x09, 0x0d],
  [0x20, 0x20],
  [0xa0, 0xa0],
  [0x1680, 0x1680],
  [0x2000, 0x200a],
  [0x2028, 0x2029],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
  [0xfeff, 0xfeff],
]);

export function normalizeSet(ranges: readonly (readonly [number, number])[]): CodePointSet {
  const sorted = [...ranges].filter(([from, to]) => from <= to).sort((left, right) => left[0] - right[0]);
  const merged: [number, number][] = [];
  for (const [from, to] of sorted) {
    const last = merged[merged.length - 1];
    if (last !== undefined && from <= last[1] + 1) last[1] = Math.max(last[1], to);
    else merged.push([from, to]);
  }
  return merged;
}

export function complementSet(set: CodePointSet): CodePointSet {
  const result: [number, number][] = [];
  let next = 0;
  for (const [from, to] of set) {
    if (from > next) result.push([next, from - 1]);
    next = to + 1;
  }
  if (next <= maxCodePoint) result.push([next, maxCodePoint]);
  return result;
}

export function intersectSets(left: CodePointSet, right: CodePointSet): CodePointSet {
  return complementSet(normalizeSet([...complementSet(left), ...complementSet(right)]));
}

export function setHas(set: CodePointSet, codePoint: number): boolean {
  let low = 0;
  let high = set.length - 1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    const range = set[middle];
    if (range === undefined) return false;
    if (codePoint < range[0]) high = middle - 1;
    else if (codePoint > range[1]) low = middle + 1;
    else return true;
  }
  return false;
}

const syntaxCharacters = "^$\\.*+?()[]{}|/";

export interface ParseRegexOptions {
  /**
   * "search" (default, JSON Schema `pattern`): the pattern matches anywhere in the string. "whole" (Lark
   * terminals, custom tools' regex grammars): it must match the whole string, as if anchored at both ends.
   */
  match?: "search" | "whole";
}

/** Parses `source` (see the module header for the subset). Throws RegexError. */
export function parseRegex(source: string, options: ParseRegexOptions = {}): ParsedRegex {
  const parser = new Parser(source);
  const whole = options.match === "whole";
  const alternatives = parser
    .parseTopLevel()
    .map((alternative) => (whole ? { ...alternative, anchoredStart: true, anchoredEnd: true } : alternative));
  const padded = alternatives.map(({ node, anchoredStart, anchoredEnd }) => {
    const any: RegexNode = {
      type: "repeat",
      item: { type: "characters", set: anyCodePoint },
      min: 0,
      max: undefined,
    };
    const items = [...(anchoredStart ? [] : [any]), node, ...(anchoredEnd ? [] : [any])];
    return items.length === 1 ? node : sequence(items);
  });
  const node = alternatives.length === 1 && padded[0] !== undefined ? padded[0] : alternation(padded);
  const states = countStates(node);
  if (states > maxRegexStates)
    throw new RegexError(
      "too-large",
      `the pattern expands to ${states} states (counted repetition is expanded); at most ${maxRegexStates} are supported`,
    );
  return { source, node };
}

function sequence(items: RegexNode[]): RegexNode {
  const flat = items.flatMap((item) =>
    item.type === "sequence" ? item.items : item.type === "empty" ? [] : [item],
  );
  if (flat.length === 0) return { type: "empty" };
  if (flat.length === 1 && flat[0] !== undefined) return flat[0];
  return { type: "sequence", items: flat };
}

function alternation(alternatives: RegexNode[]): RegexNode {
  if (alternatives.length === 1 && alternatives[0] !== undefined) return alternatives[0];
  return { type: "alternation", alternatives };
}

/** The NFA states `node` expands to (saturating: stops counting far beyond the limit). */
/** How many NFA states a parsed pattern expands to (counted repetition expanded). */
export function regexStates(regex: ParsedRegex): number {
  return countStates(regex.node);
}

function countStates(node: RegexNode): number {
  switch (node.type) {
    case "empty":
      return 0;
    case "characters":
      return 1;
    case "sequence":
      return Math.min(
        Number.MAX_SAFE_INTEGER,
        node.items.reduce((total, item) => total + countStates(item), 0),
      );
    case "alternation":
      return node.alternatives.reduce((total, item) => total + countStates(item), node.alternatives.length);
    case "repeat": {
      // x{n,m}: m copies; x{n,}: n copies and the loop's.
      const copies = node.max ?? node.min + 1;
      return Math.min(Number.MAX_SAFE_INTEGER, (countStates(node.item) + 1) * Math.max(copies, 1));
    }
    default:
      return assertNever(node, "regex node");
  }
}

interface TopLevelAlternative {
  node: RegexNode;
  anchoredStart: boolean;
  anchoredEnd: boolean;
}

/** Groups may nest this deep (the parser recurses per group; real patterns stay far below). */
export const maxRegexGroupDepth = 64;
/** The longest regex parsed at all (json_schema patterns are capped lower by the schema limits). */
export const maxRegexCharacters = 100_000;

class Parser {
  private position = 0;
  private groupDepth = 0;
  private readonly characters: string[];

  constructor(readonly source: string) {
    if (source.length > maxRegexCharacters) {
      throw new RegexError(
        "too-large",
        `the regular expression has ${source.length} characters; at most ${maxRegexCharacters} are supported`,
      );
    }
    this.characters = [...source];
  }

  parseTopLevel(): TopLevelAlternative[] {
    const alternatives: TopLevelAlternative[] = [];
    for (;;) {
      const anchoredStart = this.peek() === "^";
      if (anchoredStart) this.position += 1;
      const node = this.parseSequence(true);
      const anchoredEnd = this.peek() === "$";
      if (anchoredEnd) this.position += 1;
      alternatives.push({ node, anchoredStart, anchoredEnd });
      const next = this.peek();
      if (next === undefined) return alternatives;
      if (next === "|") {
        this.position += 1;
        continue;
      }
      if (next === ")") throw this.invalid("unmatched ')'");
      if (next === "$" || next === "^")
        throw this.unsupported(
          `the anchor '${next}' in the middle of the pattern (only at its start or end)`,
        );
      throw this.invalid(`unexpected '${next}'`);
    }
  }

  private peek(offset = 0): string | undefined {
    return this.characters[this.position + offset];
  }

  private invalid(message: string): RegexError {
    return new RegexError("invalid", `${message} at position ${this.position}`);
  }

  private unsupported(construct: string): RegexError {
    return new RegexError("unsupported", `${construct} is not supported (at position ${this.position})`);
  }

  private parseAlternation(): RegexNode {
    const alternatives = [this.parseSequence(false)];
    while (this.peek() === "|") {
      this.position += 1;
      alternatives.push(this.parseSequence(false));
    }
    return alternation(alternatives);
  }

  /** Items up to `|`, `)` or the end; at the top level also stops before a final `$`. */
  private parseSequence(topLevel: boolean): RegexNode {
    const items: RegexNode[] = [];
    for (;;) {
      const next = this.peek();
      if (next === undefined || next === "|" || next === ")") break;
      if (next === "$") {
        const after = this.peek(1);
        if (topLevel && (after === undefined || after === "|")) break;
        throw this.unsupported("the anchor '$' in the middle of the pattern (only at its end)");
      }
      if (next === "^")
        throw this.unsupported("the anchor '^' in the middle of the pattern (only at its start)");
      const atom = this.parseAtom();
      items.push(this.parseQuantifiers(atom));
    }
    return sequence(items);
  }

  private parseQuantifiers(atom: RegexNode): RegexNode {
    let node = atom;
    let quantified = false;
    for (;;) {
      const next = this.peek();
      let min: number;
      let max: number | undefined;
      if (next === "*") [min, max] = [0, undefined];
      else if (next === "+") [min, max] = [1, undefined];
      else if (next === "?") [min, max] = [0, 1];
      else if (next === "{") {
        const counted = this.readCount();
        if (counted === undefined) throw this.invalid("a lone '{' (write \\{ for the character)");
        [min, max] = counted;
      } else return node;
      if (quantified) throw this.invalid("nothing to repeat (a quantifier after a quantifier)");
      if (next !== "{") this.position += 1;
      if (this.peek() === "?") this.position += 1; // lazy: same language
      node = { type: "repeat", item: node, min, max };
      quantified = true;
    }
  }

  /** `{n}`, `{n,}`, `{n,m}` at the current position (consumed), or undefined when it is not one. */
  private readCount(): [number, number | undefined] | undefined {
    const rest = this.characters.slice(this.position, this.position + 40).join("");
    const match = /^\{(\d+)(,(\d*))?\}/.exec(rest);
    if (match === null) return undefined;
    this.position += [...match[0]].length;
    const min = Number(match[1]);
    const max = match[2] === undefined ? min : match[3] === "" ? undefined : Number(match[3]);
    if (max !== undefined && max < min) throw this.invalid("numbers out of order in a {n,m} quantifier");
    if (min > maxRegexStates || (max !== undefined && max > maxRegexStates))
      throw new RegexError("too-large", `the repetition count ${match[0]} is larger than ${maxRegexStates}`);
    return [min, max];
  }

  private parseAtom(): RegexNode {
    const character = this.peek();
    if (character === undefined) throw this.invalid("unexpected end");
    switch (character) {
      case "(":
        return this.parseGroup();
      case "[":
        return { type: "characters", set: this.parseClass() };
      case ".":
        this.position += 1;
        return { type: "characters", set: complementSet(lineTerminators) };
      case "\\":
        return this.parseEscape();
      case "*":
      case "+":
      case "?":
        throw this.invalid(`nothing to repeat before '${character}'`);
      case "{":
        if (this.readCount() !== undefined) throw this.invalid("nothing to repeat before '{'");
        throw this.invalid("a lone '{' (write \\{ for the character)");
      case "}":
      case "]":
        throw this.invalid(`a lone '${character}' (write \\${character} for the character)`);
      default: {
        this.position += 1;
        const codePoint = character.codePointAt(0) ?? 0;
        return { type: "characters", set: [[codePoint, codePoint]] };
      }
    }
  }

  private parseGroup(): RegexNode {
    this.position += 1;
    if (this.peek() === "?") {
      const kind = this.peek(1);
      if (kind === ":") this.position += 2;
      else if (kind === "=" || kind === "!") throw this.unsupported(`the lookahead '(?${kind}'`);
      else if (kind === "<" && (this.peek(2) === "=" || this.peek(2) === "!"))
        throw this.unsupported(`the lookbehind '(?<${this.peek(2) ?? ""}'`);
      else if (kind === "<") throw this.unsupported("the named group '(?<name>'");
      else throw this.unsupported(`the group modifier '(?${kind ?? ""}'`);
    }
    this.groupDepth += 1;
    if (this.groupDepth > maxRegexGroupDepth)
      throw new RegexError("too-large", `groups nest more than ${maxRegexGroupDepth} levels deep`);
    const inner = this.parseAlternation();
    this.groupDepth -= 1;
    if (this.peek() !== ")") throw this.invalid("unterminated group");
    this.position += 1;
    return inner;
  }

  private parseEscape(): RegexNode {
    const set = this.readEscape(false);
    return { type: "characters", set };
  }

  /** An escape after `\` (consumed) as a set of code points; inside a class `\b` is the backspace. */
  private readEscape(inClass: boolean): CodePointSet {
    this.position += 1;
    const character = this.peek();
    if (character === undefined) throw this.invalid("a pattern cannot end with '\\'");
    this.position += 1;
    const single = (codePoint: number): CodePointSet => [[codePoint, codePoint]];
    switch (character) {
      case "d":
        return digits;
      case "D":
        return complementSet(digits);
      case "w":
        return wordCharacters;
      case "W":
        return complementSet(wordCharacters);
      case "s":
        return whitespace;
      case "S":
        return complementSet(whitespace);
      case "n":
        return single(0x0a);
      case "r":
        return single(0x0d);
      case "t":
        return single(0x09);
      case "v":
        return single(0x0b);
      case "f":
        return single(0x0c);
      case "0":
        if (this.peek() !== undefined && /\d/.test(this.peek() ?? ""))
          throw this.unsupported("the octal escape");
        return single(0);
      case "b":
        if (inClass) return single(0x08);
        throw this.unsupported("the word boundary '\\b'");
      case "B":
        throw this.unsupported("the word boundary '\\B'");
      case "k":
        throw this.unsupported("the named backreference '\\k'");
      case "p":
      case "P":
        throw this.unsupported(`the Unicode property escape '\\${character}'`);
      case "c": {
        const letter = this.peek();
        if (letter === undefined || !/[A-Za-z]/.test(letter))
          throw this.invalid("'\\c' must be followed by a letter");
        this.position += 1;
        return single((letter.codePointAt(0) ?? 0) % 32);
      }
      case "x": {
        const hex = this.characters.slice(this.position, this.position + 2).join("");
        if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw this.invalid("'\\x' must be followed by two hex digits");
        this.position += 2;
        return single(Number.parseInt(hex, 16));
      }
      case "u":
        return single(this.readUnicodeEscape());
      case "-":
        if (inClass) return single(0x2d);
        throw this.invalid("'\\-' is only valid inside a class");
      default:
        if (/[1-9]/.test(character)) throw this.unsupported(`the backreference '\\${character}'`);
        if (syntaxCharacters.includes(character)) return single(character.codePointAt(0) ?? 0);
        throw this.invalid(`the escape '\\${character}' is not valid (with the u flag)`);
    }
  }

  private readUnicodeEscape(): number {
    if (this.peek() === "{") {
      const rest = this.characters.slice(this.position, this.position + 10).join("");
      const match = /^\{([0-9a-fA-F]{1,6})\}/.exec(rest);
      const value = match?.[1] === undefined ? Number.NaN : Number.parseInt(match[1], 16);
      if (match === null || !(value <= maxCodePoint))
        throw this.invalid("'\\u{...}' must hold a code point in hex");
      this.position += match[0].length;
      return value;
    }
    const hex = this.characters.slice(this.position, this.position + 4).join("");
    if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw this.invalid("'\\u' must be followed by four hex digits");
    this.position += 4;
    const high = Number.parseInt(hex, 16);
    // A surrogate pair written as two escapes is one code point.
    if (high >= 0xd800 && high <= 0xdbff && this.peek() === "\\" && this.peek(1) === "u") {
      const low = this.characters.slice(this.position + 2, this.position + 6).join("");
      const lowValue = /^[0-9a-fA-F]{4}$/.test(low) ? Number.parseInt(low, 16) : 0;
      if (lowValue >= 0xdc00 && lowValue <= 0xdfff) {
        this.position += 6;
        return 0x10000 + ((high - 0xd800) << 10) + (lowValue - 0xdc00);
      }
    }
    return high;
  }

  private parseClass(): CodePointSet {
    this.position += 1;
    let negated = false;
    if (this.peek() === "^") {
      negated = true;
      this.position += 1;
    }
    const ranges: (readonly [number, number])[] = [];
    for (;;) {
      const character = this.peek();
      if (character === undefined) throw this.invalid("unterminated character class");
      if (character === "]") {
        this.position += 1;
        break;
      }
      const from = this.readClassAtom();
      if (this.peek() === "-" && this.peek(1) !== "]" && this.peek(1) !== undefined) {
        this.position += 1;
        const to = this.readClassAtom();
        const [fromSingle, toSingle] = [singleCodePoint(from), singleCodePoint(to)];
        if (fromSingle === undefined || toSingle === undefined)
          throw this.invalid("a class range cannot start or end with a class escape such as \\d");
        if (toSingle < fromSingle) throw this.invalid("a class range out of order");
        ranges.push([fromSingle, toSingle]);
      } else ranges.push(...from);
    }
    const set = normalizeSet(ranges);
    return negated ? complementSet(set) : set;
  }

  private readClassAtom(): CodePointSet {
    const character = this.peek();
    if (character === undefined) throw this.invalid("unterminated character class");
    if (character === "\\") return this.readEscape(true);
    this.position += 1;
    const codePoint = character.codePointAt(0) ?? 0;
    return [[codePoint, codePoint]];
  }
}

function singleCodePoint(set: CodePointSet): number | undefined {
  const [only] = set;
  return set.length === 1 && only !== undefined && only[0] === only[1] ? only[0] : undefined;
}

// ---- Matching: a Thompson NFA simulated as a set of states ----

type State =
  | { type: "characters"; set: CodePointSet; next: number }
  | { type: "split"; next: number[] }
  | { type: "match" };

/** A compiled matcher; build once with {@link compileRegex} to test many strings. */
export interface CompiledRegex {
  readonly states: readonly State[];
  readonly start: number;
  /** The lazy DFA: sets of states met so far, by their sorted indexes. */
  readonly stateSets: Map<string, DfaState>;
  /** Scratch space of the closure walk: the generation that last visited each state. */
  readonly marks: Uint32Array;
  generation: number;
}

export function compileRegex(regex: ParsedRegex): CompiledRegex {
  const states: State[] = [];
  const add = (state: State): number => states.push(state) - 1;
  const match = add({ type: "match" });
  /** Builds `node` so that it continues at `next`; returns its entry state. */
  const build = (node: RegexNode, next: number): number => {
    switch (node.type) {
      case "empty":
        return next;
      case "characters":
        return add({ type: "characters", set: node.set, next });
      case "sequence": {
        let entry = next;
        for (let index = node.items.length - 1; index >= 0; index--) {
          const item = node.items[index];
          if (item !== undefined) entry = build(item, entry);
        }
        return entry;
      }
      case "alternation":
        return add({ type: "split", next: node.alternatives.map((alternative) => build(alternative, next)) });
      case "repeat": {
        let entry = next;
        if (node.max === undefined) {
          // item* : a loop state that either enters the item (which comes back to it) or leaves.
          const loop = add({ type: "split", next: [] });
          const body = build(node.item, loop);
          states[loop] = { type: "split", next: [body, next] };
          entry = loop;
        } else {
          // (max - min) nested optional copies: (x(x(x)?)?)?
          for (let index = node.max; index > node.min; index--) {
            const body = build(node.item, entry);
            entry = add({ type: "split", next: [body, next] });
          }
        }
        for (let index = 0; index < node.min; index++) entry = build(node.item, entry);
        return entry;
      }
      default:
        return assertNever(node, "regex node");
    }
  };
  const start = build(regex.node, match);
  return { states, start, stateSets: new Map(), marks: new Uint32Array(states.length), generation: 0 };
}

/** A shared allowance of NFA steps (states visited); matching throws a "too-large" RegexError past it. */
export interface MatchBudget {
  steps: number;
}

/** A set of NFA states met while matching, with the transitions out of it found so far (a lazy DFA). */
interface DfaState {
  states: number[];
  accepting: boolean;
  /** Code point → the next set (null: no match possible); only for sets kept in the cache. */
  next: Map<number, DfaState | null> | undefined;
}

/** The most state sets a compiled regex remembers; beyond, sets are computed again on every character. */
const maxCachedStateSets = 4_096;

/**
 * Whether `text` matches (JSON Schema semantics: see parseRegex). Never exponential: each character costs
 * at most one pass over the NFA's states (O(text × states)), and a set of states seen before with the
 * same character costs one map lookup. With a `budget`, at most that many state visits in total (shared
 * across calls).
 */
export function matchRegex(regex: ParsedRegex | CompiledRegex, text: string, budget?: MatchBudget): boolean {
  const compiled = "states" in regex ? regex : compileRegex(regex);
  let current: DfaState | null = stateSet(compiled, closure(compiled, [compiled.start]));
  for (const character of text) {
    if (current === null) return false;
    const codePoint = character.codePointAt(0) ?? 0;
    const known: DfaState | null | undefined = current.next?.get(codePoint);
    if (known !== undefined) {
      current = known;
      continue;
    }
    const following: number[] = [];
    for (const index of current.states) {
      const state = compiled.states[index];
      if (state?.type === "characters" && setHas(state.set, codePoint)) following.push(state.next);
    }
    const next = following.length === 0 ? null : stateSet(compiled, closure(compiled, following, budget));
    current.next?.set(codePoint, next);
    current = next;
  }
  return current?.accepting === true;
}

/** Sets larger than this are not cached (their key would cost as much as computing them again). */
const maxCachedSetSize = 256;

function stateSet(compiled: CompiledRegex, states: number[]): DfaState {
  const accepting = states.some((index) => compiled.states[index]?.type === "match");
  if (states.length > maxCachedSetSize) return { states, accepting, next: undefined };
  states.sort((left, right) => left - right);
  const key = states.join(",");
  const known = compiled.stateSets.get(key);
  if (known !== undefined) return known;
  const cached = compiled.stateSets.size < maxCachedStateSets;
  const created: DfaState = { states, accepting, next: cached ? new Map() : undefined };
  if (cached) compiled.stateSets.set(key, created);
  return created;
}

/** The states reachable from `from` without reading a character (iterative; marks by generation). */
function closure(compiled: CompiledRegex, from: readonly number[], budget?: MatchBudget): number[] {
  const { states, marks } = compiled;
  compiled.generation += 1;
  const generation = compiled.generation;
  const result: number[] = [];
  const pending = [...from];
  let visited = 0;
  for (let index = pending.pop(); index !== undefined; index = pending.pop()) {
    if (marks[index] === generation) continue;
    marks[index] = generation;
    visited += 1;
    const state = states[index];
    if (state === undefined) continue;
    if (state.type === "split") for (const next of state.next) pending.push(next);
    else result.push(index);
  }
  if (budget !== undefined) {
    budget.steps -= visited + from.length;
    if (budget.steps < 0)
      throw new RegexError("too-large", "checking these strings against the pattern takes too many steps");
  }
  return result;
}

// ---- GBNF: the same language as a llama.cpp grammar expression ----

export interface RegexToGbnfOptions {
  /**
   * "json-string": the expression generates the INSIDE of a JSON string whose decoded value matches
   * (`"` and `\` and control characters are written as JSON escapes); the caller adds the quotes.
   * "text": raw text that matches.
   */
  target: "json-string" | "text";
}

const surrogates: CodePointSet = [[0xd800, 0xdfff]];
const jsonRawForbidden: CodePointSet = normalizeSet([
  [0x00, 0x1f],
  [0x22, 0x22],
  [0x5c, 0x5c],
  [0x7f, 0x7f],
]);
const shortJsonEscapes = new Map<number, string>([
  [0x22, '\\"'],
  [0x5c, "\\\\"],
  [0x08, "\\b"],
  [0x0c, "\\f"],
  [0x0a, "\\n"],
  [0x0d, "\\r"],
  [0x09, "\\t"],
]);

/** A GBNF expression (no rule definitions) generating exactly what `regex` matches. */
export function regexToGbnf(regex: ParsedRegex, options: RegexToGbnfOptions): string {
  const emit = (node: RegexNode): string => {
    switch (node.type) {
      case "empty":
        return '""';
      case "characters":
        return characterSetToGbnf(node.set, options.target);
      case "sequence":
        return node.items.map(emit).join(" ");
      case "alternation":
        return `(${node.alternatives.map(emit).join(" | ")})`;
      case "repeat": {
        const item = `(${emit(node.item)})`;
        if (node.max === undefined) {
          if (node.min === 0) return `${item}*`;
          if (node.min === 1) return `${item}+`;
          return `${item}{${node.min},}`;
        }
        if (node.min === 0 && node.max === 1) return `${item}?`;
        if (node.min === node.max) return node.min === 0 ? '""' : `${item}{${node.min}}`;
        return `${item}{${node.min},${node.max}}`;
      }
      default:
        return assertNever(node, "regex node");
    }
  };
  return emit(regex.node);
}

/** One character of `set` as GBNF: a class, plus JSON escapes for the json-string target. */
export function characterSetToGbnf(set: CodePointSet, target: RegexToGbnfOptions["target"]): string {
  const usable = intersectSets(set, complementSet(surrogates));
  if (target === "text") {
    if (usable.length === 0)
      throw new RegexError("unsupported", "a character class that matches no character");
    return gbnfClass(usable);
  }
  const raw = intersectSets(usable, complementSet(jsonRawForbidden));
  const alternatives: string[] = raw.length === 0 ? [] : [gbnfClass(raw)];
  const controls = intersectSets(usable, [[0x00, 0x1f]]);
  const allControls = controls.length === 1 && controls[0]?.[0] === 0 && controls[0][1] === 0x1f;
  for (const [codePoint, escape] of shortJsonEscapes) {
    if (setHas(usable, codePoint) && !(allControls && codePoint < 0x20))
      alternatives.push(gbnfLiteral(escape));
  }
  if (allControls) alternatives.push(`${gbnfLiteral("\\u00")} [01] [0-9a-fA-F]`);
  else {
    for (const [from, to] of controls) {
      for (let codePoint = from; codePoint <= to; codePoint++) {
        if (!shortJsonEscapes.has(codePoint))
          alternatives.push(gbnfLiteral(`\\u${codePoint.toString(16).padStart(4, "0")}`));
      }
    }
  }
  if (setHas(usable, 0x7f)) alternatives.push(`(${gbnfClass([[0x7f, 0x7f]])} | ${gbnfLiteral("\\u007f")})`);
  if (alternatives.length === 0)
    throw new RegexError("unsupported", "a character class that matches no character");
  return alternatives.length === 1 ? (alternatives[0] ?? '""') : `(${alternatives.join(" | ")})`;
}

function gbnfCodePoint(codePoint: number): string {
  const character = String.fromCodePoint(codePoint);
  if (/^[A-Za-z0-9 ]$/.test(character)) return character;
  if (codePoint <= 0xff) return `\\x${codePoint.toString(16).padStart(2, "0")}`;
  if (codePoint <= 0xffff) return `\\u${codePoint.toString(16).padStart(4, "0")}`;
  return `\\U${codePoint.toString(16).padStart(8, "0")}`;
}

function gbnfClass(set: CodePointSet): string {
  return `[${set.map(([from, to]) => (from === to ? gbnfCodePoint(from) : `${gbnfCodePoint(from)}-${gbnfCodePoint(to)}`)).join("")}]`;
}

/** A GBNF string literal generating exactly `text`. */
export function gbnfLiteral(text: string): string {
  let body = "";
  for (const character of text) {
    const codePoint = character.codePointAt(0) ?? 0;
    if (character === '"') body += '\\"';
    else if (character === "\\") body += "\\\\";
    else if (codePoint < 0x20 || codePoint === 0x7f) body += `\\x${codePoint.toString(16).padStart(2, "0")}`;
    else body += character;
  }
  return `"${body}"`;
}
