/**
 * The embedded default response store: one SQLite file (WAL mode) holding each response's JSON, its
 * input items and the ids of its output items (so `findItem` is an index lookup). Chains are rebuilt
 * with one recursive query that follows previous_response_id through the primary key, so the cost grows
 * with the chain, not with the store. All statements are prepared once.
 *
 * Every failure names the file: better-sqlite3's errors (opening, migrating, reading, writing — a full
 * disk or `maxBytes` limit is SQLITE_FULL) become a StoreError saying what was being done, with a hint for
 * the usual causes; a row that cannot be read back becomes an UnreadableResponseError naming its id, and
 * `failUnfinished` (run at start-up) skips such a row with a warning instead of refusing to start.
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
  StoreError,
  UnreadableResponseError,
  assertValidPageLimit,
  assertValidPruneLimits,
  chainTooDeepError,
  failedResponse,
  outputItems,
  pruneInRounds,
  readStoredItem,
  readStoredResponse,
  toItemPage,
  unknownAfterError,
} from "../store-rules.js";
import { ApiError } from "../../shared/errors.js";
import { migrate } from "./migrations.js";

/** How long a statement waits for another connection's lock before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MILLISECONDS = 5_000;

export interface SqliteStoreOptions {
  /**
   * The most bytes the database may hold (`PRAGMA max_page_count`, rounded down to whole pages; the WAL
   * file beside it is not counted). A write beyond it fails with SQLITE_FULL exactly as on a full disk.
   * It cannot shrink an existing file: a file already larger simply cannot grow.
   */
  maxBytes?: number;
  /** Told about rows skipped because they cannot be read (default: nobody). */
  warn?: (message: string) => void;
}

interface ResponseRow {
  id: string;
  created_at: number;
  previous_response_id: string | null;
  model: string;
  status: string;
  response_json: string;
}

interface ItemRow {
  position: number;
  item_json: string;
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
  /** The file's path as given (or "(in memory)"), named by every error. */
  readonly #location: string;
  readonly #warn: (message: string) => void;

  /**
   * Opens (creating it and its parent directories if needed) and migrates the store file. Throws a
   * StoreError naming the file when it cannot be opened, is not an SQLite database, or cannot be migrated.
   */
  static open(file: string, options: SqliteStoreOptions = {}): SqliteResponseStore {
    const inMemory = file === ":memory:" || file === "";
    const location = inMemory ? "(in memory)" : file;
    if (options.maxBytes !== undefined && !(Number.isInteger(options.maxBytes) && options.maxBytes > 0)) {
      throw new RangeError(`maxBytes must be a positive whole number, got ${String(options.maxBytes)}.`);
    }
    let database: Database.Database;
    try {
      if (!inMemory) mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
      database = new Database(file);
    } catch (error) {
      throw storeErrorOf(location, "opening the file", error);
    }
    try {
      database.pragma(`busy_timeout = ${BUSY_TIMEOUT_MILLISECONDS}`);
      database.pragma("journal_mode = WAL");
      // With WAL, NORMAL is crash-safe; only the last commits before a power loss may be lost.
      database.pragma("synchronous = NORMAL");
      database.pragma("foreign_keys = ON");
      if (options.maxBytes !== undefined) {
        const pageSize = database.pragma("page_size", { simple: true }) as number;
        database.pragma(`max_page_count = ${Math.max(1, Math.floor(options.maxBytes / pageSize))}`);
      }
    } catch (error) {
      database.close();
      throw storeErrorOf(location, "opening the database", error);
    }
    try {
      migrate(database, location);
      return new SqliteResponseStore(database, location, options.warn ?? (() => undefined));
    } catch (error) {
      database.close();
      // migrate's own errors (a file from a newer lmhost) already name the file and say what to do.
      throw isSqliteError(error) ? storeErrorOf(location, "migrating the schema", error) : error;
    }
  }

  private constructor(database: Database.Database, location: string, warn: (message: string) => void) {
    this.#database = database;
    this.#location = location;
    this.#warn = warn;
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
    this.#guard(`storing response '${record.id}'`, () => this.#putTransaction(record));
  }

