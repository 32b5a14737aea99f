/**
 * Chat wrapper (chat template) selection for a loaded model:
 *
 * - the model's own template, resolved by node-llama-cpp (`resolveChatWrapper`);
 * - an override from the model entry: a wrapper type name (`chatml`, `llama2Chat`, `general`, `qwen`, ...;
 *   case-insensitive, with a few aliases), `plain` (plain-chat-wrapper.ts: the texts alone, for base models)
 *   or, when it contains `{%` / `{{`, a Jinja template;
 * - per-request variants for reasoning effort (Qwen thinking on/off, Harmony's `Reasoning:` line);
 * - a wrapper that forces a function call (`tool_choice: "required"` or a named function): it ends the
 *   prompt with the wrapper's call prefix and starts LlamaChat in function-calling mode, so the function
 *   name and the arguments are constrained by grammar;
 * - how the template renders a new assistant turn right after an assistant message.
 */
import {
  ChatWrapper,
  HarmonyChatWrapper,
  JinjaTemplateChatWrapper,
  LlamaText,
  QwenChatWrapper,
  resolveChatWrapper,
  specializedChatWrapperTypeNames,
  type ChatHistoryItem,
  type ChatModelFunctionCall,
  type ChatModelFunctions,
  type ChatModelResponse,
  type ChatWrapperGenerateContextStateOptions,
  type ChatWrapperGeneratedContextState,
  type ChatWrapperGenerateInitialHistoryOptions,
  type ChatWrapperSettings,
  type LlamaModel,
  type ResolveChatWrapperWithModelOptions,
  type SpecializedChatWrapperTypeName,
} from "node-llama-cpp";
import { ApiError } from "../../shared/errors.js";
import { PLAIN_CHAT_TEMPLATE, PlainTextChatWrapper } from "./plain-chat-wrapper.js";
import type { EngineRequest } from "../types.js";

export type ReasoningEffort = NonNullable<EngineRequest["reasoningEffort"]>;

const wrapperAliases: Record<string, SpecializedChatWrapperTypeName> = {
  llama2: "llama2Chat",
  alpaca: "alpacaChat",
  falcon: "falconChat",
  "gpt-oss": "harmony",
  "llama3.2": "llama3.2-lightweight",
};

/** True when a chat template override is a Jinja template rather than a wrapper name. */
export function isJinjaTemplate(chatTemplate: string): boolean {
  return chatTemplate.includes("{%") || chatTemplate.includes("{{");
}

/** Maps a wrapper name (case-insensitive, with aliases) to node-llama-cpp's type name. */
export function chatWrapperTypeName(name: string): SpecializedChatWrapperTypeName | undefined {
  const normalized = name.trim().toLowerCase();
  const alias = wrapperAliases[normalized];
  if (alias !== undefined) return alias;
  return specializedChatWrapperTypeNames.find((typeName) => typeName.toLowerCase() === normalized);
}

/**
 * Why a chat template override cannot be used, or undefined when it can: the checks resolveModelChatWrapper
 * makes at the first request, made without a model so `lmhost serve` can refuse a bad `--chat-template` at
 * start.
 */
