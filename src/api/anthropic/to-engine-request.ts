/**
 * Translates a validated Anthropic Messages body into the engine's neutral EngineRequest: `system` and
 * `messages` (text, tool_use, tool_result, thinking blocks) into conversation items, `tools` /
 * `tool_choice` into function definitions forced by grammar, `thinking` / `output_config.effort` into the
 * thinking switch and thought budget, sampling and `stop_sequences`. What lmhost cannot honour is a 400
 * naming the field (images, documents, server tool results, a prefilled assistant turn, MCP servers,
 * containers); nothing is dropped in a way that changes meaning, except `redacted_thinking` blocks (another
 * server's encrypted reasoning, which no local model could read: dropped) and Anthropic's server tools
 * (accepted so clients that always send them work, never offered to the model), as the README says.
 */
import { randomBytes } from "node:crypto";
import type { z } from "zod";
import type {
  ConversationItem,
  EngineRequest,
  FunctionToolDefinition,
  ResponseFormat,
  SamplingOptions,
  ToolChoice,
} from "../../engine/types.js";
import type { ReasoningEffortLevel } from "../../engine/reasoning-budgets.js";
import { openReasoning } from "../../responses/reasoning-seal.js";
import { ApiError, assertNever } from "../../shared/errors.js";
import { assertUsableSchema } from "../openai/responses/json-schema-check.js";
import { toValidationError } from "../openai/responses/validation-errors.js";
import {
  redactedThinkingBlockSchema,
  textBlockSchema,
  thinkingBlockSchema,
  toolResultBlockSchema,
  toolUseBlockSchema,
  type MessageParamBody,
  type PromptBody,
  type ToolChoiceBody,
  type ToolParamBody,
} from "./request-schema.js";

/** What the thinking blocks of the answer show: the text, nothing but the signature, or no block at all. */
export type ThinkingOutput = "text" | "omitted" | "none";

export interface MessagesRequest {
  model: string;
  engineRequest: EngineRequest;
  thinkingOutput: ThinkingOutput;
}

/** Associated data of thinking signatures (reasoning-seal.ts binds a blob to it). */
export const THINKING_SEAL_ID = "anthropic-thinking";

/** Anthropic-style tool use ids. */
export function newToolUseId(): string {
  return `toolu_${randomBytes(12).toString("hex")}`;
}

function unsupported(param: string, message: string): ApiError {
  return ApiError.invalid(message, param, "unsupported_parameter");
}

type Path = (string | number)[];

function param(path: Path): string {
  return path
    .map((segment, index) =>
      typeof segment === "number" ? `[${segment}]` : index === 0 ? segment : `.${segment}`,
    )
    .join("");
}

/** Validates one content block against its own schema; errors name the field under `path`. */
function parseBlock<Schema extends z.ZodType>(schema: Schema, block: unknown, path: Path): z.output<Schema> {
  const parsed = schema.safeParse(block, { reportInput: true });
  if (parsed.success) return parsed.data;
  throw toValidationError(parsed.error.issues.map((issue) => ({ ...issue, path: [...path, ...issue.path] })));
}

const UNSUPPORTED_BLOCKS: Record<string, string> = {
  image: "lmhost serves text-only models: image blocks are not supported.",
  document: "Document blocks are not supported by lmhost; send the text as a text block.",
  search_result: "Search result blocks are not supported by lmhost; send the text as a text block.",
  container_upload: "Container uploads are not supported: lmhost has no code execution containers.",
};

function refuseBlock(type: string, path: Path, role: string): never {
  const message =
    UNSUPPORTED_BLOCKS[type] ??
    (["thinking", "redacted_thinking", "tool_use"].includes(type)
      ? `A '${type}' block belongs in an assistant message, not in a ${role} message.`
      : type === "tool_result"
        ? `A 'tool_result' block belongs in a user message, not in a ${role} message.`
        : type === "text"
          ? "Invalid text block."
          : `Content blocks of type '${type}' are not supported by lmhost (server tools do not run here).`);
  throw unsupported(param([...path, "type"]), message);
}

