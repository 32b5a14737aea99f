/**
 * The prompt cache's folder management with plain files standing in for node-llama-cpp's state files:
 * lookup by longest common prefix, the save rule, LRU eviction under the size bound, superseded entries,
 * atomic writes, identity hashing, and corrupt or mismatched files (ignored and deleted). The native
 * save/restore path is tested in tests/real/prompt-cache.test.ts.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as zlib from "node:zlib";
import { describe, expect, it } from "vitest";
import { parseByteSize, resolveConfig } from "../../src/config.js";
import { flagsToConfig } from "../../src/cli/serve.js";
import { commonPrefixLength, PromptCache, promptCacheIdentity } from "../../src/engine/llama/prompt-cache.js";

const identity = "a".repeat(64);
const otherIdentity = "b".repeat(64);

function folder(): string {
  return mkdtempSync(path.join(tmpdir(), "lmhost-prompt-cache-"));
}

function range(start: number, length: number): number[] {
  return Array.from({ length }, (_, index) => start + index);
}

/** A fake state file: the tokens' bytes repeated to `bytes`. */
function writer(bytes: number, tokens: ArrayLike<number>) {
  return async (file: string) => {
    writeFileSync(file, Buffer.alloc(bytes, tokens.length % 251));
  };
}

/** What a sequence holds after a load: the file must be the one the entry names. */
function loader(tokens: ArrayLike<number>) {
  return async (file: string) => {
    readFileSync(file);
    return Array.from(tokens);
  };
}

function warnings(): { warn: (message: string) => void; messages: string[] } {
  const messages: string[] = [];
  return { warn: (message) => messages.push(message), messages };
}

