/**
 * startServer after a crash: responses an earlier process left `queued` / `in_progress` in the SQLite
 * store cannot finish any more, so startup marks them `failed` (server_error) once; finished ones are
 * untouched. In-process startServer on a real socket, with a real model so a chain can continue.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { configSchema } from "../../src/config.js";
import { startServer } from "../../src/server/start.js";
import { silentLogger } from "../../src/shared/logger.js";
import type { StoredResponse } from "../../src/store/index.js";
import { SqliteResponseStore } from "../../src/store/sqlite/sqlite-store.js";
import { storiesModel } from "../helpers/paths.js";

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