interface ConversionState {
  items: ConversationItem[];
  /** Tool names by tool_use id, for the results. */
  toolNames: Map<string, string>;
  /** tool_use ids still waiting for their tool_result, with where they were. */
  pendingResults: Map<string, string>;
  reasoningKey: Buffer | undefined;
}

function systemText(system: PromptBody["system"], path: Path): string {
  if (system === undefined) return "";
  if (typeof system === "string") return system;
  return system
    .map((block, index) => {
      if (block.type !== "text") refuseBlock(block.type, [...path, index], "system");
      return parseBlock(textBlockSchema, block, [...path, index]).text;
    })
    .join("\n");
}

/** A tool result's content as the text the model reads (text blocks joined; anything else refused). */
function toolResultText(content: string | { type: string }[] | undefined, path: Path): string {
  if (content === undefined) return "";
  if (typeof content === "string") return content;
  return content
    .map((block, index) => {
      if (block.type !== "text") refuseBlock(block.type, [...path, index], "tool_result");
      return parseBlock(textBlockSchema, block, [...path, index]).text;
    })
    .join("\n");
}

function convertMessage(message: MessageParamBody, index: number, state: ConversionState): void {
  const path: Path = ["messages", index];
  const role = message.role;
  if (typeof message.content === "string") {
    state.items.push({ type: "message", role, text: message.content });
    return;
  }
  if (role === "system") {
    state.items.push({ type: "message", role, text: systemText(message.content, [...path, "content"]) });
    return;
  }
  let text: string[] = [];
  const flushText = () => {
    if (text.length > 0) state.items.push({ type: "message", role, text: text.join("\n") });
    text = [];
  };
  message.content.forEach((block, blockIndex) => {
    const blockPath: Path = [...path, "content", blockIndex];
    switch (block.type) {
      case "text":
        text.push(parseBlock(textBlockSchema, block, blockPath).text);
        return;
      case "thinking": {
        if (role !== "assistant") refuseBlock(block.type, blockPath, role);
        const thinking = parseBlock(thinkingBlockSchema, block, blockPath);
        // A block returned with `display: "omitted"` carries its text only in the signature (sealed here).
        const restored =
          thinking.thinking === "" && state.reasoningKey !== undefined
            ? openReasoning(state.reasoningKey, THINKING_SEAL_ID, thinking.signature)
            : undefined;
        flushText();
        state.items.push({ type: "reasoning", text: restored ?? thinking.thinking });
        return;
      }
      case "redacted_thinking":
        if (role !== "assistant") refuseBlock(block.type, blockPath, role);
        parseBlock(redactedThinkingBlockSchema, block, blockPath);
        return;
      case "tool_use": {
        if (role !== "assistant") refuseBlock(block.type, blockPath, role);
        const use = parseBlock(toolUseBlockSchema, block, blockPath);
        if (state.toolNames.has(use.id)) {
          throw ApiError.invalid(`Duplicate tool_use id '${use.id}'.`, param([...blockPath, "id"]));
        }
        flushText();
        state.toolNames.set(use.id, use.name);
        state.pendingResults.set(use.id, param(blockPath));
        state.items.push({
          type: "function-call",
          callId: use.id,
          name: use.name,
          arguments: JSON.stringify(use.input),
        });
        return;
      }
      case "tool_result": {
        if (role !== "user") refuseBlock(block.type, blockPath, role);
        const result = parseBlock(toolResultBlockSchema, block, blockPath);
        const name = state.toolNames.get(result.tool_use_id);
        if (name === undefined || !state.pendingResults.has(result.tool_use_id)) {
          throw ApiError.invalid(
            `tool_result names tool_use_id '${result.tool_use_id}', which is not a tool_use block of the assistant message before it still waiting for its result.`,
            param([...blockPath, "tool_use_id"]),
          );
        }
        state.pendingResults.delete(result.tool_use_id);
        flushText();
        const output = toolResultText(result.content, [...blockPath, "content"]);
        state.items.push({
          type: "function-result",
          callId: result.tool_use_id,
          name,
          // The model's only way to tell a failed tool from a result.
          output: result.is_error === true ? `Error: ${output}` : output,
        });
        return;
      }
      default:
        refuseBlock(block.type, blockPath, role);
    }
  });
  flushText();
}

