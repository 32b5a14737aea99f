/**
 * Rules both response stores share, so the SQLite store and its in-memory twin behave identically:
 * argument checks for paging and pruning, the pruning rounds, the chain depth guard, page assembly,
 * which output items `findItem` can find, the errors a store throws (`StoreError`, naming where the
 * store lives) and the checks a stored row must pass to be read (`readStoredResponse`, `readStoredItem`).
 */
import { ApiError } from "../shared/errors.js";
import type { ItemPage, PruneLimits, PruneOptions, StoredItem, StoredResponse } from "./types.js";

/**
 * The longest previous_response_id chain a store will walk: far more turns than any local context window
 * holds (each link adds at least one item). It exists so that corrupted data (a cycle created by
 * replacing a response) fails loudly instead of looping.
 */
export const MAX_CHAIN_DEPTH = 10_000;

export function assertValidPageLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 1) {
    throw ApiError.invalid(`Invalid 'limit': expected a positive integer, got ${limit}.`, "limit");
  }
}

export function unknownAfterError(after: string, responseId: string): ApiError {
  return ApiError.invalid(`No input item with id '${after}' in response '${responseId}'.`, "after");
}

export function assertValidPruneLimits(limits: PruneLimits): void {
  for (const [name, value] of Object.entries(limits)) {
    if (value !== undefined && (typeof value !== "number" || !(value >= 0))) {
      throw new RangeError(`prune: '${name}' must be a non-negative number, got ${String(value)}.`);
    }
  }
}

/**
 * One pruning round of a store. A response is a candidate when it is finished (not `queued` /
 * `in_progress`), not among the kept ids, and no remaining response names it as its
 * previous_response_id. Each call decides on the store as it was before the call (one SQL statement),
 * so a response whose last successor goes in this round becomes a candidate in the next.
 */
export interface PruneRounds {
  /** Deletes every candidate created before `cutoff` (Unix seconds); returns how many. */
  deleteExpiredCandidates(cutoff: number): number;
  /** How many finished responses the store holds (running ones do not count towards `maxCount`). */
  count(): number;
  /** Deletes the `limit` oldest candidates (created_at, then insertion order); returns how many. */
  deleteOldestCandidates(limit: number): number;
}

/**
 * The pruning rule both stores share: first by age, then by count, each in rounds until within the
 * limit or until no candidate is left. Since a response is only a candidate once nothing stored chains
 * from it, a conversation is kept whole while its newest turn is kept (a chain is deleted from its newest
 * end backwards), and `maxCount` is exceeded when the responses beyond it cannot go.
 */
export function pruneInRounds(limits: PruneLimits, options: PruneOptions, rounds: PruneRounds): number {
  assertValidPruneLimits(limits);
  let deleted = 0;
  if (limits.maxAgeSeconds !== undefined) {
    const cutoff = (options.nowSeconds ?? currentUnixSeconds()) - limits.maxAgeSeconds;
    for (let round = rounds.deleteExpiredCandidates(cutoff); round > 0;) {
      deleted += round;
      round = rounds.deleteExpiredCandidates(cutoff);
    }
  }
  if (limits.maxCount !== undefined) {
    const maxCount = Math.floor(limits.maxCount);
    let count = rounds.count();
    while (count > maxCount) {
      const round = rounds.deleteOldestCandidates(count - maxCount);
      if (round === 0) break;
      deleted += round;
      count -= round;
    }
  }
  return deleted;
}

/**
 * A chain that cannot be walked: longer than MAX_CHAIN_DEPTH or a cycle (which the API cannot create, but
 * a replaced or hand-edited record can). A 400 naming `previous_response_id`, never a 500 or a loop.
 */
export function chainTooDeepError(id: string): ApiError {
  return ApiError.invalid(
    `Previous response '${id}' cannot be continued: its previous_response_id chain is longer than ${MAX_CHAIN_DEPTH} links or contains a cycle.`,
    "previous_response_id",
    "previous_response_chain_invalid",
  );
}

/**
 * A store operation that failed: the store could not be opened, read or written (a full disk, a file
 * that is not a database, a corrupt row). Its message names where the store lives (the SQLite file) and
 * what was being done; it renders as a 500 in OpenAI's shape.
 */
export class StoreError extends ApiError {
  /** Where the store lives: the SQLite file's path, or "(in memory)". */
  readonly location: string;
  override readonly cause: unknown;

