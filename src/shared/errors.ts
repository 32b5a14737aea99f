/**
 * One error type that knows its wire shape. Every layer throws ApiError for problems a client should see;
 * the server renders it as OpenAI's `{error: {message, type, param, code}}` with `status`.
 */

export type ErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "not_found_error"
  | "rate_limit_error"
  | "server_error"
  | "service_unavailable";

export interface ApiErrorOptions {
  status: number;
  message: string;
  type?: ErrorType;
  param?: string | null;
  code?: string | null;
  /** Seconds, sent as `Retry-After` (429 / 503). */
  retryAfter?: number;
}

export class ApiError extends Error {
  readonly status: number;
  readonly type: ErrorType;
  readonly param: string | null;
  readonly code: string | null;
  readonly retryAfter: number | undefined;

  constructor(options: ApiErrorOptions) {
    super(options.message);
    this.name = "ApiError";
    this.status = options.status;
    this.type = options.type ?? defaultType(options.status);
    this.param = options.param ?? null;
    this.code = options.code ?? null;
    this.retryAfter = options.retryAfter;
  }

  toJSON(): { error: { message: string; type: ErrorType; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }

  static invalid(message: string, param: string | null = null, code: string | null = null): ApiError {
    return new ApiError({ status: 400, message, param, code });
  }

  static notFound(message: string, param: string | null = null, code: string | null = null): ApiError {
    return new ApiError({ status: 404, message, param, code });
  }
}

function defaultType(status: number): ErrorType {
  if (status === 401) return "authentication_error";
  if (status === 404) return "invalid_request_error";
  if (status === 429) return "rate_limit_error";
  if (status === 503) return "service_unavailable";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/**
 * The abort reason of a graceful shutdown (start.ts aborts the shutdown signal with it), so a run can tell
 * "the server is stopping" from a cancel, a DELETE or a client that went away: runs it stops end as
 * `failed` with code `server_error` ("lmhost is shutting down"), not `cancelled`.
 */
export class ShutdownError extends Error {
  constructor(message = "lmhost is shutting down") {
    super(message);
    this.name = "ShutdownError";
  }
}

/** The 503 of a run a graceful shutdown stopped (its signal aborted with a ShutdownError), or undefined. */
export function shutdownError(signal: AbortSignal): ApiError | undefined {
  if (!signal.aborted || !(signal.reason instanceof ShutdownError)) return undefined;
  return new ApiError({ status: 503, message: signal.reason.message, code: "server_shutting_down" });
}

/**
 * The 499 of a request whose client went away (nginx's code): logged as such, without a stack trace, since
 * nothing of the server failed.
 */
export function clientClosedError(message: string): ApiError {
  return new ApiError({ status: 499, message, code: "client_closed_request" });
}

/** Turns anything thrown into an ApiError (unknown errors become a 500 without leaking internals). */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ApiError({ status: 500, message: `Internal error: ${message}`, code: "internal_error" });
}

export function assertNever(value: never, what = "value"): never {
  throw new Error(`Unhandled ${what}: ${JSON.stringify(value)}`);
}