function convertMessages(body: PromptBody, reasoningKey: Buffer | undefined): ConversationItem[] {
  if (body.messages.length === 0) {
    throw ApiError.invalid("messages: at least one message is required.", "messages");
  }
  const state: ConversionState = {
    items: [],
    toolNames: new Map(),
    pendingResults: new Map(),
    reasoningKey,
  };
  const system = systemText(body.system, ["system"]);
  if (system !== "") state.items.push({ type: "message", role: "system", text: system });
  body.messages.forEach((message, index) => {
    // Every tool_use must be answered by a tool_result in the very next message, as in Anthropic's API.
    if (state.pendingResults.size > 0 && message.role !== "user") {
      const [id, where] = [...state.pendingResults][0]!;
      throw ApiError.invalid(
        `tool_use id '${id}' (${where}) has no tool_result block in the user message right after it.`,
        `messages[${index}]`,
      );
    }
    convertMessage(message, index, state);
    if (message.role === "user" && state.pendingResults.size > 0) {
      const [id, where] = [...state.pendingResults][0]!;
      throw ApiError.invalid(
        `tool_use id '${id}' (${where}) has no tool_result block in this user message, which must answer it.`,
        `messages[${index}].content`,
      );
    }
  });
  const last = body.messages.at(-1);
  if (last?.role === "assistant") {
    throw unsupported(
      `messages[${body.messages.length - 1}]`,
      "lmhost does not continue a prefilled assistant message: the last message must be a user message.",
    );
  }
  return state.items;
}

interface ConvertedTools {
  definitions: FunctionToolDefinition[];
}

/** Client tools go to the engine; server tools (`type` other than "custom") are accepted and never run. */
function convertTools(tools: readonly ToolParamBody[]): ConvertedTools {
  const definitions: FunctionToolDefinition[] = [];
  tools.forEach((tool, index) => {
    const path = `tools[${index}]`;
    const clientTool = tool.type === undefined || tool.type === null || tool.type === "custom";
    if (!clientTool) return;
    if (tool.input_schema === undefined) {
      throw ApiError.invalid(`Missing required parameter: '${path}.input_schema'.`, `${path}.input_schema`);
    }
    assertUsableSchema(tool.input_schema, `${path}.input_schema`);
    if (definitions.some((definition) => definition.name === tool.name)) {
      throw ApiError.invalid(`Duplicate tool name '${tool.name}' in tools.`, `${path}.name`);
    }
    definitions.push({
      name: tool.name,
      ...(tool.description === undefined ? {} : { description: tool.description }),
      parameters: tool.input_schema,
      ...(tool.strict === true ? { strict: true } : {}),
    });
  });
  return { definitions };
}

function convertToolChoice(
  choice: ToolChoiceBody | undefined,
  tools: ConvertedTools,
): { toolChoice?: ToolChoice; parallelToolCalls?: boolean } {
  if (choice === undefined) return {};
  const parallel = "disable_parallel_tool_use" in choice && choice.disable_parallel_tool_use === true;
  const parallelOption = parallel ? { parallelToolCalls: false } : {};
  const requireTools = () => {
    if (tools.definitions.length === 0) {
      throw ApiError.invalid(
        `tool_choice ${JSON.stringify(choice.type)} requires at least one client tool (with an input_schema) in tools.`,
        "tool_choice",
      );
    }
  };
  switch (choice.type) {
    case "auto":
      return { toolChoice: "auto", ...parallelOption };
    case "none":
      return { toolChoice: "none" };
    case "any":
      requireTools();
      return { toolChoice: "required", ...parallelOption };
    case "tool":
      if (!tools.definitions.some((definition) => definition.name === choice.name)) {
        throw ApiError.invalid(
          `tool_choice names '${choice.name}', which is not a client tool in tools.`,
          "tool_choice.name",
        );
      }
      return { toolChoice: { name: choice.name }, ...parallelOption };
    default:
      return assertNever(choice, "tool choice");
  }
}

