/**
 * Lark grammars → GBNF (llama.cpp grammar syntax), for custom tools whose `format` is
 * `{type: "grammar", syntax: "lark", definition}` (Codex's freeform `apply_patch` sends one). Pure: no
 * model, no node-llama-cpp; the API layer runs it to refuse what cannot be converted before any work, the
 * engine runs it to build the grammar the input is generated under.
 *
 * Supported (the language, not Lark's parse trees):
 * - rule definitions `name: ...` (lowercase, also `_name`, `?name`, `!name`) and terminal definitions
 *   `NAME: ...` (uppercase; they may not reference rules); priorities `name.2:` are accepted and do not
 *   change the language; `start` is the root;
 * - alternatives `|` (also on continuation lines), alias `-> name` (ignored: it names a tree node);
 * - string literals `"..."` (Python escapes; `"..."i` case-insensitive), character ranges `"a".."z"`,
 *   regex terminals `/.../` (the ECMAScript subset of regex.ts, matched against the whole token);
 * - groups `( )`, optional `[ ]`, `? * +`, counted repetition `~ n` / `~ n..m`;
 * - `%import common.NAME`, `%import common.NAME -> ALIAS` and `%import common (A, B)` for Lark's common
 *   terminals (DIGIT, HEXDIGIT, INT, SIGNED_INT, DECIMAL, FLOAT, SIGNED_FLOAT, NUMBER, SIGNED_NUMBER,
 *   ESCAPED_STRING, LCASE_LETTER, UCASE_LETTER, LETTER, WORD, CNAME, WS_INLINE, WS, CR, LF, NEWLINE,
 *   SH_COMMENT, CPP_COMMENT, C_COMMENT, SQL_COMMENT), written here from their definitions;
 * - `//` comments.
 *
 * Refused as unsupported (a LarkError naming the construct): `%ignore` (it changes the language between
 * every two tokens of every rule), `%declare` / `%override` / `%extend`, imports from other modules,
 * templates `name{...}`, regex flags, left recursion (llama.cpp's grammar engine cannot run it), and what
 * regex.ts refuses (lookarounds, backreferences, ...). Refused as invalid: undefined names, a missing
 * `start`, a terminal referencing a rule, syntax errors.
 *
 * The GBNF generates the context-free language of the grammar. Lark's lexer can make a few grammars
 * stricter than that (a terminal that a longer match of another terminal shadows); Codex's grammar is not
 * affected.
 */
import { assertNever } from "../../../shared/errors.js";
import {
  characterSetToGbnf,
  gbnfLiteral,
  GrammarError,
  maxRegexStates,
  parseRegex,
  RegexError,
  regexStates,
  regexToGbnf,
} from "./regex.js";

export class LarkError extends GrammarError {}

/** The longest grammar definition accepted (characters). */
export const maxLarkDefinitionCharacters = 100_000;
/** The largest GBNF a grammar may convert to (characters). */
export const maxLarkGbnfCharacters = 2_000_000;
/**
 * The most grammar elements a grammar may expand to once counted repetition (`~ n..m`, regex `{n,m}`)
 * is unrolled, as llama.cpp's grammar engine does: twice what one regex may expand to.
 */
export const maxLarkExpandedSize = 2 * maxRegexStates;
/** The deepest nesting of groups a definition may have. */
export const maxLarkNesting = 64;

type Expression =
  | { kind: "literal"; text: string; caseInsensitive: boolean }
  | { kind: "range"; from: number; to: number }
  | { kind: "regex"; source: string; gbnf: string; states: number }
  | { kind: "name"; name: string; line: number }
  | { kind: "sequence"; items: Expression[] }
  | { kind: "alternatives"; options: Expression[] }
  | { kind: "repeat"; item: Expression; min: number; max: number | undefined };

interface Definition {
  name: string;
  expression: Expression;
  line: number;
}

