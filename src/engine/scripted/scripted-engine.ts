/**
 * A deterministic Engine for fast tests of the API layers: the same interface and part stream as the
 * llama engine, with a scripted reply instead of inference. Tokens are whitespace-separated words;
 * prefix reuse is simulated per model (the cached prefix of the previous prompt), so usage behaves like
 * the real engine's. It consults a ModelService so unknown models fail exactly as they do for real.
 */
import { createHash } from "node:crypto";
import type { ModelService } from "../../models/types.js";
import { ApiError } from "../../shared/errors.js";
import { isAssistantTurnItem, protectedTailStart } from "../truncation.js";
import type {
  ConversationItem,
  EmbedRequest,
  EmbedResult,
  Engine,
  EnginePart,
  EngineRequest,
  TokenCount,
} from "../types.js";

export interface ScriptedTurn {
  text?: string;
  reasoning?: string;
  toolCalls?: { callId: string; name: string; arguments: string }[];
  /** Delay before each part, to make cancellation and concurrency observable. */
  delayMs?: number;
  /** Throw this after `failAfterParts` parts, to exercise failures after streaming started. */
  failWith?: Error;
  failAfterParts?: number;
}

export interface ScriptedEngineOptions {
  models: ModelService;
  /** Produces the reply; default: "You said: <last user text>". */
  respond?: (request: EngineRequest) => ScriptedTurn;
  contextLength?: number;
}

export function renderScriptedPrompt(items: ConversationItem[]): string {
  return items
    .map((item) => {
      switch (item.type) {
        case "message":
          return `<${item.role}> ${item.text}`;
        case "reasoning":
          return `<reasoning> ${item.text}`;
        case "function-call":
          return `<call ${item.callId}> ${item.name} ${item.arguments}`;
        case "function-result":
          return `<result ${item.callId}> ${item.output}`;
      }
    })
    .join("\n");
}

const words = (text: string): string[] => text.split(/\s+/).filter((word) => word !== "");

/**
 * The items the scripted engine evaluates, by the llama engine's rule: `truncation: "auto"` drops the oldest
 * non-system units (a user message, or one assistant turn: its messages, reasoning, calls and results)
 * before the protected tail (`protectedTailStart`) until the prompt has at most `limit` tokens (words);
 * otherwise, or when the protected tail alone is too long, 400 `context_length_exceeded` on "input".
 */
export function fitScriptedItems(request: EngineRequest, limit: number): ConversationItem[] {
  const items = request.items;
  const count = (kept: readonly ConversationItem[]): number => words(renderScriptedPrompt([...kept])).length;
  const full = count(items);
  if (full <= limit) return [...items];
  const tooLong = (tokens: number, detail: string): ApiError =>
    ApiError.invalid(
      `The prompt is ${tokens} tokens, over the model's context of ${limit}${detail}.`,
      "input",
      "context_length_exceeded",
    );
  if (request.truncation !== "auto") throw tooLong(full, "");
  const start = protectedTailStart(items, request.protectedTailItems);
  // Units before the protected tail, oldest first: each user message, each run of assistant-turn items.
  const units: number[][] = [];
  for (let index = 0; index < start; index++) {
    const item = items[index];
    if (item === undefined || (item.type === "message" && item.role === "system")) continue;
    const previous = units.at(-1);
    const joins =
      isAssistantTurnItem(item) &&
      previous !== undefined &&
      previous.at(-1) === index - 1 &&
      isAssistantTurnItem(items[index - 1]);
    if (joins) previous.push(index);
    else units.push([index]);
  }
  const dropped = new Set<number>();
  let kept: ConversationItem[] = [...items];
  for (const unit of units) {
    for (const index of unit) dropped.add(index);
    kept = items.filter((_item, index) => !dropped.has(index));
    if (count(kept) <= limit) return kept;
  }
  throw tooLong(
    count(kept),
    " even after truncation (the current turn and system messages are never dropped)",
  );
}

