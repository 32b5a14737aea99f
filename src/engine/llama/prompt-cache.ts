/**
 * A persistent KV prefix cache: sequence states saved in a bounded folder (`<data-dir>/prompt-cache/`), so a
 * long prompt prefix (Codex's ~10k tokens of instructions and tools) is restored instead of evaluated again
 * after its sequence was reused for something else, the model was unloaded, or the server restarted.
 *
 * What is saved: the whole state of a sequence after a generation (the prompt and the answer it evaluated).
 * node-llama-cpp saves a sequence only whole (`saveStateToFile` writes every KV cell of the sequence with its
 * token list); saving just the part before the last user turn would mean erasing the tail first (the live
 * sequence would lose the follow-up turn's reuse) or evaluating the prefix separately with the save on the
 * request's critical path. A restored state is cut back to the common prefix by node-llama-cpp itself (the
 * next evaluation erases from the first differing token), so one state serves both a new conversation that
 * shares the instructions and the next turn of the same conversation.
 *
 * Files: `<identity16>-<tokens digest>.kv` (node-llama-cpp's state file) and `.json` beside it (identity, the
 * token list, size and checksum of the state file). An entry exists only when both exist and agree; both are
 * written to a temporary name and renamed. The state file's checksum is verified before every restore: a
 * state file corrupted in the middle would otherwise load silently (measured) and poison the KV cache. A
 * corrupt, mismatched or unloadable entry is deleted with a warning; the request evaluates normally.
 * Least recently used entries (the `.json` mtime, touched on every restore) are deleted to stay under
 * `maxBytes`. The identity (see `promptCacheIdentity`) covers the model file and the context parameters a
 * state depends on: a state of another model may crash llama.cpp, and one of another sequence count or
 * flash-attention setting fails to load ("n_stream mismatch", "incompatible V transposition").
 *
 * No native code here: the caller passes how to write and load a state, so this is tested with plain files.
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import * as zlib from "node:zlib";

export interface PromptCacheOptions {
  /** The cache folder (created on first use). */
  dir: string;
  /** Bound on the folder's state files in bytes; 0 disables the cache. */
  maxBytes: number;
  /**
   * A state is saved when the prompt has at least this many tokens and at least this many of the
   * sequence's tokens are not in the cache yet; a restore must gain a quarter of it over what the sequence
   * already holds. Default 1024.
   */
  minTokens?: number;
  warn?: (message: string) => void;
}

export interface PromptCacheEntry {
  /** File name without extension. */
  name: string;
  identity: string;
  tokens: Uint32Array;
  /** Size of the state file. */
  bytes: number;
  /** The state file's checksum, its algorithm first (`crc32:…`, or `sha256:…` on a Node without zlib.crc32). */
  checksum: string;
  /** Last use (ms since the epoch). */
  usedAt: number;
}

export interface PromptCacheMatch {
  entry: PromptCacheEntry;
  /** Tokens the entry shares with the prompt. */
  commonPrefix: number;
}

/** 2: the checksum became `checksum` (CRC-32 where Node has it) instead of `sha256`. */
const metaVersion = 2;
/** A superseded entry: the new state covers all of it but at most this many (and an eighth) trailing tokens. */
const supersedeSlackTokens = 64;
/** Temporary files older than this are leftovers of a crashed process. */
const staleTemporaryMilliseconds = 60 * 60 * 1000;
export const defaultPromptCacheMinTokens = 1024;
export const defaultPromptCacheBytes = 2 * 1024 ** 3;

interface MetaFile {
  version: number;
  identity: string;
  tokens: string;
  tokenCount: number;
  bytes: number;
  checksum: string;
}

export class PromptCache {
  readonly dir: string;
  readonly maxBytes: number;
  readonly minTokens: number;
  private readonly warn: (message: string) => void;
  private readonly entries = new Map<string, PromptCacheEntry>();
  /** Entries being restored: never evicted meanwhile. */
  private readonly pinned = new Map<string, number>();
  private scanned: Promise<void> | undefined;
  /** Saves and evictions run one at a time. */
  private writes: Promise<unknown> = Promise.resolve();
  private temporaryCounter = 0;
  /**
   * Per identity, the largest state seen (saved, refused or read back): a state's size grows with its
   * tokens, so a save that could not fit the bound is predicted, not written (an 8B model's 10,000-token
   * state is ~1.3 GB: writing and hashing one only to delete it took the disk and the context's lock).
   */
  private readonly largestState = new Map<string, { bytes: number; tokens: number }>();
  /**
   * Saves queued or running: they cover a sequence as their entry will. Without them the turn after a
   * long prompt saved the state again while the first save was still being checksummed (measured: a
   * second 521 MB write, 0.75 s under the context's lock, for 58 more tokens).
   */
  private readonly saving = new Set<{ identity: string; tokens: Uint32Array }>();

