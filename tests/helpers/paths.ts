/** Paths tests use: the bundled models (assets/models) and the wire specs, captures and templates (tests/fixtures). */
import { fileURLToPath } from "node:url";
import path from "node:path";

export const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const fixturesDir = path.join(repositoryRoot, "tests", "fixtures");
export const modelsDir = path.join(repositoryRoot, "assets", "models");
export const storiesModel = path.join(modelsDir, "stories260K.gguf");
export const storiesChatmlModel = path.join(modelsDir, "stories260K-chatml.gguf");
export const randomLlamaModel = path.join(modelsDir, "llama-2-tiny-random.gguf");
export const specDir = path.join(fixturesDir, "spec");
export const capturesDir = path.join(fixturesDir, "captures");
export const templatesDir = path.join(fixturesDir, "templates");
