/**
 * Real MCP servers for tests, on loopback only: `@modelcontextprotocol/server-everything` as a child
 * process (Streamable HTTP or the older HTTP+SSE transport; stopped by its PID), and an in-process server
 * built with the MCP SDK whose tools record the headers they were called with and can be slow or fail.
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createServer as createHttpServer, type IncomingMessage, type Server } from "node:http";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import path from "node:path";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";
import { repositoryRoot } from "./paths.js";

export const everythingEntry = path.join(
  repositoryRoot,
  "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
);

async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface RunningMcpServer {
  /** The MCP endpoint on 127.0.0.1 (`/mcp` for Streamable HTTP, `/sse` for SSE). */
  url: string;
  pid: number | undefined;
  stop(): Promise<void>;
}

/** server-everything in `streamableHttp` or `sse` mode on a free loopback port. */
export async function startEverything(mode: "streamableHttp" | "sse"): Promise<RunningMcpServer> {
  const port = await freePort();
  const child = spawn(process.execPath, [everythingEntry, mode], {
    env: { ...process.env, PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server-everything did not start:\n${output}`)), 20_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (/listening on port|running on port/i.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", () => reject(new Error(`server-everything exited:\n${output}`)));
  });
  return {
    url: `http://127.0.0.1:${port}${mode === "sse" ? "/sse" : "/mcp"}`,
    pid: child.pid,
    stop: async () => {
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGTERM");
      await exited;
    },
  };
}

export interface RecordingMcpServer extends RunningMcpServer {
  /** The headers of every HTTP request the server received, in order. */
  headers: IncomingMessage["headers"][];
  /** How many calls of the `gate` tool have started. */
  gateCalls: number;
  /** Lets every pending and later `gate` call answer; `closeGate` makes later ones wait again. */
  openGate(): void;
  closeGate(): void;
}

/**
 * An in-process MCP server (the SDK's McpServer over stateless Streamable HTTP) with tools `add`
 * (returns a + b), `slow` (answers after `milliseconds`), `fail` (a tool error), `whoami` (returns the
 * Authorization header it got) and `gate` (answers once the test opens the gate).
 */
export async function startRecordingServer(): Promise<RecordingMcpServer> {
  const headers: IncomingMessage["headers"][] = [];
  const newGate = () => {
    let resolve: () => void = () => undefined;
    const promise = new Promise<void>((done) => (resolve = done));
    return { promise, resolve };
  };
  let gate = newGate();
  let gateCalls = 0;
  const newServer = (request: IncomingMessage) => {
    const server = new McpServer({ name: "recording", version: "1.0.0" });
    server.registerTool(
      "add",
      { description: "Adds two numbers", inputSchema: { a: z.number(), b: z.number() } },
      async ({ a, b }) => ({ content: [{ type: "text", text: String(a + b) }] }),
    );
    server.registerTool(
      "slow",
      { description: "Answers late", inputSchema: { milliseconds: z.number() } },
      async ({ milliseconds }) => {
        await new Promise((resolve) => setTimeout(resolve, milliseconds));
        return { content: [{ type: "text", text: "finally" }] };
      },
    );
    server.registerTool("fail", { description: "Always fails", inputSchema: {} }, async () => ({
      isError: true,
      content: [{ type: "text", text: "the tool broke" }],
    }));
    server.registerTool("gate", { description: "Opens the gate", inputSchema: {} }, async () => {
      gateCalls++;
      await gate.promise;
      return { content: [{ type: "text", text: "the gate is open" }] };
    });
    server.registerTool("whoami", { description: "Who is calling", inputSchema: {} }, async () => ({
      content: [{ type: "text", text: String(request.headers.authorization ?? "nobody") }],
    }));
    return server;
  };
  const http: Server = createHttpServer((request, response) => {
    headers.push(request.headers);
    void (async () => {
      const server = newServer(request);
      // Stateless: no session ids (the option left out means none).
      const transport = new StreamableHTTPServerTransport({});
      response.on("close", () => {
        void transport.close();
        void server.close();
      });
      await server.connect(transport);
      const chunks: Buffer[] = [];
      for await (const chunk of request) chunks.push(chunk as Buffer);
      const text = Buffer.concat(chunks).toString();
      await transport.handleRequest(request, response, text === "" ? undefined : JSON.parse(text));
    })().catch((error: unknown) => {
      if (!response.headersSent) response.writeHead(500).end(String(error));
    });
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  const port = (http.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    pid: process.pid,
    headers,
    get gateCalls() {
      return gateCalls;
    },
    openGate: () => gate.resolve(),
    closeGate: () => {
      gate.resolve();
      gate = newGate();
      gateCalls = 0;
    },
    stop: async () => {
      gate.resolve();
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    },
  };
}

export const uniqueLabel = () => `srv_${randomUUID().slice(0, 8)}`;
