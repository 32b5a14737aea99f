/**
 * Loads a GGUF model entry into memory with node-llama-cpp and unloads it again: the model, its chat
 * wrapper, one context with up to `parallel` sequences (the KV cache each request reuses), and a short warm-up
 * generation so the first real request does not pay for V8 optimisation and page faults.
 *
 * Settings follow ENGINE-NOTES: `threads` is always explicit (node-llama-cpp's default is wrong on small
 * machines), and models under 128 MiB run on one thread (their per-token compute is too small to split: on a
 * 2-vCPU machine 2 threads decoded stories260K at 0.14× and a 29 MB model at 0.72× of one thread); flash attention is off for tiny models,
 * where it measured ×1.4 slower, and "auto" otherwise; the context length per sequence is the one the user
 * set (a per-model override, then `--context-length`), else chosen to fit memory (context-length.ts).
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { linkAbortSignals } from "../../shared/abort-signals.js";
import {
  InsufficientMemoryError,
  LlamaChat,
  type ChatHistoryItem,
  type ChatWrapper,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type Token,
  type Tokenizer,
} from "node-llama-cpp";
import type { ModelEntry, ModelLoader } from "../../models/types.js";
import { ApiError } from "../../shared/errors.js";
import { TruncationStarts } from "../truncation.js";
import { disposeEmbeddings, type ModelEmbeddings } from "./embeddings.js";
import { SequencePool } from "./sequence-pool.js";
import { memoizingTokenizer } from "./token-memo.js";
import {
  chooseContextLength,
  contextMemoryBudget,
  checkpointBytesPerSequence,
  describeContextLength,
  refusedContextAdvice,
  sequenceCountsFor,
  type ContextLengthChoice,
} from "./context-length.js";
import { promptCacheIdentity } from "./prompt-cache.js";
import { reasoningChatWrapper, resolveModelChatWrapper, type ReasoningEffort } from "./chat-wrapper.js";

/** Models smaller than this run with flash attention off (a compute effect measured on tiny models). */
export const tinyModelBytes = 128 * 1024 * 1024;

/**
 * Models smaller than this run on one thread: their per-token compute is too short to pay for splitting it.
 * Measured with `npm run bench -- --only threads` (raw node-llama-cpp, 2 threads ÷ 1, 2 vCPUs): 1.1 MB
 * 0.14×, 7 MB 0.23×, 29 MB 0.72×, 90 MB 0.97×, 218 MB 1.24×, 480 MiB 1.25×; the crossover lies between
 * 90 and 218 MB.
 */
export const singleThreadModelBytes = 128 * 1024 * 1024;

export interface LlamaModelLoaderOptions {
  llama: Llama;
  /** CPU threads per context; always passed explicitly. */
  threads: number;
  /** Sequences per loaded model: how many requests generate at once. */
  parallel: number;
  /**
   * False when `parallel` is lmhost's default rather than the user's: the loader may then take fewer
   * sequences so that each gets a useful context (context-length.ts). Default true (taken as it is).
   */
  parallelSetByUser?: boolean;
  /**
   * Context length per sequence (`--context-length`), capped at the model's training context; unset, the
   * loader chooses one that fits the memory budget (context-length.ts).
   */
  contextLength?: number;
  /** The memory budget for a context when no length is set (a test seam; the machine's otherwise). */
  contextMemoryBudgetBytes?: number;
  /** Overrides the per-model choice (off below `tinyModelBytes`, "auto" above). */
  flashAttention?: "auto" | boolean;
  /** Models smaller than this run on one thread whatever `threads` says (default `singleThreadModelBytes`; 0 disables). */
  singleThreadBelowBytes?: number;
  /** Warm-up generation after load; `false` skips it. Defaults to 256 tokens or 400 ms, whichever comes first. */
  warmup?: false | { maxTokens?: number; maxMilliseconds?: number };
}

