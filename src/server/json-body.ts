/**
 * Reads a JSON request body, refusing what should never reach `JSON.parse`:
 * - a Content-Type other than `application/json` (415): a web page can send `text/plain` without a CORS
 *   preflight, so a body that is parsed whatever its type is a body any page can post;
 * - bytes that are not UTF-8 (400; a lenient decoder would silently turn them into U+FFFD);
 * - arrays and objects nested deeper than MAX_JSON_DEPTH (400), found by a linear scan before parsing,
 *   since parsing millions of levels takes seconds and gigabytes;
 * - malformed JSON (400 naming the problem, not a 500).
 * A body cut off by the client going away is a 499 (logged as such, not as a server error).
 */
import type { Context } from "hono";
import { ApiError, clientClosedError } from "../shared/errors.js";

/** Deepest nesting of arrays and objects accepted; real requests (even deep JSON schemas) stay far below. */
export const MAX_JSON_DEPTH = 256;

/** `application/json`, with or without parameters such as `; charset=utf-8`. */
export function isJsonContentType(contentType: string | undefined): boolean {
  return contentType?.split(";")[0]?.trim().toLowerCase() === "application/json";
}

/**
 * Follows the nesting of JSON text fed a piece at a time (a body as it arrives): one pass, no recursion,
 * brackets inside strings ignored, escapes and strings may span pieces. Malformed text is left to
 * JSON.parse; only the depth is judged.
 */
export class JsonDepthScanner {
  #depth = 0;
  #inString = false;
  #escaped = false;

  constructor(private readonly limit: number) {}

  /** Feeds the next piece; true once the text has nested deeper than the limit. */
  feed(text: string): boolean {
    let index = 0;
    // Where the next quote / backslash is, found once and reused until passed (no quadratic rescans).
    let nextQuote = -2;
    let nextBackslash = -2;
    while (index < text.length) {
      if (this.#inString) {
        if (this.#escaped) {
          this.#escaped = false;
          index++;
          continue;
        }
        if (nextQuote !== -1 && nextQuote < index) nextQuote = text.indexOf('"', index);
        if (nextBackslash !== -1 && nextBackslash < index) nextBackslash = text.indexOf("\\", index);
        if (nextQuote === -1 && nextBackslash === -1) return false; // the string goes on in the next piece
        if (nextBackslash !== -1 && (nextQuote === -1 || nextBackslash < nextQuote)) {
          this.#escaped = true;
          index = nextBackslash + 1;
        } else {
          this.#inString = false;
          index = nextQuote + 1;
        }
        continue;
      }
      const code = text.charCodeAt(index);
      if (code === 0x22 /* " */) {
        this.#inString = true;
      } else if (code === 0x5b /* [ */ || code === 0x7b /* { */) {
        if (++this.#depth > this.limit) return true;
      } else if (code === 0x5d /* ] */ || code === 0x7d /* } */) {
        this.#depth--;
      }
      index++;
    }
    return false;
  }
}

/** Whether JSON text nests arrays and objects more than `limit` levels deep (see JsonDepthScanner). */
export function exceedsJsonDepth(text: string, limit: number): boolean {
  return new JsonDepthScanner(limit).feed(text);
}

/**
 * The body as text, decoded and depth-checked piece by piece as it arrives, so neither a 20 MB body's
 * UTF-8 check nor a deeply nested one holds the event loop (a nested body is refused at its first piece,
 * without reading the rest).
 */
async function readBodyText(context: Context): Promise<string> {
  const body = context.req.raw.body;
  if (body === null) return "";
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const scanner = new JsonDepthScanner(MAX_JSON_DEPTH);
  const pieces: string[] = [];
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      const piece = done ? decoder.decode() : decoder.decode(value, { stream: true });
      if (scanner.feed(piece)) {
        throw ApiError.invalid(
          `The request body nests arrays and objects more than ${MAX_JSON_DEPTH} levels deep, which lmhost refuses.`,
          null,
          "json_too_deep",
        );
      }
      pieces.push(piece);
      if (done) return pieces.join("");
    }
  } catch (error) {
    // The client went away while sending the body: nothing of the server failed (499, no stack trace).
    if (context.req.raw.signal.aborted || (error instanceof Error && error.message === "aborted")) {
      throw clientClosedError("The client closed the connection before the request body arrived.");
    }
    if (!(error instanceof TypeError) || error instanceof ApiError) throw error;
    // TextDecoder's fatal mode throws a TypeError for bytes that are not UTF-8.
    if (!/decode|encoded|utf-?8/i.test(error.message)) throw error;
    throw ApiError.invalid(
      "The request body is not valid UTF-8; JSON must be sent as UTF-8.",
      null,
      "invalid_json",
    );
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

export async function readJsonBody(context: Context): Promise<unknown> {
  const contentType = context.req.header("content-type");
  if (!isJsonContentType(contentType)) {
    throw new ApiError({
      status: 415,
      message: `Send the request body as JSON with the header 'Content-Type: application/json' (this request has ${contentType === undefined ? "no Content-Type" : `'Content-Type: ${contentType}'`}).`,
      code: "unsupported_media_type",
    });
  }
  const text = await readBodyText(context);
  if (text.trim() === "") {
    throw ApiError.invalid("The request body is empty; send a JSON object.", null, "invalid_json");
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw ApiError.invalid(
      `The request body is not valid JSON: ${(error as Error).message}`,
      null,
      "invalid_json",
    );
  }
}
