/**
 * The one interface between the API layers and inference. No wire JSON lives here: API families
 * (Responses, later Chat Completions and Anthropic Messages) translate their requests into an
 * EngineRequest and translate the EnginePart stream back into their own events.
 */
import type { ReasoningEffortLevel } from "./reasoning-budgets.js";

/** A neutral conversation: what the model sees, in order. */
export type ConversationItem =
  | { type: "message"; role: "system" | "user" | "assistant"; text: string }
  | { type: "reasoning"; text: string }
  | { type: "function-call"; callId: string; name: string; arguments: string }
  | { type: "function-result"; callId: string; name?: string; output: string };

export interface FunctionToolDefinition {
  name: string;
  description?: string;
  /** JSON schema of the arguments object. */
  parameters?: Record<string, unknown>;
  /**
   * How `parameters` keywords the argument grammar cannot enforce are handled. true: such a keyword is a 400
   * `invalid_json_schema` whose param names it (`tools[i].parameters.properties.n.pattern`), so generated
   * arguments always validate. false / absent: it is dropped and the rest is still enforced (best effort).
   * Keywords the engine can convert (a small integer range → enum, ...) are enforced either way.
   */
  strict?: boolean;
  /**
   * A freeform tool (the Responses API's `custom` tools): the model writes its input as plain text, and a
   * call's `arguments` (in `function-call` items and the tool-call parts) are that raw text, not JSON;
   * `parameters` and `strict` do not apply. `grammar`: the input must be a sentence of this grammar (a Lark
   * grammar or a regular expression matching the whole input); engines enforce it where they can (the
   * llama engine: when the call is forced, see src/engine/llama/README.md).
   */
  freeform?: { grammar?: { syntax: "lark" | "regex"; definition: string } };
}

export type ToolChoice = "auto" | "none" | "required" | { name: string };

export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | {
      type: "json_schema";
      name: string;
      schema: Record<string, unknown>;
      /**
       * true: every keyword of `schema` must be enforceable by the output grammar, otherwise the request is a
       * 400 `invalid_json_schema` whose param names the keyword (`text.format.schema.properties.n.pattern`);
       * the output then always parses and validates. false / absent: unenforceable keywords are dropped and
       * the rest is still enforced (best effort: the output parses but may violate the dropped keywords).
       */
      strict?: boolean;
    };

export interface SamplingOptions {
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  repeatPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  seed?: number;
  /** Maximum number of generated tokens; reaching it finishes with reason "length". */
  maxTokens?: number;
  stop?: string[];
}

export interface EngineRequest {
  /** A model id known to the model service (resolved and JIT-loaded by the engine). */
  model: string;
  items: ConversationItem[];
  sampling?: SamplingOptions;
  responseFormat?: ResponseFormat;
  tools?: FunctionToolDefinition[];
  toolChoice?: ToolChoice;
  /**
   * false: the model makes at most one function call per response (OpenAI's `parallel_tool_calls: false`).
   * true / absent: as many as the model's chat template supports.
   */
  parallelToolCalls?: boolean;
  /**
   * Reasoning effort; engines map it per model family (a thinking switch where the family has one) and onto a
   * thought-token budget (reasoning-budgets.ts), or ignore it for models that do not think.
   */
  reasoningEffort?: ReasoningEffortLevel;
  /**
   * A thought-token budget given directly (Anthropic's `thinking.budget_tokens`): it replaces the budget
   * `reasoningEffort` would select; the effort still picks the thinking switch where a family has one.
   */
  reasoningBudgetTokens?: number;
  /**
   * "auto": drop the oldest non-system items before the protected tail (see `protectedTailItems`) until the
   * prompt fits, and a 400 `context_length_exceeded` (param "input") when it still does not; "disabled"
   * (default): that 400 as soon as the prompt does not fit.
   */
  truncation?: "auto" | "disabled";
  /**
   * The last N items of `items` must stay: `truncation: "auto"` never drops them (nor
   * any item before them that renders together with them, e.g. the call of a protected function result).
   * Whatever N is (absent, 0, or smaller), the current turn is always protected too: every item after the
   * last assistant message / reasoning / function call, and from the last user message on. N larger than
   * `items.length` protects everything; non-integers are rounded down. System items are never dropped.
   */
  protectedTailItems?: number;
  /** Keep the model loaded this many seconds after this request (LM Studio's per-request `ttl`). */
  ttlSeconds?: number;
  /**
   * A generation of a response already under way (the MCP tool loop's rounds after a call ran):
   * it waits for a sequence however many requests already wait, instead of failing the response midway
   * with 429 `queue_full`. The queue bound is for admitting new requests.
   */
  continuation?: boolean;
  /**
   * A raw text prompt (`/v1/completions`): the model continues this text as it is, with no chat template;
   * `items`, `tools`, `toolChoice`, `reasoningEffort` and `truncation` do not apply. Prefix reuse still does.
   */
  rawPrompt?: string;
  /**
   * The client's cache key (the Responses API's `prompt_cache_key`): requests with the same key go to the
   * sequence that served it last, when that one is free and no other holds a longer prefix of the prompt.
   */
  promptCacheKey?: string;
}

