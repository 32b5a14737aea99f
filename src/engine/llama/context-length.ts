/**
 * How long a loaded model's context is per sequence.
 *
 * llama.cpp allocates (and clears) the whole KV cache when the context is created: every sequence's cells,
 * resident from the first request. Taking the model's training context as it comes made every recent
 * model unusable by default: a 131,072-token Llama 3.x with 4 sequences asks for 4 × 131,072 cells (16 GiB
 * for a 1B model, 64 GiB for an 8B one) and failed to load, and a 32,768-token one with a wide KV cache
 * took most of the RAM and tens of seconds to clear it (6.5 GB in 23 s here). So, unless the user sets a length (a model's `contextLength` in
 * config.json, else `--context-length`), the loader takes the longest of 4,096, 8,192, 16,384 and 32,768
 * tokens (never more than the model was trained for; a model trained for ≤ 32,768 may get exactly that)
 * whose context, all sequences together, fits in a quarter of the machine's memory and in 80% of what is
 * free besides the weights. 32,768 is what coding agents need (Codex CLI sends ~10,000 tokens of
 * instructions and tools before the first message); a quarter leaves the rest for the weights, other
 * models and the system. When the user did not set `--parallel` either, the loader gives up sequences
 * (4, then 2, then 1) before it gives a sequence less than 16,384 tokens: on a 16 GiB machine an 8B model's
 * 4 sequences would get 4,096 tokens each, too few for Codex's first request; and with a length the user
 * set but no `--parallel`, it takes the most sequences of that length that fit the same budget (at least 1).
 * How many sequences a model gets can then differ between loads, with the memory free at the time.
 */
import os from "node:os";

/** Context lengths the loader chooses from when none is set, shortest first. */
export const defaultContextSteps = [4096, 8192, 16384, 32768] as const;

/** Share of the machine's memory the contexts of one model may take when no length is set. */
export const defaultContextMemoryShare = 0.25;

/** With `--parallel` unset, fewer sequences are taken before a sequence gets less than this (or its training context). */
export const usefulContextLength = 16384;

export interface ContextLengthChoice {
  /** Tokens per sequence. */
  contextLength: number;
  /** Sequences of the context. */
  sequences: number;
  /** The sequences asked for (`--parallel`'s default), when fewer were taken to give each more context. */
  fewerThan?: number;
  /**
   * Why: `requested` (set by the user, capped at the training context), `trained` (the whole training
   * context fits), `default` (the longest default step fits: the model was trained for more), `memory`
   * (a shorter step was taken to stay within the memory budget), `minimum` (not even the shortest step
   * fits the budget: the shortest is tried anyway, and node-llama-cpp refuses it when it does not fit).
   */
  reason: "requested" | "trained" | "default" | "memory" | "minimum";
  /** Who set a `requested` length: the model's entry in config.json or `--context-length`. */
  setBy?: "model" | "flag";
  /** The memory the chosen context needs (all sequences), as node-llama-cpp estimates it. */
  bytes: number;
}

/**
 * The context length per sequence for a model trained for `trained` tokens, and how many sequences.
 * `bytesFor(length, sequences)` is the memory such a context needs. `sequenceCounts` are the counts to
 * try, most first: `[parallel]` when the user set it, else e.g. `[4, 2, 1]`.
 */
