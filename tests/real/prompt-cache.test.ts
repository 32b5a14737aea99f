/**
 * The persistent prompt cache on the real engine (stories260K-chatml, one thread, 2 sequences): a long
 * prefix's saved state is restored after its sequence was reused by other requests (cached_tokens count it,
 * and the output equals a cold evaluation's with the same seed), after a restart (a new loader, context,
 * cache and engine on the same folder), the size bound evicts, and a corrupted state file is ignored,
 * deleted, and the request still succeeds. A low save threshold keeps the prefix short and the tests fast.
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { LlamaEngine } from "../../src/engine/llama/engine.js";
import { LlamaModelLoader, type LlamaLoadedModel } from "../../src/engine/llama/loader.js";
import { PromptCache } from "../../src/engine/llama/prompt-cache.js";
import type { EnginePart, EngineRequest } from "../../src/engine/types.js";
import type { ModelAcquirer, ModelEntry } from "../../src/models/types.js";
import { ModelManager } from "../../src/models/manager.js";
import { silentLogger } from "../../src/shared/logger.js";
import { storiesChatmlModel, storiesModel } from "../helpers/paths.js";
import { createRealApp } from "../helpers/real-app.js";

const entry: ModelEntry = { id: "stories-chatml", path: storiesChatmlModel, sizeBytes: 0, publisher: "test" };
const minTokens = 256;

class OneModel implements ModelAcquirer<LlamaLoadedModel> {
  constructor(private readonly loaded: LlamaLoadedModel) {}
  async acquire(): Promise<{ entry: ModelEntry; loaded: LlamaLoadedModel; release(): void }> {
    return { entry, loaded: this.loaded, release: () => undefined };
  }
}

interface Result {
  text: string;
  cachedTokens: number;
  inputTokens: number;
}

async function run(engine: LlamaEngine, request: EngineRequest): Promise<Result> {
  const parts: EnginePart[] = [];
  for await (const part of engine.generate(request, new AbortController().signal)) parts.push(part);
  const finish = parts.at(-1);
  if (finish?.type !== "finish") throw new Error("no finish part");
  expect(finish.reason).not.toBe("cancelled");
  return {
    text: parts.map((part) => (part.type === "text-delta" ? part.text : "")).join(""),
    cachedTokens: finish.usage.cachedInputTokens,
    inputTokens: finish.usage.inputTokens,
  };
}

/** ~650 tokens of instructions, different per `topic`. */
function instructions(topic: string): string {
  return (
    `You write short stories about ${topic}. `.repeat(4) +
    `Once upon a time a ${topic} played in the park with a little girl named Lily. `.repeat(30)
  );
}

function request(system: string, question: string): EngineRequest {
  return {
    model: entry.id,
    items: [
      { type: "message", role: "system", text: system },
      { type: "message", role: "user", text: question },
    ],
    sampling: { seed: 42, temperature: 0.8, maxTokens: 24 },
  };
}

/** Two short unrelated requests at once: both sequences end up holding something else. */
async function overwriteSequences(engine: LlamaEngine): Promise<void> {
  await Promise.all([
    run(engine, request("Be brief.", "Say hi.")),
    run(engine, request("Be short.", "Say hello.")),
  ]);
}

/** The next turn of `previous`'s conversation: its answer, then "And then?". */
function nextTurn(previous: EngineRequest, answer: Result): EngineRequest {
  return {
    ...previous,
    items: [
      ...previous.items,
      { type: "message", role: "assistant", text: answer.text },
      { type: "message", role: "user", text: "And then?" },
    ],
  };
}

/** An engine on the shared model with a fresh cache folder, saving once the model was idle `idleMs`. */
async function engineSavingWhenIdle(idleMs: number) {
  const dir = mkdtempSync(path.join(tmpdir(), "lmhost-prompt-cache-"));
  const loaded = models[0] ?? (await load());
  const cache = new PromptCache({ dir, maxBytes: 64 * 1024 ** 2, minTokens });
  const engine = new LlamaEngine({
    models: new OneModel(loaded),
    promptCache: cache,
    promptCacheIdleMs: idleMs,
  });
  return { loaded, cache, engine };
}

/**
 * An engine on a real model manager (JIT loads, at most one model loaded) over `entries`, with a fresh cache
 * folder; saves wait for a model idle 60 s, which never happens within a test.
 */
