/**
 * The guards every request passes before a route sees it, so a web page the user happens to visit cannot
 * drive a local lmhost:
 * - Host: only names of this server (localhost, loopback addresses, the bound address — every interface
 *   address and the machine's name when bound to all — and `--allowed-hosts`), against DNS rebinding.
 * - Origin: a request from a browser page must come from an origin given with `--cors`; every other one
 *   is refused (403), including its preflight, whatever its method or content type.
 * - API key: `Authorization: Bearer <key>` or `x-api-key: <key>`, compared in constant time.
 * Requests without a Host or Origin header (in-process `app.request`, curl without -H, SDKs in Node) pass
 * those two checks: only browsers need them, and browsers always send both.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { isIPv6 } from "node:net";
import { hostname as machineHostname, networkInterfaces } from "node:os";
import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import { allowedHostList, corsOriginList, type AllowedHostsSetting, type CorsSetting } from "../config.js";
import { ApiError } from "../shared/errors.js";
import type { AppEnv } from "./deps.js";

/** Addresses lmhost listens on every interface for: the machine's own addresses are its names then. */
const ALL_INTERFACES = new Set(["0.0.0.0", "::", "[::]", ""]);

/** `[::1]`-style for IPv6 (as URL.hostname writes it), lower-case, without a trailing dot. */
function normaliseHostName(name: string): string {
  const lower = name.toLowerCase().replace(/\.$/, "");
  return isIPv6(lower) ? `[${lower}]` : lower;
}

function isLoopbackName(hostName: string): boolean {
  if (hostName === "localhost" || hostName.endsWith(".localhost")) return true;
  if (/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostName)) return true;
  // URL writes IPv4-mapped IPv6 in hex: [::ffff:127.0.0.1] is [::ffff:7f00:1].
  return hostName === "[::1]" || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(hostName);
}

/** The host name of a Host header value (`name`, `name:port`, `[v6]:port`), or undefined if malformed. */
function hostNameOf(hostHeader: string): string | undefined {
  try {
    const url = new URL(`http://${hostHeader}`);
    if (url.pathname !== "/" || url.username !== "" || url.search !== "") return undefined;
    return normaliseHostName(url.hostname);
  } catch {
    return undefined;
  }
}

export interface HostRules {
  /** The address bound (`--host`); default 127.0.0.1. */
  boundHost?: string;
  allowedHosts?: AllowedHostsSetting;
}

/** Whether a request addressed to `hostName` (already normalised) is for this server. */
export function createHostMatcher(rules: HostRules): (hostName: string) => boolean {
  const extra = allowedHostList(rules.allowedHosts ?? []);
  if (extra.includes("*")) return () => true;
  const names = new Set(extra.filter((entry) => !entry.startsWith(".")));
  const suffixes = extra.filter((entry) => entry.startsWith("."));
  const bound = normaliseHostName(rules.boundHost ?? "127.0.0.1");
  const bindsAll = ALL_INTERFACES.has(bound);
  if (!bindsAll) names.add(bound);
  return (hostName) => {
    if (isLoopbackName(hostName) || names.has(hostName)) return true;
    if (suffixes.some((suffix) => hostName.endsWith(suffix) || hostName === suffix.slice(1))) return true;
    // Read each time: interface addresses come and go (DHCP, VPNs) while the server runs.
    return bindsAll && ownNames().has(hostName);
  };
}

function ownNames(): Set<string> {
  const names = new Set([normaliseHostName(machineHostname())]);
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) names.add(normaliseHostName(address.address.replace(/%.*$/, "")));
  }
  return names;
}

export function hostGuard(rules: HostRules): MiddlewareHandler<AppEnv> {
  const allowed = createHostMatcher(rules);
  return async (context, next) => {
    const host = context.req.header("host");
    if (host === undefined) return next();
    const hostName = hostNameOf(host);
    if (hostName === undefined || !allowed(hostName)) {
      const suggestion =
        hostName === undefined ? "" : ` To reach it by this name, start it with --allowed-hosts ${hostName}.`;
      throw new ApiError({
        status: 403,
        message: `Host '${host}' is not allowed: lmhost answers only requests addressed to localhost, a loopback address or the address it listens on (a guard against DNS rebinding).${suggestion}`,
        code: "host_not_allowed",
      });
    }
    return next();
  };
}

