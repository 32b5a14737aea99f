/**
 * One contract suite for every ResponseStore implementation (the in-memory twin and SQLite on a temp
 * file), plus SQLite-only checks: restarts, schema versions, the chain query's plan and its speed in a
 * large store.
 */
import {
  mkdirSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  writeFileSync,
  writeSync,
  closeSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ApiError } from "../../src/shared/errors.js";
import {
  MAX_CHAIN_DEPTH,
  MemoryResponseStore,
  SqliteResponseStore,
  latestSchemaVersion,
  type ResponseStore,
  type StoredItem,
  type StoredResponse,
} from "../../src/store/index.js";
import { migrations } from "../../src/store/sqlite/migrations.js";
import { StoreError, UnreadableResponseError } from "../../src/store/store-rules.js";
import { testLog } from "../helpers/test-log.js";

function message(id: string, text = `text of ${id}`): StoredItem {
  return { id, type: "message", role: "user", content: [{ type: "input_text", text }] };
}

function response(
  id: string,
  options: {
    createdAt?: number;
    previousResponseId?: string | null;
    inputItems?: StoredItem[];
    status?: string;
  } = {},
): StoredResponse {
  const createdAt = options.createdAt ?? 1_700_000_000;
  const status = options.status ?? "completed";
  return {
    id,
    createdAt,
    previousResponseId: options.previousResponseId ?? null,
    model: "stories260K",
    status,
    response: {
      id,
      object: "response",
      created_at: createdAt,
      status,
      output: [
        {
          id: `msg_${id}`,
          type: "message",
          role: "assistant",
          content: [{ type: "output_text", text: "hi" }],
        },
      ],
      usage: { input_tokens: 3, output_tokens: 1, total_tokens: 4 },
      metadata: {},
    },
    inputItems: options.inputItems ?? [message(`item_${id}`)],
  };
}

/** Puts a linear chain resp_0 ← resp_1 ← … and returns its ids, oldest first. */
function putChain(store: ResponseStore, length: number, prefix = "chain"): string[] {
  const ids: string[] = [];
  for (let index = 0; index < length; index++) {
    const id = `${prefix}_${index}`;
    store.put(response(id, { createdAt: 1_000 + index, previousResponseId: ids.at(-1) ?? null }));
    ids.push(id);
  }
  return ids;
}

function catchError(action: () => unknown): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  throw new Error("expected the action to throw");
}

function temporaryDirectory(): string {
  return mkdtempSync(path.join(os.tmpdir(), "lmhost-store-test-"));
}

interface StoreFactory {
  name: string;
  create: () => ResponseStore;
  cleanUp: () => void;
}

function sqliteFactory(): StoreFactory {
  let directory: string | undefined;
  return {
    name: "SqliteResponseStore",
    create: () => {
      directory = temporaryDirectory();
      return SqliteResponseStore.open(path.join(directory, "nested", "responses.sqlite"));
    },
    cleanUp: () => {
      if (directory !== undefined) rmSync(directory, { recursive: true, force: true });
    },
  };
}

const factories: StoreFactory[] = [
  { name: "MemoryResponseStore", create: () => new MemoryResponseStore(), cleanUp: () => {} },
  sqliteFactory(),
];

