/**
 * Translates a validated `POST /v1/responses` body into the core's ResponseRequest: engine generation
 * options (sampling, response format, function and custom tools, tool choice, reasoning effort, truncation, ttl)
 * and the echo every Response object repeats. Fields lmhost cannot honour are refused here with a 400
 * naming the field; nothing is dropped in a way that changes meaning.
 */
import type {
  FunctionToolDefinition,
  ResponseFormat,
  SamplingOptions,
  ToolChoice,
} from "../../../engine/types.js";
import type { FunctionName, ResponseRequest } from "../../../responses/request-params.js";
import type { McpServerRequest } from "../../../tools/mcp/types.js";
import { toMcpServer, type McpPolicy } from "./mcp-tool.js";
import { qualifiedFunctionName } from "../../../responses/request-params.js";
import type { ReasoningOutput } from "../../../responses/reasoning-output.js";
import type {
  InputItem,
  JsonObject,
  JsonValue,
  ResponseEcho,
  TextFormat,
} from "../../../responses/wire-types.js";
import { customToolGrammarToGbnf, LarkError } from "../../../engine/llama/grammar/lark.js";
import { RegexError } from "../../../engine/llama/grammar/regex.js";
import { ApiError, assertNever } from "../../../shared/errors.js";
import { MAX_SCHEMA_DEPTH, assertUsableSchema, nestsDeeperThan } from "./json-schema-check.js";
import {
  isHostedTool,
  type CreateResponseBody,
  type ParsedTextFormat,
  type ParsedTool,
  type ParsedToolChoice,
} from "./request-schema.js";

/** OpenAI's defaults, passed to the engine explicitly so the echoed values are the ones used. */
const DEFAULT_TEMPERATURE = 1;
const DEFAULT_TOP_P = 1;

function unsupported(param: string, message: string): ApiError {
  return ApiError.invalid(message, param, "unsupported_parameter");
}

function refuseWhatCannotBeHonoured(body: CreateResponseBody): void {
  const refusals: [keyof CreateResponseBody, string][] = [
    [
      "conversation",
      "Conversations are not supported by lmhost; chain responses with previous_response_id instead.",
    ],
    [
      "prompt",
      "Reusable prompts (templates stored on OpenAI's platform) are not supported; send instructions and input.",
    ],
    ["moderation", "Moderation is not supported by lmhost."],
    [
      "context_management",
      'Server-side context management (compaction) is not supported; use truncation: "auto".',
    ],
  ];
  for (const [field, message] of refusals) {
    if (body[field] !== undefined && body[field] !== null) throw unsupported(field, message);
  }
  if ((body.top_logprobs ?? 0) > 0) {
    throw unsupported(
      "top_logprobs",
      "This engine cannot return log probabilities: top_logprobs must be 0 or absent.",
    );
  }
  const logprobsIndex = (body.include ?? []).indexOf("message.output_text.logprobs");
  if (logprobsIndex >= 0) {
    throw unsupported(
      `include[${logprobsIndex}]`,
      "This engine cannot return log probabilities ('message.output_text.logprobs').",
    );
  }
  if (body.background === true && body.store === false) {
    throw ApiError.invalid(
      "Background responses must be stored: background: true requires store: true.",
      "background",
    );
  }
}

export interface ToResponseRequestOptions {
  /** Absent: MCP tools are not available on this server (a 400 naming the tool). */
  mcp?: McpPolicy;
  /** false: the server makes no reasoning summaries (`reasoningSummary: "none"`); default true. */
  reasoningSummaries?: boolean;
}

interface ConvertedTools {
  definitions: FunctionToolDefinition[];
  functionNames: Map<string, FunctionName>;
  mcpServers: McpServerRequest[];
  echo: JsonObject[];
}

