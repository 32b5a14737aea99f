/**
 * The zod (v4) schema of a `POST /v1/responses` body: every property of OpenAI's `CreateResponse`,
 * Open Responses' `presence_penalty` / `frequency_penalty`, Codex's `client_metadata` and LM Studio's
 * `ttl`. Unknown top-level properties are refused by name (OpenAI's "Unrecognized request argument");
 * unknown properties inside objects are dropped, because clients add new optional fields all the time.
 * Item short forms are normalised here: `{role, content}` is a message, `{id}` an item reference.
 *
 * Validation is generous about shapes clients really send and strict about values that would silently
 * change meaning; what cannot be honoured at all (images, files, conversations, prompts) is refused in
 * to-response-request.ts, where the error names the field.
 */
import { z } from "zod";

/** OpenAI's pattern for function, namespace and schema names (no `.`, see qualifiedFunctionName). */
const toolName = z.string().regex(/^[a-zA-Z0-9_-]{1,128}$/, "must be 1-128 letters, digits, '_' or '-'");
/**
 * The longest text any one field may hold, in characters: OpenAI's limit for `input`, applied to every text
 * field (instructions, message text, arguments, tool outputs, descriptions) so no single field can carry
 * more (the body limit caps the sum). Longer is a 400 naming the field before anything reads the text.
 */
export const MAX_TEXT_CHARACTERS = 10_485_760;
/** The longest id, call id, name or key a request may carry. */
export const MAX_IDENTIFIER_CHARACTERS = 1_024;
const longText = z.string().max(MAX_TEXT_CHARACTERS);
const identifier = z.string().min(1).max(MAX_IDENTIFIER_CHARACTERS);
/**
 * A JSON object whose values each match `value`, keeping every key the client sent. zod's `z.record`
 * silently skips a `__proto__` key (it builds its output by assignment, where that name is the prototype
 * setter), so `"metadata": {"__proto__": "x"}` would vanish; here each key is defined as an own data
 * property, so `__proto__` is validated, stored and returned like any other key.
 */