type Token =
  | { kind: "name"; text: string; line: number }
  | { kind: "string"; text: string; caseInsensitive: boolean; line: number }
  | { kind: "regex"; source: string; flags: string; line: number }
  | { kind: "number"; value: number; line: number }
  | { kind: "directive"; text: string; line: number }
  | { kind: "symbol"; text: string; line: number }
  | { kind: "newline"; line: number };

const symbols = ["->", "..", ":", "|", "(", ")", "[", "]", "?", "*", "+", "~", ".", ",", "!", "{", "}"];

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let position = 0;
  let line = 1;
  const invalid = (message: string) => new LarkError("invalid", `${message} (line ${line})`);
  while (position < text.length) {
    const character = text[position] ?? "";
    if (character === "\n") {
      tokens.push({ kind: "newline", line });
      line += 1;
      position += 1;
    } else if (character === " " || character === "\t" || character === "\r") {
      position += 1;
    } else if (text.startsWith("//", position)) {
      while (position < text.length && text[position] !== "\n") position += 1;
    } else if (character === '"') {
      let end = position + 1;
      let raw = "";
      while (end < text.length && text[end] !== '"') {
        if (text[end] === "\n") throw invalid("a string literal that is not closed on its line");
        if (text[end] === "\\") {
          raw += text.slice(end, end + 2);
          end += 2;
        } else {
          raw += text[end];
          end += 1;
        }
      }
      if (end >= text.length) throw invalid("a string literal that is never closed");
      position = end + 1;
      const caseInsensitive = text[position] === "i" && !/[A-Za-z0-9_]/.test(text[position + 1] ?? "");
      if (caseInsensitive) position += 1;
      tokens.push({ kind: "string", text: decodeString(raw, line), caseInsensitive, line });
    } else if (character === "/") {
      let end = position + 1;
      let source = "";
      let inClass = false;
      while (end < text.length && (text[end] !== "/" || inClass)) {
        const current = text[end] ?? "";
        if (current === "\n") throw invalid("a regular expression that is not closed on its line");
        if (current === "\\" && text[end + 1] === "/") {
          source += "/";
          end += 2;
          continue;
        }
        if (current === "\\") {
          source += text.slice(end, end + 2);
          end += 2;
          continue;
        }
        if (current === "[") inClass = true;
        else if (current === "]") inClass = false;
        source += current;
        end += 1;
      }
      if (end >= text.length) throw invalid("a regular expression that is never closed");
      position = end + 1;
      let flags = "";
      while (/[a-z]/.test(text[position] ?? "")) flags += text[position++];
      tokens.push({ kind: "regex", source, flags, line });
    } else if (character === "%") {
      const match = /^%[a-z_]+/.exec(text.slice(position));
      if (match === null) throw invalid("a '%' that starts no directive");
      tokens.push({ kind: "directive", text: match[0], line });
      position += match[0].length;
    } else if (/[A-Za-z_]/.test(character)) {
      const match = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(position));
      const name = match?.[0] ?? character;
      tokens.push({ kind: "name", text: name, line });
      position += name.length;
    } else if (/[0-9]/.test(character)) {
      const match = /^[0-9]+/.exec(text.slice(position));
      const digits = match?.[0] ?? character;
      tokens.push({ kind: "number", value: Number(digits), line });
      position += digits.length;
    } else {
      const symbol = symbols.find((candidate) => text.startsWith(candidate, position));
      if (symbol === undefined) throw invalid(`unexpected character '${character}'`);
      tokens.push({ kind: "symbol", text: symbol, line });
      position += symbol.length;
    }
  }
  return tokens;
}

