/**
 * The model manager: JIT loading, leases, idle-TTL unloading and LRU eviction over a ModelSource and a
 * ModelLoader (the llama engine supplies one over node-llama-cpp; tests use a fake).
 *
 * Rules:
 * - acquire() loads a model on first use; concurrent acquires of a model share one load. The loader
 *   gets the manager's own signal (aborted by close()), never a request's: one client going away must
 *   not cancel a load others wait for. A request's signal only stops that request waiting.
 * - A model with open leases is never unloaded by TTL or eviction. Waiting for a load counts as holding
 *   the model, so a model that has just finished loading cannot be evicted before its waiters take it.
 * - When the last lease is released the idle TTL starts: the model's TTL, which a request's
 *   `ttlSeconds` (LM Studio's `ttl`) replaces for as long as that instance stays loaded. Timers are
 *   unref()'d and do not keep the process alive.
 * - At most `maxLoaded` models are loading, loaded or unloading at once. Loading another evicts the
 *   least recently used idle model; if every model is held, the acquire waits for a release.
 * - unload(id) of a model with open leases (or still loading) marks it; it is unloaded when the last
 *   lease is released. Requests arriving meanwhile still use it.
 * - A lease marked yieldWhenWanted (background work, e.g. a prompt-cache save waiting for an idle model)
 *   is asked to let go when its model is to be unloaded, or when another model needs room and every
 *   holder of the least recently used model yields; an acquire then waits for the release, not for a
 *   timer of the holder's.
 * - A broken entry or a failed load is ApiError 400 `model_load_failed`; nothing is remembered, so a
 *   later acquire retries. An unknown id is ApiError 404 `model_not_found` listing the available ids.
 */
import { GET_A_MODEL_HINT, isDemoModel } from "./demo.js";
import { ApiError } from "../shared/errors.js";
import { resolveModelId } from "./catalog.js";
import { createLogger, type Logger } from "../shared/logger.js";
import type {
  ModelAcquirer,
  ModelEntry,
  ModelLease,
  ModelLoader,
  ModelService,
  ModelSource,
  ModelStatus,
} from "./types.js";

export interface ModelManagerOptions<Loaded> {
  source: ModelSource;
  loader: ModelLoader<Loaded>;
  /** Idle time after which a loaded model is unloaded; `Infinity` keeps models loaded. */
  ttlSeconds: number;
  maxLoaded: number;
  /** Clock in milliseconds for `lastUsedAt` / `expiresAt` (tests); timers always run in real time. */
  now?: () => number;
  /** Loads and unloads at info; failures nobody awaits (an unload) at warn. Default: warnings to stderr. */
  logger?: Pick<Logger, "info" | "warn">;
}

type SlotState = "loading" | "loaded" | "unloading";

/** One model that is loading, loaded or unloading. */
interface ModelSlot<Loaded> {
  entry: ModelEntry;
  state: SlotState;
  /** Set once loaded; boxed because `Loaded` itself may be undefined. */
  instance?: { value: Loaded };
  /** Open leases plus acquires waiting for the load. */
  holders: number;
  /** Leases that give way (yieldWhenWanted), each with its callback; cleared once asked. */
  yielding: Map<object, () => void>;
  ttlSeconds: number;
  /** Settles (never rejects) when the load finished; `failure` is set if it failed. */
  loadSettled: Promise<void>;
  failure?: ApiError;
  /** Settles (never rejects) when an unload finished. */
  unloadSettled?: Promise<void>;
  unloadRequested: boolean;
  /** Order of last use, for LRU (a counter, so equal clock readings still order). */
  useOrder: number;
  lastUsedAt: number;
  expiresAt?: number;
  idleTimer: NodeJS.Timeout | undefined;
}

/** setTimeout fires at once for delays above 2^31-1 ms; longer TTLs are waited out in steps. */
const MAX_TIMER_DELAY_MS = 2_147_483_647;
/** How many ids a `model_not_found` message lists. */
const LISTED_IDS_LIMIT = 20;

