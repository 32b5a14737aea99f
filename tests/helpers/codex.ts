/**
 * Runs the real Codex CLI (`@openai/codex`, its native binary) as `codex exec --json` against an lmhost
 * base URL on loopback: a temporary CODEX_HOME whose config.toml points a `responses` provider at lmhost,
 * the run's JSON events parsed, the home removed afterwards. The caller owns the working directory.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { TEST_MODEL } from "./fast-app.js";
import { repositoryRoot } from "./paths.js";

export const codexBin = path.join(repositoryRoot, "node_modules/@openai/codex/bin/codex.js");

export interface CodexRun {
  code: number | null;
  events: Record<string, unknown>[];
  stderr: string;
}

export interface CodexOptions {
  baseUrl: string;
  prompt: string;
  /** The directory Codex works in (`-C`). */
  work: string;
  /** Extra config.toml lines before the provider table (e.g. `model_catalog_json = ...`); may use `home`. */
  configLines?: (home: string) => string[];
  /** Extra `codex exec` flags (e.g. `--skip-git-repo-check`). */
  flags?: string[];
}

export function runCodexExec(options: CodexOptions): Promise<CodexRun> {
  const home = mkdtempSync(path.join(tmpdir(), "lmhost-codex-home-"));
  writeFileSync(
    path.join(home, "config.toml"),
    [
      `model = "${TEST_MODEL}"`,
      `model_provider = "lmhost"`,
      ...(options.configLines?.(home) ?? []),
      `[model_providers.lmhost]`,
      `name = "lmhost"`,
      `base_url = "${options.baseUrl}/v1"`,
      `wire_api = "responses"`,
      `env_key = "LMHOST_CODEX_TEST_KEY"`,
      "",
    ].join("\n"),
  );
  const child = spawn(
    process.execPath,
    [
      codexBin,
      "exec",
      "--json",
      ...(options.flags ?? []),
      "--dangerously-bypass-approvals-and-sandbox",
      "-C",
      options.work,
      options.prompt,
    ],
    {
      env: {
        ...process.env,
        CODEX_HOME: home,
        LMHOST_CODEX_TEST_KEY: "local",
        NO_COLOR: "1",
        // Loopback only, whatever proxy the machine configures.
        NO_PROXY: "127.0.0.1,localhost",
        no_proxy: "127.0.0.1,localhost",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
  return new Promise((resolve) => {
    child.once("exit", (code) => {
      clearTimeout(timer);
      rmSync(home, { recursive: true, force: true });
      const events = stdout
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      resolve({ code, events, stderr });
    });
  });
}
