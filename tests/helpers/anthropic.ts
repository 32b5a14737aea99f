/**
 * Helpers for the Anthropic Messages tests: the official SDK pointed at an in-process app, and a checker of
 * Anthropic's stream grammar, event by event (message_start first; blocks started, delta'd and stopped in
 * index order, one open at a time, a thinking block signed before it stops; message_delta with stop_reason
 * and usage; message_stop last).
 */
import Anthropic from "@anthropic-ai/sdk";
import { expect } from "vitest";
import type { App } from "../../src/server/deps.js";
import { parseSse } from "./fast-app.js";

export function anthropicClient(app: App, baseURL = "http://lmhost.test", apiKey = "test"): Anthropic {
  return new Anthropic({
    baseURL,
    apiKey,
    maxRetries: 0,
    fetch: async (url, init) => app.request(String(url), init as RequestInit),
  });
}

export interface StreamEvent {
  type: string;
  index?: number;
  [key: string]: unknown;
}

/** The JSON events of an SSE body, checking every `event:` line equals the JSON `type`. */
export async function readAnthropicEvents(response: Response): Promise<StreamEvent[]> {
  return parseSse(await response.text()).map((entry) => {
    const json = JSON.parse(entry.data) as StreamEvent;
    if (entry.event !== json.type)
      throw new Error(`event line '${entry.event ?? ""}' differs from JSON type '${json.type}'`);
    return json;
  });
}

/**
 * Checks the grammar of a complete message stream; returns the block types in order. Pings may come
 * anywhere after message_start.
 */
export function assertMessageStreamGrammar(events: readonly StreamEvent[]): string[] {
  const types = events.map((event) => event.type);
  expect(types[0]).toBe("message_start");
  expect(types.at(-1)).toBe("message_stop");
  expect(types.at(-2)).toBe("message_delta");
  expect(types.filter((type) => type === "message_start")).toHaveLength(1);
  expect(types.filter((type) => type === "message_delta")).toHaveLength(1);
  const start = events[0] as unknown as { message: Record<string, unknown> };
  expect(start.message).toMatchObject({ type: "message", role: "assistant", content: [], stop_reason: null });
  expect(String(start.message.id)).toMatch(/^msg_/);
  const blocks: string[] = [];
  let open: { index: number; type: string; signed: boolean } | undefined;
  for (const event of events.slice(1, -2)) {
    switch (event.type) {
      case "ping":
        break;
      case "content_block_start": {
        expect(open, "a block started while another was open").toBeUndefined();
        expect(event.index).toBe(blocks.length);
        const block = event.content_block as { type: string; id?: string };
        if (block.type === "tool_use") expect(block.id).toMatch(/^toolu_/);
        blocks.push(block.type);
        open = { index: event.index!, type: block.type, signed: false };
        break;
      }
      case "content_block_delta": {
        expect(open, "a delta outside a block").toBeDefined();
        expect(event.index).toBe(open!.index);
        const delta = event.delta as { type: string };
        const allowed: Record<string, string[]> = {
          text: ["text_delta"],
          thinking: ["thinking_delta", "signature_delta"],
          tool_use: ["input_json_delta"],
        };
        expect(allowed[open!.type]).toContain(delta.type);
        if (open!.type === "thinking") {
          expect(open!.signed, "a delta after the signature").toBe(false);
          if (delta.type === "signature_delta") open!.signed = true;
        }
        break;
      }
      case "content_block_stop":
        expect(open, "a stop outside a block").toBeDefined();
        expect(event.index).toBe(open!.index);
        if (open!.type === "thinking") expect(open!.signed, "a thinking block stopped unsigned").toBe(true);
        open = undefined;
        break;
      default:
        throw new Error(`unexpected event ${event.type} inside the message`);
    }
  }
  expect(open, "a block was never stopped").toBeUndefined();
  const delta = events.at(-2) as unknown as {
    delta: { stop_reason: string; stop_sequence: string | null };
    usage: { input_tokens: number; output_tokens: number; cache_read_input_tokens: number };
  };
  expect(["end_turn", "max_tokens", "stop_sequence", "tool_use"]).toContain(delta.delta.stop_reason);
  expect(delta.usage.output_tokens).toBeGreaterThan(0);
  expect(delta.usage.input_tokens + delta.usage.cache_read_input_tokens).toBeGreaterThan(0);
  return blocks;
}
