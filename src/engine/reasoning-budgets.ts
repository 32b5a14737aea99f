/**
 * Thought-token budgets per reasoning effort: how many tokens a model may think before its thought is
 * closed and the answer begins. Defaults below; config.json may replace any of them for the whole server
 * (`reasoningBudgets`) and per model (`modelOverrides.<id>.reasoningBudgets`). `null` means unlimited.
 */

export type ReasoningEffortLevel = "none" | "minimal" | "low" | "medium" | "high" | "xhigh";

/** The efforts a budget can be configured for ("none" always thinks 0 tokens). */
export type BudgetedEffort = Exclude<ReasoningEffortLevel, "none">;

export type ReasoningBudgets = { [effort in BudgetedEffort]?: number | null | undefined };

export const DEFAULT_REASONING_BUDGETS: Readonly<Record<BudgetedEffort, number | null>> = {
  minimal: 0,
  low: 512,
  medium: 2048,
  high: 8192,
  xhigh: null,
};

/**
 * The thought-token budget for an effort: the model's configured budget, else the server's, else the
 * default; undefined means unlimited (no effort given, or a `null` budget).
 */
export function thoughtTokenBudget(
  effort: ReasoningEffortLevel | undefined,
  ...layers: (ReasoningBudgets | undefined)[]
): number | undefined {
  if (effort === undefined) return undefined;
  if (effort === "none") return 0;
  for (const layer of layers) {
    const budget = layer?.[effort];
    if (budget !== undefined) return budget ?? undefined;
  }
  return DEFAULT_REASONING_BUDGETS[effort] ?? undefined;
}
