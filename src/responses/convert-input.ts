/**
 * Translates Responses input in two steps:
 * 1. toWireInputItems: validated request items → the items stored with the response and listed by
 *    `input_items` (every item gets an id, string content becomes parts, item references are resolved).
 * 2. toConversationItems: stored or output items → the engine's neutral ConversationItems
 *    (`developer` and `system` both become `system`; refusals and reasoning keep their text).
 */
import type { ConversationItem } from "../engine/types.js";
import { ApiError, assertNever } from "../shared/errors.js";
import { newId } from "../shared/ids.js";
import { mcpFunctionName, qualifiedFunctionName } from "./request-params.js";
import type {
  ConversationWireItem,
  InputItem,
  InputTextPart,
  MessageContentPart,
  MessageInputItem,
  MessageInputPart,
  MessageItem,
} from "./wire-types.js";

/** Finds an earlier item (of the previous_response_id chain) by id, for `item_reference` inputs. */
export type ItemLookup = (id: string) => ConversationWireItem | undefined;

/**
 * `lookup` finds items of the previous_response_id chain; an `item_reference` resolves to one of those,
 * else to an earlier item of this input, else through `findStored` (an item of any stored response, as
 * OpenAI resolves it: clients such as the AI SDK reference earlier output without previous_response_id).
 */
export function toWireInputItems(
  input: readonly InputItem[],
  lookup: ItemLookup,
  findStored: ItemLookup = () => undefined,
): ConversationWireItem[] {
  // As OpenAI: two input items with one id make `item_reference` and the input_items cursors ambiguous.
  const seen = new Set<string>();
  input.forEach((item) => {
    if (item.type === "item_reference" || typeof item.id !== "string") return;
    if (seen.has(item.id)) {
      throw ApiError.invalid(
        `Duplicate item found with id ${item.id}. Remove duplicate items from your input and try again.`,
        "input",
      );
    }
    seen.add(item.id);
  });
  const items: ConversationWireItem[] = [];
  input.forEach((item, index) => {
    switch (item.type) {
      case "message":
        items.push(toMessageItem(item));
        break;
      case "item_reference": {
        const target =
          lookup(item.id) ?? items.find((earlier) => earlier.id === item.id) ?? findStored(item.id);
        if (target === undefined) {
          throw ApiError.invalid(
            `Item with id '${item.id}' not found: an item_reference must name an earlier item of this request or an item of a stored response.`,
            `input[${index}].id`,
          );
        }
        items.push(structuredClone(target));
        break;
      }
      case "function_call":
        items.push({
          id: item.id ?? newId("fc"),
          type: "function_call",
          status: "completed",
          call_id: item.call_id,
          name: item.name,
          ...(item.namespace === undefined ? {} : { namespace: item.namespace }),
          arguments: item.arguments,
        });
        break;
      case "function_call_output":
        items.push({
          id: item.id ?? newId("item"),
          type: "function_call_output",
          status: "completed",
          call_id: item.call_id,
          output: item.output,
        });
        break;
      case "reasoning":
        items.push({
          id: item.id ?? newId("rs"),
          type: "reasoning",
          summary: item.summary,
          ...(item.content === undefined ? {} : { content: item.content }),
          ...(item.encrypted_content === undefined ? {} : { encrypted_content: item.encrypted_content }),
        });
        break;
      case "custom_tool_call":
        items.push({
          id: item.id ?? newId("ctc"),
          type: "custom_tool_call",
          status: "completed",
          call_id: item.call_id,
          name: item.name,
          ...(item.namespace === undefined ? {} : { namespace: item.namespace }),
          input: item.input,
        });
        break;
      case "custom_tool_call_output":
        items.push({
          id: item.id ?? newId("item"),
          type: "custom_tool_call_output",
          status: "completed",
          call_id: item.call_id,
          output: item.output,
        });
        break;
      case "mcp_approval_response":
        items.push({
          id: item.id ?? newId("mcpa"),
          type: "mcp_approval_response",
          approval_request_id: item.approval_request_id,
          approve: item.approve,
          reason: item.reason ?? null,
        });
        break;
      case "mcp_list_tools":
      case "mcp_call":
      case "mcp_approval_request":
        // Re-sent output of an earlier response (stateless clients): kept as it was.
        items.push(structuredClone(item));
        break;
      default:
        assertNever(item, "input item");
    }
  });
  return items;
}

