/**
 * ModelManager over a fixed ModelSource and a fake loader that records every load and unload: JIT
 * loading, shared loads, idle TTL (fake timers), per-request TTL, LRU eviction, leases, errors, unload
 * and close.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { ModelManager, type ModelManagerOptions } from "../../src/models/manager.js";
import type { ModelEntry, ModelLoader, ModelSource } from "../../src/models/types.js";
import { ApiError } from "../../src/shared/errors.js";
import { silentLogger } from "../../src/shared/logger.js";

interface FakeModel {
  id: string;
  generation: number;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}

function deferred(): Deferred {
  let resolve = (): void => undefined;
  const promise = new Promise<void>((settle) => {
    resolve = settle;
  });
  return { promise, resolve };
}

class FakeLoader implements ModelLoader<FakeModel> {
  readonly events: string[] = [];
  /** Model id → reason: the next loads of that model fail. */
  readonly failures = new Map<string, string>();
  /** Model id → gate: loads of that model wait for it. */
  readonly gates = new Map<string, Deferred>();
  private generation = 0;

  async load(entry: ModelEntry): Promise<FakeModel> {
    this.events.push(`load ${entry.id}`);
    await this.gates.get(entry.id)?.promise;
    const failure = this.failures.get(entry.id);
    if (failure !== undefined) throw new Error(failure);
    this.generation += 1;
    return { id: entry.id, generation: this.generation };
  }

  async unload(model: FakeModel): Promise<void> {
    this.events.push(`unload ${model.id}`);
  }

  contextLength(): number {
    return 1024;
  }
}

function entry(id: string, extra: Partial<ModelEntry> = {}): ModelEntry {
  return { id, path: `/models/${id}.gguf`, sizeBytes: 1000, publisher: "test", ...extra };
}

const fixedSource: ModelSource = {
  list: async () => [entry("a"), entry("b"), entry("c"), entry("broken", { error: "not a GGUF file" })],
};

function createManager(options: Partial<ModelManagerOptions<FakeModel>> = {}): {
  manager: ModelManager<FakeModel>;
  loader: FakeLoader;
} {
  const loader = new FakeLoader();
  const manager = new ModelManager<FakeModel>({
    source: fixedSource,
    loader,
    ttlSeconds: 3600,
    maxLoaded: 1,
    logger: silentLogger,
    ...options,
  });
  return { manager, loader };
}

async function stateOf(manager: ModelManager<FakeModel>, id: string): Promise<string | undefined> {
  return (await manager.status()).find((status) => status.id === id)?.state;
}

