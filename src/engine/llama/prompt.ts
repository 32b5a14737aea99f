/**
 * Builds the exact prompt a request will evaluate on a loaded model: the chat history, the functions the
 * model may call (and whether a call is forced, or a freeform tool's input is to be generated), the chat
 * wrapper, and the prompt tokens rendered the same way LlamaChat renders them. Checks that the prompt fits the context, dropping the oldest non-system turns
 * before the protected tail (at least the current turn) when `truncation` is "auto".
 */
import {
  SpecialToken,
  SpecialTokensText,
  type ChatHistoryItem,
  type ChatModelFunctions,
  type ChatWrapper,
  type ChatWrapperGeneratedContextState,
  type ChatWrapperGenerateContextStateOptions,
  type GbnfJsonSchema,
  type LlamaModel,
  type LlamaText,
  type Token,
} from "node-llama-cpp";
import type { EngineRequest, FunctionToolDefinition, ToolChoice } from "../types.js";
import { ApiError, assertNever } from "../../shared/errors.js";
import { protectedTailStart } from "../truncation.js";
import {
  DocumentedFunctionsChatWrapper,
  ForcedFunctionCallChatWrapper,
  newTurnSeparator,
  prefillsEmptyThought,
} from "./chat-wrapper.js";
import { customToolGrammarToGbnf } from "./grammar/lark.js";
import { convertConversationWithSources } from "./convert-conversation.js";
import { anyJsonSchema, convertJsonSchema } from "./json-schema/index.js";
import { chatWrapperFor, type LlamaLoadedModel } from "./loader.js";

export interface PreparedPrompt {
  chatWrapper: ChatWrapper;
  history: ChatHistoryItem[];
  /** Functions the model may call in this request (undefined: none). */
  functions: ChatModelFunctions | undefined;
  /** The model must call a function this turn (`tool_choice` "required" or a named function). */
  forcedCall: boolean;
  /** 1 when a call is forced to a single named function or parallel tool calls are off. */
  maxParallelFunctionCalls: number | undefined;
  /**
   * A forced call of a freeform tool: the prompt documents the tools (`functions` is then undefined: nothing
   * is callable) and the model's answer, generated under `gbnf` when the tool has a grammar, is the input.
   */
  forcedFreeform: ForcedFreeform | undefined;
  /** The rendered prompt and its tokens. */
  contextText: LlamaText;
  tokens: Token[];
  /** What the chat wrapper was asked and answered for `contextText` (reusingRender). */
  rendering: Rendering;
  /** History items dropped by `truncation: "auto"`. */
  droppedItems: number;
}

export interface ForcedFreeform {
  name: string;
  /** The complete GBNF grammar (root `root`) the input must follow; undefined: free text. */
  gbnf: string | undefined;
}

export interface FunctionSelection {
  functions: ChatModelFunctions | undefined;
  forced: boolean;
  /** 1: at most one call (a named function, or `parallelToolCalls: false`); undefined: no limit. */
  maxParallelFunctionCalls: number | undefined;
  /**
   * The call is forced to one freeform tool (named, or `required` with a single tool that is freeform):
   * its input is generated as text, under its grammar. Other freeform tools are offered through function
   * calling with one string parameter `input`, where the grammar cannot be enforced.
   */
  forcedFreeform?: ForcedFreeform;
}

/** How a freeform tool is offered through JSON function calling: one string parameter `input`. */
export const freeformFunctionParams: GbnfJsonSchema = {
  type: "object",
  properties: { input: { type: "string" } },
};

function forcedFreeform(tool: FunctionToolDefinition): ForcedFreeform | undefined {
  if (tool.freeform === undefined) return undefined;
  const grammar = tool.freeform.grammar;
  return {
    name: tool.name,
    gbnf: grammar === undefined ? undefined : customToolGrammarToGbnf(grammar.syntax, grammar.definition),
  };
}

/**
 * Validates tools and tool choice and converts them to node-llama-cpp functions. One call at most when a
 * function is named or `parallelToolCalls` is false.
 */