export interface LlamaLoadedModel {
  entry: ModelEntry;
  llama: Llama;
  model: LlamaModel;
  context: LlamaContext;
  sequences: readonly LlamaContextSequence[];
  /** Who generates on which sequence: one request per sequence, longest cached prefix first. */
  pool: SequencePool<LlamaContextSequence, Token[]>;
  /** The wrapper the model runs with (its own template or the entry's override). */
  chatWrapper: ChatWrapper;
  /** Context length per sequence. */
  contextLength: number;
  /** How the context length was chosen (context-length.ts): the load's log line, the overflow hint. */
  contextChoice: ContextLengthChoice;
  /**
   * The bound on each sequence's KV checkpoints (context-length.ts, checkpointBytesPerSequence); they exist
   * only where the model needs them (`needsCheckpoints`: sliding-window, recurrent, hybrid).
   */
  checkpointBytes: number;
  flashAttention: "auto" | boolean;
  /** Threads the context runs with. */
  threads: number;
  /** Wall time of load(), warm-up included. */
  loadMilliseconds: number;
  warmupMilliseconds: number;
  /** Reasoning-effort variants of `chatWrapper`, built on first use. */
  readonly reasoningWrappers: Map<ReasoningEffort, ChatWrapper>;
  /** Where recent `truncation: "auto"` drops started the kept history (see fitHistory). */
  readonly truncationStarts: TruncationStarts<ChatHistoryItem[]>;
  /**
   * The model's tokenizer, remembering the tokens of long texts (token-memo.ts): prompts are rendered with
   * it, so a follow-up turn tokenizes only its new messages.
   */
  readonly promptTokenizer: Tokenizer;
  /** The embedding context on this same model, created by the first embedding request (embeddings.ts). */
  embeddings?: Promise<ModelEmbeddings> | undefined;
  /**
   * What this model's saved sequence states are filed under in the prompt cache (prompt-cache.ts); undefined
   * when its states cannot be cut back to a prefix (recurrent, hybrid or sliding-window models).
   */
  promptCacheIdentity?: string;
}

export class LlamaModelLoader implements ModelLoader<LlamaLoadedModel> {
  private readonly options: LlamaModelLoaderOptions;

  constructor(options: LlamaModelLoaderOptions) {
    if (!Number.isInteger(options.threads) || options.threads < 1)
      throw new Error(`threads must be a positive integer, got ${options.threads}`);
    if (!Number.isInteger(options.parallel) || options.parallel < 1)
      throw new Error(`parallel must be a positive integer, got ${options.parallel}`);
    this.options = options;
  }

  async load(entry: ModelEntry, signal?: AbortSignal): Promise<LlamaLoadedModel> {
    if (entry.error !== undefined) {
      throw new ApiError({
        status: 400,
        message: `Model '${entry.id}' cannot be loaded: ${entry.error}`,
        param: "model",
        code: "model_load_failed",
      });
    }
    const started = performance.now();
    const { llama, parallel } = this.options;
    let model: LlamaModel;
    try {
      model = await llama.loadModel({
        modelPath: entry.path,
        ...(signal !== undefined ? { loadSignal: signal } : {}),
      });
    } catch (error) {
      if (signal?.aborted === true) throw error;
      throw new ApiError({
        status: 400,
        message: `Model '${entry.id}' failed to load: ${error instanceof Error ? error.message : String(error)}`,
        param: "model",
        code: "model_load_failed",
      });
    }
    let context: LlamaContext | undefined;
    try {
      const chatWrapper = resolveModelChatWrapper(model, entry.chatTemplate);
      const flashAttention = this.options.flashAttention ?? (model.size < tinyModelBytes ? false : "auto");
      // A length the user set (a model's `contextLength` in config.json, the more specific, over
      // `--context-length`) is taken as it is; otherwise the longest default step that fits the memory
      // budget, estimated as node-llama-cpp checks it when the context is created (context-length.ts).
      const override = entry.contextLengthOverride;
      const flag = this.options.contextLength;
      const choose = (budgetBytes: number) =>
        chooseContextLength({
          trained: model.trainContextSize,
          sequenceCounts: sequenceCountsFor(parallel, this.options.parallelSetByUser !== false),
          requested:
            override !== undefined
              ? { contextLength: override, setBy: "model" }
              : flag !== undefined
                ? { contextLength: flag, setBy: "flag" }
                : undefined,
          bytesFor: async (contextSize, sequences) =>
            (
              await model.fileInsights.estimateContextResourceRequirementsV2({
                contextSize,
                modelGpuLayers: 0,
                sequences,
                flashAttention,
              })
            ).cpuRam,
          budgetBytes,
        });
      let budgetBytes = this.options.contextMemoryBudgetBytes ?? contextMemoryBudget(model.size);
      let contextChoice = await choose(budgetBytes);
      const threads =
        model.size < (this.options.singleThreadBelowBytes ?? singleThreadModelBytes)
          ? 1
          : this.options.threads;
      for (;;) {
        try {
          context = await model.createContext({
            contextSize: contextChoice.contextLength,
            sequences: contextChoice.sequences,
            threads,
            flashAttention,
            ...(signal !== undefined ? { createSignal: signal } : {}),
          });
          break;
        } catch (error) {
          if (!(error instanceof InsufficientMemoryError)) throw error;
          // The choice is made again under a budget just below the refused one (the budget read free
          // memory a moment ago): a shorter length, or fewer sequences when --parallel is unset. A set
          // length with the fewest sequences, or lmhost's shortest default, fails.
          const next = await choose(contextChoice.bytes - 1);
          if (next.bytes < contextChoice.bytes) {
            // The budget was more than node-llama-cpp would give: nothing is left for checkpoints.
            budgetBytes = next.bytes;
            contextChoice = next;
            continue;
          }
          throw new Error(`${error.message}: ${refusedContextAdvice(contextChoice)}`, {
            cause: error,
          });
        }
      }
      const checkpointBytes = checkpointBytesPerSequence(budgetBytes, contextChoice);
      const sequences: LlamaContextSequence[] = [];
      while (context.sequencesLeft > 0)
        sequences.push(context.getSequence({ checkpoints: { maxMemory: checkpointBytes } }));
      const loaded: LlamaLoadedModel = {
        entry,
        llama,
        model,
        context,
        sequences,
        pool: new SequencePool<LlamaContextSequence, Token[]>({
          sequences,
          reusablePrefix: (sequence, shared, tokens) => reusablePrefix(sequence, shared, tokens.length),
        }),
        chatWrapper,
        contextLength: context.contextSize,
        contextChoice,
        checkpointBytes,
        flashAttention,
        threads,
        loadMilliseconds: 0,
        warmupMilliseconds: 0,
        reasoningWrappers: new Map(),
        truncationStarts: new TruncationStarts(),
        promptTokenizer: memoizingTokenizer(model.tokenizer),
      };
      const identity = await cacheIdentityOf(entry.path, llama, sequences[0], {
        parallel: contextChoice.sequences,
        flashAttention,
      });
      if (identity !== undefined) loaded.promptCacheIdentity = identity;
      const warmupStarted = performance.now();
      if (this.options.warmup !== false) await warmUp(loaded, this.options.warmup ?? {}, signal);
      loaded.warmupMilliseconds = performance.now() - warmupStarted;
      loaded.loadMilliseconds = performance.now() - started;
      return loaded;
    } catch (error) {
      await context?.dispose();
      await model.dispose();
      throw error;
    }
  }