type Effort = NonNullable<NonNullable<PromptBody["output_config"]>["effort"]>;
function toEngineEffort(effort: Effort): ReasoningEffortLevel {
  return effort === "max" ? "xhigh" : effort;
}

function convertFormat(
  format: NonNullable<PromptBody["output_config"]>["format"],
  param: string,
): ResponseFormat | undefined {
  if (format === undefined || format === null) return undefined;
  assertUsableSchema(format.schema, `${param}.schema`);
  // Best effort: keywords the grammar cannot enforce are dropped, the rest is enforced.
  return { type: "json_schema", name: "output", schema: format.schema };
}

function refuseWhatCannotBeHonoured(body: PromptBody): void {
  if (body.mcp_servers !== undefined && body.mcp_servers !== null) {
    throw unsupported(
      "mcp_servers",
      "The MCP connector is not supported by lmhost on /v1/messages; run the tools in the client.",
    );
  }
  if (body.container !== undefined && body.container !== null) {
    throw unsupported("container", "Containers are not supported: lmhost runs no code execution tools.");
  }
}

/** The engine request of a Messages (or count_tokens) body; `reasoningKey` opens omitted thinking. */
export function toMessagesRequest(body: PromptBody, reasoningKey?: Buffer): MessagesRequest {
  refuseWhatCannotBeHonoured(body);
  const items = convertMessages(body, reasoningKey);
  const tools = convertTools(body.tools ?? []);
  const choice = convertToolChoice(body.tool_choice, tools);
  const engineRequest: EngineRequest = { model: body.model, items };
  if (tools.definitions.length > 0) engineRequest.tools = tools.definitions;
  if (choice.toolChoice !== undefined) engineRequest.toolChoice = choice.toolChoice;
  if (choice.parallelToolCalls !== undefined) engineRequest.parallelToolCalls = choice.parallelToolCalls;

  let thinkingOutput: ThinkingOutput = "text";
  const effort = body.output_config?.effort;
  if (effort !== undefined && effort !== null) engineRequest.reasoningEffort = toEngineEffort(effort);
  const thinking = body.thinking;
  switch (thinking?.type) {
    case undefined:
      break;
    case "enabled":
      engineRequest.reasoningBudgetTokens = thinking.budget_tokens;
      if (thinking.display === "omitted") thinkingOutput = "omitted";
      break;
    case "adaptive":
      if (thinking.display === "omitted") thinkingOutput = "omitted";
      break;
    case "disabled":
      engineRequest.reasoningEffort = "none";
      thinkingOutput = "none";
      break;
    default:
      assertNever(thinking, "thinking");
  }
  if (body.output_format != null && body.output_config?.format != null) {
    throw ApiError.invalid("Send output_config.format or output_format, not both.", "output_format");
  }
  const format =
    body.output_format != null
      ? convertFormat(body.output_format, "output_format")
      : convertFormat(body.output_config?.format, "output_config.format");
  if (format !== undefined) engineRequest.responseFormat = format;

  if (body.max_tokens !== undefined) {
    const sampling: SamplingOptions = { maxTokens: body.max_tokens, temperature: body.temperature ?? 1 };
    if (body.top_p !== undefined) sampling.topP = body.top_p;
    if (body.top_k !== undefined && body.top_k > 0) sampling.topK = body.top_k;
    if (body.stop_sequences !== undefined && body.stop_sequences.length > 0)
      sampling.stop = body.stop_sequences;
    if (body.seed !== undefined) sampling.seed = body.seed;
    engineRequest.sampling = sampling;
  }
  if (body.ttl !== undefined) engineRequest.ttlSeconds = body.ttl;
  return { model: body.model, engineRequest, thinkingOutput };
}