export class ModelManager<Loaded> implements ModelService, ModelAcquirer<Loaded> {
  private readonly source: ModelSource;
  private readonly loader: ModelLoader<Loaded>;
  private readonly defaultTtlSeconds: number;
  private readonly maxLoaded: number;
  private readonly now: () => number;
  private readonly logger: Pick<Logger, "info" | "warn">;
  private readonly slots = new Map<string, ModelSlot<Loaded>>();
  private readonly capacityWaiters = new Set<() => void>();
  private readonly closeController = new AbortController();
  private useCounter = 0;
  private closed = false;

  constructor(options: ModelManagerOptions<Loaded>) {
    if (!(options.maxLoaded >= 1)) throw new Error(`maxLoaded must be at least 1, got ${options.maxLoaded}`);
    this.source = options.source;
    this.loader = options.loader;
    this.defaultTtlSeconds = options.ttlSeconds;
    this.maxLoaded = options.maxLoaded;
    this.now = options.now ?? (() => Date.now());
    this.logger = options.logger ?? createLogger("warn");
  }

  // -------------------------------------------------------------------------------------------------
  // ModelService

  list(): Promise<ModelEntry[]> {
    return this.source.list();
  }

  /**
   * Exact id first, then a case-insensitive match if exactly one model has it, then `publisher/model` for a
   * folder of several quantizations: its default one (Q4_K_M first; catalog.ts resolveModelId).
   */
  async get(id: string): Promise<ModelEntry> {
    const entries = await this.source.list();
    const resolved = resolveModelId(id, entries);
    if ("entry" in resolved) return resolved.entry;
    if ("ambiguous" in resolved) throw modelAmbiguous(id, resolved.ambiguous);
    throw modelNotFound(id, entries);
  }

  async status(): Promise<ModelStatus[]> {
    const entries = await this.source.list();
    const statuses = entries.map((entry) => this.statusOf(entry, this.slots.get(entry.id)));
    const listed = new Set(entries.map((entry) => entry.id));
    // A loaded model whose file disappeared is still in memory: keep showing it.
    for (const slot of this.slots.values()) {
      if (!listed.has(slot.entry.id)) statuses.push(this.statusOf(slot.entry, slot));
    }
    return statuses;
  }

  /** Loads (or keeps) `id` without holding it: its idle TTL starts at once. */
  async load(id: string, options: { ttlSeconds?: number } = {}): Promise<ModelStatus> {
    const lease = await this.acquire(id, options);
    lease.release();
    return this.statusOf(lease.entry, this.slots.get(lease.entry.id));
  }

  /**
   * Unloads `id`. Returns false when it was not loaded. With open leases, or while it is loading, the
   * model is only marked and is unloaded when the last lease is released (still returning true).
   */
  async unload(id: string): Promise<boolean> {
    const slot = this.slots.get(id) ?? this.slots.get((await this.get(id)).id);
    if (slot === undefined) return false;
    if (slot.state === "unloading") {
      await slot.unloadSettled;
      return true;
    }
    if (slot.holders > 0 || slot.state === "loading") {
      slot.unloadRequested = true;
      askToYield(slot);
      return true;
    }
    await this.unloadSlot(slot, "unload requested");
    return true;
  }

  /** Unloads every model (leased or not), cancels loads in flight and stops all timers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closeController.abort(new Error("Model manager closed"));
    this.notifyCapacityWaiters();
    await Promise.all([...this.slots.values()].map((slot) => this.closeSlot(slot)));
  }

  // -------------------------------------------------------------------------------------------------
  // ModelAcquirer

  async acquire(
    id: string,
    options: { ttlSeconds?: number; signal?: AbortSignal } = {},
  ): Promise<ModelLease<Loaded>> {
    const slot = await this.holdSlot(id, options.signal);
    try {
      await this.waitUntilLoaded(slot, options.signal);
    } catch (error) {
      this.releaseHold(slot);
      throw error;
    }
    if (options.ttlSeconds !== undefined) slot.ttlSeconds = options.ttlSeconds;
    return this.createLease(slot);
  }

  // -------------------------------------------------------------------------------------------------
  // Acquiring

  /** Returns the slot for `id` with one hold taken, starting a load (and making room) if needed. */
  private async holdSlot(id: string, signal: AbortSignal | undefined): Promise<ModelSlot<Loaded>> {
    let entry: ModelEntry | undefined;
    for (;;) {
      this.assertOpen();
      signal?.throwIfAborted();
      const existing = this.slots.get(entry?.id ?? id);
      if (existing?.state === "unloading") {
        await waitWithSignal(existing.unloadSettled, signal);
      } else if (existing !== undefined) {
        this.takeHold(existing);
        return existing;
      } else if (entry === undefined) {
        entry = await this.get(id);
        assertLoadable(entry);
      } else if (this.slots.size < this.maxLoaded) {
        const slot = this.startLoad(entry);
        this.takeHold(slot);
        return slot;
      } else {
        await this.makeRoom(signal);
      }
    }
  }

