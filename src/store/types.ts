/**
 * The response store: every stored Responses API response with its input items, so that
 * `previous_response_id` chains can be rebuilt and `GET /v1/responses/{id}` answered after a restart.
 * Items are kept generically as JSON (messages, reasoning, function calls, MCP items, ...).
 */

/** A wire item (input or output) as JSON, always with an `id` and a `type`. */
export type StoredItem = { id: string; type: string } & Record<string, unknown>;

export interface StoredResponse {
  id: string;
  /** Unix seconds. */
  createdAt: number;
  previousResponseId: string | null;
  model: string;
  status: string;
  /** The full Response object as the API returned it. */
  response: Record<string, unknown>;
  /** The items this request added as input (not the inherited ones), in order. */
  inputItems: StoredItem[];
}

export interface ListItemsOptions {
  limit: number;
  order: "asc" | "desc";
  after?: string;
}

export interface ItemPage {
  data: StoredItem[];
  firstId: string | null;
  lastId: string | null;
  hasMore: boolean;
}

export interface PruneLimits {
  maxAgeSeconds?: number;
  maxCount?: number;
}

export interface PruneOptions {
  /** "Now" in Unix seconds, for maxAgeSeconds (default: the clock). */
  nowSeconds?: number;
  /**
   * Responses never deleted by this prune (the response just stored; those that running, not yet stored
   * responses chain from). Their ancestors are kept too, as they chain to them.
   */
  keepIds?: readonly string[];
}

/** Statuses of a response whose run has not ended (or was cut off by a crash). */
export const UNFINISHED_STATUSES: readonly string[] = ["queued", "in_progress"];

export interface ResponseStore {
  /** Inserts or replaces a response and its input items atomically. */
  put(record: StoredResponse): void;
  get(id: string): StoredResponse | undefined;
  /** Deletes the response and its items; returns false when it did not exist. */
  delete(id: string): boolean;
  /** Pages through a response's input items (OpenAI's `input_items` semantics). Undefined when unknown. */
  listInputItems(id: string, options: ListItemsOptions): ItemPage | undefined;
  /**
   * The chain ending at `id`, oldest first, following previous_response_id links. Reads only the chain
   * (an indexed walk), never the whole store. Undefined when `id` or any link is missing.
   */
  chain(id: string): StoredResponse[] | undefined;
  /**
   * An item of any stored response by its id, as an `item_reference` names it: an output item first,
   * else an input item; where several responses hold it, the newest one's copy (by created_at, then
   * insertion order). SQLite reads it through an index, never the whole store. Undefined when no stored
   * response holds it.
   */
  findItem(id: string): StoredItem | undefined;
  /**
   * Deletes the oldest responses (by created_at, ties in insertion order) beyond the limits: those older
   * than `maxAgeSeconds`, then the oldest until at most `maxCount` finished ones remain (running ones do not count). Never deletes a response that a
   * remaining response names as its previous_response_id (so a conversation is kept whole while its newest
   * turn is kept, and goes from its newest end backwards), an unfinished response (status `queued` or
   * `in_progress`: it is still running) nor one named in `keepIds` (the response just stored, and those
   * running responses chain from). Rounds repeat until within the limits or nothing more can go, so the
   * store holds more than `maxCount` when the rest is protected (long live conversations). Returns how many
   * were deleted.
   */
  prune(limits: PruneLimits, options?: PruneOptions): number;
  /**
   * Marks every unfinished response (status `queued` or `in_progress`) as `failed` with `error`, as at
   * startup, when no run of an earlier process can still finish them: status `failed`, `error` set,
   * `completed_at` null, output items still `in_progress` become `incomplete`; everything else (input
   * items, created_at, the chain) is kept. Returns how many responses were marked.
   */
  failUnfinished(error: { code: string; message: string }): number;
  close(): void;
}