function toDefinition(
  tool: {
    name: string;
    description?: string | null | undefined;
    parameters?: Record<string, unknown> | null | undefined;
    strict?: boolean | null | undefined;
  },
  param: string,
  namespace?: string,
): FunctionToolDefinition {
  const definition: FunctionToolDefinition = { name: qualifiedFunctionName(tool.name, namespace) };
  if (tool.description !== undefined && tool.description !== null) definition.description = tool.description;
  if (tool.parameters !== undefined && tool.parameters !== null) {
    assertUsableSchema(tool.parameters, `${param}.parameters`);
    definition.parameters = tool.parameters;
  }
  // strict: true promises arguments that validate, so keywords the grammar cannot enforce are a 400.
  if (tool.strict === true) definition.strict = true;
  return definition;
}

type ParsedCustomTool = Extract<ParsedTool, { type: "custom" }>;

/**
 * A custom (freeform) tool → an engine definition. A grammar format is converted once here (the pure
 * converter, no model) so a definition that cannot be converted is a 400 naming
 * `tools[i].format.definition` and the construct, before any work.
 */
function toCustomDefinition(
  tool: ParsedCustomTool,
  param: string,
  namespace?: string,
): FunctionToolDefinition {
  const definition: FunctionToolDefinition = {
    name: qualifiedFunctionName(tool.name, namespace),
    freeform: {},
  };
  if (tool.description !== undefined && tool.description !== null) definition.description = tool.description;
  const format = tool.format ?? undefined;
  if (format?.type === "grammar") {
    try {
      customToolGrammarToGbnf(format.syntax, format.definition);
    } catch (error) {
      if (error instanceof LarkError || error instanceof RegexError) {
        const what = format.syntax === "lark" ? "Lark grammar" : "regular expression";
        throw ApiError.invalid(
          `Invalid '${param}.format.definition': the ${what} cannot be used: ${error.message}.`,
          `${param}.format.definition`,
        );
      }
      throw error;
    }
    definition.freeform = { grammar: { syntax: format.syntax, definition: format.definition } };
  }
  return definition;
}

/**
 * Function and custom tools (also inside namespace tools) go to the engine; all tools are echoed. Custom
 * tools' calls come back as `custom_tool_call` items (FunctionName.custom).
 */
function convertTools(tools: readonly ParsedTool[], policy: McpPolicy | undefined): ConvertedTools {
  const converted: ConvertedTools = { definitions: [], functionNames: new Map(), mcpServers: [], echo: [] };
  const add = (definition: FunctionToolDefinition, wireName: FunctionName, param: string) => {
    if (converted.functionNames.has(definition.name)) {
      throw ApiError.invalid(`Duplicate function name '${definition.name}' in tools.`, param);
    }
    converted.functionNames.set(definition.name, wireName);
    converted.definitions.push(definition);
  };
  tools.forEach((tool, index) => {
    const param = `tools[${index}]`;
    if (isHostedTool(tool)) {
      // OpenAI-hosted tools (web_search, file_search, ...): accepted so clients like Codex work, never run.
      converted.echo.push(tool as JsonObject);
      return;
    }
    switch (tool.type) {
      case "function":
        add(toDefinition(tool, param), { name: tool.name }, `${param}.name`);
        converted.echo.push({
          ...(tool as JsonObject),
          description: tool.description ?? null,
          parameters: (tool.parameters ?? null) as JsonValue,
          strict: tool.strict ?? null,
        });
        break;
      case "namespace":
        tool.tools.forEach((inner, innerIndex) => {
          const innerParam = `${param}.tools[${innerIndex}]`;
          if (inner.type === "function") {
            add(
              toDefinition(inner, innerParam, tool.name),
              { name: inner.name, namespace: tool.name },
              `${innerParam}.name`,
            );
          } else {
            add(
              toCustomDefinition(inner, innerParam, tool.name),
              { name: inner.name, namespace: tool.name, custom: true },
              `${innerParam}.name`,
            );
          }
        });
        converted.echo.push(tool as JsonObject);
        break;
      case "custom":
        add(toCustomDefinition(tool, param), { name: tool.name, custom: true }, `${param}.name`);
        converted.echo.push(tool as JsonObject);
        break;
      case "mcp": {
        assertNotTooDeep(tool, param, "tool");
        const server = toMcpServer(tool, param, policy);
        if (converted.mcpServers.some((other) => other.serverLabel === server.serverLabel))
          throw ApiError.invalid(
            `Duplicate MCP server_label '${server.serverLabel}' in tools.`,
            `${param}.server_label`,
          );
        converted.mcpServers.push(server);
        // Credentials reach the server only: never echoed, so never stored either.
        const { headers: _headers, authorization: _authorization, ...echoed } = tool;
        converted.echo.push(echoed as JsonObject);
        break;
      }
      default:
        assertNever(tool, "tool");
    }
  });
  // Function parameters were checked above (naming `tools[i].parameters`); what else a tool carries is
  // echoed, i.e. cloned and serialised recursively, so it may not nest deeper than a schema could.
  tools.forEach((tool, index) => assertNotTooDeep(tool, `tools[${index}]`, "tool"));
  return converted;
}

