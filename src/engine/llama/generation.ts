/**
 * One LlamaChat generation's options and callbacks: sampling → node-llama-cpp options, and its chunks →
 * EngineParts (PartEmitter: text, reasoning segments, streamed function calls, a forced freeform call's
 * input), the call-or-answer-in-format strategy for tools beside a text format, think-then-answer for a
 * constrained answer on a thinking model, and node-llama-cpp's stop reasons → finish reasons. The engine (engine.ts) owns the model, sequence and queue around it.
 */
import { randomInt } from "node:crypto";
import type {
  ChatHistoryItem,
  ChatModelFunctions,
  LLamaChatGenerateResponseOptions,
  LLamaContextualRepeatPenalty,
  LlamaChatResponse,
  LlamaChatResponseChunk,
  LlamaChatResponseFunctionCallParamsChunk,
} from "node-llama-cpp";
import { linkAbortSignals } from "../../shared/abort-signals.js";
import { assertNever } from "../../shared/errors.js";
import { newId } from "../../shared/ids.js";
import type { EnginePart, FinishReason, SamplingOptions } from "../types.js";
import type { AsyncQueue } from "./async-queue.js";
import { closesThoughtItself } from "./chat-wrapper.js";
import type { PreparedPrompt } from "./prompt.js";

type StopReason = LlamaChatResponse["metadata"]["stopReason"];
/** What LlamaChat.generateResponse resolves with, with or without functions. */
export type ChatResponse = LlamaChatResponse<ChatModelFunctions> | LlamaChatResponse;

export function finishReasonFor(stopReason: StopReason): FinishReason {
  switch (stopReason) {
    case "eogToken":
    case "stopGenerationTrigger":
    case "customStopTrigger":
      return "stop";
    case "functionCalls":
      return "tool-calls";
    case "maxTokens":
      return "length";
    case "abort":
      return "cancelled";
    default:
      return assertNever(stopReason, "stop reason");
  }
}

/** The stop string a custom stop trigger matched (node-llama-cpp reports the trigger as text pieces and tokens). */
export function stopSequenceOf(
  trigger: readonly (string | number)[],
  stops: readonly string[] | undefined,
): string | undefined {
  const text = trigger.filter((piece): piece is string => typeof piece === "string").join("");
  return stops?.find((stop) => stop === text) ?? (text === "" ? undefined : text);
}

export type CommonGenerationOptions = Omit<
  LLamaChatGenerateResponseOptions<ChatModelFunctions>,
  | "grammar"
  | "functions"
  | "documentFunctionParams"
  | "maxParallelFunctionCalls"
  | "onFunctionCall"
  | "onFunctionCallParamsChunk"
>;

/**
 * Reasoning tokens of a generation: the thought tokens streamed, never more than the output. A generation
 * that ended inside its thought (max tokens, cancelled) spent every output token not streamed as answer on
 * thinking, the ones node-llama-cpp held back (a possible start of the closing tag) included.
 */
export function reasoningTokensOf(parts: PartEmitter, outputTokens: number): number {
  const streamed = Math.min(parts.reasoningTokens, outputTokens);
  return parts.endedInThought ? Math.max(streamed, outputTokens - parts.answerTokens) : streamed;
}

/**
 * Sampling → LlamaChat options. Unset values keep node-llama-cpp's defaults, except that no repeat penalty is
 * applied unless asked for. `budget.thoughtTokens` caps the thought (undefined: no cap).
 */
export function generationOptions(
  sampling: SamplingOptions,
  contextRoom: number,
  signal: AbortSignal,
  onResponseChunk: (chunk: LlamaChatResponseChunk) => void,
  budget: { thoughtTokens?: number | undefined } = {},
): CommonGenerationOptions {
  const maxTokens = Math.max(1, Math.min(sampling.maxTokens ?? Number.POSITIVE_INFINITY, contextRoom));
  const penaltyRequested =
    sampling.repeatPenalty !== undefined ||
    sampling.presencePenalty !== undefined ||
    sampling.frequencyPenalty !== undefined;
  const repeatPenalty: false | LLamaContextualRepeatPenalty = penaltyRequested
    ? {
        penalty: sampling.repeatPenalty ?? 1,
        ...(sampling.presencePenalty !== undefined ? { presencePenalty: sampling.presencePenalty } : {}),
        ...(sampling.frequencyPenalty !== undefined ? { frequencyPenalty: sampling.frequencyPenalty } : {}),
      }
    : false;
  const stop = (sampling.stop ?? []).filter((trigger) => trigger !== "");
  return {
    signal,
    stopOnAbortSignal: true,
    maxTokens,
    repeatPenalty,
    onResponseChunk,
    ...(sampling.temperature !== undefined ? { temperature: sampling.temperature } : {}),
    ...(sampling.topP !== undefined ? { topP: sampling.topP } : {}),
    ...(sampling.topK !== undefined ? { topK: sampling.topK } : {}),
    ...(sampling.minP !== undefined ? { minP: sampling.minP } : {}),
    // node-llama-cpp seeds with the current second when none is given: identical requests within a second
    // would sample identical text. A random seed per generation unless the client chose one.
    seed: sampling.seed ?? randomSeed(),
    ...(stop.length > 0 ? { customStopTriggers: stop } : {}),
    ...(budget.thoughtTokens !== undefined ? { budgets: { thoughtTokens: budget.thoughtTokens } } : {}),
  };
}

