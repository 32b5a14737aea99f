/**
 * The zod (v4) schemas of `POST /v1/chat/completions` (OpenAI's CreateChatCompletionRequest) and
 * `POST /v1/completions` (CreateCompletionRequest), plus LM Studio's `ttl` and llama.cpp's `top_k`, `min_p`
 * and `repeat_penalty`. As OpenAI-compatible servers do, unknown top-level fields are ignored (clients add
 * vendor fields all the time); fields OpenAI defines whose meaning lmhost cannot honour are parsed here and
 * refused by name in to-engine-request.ts. Content parts lmhost cannot read (images, audio, files) are
 * refused here, naming `messages[i].content[j].type`.
 */
import { z } from "zod";
import { ApiError } from "../../../shared/errors.js";
import { MAX_IDENTIFIER_CHARACTERS, MAX_SEED, MAX_TEXT_CHARACTERS } from "../responses/request-schema.js";
import { toValidationError } from "../responses/validation-errors.js";

const longText = z.string().max(MAX_TEXT_CHARACTERS);
const identifier = z.string().min(1).max(MAX_IDENTIFIER_CHARACTERS);
/** OpenAI's pattern for function names. */
const toolName = z.string().regex(/^[a-zA-Z0-9_-]{1,128}$/, "must be 1-128 letters, digits, '_' or '-'");
const jsonObject = z.record(z.string(), z.unknown());

/** Refuses a value that matched `schema` with `message`, at `path` inside it. */
function refused<Schema extends z.ZodType>(schema: Schema, message: string, path: string[] = []) {
  return schema
    .superRefine((_value, context) => {
      context.addIssue({ code: "custom", path: [...path], message });
    })
    .transform((): never => {
      throw new Error("unreachable: a refused value never passes validation");
    });
}

const MEDIA_PART_TYPES = ["image_url", "input_audio", "file"] as const;
const mediaPart = refused(
  z.looseObject({ type: z.enum(MEDIA_PART_TYPES) }),
  "this server's models read text only: image, audio and file content parts are not supported",
  ["type"],
);
const textPart = z.object({ type: z.literal("text"), text: longText });
const refusalPart = z.object({ type: z.literal("refusal"), refusal: longText });

const textContent = z.union([longText, z.array(z.discriminatedUnion("type", [textPart, mediaPart]))]);

const systemMessage = z.object({
  role: z.enum(["system", "developer"]),
  content: textContent,
  name: z.string().nullish(),
});
const userMessage = z.object({ role: z.literal("user"), content: textContent, name: z.string().nullish() });
const toolCall = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("function"),
    id: identifier,
    function: z.object({ name: identifier, arguments: longText }),
  }),
  refused(
    z.looseObject({ type: z.literal("custom") }),
    "custom tool calls are not supported on /v1/chat/completions; use function tools (or /v1/responses)",
    ["type"],
  ),
]);
const assistantMessage = z.object({
  role: z.literal("assistant"),
  content: z
    .union([longText, z.array(z.discriminatedUnion("type", [textPart, refusalPart, mediaPart]))])
    .nullish(),
  refusal: longText.nullish(),
  tool_calls: z.array(toolCall).nullish(),
  // The reasoning of an earlier turn, as LM Studio, llama.cpp and vLLM send it back (`reasoning` is vLLM's newer name).
  reasoning_content: longText.nullish(),
  reasoning: longText.nullish(),
  name: z.string().nullish(),
  audio: z.unknown().optional(),
  function_call: z.unknown().optional(),
});
const toolMessage = z.object({
  role: z.literal("tool"),
  tool_call_id: identifier,
  content: textContent,
});
const functionMessage = refused(
  z.looseObject({ role: z.literal("function") }),
  "the deprecated 'function' role is not supported: send tool results as role 'tool' messages with tool_call_id",
  ["role"],
);
const message = z.discriminatedUnion("role", [
  systemMessage,
  userMessage,
  assistantMessage,
  toolMessage,
  functionMessage,
]);

const functionTool = z.object({
  type: z.literal("function"),
  function: z.object({
    name: toolName,
    description: longText.nullish(),
    parameters: jsonObject.nullish(),
    strict: z.boolean().nullish(),
  }),
});
const customTool = refused(
  z.looseObject({ type: z.literal("custom") }),
  "custom (freeform) tools are not supported on /v1/chat/completions; use function tools (or /v1/responses)",
  ["type"],
);
const tool = z.discriminatedUnion("type", [functionTool, customTool]);