  get(id: string): StoredResponse | undefined {
    return this.#guard(`reading response '${id}'`, () =>
      this.#readTransaction(() => {
        const row = this.#statements.selectResponse.get(id);
        return row === undefined ? undefined : this.#toStoredResponse(row);
      }),
    );
  }

  delete(id: string): boolean {
    return this.#guard(
      `deleting response '${id}'`,
      () => this.#statements.deleteResponse.run(id).changes > 0,
    );
  }

  listInputItems(id: string, options: ListItemsOptions): ItemPage | undefined {
    assertValidPageLimit(options.limit);
    return this.#guard(`listing the input items of response '${id}'`, () =>
      this.#readTransaction(() => {
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
        const rows = select.all(id, cursorPosition, options.limit + 1);
        const itemsPlusOne = rows.map((row) =>
          this.#readItem(id, row.item_json, `input item ${row.position}`),
        );
        return toItemPage(itemsPlusOne, options.limit);
      }),
    );
  }

  chain(id: string): StoredResponse[] | undefined {
    return this.#guard(`reading the previous_response_id chain ending at '${id}'`, () =>
      this.#readTransaction(() => {
        const oldestFirst = this.#statements.selectChain.all(id, MAX_CHAIN_DEPTH);
        const oldest = oldestFirst[0];
        if (oldest === undefined) return undefined;
        if (oldest.previous_response_id !== null) {
          if (oldestFirst.length >= MAX_CHAIN_DEPTH) throw chainTooDeepError(id);
          return undefined; // An ancestor was deleted or pruned.
        }
        return oldestFirst.map((row) => this.#toStoredResponse(row));
      }),
    );
  }

  findItem(id: string): StoredItem | undefined {
    return this.#guard(`finding item '${id}'`, () =>
      this.#readTransaction(() => {
        const row = this.#statements.selectResponseWithOutputItem.get(id);
        if (row !== undefined) {
          const response = this.#toStoredResponse({ ...row, inputItems: [] }).response;
          const item = outputItems(response).find((candidate) => candidate.id === id);
          if (item !== undefined) return item;
        }
        const input = this.#statements.selectInputItemById.get(id);
        return input === undefined
          ? undefined
          : this.#readItem(input.response_id, input.item_json, `input item ${input.position}`);
      }),
    );
  }

  prune(limits: PruneLimits, options: PruneOptions = {}): number {
    assertValidPruneLimits(limits); // A caller's mistake, not a store failure.
    const keepIds = JSON.stringify(options.keepIds ?? []);
    const statements = this.#statements;
    return this.#guard("pruning old responses", () =>
      this.#database.transaction(() =>
        pruneInRounds(limits, options, {
          deleteExpiredCandidates: (cutoff) =>
            statements.deleteExpiredCandidates.run(cutoff, keepIds).changes,
          count: () => statements.countFinished.get() ?? 0,
          deleteOldestCandidates: (limit) => statements.deleteOldestCandidates.run(keepIds, limit).changes,
        }),
      )(),
    );
  }

  /**
   * As the interface says; a row that cannot be read is not rewritten but only marked `failed` in its
   * status column (so it is neither swept again nor blocks pruning), with a warning naming it.
   */
  failUnfinished(error: { code: string; message: string }): number {
    return this.#guard("repairing the responses an earlier run left unfinished", () =>
      this.#database.transaction(() => {
        const unfinished = this.#statements.selectUnfinished.all();
        for (const row of unfinished) {
          let response: Record<string, unknown>;
          try {
            response = this.#toStoredResponse({ ...row, inputItems: [] }).response;
          } catch (unreadable) {
            if (!(unreadable instanceof UnreadableResponseError)) throw unreadable;
            this.#warn(`${unreadable.message} It was left unfinished by an earlier run; now marked failed.`);
            this.#statements.updateStatusOnly.run("failed", row.id);
            continue;
          }
          // Output item ids do not change, so output_items stays as it is.
          const failed = failedResponse(response, error);
          this.#statements.updateResponseStatus.run("failed", JSON.stringify(failed), row.id);
        }
        return unfinished.length;
      })(),
    );
  }

  close(): void {
    this.#guard("closing", () => {
      if (this.#database.open) this.#database.close();
    });
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

  /** Runs a store operation; an error that is not already an ApiError becomes a StoreError naming the file. */
  #guard<Result>(action: string, operation: () => Result): Result {
    try {
      return operation();
    } catch (error) {
      if (error instanceof ApiError) throw error;
      throw storeErrorOf(this.#location, action, error);
    }
  }

  /**
   * A row as a StoredResponse, with its input items unless `inputItems` is given; an UnreadableResponseError
   * naming the file and the id when a field or an item does not read back.
   */
  #toStoredResponse(row: ResponseRow & { inputItems?: StoredItem[] }): StoredResponse {
    const id = String(row.id);
    const inputItems =
      row.inputItems ??
      this.#statements.selectInputItems
        .all(id)
        .map((item) => this.#readItem(id, item.item_json, `input item ${item.position}`));
    try {
      return readStoredResponse(
        {
          id: row.id,
          createdAt: row.created_at,
          previousResponseId: row.previous_response_id,
          model: row.model,
          status: row.status,
          responseJson: row.response_json,
        },
        inputItems,
      );
    } catch (error) {
      throw new UnreadableResponseError(this.#location, id, (error as Error).message);
    }
  }

  #readItem(responseId: string, itemJson: unknown, what: string): StoredItem {
    try {
      return readStoredItem(itemJson, what);
    } catch (error) {
      throw new UnreadableResponseError(this.#location, responseId, (error as Error).message);
    }
  }
}