describe.each(factories)("ResponseStore contract: $name", (factory) => {
  let store: ResponseStore;

  beforeEach(() => {
    store = factory.create();
  });

  afterEach(() => {
    store.close();
    factory.cleanUp();
  });

  describe("put and get", () => {
    it("round-trips a response with its items unchanged", () => {
      const record = response("resp_a", {
        previousResponseId: null,
        inputItems: [
          message("msg_1", "héllo ✓ \u0000 end"),
          { id: "fc_1", type: "function_call_output", call_id: "call_1", output: '{"ok":true}' },
          { id: "rs_1", type: "reasoning", summary: [], encrypted_content: null },
        ],
      });
      store.put(record);
      expect(store.get("resp_a")).toStrictEqual(record);
    });

    it("returns undefined for an unknown id", () => {
      expect(store.get("resp_missing")).toBeUndefined();
    });

    it("replaces a response and its items on a second put", () => {
      store.put(
        response("resp_a", { status: "in_progress", inputItems: [message("msg_1"), message("msg_2")] }),
      );
      const completed = response("resp_a", { status: "completed", inputItems: [message("msg_3")] });
      store.put(completed);
      expect(store.get("resp_a")).toStrictEqual(completed);
      expect(store.listInputItems("resp_a", { limit: 20, order: "asc" })?.data).toStrictEqual([
        message("msg_3"),
      ]);
    });

    it("keeps its own copies: mutating what was put or got changes nothing stored", () => {
      const record = response("resp_a");
      store.put(record);
      record.status = "mutated";
      record.inputItems.push(message("msg_extra"));
      const fetched = store.get("resp_a");
      expect(fetched?.status).toBe("completed");
      fetched!.inputItems.length = 0;
      (fetched!.response as { status: string }).status = "mutated";
      expect(store.get("resp_a")).toStrictEqual(response("resp_a"));
    });
  });

  describe("delete", () => {
    it("returns true, then false, and removes the items", () => {
      store.put(response("resp_a"));
      expect(store.delete("resp_a")).toBe(true);
      expect(store.delete("resp_a")).toBe(false);
      expect(store.get("resp_a")).toBeUndefined();
      expect(store.listInputItems("resp_a", { limit: 20, order: "desc" })).toBeUndefined();
    });

    it("allows deleting a response others chain from; their chain is then undefined", () => {
      const ids = putChain(store, 3);
      expect(store.delete(ids[1]!)).toBe(true);
      expect(store.chain(ids[2]!)).toBeUndefined();
      expect(store.get(ids[2]!)).toBeDefined();
      expect(store.chain(ids[0]!)?.map((record) => record.id)).toStrictEqual([ids[0]]);
    });
  });

  describe("listInputItems", () => {
    const items = ["item_1", "item_2", "item_3", "item_4", "item_5"].map((id) => message(id));
    const ids = (page: { data: StoredItem[] } | undefined) => page?.data.map((item) => item.id);

    beforeEach(() => {
      store.put(response("resp_a", { inputItems: items }));
      store.put(response("resp_b", { inputItems: [message("other_1")] }));
    });

    it("desc lists newest first and pages with after", () => {
      const first = store.listInputItems("resp_a", { limit: 2, order: "desc" });
      expect(first).toStrictEqual({
        data: [items[4], items[3]],
        firstId: "item_5",
        lastId: "item_4",
        hasMore: true,
      });
      const second = store.listInputItems("resp_a", { limit: 2, order: "desc", after: "item_4" });
      expect(second).toMatchObject({ firstId: "item_3", lastId: "item_2", hasMore: true });
      expect(ids(second)).toStrictEqual(["item_3", "item_2"]);
      const last = store.listInputItems("resp_a", { limit: 2, order: "desc", after: "item_2" });
      expect(last).toStrictEqual({ data: [items[0]], firstId: "item_1", lastId: "item_1", hasMore: false });
    });

    it("asc lists input order and pages with after", () => {
      const first = store.listInputItems("resp_a", { limit: 3, order: "asc" });
      expect(first).toMatchObject({ firstId: "item_1", lastId: "item_3", hasMore: true });
      expect(ids(first)).toStrictEqual(["item_1", "item_2", "item_3"]);
      const rest = store.listInputItems("resp_a", { limit: 3, order: "asc", after: "item_3" });
      expect(rest).toStrictEqual({
        data: [items[3], items[4]],
        firstId: "item_4",
        lastId: "item_5",
        hasMore: false,
      });
    });

    it("returns everything when the limit is large and hasMore is false at an exact fit", () => {
      expect(store.listInputItems("resp_a", { limit: 100, order: "asc" })?.data).toStrictEqual(items);
      expect(store.listInputItems("resp_a", { limit: 5, order: "desc" })?.hasMore).toBe(false);
      expect(store.listInputItems("resp_a", { limit: 4, order: "desc" })?.hasMore).toBe(true);
    });

    it("returns an empty page after the last item", () => {
      const empty = { data: [], firstId: null, lastId: null, hasMore: false };
      expect(store.listInputItems("resp_a", { limit: 2, order: "asc", after: "item_5" })).toStrictEqual(
        empty,
      );
      expect(store.listInputItems("resp_a", { limit: 2, order: "desc", after: "item_1" })).toStrictEqual(
        empty,
      );
    });

    it("returns an empty page for a response without input items", () => {
      store.put(response("resp_empty", { inputItems: [] }));
      expect(store.listInputItems("resp_empty", { limit: 20, order: "desc" })).toStrictEqual({
        data: [],
        firstId: null,
        lastId: null,
        hasMore: false,
      });
    });

    it("returns undefined for an unknown response", () => {
      expect(store.listInputItems("resp_missing", { limit: 20, order: "desc" })).toBeUndefined();
    });

    it("rejects an unknown after id (or another response's item) with a 400 naming 'after'", () => {
      for (const after of ["item_missing", "other_1"]) {
        const error = catchError(() => store.listInputItems("resp_a", { limit: 2, order: "desc", after }));
        expect(error).toBeInstanceOf(ApiError);
        expect(error).toMatchObject({ status: 400, param: "after", type: "invalid_request_error" });
      }
    });

    it("rejects a limit below 1 with a 400 naming 'limit'", () => {
      for (const limit of [0, -1, 1.5]) {
        const error = catchError(() => store.listInputItems("resp_a", { limit, order: "asc" }));
        expect(error).toMatchObject({ status: 400, param: "limit" });
      }
    });
  });

  describe("findItem", () => {
    const outputItem = (id: string) => response(id).response.output;

    it("finds an output item and an input item of any stored response by id", () => {
      store.put(response("resp_a", { inputItems: [message("msg_in_a")] }));
      store.put(response("resp_b", { previousResponseId: null, inputItems: [message("msg_in_b")] }));
      expect(store.findItem("msg_resp_a")).toStrictEqual((outputItem("resp_a") as StoredItem[])[0]);
      expect(store.findItem("msg_in_b")).toStrictEqual(message("msg_in_b"));
      expect(store.findItem("msg_missing")).toBeUndefined();
    });

    it("prefers an output item, then the newest response's copy", () => {
      store.put(response("resp_old", { createdAt: 100, inputItems: [message("msg_x", "old copy")] }));
      store.put(response("resp_new", { createdAt: 200, inputItems: [message("msg_x", "new copy")] }));
      store.put(response("resp_tie", { createdAt: 200, inputItems: [message("msg_x", "tie copy")] }));
      expect(store.findItem("msg_x")).toStrictEqual(message("msg_x", "tie copy"));
      store.put(
        response("resp_newer", { createdAt: 300, inputItems: [message("msg_resp_new", "input copy")] }),
      );
      expect(store.findItem("msg_resp_new")).toStrictEqual((outputItem("resp_new") as StoredItem[])[0]);
    });

    it("follows replacements and deletions", () => {
      store.put(response("resp_a", { inputItems: [message("msg_1")] }));
      store.put(response("resp_a", { inputItems: [message("msg_2")] }));
      expect(store.findItem("msg_1")).toBeUndefined();
      expect(store.findItem("msg_2")).toStrictEqual(message("msg_2"));
      store.delete("resp_a");
      expect(store.findItem("msg_2")).toBeUndefined();
      expect(store.findItem("msg_resp_a")).toBeUndefined();
    });

    it("returns a copy", () => {
      store.put(response("resp_a", { inputItems: [message("msg_1")] }));
      const found = store.findItem("msg_1")!;
      found.type = "mutated";
      expect(store.findItem("msg_1")).toStrictEqual(message("msg_1"));
    });
  });

  describe("chain", () => {
    it("returns a single response without predecessor", () => {
      store.put(response("resp_a"));
      expect(store.chain("resp_a")).toStrictEqual([response("resp_a")]);
    });

    it("returns a chain of depth 100 oldest first, with input items", () => {
      const ids = putChain(store, 100);
      const chain = store.chain(ids[99]!);
      expect(chain?.map((record) => record.id)).toStrictEqual(ids);
      expect(chain?.[42]).toStrictEqual(store.get(ids[42]!));
      expect(chain?.[0]?.inputItems).toStrictEqual([message("item_chain_0")]);
    });

    it("returns only the chain, not a sibling branch", () => {
      const ids = putChain(store, 3);
      store.put(response("resp_sibling", { previousResponseId: ids[1]! }));
      expect(store.chain("resp_sibling")?.map((record) => record.id)).toStrictEqual([
        ids[0],
        ids[1],
        "resp_sibling",
      ]);
    });

    it("returns undefined for an unknown id or a missing ancestor", () => {
      expect(store.chain("resp_missing")).toBeUndefined();
      store.put(response("resp_orphan", { previousResponseId: "resp_never_stored" }));
      expect(store.chain("resp_orphan")).toBeUndefined();
      const ids = putChain(store, 10);
      store.delete(ids[0]!);
      expect(store.chain(ids[9]!)).toBeUndefined();
    });

    it("refuses a cycle with a 400 naming previous_response_id instead of looping", () => {
      store.put(response("resp_a", { previousResponseId: "resp_b" }));
      store.put(response("resp_b", { previousResponseId: "resp_a" }));
      const error = catchError(() => store.chain("resp_a"));
      expect(error).toBeInstanceOf(ApiError);
      expect(error).toMatchObject({ status: 400, param: "previous_response_id" });
      expect((error as Error).message).toMatch(/resp_a.*cycle/);
    });

    it(`reads a chain of exactly ${MAX_CHAIN_DEPTH} links and refuses one more with the same 400`, () => {
      const ids = putChain(store, MAX_CHAIN_DEPTH + 1, "deep");
      expect(store.chain(ids[MAX_CHAIN_DEPTH - 1]!)).toHaveLength(MAX_CHAIN_DEPTH);
      const error = catchError(() => store.chain(ids[MAX_CHAIN_DEPTH]!));
      expect(error).toMatchObject({ status: 400, param: "previous_response_id" });
      expect((error as Error).message).toContain(`longer than ${MAX_CHAIN_DEPTH} links`);
    });
  });

  describe("prune", () => {
    beforeEach(() => {
      // Inserted out of created_at order; resp_t300b ties with resp_t300 and was inserted later.
      for (const [id, createdAt] of [
        ["resp_t300", 300],
        ["resp_t100", 100],
        ["resp_t500", 500],
        ["resp_t200", 200],
        ["resp_t300b", 300],
        ["resp_t400", 400],
      ] as const) {
        store.put(response(id, { createdAt }));
      }
    });

    const remaining = () =>
      ["resp_t100", "resp_t200", "resp_t300", "resp_t300b", "resp_t400", "resp_t500"].filter(
        (id) => store.get(id) !== undefined,
      );

    it("by count deletes the oldest first (ties in insertion order) and their items", () => {
      expect(store.prune({ maxCount: 3 })).toBe(3);
      expect(remaining()).toStrictEqual(["resp_t300b", "resp_t400", "resp_t500"]);
      expect(store.listInputItems("resp_t100", { limit: 20, order: "asc" })).toBeUndefined();
      expect(store.prune({ maxCount: 3 })).toBe(0);
      expect(store.prune({ maxCount: 0 })).toBe(3);
      expect(remaining()).toStrictEqual([]);
    });

    it("by age deletes responses older than maxAgeSeconds", () => {
      expect(store.prune({ maxAgeSeconds: 250 }, { nowSeconds: 500 })).toBe(2);
      expect(remaining()).toStrictEqual(["resp_t300", "resp_t300b", "resp_t400", "resp_t500"]);
    });

    it("by age and count together, counting both", () => {
      expect(store.prune({ maxAgeSeconds: 350, maxCount: 2 }, { nowSeconds: 500 })).toBe(4);
      expect(remaining()).toStrictEqual(["resp_t400", "resp_t500"]);
    });

    it("keeps a replaced response's place in the tie order", () => {
      store.put(response("resp_t300", { createdAt: 300, status: "incomplete" }));
      expect(store.prune({ maxCount: 4 })).toBe(2);
      expect(remaining()).toStrictEqual(["resp_t300", "resp_t300b", "resp_t400", "resp_t500"]);
      expect(store.prune({ maxCount: 3 })).toBe(1);
      expect(remaining()).toStrictEqual(["resp_t300b", "resp_t400", "resp_t500"]);
    });

    it("does nothing without limits and rejects negative limits", () => {
      expect(store.prune({})).toBe(0);
      expect(() => store.prune({ maxCount: -1 })).toThrow(RangeError);
      expect(() => store.prune({ maxAgeSeconds: Number.NaN })).toThrow(RangeError);
      expect(remaining()).toHaveLength(6);
    });

    it("never deletes a kept id (the response just stored), by count or by age; it counts, so newer ones go", () => {
      // resp_t100 is the oldest by created_at: a long generation that finished last.
      expect(store.prune({ maxCount: 3 }, { keepIds: ["resp_t100"] })).toBe(3);
      expect(remaining()).toStrictEqual(["resp_t100", "resp_t400", "resp_t500"]);
      expect(
        store.prune({ maxAgeSeconds: 0 }, { nowSeconds: 1_000, keepIds: ["resp_t100", "resp_t500"] }),
      ).toBe(1);
      expect(remaining()).toStrictEqual(["resp_t100", "resp_t500"]);
      // Unkept, it is the oldest again and goes first.
      expect(store.prune({ maxCount: 1 })).toBe(1);
      expect(remaining()).toStrictEqual(["resp_t500"]);
    });

    it("never deletes an unfinished (queued / in_progress) response, nor counts it towards maxCount", () => {
      store.put(response("resp_t100", { createdAt: 100, status: "in_progress" }));
      store.put(response("resp_t200", { createdAt: 200, status: "queued" }));
      // Four finished responses: within a limit of 4 (the running two do not count) ...
      expect(store.prune({ maxCount: 4 })).toBe(0);
      // ... and a limit of 2 deletes the two oldest finished ones.
      expect(store.prune({ maxCount: 2 })).toBe(2);
      expect(remaining()).toStrictEqual(["resp_t100", "resp_t200", "resp_t400", "resp_t500"]);
      expect(store.prune({ maxAgeSeconds: 0 }, { nowSeconds: 1_000 })).toBe(2);
      expect(remaining()).toStrictEqual(["resp_t100", "resp_t200"]);
      store.put(response("resp_t100", { createdAt: 100, status: "cancelled" }));
      expect(store.prune({ maxCount: 0 })).toBe(1);
      expect(remaining()).toStrictEqual(["resp_t200"]);
    });
  });

  describe("prune and previous_response_id chains", () => {
    const stored = (...ids: string[]) => ids.filter((id) => store.get(id) !== undefined);

    it("keeps a conversation whole while its newest turn is kept, beyond maxCount", () => {
      // Five chained turns with --store-max-count 3: each prune keeps the turn just stored.
      const ids: string[] = [];
      for (let turn = 0; turn < 5; turn++) {
        const id = `turn_${turn}`;
        store.put(response(id, { createdAt: 1_000 + turn, previousResponseId: ids.at(-1) ?? null }));
        expect(store.prune({ maxCount: 3 }, { keepIds: [id] })).toBe(0);
        ids.push(id);
      }
      expect(store.chain("turn_4")?.map((record) => record.id)).toStrictEqual(ids);
      // Unkept, the newest turn is the only candidate: the chain goes from its newest end backwards.
      expect(store.prune({ maxCount: 3 })).toBe(2);
      expect(stored(...ids)).toStrictEqual(["turn_0", "turn_1", "turn_2"]);
      expect(store.chain("turn_2")).toHaveLength(3);
    });

    it("prunes oldest first among responses nothing remaining chains from, in rounds until within the limit", () => {
      const ids = putChain(store, 4); // created 1000..1003
      store.put(response("resp_single_old", { createdAt: 500 }));
      store.put(response("resp_single_new", { createdAt: 2_000 }));
      // Candidates: resp_single_old (500), chain_3 (1003); then chain_2 once chain_3 is gone.
      expect(store.prune({ maxCount: 3 }, { keepIds: ["resp_single_new"] })).toBe(3);
      expect(stored(...ids, "resp_single_old", "resp_single_new")).toStrictEqual([
        "chain_0",
        "chain_1",
        "resp_single_new",
      ]);
      expect(store.chain("chain_1")).toHaveLength(2);
      expect(store.prune({ maxCount: 0 })).toBe(3);
      expect(stored(...ids, "resp_single_new")).toStrictEqual([]);
    });

    it("by age deletes an expired chain only once its newest turn has expired too", () => {
      const ids = putChain(store, 5); // created 1000..1004
      expect(store.prune({ maxAgeSeconds: 100 }, { nowSeconds: 1_103 })).toBe(0);
      expect(stored(...ids)).toStrictEqual(ids);
      expect(store.prune({ maxAgeSeconds: 100 }, { nowSeconds: 1_105 })).toBe(5);
      expect(stored(...ids)).toStrictEqual([]);
    });

    it("keeps what a branch chains from, and the ancestors of kept and unfinished responses", () => {
      const ids = putChain(store, 3);
      store.put(response("resp_branch", { createdAt: 1_001, previousResponseId: ids[0]! }));
      store.put(response("resp_running", { createdAt: 900, previousResponseId: ids[1]!, status: "queued" }));
      // resp_branch is the only candidate: chain_2 is kept, chain_0 and chain_1 have successors.
      expect(store.prune({ maxCount: 0 }, { keepIds: [ids[2]!] })).toBe(1);
      expect(stored(...ids, "resp_branch", "resp_running")).toStrictEqual([...ids, "resp_running"]);
      // A kept id that is not even stored (a running response's predecessor) protects its ancestors.
      store.put(response("resp_running", { createdAt: 900, previousResponseId: ids[1]! }));
      expect(store.prune({ maxCount: 0 }, { keepIds: [ids[1]!] })).toBe(2);
      expect(stored(...ids, "resp_running")).toStrictEqual([ids[0], ids[1]]);
    });

    it("prunes a response whose predecessor is already gone", () => {
      store.put(response("resp_orphan", { createdAt: 100, previousResponseId: "resp_never_stored" }));
      store.put(response("resp_new", { createdAt: 200 }));
      expect(store.prune({ maxCount: 1 })).toBe(1);
      expect(stored("resp_orphan", "resp_new")).toStrictEqual(["resp_new"]);
    });
  });

  describe("failUnfinished", () => {
    const restarted = { code: "server_error", message: "lmhost restarted before this response finished" };

    it("marks queued and in_progress responses failed with the error, keeping everything else", () => {
      const running = response("resp_running", {
        createdAt: 200,
        status: "in_progress",
        previousResponseId: null,
      });
      (running.response.output as Record<string, unknown>[])[0]!.status = "in_progress";
      running.response.completed_at = null;
      running.response.error = null;
      store.put(response("resp_done", { createdAt: 100 }));
      store.put(running);
      store.put(
        response("resp_queued", { createdAt: 300, status: "queued", previousResponseId: "resp_done" }),
      );
      store.put(response("resp_failed", { createdAt: 400, status: "failed" }));
      store.put(response("resp_cancelled", { createdAt: 500, status: "cancelled" }));

      expect(store.failUnfinished(restarted)).toBe(2);

      const marked = store.get("resp_running");
      expect(marked).toStrictEqual({
        ...running,
        status: "failed",
        response: {
          ...running.response,
          status: "failed",
          completed_at: null,
          error: restarted,
          output: [{ ...(running.response.output as Record<string, unknown>[])[0], status: "incomplete" }],
        },
      });
      const queued = store.get("resp_queued");
      expect(queued?.status).toBe("failed");
      expect(queued?.response).toMatchObject({ status: "failed", completed_at: null, error: restarted });
      expect(queued?.previousResponseId).toBe("resp_done");
      expect(store.chain("resp_queued")?.map((record) => record.status)).toStrictEqual([
        "completed",
        "failed",
      ]);
      expect(store.listInputItems("resp_queued", { limit: 20, order: "asc" })?.data).toStrictEqual([
        message("item_resp_queued"),
      ]);
      expect(store.findItem("msg_resp_running")).toMatchObject({
        id: "msg_resp_running",
        status: "incomplete",
      });
      for (const id of ["resp_done", "resp_failed", "resp_cancelled"]) {
        expect(store.get(id)?.response).not.toHaveProperty("error");
      }
      expect(store.get("resp_done")?.status).toBe("completed");
      expect(store.get("resp_cancelled")?.status).toBe("cancelled");
    });

    it("marks nothing the second time, nor in a store without unfinished responses", () => {
      store.put(response("resp_queued", { status: "queued" }));
      expect(store.failUnfinished(restarted)).toBe(1);
      expect(store.failUnfinished(restarted)).toBe(0);
      expect(store.get("resp_queued")?.status).toBe("failed");
    });

    it("makes a swept response prunable again, keeping its place in the tie order", () => {
      store.put(response("resp_a", { createdAt: 100, status: "in_progress" }));
      store.put(response("resp_b", { createdAt: 100 }));
      expect(store.prune({ maxCount: 1 }, { keepIds: ["resp_b"] })).toBe(0);
      store.failUnfinished(restarted);
      expect(store.prune({ maxCount: 1 })).toBe(1);
      expect(store.get("resp_a")).toBeUndefined();
      expect(store.get("resp_b")).toBeDefined();
    });
  });
});

