/**
 * The Responses routes when the store misbehaves or holds odd data: a full store (a real SQLite file
 * capped with `PRAGMA max_page_count`, which answers SQLITE_FULL exactly like a full disk), unreadable
 * rows, previous_response_id cycles and chains over the depth limit crafted directly in the file, and
 * metadata keys such as `__proto__` that plain-object code loses.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/shared/logger.js";
import { MemoryResponseStore } from "../../src/store/memory/memory-store.js";
import { SqliteResponseStore, type SqliteStoreOptions } from "../../src/store/sqlite/sqlite-store.js";
import { StoreError } from "../../src/store/store-rules.js";
import { createFastApp, readResponseEvents, slowReply, TEST_MODEL } from "../helpers/fast-app.js";
import { testLog } from "../helpers/test-log.js";

const directories: string[] = [];
const stores: SqliteResponseStore[] = [];

afterEach(() => {
  for (const store of stores.splice(0)) store.close();
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

/** A SqliteResponseStore on a new temporary file. */
function sqliteStore(options: SqliteStoreOptions = {}): { store: SqliteResponseStore; file: string } {
  const directory = mkdtempSync(path.join(os.tmpdir(), "lmhost-store-robustness-"));
  directories.push(directory);
  const file = path.join(directory, "responses.sqlite");
  const store = SqliteResponseStore.open(file, options);
  stores.push(store);
  return { store, file };
}

/** A second connection to the store file, as an operator (or a crash) would touch it. */
function withDatabase<Result>(file: string, work: (database: Database.Database) => Result): Result {
  const database = new Database(file);
  try {
    return work(database);
  } finally {
    database.close();
  }
}

function unfinishedRows(file: string): number {
  return withDatabase(
    file,
    (database) =>
      database
        .prepare("SELECT COUNT(*) FROM responses WHERE status IN ('queued', 'in_progress')")
        .pluck()
        .get() as number,
  );
}

/** Stores filler responses until the store is full (the next put fails with SQLITE_FULL). */
function fillUntilFull(store: SqliteResponseStore): number {
  for (let index = 0; ; index++) {
    try {
      store.put({
        id: `resp_filler_${index}`,
        createdAt: 1_700_000_000,
        previousResponseId: null,
        model: TEST_MODEL,
        status: "completed",
        response: { id: `resp_filler_${index}`, output: [], note: "x".repeat(1_000) },
        inputItems: [],
      });
    } catch (error) {
      expect(error).toBeInstanceOf(StoreError);
      return index;
    }
  }
}

/** Frees about 9 KiB: room for a small in_progress record, none for a final object with a long output. */
function makeRoomForSmallRecords(file: string): void {
  withDatabase(file, (database) =>
    database
      .prepare("DELETE FROM responses WHERE id IN (SELECT id FROM responses ORDER BY rowid LIMIT 9)")
      .run(),
  );
}

function collectingLogger() {
  const lines: string[] = [];
  return { lines, logger: createLogger("warn", (line) => lines.push(line)) };
}

const LONG_INPUT = "Once upon a time there was a tiny model. ".repeat(50); // 2,050 characters

