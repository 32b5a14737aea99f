/**
 * The download lock (src/models/download/lock.ts) on a real file system: a live owner makes a second
 * download a 409 naming it; a dead owner's lock is taken over, also one naming this process's own pid
 * (a restarted container's server gets the dead one's pid) unless this process really holds it; two
 * takeovers at once leave exactly one owner; a folder tidied away meanwhile is made again.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { acquireDownloadLock } from "../../src/models/download/lock.js";

const lockIn = (folder = mkdtempSync(path.join(tmpdir(), "lmhost-lock-"))) =>
  path.join(folder, "model.gguf.lmhost-lock");
const ownerOf = (file: string) => (JSON.parse(readFileSync(file, "utf8")) as { pid: number }).pid;

/** A pid that no process has: a child that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((resolve) => child.once("exit", resolve));
  return child.pid!;
}

describe("the download lock", () => {
  it("refuses while a live process holds it, and is free again once released", async () => {
    const file = lockIn();
    const lock = await acquireDownloadLock(file, "a model");
    expect(ownerOf(file)).toBe(process.pid);
    await expect(acquireDownloadLock(file, "a model")).rejects.toMatchObject({
      status: 409,
      code: "download_in_progress",
      message: expect.stringContaining(`a model is already being downloaded by process ${process.pid}`),
    });
    await lock.release();
    expect(existsSync(file)).toBe(false);
    await (await acquireDownloadLock(file, "a model")).release();
  });

  it("takes over the lock of a dead process, and one naming our pid that we do not hold", async () => {
    const file = lockIn();
    writeFileSync(file, JSON.stringify({ pid: await deadPid() }));
    const first = await acquireDownloadLock(file, "a model");
    expect(ownerOf(file)).toBe(process.pid);
    await first.release();
    // Left by a process that had our pid before (a container restarted after a kill).
    writeFileSync(file, JSON.stringify({ pid: process.pid }));
    const second = await acquireDownloadLock(file, "a model");
    await second.release();
  });

  it("gives a stale lock to exactly one of two takeovers at once", async () => {
    const file = lockIn();
    writeFileSync(file, JSON.stringify({ pid: await deadPid() }));
    const results = await Promise.allSettled([
      acquireDownloadLock(file, "a model"),
      acquireDownloadLock(file, "a model"),
    ]);
    expect(results.filter((result) => result.status === "fulfilled")).toHaveLength(1);
    expect(results.find((result) => result.status === "rejected")).toMatchObject({
      reason: { status: 409, code: "download_in_progress" },
    });
    for (const result of results) if (result.status === "fulfilled") await result.value.release();
  });

  it("makes the folder again when a finished download tidied it away", async () => {
    const folder = path.join(mkdtempSync(path.join(tmpdir(), "lmhost-lock-")), "gone");
    const lock = await acquireDownloadLock(lockIn(folder), "a model");
    expect(existsSync(folder)).toBe(true);
    await lock.release();
  });
});