export interface Usage {
  /** Tokens of the whole prompt. */
  inputTokens: number;
  /** Prompt tokens that were already in the KV cache and were not evaluated again. */
  cachedInputTokens: number;
  outputTokens: number;
  reasoningTokens: number;
}

export type FinishReason = "stop" | "length" | "tool-calls" | "cancelled";

export type EnginePart =
  /** Prompt evaluation has started (or is still going on); lets the HTTP layer send keep-alives. */
  | { type: "prompt-progress"; evaluatedTokens: number; totalTokens: number }
  | { type: "text-delta"; text: string }
  | { type: "reasoning-start" }
  | { type: "reasoning-delta"; text: string }
  | { type: "reasoning-end" }
  /** A call of a tool (for a freeform tool, `arguments` are its raw input text). */
  | { type: "tool-call-start"; callId: string; name: string }
  | { type: "tool-call-delta"; callId: string; argumentsDelta: string }
  | { type: "tool-call-end"; callId: string; name: string; arguments: string }
  /** `stopSequence`: the `sampling.stop` string that ended the generation (reason "stop"), if one did. */
  | { type: "finish"; reason: FinishReason; usage: Usage; stopSequence?: string };

export interface TokenCount {
  inputTokens: number;
}

/**
 * Inputs to embed with one model (OpenAI's `/v1/embeddings`). Each input is a text or the token ids of one
 * (ids of the model's own vocabulary). Errors about one input name it as `input[i]` (its index in `inputs`).
 */
export interface EmbedRequest {
  model: string;
  inputs: (string | number[])[];
  /**
   * The vector length the client asked for (OpenAI's `dimensions`). Engines that cannot shorten vectors
   * refuse any other value than the model's own length with a 400 naming `dimensions`.
   */
  dimensions?: number;
  /** Keep the model loaded this many seconds after this request (LM Studio's per-request `ttl`). */
  ttlSeconds?: number;
}

export interface EmbedResult {
  /** One vector per input, in input order, all of the model's embedding length. */
  embeddings: number[][];
  /** Tokens evaluated over all inputs (special tokens the model adds included). */
  inputTokens: number;
}

export interface Engine {
  /**
   * Runs one generation. The iterable ends after exactly one `finish` part. Aborting `signal` stops
   * generation at the next token, frees the sequence and ends with `finish {reason: "cancelled"}`.
   * Throws ApiError for problems a client should see (unknown model 404, queue full 429,
   * context_length_exceeded 400), before the first part where possible.
   */
  generate(request: EngineRequest, signal: AbortSignal): AsyncIterable<EnginePart>;
  /** Counts the tokens of the prompt this request would evaluate (with the model's chat template). */
  countTokens(request: EngineRequest): Promise<TokenCount>;
  /** The exact prompt text the model would see (for tests and debugging). */
  renderPrompt(request: EngineRequest): Promise<string>;
  /**
   * Embeds every input with the model's pooling (as its GGUF metadata says). Throws ApiError for problems a
   * client should see: unknown model 404, an input longer than the embedding context or with a token id
   * outside the vocabulary 400 naming `input[i]`, a full queue 429. Aborting `signal` stops between inputs.
   */
  embed(request: EmbedRequest, signal: AbortSignal): Promise<EmbedResult>;
  /** Stops accepting work, cancels in-flight generations and frees native memory. */
  close(): Promise<void>;
}