function ownKeysRecord<Value extends z.ZodType>(value: Value) {
  return z.unknown().transform((input, context) => {
    const output: Record<string, z.output<Value>> = {};
    if (input === null || typeof input !== "object" || Array.isArray(input)) {
      context.addIssue({ code: "invalid_type", expected: "record", input });
      return z.NEVER;
    }
    for (const [key, entry] of Object.entries(input)) {
      const result = value.safeParse(entry, { reportInput: true });
      if (!result.success) {
        for (const issue of result.error.issues) {
          context.addIssue({
            ...issue,
            path: [key, ...issue.path],
          } as unknown as z.core.$ZodSuperRefineIssue);
        }
        continue;
      }
      Object.defineProperty(output, key, {
        value: result.data,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return output;
  });
}
const jsonObject = ownKeysRecord(z.unknown());
const itemStatus = z.enum(["in_progress", "completed", "incomplete"]);

const MULTIMODAL_PART_TYPES = ["input_image", "input_file", "input_audio", "input_video"] as const;
/** Refuses a value that matched `schema`; its output type is `never`, so parsed types stay honest. */
function refused<Schema extends z.ZodType>(
  schema: Schema,
  message: (value: z.output<Schema>) => string,
  path: string[] = [],
) {
  return schema
    .superRefine((value, context) => {
      // A fresh array each time: zod prefixes issue paths in place.
      context.addIssue({ code: "custom", path: [...path], message: message(value) });
    })
    .transform((): never => {
      throw new Error("unreachable: a refused value never passes validation");
    });
}

const multimodalPart = refused(
  z.looseObject({ type: z.enum(MULTIMODAL_PART_TYPES) }),
  () =>
    "this model does not accept images/files: only text content (input_text, output_text, refusal) is supported",
);

const textPart = z.object({ type: z.enum(["input_text", "output_text"]), text: longText });
const refusalPart = z.object({ type: z.literal("refusal"), refusal: longText });
const messageContent = z.union([
  longText,
  z.array(z.discriminatedUnion("type", [textPart, refusalPart, multimodalPart])),
]);
const toolOutput = z.union([
  longText,
  z.array(
    z.discriminatedUnion("type", [
      z.object({ type: z.literal("input_text"), text: longText }),
      multimodalPart,
    ]),
  ),
]);

const messageItem = z.object({
  type: z.literal("message"),
  id: identifier.optional(),
  role: z.enum(["user", "assistant", "system", "developer"]),
  content: messageContent,
  status: itemStatus.nullish(),
  phase: z.enum(["commentary", "final_answer"]).nullish(),
});
const itemReference = z.object({ type: z.literal("item_reference"), id: identifier });
const functionCallItem = z.object({
  type: z.literal("function_call"),
  id: identifier.optional(),
  call_id: identifier,
  name: identifier,
  namespace: identifier.optional(),
  arguments: longText,
  status: itemStatus.nullish(),
});
const functionCallOutputItem = z.object({
  type: z.literal("function_call_output"),
  id: identifier.nullish(),
  call_id: identifier,
  output: toolOutput,
  status: itemStatus.nullish(),
});
const reasoningItem = z.object({
  type: z.literal("reasoning"),
  id: identifier.optional(),
  summary: z.array(z.object({ type: z.literal("summary_text"), text: longText })).default([]),
  content: z.array(z.object({ type: z.literal("reasoning_text"), text: longText })).optional(),
  encrypted_content: longText.nullish(),
  status: itemStatus.nullish(),
});
const customToolCallItem = z.object({
  type: z.literal("custom_tool_call"),
  id: identifier.optional(),
  call_id: identifier,
  name: identifier,
  namespace: identifier.optional(),
  input: longText,
});
const customToolCallOutputItem = z.object({
  type: z.literal("custom_tool_call_output"),
  id: identifier.optional(),
  call_id: identifier,
  output: toolOutput,
});

// MCP items: the client's answer to an approval request, and earlier output a stateless client re-sends.
const mcpApprovalResponseItem = z.object({
  type: z.literal("mcp_approval_response"),
  id: identifier.nullish(),
  approval_request_id: identifier,
  approve: z.boolean(),
  reason: longText.nullish(),
});
const mcpListToolsItem = z.object({
  type: z.literal("mcp_list_tools"),
  id: identifier,
  server_label: identifier,
  tools: z.array(
    z.object({
      name: identifier,
      description: longText.nullish().transform((value) => value ?? null),
      input_schema: jsonObject,
      annotations: jsonObject.nullish().transform((value) => value ?? null),
    }),
  ),
  error: longText.nullish().transform((value) => value ?? null),
});
const mcpCallItem = z.object({
  type: z.literal("mcp_call"),
  id: identifier,
  server_label: identifier,
  name: identifier,
  arguments: longText,
  output: longText.nullish().transform((value) => value ?? null),
  error: longText.nullish().transform((value) => value ?? null),
  status: z
    .enum(["in_progress", "completed", "incomplete", "calling", "failed"])
    .nullish()
    .transform((value) => value ?? "completed"),
  approval_request_id: identifier.nullish().transform((value) => value ?? null),
});
const mcpApprovalRequestItem = z.object({
  type: z.literal("mcp_approval_request"),
  id: identifier,
  server_label: identifier,
  name: identifier,
  arguments: longText,
});

/** Item types OpenAI defines that need a tool lmhost does not run (yet): refused rather than ignored. */
export const UNSUPPORTED_INPUT_ITEM_TYPES = [
  "file_search_call",
  "computer_call",
  "computer_call_output",
  "web_search_call",
  "image_generation_call",
  "code_interpreter_call",
  "local_shell_call",
  "local_shell_call_output",
  "shell_call",
  "shell_call_output",
  "apply_patch_call",
  "apply_patch_call_output",
  "tool_search_call",
  "tool_search_output",
  "additional_tools",
  "compaction",
  "compaction_trigger",
  "program",
  "program_output",
] as const;
const unsupportedItem = refused(
  z.looseObject({ type: z.enum(UNSUPPORTED_INPUT_ITEM_TYPES) }),
  (item) => `input items of type '${item.type}' are not supported by lmhost yet`,
  ["type"],
);

/** `{role, content}` without a type is a message; `{id}` alone (or with `type: null`) an item reference. */
function inferItemType(value: unknown): unknown {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return value;
  const item = value as Record<string, unknown>;
  if (item.type !== undefined && item.type !== null) return value;
  if ("role" in item) return { ...item, type: "message" };
  if ("id" in item) return { ...item, type: "item_reference" };
  return value;
}

const inputItem = z.preprocess(
  inferItemType,
  z.discriminatedUnion("type", [
    messageItem,
    itemReference,
    functionCallItem,
    functionCallOutputItem,
    reasoningItem,
    customToolCallItem,
    customToolCallOutputItem,
    mcpApprovalResponseItem,
    mcpListToolsItem,
    mcpCallItem,
    mcpApprovalRequestItem,
    unsupportedItem,
  ]),
);

// ---- tools ----

const functionTool = z.looseObject({
  type: z.literal("function"),
  name: toolName,
  description: longText.nullish(),
  parameters: jsonObject.nullish(),
  strict: z.boolean().nullish(),
});
/** A custom tool's input format: free text, or text that must be a sentence of a Lark grammar / regex. */
const customToolFormat = z.discriminatedUnion("type", [
  z.looseObject({ type: z.literal("text") }),
  z.looseObject({
    type: z.literal("grammar"),
    syntax: z.enum(["lark", "regex"]),
    definition: z.string(),
  }),
]);
const customTool = z.looseObject({
  type: z.literal("custom"),
  name: toolName,
  description: longText.nullish(),
  format: customToolFormat.nullish(),
});
const namespaceTool = z.looseObject({
  type: z.literal("namespace"),
  name: toolName,
  description: longText.nullish(),
  tools: z.array(z.discriminatedUnion("type", [functionTool, customTool])).min(1),
});
const toolNames = z.array(identifier);
const mcpToolFilter = z.object({ tool_names: toolNames.nullish(), read_only: z.boolean().nullish() });
const mcpTool = z.looseObject({
  type: z.literal("mcp"),
  server_label: identifier,
  server_url: z.string().max(8_192).nullish(),
  connector_id: z.string().nullish(),
  server_description: longText.nullish(),
  headers: ownKeysRecord(z.string().max(65_536)).nullish(),
  authorization: z.string().max(65_536).nullish(),
  allowed_tools: z.union([toolNames, mcpToolFilter]).nullish(),
  require_approval: z
    .union([
      z.enum(["always", "never"]),
      z.object({ always: mcpToolFilter.nullish(), never: mcpToolFilter.nullish() }),
    ])
    .nullish(),
});
/** Tools OpenAI hosts; accepted and echoed so clients such as Codex work, never executed. */
export const HOSTED_TOOL_TYPES = [
  "file_search",
  "computer",
  "computer_use_preview",
  "web_search",
  "web_search_2025_08_26",
  "web_search_preview",
  "web_search_preview_2025_03_11",
  "code_interpreter",
  "programmatic_tool_calling",
  "image_generation",
  "local_shell",
  "shell",
  "tool_search",
  "apply_patch",
] as const;
export type HostedToolType = (typeof HOSTED_TOOL_TYPES)[number] | "computer_use";
/** A hosted tool (or a tool_choice forcing one): `computer_use` only appears as a tool_choice type. */
export function isHostedTool<Value extends { type: string }>(
  value: Value,
): value is Extract<Value, { type: HostedToolType }> {
  return value.type === "computer_use" || (HOSTED_TOOL_TYPES as readonly string[]).includes(value.type);
}
const hostedTool = z.looseObject({ type: z.enum(HOSTED_TOOL_TYPES) });
const tool = z.discriminatedUnion("type", [functionTool, customTool, namespaceTool, mcpTool, hostedTool]);

const toolChoice = z.union([
  z.enum(["none", "auto", "required"]),
  z.discriminatedUnion("type", [
    z.object({ type: z.literal("function"), name: identifier }),
    z.object({
      type: z.literal("allowed_tools"),
      mode: z.enum(["auto", "required"]),
      tools: z.array(z.looseObject({ type: z.string() })),
    }),
    z.object({ type: z.literal("custom"), name: identifier }),
    z.object({ type: z.literal("mcp"), server_label: identifier, name: z.string().nullish() }),
    z.object({
      type: z.enum([...HOSTED_TOOL_TYPES.filter((type) => type !== "web_search_2025_08_26"), "computer_use"]),
    }),
  ]),
]);

// ---- text, reasoning, metadata ----

const textFormat = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'"),
    schema: jsonObject,
    strict: z.boolean().nullish(),
    description: longText.nullish(),
  }),
]);
const text = z.object({
  format: textFormat.nullish(),
  verbosity: z.enum(["low", "medium", "high"]).nullish(),
});
const reasoningSummary = z.enum(["auto", "concise", "detailed"]);
const reasoning = z.object({
  effort: z.enum(["none", "minimal", "low", "medium", "high", "xhigh", "max"]).nullish(),
  summary: reasoningSummary.nullish(),
  generate_summary: reasoningSummary.nullish(),
  mode: z.string().nullish(),
  context: z.enum(["auto", "current_turn", "all_turns"]).nullish(),
});

