/**
 * Reasoning items through the HTTP layer with the scripted engine: the server's reasoningSummary option
 * (on by default, "none" turns summaries off), encrypted_content sealed under the key createApp is given
 * (so a second app with the same key opens it, one with another key refuses it with a 400 naming input[i]).
 */
import { describe, expect, it } from "vitest";
import { newReasoningKey } from "../../src/responses/reasoning-seal.js";
import { createFastApp, TEST_MODEL } from "../helpers/fast-app.js";

interface ReasoningOutputItem {
  type: string;
  id: string;
  summary: { text: string }[];
  encrypted_content?: string;
}

const respond = () => ({ reasoning: "Thinking it over.", text: "Done." });
const ask = {
  model: TEST_MODEL,
  input: "Hi",
  reasoning: { effort: "low", summary: "auto" },
  include: ["reasoning.encrypted_content"],
  store: false,
};

async function reasoningItem(response: Response): Promise<ReasoningOutputItem> {
  expect(response.status).toBe(200);
  const body = (await response.json()) as { output: ReasoningOutputItem[] };
  const item = body.output.find((output) => output.type === "reasoning");
  if (item === undefined) throw new Error("no reasoning item");
  return item;
}

describe("reasoning items over HTTP", () => {
  it("summarises by default; --reasoning-summary none leaves summaries empty", async () => {
    const on = await reasoningItem(await createFastApp({ respond }).post("/v1/responses", ask));
    expect(on.summary.map((part) => part.text)).toEqual(["Thinking it over."]);
    expect(on.encrypted_content).not.toContain("Thinking");
    const off = await reasoningItem(
      await createFastApp({ respond, reasoningSummary: "none" }).post("/v1/responses", ask),
    );
    expect(off.summary).toEqual([]);
    expect(typeof off.encrypted_content).toBe("string");
  });

  it("opens encrypted_content under the same key, refuses it under another with a 400 naming input[i]", async () => {
    const key = newReasoningKey();
    const item = await reasoningItem(
      await createFastApp({ respond, reasoningKey: key }).post("/v1/responses", ask),
    );
    const input = [
      { role: "user", content: "Hi" },
      { type: "reasoning", id: item.id, summary: [], encrypted_content: item.encrypted_content },
      { role: "user", content: "Again" },
    ];
    const restarted = createFastApp({ respond, reasoningKey: key });
    expect((await restarted.post("/v1/responses", { ...ask, input })).status).toBe(200);
    // The scripted engine streams words with a trailing space: the sealed text is exactly what it streamed.
    expect(restarted.engineRequests[0]?.items).toContainEqual({
      type: "reasoning",
      text: "Thinking it over. ",
    });
    const other = await createFastApp({ respond, reasoningKey: newReasoningKey() }).post("/v1/responses", {
      ...ask,
      input,
    });
    expect(other.status).toBe(400);
    const error = ((await other.json()) as { error: { param: string; code: string } }).error;
    expect(error).toMatchObject({ param: "input[1].encrypted_content", code: "invalid_encrypted_content" });
  });
});
