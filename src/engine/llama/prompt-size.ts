/**
 * Screens a request's size before anything tokenizes its whole prompt on the event loop.
 *
 * node-llama-cpp tokenizes synchronously (~0.5 µs a character here), and rendering a prompt tokenizes all
 * of it — several times when truncation searches for what to drop. An 18 MB `instructions` froze the
 * server for tens of seconds before the 400 that said it does not fit. So a request with more text than a
 * small budget is first counted here, a slice at a time with the event loop free between slices, and:
 *
 * - when the text that can never be dropped (system messages and instructions, the protected current turn,
 *   tool definitions) — or, with truncation "disabled", all of it — is certainly longer than the context,
 *   the request is refused with `context_length_exceeded` without ever being tokenized whole;
 * - with truncation "auto", the oldest turns that would certainly be dropped (the newer ones already fill
 *   the context) are dropped here, at a user-message boundary, so truncation's own search only renders
 *   about one context's worth of conversation.
 *
 * The count is a lower bound: slices are cut at whitespace and each cut is allowed to have merged a few
 * tokens across it, so nothing that could fit is refused here; prepare-prompt then checks exactly.
 */
import type { Tokenizer } from "node-llama-cpp";
import type { ConversationItem, EngineRequest } from "../types.js";
import { protectedTailStart } from "../truncation.js";
import { contextLengthExceeded } from "./prompt.js";

/** Text up to this many characters in all is tokenized as it is (a few milliseconds at most). */
export const SCREEN_ABOVE_CHARACTERS = 32_768;
/** Characters tokenized between two yields to the event loop (~8 ms each on this kind of machine). */
const SLICE_CHARACTERS = 16_384;
/** Tokens a cut between two slices may have merged away (a lower bound must not count them). */
const TOKENS_PER_CUT = 8;

const isMessageFrom = (item: ConversationItem | undefined, role: "system" | "user"): boolean =>
  item?.type === "message" && item.role === role;

const yieldToEventLoop = async (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function itemText(item: ConversationItem): string {
  switch (item.type) {
    case "message":
    case "reasoning":
      return item.text;
    case "function-call":
      return item.name + item.arguments;
    case "function-result":
      return item.output;
  }
}

function toolsText(request: EngineRequest): string {
  if (request.toolChoice === "none") return "";
  return (request.tools ?? [])
    .map((tool) => tool.name + (tool.description ?? "") + JSON.stringify(tool.parameters ?? {}))
    .join("");
}

/**
 * A lower bound of the tokens of `text`, counted a slice at a time with the event loop free between
 * slices; stops early once the count passes `stopAbove`.
 */
export async function countTokensInSlices(
  tokenizer: Tokenizer,
  text: string,
  stopAbove: number,
): Promise<number> {
  let tokens = 0;
  let cuts = 0;
  for (let start = 0; start < text.length;) {
    let end = Math.min(text.length, start + SLICE_CHARACTERS);
    if (end < text.length) {
      // Cut after whitespace where there is some, so words are not split.
      const space = text.lastIndexOf(" ", end);
      const newline = text.lastIndexOf("\n", end);
      const cut = Math.max(space, newline);
      if (cut > start + SLICE_CHARACTERS / 2) end = cut + 1;
      cuts += 1;
    }
    tokens += tokenizer(text.slice(start, end), false).length;
    start = end;
    if (Math.max(0, tokens - cuts * TOKENS_PER_CUT) > stopAbove) break;
    if (start < text.length) await yieldToEventLoop();
  }
  return Math.max(0, tokens - cuts * TOKENS_PER_CUT);
}

/**
 * The request to render: unchanged when it is small or fits; with truncation "auto", without the oldest
 * turns that would certainly be dropped. Throws ApiError 400 `context_length_exceeded` when it certainly
 * cannot fit. `countOnly` (input_tokens): the whole prompt is counted, so truncation does not apply.
 */
export async function screenPromptSize(
  tokenizer: Tokenizer,
  contextLength: number,
  request: EngineRequest,
  options: { countOnly: boolean },
): Promise<EngineRequest> {
  const items = request.items;
  const tools = toolsText(request);
  const total = items.reduce((sum, item) => sum + itemText(item).length, tools.length);
  if (total <= SCREEN_ABOVE_CHARACTERS) return request;

  const truncating = !options.countOnly && request.truncation === "auto";
  const protectedStart = truncating ? protectedTailStart(items, request.protectedTailItems) : 0;
  const droppable = (index: number) => index < protectedStart && !isMessageFrom(items[index], "system");

  // What is never dropped first: tools, system messages, the protected tail.
  let fixed = await countTokensInSlices(tokenizer, tools, contextLength);
  for (const [index, item] of items.entries()) {
    if (fixed > contextLength) break;
    if (!droppable(index))
      fixed += await countTokensInSlices(tokenizer, itemText(item), contextLength - fixed);
  }
  if (fixed > contextLength) {
    throw contextLengthExceeded(
      contextLength,
      fixed,
      `a lower bound, counted in slices of its ${total} characters before the prompt was rendered${
        truncating
          ? ", without the turns truncation may drop (the current turn, system messages and tool definitions are never dropped)"
          : ""
      }`,
    );
  }
  if (!truncating) return request;

  // Newest droppable turns first: once they fill the context, every older one would be dropped anyway.
  let kept = fixed;
  let firstKept = 0;
  for (let index = protectedStart - 1; index >= 0; index--) {
    const item = items[index];
    if (item === undefined || !droppable(index)) continue;
    kept += await countTokensInSlices(tokenizer, itemText(item), contextLength - kept);
    if (kept > contextLength) {
      firstKept = index + 1;
      break;
    }
  }
  // Drop only whole turns: up to the next user message (the items before it render as whole history items).
  while (firstKept > 0 && firstKept < protectedStart && !isMessageFrom(items[firstKept], "user")) {
    firstKept += 1;
  }
  if (firstKept <= 0) return request;
  const remaining = items.filter((item, index) => index >= firstKept || !droppable(index));
  return { ...request, items: remaining };
}
