/**
 * The llama engine on real models (assets/models), one thread: text from each chat template path,
 * concurrency bounded by the sequence pool, queue overflow, KV prefix reuse, cancellation, max tokens,
 * structured output (strict schemas refused or always valid), forced tool calls, parallel_tool_calls false,
 * determinism with a seed, context overflow and truncation that never drops the current input, a new
 * assistant turn after a trailing assistant message, the prompt per reasoning effort, and close().
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { ChatMLChatWrapper, getLlama, LlamaChat, LlamaLogLevel, LlamaText, type Llama } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { LlamaEngine } from "../../src/engine/llama/engine.js";
import { chatWrapperFor, LlamaModelLoader, type LlamaLoadedModel } from "../../src/engine/llama/loader.js";
import { TruncationStarts } from "../../src/engine/truncation.js";
import type { EnginePart, EngineRequest } from "../../src/engine/types.js";
import type { ModelAcquirer, ModelEntry } from "../../src/models/types.js";
import { ApiError } from "../../src/shared/errors.js";
import { randomLlamaModel, storiesChatmlModel, storiesModel, templatesDir } from "../helpers/paths.js";

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

const chatmlJinja =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** The fixture thinking template: its generation prompt opens `<think>`; it reads `enable_thinking`. */
const thinkingTemplate = readFileSync(path.join(templatesDir, "thinking-chatml.jinja"), "utf8");

function entry(id: string, path: string, chatTemplate?: string): ModelEntry {
  return {
    id,
    path,
    sizeBytes: 0,
    publisher: "test",
    ...(chatTemplate !== undefined ? { chatTemplate } : {}),
  };
}

/** Hands out leases on models loaded once for this file; counts open leases. */
class TestAcquirer implements ModelAcquirer<LlamaLoadedModel> {
  openLeases = 0;
  constructor(private readonly loaded: Map<string, LlamaLoadedModel>) {}

  async acquire(id: string): Promise<{ entry: ModelEntry; loaded: LlamaLoadedModel; release(): void }> {
    const loaded = this.loaded.get(id);
    if (loaded === undefined)
      throw ApiError.notFound(`The model '${id}' does not exist.`, "model", "model_not_found");
    this.openLeases += 1;
    let released = false;
    return {
      entry: loaded.entry,
      loaded,
      release: () => {
        if (released) return;
        released = true;
        this.openLeases -= 1;
      },
    };
  }
}

let llama: Llama;
let loader: LlamaModelLoader;
const loaded = new Map<string, LlamaLoadedModel>();
let acquirer: TestAcquirer;

beforeAll(async () => {
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  loader = new LlamaModelLoader({ llama, threads: 1, parallel: 4 });
  const entries = [
    entry("stories", storiesModel),
    entry("stories-chatml", storiesChatmlModel),
    entry("stories-override", storiesModel, "chatml"),
    entry("stories-jinja", storiesModel, chatmlJinja),
    entry("stories-thinking", storiesChatmlModel, thinkingTemplate),
    entry("stories-harmony", storiesModel, "harmony"),
    entry("stories-qwen", storiesModel, "qwen"),
    entry("stories-deepseek", storiesModel, "deepSeek"),
  ];
  for (const modelEntry of entries) loaded.set(modelEntry.id, await loader.load(modelEntry));
  acquirer = new TestAcquirer(loaded);
});

afterAll(async () => {
  for (const model of loaded.values()) await loader.unload(model);
  await llama?.dispose();
});

const user = (text: string): EngineRequest["items"] => [{ type: "message", role: "user", text }];

interface Collected {
  parts: EnginePart[];
  text: string;
  finish: Extract<EnginePart, { type: "finish" }>;
}

async function collect(
  engine: LlamaEngine,
  request: EngineRequest,
  signal = new AbortController().signal,
): Promise<Collected> {
  const parts: EnginePart[] = [];
  for await (const part of engine.generate(request, signal)) parts.push(part);
  const finishes = parts.filter((part) => part.type === "finish");
  expect(finishes).toHaveLength(1);
  expect(parts.at(-1)?.type).toBe("finish");
  const finish = parts.at(-1) as Extract<EnginePart, { type: "finish" }>;
  const text = parts.map((part) => (part.type === "text-delta" ? part.text : "")).join("");
  return { parts, text, finish };
}

async function expectApiError(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ApiError);
    return error as ApiError;
  }
  throw new Error("expected an ApiError");
}

function evaluatedInputTokens(model: LlamaLoadedModel): number {
  return model.sequences.reduce((sum, sequence) => sum + sequence.tokenMeter.usedInputTokens, 0);
}

