/**
 * streamSse under a real Node server (@hono/node-server on a loopback port), where it writes events
 * straight to Node's ServerResponse instead of through web streams: the head carries every header the
 * middleware set (CORS, x-request-id), the request log's line waits for the stream's end and has its
 * usage, events of a burst share writes without being split, a slow client holds the source back, and a
 * client that goes away stops the source.
 */
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { ServerResponse } from "node:http";
import { serve, type ServerType } from "@hono/node-server";
import { Hono } from "hono";
import { afterEach, describe, expect, it } from "vitest";
import { directStreamsFetch, streamSse, type SseEvent } from "../../src/server/sse.js";
import { createLogger } from "../../src/shared/logger.js";
import { createFastApp, parseSse, TEST_MODEL } from "../helpers/fast-app.js";

const servers: ServerType[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    if ("closeAllConnections" in server) server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** Serves `fetch` on a loopback port as `lmhost serve` does (through directStreamsFetch). */
async function listen(fetch: (request: Request, env: object) => Response | Promise<Response>) {
  const server = await new Promise<ServerType>((resolve) => {
    const listening = serve({ fetch: directStreamsFetch(fetch), hostname: "127.0.0.1", port: 0 }, () =>
      resolve(listening),
    );
  });
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("streamSse on a Node response", () => {
  it("sends the middleware's headers, every event, and logs the stream's usage when it ends", async () => {
    const lines: string[] = [];
    const fast = createFastApp({
      config: { cors: ["http://page.test"] },
      logger: createLogger("info", (line) => lines.push(line)),
    });
    const url = await listen(fast.app.fetch);
    const response = await fetch(`${url}/v1/responses`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        origin: "http://page.test",
        "x-request-id": "req-sse-1",
      },
      body: JSON.stringify({ model: TEST_MODEL, input: "hello there", stream: true }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(response.headers.get("cache-control")).toBe("no-cache");
    expect(response.headers.get("access-control-allow-origin")).toBe("http://page.test");
    expect(response.headers.get("vary")).toContain("Origin");
    expect(response.headers.get("x-request-id")).toBe("req-sse-1");
    expect(response.headers.has("x-hono-already-sent")).toBe(false);
    const events = parseSse(await response.text());
    expect(events[0]?.event).toBe("response.created");
    const completed = events.find((event) => event.event === "response.completed");
    expect(completed).toBeDefined();
    const usage = (JSON.parse(completed!.data) as { response: { usage: { output_tokens: number } } }).response
      .usage;
    expect(usage.output_tokens).toBeGreaterThan(0);
    expect(events.at(-1)?.data).toBe("[DONE]");
    // One line, written once the stream was over, with the stream's tokens.
    await expect.poll(() => lines.filter((line) => line.includes("POST /v1/responses")).length).toBe(1);
    const line = lines.find((entry) => entry.includes("POST /v1/responses"))!;
    expect(line).toContain(" 200");
    expect(line).toContain(`output_tokens=${usage.output_tokens}`);
    expect(line).toContain("request_id=req-sse-1");
  });

  it("sends the event-stream head even when the source yields nothing", async () => {
    const app = new Hono();
    app.get("/", (context) => streamSse(context, (async function* () {})()));
    const url = await listen(app.fetch);
    const response = await fetch(url);
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(await response.text()).toBe("");
  });

  it("joins a burst's events into fewer socket writes, whole events only, none lost", async () => {
    let writes = 0;
    const app = new Hono<{ Bindings: { outgoing: ServerResponse } }>();
    app.get("/", (context) => {
      const outgoing = context.env.outgoing;
      expect(outgoing).toBeInstanceOf(ServerResponse);
      const write = outgoing.write.bind(outgoing) as (chunk: string) => boolean;
      outgoing.write = ((chunk: string) => {
        writes++;
        expect(chunk.endsWith("\n\n")).toBe(true);
        return write(chunk);
      }) as typeof outgoing.write;
      return streamSse(
        context,
        (async function* () {
          for (let index = 0; index < 200; index++) yield { event: "delta", data: { index } };
        })(),
      );
    });
    const url = await listen(app.fetch);
    const events = parseSse(await (await fetch(url)).text());
    expect(events.map((event) => (JSON.parse(event.data) as { index: number }).index)).toEqual(
      Array.from({ length: 200 }, (_, index) => index),
    );
    expect(writes).toBeGreaterThan(0);
    expect(writes).toBeLessThan(200);
  });

  it("holds the source back while a client does not read, and stops it when the client goes away", async () => {
    let produced = 0;
    let sourceClosed = false;
    let aborted = false;
    const big = "x".repeat(16 * 1024);
    async function* endless(): AsyncGenerator<SseEvent> {
      try {
        for (;;) {
          produced++;
          yield { event: "delta", data: big };
          await new Promise((resolve) => setImmediate(resolve));
        }
      } finally {
        sourceClosed = true;
      }
    }
    const app = new Hono();
    app.get("/", (context) => streamSse(context, endless(), { onAbort: () => (aborted = true) }));
    const url = new URL(await listen(app.fetch));
    const socket = connect(Number(url.port), "127.0.0.1");
    await once(socket, "connect");
    socket.write(`GET / HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
    // The client reads the head, then stops reading.
    await once(socket, "data");
    socket.pause();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const whilePaused = produced;
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Unread data fills the socket buffers, then the source waits: ~several MB at most, not unbounded.
    expect(produced).toBe(whilePaused);
    expect(produced * big.length).toBeLessThan(64 * 1024 * 1024);
    socket.destroy();
    await expect.poll(() => aborted && sourceClosed).toBe(true);
  });
});
