/**
 * Reads what lmhost shows about a GGUF file — architecture, parameter count, quantization, trained
 * context length, whether it ships a chat template — from the file's header, without loading weights.
 *
 * The header (metadata key/values and the tensor table) is read with node-llama-cpp's
 * `readGgufFileInfo`. The tensor table is read too: it is small (one short record per tensor) and gives
 * the exact parameter count, plus the dominant tensor type when the writer left out `general.file_type`
 * (llama2.c conversions such as stories260K do). Failures never throw: a file that is missing, not
 * GGUF or truncated yields `{error}` so one broken file cannot break discovery of the others.
 *
 * node-llama-cpp is imported lazily: importing it costs ~0.5 s, which commands that never read a
 * model (`lmhost --help`) should not pay.
 */
import { stat } from "node:fs/promises";
import type { GgufFileInfo } from "node-llama-cpp";

export interface GgufMetadataSummary {
  /** `general.architecture`, e.g. "llama", "qwen3". */
  architecture: string;
  /** Sum of the element counts of all tensors (all parts of a split file). */
  parameterCount?: number;
  /** "F32", "F16", "Q4_K_M", ... from `general.file_type`, else the dominant tensor type. */
  quantization?: string;
  /** `<architecture>.context_length`: the context length the model was trained with. */
  contextLength?: number;
  hasChatTemplate: boolean;
}

export type GgufMetadataResult = { metadata: GgufMetadataSummary } | { error: string };

type NodeLlamaCpp = typeof import("node-llama-cpp");

/** Large tokenizer arrays we never use; dropping them keeps cached results small. */
const IGNORED_METADATA_KEYS = [
  "tokenizer.ggml.tokens",
  "tokenizer.ggml.scores",
  "tokenizer.ggml.token_type",
  "tokenizer.ggml.merges",
];

let nodeLlamaCppModule: Promise<NodeLlamaCpp> | undefined;

function loadNodeLlamaCpp(): Promise<NodeLlamaCpp> {
  nodeLlamaCppModule ??= import("node-llama-cpp");
  return nodeLlamaCppModule;
}

/** Reads the GGUF header of `filePath`. Never rejects: problems come back as `{error}`. */
export async function readGgufMetadata(filePath: string): Promise<GgufMetadataResult> {
  try {
    const nodeLlamaCpp = await loadNodeLlamaCpp();
    const fileInfo = await nodeLlamaCpp.readGgufFileInfo(filePath, {
      readTensorInfo: true,
      sourceType: "filesystem",
      logWarnings: false,
      ignoreKeys: IGNORED_METADATA_KEYS,
    });
    const truncation = await describeTruncation(filePath, fileInfo);
    if (truncation !== undefined) return { error: truncation };
    return summarize(nodeLlamaCpp, fileInfo);
  } catch (error) {
    return { error: describeReadError(error) };
  }
}

function summarize(nodeLlamaCpp: NodeLlamaCpp, fileInfo: GgufFileInfo): GgufMetadataResult {
  // Defensive reads: a damaged header parses into partial objects rather than throwing.
  const general = fileInfo.metadata?.general as { architecture?: unknown; file_type?: unknown } | undefined;
  const architecture = general?.architecture;
  if (typeof architecture !== "string" || architecture === "") {
    return { error: "invalid GGUF file: general.architecture is missing (the file may be truncated)" };
  }
  const summary: GgufMetadataSummary = { architecture, hasChatTemplate: hasChatTemplate(fileInfo) };
  const parameterCount = countParameters(fileInfo);
  if (parameterCount > 0) summary.parameterCount = parameterCount;
  const quantization =
    fileTypeName(nodeLlamaCpp, general?.file_type) ?? dominantTensorTypeName(nodeLlamaCpp, fileInfo);
  if (quantization !== undefined) summary.quantization = quantization;
  const contextLength = (fileInfo.architectureMetadata as { context_length?: unknown } | undefined)
    ?.context_length;
  if (typeof contextLength === "number" && contextLength > 0) summary.contextLength = contextLength;
  return { metadata: summary };
}

