/**
 * Model discovery: the models directory (LM Studio's layout) plus single `--model` files, turned into
 * ModelEntry values with GGUF metadata.
 *
 * Layout and ids:
 *   <dir>/<publisher>/<model>/<file>.gguf  → `publisher/model`; where the folder holds several model
 *                                            files each gets a suffix: `publisher/model@q4_k_m` (the
 *                                            quantization in the file name) or `publisher/model@<stem>`
 *   <dir>/<publisher>/<file>.gguf          → `publisher/<stem>`
 *   <dir>/<file>.gguf                      → `<stem>`, publisher "local"
 *   --model <file>.gguf                    → `<stem>`, publisher "local"
 * Later collisions get `-2`, `-3`, ... (directory entries first, in name order, then `--model` files in
 * the order given), so ids are stable while the files stay the same. Multimodal projectors (`*mmproj*`)
 * and parts 2..N of split files (`-00002-of-00003.gguf`) are not models and are skipped; a split model
 * is listed once, under its first part, with the size of all parts. Hidden entries are ignored.
 *
 * A missing models directory lists nothing. Metadata is cached per path and revalidated by size and
 * mtime, so a list() after the first costs one readdir per folder and one stat per file. A file that
 * cannot be read is still listed, with `error` set.
 */
import type { Dirent, Stats } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { quantizationFromFileName, readGgufMetadata, type GgufMetadataResult } from "./gguf-metadata.js";
import type { ReasoningBudgets } from "../engine/reasoning-budgets.js";
import type { ModelEntry, ModelSource } from "./types.js";

/** Per-model settings from config.json (`modelOverrides`), keyed by model id. */
export interface ModelOverride {
  /** A node-llama-cpp wrapper name such as "chatml", or a Jinja template. */
  chatTemplate?: string | undefined;
  /** Replaces the trained context length in the entry, so the engine loads the model with it. */
  contextLength?: number | undefined;
  /** Thought-token budgets per reasoning effort for this model (over the server's). */
  reasoningBudgets?: ReasoningBudgets | undefined;
}

export interface ModelCatalogOptions {
  /** LM Studio-style models directory; may not exist. */
  modelsDir?: string | undefined;
  /** Single GGUF files given with `--model`. */
  files?: string[] | undefined;
  /** Chat template override for the `--model` files. */
  chatTemplate?: string | undefined;
  overrides?: Record<string, ModelOverride> | undefined;
  /** Server-wide thought-token budgets per reasoning effort (config.json `reasoningBudgets`). */
  reasoningBudgets?: ReasoningBudgets | undefined;
}

/** A model file found on disk, before its metadata is read. */
interface FoundModelFile {
  id: string;
  publisher: string;
  path: string;
  fromCommandLine: boolean;
}

interface CachedMetadata {
  sizeBytes: number;
  modifiedMs: number;
  result: Promise<GgufMetadataResult>;
}

const LOCAL_PUBLISHER = "local";
/** Header reads in flight at once on a first scan of a large directory. */
const METADATA_READ_CONCURRENCY = 8;
const SPLIT_PART_SUFFIX = /-(\d{5})-of-(\d{5})$/;

export class ModelCatalog implements ModelSource {
  private readonly options: ModelCatalogOptions;
  private readonly metadataCache = new Map<string, CachedMetadata>();

  constructor(options: ModelCatalogOptions = {}) {
    this.options = options;
  }

  async list(): Promise<ModelEntry[]> {
    const directoryFiles =
      this.options.modelsDir === undefined
        ? []
        : await scanModelsDirectory(path.resolve(this.options.modelsDir));
    const found = appendCommandLineFiles(directoryFiles, this.options.files ?? []);
    const entries = await mapWithConcurrency(found, METADATA_READ_CONCURRENCY, (file) => this.describe(file));
    this.pruneCache(new Set(found.map((file) => file.path)));
    return entries;
  }

