/** `lmhost ps`: the models a running server has loaded (and their TTL). */
import type { Command } from "commander";
import { addServerAddressOptions, callServer, type ServerAddressOptions } from "./client.js";
import { formatTable } from "./table.js";

interface NativeModel {
  id: string;
  state: string;
  loaded_context_length: number | null;
  ttl_expires_at: number | null;
}

export function registerPsCommand(program: Command): void {
  addServerAddressOptions(
    program.command("ps").description("list the models loaded in a running server"),
  ).action(async (options: ServerAddressOptions) => {
    const list = (await callServer(options, "GET", "/api/v0/models")) as { data: NativeModel[] };
    const loaded = list.data.filter((model) => model.state !== "not-loaded");
    if (loaded.length === 0) {
      process.stdout.write("no models loaded\n");
      return;
    }
    const now = Date.now() / 1000;
    process.stdout.write(
      formatTable(
        ["ID", "STATE", "CONTEXT", "UNLOADS IN"],
        loaded.map((model) => [
          model.id,
          model.state,
          String(model.loaded_context_length ?? ""),
          model.ttl_expires_at === null ? "-" : `${Math.max(0, Math.round(model.ttl_expires_at - now))}s`,
        ]),
      ),
    );
  });
}
