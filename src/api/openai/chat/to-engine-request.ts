/**
 * Validated Chat Completions / Completions bodies → EngineRequest, with the same mappings as the Responses
 * API (to-response-request.ts): sampling, `response_format` through the same schema checks and grammar
 * path as `text.format`, function tools + `tool_choice` forced by grammar, `parallel_tool_calls`,
 * `reasoning_effort`, `ttl`. Fields lmhost cannot honour are refused here with a 400 naming the field.
 *
 * The engine names fields as the Responses API does (`input`, `text.format.schema…`, `tools[i].parameters…`);
 * `engineParams` maps them onto this API's names for errors the engine raises.
 */
import type {
  ConversationItem,
  EngineRequest,
  FunctionToolDefinition,
  ResponseFormat,
  SamplingOptions,
  ToolChoice,
} from "../../../engine/types.js";
import { ApiError } from "../../../shared/errors.js";
import { assertUsableSchema } from "../responses/json-schema-check.js";
import type {
  ChatCompletionBody,
  ChatMessage,
  ChatResponseFormat,
  ChatToolChoice,
  CompletionBody,
} from "./request-schema.js";

/** OpenAI's defaults, passed explicitly as /v1/responses does. */
const DEFAULT_TEMPERATURE = 1;
const DEFAULT_TOP_P = 1;
/** OpenAI's default `max_tokens` for /v1/completions. */
export const DEFAULT_COMPLETION_MAX_TOKENS = 16;

function unsupported(param: string, message: string): ApiError {
  return ApiError.invalid(message, param, "unsupported_parameter");
}

const present = (value: unknown): boolean => value !== undefined && value !== null;

/** Sampling fields both endpoints share. */
function samplingOf(body: ChatCompletionBody | CompletionBody): SamplingOptions {
  if ((body.n ?? 1) !== 1) {
    throw unsupported("n", "lmhost generates one choice per request: n must be 1 (or absent).");
  }
  if (body.logit_bias !== undefined && body.logit_bias !== null && Object.keys(body.logit_bias).length > 0) {
    throw unsupported("logit_bias", "logit_bias is not supported by lmhost.");
  }
  const sampling: SamplingOptions = {
    temperature: body.temperature ?? DEFAULT_TEMPERATURE,
    topP: body.top_p ?? DEFAULT_TOP_P,
  };
  if (present(body.presence_penalty)) sampling.presencePenalty = body.presence_penalty ?? 0;
  if (present(body.frequency_penalty)) sampling.frequencyPenalty = body.frequency_penalty ?? 0;
  if (present(body.repeat_penalty)) sampling.repeatPenalty = body.repeat_penalty ?? 1;
  if (present(body.top_k)) sampling.topK = body.top_k ?? 0;
  if (present(body.min_p)) sampling.minP = body.min_p ?? 0;
  if (present(body.seed)) sampling.seed = body.seed ?? 0;
  const stop = body.stop ?? undefined;
  if (stop !== undefined) sampling.stop = typeof stop === "string" ? [stop] : stop;
  return sampling;
}

// ---- Chat Completions ----

function refuseChatFields(body: ChatCompletionBody): void {
  if (body.logprobs === true) {
    throw unsupported(
      "logprobs",
      "This engine cannot return log probabilities: logprobs must be false or absent.",
    );
  }
  if ((body.top_logprobs ?? 0) > 0) {
    throw unsupported(
      "top_logprobs",
      "This engine cannot return log probabilities: top_logprobs must be 0 or absent.",
    );
  }
  const refusals: [keyof ChatCompletionBody, string][] = [
    ["audio", "Audio output is not supported by lmhost."],
    ["prediction", "Predicted outputs are not supported by lmhost."],
    ["web_search_options", "Web search is not supported by lmhost."],
    ["functions", "The deprecated 'functions' parameter is not supported: use 'tools'."],
    ["function_call", "The deprecated 'function_call' parameter is not supported: use 'tool_choice'."],
  ];
  for (const [field, message] of refusals) {
    if (present(body[field])) throw unsupported(field, message);
  }
  const audioIndex = (body.modalities ?? []).indexOf("audio");
  if (audioIndex >= 0)
    throw unsupported(`modalities[${audioIndex}]`, "Audio output is not supported by lmhost.");
}

function partsText(
  content: string | readonly ({ type: "text"; text: string } | { type: "refusal"; refusal: string })[],
): string {
  if (typeof content === "string") return content;
  return content.map((part) => (part.type === "text" ? part.text : part.refusal)).join("");
}

