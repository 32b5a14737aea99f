/**
 * The built-in demo model: `lmhost serve` with no model anywhere serves the bundled 260K-parameter
 * stories model (assets/models/stories260K-chatml.gguf, MIT, shipped in the npm package) as
 * `lmhost-demo`, so a first request works out of the box — and says loudly that it is a toy.
 *
 * The choice is made on every listing, not once: the demo is listed while no usable model is found
 * (none in the models folder, no `--model` file), and disappears as soon as one is (a `lmhost get` while
 * the server runs). `--demo` lists it beside real models; `--no-demo` never lists it.
 */
import { fileURLToPath } from "node:url";
import type { Logger } from "../shared/logger.js";
import { ModelCatalog } from "./catalog.js";
import type { ModelEntry, ModelSource } from "./types.js";

export const DEMO_MODEL_ID = "lmhost-demo";

/** Same depth from src/models (tests) and dist/models (the package): the repository's or package's root. */
export const demoModelPath = fileURLToPath(
  new URL("../../assets/models/stories260K-chatml.gguf", import.meta.url),
);

/** A real small GGUF repository on Hugging Face, used in every hint. */
export const EXAMPLE_REPOSITORY = "Qwen/Qwen3-0.6B-GGUF";

/** What every "no model" message says: how to get a real model or serve a file. */
export const GET_A_MODEL_HINT =
  `Get a model with \`lmhost get <user/repo>\` (e.g. \`lmhost get ${EXAMPLE_REPOSITORY}\`), ` +
  "or serve a file with `lmhost serve --model path/to/model.gguf`.";

/** What `lmhost ls` says when it finds nothing. */
export function noModelsNote(): string {
  return `${GET_A_MODEL_HINT}\nUntil then \`lmhost serve\` serves the built-in demo model \`${DEMO_MODEL_ID}\` (a 260K-parameter toy).`;
}

/** undefined: the demo only when no usable model is found; true: always; false: never. */
export type DemoSetting = boolean | undefined;

/** Whether an entry list holds a model a request could use (a broken file is listed but is not one). */
function hasUsableModel(entries: readonly ModelEntry[]): boolean {
  return entries.some((entry) => entry.error === undefined);
}

export function isDemoModel(entry: Pick<ModelEntry, "id" | "path">): boolean {
  return entry.id === DEMO_MODEL_ID && entry.path === demoModelPath;
}

/** The models a source lists, plus the demo where the setting asks for it. */
export class DemoModelSource implements ModelSource {
  private readonly demoCatalog = new ModelCatalog({ files: [demoModelPath] });

  constructor(
    private readonly inner: ModelSource,
    private readonly setting: DemoSetting = undefined,
  ) {}

  async list(): Promise<ModelEntry[]> {
    const entries = await this.inner.list();
    if (this.setting === false) return entries;
    if (this.setting === undefined && hasUsableModel(entries)) return entries;
    if (entries.some((entry) => entry.id === DEMO_MODEL_ID)) return entries;
    return [...entries, await this.demoEntry()];
  }

  private async demoEntry(): Promise<ModelEntry> {
    const [entry] = await this.demoCatalog.list();
    // The catalog always lists a --model file, with `error` set when it cannot be read.
    const demo = entry ?? { id: DEMO_MODEL_ID, path: demoModelPath, sizeBytes: 0, publisher: "lmhost" };
    // The model was never trained on ChatML: as the story writer it is, on the plain template, it continues
    // the text and ends a story by itself, so a first request ends `completed` (engine/llama/plain-chat-wrapper.ts).
    return { ...demo, id: DEMO_MODEL_ID, publisher: "lmhost", chatTemplate: "plain" };
  }
}

/** The start-up warning printed while the demo is served (one log line per text line). */
export function demoWarning(setting: DemoSetting): string[] {
  const why =
    setting === true
      ? "lmhost-demo is served because --demo was given."
      : "No model was found, so lmhost serves its built-in demo model as `lmhost-demo`.";
  return [
    "************************************************************************************",
    `DEMO MODEL: ${why}`,
    "It is a 260K-parameter toy trained on children's stories: it writes short story-like",
    "text and does NOT follow instructions. It is not a real assistant; use it to check",
    "that lmhost and your client work. To serve a real model:",
    `  lmhost get <user/repo>          e.g.  lmhost get ${EXAMPLE_REPOSITORY}`,
    "  lmhost serve --model path/to/model.gguf",
    "************************************************************************************",
  ];
}

/**
 * Wraps the catalog for `lmhost serve`: the demo where it applies, and at start-up the warning when it is
 * served, or (with --no-demo) a warning that no model is available, naming `lmhost get`.
 */
export async function withDemoModel(
  source: ModelSource,
  setting: DemoSetting,
  logger: Logger,
): Promise<DemoModelSource> {
  const wrapped = new DemoModelSource(source, setting);
  const entries = await wrapped.list();
  if (entries.some(isDemoModel)) {
    for (const line of demoWarning(setting)) logger.warn(line);
  } else if (!hasUsableModel(entries)) {
    logger.warn(`No model is available: every request will be answered 404. ${GET_A_MODEL_HINT}`);
  }
  return wrapped;
}
