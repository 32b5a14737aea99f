/**
 * The `lmhost` binary as a user runs it: `ls` on a models folder, `serve` on a real model over a real
 * socket, `ps` / `load` / `unload` against it, `--help` / `--version`, the API key (never empty), the
 * start-up account of who may call, and graceful shutdown on SIGTERM in the middle of a streaming
 * generation.
 */
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storiesChatmlModel, storiesModel } from "../helpers/paths.js";
import { everythingEntry } from "../helpers/mcp-servers.js";
import { runCli, spawnServer, type SpawnedServer } from "../helpers/spawn-server.js";

function modelsFolder(): string {
  const root = mkdtempSync(path.join(tmpdir(), "lmhost-cli-models-"));
  mkdirSync(path.join(root, "karpathy/stories"), { recursive: true });
  copyFileSync(storiesChatmlModel, path.join(root, "karpathy/stories/stories260K-chatml.gguf"));
  writeFileSync(path.join(root, "broken.gguf"), "definitely not gguf");
  return root;
}

describe("lmhost CLI", () => {
  it("prints its version and help", async () => {
    const version = await runCli(["--version"]);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const help = await runCli(["serve", "--help"]);
    expect(help.code).toBe(0);
    for (const flag of [
      "--models-dir",
      "--model",
      "--threads",
      "--parallel",
      "--context-length",
      "--ttl",
      "--max-loaded",
      "--api-key",
      "--cors",
      "--prompt-cache-size",
    ]) {
      expect(help.stdout).toContain(flag);
    }
  });

  it("refuses to start with an empty API key, naming where it came from (was: auth silently off)", async () => {
    const emptyFlag = await runCli(["serve", "--port", "0", "--api-key", ""], { LMHOST_API_KEY: "good-key" });
    expect(emptyFlag.code).toBe(1);
    expect(emptyFlag.stderr).toContain("the API key from --api-key is empty");
    const emptyEnvironment = await runCli(["serve", "--port", "0"], { LMHOST_API_KEY: "" });
    expect(emptyEnvironment.code).toBe(1);
    expect(emptyEnvironment.stderr).toContain("the API key from LMHOST_API_KEY is empty");
    expect(emptyEnvironment.stdout).not.toContain("listening on");
  });

  it("lists the models on disk with their metadata, and a broken file with its error", async () => {
    const folder = modelsFolder();
    const result = await runCli([
      "ls",
      "--models-dir",
      folder,
      "--model",
      storiesModel,
      "--data-dir",
      mkdtempSync(path.join(tmpdir(), "lmhost-ls-")),
    ]);
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^ID\s+SIZE\s+ARCH\s+QUANT\s+CONTEXT/);
    const stories = lines.find((line) => line.startsWith("stories260K "));
    expect(stories).toMatch(/llama\s+F32\s+2048/);
    expect(lines.find((line) => line.startsWith("karpathy/stories "))).toMatch(/llama\s+F32\s+2048\s+model/);
    expect(lines.find((line) => line.startsWith("broken"))).toContain("error");
  });
});

