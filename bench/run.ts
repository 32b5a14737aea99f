/**
 * `npm run bench [-- --quick] [--only decode,threads,server,load,prompt-cache,legacy] [--scenarios one,stories,full,concurrency]
 *  [--vs-llama-server PATH]`
 *
 * Every figure of docs/PERFORMANCE.md in one invocation: progress lines as it runs, a table at the end
 * (median, min – max over rounds, target, verdict) and `bench/results/latest.json`. Machines here are
 * shared and noisy, so every ratio compares runs interleaved in this invocation, never a stored number.
 *
 * Modules: decode (bench/decode-bench.ts: the real binary vs node-llama-cpp alone, optional llama-server),
 * threads (bench/threads-bench.ts: 1 thread vs all cores by model size, behind the loader's thread rule;
 * not in --quick unless asked for with --only),
 * server (bench/server-path-bench.ts: conversation TTFT, added latency, chain rebuild, RSS; the 471M
 * conversation not in --quick), load
 * (bench/load-bench.ts: a newcomer's TTFT under load), prompt-cache (bench/prompt-cache-bench.ts when
 * present, exporting `runPromptCacheBench(options): Promise<Figure[]>`), legacy (the older engine,
 * 10-turn and truncation benches, not in the default set).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { physicalCores } from "../src/config.js";
import { runDecodeBench } from "./decode-bench.js";
import { figureOf, ratioOf, table, type BenchOptions, type Figure } from "./figures.js";
import { runLoadBench } from "./load-bench.js";
import { runServerPathBench } from "./server-path-bench.js";
import { runThreadsBench } from "./threads-bench.js";

const here = path.dirname(fileURLToPath(import.meta.url));

function argument(name: string): string | undefined {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

const quick = process.argv.includes("--quick");
const llamaServer = argument("vs-llama-server");
const only = argument("only")?.split(",");
const scenarios = argument("scenarios")?.split(",");
const wanted = (module: string, byDefault = true) => (only === undefined ? byDefault : only.includes(module));
const benchStarted = performance.now();
const log = (line: string) => {
  const seconds = ((performance.now() - benchStarted) / 1000).toFixed(0).padStart(4);
  process.stderr.write(`[${seconds}s] ${line}\n`);
};
const options: BenchOptions = { quick, log };

function loadAverage(): number[] {
  return os.loadavg().map((value) => Math.round(value * 100) / 100);
}

function machine(): Record<string, unknown> {
  const cpuinfo = existsSync("/proc/cpuinfo") ? readFileSync("/proc/cpuinfo", "utf8") : "";
  const nodeLlamaCpp = JSON.parse(
    readFileSync(path.resolve(here, "../node_modules/node-llama-cpp/package.json"), "utf8"),
  ) as { version: string };
  let commit = "";
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: here, encoding: "utf8" }).trim();
  } catch {
    // not a git checkout
  }
  return {
    cpus: os.cpus().length,
    physicalCores: physicalCores(),
    cpuModel: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    nodeLlamaCpp: nodeLlamaCpp.version,
    commit,
  };
}

/** The newest modification time under `directory` (files ending in `suffix`). */
function newest(directory: string, suffix: string): number {
  let latest = 0;
  for (const entry of readdirSync(directory, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith(suffix)) continue;
    latest = Math.max(latest, statSync(path.join(entry.parentPath, entry.name)).mtimeMs);
  }
  return latest;
}

// The decode figures run the real binary, which runs dist/: build it first when src/ is newer.
const distEntry = path.resolve(here, "../dist/cli/main.js");
if (!existsSync(distEntry) || newest(path.resolve(here, "../src"), ".ts") > statSync(distEntry).mtimeMs) {
  log("dist/ is older than src/: npm run build");
  execFileSync("npm", ["run", "build"], { cwd: path.resolve(here, ".."), stdio: "inherit" });
}