/** A Lark string literal's body (Python escapes) → its text. */
function decodeString(raw: string, line: number): string {
  let text = "";
  for (let index = 0; index < raw.length; index++) {
    const character = raw[index] ?? "";
    if (character !== "\\") {
      text += character;
      continue;
    }
    const next = raw[index + 1] ?? "";
    index += 1;
    const simple: Record<string, string> = {
      n: "\n",
      t: "\t",
      r: "\r",
      f: "\f",
      v: "\v",
      "0": "\0",
      "\\": "\\",
      '"': '"',
      "'": "'",
    };
    const decoded = simple[next];
    if (decoded !== undefined) {
      text += decoded;
      continue;
    }
    const hexLength = next === "x" ? 2 : next === "u" ? 4 : next === "U" ? 8 : 0;
    if (hexLength > 0) {
      const hex = raw.slice(index + 1, index + 1 + hexLength);
      if (!new RegExp(`^[0-9a-fA-F]{${hexLength}}$`).test(hex))
        throw new LarkError("invalid", `a malformed '\\${next}' escape in a string literal (line ${line})`);
      const codePoint = Number.parseInt(hex, 16);
      if (codePoint > 0x10ffff)
        throw new LarkError("invalid", `an escape beyond U+10FFFF in a string literal (line ${line})`);
      text += String.fromCodePoint(codePoint);
      index += hexLength;
      continue;
    }
    // As Python: an unknown escape keeps its backslash.
    text += `\\${next}`;
  }
  return text;
}

/** Parses the statements of a grammar into definitions and imports. */
class StatementParser {
  private position = 0;
  private depth = 0;
  constructor(
    private readonly tokens: Token[],
    private readonly line: number,
  ) {}

  private peek(): Token | undefined {
    return this.tokens[this.position];
  }

  private isSymbol(text: string): boolean {
    const token = this.peek();
    return token?.kind === "symbol" && token.text === text;
  }

  private expectSymbol(text: string): void {
    if (!this.isSymbol(text)) throw this.invalid(`expected '${text}'`);
    this.position += 1;
  }

  private invalid(message: string): LarkError {
    const token = this.peek();
    return new LarkError("invalid", `${message} (line ${token?.line ?? this.line})`);
  }

  get done(): boolean {
    return this.position >= this.tokens.length;
  }

  /** `name.priority: expansions` → the definition. */
  parseDefinition(): Definition {
    if (this.isSymbol("?") || this.isSymbol("!")) this.position += 1;
    const name = this.peek();
    if (name?.kind !== "name") throw this.invalid("expected a rule or terminal name");
    this.position += 1;
    if (this.isSymbol("{"))
      throw new LarkError(
        "unsupported",
        `templates ('${name.text}{...}') are not supported (line ${name.line})`,
      );
    if (this.isSymbol(".")) {
      this.position += 1;
      if (this.peek()?.kind !== "number") throw this.invalid("expected a priority number after '.'");
      this.position += 1;
    }
    this.expectSymbol(":");
    const expression = this.parseExpansions();
    if (!this.done) throw this.invalid("unexpected text after the definition");
    return { name: name.text, expression, line: name.line };
  }

  private parseExpansions(): Expression {
    const options = [this.parseAliasedExpansion()];
    while (this.isSymbol("|")) {
      this.position += 1;
      options.push(this.parseAliasedExpansion());
    }
    return options.length === 1 && options[0] !== undefined ? options[0] : { kind: "alternatives", options };
  }

  private parseAliasedExpansion(): Expression {
    const expression = this.parseExpansion();
    if (this.isSymbol("->")) {
      // An alias names the tree node; the language is unchanged.
      this.position += 1;
      if (this.peek()?.kind !== "name") throw this.invalid("expected a name after '->'");
      this.position += 1;
    }
    return expression;
  }

  private parseExpansion(): Expression {
    const items: Expression[] = [];
    for (;;) {
      const token = this.peek();
      if (token === undefined) break;
      if (token.kind === "symbol" && ["|", ")", "]", "->"].includes(token.text)) break;
      items.push(this.parseItem());
    }
    return items.length === 1 && items[0] !== undefined ? items[0] : { kind: "sequence", items };
  }

