/**
 * Getting a model into the models directory: resolve what the user named (a repo, a quantization, a
 * file, a URL) to files, download them with node-llama-cpp's downloader (ipull underneath: several
 * connections per file, split files in parallel, retries, resume from a `.ipull` file), check the GGUF
 * header, then move the files into place in LM Studio's layout:
 *
 *   <models>/<user>/<repo>/<file>.gguf        a Hugging Face file (every part of a split model)
 *   <models>/<host>/<file stem>/<file>.gguf   any other URL
 *
 * Files are downloaded into `<models>/.downloads/…` first: discovery skips hidden folders, so a running
 * server never lists a half-downloaded or unchecked file, and an interrupted download is resumed from
 * there by the next attempt. The move is a rename on the same file system.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { ModelCatalog } from "../catalog.js";
import { readGgufMetadata } from "../gguf-metadata.js";
import { removeEmptyFolders } from "../remove.js";
import { chooseModel, modelChoices, type ChosenModel, type ModelChoice } from "./choose.js";
import { DownloadError } from "./errors.js";
import { acquireDownloadLock } from "./lock.js";
import {
  fileUrl,
  listRepositoryFiles,
  probeDownload,
  resolveHuggingFaceAccess,
  type HuggingFaceAccess,
} from "./hugging-face.js";
import { describeReference, parseModelReference, type ModelReference } from "./reference.js";

/** The hidden folder under the models directory where downloads happen before they are checked. */
export const STAGING_DIR_NAME = ".downloads";

export interface DownloadContext {
  modelsDir: string;
  /** `--token`; else HF_TOKEN, else the Hugging Face token file. */
  token?: string | undefined;
  environment?: NodeJS.ProcessEnv | undefined;
  signal?: AbortSignal | undefined;
  /**
   * The SHA-256 a plain URL's file must have (`lmhost get URL --sha256 HEX`): without it such a file is
   * checked only for being GGUF. Files from Hugging Face are checked against the repository's own listing.
   */
  sha256?: string | undefined;
}

export interface DownloadPlan {
  /** What was asked for, normalised (`user/repo:Q4_K_M`, a URL). */
  description: string;
  reference: ModelReference;
  /** The URI node-llama-cpp downloads (`hf:user/repo/file.gguf`, or the URL). */
  uri: string;
  /** The repository's models, when a repository was named (for listing). */
  choices?: ModelChoice[];
  chosen?: ChosenModel;
  /** Where the files end up; the first is the one to load. */
  destinationDir: string;
  fileNames: string[];
  /** The total size when the server said it. */
  sizeBytes?: number;
  access: HuggingFaceAccess;
  /** A plain URL's expected SHA-256 (lower-case hex), when the user gave one. */
  sha256?: string;
}

export interface DownloadProgress {
  downloadedBytes: number;
  totalBytes: number;
  /** Over the last few seconds. */
  bytesPerSecond: number;
  /** Undefined until a speed is known. */
  secondsLeft?: number;
}

export interface DownloadResult {
  /** The model file to load (the first part of a split model). */
  path: string;
  files: string[];
  sizeBytes: number;
  /** The model's id in lmhost (`user/repo`, `user/repo@q8_0` beside other quantizations). */
  id: string;
  /** The files were there already (same size): nothing was downloaded. */
  alreadyPresent: boolean;
  /** An earlier, interrupted attempt had left finished chunks that this run kept. */
  resumed: boolean;
  /** Every downloaded file matched the SHA-256 the repository lists for it (false: none was listed). */
  verified?: boolean;
  milliseconds: number;
}

/** The SHA-256 of each file of the plan by file name, where the repository listing (or the user) gave one. */
function expectedChecksums(plan: DownloadPlan): Map<string, string> {
  const choice = plan.chosen?.choice;
  const checksums = new Map<string, string>();
  const [only] = plan.fileNames;
  if (plan.sha256 !== undefined && only !== undefined) checksums.set(only, plan.sha256);
  for (const part of choice?.parts ?? []) {
    const sha256 = choice?.sha256?.[part];
    if (sha256 !== undefined) checksums.set(path.posix.basename(part), sha256);
  }
  return checksums;
}

/** A file's SHA-256 (hex), read as a stream; a cancelled download stops hashing at once. */
async function sha256Of(file: string, signal: AbortSignal | undefined): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file, signal === undefined ? {} : { signal }))
    hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** The repository's GGUF models (for `lmhost get user/repo --list`). */