/** A random sampler seed (llama.cpp takes an unsigned 32-bit integer). */
export function randomSeed(): number {
  return randomInt(0, 0xffff_ffff);
}

interface CallState {
  callId: string;
  name: string;
  arguments: string;
  /** Trailing whitespace not sent yet: the grammar's terminator streams newlines after the arguments. */
  pendingWhitespace: string;
}

/**
 * Turns node-llama-cpp's callbacks into EngineParts: text, reasoning segments and streamed function calls.
 * Calls of freeform tools (`freeformNames`) made through function calling carry `{input}`: their raw input
 * is sent once the call is complete. `answerAsToolInput` makes the answer's text the input of a call.
 */
export class PartEmitter {
  reasoningTokens = 0;
  /** Output tokens streamed outside thoughts (answer text, comments). */
  answerTokens = 0;
  /** True while the last output seen was inside a thought (kept after closeReasoning; see reasoningTokensOf). */
  endedInThought = false;
  completedCalls = 0;
  private reasoningOpen = false;
  private readonly calls = new Map<number, CallState>();
  /** The forced freeform call the answer's text is the input of. */
  private toolInput: { name: string; callId: string | undefined; input: string } | undefined;

  constructor(
    private readonly queue: AsyncQueue<EnginePart>,
    private readonly freeformNames: ReadonlySet<string> = new Set(),
  ) {}

  /** From now on, the answer's text is streamed as the input of a call of the freeform tool `name`. */
  answerAsToolInput(name: string): void {
    this.toolInput = { name, callId: undefined, input: "" };
  }

  /** The forced freeform call's input is complete (an empty input still makes a call). */
  endToolInput(): void {
    const call = this.toolInput;
    if (call === undefined) return;
    const callId = this.startToolInput(call);
    this.queue.push({ type: "tool-call-end", callId, name: call.name, arguments: call.input });
    this.toolInput = undefined;
  }

  private startToolInput(call: NonNullable<PartEmitter["toolInput"]>): string {
    if (call.callId !== undefined) return call.callId;
    this.closeReasoning();
    call.callId = newId("call");
    this.queue.push({ type: "tool-call-start", callId: call.callId, name: call.name });
    return call.callId;
  }

  onResponseChunk(chunk: LlamaChatResponseChunk): void {
    if (chunk.type !== "segment" || chunk.segmentType !== "thought") {
      this.endedInThought = false;
      this.answerTokens += chunk.tokens.length;
    }
    if (chunk.type === undefined) {
      this.closeReasoning();
      if (chunk.text === "") return;
      const call = this.toolInput;
      if (call !== undefined) {
        const callId = this.startToolInput(call);
        call.input += chunk.text;
        this.queue.push({ type: "tool-call-delta", callId, argumentsDelta: chunk.text });
      } else this.queue.push({ type: "text-delta", text: chunk.text });
      return;
    }
    switch (chunk.segmentType) {
      case "thought":
        if (!this.reasoningOpen) {
          if (chunk.segmentEndTime !== undefined && chunk.text === "") return;
          this.reasoningOpen = true;
          this.queue.push({ type: "reasoning-start" });
        }
        this.reasoningTokens += chunk.tokens.length;
        this.endedInThought = chunk.segmentEndTime === undefined;
        if (chunk.text !== "") this.queue.push({ type: "reasoning-delta", text: chunk.text });
        if (chunk.segmentEndTime !== undefined) this.closeReasoning();
        return;
      case "comment":
        // Harmony's commentary channel (tool-call preambles) is user-visible text.
        this.closeReasoning();
        if (chunk.text !== "") this.queue.push({ type: "text-delta", text: chunk.text });
        return;
      default:
        assertNever(chunk, "segment chunk");
    }
  }