  private async describe(file: FoundModelFile): Promise<ModelEntry> {
    const entry: ModelEntry = { id: file.id, path: file.path, sizeBytes: 0, publisher: file.publisher };
    const chatTemplate = this.options.overrides?.[file.id]?.chatTemplate ?? this.commandLineTemplate(file);
    if (chatTemplate !== undefined) entry.chatTemplate = chatTemplate;
    const sized = await statModelFile(file.path);
    if ("error" in sized) {
      entry.error = sized.error;
    } else {
      entry.sizeBytes = sized.sizeBytes;
      applyMetadata(entry, await this.readMetadata(file.path, sized.firstPart));
    }
    const contextLength = this.options.overrides?.[file.id]?.contextLength;
    if (contextLength !== undefined) {
      entry.contextLength = contextLength;
      entry.contextLengthOverride = contextLength;
    }
    const reasoningBudgets = {
      ...this.options.reasoningBudgets,
      ...this.options.overrides?.[file.id]?.reasoningBudgets,
    };
    if (Object.keys(reasoningBudgets).length > 0) entry.reasoningBudgets = reasoningBudgets;
    return entry;
  }

  private commandLineTemplate(file: FoundModelFile): string | undefined {
    return file.fromCommandLine ? this.options.chatTemplate : undefined;
  }

  private readMetadata(filePath: string, stats: Stats): Promise<GgufMetadataResult> {
    const cached = this.metadataCache.get(filePath);
    if (cached !== undefined && cached.sizeBytes === stats.size && cached.modifiedMs === stats.mtimeMs) {
      return cached.result;
    }
    const result = readGgufMetadata(filePath);
    this.metadataCache.set(filePath, { sizeBytes: stats.size, modifiedMs: stats.mtimeMs, result });
    return result;
  }

  private pruneCache(currentPaths: Set<string>): void {
    for (const cachedPath of this.metadataCache.keys()) {
      if (!currentPaths.has(cachedPath)) this.metadataCache.delete(cachedPath);
    }
  }
}

function applyMetadata(entry: ModelEntry, result: GgufMetadataResult): void {
  if ("error" in result) {
    entry.error = result.error;
    return;
  }
  const { metadata } = result;
  entry.architecture = metadata.architecture;
  if (metadata.parameterCount !== undefined) entry.parameterCount = metadata.parameterCount;
  if (metadata.quantization !== undefined) entry.quantization = metadata.quantization;
  if (metadata.contextLength !== undefined) entry.contextLength = metadata.contextLength;
  entry.hasChatTemplate = metadata.hasChatTemplate;
}

// ---------------------------------------------------------------------------------------------------
// Directory scan

async function scanModelsDirectory(root: string): Promise<FoundModelFile[]> {
  const found: FoundModelFile[] = [];
  for (const child of await readVisibleEntries(root, { isRoot: true })) {
    const childPath = path.join(root, child.name);
    const kind = await entryKind(childPath, child);
    if (kind === "file" && isModelFileName(child.name)) {
      found.push({
        id: modelStem(child.name),
        publisher: LOCAL_PUBLISHER,
        path: childPath,
        fromCommandLine: false,
      });
    } else if (kind === "directory") {
      found.push(...(await scanPublisherDirectory(child.name, childPath)));
    }
  }
  return withUniqueIds(found);
}

async function scanPublisherDirectory(publisher: string, directory: string): Promise<FoundModelFile[]> {
  const found: FoundModelFile[] = [];
  for (const child of await readVisibleEntries(directory)) {
    const childPath = path.join(directory, child.name);
    const kind = await entryKind(childPath, child);
    if (kind === "file" && isModelFileName(child.name)) {
      found.push({
        id: `${publisher}/${modelStem(child.name)}`,
        publisher,
        path: childPath,
        fromCommandLine: false,
      });
    } else if (kind === "directory") {
      found.push(...(await scanModelDirectory(publisher, child.name, childPath)));
    }
  }
  return found;
}

async function scanModelDirectory(
  publisher: string,
  model: string,
  directory: string,
): Promise<FoundModelFile[]> {
  const fileNames: string[] = [];
  for (const child of await readVisibleEntries(directory)) {
    if (!isModelFileName(child.name)) continue;
    if ((await entryKind(path.join(directory, child.name), child)) === "file") fileNames.push(child.name);
  }
  const baseId = `${publisher}/${model}`;
  const suffixes = fileNames.length > 1 ? variantSuffixes(fileNames.map(modelStem)) : [];
  return fileNames.map((fileName, index) => ({
    id: suffixes[index] === undefined ? baseId : `${baseId}@${suffixes[index]}`,
    publisher,
    path: path.join(directory, fileName),
    fromCommandLine: false,
  }));
}

