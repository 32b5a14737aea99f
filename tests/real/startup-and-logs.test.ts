/**
 * `lmhost serve` as a user starts it, with real processes: the start-up account (address, auth, models
 * with size / quantization / context, models folder, data dir), one log line per request with its tokens,
 * `--log-format json`, one-line error exits for a missing `--model`, a bad `--chat-template` and a port
 * in use, the data-dir lock (a second server refused without touching the store; a SIGKILLed owner taken
 * over), Ctrl-C during a request without a stack trace, and `ls` / `ps --json` against the running server.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqliteResponseStore } from "../../src/store/sqlite/sqlite-store.js";
import type { StoredResponse } from "../../src/store/index.js";
import { storiesModel } from "../helpers/paths.js";
import { runCli, spawnServer, type SpawnedServer } from "../helpers/spawn-server.js";

const MODEL = "stories260K";
const STACK_LINE = /^\s+at /m;

function post(server: SpawnedServer, body: unknown): Promise<Response> {
  return fetch(`${server.url}/v1/responses`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** A record as a running response leaves it in the store: `in_progress`. */
function runningRecord(id: string): StoredResponse {
  const response = {
    id,
    object: "response",
    created_at: 1_700_000_000,
    status: "in_progress",
    background: true,
    completed_at: null,
    error: null,
    model: MODEL,
    output: [],
    previous_response_id: null,
  };
  return {
    id,
    createdAt: 1_700_000_000,
    previousResponseId: null,
    model: MODEL,
    status: "in_progress",
    response,
    inputItems: [
      { id: `msg_${id}`, type: "message", role: "user", content: [{ type: "input_text", text: "Once" }] },
    ],
  };
}

function storedStatus(dataDir: string, id: string): unknown {
  const database = new Database(path.join(dataDir, "responses.sqlite"), { readonly: true });
  try {
    return database.prepare("SELECT status FROM responses WHERE id = ?").pluck().get(id);
  } finally {
    database.close();
  }
}

describe("lmhost serve: start-up account and request log (text)", () => {
  let server: SpawnedServer;
  const modelsDir = mkdtempSync(path.join(tmpdir(), "lmhost-empty-models-"));

  beforeAll(async () => {
    // The model as a plain argument, as with llama-server / Ollama habits.
    server = await spawnServer([storiesModel, "--models-dir", modelsDir]);
  });
  afterAll(async () => {
    await server?.stop("SIGKILL");
  });

  it("says where it listens, whether auth is on, what it serves and where its folders are", () => {
    const output = server.output();
    expect(output).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+ \(pid \d+/);
    expect(output).toContain("auth off");
    expect(output).toContain(`models folder: ${modelsDir}; data dir: ${server.dataDir}`);
    expect(output).toMatch(/info {2}models: 1\n/);
    expect(output).toMatch(/ {2}stories260K {2}1\.\d MB {2}F32 {2}trained for 2048 tokens\n/);
  });

  it("logs loading, loaded in N ms, and one line per request with its tokens", async () => {
    const response = await post(server, {
      model: MODEL,
      input: "Once",
      max_output_tokens: 8,
      temperature: 0,
    });
    expect(response.status).toBe(200);
    const { usage } = (await response.json()) as { usage: { input_tokens: number; output_tokens: number } };
    const output = server.output();
    expect(output).toContain(`info  loading ${MODEL}…`);
    expect(output).toMatch(new RegExp(`info  loaded ${MODEL} in \\d+ ms`));
    const line = output.split("\n").find((entry) => entry.includes("POST /v1/responses 200"));
    expect(line).toMatch(
      new RegExp(
        `info  POST /v1/responses 200 model=${MODEL} input_tokens=${usage.input_tokens} output_tokens=${usage.output_tokens} cached_tokens=\\d+ tokens_per_second=[\\d.]+ ms=\\d+ request_id=req_`,
      ),
    );
    expect(output).not.toMatch(STACK_LINE);
  });

  it("logs a streamed request when its stream ends, with the usage of its last event", async () => {
    const response = await post(server, {
      model: MODEL,
      input: "Lily",
      max_output_tokens: 6,
      temperature: 0,
      stream: true,
    });
    const text = await response.text();
    const completed = /"type":"response\.(?:completed|incomplete)".*"output_tokens":(\d+)/.exec(text);
    expect(completed?.[1]).toBeDefined();
    // The line is written as the stream ends, before its last bytes; it reaches this process over another
    // pipe (the server's stdout), which can be read a moment after the socket.
    const streamLine = () =>
      server
        .output()
        .split("\n")
        .filter((entry) => entry.includes("POST /v1/responses 200"))
        .at(-1);
    await expect.poll(streamLine, { timeout: 5_000 }).toContain(`output_tokens=${completed?.[1]} `);
  });

  it("shows what the running server serves in ls, and ps --json", async () => {
    const ls = await runCli(["ls", "--port", String(server.port), "--models-dir", modelsDir]);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(/^ID\s+SIZE\s+ARCH\s+QUANT\s+CONTEXT\s+TEMPLATE\s+SERVER/);
    expect(ls.stdout).toMatch(/stories260K\s+1\.\d MB\s+llama\s+F32\s+2048\s+\S+\s+loaded/);
    expect(ls.stdout).toContain(`server at http://127.0.0.1:${server.port}: 1 model(s) served, 1 loaded`);
    const ps = await runCli(["ps", "--port", String(server.port), "--json"]);
    expect(ps.code).toBe(0);
    const loaded = JSON.parse(ps.stdout) as { id: string; state: string; ttl_expires_at: number }[];
    expect(loaded).toMatchObject([{ id: MODEL, state: "loaded" }]);
    const table = await runCli(["ps", "--port", String(server.port)]);
    // The default TTL is an hour: "59m" or "59m 59s", never raw seconds.
    expect(table.stdout).toMatch(/stories260K\s+loaded\s+\d+\s+(\d+[ms]( \d+s)?|in use)\s+59m( \d+s)?\n/);
  });

  it("refuses a second server on the same data dir, naming the first's pid and port, leaving its store alone", async () => {
    // A response the first server is running, as its store holds it.
    const store = SqliteResponseStore.open(path.join(server.dataDir, "responses.sqlite"));
    store.put(runningRecord("resp_running_in_first"));
    store.close();
    const second = await runCli(["serve", "--port", "0", "--data-dir", server.dataDir, storiesModel]);
    expect(second.code).toBe(1);
    expect(second.stderr.trim().split("\n")).toHaveLength(1);
    expect(second.stderr).toContain(
      `the data dir ${server.dataDir} is in use by another lmhost server (pid ${server.child.pid}, port ${server.port},`,
    );
    expect(second.stderr).toContain("--data-dir");
    // Before the lock, the second server marked it failed ("lmhost restarted before this response finished").
    expect(storedStatus(server.dataDir, "resp_running_in_first")).toBe("in_progress");
  });

  it("says the port is taken and how to pick another, in one line without a stack trace", async () => {
    const taken = await runCli(["serve", "--port", String(server.port), "-m", storiesModel]);
    expect(taken.code).toBe(1);
    expect(taken.stderr.trim().split("\n")).toHaveLength(1);
    expect(taken.stderr).toContain(`port ${server.port} on 127.0.0.1 is already in use`);
    expect(taken.stderr).toContain("--port");
    expect(taken.stderr).not.toMatch(STACK_LINE);
  });
});