/** A tool or tool_choice object: its schema (at most MAX_SCHEMA_DEPTH) plus the few levels around it. */
const MAX_TOOL_DEPTH = MAX_SCHEMA_DEPTH + 4;

function assertNotTooDeep(value: unknown, param: string, what: string): void {
  if (nestsDeeperThan(value, MAX_TOOL_DEPTH)) {
    throw ApiError.invalid(
      `Invalid '${param}': the ${what} is nested more than ${MAX_TOOL_DEPTH} levels deep.`,
      param,
    );
  }
}

interface ConvertedToolChoice {
  toolChoice?: ToolChoice;
  mcpToolChoice?: { serverLabel: string; name?: string };
  /** The function definitions the engine may use (allowed_tools narrows them). */
  definitions: FunctionToolDefinition[];
}

/** The engine name of the function (or, with `custom`, the custom tool) a tool choice names. */
function findFunction(tools: ConvertedTools, name: string, custom = false): string | undefined {
  const ofKind = [...tools.functionNames].filter(([, wireName]) => (wireName.custom === true) === custom);
  if (ofKind.some(([engineName]) => engineName === name)) return name;
  const matches = ofKind.filter(([, wireName]) => wireName.name === name);
  return matches.length === 1 ? matches[0]?.[0] : undefined;
}

function convertToolChoice(
  choice: ParsedToolChoice | null | undefined,
  tools: ConvertedTools,
): ConvertedToolChoice {
  const requireFunctions = (param: string) => {
    if (tools.definitions.length === 0) {
      throw ApiError.invalid("tool_choice requires at least one function or custom tool in `tools`.", param);
    }
  };
  if (choice === undefined || choice === null || choice === "auto") return { definitions: tools.definitions };
  assertNotTooDeep(choice, "tool_choice", "tool choice");
  if (choice === "none") return { toolChoice: "none", definitions: tools.definitions };
  if (choice === "required") {
    requireFunctions("tool_choice");
    return { toolChoice: "required", definitions: tools.definitions };
  }
  if (isHostedTool(choice)) {
    throw unsupported(
      "tool_choice.type",
      `Forcing the hosted tool '${choice.type}' is not supported: lmhost does not run OpenAI's hosted tools.`,
    );
  }
  switch (choice.type) {
    case "function": {
      const name = findFunction(tools, choice.name);
      if (name === undefined) {
        throw ApiError.invalid(
          `tool_choice names '${choice.name}', which is not a function in tools.`,
          "tool_choice.name",
        );
      }
      return { toolChoice: { name }, definitions: tools.definitions };
    }
    case "allowed_tools": {
      const allowed = new Set<string>();
      choice.tools.forEach((entry, index) => {
        const name =
          (entry.type === "function" || entry.type === "custom") && typeof entry.name === "string"
            ? findFunction(tools, entry.name, entry.type === "custom")
            : undefined;
        if (name === undefined) {
          throw ApiError.invalid(
            'allowed_tools may only list function and custom tools from `tools` ({type: "function" | "custom", name}).',
            `tool_choice.tools[${index}]`,
          );
        }
        allowed.add(name);
      });
      const definitions = tools.definitions.filter((definition) => allowed.has(definition.name));
      if (choice.mode === "required" && definitions.length === 0) requireFunctions("tool_choice.tools");
      return { toolChoice: choice.mode, definitions };
    }
    case "mcp": {
      if (!tools.mcpServers.some((server) => server.serverLabel === choice.server_label)) {
        throw ApiError.invalid(
          `tool_choice names the MCP server '${choice.server_label}', which is not in tools.`,
          "tool_choice.server_label",
        );
      }
      const name = choice.name ?? undefined;
      return {
        definitions: tools.definitions,
        mcpToolChoice: { serverLabel: choice.server_label, ...(name === undefined ? {} : { name }) },
      };
    }
    case "custom": {
      const name = findFunction(tools, choice.name, true);
      if (name === undefined) {
        throw ApiError.invalid(
          `tool_choice names '${choice.name}', which is not a custom tool in tools.`,
          "tool_choice.name",
        );
      }
      return { toolChoice: { name }, definitions: tools.definitions };
    }
    default:
      return assertNever(choice, "tool choice");
  }
}

