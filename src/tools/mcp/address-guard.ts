/**
 * The SSRF guard of remote MCP servers: a request's `server_url` may reach only public addresses, unless
 * its host is on the operator's allow-list (`--mcp-allowed-hosts`), which opens loopback, private and
 * unique-local addresses for that host. Link-local addresses (cloud metadata services live there) and
 * other special ranges are refused always. Only http and https.
 *
 * The check runs where the connection is made: `guardedFetch` resolves names through a lookup hook of its
 * own connection pool, so every address a name resolves to is checked when the socket connects (a name that
 * resolves to a public address for a first check and to 127.0.0.1 for the connection — DNS rebinding —
 * is still refused), and redirects are followed by hand, each hop checked again.
 */
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { BlockList, isIP, type LookupFunction } from "node:net";
import { Agent, fetch as undiciFetch, type RequestInit as UndiciRequestInit } from "undici";

/** What an address is, for the guard. */
export type AddressKind = "public" | "private" | "loopback" | "link-local" | "special";

/** Private, loopback and unique-local ranges: reachable only for allow-listed hosts. */
const loopback = new BlockList();
loopback.addSubnet("127.0.0.0", 8, "ipv4");
loopback.addAddress("::1", "ipv6");

const privateRanges = new BlockList();
for (const [network, prefix] of [
  ["10.0.0.0", 8],
  ["172.16.0.0", 12],
  ["192.168.0.0", 16],
  ["100.64.0.0", 10], // carrier-grade NAT
  ["198.18.0.0", 15], // benchmarking networks
] as const) {
  privateRanges.addSubnet(network, prefix, "ipv4");
}
privateRanges.addSubnet("fc00::", 7, "ipv6"); // unique-local

/** Link-local (cloud metadata at 169.254.169.254, fe80::/10) and well-known metadata addresses. */
const linkLocal = new BlockList();
linkLocal.addSubnet("169.254.0.0", 16, "ipv4");
linkLocal.addAddress("100.100.100.200", "ipv4"); // Alibaba Cloud metadata
linkLocal.addSubnet("fe80::", 10, "ipv6");
linkLocal.addAddress("fd00:ec2::254", "ipv6"); // AWS metadata over IPv6

/** Never a destination: unspecified, "this network", multicast, reserved, broadcast, documentation. */
const special = new BlockList();
for (const [network, prefix] of [
  ["0.0.0.0", 8],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const) {
  special.addSubnet(network, prefix, "ipv4");
}
special.addAddress("::", "ipv6");
special.addSubnet("ff00::", 8, "ipv6");
special.addSubnet("2001:db8::", 32, "ipv6");

/** The IPv4 address an IPv6 address carries (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`), if any. */
function embeddedIpv4(address: string): string | undefined {
  const lower = address.toLowerCase();
  for (const prefix of ["::ffff:", "64:ff9b::"]) {
    if (!lower.startsWith(prefix)) continue;
    const rest = lower.slice(prefix.length);
    if (isIP(rest) === 4) return rest;
    // Hex form: ::ffff:7f00:1
    const hex = /^([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(rest);
    if (hex?.[1] !== undefined && hex[2] !== undefined) {
      const high = parseInt(hex[1], 16);
      const low = parseInt(hex[2], 16);
      return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
    }
  }
  return undefined;
}

export function classifyAddress(address: string): AddressKind {
  const bare = address.startsWith("[") && address.endsWith("]") ? address.slice(1, -1) : address;
  const family = isIP(bare);
  if (family === 0) return "special";
  if (family === 6) {
    const inner = embeddedIpv4(bare);
    if (inner !== undefined) return classifyAddress(inner);
  }
  const type = family === 4 ? "ipv4" : "ipv6";
  if (linkLocal.check(bare, type)) return "link-local";
  if (special.check(bare, type)) return "special";
  if (loopback.check(bare, type)) return "loopback";
  if (privateRanges.check(bare, type)) return "private";
  return "public";
}

export class AddressRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AddressRefusedError";
  }
}

/** Host names on the allow-list, compared lower-case without brackets. */
export function normalizeHost(host: string): string {
  const lower = host.trim().toLowerCase();
  return lower.startsWith("[") && lower.endsWith("]") ? lower.slice(1, -1) : lower;
}

/** Throws AddressRefusedError when `host` may not connect to `address`. */
export function checkAddress(host: string, address: string, allowedHosts: ReadonlySet<string>): void {
  const kind = classifyAddress(address);
  if (kind === "public") return;
  if (kind === "link-local" || kind === "special") {
    throw new AddressRefusedError(
      `${host} resolves to ${address}, a ${kind === "link-local" ? "link-local or cloud-metadata" : "reserved"} address, which MCP servers may never use`,
    );
  }
  if (allowedHosts.has(normalizeHost(host))) return;
  throw new AddressRefusedError(
    `${host} resolves to ${address}, a ${kind} address; start lmhost with --mcp-allowed-hosts ${normalizeHost(host)} to allow it`,
  );
}

/** Checks a URL before any connection: the scheme, and the host when it is an address literal. */
export function checkUrl(url: URL, allowedHosts: ReadonlySet<string>): void {
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new AddressRefusedError(`only http and https MCP server URLs are allowed, not ${url.protocol}`);
  }
  const host = normalizeHost(url.hostname);
  if (isIP(host) !== 0) checkAddress(host, host, allowedHosts);
}