describe("a full store (SQLite with max_page_count, which answers SQLITE_FULL like a full disk)", () => {
  it("of 40 responses, every one that claims success is stored; the others answer 500 and leave nothing", async () => {
    const { store, file } = sqliteStore({ maxBytes: 96 * 1024 });
    const { lines, logger } = collectingLogger();
    const fast = createFastApp({ store, logger });
    let claimedSuccess = 0;
    let retrievable = 0;
    let refused = 0;
    for (let index = 0; index < 40; index++) {
      const created = await fast.post("/v1/responses", {
        model: TEST_MODEL,
        input: `${index} ${LONG_INPUT}`,
      });
      const body = (await created.json()) as { id?: string; error?: { message: string; type: string } };
      if (created.status === 200) {
        claimedSuccess++;
        const fetched = await fast.request(`/v1/responses/${body.id!}`);
        if (fetched.status === 200) {
          retrievable++;
          expect(await fetched.json()).toStrictEqual(body);
        }
      } else {
        refused++;
        expect(created.status).toBe(500);
        expect(body.error?.type).toBe("server_error");
        expect(body.error?.message).toMatch(/could not be stored/);
        expect(body.error?.message).toContain(file);
        expect(body.error?.message).toMatch(/SQLITE_FULL/);
      }
    }
    testLog(
      `40 responses against a store capped at 96 KiB: ${claimedSuccess} claimed success, ${retrievable} of them retrievable, ${refused} answered 500`,
    );
    expect(claimedSuccess).toBe(retrievable);
    expect(claimedSuccess).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
    expect(unfinishedRows(file)).toBe(0);
    const errors = lines.filter((line) => / error /.test(line) && line.includes(file));
    expect(errors.length).toBeGreaterThanOrEqual(refused);
  });

  it("a stream whose final object cannot be stored ends with response.failed, never response.completed", async () => {
    // The in_progress record (small) fits; the final object with its long output does not.
    const { store, file } = sqliteStore({ maxBytes: 96 * 1024 });
    fillUntilFull(store);
    makeRoomForSmallRecords(file);
    const fast = createFastApp({ store, respond: () => ({ text: "word ".repeat(4_000) }) });
    const response = await fast.post("/v1/responses", { model: TEST_MODEL, input: "hi", stream: true });
    expect(response.status).toBe(200);
    const events = await readResponseEvents(response);
    const types = events.map((event) => event.type);
    expect(types).not.toContain("response.completed");
    expect(types).toContain("response.output_text.delta");
    expect(types.at(-1)).toBe("response.failed");
    expect(events.map((event) => event.sequence_number)).toStrictEqual(events.map((_, index) => index));
    const failed = events.at(-1) as {
      response: { id: string; status: string; error: { code: string; message: string } };
    };
    expect(failed.response.status).toBe("failed");
    expect(failed.response.error.code).toBe("server_error");
    expect(failed.response.error.message).toMatch(/^The response could not be stored: Response store /);
    expect(failed.response.error.message).toContain(file);
    expect((await fast.request(`/v1/responses/${failed.response.id}`)).status).toBe(404);
    expect(unfinishedRows(file)).toBe(0);
  });

  it("a stream whose in_progress record cannot be stored fails at once and the engine stops", async () => {
    const { store, file } = sqliteStore({ maxBytes: 96 * 1024 });
    fillUntilFull(store);
    const fast = createFastApp({ store, respond: slowReply("one two three four five six seven eight", 20) });
    const response = await fast.post("/v1/responses", { model: TEST_MODEL, input: LONG_INPUT, stream: true });
    const events = await readResponseEvents(response);
    expect(events.map((event) => event.type)).toStrictEqual(["response.created", "response.failed"]);
    expect(events[1]).toMatchObject({
      response: { status: "failed", error: { code: "server_error", message: expect.stringContaining(file) } },
    });
    expect(fast.engine.active).toBe(0);
    expect(unfinishedRows(file)).toBe(0);
  });

  it("a background response that cannot be stored ends failed in its live record", async () => {
    const { store, file } = sqliteStore({ maxBytes: 96 * 1024 });
    fillUntilFull(store);
    makeRoomForSmallRecords(file);
    const fast = createFastApp({ store, respond: () => ({ text: "word ".repeat(4_000) }) });
    const queued = (await (
      await fast.post("/v1/responses", { model: TEST_MODEL, input: "hi", background: true })
    ).json()) as { id: string; status: string };
    expect(queued.status).toBe("queued");
    let polled: { status: string; error: { code: string; message: string } | null } | undefined;
    for (let attempt = 0; attempt < 200; attempt++) {
      polled = (await (await fast.request(`/v1/responses/${queued.id}`)).json()) as typeof polled;
      if (polled?.status !== "queued" && polled?.status !== "in_progress") break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(polled).toMatchObject({ status: "failed", error: { code: "server_error" } });
    expect(polled?.error?.message).toMatch(/could not be stored/);
    expect(polled?.error?.message).toContain(file);
    expect(unfinishedRows(file)).toBe(0);
  });

  it("does not affect store: false responses", async () => {
    const { store } = sqliteStore({ maxBytes: 96 * 1024 });
    fillUntilFull(store);
    const fast = createFastApp({ store });
    const response = await fast.post("/v1/responses", { model: TEST_MODEL, input: LONG_INPUT, store: false });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ status: "completed", store: false });
  });

  it("keeps a stored response when only pruning after it fails", async () => {
    class PruneFailingStore extends MemoryResponseStore {
      override prune(): number {
        throw new StoreError("(test)", "pruning failed: disk I/O error.");
      }
    }
    const { lines, logger } = collectingLogger();
    const fast = createFastApp({ store: new PruneFailingStore(), logger, config: { storeMaxCount: 10 } });
    const created = (await (await fast.post("/v1/responses", { model: TEST_MODEL, input: "hi" })).json()) as {
      id: string;
      status: string;
    };
    expect(created.status).toBe("completed");
    expect((await fast.request(`/v1/responses/${created.id}`)).status).toBe(200);
    expect(lines.some((line) => line.includes("Pruning after storing response"))).toBe(true);
  });
});

