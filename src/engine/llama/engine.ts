/**
 * The in-process llama.cpp engine: turns an EngineRequest into node-llama-cpp calls and streams EngineParts.
 *
 * One generation = acquire the model lease (JIT load) → render and tokenize the prompt → acquire the free
 * sequence with the longest cached prefix (or wait in the bounded queue) → LlamaChat.generateResponse on it,
 * its callbacks pushing parts into an async queue → exactly one `finish`. The generation runs as a task that
 * owns the lease and the sequence and releases both when node-llama-cpp has returned, whatever the consumer
 * does; a consumer that stops reading aborts the task. Aborting the request's signal stops at the next token
 * and finishes with reason "cancelled".
 *
 * Freeform (custom) tools: a forced call of one is generated as the model's text answer under the tool's
 * grammar (Lark or regex, converted to GBNF) and streamed as that call's input; unforced, they are offered
 * through function calling with one string parameter `input`, unwrapped into the raw input when called.
 */
import { createHash } from "node:crypto";
import { setMaxListeners } from "node:events";
import {
  type ChatHistoryItem,
  type ChatWrapper,
  LlamaChat,
  type LlamaChatResponseChunk,
  type LlamaContextSequence,
  type LlamaGrammar,
  LlamaText,
  TokenMeter,
} from "node-llama-cpp";
import type { ModelAcquirer } from "../../models/types.js";
import { linkAbortSignals } from "../../shared/abort-signals.js";
import { ApiError, assertNever } from "../../shared/errors.js";
import { moreContextHint } from "./context-length.js";
import type {
  EmbedRequest,
  EmbedResult,
  Engine,
  EnginePart,
  EngineRequest,
  FinishReason,
  ResponseFormat,
  TokenCount,
  Usage,
} from "../types.js";
import { thoughtTokenBudget } from "../reasoning-budgets.js";
import { AsyncQueue } from "./async-queue.js";
import { convertJsonSchemaToGbnf } from "./json-schema/index.js";
import { embedInputs, embeddingsOf } from "./embeddings.js";
import type { LlamaLoadedModel } from "./loader.js";
import { DocumentedFunctionsChatWrapper, ForcedFunctionCallChatWrapper } from "./chat-wrapper.js";
import { preparePrompt, renderContextText, reusingRender, type PreparedPrompt } from "./prompt.js";
import { screenPromptSize } from "./prompt-size.js";
import {
  callOrAnswerInFormat,
  finishReasonFor,
  generationOptions,
  PartEmitter,
  reasoningTokensOf,
  stopSequenceOf,
  afterThought,
  mayThinkFirst,
  thinkThenAnswer,
  type ChatResponse,
} from "./generation.js";
import { generateRawCompletion, prepareRawPrompt } from "./raw-completion.js";
import { defaultMaxQueue, type SequenceLease } from "./sequence-pool.js";
import type { PromptCache } from "./prompt-cache.js";
import { PromptCacheSaves } from "./prompt-cache-saves.js";

export interface LlamaEngineOptions {
  models: ModelAcquirer<LlamaLoadedModel>;
  /** Requests that may wait for a sequence per loaded model before new ones get 429 (default 64). */
  maxQueue?: number;
  /**
   * `truncation: "auto"` frees a quarter of the context when it drops and starts later turns where a recent
   * drop started, so a conversation past the window reuses its KV cache (default true). False drops the
   * fewest items every turn (the benchmark's comparison).
   */
  stableTruncation?: boolean;
  /**
   * The persistent KV prefix cache (prompt-cache.ts): a request whose prompt starts with a saved state that
   * its sequence does not hold restores it instead of evaluating it; a long prompt's state is saved after
   * its generation, in the background. Absent or disabled: no cache.
   */
  promptCache?: PromptCache;
  /**
   * How long a model must have no generation in progress before a state is saved (default 2,000 ms;
   * prompt-cache-saves.ts). A save that waited `promptCacheMaxDeferMs` (default 60,000) runs at the next
   * free moment of its sequence anyway.
   */
  promptCacheIdleMs?: number;
  promptCacheMaxDeferMs?: number;
  /** Where the prompt cache's failures are reported (they never fail a request). */
  warn?: (message: string) => void;
}