function engineOnModelManager(entries: ModelEntry[]) {
  const dir = mkdtempSync(path.join(tmpdir(), "lmhost-prompt-cache-"));
  const cache = new PromptCache({ dir, maxBytes: 64 * 1024 ** 2, minTokens });
  const loader = new LlamaModelLoader({ llama, threads: 1, parallel: 2, contextLength: 2048, warmup: false });
  const manager = new ModelManager({
    source: { list: async () => entries },
    loader,
    ttlSeconds: 3600,
    maxLoaded: 1,
    logger: silentLogger,
  });
  const engine = new LlamaEngine({ models: manager, promptCache: cache, promptCacheIdleMs: 60_000 });
  return { cache, manager, engine };
}

function warnings(): { warn: (message: string) => void; messages: string[] } {
  const messages: string[] = [];
  return { warn: (message) => messages.push(message), messages };
}

let llama: Llama;
const loaders: LlamaModelLoader[] = [];
const models: LlamaLoadedModel[] = [];

async function load(): Promise<LlamaLoadedModel> {
  const loader = new LlamaModelLoader({ llama, threads: 1, parallel: 2, contextLength: 2048, warmup: false });
  const loaded = await loader.load(entry);
  loaders.push(loader);
  models.push(loaded);
  return loaded;
}

beforeAll(async () => {
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
});

afterAll(async () => {
  for (const [index, loaded] of models.entries()) await loaders[index]?.unload(loaded);
});

