/**
 * `lmhost get` / `pull` / `rm` as a user runs them (the real binary as a subprocess) against the Hugging
 * Face stand-in on loopback (HF_ENDPOINT): the default quantization of a repo, a named one, a file, URLs,
 * `--list`, the errors a user meets (404 repo, missing quantization, gated repo then `--token`, a file
 * that is not GGUF), a download interrupted with Ctrl-C that the next run resumes with a Range request,
 * and `rm`.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256, startHfStandIn, testRepositories, type HfStandIn } from "../helpers/hf-stand-in.js";
import { randomLlamaModel, storiesChatmlModel, storiesModel } from "../helpers/paths.js";
import { lmhostBin, runCli } from "../helpers/spawn-server.js";

const models = {
  stories: readFileSync(storiesModel),
  storiesChatml: readFileSync(storiesChatmlModel),
  randomLlama: readFileSync(randomLlamaModel),
};
const repositories = testRepositories(models);
let standIn: HfStandIn;
let hfHome: string;

beforeAll(async () => {
  standIn = await startHfStandIn(repositories);
  hfHome = mkdtempSync(path.join(tmpdir(), "lmhost-hf-home-"));
});
afterAll(async () => standIn.close());

function modelsDir(): string {
  return mkdtempSync(path.join(tmpdir(), "lmhost-get-"));
}

/** HF_HOME: an empty folder, so no token of the machine running the tests is used. */
function get(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runCli(args, { HF_ENDPOINT: standIn.url, HF_HOME: hfHome, ...env });
}

