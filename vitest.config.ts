import { defineConfig } from "vitest/config";

// Two tiers in one run: tests/fast (scripted engine, in-memory twins, no sockets where avoidable) and
// tests/real (node-llama-cpp on assets/models, SQLite files, the openai SDK over loopback).
export default defineConfig({
  test: {
    include: ["tests/**/*.test.ts"],
    globalSetup: ["tests/helpers/build-once.ts"],
    pool: "forks",
    // Real-model files load native code; two workers match the two cores CI has.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    env: { UV_THREADPOOL_SIZE: "1" },
  },
});
