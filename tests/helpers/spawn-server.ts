/** Runs the real `lmhost` binary (bin/lmhost.js → dist/) as a child process, for CLI and socket tests. */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { repositoryRoot } from "./paths.js";

export const lmhostBin = path.join(repositoryRoot, "bin/lmhost.js");

/**
 * The environment children run with: this process's, minus any LMHOST_* setting of the machine running
 * the tests (an API key or port there would change every answer), with a fresh data dir so no
 * ~/.lmhost/config.json is read.
 */
function childEnvironment(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("LMHOST_")));
  return { ...env, LMHOST_DATA_DIR: mkdtempSync(path.join(tmpdir(), "lmhost-cli-")), ...extra };
}

export interface SpawnedServer {
  url: string;
  port: number;
  dataDir: string;
  child: ChildProcess;
  output: () => string;
  /** Sends a signal and resolves with the exit code and how long the exit took. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; milliseconds: number }>;
}

export async function spawnServer(
  args: string[],
  options: {
    dataDir?: string;
    env?: NodeJS.ProcessEnv;
    /** An installed `lmhost` executable to run instead of this checkout's bin/lmhost.js. */
    executable?: string;
    cwd?: string;
  } = {},
): Promise<SpawnedServer> {
  const dataDir = options.dataDir ?? mkdtempSync(path.join(tmpdir(), "lmhost-data-"));
  const [command, ...prefix] =
    options.executable === undefined ? [process.execPath, lmhostBin] : [options.executable];
  const child = spawn(
    command as string,
    [
      ...prefix,
      "serve",
      "--port",
      "0",
      "--data-dir",
      dataDir,
      "--threads",
      "1",
      "--log-level",
      "info",
      ...args,
    ],
    {
      env: childEnvironment(options.env),
      stdio: ["ignore", "pipe", "pipe"],
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    },
  );
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  // 'close', not 'exit': by then all of the child's output has been read.
  const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server did not start:\n${output}`));
    }, 30_000);
    const check = () => {
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stderr?.on("data", check);
    child.stdout?.on("data", check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${output}`));
    });
  });
  return {
    url,
    port: Number(new URL(url).port),
    dataDir,
    child,
    output: () => output,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      const started = Date.now();
      if (child.exitCode === null) child.kill(signal);
      const code = await exited;
      return { code, milliseconds: Date.now() - started };
    },
  };
}

/** Runs `lmhost <args>` to completion. */
export function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [lmhostBin, ...args], {
      env: childEnvironment(env),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}
