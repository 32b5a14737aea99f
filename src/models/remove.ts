/**
 * `lmhost rm <id>`: deletes one model's file (every part of a split model) from the models directory,
 * then the folders it leaves empty. Refuses anything outside the models directory (a `--model` file
 * from config.json, a path elsewhere): lmhost deletes only what lives in its own folder. A running
 * server sees the change on its next listing (discovery reads the folder each time).
 */
import { readdir, realpath, rm, rmdir } from "node:fs/promises";
import path from "node:path";
import { ModelCatalog } from "./catalog.js";
import { DownloadError } from "./download/errors.js";

export interface RemovedModel {
  id: string;
  files: string[];
  sizeBytes: number;
}

const SPLIT_PART = /-(\d{5})-of-(\d{5})\.gguf$/i;

export async function removeModel(
  modelsDir: string,
  id: string,
  options: { files?: string[] } = {},
): Promise<RemovedModel> {
  const entries = await new ModelCatalog({ modelsDir, files: options.files ?? [] }).list();
  const entry =
    entries.find((candidate) => candidate.id === id) ??
    entries.find((candidate) => candidate.path === path.resolve(id));
  if (entry === undefined)
    throw new DownloadError(
      `no model '${id}' in ${modelsDir}${entries.length > 0 ? `; models: ${entries.map((candidate) => candidate.id).join(", ")}` : ""}`,
      404,
      "model_not_found",
    );
  const root = await realpath(modelsDir).catch(() => path.resolve(modelsDir));
  const real = await realpath(entry.path).catch(() => path.resolve(entry.path));
  if (!real.startsWith(root + path.sep))
    throw new DownloadError(
      `'${id}' is ${entry.path}, outside the models directory ${root}: lmhost rm deletes only models in that folder`,
      400,
      "outside_models_dir",
    );
  const files = splitParts(entry.path);
  await Promise.all(files.map((file) => rm(file, { force: true })));
  await removeEmptyFolders(path.dirname(entry.path), modelsDir);
  return { id: entry.id, files, sizeBytes: entry.sizeBytes };
}

function splitParts(filePath: string): string[] {
  const match = SPLIT_PART.exec(filePath);
  if (match?.[2] === undefined) return [filePath];
  const stem = filePath.slice(0, -match[0].length);
  return Array.from(
    { length: Number(match[2]) },
    (_, index) => `${stem}-${String(index + 1).padStart(5, "0")}-of-${match[2]}.gguf`,
  );
}

/** Removes `folder` and its empty parents up to (not including) `root`. */
export async function removeEmptyFolders(folder: string, root: string): Promise<void> {
  const stop = path.resolve(root);
  for (
    let current = path.resolve(folder);
    current.startsWith(stop + path.sep);
    current = path.dirname(current)
  ) {
    try {
      if ((await readdir(current)).length > 0) return;
      await rmdir(current);
    } catch {
      return;
    }
  }
}
