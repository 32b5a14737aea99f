/**
 * `POST /v1/completions` (OpenAI's legacy text completions): the prompt is continued as raw text, without
 * the chat template (`EngineRequest.rawPrompt`), and the text deltas become `text_completion` objects —
 * the same shape streamed (one per delta, then one with `finish_reason`, `[DONE]`) and not streamed.
 * `echo: true` puts the prompt before the generated text (the first streamed chunk carries it).
 */
import type { EnginePart, EngineRequest, Usage } from "../../../engine/types.js";
import type { App, AppDeps } from "../../../server/deps.js";
import { readJsonBody } from "../../../server/json-body.js";
import { reportUsage } from "../../../server/request-log.js";
import { shutdownError } from "../../../shared/errors.js";
import { silentLogger } from "../../../shared/logger.js";
import { completionId, completionUsage } from "./chat-completions.js";
import { cancelledError, startGeneration, streamChunks, type Generation } from "./generation.js";
import { completionSchema, parseBody } from "./request-schema.js";
import { completionParams, toCompletionEngineRequest } from "./to-engine-request.js";

type Json = Record<string, unknown>;

class CompletionTranslator {
  readonly id = completionId("cmpl");
  readonly created = Math.floor(Date.now() / 1000);

  constructor(
    private readonly model: string,
    readonly includeUsage: boolean,
  ) {}

  chunk(text: string, finishReason: "stop" | "length" | null, usage?: Usage): Json {
    return {
      id: this.id,
      object: "text_completion",
      created: this.created,
      model: this.model,
      system_fingerprint: "lmhost",
      choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }],
      // CreateCompletionResponse's usage is not nullable: chunks before the usage chunk have none.
      ...(usage === undefined ? {} : { usage: completionUsage(usage) }),
    };
  }

  usageChunk(usage: Usage): Json {
    return {
      id: this.id,
      object: "text_completion",
      created: this.created,
      model: this.model,
      system_fingerprint: "lmhost",
      choices: [],
      usage: completionUsage(usage),
    };
  }
}

/** Text deltas, then the finish (throws the 503 of a shutdown; ends quietly when the client went away). */
async function* completionParts(
  generation: Generation,
): AsyncGenerator<{ text: string } | { finish: "stop" | "length"; usage: Usage }> {
  for await (const part of generation.parts) {
    if (part.type === "text-delta") {
      if (part.text !== "") yield { text: part.text };
    } else if (part.type === "finish") {
      if (part.reason === "cancelled") {
        const shutdown = shutdownError(generation.signal);
        if (shutdown !== undefined) throw shutdown;
        return;
      }
      yield { finish: part.reason === "length" ? "length" : "stop", usage: part.usage };
    }
  }
}

/** `max_tokens: 0` (OpenAI: only the echo, if any): no generation, the prompt counted for usage. */
async function nothingToGenerate(
  deps: AppDeps,
  request: EngineRequest,
  signal: AbortSignal,
): Promise<Generation> {
  const { inputTokens } = await deps.engine.countTokens(request);
  const finish: EnginePart = {
    type: "finish",
    reason: "length",
    usage: { inputTokens, cachedInputTokens: 0, outputTokens: 0, reasoningTokens: 0 },
  };
  return {
    parts: (async function* () {
      yield finish;
    })(),
    signal,
  };
}

export function registerCompletionsRoute(app: App, deps: AppDeps): void {
  const logger = deps.logger ?? silentLogger;
  app.post("/v1/completions", async (context) => {
    const body = parseBody(completionSchema, await readJsonBody(context));
    const request = toCompletionEngineRequest(body);
    await deps.models.get(request.model);
    const stream = body.stream === true;
    const echo = body.echo === true ? (request.rawPrompt ?? "") : "";
    const translator = new CompletionTranslator(body.model, body.stream_options?.include_usage === true);
    const generation =
      request.sampling?.maxTokens === 0
        ? await nothingToGenerate(deps, request, context.req.raw.signal)
        : await startGeneration(deps, request, context.req.raw.signal, {
            params: completionParams,
            onUsage: (usage) =>
              reportUsage(context, {
                model: request.model,
                inputTokens: usage.inputTokens,
                outputTokens: usage.outputTokens,
                cachedTokens: usage.cachedInputTokens,
              }),
            ...(stream ? { startAfterMilliseconds: deps.streamStartAfterMilliseconds ?? 1_000 } : {}),
          });
    if (stream) {
      async function* chunks(): AsyncGenerator<Json> {
        if (echo !== "") yield translator.chunk(echo, null);
        for await (const part of completionParts(generation)) {
          if ("text" in part) {
            yield translator.chunk(part.text, null);
            continue;
          }
          yield translator.chunk("", part.finish);
          if (translator.includeUsage) yield translator.usageChunk(part.usage);
        }
      }
      return streamChunks(context, deps, chunks(), logger);
    }
    let text = echo;
    for await (const part of completionParts(generation)) {
      if ("text" in part) text += part.text;
      else return context.json(translator.chunk(text, part.finish, part.usage));
    }
    throw cancelledError(generation.signal);
  });
}