  /**
   * Evicts the least recently used idle model, or waits until a model is released or unloaded, first
   * asking the least recently used model held only by yielding leases to let go.
   */
  private async makeRoom(signal: AbortSignal | undefined): Promise<void> {
    const victim = this.leastRecentlyUsedSlot((slot) => slot.holders === 0);
    if (victim !== undefined) {
      await this.unloadSlot(victim, "evicted to make room");
      return;
    }
    // Waiting first: a holder may release at once, and its release must wake this wait.
    const changed = this.waitForCapacityChange(signal);
    const yielding = this.leastRecentlyUsedSlot((slot) => slot.yielding.size === slot.holders);
    if (yielding !== undefined) askToYield(yielding);
    await changed;
  }

  private leastRecentlyUsedSlot(
    qualifies: (slot: ModelSlot<Loaded>) => boolean,
  ): ModelSlot<Loaded> | undefined {
    let victim: ModelSlot<Loaded> | undefined;
    for (const slot of this.slots.values()) {
      if (slot.state !== "loaded" || !qualifies(slot)) continue;
      if (victim === undefined || slot.useOrder < victim.useOrder) victim = slot;
    }
    return victim;
  }

  private async waitUntilLoaded(slot: ModelSlot<Loaded>, signal: AbortSignal | undefined): Promise<void> {
    if (slot.state === "loading") await waitWithSignal(slot.loadSettled, signal);
    if (slot.failure !== undefined) throw slot.failure;
    this.assertOpen();
  }

  private takeHold(slot: ModelSlot<Loaded>): void {
    slot.holders += 1;
    this.markUsed(slot);
    this.clearIdleTimer(slot);
  }

  private createLease(slot: ModelSlot<Loaded>): ModelLease<Loaded> {
    const instance = slot.instance;
    if (instance === undefined) throw new Error(`Model "${slot.entry.id}" has no loaded instance`);
    let released = false;
    const lease: ModelLease<Loaded> = {
      entry: slot.entry,
      loaded: instance.value,
      release: () => {
        if (released) return;
        released = true;
        slot.yielding.delete(lease);
        this.releaseHold(slot);
      },
      yieldWhenWanted: (onWanted) => {
        if (released) return;
        slot.yielding.set(lease, onWanted);
        if (slot.unloadRequested) askToYield(slot);
        // A request's lease handed over to background work: an acquire waiting for room may ask now.
        else if (slot.holders === slot.yielding.size) this.notifyCapacityWaiters();
      },
    };
    return lease;
  }

  private releaseHold(slot: ModelSlot<Loaded>): void {
    if (this.slots.get(slot.entry.id) !== slot) return; // failed, unloaded or closed meanwhile
    slot.holders = Math.max(0, slot.holders - 1);
    this.markUsed(slot);
    if (slot.holders === 0 && slot.state === "loaded") this.becomeIdle(slot);
    // Only yielding leases left: an acquire waiting for room may ask them to let go now.
    else if (slot.holders === slot.yielding.size) this.notifyCapacityWaiters();
  }

  /** No holders left: honour a pending unload, else start the idle TTL; waiters may evict it now. */
  private becomeIdle(slot: ModelSlot<Loaded>): void {
    if (slot.unloadRequested) {
      void this.unloadSlot(slot, "unload requested");
      return;
    }
    this.scheduleIdleUnload(slot);
    this.notifyCapacityWaiters();
  }

  private markUsed(slot: ModelSlot<Loaded>): void {
    this.useCounter += 1;
    slot.useOrder = this.useCounter;
    slot.lastUsedAt = this.now();
  }

  // -------------------------------------------------------------------------------------------------
  // Loading and unloading