  onFunctionCallParamsChunk(chunk: LlamaChatResponseFunctionCallParamsChunk): void {
    this.endedInThought = false;
    const state = this.startCall(chunk.callIndex, chunk.functionName);
    // A freeform tool's `{"input": ...}` is unwrapped when the call is complete.
    if (this.freeformNames.has(chunk.functionName)) return;
    const text = state.pendingWhitespace + chunk.paramsChunk;
    const trailing = /\s*$/.exec(text)?.[0] ?? "";
    const ready = text.slice(0, text.length - trailing.length);
    state.pendingWhitespace = trailing;
    if (ready !== "") {
      state.arguments += ready;
      this.queue.push({ type: "tool-call-delta", callId: state.callId, argumentsDelta: ready });
    }
  }

  /** A call is complete (node-llama-cpp reports calls in order). */
  onFunctionCall(functionName: string, params: unknown): void {
    this.endedInThought = false;
    const index = this.completedCalls;
    this.completedCalls += 1;
    const state = this.startCall(index, functionName);
    if (this.freeformNames.has(functionName)) {
      state.arguments = freeformInput(params);
      if (state.arguments !== "")
        this.queue.push({ type: "tool-call-delta", callId: state.callId, argumentsDelta: state.arguments });
    } else if (state.arguments === "") {
      // No parameters were streamed (a function without parameters, or a placeholder value).
      const serialized = params === undefined || params === "" ? "{}" : JSON.stringify(params);
      state.arguments = serialized;
      this.queue.push({ type: "tool-call-delta", callId: state.callId, argumentsDelta: serialized });
    }
    this.queue.push({
      type: "tool-call-end",
      callId: state.callId,
      name: state.name,
      arguments: state.arguments,
    });
  }

  closeReasoning(): void {
    if (!this.reasoningOpen) return;
    this.reasoningOpen = false;
    this.queue.push({ type: "reasoning-end" });
  }

  private startCall(callIndex: number, functionName: string): CallState {
    let state = this.calls.get(callIndex);
    if (state === undefined) {
      this.closeReasoning();
      state = { callId: newId("call"), name: functionName, arguments: "", pendingWhitespace: "" };
      this.calls.set(callIndex, state);
      this.queue.push({ type: "tool-call-start", callId: state.callId, name: functionName });
    }
    return state;
  }
}

/**
 * Tools and a JSON format: node-llama-cpp cannot combine a grammar with functions in one generation. The
 * model first runs with its functions (`withFunctions`). Until it starts a call or writes text (whitespace
 * does not count: models put newlines before a call), its chunks are held back. Text stops that attempt;
 * so does an attempt that ends with neither. The answer is then generated again under the grammar
 * (`answerInFormat`, from the same prompt: the functions still documented, no longer callable), so only
 * the discarded tail is evaluated again. A thought the model closed before its text is kept: it streams as
 * the answer's reasoning and the answer continues after it (thinkThenAnswer tells why).
 */
export async function callOrAnswerInFormat(
  parts: PartEmitter,
  signal: AbortSignal,
  withFunctions: (
    runSignal: AbortSignal,
    onResponseChunk: (chunk: LlamaChatResponseChunk) => void,
    onCallStart: () => void,
  ) => Promise<ChatResponse>,
  answerInFormat: (thought: string | undefined) => Promise<ChatResponse>,
): Promise<ChatResponse> {
  const textStarted = new AbortController();
  const attempt = linkAbortSignals(signal, textStarted.signal);
  const held: LlamaChatResponseChunk[] = [];
  let decided: "call" | "text" | undefined;
  const startCall = () => {
    if (decided !== undefined) return;
    decided = "call";
    // Held reasoning belongs to this answer; held whitespace before the call does not.
    for (const chunk of held.splice(0)) if (chunk.type !== undefined) parts.onResponseChunk(chunk);
  };
  let response: ChatResponse;
  try {
    response = await withFunctions(
      attempt.signal,
      (chunk) => {
        if (decided === "call") parts.onResponseChunk(chunk);
        else if (decided === undefined) {
          held.push(chunk);
          if (chunk.type === undefined && chunk.text.trim() !== "") {
            decided = "text";
            textStarted.abort();
          }
        }
      },
      startCall,
    );
  } finally {
    attempt.dispose();
  }
  const called = decided === "call" || (response.functionCalls?.length ?? 0) > 0;
  if (!signal.aborted && !called && response.metadata.stopReason !== "maxTokens") {
    // A thinking model's closed thought is this answer's reasoning: it streams, and the answer follows it.
    const thoughts = held.filter((chunk) => chunk.type === "segment" && chunk.segmentType === "thought");
    const closed = thoughts.some((chunk) => chunk.type === "segment" && chunk.segmentEndTime !== undefined);
    if (!closed) return answerInFormat(undefined);
    for (const chunk of thoughts) parts.onResponseChunk(chunk);
    return answerInFormat(thoughts.map((chunk) => chunk.text).join(""));
  }
  // A call, or the token budget spent before anything was decided: what was held is the answer.
  if (decided !== "text") startCall();
  return response;
}

