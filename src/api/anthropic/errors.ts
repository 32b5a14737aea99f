/**
 * Anthropic's error shape for every error on `/v1/messages*`, including the ones the guards, the body limit
 * and the 404 handler raise before a route runs (app.ts picks the shape by path, here):
 * `{"type": "error", "error": {"type", "message"}, "request_id"}`. The status stays the ApiError's; the
 * `error.type` is Anthropic's name for it, which is what @anthropic-ai/sdk's error classes and Claude Code
 * read. Mid-stream failures use the same object as the data of an `event: error` SSE event.
 */
import type { ApiError } from "../../shared/errors.js";

export type AnthropicErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "not_found_error"
  | "request_too_large"
  | "rate_limit_error"
  | "api_error"
  | "overloaded_error";

export interface AnthropicErrorBody {
  type: "error";
  error: {
    type: AnthropicErrorType;
    message: string;
    /** Machine-readable detail the SDK acts on (a refused `thread`: it resends without one). */
    details?: { error_code: string; unsupported?: string[] };
  };
  request_id: string | null;
}

/** True for the paths whose errors are rendered in Anthropic's shape. */
export function isAnthropicPath(path: string): boolean {
  return path === "/v1/messages" || path.startsWith("/v1/messages/");
}

/** Anthropic's error type for an HTTP status (503: lmhost is shutting down or its engine closed → overloaded). */
export function anthropicErrorType(status: number): AnthropicErrorType {
  switch (status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 503:
    case 529:
      return "overloaded_error";
    default:
      return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

/**
 * Anthropic's error object has no `param`: a message that does not name its field yet gets it in front, in
 * Anthropic's own style (`max_tokens: Field required`).
 */
export function toAnthropicError(error: ApiError, requestId: string | null = null): AnthropicErrorBody {
  const message =
    error.param === null || error.message.includes(error.param)
      ? error.message
      : `${error.param}: ${error.message}`;
  return {
    type: "error",
    error: {
      type: anthropicErrorType(error.status),
      message,
      ...(error.code === "thread_unsupported_request"
        ? { details: { error_code: error.code, unsupported: ["thread"] } }
        : {}),
    },
    request_id: requestId,
  };
}
