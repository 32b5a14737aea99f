/**
 * Which file of a repository to get: the GGUF models in it grouped by quantization (a split model
 * counts once, with the size of all its parts), the one named, or a default.
 */
import path from "node:path";
import { quantizationFromFileName } from "../gguf-metadata.js";
import { DownloadError } from "./errors.js";
import type { RepositoryFile } from "./hugging-face.js";

export interface ModelChoice {
  /** The file to download (the first part of a split model). */
  path: string;
  /** All parts of a split model; just the file otherwise. */
  parts: string[];
  /** Each part's SHA-256 from the repository listing, where it gives one (LFS files), by part path. */
  sha256?: Record<string, string>;
  /** Upper case (`Q4_K_M`), or undefined when the file name has none. */
  quantization?: string | undefined;
  sizeBytes: number;
}

/**
 * The default when none is named: Q4_K_M (llama.cpp's, LM Studio's and Ollama's usual default: about a
 * quarter of F16's size at little quality cost), then its nearest neighbours, then larger ones.
 */
export const DEFAULT_QUANTIZATION_ORDER = [
  "Q4_K_M",
  "Q4_K_S",
  "Q4_K_L",
  "Q4_K_XL",
  "IQ4_XS",
  "IQ4_NL",
  "Q4_0",
  "Q5_K_M",
  "Q5_K_S",
  "Q5_0",
  "Q6_K",
  "Q8_0",
  "Q3_K_M",
  "Q3_K_L",
  "BF16",
  "F16",
  "F32",
];

const SPLIT_PART = /-(\d{5})-of-(\d{5})\.gguf$/i;

/** The GGUF models in a repository, in name order (projectors and parts 2..N of split files left out). */
export function modelChoices(files: RepositoryFile[]): ModelChoice[] {
  const ggufFiles = files.filter(
    (file) => file.path.toLowerCase().endsWith(".gguf") && !/mmproj/i.test(path.posix.basename(file.path)),
  );
  const choices: ModelChoice[] = [];
  for (const file of ggufFiles) {
    const split = SPLIT_PART.exec(file.path);
    if (split !== null && Number(split[1]) !== 1) continue;
    const parts =
      split === null
        ? [file]
        : ggufFiles.filter(
            (other) =>
              other.path.slice(0, -split[0].length) === file.path.slice(0, -split[0].length) &&
              SPLIT_PART.exec(other.path)?.[2] === split[2],
          );
    const stem = path.posix
      .basename(file.path)
      .replace(SPLIT_PART, "")
      .replace(/\.gguf$/i, "");
    // A quantization in a folder name (`Q8_0/model-00001-of-00002.gguf`) counts too.
    const quantization =
      quantizationFromFileName(stem) ?? quantizationFromFileName(path.posix.dirname(file.path));
    choices.push({
      path: file.path,
      parts: parts.map((part) => part.path),
      sha256: Object.fromEntries(
        parts.flatMap((part) => (part.sha256 === undefined ? [] : [[part.path, part.sha256] as const])),
      ),
      quantization,
      sizeBytes: parts.reduce((total, part) => total + part.sizeBytes, 0),
    });
  }
  return choices.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export interface ChosenModel {
  choice: ModelChoice;
  /** How it was chosen, for the user: "named", "the only model", "default Q4_K_M", "first of …". */
  reason: string;
}

export function chooseModel(
  repositoryName: string,
  choices: ModelChoice[],
  quantization?: string,
): ChosenModel {
  if (choices.length === 0)
    throw new DownloadError(
      `${repositoryName} has no .gguf model files (lmhost runs GGUF models; look for a repo named …-GGUF)`,
      404,
      "no_gguf_files",
    );
  if (quantization !== undefined) {
    const wanted = quantization.toUpperCase();
    const exact = choices.find((choice) => choice.quantization === wanted);
    // Names the file-name parser does not know (`UD-Q4_K_XL`, `IQ1_M`, `Q4_K_M-imat`) still match by name.
    const normalise = (text: string) => text.toUpperCase().replace(/[-.]/g, "_");
    const byName =
      exact ??
      choices.find((choice) => normalise(path.posix.basename(choice.path)).includes(normalise(wanted)));
    if (byName === undefined)
      throw new DownloadError(
        `${repositoryName} has no ${wanted} file; available: ${describeChoices(choices)}`,
        404,
        "quantization_not_found",
      );
    return { choice: byName, reason: `${wanted} as asked` };
  }
  if (choices.length === 1)
    return { choice: choices[0] as ModelChoice, reason: "the only model in the repo" };
  for (const candidate of DEFAULT_QUANTIZATION_ORDER) {
    const found = choices.find((choice) => choice.quantization === candidate);
    if (found !== undefined)
      return {
        choice: found,
        reason:
          candidate === "Q4_K_M"
            ? "the default, Q4_K_M"
            : `no Q4_K_M here; ${candidate} is the nearest in lmhost's default order`,
      };
  }
  return { choice: choices[0] as ModelChoice, reason: "no known quantization in the names; the first file" };
}

/** `Q4_K_M (1.1 GB), Q8_0 (2.0 GB)` — or file names where quantizations are absent or shared. */
export function describeChoices(
  choices: ModelChoice[],
  formatSize: (bytes: number) => string = formatMegabytes,
): string {
  return choices
    .map((choice) => `${choiceLabel(choice, choices)} (${formatSize(choice.sizeBytes)})`)
    .join(", ");
}

export function choiceLabel(choice: ModelChoice, all: ModelChoice[]): string {
  const shared = all.filter((other) => other.quantization === choice.quantization).length > 1;
  return choice.quantization === undefined || shared ? choice.path : choice.quantization;
}

/** `1.1 MB`, `4.7 GB` (powers of 1,024, as `lmhost ls` shows sizes). */
function formatMegabytes(bytes: number): string {
  const gigabytes = bytes / 1024 ** 3;
  return gigabytes >= 1 ? `${gigabytes.toFixed(1)} GB` : `${(bytes / 1024 ** 2).toFixed(1)} MB`;
}
