/**
 * The Responses API routes. Handlers only parse, call the core (src/responses) and write:
 * - POST /v1/responses                       create (JSON, SSE, or background)
 * - GET  /v1/responses/{id}                  retrieve; `?stream=true&starting_after=N` resumes a stream
 * - DELETE /v1/responses/{id}                `{id, object: "response", deleted: true}`
 * - GET  /v1/responses/{id}/input_items      paged input items (limit 1–100, order desc by default)
 * - POST /v1/responses/{id}/cancel           cancel a background response (a foreground one: 400)
 * - POST /v1/responses/input_tokens          `{object: "response.input_tokens", input_tokens}`
 * SSE: every event has an `event:` line equal to its JSON `type`, and the stream ends with `data: [DONE]`.
 * Responses running in this process (background, and foreground ones with store: true) are in one
 * LiveResponses registry: GET answers their live snapshot, DELETE stops them and forgets their events.
 */
import type { Context } from "hono";
import { LiveResponses } from "../../../responses/live-responses.js";
import { buildEngineRequest, prepareResponse } from "../../../responses/prepare-response.js";
import { newReasoningKey, restoreSealedReasoning } from "../../../responses/reasoning-seal.js";
import type { ResponseRequest } from "../../../responses/request-params.js";
import {
  finalResponse,
  startBackgroundRun,
  startResponseRun,
  type RunDependencies,
} from "../../../responses/run-response.js";
import {
  isTerminalEvent,
  type ResponseError,
  type ResponseObject,
  type ResponseStreamEvent,
} from "../../../responses/wire-types.js";
import type { App, AppDeps } from "../../../server/deps.js";
import { readJsonBody } from "../../../server/json-body.js";
import { reportUsage } from "../../../server/request-log.js";
import { streamSse, type SseEvent } from "../../../server/sse.js";
import { ApiError } from "../../../shared/errors.js";
import { silentLogger } from "../../../shared/logger.js";
import { checkIncludeQuery, parseBooleanQuery, parseIntegerQuery, parseOrderQuery } from "./query-params.js";
import { createResponseSchema, inputTokensSchema } from "./request-schema.js";
import { toResponseRequest } from "./to-response-request.js";
import { parseRequestBody, responsesFieldHints } from "./validation-errors.js";

function responseNotFound(id: string): ApiError {
  return ApiError.notFound(`Response with id '${id}' not found.`, "response_id", "response_not_found");
}

async function* toSseEvents(
  events: AsyncIterable<ResponseStreamEvent>,
): AsyncGenerator<SseEvent, void, undefined> {
  for await (const event of events) yield { event: event.type, data: event };
  yield { data: "[DONE]" };
}

/** The request log line's usage (server/request-log.ts) from a response object. */
function reportResponseUsage(context: Context, response: ResponseObject): void {
  reportUsage(context, {
    model: response.model,
    inputTokens: response.usage?.input_tokens,
    outputTokens: response.usage?.output_tokens,
    cachedTokens: response.usage?.input_tokens_details.cached_tokens,
  });
}

/** Passes `events` through, reporting the usage of the terminal event for the request's log line. */
async function* reportingUsage(
  context: Context,
  events: AsyncIterable<ResponseStreamEvent>,
): AsyncGenerator<ResponseStreamEvent, void, undefined> {
  for await (const event of events) {
    if (isTerminalEvent(event)) reportResponseUsage(context, event.response);
    yield event;
  }
}

function onlyBackgroundCancels(): ApiError {
  return ApiError.invalid(
    "Only background responses can be cancelled: this response was created with background: false.",
    "response_id",
  );
}

/** A non-streaming request whose generation failed answers with an HTTP error, as OpenAI does. */
function failureOf(response: ResponseObject, shuttingDown: boolean): ApiError | undefined {
  if (response.status !== "failed" || response.error === null) return undefined;
  if (shuttingDown) {
    return new ApiError({ status: 503, message: response.error.message, code: "server_shutting_down" });
  }
  const statuses: Record<ResponseError["code"], number> = {
    rate_limit_exceeded: 429,
    invalid_prompt: 400,
    server_error: 500,
  };
  const status = statuses[response.error.code];
  return new ApiError({ status, message: response.error.message, code: response.error.code });
}