describe("PromptCache", () => {
  it("finds the entry sharing the longest prefix, per identity", async () => {
    const cache = new PromptCache({ dir: folder(), maxBytes: 10_000, minTokens: 8 });
    const shortTokens = range(0, 10);
    const longTokens = [...range(0, 20), 99, 98];
    await cache.save(identity, shortTokens, writer(100, shortTokens));
    await cache.save(identity, longTokens, writer(100, longTokens));
    // The longer state covers the shorter one entirely: the shorter is superseded.
    expect(cache.list().map((entry) => entry.tokens.length)).toEqual([22]);
    const match = cache.lookup(identity, [...range(0, 20), 5, 6]);
    expect(match?.commonPrefix).toBe(20);
    expect(cache.lookup(otherIdentity, range(0, 20))).toBeUndefined();
    expect(cache.lookup(identity, [7, 7, 7])).toBeUndefined();
    expect(cache.worthRestoring(match, 0)).toBe(true);
    // A sequence that already holds all but one token of it gains too little.
    expect(cache.worthRestoring(match, 19)).toBe(false);
  });

  it("saves only long prompts with enough tokens not cached yet", async () => {
    const cache = new PromptCache({ dir: folder(), maxBytes: 10_000, minTokens: 16 });
    expect(cache.shouldSave(identity, 15, range(0, 40))).toBe(false);
    expect(cache.shouldSave(identity, 16, range(0, 40))).toBe(true);
    await cache.save(identity, range(0, 40), writer(100, range(0, 40)));
    // 10 new tokens after a cached 40: not yet; 16 new: yes.
    expect(cache.shouldSave(identity, 30, range(0, 50))).toBe(false);
    expect(cache.shouldSave(identity, 30, range(0, 56))).toBe(true);
    expect(cache.shouldSave(otherIdentity, 30, range(0, 50))).toBe(true);
    expect(new PromptCache({ dir: folder(), maxBytes: 0 }).shouldSave(identity, 5000, range(0, 5000))).toBe(
      false,
    );
  });

  it("counts a save still being written or checksummed as covering its tokens", async () => {
    const cache = new PromptCache({ dir: folder(), maxBytes: 10_000, minTokens: 16 });
    let finishWrite = () => undefined as void;
    const writeMayFinish = new Promise<void>((resolve) => (finishWrite = resolve));
    const first = range(0, 40);
    const saved = cache.save(identity, first, async (file) => {
      await writeMayFinish;
      await writer(100, first)(file);
    });
    // The next turn, 10 tokens longer, while the first save runs: covered by it, not saved again.
    expect(cache.shouldSave(identity, 30, range(0, 50))).toBe(false);
    expect(cache.shouldSave(identity, 30, range(0, 56))).toBe(true);
    finishWrite();
    expect((await saved)?.tokens.length).toBe(40);
    expect(cache.shouldSave(identity, 30, range(0, 50))).toBe(false);
    // A save that failed covers nothing once it is over.
    const failed = cache.save(identity, range(100, 40), async () => {
      throw new Error("disk full");
    });
    expect(cache.shouldSave(identity, 30, range(100, 45))).toBe(false);
    expect(await failed).toBeUndefined();
    expect(cache.shouldSave(identity, 30, range(100, 45))).toBe(true);
  });

  // zlib.crc32 came with Node 20.15; before, the cache falls back to SHA-256.
  const crc32 = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;
  it.skipIf(crc32 === undefined)(
    "checksums state files with CRC-32 and drops entries of the older SHA-256 format on start",
    async () => {
      const dir = folder();
      const { warn, messages } = warnings();
      const cache = new PromptCache({ dir, maxBytes: 100_000_000, minTokens: 4, warn });
      const tokens = range(0, 12);
      // Over two 4 MiB slices, with different bytes in each, so the running checksum is what is compared.
      const bytes = 9 * 1024 * 1024 + 7;
      const state = Buffer.alloc(bytes);
      for (let index = 0; index < bytes; index += 4096) state[index] = (index / 4096) % 256;
      const entry = (await cache.save(identity, tokens, async (file) => writeFileSync(file, state)))!;
      const meta = JSON.parse(readFileSync(path.join(dir, `${entry.name}.json`), "utf8")) as Record<
        string,
        unknown
      >;
      expect(meta.checksum).toBe(`crc32:${crc32!(state).toString(16).padStart(8, "0")}`);
      expect(entry.bytes).toBe(bytes);
      expect(await cache.restore(entry, loader(tokens))).toBe(true);
      // An entry as version 1 wrote it: ignored and deleted with a warning, state file included.
      writeFileSync(
        path.join(dir, `${entry.name}.json`),
        JSON.stringify({ ...meta, version: 1, checksum: undefined, sha256: "0".repeat(64) }),
      );
      const restarted = new PromptCache({ dir, maxBytes: 100_000_000, minTokens: 4, warn });
      await restarted.ready();
      expect(restarted.list()).toEqual([]);
      expect(readdirSync(dir)).toEqual([]);
      expect(messages.join("\n")).toMatch(/not a prompt cache entry of this version/);
    },
  );

  it("evicts the least recently used entries to stay under the size bound", async () => {
    const dir = folder();
    const cache = new PromptCache({ dir, maxBytes: 250, minTokens: 4 });
    const a = [1, ...range(100, 10)];
    const b = [2, ...range(100, 10)];
    const c = [3, ...range(100, 10)];
    await cache.save(identity, a, writer(100, a));
    await cache.save(identity, b, writer(100, b));
    // Using `a` makes `b` the least recently used.
    const entryA = cache.lookup(identity, a)!.entry;
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(await cache.restore(entryA, loader(a))).toBe(true);
    await cache.save(identity, c, writer(100, c));
    expect(cache.lookup(identity, b)).toBeUndefined();
    expect(cache.lookup(identity, a)?.commonPrefix).toBe(a.length);
    expect(cache.lookup(identity, c)?.commonPrefix).toBe(c.length);
    expect(cache.totalBytes).toBe(200);
    // Two entries, each a state file and its meta file; no temporary file is left.
    expect(readdirSync(dir).sort()).toHaveLength(4);
    expect(readdirSync(dir).filter((file) => file.includes(".tmp"))).toEqual([]);
    // A state larger than the whole bound is never kept.
    const huge = [4, ...range(100, 10)];
    expect(await cache.save(identity, huge, writer(400, huge))).toBeUndefined();
    expect(cache.totalBytes).toBe(200);
  });

  it("predicts a state too large for the bound from the largest seen, and stops writing such states", async () => {
    const dir = folder();
    const cache = new PromptCache({ dir, maxBytes: 250, minTokens: 4 });
    const long = range(100, 20);
    expect(cache.shouldSave(identity, 20, long)).toBe(true);
    // 20 tokens → 400 bytes: over the bound, refused and deleted (unhashed).
    expect(await cache.save(identity, long, writer(400, long))).toBeUndefined();
    expect(readdirSync(dir)).toEqual([]);
    expect(cache.predictedBytes(identity, 20)).toBe(400);
    // A save of as many tokens or more is not even attempted now; a short one still is, and other models'.
    expect(cache.shouldSave(identity, 20, range(200, 24))).toBe(false);
    expect(cache.shouldSave(identity, 10, range(300, 10))).toBe(true);
    expect(cache.shouldSave(otherIdentity, 20, range(200, 24))).toBe(true);
    // Saves queued together before the first oversized one was seen: only that first one is written.
    const queued = new PromptCache({ dir: folder(), maxBytes: 250, minTokens: 4 });
    let writes = 0;
    const counting = (tokens: number[]) => async (file: string) => {
      writes += 1;
      await writer(400, tokens)(file);
    };
    const batch = [range(500, 20), range(600, 20), range(700, 20), range(800, 20)];
    expect(batch.every((tokens) => queued.shouldSave(identity, 20, tokens))).toBe(true);
    const results = await Promise.all(batch.map((tokens) => queued.save(identity, tokens, counting(tokens))));
    expect(results).toEqual([undefined, undefined, undefined, undefined]);
    expect(writes).toBe(1);
    // What fits is kept, and a restarted cache predicts from the entries it reads back.
    const short = range(300, 10);
    expect(await cache.save(identity, short, writer(200, short))).toBeDefined();
    const restarted = new PromptCache({ dir, maxBytes: 250, minTokens: 4 });
    await restarted.ready();
    expect(restarted.predictedBytes(identity, 20)).toBe(400);
    expect(restarted.shouldSave(identity, 20, range(400, 20))).toBe(false);
  });

  it("reads its entries back in a new instance (a restart), least recently used order from the files", async () => {
    const dir = folder();
    const first = new PromptCache({ dir, maxBytes: 1000, minTokens: 4 });
    const a = range(0, 12);
    const b = range(50, 12);
    await first.save(identity, a, writer(300, a));
    await first.save(identity, b, writer(300, b));
    const entryA = first.lookup(identity, a)!.entry;
    // `a` was used long ago: a restart with a smaller bound keeps `b`.
    const old = new Date(Date.now() - 60_000);
    utimesSync(path.join(dir, `${entryA.name}.json`), old, old);
    const second = new PromptCache({ dir, maxBytes: 400, minTokens: 4 });
    await second.ready();
    expect(second.list().map((entry) => entry.tokens[0])).toEqual([50]);
    expect(await second.restore(second.lookup(identity, b)!.entry, loader(b))).toBe(true);
    expect(readdirSync(dir)).toHaveLength(2);
  });

  it("ignores and deletes corrupt, mismatched and orphaned files; a request never fails for them", async () => {
    const dir = folder();
    const { warn, messages } = warnings();
    const cache = new PromptCache({ dir, maxBytes: 10_000, minTokens: 4, warn });
    const a = range(0, 12);
    const b = range(40, 12);
    const c = range(80, 12);
    const entryA = (await cache.save(identity, a, writer(200, a)))!;
    const entryB = (await cache.save(identity, b, writer(200, b)))!;
    const entryC = (await cache.save(identity, c, writer(200, c)))!;
    // a: its state file damaged in the middle (same size): the checksum catches it at restore time.
    const stateA = path.join(dir, `${entryA.name}.kv`);
    const bytes = readFileSync(stateA);
    bytes[100] = (bytes[100] ?? 0) ^ 0xff;
    writeFileSync(stateA, bytes);
    expect(await cache.restore(entryA, loader(a))).toBe(false);
    expect(messages.join("\n")).toMatch(/checksum/);
    expect(readdirSync(dir).some((file) => file.startsWith(entryA.name))).toBe(false);
    // b: the load reports other tokens than the entry's (a mismatched state).
    expect(await cache.restore(entryB, loader([1, 2, 3]))).toBe(false);
    // c: node-llama-cpp refuses the file.
    expect(
      await cache.restore(entryC, async () => {
        throw new Error("Failed to load state from file");
      }),
    ).toBe(false);
    expect(cache.list()).toEqual([]);
    expect(readdirSync(dir)).toEqual([]);

    // On start-up: a meta file that is not JSON, one whose state file is missing or of the wrong size, and a
    // state file without a meta file are all deleted.
    const d = range(120, 12);
    const e = range(160, 12);
    const entryD = (await cache.save(identity, d, writer(200, d)))!;
    const entryE = (await cache.save(identity, e, writer(200, e)))!;
    writeFileSync(path.join(dir, `${entryD.name}.json`), "{not json");
    writeFileSync(path.join(dir, `${entryE.name}.kv`), Buffer.alloc(10));
    writeFileSync(path.join(dir, "0123456789abcdef-orphan.kv"), Buffer.alloc(10));
    writeFileSync(path.join(dir, "notes.txt"), "kept");
    const restarted = new PromptCache({ dir, maxBytes: 10_000, minTokens: 4, warn });
    await restarted.ready();
    expect(restarted.list()).toEqual([]);
    expect(readdirSync(dir)).toEqual(["notes.txt"]);
  });

  it("never throws when a save fails, and leaves no temporary file", async () => {
    const dir = folder();
    const { warn, messages } = warnings();
    const cache = new PromptCache({ dir, maxBytes: 10_000, minTokens: 4, warn });
    let written = 0;
    const saved = await cache.save(
      identity,
      range(0, 10),
      async () => {
        throw new Error("disk full");
      },
      () => (written += 1),
    );
    expect(saved).toBeUndefined();
    // The sequence is handed back exactly once, also when the write fails.
    expect(written).toBe(1);
    const order: string[] = [];
    await cache.save(
      identity,
      range(0, 12),
      async (file) => {
        order.push("write");
        writeFileSync(file, "state");
      },
      () => order.push("written"),
    );
    expect(order).toEqual(["write", "written"]);
    expect(cache.list()).toHaveLength(1);
    readdirSync(dir).forEach((file) => rmSync(path.join(dir, file)));
    expect(messages.join("\n")).toMatch(/disk full/);
    expect(readdirSync(dir)).toEqual([]);
    // A folder that cannot be created: also a warning.
    const blocked = path.join(dir, "file");
    writeFileSync(blocked, "");
    const broken = new PromptCache({
      dir: path.join(blocked, "cache"),
      maxBytes: 10_000,
      minTokens: 4,
      warn,
    });
    expect(await broken.save(identity, range(0, 10), writer(10, []))).toBeUndefined();
  });

  it("hashes the model file's contents and the context parameters into the identity", async () => {
    const dir = folder();
    const model = path.join(dir, "model.gguf");
    const content = Buffer.alloc(3 * 1024 * 1024, 7);
    writeFileSync(model, content);
    const base = await promptCacheIdentity(model, { sequences: 4, flashAttention: false });
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    expect(await promptCacheIdentity(model, { sequences: 4, flashAttention: false })).toBe(base);
    expect(await promptCacheIdentity(model, { sequences: 2, flashAttention: false })).not.toBe(base);
    expect(await promptCacheIdentity(model, { sequences: 4, flashAttention: true })).not.toBe(base);
    // The same size and header, other weights in the middle: another identity.
    content[Math.floor(content.length / 2) + 10] = 1;
    writeFileSync(model, content);
    expect(await promptCacheIdentity(model, { sequences: 4, flashAttention: false })).not.toBe(base);
  });

  it("counts common prefixes", () => {
    expect(commonPrefixLength([1, 2, 3], [1, 2, 4])).toBe(2);
    expect(commonPrefixLength(new Uint32Array([1, 2]), [1, 2, 3])).toBe(2);
    expect(commonPrefixLength([], [1])).toBe(0);
  });
});

