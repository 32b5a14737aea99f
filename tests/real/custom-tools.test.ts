/**
 * Custom (freeform) tools on the real tiny model (stories260K-chatml, one thread) through the HTTP API
 * and the official `openai` SDK's stream accumulator: a forced call (`tool_choice: {type: "custom"}`) of a
 * tool with a small Lark grammar, of a tool with a regex and of a tool with Codex's apply_patch grammar with
 * bounded repetitions, several samples each at temperature 1 with fixed seeds: every input is a sentence of
 * its grammar by an independent check (hand-written RegExps, the hand-written apply_patch recognizer).
 * With Codex's own (unbounded) grammar the tiny model never ends the patch, so each sample runs to the
 * token cap: what it wrote is a viable prefix of a patch and the call closes as incomplete. Every stream
 * is accepted by the accumulator and validates against OpenAI's spec; outputs are bounded by
 * max_output_tokens. `required` with a single custom tool forces it too. Also: an unforced custom tool offered through function calling still yields a
 * spec-valid response.
 */
import type { ResponseStreamEvent } from "openai/resources/responses/responses";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  codexApplyPatchGrammar,
  isApplyPatchPrefix,
  isApplyPatchSentence,
} from "../helpers/apply-patch-grammar.js";
import { createRealApp, type RealApp } from "../helpers/real-app.js";
import { loadSpecValidator, type SpecValidator } from "../helpers/spec-validator.js";

const CHATML = "stories260K-chatml";
const openResponses = { openResponses: false };

let real: RealApp;
let spec: SpecValidator;
beforeAll(async () => {
  spec = loadSpecValidator();
  real = await createRealApp({ parallel: 1 });
});
afterAll(async () => {
  await real?.close();
});

interface Sample {
  status: string | undefined;
  input: string;
  events: ResponseStreamEvent[];
}

async function forcedCall(
  format: { syntax: "lark" | "regex"; definition: string },
  seed: number,
  maxOutputTokens: number,
): Promise<Sample> {
  const stream = real.client.responses.stream({
    model: CHATML,
    input: "Once upon a time, Lily wrote a note.",
    tools: [
      {
        type: "custom",
        name: "write_note",
        description: "Writes a note.",
        format: { type: "grammar", ...format },
      },
    ],
    tool_choice: { type: "custom", name: "write_note" },
    temperature: 1,
    max_output_tokens: maxOutputTokens,
    // `seed` is an lmhost extension of the request.
    ...({ seed } as object),
  });
  const events: ResponseStreamEvent[] = [];
  for await (const event of stream) {
    spec.assertStreamEvent(event, openResponses);
    events.push(event);
  }
  const final = await stream.finalResponse();
  spec.assertResponse(final, openResponses);
  const call = final.output.find((item) => item.type === "custom_tool_call");
  expect(call, JSON.stringify(final.output)).toBeDefined();
  expect(call).toMatchObject({ name: "write_note", call_id: expect.any(String) as unknown });
  expect(call?.id).toMatch(/^ctc_/);
  return { status: final.status, input: call?.type === "custom_tool_call" ? call.input : "", events };
}

/** Four samples at temperature 1 with fixed seeds: each completes (the grammars are bounded) as a sentence. */
async function sampleForced(
  format: { syntax: "lark" | "regex"; definition: string },
  isSentence: (input: string) => boolean,
  maxOutputTokens: number,
): Promise<void> {
  const samples: Sample[] = [];
  for (const seed of [1, 2, 3, 4]) samples.push(await forcedCall(format, seed, maxOutputTokens));
  const report = JSON.stringify(
    samples.map((sample) => ({ status: sample.status, input: sample.input })),
    null,
    1,
  );
  const completed = samples.filter((sample) => sample.status === "completed");
  expect(completed.length, report).toBe(samples.length);
  for (const sample of completed) {
    expect(isSentence(sample.input), report).toBe(true);
    const types = sample.events.map((event) => event.type);
    expect(types.slice(2, 4), report).toEqual([
      "response.output_item.added",
      "response.custom_tool_call_input.delta",
    ]);
    expect(types.slice(-3), report).toEqual([
      "response.custom_tool_call_input.done",
      "response.output_item.done",
      "response.completed",
    ]);
  }
}

