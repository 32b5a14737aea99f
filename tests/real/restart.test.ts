/**
 * startServer after a crash: responses an earlier process left `queued` / `in_progress` in the SQLite
 * store cannot finish any more, so startup marks them `failed` (server_error) once; finished ones are
 * untouched — also when the earlier process was killed mid-way (SIGKILL). A store that cannot be opened
 * or repaired stops the start with an error naming the file; an unreadable row does not. In-process
 * startServer on a real socket, with a real model so a chain can continue.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { configSchema } from "../../src/config.js";
import { startServer } from "../../src/server/start.js";
import { createLogger, silentLogger } from "../../src/shared/logger.js";
import type { StoredResponse } from "../../src/store/index.js";
import { SqliteResponseStore } from "../../src/store/sqlite/sqlite-store.js";
import { storiesModel } from "../helpers/paths.js";
import { spawnServer } from "../helpers/spawn-server.js";
import Database from "better-sqlite3";

const MODEL = "stories260K";

function leftBehind(id: string, status: string): StoredResponse {
  const response = {
    id,
    object: "response",
    created_at: 1_700_000_000,
    status,
    background: true,
    completed_at: status === "completed" ? 1_700_000_001 : null,
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
    status,
    response,
    inputItems: [
      { id: `msg_${id}`, type: "message", role: "user", content: [{ type: "input_text", text: "Once" }] },
    ],
  };
}

describe("startServer", () => {
  it("marks responses an earlier process left unfinished as failed, so they can be chained from", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "lmhost-restart-"));
    const before = SqliteResponseStore.open(path.join(dataDir, "responses.sqlite"));
    for (const [id, status] of [
      ["resp_queued", "queued"],
      ["resp_running", "in_progress"],
      ["resp_done", "completed"],
    ] as const) {
      before.put(leftBehind(id, status));
    }
    before.close();

    const config = configSchema.parse({
      dataDir,
      port: 0,
      modelsDir: path.join(dataDir, "no-models"),
      models: [storiesModel],
      threads: 1,
      pinCpu: false,
      logLevel: "silent",
    });
    const server = await startServer(config, silentLogger);
    try {
      const get = async (id: string) =>
        (await (await fetch(`${server.url}/v1/responses/${id}`)).json()) as Record<string, unknown>;
      for (const id of ["resp_queued", "resp_running"]) {
        expect(await get(id)).toMatchObject({
          id,
          status: "failed",
          completed_at: null,
          error: { code: "server_error", message: "lmhost restarted before this response finished" },
        });
      }
      expect(await get("resp_done")).toMatchObject({ status: "completed", error: null });

      // No longer "still in_progress": the conversation can go on from it.
      const chained = await fetch(`${server.url}/v1/responses`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: MODEL,
          input: "upon a time",
          previous_response_id: "resp_running",
          max_output_tokens: 4,
          temperature: 0,
        }),
      });
      expect(chained.status).toBe(200);
    } finally {
      await server.close();
    }
  });
});

function configFor(dataDir: string, extra: Record<string, unknown> = {}) {
  return configSchema.parse({
    dataDir,
    port: 0,
    modelsDir: path.join(dataDir, "no-models"),
    models: [storiesModel],
    threads: 1,
    pinCpu: false,
    logLevel: "silent",
    ...extra,
  });
}

async function startFailure(config: ReturnType<typeof configFor>): Promise<Error> {
  try {
    const server = await startServer(config, silentLogger);
    await server.close();
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected startServer to fail");
}

describe("startServer and a damaged or full store", () => {
  it("repairs a response whose server was killed (SIGKILL) while it ran", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "lmhost-killed-"));
    const first = await spawnServer(["--model", storiesModel], { dataDir });
    // Background: the queued record is stored before the POST answers, and the model still has to load.
    const created = await fetch(`${first.url}/v1/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: MODEL,
        input: "Once upon a time",
        background: true,
        max_output_tokens: 400,
      }),
    });
    const { id } = (await created.json()) as { id: string };
    first.child.kill("SIGKILL");
    expect((await first.stop()).code).toBe(null);

    const file = path.join(dataDir, "responses.sqlite");
    const leftBehind = new Database(file, { readonly: true });
    const status = leftBehind.prepare("SELECT status FROM responses WHERE id = ?").pluck().get(id);
    leftBehind.close();
    expect(["queued", "in_progress"]).toContain(status);

    const server = await startServer(configFor(dataDir), silentLogger);
    try {
      const response = await fetch(`${server.url}/v1/responses/${id}`);
      expect(await response.json()).toMatchObject({
        id,
        status: "failed",
        error: { code: "server_error", message: "lmhost restarted before this response finished" },
      });
    } finally {
      await server.close();
    }
  });

  it("refuses to start on a file that is not an SQLite database, naming it and what to do", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "lmhost-notdb-"));
    const file = path.join(dataDir, "responses.sqlite");
    writeFileSync(file, "not a database\n".repeat(100));
    const error = await startFailure(configFor(dataDir));
    expect(error.message).toContain(file);
    expect(error.message).toMatch(/not a database.*move it away/);
  });

  it("refuses to start when the repair of unfinished responses cannot be written, naming the file", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "lmhost-full-repair-"));
    const file = path.join(dataDir, "responses.sqlite");
    const maxBytes = 256 * 1024;
    const before = SqliteResponseStore.open(file, { maxBytes });
    // Many unfinished responses whose repaired records are longer (an error, items marked incomplete)...
    for (let index = 0; index < 150; index++) {
      const record = leftBehind(`resp_unfinished_${index}`, "in_progress");
      record.response.output = [{ id: `msg_${index}`, type: "message", status: "in_progress", content: [] }];
      before.put(record);
    }
    // ...in a store with no room left.
    for (let index = 0; ; index++) {
      try {
        before.put(leftBehind(`resp_filler_${index}`, "completed"));
      } catch {
        break;
      }
    }
    before.close();
    const error = await startFailure(configFor(dataDir, { storeMaxBytes: maxBytes }));
    expect(error.message).toContain(
      `Response store ${file}: repairing the responses an earlier run left unfinished failed`,
    );
    expect(error.message).toMatch(/SQLITE_FULL/);
  });

  it("starts despite an unreadable unfinished row, warning with the file and the id", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "lmhost-bad-row-"));
    const file = path.join(dataDir, "responses.sqlite");
    const before = SqliteResponseStore.open(file);
    before.put(leftBehind("resp_corrupt", "in_progress"));
    before.put(leftBehind("resp_fine", "in_progress"));
    before.close();
    const database = new Database(file);
    database.prepare("UPDATE responses SET response_json = '{oops' WHERE id = 'resp_corrupt'").run();
    database.close();

    const lines: string[] = [];
    const server = await startServer(
      configFor(dataDir),
      createLogger("warn", (line) => lines.push(line)),
    );
    try {
      expect(
        lines.some((line) => /warn/.test(line) && line.includes(file) && line.includes("'resp_corrupt'")),
      ).toBe(true);
      const fine = await fetch(`${server.url}/v1/responses/resp_fine`);
      expect(await fine.json()).toMatchObject({ status: "failed" });
      const corrupt = await fetch(`${server.url}/v1/responses/resp_corrupt`);
      expect(corrupt.status).toBe(500);
      expect(((await corrupt.json()) as { error: { message: string } }).error.message).toContain(file);
    } finally {
      await server.close();
    }
  });
});
