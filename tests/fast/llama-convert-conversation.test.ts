/** Table tests for the pure ConversationItem[] → node-llama-cpp ChatHistoryItem[] translation. */
import type { ChatHistoryItem } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import {
  convertConversation,
  convertConversationWithSources,
  parseJsonOrKeepText,
} from "../../src/engine/llama/convert-conversation.js";
import type { ConversationItem } from "../../src/engine/types.js";
import { ApiError } from "../../src/shared/errors.js";

interface Case {
  name: string;
  items: ConversationItem[];
  expected: ChatHistoryItem[];
}

const cases: Case[] = [
  {
    name: "empty conversation → one empty model turn",
    items: [],
    expected: [{ type: "model", response: [] }],
  },
  {
    name: "system + user → history ending with an empty model turn",
    items: [
      { type: "message", role: "system", text: "Be brief." },
      { type: "message", role: "user", text: "Hi" },
    ],
    expected: [
      { type: "system", text: "Be brief." },
      { type: "user", text: "Hi" },
      { type: "model", response: [] },
    ],
  },
  {
    name: "multi-turn chat",
    items: [
      { type: "message", role: "user", text: "Hi" },
      { type: "message", role: "assistant", text: "Hello!" },
      { type: "message", role: "user", text: "How are you?" },
    ],
    expected: [
      { type: "user", text: "Hi" },
      { type: "model", response: ["Hello!"] },
      { type: "user", text: "How are you?" },
      { type: "model", response: [] },
    ],
  },
  {
    name: "a trailing assistant message is answered with a new turn, not continued (as OpenAI does)",
    items: [
      { type: "message", role: "user", text: "Tell" },
      { type: "message", role: "assistant", text: "Once upon a time" },
    ],
    expected: [
      { type: "user", text: "Tell" },
      { type: "model", response: ["Once upon a time"] },
      { type: "model", response: [] },
    ],
  },
  {
    name: "a trailing reasoning item also ends the turn",
    items: [
      { type: "message", role: "user", text: "Hi" },
      { type: "reasoning", text: "Greet back." },
    ],
    expected: [
      { type: "user", text: "Hi" },
      {
        type: "model",
        response: [{ type: "segment", segmentType: "thought", text: "Greet back.", ended: true }],
      },
      { type: "model", response: [] },
    ],
  },
  {
    name: "adjacent assistant messages join with a blank line",
    items: [
      { type: "message", role: "user", text: "Hi" },
      { type: "message", role: "assistant", text: "One." },
      { type: "message", role: "assistant", text: "Two." },
      { type: "message", role: "user", text: "Ok" },
    ],
    expected: [
      { type: "user", text: "Hi" },
      { type: "model", response: ["One.\n\nTwo."] },
      { type: "user", text: "Ok" },
      { type: "model", response: [] },
    ],
  },
  {
    name: "reasoning becomes an ended thought segment of the model turn",
    items: [
      { type: "message", role: "user", text: "2+2?" },
      { type: "reasoning", text: "Add them." },
      { type: "message", role: "assistant", text: "4" },
      { type: "message", role: "user", text: "thanks" },
    ],
    expected: [
      { type: "user", text: "2+2?" },
      {
        type: "model",
        response: [{ type: "segment", segmentType: "thought", text: "Add them.", ended: true }, "4"],
      },
      { type: "user", text: "thanks" },
      { type: "model", response: [] },
    ],
  },
  {
    name: "function call + result → functionCall on the model turn, which the model continues",
    items: [
      { type: "message", role: "user", text: "Weather in Paris?" },
      { type: "function-call", callId: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' },
      { type: "function-result", callId: "call_1", output: '{"temperature":21}' },
    ],
    expected: [
      { type: "user", text: "Weather in Paris?" },
      {
        type: "model",
        response: [
          {
            type: "functionCall",
            name: "get_weather",
            params: { city: "Paris" },
            result: { temperature: 21 },
            startsNewChunk: true,
          },
        ],
      },
    ],
  },
  {
    name: "parallel calls: only the first starts a chunk; results match by call id in any order",
    items: [
      { type: "message", role: "user", text: "Paris and Rome?" },
      { type: "function-call", callId: "a", name: "get_weather", arguments: '{"city":"Paris"}' },
      { type: "function-call", callId: "b", name: "get_weather", arguments: '{"city":"Rome"}' },
      { type: "function-result", callId: "b", output: "sunny" },
      { type: "function-result", callId: "a", name: "get_weather", output: "rainy" },
      { type: "message", role: "assistant", text: "Paris is rainy, Rome sunny." },
    ],
    expected: [
      { type: "user", text: "Paris and Rome?" },
      {
        type: "model",
        response: [
          {
            type: "functionCall",
            name: "get_weather",
            params: { city: "Paris" },
            result: "rainy",
            startsNewChunk: true,
          },
          {
            type: "functionCall",
            name: "get_weather",
            params: { city: "Rome" },
            result: "sunny",
            startsNewChunk: false,
          },
          "Paris is rainy, Rome sunny.",
        ],
      },
      { type: "model", response: [] },
    ],
  },
  {
    name: "text between calls starts a new call chunk",
    items: [
      { type: "message", role: "user", text: "Go" },
      { type: "function-call", callId: "a", name: "first", arguments: "{}" },
      { type: "function-result", callId: "a", output: "1" },
      { type: "message", role: "assistant", text: "Next." },
      { type: "function-call", callId: "b", name: "second", arguments: "{}" },
      { type: "function-result", callId: "b", output: "2" },
    ],
    expected: [
      { type: "user", text: "Go" },
      {
        type: "model",
        response: [
          { type: "functionCall", name: "first", params: {}, result: 1, startsNewChunk: true },
          "Next.",
          { type: "functionCall", name: "second", params: {}, result: 2, startsNewChunk: true },
        ],
      },
    ],
  },
  {
    name: "arguments that are not JSON are kept as text",
    items: [
      { type: "message", role: "user", text: "Run" },
      { type: "function-call", callId: "a", name: "shell", arguments: "ls -la" },
      { type: "function-result", callId: "a", output: "" },
    ],
    expected: [
      { type: "user", text: "Run" },
      {
        type: "model",
        response: [
          { type: "functionCall", name: "shell", params: "ls -la", result: "", startsNewChunk: true },
        ],
      },
    ],
  },
  {
    name: "a system message between turns stays in place",
    items: [
      { type: "message", role: "user", text: "Hi" },
      { type: "message", role: "assistant", text: "Hello" },
      { type: "message", role: "system", text: "Now answer in French." },
      { type: "message", role: "user", text: "Bye" },
    ],
    expected: [
      { type: "user", text: "Hi" },
      { type: "model", response: ["Hello"] },
      { type: "system", text: "Now answer in French." },
      { type: "user", text: "Bye" },
      { type: "model", response: [] },
    ],
  },
];

describe("convertConversation", () => {
  it.each(cases)("$name", ({ items, expected }) => {
    expect(convertConversation(items)).toEqual(expected);
  });

  const errorCases: { name: string; items: ConversationItem[]; message: RegExp }[] = [
    {
      name: "a call without output",
      items: [
        { type: "message", role: "user", text: "x" },
        { type: "function-call", callId: "lonely", name: "f", arguments: "{}" },
      ],
      message: /No tool output found for function call with call_id 'lonely'/,
    },
    {
      name: "an output without a call",
      items: [{ type: "function-result", callId: "ghost", output: "1" }],
      message: /No function call found for function call output with call_id 'ghost'/,
    },
    {
      name: "a duplicate call id",
      items: [
        { type: "function-call", callId: "same", name: "f", arguments: "{}" },
        { type: "function-call", callId: "same", name: "f", arguments: "{}" },
      ],
      message: /Duplicate function call id 'same'/,
    },
  ];

  it.each(errorCases)("rejects $name with a 400 on input", ({ items, message }) => {
    let caught: unknown;
    try {
      convertConversation(items);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ApiError);
    const apiError = caught as ApiError;
    expect(apiError.status).toBe(400);
    expect(apiError.param).toBe("input");
    expect(apiError.message).toMatch(message);
  });
});

describe("convertConversation without thought segments", () => {
  it("drops reasoning items for templates that cannot render them", () => {
    const items: ConversationItem[] = [
      { type: "message", role: "user", text: "2+2?" },
      { type: "reasoning", text: "Add them." },
      { type: "message", role: "assistant", text: "4" },
    ];
    expect(convertConversation(items, { keepReasoning: false })).toEqual([
      { type: "user", text: "2+2?" },
      { type: "model", response: ["4"] },
      { type: "model", response: [] },
    ]);
  });
});

describe("convertConversation: the turn the model generates", () => {
  const answered: ConversationItem[] = [
    { type: "message", role: "user", text: "Tell" },
    { type: "message", role: "assistant", text: "Once upon a time" },
  ];

  it("separates the new turn with a user message for templates that merge adjacent model items", () => {
    expect(convertConversation(answered, { newTurnSeparator: " " })).toEqual([
      { type: "user", text: "Tell" },
      { type: "model", response: ["Once upon a time"] },
      { type: "user", text: " " },
      { type: "model", response: [] },
    ]);
  });

  it("continues the turn only in the tool loop (it ends with calls whose results arrived)", () => {
    const toolLoop: ConversationItem[] = [
      { type: "message", role: "user", text: "Weather?" },
      { type: "message", role: "assistant", text: "Checking." },
      { type: "function-call", callId: "a", name: "get_weather", arguments: "{}" },
      { type: "function-result", callId: "a", output: "sunny" },
    ];
    const history = convertConversation(toolLoop, { newTurnSeparator: "" });
    expect(history).toHaveLength(2);
    expect(history.at(-1)).toMatchObject({
      type: "model",
      response: ["Checking.", { type: "functionCall" }],
    });
  });

  it("maps each history item to the last conversation item it renders", () => {
    const items: ConversationItem[] = [
      { type: "message", role: "system", text: "S" },
      { type: "message", role: "user", text: "U1" },
      { type: "function-call", callId: "a", name: "f", arguments: "{}" },
      { type: "function-result", callId: "a", output: "1" },
      { type: "message", role: "assistant", text: "A1" },
      { type: "message", role: "user", text: "U2" },
    ];
    expect(convertConversationWithSources(items)).toEqual({
      history: [
        { type: "system", text: "S" },
        { type: "user", text: "U1" },
        {
          type: "model",
          response: [{ type: "functionCall", name: "f", params: {}, result: 1, startsNewChunk: true }, "A1"],
        },
        { type: "user", text: "U2" },
        { type: "model", response: [] },
      ],
      lastSourceIndex: [0, 1, 4, 5, 6],
    });
  });
});

describe("parseJsonOrKeepText", () => {
  it.each([
    ['{"a":1}', { a: 1 }],
    ["[1,2]", [1, 2]],
    ["42", 42],
    ["not json", "not json"],
    ["", ""],
    ["   ", "   "],
    ['{"broken":', '{"broken":'],
  ])("%j → %j", (input, expected) => {
    expect(parseJsonOrKeepText(input)).toEqual(expected);
  });
});