  constructor(options: PromptCacheOptions) {
    if (!Number.isInteger(options.maxBytes) || options.maxBytes < 0)
      throw new Error(`promptCacheSize must be a non-negative integer, got ${options.maxBytes}`);
    this.dir = options.dir;
    this.maxBytes = options.maxBytes;
    this.minTokens = Math.max(1, options.minTokens ?? defaultPromptCacheMinTokens);
    this.warn = options.warn ?? (() => undefined);
  }

  get enabled(): boolean {
    return this.maxBytes > 0;
  }

  /** Bytes of the state files held. */
  get totalBytes(): number {
    let total = 0;
    for (const entry of this.entries.values()) total += entry.bytes;
    return total;
  }

  /** The entries held (tests and diagnostics). */
  list(): PromptCacheEntry[] {
    return [...this.entries.values()];
  }

  /** Reads the folder once: valid entries are kept, broken ones and stale temporary files deleted. */
  ready(): Promise<void> {
    this.scanned ??= this.scan();
    return this.scanned;
  }

  /** The entry of `identity` sharing the longest prefix with `tokens` (undefined when none shares any). */
  lookup(identity: string, tokens: ArrayLike<number>): PromptCacheMatch | undefined {
    let best: PromptCacheMatch | undefined;
    for (const entry of this.entries.values()) {
      if (entry.identity !== identity) continue;
      const commonPrefix = commonPrefixLength(entry.tokens, tokens);
      if (commonPrefix > (best?.commonPrefix ?? 0)) best = { entry, commonPrefix };
    }
    return best;
  }

  /** Whether a restore of `match` is worth it for a sequence that already holds `heldPrefix` tokens. */
  worthRestoring(match: PromptCacheMatch | undefined, heldPrefix: number): match is PromptCacheMatch {
    return match !== undefined && match.commonPrefix - heldPrefix >= Math.max(1, this.minTokens / 4);
  }

  /** Whether a sequence holding `sequenceTokens` after a prompt of `promptTokens` tokens should be saved. */
  shouldSave(identity: string, promptTokens: number, sequenceTokens: ArrayLike<number>): boolean {
    if (!this.enabled || promptTokens < this.minTokens) return false;
    if (this.predictedTooLarge(identity, sequenceTokens.length)) return false;
    let covered = this.lookup(identity, sequenceTokens)?.commonPrefix ?? 0;
    for (const job of this.saving)
      if (job.identity === identity)
        covered = Math.max(covered, commonPrefixLength(job.tokens, sequenceTokens));
    return sequenceTokens.length - covered >= this.minTokens;
  }

  /** The size a state of `tokens` tokens is expected to have, from the largest one seen of `identity`. */
  predictedBytes(identity: string, tokens: number): number | undefined {
    const largest = this.largestState.get(identity);
    if (largest === undefined || largest.tokens === 0) return undefined;
    return Math.round((largest.bytes / largest.tokens) * tokens);
  }

  /** Whether a state of `tokens` tokens is expected to be over the bound (never before one was seen). */
  private predictedTooLarge(identity: string, tokens: number): boolean {
    return (this.predictedBytes(identity, tokens) ?? 0) > this.maxBytes;
  }

  private noteSize(identity: string, bytes: number, tokens: number): void {
    const largest = this.largestState.get(identity);
    if (largest === undefined || tokens >= largest.tokens) this.largestState.set(identity, { bytes, tokens });
  }

