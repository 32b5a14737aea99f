/**
 * createApp(deps) builds the whole HTTP application without listening: request ids, auth, CORS, body
 * limits, error rendering and every route family. Only `lmhost serve` binds a port; tests call
 * `app.request(...)` with no socket.
 */
import { timingSafeEqual } from "node:crypto";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import { registerModelRoutes } from "../api/openai/models.js";
import { registerNativeRoutes } from "../api/native/routes.js";
import { registerResponsesRoutes } from "../api/openai/responses/routes.js";
import { ApiError, toApiError } from "../shared/errors.js";
import { newId } from "../shared/ids.js";
import { silentLogger } from "../shared/logger.js";
import type { App, AppDeps, AppEnv } from "./deps.js";

export function createApp(deps: AppDeps): App {
  const logger = deps.logger ?? silentLogger;
  const app = new Hono<AppEnv>();

  app.use("*", async (context, next) => {
    const requestId = context.req.header("x-request-id") ?? newId("req");
    context.set("requestId", requestId);
    const started = Date.now();
    await next();
    context.header("x-request-id", requestId);
    logger.debug(
      `${context.req.method} ${context.req.path} ${context.res.status} ${Date.now() - started}ms ${requestId}`,
    );
  });

  if (deps.config.cors) {
    app.use(
      "*",
      // No fixed allowHeaders: Hono echoes what the preflight asks for, which the official SDK needs
      // (its browser build sends X-Stainless-* headers).
      cors({ origin: "*", exposeHeaders: ["x-request-id", "Retry-After"] }),
    );
  }

  const apiKey = deps.config.apiKey;
  if (apiKey !== undefined && apiKey !== "") {
    const expected = Buffer.from(apiKey);
    const requireKey = async (
      context: Parameters<Parameters<typeof app.use>[1]>[0],
      next: () => Promise<void>,
    ) => {
      if (context.req.method === "OPTIONS") return next();
      const header = context.req.header("authorization") ?? "";
      const match = /^Bearer\s+(.+)$/i.exec(header);
      const given = Buffer.from(match?.[1]?.trim() ?? "");
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw new ApiError({
          status: 401,
          message: match
            ? "Incorrect API key provided."
            : "Missing API key: send `Authorization: Bearer <key>`.",
          code: "invalid_api_key",
        });
      }
      return next();
    };
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
  registerResponsesRoutes(app, deps);

  app.notFound((context) => {
    const error = ApiError.notFound(
      `Unknown route: ${context.req.method} ${context.req.path}`,
      null,
      "unknown_route",
    );
    return context.json(error.toJSON(), 404);
  });

  app.onError((thrown, context) => {
    const error =
      thrown instanceof HTTPException && !(thrown instanceof ApiError)
        ? new ApiError({ status: thrown.status, message: thrown.message })
        : toApiError(thrown);
    if (error.status >= 500)
      logger.error(`${context.req.method} ${context.req.path}: ${thrown.stack ?? thrown.message}`);
    if (error.retryAfter !== undefined) context.header("Retry-After", String(error.retryAfter));
    context.header("x-request-id", context.get("requestId"));
    return context.json(error.toJSON(), error.status as 400);
  });

  return app;
}
