/** `lmhost ls`: the models on disk (no server needed): id, size, architecture, quantization, context. */
import type { Command } from "commander";
import { modelsDirOf, resolveConfig } from "../config.js";
import { ModelCatalog } from "../models/catalog.js";
import { noModelsNote } from "../models/demo.js";
import { formatBytes, formatTable } from "./table.js";

export function registerLsCommand(program: Command): void {
  program
    .command("ls")
    .description("list the models on disk")
    .option("--models-dir <dir>", "models folder (default ~/.lmhost/models; env LMHOST_MODELS_DIR)")
    .option("--model <file...>", "also list these .gguf files")
    .option("--data-dir <dir>", "data dir holding config.json (default ~/.lmhost)")
    .option("--json", "print JSON instead of a table")
    .action(async (flags: { modelsDir?: string; model?: string[]; dataDir?: string; json?: boolean }) => {
      const config = resolveConfig({
        ...(flags.modelsDir === undefined ? {} : { modelsDir: flags.modelsDir }),
        ...(flags.model === undefined ? {} : { models: flags.model }),
        ...(flags.dataDir === undefined ? {} : { dataDir: flags.dataDir }),
      });
      const catalog = new ModelCatalog({
        modelsDir: modelsDirOf(config),
        files: config.models,
        overrides: config.modelOverrides,
      });
      const entries = await catalog.list();
      if (flags.json) {
        process.stdout.write(JSON.stringify(entries, null, 2) + "\n");
        return;
      }
      if (entries.length === 0) {
        process.stdout.write(`no models found in ${modelsDirOf(config)}\n${noModelsNote()}\n`);
        return;
      }
      process.stdout.write(
        formatTable(
          ["ID", "SIZE", "ARCH", "QUANT", "CONTEXT", "TEMPLATE"],
          entries.map((entry) =>
            entry.error !== undefined
              ? [entry.id, formatBytes(entry.sizeBytes), `error: ${entry.error}`, "", "", ""]
              : [
                  entry.id,
                  formatBytes(entry.sizeBytes),
                  entry.architecture ?? "?",
                  entry.quantization ?? "?",
                  String(entry.contextLength ?? "?"),
                  entry.chatTemplate ?? (entry.hasChatTemplate ? "model" : "none"),
                ],
          ),
        ),
      );
    });
}