/**
 * Stores a message the way OpenAI lists it: content as parts, assistant text as `output_text` (with
 * empty annotations and logprobs), everything else as `input_text`.
 */
export function toMessageItem(message: MessageInputItem): MessageItem {
  const parts: MessageInputPart[] =
    typeof message.content === "string" ? [{ type: "input_text", text: message.content }] : message.content;
  const assistant = message.role === "assistant";
  const content = parts.map((part): MessageContentPart => {
    if (part.type === "refusal" && assistant) return part;
    const text = part.type === "refusal" ? part.refusal : part.text;
    return assistant
      ? { type: "output_text", text, annotations: [], logprobs: [] }
      : { type: "input_text", text };
  });
  return {
    id: message.id ?? newId("msg"),
    type: "message",
    role: message.role,
    status: "completed",
    content,
    ...(message.phase === undefined || message.phase === null ? {} : { phase: message.phase }),
  };
}

/** Text parts of one message are joined with newlines, as chat templates expect one string per turn. */
function messageText(content: readonly MessageContentPart[]): string {
  return content.map((part) => (part.type === "refusal" ? part.refusal : part.text)).join("\n");
}

function toolOutputText(output: string | readonly InputTextPart[]): string {
  return typeof output === "string" ? output : output.map((part) => part.text).join("\n");
}

/**
 * The neutral conversation for a sequence of items. Tool results get the name of the call they answer
 * (when that call is in the sequence); reasoning items without readable text (only encrypted content
 * from another server) carry nothing the engine could use and are left out.
 */
export function toConversationItems(items: readonly ConversationWireItem[]): ConversationItem[] {
  const callNames = new Map<string, string>();
  const conversation: ConversationItem[] = [];
  const result = (callId: string, output: string): ConversationItem => {
    const name = callNames.get(callId);
    return name === undefined
      ? { type: "function-result", callId, output }
      : { type: "function-result", callId, name, output };
  };
  for (const item of items) {
    switch (item.type) {
      case "message":
        conversation.push({
          type: "message",
          role: item.role === "developer" ? "system" : item.role,
          text: messageText(item.content),
        });
        break;
      case "reasoning": {
        const parts = item.content !== undefined && item.content.length > 0 ? item.content : item.summary;
        const text = parts.map((part) => part.text).join("\n");
        if (text !== "") conversation.push({ type: "reasoning", text });
        break;
      }
      case "function_call":
      case "custom_tool_call": {
        const name = qualifiedFunctionName(item.name, item.namespace);
        callNames.set(item.call_id, name);
        const callArguments = item.type === "function_call" ? item.arguments : item.input;
        conversation.push({ type: "function-call", callId: item.call_id, name, arguments: callArguments });
        break;
      }
      case "function_call_output":
      case "custom_tool_call_output":
        conversation.push(result(item.call_id, toolOutputText(item.output)));
        break;
      case "mcp_call": {
        // A call lmhost ran: the model sees it as a function call and its result.
        const name = mcpFunctionName(item.server_label, item.name);
        conversation.push({ type: "function-call", callId: item.id, name, arguments: item.arguments });
        conversation.push({
          type: "function-result",
          callId: item.id,
          name,
          output: item.error === null ? (item.output ?? "") : `Error: ${item.error}`,
        });
        break;
      }
      case "mcp_list_tools":
      case "mcp_approval_request":
      case "mcp_approval_response":
        // Bookkeeping of the MCP tool loop (tool-loop.ts): nothing the model reads as such.
        break;
      default:
        assertNever(item, "conversation item");
    }
  }
  return conversation;
}