export async function listModelChoices(
  referenceText: string,
  context: Omit<DownloadContext, "modelsDir">,
): Promise<{ description: string; choices: ModelChoice[] }> {
  const access = await resolveHuggingFaceAccess(context.token, context.environment);
  const reference = parseModelReference(referenceText, new URL(access.endpoint).hostname);
  if (reference.kind === "url")
    throw new DownloadError(`${reference.url.href} is a single file, not a repository: nothing to list`, 400);
  const files = await listRepositoryFiles(access, reference, context.signal);
  return { description: `${reference.user}/${reference.repo}`, choices: modelChoices(files) };
}

/** Resolves what to download and where, with the network checks that give clear errors early. */
export async function planDownload(referenceText: string, context: DownloadContext): Promise<DownloadPlan> {
  const access = await resolveHuggingFaceAccess(context.token, context.environment);
  const reference = parseModelReference(referenceText, new URL(access.endpoint).hostname);
  const description = describeReference(reference);
  const sha256 = context.sha256?.trim().toLowerCase();
  if (sha256 !== undefined) {
    if (reference.kind !== "url")
      throw new DownloadError(
        `--sha256 is for a plain URL: files from Hugging Face are checked against the SHA-256 the repository lists`,
        400,
      );
    if (!/^[0-9a-f]{64}$/.test(sha256))
      throw new DownloadError(`--sha256 takes 64 hexadecimal digits, got '${context.sha256}'`, 400);
  }
  if (reference.kind === "url") {
    const probe = await probeDownload(reference.url.href, reference.url.href, undefined, context.signal);
    let fileName: string;
    try {
      fileName = decodeURIComponent(path.posix.basename(reference.url.pathname));
    } catch {
      throw new DownloadError(`'${referenceText}' has a malformed percent-escape`, 400);
    }
    const partNames = splitPartNames(fileName);
    if (sha256 !== undefined && partNames.length > 1)
      throw new DownloadError(
        `${fileName} is one of ${partNames.length} parts: one --sha256 cannot check them all`,
        400,
      );
    return {
      description,
      reference,
      uri: reference.url.href,
      destinationDir: path.join(
        context.modelsDir,
        safeName(reference.url.hostname),
        safeName(fileName.replace(SPLIT_PART, "").replace(/\.gguf$/i, "")),
      ),
      fileNames: partNames,
      ...(probe.sizeBytes === undefined || partNames.length > 1 ? {} : { sizeBytes: probe.sizeBytes }),
      access,
      ...(sha256 === undefined ? {} : { sha256 }),
    };
  }
  const repositoryName = `${reference.user}/${reference.repo}`;
  const files = await listRepositoryFiles(access, reference, context.signal);
  const choices = modelChoices(files);
  let chosen: ChosenModel;
  if (reference.kind === "repo") {
    chosen = chooseModel(repositoryName, choices, reference.quantization);
  } else {
    const choice = choices.find((candidate) => candidate.parts.includes(reference.path));
    if (choice === undefined)
      throw new DownloadError(
        `${repositoryName} has no file ${reference.path}${choices.length > 0 ? `; its models: ${choices.map((candidate) => candidate.path).join(", ")}` : ""}`,
        404,
        "file_not_found",
      );
    chosen = { choice, reason: "the file named" };
  }
  const firstPart = { ...reference, path: chosen.choice.path };
  await probeDownload(fileUrl(access, firstPart), repositoryName, access, context.signal);
  return {
    description,
    reference,
    uri: `hf:${reference.user}/${reference.repo}/${chosen.choice.path}${reference.branch === "main" ? "" : `#${reference.branch}`}`,
    choices,
    chosen,
    destinationDir: path.join(context.modelsDir, safeName(reference.user), safeName(reference.repo)),
    fileNames: chosen.choice.parts.map((part) => path.posix.basename(part)),
    sizeBytes: chosen.choice.sizeBytes,
    access,
  };
}

/** Downloads a plan's files, checks the GGUF header and moves them into the models directory. */
export async function runDownload(
  plan: DownloadPlan,
  context: DownloadContext & {
    onProgress?: (progress: DownloadProgress) => void;
    /** Called when the bytes are in and their SHA-256 is being checked (seconds for a large model). */
    onVerifying?: () => void;
    parallelDownloads?: number;
  },
): Promise<DownloadResult> {
  const started = Date.now();
  const destinations = plan.fileNames.map((fileName) => path.join(plan.destinationDir, fileName));
  const present = await alreadyPresent(plan, context.modelsDir, destinations, started, context.signal);
  if (present !== undefined) return present;
  const stagingDir = path.join(
    context.modelsDir,
    STAGING_DIR_NAME,
    path.relative(context.modelsDir, plan.destinationDir),
  );
  await mkdir(stagingDir, { recursive: true });
  // One writer per file across processes (`lmhost get` beside a server's download job).
  const lock = await acquireDownloadLock(
    path.join(stagingDir, `${plan.fileNames[0] ?? "model"}.lmhost-lock`),
    plan.description,
  );
  try {
    // The process that held the lock before may have just finished this very file.
    const presentNow = await alreadyPresent(plan, context.modelsDir, destinations, started, context.signal);
    if (presentNow !== undefined) return presentNow;
    return await downloadLocked(plan, context, stagingDir, started, () => lock.release());
  } finally {
    await lock.release();
  }
}