export function selectFunctions(
  tools: readonly FunctionToolDefinition[] | undefined,
  toolChoice: ToolChoice | undefined,
  parallelToolCalls?: boolean,
): FunctionSelection {
  const oneCall = parallelToolCalls === false ? 1 : undefined;
  const definitions = tools ?? [];
  const choice = toolChoice ?? "auto";
  const all: Record<string, { description?: string; params?: GbnfJsonSchema }> = {};
  definitions.forEach((tool, index) => {
    if (tool.name === "" || /\s/.test(tool.name)) {
      throw ApiError.invalid(
        `Invalid function name '${tool.name}': names must be non-empty and contain no whitespace.`,
        `tools[${index}].name`,
      );
    }
    if (Object.hasOwn(all, tool.name))
      throw ApiError.invalid(`Duplicate function name '${tool.name}'.`, `tools[${index}].name`);
    all[tool.name] = {
      ...(tool.description !== undefined ? { description: tool.description } : {}),
      ...functionParams(tool, index),
    };
  });
  const hasTools = definitions.length > 0;

  if (typeof choice === "object") {
    const selected = all[choice.name];
    if (selected === undefined || !Object.hasOwn(all, choice.name)) {
      throw ApiError.invalid(
        `tool_choice names function '${choice.name}', which is not in tools.`,
        "tool_choice",
      );
    }
    const tool = definitions.find((definition) => definition.name === choice.name);
    const freeform = tool === undefined ? undefined : forcedFreeform(tool);
    return {
      functions: { [choice.name]: selected },
      forced: true,
      maxParallelFunctionCalls: 1,
      ...(freeform === undefined ? {} : { forcedFreeform: freeform }),
    };
  }
  switch (choice) {
    case "none":
      return { functions: undefined, forced: false, maxParallelFunctionCalls: undefined };
    case "auto":
      return {
        functions: hasTools ? all : undefined,
        forced: false,
        maxParallelFunctionCalls: hasTools ? oneCall : undefined,
      };
    case "required":
      if (!hasTools) throw ApiError.invalid("tool_choice 'required' needs at least one tool.", "tool_choice");
      return requiredSelection(definitions, all, oneCall);
    default:
      return assertNever(choice, "tool choice");
  }
}

/** `required`: a call of any tool; a single freeform tool is forced as such (its input under its grammar). */
function requiredSelection(
  definitions: readonly FunctionToolDefinition[],
  functions: ChatModelFunctions,
  oneCall: number | undefined,
): FunctionSelection {
  const only = definitions.length === 1 ? definitions[0] : undefined;
  const freeform = only === undefined ? undefined : forcedFreeform(only);
  return {
    functions,
    forced: true,
    maxParallelFunctionCalls: freeform === undefined ? oneCall : 1,
    ...(freeform === undefined ? {} : { forcedFreeform: freeform }),
  };
}

/**
 * A tool's parameter schema for the grammar. Objects without listed properties are closed (`{}`), not open
 * to any keys, and a tool whose parameters can only be `{}` (or are the empty schema) gets none: the model
 * then writes no arguments and the call's arguments are "{}". With the tool's `strict`, a keyword the grammar
 * cannot enforce is a 400 naming it; without, it is dropped.
 */
function functionParams(tool: FunctionToolDefinition, index: number): { params?: GbnfJsonSchema } {
  if (tool.freeform !== undefined) return { params: freeformFunctionParams };
  if (tool.parameters === undefined) return {};
  const { schema } = convertJsonSchema(tool.parameters, `tools[${index}].parameters`, {
    closedObjects: true,
    strict: tool.strict === true,
  });
  const noArguments =
    schema === anyJsonSchema ||
    ("type" in schema &&
      schema.type === "object" &&
      !("properties" in schema) &&
      schema.additionalProperties === false);
  return noArguments ? {} : { params: schema };
}

export function contextLengthExceeded(
  contextLength: number,
  promptTokens: number,
  detail?: string,
  breakdown?: string,
): ApiError {
  return new ApiError({
    status: 400,
    message: `This model's maximum context length is ${contextLength} tokens. However, your input resulted in ${promptTokens} tokens (with room for at least one output token)${detail !== undefined ? `: ${detail}` : ""}.${breakdown !== undefined ? ` ${breakdown}.` : ""} Please reduce the length of the input.`,
    param: "input",
    code: "context_length_exceeded",
  });
}