describe("forced custom tools on the real tiny model", () => {
  it("a small Lark grammar: every input is a sentence", async () => {
    const definition = [
      'start: greeting " " NAME "." (" " WORD)~0..3 "\\n"',
      'greeting: "Hello" | "Hi" -> short',
      "NAME: UCASE_LETTER LCASE_LETTER ~ 1..8",
      "WORD: LCASE_LETTER ~ 1..8",
      "%import common (UCASE_LETTER, LCASE_LETTER)",
    ].join("\n");
    await sampleForced(
      { syntax: "lark", definition },
      (input) => /^(Hello|Hi) [A-Z][a-z]{1,8}\.( [a-z]{1,8}){0,3}\n$/.test(input),
      48,
    );
  }, 120_000);

  it("a regex: every input matches it whole", async () => {
    await sampleForced(
      { syntax: "regex", definition: "(yes|no), [a-z]{1,8}( [a-z]{1,8}){0,3}\\." },
      (input) => /^(yes|no), [a-z]{1,8}( [a-z]{1,8}){0,3}\.$/.test(input),
      48,
    );
  }, 120_000);

  it("Codex's apply_patch grammar with bounded repetitions: every input is a patch Codex's grammar accepts", async () => {
    // The same rules with their repetitions bounded (a sub-language of Codex's grammar), so the tiny model,
    // which never chooses to end a story, must finish within the token cap.
    const definition = [
      "start: begin_patch hunk ~ 1..2 end_patch",
      'begin_patch: "*** Begin Patch" LF',
      'end_patch: "*** End Patch" LF?',
      "hunk: add_hunk | delete_hunk",
      'add_hunk: "*** Add File: " filename LF add_line ~ 1..2',
      'delete_hunk: "*** Delete File: " filename LF',
      "filename: /[a-z]{1,8}\\.txt/",
      'add_line: "+" /[^\\n]{0,24}/ LF -> line',
      "%import common.LF",
    ].join("\n");
    await sampleForced({ syntax: "lark", definition }, isApplyPatchSentence, 160);
  }, 120_000);

  it("Codex's own apply_patch grammar: every input, cut at the token cap or not, follows it", async () => {
    // The tiny model never writes "*** End Patch" by itself (it tells stories): each sample runs to the
    // cap, and what it wrote is a viable prefix of a patch (some completion makes it a sentence).
    for (const seed of [1, 2, 3]) {
      const sample = await forcedCall({ syntax: "lark", definition: codexApplyPatchGrammar }, seed, 120);
      const report = JSON.stringify(sample.input);
      expect(sample.input.startsWith("*** Begin Patch\n"), report).toBe(true);
      if (sample.status === "completed") expect(isApplyPatchSentence(sample.input), report).toBe(true);
      else {
        expect(sample.status).toBe("incomplete");
        expect(isApplyPatchPrefix(sample.input), report).toBe(true);
        // The cut call is closed as incomplete: done events still come, with the input so far.
        expect(sample.events.map((event) => event.type).slice(-3)).toEqual([
          "response.custom_tool_call_input.done",
          "response.output_item.done",
          "response.incomplete",
        ]);
      }
    }
  }, 120_000);
});

describe("required with one custom tool on the real tiny model", () => {
  it("forces that tool: the input matches its regex", async () => {
    const response = await real.client.responses.create({
      model: CHATML,
      input: "Once upon a time",
      tools: [
        {
          type: "custom",
          name: "answer",
          format: { type: "grammar", syntax: "regex", definition: "(yes|no)\\." },
        },
      ],
      tool_choice: "required",
      temperature: 1,
      max_output_tokens: 16,
    });
    spec.assertResponse(response, openResponses);
    expect(response.status).toBe("completed");
    expect(response.output).toEqual([
      expect.objectContaining({ type: "custom_tool_call", name: "answer", status: "completed" }),
    ]);
    const call = response.output[0];
    expect(call?.type === "custom_tool_call" ? call.input : "").toMatch(/^(yes|no)\.$/);
  }, 60_000);
});

describe("unforced custom tools on the real tiny model", () => {
  it("are offered through function calling and the response validates", async () => {
    const response = await real.client.responses.create({
      model: CHATML,
      input: "Once upon a time",
      tools: [{ type: "custom", name: "write_note", description: "Writes a note." }],
      max_output_tokens: 24,
      temperature: 0,
    });
    spec.assertResponse(response, openResponses);
    for (const item of response.output) {
      expect(["message", "custom_tool_call"]).toContain(item.type);
    }
  }, 60_000);
});
