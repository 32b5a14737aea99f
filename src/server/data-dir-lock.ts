/**
 * One server per data dir: `<data-dir>/lmhost.lock` holds the pid, port and start time of the server that
 * owns the directory (its response store, reasoning key, mcp.json). It is created atomically (O_EXCL), so
 * of two servers starting at once exactly one wins; the other fails naming the first's pid and port and
 * never opens the store (only the owner repairs unfinished responses). A lock whose pid is dead (the owner
 * was killed with SIGKILL or the machine crashed) is taken over with a notice. The owner removes the file
 * when it stops, and on any process exit as a last resort.
 */
import {
  closeSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import path from "node:path";

export const LOCK_FILE_NAME = "lmhost.lock";

export interface LockInfo {
  pid: number;
  /** Null until the server listens. */
  port: number | null;
  host: string | null;
  /** ISO time the server started. */
  startedAt: string;
}

/** A second server on a data dir in use. */
export class DataDirInUseError extends Error {
  readonly owner: LockInfo;
  constructor(dataDir: string, owner: LockInfo) {
    const where = owner.port === null ? "still starting" : `port ${owner.port}`;
    super(
      `the data dir ${dataDir} is in use by another lmhost server (pid ${owner.pid}, ${where}, started ${owner.startedAt}); ` +
        `stop that server, or give this one its own --data-dir`,
    );
    this.name = "DataDirInUseError";
    this.owner = owner;
  }
}

export interface DataDirLock {
  readonly file: string;
  /** Records the address the server listens on, for a second server's error message. */
  setAddress(host: string, port: number): void;
  /** Removes the lock file if it is still ours. Safe to call twice. */
  release(): void;
}

export interface AcquireOptions {
  /** Told when a stale lock (dead pid) is taken over. */
  notice?: (message: string) => void;
  /** Is this pid a running process? (tests) */
  isAlive?: (pid: number) => boolean;
}

export function acquireDataDirLock(dataDir: string, options: AcquireOptions = {}): DataDirLock {
  const isAlive = options.isAlive ?? processIsAlive;
  mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, LOCK_FILE_NAME);
  const info: LockInfo = { pid: process.pid, port: null, host: null, startedAt: new Date().toISOString() };
  for (let attempt = 0; attempt < 5; attempt++) {
    if (createExclusive(file, info)) return ownedLock(file, info);
    const owner = readLock(file);
    if (owner === "missing") continue; // released meanwhile: try again
    if (owner !== "unreadable") {
      // Our own pid: another server in this very process — or the lock of an earlier process that had
      // the same pid (a restarted container: lmhost is pid 1 again), which is stale.
      const live = owner.pid === process.pid ? heldHere.has(file) : isAlive(owner.pid);
      if (live) throw new DataDirInUseError(dataDir, owner);
    }
    if (owner === "unreadable" && !oldEnough(file)) continue; // being written by a server starting now
    if (takeOverStale(file, owner)) {
      options.notice?.(
        owner === "unreadable"
          ? `took over an unreadable lock file ${file}`
          : `took over the lock of an lmhost server that is gone (pid ${owner.pid}, started ${owner.startedAt}) in ${dataDir}`,
      );
    }
  }
  const owner = readLock(file);
  if (typeof owner === "object") throw new DataDirInUseError(dataDir, owner);
  throw new Error(`could not take the lock ${file}; remove it if no lmhost server runs on ${dataDir}`);
}

function createExclusive(file: string, info: LockInfo): boolean {
  let descriptor: number;
  try {
    descriptor = openSync(file, "wx", 0o644);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw new Error(`cannot create the lock file ${file}: ${(error as Error).message}`, { cause: error });
  }
  try {
    writeSync(descriptor, JSON.stringify(info) + "\n");
  } finally {
    closeSync(descriptor);
  }
  return true;
}

function readLock(file: string): LockInfo | "missing" | "unreadable" {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "missing";
    return "unreadable";
  }
  try {
    const parsed = JSON.parse(text) as Partial<LockInfo>;
    if (typeof parsed.pid !== "number" || !Number.isInteger(parsed.pid) || parsed.pid <= 0)
      return "unreadable";
    return {
      pid: parsed.pid,
      port: typeof parsed.port === "number" ? parsed.port : null,
      host: typeof parsed.host === "string" ? parsed.host : null,
      startedAt: typeof parsed.startedAt === "string" ? parsed.startedAt : "at an unknown time",
    };
  } catch {
    return "unreadable";
  }
}

/** An empty lock file younger than 2 s may be one a starting server is between creating and writing. */
function oldEnough(file: string): boolean {
  try {
    const stats = statSync(file);
    return stats.size > 0 || Date.now() - stats.mtimeMs > 2_000;
  } catch {
    return true;
  }
}

/**
 * Moves the stale lock aside (rename is atomic) and checks that what was moved is the stale lock read
 * before: if another server took it over in between, its fresh lock is put back (link never overwrites).
 */
function takeOverStale(file: string, stale: LockInfo | "unreadable"): boolean {
  const aside = `${file}.stale-${process.pid}`;
  try {
    renameSync(file, aside);
  } catch {
    return false; // gone already: the next attempt creates it
  }
  const moved = readLock(aside);
  const same =
    stale === "unreadable"
      ? moved === "unreadable"
      : typeof moved === "object" && moved.pid === stale.pid && moved.startedAt === stale.startedAt;
  if (!same) {
    try {
      linkSync(aside, file);
    } catch {
      // someone else holds the name now; their lock stands
    }
  }
  rmSync(aside, { force: true });
  return same;
}

/** Lock files this process holds (a second server in the same process is refused like another's). */
const heldHere = new Set<string>();

function ownedLock(file: string, info: LockInfo): DataDirLock {
  heldHere.add(file);
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    heldHere.delete(file);
    process.removeListener("exit", release);
    const current = readLock(file);
    if (typeof current === "object" && current.pid === info.pid && current.startedAt === info.startedAt)
      rmSync(file, { force: true });
  };
  // A last resort: an exit without close() (process.exit after a hard timeout) still frees the dir.
  process.once("exit", release);
  return {
    file,
    setAddress(host, port) {
      if (released) return;
      info.host = host;
      info.port = port;
      // Written beside the lock and renamed over it, so a reader never sees half a file.
      const next = `${file}.${process.pid}.tmp`;
      const descriptor = openSync(next, "w", 0o644);
      try {
        writeSync(descriptor, JSON.stringify(info) + "\n");
      } finally {
        closeSync(descriptor);
      }
      renameSync(next, file);
    },
    release,
  };
}

/**
 * kill(pid, 0): no error or EPERM (it exists, owned by someone else) means a process has the pid. Where
 * /proc shows its command line (Linux) and it is neither node nor lmhost, the pid was reused by another
 * program after the lock's owner died: not alive for the lock.
 */
export function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  let commandLine: string;
  try {
    commandLine = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return true; // no /proc (macOS, Windows) or not readable: trust kill()
  }
  return commandLine === "" || /node|lmhost/i.test(commandLine);
}
