#!/usr/bin/env node
// Entry point of the `lmhost` command (built by `npm ci` through the `prepare` script).
// UV_THREADPOOL_SIZE must be set before libuv's threadpool starts: node-llama-cpp's per-token work runs
// there and a pool of 1 is measurably faster on small machines (docs/ARCHITECTURE.md, "Speed").
process.env.UV_THREADPOOL_SIZE ??= "1";
const { main } = await import("../dist/cli/main.js");
await main(process.argv);
