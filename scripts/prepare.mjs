// The `prepare` script: builds dist/ after `npm ci` / `npm install` in a checkout, when it can.
//
// - `npm pack` / `npm publish` run `prepack` (an unconditional build), so the build is skipped here
//   rather than done twice.
// - Without dev dependencies (`npm ci --omit=dev`) there is no TypeScript to build with: a packed
//   package already holds dist/, and a checkout says how to build it, instead of failing the install.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import process from "node:process";
import { URL } from "node:url";

const command = process.env.npm_command;
if (command === "pack" || command === "publish") process.exit(0);

let tsc;
try {
  tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
} catch {
  if (!existsSync(new URL("../dist/cli/main.js", import.meta.url))) {
    process.stderr.write(
      "lmhost: dist/ is not built and TypeScript (a dev dependency) is not installed: run `npm ci` " +
        "(with dev dependencies) and `npm run build`, or install the packed package (`npm pack`), which holds dist/.\n",
    );
  }
  process.exit(0);
}
execFileSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { stdio: "inherit" });
