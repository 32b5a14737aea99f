/**
 * The npm package as a user installs it.
 *
 * Always: `npm pack --dry-run` (scripts skipped; dist/ is fresh from the test setup) ships dist/, bin/,
 * the patches, the demo model with its licence note and README — and none of the test-only models,
 * sources, specs or captures.
 *
 * With LMHOST_PACKAGE_TEST=1 (minutes, not seconds: it packs, which builds, and installs ~280 packages):
 * `npm pack` on a copy of the checkout (prepack deletes and rebuilds dist/, which the other tests are
 * using), `npm install -g --prefix <tmp>` of the tarball, then the installed `lmhost --version` and
 * `lmhost serve` from an unrelated folder answering README's quick-start request on the demo model; then
 * `npm install` of the tarball as another project's dependency, where npm hoists node-llama-cpp and the
 * postinstall must patch it there.
 * better-sqlite3's native module comes from a local "prebuild" made of this checkout's build (the
 * same file prebuild-install would download from GitHub), so it is not compiled again (3+ minutes);
 * every other package comes from the npm cache `npm ci` filled (`--prefer-offline`).
 */
import { execFile } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { repositoryRoot } from "../helpers/paths.js";
import { readmeQuickStartBody } from "../helpers/readme.js";
import { spawnServer } from "../helpers/spawn-server.js";

const run = promisify(execFile);
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const packageJson = JSON.parse(readFileSync(path.join(repositoryRoot, "package.json"), "utf8")) as {
  version: string;
  files: string[];
};

/** npm's environment without the LMHOST_* settings of the machine running the tests. */
function npmEnvironment(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("LMHOST_")));
  return { ...env, ...extra };
}

describe("the npm package", () => {
  it("ships dist, bin, the patches, the demo model and its licence note, README — nothing test-only", async () => {
    const { stdout } = await run(npm, ["pack", "--dry-run", "--json", "--ignore-scripts"], {
      cwd: repositoryRoot,
      env: npmEnvironment(),
    });
    const [packed] = JSON.parse(stdout) as { files: { path: string }[] }[];
    const files = (packed?.files ?? []).map((file) => file.path);
    for (const required of [
      "bin/lmhost.js",
      "bin/package.json",
      "dist/cli/main.js",
      "dist/models/demo.js",
      "dist/engine/llama/plain-chat-wrapper.js",
      "patches/node-llama-cpp+3.21.1.patch",
      "scripts/prepare.mjs",
      "assets/models/stories260K-chatml.gguf",
      "assets/models/README.md",
      "README.md",
      "package.json",
    ]) {
      expect(files).toContain(required);
    }
    const testOnly = files.filter(
      (file) =>
        /^(src|tests|bench|docs)\//.test(file) ||
        /(stories260K|llama-2-tiny-random)\.gguf$/.test(file) ||
        file.endsWith(".ts"),
    );
    expect(testOnly).toEqual([]);
  });

  it.runIf(process.env.LMHOST_PACKAGE_TEST === "1")(
    "packs, installs globally into a temp prefix, and serves a first request from any folder",
    async () => {
      const work = mkdtempSync(path.join(tmpdir(), "lmhost-package-"));
      // The install is ~800 MB (node-llama-cpp's prebuilt binaries): removed whatever happens.
      try {
        // A copy of what `npm pack` reads, with the checkout's node_modules (TypeScript for prepack).
        const checkout = path.join(work, "checkout");
        mkdirSync(checkout);
        for (const entry of [
          ...packageJson.files.filter((file) => file !== "dist"),
          "src",
          "tsconfig.json",
          "tsconfig.build.json",
          "package.json",
          "package-lock.json",
        ]) {
          cpSync(path.join(repositoryRoot, entry), path.join(checkout, entry), { recursive: true });
        }
        symlinkSync(path.join(repositoryRoot, "node_modules"), path.join(checkout, "node_modules"));
        await run(npm, ["pack", "--pack-destination", work], { cwd: checkout, env: npmEnvironment() });
        const tarball = path.join(work, `lmhost-${packageJson.version}.tgz`);

        // better-sqlite3's prebuilt binary, as prebuild-install names it, from this checkout's build.
        const prebuilds = path.join(work, "prebuilds");
        mkdirSync(prebuilds);
        const sqliteDir = path.join(repositoryRoot, "node_modules/better-sqlite3");
        const sqliteVersion = (
          JSON.parse(readFileSync(path.join(sqliteDir, "package.json"), "utf8")) as { version: string }
        ).version;
        const prebuildName = `better-sqlite3-v${sqliteVersion}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
        await run("tar", [
          "-czf",
          path.join(prebuilds, prebuildName),
          "-C",
          sqliteDir,
          "build/Release/better_sqlite3.node",
        ]);

        const prefix = path.join(work, "prefix");
        await run(
          npm,
          ["install", "-g", "--prefix", prefix, tarball, "--prefer-offline", "--no-audit", "--no-fund"],
          {
            cwd: work,
            env: npmEnvironment({ npm_config_better_sqlite3_local_prebuilds: prebuilds }),
            maxBuffer: 64 * 1024 * 1024,
          },
        );
        const lmhost = path.join(prefix, "bin", "lmhost");
        const installed = path.join(prefix, "lib", "node_modules", "lmhost");
        // The postinstall patched node-llama-cpp inside the global package's own node_modules.
        expect(
          readFileSync(
            path.join(installed, "node_modules/node-llama-cpp/dist/evaluator/LlamaContext/LlamaContext.js"),
            "utf8",
          ),
        ).toContain("lmhost patch: yield the context lock");

        const version = await run(lmhost, ["--version"], { cwd: work, env: npmEnvironment() });
        expect(version.stdout.trim()).toBe(packageJson.version);

        const elsewhere = path.join(work, "elsewhere");
        mkdirSync(elsewhere);
        const server = await spawnServer(["--models-dir", path.join(elsewhere, "models")], {
          executable: lmhost,
          cwd: elsewhere,
        });
        try {
          expect(server.output()).toContain("DEMO MODEL");
          const response = await fetch(`${server.url}/v1/responses`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(readmeQuickStartBody()),
          });
          expect(response.status).toBe(200);
          const result = (await response.json()) as { status: string; model: string; output_text?: string };
          expect(result).toMatchObject({ status: "completed", model: "lmhost-demo" });
        } finally {
          expect((await server.stop("SIGTERM")).code).toBe(0);
        }

        // As a dependency of another project, npm hoists node-llama-cpp to the project's node_modules:
        // the postinstall patches it there (patch-package run in lmhost's folder did not find it).
        const app = path.join(work, "app");
        mkdirSync(app);
        writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "app", version: "1.0.0" }));
        await run(npm, ["install", tarball, "--prefer-offline", "--no-audit", "--no-fund"], {
          cwd: app,
          env: npmEnvironment({ npm_config_better_sqlite3_local_prebuilds: prebuilds }),
          maxBuffer: 64 * 1024 * 1024,
        });
        expect(existsSync(path.join(app, "node_modules/lmhost/node_modules/node-llama-cpp"))).toBe(false);
        expect(
          readFileSync(
            path.join(app, "node_modules/node-llama-cpp/dist/evaluator/LlamaContext/LlamaContext.js"),
            "utf8",
          ),
        ).toContain("lmhost patch: yield the context lock");
        const asDependency = await run(path.join(app, "node_modules/.bin/lmhost"), ["--version"], {
          cwd: app,
          env: npmEnvironment(),
        });
        expect(asDependency.stdout.trim()).toBe(packageJson.version);
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    },
    900_000,
  );
});
