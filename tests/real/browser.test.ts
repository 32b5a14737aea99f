/**
 * A real browser (headless Chromium driven by playwright-core) on a page served from another loopback
 * port tries what a malicious web page would: `fetch` with JSON and with text/plain, a `no-cors` fetch
 * and HTML form POSTs against a real lmhost. By default all of it must fail and — checked on the server —
 * have no effect: the model stays loaded, no response runs. Loading lmhost by a name that is not its own
 * (DNS rebinding, simulated with Chromium's host resolver rules) is refused too. With `--cors <the page's
 * origin>` the same page can call lmhost with JSON.
 *
 * Chromium must be at /usr/bin/chromium (`apt-get install -y chromium`; .ci/run installs it). Without it
 * this test fails, unless LMHOST_SKIP_BROWSER=1 is set to skip it on a developer machine.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storiesModel } from "../helpers/paths.js";
import { spawnServer, type SpawnedServer } from "../helpers/spawn-server.js";

const CHROMIUM = "/usr/bin/chromium";
const skipped = process.env.LMHOST_SKIP_BROWSER === "1";

/** What the page's script saw of one attempt. */
interface Attempt {
  name: string;
  outcome: string;
}

/** Runs in the page: every way a page can post to lmhost, returning what the page could observe. */
async function attackFromPage(page: Page, lmhostUrl: string): Promise<Attempt[]> {
  return page.evaluate(async (base) => {
    const attempts: { name: string; outcome: string }[] = [];
    const body = JSON.stringify({ model: "stories260K", input: "Once upon a time", max_output_tokens: 4 });
    const unloadBody = JSON.stringify({ model: "stories260K" });
    const tryFetch = async (name: string, url: string, init: RequestInit) => {
      try {
        const response = await fetch(url, init);
        attempts.push({ name, outcome: `status ${response.status} (${response.type})` });
      } catch (error) {
        attempts.push({ name, outcome: `failed: ${(error as Error).name}` });
      }
    };
    await tryFetch("fetch JSON /v1/responses", `${base}/v1/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    await tryFetch("fetch text/plain /v1/responses", `${base}/v1/responses`, { method: "POST", body });
    await tryFetch("fetch text/plain /api/v0/unload", `${base}/api/v0/unload`, {
      method: "POST",
      body: unloadBody,
    });
    await tryFetch("fetch no-cors /api/v0/unload", `${base}/api/v0/unload`, {
      method: "POST",
      mode: "no-cors",
      body: unloadBody,
    });
    await tryFetch("fetch no-cors /v1/responses", `${base}/v1/responses`, {
      method: "POST",
      mode: "no-cors",
      body,
    });
    // The page's DOM, typed here (this project compiles without the DOM library).
    interface PageElement {
      name: string;
      value: string;
      method: string;
      action: string;
      enctype: string;
      target: string;
      append(node: PageElement): void;
      addEventListener(type: "load", listener: () => void, options: { once: boolean }): void;
      submit(): void;
    }
    const document = (
      globalThis as unknown as {
        document: { createElement(tag: string): PageElement; body: PageElement };
      }
    ).document;
    // A text/plain form sends `name=value`: the classic trick makes that a JSON object.
    const submitForm = (action: string, json: string) =>
      new Promise<void>((resolve) => {
        const frame = document.createElement("iframe");
        frame.name = `sink-${Math.random()}`;
        document.body.append(frame);
        const form = document.createElement("form");
        form.method = "POST";
        form.action = action;
        form.enctype = "text/plain";
        form.target = frame.name;
        const input = document.createElement("input");
        input.name = `${json.slice(0, -1)},"padding":"`;
        input.value = '"}';
        form.append(input);
        document.body.append(form);
        frame.addEventListener("load", () => resolve(), { once: true });
        form.submit();
      });
    await submitForm(`${base}/api/v0/unload`, unloadBody);
    attempts.push({ name: "form text/plain /api/v0/unload", outcome: "submitted" });
    await submitForm(`${base}/v1/responses`, body);
    attempts.push({ name: "form text/plain /v1/responses", outcome: "submitted" });
    return attempts;
  }, lmhostUrl);
}

async function modelState(server: SpawnedServer): Promise<string> {
  const status = (await (await fetch(`${server.url}/api/v0/models/stories260K`)).json()) as { state: string };
  return status.state;
}

/**
 * The statuses in the request log lines (debug level) of one method and path (`POST /v1/responses 403
 * ...`), once `count` of them have arrived from the child's stderr (or after 5 s, whatever there is).
 */
async function requestStatuses(
  server: SpawnedServer,
  method: string,
  route: string,
  count: number,
): Promise<string[]> {
  const pattern = new RegExp(`${method} ${route.replaceAll("/", "\\/")} (\\d{3}) `, "g");
  const statuses = () => [...server.output().matchAll(pattern)].map((match) => match[1] ?? "");
  for (let waited = 0; statuses().length < count && waited < 5000; waited += 50) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return statuses();
}

