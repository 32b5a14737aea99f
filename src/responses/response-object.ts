/**
 * The Response object: every field of OpenAI's `Response` and of Open Responses' `ResponseResource`,
 * with explicit nulls where empty (except `prompt_cache_options`, whose schema is not nullable, and
 * `output_text`, which the SDKs compute on the client). Also the two translations into it: engine usage
 * → `usage`, and a thrown error → `error {code, message}`.
 */
import type { Usage } from "../engine/types.js";
import { toApiError } from "../shared/errors.js";
import type { ResponseEcho, ResponseError, ResponseObject, ResponseUsage } from "./wire-types.js";

export interface NewResponseOptions {
  id: string;
  /** Unix seconds. */
  createdAt: number;
  echo: ResponseEcho;
  /** A background response starts `queued`; every other starts `in_progress`. */
  status: "queued" | "in_progress";
}

/** A new response in OpenAI's field order, every field present (null where empty). */
export function newResponseObject(options: NewResponseOptions): ResponseObject {
  const echo = structuredClone(options.echo);
  return {
    id: options.id,
    object: "response",
    created_at: options.createdAt,
    status: options.status,
    background: echo.background,
    completed_at: null,
    error: null,
    incomplete_details: null,
    instructions: echo.instructions,
    max_output_tokens: echo.max_output_tokens,
    max_tool_calls: echo.max_tool_calls,
    model: echo.model,
    output: [],
    parallel_tool_calls: echo.parallel_tool_calls,
    previous_response_id: echo.previous_response_id,
    reasoning: echo.reasoning,
    service_tier: echo.service_tier,
    store: echo.store,
    temperature: echo.temperature,
    text: echo.text,
    tool_choice: echo.tool_choice,
    tools: echo.tools,
    top_logprobs: echo.top_logprobs,
    top_p: echo.top_p,
    presence_penalty: echo.presence_penalty,
    frequency_penalty: echo.frequency_penalty,
    truncation: echo.truncation,
    usage: null,
    user: echo.user,
    metadata: echo.metadata,
    safety_identifier: echo.safety_identifier,
    prompt_cache_key: echo.prompt_cache_key,
    prompt_cache_retention: echo.prompt_cache_retention,
    prompt: echo.prompt,
    conversation: echo.conversation,
    moderation: echo.moderation,
  };
}

export function toResponseUsage(usage: Usage): ResponseUsage {
  return {
    input_tokens: usage.inputTokens,
    // Local prefix reuse is implicit caching: nothing is written to an explicit prompt cache.
    input_tokens_details: { cached_tokens: usage.cachedInputTokens, cache_write_tokens: 0 },
    output_tokens: usage.outputTokens,
    output_tokens_details: { reasoning_tokens: usage.reasoningTokens },
    total_tokens: usage.inputTokens + usage.outputTokens,
  };
}

/**
 * A failure as OpenAI's `error` field, whose `code` is a closed set: a 429 is `rate_limit_exceeded`,
 * another client error (a prompt the model cannot take) is `invalid_prompt`, anything else `server_error`.
 */
export function toResponseError(thrown: unknown): ResponseError {
  const error = toApiError(thrown);
  const code =
    error.status === 429 ? "rate_limit_exceeded" : error.status < 500 ? "invalid_prompt" : "server_error";
  return { code, message: error.message };
}

export function unixSeconds(date: number = Date.now()): number {
  return Math.floor(date / 1000);
}