  private startLoad(entry: ModelEntry): ModelSlot<Loaded> {
    const slot: ModelSlot<Loaded> = {
      entry,
      state: "loading",
      holders: 0,
      yielding: new Map(),
      ttlSeconds: this.defaultTtlSeconds,
      loadSettled: Promise.resolve(),
      unloadRequested: false,
      useOrder: 0,
      lastUsedAt: this.now(),
      idleTimer: undefined,
    };
    this.markUsed(slot);
    const signal = this.closeController.signal;
    this.logger.info(`loading ${entry.id}…`);
    const started = performance.now();
    slot.loadSettled = callAsync(() => this.loader.load(entry, signal)).then(
      (loaded) => this.onLoaded(slot, loaded, Math.round(performance.now() - started)),
      (error: unknown) => this.onLoadFailed(slot, error),
    );
    this.slots.set(entry.id, slot);
    return slot;
  }

  private onLoaded(slot: ModelSlot<Loaded>, loaded: Loaded, milliseconds: number): void {
    slot.instance = { value: loaded };
    slot.state = "loaded";
    const detail = this.loader.describe?.(loaded);
    this.logger.info(
      `loaded ${slot.entry.id} in ${milliseconds} ms${detail === undefined ? "" : `, ${detail}`}`,
    );
    if (this.closed) return; // close() unloads it
    // Everyone who waited gave up: the model is idle right away.
    if (slot.holders === 0) this.becomeIdle(slot);
  }

  private onLoadFailed(slot: ModelSlot<Loaded>, error: unknown): void {
    slot.failure = modelLoadFailed(slot.entry.id, errorMessage(error));
    this.logger.warn(slot.failure.message);
    if (this.slots.get(slot.entry.id) === slot) this.slots.delete(slot.entry.id);
    this.notifyCapacityWaiters();
  }

  /** Unloads a loaded slot; resolves (never rejects) once it is gone. */
  private unloadSlot(slot: ModelSlot<Loaded>, reason: string): Promise<void> {
    if (slot.unloadSettled !== undefined) return slot.unloadSettled;
    this.logger.info(`unloading ${slot.entry.id} (${reason})`);
    this.clearIdleTimer(slot);
    slot.state = "unloading";
    const instance = slot.instance;
    const unloaded =
      instance === undefined ? Promise.resolve() : callAsync(() => this.loader.unload(instance.value));
    slot.unloadSettled = unloaded
      .catch((error: unknown) =>
        this.logger.warn(`Unloading model "${slot.entry.id}" failed: ${errorMessage(error)}`),
      )
      .finally(() => {
        this.logger.info(`unloaded ${slot.entry.id}`);
        if (this.slots.get(slot.entry.id) === slot) this.slots.delete(slot.entry.id);
        this.notifyCapacityWaiters();
      });
    return slot.unloadSettled;
  }

  private async closeSlot(slot: ModelSlot<Loaded>): Promise<void> {
    if (slot.state === "loading") await slot.loadSettled;
    if (slot.failure === undefined) await this.unloadSlot(slot, "shutting down");
  }

  // -------------------------------------------------------------------------------------------------
  // Idle TTL

  private scheduleIdleUnload(slot: ModelSlot<Loaded>): void {
    this.clearIdleTimer(slot);
    const delayMs = Math.max(0, slot.ttlSeconds * 1000);
    if (!Number.isFinite(delayMs)) return;
    slot.expiresAt = this.now() + delayMs;
    this.armIdleTimer(slot, delayMs);
  }

  private armIdleTimer(slot: ModelSlot<Loaded>, remainingMs: number): void {
    const stepMs = Math.min(remainingMs, MAX_TIMER_DELAY_MS);
    slot.idleTimer = setTimeout(() => this.onIdleTimer(slot, remainingMs - stepMs), stepMs);
    slot.idleTimer.unref();
  }

  private onIdleTimer(slot: ModelSlot<Loaded>, remainingMs: number): void {
    slot.idleTimer = undefined;
    if (remainingMs > 0) {
      this.armIdleTimer(slot, remainingMs);
      return;
    }
    if (slot.state === "loaded" && slot.holders === 0)
      void this.unloadSlot(slot, `idle for ${slot.ttlSeconds} s`);
  }