export interface FitHistoryOptions {
  /** Per history item, the last conversation item it renders (`convertConversationWithSources`). */
  lastSourceIndex: readonly number[];
  /** First protected conversation item (`protectedTailStart`): history items rendering it or later stay. */
  protectedItemsStart: number;
  contextLength: number;
  /** Output tokens to leave room for when possible (at least one always is). */
  reserve: number;
  /**
   * Once something must be dropped, drop until this many tokens more are free (when the protected tail
   * allows), so the next turns fit without dropping again and reuse the KV cache. Default 0.
   */
  slack?: number;
  /**
   * Whether a kept history would begin where a recent truncation began it (`start`: its first two
   * non-system items). Among the drops that fit (and drop no more than the slack asks), the first
   * beginning that way is chosen: the next turn of a truncated conversation keeps the same start, so its
   * prompt shares the cached prefix.
   */
  isRecentStart?: (start: ChatHistoryItem[]) => boolean;
  /** Where the `tokens` of a history go, for the error when even the protected tail does not fit. */
  describe?: (history: ChatHistoryItem[], tokens: number) => string | undefined;
}

export interface FittedHistory<Rendered> {
  history: ChatHistoryItem[];
  rendered: Rendered;
  droppedItems: number;
  /** After a drop: the first two kept non-system items (where the next turn should start again). */
  start?: ChatHistoryItem[];
}

/** Indexes of the history items truncation may drop (oldest first), and where the protected tail starts. */
function droppableItems(
  history: readonly ChatHistoryItem[],
  options: Pick<FitHistoryOptions, "lastSourceIndex" | "protectedItemsStart">,
): { droppable: number[]; protectedHistoryStart: number } {
  let protectedHistoryStart = history.length;
  options.lastSourceIndex.forEach((sourceIndex, index) => {
    if (sourceIndex >= options.protectedItemsStart && index < protectedHistoryStart)
      protectedHistoryStart = index;
  });
  const droppable = history.flatMap((item, index) =>
    item.type !== "system" && index < protectedHistoryStart ? [index] : [],
  );
  return { droppable, protectedHistoryStart };
}

/**
 * `truncation: "auto"`: drops the oldest non-system history items before the protected tail so the prompt
 * leaves `reserve` output tokens, or, when even dropping all of them does not, at least one. Throws ApiError
 * 400 `context_length_exceeded` (param "input") when the protected tail alone does not fit. `render` must
 * count fewer tokens when items are dropped.
 *
 * How many: a conversation that keeps growing past the window would, dropping the fewest items each turn,
 * start its prompt at a new item every turn and re-evaluate it all (the KV cache holds the old start). So a
 * drop goes on until `slack` more tokens are free (or, when even dropping everything droppable cannot
 * free that much, half of what it could), and a later turn starts where a recent drop started
 * (`isRecentStart`) as long as that still fits: the prompt then re-evaluates only once per `slack` tokens
 * of conversation. Never more is dropped than the slack asks.
 */
