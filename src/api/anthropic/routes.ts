/**
 * Anthropic's Messages API over the engine part stream:
 * - POST /v1/messages               a `message` object, or (`stream: true`) Anthropic's SSE event grammar
 * - POST /v1/messages/count_tokens  `{input_tokens}` of the prompt the same body would evaluate
 * Handlers only parse (request-schema.ts), translate (to-engine-request.ts), run the engine and write
 * (message-writer.ts). As /v1/responses: the engine's first part is awaited before anything is sent, so a
 * refusal up front (unknown model 404, context overflow 400, full queue 429) is a plain HTTP error — unless a
 * stream waits longer than `streamStartAfterMilliseconds` (model loading, queue), which then starts with
 * `message_start` and `ping` keep-alives and reports a later failure as an `event: error`. The request's
 * signal (client gone) and the server's shutdown signal stop the generation; a shutdown ends a stream with an
 * `overloaded_error` event and a non-streamed request with a 503. Errors of every kind on these paths are
 * rendered in Anthropic's shape by app.ts (errors.ts).
 */
import type { Engine, EnginePart, Usage } from "../../engine/types.js";
import { newReasoningKey, sealReasoning } from "../../responses/reasoning-seal.js";
import type { App, AppDeps } from "../../server/deps.js";
import { readJsonBody } from "../../server/json-body.js";
import { reportUsage } from "../../server/request-log.js";
import { formatSseEvent, streamSse, type SseEvent } from "../../server/sse.js";
import { firstWithin, linkAbortSignals } from "../../shared/abort-signals.js";
import { ApiError, shutdownError, toApiError } from "../../shared/errors.js";
import { newId } from "../../shared/ids.js";
import { silentLogger, type Logger } from "../../shared/logger.js";
import { parseRequestBody } from "../openai/responses/validation-errors.js";
import { toAnthropicError } from "./errors.js";
import { foldMessage, MessageEventWriter, type MessageStreamEvent } from "./message-writer.js";
import { countTokensSchema, createMessageSchema } from "./request-schema.js";
import { THINKING_SEAL_ID, toMessagesRequest, type MessagesRequest } from "./to-engine-request.js";

type PartIterator = AsyncIterator<EnginePart, unknown, undefined>;

interface MessageRun {
  events: AsyncGenerator<MessageStreamEvent, void, undefined>;
  /** Set when the run ended with an error event: what a non-streamed request answers instead. */
  failure(): ApiError | undefined;
}

/**
 * Calls the engine and waits for its first part (or `startAfterMilliseconds`), so up-front refusals throw
 * here as HTTP errors; then the events of the whole message.
 */
async function startMessageRun(
  engine: Engine,
  request: MessagesRequest,
  signal: AbortSignal,
  options: {
    startAfterMilliseconds?: number;
    sign(text: string): string;
    logger: Logger;
    /** Called with the usage of the `finish` part (the request log line, request-log.ts). */
    onUsage?: (usage: Usage) => void;
  },
): Promise<MessageRun> {
  const parts: PartIterator = engine.generate(request.engineRequest, signal)[Symbol.asyncIterator]();
  const firstPart = parts.next().catch((error: unknown) => {
    throw shutdownError(signal) ?? error;
  });
  const first = await firstWithin(firstPart, options.startAfterMilliseconds);
  // A run that is never iterated must leave no unhandled rejection; runEvents awaits it.
  if (first === undefined) firstPart.catch(() => undefined);
  const writer = new MessageEventWriter({
    id: newId("msg"),
    model: request.model,
    thinking: request.thinkingOutput,
    sign: options.sign,
  });
  let failure: ApiError | undefined;

  async function* runEvents(): AsyncGenerator<MessageStreamEvent, void, undefined> {
    try {
      let next: IteratorResult<EnginePart, unknown>;
      if (first === undefined) {
        // The model is still loading or queued: the stream starts now, keep-alives follow.
        yield* writer.start();
        next = await firstPart;
      } else {
        next = first;
      }
      while (next.done !== true) {
        if (next.value.type === "finish") options.onUsage?.(next.value.usage);
        yield* writer.write(next.value);
        if (writer.finished) break;
        next = await parts.next();
      }
      if (!writer.finished) throw new Error("The engine ended its part stream without a finish part.");
      const shutdown = writer.cancelled ? shutdownError(signal) : undefined;
      if (shutdown !== undefined) {
        failure = shutdown;
        yield toAnthropicError(shutdown);
      }
    } catch (error) {
      // The client went away: there is no one to tell.
      if (signal.aborted && shutdownError(signal) === undefined) return;
      failure = shutdownError(signal) ?? toApiError(error);
      if (failure.status >= 500) {
        options.logger.error(`Message failed: ${(error as Error).stack ?? String(error)}`);
      }
      yield toAnthropicError(failure);
    } finally {
      await parts.return?.();
    }
  }
  return { events: runEvents(), failure: () => failure };
}