export function registerResponsesRoutes(app: App, deps: AppDeps): void {
  const logger = deps.logger ?? silentLogger;
  const retention = {
    ...(deps.config.storeMaxAgeSeconds === undefined
      ? {}
      : { maxAgeSeconds: deps.config.storeMaxAgeSeconds }),
    ...(deps.config.storeMaxCount === undefined ? {} : { maxCount: deps.config.storeMaxCount }),
  };
  const live = new LiveResponses({
    ...(deps.shutdownSignal === undefined ? {} : { shutdownSignal: deps.shutdownSignal }),
    ...(deps.maxWaitingBackground === undefined ? {} : { maxWaitingBackground: deps.maxWaitingBackground }),
    onError: (message) => logger.error(message),
  });
  // Seals reasoning for `encrypted_content`; a process-lifetime key when the caller gives none.
  const reasoningKey = deps.reasoningKey ?? newReasoningKey();
  /** Sealed reasoning items sent back by a stateless client get their text again (400 when one does not open). */
  const withRestoredReasoning = (request: ResponseRequest): ResponseRequest => ({
    ...request,
    input: restoreSealedReasoning(request.input, reasoningKey),
  });
  const run: RunDependencies = {
    engine: deps.engine,
    ...(deps.mcp === undefined ? {} : { mcp: deps.mcp }),
    store: deps.store,
    retention,
    // What running responses chain from stays until they are stored (then their record protects it).
    protectedIds: () => live.chainedFrom(),
    logger,
    reasoningKey,
  };
  /**
   * A finished background run that has no stored record — its record could not be stored, so it failed
   * — still answers (failed) while this process holds it, rather than a 404.
   */
  const failedHere = (id: string) => {
    const snapshot = live.snapshot(id);
    return snapshot?.status === "failed" ? snapshot : undefined;
  };
  const requestOptions = () => ({
    ...(deps.mcp === undefined ? {} : { mcp: deps.mcp.policy }),
    reasoningSummaries: deps.reasoningSummary !== "none",
  });
  /** A chain to a response still running here is refused as unfinished (its final object is not stored yet). */
  const runningStatus = (id: string) => (live.isRunning(id) ? live.snapshot(id)?.status : undefined);
  const sse = (context: Context, events: AsyncIterable<ResponseStreamEvent>) =>
    streamSse(
      context,
      toSseEvents(events),
      deps.keepAliveSeconds === undefined ? {} : { keepAliveSeconds: deps.keepAliveSeconds },
    );

  app.post("/v1/responses/input_tokens", async (context) => {
    const body = parseRequestBody(inputTokensSchema, await readJsonBody(context), responsesFieldHints);
    const request = withRestoredReasoning(toResponseRequest(body, requestOptions()));
    await deps.models.get(request.model);
    const { engineRequest } = buildEngineRequest(deps.store, request, { runningStatus });
    const count = await deps.engine.countTokens(engineRequest);
    return context.json({ object: "response.input_tokens", input_tokens: count.inputTokens });
  });

  app.post("/v1/responses", async (context) => {
    const request = withRestoredReasoning(
      toResponseRequest(
        parseRequestBody(createResponseSchema, await readJsonBody(context), responsesFieldHints),
        requestOptions(),
      ),
    );
    reportUsage(context, { model: request.model });
    await deps.models.get(request.model);
    for (const server of request.mcpServers) await deps.mcp?.checkServer(server);
    const prepared = prepareResponse(deps.store, request, { runningStatus });
    const id = prepared.initial.id;

    const chainsFrom = request.previousResponseId;
    if (request.background) {
      // A background response waits while the engine's queue is full, but only so many may wait.
      live.assertBackgroundRoom();
      const link = live.newSignal(chainsFrom);
      const backgroundRun = startBackgroundRun(run, prepared, link.signal, { queueWait: live.queueWait });
      const queued = await live.startBackground(id, link, backgroundRun, { bufferEvents: request.stream });
      return request.stream ? sse(context, live.replay(id, -1)) : context.json(queued);
    }

    // Aborted when the client goes away, at shutdown, or by DELETE; disposed when the run ends.
    const link = live.newSignal(chainsFrom, context.req.raw.signal);
    const startAfter = request.stream ? (deps.streamStartAfterMilliseconds ?? 1_000) : undefined;
    const options = startAfter === undefined ? {} : { startAfterMilliseconds: startAfter };
    const started = await startResponseRun(run, prepared, link.signal, options).catch((error: unknown) => {
      link.dispose();
      throw error;
    });
    const events = live.startForeground(id, link, started, { listed: request.store });
    if (request.stream) return sse(context, reportingUsage(context, events));
    const response = await finalResponse(events);
    reportResponseUsage(context, response);
    const failure = failureOf(response, deps.shutdownSignal?.aborted === true);
    if (failure !== undefined) throw failure;
    return context.json(response);
  });

  app.get("/v1/responses/:id", async (context) => {
    const id = context.req.param("id");
    if (parseBooleanQuery(context.req.query("stream"), "stream")) {
      const startingAfter = parseIntegerQuery(context.req.query("starting_after"), "starting_after", {
        min: -1,
        fallback: -1,
      });
      if (!live.canReplay(id)) {
        if (!live.isRunning(id) && deps.store.get(id) === undefined) throw responseNotFound(id);
        throw ApiError.invalid(
          "This response cannot be streamed: only responses created with background: true and stream: true can be, while lmhost still holds their events.",
          "stream",
        );
      }
      return sse(context, live.replay(id, startingAfter));
    }
    const response =
      (live.isRunning(id) ? live.snapshot(id) : undefined) ?? deps.store.get(id)?.response ?? failedHere(id);
    if (response === undefined) throw responseNotFound(id);
    return context.json(response);
  });

  app.delete("/v1/responses/:id", async (context) => {
    const id = context.req.param("id");
    // First the live entry: a running response stops at its next token and stores nothing more, and
    // its buffered events can no longer be streamed. Then the stored record.
    const wasLive = live.delete(id);
    const wasStored = deps.store.delete(id);
    if (!wasLive && !wasStored) throw responseNotFound(id);
    return context.json({ id, object: "response", deleted: true });
  });

  app.get("/v1/responses/:id/input_items", (context) => {
    const id = context.req.param("id");
    const limit = parseIntegerQuery(context.req.query("limit"), "limit", { min: 1, max: 100, fallback: 20 });
    const order = parseOrderQuery(context.req.query("order"));
    const after = context.req.query("after");
    checkIncludeQuery([
      ...(context.req.queries("include") ?? []),
      ...(context.req.queries("include[]") ?? []),
    ]);
    // Paging backwards was in OpenAI's older reference, not its current spec: refused rather than ignored.
    if (context.req.query("before") !== undefined) {
      throw ApiError.invalid(
        "Unsupported parameter: 'before'. Page through input items with 'after' (and 'order').",
        "before",
        "unsupported_parameter",
      );
    }
    const page = deps.store.listInputItems(id, {
      limit,
      order,
      ...(after === undefined || after === "" ? {} : { after }),
    });
    if (page === undefined) throw responseNotFound(id);
    return context.json({
      object: "list",
      data: page.data,
      first_id: page.firstId,
      last_id: page.lastId,
      has_more: page.hasMore,
    });
  });

  app.post("/v1/responses/:id/cancel", async (context) => {
    const id = context.req.param("id");
    if (live.isRunning(id)) {
      // As OpenAI: a foreground response ends with its request (the client closes the connection).
      if (!live.isBackground(id)) throw onlyBackgroundCancels();
      return context.json(await live.cancel(id));
    }
    const record = deps.store.get(id);
    if (record === undefined) throw responseNotFound(id);
    const response = record.response as ResponseObject;
    if (response.background !== true) throw onlyBackgroundCancels();
    if (response.status === "queued" || response.status === "in_progress") {
      // Its run is gone (startServer marks these failed at startup; a store shared otherwise may not).
      const cancelled: ResponseObject = { ...response, status: "cancelled" };
      deps.store.put({ ...record, status: "cancelled", response: cancelled });
      return context.json(cancelled);
    }
    return context.json(response);
  });
}