/**
 * Checks a URL up front, resolving its host now: a request naming a refused address gets a 400 before
 * anything runs. (Connections are checked again when they are made: a name may resolve differently then.)
 */
export async function checkUrlResolves(url: URL, allowedHosts: ReadonlySet<string>): Promise<void> {
  checkUrl(url, allowedHosts);
  const host = normalizeHost(url.hostname);
  if (isIP(host) !== 0) return;
  const addresses = await new Promise<LookupAddress[]>((resolve, reject) =>
    dnsLookup(host, { all: true }, (error, found) => (error ? reject(error) : resolve(found))),
  ).catch((error: unknown) => {
    throw new AddressRefusedError(`${host} cannot be resolved: ${(error as Error).message}`);
  });
  for (const entry of addresses) checkAddress(host, entry.address, allowedHosts);
}

/** A DNS lookup that refuses when any address the name resolves to is not allowed for it. */
function guardedLookup(allowedHosts: ReadonlySet<string>): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
      if (error) {
        callback(error, "", 4);
        return;
      }
      try {
        if (addresses.length === 0) throw new AddressRefusedError(`${hostname} has no address`);
        for (const entry of addresses) checkAddress(hostname, entry.address, allowedHosts);
      } catch (refused) {
        callback(refused as Error, "", 4);
        return;
      }
      if (options.all === true) callback(null, addresses);
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}

const MAX_REDIRECTS = 5;

export type FetchLike = (url: string | URL, init?: RequestInit) => Promise<Response>;

export interface GuardedFetch {
  fetch: FetchLike;
  close(): Promise<void>;
}

/**
 * A fetch for one MCP client: its own connection pool whose lookups are guarded, address literals checked
 * before connecting, redirects followed by hand (each hop checked). `allowedHosts` empty: public only.
 */
export function guardedFetch(allowedHosts: ReadonlySet<string>): GuardedFetch {
  const agent = new Agent({ connect: { lookup: guardedLookup(allowedHosts) } });
  const run: FetchLike = async (input, init = {}) => {
    let url = new URL(typeof input === "string" ? input : input.href);
    let requestInit = init;
    for (let hop = 0; ; hop++) {
      checkUrl(url, allowedHosts);
      let response: Response;
      try {
        response = (await undiciFetch(url, {
          ...(requestInit as unknown as UndiciRequestInit),
          redirect: "manual",
          dispatcher: agent,
        })) as unknown as Response;
      } catch (error) {
        // undici reports a refused lookup as "fetch failed" with the refusal as its cause: say why.
        const cause = (error as Error).cause;
        throw cause instanceof AddressRefusedError ? cause : error;
      }
      const location = response.headers.get("location");
      if (response.status < 300 || response.status >= 400 || location === null) return response;
      // The caller handles redirects itself (the MCP SDK does, to refuse other origins): hand it the 3xx.
      if (init.redirect === "manual" || init.redirect === "error") return response;
      if (hop >= MAX_REDIRECTS) throw new AddressRefusedError(`more than ${MAX_REDIRECTS} redirects`);
      await response.body?.cancel();
      const next = new URL(location, url);
      if (url.protocol === "https:" && next.protocol === "http:")
        throw new AddressRefusedError(`a redirect from https to http (${next.origin}) is refused`);
      if (next.origin !== url.origin) {
        // Credentials were meant for the first server: never carry them to another origin.
        const { headers: _headers, ...rest } = requestInit;
        requestInit = rest;
      }
      url = next;
      // 303 (and 301/302 after a POST, as browsers do) continue as a GET without a body.
      if (
        response.status === 303 ||
        ((response.status === 301 || response.status === 302) && init.method === "POST")
      ) {
        const { body: _body, ...rest } = requestInit;
        requestInit = { ...rest, method: "GET" };
      }
    }
  };
  return { fetch: run, close: async () => agent.close() };
}
