/**
 * What only a real socket shows: a streamed response honours the client's `Connection: close` (the
 * stream arrives whole, then the server closes the socket), keep-alive streams leave it open, and the
 * Host check sees the Host header a browser would send. The app is the fast one (scripted engine) served
 * by @hono/node-server on a loopback port; requests are written by hand on a net.Socket.
 */
import { connect, type AddressInfo } from "node:net";
import { serve, type ServerType } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFastApp, TEST_MODEL } from "../helpers/fast-app.js";
import { directStreamsFetch } from "../../src/server/sse.js";
import { createLogger } from "../../src/shared/logger.js";

let server: ServerType;
let port: number;
const logLines: string[] = [];

beforeAll(async () => {
  const fast = createFastApp({ logger: createLogger("info", (line) => logLines.push(line)) });
  server = await new Promise<ServerType>((resolve) => {
    const listening = serve(
      { fetch: directStreamsFetch(fast.app.fetch), hostname: "127.0.0.1", port: 0 },
      () => resolve(listening),
    );
  });
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  if ("closeAllConnections" in server) server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

interface Exchange {
  /** Everything the server sent. */
  text: string;
  /** Milliseconds from the last byte the server sent to the server closing the socket; undefined if it stayed open. */
  closedAfterMilliseconds: number | undefined;
}

/** Writes one raw HTTP/1.1 request and collects the answer until the server closes, or `waitMilliseconds` after `until` appears. */
function exchange(request: string, until: string, waitMilliseconds: number): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(request));
    let text = "";
    let lastData = Date.now();
    let timer: NodeJS.Timeout | undefined;
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      text += chunk;
      lastData = Date.now();
      if (timer === undefined && text.includes(until)) {
        timer = setTimeout(() => {
          socket.destroy();
          resolve({ text, closedAfterMilliseconds: undefined });
        }, waitMilliseconds);
      }
    });
    socket.on("end", () => {
      clearTimeout(timer);
      resolve({ text, closedAfterMilliseconds: Date.now() - lastData });
    });
    socket.on("error", reject);
  });
}

function streamingRequest(connection: "close" | "keep-alive"): string {
  const body = JSON.stringify({ model: TEST_MODEL, input: "hello", stream: true });
  return [
    "POST /v1/responses HTTP/1.1",
    `Host: 127.0.0.1:${port}`,
    "Content-Type: application/json",
    `Content-Length: ${Buffer.byteLength(body)}`,
    `Connection: ${connection}`,
    "",
    body,
  ].join("\r\n");
}

describe("over a real socket", () => {
  it("closes the socket after a stream when the client sent Connection: close (was kept open)", async () => {
    const { text, closedAfterMilliseconds } = await exchange(streamingRequest("close"), "data: [DONE]", 2000);
    expect(text).toMatch(/^HTTP\/1\.1 200/);
    expect(text.toLowerCase()).toContain("connection: close");
    expect(text).toContain("event: response.completed");
    expect(text).toContain("data: [DONE]");
    expect(closedAfterMilliseconds).toBeDefined();
    expect(closedAfterMilliseconds).toBeLessThan(500);
  });

  it("keeps a keep-alive socket open after the stream", async () => {
    const { text, closedAfterMilliseconds } = await exchange(
      streamingRequest("keep-alive"),
      "data: [DONE]",
      300,
    );
    expect(text).toContain("data: [DONE]");
    expect(text.toLowerCase()).toContain("connection: keep-alive");
    expect(closedAfterMilliseconds).toBeUndefined();
  });

  it("refuses a request whose Host header names another site (DNS rebinding), and answers its own", async () => {
    const request = (host: string) =>
      exchange(`GET /v1/models HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`, "\r\n\r\n", 1000);
    const rebound = await request(`rebind.example:${port}`);
    expect(rebound.text).toMatch(/^HTTP\/1\.1 403/);
    expect(rebound.text).toContain("host_not_allowed");
    expect((await request(`localhost:${port}`)).text).toMatch(/^HTTP\/1\.1 200/);
    expect((await request(`127.0.0.1:${port}`)).text).toMatch(/^HTTP\/1\.1 200/);
  });

  it("a client gone while sending its body is a 499 in the log, not a 500 with a stack trace", async () => {
    const before = logLines.length;
    await new Promise<void>((resolve) => {
      const socket = connect(port, "127.0.0.1", () => {
        socket.write(
          "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
            'Content-Length: 1000\r\n\r\n{"model":',
        );
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 100);
      });
    });
    const deadline = Date.now() + 5_000;
    while (!logLines.slice(before).some((line) => line.includes("POST /v1/chat/completions")))
      if (Date.now() > deadline) break;
      else await new Promise((resolve) => setTimeout(resolve, 20));
    const lines = logLines.slice(before);
    expect(lines.join("")).toContain("POST /v1/chat/completions 499");
    expect(lines.some((line) => line.includes(" error "))).toBe(false);
    // And the server keeps serving.
    const body = { model: TEST_MODEL, messages: [{ role: "user", content: "hi" }] };
    const answer = await exchange(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n` +
        `Content-Length: ${JSON.stringify(body).length}\r\n\r\n${JSON.stringify(body)}`,
      "chat.completion",
      50,
    );
    expect(answer.text).toContain("HTTP/1.1 200");
  });
});