function convertTextFormat(format: ParsedTextFormat | null | undefined): {
  echo: TextFormat;
  engine?: ResponseFormat;
} {
  if (format === undefined || format === null) return { echo: { type: "text" } };
  switch (format.type) {
    case "text":
      return { echo: { type: "text" } };
    case "json_object":
      return { echo: { type: "json_object" }, engine: { type: "json_object" } };
    case "json_schema": {
      assertUsableSchema(format.schema, "text.format.schema", "Invalid JSON schema in");
      return {
        echo: {
          type: "json_schema",
          name: format.name,
          schema: format.schema as JsonObject,
          strict: format.strict ?? false,
          // OpenAI's schema allows a string or no description at all (not null).
          ...(format.description === undefined || format.description === null
            ? {}
            : { description: format.description }),
        },
        engine: {
          type: "json_schema",
          name: format.name,
          schema: format.schema,
          // Absent or false: keywords the grammar cannot enforce are dropped; true: they are a 400.
          ...(format.strict === undefined || format.strict === null ? {} : { strict: format.strict }),
        },
      };
    }
    default:
      return assertNever(format, "text format");
  }
}

type Effort = NonNullable<NonNullable<CreateResponseBody["reasoning"]>["effort"]>;
function toEngineEffort(effort: Effort): NonNullable<ResponseRequest["generation"]["reasoningEffort"]> {
  switch (effort) {
    case "none":
    case "minimal":
    case "low":
    case "medium":
    case "high":
    case "xhigh":
      return effort;
    case "max":
      // The largest effort: like xhigh, an unlimited thought budget by default.
      return "xhigh";
    default:
      return assertNever(effort, "reasoning effort");
  }
}

function toInputItems(input: CreateResponseBody["input"]): InputItem[] {
  if (input === undefined || input === null) return [];
  return typeof input === "string" ? [{ type: "message", role: "user", content: input }] : input;
}

