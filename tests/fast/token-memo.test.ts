/**
 * memoizingTokenizer over a stand-in tokenizer that counts its calls: long plain texts are tokenized once
 * per leading-space option, short texts and special-token parsing always reach the tokenizer, the
 * characters held stay under the bound (least recently used out first), and callers get copies.
 */
import type { Token, Tokenizer } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import { memoizingTokenizer } from "../../src/engine/llama/token-memo.js";

/** One token per character (its code), minus the first when trimming a leading space; counts calls. */
function standIn(): { tokenizer: Tokenizer; calls: string[] } {
  const calls: string[] = [];
  const tokenize = (text: string, specialTokens?: boolean | "builtin", options?: "trimLeadingSpace") => {
    calls.push(`${String(specialTokens)}:${options ?? ""}:${text.length}`);
    const tokens = [...text].map((character) => character.codePointAt(0) as Token);
    return options === "trimLeadingSpace" && text.startsWith(" ") ? tokens.slice(1) : tokens;
  };
  const tokenizer = Object.assign(tokenize, {
    detokenize: (tokens: readonly Token[]) => String.fromCodePoint(...tokens),
    isSpecialToken: () => false,
    isEogToken: (token: Token) => token === 0,
  }) as unknown as Tokenizer;
  return { tokenizer, calls };
}

const long = (letter: string, length = 300) => letter.repeat(length);

describe("memoizingTokenizer", () => {
  it("tokenizes a long plain text once, and gives the same tokens as the tokenizer", () => {
    const { tokenizer, calls } = standIn();
    const memo = memoizingTokenizer(tokenizer);
    const text = ` ${long("a")}`;
    const first = memo(text, false);
    const second = memo(text, false);
    expect(second).toEqual(tokenizer(text, false));
    expect(first).toEqual(second);
    expect(calls.filter((call) => call.startsWith("false::"))).toHaveLength(2); // memo's one + the check's
    // The leading-space option is part of the key.
    expect(memo(text, false, "trimLeadingSpace")).toEqual(tokenizer(text, false, "trimLeadingSpace"));
    expect(memo(text, false, "trimLeadingSpace")).toHaveLength(300);
    expect(calls.filter((call) => call.startsWith("false:trimLeadingSpace:"))).toHaveLength(2);
    expect(memo.isEogToken(0 as Token)).toBe(true);
    expect(memo.detokenize([104, 105] as Token[])).toBe("hi");
  });

  it("always tokenizes short texts and texts with special tokens", () => {
    const { tokenizer, calls } = standIn();
    const memo = memoizingTokenizer(tokenizer, { minCharacters: 256 });
    memo("short", false);
    memo("short", false);
    memo(long("b"), true);
    memo(long("b"), true);
    expect(calls).toEqual(["false::5", "false::5", "true::300", "true::300"]);
  });

  it("keeps the texts held under the bound, least recently used out first", () => {
    const { tokenizer, calls } = standIn();
    const memo = memoizingTokenizer(tokenizer, { minCharacters: 10, maxCharacters: 1000 });
    memo(long("a"), false);
    memo(long("b"), false);
    memo(long("c"), false);
    memo(long("a"), false); // a hit: "a" is now the most recently used
    memo(long("d"), false); // 1,200 characters: "b", the least recently used, goes
    calls.length = 0;
    memo(long("a"), false);
    memo(long("c"), false);
    memo(long("d"), false);
    expect(calls).toEqual([]);
    memo(long("b"), false);
    expect(calls).toEqual(["false::300"]);
    // A text longer than the bound is never held.
    calls.length = 0;
    memo(long("e", 2000), false);
    memo(long("e", 2000), false);
    expect(calls).toEqual(["false::2000", "false::2000"]);
  });

  it("orders recency by text across both leading-space options", () => {
    const { tokenizer, calls } = standIn();
    const memo = memoizingTokenizer(tokenizer, { minCharacters: 10, maxCharacters: 1000 });
    memo(long("a"), false, "trimLeadingSpace");
    memo(long("b"), false);
    memo(long("c"), false, "trimLeadingSpace");
    memo(long("b"), false); // "b" (plain) is now the most recently used; "a" (trimmed) the least
    memo(long("d"), false, "trimLeadingSpace"); // over the bound: "a" goes
    calls.length = 0;
    memo(long("b"), false);
    memo(long("c"), false, "trimLeadingSpace");
    memo(long("d"), false, "trimLeadingSpace");
    expect(calls).toEqual([]);
    // One text, both options: held once, each option tokenized once.
    memo(long("b"), false, "trimLeadingSpace");
    memo(long("b"), false, "trimLeadingSpace");
    expect(calls).toEqual(["false:trimLeadingSpace:300"]);
  });

  it("keeps a copy of a sliced text, equal to it", () => {
    const { tokenizer } = standIn();
    const memo = memoizingTokenizer(tokenizer, { minCharacters: 10 });
    const parent = `${long("p", 100_000)}\ud800 lone surrogate ${long("q")}`;
    const slice = parent.slice(99_990);
    expect(memo(slice, false)).toEqual(tokenizer(slice, false));
    expect(memo(parent.slice(99_990), false)).toEqual(tokenizer(slice, false));
  });

  it("hands out copies: a caller changing its tokens does not change what others get", () => {
    const { tokenizer } = standIn();
    const memo = memoizingTokenizer(tokenizer);
    const text = long("z");
    const first = memo(text, false);
    first.length = 0;
    const second = memo(text, false);
    second.push(1 as Token);
    expect(memo(text, false)).toHaveLength(300);
  });
});
