/**
 * The Responses API on real inference: stories260K and its ChatML copy through node-llama-cpp, stored in
 * a real SQLite file, driven by the real `openai` SDK. Checks what only the real path can show: text comes
 * back, streamed deltas equal the final text, json_schema output parses and validates, max_output_tokens
 * gives `incomplete`, a 3-turn previous_response_id chain carries the earlier turns into the prompt and
 * reuses the KV cache, and stored state survives a restart.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createResponseSchema } from "../../src/api/openai/responses/request-schema.js";
import { toResponseRequest } from "../../src/api/openai/responses/to-response-request.js";
import { buildEngineRequest } from "../../src/responses/prepare-response.js";
import { createRealApp, type RealApp } from "../helpers/real-app.js";
import { loadSpecValidator } from "../helpers/spec-validator.js";

const CHATML = "stories260K-chatml";
const PLAIN = "stories260K";

describe("Responses API on a real model", () => {
  let real: RealApp;
  beforeAll(async () => {
    real = await createRealApp();
  });
  afterAll(async () => {
    await real?.close();
  });

  it("returns generated text from both models, in a spec-valid response", async () => {
    const spec = loadSpecValidator();
    for (const model of [PLAIN, CHATML]) {
      const response = await real.client.responses.create({
        model,
        input: "Once upon a time",
        max_output_tokens: 24,
        temperature: 0,
      });
      spec.assertResponse(response);
      expect(response.model).toBe(model);
      expect(["completed", "incomplete"]).toContain(response.status);
      expect(response.output_text.length).toBeGreaterThan(0);
      expect(response.usage?.output_tokens).toBeGreaterThan(0);
      expect(response.usage?.input_tokens).toBeGreaterThan(0);
    }
  });

  it("streams deltas that concatenate to the final text (SDK accumulator)", async () => {
    const spec = loadSpecValidator();
    const stream = real.client.responses.stream({
      model: CHATML,
      input: "Tell me a story about a cat.",
      max_output_tokens: 40,
      temperature: 0,
    });
    let deltas = "";
    let sequence = 0;
    for await (const event of stream) {
      spec.assertStreamEvent(event);
      expect(event.sequence_number).toBe(sequence++);
      if (event.type === "response.output_text.delta") deltas += event.delta;
    }
    const final = await stream.finalResponse();
    expect(deltas.length).toBeGreaterThan(0);
    expect(final.output_text).toBe(deltas);
    const stored = await real.client.responses.retrieve(final.id);
    // The SDK's stream helper adds client-side `parsed` / `output_parsed` fields; the rest is the same object.
    const withoutParsed = JSON.parse(JSON.stringify(final), (key, value: unknown) =>
      key === "parsed" || key === "output_parsed" ? undefined : value,
    ) as unknown;
    expect(stored).toEqual(withoutParsed);
  });

  it("constrains output to a JSON schema", async () => {
    const schema = {
      type: "object",
      // Bounded lengths keep the output well under max_output_tokens whatever is sampled: an unbounded
      // string or integer from a tiny model can run on until the cap (status incomplete, a flaky test).
      properties: {
        name: { type: "string", maxLength: 24 },
        age: { type: "integer", minimum: 0, maximum: 120 },
      },
      required: ["name", "age"],
      additionalProperties: false,
    };
    const response = await real.client.responses.create({
      model: CHATML,
      input: "Describe a person.",
      max_output_tokens: 200,
      temperature: 0,
      text: { format: { type: "json_schema", name: "person", schema, strict: true } },
    });
    expect(response.status).toBe("completed");
    const parsed = JSON.parse(response.output_text) as Record<string, unknown>;
    expect(typeof parsed.name).toBe("string");
    expect(Number.isInteger(parsed.age)).toBe(true);
    expect(Object.keys(parsed).sort()).toEqual(["age", "name"]);
  });

  it("ends with status incomplete when max_output_tokens is reached", async () => {
    const response = await real.client.responses.create({
      model: PLAIN,
      input: "Once upon a time",
      max_output_tokens: 5,
      temperature: 0,
    });
    expect(response.status).toBe("incomplete");
    expect(response.incomplete_details).toEqual({ reason: "max_output_tokens" });
    expect(response.usage?.output_tokens).toBe(5);
  });

  it("chains 3 turns through previous_response_id, carrying earlier turns and reusing the KV cache", async () => {
    const first = await real.client.responses.create({
      model: CHATML,
      instructions: "You tell short stories.",
      input: "Tom had a red ball.",
      max_output_tokens: 12,
      temperature: 0,
    });
    const second = await real.client.responses.create({
      model: CHATML,
      previous_response_id: first.id,
      input: "Where did the ball go?",
      max_output_tokens: 12,
      temperature: 0,
    });
    const third = await real.client.responses.create({
      model: CHATML,
      previous_response_id: second.id,
      input: "What did Tom do then?",
      max_output_tokens: 12,
      temperature: 0,
    });
    expect(third.previous_response_id).toBe(second.id);
    // The follow-ups evaluated only their new tokens: the chain's prefix was already in the KV cache.
    expect(second.usage?.input_tokens_details.cached_tokens).toBeGreaterThan(0);
    expect(third.usage?.input_tokens_details.cached_tokens).toBeGreaterThan(0);
    expect(third.usage!.input_tokens - third.usage!.input_tokens_details.cached_tokens).toBeLessThan(
      third.usage!.input_tokens / 2,
    );

    // The prompt a 4th turn would get holds every earlier input and output, in order, and no instructions
    // (they are not inherited through previous_response_id).
    const history = real.store.chain(third.id);
    expect(history?.map((record) => record.id)).toEqual([first.id, second.id, third.id]);
    const body = createResponseSchema.parse({
      model: CHATML,
      previous_response_id: third.id,
      input: "And then?",
    });
    const { engineRequest } = buildEngineRequest(real.store, toResponseRequest(body));
    const prompt = await real.engine.renderPrompt(engineRequest);
    const order = [
      "Tom had a red ball.",
      first.output_text,
      "Where did the ball go?",
      second.output_text,
      "What did Tom do then?",
      third.output_text,
      "And then?",
    ];
    let cursor = 0;
    for (const piece of order) {
      const at = prompt.indexOf(piece.trim(), cursor);
      expect(
        at,
        `prompt should contain ${JSON.stringify(piece)} after position ${cursor}:\n${prompt}`,
      ).toBeGreaterThanOrEqual(0);
      cursor = at + piece.trim().length;
    }
    expect(prompt).not.toContain("You tell short stories.");
    expect(prompt).toContain("<|im_start|>user");
  });

  it("answers 404 for an unknown previous_response_id and keeps serving", async () => {
    const response = await real.post("/v1/responses", {
      model: CHATML,
      input: "hi",
      previous_response_id: "resp_nope",
    });
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe(
      "previous_response_not_found",
    );
    const ok = await real.client.responses.create({
      model: CHATML,
      input: "hi",
      max_output_tokens: 4,
      temperature: 0,
    });
    expect(ok.output_text.length).toBeGreaterThan(0);
  });
});

describe("stored state across a restart", () => {
  it("retrieves and chains from a response stored before the restart", async () => {
    const before = await createRealApp();
    const first = await before.client.responses.create({
      model: CHATML,
      input: "Lily found a shell.",
      max_output_tokens: 10,
      temperature: 0,
    });
    const databaseFile = before.databaseFile;
    await before.close();

    const after = await createRealApp({ databaseFile });
    try {
      const retrieved = await after.client.responses.retrieve(first.id);
      expect(retrieved).toEqual(JSON.parse(JSON.stringify(first)));
      const items = await after.client.responses.inputItems.list(first.id);
      expect(items.data).toHaveLength(1);
      const followUp = await after.client.responses.create({
        model: CHATML,
        previous_response_id: first.id,
        input: "What did she do?",
        max_output_tokens: 10,
        temperature: 0,
      });
      expect(followUp.status).toMatch(/completed|incomplete/);
      expect(followUp.previous_response_id).toBe(first.id);
      // The first turn is in the follow-up's prompt: more input tokens than the new message alone.
      const alone = await after.client.responses.inputTokens.count({
        model: CHATML,
        input: "What did she do?",
      });
      expect(followUp.usage!.input_tokens).toBeGreaterThan(alone.input_tokens + 5);
    } finally {
      await after.close();
    }
  });
});

describe("a full queue over HTTP", () => {
  it("answers 429 with Retry-After once the sequences and the queue are taken, then recovers", async () => {
    const real = await createRealApp({ parallel: 1, maxQueue: 1 });
    try {
      const long = {
        model: PLAIN,
        input: "Once upon a time",
        stream: true,
        max_output_tokens: 100000,
        temperature: 0,
      };
      const running = new AbortController();
      const first = await real.app.request("http://lmhost.test/v1/responses", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(long),
        signal: running.signal,
      });
      expect(first.status).toBe(200);
      // The second request waits for the only sequence; the third finds the queue full.
      const second = real.post("/v1/responses", {
        model: PLAIN,
        input: "Once",
        max_output_tokens: 4,
        temperature: 0,
      });
      // Wait until the second really waits in the queue (no fixed sleep: machines differ in speed).
      const lease = await real.models.acquire(PLAIN);
      const pool = lease.loaded.pool;
      lease.release();
      const deadline = Date.now() + 10_000;
      while (pool.waiting < 1 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 10));
      expect(pool.waiting).toBe(1);
      const third = await real.post("/v1/responses", {
        model: PLAIN,
        input: "Once",
        max_output_tokens: 4,
        temperature: 0,
      });
      expect(third.status).toBe(429);
      expect(third.headers.get("retry-after")).toBe("1");
      expect(((await third.json()) as { error: { code: string; type: string } }).error).toMatchObject({
        code: "queue_full",
        type: "rate_limit_error",
      });
      running.abort();
      await first.body?.cancel().catch(() => undefined);
      const queued = await second;
      expect(queued.status).toBe(200);
      expect(((await queued.json()) as { status: string }).status).toMatch(/completed|incomplete/);
    } finally {
      await real.close();
    }
  });
});
