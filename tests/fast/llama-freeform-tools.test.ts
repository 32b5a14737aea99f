/**
 * How the llama engine handles freeform (custom) tools, without a model: which tool choices force a
 * freeform call (named, or `required` with a single freeform tool) and with which GBNF; freeform tools
 * offered through function calling get one string parameter `input`; the part emitter unwraps
 * `{"input": ...}` into the raw input, and streams a forced call's answer as the call's input.
 */
import { describe, expect, it } from "vitest";
import { AsyncQueue } from "../../src/engine/llama/async-queue.js";
import { freeformInput, PartEmitter } from "../../src/engine/llama/generation.js";
import { freeformFunctionParams, selectFunctions } from "../../src/engine/llama/prompt.js";
import type { EnginePart, FunctionToolDefinition } from "../../src/engine/types.js";

const patch: FunctionToolDefinition = {
  name: "apply_patch",
  freeform: { grammar: { syntax: "lark", definition: 'start: "*** Begin Patch" LF\n%import common.LF' } },
};
const note: FunctionToolDefinition = { name: "note", freeform: {} };
const weather: FunctionToolDefinition = {
  name: "weather",
  parameters: { type: "object", properties: { city: { type: "string" } } },
};

async function drain(queue: AsyncQueue<EnginePart>): Promise<EnginePart[]> {
  queue.end();
  const parts: EnginePart[] = [];
  for await (const part of queue) parts.push(part);
  return parts;
}

describe("freeform tools in the llama engine", () => {
  it("forces a freeform call when it is named, or the only tool under required", () => {
    const named = selectFunctions([weather, patch], { name: "apply_patch" });
    expect(named.forcedFreeform?.name).toBe("apply_patch");
    expect(named.forcedFreeform?.gbnf).toContain('"*** Begin Patch"');
    expect(selectFunctions([note], "required").forcedFreeform).toEqual({ name: "note", gbnf: undefined });
    // Several tools under required, or auto: offered through function calling, nothing forced as freeform.
    expect(selectFunctions([note, patch], "required").forcedFreeform).toBeUndefined();
    expect(selectFunctions([patch], "auto").forcedFreeform).toBeUndefined();
    expect(selectFunctions([weather, patch], { name: "weather" }).forcedFreeform).toBeUndefined();
  });

  it("offers freeform tools as functions with one string parameter input", () => {
    const selection = selectFunctions([weather, note], "auto");
    expect(selection.functions?.note).toEqual({ params: freeformFunctionParams });
    expect(freeformFunctionParams).toEqual({ type: "object", properties: { input: { type: "string" } } });
  });

  it("unwraps {input} of a freeform call made through function calling", async () => {
    expect(freeformInput({ input: "raw text" })).toBe("raw text");
    expect(freeformInput("already raw")).toBe("already raw");
    expect(freeformInput({ other: 1 })).toBe('{"other":1}');
    const queue = new AsyncQueue<EnginePart>();
    const emitter = new PartEmitter(queue, new Set(["note"]));
    emitter.onFunctionCallParamsChunk({
      callIndex: 0,
      functionName: "note",
      paramsChunk: '{"input": "hel',
      done: false,
    });
    emitter.onFunctionCall("note", { input: "hello\nworld" });
    const parts = await drain(queue);
    expect(parts.map((part) => part.type)).toEqual(["tool-call-start", "tool-call-delta", "tool-call-end"]);
    expect(parts[1]).toMatchObject({ argumentsDelta: "hello\nworld" });
    expect(parts[2]).toMatchObject({ name: "note", arguments: "hello\nworld" });
  });

  it("streams a forced call's answer as the call's input", async () => {
    const queue = new AsyncQueue<EnginePart>();
    const emitter = new PartEmitter(queue);
    emitter.answerAsToolInput("apply_patch");
    const chunk = (text: string) => ({ type: undefined, segmentType: undefined, text, tokens: [] });
    emitter.onResponseChunk(chunk("*** Begin"));
    emitter.onResponseChunk(chunk(""));
    emitter.onResponseChunk(chunk(" Patch\n"));
    emitter.endToolInput();
    const parts = await drain(queue);
    expect(parts).toEqual([
      { type: "tool-call-start", callId: expect.stringMatching(/^call_/) as unknown, name: "apply_patch" },
      { type: "tool-call-delta", callId: expect.any(String) as unknown, argumentsDelta: "*** Begin" },
      { type: "tool-call-delta", callId: expect.any(String) as unknown, argumentsDelta: " Patch\n" },
      {
        type: "tool-call-end",
        callId: expect.any(String) as unknown,
        name: "apply_patch",
        arguments: "*** Begin Patch\n",
      },
    ]);
  });
});