  async unload(loaded: LlamaLoadedModel): Promise<void> {
    const unloading = new ApiError({
      status: 503,
      message: `Model '${loaded.entry.id}' is unloading.`,
      code: "model_unloading",
      retryAfter: 1,
    });
    loaded.pool.close(unloading);
    try {
      await disposeEmbeddings(loaded, unloading);
      await loaded.context.dispose();
    } finally {
      await loaded.model.dispose();
    }
  }

  contextLength(loaded: LlamaLoadedModel): number {
    return loaded.contextLength;
  }

  describe(loaded: LlamaLoadedModel): string {
    const context = describeContextLength(
      { ...loaded.contextChoice, contextLength: loaded.contextLength },
      loaded.model.trainContextSize,
    );
    if (loaded.sequences[0]?.needsCheckpoints !== true) return context;
    const insights = loaded.model.fileInsights;
    const why =
      insights.swaSize !== undefined ? `a sliding window of ${insights.swaSize} tokens` : "recurrent layers";
    return `${context}; KV checkpoints (${why}) up to ${(loaded.checkpointBytes / 2 ** 20).toFixed(0)} MiB a sequence, the newest always kept`;
  }
}

/**
 * The prompt cache identity of a loaded model (see promptCacheIdentity): the model file, the llama.cpp build
 * and node-llama-cpp version, the sequence count and flash attention. Undefined for models whose state
 * cannot be cut back to a prefix (node-llama-cpp's `needsCheckpoints`) or when the file cannot be read.
 */
async function cacheIdentityOf(
  modelPath: string,
  llama: Llama,
  sequence: LlamaContextSequence | undefined,
  context: { parallel: number; flashAttention: "auto" | boolean },
): Promise<string | undefined> {
  if (sequence === undefined || sequence.needsCheckpoints) return undefined;
  try {
    return await promptCacheIdentity(modelPath, {
      nodeLlamaCpp: nodeLlamaCppVersion(),
      llamaCpp: `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}`,
      buildType: llama.buildType,
      sequences: context.parallel,
      flashAttention: String(context.flashAttention),
    });
  } catch {
    return undefined;
  }
}

let cachedBindingVersion: string | undefined;
function nodeLlamaCppVersion(): string {
  if (cachedBindingVersion !== undefined) return cachedBindingVersion;
  try {
    const entry = createRequire(import.meta.url).resolve("node-llama-cpp");
    const manifest = JSON.parse(
      readFileSync(path.join(path.dirname(entry), "..", "package.json"), "utf8"),
    ) as {
      version?: string;
    };
    cachedBindingVersion = manifest.version ?? "unknown";
  } catch {
    cachedBindingVersion = "unknown";
  }
  return cachedBindingVersion;
}