/** `PRAGMA user_version` is the big-endian 32-bit integer at byte 60 of the SQLite file header. */
const USER_VERSION_OFFSET = 60;

function readUserVersion(file: string): number {
  const header = Buffer.alloc(4);
  const descriptor = openSync(file, "r");
  try {
    readSync(descriptor, header, 0, 4, USER_VERSION_OFFSET);
  } finally {
    closeSync(descriptor);
  }
  return header.readUInt32BE(0);
}

function writeUserVersion(file: string, version: number): void {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(version, 0);
  const descriptor = openSync(file, "r+");
  try {
    writeSync(descriptor, header, 0, 4, USER_VERSION_OFFSET);
  } finally {
    closeSync(descriptor);
  }
}

describe("SqliteResponseStore", () => {
  let directory: string;
  let file: string;

  beforeEach(() => {
    directory = temporaryDirectory();
    file = path.join(directory, "a", "b", "responses.sqlite");
  });

  afterEach(() => {
    rmSync(directory, { recursive: true, force: true });
  });

  it("keeps data across close and reopen (a restart)", () => {
    const first = SqliteResponseStore.open(file);
    const ids = putChain(first, 5);
    const record = first.get(ids[4]!);
    first.close();
    first.close(); // Closing twice is harmless.

    const second = SqliteResponseStore.open(file);
    try {
      expect(second.get(ids[4]!)).toStrictEqual(record);
      expect(second.chain(ids[4]!)?.map((response) => response.id)).toStrictEqual(ids);
    } finally {
      second.close();
    }
  });

  it("records the schema version and refuses a file from a newer lmhost", () => {
    SqliteResponseStore.open(file).close();
    expect(readUserVersion(file)).toBe(latestSchemaVersion);

    writeUserVersion(file, latestSchemaVersion + 1);
    expect(() => SqliteResponseStore.open(file)).toThrow(
      new RegExp(
        `schema version ${latestSchemaVersion + 1}.*only knows versions up to ${latestSchemaVersion}`,
      ),
    );
    expect(readUserVersion(file)).toBe(latestSchemaVersion + 1);
  });

  it("indexes the output item ids of responses stored before schema version 2", () => {
    const legacyFile = path.join(directory, "legacy.sqlite");
    const legacy = new Database(legacyFile);
    legacy.exec(migrations[0]!.sql);
    legacy.pragma("user_version = 1");
    const stored = response("resp_legacy", { inputItems: [message("msg_legacy_in")] });
    legacy
      .prepare("INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?)")
      .run(stored.id, stored.createdAt, null, stored.model, stored.status, JSON.stringify(stored.response));
    legacy
      .prepare("INSERT INTO input_items VALUES (?, ?, ?, ?)")
      .run(stored.id, 0, "msg_legacy_in", JSON.stringify(message("msg_legacy_in")));
    legacy.close();

    const store = SqliteResponseStore.open(legacyFile);
    try {
      expect(store.get("resp_legacy")).toStrictEqual(stored);
      expect(store.findItem("msg_resp_legacy")).toStrictEqual((stored.response.output as StoredItem[])[0]);
      expect(store.findItem("msg_legacy_in")).toStrictEqual(message("msg_legacy_in"));
    } finally {
      store.close();
    }
  });

  it("finds the successors of a prune candidate through the previous_response_id index", () => {
    const store = SqliteResponseStore.open(file);
    try {
      const plans = store.explainPruneQueries();
      testLog(
        `prune query plans:\n  expired: ${plans.expired.join("\n           ")}\n  oldest:  ${plans.oldest.join("\n           ")}`,
      );
      for (const plan of [plans.expired, plans.oldest]) {
        expect(plan.some((detail) => /^SCAN successor\b/.test(detail))).toBe(false);
        expect(plan).toContainEqual(
          expect.stringMatching(
            /^SEARCH successor USING (COVERING )?INDEX responses_previous_response_id \(previous_response_id=\?\)/,
          ),
        );
      }
    } finally {
      store.close();
    }
  });

  it("adds the previous_response_id index to a store of schema version 3, keeping its chains", () => {
    const legacyFile = path.join(directory, "v3.sqlite");
    const legacy = new Database(legacyFile);
    for (const migration of migrations.slice(0, 3)) legacy.exec(migration.sql);
    legacy.pragma("user_version = 3");
    const insert = legacy.prepare("INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?)");
    for (const [id, previous] of [
      ["resp_v3_a", null],
      ["resp_v3_b", "resp_v3_a"],
    ] as const) {
      const record = response(id, { previousResponseId: previous });
      insert.run(
        id,
        record.createdAt,
        previous,
        record.model,
        record.status,
        JSON.stringify(record.response),
      );
    }
    legacy.close();

    const store = SqliteResponseStore.open(legacyFile);
    try {
      expect(store.chain("resp_v3_b")?.map((record) => record.id)).toStrictEqual(["resp_v3_a", "resp_v3_b"]);
      expect(store.prune({ maxCount: 1 }, { keepIds: ["resp_v3_b"] })).toBe(0);
    } finally {
      store.close();
    }
    const check = new Database(legacyFile, { readonly: true });
    try {
      expect(check.pragma("user_version", { simple: true })).toBe(latestSchemaVersion);
      const index = check
        .prepare("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?")
        .pluck()
        .get("responses_previous_response_id");
      expect(index).toMatch(/ON responses \(previous_response_id\)/);
    } finally {
      check.close();
    }
  });

  it("walks the chain by primary key without scanning the responses table", () => {
    const store = SqliteResponseStore.open(file);
    try {
      const plan = store.explainChainQuery();
      testLog(`chain query plan:\n  ${plan.join("\n  ")}`);
      expect(plan.some((detail) => /^SCAN (responses|previous)\b/.test(detail))).toBe(false);
      expect(
        plan.filter((detail) => /^SEARCH (responses|previous) USING .*\(id=\?\)/.test(detail)),
      ).toHaveLength(2);
    } finally {
      store.close();
    }
  });

  it("reads a chain of depth 100 quickly among 10,000 unrelated responses", () => {
    const store = SqliteResponseStore.open(file);
    try {
      const fillStarted = performance.now();
      for (let index = 0; index < 10_000; index++) {
        store.put(
          response(`resp_unrelated_${index}`, {
            createdAt: index,
            inputItems: [message(`u_${index}_1`), message(`u_${index}_2`)],
          }),
        );
      }
      const fillMilliseconds = performance.now() - fillStarted;
      const ids = putChain(store, 100);

      const runs = 20;
      const started = performance.now();
      for (let run = 0; run < runs; run++) expect(store.chain(ids[99]!)).toHaveLength(100);
      const averageMilliseconds = (performance.now() - started) / runs;
      testLog(
        `filled 10,000 responses in ${fillMilliseconds.toFixed(0)} ms; ` +
          `chain of depth 100: ${averageMilliseconds.toFixed(2)} ms on average over ${runs} runs`,
      );
      expect(averageMilliseconds).toBeLessThan(1_000); // A generous bound; the figure above is the point.
    } finally {
      store.close();
    }
  });
});

