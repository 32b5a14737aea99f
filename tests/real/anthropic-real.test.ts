/**
 * Anthropic's Messages API on the REAL engine (node-llama-cpp on the bundled tiny models) through the
 * official @anthropic-ai/sdk, unmodified: messages.create and messages.stream with a forced tool round trip
 * (tool_choice tool → tool_use under grammar → a tool_result turn), thinking blocks under the fixture
 * thinking template with budget_tokens bounding the thought, stop_sequences found in a greedy answer, the
 * stream grammar event by event, count_tokens against the usage of the same prompt, a full queue (429), and
 * a spawned `lmhost serve --api-key` reached over a real socket with x-api-key.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { anthropicClient, assertMessageStreamGrammar, readAnthropicEvents } from "../helpers/anthropic.js";
import { storiesModel, templatesDir } from "../helpers/paths.js";
import { createRealApp, type RealApp } from "../helpers/real-app.js";
import { spawnServer } from "../helpers/spawn-server.js";

const PLAIN = "stories260K";
const CHATML = "stories260K-chatml";
const template = readFileSync(path.join(templatesDir, "thinking-chatml.jinja"), "utf8");

const lookupTool = {
  name: "lookup",
  description: "Looks a word up.",
  input_schema: {
    type: "object" as const,
    properties: { word: { type: "string", enum: ["cat", "dog"] } },
    required: ["word"],
  },
};

/**
 * Greedy sampling, so answers are deterministic. @anthropic-ai/sdk 1.10.0 no longer types `temperature`
 * (Claude Code and older SDKs still send it); spreading it keeps the SDK's types and sends it all the same.
 */
const GREEDY = { temperature: 0 } as Record<never, never>;

let real: RealApp;
let client: Anthropic;

beforeAll(async () => {
  // The ChatML model thinks under the fixture template; stories260K keeps its own (no thought).
  real = await createRealApp({ modelOverrides: { [CHATML]: { chatTemplate: template } } });
  client = anthropicClient(real.app);
}, 60_000);

afterAll(async () => {
  await real.close();
});

describe("messages on the real engine", () => {
  it("create: a text answer with usage; count_tokens counts the same prompt", async () => {
    const params = {
      model: PLAIN,
      max_tokens: 12,
      ...GREEDY,
      system: "You tell stories.",
      messages: [{ role: "user" as const, content: "Once upon a time" }],
    };
    const message = await client.messages.create(params);
    expect(message.id).toMatch(/^msg_/);
    expect(message.model).toBe(PLAIN);
    expect(message.content).toHaveLength(1);
    expect(message.content[0]!.type).toBe("text");
    expect((message.content[0] as Anthropic.TextBlock).text.length).toBeGreaterThan(0);
    expect(["end_turn", "max_tokens"]).toContain(message.stop_reason);
    expect(message.usage.output_tokens).toBeGreaterThan(0);
    expect(message.usage.output_tokens).toBeLessThanOrEqual(12);
    const count = await client.messages.countTokens({
      model: params.model,
      system: params.system,
      messages: params.messages,
    });
    expect(message.usage.input_tokens + message.usage.cache_read_input_tokens!).toBe(count.input_tokens);
  }, 60_000);

  it("stop_sequences: a word of the greedy answer stops the same generation there (stop_reason stop_sequence)", async () => {
    const params = {
      model: PLAIN,
      max_tokens: 40,
      ...GREEDY,
      messages: [{ role: "user" as const, content: "Once upon a time" }],
    };
    const free = await client.messages.create(params);
    const text = (free.content[0] as Anthropic.TextBlock).text;
    const words = text.match(/ [a-z]{3,}/g) ?? [];
    expect(words.length, text).toBeGreaterThan(1);
    const stop = words[1]!;
    const stopped = await client.messages.create({ ...params, stop_sequences: [stop] });
    expect(stopped.stop_reason).toBe("stop_sequence");
    expect(stopped.stop_sequence).toBe(stop);
    const stoppedText = stopped.content.length === 0 ? "" : (stopped.content[0] as Anthropic.TextBlock).text;
    expect(stoppedText).toBe(text.slice(0, text.indexOf(stop)));
  }, 60_000);

  it("a forced tool round trip with create, then stream (finalMessage and the event grammar)", async () => {
    const question: Anthropic.MessageParam = { role: "user", content: "Look up an animal." };
    const first = await client.messages.create({
      model: CHATML,
      max_tokens: 64,
      ...GREEDY,
      thinking: { type: "disabled" },
      messages: [question],
      tools: [lookupTool],
      tool_choice: { type: "tool", name: "lookup" },
    });
    expect(first.stop_reason).toBe("tool_use");
    const use = first.content.find((block) => block.type === "tool_use");
    expect(use).toBeDefined();
    expect(use!.name).toBe("lookup");
    expect(["cat", "dog"]).toContain((use!.input as { word: string }).word);

    const followUp = {
      model: CHATML,
      max_tokens: 24,
      ...GREEDY,
      thinking: { type: "disabled" as const },
      tools: [lookupTool],
      messages: [
        question,
        { role: "assistant" as const, content: first.content },
        {
          role: "user" as const,
          content: [{ type: "tool_result" as const, tool_use_id: use!.id, content: "A small pet." }],
        },
      ],
    };
    const stream = client.messages.stream(followUp);
    const seen: string[] = [];
    stream.on("streamEvent", (event) => seen.push(event.type));
    const final = await stream.finalMessage();
    expect(seen[0]).toBe("message_start");
    expect(seen.at(-1)).toBe("message_stop");
    expect(["end_turn", "max_tokens", "tool_use"]).toContain(final.stop_reason);
    expect(final.usage.output_tokens).toBeGreaterThan(0);
    // The second turn reuses the first one's KV cache.
    expect(final.usage.cache_read_input_tokens).toBeGreaterThan(0);

    // The same forced call streamed raw, event by event.
    const response = await real.post("/v1/messages", {
      model: CHATML,
      max_tokens: 64,
      ...GREEDY,
      stream: true,
      thinking: { type: "disabled" },
      messages: [question],
      tools: [lookupTool],
      tool_choice: { type: "tool", name: "lookup" },
    });
    expect(response.status).toBe(200);
    const events = await readAnthropicEvents(response);
    const blocks = assertMessageStreamGrammar(events);
    expect(blocks.at(-1)).toBe("tool_use");
    const json = events
      .filter((event) => (event.delta as { type?: string } | undefined)?.type === "input_json_delta")
      .map((event) => (event.delta as { partial_json: string }).partial_json)
      .join("");
    expect(JSON.parse(json)).toEqual(use!.input);
    expect(events.at(-2)).toMatchObject({ delta: { stop_reason: "tool_use", stop_sequence: null } });
  }, 90_000);

  it("thinking enabled: a signed thinking block of budget_tokens tokens, then the answer; disabled: none", async () => {
    const stream = client.messages.stream({
      model: CHATML,
      max_tokens: 48,
      ...GREEDY,
      thinking: { type: "enabled", budget_tokens: 8 },
      messages: [{ role: "user", content: "Tell me a story." }],
    });
    const thinkingDeltas: string[] = [];
    stream.on("thinking", (delta) => thinkingDeltas.push(delta));
    const message = await stream.finalMessage();
    expect(message.content[0]!.type).toBe("thinking");
    const thinking = message.content[0] as Anthropic.ThinkingBlock;
    expect(thinking.thinking).toBe(thinkingDeltas.join(""));
    expect(thinkingDeltas.length).toBeGreaterThan(1);
    expect(thinking.signature.length).toBeGreaterThan(20);
    // A budget of N lets N thought tokens through; the thought is then closed and the answer begins.
    expect(message.usage.output_tokens_details?.thinking_tokens).toBe(8);
    expect(message.usage.output_tokens).toBeGreaterThan(8);
    expect(message.content.slice(1).map((block) => block.type)).toEqual(["text"]);

    // The thinking block goes back in the next turn and is accepted.
    const next = await client.messages.create({
      model: CHATML,
      max_tokens: 8,
      ...GREEDY,
      thinking: { type: "enabled", budget_tokens: 4 },
      messages: [
        { role: "user", content: "Tell me a story." },
        { role: "assistant", content: message.content },
        { role: "user", content: "More." },
      ],
    });
    expect(next.content[0]!.type).toBe("thinking");
    expect(next.usage.cache_read_input_tokens).toBeGreaterThan(0);

    const off = await client.messages.create({
      model: CHATML,
      max_tokens: 16,
      ...GREEDY,
      thinking: { type: "disabled" },
      messages: [{ role: "user", content: "Tell me a story." }],
    });
    expect(off.content.map((block) => block.type)).toEqual(["text"]);
    expect(off.usage.output_tokens_details?.thinking_tokens).toBe(0);
  }, 90_000);
});

