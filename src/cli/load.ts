/** `lmhost load MODEL` and `lmhost unload MODEL`: explicit model lifecycle on a running server. */
import type { Command } from "commander";
import { addServerAddressOptions, callServer, type ServerAddressOptions } from "./client.js";

export function registerLoadCommand(program: Command): void {
  addServerAddressOptions(
    program
      .command("load")
      .description("load a model into a running server")
      .argument("<model>", "model id (see `lmhost ls`)")
      .option("--ttl <seconds>", "unload after this many idle seconds"),
  ).action(async (model: string, options: ServerAddressOptions & { ttl?: string }) => {
    const result = (await callServer(options, "POST", "/api/v0/load", {
      model,
      ...(options.ttl === undefined ? {} : { ttl: Number(options.ttl) }),
    })) as { id: string; loaded_context_length: number | null };
    process.stdout.write(`loaded ${result.id} (context ${result.loaded_context_length ?? "?"})\n`);
  });
}

export function registerUnloadCommand(program: Command): void {
  addServerAddressOptions(
    program
      .command("unload")
      .description("unload a model from a running server")
      .argument("<model>", "model id"),
  ).action(async (model: string, options: ServerAddressOptions) => {
    const result = (await callServer(options, "POST", "/api/v0/unload", { model })) as { unloaded: boolean };
    process.stdout.write(result.unloaded ? `unloaded ${model}\n` : `${model} was not loaded\n`);
  });
}