  private clearIdleTimer(slot: ModelSlot<Loaded>): void {
    if (slot.idleTimer !== undefined) clearTimeout(slot.idleTimer);
    slot.idleTimer = undefined;
    delete slot.expiresAt;
  }

  // -------------------------------------------------------------------------------------------------
  // Capacity waiting, status, guards

  private waitForCapacityChange(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.capacityWaiters.delete(wake);
        reject(abortReason(signal));
      };
      const wake = (): void => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      if (signal?.aborted === true) {
        reject(abortReason(signal));
        return;
      }
      this.capacityWaiters.add(wake);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  private notifyCapacityWaiters(): void {
    const waiters = [...this.capacityWaiters];
    this.capacityWaiters.clear();
    for (const wake of waiters) wake();
  }

  private statusOf(entry: ModelEntry, slot: ModelSlot<Loaded> | undefined): ModelStatus {
    if (slot === undefined) return { ...entry, state: "not-loaded" };
    const status: ModelStatus = {
      ...entry,
      state: slot.state === "loading" ? "loading" : "loaded",
      lastUsedAt: toUnixSeconds(slot.lastUsedAt),
    };
    if (slot.expiresAt !== undefined) status.expiresAt = toUnixSeconds(slot.expiresAt);
    const instance = slot.instance;
    if (instance !== undefined && this.loader.contextLength !== undefined) {
      status.loadedContextLength = this.loader.contextLength(instance.value);
    }
    return status;
  }

  private assertOpen(): void {
    if (this.closed) {
      throw new ApiError({
        status: 503,
        message: "The model manager is shutting down",
        code: "server_shutting_down",
      });
    }
  }
}

function assertLoadable(entry: ModelEntry): void {
  if (entry.error !== undefined) throw modelLoadFailed(entry.id, entry.error);
}

function modelNotFound(id: string, entries: readonly ModelEntry[]): ApiError {
  const ids = entries.map((entry) => entry.id);
  const shown = ids.slice(0, LISTED_IDS_LIMIT).join(", ");
  const more = ids.length > LISTED_IDS_LIMIT ? ` and ${ids.length - LISTED_IDS_LIMIT} more` : "";
  const available = ids.length === 0 ? "No models are available." : `Available models: ${shown}${more}.`;
  // With no real model (none at all, or only the built-in demo) the way out is to get one.
  const hint = entries.every(isDemoModel) ? ` ${GET_A_MODEL_HINT}` : "";
  return ApiError.notFound(`Model "${id}" not found. ${available}${hint}`, "model", "model_not_found");
}

function modelAmbiguous(id: string, candidates: readonly ModelEntry[]): ApiError {
  const ids = candidates.map((entry) => entry.id);
  return ApiError.notFound(
    `Model "${id}" names several files and none has a known quantization to choose by default; name one: ${ids.join(", ")}.`,
    "model",
    "model_not_found",
  );
}

function modelLoadFailed(id: string, reason: string): ApiError {
  return ApiError.invalid(`Model "${id}" could not be loaded: ${reason}`, "model", "model_load_failed");
}

/** Runs `operation` so that a synchronous throw becomes a rejection. */
function callAsync<Result>(operation: () => Promise<Result>): Promise<Result> {
  return new Promise<Result>((resolve) => resolve(operation()));
}

/** Waits for `promise` (which must not reject) unless `signal` aborts first. */
function waitWithSignal(promise: Promise<void> | undefined, signal: AbortSignal | undefined): Promise<void> {
  if (promise === undefined || signal === undefined) return promise ?? Promise.resolve();
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    void promise.then(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
  });
}

function abortReason(signal: AbortSignal | undefined): unknown {
  return signal?.reason ?? new DOMException("The operation was aborted", "AbortError");
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function toUnixSeconds(milliseconds: number): number {
  return Math.floor(milliseconds / 1000);
}

/** Asks the yielding leases of `slot` to let go (each once; on a later turn, never inside the caller). */
function askToYield(slot: { yielding: Map<object, () => void> }): void {
  const callbacks = [...slot.yielding.values()];
  slot.yielding.clear();
  for (const onWanted of callbacks) queueMicrotask(onWanted);
}
