/**
 * One writer per downloaded file across processes: `lmhost get` and a server's download job (or two
 * `get`s) naming the same file would otherwise write the same partial file in `.downloads/` at once and
 * leave a corrupt model. The lock is a file beside the partial one, created exclusively, holding the
 * owner's pid; a lock whose process is gone (killed mid-download) is taken over.
 */
import { randomUUID } from "node:crypto";
import { link, mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { DownloadError } from "./errors.js";

export interface DownloadLock {
  /** Removes the lock file (idempotent). */
  release(): Promise<void>;
}

/** The lock files this process holds: a lock naming our pid but not listed here is a dead process's. */
const held = new Set<string>();

/** True when a process with this pid exists (EPERM: it exists but belongs to another user). */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The pid a lock file names, or undefined when it cannot be read (gone, or not written yet). */
async function ownerOf(file: string): Promise<number | undefined> {
  const pid = await readFile(file, "utf8").then(
    (text) => (JSON.parse(text) as { pid?: unknown }).pid,
    () => undefined,
  );
  return typeof pid === "number" && Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** Whether the lock `file` naming `owner` belongs to a live download (ours counts only if we hold it). */
async function isLive(file: string, owner: number | undefined): Promise<boolean> {
  if (owner === undefined) {
    // An unreadable lock may be one another process has just created and not written yet.
    return stat(file).then(
      (info) => Date.now() - info.mtimeMs < 10_000,
      () => false,
    );
  }
  // A process restarted with the pid of the one that died (pid 1 in a container) is not the owner.
  if (owner === process.pid) return held.has(file);
  return processExists(owner);
}

function inProgress(description: string, owner: number | undefined, lockFile: string): DownloadError {
  return new DownloadError(
    `${description} is already being downloaded by ${owner === undefined ? "another process" : `process ${owner}`} ` +
      "(`lmhost get` or a server): wait for it to finish, or stop it and try again (the download " +
      `resumes where it stopped). If no such download runs, delete ${lockFile}.`,
    409,
    "download_in_progress",
  );
}

/**
 * Takes the lock `lockFile` for downloading `description`, or throws DownloadError 409
 * `download_in_progress` naming the process that holds it.
 */
export async function acquireDownloadLock(lockFile: string, description: string): Promise<DownloadLock> {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const handle = await open(lockFile, "wx");
      try {
        await handle.writeFile(JSON.stringify({ pid: process.pid, startedAt: new Date().toISOString() }));
      } finally {
        await handle.close();
      }
      held.add(lockFile);
      let released = false;
      return {
        release: async () => {
          if (released) return;
          released = true;
          held.delete(lockFile);
          await rm(lockFile, { force: true });
        },
      };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // The staging folder was tidied away by a download that just finished: make it again.
      if (code === "ENOENT") {
        await mkdir(path.dirname(lockFile), { recursive: true });
        continue;
      }
      if (code !== "EEXIST") throw error;
    }
    const owner = await ownerOf(lockFile);
    if (await isLive(lockFile, owner)) throw inProgress(description, owner, lockFile);
    // A dead process's lock. Moved aside under a unique name first: of two processes taking it over at
    // once, only one moves it, so they cannot both delete a lock and then each create their own.
    const aside = `${lockFile}.${randomUUID()}.stale`;
    try {
      await rename(lockFile, aside);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw error;
    }
    const moved = await ownerOf(aside);
    if (moved !== owner && (await isLive(aside, moved))) {
      // Between our read and the move, a live process had taken it over: put its lock back.
      await link(aside, lockFile).catch(() => undefined);
      await rm(aside, { force: true });
      throw inProgress(description, moved, lockFile);
    }
    await rm(aside, { force: true });
  }
  throw new DownloadError(
    `${description}: cannot take the download lock ${lockFile}`,
    409,
    "download_in_progress",
  );
}
