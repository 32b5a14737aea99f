/**
 * How long a loaded model's context is per sequence.
 *
 * llama.cpp allocates (and clears) the whole KV cache when the context is created: every sequence's cells,
 * resident from the first request. Taking the model's training context as it comes made every recent
 * model unusable by default: a 131,072-token Llama 3.x with 4 sequences asks for 4 × 131,072 cells (16 GiB
 * for a 1B model, 64 GiB for an 8B one) and failed to load, and a 32,768-token one with a wide KV cache
 * took minutes and most of the RAM. So, unless the user sets a length (`--context-length`, or a model's
 * `contextLength` in config.json), the loader takes the longest of 4,096, 8,192, 16,384 and 32,768 tokens
 * (never more than the model was trained for; a model trained for ≤ 32,768 may get exactly that) whose
 * context, all sequences together, fits in a quarter of the machine's memory and in what is free now.
 * 32,768 is what coding agents need (Codex CLI sends ~10,000 tokens of instructions and tools before the
 * first message); a quarter leaves the rest for the weights, other models and the system.
 */
import os from "node:os";

/** Context lengths the loader chooses from when none is set, shortest first. */
export const defaultContextSteps = [4096, 8192, 16384, 32768] as const;

/** Share of the machine's memory the contexts of one model may take when no length is set. */
export const defaultContextMemoryShare = 0.25;

export interface ContextLengthChoice {
  /** Tokens per sequence. */
  contextLength: number;
  /**
   * Why: `requested` (set by the user, capped at the training context), `trained` (the whole training
   * context fits), `default` (the longest default step fits: the model was trained for more), `memory`
   * (a shorter step was taken to stay within the memory budget), `minimum` (not even the shortest step
   * fits the budget: the shortest is tried anyway, and node-llama-cpp refuses it when it does not fit).
   */
  reason: "requested" | "trained" | "default" | "memory" | "minimum";
  /** The memory the chosen context needs (all sequences), as estimated. */
  bytes?: number;
}

/**
 * Pure: the context length per sequence for a model trained for `trained` tokens. `bytesFor(length)` is
 * the memory a context of `length` tokens per sequence needs, all sequences together.
 */
export function chooseContextLength(options: {
  trained: number;
  requested?: number | undefined;
  bytesFor: (contextLength: number) => number;
  budgetBytes: number;
}): ContextLengthChoice {
  const { trained, requested, bytesFor, budgetBytes } = options;
  if (requested !== undefined) {
    const contextLength = Math.max(16, Math.min(trained, requested));
    return { contextLength, reason: "requested", bytes: bytesFor(contextLength) };
  }
  const largest = Math.max(...defaultContextSteps);
  const candidates: number[] = defaultContextSteps.filter((step) => step < trained);
  if (trained <= largest) candidates.push(trained);
  let chosen: ContextLengthChoice | undefined;
  for (const contextLength of candidates) {
    const bytes = bytesFor(contextLength);
    if (bytes > budgetBytes) break;
    chosen = { contextLength, reason: "memory", bytes };
  }
  if (chosen === undefined) {
    const contextLength = Math.max(16, candidates[0] ?? trained);
    return { contextLength, reason: "minimum", bytes: bytesFor(contextLength) };
  }
  if (chosen.contextLength === trained) chosen.reason = "trained";
  else if (chosen.contextLength === largest) chosen.reason = "default";
  return chosen;
}

/**
 * The memory budget for one model's contexts when no length is set: a quarter of the machine's memory
 * (its cgroup limit when lower), and no more than 80% of what is free now.
 */
export function contextMemoryBudget(memory = machineMemory()): number {
  return Math.min(memory.total * defaultContextMemoryShare, memory.free * 0.8);
}

function machineMemory(): { total: number; free: number } {
  const constrained = process.constrainedMemory?.() ?? 0;
  const total = constrained > 0 ? Math.min(os.totalmem(), constrained) : os.totalmem();
  return { total, free: Math.min(os.freemem(), total) };
}

/** "16,384 tokens per sequence × 4 (2.1 GiB)": how the choice reads in the log. */
export function describeContextLength(
  choice: ContextLengthChoice,
  parallel: number,
  trained: number,
): string {
  const size = choice.bytes === undefined ? "" : ` (${(choice.bytes / 2 ** 30).toFixed(1)} GiB)`;
  const base = `context ${choice.contextLength.toLocaleString("en-US")} tokens per sequence × ${parallel}${size}`;
  const trainedText = trained.toLocaleString("en-US");
  switch (choice.reason) {
    case "requested":
    case "trained":
      return base;
    case "default":
      return `${base}; trained for ${trainedText}, --context-length sets more`;
    case "memory":
      return `${base}: a longer one would take more than a quarter of this machine's memory or 80% of what is free (trained for ${trainedText}; --context-length sets it)`;
    case "minimum":
      return `${base}: even this is more than a quarter of this machine's memory or 80% of what is free (--context-length or --parallel sets less)`;
  }
}
