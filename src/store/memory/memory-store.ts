/**
 * The in-memory twin of the SQLite response store, for fast hermetic tests. It follows the same rules
 * (shared through store-rules.ts) and keeps private copies, so callers can neither change stored data
 * through a record they passed in nor through one they got back.
 */
import {
  UNFINISHED_STATUSES,
  type ItemPage,
  type ListItemsOptions,
  type PruneLimits,
  type PruneOptions,
  type ResponseStore,
  type StoredItem,
  type StoredResponse,
} from "../types.js";
import {
  MAX_CHAIN_DEPTH,
  StoreError,
  assertValidPageLimit,
  chainTooDeepError,
  failedResponse,
  outputItems,
  pruneInRounds,
  toItemPage,
  unknownAfterError,
} from "../store-rules.js";

export class MemoryResponseStore implements ResponseStore {
  /** Insertion order breaks created_at ties when pruning; replacing a response keeps its place. */
  readonly #responses = new Map<string, StoredResponse>();
  #closed = false;

  put(record: StoredResponse): void {
    this.#assertOpen();
    this.#responses.set(record.id, structuredClone(record));
  }

  get(id: string): StoredResponse | undefined {
    this.#assertOpen();
    const record = this.#responses.get(id);
    return record === undefined ? undefined : structuredClone(record);
  }

  delete(id: string): boolean {
    this.#assertOpen();
    return this.#responses.delete(id);
  }

  listInputItems(id: string, options: ListItemsOptions): ItemPage | undefined {
    this.#assertOpen();
    assertValidPageLimit(options.limit);
    const record = this.#responses.get(id);
    if (record === undefined) return undefined;
    const ordered = options.order === "asc" ? record.inputItems : [...record.inputItems].reverse();
    let start = 0;
    if (options.after !== undefined) {
      // Match the first item with that id in input order, as the SQLite store does.
      const afterItem = record.inputItems.find((item) => item.id === options.after);
      if (afterItem === undefined) throw unknownAfterError(options.after, id);
      start = ordered.indexOf(afterItem) + 1;
    }
    const itemsPlusOne = ordered.slice(start, start + options.limit + 1);
    return toItemPage(structuredClone(itemsPlusOne), options.limit);
  }

  chain(id: string): StoredResponse[] | undefined {
    this.#assertOpen();
    const newestFirst: StoredResponse[] = [];
    let nextId: string | null = id;
    while (nextId !== null) {
      if (newestFirst.length >= MAX_CHAIN_DEPTH) throw chainTooDeepError(id);
      const record = this.#responses.get(nextId);
      if (record === undefined) return undefined; // `id` or an ancestor was deleted or pruned.
      newestFirst.push(record);
      nextId = record.previousResponseId;
    }
    return structuredClone(newestFirst.reverse());
  }

  findItem(id: string): StoredItem | undefined {
    this.#assertOpen();
    // Newest first: by created_at, ties broken by insertion order (the sort is stable).
    const newestFirst = [...this.#responses.values()]
      .reverse()
      .sort((left, right) => right.createdAt - left.createdAt);
    for (const itemsOf of [
      (record: StoredResponse) => outputItems(record.response),
      (record: StoredResponse) => record.inputItems,
    ]) {
      for (const record of newestFirst) {
        const item = itemsOf(record).find((candidate) => candidate.id === id);
        if (item !== undefined) return structuredClone(item);
      }
    }
    return undefined;
  }

  prune(limits: PruneLimits, options: PruneOptions = {}): number {
    this.#assertOpen();
    const keep = new Set(options.keepIds ?? []);
    /** Prune candidates in insertion order (store-rules.ts: PruneRounds). */
    const candidates = (): StoredResponse[] => {
      const referenced = new Set<string>();
      for (const record of this.#responses.values()) {
        if (record.previousResponseId !== null) referenced.add(record.previousResponseId);
      }
      return [...this.#responses.values()].filter(
        (record) =>
          !keep.has(record.id) && !UNFINISHED_STATUSES.includes(record.status) && !referenced.has(record.id),
      );
    };
    const deleteAll = (records: readonly StoredResponse[]): number =>
      records.filter((record) => this.#responses.delete(record.id)).length;
    return pruneInRounds(limits, options, {
      deleteExpiredCandidates: (cutoff) =>
        deleteAll(candidates().filter((record) => record.createdAt < cutoff)),
      count: () =>
        [...this.#responses.values()].filter((record) => !UNFINISHED_STATUSES.includes(record.status)).length,
      // Array.prototype.sort is stable, so equal created_at values stay in insertion order.
      deleteOldestCandidates: (limit) =>
        deleteAll(
          candidates()
            .sort((left, right) => left.createdAt - right.createdAt)
            .slice(0, limit),
        ),
    });
  }

  failUnfinished(error: { code: string; message: string }): number {
    this.#assertOpen();
    let marked = 0;
    for (const [id, record] of this.#responses) {
      if (!UNFINISHED_STATUSES.includes(record.status)) continue;
      // Replacing the value of an existing key keeps its place in the insertion order.
      this.#responses.set(id, {
        ...record,
        status: "failed",
        response: failedResponse(record.response, error),
      });
      marked++;
    }
    return marked;
  }

  close(): void {
    this.#closed = true;
    this.#responses.clear();
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreError("(in memory)", "the store is closed.");
  }
}
