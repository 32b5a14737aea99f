/**
 * run-response: one event generator per request, with storage before the terminal event, the fold for
 * non-streaming results, and every way a run can end (completed, incomplete, failed, cancelled by the
 * signal, abandoned by its consumer).
 */
import { describe, expect, it } from "vitest";
import { parseRequestBody } from "../../src/api/openai/responses/validation-errors.js";
import { createResponseSchema } from "../../src/api/openai/responses/request-schema.js";
import { toResponseRequest } from "../../src/api/openai/responses/to-response-request.js";
import { ScriptedEngine, type ScriptedTurn } from "../../src/engine/scripted/scripted-engine.js";
import type { Engine, EnginePart, EngineRequest } from "../../src/engine/types.js";
import { prepareResponse } from "../../src/responses/prepare-response.js";
import { ApiError } from "../../src/shared/errors.js";
import {
  finalResponse,
  startBackgroundRun,
  startResponseRun,
  type RunDependencies,
} from "../../src/responses/run-response.js";
import type { ResponseStreamEvent } from "../../src/responses/wire-types.js";
import { MemoryResponseStore } from "../../src/store/memory/memory-store.js";
import { createFastApp, TEST_MODEL } from "../helpers/fast-app.js";

function setup(turn?: ScriptedTurn) {
  const { models } = createFastApp();
  const engine = new ScriptedEngine({ models, ...(turn === undefined ? {} : { respond: () => turn }) });
  const store = new MemoryResponseStore();
  const dependencies: RunDependencies = { engine, store };
  const prepare = (body: Record<string, unknown>) =>
    prepareResponse(
      store,
      toResponseRequest(
        parseRequestBody(createResponseSchema, { model: TEST_MODEL, input: "hello world", ...body }),
      ),
    );
  return { engine, store, dependencies, prepare };
}

async function collect(events: AsyncIterable<ResponseStreamEvent>): Promise<ResponseStreamEvent[]> {
  const all: ResponseStreamEvent[] = [];
  for await (const event of events) all.push(event);
  return all;
}

const never = new AbortController().signal;

