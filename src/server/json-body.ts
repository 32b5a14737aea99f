/** Reads a JSON request body: malformed JSON is a 400 naming the problem, not a 500. */
import type { Context } from "hono";
import { ApiError } from "../shared/errors.js";

export async function readJsonBody(context: Context): Promise<unknown> {
  const text = await context.req.text();
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
