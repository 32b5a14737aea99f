/**
 * `npx lmhost serve` (and `npm start`) as a supervisor or container runs it: npm starts lmhost under
 * `sh -c` and SIGTERM reaches only npm and the shell, so lmhost must notice that npm is gone and stop by
 * itself (gracefully), instead of running on as an orphan. Started without npm, it must not.
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

const serveArguments = () => [
  "--port",
  "0",
  "--data-dir",
  mkdtempSync(path.join(tmpdir(), "lmhost-npx-data-")),
  "--models-dir",
  mkdtempSync(path.join(tmpdir(), "lmhost-npx-models-")),
  "--threads",
  "1",
];

it.each([
  ["npx lmhost serve", "npx", ["lmhost", "serve"]],
  ["npm start --", "npm", ["start", "--"]],
])(
  "stops lmhost within a few seconds when `%s` is sent SIGTERM",
  { timeout: 180_000 },
  async (_name, command, commandArguments) => {
    const environment = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !name.startsWith("LMHOST_") && !name.startsWith("npm_")),
    );
    const child = spawn(
      path.join(path.dirname(process.execPath), command),
      [...commandArguments, ...serveArguments()],
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
        const match = /listening on http:\/\/\S+ \(pid (\d+)/.exec(output);
        if (match?.[1] !== undefined) lmhostPid = Number(match[1]);
        else if (child.exitCode !== null || Date.now() - started > 150_000)
          throw new Error(`${command} did not start lmhost:\n${output}`);
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
        `lmhost (pid ${lmhostPid}) still runs ${milliseconds} ms after npm got SIGTERM`,
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

it("leaves a plain `node bin/lmhost.js serve` running when its parent exits (nohup users expect that)", async () => {
  const environment = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("LMHOST_") && !name.startsWith("npm_")),
  );
  const quoted = [process.execPath, path.join(repositoryRoot, "bin/lmhost.js"), "serve", ...serveArguments()]
    .map((part) => `'${part}'`)
    .join(" ");
  // `; true` keeps the shell as lmhost's parent, as a login shell or a script would be.
  const shell = spawn("sh", ["-c", `${quoted}; true`], {
    env: environment,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  shell.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  shell.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  let lmhostPid: number | undefined;
  try {
    const started = Date.now();
    while (lmhostPid === undefined) {
      const match = /listening on http:\/\/\S+ \(pid (\d+)/.exec(output);
      if (match?.[1] !== undefined) lmhostPid = Number(match[1]);
      else if (Date.now() - started > 60_000) throw new Error(`lmhost did not start:\n${output}`);
      else await new Promise((resolve) => setTimeout(resolve, 100));
    }
    shell.kill("SIGKILL");
    // Well past the parent watch's 500 ms interval.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    expect(isAlive(lmhostPid)).toBe(true);
    expect(output).not.toContain("has exited");
  } finally {
    if (shell.exitCode === null) shell.kill("SIGKILL");
    if (lmhostPid !== undefined && isAlive(lmhostPid)) process.kill(lmhostPid, "SIGKILL");
  }
});
