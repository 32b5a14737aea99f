/**
 * Conversation assembly for one request: the previous_response_id chain (each response's input items,
 * then its output items, oldest first), then this request's input. `instructions` come from the current
 * request only (OpenAI: they are not carried over) and always go first, so truncation never drops them.
 * An `item_reference` names an item of the chain, of this input, or of any other stored response.
 */
import type { ConversationItem } from "../engine/types.js";
import { MAX_CHAIN_DEPTH, UnreadableResponseError } from "../store/store-rules.js";
import type { ResponseStore, StoredResponse } from "../store/types.js";
import { ApiError } from "../shared/errors.js";
import { toConversationItems, toWireInputItems } from "./convert-input.js";
import type { ConversationWireItem, InputItem, ResponseObject, ResponseStatus } from "./wire-types.js";

export interface ConversationRequest {
  previousResponseId: string | null;
  instructions: string | null;
  input: readonly InputItem[];
}

export interface AssembledConversation {
  /** What the model sees, in order. */
  items: ConversationItem[];
  /** This request's own input items, with ids: stored with the response and listed by input_items. */
  inputItems: ConversationWireItem[];
  /** The whole conversation as wire items: the chain's, then this input's (the MCP tool loop reads it). */
  history: ConversationWireItem[];
}

export interface ConversationOptions {
  /**
   * The status of a response this process is running and has not stored as final yet (a foreground run
   * is only stored when it ends), so a chain to it is refused as unfinished rather than not found.
   */
  runningStatus?: (id: string) => ResponseStatus | undefined;
}

export function previousResponseNotFound(id: string): ApiError {
  return ApiError.notFound(
    `Previous response with id '${id}' not found. It may have been deleted or expired, or it was created with store: false.`,
    "previous_response_id",
    "previous_response_not_found",
  );
}

/** A chain whose link `missingId` is gone: the response `id` exists but cannot be continued. */
export function previousResponseAncestorNotFound(id: string, missingId: string): ApiError {
  return ApiError.notFound(
    `Previous response '${id}' cannot be continued: the response '${missingId}' it follows (through previous_response_id) was not found. It may have been deleted or expired.`,
    "previous_response_id",
    "previous_response_not_found",
  );
}

/**
 * The first id missing on the way from `id` through previous_response_id links (only called once the
 * chain read failed, so it reads response by response). Undefined when every link is there after all.
 */
function firstMissingLink(store: ResponseStore, id: string): string | undefined {
  let nextId: string | null = id;
  for (let depth = 0; nextId !== null && depth < MAX_CHAIN_DEPTH; depth++) {
    const record = store.get(nextId);
    if (record === undefined) return nextId;
    nextId = record.previousResponseId;
  }
  return undefined;
}

export function previousResponseUnfinished(id: string, status: string): ApiError {
  return ApiError.invalid(
    `Previous response '${id}' is still ${status}; wait for it to finish before continuing the conversation with previous_response_id.`,
    "previous_response_id",
  );
}

/**
 * The stored chain ending at `id`, oldest first; 404 `previous_response_not_found` when any link is gone
 * (naming the missing one when it is not `id` itself), 400 when `id` has not finished (running here, or stored queued / in_progress).
 */
export function loadChain(
  store: ResponseStore,
  id: string,
  options: ConversationOptions = {},
): StoredResponse[] {
  const running = options.runningStatus?.(id);
  if (running !== undefined) throw previousResponseUnfinished(id, running);
  const chain = readingChainOf(id, () => store.chain(id));
  if (chain === undefined || chain.length === 0) {
    const missing = readingChainOf(id, () => firstMissingLink(store, id));
    throw missing === undefined || missing === id
      ? previousResponseNotFound(id)
      : previousResponseAncestorNotFound(id, missing);
  }
  const newest = chain.at(-1);
  const status = (newest?.response as Partial<ResponseObject> | undefined)?.status;
  if (status === "queued" || status === "in_progress") throw previousResponseUnfinished(id, status);
  return chain;
}

/**
 * Reads (part of) the chain ending at `id`, reporting a stored response of it that cannot be read as a
 * 500 naming `previous_response_id`, the unreadable response's id and the store file. (A cycle or a chain
 * over the depth limit is already the store's 400 naming `previous_response_id`.)
 */
function readingChainOf<Result>(id: string, read: () => Result): Result {
  try {
    return read();
  } catch (error) {
    if (!(error instanceof UnreadableResponseError)) throw error;
    throw new ApiError({
      status: 500,
      message: `Previous response '${id}' cannot be continued: ${error.message}`,
      param: "previous_response_id",
      code: "server_error",
    });
  }
}

/** Every item of the chain in conversation order: per response, its input items then its output. */
export function chainItems(chain: readonly StoredResponse[]): ConversationWireItem[] {
  return chain.flatMap((record) => [
    ...(record.inputItems as ConversationWireItem[]),
    ...(((record.response as Partial<ResponseObject>).output ?? []) as ConversationWireItem[]),
  ]);
}

export function assembleConversation(
  store: ResponseStore,
  request: ConversationRequest,
  options: ConversationOptions = {},
): AssembledConversation {
  const history =
    request.previousResponseId === null
      ? []
      : chainItems(loadChain(store, request.previousResponseId, options));
  const historyById = new Map<string, ConversationWireItem>();
  for (const item of history) if (!historyById.has(item.id)) historyById.set(item.id, item);

  const inputItems = toWireInputItems(
    request.input,
    (id) => historyById.get(id),
    (id) => store.findItem(id) as ConversationWireItem | undefined,
  );
  const instructions: ConversationItem[] =
    request.instructions === null || request.instructions === ""
      ? []
      : [{ type: "message", role: "system", text: request.instructions }];
  const wireHistory = [...history, ...inputItems];
  const conversation = toConversationItems(wireHistory);
  return { items: [...instructions, ...conversation], inputItems, history: wireHistory };
}