function defaultReply(request: EngineRequest): ScriptedTurn {
  if (request.rawPrompt !== undefined) return { text: ` and then ${request.rawPrompt}` };
  const lastUser = [...request.items]
    .reverse()
    .find((item) => item.type === "message" && item.role === "user");
  const said = lastUser?.type === "message" ? lastUser.text : "";
  if (request.responseFormat?.type === "json_schema" || request.responseFormat?.type === "json_object") {
    return { text: JSON.stringify({ said }) };
  }
  return { text: `You said: ${said}` };
}

/** Length of the scripted engine's embedding vectors. */
export const scriptedEmbeddingDimensions = 16;

/** The scripted embedding of one input (see ScriptedEngine.embed). */
export function scriptedEmbedding(input: string | number[]): number[] {
  const key = typeof input === "string" ? `text:${input}` : `tokens:${input.join(",")}`;
  const digest = createHash("sha256").update(key).digest();
  return Array.from({ length: scriptedEmbeddingDimensions }, (_unused, index) =>
    Math.fround(((digest[index * 2] ?? 0) * 256 + (digest[index * 2 + 1] ?? 0)) / 32768 - 1),
  );
}

/** The text up to the earliest stop string in it, and that string (none found: the text as is). */
function cutAtStop(
  text: string | undefined,
  stops: readonly string[] | undefined,
): { text: string | undefined; stopSequence?: string } {
  let cut: { at: number; stop: string } | undefined;
  for (const stop of stops ?? []) {
    const at = stop === "" || text === undefined ? -1 : text.indexOf(stop);
    if (at >= 0 && (cut === undefined || at < cut.at)) cut = { at, stop };
  }
  return cut === undefined || text === undefined
    ? { text }
    : { text: text.slice(0, cut.at), stopSequence: cut.stop };
}

export class ScriptedEngine implements Engine {
  private readonly lastPrompt = new Map<string, string[]>();
  private closed = false;
  /** Requests generating right now (for concurrency assertions). */
  active = 0;

  constructor(private readonly options: ScriptedEngineOptions) {}

  async renderPrompt(request: EngineRequest): Promise<string> {
    await this.options.models.get(request.model);
    return request.rawPrompt ?? renderScriptedPrompt(request.items);
  }

  async countTokens(request: EngineRequest): Promise<TokenCount> {
    return { inputTokens: words(await this.renderPrompt(request)).length };
  }

  async *generate(request: EngineRequest, signal: AbortSignal): AsyncIterable<EnginePart> {
    if (this.closed) throw new ApiError({ status: 503, message: "The server is shutting down." });
    const entry = await this.options.models.get(request.model);
    if (entry.error !== undefined) {
      throw ApiError.invalid(
        `Model '${entry.id}' cannot be loaded: ${entry.error}`,
        "model",
        "model_load_failed",
      );
    }
    const limit = this.options.contextLength ?? 4096;
    // A raw prompt (`/v1/completions`) is evaluated as it is, with no template.
    const promptTokens =
      request.rawPrompt === undefined
        ? words(renderScriptedPrompt(fitScriptedItems(request, limit)))
        : words(request.rawPrompt);
    if (promptTokens.length > limit) {
      throw ApiError.invalid(
        `The prompt is ${promptTokens.length} tokens, over the model's context of ${limit}.`,
        "input",
        "context_length_exceeded",
      );
    }
    const previous = this.lastPrompt.get(request.model) ?? [];
    let cached = 0;
    while (
      cached < previous.length &&
      cached < promptTokens.length &&
      previous[cached] === promptTokens[cached]
    )
      cached++;

    const turn = (this.options.respond ?? defaultReply)(request);
    const parts: EnginePart[] = [];
    let reasoningTokens = 0;
    if (turn.reasoning !== undefined) {
      parts.push({ type: "reasoning-start" });
      for (const word of words(turn.reasoning)) {
        parts.push({ type: "reasoning-delta", text: `${word} ` });
        reasoningTokens++;
      }
      parts.push({ type: "reasoning-end" });
    }
    let textTokens = 0;
    let reason: "stop" | "length" | "tool-calls" = "stop";
    const maxTokens = request.sampling?.maxTokens ?? Number.POSITIVE_INFINITY;
    // As the real engine: the text ends before the first stop string it contains (which is not output).
    const stopped = cutAtStop(turn.text, request.sampling?.stop);
    const textWords = stopped.text === undefined ? [] : stopped.text.split(/(?<=\s)/);
    for (const word of textWords) {
      if (textTokens >= maxTokens) {
        reason = "length";
        break;
      }
      parts.push({ type: "text-delta", text: word });
      textTokens++;
    }
    const stopSequence = reason === "stop" ? stopped.stopSequence : undefined;
    if (
      reason === "stop" &&
      stopSequence === undefined &&
      turn.toolCalls &&
      turn.toolCalls.length > 0 &&
      request.toolChoice !== "none"
    ) {
      const calls = request.parallelToolCalls === false ? turn.toolCalls.slice(0, 1) : turn.toolCalls;
      for (const call of calls) {
        parts.push({ type: "tool-call-start", callId: call.callId, name: call.name });
        parts.push({ type: "tool-call-delta", callId: call.callId, argumentsDelta: call.arguments });
        parts.push({
          type: "tool-call-end",
          callId: call.callId,
          name: call.name,
          arguments: call.arguments,
        });
      }
      reason = "tool-calls";
    }

    this.active++;
    let emitted = 0;
    try {
      for (const part of parts) {
        if (turn.delayMs) await new Promise((resolve) => setTimeout(resolve, turn.delayMs));
        if (signal.aborted) {
          yield this.finish("cancelled", promptTokens.length, cached, emitted, reasoningTokens);
          return;
        }
        if (turn.failWith && emitted >= (turn.failAfterParts ?? 0)) throw turn.failWith;
        yield part;
        emitted++;
      }
      if (turn.failWith) throw turn.failWith;
      const outputWords = words((turn.reasoning ?? "") + " " + textWords.slice(0, textTokens).join(""));
      this.lastPrompt.set(request.model, [...promptTokens, ...outputWords]);
      yield {
        ...this.finish(reason, promptTokens.length, cached, textTokens + reasoningTokens, reasoningTokens),
        ...(stopSequence === undefined ? {} : { stopSequence }),
      };
    } finally {
      this.active--;
    }
  }

