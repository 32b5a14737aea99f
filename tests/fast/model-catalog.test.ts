/**
 * Model discovery over a temporary models directory in LM Studio's layout, built from copies of the
 * shared test models: ids, skipped files, GGUF metadata, broken files, `--model` files, overrides and
 * the metadata cache.
 */
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelCatalog } from "../../src/models/catalog.js";
import { quantizationFromFileName, readGgufMetadata } from "../../src/models/gguf-metadata.js";
import type { ModelEntry } from "../../src/models/types.js";
import { randomLlamaModel, storiesChatmlModel, storiesModel } from "../helpers/paths.js";

const STORIES_BYTES = 1_185_376;
const STORIES_PARAMETERS = 292_800;

let temporaryRoot: string;
let modelsDir: string;
/** One listing of the directory (no --model files), shared by the tests that only read it. */
let directoryEntries: ModelEntry[];

async function place(source: string, relativePath: string): Promise<string> {
  const target = path.join(modelsDir, relativePath);
  await mkdir(path.dirname(target), { recursive: true });
  await copyFile(source, target);
  return target;
}

async function placeBytes(relativePath: string, bytes: Buffer): Promise<string> {
  const target = path.join(modelsDir, relativePath);
  await mkdir(path.dirname(target), { recursive: true });
  await writeFile(target, bytes);
  return target;
}

function byId(entries: ModelEntry[], id: string): ModelEntry {
  const entry = entries.find((candidate) => candidate.id === id);
  if (entry === undefined) throw new Error(`no entry ${id} in ${entries.map((each) => each.id).join(", ")}`);
  return entry;
}

beforeAll(async () => {
  temporaryRoot = await mkdtemp(path.join(tmpdir(), "lmhost-catalog-"));
  modelsDir = path.join(temporaryRoot, "models");
  await place(storiesModel, "karpathy/stories260K/stories260K.gguf");
  await place(storiesModel, "karpathy/stories260K/mmproj-stories260K-F16.gguf");
  await place(storiesChatmlModel, "karpathy/stories260K-chatml/stories260K-chatml.gguf");
  await place(randomLlamaModel, "meta/tiny-random/llama-2-tiny-random-Q8_0.gguf");
  await place(randomLlamaModel, "meta/tiny-random/llama-2-tiny-random-F16.gguf");
  await place(storiesModel, "local-lab/variants/alpha.gguf");
  await place(storiesModel, "local-lab/variants/beta.gguf");
  await place(storiesModel, "local-lab/loose.gguf");
  await place(storiesModel, "split/big/big-Q4_K_M-00001-of-00002.gguf");
  await place(storiesModel, "split/big/big-Q4_K_M-00002-of-00002.gguf");
  await place(storiesModel, "top.gguf");
  await place(storiesModel, ".hidden/model/hidden.gguf");
  await placeBytes("broken/junk/junk.gguf", randomBytes(64 * 1024));
  await placeBytes("karpathy/stories260K/README.md", Buffer.from("not a model"));
  directoryEntries = await new ModelCatalog({ modelsDir }).list();
}, 30_000);

afterAll(async () => {
  await rm(temporaryRoot, { recursive: true, force: true });
});

describe("ModelCatalog ids", () => {
  it("lists the LM Studio layout with stable, unique ids and skips non-models", () => {
    const entries = directoryEntries;
    expect(entries.map((entry) => entry.id)).toEqual([
      "broken/junk",
      "karpathy/stories260K",
      "karpathy/stories260K-chatml",
      "local-lab/loose",
      "local-lab/variants@alpha",
      "local-lab/variants@beta",
      "meta/tiny-random@f16",
      "meta/tiny-random@q8_0",
      "split/big",
      "top",
    ]);
    expect(byId(entries, "karpathy/stories260K").publisher).toBe("karpathy");
    expect(byId(entries, "top").publisher).toBe("local");
    expect(byId(entries, "top").path).toBe(path.join(modelsDir, "top.gguf"));
  });

  it("lists a split model once, under its first part, with the size of all parts", () => {
    const entries = directoryEntries;
    const split = byId(entries, "split/big");
    expect(split.path).toBe(path.join(modelsDir, "split/big/big-Q4_K_M-00001-of-00002.gguf"));
    expect(split.sizeBytes).toBe(2 * STORIES_BYTES);
  });

  it("treats a missing models directory as empty", async () => {
    const catalog = new ModelCatalog({ modelsDir: path.join(temporaryRoot, "does-not-exist") });
    expect(await catalog.list()).toEqual([]);
    expect(await new ModelCatalog().list()).toEqual([]);
  });
});

