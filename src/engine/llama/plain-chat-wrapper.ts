/**
 * The `plain` chat template: no roles, no markers — the conversation's texts one after another, the way a
 * base (completion) model was trained. Instructions and user turns are separated by a newline; the model's
 * turn continues the text right where the last one ends ("Once upon a time" → ", there was a ...").
 *
 * A base model trained on documents separated by BOS (llama2.c's TinyStories models, which the built-in
 * demo runs) ends a document by predicting BOS, not EOS, so both stop the generation: a story ends with
 * `completed` instead of running on into the next one until `max_output_tokens`.
 */
import {
  ChatWrapper,
  LlamaText,
  SpecialToken,
  type ChatWrapperGenerateContextStateOptions,
  type ChatWrapperGeneratedContextState,
} from "node-llama-cpp";

export const PLAIN_CHAT_TEMPLATE = "plain";

export class PlainTextChatWrapper extends ChatWrapper {
  public override readonly wrapperName = "Plain";

  public override generateContextState({
    chatHistory,
  }: ChatWrapperGenerateContextStateOptions): ChatWrapperGeneratedContextState {
    const parts: LlamaText[] = [];
    for (const [index, item] of chatHistory.entries()) {
      const text =
        item.type === "system"
          ? LlamaText.fromJSON(item.text)
          : item.type === "user"
            ? LlamaText(item.text)
            : LlamaText(this.generateModelResponseText(item.response));
      // The model's turn follows the text before it directly; everything else starts on a new line.
      const separator = index === 0 || item.type === "model" ? "" : "\n";
      parts.push(LlamaText([separator, text]));
    }
    return {
      contextText: LlamaText([new SpecialToken("BOS"), ...parts]),
      stopGenerationTriggers: [LlamaText(new SpecialToken("EOS")), LlamaText(new SpecialToken("BOS"))],
    };
  }
}