export async function chooseContextLength(options: {
  trained: number;
  requested?: { contextLength: number; setBy: "model" | "flag" } | undefined;
  sequenceCounts: readonly number[];
  bytesFor: (contextLength: number, sequences: number) => number | Promise<number>;
  budgetBytes: number;
}): Promise<ContextLengthChoice> {
  const { trained, requested, bytesFor, budgetBytes } = options;
  const counts = options.sequenceCounts.length > 0 ? options.sequenceCounts : [1];
  const most = counts[0] ?? 1;
  const fewer = (sequences: number) => (sequences < most ? { fewerThan: most } : {});
  if (requested !== undefined) {
    // The length is the user's; with several counts, the most sequences whose contexts fit the budget.
    const contextLength = Math.max(16, Math.min(trained, requested.contextLength));
    let taken = { sequences: most, bytes: await bytesFor(contextLength, most) };
    for (const sequences of counts.slice(1)) {
      if (taken.bytes <= budgetBytes) break;
      taken = { sequences, bytes: await bytesFor(contextLength, sequences) };
    }
    return {
      contextLength,
      sequences: taken.sequences,
      reason: "requested",
      setBy: requested.setBy,
      bytes: taken.bytes,
      ...fewer(taken.sequences),
    };
  }
  const largest = Math.max(...defaultContextSteps);
  const candidates: number[] = defaultContextSteps.filter((step) => step < trained);
  if (trained <= largest) candidates.push(trained);
  const wanted = Math.min(usefulContextLength, trained);
  let best: ContextLengthChoice | undefined;
  for (const sequences of counts) {
    let fitting: { contextLength: number; bytes: number } | undefined;
    for (const contextLength of candidates) {
      const bytes = await bytesFor(contextLength, sequences);
      if (bytes > budgetBytes) break;
      fitting = { contextLength, bytes };
    }
    if (fitting === undefined) continue;
    const reason: ContextLengthChoice["reason"] =
      fitting.contextLength === trained
        ? "trained"
        : fitting.contextLength === largest
          ? "default"
          : "memory";
    const choice: ContextLengthChoice = {
      contextLength: fitting.contextLength,
      sequences,
      reason,
      bytes: fitting.bytes,
      ...fewer(sequences),
    };
    if (choice.contextLength >= wanted) return choice;
    if (best === undefined || choice.contextLength > best.contextLength) best = choice;
  }
  if (best !== undefined) return best;
  const contextLength = Math.max(16, candidates[0] ?? trained);
  const sequences = counts[counts.length - 1] ?? 1;
  return {
    contextLength,
    sequences,
    reason: "minimum",
    bytes: await bytesFor(contextLength, sequences),
    ...fewer(sequences),
  };
}

/** The sequence counts to try for `parallel`: itself when the user set it, else halvings down to 1. */
export function sequenceCountsFor(parallel: number, setByUser: boolean): number[] {
  if (setByUser) return [parallel];
  const counts: number[] = [];
  for (let count = parallel; count >= 1; count = Math.floor(count / 2)) counts.push(count);
  return counts;
}

/**
 * The memory budget for one model's contexts when no length is set: a quarter of the machine's memory
 * (its cgroup limit when lower), and no more than 80% of what is free besides `weightBytes` (the weights
 * are memory-mapped and paged in as they are used, so free memory does not count them yet).
 */
export function contextMemoryBudget(weightBytes: number, memory = machineMemory()): number {
  return Math.min(memory.total * defaultContextMemoryShare, Math.max(0, memory.free - weightBytes) * 0.8);
}

function machineMemory(): { total: number; free: number } {
  // Without a cgroup limit Node 20 reports 2^64 as the constrained memory; availableMemory() (Node ≥ 20.13)
  // is what the cgroup has left, where os.freemem() would report the host's.
  const constrained = process.constrainedMemory?.() ?? 0;
  const total = constrained > 0 ? Math.min(os.totalmem(), constrained) : os.totalmem();
  const available = (process as { availableMemory?: () => number }).availableMemory?.() ?? os.freemem();
  return { total, free: Math.min(available, total) };
}

/**
 * What one sequence may hold in KV checkpoints. A sliding-window model (Gemma 2 and 3, gpt-oss; unless the
 * context keeps the full cache) or a recurrent or hybrid one cannot cut a sequence's tail off its KV cache,
 * so node-llama-cpp keeps copies of the sequence's state to go back to ("checkpoints", one or two a
 * generation, up to 32 a sequence), and by default without any bound on their memory: Gemma 3 4B's window
 * makes each ~170 MiB, up to 5.4 GiB a sequence. They get what the memory budget leaves after the
 * context, shared by the sequences; node-llama-cpp keeps the newest checkpoint even over that bound, and
 * the newest is what the next turn of a conversation goes back to.
 */