const maxCachedGrammars = 32;

export class LlamaEngine implements Engine {
  private readonly models: ModelAcquirer<LlamaLoadedModel>;
  private readonly maxQueue: number;
  private readonly stableTruncation: boolean;
  /** The prompt cache's restores and saves (prompt-cache-saves.ts); undefined without a cache. */
  private readonly saves: PromptCacheSaves | undefined;
  private readonly warn: (message: string) => void;
  private readonly grammars = new Map<string, Promise<LlamaGrammar>>();
  private readonly tasks = new Set<Promise<void>>();
  /** Generations of each model from its lease on, preparation included: what keeps a model from idle. */
  private readonly generating = new Map<LlamaLoadedModel, number>();
  private readonly closing = new AbortController();
  private closed = false;

  constructor(options: LlamaEngineOptions) {
    this.models = options.models;
    this.maxQueue = options.maxQueue ?? defaultMaxQueue;
    this.stableTruncation = options.stableTruncation ?? true;
    this.warn = options.warn ?? (() => undefined);
    this.saves =
      options.promptCache?.enabled === true
        ? new PromptCacheSaves(options.promptCache, {
            ...(options.promptCacheIdleMs === undefined ? {} : { idleMs: options.promptCacheIdleMs }),
            ...(options.promptCacheMaxDeferMs === undefined
              ? {}
              : { maxDeferMs: options.promptCacheMaxDeferMs }),
            busy: (loaded) =>
              (this.generating.get(loaded) ?? 0) > 0 || loaded.pool.active > 0 || loaded.pool.waiting > 0,
            closed: () => this.closed,
            track: (task) => {
              this.tasks.add(task);
              void task.then(() => this.tasks.delete(task));
            },
            warn: this.warn,
          })
        : undefined;
    // Every request in flight listens on `closing`; that is expected, not a leak.
    setMaxListeners(0, this.closing.signal);
  }

  generate(request: EngineRequest, signal: AbortSignal): AsyncIterable<EnginePart> {
    return this.stream(request, signal);
  }

  async countTokens(request: EngineRequest): Promise<TokenCount> {
    return this.withModel(request, async (loaded) => {
      if (request.rawPrompt !== undefined)
        // Screened like a generation: a long text is counted in slices, and one over the context is a 400.
        return { inputTokens: (await prepareRawPrompt(loaded, request.rawPrompt)).all.length };
      const screened = await screenPromptSize(loaded.promptTokenizer, loaded.contextLength, request, {
        countOnly: true,
      });
      return { inputTokens: preparePrompt(loaded, screened, { fitToContext: false }).tokens.length };
    });
  }

  async renderPrompt(request: EngineRequest): Promise<string> {
    if (request.rawPrompt !== undefined) return request.rawPrompt;
    return this.withModel(request, async (loaded) => {
      const screened = await screenPromptSize(loaded.promptTokenizer, loaded.contextLength, request, {
        countOnly: true,
      });
      return renderContextText(
        preparePrompt(loaded, screened, { fitToContext: false }).contextText,
        loaded.model,
      );
    });
  }

  /** Embeddings on the leased model's embedding context (embeddings.ts); the same weights as generation. */
  async embed(request: EmbedRequest, signal: AbortSignal): Promise<EmbedResult> {
    if (this.closed) throw closedError();
    const task = this.runEmbed(request, signal);
    const settled = task.then(noop, noop);
    this.tasks.add(settled);
    try {
      return await task;
    } finally {
      this.tasks.delete(settled);
    }
  }

  private async runEmbed(request: EmbedRequest, signal: AbortSignal): Promise<EmbedResult> {
    const link = linkAbortSignals(signal, this.closing.signal);
    try {
      const lease = await this.models.acquire(request.model, {
        ...(request.ttlSeconds !== undefined ? { ttlSeconds: request.ttlSeconds } : {}),
        signal: link.signal,
      });
      try {
        const loaded = lease.loaded;
        const embeddings = await embeddingsOf(loaded, { maxQueue: this.maxQueue });
        return await embedInputs(loaded.model, embeddings, request, loaded.entry.id, link.signal, {
          maxQueue: this.maxQueue,
          generating: () => loaded.pool.active > 0,
        });
      } finally {
        lease.release();
      }
    } finally {
      link.dispose();
    }
  }

