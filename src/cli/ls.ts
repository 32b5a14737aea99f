/**
 * `lmhost ls`: the models on disk (no server needed): id, size, architecture, quantization, context. When
 * a server answers at the configured address (a short timeout), it also shows what that server serves
 * and which models it has loaded — including models the server was given that are not in this folder.
 */
import path from "node:path";
import type { Command } from "commander";
import { modelsDirOf, resolveConfig } from "../config.js";
import { ModelCatalog } from "../models/catalog.js";
import type { ModelEntry } from "../models/types.js";
import { tryServer } from "./client.js";
import { noModelsNote } from "../models/demo.js";
import { formatBytes, formatTable } from "./table.js";

interface LsFlags {
  modelsDir?: string;
  model?: string[];
  dataDir?: string;
  json?: boolean;
  host?: string;
  port?: string;
  apiKey?: string;
  /** `--no-server`: commander sets false. */
  server?: boolean;
}

/** A model as the running server lists it (/api/v0/models). */
interface ServedModel {
  id: string;
  path: string;
  size_bytes: number;
  arch: string | null;
  quantization: string | null;
  max_context_length: number | null;
  state: string;
  error: string | null;
}

type ListedModel = ModelEntry & { server_state?: string };

/** Disk entries marked with the server's state (matched by file path), then the server's other models. */
export function mergeWithServer(
  entries: readonly ModelEntry[],
  served: readonly ServedModel[],
): ListedModel[] {
  const byPath = new Map(served.map((model) => [path.resolve(model.path), model]));
  const listed: ListedModel[] = entries.map((entry) => {
    const model = byPath.get(path.resolve(entry.path));
    byPath.delete(path.resolve(entry.path));
    return model === undefined ? { ...entry } : { ...entry, server_state: model.state };
  });
  for (const model of byPath.values()) {
    const entry: ListedModel = {
      id: model.id,
      path: model.path,
      sizeBytes: model.size_bytes,
      publisher: "",
      server_state: model.state,
    };
    if (model.arch !== null) entry.architecture = model.arch;
    if (model.quantization !== null) entry.quantization = model.quantization;
    if (model.max_context_length !== null) entry.contextLength = model.max_context_length;
    if (model.error !== null) entry.error = model.error;
    listed.push(entry);
  }
  return listed;
}

export function registerLsCommand(program: Command): void {
  program
    .command("ls")
    .description("list the models on disk, and what a running server serves")
    .option("--models-dir <dir>", "models folder (default ~/.lmhost/models; env LMHOST_MODELS_DIR)")
    .option("-m, --model <file...>", "also list these .gguf files")
    .option("--data-dir <dir>", "data dir holding config.json (default ~/.lmhost)")
    .option("--host <host>", "a running server's host, to show what it serves (default 127.0.0.1)")
    .option("--port <port>", "a running server's port (default 1234; env LMHOST_PORT)")
    .option("--api-key <key>", "the running server's API key (env LMHOST_API_KEY)")
    .option("--no-server", "do not ask a running server")
    .option("--json", "print JSON instead of a table")
    .action(async (flags: LsFlags) => {
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
      const [entries, server] = await Promise.all([
        catalog.list(),
        flags.server === false
          ? Promise.resolve(undefined)
          : tryServer(
              {
                ...(flags.host === undefined ? {} : { host: flags.host }),
                ...(flags.port === undefined ? {} : { port: flags.port }),
                ...(flags.apiKey === undefined ? {} : { apiKey: flags.apiKey }),
                ...(flags.dataDir === undefined ? {} : { dataDir: flags.dataDir }),
              },
              "/api/v0/models",
            ),
      ]);
      const served = (server?.body as { data?: ServedModel[] } | undefined)?.data;
      const listed = served === undefined ? entries : mergeWithServer(entries, served);
      if (flags.json) {
        process.stdout.write(JSON.stringify(listed, null, 2) + "\n");
        return;
      }
      if (listed.length === 0) {
        process.stdout.write(`no models found in ${modelsDirOf(config)}\n${noModelsNote()}\n`);
        return;
      }
      const headers = ["ID", "SIZE", "ARCH", "QUANT", "CONTEXT", "TEMPLATE"];
      process.stdout.write(
        formatTable(
          served === undefined ? headers : [...headers, "SERVER"],
          listed.map((entry) => {
            const row =
              entry.error !== undefined
                ? [entry.id, formatBytes(entry.sizeBytes), `error: ${entry.error}`, "", "", ""]
                : [
                    entry.id,
                    formatBytes(entry.sizeBytes),
                    entry.architecture ?? "?",
                    entry.quantization ?? "?",
                    String(entry.contextLength ?? "?"),
                    entry.chatTemplate ??
                      (entry.hasChatTemplate === undefined ? "?" : entry.hasChatTemplate ? "model" : "none"),
                  ];
            if (served === undefined) return row;
            const state = (entry as ListedModel).server_state;
            return [...row, state === undefined ? "-" : state === "not-loaded" ? "served" : state];
          }),
        ),
      );
      if (server !== undefined) {
        const loaded = served?.filter((model) => model.state === "loaded").length ?? 0;
        process.stdout.write(
          `\nserver at ${server.url}: ${served?.length ?? 0} model(s) served, ${loaded} loaded\n`,
        );
      }
    });
}