  /**
   * Saves a state: `write(file)` writes node-llama-cpp's state file there. Entries the new one covers are
   * deleted, then least recently used ones until the folder fits. Never throws: a failure is a warning.
   * `written` is called once the state file is written (or the save gave up before): the sequence is free
   * again from then on, while the checksum and the renames still run.
   */
  save(
    identity: string,
    tokens: ArrayLike<number>,
    write: (file: string) => Promise<unknown>,
    written: () => void = () => undefined,
  ): Promise<PromptCacheEntry | undefined> {
    let called = false;
    const once = () => {
      if (called) return;
      called = true;
      written();
    };
    const job = { identity, tokens: Uint32Array.from(tokens) };
    this.saving.add(job);
    const run = this.writes
      .then(() => this.saveNow(identity, job.tokens, write, once))
      .finally(() => {
        once();
        this.saving.delete(job);
      });
    this.writes = run.catch(() => undefined);
    return run;
  }

  /**
   * Restores `entry`: verifies the state file's checksum, then `load(file)` loads it and returns the tokens
   * the sequence holds afterwards. False (and the entry deleted, with a warning) when anything does not
   * match; the caller must then treat the sequence as empty.
   */
  async restore(
    entry: PromptCacheEntry,
    load: (file: string) => Promise<ArrayLike<number>>,
  ): Promise<boolean> {
    this.pinned.set(entry.name, (this.pinned.get(entry.name) ?? 0) + 1);
    const stateFile = this.stateFile(entry.name);
    try {
      let problem: string | undefined;
      try {
        const digest = await checksumOfFile(stateFile);
        if (digest.bytes !== entry.bytes || digest.checksum !== entry.checksum)
          problem = "its checksum does not match (a corrupt file)";
      } catch (error) {
        problem = `it cannot be read (${describe(error)})`;
      }
      if (problem === undefined) {
        try {
          const loaded = await load(stateFile);
          if (
            commonPrefixLength(entry.tokens, loaded) !== entry.tokens.length ||
            loaded.length !== entry.tokens.length
          )
            problem = "the state loaded holds other tokens";
        } catch (error) {
          problem = `node-llama-cpp could not load it (${describe(error)})`;
        }
      }
      if (problem !== undefined) {
        this.warn(`prompt cache: ignoring ${stateFile}: ${problem}; it is deleted`);
        await this.remove(entry);
        return false;
      }
      entry.usedAt = Date.now();
      const when = new Date(entry.usedAt);
      await utimes(this.metaFile(entry.name), when, when).catch(() => undefined);
      return true;
    } finally {
      const count = (this.pinned.get(entry.name) ?? 1) - 1;
      if (count <= 0) this.pinned.delete(entry.name);
      else this.pinned.set(entry.name, count);
    }
  }

  private async saveNow(
    identity: string,
    tokens: Uint32Array,
    write: (file: string) => Promise<unknown>,
    written: () => void,
  ): Promise<PromptCacheEntry | undefined> {
    await this.ready();
    // Saves queued before a first oversized one was seen are refused here, before anything is written.
    if (this.predictedTooLarge(identity, tokens.length)) return undefined;
    const name = `${identity.slice(0, 16)}-${tokensDigest(tokens).slice(0, 32)}`;
    if (this.entries.has(name)) return this.entries.get(name);
    this.temporaryCounter += 1;
    const temporary = path.join(this.dir, `${name}.${process.pid}.${this.temporaryCounter}.tmp`);
    const temporaryMeta = `${temporary}.json`;
    try {
      await mkdir(this.dir, { recursive: true });
      try {
        await write(temporary);
      } finally {
        written();
      }
      // Sized before it is hashed: a state over the bound is deleted without reading it back.
      const size = (await stat(temporary)).size;
      this.noteSize(identity, size, tokens.length);
      if (size > this.maxBytes) {
        await rm(temporary, { force: true });
        return undefined;
      }
      const digest = await checksumOfFile(temporary);
      const entry: PromptCacheEntry = {
        name,
        identity,
        tokens,
        bytes: digest.bytes,
        checksum: digest.checksum,
        usedAt: Date.now(),
      };
      // Entries this one covers go first, then the least recently used until it fits.
      for (const other of [...this.entries.values()]) {
        if (
          other.identity === identity &&
          !this.pinned.has(other.name) &&
          commonPrefixLength(other.tokens, tokens) >=
            other.tokens.length - Math.min(supersedeSlackTokens, other.tokens.length / 8)
        )
          await this.remove(other);
      }
      await this.evictToFit(this.maxBytes - entry.bytes);
      const meta: MetaFile = {
        version: metaVersion,
        identity,
        tokens: Buffer.from(tokens.buffer, tokens.byteOffset, tokens.byteLength).toString("base64"),
        tokenCount: tokens.length,
        bytes: entry.bytes,
        checksum: entry.checksum,
      };
      await writeFile(temporaryMeta, JSON.stringify(meta));
      await rename(temporary, this.stateFile(name));
      await rename(temporaryMeta, this.metaFile(name));
      this.entries.set(name, entry);
      return entry;
    } catch (error) {
      this.warn(`prompt cache: could not save a state in ${this.dir}: ${describe(error)}`);
      await rm(temporary, { force: true }).catch(() => undefined);
      await rm(temporaryMeta, { force: true }).catch(() => undefined);
      return undefined;
    }
  }

