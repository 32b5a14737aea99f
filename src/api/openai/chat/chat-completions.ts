/**
 * `POST /v1/chat/completions`: the engine's part stream translated into OpenAI's Chat Completions objects.
 * One translator (ChatCompletionTranslator) turns each part into `chat.completion.chunk` deltas and folds
 * the same parts into the final `chat.completion`, so streamed and non-streamed answers agree:
 *
 * - text → `delta.content`; reasoning → `delta.reasoning_content` (LM Studio's, llama.cpp's and vLLM's
 *   convention; `message.reasoning_content` when not streamed);
 * - a tool call → a `delta.tool_calls` entry with its `index`, `id`, `type` and name, then its argument deltas;
 * - finish → `finish_reason` (`stop` / `length` / `tool_calls`) and, with `stream_options.include_usage`, a
 *   last chunk with no choices and the usage (every earlier chunk then carries `usage: null`, as OpenAI's do).
 */
import { randomBytes } from "node:crypto";
import type { EnginePart, FinishReason, Usage } from "../../../engine/types.js";
import type { App, AppDeps } from "../../../server/deps.js";
import { readJsonBody } from "../../../server/json-body.js";
import { reportUsage } from "../../../server/request-log.js";
import { assertNever, shutdownError } from "../../../shared/errors.js";
import { silentLogger } from "../../../shared/logger.js";
import { cancelledError, startGeneration, streamChunks, type Generation } from "./generation.js";
import { chatCompletionSchema, parseBody } from "./request-schema.js";
import { chatParams, toChatEngineRequest } from "./to-engine-request.js";

type Json = Record<string, unknown>;

export function chatFinishReason(
  reason: Exclude<FinishReason, "cancelled">,
): "stop" | "length" | "tool_calls" {
  switch (reason) {
    case "stop":
      return "stop";
    case "length":
      return "length";
    case "tool-calls":
      return "tool_calls";
    default:
      return assertNever(reason, "finish reason");
  }
}

