/**
 * The request guards that keep web pages from driving a local lmhost (Host check against DNS rebinding,
 * Origin check, JSON-only bodies) and the body checks before JSON.parse (UTF-8, nesting depth) —
 * in-process, with the scripted engine. Each case checks that nothing ran, not only the status.
 */
import { networkInterfaces } from "node:os";
import { describe, expect, it } from "vitest";
import {
  exceedsJsonDepth,
  isJsonContentType,
  JsonDepthScanner,
  MAX_JSON_DEPTH,
} from "../../src/server/json-body.js";
import { createFastApp, TEST_MODEL, type FastApp } from "../helpers/fast-app.js";
import type { AppConfig } from "../../src/server/deps.js";

type ErrorBody = { error: { message: string; type: string; param: string | null; code: string | null } };

const responseBody = JSON.stringify({ model: TEST_MODEL, input: "hello" });

/** A raw POST to the app (no helper defaults), so each header is exactly what the test gives. */
function rawPost(
  fast: FastApp,
  path: string,
  body: string | Uint8Array,
  headers: Record<string, string> = {},
) {
  return Promise.resolve(fast.app.request(`http://localhost${path}`, { method: "POST", body, headers }));
}

function appWith(config: Partial<AppConfig> = {}): FastApp {
  return createFastApp({ config });
}

describe("Content-Type of JSON bodies", () => {
  it.each([
    ["text/plain", { "content-type": "text/plain" }],
    [
      "text/plain;charset=UTF-8 (what fetch sends for a string body)",
      { "content-type": "text/plain;charset=UTF-8" },
    ],
    ["a form", { "content-type": "application/x-www-form-urlencoded" }],
    ["none", {}],
  ])("refuses %s with 415 on every endpoint that reads JSON, and runs nothing", async (_name, headers) => {
    const fast = appWith();
    await fast.models.load(TEST_MODEL);
    for (const path of ["/v1/responses", "/v1/responses/input_tokens", "/api/v0/load", "/api/v0/unload"]) {
      const body = path.startsWith("/api") ? JSON.stringify({ model: TEST_MODEL }) : responseBody;
      const response = await rawPost(fast, path, body, headers);
      expect(response.status, path).toBe(415);
      const error = ((await response.json()) as ErrorBody).error;
      expect(error).toMatchObject({
        type: "invalid_request_error",
        param: null,
        code: "unsupported_media_type",
      });
      expect(error.message).toContain("Content-Type: application/json");
    }
    expect(fast.engineRequests).toHaveLength(0);
    expect((await fast.models.status()).find((model) => model.id === TEST_MODEL)?.state).toBe("loaded");
  });

  it("accepts application/json with parameters", async () => {
    const fast = appWith();
    const response = await rawPost(fast, "/v1/responses", responseBody, {
      "content-type": "Application/JSON; charset=utf-8",
    });
    expect(response.status).toBe(200);
    expect(fast.engineRequests).toHaveLength(1);
    expect(isJsonContentType("application/json")).toBe(true);
    expect(isJsonContentType("application/jsonl")).toBe(false);
    expect(isJsonContentType("text/json")).toBe(false);
  });

  it("is what the official SDK sends", async () => {
    const fast = appWith();
    const response = await fast.client.responses.create({ model: TEST_MODEL, input: "hello" });
    expect(response.status).toBe("completed");
  });
});

