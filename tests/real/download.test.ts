/**
 * The download core (src/models/download/) against the Hugging Face stand-in on loopback, in-process:
 * what a repo resolves to, clear errors for a missing repo or quantization, a gated repo and no network,
 * every part of a split model, the GGUF check that refuses and deletes a file that is not a model, a connection dropped midway that is
 * resumed by a Range request in the same run, a second `get` of a file already there, and the server's
 * download jobs (one job per file, stopped by a shutdown).
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planDownload, runDownload, STAGING_DIR_NAME } from "../../src/models/download/download.js";
import { DownloadJobs } from "../../src/models/download/jobs.js";
import { removeModel } from "../../src/models/remove.js";
import { sha256, startHfStandIn, testRepositories, type HfStandIn } from "../helpers/hf-stand-in.js";
import { lmhostBin } from "../helpers/spawn-server.js";
import { randomLlamaModel, storiesChatmlModel, storiesModel } from "../helpers/paths.js";

const models = {
  stories: readFileSync(storiesModel),
  storiesChatml: readFileSync(storiesChatmlModel),
  randomLlama: readFileSync(randomLlamaModel),
};
let standIn: HfStandIn;
let environment: NodeJS.ProcessEnv;

beforeAll(async () => {
  standIn = await startHfStandIn(testRepositories(models));
  // No token from the machine running the tests: HF_HOME points at an empty folder.
  environment = { HF_ENDPOINT: standIn.url, HF_HOME: await mkdtemp(path.join(tmpdir(), "lmhost-hf-home-")) };
});
afterAll(async () => standIn.close());

async function context() {
  return { modelsDir: await mkdtemp(path.join(tmpdir(), "lmhost-dl-")), environment };
}

describe("resolving what to download", () => {
  it("picks the default quantization of a repo and lays the file out as <user>/<repo>/<file>", async () => {
    const ctx = await context();
    const plan = await planDownload("lmhost-test/stories-GGUF", ctx);
    expect(plan.chosen?.choice.path).toBe("stories-Q4_K_M.gguf");
    expect(plan.choices?.map((choice) => choice.quantization)).toEqual(["F16", "Q4_K_M", "Q8_0"]);
    expect(plan.destinationDir).toBe(path.join(ctx.modelsDir, "lmhost-test", "stories-GGUF"));
    expect(plan.sizeBytes).toBe(models.storiesChatml.length);
    // A Hugging Face URL (here the HF_ENDPOINT host's) is a file of a repo, laid out the same way.
    const fromUrl = await planDownload(
      `${standIn.url}lmhost-test/stories-GGUF/resolve/main/stories-F16.gguf`,
      ctx,
    );
    expect(fromUrl.uri).toBe("hf:lmhost-test/stories-GGUF/stories-F16.gguf");
    expect(fromUrl.destinationDir).toBe(plan.destinationDir);
    const other = await planDownload("lmhost-test/noq4-GGUF", ctx);
    expect(other.chosen?.choice.path).toBe("tiny-Q8_0.gguf");
    expect(other.chosen?.reason).toContain("no Q4_K_M");
  });

  it("says what is wrong: a missing repo, quantization or file, a gated repo, no network", async () => {
    const ctx = await context();
    await expect(planDownload("lmhost-test/nothing-GGUF", ctx)).rejects.toMatchObject({
      status: 404,
      message: expect.stringContaining("no repository lmhost-test/nothing-GGUF"),
    });
    await expect(planDownload("lmhost-test/stories-GGUF:Q2_K", ctx)).rejects.toMatchObject({
      status: 404,
      message: expect.stringMatching(/has no Q2_K file; available: F16 .*Q4_K_M .*Q8_0/),
    });
    await expect(planDownload("lmhost-test/stories-GGUF/nope.gguf", ctx)).rejects.toMatchObject({
      status: 404,
      message: expect.stringContaining("has no file nope.gguf"),
    });
    await expect(planDownload("lmhost-test/gated-GGUF", ctx)).rejects.toMatchObject({
      status: 401,
      message: expect.stringContaining("set HF_TOKEN"),
    });
    await expect(planDownload("lmhost-test/gated-GGUF", { ...ctx, token: "hf_wrong" })).rejects.toMatchObject(
      {
        status: 401,
        message: expect.stringContaining("refused the token from --token"),
      },
    );
    const closedPort = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    await expect(
      planDownload("user/repo", {
        ...ctx,
        environment: { ...environment, HF_ENDPOINT: `http://127.0.0.1:${closedPort}` },
      }),
    ).rejects.toMatchObject({
      status: 502,
      message: expect.stringMatching(/cannot reach 127\.0\.0\.1:\d+.*ECONNREFUSED/),
    });
  });
});

describe("downloading", () => {
  it("downloads the chosen file byte for byte, and a second run finds it there", async () => {
    const ctx = await context();
    const result = await runDownload(await planDownload("lmhost-test/stories-GGUF:Q8_0", ctx), ctx);
    expect(result.path).toBe(path.join(ctx.modelsDir, "lmhost-test/stories-GGUF/stories-Q8_0.gguf"));
    expect(sha256(readFileSync(result.path))).toBe(sha256(models.stories));
    expect(result.id).toBe("lmhost-test/stories-GGUF");
    expect(result.alreadyPresent).toBe(false);
    // Checked against the listing's LFS SHA-256.
    expect(result.verified).toBe(true);
    // Nothing is left in the staging folder.
    expect(readdirSync(ctx.modelsDir)).toEqual(["lmhost-test"]);
    const again = await runDownload(await planDownload("lmhost-test/stories-GGUF:Q8_0", ctx), ctx);
    expect(again.alreadyPresent).toBe(true);
    // A second quantization beside it: ids get the quantization suffix.
    const second = await runDownload(await planDownload("lmhost-test/stories-GGUF", ctx), ctx);
    expect(second.id).toBe("lmhost-test/stories-GGUF@q4_k_m");
  });

  it("downloads every part of a split model beside each other under their own names; rm removes them all", async () => {
    const ctx = await context();
    const plan = await planDownload("lmhost-test/split-GGUF:Q8_0", ctx);
    expect(plan.fileNames).toEqual(["split-Q8_0-00001-of-00002.gguf", "split-Q8_0-00002-of-00002.gguf"]);
    expect(plan.sizeBytes).toBe(models.stories.length + models.storiesChatml.length);
    const result = await runDownload(plan, ctx);
    const folder = path.join(ctx.modelsDir, "lmhost-test/split-GGUF");
    expect(result.path).toBe(path.join(folder, "split-Q8_0-00001-of-00002.gguf"));
    expect(sha256(readFileSync(path.join(folder, "split-Q8_0-00001-of-00002.gguf")))).toBe(
      sha256(models.stories),
    );
    expect(sha256(readFileSync(path.join(folder, "split-Q8_0-00002-of-00002.gguf")))).toBe(
      sha256(models.storiesChatml),
    );
    const removed = await removeModel(ctx.modelsDir, result.id);
    expect(removed.files).toHaveLength(2);
    expect(readdirSync(ctx.modelsDir)).toEqual([]);
  });

  it("refuses a file that is not GGUF and keeps nothing of it", async () => {
    const ctx = await context();
    const plan = await planDownload("lmhost-test/broken-GGUF", ctx);
    await expect(runDownload(plan, ctx)).rejects.toMatchObject({
      status: 422,
      message: expect.stringMatching(
        /broken-Q4_K_M\.gguf is not a usable GGUF model \(not a GGUF file.*\); it was deleted/,
      ),
    });
    expect(existsSync(path.join(ctx.modelsDir, "lmhost-test"))).toBe(false);
    expect(existsSync(path.join(ctx.modelsDir, STAGING_DIR_NAME))).toBe(false);
    expect(readdirSync(ctx.modelsDir)).toEqual([]);
  });

  it("deletes a file whose bytes do not match the repository's SHA-256, and the next run gets it right", async () => {
    const ctx = await context();
    let corrupted = false;
    standIn.shapeBody = ({ path: filePath }) => {
      if (corrupted || !filePath.endsWith("/stories-Q8_0.gguf")) return undefined;
      corrupted = true;
      // Past the GGUF header: the header check alone would pass this file.
      return { afterBytes: 200_000, then: "corrupt" };
    };
    const plan = await planDownload("lmhost-test/stories-GGUF:Q8_0", ctx);
    let verifying = 0;
    try {
      await expect(runDownload(plan, { ...ctx, onVerifying: () => verifying++ })).rejects.toMatchObject({
        status: 502,
        code: "checksum_mismatch",
        message: expect.stringMatching(
          new RegExp(
            `stories-Q8_0\\.gguf does not match the repository's SHA-256 \\(expected ${sha256(models.stories)}, got [0-9a-f]{64}\\); it was deleted`,
          ),
        ),
      });
    } finally {
      delete standIn.shapeBody;
    }
    expect(corrupted).toBe(true);
    expect(verifying).toBe(1);
    // Nothing of it stays, so the next run cannot resume from the bad bytes.
    expect(readdirSync(ctx.modelsDir)).toEqual([]);
    const again = await runDownload(plan, ctx);
    expect(again.verified).toBe(true);
    expect(sha256(readFileSync(again.path))).toBe(sha256(models.stories));
  });

  it("resumes a connection dropped midway with a Range request and ends with the same bytes", async () => {
    const ctx = await context();
    const before = standIn.requests.length;
    standIn.shapeBody = ({ path: filePath, count }) =>
      filePath.endsWith("/stories-F16.gguf") && count === 0
        ? { afterBytes: 300_000, then: "drop" }
        : undefined;
    try {
      const result = await runDownload(await planDownload("lmhost-test/stories-GGUF:F16", ctx), ctx);
      expect(sha256(readFileSync(result.path))).toBe(sha256(models.randomLlama));
    } finally {
      delete standIn.shapeBody;
    }
    const ranged = standIn.requests
      .slice(before)
      .filter((request) => request.path.endsWith("/stories-F16.gguf") && request.range !== undefined);
    expect(ranged.length).toBeGreaterThanOrEqual(2);
    expect(ranged.every((request) => request.range?.startsWith("bytes="))).toBe(true);
  });
});

describe("one writer per file across processes", () => {
  it("refuses a second download of a file `lmhost get` is writing, then takes over once that process is killed", async () => {
    const ctx = await context();
    const staging = path.join(ctx.modelsDir, STAGING_DIR_NAME, "lmhost-test/stories-GGUF");
    const lockFile = path.join(staging, "stories-F16.gguf.lmhost-lock");
    // The CLI's first connection stalls after 100 kB: it holds the lock while the test tries.
    let held = false;
    standIn.shapeBody = ({ path: filePath }) => {
      if (held || !filePath.endsWith("/stories-F16.gguf")) return undefined;
      held = true;
      return { afterBytes: 100_000, then: "hold" };
    };
    const before = standIn.requests.length;
    const cli = spawn(
      process.execPath,
      [lmhostBin, "get", "lmhost-test/stories-GGUF:F16", "--models-dir", ctx.modelsDir],
      { env: { ...process.env, ...environment }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let output = "";
    cli.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    cli.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<void>((resolve) => cli.once("exit", () => resolve()));
    try {
      // Wait until the CLI holds the lock and its stalled body has started.
      for (
        let waited = 0;
        !(existsSync(lockFile) && standIn.requests.slice(before).some((r) => r.range !== undefined));
        waited += 50
      ) {
        if (waited > 30_000 || cli.exitCode !== null) throw new Error(`lmhost get did not start: ${output}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const plan = await planDownload("lmhost-test/stories-GGUF:F16", ctx);
      await expect(runDownload(plan, ctx)).rejects.toMatchObject({
        status: 409,
        code: "download_in_progress",
        message: expect.stringContaining(`being downloaded by process ${cli.pid}`),
      });
      // The refused attempt left the holder's lock alone and wrote no model.
      expect(JSON.parse(readFileSync(lockFile, "utf8"))).toMatchObject({ pid: cli.pid });
      expect(existsSync(path.join(ctx.modelsDir, "lmhost-test"))).toBe(false);

      // Killed mid-download (no cleanup runs): its lock names a process that is gone, and is taken over.
      cli.kill("SIGKILL");
      await exited;
      expect(existsSync(lockFile)).toBe(true);
      const result = await runDownload(plan, ctx);
      expect(sha256(readFileSync(result.path))).toBe(sha256(models.randomLlama));
      expect(existsSync(lockFile)).toBe(false);
      expect(readdirSync(ctx.modelsDir)).toEqual(["lmhost-test"]);
    } finally {
      delete standIn.shapeBody;
      if (cli.exitCode === null && cli.signalCode === null) {
        cli.kill("SIGKILL");
        await exited;
      }
    }
  });
});

describe("server download jobs", () => {
  it("gives two names of the same file one job, and a shutdown stops it keeping the partial file", async () => {
    const ctx = await context();
    const shutdown = new AbortController();
    const jobs = new DownloadJobs({ modelsDir: ctx.modelsDir, environment, signal: shutdown.signal });
    standIn.shapeBody = ({ path: filePath }) =>
      filePath.endsWith("/stories-F16.gguf") ? { afterBytes: 100_000, then: "hold" } : undefined;
    try {
      const first = await jobs.start("lmhost-test/stories-GGUF:F16");
      const second = await jobs.start("lmhost-test/stories-GGUF/stories-F16.gguf");
      expect(second.id).toBe(first.id);
      expect(first).toMatchObject({ status: "downloading", totalBytes: models.randomLlama.length });
      shutdown.abort(new Error("shutting down"));
      let job = jobs.get(first.id);
      for (let waited = 0; job?.status === "downloading" && waited < 10_000; waited += 50) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        job = jobs.get(first.id);
      }
      expect(job?.status).toBe("failed");
      expect(existsSync(path.join(ctx.modelsDir, STAGING_DIR_NAME, "lmhost-test/stories-GGUF"))).toBe(true);
      expect(existsSync(path.join(ctx.modelsDir, "lmhost-test"))).toBe(false);
    } finally {
      delete standIn.shapeBody;
    }
  });
});