/** The result for files already in place with the plan's size, else undefined. */
async function alreadyPresent(
  plan: DownloadPlan,
  modelsDir: string,
  destinations: string[],
  started: number,
  signal: AbortSignal | undefined,
): Promise<DownloadResult | undefined> {
  const present = await presentSize(destinations);
  if (present === undefined || (plan.sizeBytes !== undefined && plan.sizeBytes !== present)) return undefined;
  if (plan.sha256 !== undefined) {
    // A file already there is checked too when a checksum was given; it is the user's, so it stays.
    const actual = await sha256Of(destinations[0] as string, signal);
    if (actual !== plan.sha256)
      throw new DownloadError(
        `${plan.description}: the file already at ${destinations[0]} does not match the SHA-256 given ` +
          `(--sha256 ${plan.sha256}; it has ${actual}); remove it (lmhost rm) to download it again`,
        409,
        "checksum_mismatch",
      );
  }
  return {
    path: destinations[0] as string,
    files: destinations,
    sizeBytes: present,
    id: await modelIdOf(modelsDir, destinations[0] as string),
    alreadyPresent: true,
    resumed: false,
    milliseconds: Date.now() - started,
  };
}

/** runDownload's part under the download lock; `release` frees it before the staging folder is tidied. */
async function downloadLocked(
  plan: DownloadPlan,
  context: Parameters<typeof runDownload>[1],
  stagingDir: string,
  started: number,
  release: () => Promise<void>,
): Promise<DownloadResult> {
  const { createModelDownloader } = await import("node-llama-cpp");
  const meter = new SpeedMeter();
  const downloader = await createModelDownloader({
    modelUri: plan.uri,
    dirPath: stagingDir,
    // The repository's own file name (node-llama-cpp would prefix it with `hf_<user>_…`); for a split
    // model the first part's, from which node-llama-cpp names every part.
    fileName: plan.fileNames[0] as string,
    ...(plan.access.token === undefined ? {} : { tokens: { huggingFace: plan.access.token } }),
    endpoints: { huggingFace: plan.access.endpoint },
    showCliProgress: false,
    // Keep the partial file: the next attempt resumes it.
    deleteTempFileOnCancel: false,
    skipExisting: true,
    parallelDownloads: context.parallelDownloads ?? 4,
    onProgress: ({ totalSize, downloadedSize }) => {
      if (context.onProgress === undefined) return;
      const bytesPerSecond = meter.add(downloadedSize);
      context.onProgress({
        downloadedBytes: downloadedSize,
        totalBytes: totalSize,
        bytesPerSecond,
        ...(bytesPerSecond > 0
          ? { secondsLeft: Math.max(0, totalSize - downloadedSize) / bytesPerSecond }
          : {}),
      });
    },
  }).catch((error: unknown) => {
    throw explainDownloaderError(error, plan);
  });
  // Bytes a previous, interrupted attempt left in the staging folder (ipull's `.ipull` progress file).
  const alreadyHad = downloader.downloadedSize;
  try {
    await downloader.download(context.signal === undefined ? {} : { signal: context.signal });
  } catch (error) {
    if (context.signal?.aborted) throw error;
    throw explainDownloaderError(error, plan);
  }
  // A cancelled download returns normally (ipull stops quietly): it was stopped, not a bad file.
  context.signal?.throwIfAborted();
  const staged = downloader.filesInfo.map((file) => file.filePath);
  const entrypoint = downloader.entrypointFilePath;
  /** Frees the lock and removes the staging folders left empty; `discard` deletes the staged files first. */
  const tidy = async (discard: boolean) => {
    if (discard) await Promise.all(staged.map((file) => rm(file, { force: true })));
    await release();
    await removeEmptyFolders(stagingDir, context.modelsDir);
  };
  // Every byte against the repository's SHA-256, where it lists one: a resumed file whose remote copy
  // changed meanwhile, or a corrupted transfer, is caught here instead of loading as a broken model.
  const expected = expectedChecksums(plan);
  if (expected.size > 0) context.onVerifying?.();
  let verified = staged.length > 0;
  for (const file of staged) {
    const sha256 = expected.get(path.basename(file));
    if (sha256 === undefined) {
      verified = false;
      continue;
    }
    const actual = await sha256Of(file, context.signal);
    if (actual === sha256) continue;
    await tidy(true);
    throw new DownloadError(
      `${plan.description}: ${path.basename(file)} does not match ${plan.sha256 === undefined ? "the repository's SHA-256" : "the SHA-256 given (--sha256)"} (expected ` +
        `${sha256}, got ${actual}); it was deleted: run the same command again to download it afresh`,
      502,
      "checksum_mismatch",
    );
  }
  const checked = await readGgufMetadata(entrypoint);
  if ("error" in checked) {
    await tidy(true);
    throw new DownloadError(
      `${plan.description}: the downloaded file ${path.basename(entrypoint)} is not a usable GGUF model (${checked.error}); it was deleted`,
      422,
    );
  }
  await mkdir(plan.destinationDir, { recursive: true });
  const files: string[] = [];
  let sizeBytes = 0;
  for (const file of staged) {
    const destination = path.join(plan.destinationDir, path.basename(file));
    await rename(file, destination);
    files.push(destination);
    sizeBytes += (await stat(destination)).size;
  }
  await tidy(false);
  const modelPath = path.join(plan.destinationDir, path.basename(entrypoint));
  return {
    path: modelPath,
    files,
    sizeBytes,
    id: await modelIdOf(context.modelsDir, modelPath),
    alreadyPresent: false,
    resumed: alreadyHad > 0,
    verified,
    milliseconds: Date.now() - started,
  };
}