  /**
   * Resolves when every generation and prompt-cache save running now has ended; saves waiting for their
   * model to fall idle run at once (tests, bench).
   */
  async settled(): Promise<void> {
    this.saves?.flush();
    await Promise.allSettled([...this.tasks]);
  }

  /** Stops generating; saves still waiting for an idle model are written now, so a restart finds them. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.closing.abort(closedError());
    }
    this.saves?.flush();
    await Promise.allSettled([...this.tasks]);
  }

  private async withModel<Result>(
    request: EngineRequest,
    use: (loaded: LlamaLoadedModel) => Promise<Result>,
  ): Promise<Result> {
    if (this.closed) throw closedError();
    const lease = await this.models.acquire(request.model, {
      ...(request.ttlSeconds !== undefined ? { ttlSeconds: request.ttlSeconds } : {}),
      signal: this.closing.signal,
    });
    try {
      return await use(lease.loaded);
    } catch (error) {
      throw withContextHint(error, lease.loaded);
    } finally {
      lease.release();
    }
  }

  private async *stream(
    request: EngineRequest,
    signal: AbortSignal,
  ): AsyncGenerator<EnginePart, void, undefined> {
    if (this.closed) throw closedError();
    // Not AbortSignal.any: on Node 20 it leaves an entry on the long-lived `closing` signal per request.
    const run = linkAbortSignals(signal, this.closing.signal);
    const queue = new AsyncQueue<EnginePart>();
    const task = this.run(request, run.signal, queue).then(
      () => queue.end(),
      (error: unknown) => queue.fail(error),
    );
    this.tasks.add(task);
    void task.then(() => this.tasks.delete(task));
    try {
      for await (const part of queue) yield part;
    } finally {
      // The consumer stopped early (or the stream ended): stop generating and wait until the sequence is free.
      run.abort();
      await task;
    }
  }

  /** Runs one generation into `queue`; rejects only with errors a client should see. */
  private async run(
    request: EngineRequest,
    signal: AbortSignal,
    queue: AsyncQueue<EnginePart>,
  ): Promise<void> {
    let inputTokens = 0;
    try {
      const lease = await this.models.acquire(request.model, {
        ...(request.ttlSeconds !== undefined ? { ttlSeconds: request.ttlSeconds } : {}),
        signal,
      });
      // A prompt-cache save waiting for the model to fall idle takes over the model lease.
      let handedOver = false;
      const loaded = lease.loaded;
      this.generating.set(loaded, (this.generating.get(loaded) ?? 0) + 1);
      try {
        if (request.rawPrompt !== undefined) {
          // A raw prompt (`/v1/completions`): no chat template, the same pool and prefix reuse.
          const tokens = await prepareRawPrompt(loaded, request.rawPrompt);
          inputTokens = tokens.all.length;
          const rawLease = await loaded.pool.acquire(tokens.all, {
            signal,
            maxQueue: this.queueBound(request),
          });
          try {
            await this.saves?.beforeOverwrite(rawLease, tokens.all);
            await generateRawCompletion(loaded, request, tokens, rawLease, signal, queue);
          } finally {
            rawLease.release();
          }
          return;
        }
        // A request with much text is counted in slices first, so no prompt too long for the context is
        // ever tokenized whole on the event loop (prompt-size.ts).
        const screened = await screenPromptSize(loaded.promptTokenizer, loaded.contextLength, request, {
          countOnly: false,
        });
        const prompt = preparePrompt(loaded, screened, {
          fitToContext: true,
          stableTruncation: this.stableTruncation,
        });
        inputTokens = prompt.tokens.length;
        // A forced freeform call is this turn's output: its grammar, not the text format's, applies.
        const grammar =
          prompt.forcedFreeform !== undefined
            ? await this.freeformGrammar(loaded, prompt.forcedFreeform.gbnf)
            : await this.grammarFor(loaded, request.responseFormat);
        await this.saves?.untilWritten(loaded, signal);
        signal.throwIfAborted();
        const sequenceLease = await loaded.pool.acquire(prompt.tokens, {
          signal,
          maxQueue: this.queueBound(request),
          cacheKey: request.promptCacheKey,
        });
        try {
          await this.saves?.beforeOverwrite(sequenceLease, prompt.tokens);
          const commonPrefix =
            this.saves === undefined
              ? sequenceLease.commonPrefixLength
              : await this.saves.restore(loaded, sequenceLease, prompt.tokens);
          await this.generateOnSequence(
            loaded,
            request,
            prompt,
            grammar,
            sequenceLease,
            commonPrefix,
            signal,
            queue,
          );
          handedOver =
            this.saves?.afterGeneration(loaded, prompt.tokens.length, sequenceLease.sequence, lease) ?? false;
        } finally {
          sequenceLease.release();
        }
      } catch (error) {
        throw withContextHint(error, lease.loaded);
      } finally {
        const count = (this.generating.get(loaded) ?? 1) - 1;
        if (count > 0) this.generating.set(loaded, count);
        else this.generating.delete(loaded);
        if (!handedOver) lease.release();
      }
    } catch (error) {
      if (!signal.aborted) throw error;
      // Aborted while loading, queued or before the first token: still end with exactly one finish.
      queue.push({
        type: "finish",
        reason: "cancelled",
        usage: { inputTokens, cachedInputTokens: 0, outputTokens: 0, reasoningTokens: 0 },
      });
    }
  }

