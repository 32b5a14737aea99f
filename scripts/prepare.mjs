// The `prepare` script: builds dist/ after `npm ci` / `npm install` in a checkout, when it can.
//
// - `npm pack` / `npm publish` run `prepack` (a clean, unconditional build), so the build is skipped
//   here rather than done twice.
// - Without dev dependencies (`npm ci --omit=dev`, NODE_ENV=production) there is nothing to build with:
//   TypeScript itself may still be there (node-llama-cpp's peer dependency), but not the type
//   definitions the build needs. A packed package already holds dist/; a checkout is told how to build
//   it, and the install does not fail.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import process from "node:process";
import { URL } from "node:url";

const command = process.env.npm_command;
if (command === "pack" || command === "publish") process.exit(0);

const require = createRequire(import.meta.url);
const resolvable = (specifier) => {
  try {
    return require.resolve(specifier);
  } catch {
    return undefined;
  }
};
const omitted = (process.env.npm_config_omit ?? "").split(/[\s,]+/).includes("dev");
const tsc = resolvable("typescript/bin/tsc");
if (omitted || tsc === undefined || resolvable("@types/node/package.json") === undefined) {
  if (!existsSync(new URL("../dist/cli/main.js", import.meta.url))) {
    process.stderr.write(
      "lmhost: dist/ is not built and the dev dependencies are not installed: run `npm ci` (with dev " +
        "dependencies; it builds dist/), or install the packed package (`npm pack`), which holds dist/.\n",
    );
  }
  process.exit(0);
}
execFileSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { stdio: "inherit" });