/** Plans and runs in one call (the API's jobs). */
export async function downloadModel(
  referenceText: string,
  context: DownloadContext & {
    onPlan?: (plan: DownloadPlan) => void;
    onProgress?: (progress: DownloadProgress) => void;
  },
): Promise<DownloadResult> {
  const plan = await planDownload(referenceText, context);
  context.onPlan?.(plan);
  return runDownload(plan, context);
}

// ---------------------------------------------------------------------------------------------------

const SPLIT_PART = /-(\d{5})-of-(\d{5})\.gguf$/i;

function splitPartNames(fileName: string): string[] {
  const match = SPLIT_PART.exec(fileName);
  if (match?.[2] === undefined) return [fileName];
  const stem = fileName.slice(0, -match[0].length);
  const count = Number(match[2]);
  return Array.from(
    { length: count },
    (_, index) => `${stem}-${String(index + 1).padStart(5, "0")}-of-${match[2]}.gguf`,
  );
}

/** A path segment that cannot climb out of the models directory or hide itself. */
function safeName(name: string): string {
  const cleaned = name.replace(/[/\\:*?"<>|\0]/g, "_").replace(/^\.+/, "_");
  return cleaned === "" ? "_" : cleaned;
}

async function presentSize(files: string[]): Promise<number | undefined> {
  let total = 0;
  for (const file of files) {
    try {
      const stats = await stat(file);
      if (!stats.isFile()) return undefined;
      total += stats.size;
    } catch {
      return undefined;
    }
  }
  return total;
}

async function modelIdOf(modelsDir: string, modelPath: string): Promise<string> {
  const entries = await new ModelCatalog({ modelsDir }).list();
  return entries.find((entry) => entry.path === path.resolve(modelPath))?.id ?? path.basename(modelPath);
}

/** ipull's errors say `StatusCodeError: 404 Not Found (url)`; say what it means for this download. */
function explainDownloaderError(error: unknown, plan: DownloadPlan): Error {
  if (error instanceof DownloadError) return error;
  const status = (error as { statusCode?: unknown }).statusCode;
  const message = error instanceof Error ? error.message : String(error);
  if (status === 401 || status === 403)
    return new DownloadError(
      `${plan.description}: the server refused the download (${status}); for a gated repo set HF_TOKEN or pass --token`,
      401,
      "gated_repository",
      { cause: error },
    );
  if (status === 404)
    return new DownloadError(`${plan.description}: not found (404): ${message}`, 404, "not_found", {
      cause: error,
    });
  return new DownloadError(`${plan.description}: the download failed: ${message}`, 502, "download_failed", {
    cause: error,
  });
}

/** Bytes per second over the last five seconds of progress reports. */
class SpeedMeter {
  private readonly samples: { time: number; bytes: number }[] = [];

  add(bytes: number): number {
    const now = Date.now();
    this.samples.push({ time: now, bytes });
    while (this.samples.length > 2 && (this.samples[0] as { time: number }).time < now - 5_000)
      this.samples.shift();
    const first = this.samples[0] as { time: number; bytes: number };
    const seconds = (now - first.time) / 1000;
    return seconds > 0.05 ? Math.max(0, bytes - first.bytes) / seconds : 0;
  }
}