export function fitHistory<Rendered extends { tokens: readonly unknown[] }>(
  history: readonly ChatHistoryItem[],
  render: (history: ChatHistoryItem[]) => Rendered,
  options: FitHistoryOptions,
): FittedHistory<Rendered> {
  const { contextLength, reserve } = options;
  const slack = Math.max(0, options.slack ?? 0);
  const fitsWithRoom = (rendered: Rendered): boolean => rendered.tokens.length + reserve < contextLength;
  // LlamaChat shifts the context itself unless prompt + 1 < context size; never let it do so silently.
  const fitsStrictly = (rendered: Rendered): boolean => rendered.tokens.length + 1 < contextLength;

  const full = render([...history]);
  if (fitsWithRoom(full)) return { history: [...history], rendered: full, droppedItems: 0 };
  const { droppable, protectedHistoryStart } = droppableItems(history, options);
  const withoutFirst = (count: number): ChatHistoryItem[] => {
    const dropped = new Set(droppable.slice(0, count));
    return history.filter((_item, index) => !dropped.has(index));
  };
  const firstProtectedNonSystem = history.findIndex(
    (item, index) => index >= protectedHistoryStart && item.type !== "system",
  );
  /** The first two non-system items kept after dropping `count` items (empty when none is kept). */
  const startAfter = (count: number): ChatHistoryItem[] => {
    const first = count < droppable.length ? (droppable[count] ?? -1) : firstProtectedNonSystem;
    if (first < 0) return [];
    const second = history.findIndex((item, index) => index > first && item.type !== "system");
    return second < 0 ? history.slice(first, first + 1) : [history[first]!, history[second]!];
  };
  const fitted = (
    count: number,
    rendered: Rendered,
    candidate = withoutFirst(count),
  ): FittedHistory<Rendered> => {
    const start = startAfter(count);
    return { history: candidate, rendered, droppedItems: count, ...(start.length > 0 ? { start } : {}) };
  };
  // Binary search for the fewest dropped items passing `fits` from `from` on (tokens fall as items drop).
  const fewestDropped = (from: number, fits: (rendered: Rendered) => boolean) => {
    let low = from;
    let high = droppable.length;
    let best: FittedHistory<Rendered> | undefined;
    while (low <= high) {
      const middle = Math.floor((low + high) / 2);
      const candidate = withoutFirst(middle);
      const rendered = render(candidate);
      if (fits(rendered)) {
        best = fitted(middle, rendered, candidate);
        high = middle - 1;
      } else {
        low = middle + 1;
      }
    }
    return best;
  };
  const fewest = fewestDropped(1, fitsWithRoom);
  if (fewest !== undefined) {
    let withSlack: FittedHistory<Rendered> | undefined;
    if (slack > 0) {
      // What dropping everything droppable would free beyond the room: the slack, or half of that.
      const reachable = contextLength - reserve - 1 - render(withoutFirst(droppable.length)).tokens.length;
      const extra = reachable >= slack ? slack : Math.floor(reachable / 2);
      if (extra > 0) {
        withSlack = fewestDropped(
          fewest.droppedItems,
          (rendered) => rendered.tokens.length + reserve + extra < contextLength,
        );
      }
    }
    const most = withSlack?.droppedItems ?? fewest.droppedItems;
    if (options.isRecentStart !== undefined) {
      for (let count = fewest.droppedItems; count <= most; count++) {
        const start = startAfter(count);
        if (start.length === 0 || !options.isRecentStart(start)) continue;
        if (count === fewest.droppedItems) return fewest;
        if (count === most && withSlack !== undefined) return withSlack;
        const candidate = withoutFirst(count);
        const rendered = render(candidate);
        if (fitsWithRoom(rendered)) return fitted(count, rendered, candidate);
      }
    }
    return withSlack ?? fewest;
  }
  const minimal = withoutFirst(droppable.length);
  const minimalRendered = droppable.length === 0 ? full : render(minimal);
  if (fitsStrictly(minimalRendered)) return fitted(droppable.length, minimalRendered, minimal);
  throw contextLengthExceeded(
    contextLength,
    minimalRendered.tokens.length,
    droppable.length > 0
      ? `truncation dropped the ${droppable.length} earlier conversation items it may drop, but the rest (the current turn and system messages, which are never dropped) is still too long`
      : "truncation may not drop the current turn or system messages, and there is nothing else to drop",
    options.describe?.(minimal, minimalRendered.tokens.length),
  );
}

/** One call of a chat wrapper's generateContextState, with the tokens of its answer. */
export interface Rendering {
  asked: ChatWrapperGenerateContextStateOptions;
  state: ChatWrapperGeneratedContextState;
  tokens: Token[];
}

/**
 * The chat wrapper to hand LlamaChat for `prompt`. Before its first evaluation LlamaChat renders and
 * tokenizes the whole history again (Codex's ~9,400-token request: ~18 ms of tokenizing alone on the event
 * loop with Llama 2's tokenizer), the same way preparePrompt just did. When it asks for exactly what the
 * prompt was rendered from (the same history items, functions and options), it gets that render, whose
 * contextText tokenizes to the tokens already counted; anything else goes to the wrapper itself.
 */