describe("a full queue", () => {
  it("answers 429 rate_limit_error with Retry-After while the only sequence is busy", async () => {
    const busy = await createRealApp({ parallel: 1, maxQueue: 0 });
    try {
      const running = new AbortController();
      const first = await busy.app.request("http://lmhost.test/v1/messages", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: PLAIN,
          max_tokens: 100_000,
          ...GREEDY,
          stream: true,
          messages: [{ role: "user", content: "Once upon a time" }],
        }),
        signal: running.signal,
      });
      expect(first.status).toBe(200);
      const error = await anthropicClient(busy.app)
        .messages.create({ model: PLAIN, max_tokens: 4, messages: [{ role: "user", content: "Once" }] })
        .catch((thrown: unknown) => thrown);
      expect(error).toBeInstanceOf(Anthropic.RateLimitError);
      const refused = error as InstanceType<typeof Anthropic.RateLimitError>;
      expect(refused.type).toBe("rate_limit_error");
      expect(refused.headers.get("retry-after")).toBe("1");
      running.abort();
      await first.body?.cancel().catch(() => undefined);
    } finally {
      await busy.close();
    }
  }, 60_000);
});

describe("lmhost serve --api-key over a real socket", () => {
  it("the official SDK streams with x-api-key; a wrong key is an AuthenticationError", async () => {
    const apiKey = "anthropic-test-key";
    const server = await spawnServer(["--model", storiesModel, "--api-key", apiKey]);
    try {
      const sdk = new Anthropic({ baseURL: server.url, apiKey, maxRetries: 0 });
      const message = await sdk.messages
        .stream({
          model: PLAIN,
          max_tokens: 8,
          ...GREEDY,
          messages: [{ role: "user", content: "Once upon a time" }],
        })
        .finalMessage();
      expect(message.content[0]!.type).toBe("text");
      expect(message.usage.output_tokens).toBeGreaterThan(0);
      const wrong = await new Anthropic({ baseURL: server.url, apiKey: "wrong", maxRetries: 0 }).messages
        .create({ model: PLAIN, max_tokens: 8, messages: [{ role: "user", content: "x" }] })
        .catch((thrown: unknown) => thrown);
      expect(wrong).toBeInstanceOf(Anthropic.AuthenticationError);
      expect((wrong as InstanceType<typeof Anthropic.AuthenticationError>).type).toBe("authentication_error");
    } finally {
      await server.stop();
    }
  }, 90_000);
});