export const METADATA_LIMITS = { pairs: 16, keyLength: 64, valueLength: 512 } as const;
const metadata = ownKeysRecord(z.string()).superRefine((pairs, context) => {
  const keys = Object.keys(pairs);
  if (keys.length > METADATA_LIMITS.pairs) {
    context.addIssue({
      code: "custom",
      message: `at most ${METADATA_LIMITS.pairs} key-value pairs are allowed, got ${keys.length}`,
    });
  }
  for (const key of keys) {
    if (key.length > METADATA_LIMITS.keyLength) {
      context.addIssue({
        code: "custom",
        message: `keys may be at most ${METADATA_LIMITS.keyLength} characters, '${key.slice(0, 80)}' has ${key.length}`,
      });
    } else if ((pairs[key] ?? "").length > METADATA_LIMITS.valueLength) {
      context.addIssue({
        code: "custom",
        path: [key],
        message: `values may be at most ${METADATA_LIMITS.valueLength} characters, got ${(pairs[key] ?? "").length}`,
      });
    }
  }
});

/**
 * OpenAI's `IncludeEnum` (every value it lists): anything else is a 400 naming `include[i]`. The values
 * for hosted tools and images concern output lmhost never produces, so they add nothing; logprobs cannot
 * be produced and are refused in to-response-request.ts; `reasoning.encrypted_content` (Codex sends it)
 * is accepted, though lmhost's reasoning items carry readable text rather than encrypted content.
 */
