/**
 * `truncation: "auto"` never drops the current input: the protected tail (protectedTailStart), the llama
 * engine's history fitting (fitHistory, with a word-counting renderer) and the scripted engine's twin
 * (fitScriptedItems) agree on what may be dropped, and both answer 400 context_length_exceeded when the
 * protected tail alone does not fit. Also: which chat templates render a new turn after an assistant message.
 */
import {
  ChatMLChatWrapper,
  GemmaChatWrapper,
  GeneralChatWrapper,
  JinjaTemplateChatWrapper,
  Llama2ChatWrapper,
  Llama3ChatWrapper,
} from "node-llama-cpp";
import type { ChatHistoryItem } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import { DocumentedFunctionsChatWrapper, newTurnSeparator } from "../../src/engine/llama/chat-wrapper.js";
import { convertConversationWithSources } from "../../src/engine/llama/convert-conversation.js";
import { fitHistory } from "../../src/engine/llama/prompt.js";
import { fitScriptedItems } from "../../src/engine/scripted/scripted-engine.js";
import { protectedTailStart, TruncationStarts } from "../../src/engine/truncation.js";
import type { ConversationItem, EngineRequest } from "../../src/engine/types.js";
import { ApiError } from "../../src/shared/errors.js";

const system = (text: string): ConversationItem => ({ type: "message", role: "system", text });
const user = (text: string): ConversationItem => ({ type: "message", role: "user", text });
const assistant = (text: string): ConversationItem => ({ type: "message", role: "assistant", text });
const call = (callId: string): ConversationItem => ({
  type: "function-call",
  callId,
  name: "f",
  arguments: "{}",
});
const result = (callId: string, output = "ok"): ConversationItem => ({
  type: "function-result",
  callId,
  output,
});

function caught(run: () => unknown): ApiError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ApiError);
    return error as ApiError;
  }
  throw new Error("expected an ApiError");
}

describe("protectedTailStart", () => {
  it.each([
    { name: "a single user message is protected", items: [user("long")], tail: undefined, start: 0 },
    {
      name: "the current user turn after the last assistant message",
      items: [system("s"), user("u1"), assistant("a1"), user("u2")],
      tail: undefined,
      start: 3,
    },
    {
      name: "several user messages after the last assistant message",
      items: [user("u1"), assistant("a1"), user("u2"), user("u3")],
      tail: undefined,
      start: 2,
    },
    {
      name: "a trailing assistant message: from the last user message on",
      items: [user("u1"), assistant("a1"), user("u2"), assistant("a2")],
      tail: undefined,
      start: 2,
    },
    {
      name: "the tool loop: the result, its call's turn and the user message before it",
      items: [user("u1"), assistant("a1"), user("u2"), assistant("thinking"), call("c"), result("c")],
      tail: undefined,
      start: 2,
    },
    {
      name: "protectedTailItems extends the protection",
      items: [user("u1"), assistant("a1"), user("u2"), assistant("a2"), user("u3")],
      tail: 3,
      start: 2,
    },
    {
      name: "protectedTailItems never shrinks it below the current turn",
      items: [user("u1"), assistant("a1"), user("u2"), user("u3")],
      tail: 0,
      start: 2,
    },
    {
      name: "a protected result keeps its call's whole turn",
      items: [user("u1"), assistant("a"), call("c"), user("u2"), result("c"), user("u3")],
      tail: 2,
      start: 1,
    },
    {
      name: "more than all items protects all",
      items: [user("u1"), assistant("a1"), user("u2")],
      tail: 99,
      start: 0,
    },
    {
      name: "Infinity protects all, NaN is ignored",
      items: [user("u1"), assistant("a1"), user("u2")],
      tail: Number.POSITIVE_INFINITY,
      start: 0,
    },
    { name: "NaN is ignored", items: [user("u1"), assistant("a1"), user("u2")], tail: Number.NaN, start: 2 },
  ])("$name", ({ items, tail, start }) => {
    expect(protectedTailStart(items, tail)).toBe(start);
  });
});

/** A renderer counting one token per word of every text in the history. */
function wordRenderer(history: ChatHistoryItem[]): { tokens: string[]; text: string } {
  const text = history
    .map((item) => {
      if (item.type === "model")
        return item.response.map((part) => (typeof part === "string" ? part : "[call]")).join(" ");
      return item.text;
    })
    .join(" ");
  return { tokens: text.split(/\s+/).filter((word) => word !== ""), text };
}

