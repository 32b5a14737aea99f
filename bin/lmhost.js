#!/usr/bin/env node
// Entry point of the `lmhost` command (built by `npm ci` through the `prepare` script).
//
// This file is CommonJS (bin/package.json), on purpose: UV_THREADPOOL_SIZE must be set before libuv's
// threadpool starts, because node-llama-cpp's per-token work runs there and a pool of 1 is measurably
// faster on small machines (docs/ARCHITECTURE.md, "Speed"). An ES module entry runs only after Node's ESM
// loader has already started the pool with its default of 4 threads, so setting the variable there came
// too late (the 470M model decoded at 27.6 instead of 41.9 tok/s on 2 threads); a CommonJS entry runs first.
"use strict";
process.env.UV_THREADPOOL_SIZE ??= "1";
import("../dist/cli/main.js").then(
  ({ main }) => main(process.argv),
  (error) => {
    process.stderr.write(`lmhost: cannot load dist/ (run \`npm run build\`): ${error.message}\n`);
    process.exitCode = 1;
  },
);