  /** How many waiting requests make a new one a 429: none for a continuation (EngineRequest.continuation). */
  private queueBound(request: EngineRequest): number {
    return request.continuation === true ? Number.POSITIVE_INFINITY : this.maxQueue;
  }

  private async generateOnSequence(
    loaded: LlamaLoadedModel,
    request: EngineRequest,
    prompt: PreparedPrompt,
    grammar: LlamaGrammar | undefined,
    sequenceLease: SequenceLease<LlamaContextSequence>,
    commonPrefixLength: number,
    signal: AbortSignal,
    queue: AsyncQueue<EnginePart>,
  ): Promise<void> {
    const sequence = sequenceLease.sequence;
    const inputTokens = prompt.tokens.length;
    // Held by the sequence or restored from the prompt cache. The last prompt token is always evaluated
    // again to get the logits of the first output token.
    const cachedInputTokens = Math.max(0, Math.min(commonPrefixLength, inputTokens - 1));
    queue.push({ type: "prompt-progress", evaluatedTokens: cachedInputTokens, totalTokens: inputTokens });

    const freeformNames = new Set(
      (request.tools ?? []).flatMap((tool) => (tool.freeform === undefined ? [] : [tool.name])),
    );
    const parts = new PartEmitter(queue, freeformNames);
    if (prompt.forcedFreeform !== undefined) parts.answerAsToolInput(prompt.forcedFreeform.name);
    const meterBefore = sequence.tokenMeter.getState();
    const chat = new LlamaChat({
      contextSequence: sequence,
      chatWrapper: reusingRender(prompt, loaded.model),
      autoDisposeSequence: false,
    });
    let reason: FinishReason;
    let stopSequence: string | undefined;
    let meterFrom = meterBefore;
    // Output tokens generated and then discarded (text after a kept thought, before the constrained answer).
    let discardedTokens = 0;
    // The meter when the model closed its thought (tokens after it in the same run are discarded).
    let thoughtEndMeter: ReturnType<typeof sequence.tokenMeter.getState> | undefined;
    const trackThoughtEnd =
      (onResponseChunk: (chunk: LlamaChatResponseChunk) => void) => (chunk: LlamaChatResponseChunk) => {
        const thoughtEnds =
          chunk.type === "segment" && chunk.segmentType === "thought" && chunk.segmentEndTime !== undefined;
        if (thoughtEndMeter === undefined && thoughtEnds) thoughtEndMeter = sequence.tokenMeter.getState();
        onResponseChunk(chunk);
      };
    /**
     * Before a constrained answer after `thought`: what the thought spent of the output budget (0 without
     * one: a discarded run is not part of the answer), with what was generated after it set aside.
     */
    const settleBeforeAnswer = (thought: string | undefined): number => {
      if (thought === undefined) {
        meterFrom = sequence.tokenMeter.getState();
        return 0;
      }
      const end = thoughtEndMeter ?? sequence.tokenMeter.getState();
      discardedTokens = sequence.tokenMeter.diff(end).usedOutputTokens;
      return TokenMeter.diff(end, meterBefore).usedOutputTokens;
    };
    try {
      const contextRoom = loaded.contextLength - inputTokens - 1;
      const sampling = request.sampling ?? {};
      // The effort's thought budget: when spent, node-llama-cpp closes the thought the way the wrapper
      // closes it and the answer begins. No effort: no budget (the model thinks as long as it likes).
      const thoughtTokens =
        request.reasoningBudgetTokens ??
        thoughtTokenBudget(request.reasoningEffort, loaded.entry.reasoningBudgets);
      const budget = { thoughtTokens };
      /** Sampling for what is left after `spent` output tokens (a thought generated before). */
      const leftAfter = (spent: number) =>
        spent === 0 || sampling.maxTokens === undefined
          ? sampling
          : { ...sampling, maxTokens: sampling.maxTokens - spent };
      /** A later run's room: `history` rendered by `wrapper` (with the thought closed) must fit too. */
      const roomFor = (wrapper: ChatWrapper, history: ChatHistoryItem[], functions = prompt.functions) =>
        loaded.contextLength -
        1 -
        wrapper
          .generateContextState({
            chatHistory: history,
            ...(functions !== undefined
              ? { availableFunctions: functions, documentFunctionParams: true }
              : {}),
          })
          .contextText.tokenize(loaded.promptTokenizer).length;
      const withFunctions = async (
        runSignal: AbortSignal,
        onResponseChunk: (chunk: LlamaChatResponseChunk) => void,
        onCallStart: () => void = noop,
        history = prompt.history,
        spent = 0,
        room = contextRoom,
      ) =>
        chat.generateResponse(history, {
          ...generationOptions(leftAfter(spent), room, runSignal, trackThoughtEnd(onResponseChunk), budget),
          ...(prompt.functions !== undefined ? { functions: prompt.functions } : {}),
          documentFunctionParams: true,
          ...(prompt.maxParallelFunctionCalls !== undefined
            ? { maxParallelFunctionCalls: prompt.maxParallelFunctionCalls }
            : {}),
          onFunctionCallParamsChunk: (chunk) => {
            onCallStart();
            parts.onFunctionCallParamsChunk(chunk);
          },
          onFunctionCall: (call) => {
            // Functions without parameters stream no parameter chunks: their call starts here.
            onCallStart();
            parts.onFunctionCall(call.functionName, call.params);
          },
        });
      const withGrammar = async (
        onChat: LlamaChat = chat,
        history = prompt.history,
        spent = 0,
        room = contextRoom,
      ) =>
        onChat.generateResponse(history, {
          ...generationOptions(
            leftAfter(spent),
            room,
            signal,
            (chunk) => parts.onResponseChunk(chunk),
            budget,
          ),
          ...(grammar !== undefined ? { grammar } : {}),
        });

      /**
       * A constrained answer (a grammar, a forced call) on a model that may think: it thinks first, free,
       * then `answer` runs after the closed thought with what is left of the output budget.
       */
      const thinkFirst = (
        answer: (history: ChatHistoryItem[], spent: number, room: number) => Promise<ChatResponse>,
      ): Promise<ChatResponse> =>
        thinkThenAnswer(
          parts,
          signal,
          async (runSignal, onResponseChunk) => {
            // Nothing is forced or callable while it thinks; the prompt is the same (functions documented).
            const wrapper = prompt.chatWrapper;
            const unforced = wrapper instanceof ForcedFunctionCallChatWrapper ? wrapper.base : wrapper;
            const thinkChat = new LlamaChat({
              contextSequence: sequence,
              chatWrapper:
                prompt.functions === undefined
                  ? reusingRender(prompt, loaded.model)
                  : new DocumentedFunctionsChatWrapper(unforced, prompt.functions),
              autoDisposeSequence: false,
            });
            try {
              return await thinkChat.generateResponse(
                prompt.history,
                generationOptions(sampling, contextRoom, runSignal, trackThoughtEnd(onResponseChunk), budget),
              );
            } finally {
              thinkChat.dispose({ disposeSequence: false });
            }
          },
          async (thought, thinking) => {
            const spent = settleBeforeAnswer(thought);
            const history = afterThought(prompt.history, thought);
            const room = roomFor(prompt.chatWrapper, history);
            // The thought spent the whole output budget (or context): no room left for an answer.
            if (Math.min((sampling.maxTokens ?? Number.POSITIVE_INFINITY) - spent, room) <= 0)
              return { ...thinking, metadata: { stopReason: "maxTokens" } } as ChatResponse;
            return answer(history, spent, room);
          },
        );

      let response: ChatResponse;
      if (prompt.functions === undefined && grammar !== undefined && mayThinkFirst(prompt)) {
        // The grammar applies from the first token: the model thinks first, then answers under it.
        response = await thinkFirst(async (history, spent, room) => {
          const answerChat = new LlamaChat({
            contextSequence: sequence,
            chatWrapper: prompt.chatWrapper,
            autoDisposeSequence: false,
          });
          try {
            return await withGrammar(answerChat, history, spent, room);
          } finally {
            answerChat.dispose({ disposeSequence: false });
          }
        });
      } else if (prompt.functions === undefined) {
        response = await withGrammar();
      } else if (prompt.forcedCall && mayThinkFirst(prompt)) {
        // The forced call's prefix ends the prompt, inside the thought it opens: the model thinks first.
        response = await thinkFirst((history, spent, room) =>
          withFunctions(signal, (chunk) => parts.onResponseChunk(chunk), noop, history, spent, room),
        );
      } else if (grammar === undefined || prompt.forcedCall) {
        // A forced call is this turn's output; a JSON format applies to the text answer of a later turn.
        response = await withFunctions(signal, (chunk) => parts.onResponseChunk(chunk));
      } else {
        const functions = prompt.functions;
        response = await callOrAnswerInFormat(parts, signal, withFunctions, async (thought) => {
          const wrapper = new DocumentedFunctionsChatWrapper(prompt.chatWrapper, functions);
          const answerChat = new LlamaChat({
            contextSequence: sequence,
            chatWrapper: wrapper,
            autoDisposeSequence: false,
          });
          try {
            // A kept thought's tokens are part of this answer (and of its output budget).
            const spent = settleBeforeAnswer(thought);
            if (thought === undefined) return await withGrammar(answerChat);
            const history = afterThought(prompt.history, thought);
            return await withGrammar(answerChat, history, spent, roomFor(wrapper, history, undefined));
          } finally {
            answerChat.dispose({ disposeSequence: false });
          }
        });
      }
      // A thought cut short (max tokens, cancelled) stays open: the finish closes it as incomplete.
      const cutInThought =
        parts.endedInThought && (signal.aborted || response.metadata.stopReason === "maxTokens");
      if (!cutInThought) parts.closeReasoning();
      (response.functionCalls ?? []).forEach((call, index) => {
        if (index >= parts.completedCalls) parts.onFunctionCall(call.functionName, call.params);
      });
      reason = signal.aborted ? "cancelled" : finishReasonFor(response.metadata.stopReason);
      if (reason === "stop" && response.metadata.stopReason === "customStopTrigger")
        stopSequence = stopSequenceOf(response.metadata.customStopTrigger, request.sampling?.stop);
      if (prompt.forcedFreeform !== undefined && reason === "stop") {
        // The answer was the input of the forced freeform call. One cut short (max tokens, cancelled)
        // stays open: the finish closes it as incomplete.
        parts.endToolInput();
        reason = "tool-calls";
      }
    } catch (error) {
      if (!signal.aborted) throw error;
      if (!parts.endedInThought) parts.closeReasoning();
      reason = "cancelled";
    } finally {
      chat.dispose({ disposeSequence: false });
    }
    // Output tokens of the answer given (a discarded first attempt is not part of it).
    const outputTokens = sequence.tokenMeter.diff(meterFrom).usedOutputTokens - discardedTokens;
    const usage: Usage = {
      inputTokens,
      cachedInputTokens,
      outputTokens,
      reasoningTokens: reasoningTokensOf(parts, outputTokens),
    };
    queue.push({ type: "finish", reason, usage, ...(stopSequence === undefined ? {} : { stopSequence }) });
  }

