/**
 * vitest globalSetup: the CLI tests run the real `bin/lmhost.js`, which loads the built `dist/`.
 * `npm ci` builds it (the `prepare` script); this rebuilds only when a source file is newer than the
 * build, so a developer's edited tree is tested as it is.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { repositoryRoot } from "./paths.js";

function newestMtime(directory: string): number {
  let newest = 0;
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    const full = path.join(directory, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(full) : statSync(full).mtimeMs);
  }
  return newest;
}

export default function setup(): void {
  const built = path.join(repositoryRoot, "dist/cli/main.js");
  const stale = !existsSync(built) || newestMtime(path.join(repositoryRoot, "src")) > statSync(built).mtimeMs;
  if (stale) {
    execFileSync(
      process.execPath,
      [path.join(repositoryRoot, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"],
      {
        cwd: repositoryRoot,
        stdio: "inherit",
      },
    );
  }
}
