/**
 * closesThoughtItself: a wrapper that closes the new turn's thought itself (node-llama-cpp's Qwen wrapper with
 * thoughts "discourage", what effort none / minimal picks) gets no think-first run before a JSON or forced
 * answer (review: every such request ran twice and spent a token). Seen through lmhost's delegating wrappers.
 */
import { QwenChatWrapper } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import {
  closesThoughtItself,
  DocumentedFunctionsChatWrapper,
  ForcedFunctionCallChatWrapper,
} from "../../src/engine/llama/chat-wrapper.js";

describe("closesThoughtItself", () => {
  it("is true for Qwen with thoughts discouraged, also under the forced-call and documented wrappers", () => {
    const off = new QwenChatWrapper({ thoughts: "discourage" });
    expect(closesThoughtItself(off)).toBe(true);
    expect(closesThoughtItself(new ForcedFunctionCallChatWrapper(off))).toBe(true);
    expect(closesThoughtItself(new DocumentedFunctionsChatWrapper(off, {}))).toBe(true);
  });

  it("is false where the model may think", () => {
    const on = new QwenChatWrapper({ thoughts: "auto" });
    expect(closesThoughtItself(on)).toBe(false);
    expect(closesThoughtItself(new ForcedFunctionCallChatWrapper(on))).toBe(false);
  });
});
