/**
 * Pure translation of the engine's neutral conversation into node-llama-cpp's chat history.
 *
 * - system messages (the API layers map `developer` to system) → `system` items;
 * - user messages → `user` items;
 * - assistant text, reasoning and function calls → one `model` item per assistant turn: reasoning becomes a
 *   thought segment (dropped for templates without thought segments, which would print it as answer text),
 *   each function call becomes a `functionCall` element carrying its result, so the chat wrapper renders
 *   call and result in the model's own format;
 * - the history always ends with a `model` item: an empty one to generate a new answer, or the last
 *   assistant turn (for example after function results) which the model then continues.
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
}

export function convertConversation(
  items: readonly ConversationItem[],
  options: ConvertConversationOptions = {},
): ChatHistoryItem[] {
  const keepReasoning = options.keepReasoning ?? true;
  const history: ChatHistoryItem[] = [];
  /** Calls waiting for their result, by call id. */
  const pendingCalls = new Map<string, ChatModelFunctionCall>();
  /** True while consecutive function calls of one model turn are being added (a parallel-call chunk). */
  let inCallChunk = false;

  const currentModelItem = (): ChatModelResponse => {
    const last = history.at(-1);
    if (last !== undefined && last.type === "model") return last;
    const item: ChatModelResponse = { type: "model", response: [] };
    history.push(item);
    inCallChunk = false;
    return item;
  };

  for (const item of items) {
    switch (item.type) {
      case "message": {
        switch (item.role) {
          case "system":
            history.push({ type: "system", text: item.text });
            inCallChunk = false;
            break;
          case "user":
            history.push({ type: "user", text: item.text });
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

  const last = history.at(-1);
  if (last === undefined || last.type !== "model") history.push({ type: "model", response: [] });
  return history;
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