  /** Deletes least recently used entries until the state files take at most `budget` bytes. */
  private async evictToFit(budget: number): Promise<void> {
    const byAge = [...this.entries.values()].sort((a, b) => a.usedAt - b.usedAt);
    let total = this.totalBytes;
    for (const entry of byAge) {
      if (total <= budget) return;
      if (this.pinned.has(entry.name)) continue;
      await this.remove(entry);
      total -= entry.bytes;
    }
  }

  private async remove(entry: PromptCacheEntry): Promise<void> {
    this.entries.delete(entry.name);
    // The meta file first: without it the state file is never used again (and the next scan deletes it).
    await rm(this.metaFile(entry.name), { force: true }).catch(() => undefined);
    await rm(this.stateFile(entry.name), { force: true }).catch(() => undefined);
  }

  private async scan(): Promise<void> {
    if (!this.enabled) return;
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return; // no folder yet
    }
    const present = new Set(names);
    for (const file of names) {
      const full = path.join(this.dir, file);
      if (file.endsWith(".tmp") || file.endsWith(".tmp.json")) {
        const info = await stat(full).catch(() => undefined);
        if (info !== undefined && Date.now() - info.mtimeMs > staleTemporaryMilliseconds)
          await rm(full, { force: true }).catch(() => undefined);
        continue;
      }
      const name = file.endsWith(".json")
        ? file.slice(0, -5)
        : file.endsWith(".kv")
          ? file.slice(0, -3)
          : undefined;
      if (name === undefined) continue;
      if (file.endsWith(".kv")) {
        // A state file without its meta file is a leftover: never usable.
        if (!present.has(`${name}.json`)) await rm(full, { force: true }).catch(() => undefined);
        continue;
      }
      const entry = await this.readEntry(name).catch((error: unknown) => {
        this.warn(`prompt cache: ignoring ${full}: ${describe(error)}; it is deleted`);
        return undefined;
      });
      if (entry === undefined) {
        await rm(full, { force: true }).catch(() => undefined);
        await rm(this.stateFile(name), { force: true }).catch(() => undefined);
        continue;
      }
      this.entries.set(name, entry);
      this.noteSize(entry.identity, entry.bytes, entry.tokens.length);
    }
    await this.evictToFit(this.maxBytes);
  }

  private async readEntry(name: string): Promise<PromptCacheEntry> {
    const metaPath = this.metaFile(name);
    const [text, metaInfo, stateInfo] = await Promise.all([
      readFile(metaPath, "utf8"),
      stat(metaPath),
      stat(this.stateFile(name)),
    ]);
    const meta = JSON.parse(text) as Partial<MetaFile>;
    if (
      meta.version !== metaVersion ||
      typeof meta.identity !== "string" ||
      typeof meta.tokens !== "string" ||
      typeof meta.checksum !== "string" ||
      typeof meta.bytes !== "number" ||
      typeof meta.tokenCount !== "number"
    )
      throw new Error("not a prompt cache entry of this version");
    const bytes = Buffer.from(meta.tokens, "base64");
    if (bytes.length !== meta.tokenCount * 4) throw new Error("its token list is damaged");
    const tokens = new Uint32Array(meta.tokenCount);
    Buffer.from(tokens.buffer).set(bytes);
    if (`${meta.identity.slice(0, 16)}-${tokensDigest(tokens).slice(0, 32)}` !== name)
      throw new Error("its name does not match its contents");
    if (stateInfo.size !== meta.bytes) throw new Error("its state file has the wrong size");
    return {
      name,
      identity: meta.identity,
      tokens,
      bytes: meta.bytes,
      checksum: meta.checksum,
      usedAt: metaInfo.mtimeMs,
    };
  }

  private stateFile(name: string): string {
    return path.join(this.dir, `${name}.kv`);
  }

  private metaFile(name: string): string {
    return path.join(this.dir, `${name}.json`);
  }
}