/** OpenAI's CompletionUsage (shared with /v1/completions). */
export function completionUsage(usage: Usage): Json {
  return {
    prompt_tokens: usage.inputTokens,
    completion_tokens: usage.outputTokens,
    total_tokens: usage.inputTokens + usage.outputTokens,
    prompt_tokens_details: { cached_tokens: usage.cachedInputTokens, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: usage.reasoningTokens,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

/** `chatcmpl-…` / `cmpl-…` ids as OpenAI spells them. */
export function completionId(prefix: "chatcmpl" | "cmpl"): string {
  return `${prefix}-${randomBytes(16).toString("hex")}`;
}

interface ToolCallState {
  index: number;
  id: string;
  name: string;
  arguments: string;
}

export class ChatCompletionTranslator {
  readonly id = completionId("chatcmpl");
  readonly created = Math.floor(Date.now() / 1000);
  private content = "";
  private reasoning = "";
  private readonly calls = new Map<string, ToolCallState>();
  private finishReason: "stop" | "length" | "tool_calls" | undefined;
  private usage: Usage | undefined;

  constructor(
    private readonly model: string,
    private readonly includeUsage: boolean,
  ) {}

  private chunk(choices: Json[], usage?: Json): Json {
    return {
      id: this.id,
      object: "chat.completion.chunk",
      created: this.created,
      model: this.model,
      service_tier: "default",
      system_fingerprint: "lmhost",
      choices,
      ...(this.includeUsage ? { usage: usage ?? null } : {}),
    };
  }

  private delta(delta: Json, finishReason: string | null = null): Json {
    return this.chunk([{ index: 0, delta, logprobs: null, finish_reason: finishReason }]);
  }

  /** The chunk that opens the stream (the assistant role). */
  start(): Json {
    return this.delta({ role: "assistant", content: "", refusal: null });
  }

  /** The chunks for one engine part (none for progress and segment boundaries). */
  write(part: EnginePart): Json[] {
    switch (part.type) {
      case "prompt-progress":
      case "reasoning-start":
      case "reasoning-end":
        return [];
      case "text-delta":
        this.content += part.text;
        return part.text === "" ? [] : [this.delta({ content: part.text })];
      case "reasoning-delta":
        this.reasoning += part.text;
        return part.text === "" ? [] : [this.delta({ reasoning_content: part.text })];
      case "tool-call-start": {
        const state = { index: this.calls.size, id: part.callId, name: part.name, arguments: "" };
        this.calls.set(part.callId, state);
        return [
          this.delta({
            tool_calls: [
              {
                index: state.index,
                id: state.id,
                type: "function",
                function: { name: state.name, arguments: "" },
              },
            ],
          }),
        ];
      }
      case "tool-call-delta": {
        const state = this.calls.get(part.callId);
        if (state === undefined || part.argumentsDelta === "") return [];
        state.arguments += part.argumentsDelta;
        return [
          this.delta({ tool_calls: [{ index: state.index, function: { arguments: part.argumentsDelta } }] }),
        ];
      }
      case "tool-call-end": {
        const state = this.calls.get(part.callId);
        // The complete arguments are authoritative (the deltas already carried them).
        if (
          state !== undefined &&
          part.arguments.startsWith(state.arguments) &&
          part.arguments !== state.arguments
        ) {
          const rest = part.arguments.slice(state.arguments.length);
          state.arguments = part.arguments;
          return [this.delta({ tool_calls: [{ index: state.index, function: { arguments: rest } }] })];
        }
        return [];
      }
      case "finish": {
        if (part.reason === "cancelled") return [];
        this.finishReason = chatFinishReason(part.reason);
        this.usage = part.usage;
        const chunks = [this.delta({}, this.finishReason)];
        if (this.includeUsage) chunks.push(this.chunk([], completionUsage(part.usage)));
        return chunks;
      }
      default:
        return assertNever(part, "engine part");
    }
  }

  /** The non-streamed `chat.completion` (after the finish part). */
  completion(): Json {
    const toolCalls = [...this.calls.values()].map((call) => ({
      id: call.id,
      type: "function",
      function: { name: call.name, arguments: call.arguments },
    }));
    const message: Json = {
      role: "assistant",
      content: this.content === "" && toolCalls.length > 0 ? null : this.content,
      refusal: null,
      annotations: [],
      ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
      ...(this.reasoning === "" ? {} : { reasoning_content: this.reasoning }),
    };
    return {
      id: this.id,
      object: "chat.completion",
      created: this.created,
      model: this.model,
      service_tier: "default",
      system_fingerprint: "lmhost",
      choices: [{ index: 0, message, logprobs: null, finish_reason: this.finishReason ?? "stop" }],
      ...(this.usage === undefined ? {} : { usage: completionUsage(this.usage) }),
    };
  }
}

/** The chunks of a streamed generation; a run stopped by shutdown ends with an error (an error event). */
async function* chatChunks(
  generation: Generation,
  translator: ChatCompletionTranslator,
): AsyncGenerator<Json> {
  yield translator.start();
  for await (const part of generation.parts) {
    if (part.type === "finish" && part.reason === "cancelled") {
      const shutdown = shutdownError(generation.signal);
      if (shutdown !== undefined) throw shutdown;
      return;
    }
    yield* translator.write(part);
  }
}

export function registerChatCompletionsRoute(app: App, deps: AppDeps): void {
  const logger = deps.logger ?? silentLogger;
  app.post("/v1/chat/completions", async (context) => {
    const body = parseBody(chatCompletionSchema, await readJsonBody(context));
    const request = toChatEngineRequest(body);
    await deps.models.get(request.model);
    const stream = body.stream === true;
    const generation = await startGeneration(deps, request, context.req.raw.signal, {
      params: chatParams,
      onUsage: (usage) =>
        reportUsage(context, {
          model: request.model,
          inputTokens: usage.inputTokens,
          outputTokens: usage.outputTokens,
          cachedTokens: usage.cachedInputTokens,
        }),
      ...(stream ? { startAfterMilliseconds: deps.streamStartAfterMilliseconds ?? 1_000 } : {}),
    });
    const translator = new ChatCompletionTranslator(body.model, body.stream_options?.include_usage === true);
    if (stream) return streamChunks(context, deps, chatChunks(generation, translator), logger);
    for await (const part of generation.parts) {
      if (part.type === "finish" && part.reason === "cancelled") {
        throw cancelledError(generation.signal);
      }
      translator.write(part);
    }
    return context.json(translator.completion());
  });
}