function isSqliteError(error: unknown): error is Error & { code: string } {
  return error instanceof Database.SqliteError;
}

/** What to do about the SQLite errors an operator can fix, by result code. */
const SQLITE_HINTS: Record<string, string> = {
  SQLITE_FULL:
    "the disk is full or the store reached its size limit (--store-max-bytes); free space, raise the limit or lower --store-max-count / --store-max-age",
  SQLITE_NOTADB:
    "the file is not an SQLite database; move it away (lmhost creates a new store where there is none) or point --data-dir elsewhere",
  SQLITE_CORRUPT:
    "the database file is corrupt; restore it from a backup or move it away (lmhost creates a new store where there is none)",
  SQLITE_READONLY: "the file or its directory is read-only for this process",
  SQLITE_CANTOPEN: "the file cannot be opened; check that its directory exists and is writable",
  SQLITE_BUSY: "another process holds the database locked",
  SQLITE_IOERR: "the disk reported an I/O error",
  SQLITE_PERM: "permission denied",
};

/** A StoreError naming the file, what was being done, SQLite's message and code, and what to do about it. */
function storeErrorOf(location: string, action: string, error: unknown): StoreError {
  const message = error instanceof Error ? error.message : String(error);
  if (!isSqliteError(error)) return new StoreError(location, `${action} failed: ${message}.`, error);
  // Extended codes (SQLITE_IOERR_WRITE, SQLITE_CANTOPEN_ISDIR) share their primary code's hint.
  const hint = SQLITE_HINTS[error.code] ?? SQLITE_HINTS[error.code.split("_").slice(0, 2).join("_")];
  return new StoreError(
    location,
    `${action} failed: ${message} (${error.code})${hint === undefined ? "" : ` — ${hint}`}.`,
    error,
  );
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
    selectInputItems: database.prepare<[string], ItemRow>(
      "SELECT position, item_json FROM input_items WHERE response_id = ? ORDER BY position",
    ),
    selectItemPosition: database
      .prepare<[string, string], number>(
        "SELECT position FROM input_items WHERE response_id = ? AND item_id = ? ORDER BY position LIMIT 1",
      )
      .pluck(),
    selectItemsAscending: database.prepare<[string, number, number], ItemRow>(
      "SELECT position, item_json FROM input_items WHERE response_id = ? AND position > ? ORDER BY position ASC LIMIT ?",
    ),
    selectItemsDescending: database.prepare<[string, number, number], ItemRow>(
      "SELECT position, item_json FROM input_items WHERE response_id = ? AND position < ? ORDER BY position DESC LIMIT ?",
    ),
    deleteOutputItems: database.prepare<[string]>("DELETE FROM output_items WHERE response_id = ?"),
    insertOutputItem: database.prepare<[string, number, string]>(
      "INSERT INTO output_items (response_id, position, item_id) VALUES (?, ?, ?)",
    ),
    // Newest response first (created_at, then insertion order), as the in-memory store does.
    selectResponseWithOutputItem: database.prepare<[string], ResponseRow>(
      `SELECT responses.id, responses.created_at, responses.previous_response_id, responses.model,
              responses.status, responses.response_json FROM output_items
         JOIN responses ON responses.id = output_items.response_id
         WHERE output_items.item_id = ?
         ORDER BY responses.created_at DESC, responses.rowid DESC LIMIT 1`,
    ),
    selectInputItemById: database.prepare<[string], ItemRow & { response_id: string }>(
      `SELECT input_items.response_id, input_items.position, input_items.item_json FROM input_items
         JOIN responses ON responses.id = input_items.response_id
         WHERE input_items.item_id = ?
         ORDER BY responses.created_at DESC, responses.rowid DESC, input_items.position ASC LIMIT 1`,
    ),
    selectChain: database.prepare<[string, number], ResponseRow>(CHAIN_SQL),
    // An update keeps its rowid, so a replaced response keeps its place in the tie order.
    deleteExpiredCandidates: database.prepare<[number, string]>(DELETE_EXPIRED_CANDIDATES_SQL),
    deleteOldestCandidates: database.prepare<[string, number]>(DELETE_OLDEST_CANDIDATES_SQL),
    countFinished: database
      .prepare<[], number>(`SELECT COUNT(*) FROM responses WHERE NOT ${UNFINISHED}`)
      .pluck(),
    selectUnfinished: database.prepare<[], ResponseRow>(
      `SELECT ${responseColumns} FROM responses WHERE ${UNFINISHED}`,
    ),
    updateStatusOnly: database.prepare<[string, string]>("UPDATE responses SET status = ? WHERE id = ?"),
    updateResponseStatus: database.prepare<[string, string, string]>(
      "UPDATE responses SET status = ?, response_json = ? WHERE id = ?",
    ),
  };
}