/** Whether a browser page of `origin` (the Origin header's value) may call lmhost. */
export function createOriginMatcher(setting: CorsSetting): (origin: string) => boolean {
  const allowed = new Set(corsOriginList(setting));
  if (allowed.has("*")) return () => true;
  return (origin) => {
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      return false;
    }
    // "null" (sandboxed frames, file: pages, redirects) is never one of the listed origins.
    if (url.origin === "null" || url.origin !== origin.toLowerCase().replace(/\/$/, "")) return false;
    return allowed.has(url.origin) || allowed.has(`${url.protocol}//${url.hostname}:*`);
  };
}

/**
 * Refuses (403) any request whose Origin is not allowed — before CORS, auth and the body are looked at —
 * then answers CORS for the allowed ones. No fixed allowHeaders: Hono echoes what the preflight asks for,
 * which the official SDK needs (its browser build sends X-Stainless-* headers).
 */
export function originGuards(setting: CorsSetting): MiddlewareHandler<AppEnv>[] {
  const allowed = createOriginMatcher(setting);
  const everyOrigin = corsOriginList(setting).includes("*");
  const refuse: MiddlewareHandler<AppEnv> = async (context, next) => {
    const origin = context.req.header("origin");
    if (origin === undefined || allowed(origin)) return next();
    throw new ApiError({
      status: 403,
      message: `Origin '${origin}' is not allowed: browser pages may call lmhost only from the origins given with --cors (none by default). To allow this one, start lmhost with --cors ${origin}.`,
      code: "origin_not_allowed",
    });
  };
  const corsHeaders = cors({
    origin: everyOrigin ? "*" : (origin) => (allowed(origin) ? origin : null),
    exposeHeaders: ["x-request-id", "Retry-After"],
  });
  return [refuse, corsHeaders];
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/**
 * Requires the API key as `Authorization: Bearer <key>` or `x-api-key: <key>` (Anthropic's clients). Both
 * sides are hashed first, so the comparison takes the same time whatever the key's length or content.
 */
export function apiKeyGuard(apiKey: string): MiddlewareHandler<AppEnv> {
  if (apiKey.trim() === "") throw new Error("The API key is empty: leave it out to run without auth.");
  const expected = sha256(apiKey);
  return async (context, next) => {
    if (context.req.method === "OPTIONS") return next();
    const authorization = context.req.header("authorization");
    const bearer =
      authorization === undefined ? undefined : /^Bearer\s+(.+)$/i.exec(authorization)?.[1]?.trim();
    const headerKey = context.req.header("x-api-key")?.trim();
    const given = [bearer, headerKey].filter((key): key is string => key !== undefined);
    if (given.some((key) => timingSafeEqual(sha256(key), expected))) return next();
    throw new ApiError({
      status: 401,
      message:
        given.length > 0
          ? "Incorrect API key provided."
          : "Missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`.",
      code: "invalid_api_key",
    });
  };
}

/** The start-up log's account of who may call: auth, browser origins and host names. */
export function describeGuards(config: {
  apiKey?: string | undefined;
  cors: CorsSetting;
  allowedHosts: AllowedHostsSetting;
  host: string;
}): string {
  const auth =
    config.apiKey === undefined
      ? "auth off (no --api-key: any local client may call)"
      : "auth on (API key required on /v1 and /api)";
  const origins = corsOriginList(config.cors);
  const originText = origins.includes("*")
    ? "browser origins: every origin (--cors '*')"
    : origins.length === 0
      ? "browser origins: none (--cors to allow some)"
      : `browser origins: ${origins.join(", ")}`;
  const extraHosts = allowedHostList(config.allowedHosts);
  const bindsAll = ALL_INTERFACES.has(normaliseHostName(config.host));
  const hostText = extraHosts.includes("*")
    ? "hosts: any (--allowed-hosts '*')"
    : `hosts: localhost, loopback addresses, ${bindsAll ? "this machine's addresses and name" : normaliseHostName(config.host)}${extraHosts.length > 0 ? `, ${extraHosts.join(", ")}` : ""}`;
  return `${auth}; ${originText}; ${hostText}`;
}
