/**
 * Embeddings on a loaded model (OpenAI's `/v1/embeddings`), through node-llama-cpp's LlamaEmbeddingContext.
 *
 * One set of weights: the embedding context is a second llama.cpp context on the SAME LlamaModel the
 * generation context runs on, created on the first embedding request, kept while the model stays loaded and
 * disposed by the loader's unload. It has its own KV cache, so embedding work never touches a generation's
 * sequence; both run on the model's `threads`.
 *
 * What node-llama-cpp does (dist/evaluator/LlamaEmbeddingContext.js, AddonContext.cpp GetEmbedding):
 * - the context is created with `embeddings: true` and no pooling type, so llama.cpp pools the way the
 *   model's GGUF metadata says (`<arch>.pooling_type`: mean / cls / last for embedding models; none for
 *   generative models, whose embedding is then the last token's hidden state);
 * - a text is tokenized with the model's tokenizer; a token array is taken as given; both get the BOS / EOS
 *   (SEP) tokens the vocabulary wants if they are missing, so token ids of a text embed exactly like it;
 * - one input is one evaluation on the context's only sequence (the native getEmbedding reads sequence 0),
 *   serialized by a lock: several inputs are embedded one after another, never in one batch, and an input
 *   of `contextSize` tokens or more throws — lmhost checks lengths first and answers 400 naming the input.
 *
 * Pooled embeddings (mean, cls) of a non-causal model need the whole input in one micro-batch, so the batch
 * size of such a context equals its context size; causal models with last-token pooling keep the default
 * batch (their attention carries across batches). The context is capped at `maxEmbeddingContext` tokens
 * (OpenAI's own per-input limit), since a batch of the full context costs memory quadratic in its length.
 * When node-llama-cpp finds too little memory for it, 4,096 down to 512 tokens are tried
 * (`embeddingContextStepDown`); inputs longer than the context taken are a 400 naming the input.
 *
 * Embedding requests of one model take turns (one at a time, FIFO, a bounded queue whose overflow is a 429),
 * reusing the SequencePool's queue with a single slot.
 */