const figures: Figure[] = [];
const failures: string[] = [];
const loadBefore = loadAverage();
log(
  `lmhost bench${quick ? " (quick)" : ""}: ${JSON.stringify(machine())}, load average ${loadBefore.join(" ")}`,
);

async function module(name: string, run: () => Promise<Figure[]>): Promise<void> {
  try {
    const result = await run();
    figures.push(...result);
  } catch (error) {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    failures.push(`${name}: ${message}`);
    log(`${name} FAILED: ${message}`);
  }
}

if (wanted("decode"))
  await module("decode", () =>
    runDecodeBench({
      ...options,
      ...(llamaServer === undefined ? {} : { llamaServer }),
      ...(scenarios === undefined ? {} : { scenarios }),
    }),
  );
// Six model sizes at two thread counts take about a minute: full runs only, or `--only threads`.
if (wanted("threads", !quick)) await module("threads", () => runThreadsBench(options));
if (wanted("server")) await module("server", () => runServerPathBench(options));
if (wanted("load"))
  await module("load", async () => {
    log("load: a short request's TTFT, idle and while 3 long ones stream (stories260K-chatml, 4 sequences)");
    const result = await runLoadBench({ rounds: quick ? 3 : 7 });
    return [
      figureOf("ttft_idle_ms", result.idle, "ms"),
      figureOf("ttft_under_load_ms", result.loaded, "ms"),
      ratioOf("ttft_under_load_over_idle", result.loaded, result.idle, {
        target: { op: "<=", value: 2 },
        note: "a 4-token request while 3 long ones stream ÷ on an idle server",
      }),
    ];
  });
if (wanted("prompt-cache")) {
  // Provided by the prompt-cache work (issue 9 item 3); included when the file exists.
  const file = path.join(here, "prompt-cache-bench.ts");
  if (existsSync(file))
    await module("prompt-cache", async () => {
      const imported = (await import("./prompt-cache-bench.js" as string)) as {
        runPromptCacheBench?: (options: BenchOptions) => Promise<Figure[]>;
      };
      if (imported.runPromptCacheBench === undefined)
        throw new Error("bench/prompt-cache-bench.ts does not export runPromptCacheBench");
      log("prompt cache");
      return imported.runPromptCacheBench(options);
    });
}
if (wanted("legacy", false))
  await module("legacy", async () => {
    const { runEngineBench } = await import("./engine-bench.js");
    const { runResponsesBench, runTruncationBench } = await import("./responses-bench.js");
    const legacy = {
      ...(await runEngineBench()),
      ...(await runResponsesBench()),
      ...(await runTruncationBench()),
    };
    return Object.entries(legacy).map(([name, value]) => figureOf(`legacy.${name}`, [value], ""));
  });

const loadAfter = loadAverage();
const seconds = (performance.now() - benchStarted) / 1000;
console.log(
  `\nlmhost bench${quick ? " (quick)" : ""}: ${seconds.toFixed(0)} s, load average before ${loadBefore.join(" ")}, after ${loadAfter.join(" ")}`,
);
console.log(table(figures));
const notes = figures.filter((figure) => figure.note !== undefined);
if (notes.length > 0)
  console.log(`\n${notes.map((figure) => `  ${figure.name}: ${figure.note}`).join("\n")}`);
if (failures.length > 0)
  console.log(`\nFailed modules:\n${failures.map((line) => `  ${line.split("\n")[0]}`).join("\n")}`);

const resultsDir = path.join(here, "results");
mkdirSync(resultsDir, { recursive: true });
const result = {
  date: new Date().toISOString(),
  quick,
  seconds: Math.round(seconds),
  machine: machine(),
  loadAverage: { before: loadBefore, after: loadAfter },
  figures,
  failures,
};
writeFileSync(path.join(resultsDir, "latest.json"), `${JSON.stringify(result, null, 2)}\n`);
console.log(`\nwrote ${path.relative(process.cwd(), path.join(resultsDir, "latest.json"))}`);
if (failures.length > 0) process.exitCode = 1;
