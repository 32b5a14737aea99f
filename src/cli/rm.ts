/** `lmhost rm <id>`: deletes one model from the models folder (asks nothing; see models/remove.ts). */
import type { Command } from "commander";
import { modelsDirOf, resolveConfig } from "../config.js";
import { removeModel } from "../models/remove.js";
import { formatBytes } from "./table.js";

export function registerRmCommand(program: Command): void {
  program
    .command("rm")
    .description("delete a model from the models folder")
    .argument("<model>", "model id (see `lmhost ls`)")
    .option("--models-dir <dir>", "models folder (default ~/.lmhost/models; env LMHOST_MODELS_DIR)")
    .option("--data-dir <dir>", "data dir holding config.json (default ~/.lmhost)")
    .action(async (model: string, flags: { modelsDir?: string; dataDir?: string }) => {
      const config = resolveConfig({
        ...(flags.modelsDir === undefined ? {} : { modelsDir: flags.modelsDir }),
        ...(flags.dataDir === undefined ? {} : { dataDir: flags.dataDir }),
      });
      const removed = await removeModel(modelsDirOf(config), model, { files: config.models });
      process.stdout.write(
        `removed ${removed.id} (${formatBytes(removed.sizeBytes)}): ${removed.files.join(", ")}\n`,
      );
    });
}
