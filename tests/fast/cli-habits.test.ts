/**
 * The small pieces behind the CLI habits and the logs, without a model: human durations, `publisher/model`
 * resolving to its default quantization (or a 404 listing the candidates), "did you mean" for Chat-style
 * fields on /v1/responses, the logger's text and JSON lines, the request log line fed by reportUsage, the
 * data-dir lock (refused while its owner lives, taken over when it is dead, released), and `ps` rows.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { psRows } from "../../src/cli/ps.js";
import { resolveModelId } from "../../src/models/catalog.js";
import { ModelManager } from "../../src/models/manager.js";
import type { ModelEntry } from "../../src/models/types.js";
import {
  acquireDataDirLock,
  DataDirInUseError,
  LOCK_FILE_NAME,
  processIsAlive,
} from "../../src/server/data-dir-lock.js";
import { formatDuration } from "../../src/shared/format.js";
import { createLogger, silentLogger } from "../../src/shared/logger.js";
import { createFastApp, TEST_MODEL } from "../helpers/fast-app.js";

function entry(id: string, fileName: string, extra: Partial<ModelEntry> = {}): ModelEntry {
  return { id, path: `/models/${fileName}`, sizeBytes: 1, publisher: id.split("/")[0] ?? "local", ...extra };
}

describe("formatDuration", () => {
  it.each([
    [0, "0s"],
    [45, "45s"],
    [200, "3m 20s"],
    [3540, "59m"],
    [3599, "59m 59s"],
    [3600, "1h"],
    [3900, "1h 5m"],
    [3605, "1h"],
    [90_000, "1d 1h"],
    [-5, "0s"],
    [59.9, "59s"],
    [Infinity, "never"],
  ])("%s seconds → %s", (seconds, text) => {
    expect(formatDuration(seconds)).toBe(text);
  });
});

describe("resolveModelId", () => {
  const folder = [
    entry("qwen/qwen3@q8_0", "qwen/qwen3/Qwen3-0.6B-Q8_0.gguf"),
    entry("qwen/qwen3@q4_k_m", "qwen/qwen3/Qwen3-0.6B-Q4_K_M.gguf"),
    entry("qwen/qwen3@f16", "qwen/qwen3/Qwen3-0.6B-F16.gguf"),
    entry("karpathy/stories", "karpathy/stories/stories.gguf"),
  ];

  it("resolves publisher/model to Q4_K_M when the folder holds several quantizations", () => {
    expect(resolveModelId("qwen/qwen3", folder)).toEqual({ entry: folder[1] });
    expect(resolveModelId("Qwen/Qwen3", folder)).toEqual({ entry: folder[1] });
  });

  it("falls back along the stated order without Q4_K_M (Q8_0 before F16)", () => {
    const withoutQ4 = folder.filter((candidate) => !candidate.id.endsWith("q4_k_m"));
    expect(resolveModelId("qwen/qwen3", withoutQ4)).toEqual({ entry: withoutQ4[0] });
  });

  it("uses the header's quantization when the file name has none, and skips broken files", () => {
    const variants = [
      entry("a/b@first", "a/b/first.gguf", { quantization: "Q8_0" }),
      entry("a/b@second", "a/b/second.gguf", { quantization: "Q4_K_M", error: "not a GGUF file" }),
      entry("a/b@third", "a/b/third.gguf", { quantization: "Q6_K" }),
    ];
    expect(resolveModelId("a/b", variants)).toEqual({ entry: variants[2] });
  });

  it("keeps exact ids exact, and calls variants without a known quantization ambiguous", () => {
    expect(resolveModelId("qwen/qwen3@q8_0", folder)).toEqual({ entry: folder[0] });
    expect(resolveModelId("karpathy/stories", folder)).toEqual({ entry: folder[3] });
    const unknown = [entry("a/b@one", "a/b/one.gguf"), entry("a/b@two", "a/b/two.gguf")];
    expect(resolveModelId("a/b", unknown)).toEqual({ ambiguous: unknown });
    expect(resolveModelId("nobody/nothing", folder)).toEqual({ notFound: true });
  });

  it("answers an ambiguous id with a 404 listing the candidates", async () => {
    const manager = new ModelManager<object>({
      source: { list: async () => [entry("a/b@one", "a/b/one.gguf"), entry("a/b@two", "a/b/two.gguf")] },
      loader: { load: async () => ({}), unload: async () => undefined },
      ttlSeconds: 60,
      maxLoaded: 1,
      logger: silentLogger,
    });
    await expect(manager.get("a/b")).rejects.toMatchObject({
      status: 404,
      param: "model",
      code: "model_not_found",
      message: expect.stringContaining("name one: a/b@one, a/b@two"),
    });
    await manager.close();
  });
});

describe("Chat-style fields on /v1/responses", () => {
  it.each([
    ["messages", [{ role: "user", content: "hi" }], /Did you mean 'input'\?.*\/v1\/chat\/completions/],
    ["max_tokens", 20, /Did you mean 'max_output_tokens'\?/],
    ["max_completion_tokens", 20, /Did you mean 'max_output_tokens'\?/],
    ["response_format", { type: "json_object" }, /Did you mean 'text\.format'/],
  ])("%s is a 400 naming it and what to send instead", async (field, value, hint) => {
    const { post } = createFastApp();
    const response = await post("/v1/responses", { model: TEST_MODEL, [field]: value });
    expect(response.status).toBe(400);
    const { error } = (await response.json()) as { error: { message: string; param: string; code: string } };
    expect(error).toMatchObject({ param: field, code: "unknown_parameter" });
    expect(error.message).toMatch(new RegExp(`^Unrecognized request argument supplied: ${field}\\. `));
    expect(error.message).toMatch(hint);
  });

  it("gives those hints only on /v1/responses: other endpoints name the field without Responses advice", async () => {
    const { post } = createFastApp();
    for (const [path, body] of [
      ["/v1/messages/count_tokens", { model: TEST_MODEL, messages: [], max_tokens: 5 }],
      ["/v1/embeddings", { model: TEST_MODEL, input: "hi", messages: [] }],
    ] as const) {
      const response = await post(path, body);
      expect(response.status).toBe(400);
      const text = await response.text();
      expect(text).not.toMatch(/Did you mean/);
    }
  });

  it("names the Chat-style field first when a body has other unknown fields too", async () => {
    const { post } = createFastApp();
    const response = await post("/v1/responses", {
      model: TEST_MODEL,
      input: "hi",
      colour: 1,
      max_tokens: 5,
    });
    expect(((await response.json()) as { error: { param: string } }).error.param).toBe("max_tokens");
  });
});

describe("logger and the request log line", () => {
  it("writes text lines with fields, and JSON lines with time, level, msg and fields", () => {
    const text: string[] = [];
    createLogger("info", (line) => text.push(line)).info("GET /x 200", {
      method: "GET",
      path: "/x",
      status: 200,
      model: "a b",
      skipped: undefined,
    });
    expect(text[0]).toMatch(/^\S+Z info {2}GET \/x 200 model="a b"\n$/);
    const json: string[] = [];
    const logger = createLogger("warn", { format: "json", write: (line) => json.push(line) });
    logger.info("not shown");
    logger.warn("careful", { count: 2 });
    expect(json).toHaveLength(1);
    expect(JSON.parse(json[0]!)).toEqual({
      time: expect.any(String),
      level: "warn",
      msg: "careful",
      count: 2,
    });
  });

  it("logs one line per request with the tokens the route reported, for JSON and streamed answers", async () => {
    const lines: string[] = [];
    const logger = createLogger("info", { format: "json", write: (line) => lines.push(line) });
    const { post } = createFastApp({ logger });
    const plain = (await (await post("/v1/responses", { model: TEST_MODEL, input: "hi" })).json()) as {
      usage: { input_tokens: number; output_tokens: number };
    };
    const streamed = await post("/v1/responses", { model: TEST_MODEL, input: "hi", stream: true });
    await streamed.text();
    const requests = lines
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((line) => line.path === "/v1/responses");
    expect(requests).toHaveLength(2);
    for (const request of requests) {
      expect(request).toMatchObject({
        level: "info",
        msg: "POST /v1/responses 200",
        method: "POST",
        status: 200,
        model: TEST_MODEL,
        input_tokens: plain.usage.input_tokens,
        output_tokens: plain.usage.output_tokens,
        cached_tokens: expect.any(Number),
        ms: expect.any(Number),
      });
    }
  });
});

describe("the data-dir lock", () => {
  const directory = () => mkdtempSync(path.join(tmpdir(), "lmhost-lock-"));
  const otherPid = process.pid + 1;

  it("refuses a second owner while the first lives, naming its pid and port; frees the dir on release", () => {
    const dataDir = directory();
    const first = acquireDataDirLock(dataDir);
    first.setAddress("127.0.0.1", 4321);
    expect(() => acquireDataDirLock(dataDir)).toThrow(DataDirInUseError);
    // As another live process would see it.
    writeFileSync(
      first.file,
      JSON.stringify({ pid: otherPid, port: 4321, host: "127.0.0.1", startedAt: "2026-01-01T00:00:00.000Z" }),
    );
    expect(() => acquireDataDirLock(dataDir, { isAlive: () => true })).toThrow(
      `in use by another lmhost server (pid ${otherPid}, port 4321, started 2026-01-01T00:00:00.000Z)`,
    );
    // release() leaves a lock that is no longer ours alone.
    first.release();
    expect(existsSync(first.file)).toBe(true);
  });

  it("takes over a lock whose pid is dead, with a notice", () => {
    const dataDir = directory();
    const file = path.join(dataDir, LOCK_FILE_NAME);
    writeFileSync(file, JSON.stringify({ pid: otherPid, port: 1, host: null, startedAt: "earlier" }));
    const notices: string[] = [];
    const lock = acquireDataDirLock(dataDir, { isAlive: () => false, notice: (line) => notices.push(line) });
    expect(notices).toEqual([
      `took over the lock of an lmhost server that is gone (pid ${otherPid}, started earlier) in ${dataDir}`,
    ]);
    expect(JSON.parse(readFileSync(file, "utf8"))).toMatchObject({ pid: process.pid, port: null });
    lock.setAddress("::1", 99);
    expect(JSON.parse(readFileSync(file, "utf8"))).toMatchObject({ pid: process.pid, port: 99, host: "::1" });
    lock.release();
    expect(existsSync(file)).toBe(false);
    acquireDataDirLock(dataDir).release();
  });
});

describe("the data-dir lock and pid reuse", () => {
  it("takes over a lock with this process's pid that this process does not hold (a restarted container)", () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "lmhost-lock-pid-"));
    const file = path.join(dataDir, LOCK_FILE_NAME);
    writeFileSync(file, JSON.stringify({ pid: process.pid, port: 1, host: null, startedAt: "before" }));
    const notices: string[] = [];
    const lock = acquireDataDirLock(dataDir, { notice: (line) => notices.push(line) });
    expect(notices).toHaveLength(1);
    lock.release();
  });

  it("counts a pid as alive only while a node or lmhost process has it", () => {
    expect(processIsAlive(process.pid)).toBe(true);
    // pid 2^22 + 1 is above Linux's pid_max: no process has it.
    expect(processIsAlive(4_194_305)).toBe(false);
  });
});

describe("ps rows", () => {
  it("shows idle time and time to unload as human durations", () => {
    const now = 1_000_000;
    expect(
      psRows(
        [
          {
            id: "a",
            state: "loaded",
            loaded_context_length: 2048,
            ttl_expires_at: now + 3540,
            last_used_at: now - 200,
          },
          { id: "b", state: "loaded", loaded_context_length: 512, ttl_expires_at: null, last_used_at: now },
          { id: "c", state: "loading", loaded_context_length: null, ttl_expires_at: null, last_used_at: now },
        ],
        now,
      ),
    ).toEqual([
      ["a", "loaded", "2048", "3m 20s", "59m"],
      ["b", "loaded", "512", "in use", "-"],
      ["c", "loading", "", "-", "-"],
    ]);
  });
});
