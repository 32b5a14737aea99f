/**
 * What `lmhost get` accepts and which file of a repository it picks: the reference parser (repos,
 * quantizations, files, `hf:` prefixes, Hugging Face and other URLs, bad input) and the quantization
 * choice (Q4_K_M by default, the nearest otherwise, a named one, split models counted once).
 */
import { describe, expect, it } from "vitest";
import { chooseModel, modelChoices } from "../../src/models/download/choose.js";
import { DownloadError } from "../../src/models/download/errors.js";
import { parseModelReference } from "../../src/models/download/reference.js";

describe("parseModelReference", () => {
  it("refuses a malformed percent-escape and a branch that walks the endpoint's paths, as 400s", () => {
    for (const reference of [
      "https://huggingface.co/%E0/x",
      "hf:user/repo/f.gguf#../../../api/whatever",
      "user/repo#main/..",
      "https://huggingface.co/user/repo/resolve/a%2F..%2F..%2Fx/m.gguf",
    ]) {
      let thrown: unknown;
      try {
        parseModelReference(reference);
      } catch (error) {
        thrown = error;
      }
      expect(thrown, reference).toBeInstanceOf(DownloadError);
      expect((thrown as DownloadError).status, reference).toBe(400);
    }
    expect(parseModelReference("user/repo#refs/pr/1")).toMatchObject({ kind: "repo", branch: "refs/pr/1" });
  });

  it("reads repos, quantizations, files and branches, with or without an hf: prefix", () => {
    expect(parseModelReference("bartowski/Qwen_Qwen3-8B-GGUF")).toEqual({
      kind: "repo",
      user: "bartowski",
      repo: "Qwen_Qwen3-8B-GGUF",
      branch: "main",
    });
    expect(parseModelReference("hf:user/repo:q8_0")).toMatchObject({ kind: "repo", quantization: "q8_0" });
    expect(parseModelReference("hf://user/repo")).toMatchObject({ kind: "repo", user: "user", repo: "repo" });
    expect(parseModelReference("huggingface.co/user/repo:Q4_K_M")).toMatchObject({ quantization: "Q4_K_M" });
    expect(parseModelReference("user/repo/sub/model-Q4_K_M.gguf#dev")).toEqual({
      kind: "file",
      user: "user",
      repo: "repo",
      branch: "dev",
      path: "sub/model-Q4_K_M.gguf",
    });
  });

  it("reads Hugging Face URLs (and the HF_ENDPOINT host) as repos and files, other URLs as plain downloads", () => {
    expect(parseModelReference("https://huggingface.co/user/repo")).toMatchObject({ kind: "repo" });
    expect(
      parseModelReference("https://huggingface.co/user/repo/resolve/main/a%20b-Q8_0.gguf?download=true"),
    ).toMatchObject({ kind: "file", path: "a b-Q8_0.gguf", branch: "main" });
    expect(parseModelReference("https://huggingface.co/user/repo/blob/v2/m.gguf")).toMatchObject({
      kind: "file",
      branch: "v2",
    });
    expect(
      parseModelReference("http://127.0.0.1:9/user/repo/resolve/main/m.gguf", "127.0.0.1"),
    ).toMatchObject({
      kind: "file",
      user: "user",
    });
    const plain = parseModelReference("https://example.com/files/m.gguf");
    expect(plain.kind).toBe("url");
  });

  it("refuses what is not a model, naming the input", () => {
    for (const bad of [
      "",
      "justaname",
      "user/repo/README.md",
      "ftp://x/m.gguf",
      "https://example.com/page",
      "us er/repo",
      "user/../x.gguf",
    ]) {
      expect(() => parseModelReference(bad), bad).toThrow(DownloadError);
    }
    expect(() => parseModelReference("user/repo/README.md")).toThrow(/does not name a \.gguf file/);
  });
});

const MB = 1024 ** 2;
const file = (path: string, megabytes = 10) => ({ path, sizeBytes: megabytes * MB });

describe("chooseModel", () => {
  const files = [
    file("README.md"),
    file("m-Q8_0.gguf", 80),
    file("m-Q4_K_M.gguf", 40),
    file("m-F16.gguf", 160),
    file("mmproj-m-F16.gguf"),
    file("big/m-Q6_K-00001-of-00002.gguf", 30),
    file("big/m-Q6_K-00002-of-00002.gguf", 30),
  ];

  it("lists models once (split models with all parts and their total size), without projectors", () => {
    const choices = modelChoices(files);
    expect(choices.map((choice) => choice.quantization)).toEqual(["Q6_K", "F16", "Q4_K_M", "Q8_0"]);
    expect(choices[0]).toMatchObject({
      sizeBytes: 60 * MB,
      parts: ["big/m-Q6_K-00001-of-00002.gguf", "big/m-Q6_K-00002-of-00002.gguf"],
    });
  });

  it("picks Q4_K_M by default, the nearest in the default order without it, or the one named", () => {
    expect(chooseModel("u/r", modelChoices(files)).choice.path).toBe("m-Q4_K_M.gguf");
    const withoutQ4 = chooseModel("u/r", modelChoices(files.filter((each) => !each.path.includes("Q4"))));
    expect(withoutQ4.choice.quantization).toBe("Q6_K");
    expect(withoutQ4.reason).toContain("no Q4_K_M");
    expect(chooseModel("u/r", modelChoices(files), "q8_0").choice.path).toBe("m-Q8_0.gguf");
  });

  it("names the quantizations there are when the one asked for is missing, and a repo without GGUF", () => {
    expect(() => chooseModel("u/r", modelChoices(files), "Q2_K")).toThrow(
      /u\/r has no Q2_K file; available: .*Q4_K_M \(40\.0 MB\).*Q8_0 \(80\.0 MB\)/,
    );
    expect(() => chooseModel("u/r", modelChoices([file("README.md")]))).toThrow(/no \.gguf model files/);
  });
});
