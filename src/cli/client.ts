/** Talks to a running lmhost server for `ps`, `load` and `unload` (same flags and env as `serve`). */
import type { Command } from "commander";

export interface ServerAddressOptions {
  host: string;
  port: string;
  apiKey?: string;
}

export function addServerAddressOptions(command: Command): Command {
  return command
    .option("--host <host>", "server host", process.env.LMHOST_HOST ?? "127.0.0.1")
    .option("--port <port>", "server port", process.env.LMHOST_PORT ?? "1234")
    .option("--api-key <key>", "API key of the server (env LMHOST_API_KEY)");
}

export async function callServer(
  options: ServerAddressOptions,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
): Promise<unknown> {
  const apiKey = options.apiKey ?? process.env.LMHOST_API_KEY;
  const url = `http://${options.host.includes(":") ? `[${options.host}]` : options.host}:${options.port}${path}`;
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers: {
        "content-type": "application/json",
        ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch {
    throw new Error(`no lmhost server answers at ${url} (start one with \`lmhost serve\`)`);
  }
  const payload = (await response.json().catch(() => ({}))) as { error?: { message?: string } };
  if (!response.ok) throw new Error(payload.error?.message ?? `server answered ${response.status}`);
  return payload;
}
