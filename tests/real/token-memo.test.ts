/**
 * The prompt tokenizer (token-memo.ts) on real tokenizers (stories260K's and Llama 2's 32,000-token one):
 * what it remembers is exactly what the model's tokenizer gives, with and without the leading-space
 * option, and a rendered ChatML prompt tokenizes to the same tokens through it, the second time from memory.
 */
import { ChatMLChatWrapper, getLlama, LlamaLogLevel, type Llama, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { memoizingTokenizer } from "../../src/engine/llama/token-memo.js";
import { randomLlamaModel, storiesModel } from "../helpers/paths.js";

let llama: Llama;
const models: LlamaModel[] = [];

beforeAll(async () => {
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  for (const modelPath of [storiesModel, randomLlamaModel]) models.push(await llama.loadModel({ modelPath }));
});

afterAll(async () => {
  for (const model of models) await model.dispose();
  await llama?.dispose();
});

const texts = [
  "Once upon a time there was a little cat who liked to play in the garden. ".repeat(8),
  ` leading space, then über naïve 日本語 🙂 text\n\twith tabs and {"json": [1, 2]} `.repeat(6),
  "\n\n  code() {\n    return 42;\n  }\n".repeat(20),
];

describe("memoizingTokenizer on real tokenizers", () => {
  it("remembers exactly the model's tokens, per leading-space option", () => {
    for (const model of models) {
      const memo = memoizingTokenizer(model.tokenizer);
      for (const text of texts) {
        for (const option of [undefined, "trimLeadingSpace"] as const) {
          const expected = model.tokenize(text, false, option);
          expect(memo(text, false, option)).toEqual(expected);
          expect(memo(text, false, option)).toEqual(expected);
        }
      }
    }
  });

  it("tokenizes a rendered prompt to the model's tokens, the second time without the tokenizer", () => {
    const model = models[1]!;
    const wrapper = new ChatMLChatWrapper();
    const { contextText } = wrapper.generateContextState({
      chatHistory: [
        { type: "system", text: texts[0]! + texts[2]! },
        { type: "user", text: texts[1]! },
        { type: "model", response: [] },
      ],
    });
    const expected = contextText.tokenize(model.tokenizer);
    const lengths: number[] = [];
    const counting = ((text: string, ...rest: [boolean?, "trimLeadingSpace"?]) => {
      lengths.push(text.length);
      return model.tokenizer(text, ...rest);
    }) as typeof model.tokenizer;
    const memo = memoizingTokenizer(counting);
    expect(contextText.tokenize(memo)).toEqual(expected);
    const long = () => lengths.filter((length) => length >= 256).length;
    expect(long()).toBe(2);
    expect(contextText.tokenize(memo)).toEqual(expected);
    expect(long()).toBe(2);
  });
});