/** Tokens two lists share from the start. */
export function commonPrefixLength(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const length = Math.min(a.length, b.length);
  let index = 0;
  while (index < length && a[index] === b[index]) index += 1;
  return index;
}

function tokensDigest(tokens: Uint32Array): string {
  return createHash("sha256")
    .update(Buffer.from(tokens.buffer, tokens.byteOffset, tokens.byteLength))
    .digest("hex");
}

/** zlib's CRC-32 (Node 20.15 and later), looked up so that an older Node falls back to SHA-256. */
const crc32 = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;
/** Bytes read per slice while checksumming a state file: ~1 ms from the page cache, at disk speed otherwise. */
const checksumSliceBytes = 4 * 1024 * 1024;

/**
 * The checksum of a state file: CRC-32 where Node has it (5.6 GB/s here, against 2.6 for SHA-256; it is
 * there to catch a damaged file, not a forged one), read with synchronous reads of 4 MiB slices into one
 * buffer, yielding to the event loop after each. Asynchronous reads go through libuv's pool, whose single
 * thread (UV_THREADPOOL_SIZE=1, bin/lmhost.js) runs node-llama-cpp's decodes, so every read waited for a
 * decode step; and a read stream allocated a buffer per chunk for the garbage collector. A 521 MB state
 * (10,533 tokens of the 89M bench model) took 1.5 s to checksum after its save, 4.0 s while the next turn
 * decoded, and 0.48 s before a restore that way.
 */
async function checksumOfFile(file: string): Promise<{ checksum: string; bytes: number }> {
  const hash = crc32 === undefined ? createHash("sha256") : undefined;
  let crc = 0;
  let bytes = 0;
  const buffer = Buffer.allocUnsafe(checksumSliceBytes);
  const handle = openSync(file, "r");
  try {
    for (;;) {
      const read = readSync(handle, buffer, 0, buffer.length, bytes);
      if (read === 0) break;
      const slice = buffer.subarray(0, read);
      if (hash !== undefined) hash.update(slice);
      else crc = crc32!(slice, crc);
      bytes += read;
      await new Promise((resolve) => setImmediate(resolve));
    }
  } finally {
    closeSync(handle);
  }
  const checksum =
    hash !== undefined ? `sha256:${hash.digest("hex")}` : `crc32:${crc.toString(16).padStart(8, "0")}`;
  return { checksum, bytes };
}

/**
 * What a saved state depends on besides its tokens: the model file (its size and SHA-256 of samples of it:
 * the header and four 64 KiB blocks spread over the weights, so a fine-tune of the same shape differs), the
 * llama.cpp build, and the context parameters the state format checks (sequence count, flash attention).
 * The context size is not part of it: a state loads into any context with room for its tokens.
 */
export async function promptCacheIdentity(
  modelPath: string,
  parameters: Record<string, string | number | boolean>,
): Promise<string> {
  const hash = createHash("sha256");
  const handle = await open(modelPath, "r");
  try {
    const { size } = await handle.stat();
    hash.update(JSON.stringify({ format: metaVersion, size, parameters }));
    const block = 64 * 1024;
    const offsets = [0, size / 4, size / 2, (size * 3) / 4, size - block].map((offset) =>
      Math.max(0, Math.min(Math.floor(offset), size - block)),
    );
    const buffer = Buffer.alloc(block);
    for (const [index, offset] of offsets.entries()) {
      // The header block is longer: GGUF metadata (architecture, tokenizer, ...) sits at the start.
      const length = index === 0 ? Math.min(size, 1024 * 1024) : Math.min(size, block);
      const target = length > buffer.length ? Buffer.alloc(length) : buffer;
      const { bytesRead } = await handle.read(target, 0, length, offset);
      hash.update(target.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return hash.digest("hex");
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