/** The messages as the engine's neutral conversation. */
export function toConversation(messages: readonly ChatMessage[]): ConversationItem[] {
  const items: ConversationItem[] = [];
  const callNames = new Map<string, string>();
  messages.forEach((message, index) => {
    switch (message.role) {
      case "system":
      case "developer":
        items.push({ type: "message", role: "system", text: partsText(message.content) });
        return;
      case "user":
        items.push({ type: "message", role: "user", text: partsText(message.content) });
        return;
      case "assistant": {
        if (present(message.audio)) {
          throw unsupported(
            `messages[${index}].audio`,
            "Audio in assistant messages is not supported by lmhost.",
          );
        }
        if (present(message.function_call)) {
          throw unsupported(
            `messages[${index}].function_call`,
            "The deprecated 'function_call' is not supported: send tool_calls.",
          );
        }
        const reasoning = message.reasoning_content ?? message.reasoning ?? "";
        if (reasoning !== "") items.push({ type: "reasoning", text: reasoning });
        const text =
          message.content === undefined || message.content === null
            ? (message.refusal ?? "")
            : partsText(message.content);
        const calls = message.tool_calls ?? [];
        if (text !== "" || calls.length === 0) items.push({ type: "message", role: "assistant", text });
        for (const call of calls) {
          callNames.set(call.id, call.function.name);
          items.push({
            type: "function-call",
            callId: call.id,
            name: call.function.name,
            arguments: call.function.arguments,
          });
        }
        return;
      }
      case "tool": {
        const name = callNames.get(message.tool_call_id);
        if (name === undefined) {
          throw ApiError.invalid(
            `Invalid 'messages[${index}].tool_call_id': a 'tool' message must answer a tool call of an earlier assistant message, and no earlier message has a tool call with id '${message.tool_call_id}'.`,
            `messages[${index}].tool_call_id`,
          );
        }
        items.push({
          type: "function-result",
          callId: message.tool_call_id,
          name,
          output: partsText(message.content),
        });
        return;
      }
      default:
        // The schema refuses the 'function' role.
        throw unsupported(`messages[${index}].role`, "Unsupported message role.");
    }
  });
  return items;
}

function toolDefinitions(body: ChatCompletionBody): FunctionToolDefinition[] {
  const names = new Set<string>();
  return (body.tools ?? []).map((tool, index) => {
    const param = `tools[${index}].function`;
    const fn = tool.function;
    if (names.has(fn.name))
      throw ApiError.invalid(`Duplicate function name '${fn.name}' in tools.`, `${param}.name`);
    names.add(fn.name);
    const definition: FunctionToolDefinition = { name: fn.name };
    if (present(fn.description)) definition.description = fn.description ?? "";
    if (fn.parameters !== undefined && fn.parameters !== null) {
      assertUsableSchema(fn.parameters, `${param}.parameters`);
      definition.parameters = fn.parameters;
    }
    if (fn.strict === true) definition.strict = true;
    return definition;
  });
}

function toToolChoice(
  choice: ChatToolChoice | null | undefined,
  definitions: FunctionToolDefinition[],
): { toolChoice?: ToolChoice; definitions: FunctionToolDefinition[] } {
  if (choice === undefined || choice === null || choice === "auto") return { definitions };
  if (choice === "none") return { toolChoice: "none", definitions };
  const requireTools = (param: string) => {
    if (definitions.length === 0)
      throw ApiError.invalid("tool_choice requires at least one function in `tools`.", param);
  };
  if (choice === "required") {
    requireTools("tool_choice");
    return { toolChoice: "required", definitions };
  }
  if (choice.type === "function") {
    if (!definitions.some((definition) => definition.name === choice.function.name)) {
      throw ApiError.invalid(
        `tool_choice names '${choice.function.name}', which is not a function in tools.`,
        "tool_choice.function.name",
      );
    }
    return { toolChoice: { name: choice.function.name }, definitions };
  }
  if (choice.type === "allowed_tools") {
    const allowed = new Set<string>();
    choice.allowed_tools.tools.forEach((entry, index) => {
      if (!definitions.some((definition) => definition.name === entry.function.name)) {
        throw ApiError.invalid(
          `allowed_tools names '${entry.function.name}', which is not a function in tools.`,
          `tool_choice.allowed_tools.tools[${index}].function.name`,
        );
      }
      allowed.add(entry.function.name);
    });
    const narrowed = definitions.filter((definition) => allowed.has(definition.name));
    if (choice.allowed_tools.mode === "required" && narrowed.length === 0)
      requireTools("tool_choice.allowed_tools.tools");
    return { toolChoice: choice.allowed_tools.mode, definitions: narrowed };
  }
  // The schema refuses custom tool choices.
  throw unsupported("tool_choice", "Unsupported tool_choice.");
}