  /** The grammar for a JSON response format (see generateOnSequence for one combined with tools). */
  private async grammarFor(
    loaded: LlamaLoadedModel,
    responseFormat: ResponseFormat | undefined,
  ): Promise<LlamaGrammar | undefined> {
    if (responseFormat === undefined) return undefined;
    switch (responseFormat.type) {
      case "text":
        return undefined;
      case "json_object":
      case "json_schema": {
        if (responseFormat.type === "json_object")
          return this.cachedGrammar("json_object", () => loaded.llama.getGrammarFor("json"));
        // strict: a keyword the grammar cannot enforce is a 400 naming it; otherwise it is dropped. lmhost
        // builds this grammar itself (bounds, patterns and formats node-llama-cpp's builder cannot express).
        const { grammar } = convertJsonSchemaToGbnf(responseFormat.schema, "text.format.schema", {
          strict: responseFormat.strict === true,
        });
        // Keyed by a digest: grammars can be large (up to maxGrammarCharacters), the cache holds 32.
        const key = `schema:${createHash("sha256").update(grammar).digest("base64")}`;
        return this.cachedGrammar(key, async () => {
          try {
            // As node-llama-cpp's JSON schema grammars: the grammar ends with "\n\n\n\n", which stops it.
            return await loaded.llama.createGrammar({
              grammar,
              stopGenerationTriggers: [LlamaText(["\n".repeat(4)])],
              trimWhitespaceSuffix: true,
            });
          } catch (error) {
            throw new ApiError({
              status: 400,
              message: `The JSON schema cannot be turned into a grammar: ${error instanceof Error ? error.message : String(error)}`,
              param: "text.format.schema",
              code: "invalid_json_schema",
            });
          }
        });
      }
      default:
        return assertNever(responseFormat, "response format");
    }
  }