export function reusingRender(prompt: PreparedPrompt, model: LlamaModel): ChatWrapper {
  const wrapper = prompt.chatWrapper;
  const { asked, state, tokens } = prompt.rendering;
  // Everything else (settings, function-call rendering) is the wrapper's own, through the prototype.
  const reusing = Object.create(wrapper) as ChatWrapper;
  reusing.generateContextState = (options) => {
    if (!sameRenderRequest(options, asked)) return wrapper.generateContextState(options);
    const contextText = Object.create(state.contextText) as LlamaText;
    contextText.tokenize = (tokenizer, tokenizeOptions) =>
      tokenizer === model.tokenizer && tokenizeOptions === undefined
        ? tokens.slice()
        : state.contextText.tokenize(tokenizer, tokenizeOptions);
    return { ...state, contextText };
  };
  return reusing;
}

function sameRenderRequest(
  options: ChatWrapperGenerateContextStateOptions,
  asked: ChatWrapperGenerateContextStateOptions,
): boolean {
  const history = options.chatHistory;
  return (
    history.length === asked.chatHistory.length &&
    history.every((item, index) => item === asked.chatHistory[index]) &&
    options.availableFunctions === asked.availableFunctions &&
    Boolean(options.documentFunctionParams) === Boolean(asked.documentFunctionParams) &&
    Object.keys(options).every(
      (key) => key in asked || (options as Record<string, unknown>)[key] === undefined,
    )
  );
}

/**
 * Renders and tokenizes the request. With `fitToContext`, throws ApiError 400 `context_length_exceeded`
 * (truncation "disabled", the default) or drops the oldest non-system history items before the protected
 * tail (`protectedTailItems`, at least the current turn) until the prompt leaves room for
 * min(maxTokens, a quarter of the context) output tokens (truncation "auto"; see `fitHistory`). With
 * `stableTruncation` (default) a drop frees a quarter of the context more and later turns start where a
 * recent drop started, so a conversation past the window reuses its KV cache.
 */
