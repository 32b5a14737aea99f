/**
 * Huge fields never freeze the server (real engine, stories260K-chatml, in-process HTTP): a text field over
 * the cap is a 400 naming it; a prompt that cannot fit the context is refused after counting a slice or
 * two, never tokenized whole on the event loop, through /v1/responses and /input_tokens alike; with
 * truncation "auto" a huge old history is dropped without rendering it all. A concurrent `/health` poller
 * shows the event loop stays free (before: 5–57 s frozen for these requests; the bound here has a wide
 * margin because the machine is shared). The slice count is a lower bound of the exact count.
 */
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_TEXT_CHARACTERS } from "../../src/api/openai/responses/request-schema.js";
import { countTokensInSlices } from "../../src/engine/llama/prompt-size.js";
import { BASE_URL, createRealApp, type RealApp } from "../helpers/real-app.js";
import { randomLlamaModel, storiesModel } from "../helpers/paths.js";

let real: RealApp;
const model = "stories260K-chatml";

beforeAll(async () => {
  real = await createRealApp({ parallel: 2 });
  // Load the model before any timing.
  expect((await real.post("/v1/responses", { model, input: "hi", max_output_tokens: 2 })).status).toBe(200);
});

afterAll(async () => {
  await real?.close();
});

/** Runs `request` while polling /health every 5 ms; the slowest /health answer is the freeze others see. */
async function whilePolling<Result>(
  request: () => Promise<Result>,
): Promise<{ result: Result; healthMaxMilliseconds: number; healthAnswers: number }> {
  let polling = true;
  let healthMaxMilliseconds = 0;
  let healthAnswers = 0;
  const poller = (async () => {
    while (polling) {
      // From the moment the next poll is scheduled until its answer: a frozen event loop delays both.
      const started = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 5));
      const response = await real.app.request(`${BASE_URL}/health`);
      expect(response.status).toBe(200);
      healthMaxMilliseconds = Math.max(healthMaxMilliseconds, performance.now() - started - 5);
      healthAnswers += 1;
    }
  })();
  // Let the poller start before the request takes the event loop.
  await new Promise((resolve) => setTimeout(resolve, 20));
  try {
    const result = await request();
    return { result, healthMaxMilliseconds, healthAnswers };
  } finally {
    polling = false;
    await poller;
  }
}

/** A /health answer slower than this is a freeze (each of these requests froze it for 5 s or more). */
const FREEZE_MILLISECONDS = 1_000;

describe("huge fields", () => {
  it("a text field over the cap is a 400 naming it, before anything reads the text", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ instructions: "a".repeat(MAX_TEXT_CHARACTERS + 1) }, "instructions"],
      [{ input: "a".repeat(MAX_TEXT_CHARACTERS + 1) }, "input"],
      [
        {
          input: [
            { role: "user", content: [{ type: "input_text", text: "a".repeat(MAX_TEXT_CHARACTERS + 1) }] },
          ],
        },
        "input[0].content[0].text",
      ],
    ];
    for (const [fields, param] of cases) {
      const response = await real.post("/v1/responses", { model, input: "hi", ...fields });
      expect(response.status).toBe(400);
      const body = (await response.json()) as { error: { param: string; message: string } };
      expect(body.error.param).toBe(param);
    }
  });

  it("10M characters of instructions: context_length_exceeded without freezing, on both endpoints", async () => {
    const instructions = "word ".repeat(MAX_TEXT_CHARACTERS / 5);
    for (const path of ["/v1/responses", "/v1/responses/input_tokens"]) {
      const { result, healthMaxMilliseconds } = await whilePolling(async () =>
        real.post(path, {
          model,
          input: "hi",
          instructions,
          ...(path === "/v1/responses" ? { max_output_tokens: 4 } : {}),
        }),
      );
      expect(result.status).toBe(400);
      const body = (await result.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("context_length_exceeded");
      expect(body.error.message).toContain("a lower bound");
      expect(healthMaxMilliseconds).toBeLessThan(FREEZE_MILLISECONDS);
    }
  });

  it("an input string at the cap is refused without freezing", async () => {
    const started = performance.now();
    const { result, healthMaxMilliseconds } = await whilePolling(async () =>
      real.post("/v1/responses", { model, input: "a".repeat(MAX_TEXT_CHARACTERS), max_output_tokens: 4 }),
    );
    expect(result.status).toBe(400);
    expect(((await result.json()) as { error: { code: string } }).error.code).toBe("context_length_exceeded");
    expect(healthMaxMilliseconds).toBeLessThan(FREEZE_MILLISECONDS);
    // Tokenizing it whole took 12–20 s here (in pieces, so /health alone does not show it).
    expect(performance.now() - started).toBeLessThan(5 * FREEZE_MILLISECONDS);
  });

  it("truncation auto drops a huge old history without rendering it all, and answers", async () => {
    const turn = "The cat sat on the mat and looked at the moon. ".repeat(400); // ~19,000 characters
    const history = Array.from({ length: 150 }, (_, index) => ({
      role: index % 2 === 0 ? "user" : "assistant",
      content: turn,
    }));
    const { result, healthMaxMilliseconds } = await whilePolling(async () =>
      real.post("/v1/responses", {
        model,
        input: [...history, { role: "user", content: "Once upon a time" }],
        truncation: "auto",
        max_output_tokens: 8,
        temperature: 0,
      }),
    );
    expect(result.status).toBe(200);
    const body = (await result.json()) as {
      status: string;
      output_text?: string;
      output: { content?: { text: string }[] }[];
      usage: { input_tokens: number; output_tokens: number };
    };
    // Eight tokens rarely end the tiny model's story: completed or incomplete (max_output_tokens) both answer.
    expect(["completed", "incomplete"]).toContain(body.status);
    expect(body.usage.output_tokens).toBeGreaterThan(0);
    expect(body.usage.input_tokens).toBeLessThan(2048);
    expect(healthMaxMilliseconds).toBeLessThan(FREEZE_MILLISECONDS);
  });
});

describe("countTokensInSlices", () => {
  let llama: Llama;
  const models: LlamaModel[] = [];

  beforeAll(async () => {
    llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
    for (const modelPath of [storiesModel, randomLlamaModel])
      models.push(await llama.loadModel({ modelPath }));
  });

  afterAll(async () => {
    for (const loaded of models) await loaded.dispose();
    await llama?.dispose();
  });

  it("is a lower bound of the exact count, and a close one", async () => {
    const words = [
      "the",
      "cat",
      "über",
      "naïve",
      "日本語",
      "🙂",
      "  ",
      "\n",
      "supercalifragilistic",
      "42",
      "{}",
    ];
    let seed = 7;
    const next = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed;
    };
    for (const loaded of models) {
      for (const length of [40_000, 100_000]) {
        let text = "";
        while (text.length < length) text += words[next() % words.length] + (next() % 3 === 0 ? "" : " ");
        const exact = loaded.tokenize(text, false).length;
        const sliced = await countTokensInSlices(loaded.tokenizer, text, Number.POSITIVE_INFINITY);
        expect(sliced).toBeLessThanOrEqual(exact);
        expect(sliced).toBeGreaterThan(exact * 0.95);
      }
    }
  });

  it("stops counting soon after the limit", async () => {
    const loaded = models[0]!;
    const text = "word ".repeat(400_000);
    const counted = await countTokensInSlices(loaded.tokenizer, text, 100);
    expect(counted).toBeGreaterThan(100);
    expect(counted).toBeLessThan(loaded.tokenize(text.slice(0, 40_000), false).length);
  });
});
