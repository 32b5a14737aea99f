/**
 * lmhost's native API (LM Studio-style `/api/v0`): model status with load state, architecture,
 * quantization and context length, and explicit load / unload used by `lmhost ps|load|unload`.
 */
import { z } from "zod";
import type { ModelStatus } from "../../models/types.js";
import type { App, AppDeps } from "../../server/deps.js";
import { readJsonBody } from "../../server/json-body.js";
import { ApiError } from "../../shared/errors.js";

export function toNativeModel(status: ModelStatus) {
  return {
    id: status.id,
    object: "model" as const,
    type: "llm" as const,
    publisher: status.publisher,
    path: status.path,
    size_bytes: status.sizeBytes,
    arch: status.architecture ?? null,
    quantization: status.quantization ?? null,
    parameters: status.parameterCount ?? null,
    state: status.state,
    max_context_length: status.contextLength ?? null,
    loaded_context_length: status.loadedContextLength ?? null,
    has_chat_template: status.hasChatTemplate ?? null,
    chat_template_override: status.chatTemplate ?? null,
    ttl_expires_at: status.expiresAt ?? null,
    /** Unix seconds of the last request on the loaded model (null when not loaded). */
    last_used_at: status.state === "not-loaded" ? null : (status.lastUsedAt ?? null),
    error: status.error ?? null,
  };
}

const loadBodySchema = z.object({ ttl: z.number().positive().optional() }).strict();

export function registerNativeRoutes(app: App, deps: AppDeps): void {
  app.get("/api/v0/models", async (context) => {
    const statuses = await deps.models.status();
    return context.json({ object: "list", data: statuses.map(toNativeModel) });
  });

  app.get("/api/v0/models/:id{.+}", async (context) => {
    const id = context.req.param("id");
    await deps.models.get(id);
    const status = (await deps.models.status()).find((candidate) => candidate.id === id);
    if (status === undefined) throw ApiError.notFound(`Model '${id}' not found.`, "model", "model_not_found");
    return context.json(toNativeModel(status));
  });

  // POST /api/v0/load {"model": "...", "ttl": seconds} and POST /api/v0/unload {"model": "..."}
  app.post("/api/v0/load", async (context) => {
    const body = await readJsonBody(context);
    const parsed = z
      .object({ model: z.string().min(1) })
      .passthrough()
      .safeParse(body);
    if (!parsed.success) throw ApiError.invalid("`model` is required.", "model");
    const options = loadBodySchema.safeParse({ ttl: (body as { ttl?: unknown }).ttl });
    if (!options.success) throw ApiError.invalid("`ttl` must be a positive number of seconds.", "ttl");
    const status = await deps.models.load(
      parsed.data.model,
      options.data.ttl === undefined ? {} : { ttlSeconds: options.data.ttl },
    );
    return context.json(toNativeModel(status));
  });

  app.post("/api/v0/unload", async (context) => {
    const body = await readJsonBody(context);
    const parsed = z
      .object({ model: z.string().min(1) })
      .passthrough()
      .safeParse(body);
    if (!parsed.success) throw ApiError.invalid("`model` is required.", "model");
    await deps.models.get(parsed.data.model);
    const unloaded = await deps.models.unload(parsed.data.model);
    return context.json({ id: parsed.data.model, unloaded });
  });
}