  private parseItem(): Expression {
    const atom = this.parseAtom();
    const token = this.peek();
    if (token?.kind !== "symbol") return atom;
    switch (token.text) {
      case "?":
        this.position += 1;
        return { kind: "repeat", item: atom, min: 0, max: 1 };
      case "*":
        this.position += 1;
        return { kind: "repeat", item: atom, min: 0, max: undefined };
      case "+":
        this.position += 1;
        return { kind: "repeat", item: atom, min: 1, max: undefined };
      case "~": {
        this.position += 1;
        const min = this.parseCount();
        let max = min;
        if (this.isSymbol("..")) {
          this.position += 1;
          max = this.parseCount();
        }
        if (max < min) throw this.invalid(`the repetition ~ ${min}..${max} has its bounds reversed`);
        return { kind: "repeat", item: atom, min, max };
      }
      default:
        return atom;
    }
  }

  private parseCount(): number {
    const token = this.peek();
    if (token?.kind !== "number") throw this.invalid("expected a number after '~'");
    this.position += 1;
    if (token.value > 1_000)
      throw new LarkError(
        "too-large",
        `the repetition count ${token.value} is above 1000 (line ${token.line})`,
      );
    return token.value;
  }

  private parseAtom(): Expression {
    const token = this.peek();
    if (token === undefined) throw this.invalid("unexpected end of the definition");
    this.position += 1;
    switch (token.kind) {
      case "string": {
        if (this.isSymbol("..")) {
          this.position += 1;
          const end = this.peek();
          if (end?.kind !== "string") throw this.invalid("expected a string after '..'");
          this.position += 1;
          const from = [...token.text];
          const to = [...end.text];
          if (from.length !== 1 || to.length !== 1 || from[0] === undefined || to[0] === undefined)
            throw this.invalid('a range \'"a".."z"\' needs one character on each side');
          const fromCode = from[0].codePointAt(0) ?? 0;
          const toCode = to[0].codePointAt(0) ?? 0;
          if (toCode < fromCode) throw this.invalid("a character range with its bounds reversed");
          return { kind: "range", from: fromCode, to: toCode };
        }
        return { kind: "literal", text: token.text, caseInsensitive: token.caseInsensitive };
      }
      case "regex": {
        if (token.flags !== "")
          throw new LarkError(
            "unsupported",
            `regular expression flags ('/${token.source}/${token.flags}') are not supported (line ${token.line})`,
          );
        return { kind: "regex", source: token.source, ...regexTerminal(token.source, token.line) };
      }
      case "name":
        if (this.isSymbol("{"))
          throw new LarkError(
            "unsupported",
            `templates ('${token.text}{...}') are not supported (line ${token.line})`,
          );
        return { kind: "name", name: token.text, line: token.line };
      case "symbol":
        if (token.text === "(" || token.text === "[") {
          this.depth += 1;
          if (this.depth > maxLarkNesting)
            throw new LarkError(
              "too-large",
              `groups nest more than ${maxLarkNesting} levels deep (line ${token.line})`,
            );
          const expression = this.parseExpansions();
          this.expectSymbol(token.text === "(" ? ")" : "]");
          this.depth -= 1;
          return token.text === "(" ? expression : { kind: "repeat", item: expression, min: 0, max: 1 };
        }
        throw new LarkError("invalid", `unexpected '${token.text}' (line ${token.line})`);
      case "number":
      case "directive":
      case "newline":
        throw new LarkError("invalid", `unexpected ${token.kind} (line ${token.line})`);
      default:
        return assertNever(token, "Lark token");
    }
  }
}

/** A `/regex/` terminal as a GBNF expression matching whole tokens, and its size once expanded. */
function regexTerminal(source: string, line: number): { gbnf: string; states: number } {
  try {
    const parsed = parseRegex(source, { match: "whole" });
    return { gbnf: regexToGbnf(parsed, { target: "text" }), states: regexStates(parsed) };
  } catch (error) {
    if (error instanceof RegexError) {
      throw new LarkError(
        error.kind === "too-large" ? "too-large" : error.kind,
        `the regular expression /${source}/ (line ${line}): ${error.message}`,
      );
    }
    throw error;
  }
}

