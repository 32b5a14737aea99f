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
  /** Deletes the oldest responses beyond the limits; returns how many were deleted. */
  prune(limits: { maxAgeSeconds?: number; maxCount?: number }, nowSeconds?: number): number;
  close(): void;
}