function hasChatTemplate(fileInfo: GgufFileInfo): boolean {
  const template = (fileInfo.metadata?.tokenizer as { chat_template?: unknown } | undefined)?.chat_template;
  return typeof template === "string" && template.length > 0;
}

function countParameters(fileInfo: GgufFileInfo): number {
  let total = 0;
  for (const tensor of fileInfo.fullTensorInfo ?? []) total += elementCount(tensor.dimensions);
  return total;
}

function elementCount(dimensions: readonly (number | bigint)[]): number {
  return dimensions.reduce<number>((product, dimension) => product * Number(dimension), 1);
}

/** `GgufFileType` 15 → "MOSTLY_Q4_K_M" → "Q4_K_M"; 0 → "ALL_F32" → "F32". */
function fileTypeName(nodeLlamaCpp: NodeLlamaCpp, fileType: unknown): string | undefined {
  if (typeof fileType !== "number") return undefined;
  const name: unknown = (nodeLlamaCpp.GgufFileType as Record<number, unknown>)[fileType];
  return typeof name === "string" ? name.replace(/^(ALL|MOSTLY)_/, "") : undefined;
}

/** The tensor type holding the most parameters, e.g. "F32" for an unquantized llama2.c export. */
function dominantTensorTypeName(nodeLlamaCpp: NodeLlamaCpp, fileInfo: GgufFileInfo): string | undefined {
  const elementsByType = new Map<number, number>();
  for (const tensor of fileInfo.fullTensorInfo ?? []) {
    const count = elementCount(tensor.dimensions);
    elementsByType.set(tensor.ggmlType, (elementsByType.get(tensor.ggmlType) ?? 0) + count);
  }
  let dominant: { type: number; count: number } | undefined;
  for (const [type, count] of elementsByType) {
    if (dominant === undefined || count > dominant.count) dominant = { type, count };
  }
  if (dominant === undefined) return undefined;
  const name: unknown = (nodeLlamaCpp.GgmlType as Record<number, unknown>)[dominant.type];
  return typeof name === "string" ? name : undefined;
}

/**
 * The reader pads reads past the end of the file instead of failing, so a file cut inside its header
 * can still "parse". The header must end inside the (first part of the) file.
 */
async function describeTruncation(filePath: string, fileInfo: GgufFileInfo): Promise<string | undefined> {
  const headerEnd = fileInfo.infoEndOffset;
  if (headerEnd === undefined) return undefined;
  const { size } = await stat(filePath);
  return headerEnd > size
    ? `invalid GGUF file: truncated (header ends at byte ${headerEnd}, file has ${size} bytes)`
    : undefined;
}

function describeReadError(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === "ENOENT") return "file not found";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EISDIR") return "not a file";
  const message = error instanceof Error ? error.message : String(error);
  if (message.startsWith("Invalid GGUF magic")) return "not a GGUF file (the file does not start with GGUF)";
  return `invalid GGUF file: ${message}`;
}

/**
 * Quantization names as they appear in GGUF file names (`Qwen3-8B-Q4_K_M.gguf`,
 * `model.IQ2_XXS.gguf`, `gemma-3-1b-it-BF16.gguf`), longest alternatives first.
 */
const QUANTIZATION_IN_FILE_NAME =
  /(?:^|[-_.])(IQ\d_(?:XXS|XS|NL|S|M)|Q\d_K_(?:XL|S|M|L)|Q\d_K|Q\d_\d|TQ\d_\d|MXFP4(?:_MOE)?|NVFP4|BF16|F16|F32)(?=$|[-_.])/gi;

/** The last quantization name in a file name (without extension), upper-cased, or undefined. */
export function quantizationFromFileName(fileStem: string): string | undefined {
  let last: string | undefined;
  for (const match of fileStem.matchAll(QUANTIZATION_IN_FILE_NAME)) last = match[1];
  return last?.toUpperCase();
}