describe("lmhost serve on a real model", () => {
  let server: SpawnedServer;
  const apiKey = "test-key-123";

  beforeAll(async () => {
    server = await spawnServer(["--model", storiesModel, "--models-dir", modelsFolder(), "--parallel", "2"], {
      env: { LMHOST_API_KEY: apiKey },
    });
  });
  afterAll(async () => {
    await server?.stop("SIGKILL");
  });

  const authorized = { authorization: `Bearer ${apiKey}`, "content-type": "application/json" };

  it("serves /v1/models behind the API key", async () => {
    expect((await fetch(`${server.url}/v1/models`)).status).toBe(401);
    const response = await fetch(`${server.url}/v1/models`, { headers: authorized });
    expect(response.status).toBe(200);
    const ids = ((await response.json()) as { data: { id: string }[] }).data.map((model) => model.id);
    expect(ids).toEqual(expect.arrayContaining(["stories260K", "karpathy/stories", "broken"]));
    expect((await fetch(`${server.url}/v1/models`, { headers: { "x-api-key": apiKey } })).status).toBe(200);
  });

  it("says at start-up that auth is on and which origins and hosts are allowed", () => {
    expect(server.output()).toContain(
      "who may call: auth on (API key required on /v1 and /api); browser origins: none (--cors to allow some); hosts: localhost, loopback addresses, 127.0.0.1",
    );
  });

  it("loads, lists and unloads models through ps / load / unload", async () => {
    const address = ["--port", String(server.port), "--api-key", apiKey];
    expect((await runCli(["ps", ...address])).stdout).toContain("no models loaded");
    const load = await runCli(["load", "stories260K", ...address]);
    expect(load.stderr).toBe("");
    expect(load.stdout).toMatch(/loaded stories260K \(context \d+\)/);
    const ps = await runCli(["ps", ...address]);
    expect(ps.stdout).toMatch(/stories260K\s+loaded/);
    expect((await runCli(["unload", "stories260K", ...address])).stdout).toContain("unloaded stories260K");
    expect((await runCli(["ps", ...address])).stdout).toContain("no models loaded");
    const missing = await runCli(["load", "nobody/nothing", ...address]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("nobody/nothing");
    const wrongKey = await runCli(["ps", "--port", String(server.port), "--api-key", "nope"]);
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stderr).toMatch(/API key/i);
  });

  it("answers a Responses request with real generated text", async () => {
    const response = await fetch(`${server.url}/v1/responses`, {
      method: "POST",
      headers: authorized,
      body: JSON.stringify({
        model: "stories260K",
        input: "Once upon a time",
        max_output_tokens: 20,
        temperature: 0,
      }),
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as {
      output: { type: string; content: { text: string }[] }[];
      usage: { output_tokens: number };
    };
    const message = body.output.find((item) => item.type === "message");
    expect(message?.content[0]?.text.length).toBeGreaterThan(0);
    expect(body.usage.output_tokens).toBeGreaterThan(0);
  });
  it("stops generating when a streaming client disconnects, and keeps serving", async () => {
    const controller = new AbortController();
    const response = await fetch(`${server.url}/v1/responses`, {
      method: "POST",
      headers: authorized,
      body: JSON.stringify({
        model: "stories260K",
        input: "Once upon a time",
        stream: true,
        max_output_tokens: 100000,
        temperature: 0,
      }),
      signal: controller.signal,
    });
    const reader = response.body!.getReader();
    let text = "";
    while (!text.includes("response.output_text.delta")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    const id = /"id":"(resp_[0-9a-f]+)"/.exec(text)?.[1];
    expect(id).toBeDefined();
    controller.abort();
    // The server notices the closed socket, stops at the next token and stores the response as cancelled.
    let stored: { status: string; output: { content?: { text: string }[] }[] } | undefined;
    for (let attempt = 0; attempt < 50; attempt++) {
      const retrieved = await fetch(`${server.url}/v1/responses/${id}`, { headers: authorized });
      if (retrieved.status === 200) {
        stored = (await retrieved.json()) as typeof stored;
        if (stored?.status !== "in_progress") break;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(stored?.status).toBe("cancelled");
    // Stopped early: the whole 2,048-token context would be ~8,000 characters of text.
    const storedText = (stored?.output ?? [])
      .flatMap((item) => item.content ?? [])
      .map((part) => part.text)
      .join("");
    expect(storedText.length).toBeGreaterThan(0);
    expect(storedText.length).toBeLessThan(4000);
    const next = await fetch(`${server.url}/v1/responses`, {
      method: "POST",
      headers: authorized,
      body: JSON.stringify({ model: "stories260K", input: "Once", max_output_tokens: 8, temperature: 0 }),
    });
    expect(next.status).toBe(200);
  });
});

describe("graceful shutdown", () => {
  it("ends an in-flight stream properly and exits within 5 s on SIGTERM", async () => {
    const server = await spawnServer(["--model", storiesModel]);
    try {
      await stopsGracefully(server);
    } finally {
      if (server.child.exitCode === null) server.child.kill("SIGKILL");
    }
  });
});

async function stopsGracefully(server: Awaited<ReturnType<typeof spawnServer>>): Promise<void> {
  /** Streams a long generation, sends SIGTERM mid-stream, and checks the stream ends with an event. */
  const response = await fetch(`${server.url}/v1/responses`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "stories260K",
      input: "Once upon a time",
      stream: true,
      max_output_tokens: 100000,
      temperature: 0,
    }),
  });
  expect(response.status).toBe(200);
  const reader = response.body!.getReader();
  let text = "";
  // Wait for generation to be under way before stopping the server.
  while (!text.includes("response.output_text.delta")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  const stopping = server.stop("SIGTERM");
  for (;;) {
    const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  const { code, milliseconds } = await stopping;
  expect(code).toBe(0);
  expect(milliseconds).toBeLessThan(5000);
  // The stream was closed with a terminal event, not cut.
  expect(text).toMatch(/event: response\.(failed|incomplete|completed)/);
  expect(server.output()).toContain("stopped");
}

describe("lmhost mcp ls", () => {
  it("lists the servers of mcp.json with their tools, and a server that fails with its error", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "lmhost-mcp-ls-"));
    writeFileSync(
      path.join(dataDir, "mcp.json"),
      JSON.stringify({
        mcpServers: {
          everything: { command: process.execPath, args: [everythingEntry, "stdio"] },
          gone: { url: "http://127.0.0.1:9/mcp" },
        },
      }),
    );
    const table = await runCli(["mcp", "ls", "--data-dir", dataDir]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/everything\s+stdio: .*echo.*get-sum/);
    expect(table.stdout).toMatch(/gone\s+url: http:\/\/127\.0\.0\.1:9\/mcp\s+error: MCP server 'gone'/);
    const json = await runCli(["mcp", "ls", "--data-dir", dataDir, "--json"]);
    const rows = JSON.parse(json.stdout) as { label: string; tools: string[]; error?: string }[];
    expect(rows.find((row) => row.label === "everything")?.tools).toContain("echo");
    expect(rows.find((row) => row.label === "gone")?.error).toBeDefined();

    writeFileSync(path.join(dataDir, "mcp.json"), '{"mcpServers": {"bad": {"args": []}}}');
    const broken = await runCli(["mcp", "ls", "--data-dir", dataDir]);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain(path.join(dataDir, "mcp.json"));
  });
});
