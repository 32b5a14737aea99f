/**
 * `lmhost serve`: starts the server on the configured models; SIGINT/SIGTERM stop it gracefully, and so
 * does the exit of the npm process that started it (parent-watch.ts).
 */
import type { Command } from "commander";
import { parseByteSize, resolveConfig, type ConfigInput } from "../config.js";
import { startedByNpm, watchParent } from "./parent-watch.js";

interface ServeFlags {
  host?: string;
  port?: string;
  modelsDir?: string;
  model?: string[];
  chatTemplate?: string;
  demo?: boolean;
  dataDir?: string;
  threads?: string;
  parallel?: string;
  maxQueue?: string;
  contextLength?: string;
  ttl?: string;
  maxLoaded?: string;
  apiKey?: string;
  /** `--cors` alone (the old boolean form, every origin) or a comma list of origins. */
  cors?: boolean | string;
  allowedHosts?: string;
  pinCpu?: boolean;
  logLevel?: string;
  logFormat?: string;
  bodyLimit?: string;
  storeMaxAge?: string;
  storeMaxCount?: string;
  storeMaxBytes?: string;
  allowRemoteMcp?: boolean;
  mcpAllowedHosts?: string;
  mcpCallTimeout?: string;
  reasoningSummary?: string;
  promptCacheSize?: string;
}

const number = (value: string | undefined): number | undefined =>
  value === undefined ? undefined : Number(value);

/** Only the flags the user gave, so environment and config-file values are not overridden by defaults. */
export function flagsToConfig(flags: ServeFlags): ConfigInput {
  const entries: [string, unknown][] = [
    ["host", flags.host],
    ["port", number(flags.port)],
    ["modelsDir", flags.modelsDir],
    ["models", flags.model],
    ["chatTemplate", flags.chatTemplate],
    ["demo", flags.demo],
    ["dataDir", flags.dataDir],
    ["threads", number(flags.threads)],
    ["parallel", number(flags.parallel)],
    ["maxQueue", number(flags.maxQueue)],
    ["contextLength", number(flags.contextLength)],
    ["ttlSeconds", number(flags.ttl)],
    ["maxLoaded", number(flags.maxLoaded)],
    ["apiKey", flags.apiKey],
    ["cors", flags.cors],
    ["allowedHosts", flags.allowedHosts],
    ["pinCpu", flags.pinCpu],
    ["logLevel", flags.logLevel],
    ["logFormat", flags.logFormat],
    ["bodyLimitBytes", number(flags.bodyLimit)],
    ["storeMaxAgeSeconds", number(flags.storeMaxAge)],
    ["storeMaxCount", number(flags.storeMaxCount)],
    ["storeMaxBytes", number(flags.storeMaxBytes)],
    ["allowRemoteMcp", flags.allowRemoteMcp],
    ["mcpAllowedHosts", flags.mcpAllowedHosts],
    ["mcpCallTimeoutSeconds", number(flags.mcpCallTimeout)],
    ["reasoningSummary", flags.reasoningSummary],
    [
      "promptCacheSize",
      flags.promptCacheSize === undefined ? undefined : parseByteSize(flags.promptCacheSize),
    ],
  ];
  return Object.fromEntries(entries.filter(([, value]) => value !== undefined)) as ConfigInput;
}