describe("lmhost get", () => {
  it("gets a repo's default quantization with progress, into <user>/<repo>/, and rm removes it", async () => {
    const folder = modelsDir();
    const result = await get(["get", "lmhost-test/stories-GGUF", "--models-dir", folder]);
    expect(result.stderr).not.toContain("lmhost:");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(
      "lmhost-test/stories-GGUF has 3 models: F16 (1.7 MB), Q4_K_M (1.1 MB), Q8_0 (1.1 MB)",
    );
    expect(result.stdout).toContain("getting stories-Q4_K_M.gguf (the default, Q4_K_M");
    // Not a terminal: plain progress lines on stderr, ending at 100 %.
    expect(result.stderr).toMatch(/stories-Q4_K_M\.gguf: 100% \(1\.1 MB of 1\.1 MB\)/);
    const saved = path.join(folder, "lmhost-test/stories-GGUF/stories-Q4_K_M.gguf");
    expect(result.stdout).toContain(`saved ${saved}`);
    expect(result.stdout).toContain("checking the SHA-256 the repository lists…");
    expect(result.stdout).toContain("SHA-256 matches, GGUF header checked: llama");
    expect(result.stdout).toContain("model id: lmhost-test/stories-GGUF");
    expect(sha256(readFileSync(saved))).toBe(sha256(models.storiesChatml));

    const removed = await runCli(["rm", "lmhost-test/stories-GGUF", "--models-dir", folder]);
    expect(removed.code).toBe(0);
    expect(removed.stdout).toContain(`removed lmhost-test/stories-GGUF (1.1 MB): ${saved}`);
    expect(readdirSync(folder)).toEqual([]);
    const missing = await runCli(["rm", "lmhost-test/stories-GGUF", "--models-dir", folder]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("lmhost: no model 'lmhost-test/stories-GGUF'");
  });

  it("takes repo:quant (as pull), a file with an hf: prefix and a plain URL", async () => {
    const folder = modelsDir();
    const quant = await get(["pull", "lmhost-test/stories-GGUF:q8_0", "--models-dir", folder]);
    expect(quant.code).toBe(0);
    expect(quant.stdout).toContain("getting stories-Q8_0.gguf (Q8_0 as asked)");
    const file = await get(["get", "hf:lmhost-test/noq4-GGUF/tiny-F16.gguf", "--models-dir", folder]);
    expect(file.code).toBe(0);
    // Any other host: a plain download, laid out as <host>/<file stem>/<file>.
    const plainUrl =
      standIn.url.replace("127.0.0.1", "localhost") + "cdn/lmhost-test/noq4-GGUF/tiny-Q8_0.gguf";
    const plain = await get(["get", plainUrl, "--models-dir", folder]);
    expect(plain.stderr).not.toContain("lmhost:");
    const expected: [string, Buffer][] = [
      ["lmhost-test/stories-GGUF/stories-Q8_0.gguf", models.stories],
      ["lmhost-test/noq4-GGUF/tiny-F16.gguf", models.randomLlama],
      ["localhost/tiny-Q8_0/tiny-Q8_0.gguf", models.stories],
    ];
    for (const [relative, data] of expected)
      expect(sha256(readFileSync(path.join(folder, relative))), relative).toBe(sha256(data));
  });

  it("checks a plain URL's file against --sha256: a wrong one deletes it, the right one keeps it", async () => {
    const folder = modelsDir();
    const plainUrl =
      standIn.url.replace("127.0.0.1", "localhost") + "cdn/lmhost-test/noq4-GGUF/tiny-Q8_0.gguf";
    const saved = path.join(folder, "localhost/tiny-Q8_0/tiny-Q8_0.gguf");
    const wrong = await get(["get", plainUrl, "--sha256", "0".repeat(64), "--models-dir", folder]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stdout).toContain("checking the SHA-256 given…");
    expect(wrong.stderr).toContain("does not match the SHA-256 given (--sha256)");
    expect(existsSync(saved)).toBe(false);
    const right = await get([
      "get",
      plainUrl,
      "--sha256",
      sha256(models.stories).toUpperCase(),
      "--models-dir",
      folder,
    ]);
    expect(right.stderr).not.toContain("lmhost:");
    expect(right.stdout).toContain("SHA-256 matches");
    expect(sha256(readFileSync(saved))).toBe(sha256(models.stories));
    // The file already there is checked too, and kept whatever the answer.
    const again = await get(["get", plainUrl, "--sha256", "f".repeat(64), "--models-dir", folder]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain("the file already at");
    expect(existsSync(saved)).toBe(true);
    // Not hexadecimal, or not a plain URL: refused before anything is fetched.
    const malformed = await get(["get", plainUrl, "--sha256", "xyz", "--models-dir", folder]);
    expect(malformed.stderr).toContain("--sha256 takes 64 hexadecimal digits");
    const repository = await get([
      "get",
      "lmhost-test/stories-GGUF",
      "--sha256",
      "0".repeat(64),
      "--models-dir",
      folder,
    ]);
    expect(repository.stderr).toContain("--sha256 is for a plain URL");
  });

  it("lists a repo's quantizations with --list", async () => {
    const result = await get(["get", "lmhost-test/stories-GGUF", "--list"]);
    expect(result.code).toBe(0);
    expect(result.stdout.trim().split("\n")).toEqual([
      expect.stringMatching(/^QUANT\s+SIZE\s+FILE$/),
      expect.stringMatching(/^F16\s+1\.7 MB\s+stories-F16\.gguf$/),
      expect.stringMatching(/^Q4_K_M\s+1\.1 MB\s+stories-Q4_K_M\.gguf$/),
      expect.stringMatching(/^Q8_0\s+1\.1 MB\s+stories-Q8_0\.gguf$/),
    ]);
  });

  it("explains a missing repo, a missing quantization, a gated repo (then --token works) and a file that is not GGUF", async () => {
    const folder = modelsDir();
    const notFound = await get(["get", "lmhost-test/nothing-GGUF", "--models-dir", folder]);
    expect(notFound.code).toBe(1);
    expect(notFound.stderr).toContain(`lmhost: no repository lmhost-test/nothing-GGUF on ${standIn.url}`);
    const noQuant = await get(["get", "lmhost-test/stories-GGUF:Q2_K", "--models-dir", folder]);
    expect(noQuant.code).toBe(1);
    expect(noQuant.stderr).toContain(
      "has no Q2_K file; available: F16 (1.7 MB), Q4_K_M (1.1 MB), Q8_0 (1.1 MB)",
    );

    const gated = await get(["get", "lmhost-test/gated-GGUF", "--models-dir", folder]);
    expect(gated.code).toBe(1);
    expect(gated.stderr).toContain("lmhost-test/gated-GGUF is gated or private");
    expect(gated.stderr).toContain("set HF_TOKEN (or pass --token)");
    const before = standIn.requests.length;
    const withToken = await get([
      "get",
      "lmhost-test/gated-GGUF",
      "--token",
      "hf_test_token",
      "--models-dir",
      folder,
    ]);
    expect(withToken.stderr).not.toContain("lmhost:");
    expect(withToken.code).toBe(0);
    expect(
      standIn.requests
        .slice(before)
        .some(
          (request) => request.path.includes("/resolve/") && request.authorization === "Bearer hf_test_token",
        ),
    ).toBe(true);
    expect(existsSync(path.join(folder, "lmhost-test/gated-GGUF/gated-Q4_K_M.gguf"))).toBe(true);

    const broken = await get(["get", "lmhost-test/broken-GGUF", "--models-dir", folder]);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain("broken-Q4_K_M.gguf is not a usable GGUF model (not a GGUF file");
    expect(broken.stderr).toContain("it was deleted");
    expect(existsSync(path.join(folder, "lmhost-test/broken-GGUF"))).toBe(false);
    expect(existsSync(path.join(folder, ".downloads"))).toBe(false);
  });

  it("resumes a download interrupted with Ctrl-C: the next run asks only for the missing bytes", async () => {
    const folder = modelsDir();
    const source = repositories["lmhost-test/big-GGUF"]?.files["big-Q4_K_M.gguf"] as Buffer;
    const chunk = 5 * 1024 * 1024;
    // The first run gets chunks 0 and 2; the middle one stalls after 1 MB.
    standIn.shapeBody = ({ path: filePath, start }) =>
      filePath.endsWith("/big-Q4_K_M.gguf") && start === chunk
        ? { afterBytes: 1024 * 1024, then: "hold" }
        : undefined;
    const child = spawn(
      process.execPath,
      [lmhostBin, "get", "lmhost-test/big-GGUF", "--models-dir", folder],
      {
        env: { ...process.env, HF_ENDPOINT: standIn.url, HF_HOME: hfHome, LMHOST_DATA_DIR: folder },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stderr = "";
    child.stderr.on("data", (data: Buffer) => (stderr += data.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("close", resolve));
    const partial = path.join(folder, ".downloads/lmhost-test/big-GGUF/big-Q4_K_M.gguf.ipull");
    // ipull records finished chunks as JSON after the file's bytes in its .ipull file.
    const finishedChunks = (): number[] => {
      try {
        const state = JSON.parse(readFileSync(partial).subarray(source.length).toString()) as {
          chunks: number[];
        };
        return state.chunks.flatMap((status, index) => (status === 2 ? [index] : []));
      } catch {
        return [];
      }
    };
    for (let waited = 0; finishedChunks().length < 2 && waited < 30_000; waited += 100)
      await new Promise((resolve) => setTimeout(resolve, 100));
    expect(finishedChunks()).toEqual([0, 2]);
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    expect(stderr).toContain("download interrupted; the partial file is kept");
    expect(existsSync(partial)).toBe(true);
    delete standIn.shapeBody;

    const before = standIn.requests.length;
    const second = await get(["get", "lmhost-test/big-GGUF", "--models-dir", folder]);
    expect(second.stderr).not.toContain("lmhost:");
    expect(second.code).toBe(0);
    expect(second.stdout).toContain("resumed where an earlier attempt stopped");
    const ranges = standIn.requests
      .slice(before)
      .filter((request) => request.path.endsWith("/big-Q4_K_M.gguf") && request.range !== undefined)
      .map((request) => request.range);
    expect(ranges).toEqual([`bytes=${chunk}-${2 * chunk - 1}`]);
    expect(sha256(readFileSync(path.join(folder, "lmhost-test/big-GGUF/big-Q4_K_M.gguf")))).toBe(
      sha256(source),
    );
    expect(existsSync(path.join(folder, ".downloads"))).toBe(false);
  });
});

describe("lmhost rm", () => {
  it("refuses a model outside the models folder", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "lmhost-rm-data-"));
    const outside = path.join(mkdtempSync(path.join(tmpdir(), "lmhost-rm-outside-")), "mine.gguf");
    writeFileSync(outside, models.stories);
    writeFileSync(path.join(dataDir, "config.json"), JSON.stringify({ models: [outside] }));
    mkdirSync(path.join(dataDir, "models"));
    const result = await runCli(["rm", "mine", "--data-dir", dataDir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`'mine' is ${outside}, outside the models directory`);
    expect(existsSync(outside)).toBe(true);
  });
});