describe("Origin check", () => {
  it("refuses a foreign page's POSTs by default — JSON, text/plain and form alike — and runs nothing", async () => {
    const fast = appWith();
    await fast.models.load(TEST_MODEL);
    const origin = "https://evil.example";
    for (const [path, body, contentType] of [
      ["/v1/responses", responseBody, "application/json"],
      ["/v1/responses", responseBody, "text/plain"],
      ["/api/v0/unload", JSON.stringify({ model: TEST_MODEL }), "text/plain"],
      ["/api/v0/unload", "model=x", "application/x-www-form-urlencoded"],
    ] as const) {
      const response = await rawPost(fast, path, body, { origin, "content-type": contentType });
      expect(response.status, `${path} ${contentType}`).toBe(403);
      const error = ((await response.json()) as ErrorBody).error;
      expect(error).toMatchObject({ param: null, code: "origin_not_allowed" });
      expect(error.message).toContain("--cors https://evil.example");
      expect(response.headers.get("access-control-allow-origin")).toBeNull();
    }
    expect(fast.engineRequests).toHaveLength(0);
    expect((await fast.models.status()).find((model) => model.id === TEST_MODEL)?.state).toBe("loaded");
  });

  it("refuses other loopback ports and `null` by default, and a foreign preflight", async () => {
    const fast = appWith();
    for (const origin of ["http://localhost:5173", "http://127.0.0.1:8080", "http://[::1]:3000", "null"]) {
      const response = await fast.app.request("http://localhost/v1/models", { headers: { origin } });
      expect(response.status, origin).toBe(403);
    }
    const preflight = await fast.app.request("http://localhost/v1/responses", {
      method: "OPTIONS",
      headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
    });
    expect(preflight.status).toBe(403);
    expect(preflight.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("lets listed origins in (any port with `:*`), and still refuses the others", async () => {
    const fast = appWith({ cors: ["http://localhost:*", "https://app.example"] });
    const allowed = await rawPost(fast, "/v1/responses", responseBody, {
      origin: "http://localhost:5173",
      "content-type": "application/json",
    });
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get("access-control-allow-origin")).toBe("http://localhost:5173");
    const app = await fast.app.request("http://localhost/v1/models", {
      headers: { origin: "https://app.example" },
    });
    expect(app.status).toBe(200);
    for (const origin of [
      "https://localhost:5173",
      "http://app.example",
      "https://app.example.evil",
      "null",
    ]) {
      const response = await fast.app.request("http://localhost/v1/models", { headers: { origin } });
      expect(response.status, origin).toBe(403);
    }
    // Even an allowed page must send JSON as JSON.
    const textPlain = await rawPost(fast, "/v1/responses", responseBody, {
      origin: "http://localhost:5173",
      "content-type": "text/plain",
    });
    expect(textPlain.status).toBe(415);
    expect(fast.engineRequests).toHaveLength(1);
  });

  it("allows every origin with '*'", async () => {
    const fast = appWith({ cors: "*" });
    const response = await fast.app.request("http://localhost/v1/models", { headers: { origin: "null" } });
    expect(response.status).toBe(200);
    expect(response.headers.get("access-control-allow-origin")).toBe("*");
  });
});

describe("Host check", () => {
  const get = (fast: FastApp, host: string) =>
    Promise.resolve(fast.app.request("http://localhost/v1/models", { headers: { host } }));

  it("answers localhost and loopback names on any port, and requests without a Host header", async () => {
    const fast = appWith();
    for (const host of [
      "localhost",
      "localhost:1234",
      "LOCALHOST.:1",
      "app.localhost:80",
      "127.0.0.1:1234",
      "127.1.2.3",
      "[::1]:1234",
      "[::ffff:127.0.0.1]:9",
    ]) {
      expect((await get(fast, host)).status, host).toBe(200);
    }
    expect((await fast.app.request("http://lmhost.test/v1/models")).status).toBe(200);
  });

  it("refuses any other name with 403 naming it and the flag that allows it (DNS rebinding), running nothing", async () => {
    const fast = appWith();
    for (const host of ["evil.example", "evil.example:1234", "192.168.1.10:1234", "localhost.evil.example"]) {
      const response = await get(fast, host);
      expect(response.status, host).toBe(403);
      const error = ((await response.json()) as ErrorBody).error;
      expect(error.code).toBe("host_not_allowed");
      expect(error.message).toContain(`'${host}'`);
      expect(error.message).toContain("--allowed-hosts");
    }
    const post = await Promise.resolve(
      fast.app.request("http://localhost/v1/responses", {
        method: "POST",
        body: responseBody,
        headers: { host: "rebound.example:1234", "content-type": "application/json" },
      }),
    );
    expect(post.status).toBe(403);
    expect(fast.engineRequests).toHaveLength(0);
  });

  it("answers the bound address, and every own address when bound to all interfaces", async () => {
    expect((await get(appWith({ host: "192.168.1.10" }), "192.168.1.10:1234")).status).toBe(200);
    expect((await get(appWith({ host: "192.168.1.10" }), "192.168.1.11:1234")).status).toBe(403);
    const own = Object.values(networkInterfaces())
      .flat()
      .find((address) => address !== undefined && !address.internal && address.family === "IPv4");
    if (own !== undefined) {
      expect((await get(appWith({ host: "0.0.0.0" }), `${own.address}:1234`)).status).toBe(200);
      expect((await get(appWith({ host: "::" }), `${own.address}:1234`)).status).toBe(200);
      expect((await get(appWith(), `${own.address}:1234`)).status).toBe(403);
    }
    expect((await get(appWith({ host: "0.0.0.0" }), "evil.example")).status).toBe(403);
  });

  it("answers --allowed-hosts names (a leading dot for subdomains), and anything with '*'", async () => {
    const fast = appWith({ allowedHosts: "lmhost.lan, .example.com" });
    for (const host of ["lmhost.lan:1234", "example.com", "a.b.example.com:80"]) {
      expect((await get(fast, host)).status, host).toBe(200);
    }
    for (const host of ["lmhost.lan.evil", "notexample.com"])
      expect((await get(fast, host)).status, host).toBe(403);
    expect((await get(appWith({ allowedHosts: ["*"] }), "anything.example")).status).toBe(200);
  });
});

describe("body checks before JSON.parse", () => {
  it("refuses a body that is not UTF-8 with a 400 naming it (was silently replaced by U+FFFD)", async () => {
    const fast = appWith();
    const prefix = new TextEncoder().encode(`{"model":"${TEST_MODEL}","input":"caf`);
    const body = new Uint8Array([...prefix, 0xe9, ...new TextEncoder().encode('"}')]);
    const response = await rawPost(fast, "/v1/responses", body, { "content-type": "application/json" });
    expect(response.status).toBe(400);
    const error = ((await response.json()) as ErrorBody).error;
    expect(error.message).toContain("UTF-8");
    expect(fast.engineRequests).toHaveLength(0);
  });

  it(`refuses nesting deeper than ${MAX_JSON_DEPTH} levels with a 400 naming it, without parsing`, async () => {
    const fast = appWith();
    const nested = (depth: number) =>
      `{"model":"${TEST_MODEL}","input":"x","metadata":${"[".repeat(depth - 1)}${"]".repeat(depth - 1)}}`;
    const atLimit = await rawPost(fast, "/v1/responses", nested(MAX_JSON_DEPTH), {
      "content-type": "application/json",
    });
    // Within the limit the body is parsed, and the field is judged on its merits (metadata is no array).
    expect(((await atLimit.json()) as ErrorBody).error.code).not.toBe("json_too_deep");
    const deep = await rawPost(fast, "/v1/responses", nested(MAX_JSON_DEPTH + 1), {
      "content-type": "application/json",
    });
    expect(deep.status).toBe(400);
    const error = ((await deep.json()) as ErrorBody).error;
    expect(error.code).toBe("json_too_deep");
    expect(error.message).toContain(String(MAX_JSON_DEPTH));
    // 400,000 levels (800 KB, under the test app's 1 MiB limit) are refused unparsed: the engine never runs.
    const huge = await rawPost(fast, "/v1/responses", "[".repeat(400_000) + "]".repeat(400_000), {
      "content-type": "application/json",
    });
    expect(huge.status).toBe(400);
    expect(((await huge.json()) as ErrorBody).error.code).toBe("json_too_deep");
    expect(fast.engineRequests).toHaveLength(0);
  });

  it("judges a body fed in pieces exactly as the whole text, whatever the cut", () => {
    const texts = [
      '{"a":"[[[[[[{{{{"}',
      '{"a":"\\"[[[[\\\\"}',
      '{"a":"\\\\",  "b":[[1]]}',
      String.raw`["\\\"[[[", [[1]]]`,
      String.raw`["\\\"[[[", "]]"]`,
      '[[["x\\"y"], {"k": [1, {"z": "]]]"}]}]]',
    ];
    for (const text of texts) {
      for (const limit of [1, 2, 3, 4]) {
        const whole = exceedsJsonDepth(text, limit);
        for (let cut = 0; cut <= text.length; cut++) {
          for (let secondCut = cut; secondCut <= text.length; secondCut += 3) {
            const scanner = new JsonDepthScanner(limit);
            const pieces = [text.slice(0, cut), text.slice(cut, secondCut), text.slice(secondCut)];
            expect(
              pieces.some((piece) => scanner.feed(piece)),
              `${text} cut at ${cut}/${secondCut}`,
            ).toBe(whole);
          }
        }
      }
    }
  });

  it("counts nesting outside strings only", () => {
    expect(exceedsJsonDepth('{"a":"[[[[[[{{{{"}', 2)).toBe(false);
    expect(exceedsJsonDepth('{"a":"\\"[[[[\\\\"}', 1)).toBe(false);
    expect(exceedsJsonDepth('{"a":"\\\\",  "b":[[1]]}', 2)).toBe(true);
    // An escaped backslash before a quote ends the string; an escaped quote does not.
    expect(exceedsJsonDepth(String.raw`["\\\"[[[", [[1]]]`, 2)).toBe(true);
    expect(exceedsJsonDepth('["\\\\\\\\", [[1]]]', 2)).toBe(true);
    expect(exceedsJsonDepth(String.raw`["\\\"[[[", "]]"]`, 2)).toBe(false);
    expect(exceedsJsonDepth('["unterminated [[[[', 1)).toBe(false);
    expect(exceedsJsonDepth("[[],[],[[]]]", 3)).toBe(false);
    expect(exceedsJsonDepth("[[],[],[[[]]]]", 3)).toBe(true);
  });
});