export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("start the server (OpenAI-compatible /v1 API and the native /api/v0 API)")
    .argument("[model-files...]", "GGUF files to serve (same as -m <file>)")
    .option("--host <host>", "address to bind (default 127.0.0.1; env LMHOST_HOST)")
    .option("--port <port>", "port (default 1234; env LMHOST_PORT)")
    .option(
      "--models-dir <dir>",
      "models folder in LM Studio layout (default ~/.lmhost/models; env LMHOST_MODELS_DIR)",
    )
    .option("-m, --model <file...>", "a .gguf file to serve (repeatable; also as a plain argument)")
    .option(
      "--chat-template <template>",
      "chat template for the --model files: a wrapper name (chatml, llama2Chat, general, ...) or a Jinja template",
    )
    .option("--demo", "also serve the built-in demo model lmhost-demo (default: only when no model is found)")
    .option("--no-demo", "never serve the built-in demo model")
    .option(
      "--data-dir <dir>",
      "where stored responses and config.json live (default ~/.lmhost; env LMHOST_DATA_DIR)",
    )
    .option("--threads <n>", "CPU threads per model (default: physical cores)")
    .option(
      "--parallel <n>",
      "parallel sequences per loaded model (default 4, fewer when each would get less than 16,384 tokens of context)",
    )
    .option("--max-queue <n>", "requests that may wait for a sequence before 429 (default 64)")
    .option(
      "--context-length <n>",
      "context length per sequence, at most the model's training context (default: up to 32,768, what fits in a quarter of the memory)",
    )
    .option("--ttl <seconds>", "unload a model after this many idle seconds (default 3600)")
    .option("--max-loaded <n>", "models kept loaded at once, least recently used evicted (default 1)")
    .option(
      "--api-key <key>",
      "require `Authorization: Bearer <key>` or `x-api-key: <key>` on /v1 and /api; never empty (env LMHOST_API_KEY)",
    )
    .option(
      "--cors [origins]",
      "browser origins allowed to call lmhost, comma-separated (http://localhost:5173,https://app.example; http://localhost:* for any port; '*' or a bare --cors for every origin). Default: none",
    )
    .option(
      "--allowed-hosts <hosts>",
      "host names requests may be addressed to besides localhost, loopback and the bound address, comma-separated ('.example.com' for subdomains; '*' turns the check off)",
    )
    .option("--pin-cpu", "with --threads 1, pin the process to one CPU (can be faster on a quiet machine)")
    .option(
      "--log-level <level>",
      "silent | error | warn | info | debug (default info: start-up, one line per request, model loads)",
    )
    .option("--log-format <format>", "text | json (one JSON object per line: time, level, msg, fields)")
    .option("--body-limit <bytes>", "largest request body accepted (default 20971520)")
    .option("--store-max-age <seconds>", "delete stored responses older than this")
    .option("--store-max-count <n>", "keep at most this many stored responses")
    .option(
      "--store-max-bytes <bytes>",
      "cap on the response store's size; beyond it responses fail as unstored (as on a full disk)",
    )
    .option("--allow-remote-mcp", "let requests use remote MCP servers (tools of type mcp with a server_url)")
    .option(
      "--mcp-allowed-hosts <hosts>",
      "hosts whose loopback/private addresses remote MCP servers may use, e.g. 127.0.0.1,localhost",
    )
    .option("--mcp-call-timeout <seconds>", "how long an MCP call may take (default 60)")
    .option(
      "--reasoning-summary <mode>",
      'reasoning summaries: "reasoning" (default; the reasoning text itself) or "none"',
    )
    .option(
      "--prompt-cache-size <bytes>",
      "bound on <data-dir>/prompt-cache, the saved KV states of long prompt prefixes (e.g. 2GiB, 512MiB; 0 turns it off; default 2GiB; env LMHOST_PROMPT_CACHE_SIZE)",
    )
    .action(async (modelFiles: string[], flags: ServeFlags) => {
      const parentAtStart = process.ppid;
      const models = [...(flags.model ?? []), ...modelFiles];
      const config = resolveConfig(
        flagsToConfig({ ...flags, ...(models.length > 0 ? { model: models } : {}) }),
      );
      // Imported here so the other commands (and --help / --version) do not load node-llama-cpp.
      const { startServer } = await import("../server/start.js");
      // Ctrl-C while the models load: stop at once, quietly (nothing is running yet).
      const early = () => process.exit(130);
      process.once("SIGINT", early);
      process.once("SIGTERM", early);
      const server = await startServer(config);
      process.removeListener("SIGINT", early);
      process.removeListener("SIGTERM", early);
      let stopping = false;
      const stop = (reason: string, code: number) => {
        if (stopping) return;
        stopping = true;
        server.deps.logger?.info(reason);
        const hardExit = setTimeout(() => process.exit(code === 0 ? 1 : code), 5000);
        hardExit.unref();
        server.close().then(
          () => process.exit(code),
          (error: unknown) => {
            process.stderr.write(`lmhost: shutdown failed: ${(error as Error).message}\n`);
            process.exit(1);
          },
        );
      };
      // A second Ctrl-C while shutting down exits at once.
      process.on("SIGINT", () => (stopping ? process.exit(130) : stop("received SIGINT", 0)));
      process.once("SIGTERM", () => stop("received SIGTERM", 0));
      if (startedByNpm()) {
        watchParent(() => stop("the npm process that started lmhost has exited", 0), { parentAtStart });
      }
    });
}