describe("metadata keys", () => {
  it.each([
    ["the in-memory store", () => new MemoryResponseStore()],
    ["a SQLite file", () => sqliteStore().store],
  ])(
    "stores and returns a `__proto__` key like any other (a real JSON body string, %s)",
    async (_, store) => {
      const fast = createFastApp({ store: store() });
      const body = `{"model": "${TEST_MODEL}", "input": "hi", "metadata": {"__proto__": "x", "topic": "y"}}`;
      const created = await fast.request("/v1/responses", { method: "POST", body });
      expect(created.status).toBe(200);
      const createdText = await created.text();
      expect(createdText).toContain('"metadata":{"__proto__":"x","topic":"y"}');
      const id = (JSON.parse(createdText) as { id: string }).id;

      const fetched = await (await fast.request(`/v1/responses/${id}`)).text();
      expect(fetched).toContain('"metadata":{"__proto__":"x","topic":"y"}');

      const streamBody = body.replace('"input": "hi"', '"input": "hi", "stream": true');
      const streamed = await (
        await fast.request("/v1/responses", { method: "POST", body: streamBody })
      ).text();
      const completed = streamed.split("\n").find((line) => line.includes('"type":"response.completed"'));
      expect(completed).toContain('"metadata":{"__proto__":"x","topic":"y"}');
    },
  );

  it("validates a `__proto__` value like any other value", async () => {
    const fast = createFastApp();
    const body = `{"model": "${TEST_MODEL}", "input": "hi", "metadata": {"__proto__": 3}}`;
    const response = await fast.request("/v1/responses", { method: "POST", body });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { param: "metadata.__proto__" } });
  });
});

describe("chains the API cannot create, crafted in the SQLite file", () => {
  async function createChain(fast: ReturnType<typeof createFastApp>, length: number): Promise<string[]> {
    const ids: string[] = [];
    for (let index = 0; index < length; index++) {
      const response = await fast.post("/v1/responses", {
        model: TEST_MODEL,
        input: `turn ${index}`,
        ...(ids.length === 0 ? {} : { previous_response_id: ids.at(-1) }),
      });
      ids.push(((await response.json()) as { id: string }).id);
    }
    return ids;
  }

  it("a previous_response_id cycle is a 400 naming previous_response_id", async () => {
    const { store, file } = sqliteStore();
    const fast = createFastApp({ store });
    const [first, second] = await createChain(fast, 2);
    withDatabase(file, (database) =>
      database.prepare("UPDATE responses SET previous_response_id = ? WHERE id = ?").run(second, first),
    );
    const response = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: "again",
      previous_response_id: second,
    });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { param: string; message: string } };
    expect(body.error.param).toBe("previous_response_id");
    expect(body.error.message).toMatch(/cycle/);
  });

  it("a chain over the depth limit is a 400 naming previous_response_id; one at the limit is read", async () => {
    const { store, file } = sqliteStore();
    const fast = createFastApp({ store });
    const [root] = await createChain(fast, 1);
    const template = withDatabase(file, (database) =>
      database.prepare("SELECT * FROM responses WHERE id = ?").get(root),
    ) as { created_at: number; model: string; response_json: string };
    // MAX_CHAIN_DEPTH (10,000) links end at resp_deep_9998; one more is over the limit.
    withDatabase(file, (database) => {
      const insert = database.prepare(
        "INSERT INTO responses (id, created_at, previous_response_id, model, status, response_json) VALUES (?, ?, ?, ?, 'completed', ?)",
      );
      database.transaction(() => {
        for (let index = 0; index < 10_000; index++) {
          const id = `resp_deep_${index}`;
          insert.run(
            id,
            template.created_at,
            index === 0 ? root : `resp_deep_${index - 1}`,
            template.model,
            template.response_json.replace(root!, id),
          );
        }
      })();
    });
    const atLimit = await fast.request("/v1/responses/input_tokens", {
      method: "POST",
      body: { model: TEST_MODEL, input: "next", previous_response_id: "resp_deep_9998" },
    });
    expect(atLimit.status).toBe(200);
    const overLimit = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: "next",
      previous_response_id: "resp_deep_9999",
    });
    expect(overLimit.status).toBe(400);
    expect(await overLimit.json()).toMatchObject({ error: { param: "previous_response_id" } });
  });
});

