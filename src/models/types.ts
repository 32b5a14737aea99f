/**
 * What the rest of lmhost knows about models: entries found on disk (with GGUF metadata read without
 * loading weights) and the service that JIT-loads, TTL-unloads and LRU-evicts them.
 */
import type { ReasoningBudgets } from "../engine/reasoning-budgets.js";

export interface ModelEntry {
  /** `publisher/model`, with a `@<quant>` or file-stem suffix where a folder holds several files. */
  id: string;
  path: string;
  sizeBytes: number;
  publisher: string;
  /** Metadata read from the GGUF header; undefined when the file could not be read. */
  architecture?: string;
  parameterCount?: number;
  quantization?: string;
  contextLength?: number;
  /** The context length config.json sets for this model (`modelOverrides`): the loader takes it as it is. */
  contextLengthOverride?: number;
  hasChatTemplate?: boolean;
  /** Chat template override for this model (a node-llama-cpp wrapper name such as "chatml", or a Jinja template). */
  chatTemplate?: string;
  /** Thought-token budgets per reasoning effort from config.json (server-wide merged with this model's). */
  reasoningBudgets?: ReasoningBudgets;
  /** Set when the file is not valid GGUF or failed to load; the model is listed but cannot be used. */
  error?: string;
}

export type LoadState = "not-loaded" | "loading" | "loaded";

export interface ModelStatus extends ModelEntry {
  state: LoadState;
  /** Context length the loaded instance runs with. */
  loadedContextLength?: number;
  /** Unix seconds when an idle loaded model will be unloaded. */
  expiresAt?: number;
  lastUsedAt?: number;
}

/** Turns an entry into a loaded instance and back; the llama engine provides one over node-llama-cpp. */
export interface ModelLoader<Loaded> {
  load(entry: ModelEntry, signal?: AbortSignal): Promise<Loaded>;
  unload(loaded: Loaded): Promise<void>;
  /** Context length per sequence the loaded instance runs with. */
  contextLength?(loaded: Loaded): number;
  /** What the load chose that a user should see in the log (e.g. the context length and why). */
  describe?(loaded: Loaded): string;
}

/** Where model entries come from: the models directory + `--model` files, or a fixed list in tests. */
export interface ModelSource {
  list(): Promise<ModelEntry[]>;
}

/**
 * A loaded model held for one request. While any lease is open the model is never evicted or
 * TTL-unloaded; release() restarts its idle TTL.
 */
export interface ModelLease<Loaded> {
  entry: ModelEntry;
  loaded: Loaded;
  release(): void;
  /**
   * Marks the lease as background work that gives way: `onWanted` is called (once) when another model
   * needs its slot or an unload of this model was asked for, and the holder then releases it soon (a
   * prompt-cache save waiting for an idle model writes at once). Optional for test doubles.
   */
  yieldWhenWanted?(onWanted: () => void): void;
}

/** The model operations the HTTP layer needs (listing, status, explicit load/unload). */
export interface ModelService {
  /** Re-scans the models directory (cheap; metadata is cached per path+mtime). */
  list(): Promise<ModelEntry[]>;
  /** Throws ApiError 404 `model_not_found` listing the available ids. */
  get(id: string): Promise<ModelEntry>;
  status(): Promise<ModelStatus[]>;
  load(id: string, options?: { ttlSeconds?: number }): Promise<ModelStatus>;
  unload(id: string): Promise<boolean>;
  close(): Promise<void>;
}

/** What an engine needs from the model manager: a loaded model for the duration of one request. */
export interface ModelAcquirer<Loaded> {
  /** JIT-loads `id` if needed. Throws ApiError 404 `model_not_found` (listing ids) or 400 when the file is broken. */
  acquire(id: string, options?: { ttlSeconds?: number; signal?: AbortSignal }): Promise<ModelLease<Loaded>>;
}
