/**
 * The regex module (src/engine/llama/grammar/regex.ts), table-driven: the parser accepts the JSON Schema
 * subset and names what it refuses; the linear matcher agrees with V8's RegExp (u flag) on every case (the
 * patterns here are the tests' own, so running them through RegExp is safe) and stays linear on the
 * catastrophic-backtracking case; the GBNF emitter generates only matching strings (sampled from the
 * grammar, raw text and inside a JSON string) and rejects non-matching ones.
 */
import { describe, expect, it } from "vitest";
import {
  compileRegex,
  matchRegex,
  maxRegexStates,
  parseRegex,
  RegexError,
  regexToGbnf,
} from "../../src/engine/llama/grammar/regex.js";
import { matchesGbnf, parseGbnf, sampleGbnf, seededRandom } from "../helpers/gbnf.js";

const cases: { pattern: string; candidates: string[] }[] = [
  { pattern: "^abc$", candidates: ["abc", "abcd", "xabc", "", "ABC"] },
  { pattern: "abc", candidates: ["abc", "xxabcxx", "ab", "a b c"] },
  { pattern: "^a", candidates: ["a", "ab", "ba", ""] },
  { pattern: "b$", candidates: ["b", "ab", "ba", ""] },
  { pattern: "^(red|green|blue)$", candidates: ["red", "green", "blue", "redgreen", "gree", ""] },
  { pattern: "^a|b$", candidates: ["ax", "xb", "xa", "bx", "a", "b"] },
  {
    pattern: "^[a-z]+@[a-z]+\\.(com|org)$",
    candidates: ["a@b.com", "ab@cd.org", "a@b.net", "@b.com", "A@b.com"],
  },
  { pattern: "^\\d{3}-\\d{4}$", candidates: ["555-1234", "55-1234", "5555-1234", "abc-defg", "555-12345"] },
  { pattern: "^[^0-9\\s]*$", candidates: ["abc", "a b", "a1", "", "é!"] },
  { pattern: "^\\w+\\s\\w+$", candidates: ["hello world", "hello  world", "hello\tworld", "hi"] },
  { pattern: "^x{2,4}$", candidates: ["x", "xx", "xxx", "xxxx", "xxxxx"] },
  { pattern: "^x{2,}$", candidates: ["x", "xx", "xxxxxxxx"] },
  { pattern: "^(ab)?c*$", candidates: ["", "ab", "abccc", "ccc", "abab", "ac"] },
  { pattern: "^(?:a|bc)+$", candidates: ["a", "bc", "abca", "b", "", "abcb"] },
  { pattern: "^.$", candidates: ["a", "\n", "ab", "", "😀", "\u2028"] },
  { pattern: "^[\\u0041-\\u0043\\x61]$", candidates: ["A", "C", "a", "D", "b"] },
  { pattern: "^\\u{1F600}$", candidates: ["😀", "😁", ""] },
  { pattern: '^["\\\\/]+$', candidates: ['"', "\\", "/", '"\\/', "a"] },
  { pattern: "^\\n\\t\\r?$", candidates: ["\n\t", "\n\t\r", "\n", "nt"] },
  { pattern: "^[-a]+$", candidates: ["-", "a-a", "b"] },
  { pattern: "^\\$\\^\\.\\*$", candidates: ["$^.*", "$^a*"] },
  { pattern: "^[\\d.]+$", candidates: ["1.5", "12", "a", ""] },
  { pattern: "^a*?b+?$", candidates: ["b", "aab", "a", "abb"] },
  { pattern: "^(a+)+$", candidates: ["aaaa", "aaaa!", ""] },
  { pattern: "", candidates: ["", "anything"] },
  { pattern: "^$", candidates: ["", "x"] },
  { pattern: "^[^]$", candidates: ["x", "\n", ""] },
  { pattern: "^\\cJ$", candidates: ["\n", "J"] },
];