/** Lark's `common` terminals, as Lark definitions (regex.ts has no lookbehind, so strings use a class). */
const commonDefinitions = `
DIGIT: "0".."9"
HEXDIGIT: "a".."f" | "A".."F" | DIGIT
INT: DIGIT+
SIGNED_INT: ["+" | "-"] INT
DECIMAL: INT "." INT? | "." INT
_EXP: ("e" | "E") SIGNED_INT
FLOAT: INT _EXP | DECIMAL _EXP?
SIGNED_FLOAT: ["+" | "-"] FLOAT
NUMBER: FLOAT | INT
SIGNED_NUMBER: ["+" | "-"] NUMBER
ESCAPED_STRING: "\\"" /([^"\\\\\\n]|\\\\.)*/ "\\""
LCASE_LETTER: "a".."z"
UCASE_LETTER: "A".."Z"
LETTER: UCASE_LETTER | LCASE_LETTER
WORD: LETTER+
CNAME: ("_" | LETTER) ("_" | LETTER | DIGIT)*
WS_INLINE: (" " | /\\t/)+
WS: /[ \\t\\f\\r\\n]/+
CR: /\\r/
LF: /\\n/
NEWLINE: (CR? LF)+
SH_COMMENT: /#[^\\n]*/
CPP_COMMENT: /\\/\\/[^\\n]*/
C_COMMENT: "/*" /([^*]|\\*+[^*\\/])*\\**/ "*/"
SQL_COMMENT: /--[^\\n]*/
`;

const commonPrefix = "common__";

let commonCache: Map<string, Definition> | undefined;

/** The common terminals, named `common__NAME`, their references renamed likewise. */
function commonTerminals(): Map<string, Definition> {
  if (commonCache !== undefined) return commonCache;
  const parsed = parseStatements(commonDefinitions).definitions;
  const rename = (expression: Expression): Expression => {
    switch (expression.kind) {
      case "name":
        return { ...expression, name: commonPrefix + expression.name };
      case "sequence":
        return { kind: "sequence", items: expression.items.map(rename) };
      case "alternatives":
        return { kind: "alternatives", options: expression.options.map(rename) };
      case "repeat":
        return { ...expression, item: rename(expression.item) };
      case "literal":
      case "range":
      case "regex":
        return expression;
      default:
        return assertNever(expression, "Lark expression");
    }
  };
  commonCache = new Map(
    parsed.map((definition) => [
      commonPrefix + definition.name,
      { ...definition, name: commonPrefix + definition.name, expression: rename(definition.expression) },
    ]),
  );
  return commonCache;
}

interface ParsedGrammar {
  definitions: Definition[];
  /** Local name → the common terminal it imports. */
  imports: Map<string, { name: string; line: number }>;
}

/** Splits the grammar into statements (a line continues when the next one starts with `|`). */
function parseStatements(text: string): ParsedGrammar {
  const tokens = tokenize(text);
  // For each position, the next token that is not a newline (one pass from the end: linear).
  const nextContent: (Token | undefined)[] = new Array<Token | undefined>(tokens.length + 1);
  for (let index = tokens.length - 1; index >= 0; index--) {
    const token = tokens[index];
    nextContent[index] = token?.kind === "newline" ? nextContent[index + 1] : token;
  }
  const statements: Token[][] = [];
  let current: Token[] = [];
  tokens.forEach((token, index) => {
    if (token.kind !== "newline") {
      current.push(token);
      return;
    }
    const next = nextContent[index + 1];
    if (next?.kind === "symbol" && next.text === "|") return;
    if (current.length > 0) statements.push(current);
    current = [];
  });
  if (current.length > 0) statements.push(current);

  const definitions: Definition[] = [];
  const imports = new Map<string, { name: string; line: number }>();
  for (const statement of statements) {
    const first = statement[0];
    if (first === undefined) continue;
    if (first.kind === "directive") {
      parseDirective(first.text, statement.slice(1), first.line, imports);
      continue;
    }
    definitions.push(new StatementParser(statement, first.line).parseDefinition());
  }
  return { definitions, imports };
}

