/** Reads commands and request bodies from README.md, so tests run what the docs say and the docs cannot drift. */
import { readFileSync } from "node:fs";
import path from "node:path";
import { repositoryRoot } from "./paths.js";

/** The JSON body of README's first `curl http://127.0.0.1:1234/v1/responses ... -d '...'` (the quick start). */
export function readmeQuickStartBody(): Record<string, unknown> {
  const readme = readFileSync(path.join(repositoryRoot, "README.md"), "utf8");
  const match = /curl http:\/\/127\.0\.0\.1:1234\/v1\/responses[^\n]*\\\n\s*-d '([^']+)'/.exec(readme);
  if (match?.[1] === undefined)
    throw new Error("README.md has no quick-start `curl .../v1/responses -d '...'`");
  return JSON.parse(match[1]) as Record<string, unknown>;
}
