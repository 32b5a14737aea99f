/** `lmhost ps`: the models a running server has loaded, how long they have been idle and when they unload. */
import type { Command } from "commander";
import { formatDuration } from "../shared/format.js";
import { addServerAddressOptions, callServer, type ServerAddressOptions } from "./client.js";
import { formatTable } from "./table.js";

export interface NativeModel {
  id: string;
  state: string;
  size_bytes?: number;
  quantization?: string | null;
  loaded_context_length: number | null;
  ttl_expires_at: number | null;
  last_used_at?: number | null;
}

/** The rows `ps` prints, at `nowSeconds` (Unix seconds): id, state, context, idle for, unloads in. */
export function psRows(models: readonly NativeModel[], nowSeconds: number): string[][] {
  return models.map((model) => [
    model.id,
    model.state,
    String(model.loaded_context_length ?? ""),
    model.state === "loaded" && model.last_used_at != null && model.ttl_expires_at !== null
      ? formatDuration(nowSeconds - model.last_used_at)
      : model.state === "loaded" && model.ttl_expires_at === null
        ? "in use"
        : "-",
    model.ttl_expires_at === null ? "-" : formatDuration(model.ttl_expires_at - nowSeconds),
  ]);
}

export function registerPsCommand(program: Command): void {
  addServerAddressOptions(
    program
      .command("ps")
      .description("list the models loaded in a running server")
      .option("--json", "print JSON (the server's model objects) instead of a table"),
  ).action(async (options: ServerAddressOptions & { json?: boolean }) => {
    const list = (await callServer(options, "GET", "/api/v0/models")) as { data: NativeModel[] };
    const loaded = list.data.filter((model) => model.state !== "not-loaded");
    if (options.json) {
      process.stdout.write(JSON.stringify(loaded, null, 2) + "\n");
      return;
    }
    if (loaded.length === 0) {
      process.stdout.write("no models loaded\n");
      return;
    }
    process.stdout.write(
      formatTable(["ID", "STATE", "CONTEXT", "IDLE", "UNLOADS IN"], psRows(loaded, Date.now() / 1000)),
    );
  });
}