  constructor(location: string, message: string, cause?: unknown) {
    super({ status: 500, message: `Response store ${location}: ${message}`, code: "server_error" });
    this.name = "StoreError";
    this.location = location;
    this.cause = cause;
  }
}

/**
 * A stored response that cannot be read back (its JSON does not parse, or a field has the wrong type).
 * Reads that need it fail with this 500 naming the store and the response id; start-up skips it with a
 * warning; deleting and pruning it work as for any response.
 */
export class UnreadableResponseError extends StoreError {
  readonly responseId: string;

  constructor(location: string, responseId: string, problem: string) {
    super(
      location,
      `stored response '${responseId}' cannot be read: ${problem}. Delete it (DELETE /v1/responses/${responseId}) or repair the row.`,
    );
    this.name = "UnreadableResponseError";
    this.responseId = responseId;
  }
}

/** What `readStoredResponse` checks: a stored row's fields as they come out of the database. */
export interface StoredResponseFields {
  id: unknown;
  createdAt: unknown;
  previousResponseId: unknown;
  model: unknown;
  status: unknown;
  responseJson: unknown;
}

/**
 * Parses and checks a stored response row (its input items come separately); throws a plain Error saying
 * what is wrong, which the store turns into an UnreadableResponseError naming itself and the id.
 */
export function readStoredResponse(fields: StoredResponseFields, inputItems: StoredItem[]): StoredResponse {
  const { id, createdAt, previousResponseId, model, status } = fields;
  if (typeof id !== "string") throw new Error(`its id is ${typeof id}, not text`);
  if (typeof createdAt !== "number" || !Number.isFinite(createdAt)) {
    throw new Error(`created_at is ${JSON.stringify(createdAt)}, not a number of seconds`);
  }
  if (previousResponseId !== null && typeof previousResponseId !== "string") {
    throw new Error(`previous_response_id is ${typeof previousResponseId}, not text or null`);
  }
  if (typeof model !== "string") throw new Error(`model is ${typeof model}, not text`);
  if (typeof status !== "string") throw new Error(`status is ${typeof status}, not text`);
  const response = parseJsonObject(fields.responseJson, "response_json");
  return { id, createdAt, previousResponseId, model, status, response, inputItems };
}

/** Parses and checks one stored item (an object with a text `id` and `type`); `what` names it in errors. */
export function readStoredItem(itemJson: unknown, what: string): StoredItem {
  const item = parseJsonObject(itemJson, what);
  if (typeof item.id !== "string" || typeof item.type !== "string") {
    throw new Error(`${what} has no text 'id' and 'type'`);
  }
  return item as StoredItem;
}

function parseJsonObject(json: unknown, what: string): Record<string, unknown> {
  if (typeof json !== "string") throw new Error(`${what} is ${typeof json}, not JSON text`);
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    throw new Error(`${what} is not valid JSON (${(error as Error).message})`, { cause: error });
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error(`${what} is JSON but not an object`);
  }
  return value as Record<string, unknown>;
}

/** Builds a page from up to `limit + 1` items already in the requested order (the extra one means more). */
export function toItemPage(itemsPlusOne: StoredItem[], limit: number): ItemPage {
  const data = itemsPlusOne.slice(0, limit);
  return {
    data,
    firstId: data[0]?.id ?? null,
    lastId: data.at(-1)?.id ?? null,
    hasMore: itemsPlusOne.length > limit,
  };
}

export function currentUnixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/**
 * A stored Response object marked failed by `failUnfinished`: status, error and a null completed_at, and
 * output items left `in_progress` closed as `incomplete` (as the event writer closes them on a failure).
 */
export function failedResponse(
  response: Record<string, unknown>,
  error: { code: string; message: string },
): Record<string, unknown> {
  const failed: Record<string, unknown> = {
    ...response,
    status: "failed",
    completed_at: null,
    error: { code: error.code, message: error.message },
  };
  if (Array.isArray(response.output)) {
    failed.output = response.output.map((item: unknown) =>
      typeof item === "object" && item !== null && (item as { status?: unknown }).status === "in_progress"
        ? { ...(item as Record<string, unknown>), status: "incomplete" }
        : item,
    );
  }
  return failed;
}

/** The items of a stored Response object's `output` that have an id (what `findItem` can return). */
export function outputItems(response: Record<string, unknown>): StoredItem[] {
  const output = response.output;
  if (!Array.isArray(output)) return [];
  return output.filter(
    (item): item is StoredItem =>
      typeof item === "object" && item !== null && typeof (item as { id?: unknown }).id === "string",
  );
}
