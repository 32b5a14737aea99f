/**
 * One writer per downloaded file across processes: `lmhost get` and a server's download job (or two
 * `get`s) naming the same file would otherwise write the same partial file in `.downloads/` at once and
 * leave a corrupt model. The lock is a file beside the partial one, created exclusively, holding the
 * owner's pid; a lock whose process is gone (killed mid-download) is taken over.
 */
import { open, readFile, rm, stat } from "node:fs/promises";
import { DownloadError } from "./errors.js";

export interface DownloadLock {
  /** Removes the lock file (idempotent). */
  release(): Promise<void>;
}

/** True when a process with this pid exists (EPERM: it exists but belongs to another user). */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Takes the lock `lockFile` for downloading `description`, or throws DownloadError 409
 * `download_in_progress` naming the process that holds it.
 */
export async function acquireDownloadLock(lockFile: string, description: string): Promise<DownloadLock> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(lockFile, "wx");
      try {
        await handle.writeFile(JSON.stringify({ pid: process.pid, startedAt: new Date().toISOString() }));
      } finally {
        await handle.close();
      }
      let released = false;
      return {
        release: async () => {
          if (released) return;
          released = true;
          await rm(lockFile, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const owner = await readFile(lockFile, "utf8").then(
      (text) => (JSON.parse(text) as { pid?: unknown }).pid,
      () => undefined,
    );
    const valid = typeof owner === "number" && Number.isInteger(owner) && owner > 0;
    // An unreadable lock may be one another process has just created and not written yet.
    const fresh = async () =>
      stat(lockFile).then(
        (info) => Date.now() - info.mtimeMs < 10_000,
        () => false,
      );
    if (valid ? processExists(owner) : await fresh()) {
      throw new DownloadError(
        `${description} is already being downloaded by ${valid ? `process ${owner}` : "another process"} ` +
          "(`lmhost get` or a server): wait for it to finish, or stop it and try again (the download " +
          `resumes where it stopped). If no such download runs, delete ${lockFile}.`,
        409,
        "download_in_progress",
      );
    }
    // Left by a process that is gone: take it over.
    await rm(lockFile, { force: true });
  }
  throw new DownloadError(
    `${description}: cannot take the download lock ${lockFile}`,
    409,
    "download_in_progress",
  );
}