/**
 * How much of the `shared` tokens a sequence holds of a prompt it can keep. A sliding-window, recurrent or
 * hybrid model cannot erase a sequence's tail once its KV cache has moved past the point the prompt goes
 * back to: node-llama-cpp then restores the newest checkpoint it keeps at or before that point, or with none
 * evaluates the whole prefix again (measured on a Gemma 2 model: a new conversation sharing 619 tokens of
 * instructions with one whose 1,200-token message followed them evaluated all 657 of its tokens, reported
 * as 619 cached). This mirrors node-llama-cpp 3.21.1's erase (`_eraseContextTokenRanges`): the cells from
 * `stateCellsStartIndex` on can be cut; checkpoints past the kept tokens are pruned first, then the newest
 * left is restored. Its public `getRestoreToPrefixIndexEvaluationSize` looks at the newest checkpoint only,
 * before that pruning, so it is the fallback when the checkpoint list is not where 3.21.1 keeps it.
 * LlamaChat always evaluates a prompt's last token again, so a sequence keeps at most `promptLength − 1`
 * of it (a prompt it holds whole, as for a regenerated answer, goes back one token before its end).
 */
export function reusablePrefix(
  sequence: LlamaContextSequence,
  sharedTokens: number,
  promptLength: number,
): number {
  if (sharedTokens <= 0 || !sequence.needsCheckpoints) return sharedTokens;
  const shared = Math.min(sharedTokens, Math.max(0, promptLength - 1));
  if (shared <= 0) return 0;
  // Nothing to erase: the prompt continues everything the sequence holds.
  if (shared >= sequence.nextTokenIndex) return shared;
  const lastKept = shared - 1;
  if (lastKept >= sequence.stateCellsStartIndex && sequence.stateCellsStartIndex >= 0) return shared;
  const checkpoints = (sequence as unknown as { _checkpoints?: { _checkpoints?: unknown } })._checkpoints
    ?._checkpoints;
  if (Array.isArray(checkpoints)) {
    for (let index = checkpoints.length - 1; index >= 0; index--) {
      const checkpoint = (
        checkpoints[index] as [unknown, { minPos?: unknown; maxPos?: unknown }] | undefined
      )?.[1];
      if (typeof checkpoint?.maxPos !== "number" || typeof checkpoint.minPos !== "number") continue;
      if (checkpoint.maxPos <= lastKept && checkpoint.minPos <= lastKept) return checkpoint.maxPos + 1;
    }
    return 0;
  }
  const cost = sequence.getRestoreToPrefixIndexEvaluationSize(lastKept);
  if (cost < 0) return shared;
  return cost >= lastKept ? 0 : shared - cost;
}

/** The wrapper for a request's reasoning effort (cached per loaded model); the base wrapper when the family has no switch. */
export function chatWrapperFor(loaded: LlamaLoadedModel, effort: ReasoningEffort | undefined): ChatWrapper {
  if (effort === undefined) return loaded.chatWrapper;
  const cached = loaded.reasoningWrappers.get(effort);
  if (cached !== undefined) return cached;
  const wrapper =
    reasoningChatWrapper(loaded.model, loaded.chatWrapper, loaded.entry.chatTemplate, effort) ??
    loaded.chatWrapper;
  loaded.reasoningWrappers.set(effort, wrapper);
  return wrapper;
}

/**
 * Generates a few tokens on the first sequence through the same LlamaChat path requests use, then clears the
 * sequence. Bounded by tokens and time so large models do not pay seconds for it.
 */
async function warmUp(
  loaded: LlamaLoadedModel,
  options: { maxTokens?: number; maxMilliseconds?: number },
  signal?: AbortSignal,
): Promise<void> {
  const sequence = loaded.sequences[0];
  if (sequence === undefined) return;
  const combined = linkAbortSignals(signal);
  const timeout = setTimeout(() => combined.abort(), options.maxMilliseconds ?? 400);
  const chat = new LlamaChat({
    contextSequence: sequence,
    chatWrapper: loaded.chatWrapper,
    autoDisposeSequence: false,
  });
  try {
    await chat.generateResponse(
      [
        { type: "user", text: "Tell me a short story." },
        { type: "model", response: [] },
      ],
      {
        maxTokens: Math.max(1, Math.min(options.maxTokens ?? 256, loaded.contextLength - 64)),
        signal: combined.signal,
        stopOnAbortSignal: true,
        repeatPenalty: false,
      },
    );
  } catch (error) {
    if (signal?.aborted === true) throw error;
    // A failed or interrupted warm-up only costs speed on the first request.
  } finally {
    clearTimeout(timeout);
    combined.dispose();
    chat.dispose({ disposeSequence: false });
    await sequence.clearHistory();
  }
}
