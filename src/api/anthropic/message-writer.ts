/**
 * The Anthropic Messages event writer: a small state machine, one call per engine part, that owns the
 * content block indexes and the open block, and closes whatever is open on finish. It produces Anthropic's
 * stream grammar — `message_start`, `ping`, per block `content_block_start` → deltas
 * (`text_delta` / `thinking_delta` + `signature_delta` / `input_json_delta`) → `content_block_stop`, then
 * `message_delta` (stop_reason, stop_sequence, usage) and `message_stop`. A non-streamed request folds the
 * very same events (`foldMessage`, the mirror of the SDK's MessageStream accumulator), so streamed and
 * non-streamed answers are equal by construction.
 *
 * Usage is Anthropic's: `input_tokens` are the prompt tokens evaluated now, `cache_read_input_tokens` the
 * ones reused from the KV cache (the engine's cached tokens), `cache_creation_input_tokens` always 0.
 */
import type { EnginePart, FinishReason, Usage } from "../../engine/types.js";
import { assertNever } from "../../shared/errors.js";
import { newToolUseId, type ThinkingOutput } from "./to-engine-request.js";
import type { AnthropicErrorBody } from "./errors.js";

export type StopReason = "end_turn" | "max_tokens" | "stop_sequence" | "tool_use";

export type ContentBlock =
  | { type: "text"; text: string; citations: null }
  | { type: "thinking"; thinking: string; signature: string }
  | {
      type: "tool_use";
      id: string;
      name: string;
      input: Record<string, unknown>;
      caller: { type: "direct" };
    };

export interface MessageUsage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
  output_tokens_details?: { thinking_tokens: number };
  service_tier?: "standard";
}

export interface AnthropicMessage {
  id: string;
  type: "message";
  role: "assistant";
  model: string;
  content: ContentBlock[];
  stop_reason: StopReason | null;
  stop_sequence: string | null;
  stop_details: null;
  container: null;
  usage: MessageUsage;
}

export type ContentDelta =
  | { type: "text_delta"; text: string }
  | { type: "thinking_delta"; thinking: string }
  | { type: "signature_delta"; signature: string }
  | { type: "input_json_delta"; partial_json: string };

export type MessageStreamEvent =
  | { type: "message_start"; message: AnthropicMessage }
  | { type: "ping" }
  | { type: "content_block_start"; index: number; content_block: ContentBlock }
  | { type: "content_block_delta"; index: number; delta: ContentDelta }
  | { type: "content_block_stop"; index: number }
  | {
      type: "message_delta";
      delta: { stop_reason: StopReason; stop_sequence: string | null; stop_details: null; container: null };
      usage: MessageUsage;
    }
  | { type: "message_stop" }
  | AnthropicErrorBody;

export interface MessageWriterOptions {
  id: string;
  model: string;
  thinking: ThinkingOutput;
  /** The signature of a finished thinking block's text. */
  sign(thinking: string): string;
}

type OpenBlock =
  | { type: "text"; index: number }
  | { type: "thinking"; index: number; text: string }
  | { type: "tool_use"; index: number; callId: string; argumentsSent: boolean }
  /** A thought dropped from the answer (thinking disabled): its parts are skipped. */
  | { type: "dropped" };

export function toMessageUsage(usage: Usage): MessageUsage {
  return {
    input_tokens: Math.max(0, usage.inputTokens - usage.cachedInputTokens),
    output_tokens: usage.outputTokens,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: usage.cachedInputTokens,
    output_tokens_details: { thinking_tokens: usage.reasoningTokens },
    service_tier: "standard",
  };
}

export function stopReasonOf(
  reason: Exclude<FinishReason, "cancelled">,
  stopSequence: string | undefined,
): StopReason {
  switch (reason) {
    case "stop":
      return stopSequence === undefined ? "end_turn" : "stop_sequence";
    case "length":
      return "max_tokens";
    case "tool-calls":
      return "tool_use";
    default:
      return assertNever(reason, "finish reason");
  }
}

export class MessageEventWriter {
  private open: OpenBlock | undefined;
  private nextIndex = 0;
  private started = false;
  /** True once the message ended (message_stop written) or was cancelled. */
  finished = false;
  /** The engine's finish said "cancelled": no message_stop was written. */
  cancelled = false;

  constructor(private readonly options: MessageWriterOptions) {}

  /**
   * `message_start` (with the prompt's token counts when known: the engine's first `prompt-progress`) and
   * one `ping`, as Anthropic sends them.
   */
  start(prompt?: { inputTokens: number; cachedInputTokens: number }): MessageStreamEvent[] {
    if (this.started) return [];
    this.started = true;
    const usage = toMessageUsage({
      inputTokens: prompt?.inputTokens ?? 0,
      cachedInputTokens: prompt?.cachedInputTokens ?? 0,
      outputTokens: 0,
      reasoningTokens: 0,
    });
    delete usage.output_tokens_details;
    const message: AnthropicMessage = {
      id: this.options.id,
      type: "message",
      role: "assistant",
      model: this.options.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      stop_details: null,
      container: null,
      usage,
    };
    return [{ type: "message_start", message }, { type: "ping" }];
  }