function parseDirective(
  directive: string,
  rest: Token[],
  line: number,
  imports: Map<string, { name: string; line: number }>,
): void {
  if (directive !== "%import") {
    throw new LarkError(
      "unsupported",
      directive === "%ignore"
        ? `%ignore is not supported (line ${line}): write the whitespace into the rules`
        : `the directive ${directive} is not supported (line ${line})`,
    );
  }
  const words = rest.map((token) =>
    token.kind === "name" || token.kind === "symbol" ? token.text : `<${token.kind}>`,
  );
  const [module, separator, ...names] = words;
  if (module !== "common") {
    throw new LarkError(
      "unsupported",
      `%import from '${words.join("")}' is not supported (line ${line}): only Lark's common terminals (%import common.NAME)`,
    );
  }
  const known = commonTerminals();
  const add = (name: string, alias: string) => {
    if (!known.has(commonPrefix + name))
      throw new LarkError("invalid", `common has no terminal '${name}' (line ${line})`);
    imports.set(alias, { name: commonPrefix + name, line });
  };
  if (separator === "." && names.length === 1 && names[0] !== undefined) add(names[0], names[0]);
  else if (separator === "." && names.length === 3 && names[1] === "->" && names[0] && names[2])
    add(names[0], names[2]);
  else if (separator === "(" && names.at(-1) === ")") {
    const list = names.slice(0, -1).filter((name) => name !== ",");
    if (list.length === 0) throw new LarkError("invalid", `an empty %import list (line ${line})`);
    for (const name of list) add(name, name);
  } else {
    throw new LarkError("invalid", `a malformed %import (line ${line})`);
  }
}

const isTerminalName = (name: string): boolean => {
  const letters = (name.startsWith(commonPrefix) ? name.slice(commonPrefix.length) : name).replace(/^_+/, "");
  return letters !== "" && letters === letters.toUpperCase() && /[A-Z]/.test(letters);
};

/** Converts a Lark grammar to a complete GBNF grammar whose `root` is the grammar's `start`. Throws LarkError. */
export function larkToGbnf(definition: string): string {
  if (definition.length > maxLarkDefinitionCharacters) {
    throw new LarkError(
      "too-large",
      `the grammar has ${definition.length} characters; at most ${maxLarkDefinitionCharacters} are supported`,
    );
  }
  const parsed = parseStatements(definition);
  const rules = new Map<string, Definition>();
  for (const entry of parsed.definitions) {
    if (rules.has(entry.name) || parsed.imports.has(entry.name))
      throw new LarkError("invalid", `'${entry.name}' is defined twice (line ${entry.line})`);
    rules.set(entry.name, entry);
  }
  for (const [alias, imported] of parsed.imports) {
    rules.set(alias, {
      name: alias,
      expression: { kind: "name", name: imported.name, line: imported.line },
      line: imported.line,
    });
  }
  for (const [name, common] of commonTerminals()) rules.set(name, common);
  if (!rules.has("start")) throw new LarkError("invalid", "the grammar has no 'start' rule");

  // Reachable definitions from start; undefined names and terminals referencing rules are invalid.
  const reachable: string[] = [];
  const seen = new Set<string>(["start"]);
  const pending = ["start"];
  while (pending.length > 0) {
    const name = pending.pop() ?? "";
    reachable.push(name);
    const entry = rules.get(name);
    if (entry === undefined) continue;
    for (const reference of references(entry.expression)) {
      if (!rules.has(reference.name))
        throw new LarkError(
          "invalid",
          `'${reference.name}' is used but never defined (line ${reference.line})`,
        );
      if (isTerminalName(name) && !isTerminalName(reference.name))
        throw new LarkError(
          "invalid",
          `the terminal '${name}' references the rule '${reference.name}' (line ${reference.line}): terminals may only use terminals`,
        );
      if (!seen.has(reference.name)) {
        seen.add(reference.name);
        pending.push(reference.name);
      }
    }
  }
  assertNoLeftRecursion(rules, reachable);
  const size = reachable.reduce((total, name) => {
    const entry = rules.get(name);
    return Math.min(
      Number.MAX_SAFE_INTEGER,
      total + (entry === undefined ? 0 : expandedSize(entry.expression)),
    );
  }, 0);
  if (size > maxLarkExpandedSize) {
    throw new LarkError(
      "too-large",
      `the grammar expands to about ${size} elements once counted repetition is unrolled; at most ${maxLarkExpandedSize} are supported`,
    );
  }

  const lines = ["root ::= " + gbnfName("start")];
  for (const name of reachable) {
    const entry = rules.get(name);
    if (entry !== undefined) lines.push(`${gbnfName(name)} ::= ${emit(entry.expression)}`);
  }
  const gbnf = lines.join("\n") + "\n";
  if (gbnf.length > maxLarkGbnfCharacters) {
    throw new LarkError(
      "too-large",
      `the grammar converts to ${gbnf.length} characters of GBNF; at most ${maxLarkGbnfCharacters} are supported`,
    );
  }
  return gbnf;
}