describe("unreadable rows, crafted in the SQLite file", () => {
  it("GET of a corrupt response is a 500 naming the file and the id; a chain through it names both; DELETE works", async () => {
    const { store, file } = sqliteStore();
    const fast = createFastApp({ store });
    const first = (await (await fast.post("/v1/responses", { model: TEST_MODEL, input: "one" })).json()) as {
      id: string;
    };
    const second = (await (
      await fast.post("/v1/responses", { model: TEST_MODEL, input: "two", previous_response_id: first.id })
    ).json()) as { id: string };
    withDatabase(file, (database) =>
      database.prepare("UPDATE responses SET response_json = '{\"id\": broken' WHERE id = ?").run(first.id),
    );

    const fetched = await fast.request(`/v1/responses/${first.id}`);
    expect(fetched.status).toBe(500);
    const fetchedError = ((await fetched.json()) as { error: { message: string; type: string } }).error;
    expect(fetchedError.type).toBe("server_error");
    expect(fetchedError.message).toContain(file);
    expect(fetchedError.message).toContain(`stored response '${first.id}' cannot be read`);
    expect(fetchedError.message).toMatch(/response_json is not valid JSON/);

    const chained = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: "three",
      previous_response_id: second.id,
    });
    expect(chained.status).toBe(500);
    const chainedError = ((await chained.json()) as { error: { message: string; param: string } }).error;
    expect(chainedError.param).toBe("previous_response_id");
    expect(chainedError.message).toContain(`Previous response '${second.id}' cannot be continued`);
    expect(chainedError.message).toContain(`'${first.id}'`);
    expect(chainedError.message).toContain(file);

    // The readable response and the rest of the store still work; the bad one can be deleted.
    expect((await fast.request(`/v1/responses/${second.id}`)).status).toBe(200);
    expect((await fast.request(`/v1/responses/${first.id}`, { method: "DELETE" })).status).toBe(200);
    expect((await fast.request(`/v1/responses/${first.id}`)).status).toBe(404);
  });

  it("input_items of a response with an item row that does not parse is a 500 naming the file and the id", async () => {
    const { store, file } = sqliteStore();
    const fast = createFastApp({ store });
    const created = (await (
      await fast.post("/v1/responses", { model: TEST_MODEL, input: "one" })
    ).json()) as {
      id: string;
    };
    withDatabase(file, (database) =>
      database.prepare("UPDATE input_items SET item_json = 'not json' WHERE response_id = ?").run(created.id),
    );
    const listed = await fast.request(`/v1/responses/${created.id}/input_items`);
    expect(listed.status).toBe(500);
    const message = ((await listed.json()) as { error: { message: string } }).error.message;
    expect(message).toContain(file);
    expect(message).toContain(
      `stored response '${created.id}' cannot be read: input item 0 is not valid JSON`,
    );
  });
});

describe("deleting when the store cannot be written", () => {
  it("DELETE answers a 500 naming the file while another process holds the database locked", async () => {
    const { store, file } = sqliteStore();
    const fast = createFastApp({ store });
    const created = (await (await fast.post("/v1/responses", { model: TEST_MODEL, input: "hi" })).json()) as {
      id: string;
    };
    const locker = new Database(file);
    try {
      locker.exec("BEGIN IMMEDIATE");
      const deleted = await fast.request(`/v1/responses/${created.id}`, { method: "DELETE" });
      expect(deleted.status).toBe(500);
      const message = ((await deleted.json()) as { error: { message: string } }).error.message;
      expect(message).toContain(`Response store ${file}: deleting response '${created.id}' failed`);
      expect(message).toMatch(/SQLITE_BUSY.*another process holds the database locked/);
      locker.exec("ROLLBACK");
    } finally {
      locker.close();
    }
    expect((await fast.request(`/v1/responses/${created.id}`, { method: "DELETE" })).status).toBe(200);
  });
});