/**
 * A thinking model and a constrained answer (a JSON format, a forced freeform call's grammar). node-llama-cpp
 * applies a grammar from the first generated token, so where the generation prompt opens the thought
 * (`<think>` at its end) the whole JSON was generated as the thought and no answer followed. So the model
 * first runs without the grammar (`think`): its thought streams as reasoning, and the thought's end (or a
 * first chunk outside any thought: the model did not think) stops that run. The answer is then generated
 * under the grammar (`answer`), after the closed thought (undefined: none), so only what follows the thought
 * is evaluated again. A run cut short inside its thought (max tokens, cancelled, a client's stop string) is
 * the response as it is; one that ends its turn there gets its answer after the thought all the same.
 */
export async function thinkThenAnswer(
  parts: PartEmitter,
  signal: AbortSignal,
  think: (
    runSignal: AbortSignal,
    onResponseChunk: (chunk: LlamaChatResponseChunk) => void,
  ) => Promise<ChatResponse>,
  answer: (thought: string | undefined, thinking: ChatResponse) => Promise<ChatResponse>,
): Promise<ChatResponse> {
  const thoughtEnded = new AbortController();
  const attempt = linkAbortSignals(signal, thoughtEnded.signal);
  let thought: string | undefined;
  let ended = false;
  let response: ChatResponse;
  try {
    response = await think(attempt.signal, (chunk) => {
      if (ended) return;
      if (chunk.type === "segment" && chunk.segmentType === "thought") {
        parts.onResponseChunk(chunk);
        thought = (thought ?? "") + chunk.text;
        ended = chunk.segmentEndTime !== undefined;
      } else ended = thought !== undefined || chunk.text.trim() !== "";
      if (ended) thoughtEnded.abort();
    });
  } finally {
    attempt.dispose();
  }
  if (signal.aborted) return response;
  if (!ended) {
    // The model ended its turn inside the thought, never closing it: the thought is over all the same, and
    // the constrained part (the JSON, the forced call) still follows it. Max tokens or a client's stop
    // string end the response there.
    const stop = response.metadata.stopReason;
    if (thought === undefined || (stop !== "eogToken" && stop !== "stopGenerationTrigger")) return response;
    parts.closeReasoning();
  }
  return answer(thought, response);
}

/**
 * Whether the model may open its answer with a thought (its wrapper has thought segments) that is not
 * already written into the prompt, closed (thinking switched off): see thinkThenAnswer.
 */
export function mayThinkFirst(prompt: PreparedPrompt): boolean {
  const newTurn = prompt.history.at(-1);
  return (
    prompt.chatWrapper.settings.segments?.thought !== undefined &&
    !closesThoughtItself(prompt.chatWrapper) &&
    newTurn?.type === "model" &&
    newTurn.response.length === 0
  );
}

/** The history with the new turn's answer opened by `thought`, closed (undefined: as it is). */
export function afterThought(history: ChatHistoryItem[], thought: string | undefined): ChatHistoryItem[] {
  if (thought === undefined) return history;
  return [
    ...history.slice(0, -1),
    { type: "model", response: [{ type: "segment", segmentType: "thought", text: thought, ended: true }] },
  ];
}

/** The raw input of a freeform tool called through function calling (`{"input": "..."}`). */
export function freeformInput(params: unknown): string {
  if (typeof params === "string") return params;
  if (typeof params === "object" && params !== null && "input" in params && typeof params.input === "string")
    return params.input;
  return params === undefined ? "" : JSON.stringify(params);
}
