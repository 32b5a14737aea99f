/** What createApp needs: every I/O seam as an interface, so tests pass in-memory twins. */
import type { Hono } from "hono";
import type { Config } from "../config.js";
import type { Engine } from "../engine/types.js";
import type { DownloadJobs } from "../models/download/jobs.js";
import type { ModelService } from "../models/types.js";
import type { ResponseStore } from "../store/types.js";
import type { McpServerRequest, McpTools } from "../tools/mcp/types.js";
import type { Logger } from "../shared/logger.js";
import type { RequestUsage } from "./request-log.js";

/**
 * `host` (the bound address, default 127.0.0.1), `allowedHosts` (default none) and `cors` (default no
 * origin) feed the request guards; in-process callers may leave them out.
 */
export type AppConfig = Pick<Config, "apiKey" | "bodyLimitBytes"> &
  Partial<
    Pick<
      Config,
      "cors" | "host" | "allowedHosts" | "storeMaxAgeSeconds" | "storeMaxCount" | "modelsDir" | "dataDir"
    >
  >;

export interface AppDeps {
  engine: Engine;
  models: ModelService;
  store: ResponseStore;
  config: AppConfig;
  /**
   * The MCP servers requests may use and the policy `tools` of type mcp are checked against (remote servers
   * allowed?, the labels of mcp.json). Absent: a request with an MCP tool is a 400.
   */
  mcp?: McpTools & {
    policy: { allowRemote: boolean; localServers: ReadonlySet<string> };
    /** A 400 naming `tools[i].server_url` when the server's address is refused (address-guard.ts). */
    checkServer(server: McpServerRequest): Promise<void>;
  };
  logger?: Logger;
  /**
   * `POST /api/v0/download` jobs; absent: made from `config.modelsDir` (else `<dataDir>/models`), and the
   * download routes answer 503 when the config has neither.
   */
  downloads?: DownloadJobs;
  /** Aborted when the server shuts down: in-flight generations and background responses stop. */
  shutdownSignal?: AbortSignal;
  /**
   * How many background responses may wait (queued) for room in the engine's full queue before a new
   * background request is refused with 429 `queue_full` (default 1,024).
   */
  maxWaitingBackground?: number;
  /** Seconds between SSE keep-alive comments while nothing else is sent (default 10). */
  keepAliveSeconds?: number;
  /**
   * A streamed response whose model is still loading or waiting for a free sequence after this many
   * milliseconds starts streaming anyway (`response.created`, then keep-alives); a refusal after that is a
   * `response.failed` event instead of an HTTP error (default 1,000).
   */
  streamStartAfterMilliseconds?: number;
  /** "none": no reasoning summaries even when asked for (default "reasoning": the reasoning text itself). */
  reasoningSummary?: Config["reasoningSummary"];
  /**
   * AES-256 key sealing reasoning into `encrypted_content` (start.ts: `<data-dir>/reasoning.key`);
   * absent: a random key for this app's lifetime.
   */
  reasoningKey?: Buffer;
}

export interface AppVariables {
  requestId: string;
  /** Set by routes through reportUsage (request-log.ts) for the request's log line. */
  usage?: RequestUsage;
  /**
   * Set by streamSse when it writes an event stream straight to Node's response: its listeners run when
   * the stream is over, with a note when it did not end normally (the request log writes its line then).
   */
  streamEnd?: { onEnd(listener: (note?: string) => void): void };
}

export type AppEnv = { Variables: AppVariables };
export type App = Hono<AppEnv>;
