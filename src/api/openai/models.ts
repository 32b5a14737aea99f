/** `GET /v1/models` and `GET /v1/models/{id}` in OpenAI's list/object shape (ids may contain `/`). */
import type { ModelEntry } from "../../models/types.js";
import type { App, AppDeps } from "../../server/deps.js";

export function toOpenAIModel(entry: ModelEntry, created: number) {
  return { id: entry.id, object: "model" as const, created, owned_by: entry.publisher };
}

export function registerModelRoutes(app: App, deps: AppDeps): void {
  const created = Math.floor(Date.now() / 1000);
  app.get("/v1/models", async (context) => {
    const entries = await deps.models.list();
    return context.json({ object: "list", data: entries.map((entry) => toOpenAIModel(entry, created)) });
  });
  app.get("/v1/models/:id{.+}", async (context) => {
    const entry = await deps.models.get(context.req.param("id"));
    return context.json(toOpenAIModel(entry, created));
  });
}
