/**
 * MCP client sessions (the official MCP TypeScript SDK), pooled per server and credentials: a request's
 * remote server (`server_url` + its headers) or a local server from mcp.json (stdio command, or url) gets
 * one connected client that later requests reuse; it closes after `idleSeconds` unused and on shutdown.
 *
 * Remote servers connect over Streamable HTTP and fall back to the older HTTP+SSE transport when the
 * server does not speak it; every connection of a remote server goes through the address guard
 * (address-guard.ts). Servers from mcp.json are the operator's and are not guarded.
 *
 * Nothing here throws a secret: errors name the server label and what failed, never the headers.
 */
import { createHash } from "node:crypto";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { silentLogger, type Logger } from "../../shared/logger.js";
import { AddressRefusedError, guardedFetch, type GuardedFetch } from "./address-guard.js";
import type { McpCallResult, McpToolInfo } from "./types.js";

/** Where an MCP server is and how to reach it. */
export type McpServerTarget =
  | {
      kind: "remote";
      label: string;
      url: string;
      /** Sent on every request (`headers`, and `authorization` as a Bearer token); never stored or logged. */
      headers: Record<string, string>;
      /** From mcp.json: the operator's own server, not checked by the address guard. */
      trusted: boolean;
    }
  | {
      kind: "stdio";
      label: string;
      command: string;
      args: string[];
      env: Record<string, string>;
    };

export class McpServerError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "McpServerError";
  }
}

export interface McpClientPoolOptions {
  /** Hosts whose loopback / private addresses remote servers may use (`--mcp-allowed-hosts`). */
  allowedHosts?: Iterable<string>;
  /** Close a client unused this long (default 300 s). */
  idleSeconds?: number;
  /** Per-call and per-listing timeout (default 60 s). */
  callTimeoutMilliseconds?: number;
  logger?: Logger;
}

interface PooledClient {
  connected: Promise<Client>;
  guard: GuardedFetch | undefined;
  idleTimer: NodeJS.Timeout | undefined;
  users: number;
  /** Out of the pool after a broken connection; closed once its last user is done. */
  broken: boolean;
}

/**
 * Whether an error means the session itself is unusable (so the pool drops it), rather than one call
 * failing: a protocol error, a timeout or a cancelled call leaves the session good for the others.
 */
function breaksSession(error: unknown, signal: AbortSignal | undefined): boolean {
  if (signal?.aborted === true) return false;
  if (error instanceof McpError) return error.code === ErrorCode.ConnectionClosed;
  return true;
}

const CLIENT_INFO = { name: "lmhost", version: "0.1.0" };
/** Pages of tools/list read at most (a server that keeps sending cursors cannot hold a response). */
const MAX_TOOL_PAGES = 100;

/** A key for the pool: the server and a digest of its credentials (so no secret sits in a map key). */
function poolKey(target: McpServerTarget): string {
  if (target.kind === "stdio")
    return `stdio:${JSON.stringify([target.label, target.command, target.args, target.env])}`;
  const credentials = createHash("sha256")
    .update(JSON.stringify(Object.entries(target.headers).sort()))
    .digest("hex");
  return `remote:${target.trusted ? "trusted" : "guarded"}:${target.url}:${credentials}`;
}

/** The text a tool result gives the model: its text parts, other parts as JSON. */
export function resultText(content: unknown): string {
  if (!Array.isArray(content)) return JSON.stringify(content ?? "");
  return content
    .map((part: unknown) => {
      if (part !== null && typeof part === "object" && (part as { type?: unknown }).type === "text")
        return String((part as { text?: unknown }).text ?? "");
      return JSON.stringify(part);
    })
    .join("\n");
}

export class McpClientPool {
  readonly #clients = new Map<string, PooledClient>();
  readonly #allowedHosts: ReadonlySet<string>;
  readonly #idleMilliseconds: number;
  readonly #timeout: number;
  readonly #logger: Logger;
  #closed = false;