describe("ModelCatalog metadata", () => {
  it("reads GGUF metadata without loading the model", () => {
    const entries = directoryEntries;
    expect(byId(entries, "karpathy/stories260K")).toEqual({
      id: "karpathy/stories260K",
      path: path.join(modelsDir, "karpathy/stories260K/stories260K.gguf"),
      sizeBytes: STORIES_BYTES,
      publisher: "karpathy",
      architecture: "llama",
      parameterCount: STORIES_PARAMETERS,
      quantization: "F32",
      contextLength: 2048,
      hasChatTemplate: false,
    });
    expect(byId(entries, "karpathy/stories260K-chatml")).toMatchObject({
      architecture: "llama",
      contextLength: 2048,
      hasChatTemplate: true,
    });
    expect(byId(entries, "meta/tiny-random@q8_0")).toMatchObject({
      architecture: "llama",
      quantization: "F16", // the file type in the header wins over the (made-up) name
      contextLength: 4096,
      hasChatTemplate: false,
    });
  });

  it("lists a broken file with an error and keeps the others healthy", () => {
    const entries = directoryEntries;
    const broken = byId(entries, "broken/junk");
    expect(broken.error).toMatch(/not a GGUF file/);
    expect(broken.architecture).toBeUndefined();
    expect(broken.sizeBytes).toBe(64 * 1024);
    const healthy = entries.filter((entry) => entry.id !== "broken/junk");
    expect(healthy.every((entry) => entry.error === undefined && entry.architecture === "llama")).toBe(true);
  });

  it("re-reads metadata only when a file's size or mtime changes", async () => {
    const target = await place(storiesModel, "cache-test/model/model.gguf");
    const modifiedSeconds = 1_700_000_000; // whole seconds survive utimes() exactly
    await utimes(target, modifiedSeconds, modifiedSeconds);
    const catalog = new ModelCatalog({ modelsDir });
    expect(byId(await catalog.list(), "cache-test/model").error).toBeUndefined();

    // Same size and mtime: the cached (good) metadata is still served.
    await writeFile(target, randomBytes(STORIES_BYTES));
    await utimes(target, modifiedSeconds, modifiedSeconds);
    expect(byId(await catalog.list(), "cache-test/model").error).toBeUndefined();

    // A new mtime invalidates it.
    await utimes(target, modifiedSeconds, modifiedSeconds + 5);
    expect(byId(await catalog.list(), "cache-test/model").error).toMatch(/not a GGUF file/);
    await rm(path.join(modelsDir, "cache-test"), { recursive: true });
  });
});

describe("ModelCatalog --model files and overrides", () => {
  it("adds --model files with ids from the file stem, deduplicated, with the --model chat template", async () => {
    const elsewhere = path.join(temporaryRoot, "elsewhere");
    await mkdir(elsewhere, { recursive: true });
    await copyFile(storiesModel, path.join(elsewhere, "top.gguf"));
    const catalog = new ModelCatalog({
      modelsDir,
      files: [
        storiesModel,
        path.join(elsewhere, "top.gguf"),
        storiesModel,
        path.join(elsewhere, "missing.gguf"),
      ],
      chatTemplate: "chatml",
    });
    const entries = await catalog.list();
    const commandLine = entries.slice(-3);
    expect(commandLine.map((entry) => entry.id)).toEqual(["stories260K", "top-2", "missing"]);
    expect(commandLine.map((entry) => entry.publisher)).toEqual(["local", "local", "local"]);
    expect(byId(entries, "stories260K")).toMatchObject({ chatTemplate: "chatml", architecture: "llama" });
    expect(byId(entries, "missing")).toMatchObject({ error: "file not found", sizeBytes: 0 });
    // The --model template does not apply to directory models.
    expect(byId(entries, "top").chatTemplate).toBeUndefined();
  });

  it("applies per-model overrides by id", async () => {
    const catalog = new ModelCatalog({
      modelsDir,
      files: [storiesModel],
      chatTemplate: "chatml",
      overrides: {
        "karpathy/stories260K": { chatTemplate: "llama2", contextLength: 512 },
        stories260K: { chatTemplate: "general" },
      },
    });
    const entries = await catalog.list();
    expect(byId(entries, "karpathy/stories260K")).toMatchObject({
      chatTemplate: "llama2",
      contextLength: 512,
    });
    expect(byId(entries, "stories260K")).toMatchObject({ chatTemplate: "general", contextLength: 2048 });
  });

  it("merges a model's reasoning budgets over the server's (config.json reasoningBudgets)", async () => {
    const catalog = new ModelCatalog({
      files: [storiesModel],
      reasoningBudgets: { low: 8, high: 32 },
      overrides: { stories260K: { reasoningBudgets: { high: null, medium: 16 } } },
    });
    const [stories] = await catalog.list();
    expect(stories?.reasoningBudgets).toEqual({ low: 8, high: null, medium: 16 });
    const plain = await new ModelCatalog({ files: [storiesModel] }).list();
    expect(plain[0]?.reasoningBudgets).toBeUndefined();
  });
});

describe("GGUF metadata helpers", () => {
  it.each([
    ["Qwen3-8B-Q4_K_M", "Q4_K_M"],
    ["model.IQ2_XXS", "IQ2_XXS"],
    ["gemma-3-1b-it-BF16", "BF16"],
    ["llama-2-7b.q8_0", "Q8_0"],
    ["Qwen3-30B-A3B-UD-Q4_K_XL", "Q4_K_XL"],
    ["gpt-oss-20b-MXFP4", "MXFP4"],
    ["phi-F16-Q6_K", "Q6_K"],
    ["stories260K", undefined],
    ["notQ4_K_M", undefined],
  ])("quantizationFromFileName(%s) is %s", (stem, expected) => {
    expect(quantizationFromFileName(stem)).toBe(expected);
  });

  it("names a --model file that is not .gguf by its whole file name, with an error", async () => {
    const notModel = path.join(temporaryRoot, "README.md");
    await writeFile(notModel, "# not a model");
    const [entry] = await new ModelCatalog({ files: [notModel] }).list();
    expect(entry?.id).toBe("README.md");
    expect(entry?.error).toMatch(/not a GGUF file/);
  });

  it("reports a truncated or missing file as an error instead of throwing", async () => {
    const truncated = path.join(temporaryRoot, "truncated.gguf");
    await writeFile(truncated, (await readFile(storiesModel)).subarray(0, 1000));
    expect(await readGgufMetadata(truncated)).toEqual({ error: expect.stringMatching(/invalid GGUF file/) });
    expect(await readGgufMetadata(path.join(temporaryRoot, "absent.gguf"))).toEqual({
      error: "file not found",
    });
  });
});
