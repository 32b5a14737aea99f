/**
 * Whether lmhost's patch of node-llama-cpp (`patches/node-llama-cpp+3.21.1.patch`, applied at install by
 * `scripts/apply-patches.mjs`) is in the node-llama-cpp this process runs. Without it everything works,
 * but a request whose sequence must first be erased waits until a running generation ends (issue 9's
 * starvation), so the server warns at start instead of failing.
 */
import { LlamaContextSequence } from "node-llama-cpp";

/** The patched method, as node-llama-cpp's internals name it. */
function eraseMethod(): unknown {
  return (LlamaContextSequence.prototype as unknown as { _eraseContextTokenRanges?: unknown })
    ._eraseContextTokenRanges;
}

/** True when `method` (default: the installed node-llama-cpp's sequence erase) carries the patch. */
export function nodeLlamaCppPatched(method: unknown = eraseMethod()): boolean {
  return typeof method === "function" && method.toString().includes("_exclusiveLockWaiters");
}

export const unpatchedWarning =
  "node-llama-cpp is not patched (patches/node-llama-cpp+3.21.1.patch did not apply at install): a request " +
  "that arrives while others generate may wait until one of them ends. Reinstall lmhost, or run " +
  "`node scripts/apply-patches.mjs` in its folder.";
