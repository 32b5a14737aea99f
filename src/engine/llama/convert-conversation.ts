/**
 * Pure translation of the engine's neutral conversation into node-llama-cpp's chat history.
 *
 * - system messages (the API layers map `developer` to system) → `system` items;
 * - user messages → `user` items;
 * - assistant text, reasoning and function calls → one `model` item per assistant turn: reasoning becomes a
 *   thought segment (dropped for templates without thought segments, which would print it as answer text),
 *   each function call becomes a `functionCall` element carrying its result, so the chat wrapper renders
 *   call and result in the model's own format;
 * - the history always ends with the `model` item the model generates into. It continues the last assistant
 *   turn only when that turn ends with function calls (their results are in: the tool loop); otherwise it is
 *   a new, empty turn, also after a trailing assistant message (OpenAI answers it with a new assistant turn,
 *   it never continues it). Templates that merge adjacent model items into one turn (Llama 2/3, Mistral,
 *   Gemma, many Jinja templates) get a user message ("" or " ") before the new turn, so the previous one is
 *   closed (`newTurnSeparator`).
 *
 * A function call without a result, or a result without a call, is a client error (400), as in OpenAI's API.
 */
import type { ChatHistoryItem, ChatModelFunctionCall, ChatModelResponse } from "node-llama-cpp";
import type { ConversationItem } from "../types.js";
import { ApiError, assertNever } from "../../shared/errors.js";

/** Parses tool arguments and outputs when they are JSON; keeps the raw text otherwise. */
export function parseJsonOrKeepText(text: string): unknown {
  if (text.trim() === "") return text;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

export interface ConvertConversationOptions {
  /** Keep reasoning items as thought segments (default true); false drops them. */
  keepReasoning?: boolean;
  /**
   * For chat templates that render adjacent model items as one turn: the text of a user message to put
   * between a finished assistant turn and the new one (`newTurnSeparator`). Default: none.
   */
  newTurnSeparator?: string | undefined;
}

export interface ConvertedConversation {
  history: ChatHistoryItem[];
  /**
   * Per history item, the index of the last conversation item rendered in it (`items.length` for the items
   * added here: the new model turn and its separator), to map protected conversation items to history items.
   */
  lastSourceIndex: number[];
}

export function convertConversation(
  items: readonly ConversationItem[],
  options: ConvertConversationOptions = {},
): ChatHistoryItem[] {
  return convertConversationWithSources(items, options).history;
}

export function convertConversationWithSources(
  items: readonly ConversationItem[],
  options: ConvertConversationOptions = {},
): ConvertedConversation {
  const keepReasoning = options.keepReasoning ?? true;
  const history: ChatHistoryItem[] = [];
  const lastSourceIndex: number[] = [];
  /** The conversation item being converted. */
  let source = 0;
  /** Calls waiting for their result, by call id. */
  const pendingCalls = new Map<string, ChatModelFunctionCall>();
  /** True while consecutive function calls of one model turn are being added (a parallel-call chunk). */
  let inCallChunk = false;

  /** The history item holding each pending call. */
  const pendingCallItem = new Map<string, number>();

  const push = (item: ChatHistoryItem): void => {
    history.push(item);
    lastSourceIndex.push(source);
  };

  const currentModelItem = (): ChatModelResponse => {
    const last = history.at(-1);
    if (last !== undefined && last.type === "model") {
      lastSourceIndex[history.length - 1] = source;
      return last;
    }
    const item: ChatModelResponse = { type: "model", response: [] };
    push(item);
    inCallChunk = false;
    return item;
  };

  for (const [index, item] of items.entries()) {
    source = index;
    switch (item.type) {
      case "message": {
        switch (item.role) {
          case "system":
            push({ type: "system", text: item.text });
            inCallChunk = false;
            break;
          case "user":
            push({ type: "user", text: item.text });
            inCallChunk = false;
            break;
          case "assistant": {
            const model = currentModelItem();
            appendText(model, item.text);
            inCallChunk = false;
            break;
          }
          default:
            assertNever(item.role, "message role");
        }
        break;
      }
      case "reasoning": {
        if (!keepReasoning) break;
        const model = currentModelItem();
        model.response.push({ type: "segment", segmentType: "thought", text: item.text, ended: true });
        inCallChunk = false;
        break;
      }
      case "function-call": {
        if (pendingCalls.has(item.callId)) {
          throw ApiError.invalid(`Duplicate function call id '${item.callId}' in the input.`, "input");
        }
        const model = currentModelItem();
        const call: ChatModelFunctionCall = {
          type: "functionCall",
          name: item.name,
          params: parseJsonOrKeepText(item.arguments),
          result: undefined,
          startsNewChunk: !inCallChunk,
        };
        model.response.push(call);
        pendingCalls.set(item.callId, call);
        pendingCallItem.set(item.callId, history.length - 1);
        inCallChunk = true;
        break;
      }
      case "function-result": {
        const call = pendingCalls.get(item.callId);
        if (call === undefined) {
          throw ApiError.invalid(
            `No function call found for function call output with call_id '${item.callId}'.`,
            "input",
          );
        }
        call.result = parseJsonOrKeepText(item.output);
        pendingCalls.delete(item.callId);
        const holder = pendingCallItem.get(item.callId);
        if (holder !== undefined) lastSourceIndex[holder] = Math.max(lastSourceIndex[holder] ?? 0, index);
        break;
      }
      default:
        assertNever(item, "conversation item");
    }
  }

  const [unanswered] = pendingCalls.keys();
  if (unanswered !== undefined) {
    throw ApiError.invalid(`No tool output found for function call with call_id '${unanswered}'.`, "input");
  }

  source = items.length;
  const last = history.at(-1);
  if (last === undefined || last.type !== "model") {
    push({ type: "model", response: [] });
  } else if (!endsWithFunctionCall(last)) {
    // A finished assistant turn: answer it with a new turn instead of continuing it.
    if (options.newTurnSeparator !== undefined) push({ type: "user", text: options.newTurnSeparator });
    push({ type: "model", response: [] });
  }
  return { history, lastSourceIndex };
}

/** The tool loop: the turn's last element is a function call (whose result has arrived). */
function endsWithFunctionCall(item: ChatModelResponse): boolean {
  const last = item.response.at(-1);
  return last !== undefined && typeof last !== "string" && last.type === "functionCall";
}

/** Adjacent assistant messages of one turn are joined with a blank line. */
function appendText(model: ChatModelResponse, text: string): void {
  const lastIndex = model.response.length - 1;
  const last = model.response[lastIndex];
  if (typeof last === "string") {
    model.response[lastIndex] = last === "" ? text : `${last}\n\n${text}`;
  } else {
    model.response.push(text);
  }
}