function toResponseFormat(format: ChatResponseFormat | null | undefined): ResponseFormat | undefined {
  if (format === undefined || format === null || format.type === "text") return undefined;
  if (format.type === "json_object") return { type: "json_object" };
  const spec = format.json_schema;
  // No schema: any JSON object (OpenAI requires one; llama.cpp and LM Studio accept its absence).
  if (spec.schema === undefined || spec.schema === null) return { type: "json_object" };
  assertUsableSchema(spec.schema, "response_format.json_schema.schema", "Invalid JSON schema in");
  return {
    type: "json_schema",
    name: spec.name,
    schema: spec.schema,
    ...(spec.strict === undefined || spec.strict === null ? {} : { strict: spec.strict }),
  };
}

export function toChatEngineRequest(body: ChatCompletionBody): EngineRequest {
  refuseChatFields(body);
  const sampling = samplingOf(body);
  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? undefined;
  if (maxTokens !== undefined) sampling.maxTokens = maxTokens;
  const choice = toToolChoice(body.tool_choice, toolDefinitions(body));
  const request: EngineRequest = { model: body.model, items: toConversation(body.messages), sampling };
  const responseFormat = toResponseFormat(body.response_format);
  if (responseFormat !== undefined) request.responseFormat = responseFormat;
  if (choice.definitions.length > 0) request.tools = choice.definitions;
  if (choice.toolChoice !== undefined) request.toolChoice = choice.toolChoice;
  if (body.parallel_tool_calls === false) request.parallelToolCalls = false;
  if (body.reasoning_effort !== undefined && body.reasoning_effort !== null)
    request.reasoningEffort = body.reasoning_effort;
  if (body.ttl !== undefined && body.ttl !== null) request.ttlSeconds = body.ttl;
  // As on /v1/responses: requests with one key go to the sequence that served it last (the prompt cache).
  if (body.prompt_cache_key !== undefined && body.prompt_cache_key !== null)
    request.promptCacheKey = body.prompt_cache_key;
  return request;
}

/** Engine field names (the Responses API's) → Chat Completions names, for errors the engine raises. */
export const chatParams: readonly [RegExp, string][] = [
  [/^input$/, "messages"],
  [/^text\.format\.schema/, "response_format.json_schema.schema"],
  [/^tools\[(\d+)\]\.(parameters|name)/, "tools[$1].function.$2"],
];

// ---- Completions ----

export function toCompletionEngineRequest(body: CompletionBody): EngineRequest {
  if (body.logprobs !== undefined && body.logprobs !== null) {
    throw unsupported(
      "logprobs",
      "This engine cannot return log probabilities: logprobs must be null or absent.",
    );
  }
  if (body.suffix !== undefined && body.suffix !== null && body.suffix !== "") {
    throw unsupported("suffix", "suffix (fill-in-the-middle) is not supported by lmhost.");
  }
  if ((body.best_of ?? 1) !== 1) {
    throw unsupported("best_of", "lmhost generates one choice per request: best_of must be 1 (or absent).");
  }
  const sampling = samplingOf(body);
  // OpenAI: 16 by default; 0 generates nothing (with echo, the prompt alone).
  sampling.maxTokens = body.max_tokens ?? DEFAULT_COMPLETION_MAX_TOKENS;
  const request: EngineRequest = {
    model: body.model,
    items: [],
    rawPrompt: promptText(body.prompt),
    sampling,
  };
  if (body.ttl !== undefined && body.ttl !== null) request.ttlSeconds = body.ttl;
  return request;
}

function promptText(prompt: CompletionBody["prompt"]): string {
  if (typeof prompt === "string") return prompt;
  // [1, 2, 3] is one prompt of token ids in OpenAI's API, not three prompts.
  if (prompt.length > 0 && prompt.every((entry) => typeof entry === "number"))
    throw unsupported("prompt", "Token-array prompts are not supported: send the prompt as a string.");
  if (prompt.length !== 1) {
    throw unsupported(
      "prompt",
      `lmhost completes one prompt per request: prompt must be a string or an array of one string (got ${prompt.length} entries).`,
    );
  }
  const [only] = prompt;
  if (typeof only !== "string") {
    throw unsupported("prompt[0]", "Token-array prompts are not supported: send the prompt as a string.");
  }
  if (only.length > 10_485_760)
    throw ApiError.invalid("Invalid 'prompt[0]': the string is too long.", "prompt[0]");
  return only;
}

export const completionParams: readonly [RegExp, string][] = [[/^input$/, "prompt"]];

/** An engine error with its field renamed by `params` (message included); others unchanged. */
export function renameParam(error: unknown, params: readonly [RegExp, string][]): unknown {
  if (!(error instanceof ApiError) || error.param === null) return error;
  for (const [pattern, replacement] of params) {
    if (!pattern.test(error.param)) continue;
    const param = error.param.replace(pattern, replacement);
    const original = error.param;
    return new ApiError({
      status: error.status,
      type: error.type,
      message: error.message.split(original).join(param),
      param,
      code: error.code,
      ...(error.retryAfter === undefined ? {} : { retryAfter: error.retryAfter }),
    });
  }
  return error;
}
