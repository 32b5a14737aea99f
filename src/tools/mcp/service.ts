/**
 * The MCP servers a running lmhost lets requests use: remote ones named by a request's `server_url`
 * (only with `--allow-remote-mcp`, through the address guard) and the operator's own from
 * `<data-dir>/mcp.json` (Claude Desktop's format: `{"mcpServers": {"name": {"command", "args", "env"} |
 * {"url", "headers"}}}`), named by label alone and trusted (no address guard). Implements the Responses
 * tool loop's `McpTools` over one pooled client per server and credentials.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { ApiError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { AddressRefusedError, checkUrlResolves } from "./address-guard.js";
import { McpClientPool, type McpServerTarget } from "./client-pool.js";
import type { McpCallResult, McpServerRequest, McpToolInfo, McpTools } from "./types.js";

const stdioServerSchema = z
  .object({
    command: z.string().min(1),
    args: z.array(z.string()).default([]),
    env: z.record(z.string(), z.string()).default({}),
  })
  .loose();
const urlServerSchema = z
  .object({
    url: z.url(),
    headers: z.record(z.string(), z.string()).default({}),
  })
  .loose();
const localServerSchema = z
  .union([stdioServerSchema, urlServerSchema])
  .transform((server) => server as z.output<typeof stdioServerSchema> | z.output<typeof urlServerSchema>);
const mcpFileSchema = z.object({ mcpServers: z.record(z.string(), localServerSchema) }).loose();

export type LocalMcpServers = Map<string, McpServerTarget>;

/** The servers of `<data-dir>/mcp.json` (none when it does not exist); a broken file names itself. */
export function readMcpConfig(dataDir: string): LocalMcpServers {
  const file = path.join(dataDir, "mcp.json");
  const servers: LocalMcpServers = new Map();
  if (!existsSync(file)) return servers;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new Error(`Cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
  const checked = mcpFileSchema.safeParse(parsed);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new Error(`Invalid ${file}: ${issue?.path.join(".") ?? ""}: ${issue?.message ?? "invalid"}`);
  }
  for (const [label, server] of Object.entries(checked.data.mcpServers)) {
    servers.set(
      label,
      "url" in server && typeof server.url === "string" && !("command" in server)
        ? {
            kind: "remote",
            label,
            url: server.url,
            headers: (server as z.output<typeof urlServerSchema>).headers,
            trusted: true,
          }
        : (() => {
            const stdio = server as z.output<typeof stdioServerSchema>;
            return {
              kind: "stdio" as const,
              label,
              command: stdio.command,
              args: stdio.args,
              env: stdio.env,
            };
          })(),
    );
  }
  return servers;
}

export interface McpServiceOptions {
  allowRemote: boolean;
  allowedHosts: readonly string[];
  localServers: LocalMcpServers;
  callTimeoutSeconds: number;
  idleSeconds?: number;
  logger?: Logger;
}

export class McpService implements McpTools {
  readonly #pool: McpClientPool;
  readonly #localServers: LocalMcpServers;
  readonly allowRemote: boolean;

  constructor(options: McpServiceOptions) {
    this.allowRemote = options.allowRemote;
    this.#localServers = options.localServers;
    this.#pool = new McpClientPool({
      allowedHosts: options.allowedHosts,
      callTimeoutMilliseconds: options.callTimeoutSeconds * 1000,
      ...(options.idleSeconds === undefined ? {} : { idleSeconds: options.idleSeconds }),
      ...(options.logger === undefined ? {} : { logger: options.logger }),
    });
  }

  /** What requests may use: the policy `toResponseRequest` checks MCP tools against. */
  get policy(): { allowRemote: boolean; localServers: ReadonlySet<string> } {
    return { allowRemote: this.allowRemote, localServers: new Set(this.#localServers.keys()) };
  }

  /** The configured local servers (for `lmhost mcp ls`). */
  get localServers(): ReadonlyMap<string, McpServerTarget> {
    return this.#localServers;
  }

  /**
   * A 400 naming `server_url` when a remote server's address is refused (loopback or private without
   * --mcp-allowed-hosts, link-local or metadata always), checked before the response starts.
   */
  async checkServer(server: McpServerRequest): Promise<void> {
    if (server.serverUrl === undefined) return;
    try {
      await checkUrlResolves(new URL(server.serverUrl), this.#pool.allowedHosts);
    } catch (error) {
      if (!(error instanceof AddressRefusedError)) throw error;
      throw ApiError.invalid(
        `MCP server '${server.serverLabel}': ${error.message}.`,
        `${server.param}.server_url`,
        "mcp_server_refused",
      );
    }
  }

  async listTools(server: McpServerRequest, signal?: AbortSignal): Promise<McpToolInfo[]> {
    return this.#pool.listTools(this.#target(server), signal);
  }

  async callTool(
    server: McpServerRequest,
    name: string,
    args: Record<string, unknown>,
    signal?: AbortSignal,
  ): Promise<McpCallResult> {
    return this.#pool.callTool(this.#target(server), name, args, signal);
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }

  #target(server: McpServerRequest): McpServerTarget {
    if (server.serverUrl === undefined) {
      const local = this.#localServers.get(server.serverLabel);
      if (local === undefined) throw new Error(`no MCP server '${server.serverLabel}' in mcp.json`);
      // A request's headers add to a local remote server's own.
      return local.kind === "remote" ? { ...local, headers: { ...local.headers, ...server.headers } } : local;
    }
    if (!this.allowRemote) throw new Error("remote MCP servers are off (--allow-remote-mcp)");
    return {
      kind: "remote",
      label: server.serverLabel,
      url: server.serverUrl,
      headers: server.headers,
      trusted: false,
    };
  }
}
