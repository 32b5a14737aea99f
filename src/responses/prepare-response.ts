/**
 * Everything a response needs before generation starts: the assembled conversation, this request's
 * input items with ids, the engine request and the first snapshot (a new `resp_…` id). Pure apart from
 * reading the previous_response_id chain from the store.
 */
import type { EngineRequest } from "../engine/types.js";
import type { ResponseStore } from "../store/types.js";
import { ApiError } from "../shared/errors.js";
import { newId } from "../shared/ids.js";
import { assembleConversation, type ConversationOptions } from "./conversation.js";
import type { ResponseRequest } from "./request-params.js";
import { checkApprovalResponses } from "./tool-loop.js";
import { newResponseObject, unixSeconds } from "./response-object.js";
import type { ConversationWireItem, ResponseObject } from "./wire-types.js";

export interface PreparedResponse {
  request: ResponseRequest;
  /** The snapshot `response.created` carries: `queued` for background responses, else `in_progress`. */
  initial: ResponseObject;
  engineRequest: EngineRequest;
  /** Stored with the response (unless store: false) and listed by GET …/input_items. */
  inputItems: ConversationWireItem[];
  /** The conversation as wire items (chain, then input), for the MCP tool loop. */
  history: ConversationWireItem[];
}

export interface PrepareOptions extends ConversationOptions {
  /** Milliseconds since the epoch for created_at (default: the clock). */
  now?: number;
}

/**
 * The engine request for a validated request (also what POST /v1/responses/input_tokens counts).
 * `truncation: "auto"` drops from the start of the whole conversation, the chain's items and earlier turns
 * re-sent in `input` alike (stateless clients send their history that way), never the instructions nor the
 * current turn (the engines' protectedTailStart rule).
 */
export function buildEngineRequest(
  store: ResponseStore,
  request: ResponseRequest,
  options: ConversationOptions = {},
) {
  const conversation = assembleConversation(store, request, options);
  checkApprovalResponses(conversation.history, conversation.inputItems);
  if (!conversation.items.some((item) => !(item.type === "message" && item.role === "system"))) {
    throw ApiError.invalid(
      "The request has no input: send `input` (a string or a list of items), or continue a conversation with `previous_response_id`.",
      "input",
    );
  }
  const engineRequest: EngineRequest = {
    model: request.model,
    items: conversation.items,
    ...request.generation,
  };
  return { engineRequest, inputItems: conversation.inputItems, history: conversation.history };
}

export function prepareResponse(
  store: ResponseStore,
  request: ResponseRequest,
  options: PrepareOptions = {},
): PreparedResponse {
  const { now, ...conversationOptions } = options;
  const { engineRequest, inputItems, history } = buildEngineRequest(store, request, conversationOptions);
  const initial = newResponseObject({
    id: newId("resp"),
    createdAt: unixSeconds(now ?? Date.now()),
    echo: request.echo,
    status: request.background ? "queued" : "in_progress",
  });
  return { request, initial, engineRequest, inputItems, history };
}
