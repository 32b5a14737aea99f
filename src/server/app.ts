/**
 * createApp(deps) builds the whole HTTP application without listening: request ids, the Host / Origin / API
 * key guards and CORS (request-guards.ts), body limits, error rendering and every route family. Only `lmhost serve` binds a port; tests call
 * `app.request(...)` with no socket.
 */
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { registerEmbeddingsRoutes } from "../api/openai/embeddings.js";
import { isAnthropicPath, toAnthropicError } from "../api/anthropic/errors.js";
import { registerAnthropicRoutes } from "../api/anthropic/routes.js";
import { registerModelRoutes, wantsAnthropicShape } from "../api/openai/models.js";
import { registerDownloadRoutes } from "../api/native/download-routes.js";
import { registerNativeRoutes } from "../api/native/routes.js";
import { registerResponsesRoutes } from "../api/openai/responses/routes.js";
import { registerChatCompletionsRoute } from "../api/openai/chat/chat-completions.js";
import { registerCompletionsRoute } from "../api/openai/chat/completions.js";
import { ApiError, toApiError } from "../shared/errors.js";
import { newId } from "../shared/ids.js";
import { silentLogger } from "../shared/logger.js";
import type { App, AppDeps, AppEnv } from "./deps.js";
import { requestLog } from "./request-log.js";
import { apiKeyGuard, hostGuard, originGuards } from "./request-guards.js";

export function createApp(deps: AppDeps): App {
  const logger = deps.logger ?? silentLogger;
  const app = new Hono<AppEnv>();

  // Request ids and one info line per request; routes report tokens with reportUsage (request-log.ts).
  app.use(
    "*",
    requestLog(logger, () => newId("req")),
  );

  // Guards first (request-guards.ts): a request for another host or from a foreign page is refused before
  // CORS, auth or the body are looked at.
  app.use(
    "*",
    hostGuard({ boundHost: deps.config.host ?? "127.0.0.1", allowedHosts: deps.config.allowedHosts ?? [] }),
  );
  for (const guard of originGuards(deps.config.cors ?? false)) app.use("*", guard);

  if (deps.config.apiKey !== undefined) {
    const requireKey = apiKeyGuard(deps.config.apiKey);
    app.use("/v1/*", requireKey);
    app.use("/api/*", requireKey);
  }

  app.use(
    "*",
    bodyLimit({
      maxSize: deps.config.bodyLimitBytes,
      onError: () => {
        throw new ApiError({
          status: 413,
          message: `The request body is larger than the limit of ${deps.config.bodyLimitBytes} bytes.`,
          code: "request_too_large",
        });
      },
    }),
  );

  app.get("/health", (context) => context.json({ status: "ok" }));
  registerModelRoutes(app, deps);
  registerNativeRoutes(app, deps);
  registerDownloadRoutes(app, deps);
  registerResponsesRoutes(app, deps);
  registerChatCompletionsRoute(app, deps);
  registerCompletionsRoute(app, deps);
  registerEmbeddingsRoutes(app, deps);
  registerAnthropicRoutes(app, deps);

  /**
   * Errors in the wire shape of the API the request belongs to: Anthropic's on /v1/messages* and on
   * /v1/models* asked by an Anthropic client, else OpenAI's.
   */
  const errorBody = (error: ApiError, context: Context<AppEnv>) => {
    const path = context.req.path;
    const anthropic =
      isAnthropicPath(path) || (path.startsWith("/v1/models") && wantsAnthropicShape(context));
    return anthropic ? toAnthropicError(error, context.get("requestId")) : error.toJSON();
  };

  app.notFound((context) => {
    const error = ApiError.notFound(
      `Unknown route: ${context.req.method} ${context.req.path}`,
      null,
      "unknown_route",
    );
    return context.json(errorBody(error, context), 404);
  });

  app.onError((thrown, context) => {
    const error =
      thrown instanceof HTTPException && !(thrown instanceof ApiError)
        ? new ApiError({ status: thrown.status, message: thrown.message })
        : toApiError(thrown);
    // A request cut short by shutdown (Ctrl-C) is expected: its own line says 503, without a stack trace.
    if (error.status >= 500 && error.code !== "server_shutting_down")
      logger.error(`${context.req.method} ${context.req.path}: ${thrown.stack ?? thrown.message}`);
    if (error.retryAfter !== undefined) context.header("Retry-After", String(error.retryAfter));
    context.header("x-request-id", context.get("requestId"));
    return context.json(errorBody(error, context), error.status as 400);
  });

  return app;
}
