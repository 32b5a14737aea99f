/** Talks to a running lmhost server for `ps`, `load` and `unload` (same flags and env as `serve`). */
import type { Command } from "commander";
import { resolveConfig } from "../config.js";

/** Flags as given; unset ones come from the environment, then `<data-dir>/config.json`, as for `serve`. */
export interface ServerAddressOptions {
  host?: string;
  port?: string;
  apiKey?: string;
  dataDir?: string;
}

export function addServerAddressOptions(command: Command): Command {
  return command
    .option("--host <host>", "server host (default 127.0.0.1; env LMHOST_HOST)")
    .option("--port <port>", "server port (default 1234; env LMHOST_PORT)")
    .option("--api-key <key>", "API key of the server (env LMHOST_API_KEY)")
    .option("--data-dir <dir>", "data dir holding config.json (default ~/.lmhost)");
}

/** The base URL `callServer` uses for these options (a server bound to all interfaces is reached on loopback). */
export function serverUrl(options: ServerAddressOptions): { url: string; apiKey: string | undefined } {
  const config = resolveConfig({
    ...(options.host === undefined ? {} : { host: options.host }),
    ...(options.port === undefined ? {} : { port: Number(options.port) }),
    ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }),
    ...(options.dataDir === undefined ? {} : { dataDir: options.dataDir }),
  });
  const host = config.host === "0.0.0.0" || config.host === "::" ? "127.0.0.1" : config.host;
  return { url: `http://${host.includes(":") ? `[${host}]` : host}:${config.port}`, apiKey: config.apiKey };
}

/** GET `path` from a server if one answers within `timeoutMs` with a 2xx JSON body; otherwise undefined. */
export async function tryServer(
  options: ServerAddressOptions,
  path: string,
  timeoutMs = 750,
): Promise<{ url: string; body: unknown } | undefined> {
  const { url, apiKey } = serverUrl(options);
  try {
    const response = await fetch(`${url}${path}`, {
      headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {},
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!response.ok) return undefined;
    return { url, body: await response.json() };
  } catch {
    return undefined;
  }
}

export async function callServer(
  options: ServerAddressOptions,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
): Promise<unknown> {
  const config = resolveConfig({
    ...(options.host === undefined ? {} : { host: options.host }),
    ...(options.port === undefined ? {} : { port: Number(options.port) }),
    ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }),
    ...(options.dataDir === undefined ? {} : { dataDir: options.dataDir }),
  });
  const apiKey = config.apiKey;
  // A server bound to all interfaces is reached on loopback.
  const host = config.host === "0.0.0.0" || config.host === "::" ? "127.0.0.1" : config.host;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${config.port}${path}`;
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
