/**
 * What a reasoning item carries besides its text: a summary (`reasoning.summary`) and, with
 * `include: ["reasoning.encrypted_content"]`, the sealed text. lmhost runs no summariser model: the summary
 * is the reasoning text itself (`concise`: its first paragraph); the server option `reasoningSummary: "none"`
 * turns summaries off.
 */
import { assertNever } from "../shared/errors.js";

export type ReasoningSummaryMode = "auto" | "concise" | "detailed";

export interface ReasoningOutput {
  /** The requested summary; undefined: none (not asked for, or turned off on this server). */
  summary?: ReasoningSummaryMode | undefined;
  /** `include: ["reasoning.encrypted_content"]`: the item carries the sealed reasoning. */
  encryptedContent?: boolean | undefined;
}

/** The summary text of a reasoning text; "" when there is nothing to summarise. */
export function reasoningSummaryText(text: string, mode: ReasoningSummaryMode): string {
  const trimmed = text.trim();
  switch (mode) {
    case "auto":
    case "detailed":
      return trimmed;
    case "concise":
      return (trimmed.split(/\n\s*\n/)[0] ?? "").trim();
    default:
      return assertNever(mode, "reasoning summary mode");
  }
}