async function* toSseEvents(
  events: AsyncIterable<MessageStreamEvent>,
  done: () => void,
): AsyncGenerator<SseEvent, void, undefined> {
  try {
    for await (const event of events) yield { event: event.type, data: event };
  } finally {
    done();
  }
}

export function registerAnthropicRoutes(app: App, deps: AppDeps): void {
  const logger = deps.logger ?? silentLogger;
  // Thinking signatures seal the thought (as reasoning items' encrypted_content), so a block returned
  // with its text omitted can be restored on the next turn.
  const reasoningKey = deps.reasoningKey ?? newReasoningKey();
  const sign = (text: string) => sealReasoning(reasoningKey, THINKING_SEAL_ID, text);
  const keepAliveText = formatSseEvent({ event: "ping", data: { type: "ping" } });

  app.post("/v1/messages/count_tokens", async (context) => {
    const body = parseRequestBody(countTokensSchema, await readJsonBody(context));
    const request = toMessagesRequest(body, reasoningKey);
    await deps.models.get(request.model);
    const count = await deps.engine.countTokens(request.engineRequest);
    return context.json({ input_tokens: count.inputTokens });
  });

  app.post("/v1/messages", async (context) => {
    const raw = await readJsonBody(context);
    refuseThread(raw);
    const body = parseRequestBody(createMessageSchema, raw);
    const request = toMessagesRequest(body, reasoningKey);
    await deps.models.get(request.model);
    const stream = body.stream === true;
    // Aborted when the client goes away or the server shuts down; disposed when the run ends.
    const link = linkAbortSignals(context.req.raw.signal, deps.shutdownSignal);
    const startAfter = stream ? (deps.streamStartAfterMilliseconds ?? 1_000) : undefined;
    const run = await startMessageRun(deps.engine, request, link.signal, {
      ...(startAfter === undefined ? {} : { startAfterMilliseconds: startAfter }),
      sign,
      logger,
      onUsage: (usage) =>
        reportUsage(context, {
          model: request.model,
          inputTokens: usage.inputTokens,
          outputTokens: usage.outputTokens,
          cachedTokens: usage.cachedInputTokens,
        }),
    }).catch((error: unknown) => {
      link.dispose();
      throw error;
    });
    if (stream) {
      return streamSse(context, toSseEvents(run.events, link.dispose), {
        keepAliveText,
        ...(deps.keepAliveSeconds === undefined ? {} : { keepAliveSeconds: deps.keepAliveSeconds }),
      });
    }
    const events: MessageStreamEvent[] = [];
    try {
      for await (const event of run.events) events.push(event);
    } finally {
      link.dispose();
    }
    const failure = run.failure();
    if (failure !== undefined) throw failure;
    if (link.signal.aborted) {
      // The client is gone; nobody reads this answer.
      throw new ApiError({ status: 499, message: "The client closed the request." });
    }
    return context.json(foldMessage(events));
  });
}

/**
 * Anthropic's message threads (beta: the server keeps the conversation, a turn sends only its new
 * messages) are not kept by lmhost. @anthropic-ai/sdk's tool runner and `beta.messages.thread()` send a
 * `thread` field; refused with the error code the SDK reads as "this server cannot thread", it sends the
 * whole conversation instead (with `unsupportedRequestBehavior: "continue_unthreaded"`).
 */
function refuseThread(body: unknown): void {
  if (typeof body !== "object" || body === null || !("thread" in body)) return;
  const thread = (body as { thread?: unknown }).thread;
  if (thread === undefined || thread === null || thread === false) return;
  throw ApiError.invalid(
    "thread: message threads are not supported by lmhost; send the whole conversation in messages.",
    "thread",
    "thread_unsupported_request",
  );
}