describe("prompt cache (real engine)", () => {
  it("restores a prefix after its sequence was reused and after a restart, with the cold output", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "lmhost-prompt-cache-"));
    const loaded = await load();
    expect(loaded.promptCacheIdentity).toMatch(/^[0-9a-f]{64}$/);
    const cache = new PromptCache({ dir, maxBytes: 64 * 1024 ** 2, minTokens });
    const engine = new LlamaEngine({ models: new OneModel(loaded), promptCache: cache });
    const noCache = new LlamaEngine({ models: new OneModel(loaded) });
    const system = instructions("cat");
    const prefixTokens = loaded.model.tokenize(`<|im_start|>system\n${system}`, true).length;
    expect(prefixTokens).toBeGreaterThan(minTokens * 2);

    const first = await run(engine, request(system, "Tell me about a cat."));
    expect(first.cachedTokens).toBe(0);
    await engine.settled();
    expect(cache.list()).toHaveLength(1);
    expect(
      readdirSync(dir)
        .sort()
        .map((file) => path.extname(file)),
    ).toEqual([".json", ".kv"]);

    // Both sequences reused by other requests: the prefix comes back from the cache.
    await overwriteSequences(engine);
    const restored = await run(engine, request(system, "Tell me about a dog."));
    expect(restored.cachedTokens).toBeGreaterThanOrEqual(prefixTokens - 2);
    expect(restored.inputTokens).toBeGreaterThan(restored.cachedTokens);

    // The same request evaluated cold (no cache, sequences holding something else) writes the same text.
    await overwriteSequences(noCache);
    const cold = await run(noCache, request(system, "Tell me about a dog."));
    expect(cold.cachedTokens).toBeLessThan(50);
    expect(restored.text).not.toBe("");
    expect(restored.text).toBe(cold.text);
    await engine.settled();

    // A restart: a new loader, context, cache and engine on the same folder.
    const reloaded = await load();
    expect(reloaded.promptCacheIdentity).toBe(loaded.promptCacheIdentity);
    const restartedCache = new PromptCache({ dir, maxBytes: 64 * 1024 ** 2, minTokens });
    const restarted = new LlamaEngine({ models: new OneModel(reloaded), promptCache: restartedCache });
    const afterRestart = await run(restarted, request(system, "Tell me about a dog."));
    expect(afterRestart.cachedTokens).toBeGreaterThanOrEqual(prefixTokens - 2);
    expect(afterRestart.text).toBe(cold.text);
    await restarted.close();
    await engine.close();
    await noCache.close();
  });

  it("saves a state once the model is idle, so the next turn does not wait for the write", async () => {
    const { cache, engine } = await engineSavingWhenIdle(3000);
    const save = vi.spyOn(cache, "save");
    const first = request(instructions("owl"), "Tell me about an owl.");
    const answer = await run(engine, first);
    // The next turn at once, as an agent sends it: no state was written in between.
    const next = await run(engine, nextTurn(first, answer));
    expect(save).not.toHaveBeenCalled();
    expect(next.cachedTokens).toBeGreaterThanOrEqual(answer.inputTokens - 2);
    // Once the model has been idle for 3 s, the latest state (the second turn's) is saved, once: the
    // first turn's was dropped, its sequence having moved on.
    await vi.waitFor(() => expect(cache.list()).toHaveLength(1), { timeout: 15_000, interval: 50 });
    expect(save).toHaveBeenCalledTimes(1);
    expect(cache.list()[0]!.tokens.length).toBeGreaterThan(next.inputTokens);
    await engine.close();
  });

  it("writes a waiting state first when another conversation takes its sequence", async () => {
    // The model never falls idle long enough within this test.
    const { loaded, cache, engine } = await engineSavingWhenIdle(60_000);
    const system = instructions("fox");
    const prefixTokens = loaded.model.tokenize(`<|im_start|>system\n${system}`, true).length;
    const first = await run(engine, request(system, "Tell me about a fox."));
    expect(cache.list()).toHaveLength(0);
    // Both sequences taken at once by other conversations: the waiting state is written before its
    // sequence is overwritten, and a later request with the same instructions restores it.
    await overwriteSequences(engine);
    await vi.waitFor(() => expect(cache.list()).toHaveLength(1), { timeout: 5000, interval: 20 });
    expect(cache.list()[0]!.tokens.length).toBeGreaterThan(first.inputTokens);
    const restored = await run(engine, request(system, "Tell me about a hen."));
    expect(restored.cachedTokens).toBeGreaterThanOrEqual(prefixTokens - 2);
    await engine.close();
  });

  it("does not write a waiting state on the path of a next turn that changes the answer (thoughts left out)", async () => {
    const { loaded, cache, engine } = await engineSavingWhenIdle(60_000);
    const save = vi.spyOn(cache, "save");
    const first: EngineRequest = {
      ...request(instructions("duck"), "Tell me about a duck."),
      sampling: { seed: 42, temperature: 0.8, maxTokens: 160 },
    };
    const answer = await run(engine, first);
    // Long enough that the sequence differs from the next turn well before its last 64 tokens.
    expect(loaded.model.tokenize(answer.text).length).toBeGreaterThan(100);
    // As a client that drops a reasoning model's thoughts sends it: the same prompt, another answer.
    const next = await run(engine, nextTurn(first, { ...answer, text: "A duck swam." }));
    expect(save).not.toHaveBeenCalled();
    expect(next.cachedTokens).toBeGreaterThanOrEqual(answer.inputTokens - 2);
    // The next turn's own state is the one saved, once.
    await engine.settled();
    expect(save).toHaveBeenCalledTimes(1);
    expect(cache.list()).toHaveLength(1);
    expect(cache.list()[0]!.tokens.length).toBeGreaterThan(next.inputTokens);
    await engine.close();
  });

  it("writes a waiting state at once when another model needs its model's slot", async () => {
    const other: ModelEntry = { id: "stories", path: storiesModel, sizeBytes: 0, publisher: "test" };
    const { cache, manager, engine } = engineOnModelManager([entry, other]);
    await run(engine, request(instructions("frog"), "Tell me about a frog."));
    expect(cache.list()).toHaveLength(0);
    // A request for the other model: the waiting state is written and the first model unloaded for it,
    // without waiting out the idle time.
    const started = performance.now();
    const answer = await run(engine, { ...request("Be brief.", "Say hi."), model: other.id });
    expect(answer.text).not.toBe("");
    expect(performance.now() - started).toBeLessThan(30_000);
    expect(cache.list()).toHaveLength(1);
    expect(
      (await manager.status()).filter((model) => model.state === "loaded").map((model) => model.id),
    ).toEqual([other.id]);
    await engine.close();
    await manager.close();
  });

  it("keeps a state asked to make way while its sequence is wanted by a queued request, and writes it first", async () => {
    const { cache, manager, engine } = engineOnModelManager([entry]);
    const long = (system: string, question: string, maxTokens: number): EngineRequest => ({
      ...request(system, question),
      sampling: { seed: 42, temperature: 0.8, maxTokens },
    });
    // Both sequences busy (a long prompt with a short answer, a short prompt with a long one), a third
    // request queued, and an unload of the model asked for meanwhile.
    const frog = run(engine, long(instructions("frog"), "Tell me about a frog.", 16));
    const story = run(engine, long("Be long.", "Tell a story.", 400));
    await vi.waitFor(() => expect(manager.status().then((s) => s[0]?.state)).resolves.toBe("loaded"));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const queued = run(engine, request("Be brief.", "Say hi."));
    expect(await manager.unload(entry.id)).toBe(true);
    await frog;
    // The frog's state, asked to make way while the queued request waits for a sequence, is kept and
    // written before that request overwrites its sequence.
    await Promise.all([story, queued]);
    await engine.settled();
    expect(cache.list()).toHaveLength(1);
    await vi.waitFor(async () => expect((await manager.status())[0]?.state).toBe("not-loaded"));
    await engine.close();
    await manager.close();
  });

  it("saves an interrupted next turn's own state, never other tokens under a state's name", async () => {
    const { loaded, cache, engine } = await engineSavingWhenIdle(60_000);
    const first = request(instructions("bee"), "Tell me about a bee.");
    const answer = await run(engine, first);
    // The next turn starts on that sequence (replacing the waiting save) and is cancelled at its first token.
    const next = nextTurn(first, answer);
    const controller = new AbortController();
    for await (const part of engine.generate(next, controller.signal))
      if (part.type === "text-delta") controller.abort();
    // Other conversations take both sequences: what is written first is the interrupted turn's own state
    // (its prompt holds the first turn's), not the first turn's name over the sequence's other tokens.
    await overwriteSequences(engine);
    await engine.settled();
    const { inputTokens } = await engine.countTokens(next);
    const entries = cache.list();
    expect(entries).toHaveLength(1);
    expect(entries[0]!.tokens.length).toBeGreaterThanOrEqual(inputTokens);
    expect(entries[0]!.tokens.length).toBeLessThanOrEqual(inputTokens + 2);
    // And it is that state: restored, the same turn writes what a cold evaluation writes.
    const restored = await run(engine, next);
    expect(restored.cachedTokens).toBeGreaterThanOrEqual(inputTokens - 2);
    const noCache = new LlamaEngine({ models: new OneModel(loaded) });
    await overwriteSequences(noCache);
    const cold = await run(noCache, next);
    expect(cold.cachedTokens).toBeLessThan(50);
    expect(restored.text).toBe(cold.text);
    await noCache.close();
    await engine.close();
  });

  it("keeps the folder under its size bound, least recently used first", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "lmhost-prompt-cache-"));
    const loaded = models[0] ?? (await load());
    // One state of ~700 tokens takes ~0.45 MB (656 bytes a token on this model): room for one only.
    const cache = new PromptCache({ dir, maxBytes: 700_000, minTokens });
    const engine = new LlamaEngine({ models: new OneModel(loaded), promptCache: cache });
    await run(engine, request(instructions("cat"), "Tell me a story."));
    await engine.settled();
    const [catEntry] = cache.list();
    expect(catEntry?.bytes).toBeGreaterThan(350_000);
    await run(engine, request(instructions("frog"), "Tell me a story."));
    await engine.settled();
    expect(cache.list()).toHaveLength(1);
    expect(cache.list()[0]?.name).not.toBe(catEntry?.name);
    expect(cache.totalBytes).toBeLessThanOrEqual(700_000);
    expect(readdirSync(dir)).toHaveLength(2);
    await engine.close();
  });

  it("ignores and deletes a corrupted state file; the request still succeeds", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "lmhost-prompt-cache-"));
    const loaded = models[0] ?? (await load());
    const { warn, messages } = warnings();
    const cache = new PromptCache({ dir, maxBytes: 64 * 1024 ** 2, minTokens, warn });
    const engine = new LlamaEngine({ models: new OneModel(loaded), promptCache: cache, warn });
    const system = instructions("bird");
    await run(engine, request(system, "Tell me a story."));
    await engine.settled();
    const [saved] = cache.list();
    if (saved === undefined) throw new Error("nothing saved");
    const stateFile = path.join(dir, `${saved.name}.kv`);
    const bytes = readFileSync(stateFile);
    for (let index = 0; index < 4096; index += 1) {
      const at = Math.floor(bytes.length / 2) + index;
      bytes[at] = (bytes[at] ?? 0) ^ 0x5a;
    }
    writeFileSync(stateFile, bytes);

    await overwriteSequences(engine);
    const result = await run(engine, request(system, "Tell me another story."));
    expect(result.text).not.toBe("");
    expect(result.cachedTokens).toBeLessThan(50);
    expect(messages.join("\n")).toMatch(/checksum/);
    expect(readdirSync(dir).some((file) => file.startsWith(saved.name))).toBe(false);
    // The state is saved again after that request.
    await engine.settled();
    expect(cache.list()).toHaveLength(1);
    await engine.close();
  });

  it("reports restored tokens as usage.input_tokens_details.cached_tokens on /v1/responses", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "lmhost-prompt-cache-"));
    const real = await createRealApp({
      promptCache: new PromptCache({ dir, maxBytes: 64 * 1024 ** 2, minTokens }),
    });
    try {
      const system = instructions("fox");
      const ask = (question: string) =>
        real.client.responses.create({
          model: "stories260K-chatml",
          instructions: system,
          input: question,
          max_output_tokens: 8,
          temperature: 0,
          prompt_cache_key: "conversation-1",
          store: false,
        });
      const first = await ask("Tell me a story.");
      expect(first.usage?.input_tokens_details.cached_tokens).toBe(0);
      await real.engine.settled();
      const other = (text: string) =>
        real.client.responses.create({
          model: "stories260K-chatml",
          input: text,
          max_output_tokens: 4,
          store: false,
        });
      await Promise.all([other("Say hi."), other("Say hello.")]);
      const restored = await ask("Tell me another story.");
      expect(restored.usage?.input_tokens_details.cached_tokens).toBeGreaterThan(minTokens * 2);
      expect(restored.usage?.input_tokens).toBeGreaterThan(
        restored.usage?.input_tokens_details.cached_tokens ?? 0,
      );
    } finally {
      await real.close();
    }
  });

  it("restores while two long generations stream, without waiting for them to end", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "lmhost-prompt-cache-"));
    const loader = new LlamaModelLoader({
      llama,
      threads: 1,
      parallel: 3,
      contextLength: 2048,
      warmup: false,
    });
    const loaded = await loader.load(entry);
    const engine = new LlamaEngine({
      models: new OneModel(loaded),
      promptCache: new PromptCache({ dir, maxBytes: 64 * 1024 ** 2, minTokens }),
    });
    try {
      const system = instructions("horse");
      await run(engine, request(system, "Tell me a story."));
      await engine.settled();
      /** Streams a generation; `firstText` resolves at its first text, `done` at its end. */
      const streamed = (generation: EngineRequest) => {
        let firstDelta = noop;
        const firstText = new Promise<void>((resolve) => (firstDelta = resolve));
        const parts: EnginePart[] = [];
        const done = (async () => {
          for await (const part of engine.generate(generation, new AbortController().signal)) {
            parts.push(part);
            if (part.type === "text-delta") firstDelta();
          }
          return parts.at(-1);
        })();
        return { firstText, done };
      };
      const long = (text: string) => ({
        model: entry.id,
        items: [{ type: "message" as const, role: "user" as const, text }],
        sampling: { seed: 1, temperature: 0, maxTokens: 1_200 },
      });
      // The two long ones take the prefix's sequence and an empty one; the newcomer gets the last, empty one.
      const longOnes = [streamed(long("Lily went to the park")), streamed(long("Tom had a big dog"))];
      await Promise.all(longOnes.map(async (generation) => generation.firstText));
      const finished = longOnes.map(() => false);
      longOnes.forEach((generation, index) => void generation.done.then(() => (finished[index] = true)));

      const newcomer = streamed(request(system, "Tell me about a horse."));
      await newcomer.firstText;
      // Both long generations were still streaming when the restored request's first token arrived.
      expect(finished).toEqual([false, false]);
      const finish = await newcomer.done;
      expect(finish?.type === "finish" ? finish.usage.cachedInputTokens : 0).toBeGreaterThan(minTokens * 2);
      await Promise.all(longOnes.map(async (generation) => generation.done));
    } finally {
      await engine.close();
      await loader.unload(loaded);
    }
  });
});

function noop(): void {}