describe("prompt cache size setting", () => {
  it("reads bytes with units from the flag, the environment and the file, 0 turning it off", () => {
    expect(parseByteSize("2GiB")).toBe(2 * 1024 ** 3);
    expect(parseByteSize("512MiB")).toBe(512 * 1024 ** 2);
    expect(parseByteSize("1G")).toBe(1e9);
    expect(parseByteSize("1024")).toBe(1024);
    expect(parseByteSize("0")).toBe(0);
    expect(parseByteSize("lots")).toBeNaN();
    const dataDir = folder();
    expect(resolveConfig({ dataDir }, {}).promptCacheSize).toBe(2 * 1024 ** 3);
    expect(resolveConfig({ dataDir }, { LMHOST_PROMPT_CACHE_SIZE: "1MiB" }).promptCacheSize).toBe(1024 ** 2);
    expect(resolveConfig({ dataDir, ...flagsToConfig({ promptCacheSize: "0" }) }, {}).promptCacheSize).toBe(
      0,
    );
    expect(() => resolveConfig({ dataDir, ...flagsToConfig({ promptCacheSize: "lots" }) }, {})).toThrow(
      /promptCacheSize/,
    );
    writeFileSync(path.join(dataDir, "config.json"), JSON.stringify({ promptCacheSize: 4096 }));
    expect(resolveConfig({ dataDir }, {}).promptCacheSize).toBe(4096);
  });
});