describe("SqliteResponseStore failures name the file", () => {
  let directory: string;
  let file: string;

  beforeEach(() => {
    directory = temporaryDirectory();
    file = path.join(directory, "responses.sqlite");
  });

  afterEach(() => {
    rmSync(directory, { recursive: true, force: true });
  });

  function sql(statement: string, ...parameters: unknown[]): void {
    const database = new Database(file);
    try {
      database.prepare(statement).run(...parameters);
    } finally {
      database.close();
    }
  }

  it("refuses a file that is not an SQLite database, naming it and saying what to do", () => {
    writeFileSync(file, "these are notes, not a database\n".repeat(40));
    const error = catchError(() => SqliteResponseStore.open(file));
    expect(error).toBeInstanceOf(StoreError);
    expect((error as Error).message).toContain(`Response store ${file}:`);
    expect((error as Error).message).toMatch(/file is not a database \(SQLITE_NOTADB\)/);
    expect((error as Error).message).toMatch(/move it away/);
  });

  it("names the file when it cannot be opened (a directory in its place)", () => {
    mkdirSync(file);
    const error = catchError(() => SqliteResponseStore.open(file));
    expect(error).toBeInstanceOf(StoreError);
    expect((error as Error).message).toContain(`Response store ${file}: opening`);
  });

  it("a full store (maxBytes) refuses a put with SQLITE_FULL naming the file; what was stored stays readable", () => {
    const store = SqliteResponseStore.open(file, { maxBytes: 64 * 1024 });
    try {
      store.put(response("resp_kept", { status: "in_progress" }));
      let error: unknown;
      for (let index = 0; error === undefined && index < 1_000; index++) {
        error = catchError(() => {
          store.put(
            response(`resp_fill_${index}`, { inputItems: [message(`item_${index}`, "x".repeat(2_000))] }),
          );
          throw new Error("stored");
        });
        if ((error as Error).message === "stored") error = undefined;
      }
      expect(error).toBeInstanceOf(StoreError);
      expect(error).toMatchObject({ status: 500, location: file });
      expect((error as Error).message).toMatch(
        new RegExp(
          `^Response store ${file}: storing response 'resp_fill_\\d+' failed: database or disk is full \\(SQLITE_FULL\\)`,
        ),
      );
      // Replacing the in_progress record by a bigger final one fails too, leaving the earlier one intact.
      const final = response("resp_kept", { inputItems: [message("item_kept", "y".repeat(20_000))] });
      expect(catchError(() => store.put(final))).toBeInstanceOf(StoreError);
      expect(store.get("resp_kept")?.status).toBe("in_progress");
      expect(store.delete("resp_kept")).toBe(true);
    } finally {
      store.close();
    }
    expect(() => SqliteResponseStore.open(file, { maxBytes: 0 })).toThrow(RangeError);
  });

  it("reads of an unreadable row fail naming the file and the id; delete and prune still work", () => {
    const store = SqliteResponseStore.open(file);
    try {
      putChain(store, 3, "chain");
      store.put(response("resp_bad_item", { inputItems: [message("item_good"), message("item_bad")] }));
      store.put(response("resp_no_id_item"));
      sql("UPDATE responses SET response_json = 'not json' WHERE id = 'chain_1'");
      sql("UPDATE input_items SET item_json = '{\"id\": ' WHERE item_id = 'item_bad'");
      sql("UPDATE input_items SET item_json = '{\"text\": \"no id\"}' WHERE response_id = 'resp_no_id_item'");

      const reads: [string, () => unknown, RegExp][] = [
        ["chain_1", () => store.get("chain_1"), /response_json is not valid JSON/],
        ["chain_1", () => store.chain("chain_2"), /response_json is not valid JSON/],
        ["chain_1", () => store.findItem("msg_chain_1"), /response_json is not valid JSON/],
        ["resp_bad_item", () => store.get("resp_bad_item"), /input item 1 is not valid JSON/],
        [
          "resp_bad_item",
          () => store.listInputItems("resp_bad_item", { limit: 20, order: "asc" }),
          /input item 1 is not valid JSON/,
        ],
        ["resp_bad_item", () => store.findItem("item_bad"), /input item 1 is not valid JSON/],
        ["resp_no_id_item", () => store.get("resp_no_id_item"), /input item 0 has no text 'id' and 'type'/],
      ];
      for (const [id, read, problem] of reads) {
        const error = catchError(read);
        expect(error).toBeInstanceOf(UnreadableResponseError);
        expect(error).toMatchObject({ status: 500, responseId: id, location: file });
        expect((error as Error).message).toContain(
          `Response store ${file}: stored response '${id}' cannot be read`,
        );
        expect((error as Error).message).toMatch(problem);
      }
      // Readable neighbours are unaffected.
      expect(store.get("chain_0")?.id).toBe("chain_0");
      expect(store.findItem("item_good")).toStrictEqual(message("item_good"));
      expect(store.delete("chain_1")).toBe(true);
      expect(store.prune({ maxCount: 0 })).toBe(4); // Pruning reads no JSON: the unreadable rows go too.
    } finally {
      store.close();
    }
  });

  it("failUnfinished skips unreadable unfinished rows with a warning naming the file and the id", () => {
    const setup = SqliteResponseStore.open(file);
    setup.put(response("resp_good", { status: "in_progress" }));
    setup.put(response("resp_corrupt", { status: "in_progress" }));
    setup.put(response("resp_not_object", { status: "queued" }));
    setup.put(response("resp_wrong_field", { status: "in_progress" }));
    setup.close();
    sql(
      'UPDATE responses SET response_json = \'{"id": "resp_corrupt", "output": [\' WHERE id = \'resp_corrupt\'',
    );
    sql("UPDATE responses SET response_json = '[1, 2]' WHERE id = 'resp_not_object'");
    sql("UPDATE responses SET created_at = 'yesterday' WHERE id = 'resp_wrong_field'");

    const warnings: string[] = [];
    const store = SqliteResponseStore.open(file, { warn: (warning) => warnings.push(warning) });
    try {
      expect(store.failUnfinished({ code: "server_error", message: "restarted" })).toBe(4);
      expect(warnings).toHaveLength(3);
      for (const [id, problem] of [
        ["resp_corrupt", /response_json is not valid JSON/],
        ["resp_not_object", /response_json is JSON but not an object/],
        ["resp_wrong_field", /created_at is "yesterday", not a number of seconds/],
      ] as const) {
        const warning = warnings.find((line) => line.includes(`'${id}'`));
        expect(warning).toContain(`Response store ${file}: stored response '${id}' cannot be read`);
        expect(warning).toMatch(problem);
      }
      expect(store.get("resp_good")?.response).toMatchObject({
        status: "failed",
        error: { message: "restarted" },
      });
      // Marked failed in its status column: not swept again, prunable, and still named when read.
      expect(store.failUnfinished({ code: "server_error", message: "restarted" })).toBe(0);
      expect(catchError(() => store.get("resp_corrupt"))).toBeInstanceOf(UnreadableResponseError);
      expect(store.prune({ maxCount: 0 })).toBe(4);
    } finally {
      store.close();
    }
  });
});
