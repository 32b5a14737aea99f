/** The `lmhost` command line: one file per command, wired here with commander. */
import { readFileSync } from "node:fs";
import { Command } from "commander";
import { registerGetCommand } from "./get.js";
import { registerLoadCommand, registerUnloadCommand } from "./load.js";
import { registerLsCommand } from "./ls.js";
import { registerMcpCommand } from "./mcp.js";
import { registerPsCommand } from "./ps.js";
import { registerRmCommand } from "./rm.js";
import { registerServeCommand } from "./serve.js";

function packageVersion(): string {
  const packageJson = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return packageJson.version;
}

export function buildProgram(): Command {
  const program = new Command()
    .name("lmhost")
    .description(
      "A local LLM server with a drop-in OpenAI Responses API, running GGUF models with llama.cpp.",
    )
    .version(packageVersion(), "-v, --version")
    .showHelpAfterError();
  registerServeCommand(program);
  registerLsCommand(program);
  registerPsCommand(program);
  registerLoadCommand(program);
  registerUnloadCommand(program);
  registerMcpCommand(program);
  registerGetCommand(program);
  registerRmCommand(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    process.stderr.write(`lmhost: ${(error as Error).message}\n`);
    process.exitCode = 1;
  }
}
