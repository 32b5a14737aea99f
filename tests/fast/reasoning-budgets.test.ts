/** Thought-token budgets per reasoning effort: defaults, the server's and the model's overrides, null = unlimited. */
import { describe, expect, it } from "vitest";
import { DEFAULT_REASONING_BUDGETS, thoughtTokenBudget } from "../../src/engine/reasoning-budgets.js";

describe("thoughtTokenBudget", () => {
  it("uses the defaults: minimal 0, low 512, medium 2048, high 8192, xhigh unlimited; none 0; no effort no cap", () => {
    expect(DEFAULT_REASONING_BUDGETS).toEqual({
      minimal: 0,
      low: 512,
      medium: 2048,
      high: 8192,
      xhigh: null,
    });
    expect(thoughtTokenBudget("none")).toBe(0);
    expect(thoughtTokenBudget("minimal")).toBe(0);
    expect(thoughtTokenBudget("low")).toBe(512);
    expect(thoughtTokenBudget("medium")).toBe(2048);
    expect(thoughtTokenBudget("high")).toBe(8192);
    expect(thoughtTokenBudget("xhigh")).toBeUndefined();
    expect(thoughtTokenBudget(undefined)).toBeUndefined();
  });

  it("takes the first layer that sets the effort (model over server over default); null is unlimited", () => {
    const server = { low: 8, high: 32 };
    const model = { high: null, xhigh: 100 };
    expect(thoughtTokenBudget("low", model, server)).toBe(8);
    expect(thoughtTokenBudget("high", model, server)).toBeUndefined();
    expect(thoughtTokenBudget("xhigh", model, server)).toBe(100);
    expect(thoughtTokenBudget("medium", model, server)).toBe(2048);
    expect(thoughtTokenBudget("none", { minimal: 5 })).toBe(0);
  });
});