export const INCLUDABLE = [
  "file_search_call.results",
  "web_search_call.results",
  "web_search_call.action.sources",
  "message.input_image.image_url",
  "computer_call_output.output.image_url",
  "code_interpreter_call.outputs",
  "reasoning.encrypted_content",
  "message.output_text.logprobs",
] as const;

/** The largest `seed` (llama.cpp's sampler seed is an unsigned 32-bit integer). */
export const MAX_SEED = 0xffff_ffff;

/** Accepted only as absent or null; anything else is refused with a reason in to-response-request.ts. */
const refusedUnlessNull = z.unknown().optional();

/** The properties both /v1/responses and /v1/responses/input_tokens take. */
const conversationShape = {
  model: identifier,
  input: z.union([longText, z.array(inputItem)]).nullish(),
  instructions: longText.nullish(),
  previous_response_id: identifier.nullish(),
  tools: z.array(tool).nullish(),
  tool_choice: toolChoice.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  text: text.nullish(),
  reasoning: reasoning.nullish(),
  truncation: z.enum(["auto", "disabled"]).nullish(),
  conversation: refusedUnlessNull,
};

export const createResponseSchema = z.object({
  ...conversationShape,
  background: z.boolean().nullish(),
  context_management: refusedUnlessNull,
  include: z.array(z.enum(INCLUDABLE)).nullish(),
  max_output_tokens: z.number().int().min(1).nullish(),
  max_tool_calls: z.number().int().min(0).nullish(),
  metadata: metadata.nullish(),
  moderation: refusedUnlessNull,
  prompt: refusedUnlessNull,
  prompt_cache_key: z.string().max(MAX_IDENTIFIER_CHARACTERS).nullish(),
  prompt_cache_options: z.looseObject({}).nullish(),
  prompt_cache_retention: z.enum(["in_memory", "24h"]).nullish(),
  safety_identifier: z.string().max(64).nullish(),
  service_tier: z.enum(["auto", "default", "flex", "scale", "priority", "fast"]).nullish(),
  store: z.boolean().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_obfuscation: z.boolean().nullish() }).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  user: z.string().max(MAX_IDENTIFIER_CHARACTERS).nullish(),
  // Open Responses
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  // Codex CLI sends its own bookkeeping here; it has no effect on generation.
  client_metadata: jsonObject.nullish(),
  // LM Studio: keep the model loaded this many seconds after the request.
  ttl: z.number().positive().nullish(),
  // lmhost (as in Chat Completions, llama.cpp and LM Studio): the sampler's seed; without it every request
  // draws a random one, so identical requests differ and a given seed reproduces its output.
  seed: z.number().int().min(0).max(MAX_SEED).nullish(),
});

/** `POST /v1/responses/input_tokens` (OpenAI's TokenCountsBody). */
export const inputTokensSchema = z.object({ ...conversationShape, personality: z.string().nullish() });

export type CreateResponseBody = z.output<typeof createResponseSchema>;
export type InputTokensBody = z.output<typeof inputTokensSchema>;
export type ParsedInputItem = z.output<typeof inputItem>;
export type ParsedTool = z.output<typeof tool>;
export type ParsedToolChoice = z.output<typeof toolChoice>;
export type ParsedTextFormat = z.output<typeof textFormat>;