import {
  InsufficientMemoryError,
  type LlamaEmbeddingContext,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { ApiError } from "../../shared/errors.js";
import type { EmbedRequest, EmbedResult } from "../types.js";
import type { LlamaLoadedModel } from "./loader.js";
import { countTokensInSlices, SCREEN_ABOVE_CHARACTERS } from "./prompt-size.js";
import { SequencePool } from "./sequence-pool.js";

/** Largest embedding context (tokens per input, special tokens included); OpenAI's limit is 8,192. */
export const maxEmbeddingContext = 8192;

/**
 * Shorter embedding contexts tried, longest first, when node-llama-cpp finds too little memory for the
 * first: the generation context of a large model may have taken most of it (an 8B model's 8,192 cells are
 * ~1 GiB of KV cache), and embedding inputs this long are the exception.
 */
const embeddingContextStepDown = [4096, 2048, 1024, 512] as const;

/** Most tokens one request may evaluate over all its inputs (OpenAI's limit). */
export const maxEmbeddingRequestTokens = 300_000;

/** The one slot of a model's embedding queue (SequencePool needs a sequence; any slot fits any input). */
interface EmbeddingSlot {
  compareContextTokens(): { firstDifferentIndex: number };
}

/** A loaded model's embedding context, its limits and its queue. */
export interface ModelEmbeddings {
  context: LlamaEmbeddingContext;
  /** Longest input in tokens (special tokens included). */
  maxInputTokens: number;
  /** Entries of the model's vocabulary (token ids are 0 ≤ id < this); undefined when the GGUF does not list them. */
  vocabularySize: number | undefined;
  /** Length of every vector. */
  dimensions: number;
  /** "mean", "cls", "last", "none", ... from the GGUF (for diagnostics). */
  pooling: string;
  queue: SequencePool<EmbeddingSlot, null>;
}

/** The numeric `<arch>.pooling_type` of llama.cpp, by name. */
const poolingNames: Record<number, string> = { 0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank" };

/** What the GGUF says about pooling and attention (absent keys: a causal model without pooling). */
export function embeddingShape(model: LlamaModel): { pooling: string; causal: boolean } {
  const metadata = model.fileInfo.metadata as unknown as Record<string, unknown>;
  const architecture = (metadata.general as { architecture?: string } | undefined)?.architecture;
  const own = (architecture === undefined ? undefined : metadata[architecture]) as
    { pooling_type?: unknown; attention?: { causal?: unknown } } | undefined;
  const poolingType = typeof own?.pooling_type === "number" ? own.pooling_type : 0;
  return {
    pooling: poolingNames[poolingType] ?? `type ${poolingType}`,
    causal: own?.attention?.causal !== false,
  };
}

function vocabularySizeOf(model: LlamaModel): number | undefined {
  const metadata = model.fileInfo.metadata as unknown as { tokenizer?: { ggml?: { tokens?: unknown } } };
  const tokens = metadata.tokenizer?.ggml?.tokens;
  return Array.isArray(tokens) ? tokens.length : undefined;
}

/** Creates the embedding context of a loaded model (see the file comment for the sizes). */
export async function createModelEmbeddings(
  model: LlamaModel,
  options: { contextLength: number; threads: number; maxQueue: number },
): Promise<ModelEmbeddings> {
  const { pooling, causal } = embeddingShape(model);
  const longest = Math.max(16, Math.min(options.contextLength, maxEmbeddingContext));
  const oneBatch = !causal || (pooling !== "none" && pooling !== "last");
  const sizes = [longest, ...embeddingContextStepDown.filter((size) => size < longest)];
  let context: LlamaEmbeddingContext | undefined;
  let contextSize = longest;
  for (const [index, size] of sizes.entries()) {
    try {
      context = await model.createEmbeddingContext({
        contextSize: size,
        threads: options.threads,
        ...(oneBatch ? { batchSize: size } : {}),
      });
      contextSize = size;
      break;
    } catch (error) {
      if (error instanceof InsufficientMemoryError && index < sizes.length - 1) continue;
      const reason = error instanceof Error ? error.message : String(error);
      // Too little memory is a passing condition of this server (another model, a long generation context),
      // not something the model cannot do.
      if (error instanceof InsufficientMemoryError)
        throw new ApiError({
          status: 503,
          message: `Not enough memory for an embedding context of this model: not even ${size} tokens fit in what is left (${reason}). Retry when less is loaded.`,
          param: "model",
          code: "insufficient_memory",
          retryAfter: 5,
        });
      throw new ApiError({
        status: 400,
        message: `The model cannot compute embeddings: ${reason}`,
        param: "model",
        code: "embeddings_unsupported",
      });
    }
  }
  if (context === undefined) throw new Error("unreachable: no embedding context size was tried");
  return {
    context,
    // node-llama-cpp refuses inputs of contextSize tokens or more.
    maxInputTokens: contextSize - 1,
    vocabularySize: vocabularySizeOf(model),
    dimensions: model.embeddingVectorSize,
    pooling,
    queue: new SequencePool<EmbeddingSlot, null>({
      sequences: [{ compareContextTokens: () => ({ firstDifferentIndex: 0 }) }],
      maxQueue: options.maxQueue,
    }),
  };
}

/**
 * The tokens of each input (a text tokenized as node-llama-cpp would, without special tokens; ids as given)
 * and how many tokens all of them evaluate (the BOS / EOS the context adds included); 400s name the input.
 * A long text is first counted in slices (prompt-size.ts), so a text far over the limit is refused without
 * being tokenized whole on the event loop; the event loop is free between inputs.
 */
export async function checkEmbeddingInputs(
  model: LlamaModel,
  embeddings: ModelEmbeddings,
  request: EmbedRequest,
  modelId: string,
): Promise<{ tokens: Token[][]; inputTokens: number }> {
  if (request.dimensions !== undefined && request.dimensions !== embeddings.dimensions) {
    throw ApiError.invalid(
      `Model '${modelId}' returns ${embeddings.dimensions}-dimensional embeddings and cannot shorten them: ` +
        "`dimensions` needs a model trained for shortened (Matryoshka) embeddings, and a GGUF file does not " +
        `say whether it was. Leave \`dimensions\` out (or set it to ${embeddings.dimensions}).`,
      "dimensions",
      "unsupported_parameter",
    );
  }
  const { vocabularySize, maxInputTokens } = embeddings;
  const tooLong = (index: number, tokens: number, atLeast: boolean): ApiError =>
    ApiError.invalid(
      `input[${index}] is ${atLeast ? "at least " : ""}${tokens} tokens, over the embedding context of model ` +
        `'${modelId}' (${maxInputTokens} tokens per input). Shorten or split it.`,
      `input[${index}]`,
      "context_length_exceeded",
    );
  const tokens: Token[][] = [];
  let inputTokens = 0;
  for (const [index, input] of request.inputs.entries()) {
    if (typeof input === "string") {
      if (input.length > SCREEN_ABOVE_CHARACTERS) {
        const atLeast = await countTokensInSlices(model.tokenizer, input, maxInputTokens);
        if (atLeast > maxInputTokens) throw tooLong(index, atLeast, true);
      }
    } else if (vocabularySize !== undefined) {
      const bad = input.findIndex((token) => token >= vocabularySize);
      if (bad >= 0) {
        throw ApiError.invalid(
          `Token id ${input[bad]} at input[${index}][${bad}] is outside the vocabulary of model '${modelId}' ` +
            `(ids 0 to ${vocabularySize - 1}).`,
          // The token itself, as the API's own checks name a malformed one (`input[0][1]`).
          `input[${index}][${bad}]`,
          "invalid_token",
        );
      }
    }
    if (typeof input !== "string" && input.length > maxInputTokens) throw tooLong(index, input.length, false);
    const inputTokensOf = typeof input === "string" ? model.tokenize(input) : (input as Token[]);
    const evaluated = embeddings.context.calculateInputLength(inputTokensOf);
    if (evaluated > maxInputTokens) throw tooLong(index, evaluated, false);
    tokens.push(inputTokensOf);
    inputTokens += evaluated;
    if (inputTokens > maxEmbeddingRequestTokens) {
      throw ApiError.invalid(
        `The inputs up to input[${index}] are ${inputTokens} tokens, over the limit of ` +
          `${maxEmbeddingRequestTokens} tokens summed over all inputs of one request. Split the request.`,
        "input",
        "max_tokens_per_request",
      );
    }
    if (index % 64 === 63) await yieldToEventLoop();
  }
  return { tokens, inputTokens };
}

const sleep = async (milliseconds: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, milliseconds));

const yieldToEventLoop = async (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Embeds the inputs one after another on the model's embedding context, holding its queue slot for the
 * whole request. Aborting `signal` stops between inputs (rejects with its reason).
 */
export async function embedInputs(
  model: LlamaModel,
  embeddings: ModelEmbeddings,
  request: EmbedRequest,
  modelId: string,
  signal: AbortSignal,
  options: { maxQueue: number; generating: () => boolean },
): Promise<EmbedResult> {
  const { tokens, inputTokens } = await checkEmbeddingInputs(model, embeddings, request, modelId);
  const slot = await embeddings.queue.acquire(null, { signal, maxQueue: options.maxQueue });
  try {
    const vectors: number[][] = [];
    for (const input of tokens) {
      signal.throwIfAborted();
      const started = performance.now();
      // Tokens, not the text: tokenized once. node-llama-cpp copies them before adding BOS / EOS.
      const embedding = await embeddings.context.getEmbeddingFor(input);
      vectors.push([...embedding.vector]);
      // Fair share with generation: both contexts' work goes through the same (one-thread) libuv pool, one
      // operation each in turn, so a stream of embeddings would slow a generation to one token per input.
      // While the model generates, embeddings pause as long as their last input took.
      if (options.generating()) await sleep(performance.now() - started);
    }
    return { embeddings: vectors, inputTokens };
  } finally {
    slot.release();
  }
}

/** The loaded model's embedding context, created on first use (a failed creation is retried next time). */
export function embeddingsOf(
  loaded: LlamaLoadedModel,
  options: { maxQueue: number },
): Promise<ModelEmbeddings> {
  if (loaded.embeddings === undefined) {
    const created = createModelEmbeddings(loaded.model, {
      contextLength: loaded.contextLength,
      threads: loaded.threads,
      maxQueue: options.maxQueue,
    });
    loaded.embeddings = created;
    created.catch(() => {
      if (loaded.embeddings === created) loaded.embeddings = undefined;
    });
  }
  return loaded.embeddings;
}

/** Unload: refuses waiting embedding requests with `error` and frees the embedding context, if any. */
export async function disposeEmbeddings(loaded: LlamaLoadedModel, error: ApiError): Promise<void> {
  const pending = loaded.embeddings;
  loaded.embeddings = undefined;
  const embeddings = await pending?.catch(() => undefined);
  if (embeddings === undefined) return;
  embeddings.queue.close(error);
  await embeddings.context.dispose();
}
