/**
 * `lmhost get <model>` (alias `pull`): downloads a GGUF model from Hugging Face (or a URL) into the
 * models directory; `--list` shows a repo's quantizations. The work is in models/download/.
 */
import type { Command } from "commander";
import { modelsDirOf, resolveConfig } from "../config.js";
import { choiceLabel } from "../models/download/choose.js";
import { listModelChoices, planDownload, runDownload } from "../models/download/download.js";
import { readGgufMetadata } from "../models/gguf-metadata.js";
import { createProgressDisplay, formatDuration } from "./progress.js";
import { formatBytes, formatTable } from "./table.js";

interface GetFlags {
  token?: string;
  list?: boolean;
  modelsDir?: string;
  dataDir?: string;
  sha256?: string;
}

export function registerGetCommand(program: Command): void {
  program
    .command("get")
    .alias("pull")
    .description("download a GGUF model from Hugging Face into the models folder")
    .argument(
      "<model>",
      "user/repo (Q4_K_M where present), user/repo:Q8_0, user/repo/file.gguf, hf:…, or an https URL",
    )
    .option("--list", "list the repo's quantizations and sizes; download nothing")
    .option("--token <token>", "Hugging Face token for gated or private repos (default: env HF_TOKEN)")
    .option(
      "--sha256 <hex>",
      "the SHA-256 a plain URL's file must have (Hugging Face files are checked against the repository's)",
    )
    .option("--models-dir <dir>", "models folder (default ~/.lmhost/models; env LMHOST_MODELS_DIR)")
    .option("--data-dir <dir>", "data dir holding config.json (default ~/.lmhost)")
    .addHelpText(
      "after",
      "\nHF_ENDPOINT points at a Hugging Face mirror; an interrupted download resumes when run again.",
    )
    .action(async (model: string, flags: GetFlags) => {
      if (flags.list) {
        await listQuantizations(model, flags);
        return;
      }
      await getModel(model, flags);
    });
}

async function listQuantizations(model: string, flags: GetFlags): Promise<void> {
  const { description, choices } = await listModelChoices(model, { token: flags.token });
  if (choices.length === 0) {
    process.stdout.write(`${description} has no .gguf model files\n`);
    return;
  }
  process.stdout.write(
    formatTable(
      ["QUANT", "SIZE", "FILE"],
      choices.map((choice) => [
        choice.quantization ?? "?",
        formatBytes(choice.sizeBytes),
        choice.parts.length > 1 ? `${choice.path} (+${choice.parts.length - 1} parts)` : choice.path,
      ]),
    ),
  );
}

async function getModel(model: string, flags: GetFlags): Promise<void> {
  const config = resolveConfig({
    ...(flags.modelsDir === undefined ? {} : { modelsDir: flags.modelsDir }),
    ...(flags.dataDir === undefined ? {} : { dataDir: flags.dataDir }),
  });
  const modelsDir = modelsDirOf(config);
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const plan = await planDownload(model, { modelsDir, token: flags.token, sha256: flags.sha256 });
  if (plan.choices !== undefined && plan.chosen !== undefined && plan.reference.kind === "repo") {
    const { choices, chosen } = plan;
    if (choices.length > 1)
      out(
        `${plan.reference.user}/${plan.reference.repo} has ${choices.length} models: ${choices.map((choice) => `${choiceLabel(choice, choices)} (${formatBytes(choice.sizeBytes)})`).join(", ")}`,
      );
    const other = choices.find((choice) => choice !== chosen.choice && choice.quantization !== undefined);
    const hint =
      plan.reference.quantization === undefined && other?.quantization !== undefined
        ? `; another: lmhost get ${plan.reference.user}/${plan.reference.repo}:${other.quantization}`
        : "";
    out(`getting ${chosen.choice.path} (${chosen.reason}${hint})`);
  } else {
    out(`getting ${plan.description}`);
  }

  const controller = new AbortController();
  const onInterrupt = () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort(new Error("interrupted"));
  };
  process.on("SIGINT", onInterrupt);
  process.on("SIGTERM", onInterrupt);
  const display = createProgressDisplay(plan.fileNames[0] ?? plan.description);
  let displayed = false;
  const finishDisplay = () => {
    if (displayed) return;
    displayed = true;
    display.finish();
  };
  try {
    const result = await runDownload(plan, {
      modelsDir,
      token: flags.token,
      signal: controller.signal,
      onProgress: (progress) => display.update(progress),
      onVerifying: () => {
        finishDisplay();
        out(`checking the SHA-256 ${plan.sha256 === undefined ? "the repository lists" : "given"}…`);
      },
    });
    finishDisplay();
    if (result.alreadyPresent) {
      out(`already there: ${result.path} (${formatBytes(result.sizeBytes)}); model id ${result.id}`);
      return;
    }
    const checked = await readGgufMetadata(result.path);
    const about =
      "metadata" in checked
        ? `${checked.metadata.architecture}, ${checked.metadata.quantization ?? "?"}, context ${checked.metadata.contextLength ?? "?"}`
        : "";
    const seconds = result.milliseconds / 1000;
    const resumed = result.resumed ? ", resumed where an earlier attempt stopped" : "";
    const verified = result.verified === true ? "SHA-256 matches, " : "";
    out(
      `saved ${result.path} (${formatBytes(result.sizeBytes)} in ${formatDuration(seconds)}${resumed}; ${verified}GGUF header checked: ${about})`,
    );
    out(`model id: ${result.id} — lmhost serve, then "model": "${result.id}"`);
  } catch (error) {
    finishDisplay();
    if (controller.signal.aborted) {
      process.stderr.write(
        `lmhost: download interrupted; the partial file is kept in ${modelsDir}/.downloads: run the same command again to resume\n`,
      );
      process.exitCode = 130;
      return;
    }
    throw error;
  } finally {
    process.off("SIGINT", onInterrupt);
    process.off("SIGTERM", onInterrupt);
  }
}