/** `@q4_k_m` from the quantization in each file name; the file stem where that is absent or shared. */
function variantSuffixes(stems: string[]): string[] {
  const quantizations = stems.map((stem) => quantizationFromFileName(stem)?.toLowerCase());
  return stems.map((stem, index) => {
    const quantization = quantizations[index];
    const shared = quantizations.filter((other) => other === quantization).length > 1;
    return quantization === undefined || shared ? stem : quantization;
  });
}

async function readVisibleEntries(directory: string, options: { isRoot?: boolean } = {}): Promise<Dirent[]> {
  try {
    const entries = await readdir(directory, { withFileTypes: true });
    return entries
      .filter((entry) => !entry.name.startsWith("."))
      .sort((a, b) => compareNames(a.name, b.name));
  } catch (error) {
    // Below the root, a folder that vanished or cannot be read is skipped rather than failing the list.
    if (options.isRoot !== true) return [];
    const code = (error as { code?: unknown }).code;
    if (code === "ENOENT" || code === "ENOTDIR") return [];
    throw error;
  }
}

function compareNames(left: string, right: string): number {
  return left < right ? -1 : left > right ? 1 : 0;
}

/** Follows symbolic links (LM Studio can import models as links). */
async function entryKind(entryPath: string, entry: Dirent): Promise<"file" | "directory" | "other"> {
  if (entry.isFile()) return "file";
  if (entry.isDirectory()) return "directory";
  if (!entry.isSymbolicLink()) return "other";
  try {
    const target = await stat(entryPath);
    return target.isFile() ? "file" : target.isDirectory() ? "directory" : "other";
  } catch {
    return "other";
  }
}

// ---------------------------------------------------------------------------------------------------
// File names

function isModelFileName(fileName: string): boolean {
  if (!fileName.toLowerCase().endsWith(".gguf")) return false;
  if (/mmproj/i.test(fileName)) return false;
  const split = splitPart(fileName);
  return split === undefined || split.part === 1;
}

/** `Qwen3-8B-Q4_K_M-00001-of-00002.gguf` → `Qwen3-8B-Q4_K_M`. */
/** The file name without `.gguf` (any other name, e.g. a `--model` file that is not GGUF, stays whole). */
function modelStem(fileName: string): string {
  const withoutExtension = fileName.toLowerCase().endsWith(".gguf")
    ? fileName.slice(0, -".gguf".length)
    : fileName;
  return withoutExtension.replace(SPLIT_PART_SUFFIX, "");
}

function splitPart(fileName: string): { part: number; count: number } | undefined {
  const match = SPLIT_PART_SUFFIX.exec(fileName.slice(0, -".gguf".length));
  if (match?.[1] === undefined || match[2] === undefined) return undefined;
  return { part: Number(match[1]), count: Number(match[2]) };
}

/** Every part of a split file (`-00001-of-00003` → parts 1..3), or just the file. */
function splitPartPaths(filePath: string): string[] {
  const fileName = path.basename(filePath);
  const split = splitPart(fileName);
  if (split === undefined) return [filePath];
  const countText = String(split.count).padStart(5, "0");
  return Array.from({ length: split.count }, (_, index) => {
    const partText = String(index + 1).padStart(5, "0");
    const partName = `${modelStem(fileName)}-${partText}-of-${countText}.gguf`;
    return path.join(path.dirname(filePath), partName);
  });
}

// ---------------------------------------------------------------------------------------------------
// Sizes, ids, concurrency

type SizedModelFile = { sizeBytes: number; firstPart: Stats } | { error: string };

async function statModelFile(filePath: string): Promise<SizedModelFile> {
  const partStats: Stats[] = [];
  for (const partPath of splitPartPaths(filePath)) {
    try {
      partStats.push(await stat(partPath));
    } catch {
      return {
        error: partPath === filePath ? "file not found" : `split part missing: ${path.basename(partPath)}`,
      };
    }
  }
  const firstPart = partStats[0];
  if (firstPart === undefined || !firstPart.isFile()) return { error: "not a file" };
  return { sizeBytes: partStats.reduce((total, part) => total + part.size, 0), firstPart };
}

