/**
 * POST /v1/embeddings (OpenAI's Embeddings API) over `engine.embed`.
 *
 * Request: `model`, `input` (a string, an array of strings, an array of token ids, or an array of token-id
 * arrays; at most 2,048 items, none empty), `encoding_format` ("float", default, or "base64": the vector's
 * little-endian float32 bytes in base64, which the openai SDK asks for by default and decodes),
 * `dimensions` (only the model's own vector length: GGUF models cannot be shortened — the engine says
 * why), `user` (accepted, unused), `ttl` (LM Studio's per-request idle TTL in seconds). Anything else is a
 * 400 naming the field. An input longer than the model's embedding context is a 400 naming it (`input`,
 * or `input[3]` in an array), never silently truncated.
 *
 * Response: `{object: "list", data: [{object: "embedding", index, embedding}], model, usage:
 * {prompt_tokens, total_tokens}}`.
 */
import { z } from "zod";
import type { App, AppDeps } from "../../server/deps.js";
import { readJsonBody } from "../../server/json-body.js";
import { reportUsage } from "../../server/request-log.js";
import { linkAbortSignals } from "../../shared/abort-signals.js";
import { ApiError } from "../../shared/errors.js";
import { parseRequestBody } from "./responses/validation-errors.js";

/** Most inputs in one request (OpenAI's limit; the AI SDK's `maxEmbeddingsPerCall` default too). */
export const maxEmbeddingInputs = 2048;

const embeddingsSchema = z.object({
  model: z.string().min(1),
  input: z.unknown(),
  encoding_format: z.enum(["float", "base64"]).nullish(),
  dimensions: z.number().int().positive().nullish(),
  user: z.string().nullish(),
  ttl: z.number().positive().nullish(),
});

const inputShapes = "a string, an array of strings, an array of token ids or an array of token-id arrays";

const isTokenId = (value: unknown): value is number =>
  typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 0x7fff_ffff;

/**
 * The inputs of a request body's `input`, and whether it was one input (a string or one token array) rather
 * than a list; every 400 names `input` or the item (`input[3]`).
 */
export function parseEmbeddingInput(input: unknown): { inputs: (string | number[])[]; single: boolean } {
  if (input === undefined || input === null)
    throw ApiError.invalid("`input` is required.", "input", "missing_required_parameter");
  if (typeof input === "string") {
    if (input === "") throw ApiError.invalid("`input` must not be an empty string.", "input");
    return { inputs: [input], single: true };
  }
  if (!Array.isArray(input)) throw ApiError.invalid(`\`input\` must be ${inputShapes}.`, "input");
  if (input.length === 0) throw ApiError.invalid("`input` must not be an empty array.", "input");
  if (typeof input[0] === "number") {
    // One input given as token ids.
    const bad = input.findIndex((item) => !isTokenId(item));
    if (bad >= 0)
      throw ApiError.invalid(
        `input[${bad}] must be a token id (an integer from 0 to 2147483647).`,
        `input[${bad}]`,
      );
    return { inputs: [input as number[]], single: true };
  }
  if (input.length > maxEmbeddingInputs) {
    throw ApiError.invalid(
      `\`input\` has ${input.length} items; at most ${maxEmbeddingInputs} are allowed in one request.`,
      "input",
    );
  }
  const texts = typeof input[0] === "string";
  const inputs = input.map((item: unknown, index): string | number[] => {
    const param = `input[${index}]`;
    if (texts) {
      if (typeof item !== "string")
        throw ApiError.invalid(`${param} must be a string, like the items before it.`, param);
      if (item === "") throw ApiError.invalid(`${param} must not be an empty string.`, param);
      return item;
    }
    if (!Array.isArray(item))
      throw ApiError.invalid(
        `${param} must be an array of token ids, like the items before it (\`input\` must be ${inputShapes}).`,
        param,
      );
    if (item.length === 0) throw ApiError.invalid(`${param} must not be an empty array.`, param);
    const bad = item.findIndex((token) => !isTokenId(token));
    if (bad >= 0)
      throw ApiError.invalid(`${param}[${bad}] must be a token id (an integer from 0 to 2147483647).`, param);
    return item as number[];
  });
  return { inputs, single: false };
}

/** A vector as OpenAI's base64 encoding: its float32 values, little-endian, in base64. */
export function toBase64Embedding(vector: readonly number[]): string {
  const bytes = Buffer.alloc(vector.length * 4);
  vector.forEach((value, index) => bytes.writeFloatLE(value, index * 4));
  return bytes.toString("base64");
}

/** With one input (not a list), the engine's `input[0]` is the client's `input`. */
function renameSingleInput(error: unknown): unknown {
  if (!(error instanceof ApiError) || error.param === null || !error.param.startsWith("input[0]"))
    return error;
  return new ApiError({
    status: error.status,
    message: error.message.replaceAll("input[0]", "input"),
    type: error.type,
    param: "input" + error.param.slice("input[0]".length),
    code: error.code,
    ...(error.retryAfter === undefined ? {} : { retryAfter: error.retryAfter }),
  });
}

export function registerEmbeddingsRoutes(app: App, deps: AppDeps): void {
  app.post("/v1/embeddings", async (context) => {
    const body = parseRequestBody(embeddingsSchema, await readJsonBody(context));
    const { inputs, single } = parseEmbeddingInput(body.input);
    const link = linkAbortSignals(context.req.raw.signal, deps.shutdownSignal);
    let result;
    try {
      result = await deps.engine.embed(
        {
          model: body.model,
          inputs,
          ...(body.dimensions == null ? {} : { dimensions: body.dimensions }),
          ...(body.ttl == null ? {} : { ttlSeconds: body.ttl }),
        },
        link.signal,
      );
    } catch (error) {
      if (deps.shutdownSignal?.aborted === true)
        throw new ApiError({
          status: 503,
          message: "lmhost is shutting down.",
          code: "server_shutting_down",
        });
      throw single ? renameSingleInput(error) : error;
    } finally {
      link.dispose();
    }
    reportUsage(context, { model: body.model, inputTokens: result.inputTokens });
    const base64 = body.encoding_format === "base64";
    return context.json({
      object: "list",
      data: result.embeddings.map((vector, index) => ({
        object: "embedding",
        index,
        embedding: base64 ? toBase64Embedding(vector) : vector,
      })),
      model: body.model,
      usage: { prompt_tokens: result.inputTokens, total_tokens: result.inputTokens },
    });
  });
}
