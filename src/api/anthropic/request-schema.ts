/**
 * The zod (v4) schemas of Anthropic's `POST /v1/messages` and `POST /v1/messages/count_tokens` bodies, as
 * @anthropic-ai/sdk 1.10.0 types them (`MessageCreateParamsBase`, `MessageCountTokensParams`), plus the
 * sampling fields older SDKs and Claude Code send (`temperature`, `top_p`, `top_k`) and two lmhost
 * extensions (`seed`, LM Studio's `ttl`). Unknown top-level fields are refused by name, as Anthropic refuses
 * "extra inputs". Content blocks are only checked for a string `type` here: each block is validated against
 * its own schema in to-engine-request.ts, so an error names `messages[i].content[j].field` exactly and a
 * block type lmhost cannot honour (images, documents, server tool results) is refused by name.
 */
import { z } from "zod";

/** The longest text one field may hold (as /v1/responses: the body limit caps the sum). */
export const MAX_TEXT_CHARACTERS = 10_485_760;
const longText = z.string().max(MAX_TEXT_CHARACTERS);
const identifier = z.string().min(1).max(1_024);
/** Anthropic's tool name pattern, widened to 128 characters as the newest models allow. */
export const toolName = z
  .string()
  .regex(/^[a-zA-Z0-9_-]{1,128}$/, "must be 1-128 letters, digits, '_' or '-'");

const anyBlock = z.looseObject({ type: z.string() });
const cacheControl = z.looseObject({ type: z.string() }).nullish();

export const textBlockSchema = z.looseObject({
  type: z.literal("text"),
  text: longText,
  cache_control: cacheControl,
  citations: z.array(z.unknown()).nullish(),
});
export const thinkingBlockSchema = z.looseObject({
  type: z.literal("thinking"),
  thinking: longText,
  signature: z.string().max(MAX_TEXT_CHARACTERS),
});
export const redactedThinkingBlockSchema = z.looseObject({
  type: z.literal("redacted_thinking"),
  data: z.string().max(MAX_TEXT_CHARACTERS),
});
export const toolUseBlockSchema = z.looseObject({
  type: z.literal("tool_use"),
  id: identifier,
  name: toolName,
  input: z.record(z.string(), z.unknown()),
  cache_control: cacheControl,
});
export const toolResultBlockSchema = z.looseObject({
  type: z.literal("tool_result"),
  tool_use_id: identifier,
  content: z.union([longText, z.array(anyBlock)]).optional(),
  is_error: z.boolean().optional(),
  cache_control: cacheControl,
});

const messageParam = z.looseObject({
  role: z.enum(["user", "assistant", "system"]),
  content: z.union([longText, z.array(anyBlock)]),
});

/** A client tool (`type` absent, null or "custom") or one of Anthropic's server tools (any other `type`). */
const toolParam = z.looseObject({
  type: z.string().nullish(),
  name: toolName,
  description: longText.optional(),
  input_schema: z.looseObject({ type: z.literal("object") }).optional(),
  strict: z.boolean().optional(),
  cache_control: cacheControl,
});

const toolChoice = z.discriminatedUnion("type", [
  z.looseObject({ type: z.literal("auto"), disable_parallel_tool_use: z.boolean().optional() }),
  z.looseObject({ type: z.literal("any"), disable_parallel_tool_use: z.boolean().optional() }),
  z.looseObject({
    type: z.literal("tool"),
    name: toolName,
    disable_parallel_tool_use: z.boolean().optional(),
  }),
  z.looseObject({ type: z.literal("none") }),
]);

const thinking = z.discriminatedUnion("type", [
  z.looseObject({
    type: z.literal("enabled"),
    budget_tokens: z.int().min(1),
    display: z.enum(["summarized", "omitted"]).nullish(),
  }),
  z.looseObject({ type: z.literal("disabled") }),
  z.looseObject({ type: z.literal("adaptive"), display: z.enum(["summarized", "omitted"]).nullish() }),
]);

const outputConfig = z.looseObject({
  effort: z.enum(["low", "medium", "high", "xhigh", "max"]).nullish(),
  format: z
    .looseObject({ type: z.literal("json_schema"), schema: z.record(z.string(), z.unknown()) })
    .nullish(),
});

/** What both endpoints read: the prompt (system, messages, tools) and what shapes the output. */
const promptFields = {
  model: z.string().min(1).max(1_024),
  messages: z.array(messageParam),
  system: z.union([longText, z.array(anyBlock)]).optional(),
  tools: z.array(toolParam).optional(),
  tool_choice: toolChoice.optional(),
  thinking: thinking.optional(),
  output_config: outputConfig.optional(),
  // Prompt caching is automatic here (KV-cache reuse); the hint is accepted and changes nothing.
  cache_control: cacheControl,
  speed: z.enum(["standard", "fast"]).nullish(),
  // The beta API's older name of output_config.format.
  output_format: outputConfig.shape.format,
  // Beta: server-side clearing of old tool results. Accepted and ignored (the prompt is sent as it is).
  context_management: z.looseObject({}).nullish(),
  // Refused in to-engine-request.ts when set (MCP connector, code execution containers).
  mcp_servers: z.unknown().optional(),
  container: z.unknown().optional(),
};

export const createMessageSchema = z.object({
  ...promptFields,
  max_tokens: z.int().min(1),
  stop_sequences: z.array(z.string().min(1).max(1_024)).max(1_024).optional(),
  stream: z.boolean().optional(),
  temperature: z.number().min(0).max(1).optional(),
  top_p: z.number().min(0).max(1).optional(),
  top_k: z.int().min(0).optional(),
  metadata: z.looseObject({ user_id: z.string().max(1_024).nullish() }).optional(),
  service_tier: z.enum(["auto", "standard_only"]).optional(),
  // Accepted and ignored: they name Anthropic's platform (data residency, diagnostics, workspaces).
  inference_geo: z.string().nullish(),
  diagnostics: z.looseObject({}).nullish(),
  user_profile_id: z.string().optional(),
  workspace_id: z.string().optional(),
  // lmhost extensions: a sampler seed, and LM Studio's per-request model TTL in seconds.
  seed: z.int().min(0).max(0xffff_ffff).optional(),
  ttl: z.int().min(1).optional(),
});

export const countTokensSchema = z.object({ ...promptFields });

export type CreateMessageBody = z.output<typeof createMessageSchema>;
export type CountTokensBody = z.output<typeof countTokensSchema>;
export type PromptBody = CountTokensBody & Partial<CreateMessageBody>;
export type MessageParamBody = CreateMessageBody["messages"][number];
export type ToolParamBody = NonNullable<CreateMessageBody["tools"]>[number];
export type ToolChoiceBody = NonNullable<CreateMessageBody["tool_choice"]>;
export type ThinkingBody = NonNullable<CreateMessageBody["thinking"]>;