function fit(items: ConversationItem[], contextLength: number, protectedTailItems?: number) {
  const { history, lastSourceIndex } = convertConversationWithSources(items);
  return fitHistory(history, wordRenderer, {
    lastSourceIndex,
    protectedItemsStart: protectedTailStart(items, protectedTailItems),
    contextLength,
    reserve: 2,
  });
}

const words = (count: number): string => Array.from({ length: count }, () => "word").join(" ");

describe("fitHistory (llama engine, truncation auto)", () => {
  it("answers 400 context_length_exceeded instead of dropping the current input (the review's repro)", () => {
    const error = caught(() => fit([user(words(5000))], 2048));
    expect(error).toMatchObject({ status: 400, code: "context_length_exceeded", param: "input" });
    expect(error.message).toMatch(/never dropped|may not drop/);
  });

  it("drops the fewest oldest turns, never system messages nor the current turn", () => {
    const items = [system("be brief"), user(words(50)), assistant(words(50)), user("latest question")];
    const fitted = fit(items, 40);
    expect(fitted.droppedItems).toBe(2);
    expect(fitted.rendered.text).toBe("be brief latest question ");
    expect(fitted.history.at(-1)).toEqual({ type: "model", response: [] });
  });

  it("drops only what is needed", () => {
    const items = [user(words(30)), assistant(words(30)), user("a"), assistant("b"), user("c")];
    expect(fit(items, 40).droppedItems).toBe(1);
    const fitted = fit(items, 20);
    expect(fitted.droppedItems).toBe(2);
    expect(fitted.rendered.text).toBe("a b c ");
  });

  it("keeps the protected tail whole even when dropping part of it would fit", () => {
    const items = [user(words(10)), assistant("x"), user(words(30)), user(words(30))];
    expect(caught(() => fit(items, 50)).code).toBe("context_length_exceeded");
  });

  it("keeps protectedTailItems (this request's input) too", () => {
    const items = [user(words(30)), assistant("x"), user("y"), assistant("z"), user("now")];
    expect(fit(items, 20).droppedItems).toBe(1);
    expect(caught(() => fit(items, 20, 5)).code).toBe("context_length_exceeded");
  });

  it("never separates a protected function result from its call", () => {
    const items = [user(words(30)), assistant(words(10)), call("c"), result("c")];
    // The current turn is the user message and the model turn with the call: nothing may be dropped.
    expect(caught(() => fit(items, 30)).code).toBe("context_length_exceeded");
    const longer = [user(words(30)), assistant("old"), user("new"), call("c"), result("c")];
    const fitted = fit(longer, 20);
    expect(fitted.droppedItems).toBe(1);
    expect(fitted.rendered.text).toBe("old new [call]");
  });
});

