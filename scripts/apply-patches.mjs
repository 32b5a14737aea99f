// The `postinstall` script: applies patches/ (node-llama-cpp's batch dispatcher yielding to a sequence
// erase, and integers without an exponent in its JSON grammar; see docs/ARCHITECTURE.md) to
// node-llama-cpp wherever npm installed it.
//
// patch-package looks for node_modules/<package> under the folder it runs in. In a checkout or a global
// install that is lmhost's own folder; but when lmhost is a dependency of another project, npm hoists
// node-llama-cpp to the project's node_modules, and patch-package run in lmhost's folder would not find
// it. So it runs in the folder that holds the node_modules node-llama-cpp resolves from, with lmhost's
// patches/ as its patch folder. A patch that does not apply never fails the install: lmhost warns at
// start (src/engine/llama/patch-check.ts) and runs without it.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const lmhostDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(path.join(lmhostDir, "package.json"));
const say = (message) => process.stderr.write(`lmhost: ${message}\n`);

// node-llama-cpp's package.json is not among its exports: find the folder by Node's lookup paths.
const packageDir = (require.resolve.paths("node-llama-cpp") ?? [])
  .map((folder) => path.join(folder, "node-llama-cpp"))
  .find((folder) => existsSync(path.join(folder, "package.json")));
if (packageDir === undefined) {
  say("node-llama-cpp is not installed; nothing to patch");
  process.exit(0);
}
const patchedFile = path.join(packageDir, "dist/evaluator/LlamaContext/LlamaContext.js");
const root = path.dirname(path.dirname(packageDir));
const patchDir = path.relative(root, path.join(lmhostDir, "patches")) || "patches";
// patch-package works in the nearest folder with a package.json at or above where it runs: without one
// here (pnpm's store, a global fallback folder) it would look for node-llama-cpp somewhere else.
if (!existsSync(path.join(root, "package.json"))) {
  say(`cannot patch node-llama-cpp at ${packageDir}: ${root} has no package.json for patch-package`);
  process.exit(0);
}
// patch-package itself tells a patch already applied (a reinstall) from one to apply.
try {
  execFileSync(process.execPath, [require.resolve("patch-package/dist/index.js"), "--patch-dir", patchDir], {
    cwd: root,
    stdio: "inherit",
  });
} catch (error) {
  say(`patch-package failed: ${error instanceof Error ? error.message : String(error)}`);
}
if (!existsSync(patchedFile) || !readFileSync(patchedFile, "utf8").includes("lmhost patch")) {
  say(
    `could not patch node-llama-cpp at ${packageDir}: a request that arrives while others generate may ` +
      "wait until one of them ends. Reinstall lmhost, or run `node scripts/apply-patches.mjs` in its folder.",
  );
}