  constructor(options: McpClientPoolOptions = {}) {
    this.#allowedHosts = new Set([...(options.allowedHosts ?? [])].map((host) => host.trim().toLowerCase()));
    this.#idleMilliseconds = (options.idleSeconds ?? 300) * 1000;
    this.#timeout = options.callTimeoutMilliseconds ?? 60_000;
    this.#logger = options.logger ?? silentLogger;
  }

  /** The server's tools (tools/list, every page). Throws McpServerError naming the label. */
  async listTools(target: McpServerTarget, signal?: AbortSignal): Promise<McpToolInfo[]> {
    return this.#use(
      target,
      "list tools",
      async (client) => {
        const tools: McpToolInfo[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const page = await client.listTools(cursor === undefined ? {} : { cursor }, {
            timeout: this.#timeout,
            ...(signal !== undefined ? { signal } : {}),
          });
          for (const tool of page.tools) {
            tools.push({
              name: tool.name,
              ...(tool.description !== undefined ? { description: tool.description } : {}),
              inputSchema: tool.inputSchema as Record<string, unknown>,
              ...(tool.annotations !== undefined
                ? { annotations: tool.annotations as Record<string, unknown> }
                : {}),
            });
          }
          cursor = page.nextCursor;
          pages += 1;
        } while (cursor !== undefined && tools.length < 10_000 && pages < MAX_TOOL_PAGES);
        return tools;
      },
      signal,
    );
  }

  /** Calls a tool; a failure of the call or of the server is an `error` result, never a throw. */
  async callTool(
    target: McpServerTarget,
    name: string,
    args: Record<string, unknown>,
    signal?: AbortSignal,
  ): Promise<McpCallResult> {
    try {
      return await this.#use(
        target,
        `call ${name}`,
        async (client) => {
          const result = await client.callTool({ name, arguments: args }, undefined, {
            timeout: this.#timeout,
            ...(signal !== undefined ? { signal } : {}),
          });
          const text = resultText(result.content ?? result.toolResult);
          return result.isError === true ? { error: text || `tool ${name} failed` } : { output: text };
        },
        signal,
      );
    } catch (error) {
      return { error: (error as Error).message };
    }
  }

  /** Closes every client; later use throws. */
  async close(): Promise<void> {
    this.#closed = true;
    const entries = [...this.#clients.values()];
    this.#clients.clear();
    await Promise.allSettled(entries.map(async (entry) => this.#closeEntry(entry)));
  }

  /** The hosts whose private addresses remote servers may use. */
  get allowedHosts(): ReadonlySet<string> {
    return this.#allowedHosts;
  }

  /** How many clients are open (for tests and the idle check). */
  get size(): number {
    return this.#clients.size;
  }

  async #use<Result>(
    target: McpServerTarget,
    what: string,
    use: (client: Client) => Promise<Result>,
    signal?: AbortSignal,
  ): Promise<Result> {
    if (this.#closed) throw new McpServerError(`MCP server '${target.label}': lmhost is shutting down`);
    const key = poolKey(target);
    let entry = this.#clients.get(key);
    if (entry === undefined) {
      const guard =
        target.kind === "remote" && !target.trusted ? guardedFetch(this.#allowedHosts) : undefined;
      entry = {
        connected: this.#connect(target, guard),
        guard,
        idleTimer: undefined,
        users: 0,
        broken: false,
      };
      this.#clients.set(key, entry);
    }
    const current = entry;
    current.users += 1;
    if (current.idleTimer !== undefined) clearTimeout(current.idleTimer);
    let client: Client;
    try {
      client = await current.connected;
    } catch (error) {
      // A failed connection is not kept: the next request connects again.
      current.broken = true;
      if (this.#clients.get(key) === current) this.#clients.delete(key);
      current.users -= 1;
      if (current.users === 0) void this.#closeEntry(current);
      throw new McpServerError(`MCP server '${target.label}' failed to ${what}: ${describe(error)}`, {
        cause: error,
      });
    }
    try {
      return await use(client);
    } catch (error) {
      // A broken session leaves the pool (closed when its other calls are done); a failed call does not.
      if (breaksSession(error, signal)) {
        current.broken = true;
        if (this.#clients.get(key) === current) this.#clients.delete(key);
      }
      throw new McpServerError(`MCP server '${target.label}' failed to ${what}: ${describe(error)}`, {
        cause: error,
      });
    } finally {
      current.users -= 1;
      if (current.users === 0 && current.broken) void this.#closeEntry(current);
      else if (current.users === 0 && this.#clients.get(key) === current) {
        current.idleTimer = setTimeout(() => {
          if (this.#clients.get(key) === current && current.users === 0) {
            this.#clients.delete(key);
            void this.#closeEntry(current);
          }
        }, this.#idleMilliseconds);
        current.idleTimer.unref();
      }
    }
  }

  async #connect(target: McpServerTarget, guard: GuardedFetch | undefined): Promise<Client> {
    if (target.kind === "stdio") {
      const client = new Client(CLIENT_INFO);
      await client.connect(
        new StdioClientTransport({
          command: target.command,
          args: target.args,
          env: { ...inheritedEnvironment(), ...target.env },
          stderr: "ignore",
        }),
      );
      this.#logger.debug(`MCP server '${target.label}' started (${target.command})`);
      return client;
    }
    const url = new URL(target.url);
    const options = {
      requestInit: { headers: target.headers },
      ...(guard !== undefined ? { fetch: guard.fetch } : {}),
    };
    const streamable = new Client(CLIENT_INFO);
    try {
      await streamable.connect(new StreamableHTTPClientTransport(url, options) as Transport);
      return streamable;
    } catch (streamableError) {
      // A failed client still holds its transport (and an SSE one would keep reconnecting): close it.
      await streamable.close().catch(() => undefined);
      if (streamableError instanceof AddressRefusedError || hasCause(streamableError, AddressRefusedError))
        throw streamableError;
      // An older server: the HTTP+SSE transport (GET opens the event stream, POSTs go to its endpoint).
      this.#logger.debug(
        `MCP server '${target.label}': Streamable HTTP failed (${describe(streamableError)}), trying SSE`,
      );
      const client = new Client(CLIENT_INFO);
      try {
        await client.connect(
          new SSEClientTransport(url, {
            ...options,
            ...(guard !== undefined
              ? {
                  eventSourceInit: {
                    fetch: async (input, init) => {
                      // The SDK's own headers (Accept, protocol version) may come as a Headers object.
                      const headers = new Headers(init?.headers);
                      for (const [name, value] of Object.entries(target.headers)) headers.set(name, value);
                      return guard.fetch(String(input), { ...init, headers });
                    },
                  },
                }
              : {}),
          }) as Transport,
        );
        return client;
      } catch (sseError) {
        await client.close().catch(() => undefined);
        throw new McpServerError(`${describe(streamableError)}; over SSE: ${describe(sseError)}`, {
          cause: sseError,
        });
      }
    }
  }

  async #closeEntry(entry: PooledClient): Promise<void> {
    if (entry.idleTimer !== undefined) clearTimeout(entry.idleTimer);
    try {
      const client = await entry.connected;
      await client.close();
    } catch {
      // never connected, or already gone
    }
    await entry.guard?.close().catch(() => undefined);
  }
}

/** The environment a stdio server starts with: PATH and HOME-like basics (the SDK's default set). */
function inheritedEnvironment(): Record<string, string> {
  const names = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TMPDIR", "LANG"];
  return Object.fromEntries(
    names.flatMap((name) => (process.env[name] !== undefined ? [[name, process.env[name]]] : [])),
  );
}

function hasCause(error: unknown, type: new (...args: never[]) => Error): boolean {
  let current: unknown = error;
  for (let depth = 0; current instanceof Error && depth < 8; depth++) {
    if (current instanceof type) return true;
    current = (current as Error).cause;
  }
  return false;
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return `${error.message}${cause && !error.message.includes(cause.slice(2)) ? cause : ""}`;
}
