/**
 * `npx lmhost serve` as a supervisor or container runs it: npm exec starts lmhost under `sh -c` and does
 * not pass SIGTERM on, so lmhost must notice that npm is gone and stop by itself (gracefully), instead of
 * running on as an orphan.
 */
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect, it } from "vitest";
import { repositoryRoot } from "../helpers/paths.js";

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

it(
  "stops lmhost within a few seconds when `npx lmhost serve` is sent SIGTERM",
  { timeout: 180_000 },
  async () => {
    const npx = path.join(path.dirname(process.execPath), "npx");
    const environment = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !name.startsWith("LMHOST_") && !name.startsWith("npm_")),
    );
    const child = spawn(
      npx,
      [
        "lmhost",
        "serve",
        "--port",
        "0",
        "--data-dir",
        mkdtempSync(path.join(tmpdir(), "lmhost-npx-data-")),
        "--models-dir",
        mkdtempSync(path.join(tmpdir(), "lmhost-npx-models-")),
        "--threads",
        "1",
      ],
      { cwd: repositoryRoot, env: environment, stdio: ["ignore", "pipe", "pipe"] },
    );
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    // 'close' fires once every holder of the pipes — npm, and lmhost which inherited them — has exited.
    const pipesClosed = new Promise<void>((resolve) => child.once("close", () => resolve()));
    let lmhostPid: number | undefined;
    try {
      const started = Date.now();
      while (lmhostPid === undefined) {
        const match = /listening on (http:\/\/\S+) \(pid (\d+)/.exec(output);
        if (match?.[2] !== undefined) lmhostPid = Number(match[2]);
        else if (child.exitCode !== null || Date.now() - started > 150_000)
          throw new Error(`npx lmhost serve did not start:\n${output}`);
        else await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const url = /listening on (http:\/\/\S+)/.exec(output)?.[1] ?? "";
      expect((await fetch(`${url}/health`)).status).toBe(200);
      expect(lmhostPid).not.toBe(child.pid);

      const signalled = Date.now();
      child.kill("SIGTERM");
      while (isAlive(lmhostPid) && Date.now() - signalled < 10_000) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const milliseconds = Date.now() - signalled;
      expect(
        isAlive(lmhostPid),
        `lmhost (pid ${lmhostPid}) still runs ${milliseconds} ms after npx got SIGTERM`,
      ).toBe(false);
      expect(milliseconds).toBeLessThan(5000);
      await pipesClosed;
      // It shut down gracefully, saying why.
      expect(output).toContain("the npm process that started lmhost has exited");
      expect(output).toContain("stopped");
      await expect(fetch(`${url}/health`)).rejects.toThrow();
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      if (lmhostPid !== undefined && isAlive(lmhostPid)) process.kill(lmhostPid, "SIGKILL");
    }
  },
);
