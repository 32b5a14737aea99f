/**
 * Raw text completion (`EngineRequest.rawPrompt`, used by `/v1/completions`): the model continues the text as
 * it is, without the chat template, through node-llama-cpp's LlamaCompletion on a sequence of the same pool
 * as chat generations. The prompt is tokenized here exactly as LlamaCompletion does (the beginning-of-text
 * token when the model wants one, then the text with its leading space trimmed) so the pool can hand out the
 * sequence sharing the longest prefix, and LlamaCompletion's own `adaptStateToTokens` then evaluates only
 * the tokens after it.
 */
import { LlamaCompletion, type LlamaContextSequence, type LlamaModel, type Token } from "node-llama-cpp";
import type { EnginePart, EngineRequest, FinishReason } from "../types.js";
import type { AsyncQueue } from "./async-queue.js";
import { finishReasonFor, generationOptions } from "./generation.js";
import type { LlamaLoadedModel } from "./loader.js";
import { contextLengthExceeded } from "./prompt.js";
import { countTokensInSlices, SCREEN_ABOVE_CHARACTERS } from "./prompt-size.js";

/** The prompt tokens LlamaCompletion evaluates for `text` (its beginning-of-text token included). */
export function rawPromptTokens(model: LlamaModel, text: string): { all: Token[]; text: Token[] } {
  const bos = model.tokens.shouldPrependBosToken ? model.tokens.bos : null;
  const textTokens =
    bos === null ? model.tokenize(text, false) : model.tokenize(text, false, "trimLeadingSpace");
  return { all: bos === null ? textTokens : [bos, ...textTokens], text: textTokens };
}

/**
 * Tokenizes a raw prompt, refusing one that leaves no room for an output token (a long text is counted in
 * slices first, as prompt-size.ts does for chat prompts, so it is never tokenized whole on the event loop).
 */
export async function prepareRawPrompt(
  loaded: LlamaLoadedModel,
  text: string,
): Promise<{ all: Token[]; text: Token[] }> {
  if (text.length > SCREEN_ABOVE_CHARACTERS) {
    const lowerBound = await countTokensInSlices(loaded.model.tokenizer, text, loaded.contextLength);
    if (lowerBound >= loaded.contextLength) {
      throw contextLengthExceeded(loaded.contextLength, lowerBound, "a lower bound, counted in slices");
    }
  }
  const tokens = rawPromptTokens(loaded.model, text);
  if (tokens.all.length >= loaded.contextLength) {
    throw contextLengthExceeded(loaded.contextLength, tokens.all.length);
  }
  return tokens;
}

/** Generates the continuation of `tokens` on a leased sequence, pushing text deltas and one finish. */
export async function generateRawCompletion(
  loaded: LlamaLoadedModel,
  request: EngineRequest,
  tokens: { all: Token[]; text: Token[] },
  lease: { sequence: LlamaContextSequence; commonPrefixLength: number },
  signal: AbortSignal,
  queue: AsyncQueue<EnginePart>,
): Promise<void> {
  const sequence = lease.sequence;
  const inputTokens = tokens.all.length;
  // The last prompt token is always evaluated again to get the logits of the first output token.
  const cachedInputTokens = Math.max(0, Math.min(lease.commonPrefixLength, inputTokens - 1));
  queue.push({ type: "prompt-progress", evaluatedTokens: cachedInputTokens, totalTokens: inputTokens });
  const meterBefore = sequence.tokenMeter.getState();
  const completion = new LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
  let reason: FinishReason;
  let first: string | undefined;
  let firstSent = false;
  try {
    const { onResponseChunk: _unused, ...options } = generationOptions(
      request.sampling ?? {},
      loaded.contextLength - inputTokens - 1,
      signal,
      () => undefined,
    );
    const { metadata } = await completion.generateCompletionWithMeta(tokens.text, {
      ...options,
      disableContextShift: true,
      // node-llama-cpp decodes the first generated tokens without context, which drops a SentencePiece
      // token's leading space ("Lily." + "She"); decoded after the prompt, they keep it ("Lily." + " She").
      onToken: (generated) => {
        if (first === undefined) first = loaded.model.detokenize(generated, false, tokens.all);
      },
      onTextChunk: (text) => {
        const chunk = first !== undefined && !firstSent ? first : text;
        firstSent = true;
        if (chunk !== "") queue.push({ type: "text-delta", text: chunk });
      },
    });
    reason = signal.aborted ? "cancelled" : finishReasonFor(metadata.stopReason);
  } catch (error) {
    if (!signal.aborted) throw error;
    reason = "cancelled";
  } finally {
    completion.dispose();
  }
  const meter = sequence.tokenMeter.diff(meterBefore);
  queue.push({
    type: "finish",
    reason,
    usage: { inputTokens, cachedInputTokens, outputTokens: meter.usedOutputTokens, reasoningTokens: 0 },
  });
}
