/**
 * Reads a JSON request body, refusing what should never reach `JSON.parse`:
 * - a Content-Type other than `application/json` (415): a web page can send `text/plain` without a CORS
 *   preflight, so a body that is parsed whatever its type is a body any page can post;
 * - bytes that are not UTF-8 (400; a lenient decoder would silently turn them into U+FFFD);
 * - arrays and objects nested deeper than MAX_JSON_DEPTH (400), found by a linear scan before parsing,
 *   since parsing millions of levels takes seconds and gigabytes;
 * - malformed JSON (400 naming the problem, not a 500).
 */
import type { Context } from "hono";
import { ApiError } from "../shared/errors.js";

/** Deepest nesting of arrays and objects accepted; real requests (even deep JSON schemas) stay far below. */
export const MAX_JSON_DEPTH = 256;

/** `application/json`, with or without parameters such as `; charset=utf-8`. */
export function isJsonContentType(contentType: string | undefined): boolean {
  return contentType?.split(";")[0]?.trim().toLowerCase() === "application/json";
}

/**
 * Whether JSON text nests arrays and objects more than `limit` levels deep. One pass, no recursion, brackets
 * inside strings ignored; stops at the first level past the limit. Malformed text is left to JSON.parse.
 */
export function exceedsJsonDepth(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let index = 0; index < text.length; index++) {
    if (inString) {
      // Jump to the next quote; it ends the string unless an odd number of backslashes escapes it.
      const quote = text.indexOf('"', index);
      if (quote === -1) return false;
      let backslashes = 0;
      while (quote - backslashes - 1 >= index && text.charCodeAt(quote - backslashes - 1) === 0x5c)
        backslashes++;
      if (backslashes % 2 === 0) inString = false;
      index = quote;
      continue;
    }
    const code = text.charCodeAt(index);
    if (code === 0x22 /* " */) {
      inString = true;
    } else if (code === 0x5b /* [ */ || code === 0x7b /* { */) {
      if (++depth > limit) return true;
    } else if (code === 0x5d /* ] */ || code === 0x7d /* } */) {
      depth--;
    }
  }
  return false;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

export async function readJsonBody(context: Context): Promise<unknown> {
  const contentType = context.req.header("content-type");
  if (!isJsonContentType(contentType)) {
    throw new ApiError({
      status: 415,
      message: `Send the request body as JSON with the header 'Content-Type: application/json' (this request has ${contentType === undefined ? "no Content-Type" : `'Content-Type: ${contentType}'`}).`,
      code: "unsupported_media_type",
    });
  }
  let text: string;
  try {
    text = utf8.decode(await context.req.arrayBuffer());
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    throw ApiError.invalid(
      "The request body is not valid UTF-8; JSON must be sent as UTF-8.",
      null,
      "invalid_json",
    );
  }
  if (text.trim() === "") {
    throw ApiError.invalid("The request body is empty; send a JSON object.", null, "invalid_json");
  }
  if (exceedsJsonDepth(text, MAX_JSON_DEPTH)) {
    throw ApiError.invalid(
      `The request body nests arrays and objects more than ${MAX_JSON_DEPTH} levels deep, which lmhost refuses.`,
      null,
      "json_too_deep",
    );
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