describe("parseRegex + matchRegex", () => {
  it.each(cases)("$pattern agrees with RegExp(u) on every candidate", ({ pattern, candidates }) => {
    const compiled = compileRegex(parseRegex(pattern));
    const native = new RegExp(pattern, "u");
    for (const candidate of candidates) {
      expect([candidate, matchRegex(compiled, candidate)]).toEqual([candidate, native.test(candidate)]);
    }
  });

  it("stays linear where a backtracking engine is exponential (^(a+)+$ on 30 a's and a '!')", () => {
    const regex = parseRegex("^(a+)+$");
    const started = performance.now();
    expect(matchRegex(regex, `${"a".repeat(30)}!`)).toBe(false);
    expect(matchRegex(regex, `${"a".repeat(100_000)}!`)).toBe(false);
    expect(matchRegex(regex, "a".repeat(100_000))).toBe(true);
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it.each([
    { pattern: "^(?=a)a$", construct: "lookahead" },
    { pattern: "^(?!a)b$", construct: "lookahead" },
    { pattern: "(?<=a)b", construct: "lookbehind" },
    { pattern: "(?<!a)b", construct: "lookbehind" },
    { pattern: "^(a)\\1$", construct: "backreference" },
    { pattern: "^(?<name>a)$", construct: "named group" },
    { pattern: "\\bword\\b", construct: "word boundary" },
    { pattern: "^\\p{L}+$", construct: "Unicode property" },
    { pattern: "a^b", construct: "anchor '^'" },
    { pattern: "a$b", construct: "anchor '$'" },
    { pattern: "(^a)", construct: "anchor '^'" },
  ])("refuses $pattern as unsupported, naming the $construct", ({ pattern, construct }) => {
    const error = captureError(() => parseRegex(pattern));
    expect(error).toBeInstanceOf(RegexError);
    expect(error?.kind).toBe("unsupported");
    expect(error?.message).toContain(construct);
  });

  it.each(["(a", "a)", "[a", "*a", "a**", "a{2", "\\", "[z-a]", "\\q"])(
    "refuses %s as invalid",
    (pattern) => {
      const error = captureError(() => parseRegex(pattern));
      expect(error?.kind).toBe("invalid");
      // V8 agrees that these are not patterns (with the u flag).
      expect(() => new RegExp(pattern, "u")).toThrow();
    },
  );

  it(`refuses counted repetition that expands beyond ${maxRegexStates} states`, () => {
    expect(captureError(() => parseRegex("^(a{1000}){1000}$"))?.kind).toBe("too-large");
    expect(captureError(() => parseRegex("^a{99999}$"))?.kind).toBe("too-large");
    expect(parseRegex("^(a{10}){10}$").source).toBe("^(a{10}){10}$");
  });
});

describe("regexToGbnf", () => {
  it.each(cases.filter(({ pattern }) => pattern !== "^[^]$"))(
    "$pattern: every string sampled from the grammar matches; candidates are accepted exactly when they match",
    ({ pattern, candidates }) => {
      const regex = parseRegex(pattern);
      const native = new RegExp(pattern, "u");
      const text = parseGbnf(`root ::= ${regexToGbnf(regex, { target: "text" })}`);
      const json = parseGbnf(`root ::= "\\"" ${regexToGbnf(regex, { target: "json-string" })} "\\""`);
      const random = seededRandom(pattern.length + 7);
      for (let sample = 0; sample < 25; sample++) {
        const raw = sampleGbnf(text, random);
        expect([raw, native.test(raw)]).toEqual([raw, true]);
        const encoded = sampleGbnf(json, random);
        const decoded = JSON.parse(encoded) as string;
        expect([encoded, native.test(decoded)]).toEqual([encoded, true]);
      }
      for (const candidate of candidates) {
        expect([candidate, matchesGbnf(text, candidate)]).toEqual([candidate, native.test(candidate)]);
        const encoded = JSON.stringify(candidate);
        expect([encoded, matchesGbnf(json, encoded)]).toEqual([encoded, native.test(candidate)]);
      }
    },
  );
});

function captureError(run: () => unknown): RegexError | undefined {
  try {
    run();
  } catch (error) {
    if (error instanceof RegexError) return error;
    throw error;
  }
  return undefined;
}
