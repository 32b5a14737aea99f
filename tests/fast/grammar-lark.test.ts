/**
 * The Lark → GBNF converter (src/engine/llama/grammar/lark.ts) and custom tools' regex grammars,
 * table-driven with no model: each grammar's GBNF generates exactly the strings an independent oracle (a
 * hand-written RegExp, or the hand-written apply_patch recognizer) accepts, on listed candidates and on
 * strings sampled from the GBNF; Codex's apply_patch grammar converts and its examples match; what cannot
 * be converted is a LarkError naming the construct.
 */
import { describe, expect, it } from "vitest";
import { customToolGrammarToGbnf, LarkError, larkToGbnf } from "../../src/engine/llama/grammar/lark.js";
import { RegexError } from "../../src/engine/llama/grammar/regex.js";
import {
  codexApplyPatchGrammar,
  isApplyPatchPrefix,
  isApplyPatchSentence,
} from "../helpers/apply-patch-grammar.js";
import { matchesGbnf, parseGbnf, sampleGbnf, seededRandom } from "../helpers/gbnf.js";

interface Case {
  name: string;
  lark: string;
  /** The same language as a JavaScript RegExp (whole string), written by hand. */
  oracle: RegExp;
  candidates: string[];
}

const cases: Case[] = [
  {
    name: "string literals and a sequence",
    lark: 'start: "hello" " " "world"',
    oracle: /^hello world$/,
    candidates: ["hello world", "hello  world", "helloworld", ""],
  },
  {
    name: "alternatives, groups and ? * +",
    lark: 'start: ("a" | "b")+ "c"? "d"*',
    oracle: /^[ab]+c?d*$/,
    candidates: ["a", "abba", "abc", "abcddd", "c", "ad", "abcc", ""],
  },
  {
    name: "continuation lines with | and an alias",
    lark: 'start: greeting\ngreeting: "hi" -> short\n    | "hello" -> long\n',
    oracle: /^(hi|hello)$/,
    candidates: ["hi", "hello", "hey", "hihello"],
  },
  {
    name: "optional [ ] and counted repetition ~",
    lark: 'start: ["-"] DIGIT ~ 2..3 ("." DIGIT ~ 2)?\nDIGIT: "0".."9"',
    oracle: /^-?[0-9]{2,3}(\.[0-9]{2})?$/,
    candidates: ["12", "-123", "12.34", "1", "1234", "12.3", "--12"],
  },
  {
    name: "regex terminals match whole tokens",
    lark: 'start: WORD ("," WORD)*\nWORD: /[a-z]+/',
    oracle: /^[a-z]+(,[a-z]+)*$/,
    candidates: ["abc", "a,bc", "a,", ",a", "A", "a,b,c"],
  },
  {
    name: "rules and terminals, with ?rule and !rule modifiers and priorities",
    lark: '?start: pair\n!pair: KEY "=" value\nvalue: NUM | KEY\nKEY.2: /[a-z]+/\nNUM: /[0-9]+/',
    oracle: /^[a-z]+=([0-9]+|[a-z]+)$/,
    candidates: ["a=1", "key=value", "a=", "=1", "a=1b"],
  },
  {
    name: "case-insensitive literals and // comments",
    lark: '// a comment\nstart: "yes"i | "no" // another\n',
    oracle: /^([yY][eE][sS]|no)$/,
    candidates: ["yes", "YeS", "no", "NO", "y"],
  },
  {
    name: "common terminals: INT, WS, WORD",
    lark: "start: INT (WS WORD)*\n%import common.INT\n%import common (WS, WORD)",
    oracle: /^[0-9]+([ \t\f\r\n]+[a-zA-Z]+)*$/,
    candidates: ["12", "12 abc", "12 \n Ab cd", "a", "12 ", "12 a1"],
  },
  {
    name: "common terminals: SIGNED_NUMBER and CNAME, imported with an alias",
    lark: 'start: NAME "=" SIGNED_NUMBER\n%import common.CNAME -> NAME\n%import common.SIGNED_NUMBER',
    oracle:
      /^[_a-zA-Z][_a-zA-Z0-9]*=[+-]?([0-9]+[eE][+-]?[0-9]+|([0-9]+\.[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[0-9]+)$/,
    candidates: ["x=1", "_a1=-2.5", "x=1e5", "x=.5", "1x=1", "x=", "x=1.2.3", "x=+3E-2"],
  },
  {
    name: "common terminals: ESCAPED_STRING and NEWLINE",
    lark: "start: (ESCAPED_STRING NEWLINE)+\n%import common.ESCAPED_STRING\n%import common.NEWLINE",
    oracle: /^("([^"\\\n]|\\[^\n])*"(\r?\n)+)+$/,
    candidates: ['"a"\n', '"a\\"b"\n\n"c"\r\n', '"a\n', '"a"', '"a\\"\n'],
  },
  {
    name: "string escapes",
    lark: 'start: "tab\\there" "\\n" "\\x41\\u00e9"',
    oracle: /^tab\there\nAé$/,
    candidates: ["tab\there\nAé", "tab\\there\nAé"],
  },
];

describe("Lark → GBNF", () => {
  for (const testCase of cases) {
    it(testCase.name, () => {
      const grammar = parseGbnf(larkToGbnf(testCase.lark));
      for (const candidate of testCase.candidates) {
        expect(matchesGbnf(grammar, candidate), JSON.stringify(candidate)).toBe(
          testCase.oracle.test(candidate),
        );
      }
      const random = seededRandom(7);
      for (let sample = 0; sample < 40; sample++) {
        const text = sampleGbnf(grammar, random);
        expect(testCase.oracle.test(text), JSON.stringify(text)).toBe(true);
      }
    });
  }

  it("converts Codex's apply_patch grammar: its sentences match, non-patches do not, samples are patches", () => {
    const grammar = parseGbnf(larkToGbnf(codexApplyPatchGrammar));
    const candidates = [
      "*** Begin Patch\n*** Add File: hello.txt\n+Hello world\n*** End Patch\n",
      "*** Begin Patch\n*** Add File: a.txt\n+one\n+\n*** End Patch",
      "*** Begin Patch\n*** Delete File: old.txt\n*** End Patch\n",
      "*** Begin Patch\n*** Update File: src/app.py\n*** Move to: src/main.py\n@@ def greet():\n context\n-old\n+new\n*** End of File\n*** End Patch\n",
      "*** Begin Patch\n*** Update File: x\n*** End Patch\n",
      "*** Begin Patch\n*** End Patch\n",
      "*** Begin Patch\n*** Add File: a.txt\n*** End Patch\n",
      "*** Add File: a.txt\n+x\n*** End Patch\n",
      "*** Begin Patch\n*** Add File: a.txt\n+x\n*** End Patch\n\n",
      "*** Begin Patch\n*** Add File: \n+x\n*** End Patch\n",
    ];
    for (const candidate of candidates) {
      expect(matchesGbnf(grammar, candidate), JSON.stringify(candidate)).toBe(
        isApplyPatchSentence(candidate),
      );
    }
    expect(candidates.filter(isApplyPatchSentence)).toHaveLength(5);
    const random = seededRandom(3);
    for (let sample = 0; sample < 40; sample++) {
      const text = sampleGbnf(grammar, random);
      expect(isApplyPatchSentence(text), JSON.stringify(text)).toBe(true);
      // The test helper the real-model test uses for cut generations: every prefix of a sentence is viable.
      for (let length = 0; length <= text.length; length += 7)
        expect(isApplyPatchPrefix(text.slice(0, length)), JSON.stringify(text.slice(0, length))).toBe(true);
    }
    expect(isApplyPatchPrefix("*** Begin Patch\nhello")).toBe(false);
    expect(isApplyPatchPrefix("*** Begin Patch\n*** Add File: a\n*** End")).toBe(false);
  });

  const refused: { lark: string; kind: LarkError["kind"]; message: RegExp }[] = [
    { lark: 'start: "a"\n%ignore " "', kind: "unsupported", message: /%ignore is not supported/ },
    { lark: 'start: "a"\n%declare X', kind: "unsupported", message: /directive %declare/ },
    { lark: "start: X\n%import mymodule.X", kind: "unsupported", message: /only Lark's common terminals/ },
    { lark: "start: X\n%import common.NOPE", kind: "invalid", message: /common has no terminal 'NOPE'/ },
    { lark: "start: /a/i", kind: "unsupported", message: /flags/ },
    { lark: "start: /(?=a)a/", kind: "unsupported", message: /\/\(\?=a\)a\// },
    { lark: 'start: list{"a"}', kind: "unsupported", message: /templates/ },
    {
      lark: 'start: expr\nexpr: expr "+" "1" | "1"',
      kind: "unsupported",
      message: /left recursion \(expr → expr\)/,
    },
    { lark: 'start: a\na: b? a "x" | "y"\nb: "b"', kind: "unsupported", message: /left recursion/ },
    { lark: 'rule: "a"', kind: "invalid", message: /no 'start' rule/ },
    { lark: "start: missing", kind: "invalid", message: /'missing' is used but never defined \(line 1\)/ },
    { lark: 'start: A\nA: b\nb: "x"', kind: "invalid", message: /terminal 'A' references the rule 'b'/ },
    { lark: 'start: "a"\nstart: "b"', kind: "invalid", message: /defined twice \(line 2\)/ },
    { lark: 'start: "abc', kind: "invalid", message: /never closed/ },
    { lark: 'start: ("a"', kind: "invalid", message: /expected '\)'/ },
    { lark: 'start: "ab".."z"', kind: "invalid", message: /one character on each side/ },
    { lark: 'start: "a" ~ 5000', kind: "too-large", message: /above 1000/ },
    { lark: 'start: ("a" ~ 1000) ~ 1000', kind: "too-large", message: /expands to about 1000000 elements/ },
    { lark: "start: /[a-z]{0,9000}/ /[a-z]{0,9000}/ /[a-z]{0,9000}/", kind: "too-large", message: /expands/ },
    {
      lark: `start: ${"(".repeat(100)}"a"${")".repeat(100)}`,
      kind: "too-large",
      message: /nest more than 64/,
    },
  ];
  for (const { lark, kind, message } of refused) {
    it(`refuses ${JSON.stringify(lark)}`, () => {
      let caught: unknown;
      try {
        larkToGbnf(lark);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(LarkError);
      expect((caught as LarkError).kind).toBe(kind);
      expect((caught as LarkError).message).toMatch(message);
    });
  }
});

describe("hostile Lark grammars are quick", () => {
  it("100,000 characters of blank lines, and a chain of 5,000 rules, convert or fail in well under a second", () => {
    const started = performance.now();
    expect(() => larkToGbnf(`start: "a"${"\n".repeat(99_000)}`)).not.toThrow();
    const chain = Array.from({ length: 5_000 }, (_, index) => `r${index}: r${index + 1} "x"`).join("\n");
    const gbnf = larkToGbnf(`start: r0\n${chain}\nr5000: "end"`);
    expect(gbnf).toContain('l-r4999 ::= l-r5000 "x"');
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});

describe("custom tools' regex grammars", () => {
  const regexCases: { pattern: string; oracle: RegExp; candidates: string[] }[] = [
    {
      pattern: "[0-9]{3}-[0-9]{4}",
      oracle: /^[0-9]{3}-[0-9]{4}$/,
      candidates: ["555-1234", "x555-1234", "555-12345"],
    },
    { pattern: "(yes|no)", oracle: /^(yes|no)$/, candidates: ["yes", "no", "yesno", "maybe"] },
    { pattern: "^hello .+$", oracle: /^hello .+$/, candidates: ["hello you", "hello ", "say hello you"] },
    { pattern: "[a-z]+( [a-z]+)*\\.", oracle: /^[a-z]+( [a-z]+)*\.$/, candidates: ["a b.", "a b", "A b."] },
  ];
  for (const { pattern, oracle, candidates } of regexCases) {
    it(`matches the whole input: /${pattern}/`, () => {
      const grammar = parseGbnf(customToolGrammarToGbnf("regex", pattern));
      for (const candidate of candidates)
        expect(matchesGbnf(grammar, candidate), candidate).toBe(oracle.test(candidate));
      const random = seededRandom(11);
      for (let sample = 0; sample < 30; sample++) {
        const text = sampleGbnf(grammar, random);
        expect(oracle.test(text), JSON.stringify(text)).toBe(true);
      }
    });
  }

  it("refuses what regex.ts refuses, naming it", () => {
    expect(() => customToolGrammarToGbnf("regex", "a(?<=b)")).toThrow(RegexError);
    expect(() => customToolGrammarToGbnf("regex", "(a")).toThrow(/unterminated group/);
  });
});
