/**
 * The embedded default response store: one SQLite file (WAL mode) holding each response's JSON, its
 * input items and the ids of its output items (so `findItem` is an index lookup). Chains are rebuilt
 * with one recursive query that follows previous_response_id through the primary key, so the cost grows
 * with the chain, not with the store. All statements are prepared once.
 */
import { mkdirSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import type {
  ItemPage,
  ListItemsOptions,
  PruneLimits,
  PruneOptions,
  ResponseStore,
  StoredItem,
  StoredResponse,
} from "../types.js";
import {
  MAX_CHAIN_DEPTH,
  assertValidPageLimit,
  chainTooDeepError,
  failedResponse,
  outputItems,
  pruneInRounds,
  toItemPage,
  unknownAfterError,
} from "../store-rules.js";
import { migrate } from "./migrations.js";

/** How long a statement waits for another connection's lock before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MILLISECONDS = 5_000;

interface ResponseRow {
  id: string;
  created_at: number;
  previous_response_id: string | null;
  model: string;
  status: string;
  response_json: string;
}

type ResponseParameters = [
  id: string,
  createdAt: number,
  previousResponseId: string | null,
  model: string,
  status: string,
  responseJson: string,
];

/**
 * The chain ending at the given id, oldest first. Each step is a primary-key lookup of the previous
 * response; the walk stops at a response without a predecessor, at a missing one, or at the depth guard.
 */
const CHAIN_SQL = `
  WITH RECURSIVE chain (id, created_at, previous_response_id, model, status, response_json, depth) AS (
    SELECT id, created_at, previous_response_id, model, status, response_json, 1
    FROM responses WHERE id = ?
    UNION ALL
    SELECT previous.id, previous.created_at, previous.previous_response_id, previous.model,
           previous.status, previous.response_json, chain.depth + 1
    FROM chain JOIN responses AS previous ON previous.id = chain.previous_response_id
    WHERE chain.depth < ?
  )
  SELECT id, created_at, previous_response_id, model, status, response_json FROM chain ORDER BY depth DESC`;

export class SqliteResponseStore implements ResponseStore {
  readonly #database: Database.Database;
  readonly #statements;
  readonly #putTransaction: (record: StoredResponse) => void;
  readonly #readTransaction: <Result>(read: () => Result) => Result;

  /** Opens (creating it and its parent directories if needed) and migrates the store file. */
  static open(file: string): SqliteResponseStore {
    const inMemory = file === ":memory:" || file === "";
    if (!inMemory) mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    const database = new Database(file);
    try {
      database.pragma(`busy_timeout = ${BUSY_TIMEOUT_MILLISECONDS}`);
      database.pragma("journal_mode = WAL");
      // With WAL, NORMAL is crash-safe; only the last commits before a power loss may be lost.
      database.pragma("synchronous = NORMAL");
      database.pragma("foreign_keys = ON");
      migrate(database, inMemory ? "(in memory)" : file);
      return new SqliteResponseStore(database);
    } catch (error) {
      database.close();
      throw error;
    }
  }

  private constructor(database: Database.Database) {
    this.#database = database;
    this.#statements = prepareStatements(database);
    const statements = this.#statements;

    this.#putTransaction = database.transaction((record: StoredResponse) => {
      statements.upsertResponse.run(
        record.id,
        record.createdAt,
        record.previousResponseId,
        record.model,
        record.status,
        JSON.stringify(record.response),
      );
      statements.deleteInputItems.run(record.id);
      record.inputItems.forEach((item, position) => {
        statements.insertInputItem.run(record.id, position, item.id, JSON.stringify(item));
      });
      statements.deleteOutputItems.run(record.id);
      const output = Array.isArray(record.response.output) ? (record.response.output as unknown[]) : [];
      output.forEach((item, position) => {
        const itemId = (item as { id?: unknown } | null)?.id;
        if (typeof itemId === "string") statements.insertOutputItem.run(record.id, position, itemId);
      });
    });

    // A deferred transaction gives multi-statement reads one consistent snapshot.
    const readInTransaction = database.transaction((read: () => unknown) => read());
    this.#readTransaction = <Result>(read: () => Result): Result => readInTransaction(read) as Result;
  }

  put(record: StoredResponse): void {
    this.#putTransaction(record);
  }

  get(id: string): StoredResponse | undefined {
    return this.#readTransaction(() => {
      const row = this.#statements.selectResponse.get(id);
      return row === undefined ? undefined : this.#toStoredResponse(row);
    });
  }

  delete(id: string): boolean {
    return this.#statements.deleteResponse.run(id).changes > 0;
  }

  listInputItems(id: string, options: ListItemsOptions): ItemPage | undefined {
    assertValidPageLimit(options.limit);
    return this.#readTransaction(() => {
      if (this.#statements.responseExists.get(id) === undefined) return undefined;
      const ascending = options.order === "asc";
      let cursorPosition = ascending ? -1 : Number.MAX_SAFE_INTEGER;
      if (options.after !== undefined) {
        const afterPosition = this.#statements.selectItemPosition.get(id, options.after);
        if (afterPosition === undefined) throw unknownAfterError(options.after, id);
        cursorPosition = afterPosition;
      }
      const select = ascending
        ? this.#statements.selectItemsAscending
        : this.#statements.selectItemsDescending;
      const itemsPlusOne = select.all(id, cursorPosition, options.limit + 1).map(parseItem);
      return toItemPage(itemsPlusOne, options.limit);
    });
  }

  chain(id: string): StoredResponse[] | undefined {
    return this.#readTransaction(() => {
      const oldestFirst = this.#statements.selectChain.all(id, MAX_CHAIN_DEPTH);
      const oldest = oldestFirst[0];
      if (oldest === undefined) return undefined;
      if (oldest.previous_response_id !== null) {
        if (oldestFirst.length >= MAX_CHAIN_DEPTH) throw chainTooDeepError(id);
        return undefined; // An ancestor was deleted or pruned.
      }
      return oldestFirst.map((row) => this.#toStoredResponse(row));
    });
  }

  findItem(id: string): StoredItem | undefined {
    return this.#readTransaction(() => {
      const responseJson = this.#statements.selectResponseWithOutputItem.get(id);
      if (responseJson !== undefined) {
        const response = JSON.parse(responseJson) as Record<string, unknown>;
        const item = outputItems(response).find((candidate) => candidate.id === id);
        if (item !== undefined) return item;
      }
      const itemJson = this.#statements.selectInputItemById.get(id);
      return itemJson === undefined ? undefined : parseItem(itemJson);
    });
  }

  prune(limits: PruneLimits, options: PruneOptions = {}): number {
    const keepIds = JSON.stringify(options.keepIds ?? []);
    const statements = this.#statements;
    return this.#database.transaction(() =>
      pruneInRounds(limits, options, {
        deleteExpiredCandidates: (cutoff) => statements.deleteExpiredCandidates.run(cutoff, keepIds).changes,
        count: () => statements.countFinished.get() ?? 0,
        deleteOldestCandidates: (limit) => statements.deleteOldestCandidates.run(keepIds, limit).changes,
      }),
    )();
  }

  failUnfinished(error: { code: string; message: string }): number {
    return this.#database.transaction(() => {
      const unfinished = this.#statements.selectUnfinished.all();
      for (const row of unfinished) {
        const response = failedResponse(JSON.parse(row.response_json) as Record<string, unknown>, error);
        // Output item ids do not change, so output_items stays as it is.
        this.#statements.updateResponseStatus.run("failed", JSON.stringify(response), row.id);
      }
      return unfinished.length;
    })();
  }

  close(): void {
    if (this.#database.open) this.#database.close();
  }

  /**
   * Diagnostics: the `EXPLAIN QUERY PLAN` detail lines of the chain query, so tests can check that the
   * walk searches the primary key instead of scanning the table.
   */
  explainChainQuery(): string[] {
    const plan = this.#database
      .prepare<[string, number], { detail: string }>(`EXPLAIN QUERY PLAN ${CHAIN_SQL}`)
      .all("resp_explain", MAX_CHAIN_DEPTH);
    return plan.map((step) => step.detail);
  }

  /**
   * Diagnostics: the `EXPLAIN QUERY PLAN` detail lines of the two prune statements, so tests can check
   * that "does a remaining response chain from this one" searches the previous_response_id index.
   */
  explainPruneQueries(): { expired: string[]; oldest: string[] } {
    const plan = (sql: string, parameters: unknown[]) =>
      this.#database
        .prepare<unknown[], { detail: string }>(`EXPLAIN QUERY PLAN ${sql}`)
        .all(...parameters)
        .map((step) => step.detail);
    return {
      expired: plan(DELETE_EXPIRED_CANDIDATES_SQL, [0, "[]"]),
      oldest: plan(DELETE_OLDEST_CANDIDATES_SQL, ["[]", 1]),
    };
  }

  #toStoredResponse(row: ResponseRow): StoredResponse {
    return {
      id: row.id,
      createdAt: row.created_at,
      previousResponseId: row.previous_response_id,
      model: row.model,
      status: row.status,
      response: JSON.parse(row.response_json) as Record<string, unknown>,
      inputItems: this.#statements.selectInputItems.all(row.id).map(parseItem),
    };
  }
}