/** A custom tool's grammar format → a complete GBNF grammar (root `root`). Throws LarkError / RegexError. */
export function customToolGrammarToGbnf(syntax: "lark" | "regex", definition: string): string {
  switch (syntax) {
    case "lark":
      return larkToGbnf(definition);
    case "regex":
      return `root ::= ${regexToGbnf(parseRegex(definition, { match: "whole" }), { target: "text" })}\n`;
    default:
      return assertNever(syntax, "grammar syntax");
  }
}

function gbnfName(name: string): string {
  // GBNF names are [a-zA-Z0-9-]; Lark names never contain '-', so the mapping is one to one.
  return `l-${name.replace(/_/g, "-")}`;
}

/** Grammar elements an expression expands to with counted repetition unrolled (references count 1). */
function expandedSize(expression: Expression): number {
  switch (expression.kind) {
    case "literal":
      return Math.max(1, expression.text.length);
    case "range":
    case "name":
      return 1;
    case "regex":
      return expression.states;
    case "sequence":
      return expression.items.reduce((total, item) => total + expandedSize(item), 0);
    case "alternatives":
      return expression.options.reduce((total, option) => total + expandedSize(option), 0);
    case "repeat":
      return expandedSize(expression.item) * Math.max(1, expression.max ?? expression.min);
    default:
      return assertNever(expression, "Lark expression");
  }
}

function references(expression: Expression): { name: string; line: number }[] {
  switch (expression.kind) {
    case "name":
      return [{ name: expression.name, line: expression.line }];
    case "sequence":
      return expression.items.flatMap(references);
    case "alternatives":
      return expression.options.flatMap(references);
    case "repeat":
      return references(expression.item);
    case "literal":
    case "range":
    case "regex":
      return [];
    default:
      return assertNever(expression, "Lark expression");
  }
}