export function toResponseRequest(
  body: CreateResponseBody,
  options: ToResponseRequestOptions = {},
): ResponseRequest {
  refuseWhatCannotBeHonoured(body);
  const tools = convertTools(body.tools ?? [], options.mcp);
  const choice = convertToolChoice(body.tool_choice, tools);
  const format = convertTextFormat(body.text?.format);
  const store = body.store ?? true;
  const background = body.background ?? false;

  const sampling: SamplingOptions = {
    temperature: body.temperature ?? DEFAULT_TEMPERATURE,
    topP: body.top_p ?? DEFAULT_TOP_P,
  };
  if (body.max_output_tokens !== undefined && body.max_output_tokens !== null)
    sampling.maxTokens = body.max_output_tokens;
  if (body.presence_penalty !== undefined && body.presence_penalty !== null)
    sampling.presencePenalty = body.presence_penalty;
  if (body.frequency_penalty !== undefined && body.frequency_penalty !== null)
    sampling.frequencyPenalty = body.frequency_penalty;
  if (body.seed !== undefined && body.seed !== null) sampling.seed = body.seed;

  const generation: ResponseRequest["generation"] = { sampling, truncation: body.truncation ?? "disabled" };
  if (format.engine !== undefined) generation.responseFormat = format.engine;
  if (choice.definitions.length > 0) generation.tools = choice.definitions;
  if (choice.toolChoice !== undefined) generation.toolChoice = choice.toolChoice;
  // true / absent: as many calls as the model makes; false: at most one per response.
  if (body.parallel_tool_calls === false) generation.parallelToolCalls = false;
  const effort = body.reasoning?.effort;
  if (effort !== undefined && effort !== null) generation.reasoningEffort = toEngineEffort(effort);
  if (body.ttl !== undefined && body.ttl !== null) generation.ttlSeconds = body.ttl;
  // Routes the request to the sequence that served the key last (engine/llama/sequence-pool.ts).
  if (body.prompt_cache_key !== undefined && body.prompt_cache_key !== null)
    generation.promptCacheKey = body.prompt_cache_key;

  const echo: ResponseEcho = {
    instructions: body.instructions ?? null,
    model: body.model,
    tools: tools.echo,
    tool_choice: (body.tool_choice ?? "auto") as JsonValue,
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    temperature: sampling.temperature ?? DEFAULT_TEMPERATURE,
    top_p: sampling.topP ?? DEFAULT_TOP_P,
    presence_penalty: body.presence_penalty ?? 0,
    frequency_penalty: body.frequency_penalty ?? 0,
    top_logprobs: body.top_logprobs ?? 0,
    max_output_tokens: body.max_output_tokens ?? null,
    max_tool_calls: body.max_tool_calls ?? null,
    previous_response_id: body.previous_response_id ?? null,
    reasoning: {
      effort: effort ?? null,
      summary: body.reasoning?.summary ?? body.reasoning?.generate_summary ?? null,
    },
    text: { format: format.echo, verbosity: body.text?.verbosity ?? "medium" },
    truncation: body.truncation ?? "disabled",
    store,
    background,
    metadata: body.metadata ?? {},
    user: body.user ?? null,
    safety_identifier: body.safety_identifier ?? null,
    prompt_cache_key: body.prompt_cache_key ?? null,
    prompt_cache_retention: body.prompt_cache_retention ?? null,
    // Local inference has one tier; the echo says which one was used, as OpenAI's final snapshot does.
    service_tier: "default",
    prompt: null,
    conversation: null,
    moderation: null,
  };

  return {
    model: body.model,
    input: toInputItems(body.input),
    instructions: body.instructions ?? null,
    previousResponseId: body.previous_response_id ?? null,
    store,
    background,
    stream: body.stream ?? false,
    generation,
    functionNames: tools.functionNames,
    mcpServers: tools.mcpServers,
    ...(choice.mcpToolChoice === undefined ? {} : { mcpToolChoice: choice.mcpToolChoice }),
    ...(body.max_tool_calls === undefined || body.max_tool_calls === null
      ? {}
      : { maxToolCalls: body.max_tool_calls }),
    echo,
    reasoningOutput: reasoningOutputOf(body, options),
  };
}

/** Summary and encrypted content the request asks of reasoning items. */
function reasoningOutputOf(body: CreateResponseBody, options: ToResponseRequestOptions): ReasoningOutput {
  const summary = body.reasoning?.summary ?? body.reasoning?.generate_summary ?? undefined;
  return {
    ...(summary === undefined || options.reasoningSummaries === false ? {} : { summary }),
    encryptedContent: (body.include ?? []).includes("reasoning.encrypted_content"),
  };
}
