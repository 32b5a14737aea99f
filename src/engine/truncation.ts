/**
 * The part of a conversation `truncation: "auto"` must never drop, shared by the engines so they agree: the
 * current turn, and more when a caller asks (`EngineRequest.protectedTailItems`).
 */
import { createHash } from "node:crypto";
import type { ConversationItem } from "./types.js";

/**
 * Index of the first protected item: items at or after it are never dropped. It is the earliest of
 * - the start of the last `protectedTailItems` items (absent or NaN: none; Infinity: all);
 * - the first item after the last assistant message / reasoning / function call;
 * - the last user message;
 * moved back to the start of the assistant turn holding the call of any protected function result, which
 * renders together with it.
 */
export function protectedTailStart(
  items: readonly ConversationItem[],
  protectedTailItems: number | undefined,
): number {
  const requested =
    protectedTailItems === undefined || Number.isNaN(protectedTailItems)
      ? 0
      : Math.max(0, Math.min(items.length, Math.floor(protectedTailItems)));
  let lastModelOutput = -1;
  let lastUser = -1;
  items.forEach((item, index) => {
    if (item.type === "message" && item.role === "user") lastUser = index;
    else if (item.type !== "message" || item.role === "assistant") {
      if (item.type !== "function-result") lastModelOutput = index;
    }
  });
  let start = Math.min(items.length - requested, lastModelOutput + 1);
  if (lastUser >= 0) start = Math.min(start, lastUser);

  // A protected result keeps its call, and the call's whole assistant turn (it renders as one unit).
  const callIndex = new Map<string, number>();
  items.forEach((item, index) => {
    if (item.type === "function-call" && !callIndex.has(item.callId)) callIndex.set(item.callId, index);
  });
  let earliest = start;
  for (let index = start; index < items.length; index++) {
    const item = items[index];
    if (item?.type !== "function-result") continue;
    const call = callIndex.get(item.callId);
    if (call !== undefined && call < earliest) earliest = call;
  }
  while (earliest > 0 && earliest < start && isAssistantTurnItem(items[earliest - 1])) earliest--;
  return Math.min(start, earliest);
}

/** Items that render inside one assistant turn (between user / system messages). */
export function isAssistantTurnItem(item: ConversationItem | undefined): boolean {
  return item !== undefined && (item.type !== "message" || item.role === "assistant");
}

/**
 * Where recent `truncation: "auto"` drops started the kept history (its first two items), per loaded
 * model: a bounded, insertion-ordered set of content hashes. A conversation's next turn starts at the
 * same place again, so its prompt shares the prefix its sequence's KV cache holds (see the llama engine's
 * fitHistory). Two items, not one, so a short message repeated elsewhere ("ok") rarely matches.
 */
export class TruncationStarts<Item> {
  private readonly keys = new Set<string>();

  constructor(private readonly capacity = 64) {}

  add(item: Item): void {
    const key = keyOf(item);
    this.keys.delete(key);
    this.keys.add(key);
    for (const oldest of this.keys) {
      if (this.keys.size <= this.capacity) break;
      this.keys.delete(oldest);
    }
  }

  has(item: Item): boolean {
    return this.keys.has(keyOf(item));
  }
}

function keyOf(item: unknown): string {
  return createHash("sha256").update(JSON.stringify(item)).digest("base64");
}