/** Lets pending promise chains run (real timers only). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

async function expectApiError(promise: Promise<unknown>, expected: Partial<ApiError>): Promise<ApiError> {
  const error: unknown = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(ApiError);
  expect(error).toMatchObject(expected);
  return error as ApiError;
}

afterEach(() => {
  vi.useRealTimers();
});

describe("ModelManager loading", () => {
  it("loads a model on its first acquire and reuses it afterwards", async () => {
    const { manager, loader } = createManager();
    expect(await stateOf(manager, "a")).toBe("not-loaded");

    const first = await manager.acquire("a");
    expect(first.loaded).toEqual({ id: "a", generation: 1 });
    expect(first.entry.id).toBe("a");
    first.release();
    const second = await manager.acquire("a");
    expect(second.loaded).toBe(first.loaded);
    second.release();

    expect(loader.events).toEqual(["load a"]);
    const status = (await manager.status()).find((each) => each.id === "a");
    expect(status).toMatchObject({ state: "loaded", loadedContextLength: 1024 });
    await manager.close();
  });

  it("shares one load among concurrent acquires", async () => {
    const { manager, loader } = createManager();
    const gate = deferred();
    loader.gates.set("a", gate);
    const acquires = [manager.acquire("a"), manager.acquire("a"), manager.acquire("a")];
    await settle();
    expect(await stateOf(manager, "a")).toBe("loading");
    gate.resolve();
    const leases = await Promise.all(acquires);
    expect(new Set(leases.map((lease) => lease.loaded)).size).toBe(1);
    expect(loader.events).toEqual(["load a"]);
    for (const lease of leases) lease.release();
    await manager.close();
  });

  it("answers an unknown id with 404 model_not_found listing the available ids", async () => {
    const { manager, loader } = createManager();
    const error = await expectApiError(manager.acquire("nope"), {
      status: 404,
      code: "model_not_found",
      param: "model",
    });
    expect(error.message).toContain('"nope"');
    expect(error.message).toContain("a, b, c, broken");
    await expectApiError(manager.get("nope"), { status: 404, code: "model_not_found" });
    await expectApiError(manager.unload("nope"), { status: 404, code: "model_not_found" });
    expect(loader.events).toEqual([]);
  });

  it("matches ids case-insensitively when the match is unique", async () => {
    const { manager } = createManager();
    expect((await manager.get("A")).id).toBe("a");
    const lease = await manager.acquire("B");
    expect(lease.entry.id).toBe("b");
    lease.release();
    await manager.close();
  });

  it("answers a broken entry with 400 model_load_failed without calling the loader", async () => {
    const { manager, loader } = createManager();
    const error = await expectApiError(manager.acquire("broken"), {
      status: 400,
      code: "model_load_failed",
      param: "model",
    });
    expect(error.message).toContain('"broken"');
    expect(error.message).toContain("not a GGUF file");
    expect(loader.events).toEqual([]);
  });

  it("turns a failed load into 400, keeps serving other models and retries later", async () => {
    const { manager, loader } = createManager({ maxLoaded: 2 });
    loader.failures.set("a", "out of memory");
    const error = await expectApiError(manager.acquire("a"), { status: 400, code: "model_load_failed" });
    expect(error.message).toMatch(/"a".*out of memory/);
    expect(await stateOf(manager, "a")).toBe("not-loaded");

    const other = await manager.acquire("b");
    expect(other.loaded.id).toBe("b");
    other.release();

    loader.failures.delete("a");
    const retried = await manager.acquire("a");
    expect(retried.loaded.id).toBe("a");
    retried.release();
    expect(loader.events).toEqual(["load a", "load b", "load a"]);
    await manager.close();
  });

  it("gives every waiter of a failed shared load the same 400", async () => {
    const { manager, loader } = createManager();
    const gate = deferred();
    loader.gates.set("a", gate);
    loader.failures.set("a", "bad tensor");
    const acquires = [manager.acquire("a"), manager.acquire("a")];
    gate.resolve();
    for (const acquire of acquires) await expectApiError(acquire, { status: 400, code: "model_load_failed" });
    expect(loader.events).toEqual(["load a"]);
  });
});

describe("ModelManager idle TTL", () => {
  it("unloads an idle model when its TTL expires, never while leased", async () => {
    vi.useFakeTimers({ now: 1_700_000_000_000 });
    const { manager, loader } = createManager({ ttlSeconds: 10 });
    const lease = await manager.acquire("a");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(await stateOf(manager, "a")).toBe("loaded");

    lease.release();
    const status = (await manager.status()).find((each) => each.id === "a");
    expect(status?.expiresAt).toBe(1_700_000_060 + 10);
    expect(status?.lastUsedAt).toBe(1_700_000_060);
    await vi.advanceTimersByTimeAsync(9_999);
    expect(await stateOf(manager, "a")).toBe("loaded");
    await vi.advanceTimersByTimeAsync(1);
    expect(await stateOf(manager, "a")).toBe("not-loaded");
    expect(loader.events).toEqual(["load a", "unload a"]);
  });

  it("restarts the TTL on every release", async () => {
    vi.useFakeTimers();
    const { manager, loader } = createManager({ ttlSeconds: 10 });
    (await manager.acquire("a")).release();
    await vi.advanceTimersByTimeAsync(8_000);
    (await manager.acquire("a")).release();
    await vi.advanceTimersByTimeAsync(8_000);
    expect(await stateOf(manager, "a")).toBe("loaded");
    await vi.advanceTimersByTimeAsync(2_000);
    expect(loader.events).toEqual(["load a", "unload a"]);
  });

  it("uses a request's ttlSeconds for that model instead of the default", async () => {
    vi.useFakeTimers();
    const { manager, loader } = createManager({ ttlSeconds: 3600, maxLoaded: 2 });
    (await manager.acquire("a", { ttlSeconds: 2 })).release();
    (await manager.acquire("b")).release();
    await vi.advanceTimersByTimeAsync(2_000);
    expect(await stateOf(manager, "a")).toBe("not-loaded");
    expect(await stateOf(manager, "b")).toBe("loaded");
    expect(loader.events).toEqual(["load a", "load b", "unload a"]);
    await manager.close();
  });

  it("load() starts the idle TTL at once with the given ttlSeconds", async () => {
    vi.useFakeTimers({ now: 1_700_000_000_000 });
    const { manager, loader } = createManager();
    const status = await manager.load("a", { ttlSeconds: 5 });
    expect(status).toMatchObject({
      id: "a",
      state: "loaded",
      expiresAt: 1_700_000_005,
      loadedContextLength: 1024,
    });
    await vi.advanceTimersByTimeAsync(5_000);
    expect(loader.events).toEqual(["load a", "unload a"]);
  });

  it("uses the injected clock for lastUsedAt and expiresAt", async () => {
    let clock = 5_000_000;
    const { manager } = createManager({ ttlSeconds: 30, now: () => clock });
    const lease = await manager.acquire("a");
    clock = 9_000_000;
    lease.release();
    expect((await manager.status()).find((each) => each.id === "a")).toMatchObject({
      lastUsedAt: 9_000,
      expiresAt: 9_030,
    });
    await manager.close();
  });
});

describe("ModelManager eviction", () => {
  it("with maxLoaded 1, loading another model evicts the idle one", async () => {
    const { manager, loader } = createManager({ maxLoaded: 1 });
    (await manager.acquire("a")).release();
    (await manager.acquire("b")).release();
    expect(loader.events).toEqual(["load a", "unload a", "load b"]);
    expect(await stateOf(manager, "a")).toBe("not-loaded");
    await manager.close();
  });

  it("with maxLoaded 2, evicts the least recently used idle model", async () => {
    const { manager, loader } = createManager({ maxLoaded: 2 });
    (await manager.acquire("a")).release();
    (await manager.acquire("b")).release();
    (await manager.acquire("a")).release(); // a is now more recent than b
    (await manager.acquire("c")).release();
    expect(loader.events).toEqual(["load a", "load b", "unload b", "load c"]);
    expect(await stateOf(manager, "a")).toBe("loaded");
    await manager.close();
  });

  it("never holds more than maxLoaded models under concurrent acquires of different models", async () => {
    const { manager, loader } = createManager({ maxLoaded: 2 });
    let resident = 0;
    let mostResident = 0;
    const load = loader.load.bind(loader);
    const unload = loader.unload.bind(loader);
    loader.load = async (modelEntry) => {
      resident += 1;
      mostResident = Math.max(mostResident, resident);
      return load(modelEntry);
    };
    loader.unload = async (model) => {
      resident -= 1;
      return unload(model);
    };
    const ids = ["a", "b", "c", "a", "c", "b", "b", "a", "c"];
    await Promise.all(
      ids.map(async (id) => {
        const lease = await manager.acquire(id);
        await settle();
        lease.release();
      }),
    );
    expect(mostResident).toBeLessThanOrEqual(2);
    expect(
      (await manager.status()).filter((status) => status.state !== "not-loaded").length,
    ).toBeLessThanOrEqual(2);
    await manager.close();
    expect(resident).toBe(0);
  });

  it("never evicts a leased model: the next load waits for its release", async () => {
    const { manager, loader } = createManager({ maxLoaded: 1 });
    const leaseA = await manager.acquire("a");
    let leaseB: Awaited<ReturnType<typeof manager.acquire>> | undefined;
    const acquireB = manager.acquire("b").then((lease) => (leaseB = lease));
    await settle();
    expect(leaseB).toBeUndefined();
    expect(loader.events).toEqual(["load a"]);

    leaseA.release();
    await acquireB;
    expect(leaseB?.loaded.id).toBe("b");
    expect(loader.events).toEqual(["load a", "unload a", "load b"]);
    leaseB?.release();
    await manager.close();
  });

  it("asks a model held only by yielding leases to let go when another model needs room", async () => {
    const { manager, loader } = createManager({ maxLoaded: 1 });
    const background = await manager.acquire("a");
    const asked: string[] = [];
    background.yieldWhenWanted?.(() => {
      asked.push("background");
      // Lets go a moment later, as a prompt-cache save does once its state is written.
      setTimeout(() => background.release(), 5);
    });
    const leaseB = await manager.acquire("b");
    expect(asked).toEqual(["background"]);
    expect(leaseB.loaded.id).toBe("b");
    expect(loader.events).toEqual(["load a", "unload a", "load b"]);
    leaseB.release();
    await manager.close();
  });

  it("does not ask yielding leases to let go while a request also holds their model", async () => {
    const { manager, loader } = createManager({ maxLoaded: 1 });
    const request = await manager.acquire("a");
    const background = await manager.acquire("a");
    let asked = 0;
    background.yieldWhenWanted?.(() => (asked += 1));
    const controller = new AbortController();
    const acquireB = manager.acquire("b", { signal: controller.signal });
    await settle();
    expect(asked).toBe(0);
    expect(loader.events).toEqual(["load a"]);
    // The request ends: now only the yielding lease holds "a", and it is asked once.
    request.release();
    await settle();
    expect(asked).toBe(1);
    background.release();
    const leaseB = await acquireB;
    expect(loader.events).toEqual(["load a", "unload a", "load b"]);
    leaseB.release();
    await manager.close();
  });

  it("asks once a request's lease turns into a yielding one (a save taking over after the response)", async () => {
    const { manager, loader } = createManager({ maxLoaded: 1 });
    const request = await manager.acquire("a");
    let asked = 0;
    const acquireB = manager.acquire("b");
    await settle();
    expect(asked).toBe(0);
    request.yieldWhenWanted?.(() => {
      asked += 1;
      request.release();
    });
    const leaseB = await acquireB;
    expect(asked).toBe(1);
    expect(loader.events).toEqual(["load a", "unload a", "load b"]);
    leaseB.release();
    await manager.close();
  });

  it("asks yielding leases to let go when their model's unload is requested", async () => {
    const { manager, loader } = createManager();
    const background = await manager.acquire("a");
    background.yieldWhenWanted?.(() => background.release());
    expect(await manager.unload("a")).toBe(true);
    await settle();
    expect(loader.events).toEqual(["load a", "unload a"]);
    expect(await stateOf(manager, "a")).toBe("not-loaded");
  });

  it("stops waiting for room when the request's signal aborts", async () => {
    const { manager, loader } = createManager({ maxLoaded: 1 });
    const leaseA = await manager.acquire("a");
    const controller = new AbortController();
    const acquireB = manager.acquire("b", { signal: controller.signal });
    await settle();
    controller.abort(new Error("client went away"));
    await expect(acquireB).rejects.toThrow("client went away");
    leaseA.release();
    await settle();
    expect(loader.events).toEqual(["load a"]);
    expect(await stateOf(manager, "a")).toBe("loaded");
    await manager.close();
  });

  it("keeps a shared load going for the others when one waiter aborts", async () => {
    const { manager, loader } = createManager();
    const gate = deferred();
    loader.gates.set("a", gate);
    const controller = new AbortController();
    const abandoned = manager.acquire("a", { signal: controller.signal });
    const kept = manager.acquire("a");
    await settle();
    expect(loader.events).toEqual(["load a"]);
    controller.abort(new Error("gone"));
    await expect(abandoned).rejects.toThrow("gone");
    gate.resolve();
    const lease = await kept;
    expect(lease.loaded.id).toBe("a");
    lease.release();
    expect(loader.events).toEqual(["load a"]);
    await manager.close();
  });

  it("idles a model whose every waiter gave up during its load", async () => {
    vi.useFakeTimers();
    const { manager, loader } = createManager({ ttlSeconds: 1 });
    const gate = deferred();
    loader.gates.set("a", gate);
    const controller = new AbortController();
    const abandoned = manager.acquire("a", { signal: controller.signal });
    await vi.advanceTimersByTimeAsync(0);
    expect(loader.events).toEqual(["load a"]);
    controller.abort(new Error("gone"));
    await expect(abandoned).rejects.toThrow("gone");
    gate.resolve();
    await vi.advanceTimersByTimeAsync(0);
    expect(await stateOf(manager, "a")).toBe("loaded");
    await vi.advanceTimersByTimeAsync(1_000);
    expect(loader.events).toEqual(["load a", "unload a"]);
  });
});

describe("ModelManager unload and close", () => {
  it("unloads an idle model at once and reports whether anything was loaded", async () => {
    const { manager, loader } = createManager();
    expect(await manager.unload("a")).toBe(false);
    (await manager.acquire("a")).release();
    expect(await manager.unload("a")).toBe(true);
    expect(await stateOf(manager, "a")).toBe("not-loaded");
    expect(loader.events).toEqual(["load a", "unload a"]);
  });

  it("defers unloading a leased model until its last lease is released", async () => {
    const { manager, loader } = createManager();
    const first = await manager.acquire("a");
    const second = await manager.acquire("a");
    expect(await manager.unload("a")).toBe(true);
    expect(await stateOf(manager, "a")).toBe("loaded");
    first.release();
    first.release(); // releasing twice counts once
    await settle();
    expect(loader.events).toEqual(["load a"]);
    second.release();
    await settle();
    expect(loader.events).toEqual(["load a", "unload a"]);
    expect(await stateOf(manager, "a")).toBe("not-loaded");
  });

  it("frees the slot and logs a warning when the loader's unload fails", async () => {
    const warnings: string[] = [];
    const { manager, loader } = createManager({
      logger: { info: () => undefined, warn: (message) => warnings.push(message) },
    });
    loader.unload = async () => {
      throw new Error("device lost");
    };
    (await manager.acquire("a")).release();
    expect(await manager.unload("a")).toBe(true);
    expect(await stateOf(manager, "a")).toBe("not-loaded");
    expect(warnings).toEqual(['Unloading model "a" failed: device lost']);
  });

  it("close() unloads everything, clears timers and refuses new acquires", async () => {
    vi.useFakeTimers();
    const { manager, loader } = createManager({ maxLoaded: 2 });
    (await manager.acquire("a")).release();
    const leased = await manager.acquire("b");
    expect(vi.getTimerCount()).toBe(1);
    await manager.close();
    expect(vi.getTimerCount()).toBe(0);
    expect(loader.events.slice(2).sort()).toEqual(["unload a", "unload b"]);
    leased.release();
    await expectApiError(manager.acquire("a"), { status: 503 });
    expect((await manager.status()).every((status) => status.state === "not-loaded")).toBe(true);
  });
});