function parseItem(itemJson: string): StoredItem {
  return JSON.parse(itemJson) as StoredItem;
}

/** Matches the partial index `responses_unfinished` (migration 3) word for word, so the sweep uses it. */
const UNFINISHED = "status IN ('queued', 'in_progress')";
/**
 * A prune candidate (store-rules.ts: PruneRounds) among `responses AS candidate`: finished, not kept (the
 * one parameter is a JSON array of ids to keep), and no remaining response chains from it (a search of the
 * index on previous_response_id, migration 4).
 */
const PRUNE_CANDIDATE = `NOT candidate.${UNFINISHED}
  AND candidate.id NOT IN (SELECT value FROM json_each(?))
  AND NOT EXISTS (SELECT 1 FROM responses AS successor WHERE successor.previous_response_id = candidate.id)`;

/** Parameters: the cutoff (Unix seconds), the kept ids. */
const DELETE_EXPIRED_CANDIDATES_SQL = `
  DELETE FROM responses WHERE rowid IN (
    SELECT candidate.rowid FROM responses AS candidate WHERE candidate.created_at < ? AND ${PRUNE_CANDIDATE})`;

/** Parameters: the kept ids, how many. Ties on created_at fall back to rowid, i.e. insertion order. */
const DELETE_OLDEST_CANDIDATES_SQL = `
  DELETE FROM responses WHERE rowid IN (
    SELECT candidate.rowid FROM responses AS candidate WHERE ${PRUNE_CANDIDATE}
    ORDER BY candidate.created_at, candidate.rowid LIMIT ?)`;

