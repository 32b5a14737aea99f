/**
 * A tokenizer that remembers the tokens of long texts, for rendering prompts.
 *
 * Every request renders and tokenizes its whole prompt on the event loop (to check that it fits and to find
 * the sequence holding its prefix), although a follow-up turn repeats all of the previous one: Codex's
 * instructions and tools, then the history. node-llama-cpp's LlamaText tokenizes a prompt one text run at
 * a time (the text between two special tokens: a message, the system prompt with its tool documentation),
 * so the same run always gives the same tokens, and a follow-up only needs its new runs tokenized.
 * Measured here with Llama 2's 32,000-token vocabulary: Codex's whole request (9,379 tokens) takes ~18 ms.
 *
 * Only plain text (no special-token parsing) of at least `minCharacters` is remembered, least recently used
 * first out once the texts held exceed `maxCharacters`; callers get a copy of the tokens.
 */
import type { Token, Tokenizer } from "node-llama-cpp";

export interface TokenMemoOptions {
  /** Texts shorter than this are tokenized every time (default 256 characters). */
  minCharacters?: number;
  /** Bound on the characters of the texts remembered (default 4,000,000: tens of MB with their tokens). */
  maxCharacters?: number;
}

export function memoizingTokenizer(tokenizer: Tokenizer, options: TokenMemoOptions = {}): Tokenizer {
  const minCharacters = options.minCharacters ?? 256;
  const maxCharacters = options.maxCharacters ?? 4_000_000;
  // Text → its tokens per leading-space option; insertion order is recency (a hit moves its entry to the end).
  const memo = new Map<string, { plain?: readonly Token[]; trimmed?: readonly Token[] }>();
  let characters = 0;

  function tokenize(text: string, specialTokens?: boolean, tokenizeOptions?: "trimLeadingSpace"): Token[];
  function tokenize(text: string, specialTokens: "builtin"): Token[];
  function tokenize(
    text: string,
    specialTokens?: boolean | "builtin",
    tokenizeOptions?: "trimLeadingSpace",
  ): Token[] {
    if (specialTokens === "builtin") return tokenizer(text as Parameters<Tokenizer>[0], "builtin");
    if (specialTokens === true || text.length < minCharacters || text.length > maxCharacters)
      return tokenizer(text, specialTokens, tokenizeOptions);
    const option = tokenizeOptions === "trimLeadingSpace" ? "trimmed" : "plain";
    let entry = memo.get(text);
    if (entry !== undefined) {
      memo.delete(text);
      memo.set(text, entry);
      const known = entry[option];
      if (known !== undefined) return known.slice();
    }
    const tokens = tokenizer(text, false, tokenizeOptions);
    if (entry === undefined) {
      entry = {};
      // A copy of its own: a slice of a longer string (a screened request's) would keep all of it alive.
      memo.set(flatCopy(text), entry);
      characters += text.length;
      for (const held of memo.keys()) {
        if (characters <= maxCharacters) break;
        memo.delete(held);
        characters -= held.length;
      }
    }
    entry[option] = tokens.slice();
    return tokens;
  }

  return Object.assign(tokenize, {
    detokenize: tokenizer.detokenize,
    isSpecialToken: (token: Token) => tokenizer.isSpecialToken(token),
    isEogToken: (token: Token) => tokenizer.isEogToken(token),
  }) as Tokenizer;
}

/** A string with storage of its own (V8 keeps a slice of 13 or more characters pointing into its parent). */
function flatCopy(text: string): string {
  return Buffer.from(text, "utf16le").toString("utf16le");
}
