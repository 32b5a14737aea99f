/**
 * The MCP address guard (SSRF): which addresses a remote MCP server may use, with and without the host on
 * the allow-list; URL schemes; a name resolving to loopback is refused at connect time; redirects to a
 * refused address are refused.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AddressRefusedError,
  checkAddress,
  checkUrl,
  classifyAddress,
  guardedFetch,
} from "../../src/tools/mcp/address-guard.js";

describe("classifyAddress", () => {
  it.each([
    ["8.8.8.8", "public"],
    ["1.1.1.1", "public"],
    ["2606:4700:4700::1111", "public"],
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["::1", "loopback"],
    ["[::1]", "loopback"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["10.1.2.3", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["172.32.0.1", "public"],
    ["192.168.1.1", "private"],
    ["100.64.0.1", "private"],
    ["fd12:3456::1", "private"],
    ["fc00::1", "private"],
    ["169.254.169.254", "link-local"],
    ["::ffff:169.254.169.254", "link-local"],
    ["64:ff9b::a9fe:a9fe", "link-local"],
    ["fe80::1", "link-local"],
    ["fd00:ec2::254", "link-local"],
    ["100.100.100.200", "link-local"],
    ["0.0.0.0", "special"],
    ["::", "special"],
    ["224.0.0.1", "special"],
    ["255.255.255.255", "special"],
    ["not-an-ip", "special"],
  ])("%s is %s", (address, kind) => {
    expect(classifyAddress(address)).toBe(kind);
  });
});

describe("checkAddress and checkUrl", () => {
  const none = new Set<string>();
  const loopbackAllowed = new Set(["127.0.0.1", "localhost"]);

  it("public addresses always pass; loopback and private only for allow-listed hosts", () => {
    expect(() => checkAddress("example.com", "93.184.216.34", none)).not.toThrow();
    expect(() => checkAddress("localhost", "127.0.0.1", none)).toThrow(/--mcp-allowed-hosts localhost/);
    expect(() => checkAddress("localhost", "127.0.0.1", loopbackAllowed)).not.toThrow();
    expect(() => checkAddress("intranet", "10.0.0.5", loopbackAllowed)).toThrow(AddressRefusedError);
    expect(() => checkAddress("intranet", "10.0.0.5", new Set(["intranet"]))).not.toThrow();
  });

  it("link-local and metadata addresses are refused even for allow-listed hosts", () => {
    const everything = new Set(["169.254.169.254", "metadata.google.internal"]);
    expect(() => checkAddress("169.254.169.254", "169.254.169.254", everything)).toThrow(/cloud-metadata/);
    expect(() => checkAddress("metadata.google.internal", "169.254.169.254", everything)).toThrow(
      AddressRefusedError,
    );
  });

  it("only http and https URLs; address literals are checked before connecting", () => {
    expect(() => checkUrl(new URL("file:///etc/passwd"), loopbackAllowed)).toThrow(/only http and https/);
    expect(() => checkUrl(new URL("ftp://example.com/"), loopbackAllowed)).toThrow(/only http and https/);
    expect(() => checkUrl(new URL("http://[::1]:8080/mcp"), none)).toThrow(/loopback/);
    expect(() => checkUrl(new URL("http://[::1]:8080/mcp"), new Set(["::1"]))).not.toThrow();
    expect(() => checkUrl(new URL("http://169.254.169.254/latest"), none)).toThrow(/cloud-metadata/);
    expect(() => checkUrl(new URL("https://example.com/mcp"), none)).not.toThrow();
  });
});

describe("guardedFetch on loopback", () => {
  let server: Server;
  let port = 0;

  beforeAll(async () => {
    server = createServer((request, response) => {
      if (request.url === "/redirect-metadata") {
        response.writeHead(302, { location: "http://169.254.169.254/latest/meta-data" }).end();
      } else if (request.url === "/redirect-localhost") {
        response.writeHead(307, { location: `http://localhost:${port}/ok` }).end();
      } else if (request.url === "/redirect-to-headers") {
        response.writeHead(307, { location: `http://localhost:${port}/headers` }).end();
      } else if (request.url === "/headers") {
        response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(request.headers));
      } else {
        response.writeHead(200, { "content-type": "text/plain" }).end("ok");
      }
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it("a name that resolves to loopback is refused at connect time unless allow-listed", async () => {
    const refused = guardedFetch(new Set());
    await expect(refused.fetch(`http://localhost:${port}/ok`)).rejects.toThrow(/loopback address/);
    await refused.close();
    const allowed = guardedFetch(new Set(["localhost"]));
    const response = await allowed.fetch(`http://localhost:${port}/ok`);
    expect(await response.text()).toBe("ok");
    await allowed.close();
  });

  it("redirects are checked hop by hop", async () => {
    const guard = guardedFetch(new Set(["127.0.0.1"]));
    await expect(guard.fetch(`http://127.0.0.1:${port}/redirect-metadata`)).rejects.toThrow(/cloud-metadata/);
    // 127.0.0.1 is allowed, localhost is not: the redirect to localhost is refused.
    await expect(guard.fetch(`http://127.0.0.1:${port}/redirect-localhost`)).rejects.toThrow(/localhost/);
    await guard.close();
  });

  it("never carries credentials to another origin, and leaves redirects to a caller that handles them", async () => {
    const guard = guardedFetch(new Set(["127.0.0.1", "localhost"]));
    // 127.0.0.1 → localhost is another origin: the Authorization header stays behind.
    const redirected = await guard.fetch(`http://127.0.0.1:${port}/redirect-to-headers`, {
      method: "POST",
      headers: { authorization: "Bearer secret", "x-extra": "secret" },
    });
    const seen = (await redirected.json()) as Record<string, string>;
    expect(seen.authorization).toBeUndefined();
    expect(seen["x-extra"]).toBeUndefined();
    // The MCP SDK asks for redirect: "manual" to apply its own same-origin rule: it gets the 307.
    const manual = await guard.fetch(`http://127.0.0.1:${port}/redirect-localhost`, { redirect: "manual" });
    expect(manual.status).toBe(307);
    await guard.close();
  });
});