  write(part: EnginePart): MessageStreamEvent[] {
    if (this.finished) return [];
    const events = this.start(
      part.type === "prompt-progress"
        ? { inputTokens: part.totalTokens, cachedInputTokens: part.evaluatedTokens }
        : undefined,
    );
    switch (part.type) {
      case "prompt-progress":
        break;
      case "text-delta":
        if (part.text === "") break;
        if (this.open?.type !== "text")
          events.push(...this.openBlock({ type: "text", text: "", citations: null }));
        events.push(this.delta({ type: "text_delta", text: part.text }));
        break;
      case "reasoning-start":
        events.push(...this.closeBlock());
        if (this.options.thinking === "none") this.open = { type: "dropped" };
        else events.push(...this.openBlock({ type: "thinking", thinking: "", signature: "" }));
        break;
      case "reasoning-delta":
        if (this.open?.type !== "thinking") break;
        this.open.text += part.text;
        if (this.options.thinking === "text" && part.text !== "")
          events.push(this.delta({ type: "thinking_delta", thinking: part.text }));
        break;
      case "reasoning-end":
        if (this.open?.type === "thinking" || this.open?.type === "dropped")
          events.push(...this.closeBlock());
        break;
      case "tool-call-start":
        events.push(
          ...this.openBlock(
            { type: "tool_use", id: newToolUseId(), name: part.name, input: {}, caller: { type: "direct" } },
            part.callId,
          ),
        );
        break;
      case "tool-call-delta":
        if (this.open?.type !== "tool_use" || this.open.callId !== part.callId || part.argumentsDelta === "")
          break;
        this.open.argumentsSent = true;
        events.push(this.delta({ type: "input_json_delta", partial_json: part.argumentsDelta }));
        break;
      case "tool-call-end":
        if (this.open?.type !== "tool_use" || this.open.callId !== part.callId) break;
        if (!this.open.argumentsSent && part.arguments !== "")
          events.push(this.delta({ type: "input_json_delta", partial_json: part.arguments }));
        events.push(...this.closeBlock());
        break;
      case "finish": {
        events.push(...this.closeBlock());
        this.finished = true;
        if (part.reason === "cancelled") {
          this.cancelled = true;
          break;
        }
        events.push(
          {
            type: "message_delta",
            delta: {
              stop_reason: stopReasonOf(part.reason, part.stopSequence),
              stop_sequence: part.reason === "stop" ? (part.stopSequence ?? null) : null,
              stop_details: null,
              container: null,
            },
            usage: toMessageUsage(part.usage),
          },
          { type: "message_stop" },
        );
        break;
      }
      default:
        assertNever(part, "engine part");
    }
    return events;
  }

  private openBlock(block: ContentBlock, callId = ""): MessageStreamEvent[] {
    const events = this.closeBlock();
    const index = this.nextIndex++;
    this.open =
      block.type === "tool_use"
        ? { type: "tool_use", index, callId, argumentsSent: false }
        : block.type === "thinking"
          ? { type: "thinking", index, text: "" }
          : { type: "text", index };
    events.push({ type: "content_block_start", index, content_block: block });
    return events;
  }

  private delta(delta: ContentDelta): MessageStreamEvent {
    if (this.open === undefined || this.open.type === "dropped") throw new Error("No content block is open.");
    return { type: "content_block_delta", index: this.open.index, delta };
  }

  /** Closes the open block; a thinking block gets its signature first. */
  private closeBlock(): MessageStreamEvent[] {
    const open = this.open;
    this.open = undefined;
    if (open === undefined || open.type === "dropped") return [];
    const events: MessageStreamEvent[] = [];
    if (open.type === "thinking") {
      events.push({
        type: "content_block_delta",
        index: open.index,
        delta: { type: "signature_delta", signature: this.options.sign(open.text) },
      });
    }
    events.push({ type: "content_block_stop", index: open.index });
    return events;
  }
}

/** Parses a tool call's arguments (always a JSON object under the grammar; `{}` if cut short). */
function parseInput(json: string): Record<string, unknown> {
  if (json.trim() === "") return {};
  try {
    const value = JSON.parse(json) as unknown;
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : {};
  } catch {
    return {};
  }
}

/**
 * The message the events describe (the non-streamed answer): throws on events out of order, as the
 * SDK's accumulator does, so a writer bug cannot pass unnoticed.
 */
export function foldMessage(events: Iterable<MessageStreamEvent>): AnthropicMessage {
  let message: AnthropicMessage | undefined;
  const json = new Map<number, string>();
  let stopped = false;
  for (const event of events) {
    if (event.type === "message_start") {
      if (message !== undefined) throw new Error("message_start came twice.");
      message = structuredClone(event.message);
      continue;
    }
    if (event.type === "ping" || event.type === "error") continue;
    if (message === undefined) throw new Error(`${event.type} came before message_start.`);
    switch (event.type) {
      case "content_block_start":
        if (event.index !== message.content.length)
          throw new Error(`Block ${event.index} started out of order.`);
        message.content.push(structuredClone(event.content_block));
        break;
      case "content_block_delta": {
        const block = message.content[event.index];
        const delta = event.delta;
        if (block === undefined)
          throw new Error(`A delta for block ${event.index}, which was never started.`);
        if (delta.type === "text_delta" && block.type === "text") block.text += delta.text;
        else if (delta.type === "thinking_delta" && block.type === "thinking")
          block.thinking += delta.thinking;
        else if (delta.type === "signature_delta" && block.type === "thinking")
          block.signature = delta.signature;
        else if (delta.type === "input_json_delta" && block.type === "tool_use")
          json.set(event.index, (json.get(event.index) ?? "") + delta.partial_json);
        else throw new Error(`A ${delta.type} for a ${block.type} block.`);
        break;
      }
      case "content_block_stop": {
        const block = message.content[event.index];
        if (block?.type === "tool_use") block.input = parseInput(json.get(event.index) ?? "");
        break;
      }
      case "message_delta":
        message.stop_reason = event.delta.stop_reason;
        message.stop_sequence = event.delta.stop_sequence;
        message.usage = { ...event.usage };
        break;
      case "message_stop":
        stopped = true;
        break;
      default:
        assertNever(event, "message stream event");
    }
  }
  if (message === undefined || !stopped) throw new Error("The message stream ended before message_stop.");
  return message;
}