const namedFunction = z.object({ type: z.literal("function"), function: z.object({ name: identifier }) });
const toolChoice = z.union([
  z.enum(["none", "auto", "required"]),
  z.discriminatedUnion("type", [
    namedFunction,
    z.object({
      type: z.literal("allowed_tools"),
      allowed_tools: z.object({ mode: z.enum(["auto", "required"]), tools: z.array(namedFunction) }),
    }),
    refused(
      z.looseObject({ type: z.literal("custom") }),
      "custom tools are not supported on /v1/chat/completions",
      ["type"],
    ),
  ]),
]);

const responseFormat = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    json_schema: z.object({
      name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'"),
      description: longText.nullish(),
      schema: jsonObject.nullish(),
      strict: z.boolean().nullish(),
    }),
  }),
]);

const stop = z.union([
  z.string().max(MAX_IDENTIFIER_CHARACTERS),
  z.array(z.string().max(MAX_IDENTIFIER_CHARACTERS)).max(16),
]);
const streamOptions = z.object({
  include_usage: z.boolean().nullish(),
  include_obfuscation: z.boolean().nullish(),
});

/** Sampling and lifecycle fields both endpoints share. */
const samplingShape = {
  model: identifier,
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  seed: z.number().int().min(0).max(MAX_SEED).nullish(),
  stop: stop.nullish(),
  n: z.number().int().min(1).max(128).nullish(),
  stream: z.boolean().nullish(),
  stream_options: streamOptions.nullish(),
  logit_bias: z.record(z.string(), z.number()).nullish(),
  user: z.string().max(MAX_IDENTIFIER_CHARACTERS).nullish(),
  // LM Studio: keep the model loaded this many seconds after the request.
  ttl: z.number().positive().nullish(),
  // llama.cpp / LM Studio sampling extensions.
  top_k: z.number().int().min(0).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  repeat_penalty: z.number().min(0).nullish(),
};

export const chatCompletionSchema = z.looseObject({
  ...samplingShape,
  messages: z.array(message).min(1),
  max_tokens: z.number().int().min(1).nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  response_format: responseFormat.nullish(),
  tools: z.array(tool).nullish(),
  tool_choice: toolChoice.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  reasoning_effort: z.enum(["none", "minimal", "low", "medium", "high", "xhigh"]).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  // Accepted and ignored: they do not change what is generated.
  metadata: z.record(z.string(), z.string()).nullish(),
  store: z.boolean().nullish(),
  service_tier: z.string().nullish(),
  prompt_cache_key: z.string().max(MAX_IDENTIFIER_CHARACTERS).nullish(),
  prompt_cache_retention: z.string().nullish(),
  safety_identifier: z.string().nullish(),
  verbosity: z.enum(["low", "medium", "high"]).nullish(),
  modalities: z.array(z.enum(["text", "audio"])).nullish(),
  // Parsed so a value that would change meaning is refused by name (to-engine-request.ts).
  audio: z.unknown().optional(),
  prediction: z.unknown().optional(),
  web_search_options: z.unknown().optional(),
  functions: z.unknown().optional(),
  function_call: z.unknown().optional(),
});

export const completionSchema = z.looseObject({
  ...samplingShape,
  prompt: z.union([longText, z.array(z.unknown())]),
  max_tokens: z.number().int().min(0).nullish(),
  echo: z.boolean().nullish(),
  suffix: longText.nullish(),
  best_of: z.number().int().min(1).max(20).nullish(),
  logprobs: z.number().int().min(0).max(5).nullish(),
});

export type ChatCompletionBody = z.output<typeof chatCompletionSchema>;
export type CompletionBody = z.output<typeof completionSchema>;
export type ChatMessage = z.output<typeof message>;
export type ChatToolChoice = z.output<typeof toolChoice>;
export type ChatResponseFormat = z.output<typeof responseFormat>;

/**
 * Validates a body: a JSON object, then the schema (zod reports a wrong discriminator, an unknown `role` or
 * part `type`, at that field: `messages[1].role`). Unknown top-level fields are kept and ignored.
 */
export function parseBody<Schema extends z.ZodType>(schema: Schema, body: unknown): z.output<Schema> {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw ApiError.invalid("The request body must be a JSON object.", null, "invalid_json");
  }
  const parsed = schema.safeParse(body, { reportInput: true });
  if (parsed.success) return parsed.data;
  throw toValidationError(parsed.error.issues);
}