function prepareStatements(database: Database.Database) {
  const responseColumns = "id, created_at, previous_response_id, model, status, response_json";
  return {
    upsertResponse: database.prepare<ResponseParameters>(
      `INSERT INTO responses (${responseColumns}) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at,
         previous_response_id = excluded.previous_response_id, model = excluded.model,
         status = excluded.status, response_json = excluded.response_json`,
    ),
    deleteInputItems: database.prepare<[string]>("DELETE FROM input_items WHERE response_id = ?"),
    insertInputItem: database.prepare<[string, number, string, string]>(
      "INSERT INTO input_items (response_id, position, item_id, item_json) VALUES (?, ?, ?, ?)",
    ),
    selectResponse: database.prepare<[string], ResponseRow>(
      `SELECT ${responseColumns} FROM responses WHERE id = ?`,
    ),
    responseExists: database.prepare<[string], 1>("SELECT 1 FROM responses WHERE id = ?").pluck(),
    deleteResponse: database.prepare<[string]>("DELETE FROM responses WHERE id = ?"),
    selectInputItems: database
      .prepare<[string], string>("SELECT item_json FROM input_items WHERE response_id = ? ORDER BY position")
      .pluck(),
    selectItemPosition: database
      .prepare<[string, string], number>(
        "SELECT position FROM input_items WHERE response_id = ? AND item_id = ? ORDER BY position LIMIT 1",
      )
      .pluck(),
    selectItemsAscending: database
      .prepare<[string, number, number], string>(
        "SELECT item_json FROM input_items WHERE response_id = ? AND position > ? ORDER BY position ASC LIMIT ?",
      )
      .pluck(),
    selectItemsDescending: database
      .prepare<[string, number, number], string>(
        "SELECT item_json FROM input_items WHERE response_id = ? AND position < ? ORDER BY position DESC LIMIT ?",
      )
      .pluck(),
    deleteOutputItems: database.prepare<[string]>("DELETE FROM output_items WHERE response_id = ?"),
    insertOutputItem: database.prepare<[string, number, string]>(
      "INSERT INTO output_items (response_id, position, item_id) VALUES (?, ?, ?)",
    ),
    // Newest response first (created_at, then insertion order), as the in-memory store does.
    selectResponseWithOutputItem: database
      .prepare<[string], string>(
        `SELECT responses.response_json FROM output_items
         JOIN responses ON responses.id = output_items.response_id
         WHERE output_items.item_id = ?
         ORDER BY responses.created_at DESC, responses.rowid DESC LIMIT 1`,
      )
      .pluck(),
    selectInputItemById: database
      .prepare<[string], string>(
        `SELECT input_items.item_json FROM input_items
         JOIN responses ON responses.id = input_items.response_id
         WHERE input_items.item_id = ?
         ORDER BY responses.created_at DESC, responses.rowid DESC, input_items.position ASC LIMIT 1`,
      )
      .pluck(),
    selectChain: database.prepare<[string, number], ResponseRow>(CHAIN_SQL),
    // An update keeps its rowid, so a replaced response keeps its place in the tie order.
    deleteExpiredCandidates: database.prepare<[number, string]>(DELETE_EXPIRED_CANDIDATES_SQL),
    deleteOldestCandidates: database.prepare<[string, number]>(DELETE_OLDEST_CANDIDATES_SQL),
    countFinished: database
      .prepare<[], number>(`SELECT COUNT(*) FROM responses WHERE NOT ${UNFINISHED}`)
      .pluck(),
    selectUnfinished: database.prepare<[], { id: string; response_json: string }>(
      `SELECT id, response_json FROM responses WHERE ${UNFINISHED}`,
    ),
    updateResponseStatus: database.prepare<[string, string, string]>(
      "UPDATE responses SET status = ?, response_json = ? WHERE id = ?",
    ),
  };
}
