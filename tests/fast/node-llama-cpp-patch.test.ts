/**
 * lmhost's patch of node-llama-cpp (patches/node-llama-cpp+3.21.1.patch) reaches node-llama-cpp wherever
 * npm put it: `scripts/apply-patches.mjs` (the postinstall) patches a copy hoisted to another project's
 * node_modules, which patch-package run in lmhost's own folder (the postinstall before) left as it was;
 * and the running code can tell whether the patch is in (the server warns at start when it is not).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { nodeLlamaCppPatched } from "../../src/engine/llama/patch-check.js";
import { repositoryRoot } from "../helpers/paths.js";

const patchFile = path.join(repositoryRoot, "patches/node-llama-cpp+3.21.1.patch");
const patchedPath = "dist/evaluator/LlamaContext/LlamaContext.js";
/** Every file the patch touches, relative to node-llama-cpp's folder. */
const patchedPaths = [
  ...readFileSync(patchFile, "utf8").matchAll(/^\+\+\+ b\/node_modules\/node-llama-cpp\/(.+)$/gm),
].map((match) => match[1] ?? "");
const markers = (file: string) => readFileSync(file, "utf8").split("lmhost patch").length - 1;

/**
 * Another project with lmhost as a dependency, laid out as npm lays it out: node-llama-cpp (its
 * package.json and the patched files, un-patched with `git apply -R`) hoisted to the project's
 * node_modules, lmhost's package files in node_modules/lmhost, patch-package beside them.
 */
function hoistedProject(): { project: string; lmhostDir: string; target: string } {
  const project = mkdtempSync(path.join(tmpdir(), "lmhost-hoisted-"));
  writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "app", version: "1.0.0" }));
  const modules = path.join(project, "node_modules");
  const installed = path.join(repositoryRoot, "node_modules/node-llama-cpp");
  const target = path.join(modules, "node-llama-cpp", patchedPath);
  cpSync(path.join(installed, "package.json"), path.join(modules, "node-llama-cpp/package.json"));
  for (const file of patchedPaths) {
    mkdirSync(path.dirname(path.join(modules, "node-llama-cpp", file)), { recursive: true });
    cpSync(path.join(installed, file), path.join(modules, "node-llama-cpp", file));
  }
  execFileSync("git", ["apply", "-R", patchFile], { cwd: project });
  const lmhostDir = path.join(modules, "lmhost");
  mkdirSync(path.join(lmhostDir, "scripts"), { recursive: true });
  cpSync(path.join(repositoryRoot, "package.json"), path.join(lmhostDir, "package.json"));
  cpSync(path.join(repositoryRoot, "patches"), path.join(lmhostDir, "patches"), { recursive: true });
  cpSync(
    path.join(repositoryRoot, "scripts/apply-patches.mjs"),
    path.join(lmhostDir, "scripts/apply-patches.mjs"),
  );
  symlinkSync(path.join(repositoryRoot, "node_modules/patch-package"), path.join(modules, "patch-package"));
  return { project, lmhostDir, target };
}

describe("lmhost's node-llama-cpp patch", () => {
  it("is applied to a node-llama-cpp hoisted into another project, which plain patch-package missed", () => {
    const { project, lmhostDir, target } = hoistedProject();
    onTestFinished(() => rmSync(project, { recursive: true, force: true }));
    expect(markers(target)).toBe(0);
    const environment = { ...process.env, CI: "1" };

    // The old postinstall: patch-package in lmhost's folder finds no node_modules/node-llama-cpp there.
    const before = spawnSync(
      process.execPath,
      [path.join(repositoryRoot, "node_modules/patch-package/dist/index.js")],
      { cwd: lmhostDir, env: environment, encoding: "utf8" },
    );
    expect(before.stdout + before.stderr).toContain("not present at node_modules/node-llama-cpp");
    expect(markers(target)).toBe(0);

    // The postinstall now, as npm runs it (in lmhost's folder).
    const run = () =>
      spawnSync(process.execPath, ["scripts/apply-patches.mjs"], {
        cwd: lmhostDir,
        env: environment,
        encoding: "utf8",
      });
    const first = run();
    expect(first.status).toBe(0);
    expect(first.stderr).not.toContain("could not patch");
    expect(markers(target)).toBe(
      markers(path.join(repositoryRoot, "node_modules/node-llama-cpp", patchedPath)),
    );
    expect(markers(target)).toBeGreaterThan(0);
    for (const file of patchedPaths)
      expect(markers(path.join(project, "node_modules/node-llama-cpp", file)), file).toBeGreaterThan(0);
    // A second install finds it patched (patch-package tells) and leaves it alone.
    const patched = readFileSync(target, "utf8");
    const second = run();
    expect(second.status).toBe(0);
    expect(second.stderr).not.toContain("could not patch");
    expect(readFileSync(target, "utf8")).toBe(patched);
  });

  it("is in the node-llama-cpp this checkout runs, and an unpatched method is told apart", () => {
    expect(nodeLlamaCppPatched()).toBe(true);
    expect(nodeLlamaCppPatched(function eraseContextTokenRanges() {})).toBe(false);
    expect(nodeLlamaCppPatched(null)).toBe(false);
  });
});