describe("fitHistory across the turns of a conversation that outgrows the window", () => {
  /** Turn `n` of a conversation: every earlier turn (a 6-word question, a 10-word answer), then question n. */
  const conversation = (turns: number, systemText = "be brief"): ConversationItem[] => [
    system(systemText),
    ...Array.from({ length: turns }, (_unused, turn) => [
      user(`question ${turn} ${words(4)}`),
      assistant(`answer ${turn} ${words(8)}`),
    ]).flat(),
    user(`question ${turns} ${words(4)}`),
  ];
  /** Each turn's prompt as text, fitted to `contextLength` with `slack`, remembering starts when `remember`. */
  const prompts = (
    slack: number,
    remember: boolean,
    { contextLength = 100, systemText = "be brief" } = {},
  ): string[] => {
    const starts = new TruncationStarts<ChatHistoryItem[]>();
    return Array.from({ length: 30 }, (_unused, turns) => {
      const items = conversation(turns, systemText);
      const { history, lastSourceIndex } = convertConversationWithSources(items);
      const fitted = fitHistory(history, wordRenderer, {
        lastSourceIndex,
        protectedItemsStart: protectedTailStart(items, undefined),
        contextLength,
        reserve: 10,
        slack,
        ...(remember ? { isRecentStart: (start: ChatHistoryItem[]) => starts.has(start) } : {}),
      });
      expect(fitted.rendered.tokens.length + 10).toBeLessThan(contextLength);
      if (fitted.start !== undefined) starts.add(fitted.start);
      return fitted.rendered.text;
    });
  };
  /** Turns whose prompt does not extend the previous turn's prompt (their KV cache is lost). */
  const restarts = (texts: string[]): number =>
    texts.filter((text, turn) => turn > 0 && !text.startsWith((texts[turn - 1] ?? "").trim())).length;

  it("dropping the fewest items restarts the prompt on every turn once the window is full", () => {
    expect(restarts(prompts(0, false))).toBeGreaterThanOrEqual(20);
    // Slack alone does not help: the next turn again drops the fewest, starting somewhere new.
    expect(restarts(prompts(25, false))).toBeGreaterThanOrEqual(20);
  });

  it("with slack and the recent starts, the prompt restarts only once per slack's worth of turns", () => {
    const texts = prompts(25, true);
    // 25 tokens of slack hold one turn (16 words) at most before a drop is needed again: about every other
    // turn past the window restarts, instead of every turn. Each restart keeps at least the reserve free.
    expect(restarts(texts)).toBeLessThanOrEqual(10);
    expect(restarts(texts)).toBeGreaterThan(0);
    // The most recent turns are always there.
    texts.forEach((text, turn) => expect(text).toContain(`question ${turn} `));
  });

  it("with a large slack, many turns reuse one start", () => {
    expect(restarts(prompts(50, true))).toBeLessThanOrEqual(8);
  });

  it("a long fixed prompt that leaves less than the slack free still gets half of what can be freed", () => {
    // 60 words of system prompt in 140 tokens: dropping all history frees at most 63 tokens beyond the
    // reserve, less than the 50 asked, so each drop frees half of that (31, about two turns of 16 words)
    // instead of the bare minimum, and the prompt restarts about every other turn instead of every turn.
    const options = { contextLength: 140, systemText: words(60) };
    const fewestEveryTurn = restarts(prompts(0, false, options));
    const capped = restarts(prompts(50, true, options));
    expect(fewestEveryTurn).toBeGreaterThanOrEqual(20);
    expect(capped).toBeLessThanOrEqual(fewestEveryTurn / 2);
  });

  it("never drops more than the slack asks, and only the fewest when the slack cannot be reached", () => {
    const items = [user(words(30)), assistant(words(30)), user("a"), assistant("b"), user("c")];
    const { history, lastSourceIndex } = convertConversationWithSources(items);
    const options = {
      lastSourceIndex,
      protectedItemsStart: protectedTailStart(items, undefined),
      reserve: 2,
    };
    // 40 tokens: dropping the first item (30 words) fits; 20 slack tokens more need the second dropped too.
    expect(fitHistory(history, wordRenderer, { ...options, contextLength: 40, slack: 20 }).droppedItems).toBe(
      2,
    );
    // A slack out of reach: half of what dropping everything droppable frees (40 - 2 - 1 - 3 words = 34,
    // so 17), which needs both long items dropped here.
    expect(fitHistory(history, wordRenderer, { ...options, contextLength: 40, slack: 99 }).droppedItems).toBe(
      2,
    );
    // Nothing more to free (the current turn fills the rest): the fewest that fit are dropped.
    const tight = [user(words(10)), assistant("x"), user(words(30))];
    const converted = convertConversationWithSources(tight);
    expect(
      fitHistory(converted.history, wordRenderer, {
        lastSourceIndex: converted.lastSourceIndex,
        protectedItemsStart: protectedTailStart(tight, undefined),
        reserve: 2,
        contextLength: 34,
        slack: 99,
      }).droppedItems,
    ).toBe(1);
    // A recent start inside the slack is preferred over the slack's own start.
    const second = history[1];
    const third = history[2];
    expect(
      fitHistory(history, wordRenderer, {
        ...options,
        contextLength: 40,
        slack: 20,
        isRecentStart: (start) => start[0] === second && start[1] === third,
      }).droppedItems,
    ).toBe(1);
  });

  it("TruncationStarts keeps the most recent starts, compared by content", () => {
    const starts = new TruncationStarts<ChatHistoryItem[]>(2);
    const at = (text: string): ChatHistoryItem[] => [
      { type: "user", text },
      { type: "model", response: [`${text}!`] },
    ];
    starts.add(at("a"));
    starts.add(at("b"));
    starts.add(at("a"));
    starts.add(at("c"));
    expect(starts.has(structuredClone(at("a")))).toBe(true);
    expect(starts.has(at("b"))).toBe(false);
    expect(starts.has(at("c"))).toBe(true);
    // The same first item followed by something else is another start.
    expect(
      starts.has([
        { type: "user", text: "a" },
        { type: "model", response: ["other"] },
      ]),
    ).toBe(false);
  });
});