  /** The grammar a forced freeform call's input is generated under (undefined: free text). */
  private async freeformGrammar(
    loaded: LlamaLoadedModel,
    gbnf: string | undefined,
  ): Promise<LlamaGrammar | undefined> {
    if (gbnf === undefined) return undefined;
    const key = `freeform:${createHash("sha256").update(gbnf).digest("base64")}`;
    return this.cachedGrammar(key, async () => {
      try {
        return await loaded.llama.createGrammar({ grammar: gbnf });
      } catch (error) {
        throw new ApiError({
          status: 400,
          message: `The custom tool's grammar cannot be used: ${error instanceof Error ? error.message : String(error)}`,
          param: "tools",
        });
      }
    });
  }

  private async cachedGrammar(key: string, create: () => Promise<LlamaGrammar>): Promise<LlamaGrammar> {
    let grammar = this.grammars.get(key);
    if (grammar === undefined) {
      grammar = create();
      this.grammars.set(key, grammar);
      if (this.grammars.size > maxCachedGrammars) {
        const [oldest] = this.grammars.keys();
        if (oldest !== undefined) this.grammars.delete(oldest);
      }
    } else {
      // Refresh recency.
      this.grammars.delete(key);
      this.grammars.set(key, grammar);
    }
    try {
      return await grammar;
    } catch (error) {
      this.grammars.delete(key);
      throw error;
    }
  }
}

function closedError(): ApiError {
  return new ApiError({
    status: 503,
    message: "The engine is shutting down.",
    code: "engine_closed",
    retryAfter: 1,
  });
}

function noop(): void {}

/**
 * A `context_length_exceeded` on a model running with less context than it was trained for (the loader's
 * memory-fitted default, or a length the user set) says so and what gives more: the client sees OpenAI's
 * wording first, then the operator's lever (context-length.ts `moreContextHint`).
 */
function withContextHint(error: unknown, loaded: LlamaLoadedModel): unknown {
  const trained = loaded.model.trainContextSize;
  if (
    !(error instanceof ApiError) ||
    error.code !== "context_length_exceeded" ||
    loaded.contextLength >= trained
  )
    return error;
  return new ApiError({
    status: error.status,
    type: error.type,
    message: `${error.message} ${moreContextHint(loaded.contextChoice, loaded.contextLength, trained)}`,
    param: error.param,
    code: error.code,
    ...(error.retryAfter !== undefined ? { retryAfter: error.retryAfter } : {}),
  });
}
