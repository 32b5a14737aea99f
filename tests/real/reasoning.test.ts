/**
 * Reasoning on the REAL engine: stories260K-chatml served under the fixture thinking template
 * (../shared/templates/thinking-chatml.jinja, whose generation prompt opens `<think>` and which reads
 * `enable_thinking`). Small budgets from config (low 8, high 32) keep it fast: low thinks fewer tokens than
 * high, none has no reasoning item, max_output_tokens spent inside the thought ends `incomplete` with the
 * reasoning item only, the stream orders reasoning deltas before text, and usage counts them.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readResponseEvents } from "../helpers/fast-app.js";
import { sharedDir } from "../helpers/paths.js";
import { createRealApp, type RealApp } from "../helpers/real-app.js";
import { loadSpecValidator, type SpecValidator } from "../helpers/spec-validator.js";

const CHATML = "stories260K-chatml";
const template = readFileSync(path.join(sharedDir, "templates", "thinking-chatml.jinja"), "utf8");

interface OutputItem {
  type: string;
  content?: { type: string; text: string }[];
  summary?: { type: string; text: string }[];
}
interface ResponseBody {
  status: string;
  output: OutputItem[];
  reasoning: unknown;
  usage: { output_tokens: number; output_tokens_details: { reasoning_tokens: number } };
  incomplete_details: { reason: string } | null;
}

let real: RealApp;
let spec: SpecValidator;

beforeAll(async () => {
  real = await createRealApp({ chatTemplate: template, reasoningBudgets: { low: 8, high: 32 } });
  spec = loadSpecValidator();
}, 60_000);

afterAll(async () => {
  await real.close();
});

async function create(body: Record<string, unknown>): Promise<ResponseBody> {
  const response = await real.post("/v1/responses", { model: CHATML, input: "Tell me a story.", ...body });
  const json = (await response.json()) as ResponseBody;
  expect(response.status, JSON.stringify(json)).toBe(200);
  // Open Responses lists no "minimal" effort; OpenAI's spec does (the echo is what the client sent).
  const minimal = (body["reasoning"] as { effort?: string } | undefined)?.effort === "minimal";
  spec.assertResponse(json, { openResponses: !minimal });
  return json;
}

describe("reasoning effort on the fixture thinking template", () => {
  it("low thinks fewer tokens than high, each within its budget, and the answer follows the thought", async () => {
    const low = await create({ reasoning: { effort: "low" }, max_output_tokens: 64, temperature: 0 });
    const high = await create({ reasoning: { effort: "high" }, max_output_tokens: 64, temperature: 0 });
    for (const [response, budget] of [
      [low, 8],
      [high, 32],
    ] as const) {
      expect(response.output.map((item) => item.type)).toEqual(["reasoning", "message"]);
      // A budget of N lets N thought tokens through; the thought is then closed and the answer begins.
      expect(response.usage.output_tokens_details.reasoning_tokens).toBe(budget);
      expect(response.usage.output_tokens).toBeGreaterThan(budget);
    }
    expect(low.usage.output_tokens_details.reasoning_tokens).toBeLessThan(
      high.usage.output_tokens_details.reasoning_tokens,
    );
    expect(low.reasoning).toMatchObject({ effort: "low" });
  }, 60_000);

  it.each(["none", "minimal"] as const)(
    "%s turns thinking off through the template's enable_thinking: no reasoning item, 0 reasoning tokens",
    async (effort) => {
      const response = await create({ reasoning: { effort }, max_output_tokens: 24 });
      expect(response.output.map((item) => item.type)).toEqual(["message"]);
      expect(response.usage.output_tokens_details.reasoning_tokens).toBe(0);
      expect(response.reasoning).toMatchObject({ effort });
    },
    60_000,
  );

  it.each([1, 2, 3])(
    "max_output_tokens spent inside the thought: incomplete, with the reasoning item only (run %i)",
    async () => {
      const response = await create({ reasoning: { effort: "xhigh" }, max_output_tokens: 16 });
      expect(response.status).toBe("incomplete");
      expect(response.incomplete_details).toEqual({ reason: "max_output_tokens" });
      expect(response.output.map((item) => item.type)).toEqual(["reasoning"]);
      expect(response.usage.output_tokens).toBe(16);
      expect(response.usage.output_tokens_details.reasoning_tokens, JSON.stringify(response)).toBe(16);
    },
    60_000,
  );

  it("streams the reasoning item token by token before the message, spec-valid, with usage counting it", async () => {
    const response = await real.post("/v1/responses", {
      model: CHATML,
      input: "Tell me a story.",
      reasoning: { effort: "low" },
      max_output_tokens: 48,
      stream: true,
    });
    const events = await readResponseEvents(response);
    for (const event of events) spec.assertStreamEvent(event);
    const types = events.map((event) => event.type as string);
    const firstText = types.indexOf("response.output_text.delta");
    const reasoningDeltas = types.filter((type) => type === "response.reasoning_text.delta").length;
    expect(reasoningDeltas).toBeGreaterThan(1);
    expect(firstText).toBeGreaterThan(types.lastIndexOf("response.reasoning_text.delta"));
    const order = types.filter(
      (type) =>
        type === "response.output_item.added" ||
        type === "response.reasoning_text.done" ||
        type === "response.output_item.done",
    );
    expect(order).toEqual([
      "response.output_item.added",
      "response.reasoning_text.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.output_item.done",
    ]);
    // The story may run past max_output_tokens (incomplete) or end (completed); the thought is 8 tokens either way.
    const final = events.at(-1) as { type: string; response: ResponseBody };
    expect(["response.completed", "response.incomplete"]).toContain(final.type);
    expect(final.response.usage.output_tokens_details.reasoning_tokens).toBe(8);
  }, 60_000);
});
