/**
 * Rules both response stores share, so the SQLite store and its in-memory twin behave identically:
 * argument checks for paging and pruning, the chain depth guard, page assembly and which output items
 * `findItem` can find.
 */
import { ApiError } from "../shared/errors.js";
import type { ItemPage, PruneLimits, StoredItem } from "./types.js";

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