describe("fitScriptedItems (the scripted engine follows the same rule)", () => {
  const request = (items: ConversationItem[], extra: Partial<EngineRequest> = {}): EngineRequest => ({
    model: "m",
    items,
    truncation: "auto",
    ...extra,
  });

  it("answers 400 instead of dropping the current input", () => {
    const error = caught(() => fitScriptedItems(request([system("s"), user(words(100))]), 50));
    expect(error).toMatchObject({ status: 400, code: "context_length_exceeded", param: "input" });
  });

  it("drops old turns before the protected tail, keeping system messages", () => {
    const items = [system("s"), user(words(30)), assistant(words(30)), user("now")];
    expect(fitScriptedItems(request(items), 10)).toEqual([system("s"), user("now")]);
  });

  it("drops a call and its result together, and honours protectedTailItems", () => {
    const items = [
      user(words(30)),
      call("c"),
      result("c"),
      assistant("done"),
      user("u2"),
      assistant("a2"),
      user("u3"),
    ];
    expect(fitScriptedItems(request(items), 12)).toEqual([user("u2"), assistant("a2"), user("u3")]);
    expect(caught(() => fitScriptedItems(request(items, { protectedTailItems: 7 }), 12)).code).toBe(
      "context_length_exceeded",
    );
  });

  it("with truncation disabled, refuses any prompt over the context", () => {
    const items = [user(words(30)), assistant("x"), user("now")];
    expect(caught(() => fitScriptedItems(request(items, { truncation: "disabled" }), 10)).code).toBe(
      "context_length_exceeded",
    );
  });
});

describe("DocumentedFunctionsChatWrapper (a JSON answer after the model chose text over its tools)", () => {
  const functions = {
    get_weather: {
      description: "The weather in a city",
      params: { type: "object", properties: { city: { type: "string" } } },
    },
  } as const;
  it.each([
    { name: "ChatML", wrapper: new ChatMLChatWrapper() },
    { name: "General", wrapper: new GeneralChatWrapper() },
    { name: "Llama 3", wrapper: new Llama3ChatWrapper() },
    { name: "Gemma", wrapper: new GemmaChatWrapper() },
  ])("$name: renders the same prompt without functions as the base with them", ({ wrapper }) => {
    const chatHistory = convertConversationWithSources([user("Is it sunny?")]).history;
    const withFunctions = wrapper.generateContextState({
      chatHistory,
      availableFunctions: functions,
      documentFunctionParams: true,
    });
    const documented = new DocumentedFunctionsChatWrapper(wrapper, functions).generateContextState({
      chatHistory,
    });
    expect(documented.contextText.toString()).toBe(withFunctions.contextText.toString());
    expect(documented.contextText.toString()).toContain("get_weather");
    // Nothing may be called: no function-call detection is set up.
    expect(documented).not.toHaveProperty("functionCall");
  });
});

describe("newTurnSeparator (a new assistant turn right after an assistant message)", () => {
  const llama2Jinja =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}";
  it.each([
    { name: "ChatML renders adjacent model turns", wrapper: new ChatMLChatWrapper(), separator: undefined },
    { name: "General renders adjacent model turns", wrapper: new GeneralChatWrapper(), separator: undefined },
    { name: "Llama 3 merges them: an empty user turn", wrapper: new Llama3ChatWrapper(), separator: "" },
    { name: "Gemma merges them: an empty user item", wrapper: new GemmaChatWrapper(), separator: "" },
    { name: "Llama 2 skips empty user text: a space", wrapper: new Llama2ChatWrapper(), separator: " " },
    {
      name: "a Jinja template that joins adjacent messages",
      wrapper: new JinjaTemplateChatWrapper({ template: llama2Jinja }),
      separator: "",
    },
  ])("$name", ({ wrapper, separator }) => {
    expect(newTurnSeparator(wrapper)).toBe(separator);
    // Whatever the separator, the answered turn is closed and a fresh one starts.
    const items: ConversationItem[] = [user("Tell"), assistant("Once upon a time")];
    const history = convertConversationWithSources(items, { newTurnSeparator: separator }).history;
    const text = wrapper.generateContextState({ chatHistory: history }).contextText.toString();
    const continued = wrapper
      .generateContextState({ chatHistory: convertConversationWithSources(items.slice(0, 1)).history })
      .contextText.toString();
    expect(text.slice(text.indexOf("Once upon a time") + "Once upon a time".length).trim()).not.toBe("");
    // It ends like a generation prompt after a real user message.
    expect(continued.endsWith(text.slice(-8))).toBe(true);
  });
});