  /**
   * Deterministic embeddings: a text's tokens are its words, a token array's its ids; the vector (length
   * `scriptedEmbeddingDimensions`, float32 values in [-1, 1)) is derived from a SHA-256 of the input, so
   * equal inputs give equal vectors. Limits as the llama engine: the context length per input (400
   * `input[i]`), `dimensions` other than the vector length (400).
   */
  async embed(request: EmbedRequest, signal: AbortSignal): Promise<EmbedResult> {
    if (this.closed) throw new ApiError({ status: 503, message: "The server is shutting down." });
    const entry = await this.options.models.get(request.model);
    // As the real engine, which checks between inputs: rejects with the signal's reason.
    signal.throwIfAborted();
    if (entry.error !== undefined) {
      throw ApiError.invalid(
        `Model '${entry.id}' cannot be loaded: ${entry.error}`,
        "model",
        "model_load_failed",
      );
    }
    if (request.dimensions !== undefined && request.dimensions !== scriptedEmbeddingDimensions) {
      throw ApiError.invalid(
        `Model '${entry.id}' returns ${scriptedEmbeddingDimensions}-dimensional embeddings and cannot shorten them.`,
        "dimensions",
        "unsupported_parameter",
      );
    }
    const limit = this.options.contextLength ?? 4096;
    let inputTokens = 0;
    const embeddings = request.inputs.map((input, index) => {
      const tokens = typeof input === "string" ? words(input).length : input.length;
      if (tokens > limit) {
        throw ApiError.invalid(
          `input[${index}] is ${tokens} tokens, over the embedding context of ${limit}.`,
          `input[${index}]`,
          "context_length_exceeded",
        );
      }
      inputTokens += tokens;
      return scriptedEmbedding(input);
    });
    signal.throwIfAborted();
    return { embeddings, inputTokens };
  }

  private finish(
    reason: "stop" | "length" | "tool-calls" | "cancelled",
    inputTokens: number,
    cachedInputTokens: number,
    outputTokens: number,
    reasoningTokens: number,
  ): Extract<EnginePart, { type: "finish" }> {
    return {
      type: "finish",
      reason,
      usage: { inputTokens, cachedInputTokens, outputTokens, reasoningTokens },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