describe("lmhost serve: bad flags stop the start in one line", () => {
  it("names --model and the path of a file that does not exist", async () => {
    const missing = path.join(tmpdir(), "lmhost-no-such-model.gguf");
    const result = await runCli(["serve", "--port", "0", "-m", missing]);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split("\n")).toEqual([
      `lmhost: --model ${missing}: no such file (check the path, or list models with \`lmhost ls\`)`,
    ]);
  });

  it("names --chat-template when it is neither a known wrapper nor a Jinja template that parses", async () => {
    for (const template of ["chatmlx", "{% for m in messages %}{{ m.content }"]) {
      const result = await runCli(["serve", "--port", "0", "-m", storiesModel, "--chat-template", template]);
      expect(result.code).toBe(1);
      const lines = result.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        /^lmhost: --chat-template: (unknown chat template 'chatmlx'|not a usable Jinja)/,
      );
      expect(result.stdout).not.toContain("listening on");
    }
  });
});

describe("lmhost serve: --log-format json, Ctrl-C, and a SIGKILLed server's lock", () => {
  it("writes one JSON object per line, logs requests with their tokens, and stops on SIGINT mid-request without a stack trace", async () => {
    const server = await spawnServer(["-m", storiesModel, "--log-format", "json"]);
    try {
      const short = await post(server, { model: MODEL, input: "Once", max_output_tokens: 4, temperature: 0 });
      expect(short.status).toBe(200);
      // A long stream and a long JSON request, interrupted by Ctrl-C once the stream has started generating.
      const waiting = post(server, { model: MODEL, input: "Lily", max_output_tokens: 1900 });
      const streaming = await post(server, {
        model: MODEL,
        input: "Once upon a time",
        max_output_tokens: 1900,
        stream: true,
      });
      const reader = streaming.body!.getReader();
      let seen = "";
      while (!seen.includes("response.output_text.delta")) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += new TextDecoder().decode(value);
      }
      const stopped = server.stop("SIGINT");
      while (!(await reader.read()).done);
      expect(seen).toContain("response.output_text.delta");
      // Unless it finished first, the JSON request is a 503 "lmhost is shutting down" (logged without a stack).
      expect([200, 503]).toContain((await waiting).status);
      expect((await stopped).code).toBe(0);
    } finally {
      await server.stop("SIGKILL");
    }
    const output = server.output();
    expect(output).not.toMatch(STACK_LINE);
    const lines = output
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const line of lines) {
      expect(line).toMatchObject({
        time: expect.any(String),
        level: expect.any(String),
        msg: expect.any(String),
      });
    }
    expect(lines.map((line) => line.msg)).toEqual(expect.arrayContaining(["received SIGINT", "stopped"]));
    const request = lines.find((line) => line.path === "/v1/responses" && line.status === 200);
    expect(request).toMatchObject({
      level: "info",
      msg: "POST /v1/responses 200",
      method: "POST",
      model: MODEL,
      input_tokens: expect.any(Number),
      output_tokens: expect.any(Number),
      cached_tokens: expect.any(Number),
      tokens_per_second: expect.any(Number),
      ms: expect.any(Number),
    });
  });

  it("takes over the lock of a server killed with SIGKILL, with a notice, and repairs what it left", async () => {
    const first = await spawnServer(["-m", storiesModel]);
    const store = SqliteResponseStore.open(path.join(first.dataDir, "responses.sqlite"));
    store.put(runningRecord("resp_left_by_killed"));
    store.close();
    first.child.kill("SIGKILL");
    await first.stop();
    const second = await spawnServer(["-m", storiesModel], { dataDir: first.dataDir });
    try {
      expect(second.output()).toContain(
        `took over the lock of an lmhost server that is gone (pid ${first.child.pid},`,
      );
      expect(second.output()).toContain("marked 1 unfinished response(s) of an earlier run as failed");
      expect(storedStatus(first.dataDir, "resp_left_by_killed")).toBe("failed");
    } finally {
      expect((await second.stop("SIGTERM")).code).toBe(0);
    }
  });
});