export function checkpointBytesPerSequence(budgetBytes: number, choice: ContextLengthChoice): number {
  return Math.max(0, Math.floor((budgetBytes - choice.bytes) / choice.sequences));
}

/** "context 16,384 tokens per sequence × 4 (2.1 GiB)…": how the choice reads in the load's log line. */
export function describeContextLength(choice: ContextLengthChoice, trained: number): string {
  const wanted = Math.min(usefulContextLength, trained).toLocaleString("en-US");
  const fewer =
    choice.fewerThan === undefined
      ? ""
      : choice.reason === "requested"
        ? ` (not ${choice.fewerThan}: as many of this length would take more than a quarter of the memory; --parallel sets it)`
        : choice.reason !== "minimum" && choice.contextLength >= Math.min(usefulContextLength, trained)
          ? ` (not ${choice.fewerThan}: each would get less than ${wanted}; --parallel sets it)`
          : ` (not ${choice.fewerThan}: too little memory for more; --parallel sets it)`;
  const base =
    `context ${choice.contextLength.toLocaleString("en-US")} tokens per sequence × ${choice.sequences}${fewer} ` +
    `(${(choice.bytes / 2 ** 30).toFixed(1)} GiB)`;
  const trainedText = trained.toLocaleString("en-US");
  switch (choice.reason) {
    case "requested":
      return `${base}, set by ${choice.setBy === "model" ? "config.json" : "--context-length"}`;
    case "trained":
      return base;
    case "default":
      return `${base}; trained for ${trainedText}, --context-length sets more`;
    case "memory":
      return `${base}: a longer one would take more than a quarter of this machine's memory or 80% of what is free (trained for ${trainedText}; --context-length sets it)`;
    case "minimum":
      return `${base}: even this is more than a quarter of this machine's memory or 80% of what is free (--context-length${choice.sequences > 1 ? " or --parallel" : ""} sets less)`;
  }
}

/** What a client whose prompt did not fit is told the operator can change (appended to `context_length_exceeded`). */
export function moreContextHint(choice: ContextLengthChoice, contextLength: number, trained: number): string {
  const running = `lmhost runs this model with ${contextLength} tokens per sequence (it was trained for ${trained})`;
  switch (choice.reason) {
    case "requested":
      return choice.setBy === "model"
        ? `${running}: a longer contextLength for it in lmhost's config.json gives more.`
        : `${running}: start lmhost with a longer --context-length for more.`;
    case "default":
      return `${running}: start lmhost with a longer --context-length for more.`;
    case "trained":
    case "memory":
    case "minimum":
      return choice.sequences > 1
        ? `${running}, what fits in memory: start lmhost with a longer --context-length and fewer --parallel sequences for more.`
        : `${running}, what fits in memory: start lmhost with a longer --context-length for more (it may not fit).`;
  }
}

/** Why a context of this choice was refused, and what to lower (for the load error). */
export function refusedContextAdvice(choice: ContextLengthChoice): string {
  const asked = `${choice.contextLength.toLocaleString("en-US")} tokens per sequence × ${choice.sequences} sequences`;
  const by =
    choice.reason === "requested"
      ? choice.setBy === "model"
        ? "as config.json sets it for this model"
        : "as --context-length sets it"
      : "lmhost's shortest default";
  const lower =
    choice.reason === "requested" && choice.setBy === "model"
      ? "set a shorter contextLength for this model in config.json"
      : "set a shorter --context-length";
  return `${asked} (${by}); ${lower}${choice.sequences > 1 ? " or fewer --parallel sequences" : ""}`;
}
