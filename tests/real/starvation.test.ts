/**
 * Continuous batching admits newcomers (real engine, stories260K, 4 sequences, one thread): a short request
 * that arrives while two long generations stream, and whose sequence still holds an older conversation, gets
 * its first token while both long ones are still streaming. Without lmhost's patch of node-llama-cpp
 * (patches/node-llama-cpp+3.21.1.patch) the erase of the old conversation's tokens waited for the context
 * lock, which the batch dispatcher held as long as any decode was queued: the newcomer waited ~4.5 s, until
 * a long generation ended.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BASE_URL, createRealApp, type RealApp } from "../helpers/real-app.js";

let real: RealApp;
const model = "stories260K";

beforeAll(async () => {
  real = await createRealApp({ parallel: 4 });
});

afterAll(async () => {
  await real?.close();
});

/** Streams a response; resolves when its first text delta arrives and when it ends. */
function streamed(input: string, maxOutputTokens: number) {
  let firstDelta!: () => void;
  const firstText = new Promise<void>((resolve) => (firstDelta = resolve));
  const done = (async () => {
    const response = await real.app.request(`${BASE_URL}/v1/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model,
        input,
        max_output_tokens: maxOutputTokens,
        temperature: 0,
        stream: true,
      }),
    });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    for (;;) {
      const { done: ended, value } = await reader.read();
      if (ended) break;
      text += decoder.decode(value, { stream: true });
      if (text.includes("response.output_text.delta")) firstDelta();
    }
    return text;
  })();
  return { firstText, done };
}

describe("starvation", () => {
  it("a newcomer on a used sequence starts while two long generations still stream", async () => {
    // Every sequence holds an older conversation, so the newcomer's sequence must erase its tokens.
    await Promise.all(
      ["One day", "Once there", "A cat", "The sun"].map(async (input) =>
        real.post("/v1/responses", { model, input: `${input} was`, max_output_tokens: 40, temperature: 0 }),
      ),
    );
    const longOnes = [streamed("Lily went to the park", 1_000), streamed("Tom had a big dog", 1_000)];
    await Promise.all(longOnes.map(async (long) => long.firstText));
    const finished = longOnes.map(() => false);
    longOnes.forEach((long, index) => void long.done.then(() => (finished[index] = true)));

    const newcomer = streamed("A short one", 4);
    await newcomer.firstText;
    // Both long generations were still streaming when the newcomer's first token arrived.
    expect(finished).toEqual([false, false]);
    expect(await newcomer.done).toMatch(/event: response\.(completed|incomplete)/);
    await Promise.all(longOnes.map(async (long) => long.done));
    expect(finished).toEqual([true, true]);
  });
});
