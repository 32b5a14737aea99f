/**
 * Rules both response stores share, so the SQLite store and its in-memory twin behave identically:
 * argument checks for paging and pruning, the pruning rounds, the chain depth guard, page assembly and
 * which output items `findItem` can find.
 */
import { ApiError } from "../shared/errors.js";
import type { ItemPage, PruneLimits, PruneOptions, StoredItem } from "./types.js";

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

export function chainTooDeepError(id: string): Error {
  return new Error(
    `Response chain ending at '${id}' is longer than ${MAX_CHAIN_DEPTH} links or contains a cycle.`,
  );
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