export function chatTemplateProblem(chatTemplate: string): string | undefined {
  const trimmed = chatTemplate.trim();
  if (trimmed === "" || trimmed.toLowerCase() === "auto") return undefined;
  if (isJinjaTemplate(chatTemplate)) {
    try {
      new JinjaTemplateChatWrapper({ template: chatTemplate });
      return undefined;
    } catch (error) {
      return `not a usable Jinja template: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  if (chatWrapperTypeName(chatTemplate) !== undefined) return undefined;
  return `unknown chat template '${chatTemplate}'; use a Jinja template or one of: ${specializedChatWrapperTypeNames.join(", ")}`;
}

/** The wrapper a model runs with: its own template, or the entry's override. Throws ApiError 400 on a bad override. */
export function resolveModelChatWrapper(model: LlamaModel, chatTemplate: string | undefined): ChatWrapper {
  if (
    chatTemplate === undefined ||
    chatTemplate.trim() === "" ||
    chatTemplate.trim().toLowerCase() === "auto"
  ) {
    return resolveChatWrapper(model, { warningLogs: false });
  }
  if (isJinjaTemplate(chatTemplate)) {
    try {
      return new JinjaTemplateChatWrapper({ template: chatTemplate, tokenizer: model.tokenizer });
    } catch (error) {
      throw new ApiError({
        status: 400,
        message: `The chat template override is not a usable Jinja template: ${error instanceof Error ? error.message : String(error)}`,
        code: "invalid_chat_template",
      });
    }
  }
  if (chatTemplate.trim().toLowerCase() === PLAIN_CHAT_TEMPLATE) return new PlainTextChatWrapper();
  const typeName = chatWrapperTypeName(chatTemplate);
  if (typeName === undefined) {
    throw new ApiError({
      status: 400,
      message: `Unknown chat template '${chatTemplate}'. Use a Jinja template or one of: ${[...specializedChatWrapperTypeNames, PLAIN_CHAT_TEMPLATE].join(", ")}.`,
      code: "invalid_chat_template",
    });
  }
  return resolveChatWrapper(model, { type: typeName, warningLogs: false });
}

/** Jinja variants rendered with thinking off: their new turn starts with an empty, closed thought. */
const thinkingOffWrappers = new WeakSet<ChatWrapper>();

/**
 * True for a wrapper whose new model turn must start with an empty, closed thought: a Jinja template rendered
 * with `enable_thinking` false writes `<think></think>` in its generation prompt, which node-llama-cpp only
 * renders when the last model response holds that empty thought (see preparePrompt).
 */
export function prefillsEmptyThought(wrapper: ChatWrapper): boolean {
  return thinkingOffWrappers.has(wrapper);
}

/**
 * True when the wrapper itself closes the new turn's thought before the model writes anything (node-llama-
 * cpp's Qwen wrapper with `thoughts: "discourage"`, lmhost's choice for effort none / minimal): the model
 * cannot think this turn, so nothing is gained by letting it think before a constrained answer.
 */
export function closesThoughtItself(wrapper: ChatWrapper): boolean {
  let inner = wrapper;
  while (inner instanceof DelegatingChatWrapper) inner = inner.base;
  return inner instanceof QwenChatWrapper && inner.thoughts === "discourage";
}

/** True when a Jinja template has a thinking switch: it reads `enable_thinking` (Qwen3-style templates). */
export function jinjaTemplateHasThinkingSwitch(template: string): boolean {
  return /\benable_thinking\b/.test(template);
}

/**
 * The wrapper variant for a reasoning effort, or undefined when the model family has no such switch (the base
 * wrapper is then used; the thought-token budget alone bounds the thought). Qwen: "none"/"minimal" turn
 * thinking off. Jinja templates that read `enable_thinking`: "none"/"minimal" render them with it false.
 * Harmony (gpt-oss): its `Reasoning: low|medium|high` line ("none"/"minimal" → low, "xhigh" → high).
 */
export function reasoningChatWrapper(
  model: LlamaModel,
  base: ChatWrapper,
  chatTemplate: string | undefined,
  effort: ReasoningEffort,
): ChatWrapper | undefined {
  const thinkingOff = effort === "none" || effort === "minimal";
  let customWrapperSettings: ResolveChatWrapperWithModelOptions["customWrapperSettings"];
  let type: SpecializedChatWrapperTypeName;
  if (base instanceof JinjaTemplateChatWrapper) {
    if (!thinkingOff || !jinjaTemplateHasThinkingSwitch(base.template)) return undefined;
    const thinkingOffWrapper = new JinjaTemplateChatWrapper({
      template: base.template,
      tokenizer: model.tokenizer,
      reasoning: false,
    });
    thinkingOffWrappers.add(thinkingOffWrapper);
    return thinkingOffWrapper;
  } else if (base instanceof QwenChatWrapper) {
    if (!thinkingOff) return undefined;
    type = "qwen";
    customWrapperSettings = {
      qwen: {
        thoughts: "discourage",
        variation: base.variation,
        keepOnlyLastThought: base.keepOnlyLastThought,
      },
    };
  } else if (base instanceof HarmonyChatWrapper) {
    const reasoningEffort = thinkingOff ? "low" : effort === "xhigh" ? "high" : effort;
    if (reasoningEffort === base.reasoningEffort) return undefined;
    type = "harmony";
    customWrapperSettings = { harmony: { reasoningEffort } };
  } else {
    return undefined;
  }
  const overridden =
    chatTemplate !== undefined && chatTemplate.trim() !== "" && chatTemplate.trim().toLowerCase() !== "auto";
  const variant = resolveChatWrapper(model, {
    type: overridden ? type : "auto",
    customWrapperSettings,
    warningLogs: false,
  });
  return variant.wrapperName === base.wrapperName ? variant : undefined;
}

const newTurnSeparators = new WeakMap<ChatWrapper, { separator: string | undefined }>();

/**
 * How the wrapper can render a new assistant turn right after an assistant turn: undefined when it renders
 * adjacent model items as separate turns (ChatML, Qwen, Harmony, ...); otherwise the text of a user message
 * to put between them (`""`, or `" "` for wrappers that skip empty messages), chosen so the new turn starts
 * exactly as it would after a real user message. Many wrappers (Llama 2/3, Mistral, Gemma, Jinja templates
 * that join adjacent messages) merge adjacent model items into one turn, so the previous answer would be
 * continued instead. Measured once per wrapper by rendering probe histories.
 */
export function newTurnSeparator(wrapper: ChatWrapper): string | undefined {
  const known = newTurnSeparators.get(wrapper);
  if (known !== undefined) return known.separator;
  let separator: string | undefined = " ";
  try {
    const render = (chatHistory: ChatHistoryItem[]): string =>
      wrapper.generateContextState({ chatHistory }).contextText.toString();
    const answered: ChatHistoryItem[] = [
      { type: "user", text: "Hi" },
      { type: "model", response: ["Hello"] },
    ];
    const continued = render(answered);
    const twoTurns = render([...answered, { type: "model", response: [] }]);
    if (!(twoTurns.startsWith(continued) && twoTurns.slice(continued.length).trim() === "")) {
      separator = undefined;
    } else {
      const marker = "Xq7Zmarker";
      const afterUser = render([
        ...answered,
        { type: "user", text: marker },
        { type: "model", response: [] },
      ]);
      const generationPrompt = afterUser.slice(afterUser.lastIndexOf(marker) + marker.length);
      separator =
        ["", " "].find((candidate) => {
          const rendered = render([
            ...answered,
            { type: "user", text: candidate },
            { type: "model", response: [] },
          ]);
          return (
            rendered.endsWith(generationPrompt) &&
            rendered.length >= continued.length + generationPrompt.length
          );
        }) ?? " ";
    }
  } catch {
    // A template that cannot render the probes (e.g. strict role alternation): an explicit user turn.
  }
  newTurnSeparators.set(wrapper, { separator });
  return separator;
}

/** A chat wrapper that delegates everything to `base`; subclasses change how the prompt is generated. */
abstract class DelegatingChatWrapper extends ChatWrapper {
  readonly wrapperName: string;
  override readonly settings: ChatWrapperSettings;

  constructor(readonly base: ChatWrapper) {
    super();
    this.wrapperName = base.wrapperName;
    this.settings = base.settings;
  }

  override generateContextState(
    options: ChatWrapperGenerateContextStateOptions,
  ): ChatWrapperGeneratedContextState {
    return this.base.generateContextState(options);
  }

  override generateFunctionCallsAndResults(
    functionCalls: ChatModelFunctionCall[],
    useRawCall?: boolean,
  ): LlamaText {
    return this.base.generateFunctionCallsAndResults(functionCalls, useRawCall);
  }

  override generateFunctionCall(name: string, params: unknown): LlamaText {
    return this.base.generateFunctionCall(name, params);
  }

  override generateFunctionCallResult(
    functionName: string,
    functionParams: unknown,
    result: unknown,
  ): LlamaText {
    return this.base.generateFunctionCallResult(functionName, functionParams, result);
  }

  override generateModelResponseText(
    modelResponse: ChatModelResponse["response"],
    useRawValues?: boolean,
  ): LlamaText {
    return this.base.generateModelResponseText(modelResponse, useRawValues);
  }

  override generateAvailableFunctionsSystemText(
    availableFunctions: ChatModelFunctions,
    options: { documentParams?: boolean },
  ): LlamaText {
    return this.base.generateAvailableFunctionsSystemText(availableFunctions, options);
  }

  override addAvailableFunctionsSystemMessageToHistory(
    history: readonly ChatHistoryItem[],
    availableFunctions?: ChatModelFunctions,
    options?: { documentParams?: boolean },
  ): readonly ChatHistoryItem[] {
    return this.base.addAvailableFunctionsSystemMessageToHistory(history, availableFunctions, options);
  }

  override generateInitialChatHistory(options?: ChatWrapperGenerateInitialHistoryOptions): ChatHistoryItem[] {
    return this.base.generateInitialChatHistory(options);
  }
}

/**
 * Delegates everything to `base`, except that the generated prompt ends with the function-call prefix and
 * LlamaChat starts in function-calling mode ("initially engaged" with no way to disengage): the model must
 * call one of the functions passed to `generateResponse`.
 */
export class ForcedFunctionCallChatWrapper extends DelegatingChatWrapper {
  override generateContextState(
    options: ChatWrapperGenerateContextStateOptions,
  ): ChatWrapperGeneratedContextState {
    const state = this.base.generateContextState(options);
    const parallelism = this.settings.functions.parallelism;
    return {
      contextText: LlamaText([
        state.contextText,
        parallelism?.call.sectionPrefix ?? "",
        this.settings.functions.call.prefix,
      ]),
      stopGenerationTriggers: state.stopGenerationTriggers,
      ignoreStartText: [],
      functionCall: { initiallyEngaged: true, disengageInitiallyEngaged: [] },
    };
  }
}

/**
 * Delegates everything to `base`, except that the prompt always documents `functions`, also when
 * `generateResponse` gets none: the model sees the same prompt as when it may call them (so the KV cache
 * is reused), but cannot call them (a JSON answer under a grammar, after the model chose to answer in text).
 */
export class DocumentedFunctionsChatWrapper extends DelegatingChatWrapper {
  constructor(
    base: ChatWrapper,
    private readonly functions: ChatModelFunctions,
  ) {
    super(base);
  }

  override generateContextState(
    options: ChatWrapperGenerateContextStateOptions,
  ): ChatWrapperGeneratedContextState {
    const { contextText, stopGenerationTriggers, ignoreStartText } = this.base.generateContextState({
      ...options,
      availableFunctions: options.availableFunctions ?? this.functions,
      documentFunctionParams: options.documentFunctionParams ?? true,
    });
    // Only the prompt: no function-call detection settings, since nothing may be called.
    return {
      contextText,
      stopGenerationTriggers,
      ...(ignoreStartText !== undefined ? { ignoreStartText } : {}),
    };
  }
}