describe("runResponse", () => {
  it("a delayed start whose consumer stops at response.created still stops the engine's generation", async () => {
    const { dependencies, prepare, store } = setup();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let returned = false;
    let produced = 0;
    const engine: Engine = {
      ...dependencies.engine,
      generate: () =>
        (async function* (): AsyncGenerator<EnginePart> {
          try {
            await gate;
            for (let index = 0; index < 100; index++) {
              produced++;
              yield { type: "text-delta", text: `w${index} ` };
            }
          } finally {
            returned = true;
          }
        })(),
    };
    const prepared = prepare({ stream: true });
    const run = await startResponseRun({ ...dependencies, engine }, prepared, never, {
      startAfterMilliseconds: 0,
    });
    const first = await run.events.next();
    expect(first.value).toMatchObject({ type: "response.created" });
    // The consumer goes away right at response.created (before asking for more), then the engine starts.
    const stopped = run.events.return(undefined);
    release();
    await stopped;
    expect(returned).toBe(true);
    expect(produced).toBeLessThanOrEqual(1);
    expect(store.get(prepared.initial.id)?.status).toBe("cancelled");
  });

  it("stores the response before yielding response.completed, and the three results are one object", async () => {
    const { store, dependencies, prepare } = setup();
    const prepared = prepare({});
    const run = await startResponseRun(dependencies, prepared, never);
    const events: ResponseStreamEvent[] = [];
    for await (const event of run.events) {
      // The created snapshot is stored (in_progress) as it goes out; the final one before completed.
      expect(store.get(prepared.initial.id)?.status).toBe(
        event.type === "response.completed" ? "completed" : "in_progress",
      );
      events.push(event);
    }
    const last = events.at(-1);
    expect(last?.type).toBe("response.completed");
    const stored = store.get(prepared.initial.id);
    expect(stored?.response).toEqual(last && "response" in last ? last.response : undefined);
    expect(stored?.inputItems).toEqual(prepared.inputItems);
    expect(await finalResponse(events)).toEqual(stored?.response);
  });

  it("folds a non-streaming request into the terminal snapshot", async () => {
    const { dependencies, prepare, store } = setup({ text: "It works." });
    const prepared = prepare({});
    const response = await finalResponse((await startResponseRun(dependencies, prepared, never)).events);
    expect(response.status).toBe("completed");
    expect(response.output[0]).toMatchObject({
      type: "message",
      content: [{ type: "output_text", text: "It works." }],
    });
    expect(store.get(response.id)?.response).toEqual(response);
  });

  it("ends with incomplete (max_output_tokens) when the token limit is reached", async () => {
    const { dependencies, prepare } = setup({ text: "one two three four five" });
    const response = await finalResponse(
      (await startResponseRun(dependencies, prepare({ max_output_tokens: 2 }), never)).events,
    );
    expect(response.status).toBe("incomplete");
    expect(response.incomplete_details).toEqual({ reason: "max_output_tokens" });
    expect(response.output[0]).toMatchObject({ status: "incomplete", content: [{ text: "one two " }] });
  });

  it("turns a failure after the stream started into response.failed, stored as failed", async () => {
    const { dependencies, prepare, store, engine } = setup({
      text: "a b c d",
      failWith: new Error("kaboom"),
      failAfterParts: 2,
    });
    const prepared = prepare({});
    const events = await collect((await startResponseRun(dependencies, prepared, never)).events);
    const last = events.at(-1);
    expect(last?.type).toBe("response.failed");
    expect(last && "response" in last ? last.response.error : undefined).toEqual({
      code: "server_error",
      message: "Internal error: kaboom",
    });
    expect(store.get(prepared.initial.id)?.status).toBe("failed");
    expect(engine.active).toBe(0);
  });

  it("rejects before any event when the engine fails up front (foreground), storing nothing", async () => {
    const { dependencies, prepare, store } = setup({
      text: "a",
      failWith: new Error("no"),
      failAfterParts: 0,
    });
    const prepared = prepare({});
    await expect(startResponseRun(dependencies, prepared, never)).rejects.toThrow("no");
    expect(store.get(prepared.initial.id)).toBeUndefined();
  });

  it("reports an up-front engine failure of a background run as response.failed", async () => {
    const { dependencies, prepare, store } = setup({
      text: "a",
      failWith: new Error("no"),
      failAfterParts: 0,
    });
    const prepared = prepare({ background: true });
    const events = await collect(startBackgroundRun(dependencies, prepared, never).events);
    expect(events.map((event) => event.type)).toEqual([
      "response.created",
      "response.queued",
      "response.failed",
    ]);
    expect(store.get(prepared.initial.id)?.status).toBe("failed");
  });

  it("keeps a background run queued while the engine refuses it with 429, and retries", async () => {
    const { dependencies, prepare, store, engine } = setup({ text: "at last" });
    let refusals = 3;
    const generate = engine.generate.bind(engine);
    const refusing: RunDependencies = {
      ...dependencies,
      engine: Object.assign(Object.create(engine) as Engine, {
        generate: (request: EngineRequest, signal: AbortSignal) => {
          if (refusals-- > 0) throw new ApiError({ status: 429, message: "full", code: "queue_full" });
          return generate(request, signal);
        },
      }),
    };
    const waits: string[] = [];
    const prepared = prepare({ background: true });
    const run = startBackgroundRun(refusing, prepared, never, {
      retryDelayMilliseconds: 1,
      queueWait: { enter: () => waits.push("enter"), leave: () => waits.push("leave") },
    });
    const events = await collect(run.events);
    expect(events.map((event) => event.type).slice(0, 3)).toEqual([
      "response.created",
      "response.queued",
      "response.in_progress",
    ]);
    expect(events.at(-1)?.type).toBe("response.completed");
    expect(waits).toEqual(["enter", "leave"]);
    expect(store.get(prepared.initial.id)?.status).toBe("completed");
  });

  it("stores every lifecycle snapshot of a background run, starting with queued", async () => {
    const { dependencies, prepare, store } = setup({ text: "slow words here", delayMs: 5 });
    const prepared = prepare({ background: true });
    const run = startBackgroundRun(dependencies, prepared, never);
    const created = await run.events.next();
    expect(created.value).toMatchObject({ type: "response.created", response: { status: "queued" } });
    expect(store.get(prepared.initial.id)?.status).toBe("queued");
    await collect(run.events);
    expect(store.get(prepared.initial.id)?.status).toBe("completed");
  });

  it("stops at the next token when the signal aborts, and stores the cancelled response", async () => {
    const { dependencies, prepare, store, engine } = setup({
      text: "one two three four five six",
      delayMs: 10,
    });
    const prepared = prepare({});
    const controller = new AbortController();
    const run = await startResponseRun(dependencies, prepared, controller.signal);
    const events: ResponseStreamEvent[] = [];
    for await (const event of run.events) {
      events.push(event);
      if (event.type === "response.output_text.delta") controller.abort();
    }
    const deltas = events.filter((event) => event.type === "response.output_text.delta");
    expect(deltas.length).toBeLessThanOrEqual(2);
    expect(events.at(-1)).toMatchObject({ type: "response.incomplete", response: { status: "cancelled" } });
    expect(store.get(prepared.initial.id)?.status).toBe("cancelled");
    expect(engine.active).toBe(0);
  });

  it("records a run whose consumer walked away as cancelled and frees the engine", async () => {
    const { dependencies, prepare, store, engine } = setup({ text: "one two three four", delayMs: 5 });
    const prepared = prepare({});
    const run = await startResponseRun(dependencies, prepared, never);
    for await (const event of run.events) {
      if (event.type === "response.output_text.delta") break;
    }
    expect(store.get(prepared.initial.id)?.status).toBe("cancelled");
    expect(engine.active).toBe(0);
  });

  it("stores the final state when the consumer leaves after the last item event but before the terminal event", async () => {
    const { dependencies, prepare, store } = setup({ text: "short answer" });
    const prepared = prepare({});
    const run = await startResponseRun(dependencies, prepared, never);
    for await (const event of run.events) {
      if (event.type === "response.output_item.done") break;
    }
    expect(store.get(prepared.initial.id)?.status).toBe("completed");
  });

  it("never stores a store: false response", async () => {
    const { dependencies, prepare, store } = setup();
    const response = await finalResponse(
      (await startResponseRun(dependencies, prepare({ store: false }), never)).events,
    );
    expect(response.store).toBe(false);
    expect(store.get(response.id)).toBeUndefined();
  });

  it("applies the retention limits after storing", async () => {
    const { dependencies, prepare, store } = setup();
    const limited: RunDependencies = { ...dependencies, retention: { maxCount: 2 } };
    const ids: string[] = [];
    for (let turn = 0; turn < 3; turn++)
      ids.push((await finalResponse((await startResponseRun(limited, prepare({}), never)).events)).id);
    expect(ids.map((id) => store.get(id) !== undefined)).toEqual([false, true, true]);
  });

  it("never prunes the response it just stored, though it started before the ones the limit keeps", async () => {
    const { dependencies, store } = setup();
    const limited: RunDependencies = { ...dependencies, retention: { maxCount: 2 } };
    const request = toResponseRequest(
      parseRequestBody(createResponseSchema, { model: TEST_MODEL, input: "hello world" }),
    );
    // A long generation: it starts first, and N newer responses finish while it runs.
    const long = prepareResponse(store, request, { now: 1_000_000 });
    const longRun = await startResponseRun(limited, long, never);
    const newer: string[] = [];
    for (let second = 1; second <= 3; second++) {
      const prepared = prepareResponse(store, request, { now: 1_000_000 + second * 1000 });
      newer.push((await finalResponse((await startResponseRun(limited, prepared, never)).events)).id);
    }
    for await (const event of longRun.events) {
      if (event.type === "response.completed") expect(store.get(long.initial.id)?.status).toBe("completed");
    }
    expect(store.get(long.initial.id)?.status).toBe("completed");
    // Kept, it still counts: a newer one goes instead.
    expect(newer.map((id) => store.get(id) !== undefined)).toEqual([false, false, true]);
    // It is still the oldest: the next stored response prunes it first.
    await finalResponse((await startResponseRun(limited, prepareResponse(store, request), never)).events);
    expect(store.get(long.initial.id)).toBeUndefined();
    expect(newer.map((id) => store.get(id) !== undefined)).toEqual([false, false, true]);
  });

  it("never prunes a background response that is still running", async () => {
    const { dependencies, store, prepare } = setup({ text: "a b c d e f", delayMs: 5 });
    const limited: RunDependencies = { ...dependencies, retention: { maxCount: 1, maxAgeSeconds: 1 } };
    const background = prepareResponse(
      store,
      toResponseRequest(
        parseRequestBody(createResponseSchema, { model: TEST_MODEL, input: "x", background: true }),
      ),
      { now: 1_000_000 },
    );
    const run = startBackgroundRun(limited, background, never);
    for (let next = await run.events.next(); ; next = await run.events.next()) {
      if (next.done === true || next.value.type === "response.in_progress") break;
    }
    expect(store.get(background.initial.id)?.status).toBe("in_progress");
    for (let turn = 0; turn < 2; turn++) {
      await finalResponse((await startResponseRun(limited, prepare({}), never)).events);
    }
    expect(store.get(background.initial.id)?.status).toBe("in_progress");
    await finalResponse(run.events);
    expect(store.get(background.initial.id)?.status).toBe("completed");
  });

  it("fails a response whose engine ends without a finish part", async () => {
    const store = new MemoryResponseStore();
    const engine: Engine = {
      async *generate(): AsyncIterable<EnginePart> {
        yield { type: "text-delta", text: "half" };
      },
      countTokens: async () => ({ inputTokens: 1 }),
      renderPrompt: async () => "",
      embed: async () => ({ embeddings: [], inputTokens: 0 }),
      close: async () => undefined,
    };
    const prepared = prepareResponse(
      store,
      toResponseRequest(parseRequestBody(createResponseSchema, { model: "m", input: "x" })),
    );
    const response = await finalResponse((await startResponseRun({ engine, store }, prepared, never)).events);
    expect(response.status).toBe("failed");
    expect(response.error?.message).toMatch(/without a finish part/);
    expect(response.output[0]).toMatchObject({ status: "incomplete" });
  });
});