function appendCommandLineFiles(directoryFiles: FoundModelFile[], files: string[]): FoundModelFile[] {
  const result = [...directoryFiles];
  const takenIds = new Set(result.map((file) => file.id));
  const knownPaths = new Set(result.map((file) => file.path));
  for (const file of files) {
    const filePath = path.resolve(file);
    if (knownPaths.has(filePath)) continue;
    knownPaths.add(filePath);
    const id = uniqueId(modelStem(path.basename(filePath)), takenIds);
    result.push({ id, publisher: LOCAL_PUBLISHER, path: filePath, fromCommandLine: true });
  }
  return result;
}

function withUniqueIds(files: FoundModelFile[]): FoundModelFile[] {
  const takenIds = new Set<string>();
  return files.map((file) => ({ ...file, id: uniqueId(file.id, takenIds) }));
}

/** `id`, or `id-2`, `id-3`, ... whichever is free first; records the result as taken. */
function uniqueId(id: string, takenIds: Set<string>): string {
  let candidate = id;
  for (let counter = 2; takenIds.has(candidate); counter++) candidate = `${id}-${counter}`;
  takenIds.add(candidate);
  return candidate;
}

async function mapWithConcurrency<Input, Output>(
  inputs: readonly Input[],
  concurrency: number,
  transform: (input: Input) => Promise<Output>,
): Promise<Output[]> {
  const outputs: Output[] = new Array<Output>(inputs.length);
  let nextIndex = 0;
  const worker = async (): Promise<void> => {
    for (let index = nextIndex++; index < inputs.length; index = nextIndex++) {
      outputs[index] = await transform(inputs[index] as Input);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, inputs.length) }, worker));
  return outputs;
}

// ---------------------------------------------------------------------------------------------------
// Resolving a requested id

/**
 * The quantization `publisher/model` resolves to when its folder holds several files (`@q4_k_m`, `@q8_0`,
 * ...): the first of this list that is present. Q4_K_M first (the usual default of Ollama, LM Studio and
 * Hugging Face's GGUF pages: a good size/quality balance), then the nearest 4–6 bit quantizations, then
 * the larger and the smaller ones.
 */
export const DEFAULT_QUANTIZATION_ORDER = [
  "Q4_K_M",
  "Q4_K_S",
  "Q5_K_M",
  "Q5_K_S",
  "Q4_0",
  "Q4_1",
  "IQ4_XS",
  "IQ4_NL",
  "Q5_0",
  "Q5_1",
  "Q6_K",
  "Q8_0",
  "Q3_K_L",
  "Q3_K_M",
  "Q3_K_S",
  "IQ3_M",
  "IQ3_XS",
  "Q2_K",
  "BF16",
  "F16",
  "F32",
] as const;

export type ModelIdResolution = { entry: ModelEntry } | { ambiguous: ModelEntry[] } | { notFound: true };

/**
 * The entry a requested id names: the exact id; else a case-insensitive match if exactly one model has it;
 * else, for `publisher/model` whose folder holds several files (`publisher/model@<variant>`), the variant
 * with the first quantization of DEFAULT_QUANTIZATION_ORDER (from the file name, else the GGUF header).
 * Variants none of which has a listed quantization are ambiguous: the caller lists them.
 */
export function resolveModelId(id: string, entries: readonly ModelEntry[]): ModelIdResolution {
  const exact = entries.find((entry) => entry.id === id);
  if (exact !== undefined) return { entry: exact };
  const lower = id.toLowerCase();
  const folded = entries.filter((entry) => entry.id.toLowerCase() === lower);
  if (folded.length === 1 && folded[0] !== undefined) return { entry: folded[0] };
  if (folded.length > 1) return { ambiguous: folded };
  const variants = entries.filter((entry) => entry.id.toLowerCase().startsWith(`${lower}@`));
  if (variants.length === 0) return { notFound: true };
  const rank = (entry: ModelEntry): number => {
    const quantization =
      quantizationFromFileName(modelStem(path.basename(entry.path))) ?? entry.quantization?.toUpperCase();
    const index = DEFAULT_QUANTIZATION_ORDER.findIndex((candidate) => candidate === quantization);
    return index === -1 ? Infinity : index;
  };
  const ranked = variants
    .filter((entry) => entry.error === undefined)
    .map((entry) => ({ entry, rank: rank(entry) }))
    .filter((candidate) => candidate.rank !== Infinity)
    .sort((left, right) => left.rank - right.rank);
  const best = ranked[0];
  return best === undefined ? { ambiguous: variants } : { entry: best.entry };
}