function emit(expression: Expression): string {
  switch (expression.kind) {
    case "literal":
      if (!expression.caseInsensitive) return gbnfLiteral(expression.text);
      return expression.text === ""
        ? '""'
        : [...expression.text]
            .map((character) => {
              const lower = character.toLowerCase();
              const upper = character.toUpperCase();
              return lower === upper || [...lower].length !== 1 || [...upper].length !== 1
                ? gbnfLiteral(character)
                : `(${gbnfLiteral(lower)} | ${gbnfLiteral(upper)})`;
            })
            .join(" ");
    case "range":
      return characterSetToGbnf([[expression.from, expression.to]], "text");
    case "regex":
      return `(${expression.gbnf})`;
    case "name":
      return gbnfName(expression.name);
    case "sequence":
      return expression.items.length === 0 ? '""' : expression.items.map(emit).join(" ");
    case "alternatives":
      return `(${expression.options.map(emit).join(" | ")})`;
    case "repeat": {
      const item = `(${emit(expression.item)})`;
      const { min, max } = expression;
      if (max === undefined) return min === 0 ? `${item}*` : min === 1 ? `${item}+` : `${item}{${min},}`;
      if (min === 0 && max === 1) return `${item}?`;
      if (max === 0) return '""';
      return min === max ? `${item}{${min}}` : `${item}{${min},${max}}`;
    }
    default:
      return assertNever(expression, "Lark expression");
  }
}

/**
 * llama.cpp's grammar engine refuses left recursion (`expr: expr "+" term`): find it first, so the client
 * gets a 400 naming the rule. A rule is left-recursive when it can reach itself without consuming a
 * character (through references at the start of a sequence whose earlier items can be empty).
 */
function assertNoLeftRecursion(rules: Map<string, Definition>, names: readonly string[]): void {
  const nullable = new Set<string>();
  const canBeEmpty = (expression: Expression): boolean => {
    switch (expression.kind) {
      case "literal":
        return expression.text === "";
      case "range":
        return false;
      case "regex":
        return false;
      case "name":
        return nullable.has(expression.name);
      case "sequence":
        return expression.items.every(canBeEmpty);
      case "alternatives":
        return expression.options.some(canBeEmpty);
      case "repeat":
        return expression.min === 0 || canBeEmpty(expression.item);
      default:
        return assertNever(expression, "Lark expression");
    }
  };
  for (let changed = true; changed;) {
    changed = false;
    for (const name of names) {
      const entry = rules.get(name);
      if (entry !== undefined && !nullable.has(name) && canBeEmpty(entry.expression)) {
        nullable.add(name);
        changed = true;
      }
    }
  }
  const leftmost = (expression: Expression): string[] => {
    switch (expression.kind) {
      case "literal":
      case "range":
      case "regex":
        return [];
      case "name":
        return [expression.name];
      case "sequence": {
        const found: string[] = [];
        for (const item of expression.items) {
          found.push(...leftmost(item));
          if (!canBeEmpty(item)) break;
        }
        return found;
      }
      case "alternatives":
        return expression.options.flatMap(leftmost);
      case "repeat":
        return leftmost(expression.item);
      default:
        return assertNever(expression, "Lark expression");
    }
  };
  const edges = new Map(names.map((name) => [name, leftmost(rules.get(name)?.expression ?? emptySequence)]));
  // Depth-first with an explicit stack (no recursion: a long chain of rules cannot overflow the stack).
  const state = new Map<string, "visiting" | "done">();
  for (const root of names) {
    if (state.has(root)) continue;
    const path: string[] = [root];
    const pending: string[][] = [[...(edges.get(root) ?? [])]];
    state.set(root, "visiting");
    while (path.length > 0) {
      const next = pending.at(-1)?.pop();
      if (next === undefined) {
        state.set(path.pop() ?? "", "done");
        pending.pop();
        continue;
      }
      const current = state.get(next);
      if (current === "done") continue;
      if (current === "visiting") {
        const cycle = [...path.slice(path.indexOf(next)), next].map(displayName);
        throw new LarkError(
          "unsupported",
          `left recursion (${cycle.join(" → ")}) is not supported: write the repetition with '*' or '+' instead`,
        );
      }
      state.set(next, "visiting");
      path.push(next);
      pending.push([...(edges.get(next) ?? [])]);
    }
  }
}

const emptySequence: Expression = { kind: "sequence", items: [] };

function displayName(name: string): string {
  return name.startsWith(commonPrefix) ? `common.${name.slice(commonPrefix.length)}` : name;
}