describe("LlamaEngine on real models", () => {
  it("resolves each model's chat wrapper and the overrides", () => {
    expect(loaded.get("stories")?.chatWrapper.wrapperName).toBe("Llama2Chat");
    expect(loaded.get("stories-chatml")?.chatWrapper.wrapperName).toBe("ChatML");
    expect(loaded.get("stories-override")?.chatWrapper.wrapperName).toBe("ChatML");
    expect(loaded.get("stories-jinja")?.chatWrapper.wrapperName).toBe("JinjaTemplate");
    expect(loaded.get("stories")?.flashAttention).toBe(false);
    expect(loader.contextLength(loaded.get("stories") as LlamaLoadedModel)).toBe(2048);
  });

  it("runs tiny models on one thread, caps the context per entry, refuses unloadable entries with a 400", async () => {
    const twoThreads = new LlamaModelLoader({ llama, threads: 2, parallel: 1, warmup: false });
    const model = await twoThreads.load({
      ...entry("two-threads", storiesModel),
      contextLengthOverride: 512,
    });
    expect(model.threads).toBe(1);
    expect(model.contextLength).toBe(512);
    expect(model.warmupMilliseconds).toBeLessThan(50);
    await twoThreads.unload(model);

    const marked = await expectApiError(
      twoThreads.load({ ...entry("marked", storiesModel), error: "not a GGUF file" }),
    );
    expect(marked).toMatchObject({ status: 400, code: "model_load_failed" });
    const broken = await expectApiError(twoThreads.load(entry("broken", fileURLToPath(import.meta.url))));
    expect(broken).toMatchObject({ status: 400, code: "model_load_failed", param: "model" });
    const badTemplate = await expectApiError(
      twoThreads.load(entry("bad-template", storiesModel, "no-such-wrapper")),
    );
    expect(badTemplate).toMatchObject({ status: 400, code: "invalid_chat_template" });
  });

  it.each(["stories", "stories-chatml", "stories-override", "stories-jinja"])(
    "generates text with %s",
    async (model) => {
      const engine = new LlamaEngine({ models: acquirer });
      const result = await collect(engine, {
        model,
        items: user("Once upon a time"),
        sampling: { maxTokens: 24 },
      });
      expect(result.text.trim().length).toBeGreaterThan(0);
      expect(["stop", "length"]).toContain(result.finish.reason);
      const count = await engine.countTokens({ model, items: user("Once upon a time") });
      expect(result.finish.usage.inputTokens).toBe(count.inputTokens);
      expect(result.finish.usage.outputTokens).toBeGreaterThan(0);
      expect(result.finish.usage.outputTokens).toBeLessThanOrEqual(24);
      expect(acquirer.openLeases).toBe(0);
    },
  );

  it("renders the exact prompt of each template", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const items: EngineRequest["items"] = [
      { type: "message", role: "system", text: "Be kind." },
      { type: "message", role: "user", text: "Hi" },
    ];
    expect(await engine.renderPrompt({ model: "stories-override", items })).toBe(
      "<s><|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(await engine.renderPrompt({ model: "stories-jinja", items })).toContain(
      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(await engine.renderPrompt({ model: "stories", items })).toContain("[INST]");
  });

  it.each(["none", "minimal", "low", "medium", "high", "xhigh", undefined] as const)(
    "renders effort %s on the fixture thinking template and on a template without a switch",
    async (reasoningEffort) => {
      const engine = new LlamaEngine({ models: acquirer });
      const items = user("Hi");
      const request = (model: string): EngineRequest => ({
        model,
        items,
        ...(reasoningEffort === undefined ? {} : { reasoningEffort }),
      });
      const turn = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
      const thinkingOff = reasoningEffort === "none" || reasoningEffort === "minimal";
      // Off: the template's own enable_thinking=false prompt (an empty, closed thought). On: the thought is
      // opened on the response's start (node-llama-cpp writes `<think>\n`), so the output parses as reasoning
      // from its first token.
      const thinking = loaded.get("stories-thinking")!;
      expect(await engine.renderPrompt(request("stories-thinking"))).toBe(
        thinkingOff ? `${turn}<think>\n\n</think>\n\n` : turn,
      );
      expect(chatWrapperFor(thinking, reasoningEffort).settings.segments?.thought?.openOnResponseStart).toBe(
        !thinkingOff,
      );
      // No switch in the template: every effort renders the same prompt with the base wrapper.
      const plain = loaded.get("stories-jinja")!;
      expect(chatWrapperFor(plain, reasoningEffort)).toBe(plain.chatWrapper);
      expect(await engine.renderPrompt(request("stories-jinja"))).toContain(turn);
      expect(await engine.renderPrompt(request("stories-jinja"))).toBe(
        await engine.renderPrompt({ model: "stories-jinja", items }),
      );
    },
  );

  it.each([
    ["none", "low", true],
    ["minimal", "low", true],
    ["low", "low", false],
    ["medium", "medium", false],
    ["high", "high", false],
    ["xhigh", "high", false],
  ] as const)(
    "renders effort %s as Harmony's Reasoning: %s line and Qwen's thinking off: %s",
    async (reasoningEffort, harmonyLevel, qwenThinkingOff) => {
      const engine = new LlamaEngine({ models: acquirer });
      const items = user("Hi");
      const harmony = await engine.renderPrompt({ model: "stories-harmony", items, reasoningEffort });
      expect(harmony).toContain(`Reasoning: ${harmonyLevel}\n`);
      const qwen = await engine.renderPrompt({ model: "stories-qwen", items, reasoningEffort });
      const turn = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
      expect(qwen.endsWith(qwenThinkingOff ? `${turn}<think>\n\n</think>\n\n` : turn)).toBe(true);
    },
  );

  it.each(["none", "minimal", "low", "medium", "high", "xhigh"] as const)(
    "renders effort %s on DeepSeek-R1's template (always thinks: effort is only a budget) exactly as without one",
    async (reasoningEffort) => {
      const engine = new LlamaEngine({ models: acquirer });
      const items = user("Hi");
      const withEffort = await engine.renderPrompt({ model: "stories-deepseek", items, reasoningEffort });
      expect(withEffort).toBe(await engine.renderPrompt({ model: "stories-deepseek", items }));
      expect(withEffort).toContain("Hi");
      const deepSeek = loaded.get("stories-deepseek")!;
      expect(chatWrapperFor(deepSeek, reasoningEffort).settings.segments?.thought).toBeDefined();
    },
  );

  it("keeps Harmony's analysis between the tool calls of the current turn in the prompt", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const items: EngineRequest["items"] = [
      { type: "message", role: "user", text: "What is the weather?" },
      { type: "reasoning", text: "I should call the weather tool first." },
      { type: "function-call", callId: "c1", name: "weather", arguments: '{"city":"Paris"}' },
      { type: "function-result", callId: "c1", name: "weather", output: "sunny" },
    ];
    const prompt = await engine.renderPrompt({
      model: "stories-harmony",
      items,
      tools: [{ name: "weather", parameters: { type: "object", properties: { city: { type: "string" } } } }],
      reasoningEffort: "low",
    });
    const analysis = prompt.indexOf("I should call the weather tool first.");
    expect(analysis).toBeGreaterThan(prompt.indexOf("What is the weather?"));
    expect(analysis).toBeLessThan(prompt.indexOf("sunny"));
  });

  it("runs 8 concurrent generations with never more than 4 at once", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const pool = (loaded.get("stories") as LlamaLoadedModel).pool;
    pool.resetStats();
    let maxActiveObserved = 0;
    const results = await Promise.all(
      Array.from({ length: 8 }, async (_, index) => {
        const parts: EnginePart[] = [];
        for await (const part of engine.generate(
          {
            model: "stories",
            items: user(`Story number ${index}: once upon a time`),
            sampling: { maxTokens: 48 },
          },
          new AbortController().signal,
        )) {
          maxActiveObserved = Math.max(maxActiveObserved, pool.active);
          parts.push(part);
        }
        return parts;
      }),
    );
    expect(results).toHaveLength(8);
    for (const parts of results) expect(parts.at(-1)).toMatchObject({ type: "finish" });
    expect(pool.maxActiveSeen).toBe(4);
    expect(maxActiveObserved).toBeLessThanOrEqual(4);
    expect(pool.stats.maxWaitingSeen).toBeGreaterThan(0);
    expect(pool.active).toBe(0);
    expect(acquirer.openLeases).toBe(0);
  });

  it("rejects with 429 queue_full when all sequences are busy and the queue is full", async () => {
    const engine = new LlamaEngine({ models: acquirer, maxQueue: 1 });
    const pool = (loaded.get("stories") as LlamaLoadedModel).pool;
    pool.resetStats();
    const controller = new AbortController();
    const long = { model: "stories", sampling: { maxTokens: 1500 } };
    const running = Array.from({ length: 5 }, (_, index) =>
      collect(engine, { ...long, items: user(`Tale ${index}`) }, controller.signal),
    );
    const deadline = Date.now() + 10_000;
    while ((pool.active < 4 || pool.waiting < 1) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 2));
    expect(pool.active).toBe(4);
    expect(pool.waiting).toBe(1);
    const error = await expectApiError(collect(engine, { ...long, items: user("One too many") }));
    expect(error.status).toBe(429);
    expect(error.code).toBe("queue_full");
    expect(error.retryAfter).toBe(1);
    controller.abort();
    const finished = await Promise.all(running);
    for (const result of finished) expect(result.finish.reason).toBe("cancelled");
    expect(pool.active).toBe(0);
    expect(pool.waiting).toBe(0);
  });

  it("reuses the KV cache of a shared prefix", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const model = loaded.get("stories-chatml") as LlamaLoadedModel;
    const system: EngineRequest["items"][number] = {
      type: "message",
      role: "system",
      text: "You tell stories about a little girl named Lily who lives in a small house near a big green forest. ".repeat(
        6,
      ),
    };
    const first = await collect(engine, {
      model: "stories-chatml",
      items: [system, { type: "message", role: "user", text: "Tell me about the dog." }],
      sampling: { maxTokens: 8 },
    });
    const before = evaluatedInputTokens(model);
    const second = await collect(engine, {
      model: "stories-chatml",
      items: [system, { type: "message", role: "user", text: "Tell me about the cat." }],
      sampling: { maxTokens: 8 },
    });
    const evaluated = evaluatedInputTokens(model) - before;
    expect(first.finish.usage.inputTokens).toBeGreaterThan(100);
    expect(second.finish.usage.cachedInputTokens).toBeGreaterThan(100);
    expect(evaluated).toBeLessThan(
      second.finish.usage.inputTokens - second.finish.usage.cachedInputTokens + 2,
    );
    expect(evaluated).toBeLessThan(second.finish.usage.inputTokens / 2);
    expect(second.parts[0]).toEqual({
      type: "prompt-progress",
      evaluatedTokens: second.finish.usage.cachedInputTokens,
      totalTokens: second.finish.usage.inputTokens,
    });
  });

  it("hands LlamaChat the prompt it rendered: the history is tokenized once per request", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const items: EngineRequest["items"] = [
      { type: "message", role: "system", text: "Lily has a red ball and a small dog. ".repeat(40) },
      { type: "message", role: "user", text: "Tell me about the dog." },
    ];
    const tokenize = vi.spyOn(LlamaText.prototype, "tokenize");
    try {
      const first = await collect(engine, { model: "stories-chatml", items, sampling: { maxTokens: 8 } });
      const answer = first.parts.map((part) => (part.type === "text-delta" ? part.text : "")).join("");
      const next = await collect(engine, {
        model: "stories-chatml",
        items: [
          ...items,
          { type: "message", role: "assistant", text: answer },
          { type: "message", role: "user", text: "And the ball?" },
        ],
        sampling: { maxTokens: 8 },
      });
      // Whole-prompt tokenizations (LlamaChat also tokenizes small pieces: stop strings, the answer).
      const whole = (inputTokens: number) =>
        tokenize.mock.results.filter(
          (result) => result.type === "return" && (result.value as unknown[]).length >= inputTokens - 1,
        ).length;
      expect(first.finish.usage.inputTokens).toBeGreaterThan(300);
      expect(whole(next.finish.usage.inputTokens)).toBe(1);
      expect(whole(first.finish.usage.inputTokens)).toBe(2);
      expect(next.finish.usage.cachedInputTokens).toBeGreaterThan(first.finish.usage.inputTokens - 2);
    } finally {
      tokenize.mockRestore();
    }
  });

  it("cancels mid-generation, frees the sequence and reuses it afterwards", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const pool = (loaded.get("stories") as LlamaLoadedModel).pool;
    pool.resetStats();
    const controller = new AbortController();
    const request: EngineRequest = {
      model: "stories",
      items: user("A very long story about a brave knight"),
      sampling: { maxTokens: 1800 },
    };
    const parts: EnginePart[] = [];
    let deltas = 0;
    for await (const part of engine.generate(request, controller.signal)) {
      parts.push(part);
      if (part.type === "text-delta" && ++deltas === 5) controller.abort();
    }
    const finish = parts.at(-1);
    expect(finish).toMatchObject({ type: "finish", reason: "cancelled" });
    expect(finish?.type === "finish" ? finish.usage.outputTokens : 0).toBeLessThan(100);
    expect(pool.active).toBe(0);
    expect(acquirer.openLeases).toBe(0);
    // The same prompt again lands on the cancelled request's sequence and reuses its cache.
    const again = await collect(engine, { ...request, sampling: { maxTokens: 4 } });
    expect(again.finish.reason).toBe("length");
    expect(again.finish.usage.cachedInputTokens).toBe(again.finish.usage.inputTokens - 1);
  });

  it("a consumer that stops reading early frees the sequence", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const pool = (loaded.get("stories") as LlamaLoadedModel).pool;
    pool.resetStats();
    for await (const part of engine.generate(
      { model: "stories", items: user("Hello"), sampling: { maxTokens: 1000 } },
      new AbortController().signal,
    )) {
      if (part.type === "text-delta") break;
    }
    expect(pool.active).toBe(0);
    expect(acquirer.openLeases).toBe(0);
  });

  it("finishes with reason length at maxTokens", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const result = await collect(engine, {
      model: "stories",
      items: user("Once upon a time"),
      sampling: { maxTokens: 5 },
    });
    expect(result.finish.reason).toBe("length");
    expect(result.finish.usage.outputTokens).toBe(5);
  });

  it("constrains output to a JSON schema", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const schema = {
      type: "object",
      properties: {
        name: { type: "string", maxLength: 16 },
        mood: { anyOf: [{ type: "string", enum: ["happy", "sad"] }, { type: "null" }] },
        age: { type: "integer", minimum: 0, maximum: 120 },
      },
      required: ["name", "mood", "age"],
      additionalProperties: false,
    };
    const result = await collect(engine, {
      model: "stories-chatml",
      items: user("Describe Lily as JSON."),
      sampling: { maxTokens: 120, seed: 7 },
      responseFormat: { type: "json_schema", name: "person", schema },
    });
    expect(result.finish.reason).toBe("stop");
    let parsed: unknown;
    expect(() => {
      parsed = JSON.parse(result.text);
    }).not.toThrow();
    expect(Object.keys(parsed as object).sort()).toEqual(["age", "mood", "name"]);
    const mood = (parsed as { mood: unknown }).mood;
    expect([null, "happy", "sad"]).toContain(mood);
  });

  it("rejects a schema the grammar cannot express with a 400 on text.format.schema", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const error = await expectApiError(
      collect(engine, {
        model: "stories",
        items: user("x"),
        responseFormat: { type: "json_schema", name: "bad", schema: { not: { type: "string" } } },
      }),
    );
    expect(error.status).toBe(400);
    expect(error.param).toBe("text.format.schema");
  });

  it("forces a named function call with schema-valid arguments", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const result = await collect(engine, {
      model: "stories-chatml",
      items: user("What is the weather in Paris?"),
      tools: [
        {
          name: "get_weather",
          description: "Current weather of a city",
          parameters: {
            type: "object",
            properties: { city: { type: "string", maxLength: 20 } },
            required: ["city"],
            additionalProperties: false,
          },
        },
        { name: "get_time", description: "Current time" },
      ],
      toolChoice: { name: "get_weather" },
      sampling: { maxTokens: 64 },
    });
    expect(result.finish.reason).toBe("tool-calls");
    const start = result.parts.find((part) => part.type === "tool-call-start");
    const end = result.parts.find((part) => part.type === "tool-call-end");
    expect(start).toMatchObject({ name: "get_weather" });
    expect(end).toMatchObject({ name: "get_weather" });
    const argumentsText = end?.type === "tool-call-end" ? end.arguments : "";
    const streamed = result.parts
      .map((part) => (part.type === "tool-call-delta" ? part.argumentsDelta : ""))
      .join("");
    expect(streamed).toBe(argumentsText);
    expect(Object.keys(JSON.parse(argumentsText) as object)).toEqual(["city"]);
  });

  it("tools with a JSON format: a text answer is generated under the grammar, a forced call stays a call", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const tools = [
      {
        name: "get_weather",
        description: "Current weather of a city",
        parameters: {
          type: "object",
          properties: { city: { type: "string", maxLength: 20 } },
          required: ["city"],
          additionalProperties: false,
        },
      },
    ];
    const schema = {
      type: "object",
      properties: { answer: { type: "string", maxLength: 30 }, sure: { type: "boolean" } },
      required: ["answer", "sure"],
      additionalProperties: false,
    };
    const responseFormat = { type: "json_schema" as const, name: "answer", schema, strict: true };
    // The tiny model answers in text when it may choose (it does not pick tools by itself): that answer
    // follows the schema, though the first attempt ran with the functions offered.
    let textAnswers = 0;
    for (const seed of [1, 2, 3]) {
      const answered = await collect(engine, {
        model: "stories-chatml",
        items: user("Is it sunny in Paris? Answer as JSON."),
        tools,
        responseFormat,
        sampling: { maxTokens: 120, temperature: 0.8, seed },
      });
      const call = answered.parts.find((part) => part.type === "tool-call-end");
      if (call !== undefined) {
        // Had the model chosen the tool, that call would be the answer.
        expect(call).toMatchObject({ name: "get_weather" });
        continue;
      }
      textAnswers++;
      expect(answered.finish.reason).toBe("stop");
      const parsed = JSON.parse(answered.text) as Record<string, unknown>;
      expect(Object.keys(parsed).sort()).toEqual(["answer", "sure"]);
      expect(typeof parsed.sure).toBe("boolean");
      // Usage counts the answer given, not the discarded first attempt.
      expect(answered.finish.usage.outputTokens).toBeLessThanOrEqual(120);
    }
    expect(textAnswers).toBeGreaterThan(0);
    const forced = await collect(engine, {
      model: "stories-chatml",
      items: user("Is it sunny in Paris?"),
      tools,
      toolChoice: "required",
      responseFormat,
      sampling: { maxTokens: 64, temperature: 0 },
    });
    expect(forced.finish.reason).toBe("tool-calls");
    expect(forced.parts.find((part) => part.type === "tool-call-end")).toMatchObject({ name: "get_weather" });

    // The call path, unforced: a ChatML wrapper whose call marker is a double quote, which this model
    // writes first, so it "chooses" the tool by itself. The call is the answer; no text is emitted.
    class CallOnQuote extends ChatMLChatWrapper {
      constructor() {
        super();
        const { settings } = this;
        const call = { ...settings.functions.call, prefix: LlamaText('"') };
        (this as { settings: typeof settings }).settings = {
          ...settings,
          functions: { ...settings.functions, call },
        };
      }
    }
    const base = loaded.get("stories-chatml")!;
    loaded.set("stories-call-on-quote", {
      ...base,
      chatWrapper: new CallOnQuote(),
      reasoningWrappers: new Map(),
      truncationStarts: new TruncationStarts(),
    });
    try {
      const chosen = await collect(engine, {
        model: "stories-call-on-quote",
        items: user("Is it sunny in Paris?"),
        tools,
        responseFormat,
        sampling: { maxTokens: 60, temperature: 0 },
      });
      expect(chosen.finish.reason).toBe("tool-calls");
      expect(chosen.text).toBe("");
      const end = chosen.parts.find((part) => part.type === "tool-call-end");
      expect(end).toMatchObject({ name: "get_weather" });
      expect(Object.keys(JSON.parse(end?.type === "tool-call-end" ? end.arguments : "") as object)).toEqual([
        "city",
      ]);
    } finally {
      loaded.delete("stories-call-on-quote");
    }
  });

  it("tool_choice required calls one of the tools; unknown names are a 400 on tool_choice", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const tools = [{ name: "get_time", description: "Current time" }];
    const result = await collect(engine, {
      model: "stories-chatml",
      items: user("Time?"),
      tools,
      toolChoice: "required",
      sampling: { maxTokens: 32 },
    });
    expect(result.finish.reason).toBe("tool-calls");
    expect(result.parts.find((part) => part.type === "tool-call-end")).toMatchObject({
      name: "get_time",
      arguments: "{}",
    });
    const error = await expectApiError(
      collect(engine, { model: "stories-chatml", items: user("x"), tools, toolChoice: { name: "nope" } }),
    );
    expect(error.param).toBe("tool_choice");
  });

  it("gives the same text twice for the same seed and temperature", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const request: EngineRequest = {
      model: "stories",
      items: user("Once upon a time"),
      sampling: { temperature: 0.9, topP: 0.95, seed: 1234, maxTokens: 40 },
    };
    const first = await collect(engine, request);
    const second = await collect(engine, request);
    expect(first.text.length).toBeGreaterThan(0);
    expect(second.text).toBe(first.text);
  });

  it("rejects a prompt longer than the context with context_length_exceeded; truncation auto drops old turns", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const longText = "The little dog ran to the park and played with a red ball. ".repeat(150);
    const error = await expectApiError(collect(engine, { model: "stories", items: user(longText) }));
    expect(error.status).toBe(400);
    expect(error.code).toBe("context_length_exceeded");
    expect(error.param).toBe("input");

    const items: EngineRequest["items"] = [
      { type: "message", role: "system", text: "Tell stories." },
      { type: "message", role: "user", text: longText },
      { type: "message", role: "assistant", text: "Woof." },
      { type: "message", role: "user", text: "Tell me a short story." },
    ];
    const truncated = await collect(engine, {
      model: "stories",
      items,
      truncation: "auto",
      sampling: { maxTokens: 8 },
    });
    expect(truncated.finish.usage.inputTokens).toBeLessThan(100);
    expect((await engine.countTokens({ model: "stories", items })).inputTokens).toBeGreaterThan(2048);
  });

  it("truncation auto past the window keeps a stable start, so most turns reuse the KV cache", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const items: EngineRequest["items"] = [{ type: "message", role: "system", text: "Tell stories." }];
    const turns: { input: number; cached: number; overflows: boolean }[] = [];
    for (let turn = 0; turn < 34; turn++) {
      items.push({
        type: "message",
        role: "user",
        text: `Turn ${turn}: tell me what the little dog and the big cat did in the park after the rain.`,
      });
      // With maxTokens 2 the prompt may take all but 2 tokens of the 2,048-token context.
      const overflows =
        (await engine.countTokens({ model: "stories-chatml", items })).inputTokens + 2 >= 2048;
      const result = await collect(engine, {
        model: "stories-chatml",
        items: [...items],
        truncation: "auto",
        sampling: { maxTokens: 2, temperature: 0 },
      });
      turns.push({
        input: result.finish.usage.inputTokens,
        cached: result.finish.usage.cachedInputTokens,
        overflows,
      });
      items.push({
        type: "message",
        role: "assistant",
        text: `The dog ran to the cat and they played with a red ball under the tree until the sun came out (${turn}).`,
      });
    }
    const past = turns.filter((turn) => turn.overflows).slice(1);
    expect(past.length).toBeGreaterThanOrEqual(16);
    // Without a stable start every turn past the window re-evaluated ~all its prompt (cached ~40 tokens).
    const restarts = past.filter((turn) => turn.cached < turn.input / 2);
    // A drop frees a quarter of the context (512 tokens, ~4 turns of 133): about one turn in four restarts.
    expect(restarts.length).toBeLessThanOrEqual(Math.ceil(past.length / 3));
    const evaluated = past.reduce((sum, turn) => sum + turn.input - turn.cached, 0);
    const prompted = past.reduce((sum, turn) => sum + turn.input, 0);
    expect(evaluated / prompted).toBeLessThan(0.35);
  });

  it("context_length_exceeded says where the tokens go and whether truncation auto would help", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const items: EngineRequest["items"] = [
      { type: "message", role: "system", text: "You tell short stories about animals." },
      { type: "message", role: "user", text: "The little dog ran to the park. ".repeat(300) },
      { type: "message", role: "assistant", text: "Woof." },
      { type: "message", role: "user", text: "And then?" },
    ];
    const tools = [
      { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } },
      { name: "get_time" },
    ];
    const error = await expectApiError(collect(engine, { model: "stories-chatml", items, tools }));
    const match =
      /resulted in (\d+) tokens.*Of those tokens, about (\d+) for the instructions and system messages, (\d+) for the 2 tool definitions, (\d+) for the conversation\. With truncation: "auto" the oldest turns are dropped to fit\./.exec(
        error.message,
      );
    expect(match, error.message).not.toBeNull();
    const [total, system, toolTokens, conversation] = match!.slice(1).map(Number) as [
      number,
      number,
      number,
      number,
    ];
    expect(system + toolTokens + conversation).toBe(total);
    expect(toolTokens).toBeGreaterThan(10);
    expect(conversation).toBeGreaterThan(system);
    // Old turns to drop, but the current turn alone is too long: truncation would not help, not suggested.
    const longLast = await expectApiError(
      collect(engine, { model: "stories-chatml", items: [items[0]!, items[3]!, items[2]!, items[1]!] }),
    );
    expect(longLast.message).toMatch(/\d+ for the conversation\. Please reduce/);
    // Only the current turn: truncation cannot help, so it is not suggested.
    const single = await expectApiError(
      collect(engine, { model: "stories-chatml", items: items.slice(1, 2) }),
    );
    // No instructions, no tools: nothing to break down either.
    expect(single.message).toMatch(
      /resulted in \d+ tokens \(with room for at least one output token\)\. Please reduce/,
    );
  });

  it("truncation auto never drops the current input: 400 instead of answering an empty prompt", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    // The review's repro: one long user message used to be dropped, leaving only the template (19 tokens).
    const error = await expectApiError(
      collect(engine, { model: "stories", items: user("word ".repeat(5000)), truncation: "auto" }),
    );
    expect(error).toMatchObject({ status: 400, code: "context_length_exceeded", param: "input" });

    const longText = "The little dog ran to the park and played with a red ball. ".repeat(150);
    const items: EngineRequest["items"] = [
      { type: "message", role: "user", text: longText },
      { type: "message", role: "assistant", text: "Woof." },
      { type: "message", role: "user", text: "Tell me a short story." },
    ];
    const fitted = await collect(engine, {
      model: "stories",
      items,
      truncation: "auto",
      sampling: { maxTokens: 4 },
    });
    expect(fitted.finish.usage.inputTokens).toBeGreaterThan(5);
    expect(fitted.finish.usage.inputTokens).toBeLessThan(100);
    // The same old turn as part of this request's own input (protectedTailItems) is not dropped.
    const protectedError = await expectApiError(
      collect(engine, { model: "stories", items, truncation: "auto", protectedTailItems: 3 }),
    );
    expect(protectedError.code).toBe("context_length_exceeded");
  });

  it("answers a trailing assistant message with a new assistant turn; continues only the tool loop", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const items: EngineRequest["items"] = [
      { type: "message", role: "user", text: "Tell" },
      { type: "message", role: "assistant", text: "Once upon a time" },
    ];
    expect(await engine.renderPrompt({ model: "stories-override", items })).toBe(
      "<s><|im_start|>user\nTell<|im_end|>\n<|im_start|>assistant\nOnce upon a time<|im_end|>\n<|im_start|>assistant\n",
    );
    // Llama 2 merges adjacent model items into one turn: the answer is closed and a user turn opens the new one.
    expect(await engine.renderPrompt({ model: "stories", items })).toBe(
      "<s>[INST] Tell [/INST] Once upon a time</s><s>[INST]   [/INST] ",
    );
    const answered = await collect(engine, { model: "stories-chatml", items, sampling: { maxTokens: 8 } });
    expect(answered.finish.usage.inputTokens).toBe(
      (await engine.countTokens({ model: "stories-chatml", items })).inputTokens,
    );

    const toolLoop: EngineRequest["items"] = [
      { type: "message", role: "user", text: "Weather in Paris?" },
      { type: "function-call", callId: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' },
      { type: "function-result", callId: "call_1", output: "sunny" },
    ];
    const tools = [
      { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } },
    ];
    const loopPrompt = await engine.renderPrompt({ model: "stories-override", items: toolLoop, tools });
    expect(loopPrompt.endsWith('||call: get_weather({"city": "Paris"})\n||result: "sunny"\n')).toBe(true);
  });

  it("strict json_schema: refuses what it cannot enforce, naming the keyword; what it accepts always validates", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    // The review's repro: {"n": -5, "s": "Can you..."} came back. (Plain patterns are enforced now; a
    // lookahead still cannot be.)
    const repro = {
      type: "object",
      properties: {
        n: { type: "integer", minimum: 5, maximum: 7 },
        s: { type: "string", pattern: "^(?=a)a+$" },
      },
      required: ["n", "s"],
      additionalProperties: false,
    };
    const refused = await expectApiError(
      collect(engine, {
        model: "stories-chatml",
        items: user("JSON please"),
        responseFormat: { type: "json_schema", name: "repro", schema: repro, strict: true },
      }),
    );
    expect(refused).toMatchObject({
      status: 400,
      code: "invalid_json_schema",
      param: "text.format.schema.properties.s.pattern",
    });
    // Without strict the pattern is dropped, but the integer range is still enforced.
    const lenient = await collect(engine, {
      model: "stories-chatml",
      items: user("JSON please"),
      responseFormat: { type: "json_schema", name: "repro", schema: repro },
      sampling: { temperature: 1.5, seed: 7, maxTokens: 60 },
    });
    // (The string may run into maxTokens; n comes first.)
    expect(["5", "6", "7"]).toContain(/^\{\s*"n":\s*(-?[\d.eE+-]+)/.exec(lenient.text)?.[1]);

    const schema = {
      type: "object",
      properties: {
        n: { type: "integer", minimum: 5, maximum: 7 },
        percent: { type: "integer", minimum: 0, maximum: 100 },
        even: { type: "integer", exclusiveMinimum: 0, maximum: 20, multipleOf: 2 },
        color: { type: "string", pattern: "^(red|green|blue)$" },
        tags: { type: "array", items: { type: "string", maxLength: 8 }, minItems: 1, maxItems: 3 },
        pair: { type: "array", prefixItems: [{ type: "boolean" }, { const: "x" }], items: false },
        mood: { anyOf: [{ type: "string", enum: ["happy", "sad"] }, { type: "null" }] },
        pet: {
          oneOf: [
            {
              type: "object",
              properties: { kind: { const: "cat" }, lives: { type: "integer", minimum: 1, maximum: 9 } },
            },
            { type: "object", properties: { kind: { const: "dog" } } },
          ],
        },
      },
      required: ["n", "percent", "even", "color", "tags", "pair", "mood", "pet"],
      additionalProperties: false,
    };
    const ajv = new Ajv2020({ strict: false });
    addFormats(ajv);
    const validate = ajv.compile(schema);
    for (let seed = 1; seed <= 8; seed++) {
      const result = await collect(engine, {
        model: "stories-chatml",
        items: user("Describe Lily as JSON."),
        responseFormat: { type: "json_schema", name: "lily", schema, strict: true },
        sampling: { temperature: 1.3, seed, maxTokens: 300 },
      });
      expect(result.finish.reason).toBe("stop");
      const parsed: unknown = JSON.parse(result.text);
      expect(validate(parsed) ? [] : validate.errors).toEqual([]);
    }
  });

  it("strict tool parameters refuse unenforceable keywords; parallelToolCalls false allows one call", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const tools = [
      { name: "get_time", description: "Current time" },
      {
        name: "count",
        strict: true,
        parameters: { type: "object", properties: { n: { type: "integer", minimum: 0 } } },
      },
    ];
    const refused = await expectApiError(
      collect(engine, { model: "stories-chatml", items: user("Count"), tools }),
    );
    expect(refused).toMatchObject({ status: 400, param: "tools[1].parameters.properties.n.minimum" });

    const generateResponse = vi.spyOn(LlamaChat.prototype, "generateResponse");
    try {
      const weather = {
        name: "get_weather",
        parameters: { type: "object", properties: { city: { type: "string", maxLength: 12 } } },
      };
      for (const parallelToolCalls of [false, true, undefined]) {
        generateResponse.mockClear();
        const result = await collect(engine, {
          model: "stories-chatml",
          items: user("Weather in Paris and Rome?"),
          tools: [weather],
          toolChoice: "required",
          ...(parallelToolCalls !== undefined ? { parallelToolCalls } : {}),
          sampling: { maxTokens: 48 },
        });
        expect(result.finish.reason).toBe("tool-calls");
        const options = generateResponse.mock.calls[0]?.[1];
        expect(options?.maxParallelFunctionCalls).toBe(parallelToolCalls === false ? 1 : undefined);
        if (parallelToolCalls === false)
          expect(result.parts.filter((part) => part.type === "tool-call-end")).toHaveLength(1);
      }
    } finally {
      generateResponse.mockRestore();
    }
  });

  it("close() cancels in-flight generations and rejects new work", async () => {
    const engine = new LlamaEngine({ models: acquirer });
    const stream = engine.generate(
      { model: "stories", items: user("Long tale"), sampling: { maxTokens: 1800 } },
      new AbortController().signal,
    );
    const iterator = stream[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.done).toBe(false);
    const closing = engine.close();
    const rest: EnginePart[] = [];
    for (let step = await iterator.next(); step.done !== true; step = await iterator.next())
      rest.push(step.value);
    await closing;
    expect(rest.at(-1)).toMatchObject({ type: "finish", reason: "cancelled" });
    const error = await expectApiError(collect(engine, { model: "stories", items: user("after close") }));
    expect(error.status).toBe(503);
    expect(acquirer.openLeases).toBe(0);
  });

  it("loads the general-template model too", async () => {
    const model = await loader.load(entry("random", randomLlamaModel));
    try {
      expect(model.chatWrapper.wrapperName).toBe("General");
      const engine = new LlamaEngine({
        models: { acquire: async () => ({ entry: model.entry, loaded: model, release: () => undefined }) },
      });
      const result = await collect(engine, {
        model: "random",
        items: user("Hello"),
        sampling: { maxTokens: 6 },
      });
      expect(result.finish.usage.outputTokens).toBeGreaterThan(0);
    } finally {
      await loader.unload(model);
    }
  });
});
