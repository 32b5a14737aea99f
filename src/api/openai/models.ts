/**
 * `GET /v1/models` and `GET /v1/models/{id}` (ids may contain `/`): OpenAI's list/object shape, or
 * Anthropic's (`type: "model"`, `display_name`, `created_at`, a page with `has_more`) when the request
 * carries the `anthropic-version` header, as @anthropic-ai/sdk's `models.list()` / `retrieve()` and
 * Anthropic clients send it; their errors then come in Anthropic's shape too (app.ts).
 */
import type { Context } from "hono";
import type { ModelEntry } from "../../models/types.js";
import type { App, AppDeps } from "../../server/deps.js";

export function toOpenAIModel(entry: ModelEntry, created: number) {
  return { id: entry.id, object: "model" as const, created, owned_by: entry.publisher };
}

export function toAnthropicModel(entry: ModelEntry, created: number) {
  return {
    type: "model" as const,
    id: entry.id,
    display_name: entry.id,
    created_at: new Date(created * 1000).toISOString(),
  };
}

/** Whether a `/v1/models` request comes from an Anthropic client (its SDK always sends this header). */
export function wantsAnthropicShape(context: Context): boolean {
  return context.req.header("anthropic-version") !== undefined;
}

export function registerModelRoutes(app: App, deps: AppDeps): void {
  const created = Math.floor(Date.now() / 1000);
  app.get("/v1/models", async (context) => {
    const entries = await deps.models.list();
    if (wantsAnthropicShape(context)) {
      const data = entries.map((entry) => toAnthropicModel(entry, created));
      // Every model on one page: lmhost serves a handful, and has_more false ends the SDK's paging.
      return context.json({
        data,
        has_more: false,
        first_id: data[0]?.id ?? null,
        last_id: data.at(-1)?.id ?? null,
      });
    }
    return context.json({ object: "list", data: entries.map((entry) => toOpenAIModel(entry, created)) });
  });
  app.get("/v1/models/:id{.+}", async (context) => {
    const entry = await deps.models.get(context.req.param("id"));
    return context.json(
      wantsAnthropicShape(context) ? toAnthropicModel(entry, created) : toOpenAIModel(entry, created),
    );
  });
}
