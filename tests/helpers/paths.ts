/** Paths tests use: the shared real models and spec files beside the checkout (`../shared`). */
import { fileURLToPath } from "node:url";
import path from "node:path";

export const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const sharedDir = path.resolve(repositoryRoot, "../shared");
export const modelsDir = path.join(sharedDir, "models");
export const storiesModel = path.join(modelsDir, "stories260K.gguf");
export const storiesChatmlModel = path.join(modelsDir, "stories260K-chatml.gguf");
export const randomLlamaModel = path.join(modelsDir, "llama-2-tiny-random.gguf");
export const specDir = path.join(sharedDir, "spec");
export const capturesDir = path.join(sharedDir, "captures");
