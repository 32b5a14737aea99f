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
  // One map per leading-space option; insertion order is recency (a hit moves its entry to the end).
  const memos = { plain: new Map<string, readonly Token[]>(), trimmed: new Map<string, readonly Token[]>() };
  let characters = 0;

  const evict = () => {
    for (const memo of [memos.plain, memos.trimmed]) {
      for (const text of memo.keys()) {
        if (characters <= maxCharacters) return;
        memo.delete(text);
        characters -= text.length;
      }
    }
  };

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
    const memo = tokenizeOptions === "trimLeadingSpace" ? memos.trimmed : memos.plain;
    const known = memo.get(text);
    if (known !== undefined) {
      memo.delete(text);
      memo.set(text, known);
      return known.slice();
    }
    const tokens = tokenizer(text, false, tokenizeOptions);
    memo.set(text, tokens.slice());
    characters += text.length;
    evict();
    return tokens;
  }

  return Object.assign(tokenize, {
    detokenize: tokenizer.detokenize,
    isSpecialToken: (token: Token) => tokenizer.isSpecialToken(token),
    isEogToken: (token: Token) => tokenizer.isEogToken(token),
  }) as Tokenizer;
}