export function preparePrompt(
  loaded: LlamaLoadedModel,
  request: EngineRequest,
  options: { fitToContext: boolean; stableTruncation?: boolean },
): PreparedPrompt {
  const selection = selectFunctions(request.tools, request.toolChoice, request.parallelToolCalls);
  const baseWrapper = chatWrapperFor(loaded, request.reasoningEffort);
  const forcedFreeformCall = selection.forcedFreeform;
  // A forced freeform call: the tools stay documented, and the answer (the input) is plain text.
  const chatWrapper =
    forcedFreeformCall !== undefined && selection.functions !== undefined
      ? new DocumentedFunctionsChatWrapper(baseWrapper, selection.functions)
      : selection.forced
        ? new ForcedFunctionCallChatWrapper(baseWrapper)
        : baseWrapper;
  const { history, lastSourceIndex } = convertConversationWithSources(request.items, {
    keepReasoning: chatWrapper.settings.segments?.thought !== undefined,
    newTurnSeparator: newTurnSeparator(baseWrapper),
  });
  // Thinking off on a template with a switch: the new turn opens with the template's empty, closed thought.
  const newTurn = history.at(-1);
  if (prefillsEmptyThought(baseWrapper) && newTurn?.type === "model" && newTurn.response.length === 0) {
    newTurn.response.push({ type: "segment", segmentType: "thought", text: "", ended: true });
  }

  const render = (chatHistory: readonly ChatHistoryItem[]): Rendering => {
    const asked: ChatWrapperGenerateContextStateOptions = {
      chatHistory: chatHistory as ChatHistoryItem[],
      ...(selection.functions !== undefined
        ? { availableFunctions: selection.functions, documentFunctionParams: true }
        : {}),
    };
    const state = chatWrapper.generateContextState(asked);
    return { asked, state, tokens: state.contextText.tokenize(loaded.promptTokenizer) };
  };

  const prepared = (
    chatHistory: ChatHistoryItem[],
    rendering: Rendering,
    droppedItems: number,
  ): PreparedPrompt => ({
    chatWrapper,
    history: chatHistory,
    functions: forcedFreeformCall === undefined ? selection.functions : undefined,
    forcedCall: forcedFreeformCall === undefined && selection.forced,
    maxParallelFunctionCalls: selection.maxParallelFunctionCalls,
    forcedFreeform: forcedFreeformCall,
    contextText: rendering.state.contextText,
    tokens: rendering.tokens,
    rendering,
    droppedItems,
  });

  /**
   * Where a prompt's `tokens` go, for context_length_exceeded: only the system items are rendered again
   * (with and without the tool definitions), never the whole over-long prompt; template tokens count with
   * the system part.
   */
  const describe = (chatHistory: ChatHistoryItem[], tokens: number): string | undefined => {
    const systemItems = chatHistory.filter((item) => item.type === "system");
    const count = (withFunctions: boolean) =>
      chatWrapper
        .generateContextState({
          chatHistory: systemItems,
          ...(withFunctions && selection.functions !== undefined
            ? { availableFunctions: selection.functions, documentFunctionParams: true }
            : {}),
        })
        .contextText.tokenize(loaded.model.tokenizer).length;
    const system = count(false);
    const toolCount = Object.keys(selection.functions ?? {}).length;
    // With neither, all of it is conversation: nothing to break down.
    if (systemItems.length === 0 && toolCount === 0) return undefined;
    const toolTokens = toolCount > 0 ? count(true) - system : 0;
    const parts = [
      ...(systemItems.length > 0 ? [`${system} for the instructions and system messages`] : []),
      ...(toolCount > 0
        ? [`${toolTokens} for the ${toolCount} tool definition${toolCount === 1 ? "" : "s"}`]
        : []),
      `${Math.max(0, tokens - toolTokens - (systemItems.length > 0 ? system : 0))} for the conversation`,
    ];
    return `Of those tokens, about ${parts.join(", ")}`;
  };

  const contextLength = loaded.contextLength;
  if (!options.fitToContext) return prepared(history, render(history), 0);

  const truncation = request.truncation ?? "disabled";
  switch (truncation) {
    case "disabled": {
      const full = render(history);
      // LlamaChat shifts the context itself unless prompt + 1 < context size; never let it do so silently.
      if (full.tokens.length + 1 >= contextLength) {
        // Suggest truncation only when dropping what it may drop would make the prompt fit.
        const { droppable } = droppableItems(history, {
          lastSourceIndex,
          protectedItemsStart: protectedTailStart(request.items, request.protectedTailItems),
        });
        const dropped = new Set(droppable);
        const truncationFits =
          droppable.length > 0 &&
          render(history.filter((_item, index) => !dropped.has(index))).tokens.length + 1 < contextLength;
        throw contextLengthExceeded(
          contextLength,
          full.tokens.length,
          undefined,
          [
            describe(history, full.tokens.length),
            truncationFits ? 'With truncation: "auto" the oldest turns are dropped to fit' : undefined,
          ]
            .filter((sentence) => sentence !== undefined)
            .join(". ") || undefined,
        );
      }
      return prepared(history, full, 0);
    }
    case "auto": {
      const quarter = Math.max(1, Math.floor(contextLength / 4));
      const fitted = fitHistory(history, render, {
        lastSourceIndex,
        protectedItemsStart: protectedTailStart(request.items, request.protectedTailItems),
        contextLength,
        reserve: Math.min(request.sampling?.maxTokens ?? quarter, quarter),
        describe,
        ...(options.stableTruncation !== false
          ? {
              slack: quarter,
              isRecentStart: (start: ChatHistoryItem[]) => loaded.truncationStarts.has(start),
            }
          : {}),
      });
      if (fitted.start !== undefined && options.stableTruncation !== false)
        loaded.truncationStarts.add(fitted.start);
      return prepared(fitted.history, fitted.rendered, fitted.droppedItems);
    }
    default:
      return assertNever(truncation, "truncation");
  }
}

/** The prompt as text, special tokens written as the model's token text (`<s>`, `<|im_start|>`, ...). */
export function renderContextText(contextText: LlamaText, model: LlamaModel): string {
  return contextText.values
    .map((value) => {
      if (typeof value === "string") return value;
      if (value instanceof SpecialTokensText) return value.value;
      if (value instanceof SpecialToken) return model.detokenize(value.tokenize(model.tokenizer), true);
      return String(value);
    })
    .join("");
}