describe.skipIf(skipped)("a web page in a real browser", () => {
  let pageServer: Server;
  let pageOrigin: string;
  let context: BrowserContext;
  let userDataDir: string;
  const servers: SpawnedServer[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium is missing at ${CHROMIUM}: install it with \`apt-get update && apt-get install -y chromium\` (.ci/run does), or set LMHOST_SKIP_BROWSER=1 to skip this test on your machine.`,
      );
    }
    pageServer = createServer((_request, response) => {
      response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      response.end("<!doctype html><title>another site</title><p>hello</p>");
    });
    await new Promise<void>((resolve) => pageServer.listen(0, "127.0.0.1", resolve));
    pageOrigin = `http://127.0.0.1:${(pageServer.address() as AddressInfo).port}`;
    userDataDir = mkdtempSync(path.join(tmpdir(), "lmhost-chromium-"));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        // A name that resolves to this machine, as a DNS-rebinding attacker's domain would.
        "--host-resolver-rules=MAP rebind.test 127.0.0.1",
      ],
    });
  });

  afterAll(async () => {
    await context?.close();
    for (const server of servers) await server.stop("SIGKILL");
    await new Promise((resolve) => pageServer?.close(resolve));
    if (userDataDir !== undefined) rmSync(userDataDir, { recursive: true, force: true });
  });

  it("can neither run a response nor unload a model by default, however it posts", async () => {
    const server = await spawnServer(["--model", storiesModel, "--log-level", "debug"]);
    servers.push(server);
    const loaded = await fetch(`${server.url}/api/v0/load`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "stories260K" }),
    });
    expect(loaded.status).toBe(200);

    const page = await context.newPage();
    await page.goto(`${pageOrigin}/`);
    const attempts = await attackFromPage(page, server.url);
    await page.close();

    const seen = Object.fromEntries(attempts.map((attempt) => [attempt.name, attempt.outcome]));
    expect(seen["fetch JSON /v1/responses"]).toBe("failed: TypeError");
    expect(seen["fetch text/plain /v1/responses"]).toBe("failed: TypeError");
    expect(seen["fetch text/plain /api/v0/unload"]).toBe("failed: TypeError");
    // Server side: nothing ran. The model is still loaded and every attempt was refused with 403.
    expect(await modelState(server)).toBe("loaded");
    const unloads = await requestStatuses(server, "POST", "/api/v0/unload", 3);
    const responses = await requestStatuses(server, "POST", "/v1/responses", 3);
    const preflights = await requestStatuses(server, "OPTIONS", "/v1/responses", 1);
    expect(unloads).toEqual(["403", "403", "403"]);
    expect(responses).toEqual(["403", "403", "403"]);
    expect(preflights).toEqual(["403"]);
  });

  it("cannot reach lmhost through a rebound name (the Host check), while localhost works", async () => {
    const server = servers[0]!;
    const page = await context.newPage();
    const rebound = await page.goto(`http://rebind.test:${server.port}/v1/models`);
    expect(rebound?.status()).toBe(403);
    expect(await rebound?.text()).toContain("host_not_allowed");
    const own = await page.goto(`http://localhost:${server.port}/v1/models`);
    expect(own?.status()).toBe(200);
    await page.close();
  });

  it("can call lmhost with JSON once its origin is given with --cors", async () => {
    const server = await spawnServer(["--model", storiesModel, "--log-level", "debug", "--cors", pageOrigin]);
    servers.push(server);
    const page = await context.newPage();
    await page.goto(`${pageOrigin}/`);
    const result = await page.evaluate(async (base) => {
      const response = await fetch(`${base}/v1/responses`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "stories260K", input: "Once upon a time", max_output_tokens: 4 }),
      });
      const json = (await response.json()) as { status?: string; output?: unknown[] };
      // Still JSON only, and now the page can read why.
      const plain = await fetch(`${base}/v1/responses`, { method: "POST", body: "{}" });
      const plainError = (await plain.json()) as { error: { code: string } };
      return {
        status: response.status,
        responseStatus: json.status,
        plain: plain.status,
        code: plainError.error.code,
      };
    }, server.url);
    await page.close();
    expect(result).toEqual({
      status: 200,
      responseStatus: "incomplete",
      plain: 415,
      code: "unsupported_media_type",
    });
    expect(await requestStatuses(server, "OPTIONS", "/v1/responses", 1)).toEqual(["204"]);
  });
});

it.runIf(skipped)("skips the browser test because LMHOST_SKIP_BROWSER=1 is set", () => {
  expect(process.env.LMHOST_SKIP_BROWSER).toBe("1");
});
