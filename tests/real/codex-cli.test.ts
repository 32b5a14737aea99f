/**
 * The real Codex CLI (`@openai/codex` 0.169, its native binary) against lmhost over a loopback socket:
 * `codex exec` sends its full agent request (its instructions, a dozen tools incl. a `namespace` and
 * `web_search`, `store: false`, `include: ["reasoning.encrypted_content"]`), parses lmhost's stream,
 * runs the function call lmhost returns (`exec_command`), sends the result back with the whole history, and
 * prints the final answer. The first turn's reasoning goes out sealed and comes back with Codex's
 * history (`encrypted_content` round trip). The model is the scripted engine: Codex's prompt (~10k tokens of instructions
 * and tool definitions) does not fit the tiny real models' 2,048-token context, and what is under test
 * here is the wire protocol with the real client.
 */
import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { serve } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineRequest } from "../../src/engine/types.js";
import { createFastApp, TEST_MODEL, type FastApp } from "../helpers/fast-app.js";
import { runCodexExec, type CodexRun } from "../helpers/codex.js";

const marker = `lmhost-codex-${process.pid}`;

/** First turn: call exec_command to echo the marker; after its result: answer with what the command printed. */
function respond(request: EngineRequest) {
  const result = request.items.findLast((item) => item.type === "function-result");
  if (result === undefined) {
    return {
      reasoning: "I will echo the marker.",
      toolCalls: [
        { callId: "call_echo", name: "exec_command", arguments: JSON.stringify({ cmd: `echo ${marker}` }) },
      ],
    };
  }
  // Codex wraps the command's output (and a login shell may print more): look for the marker in it.
  const printed = result.output.includes(marker) ? marker : "nothing";
  return { text: `The command printed ${printed}.` };
}

async function runCodex(baseUrl: string, prompt: string): Promise<CodexRun> {
  const work = mkdtempSync(path.join(tmpdir(), "lmhost-codex-work-"));
  try {
    return await runCodexExec({ baseUrl, prompt, work, flags: ["--skip-git-repo-check"] });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

describe("the real Codex CLI against lmhost", () => {
  let fast: FastApp;
  let server: ReturnType<typeof serve>;
  let baseUrl: string;
  const stored: string[] = [];
  const requests: {
    method: string;
    path: string;
    status: number;
    body: Record<string, unknown> | undefined;
  }[] = [];

  beforeAll(async () => {
    fast = createFastApp({ respond });
    const put = fast.store.put.bind(fast.store);
    fast.store.put = (record) => {
      stored.push(record.id);
      put(record);
    };
    const fetch = async (request: Request): Promise<Response> => {
      const body =
        request.method === "POST" ? ((await request.clone().json()) as Record<string, unknown>) : undefined;
      const response = await fast.app.fetch(request);
      requests.push({
        method: request.method,
        path: new URL(request.url).pathname,
        status: response.status,
        body,
      });
      return response;
    };
    await new Promise<void>((resolve) => {
      server = serve({ fetch, hostname: "127.0.0.1", port: 0 }, () => resolve());
    });
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it("runs a tool call round trip and prints lmhost's answer", async () => {
    const run = await runCodex(baseUrl, "Print the marker with echo.");
    const summary = `exit ${run.code}\n${JSON.stringify(run.events, null, 1)}\n${run.stderr}`;
    expect(run.code, summary).toBe(0);

    // What Codex saw: the command lmhost asked for ran, and lmhost's final answer came through.
    const completed = run.events
      .filter((event) => event.type === "item.completed")
      .map((event) => event.item);
    expect(completed, summary).toContainEqual(
      expect.objectContaining({
        type: "command_execution",
        exit_code: 0,
        status: "completed",
        aggregated_output: expect.stringContaining(marker) as unknown,
      }),
    );
    expect(completed, summary).toContainEqual(
      expect.objectContaining({ type: "agent_message", text: `The command printed ${marker}.` }),
    );
    expect(run.events.at(-1)?.type, summary).toBe("turn.completed");
    expect(run.events.some((event) => event.type === "turn.failed" || event.type === "error")).toBe(false);

    // What lmhost saw: two Responses calls, both answered 200, the second carrying the command's output.
    const responseCalls = requests.filter((request) => request.path === "/v1/responses");
    expect(responseCalls.map((request) => request.status)).toEqual([200, 200]);
    expect(responseCalls[0]?.body).toMatchObject({ stream: true, store: false, model: TEST_MODEL });
    const offered = fast.engineRequests[0]?.tools?.map((tool) => tool.name) ?? [];
    expect(offered).toContain("exec_command");
    const result = fast.engineRequests[1]?.items.find((item) => item.type === "function-result");
    expect(result).toMatchObject({ callId: "call_echo", output: expect.stringContaining(marker) as unknown });
    // The reasoning went out sealed (encrypted_content) and Codex sent it back: lmhost restored its text.
    const sentBack = (responseCalls[1]?.body?.["input"] as Record<string, unknown>[] | undefined)?.find(
      (item) => item["type"] === "reasoning",
    );
    expect(typeof sentBack?.["encrypted_content"], JSON.stringify(responseCalls[1]?.body)).toBe("string");
    expect(fast.engineRequests[1]?.items).toContainEqual(
      expect.objectContaining({
        type: "reasoning",
        text: expect.stringContaining("I will echo the marker.") as unknown,
      }),
    );
    // store: false is honoured: nothing was kept.
    expect(stored).toEqual([]);
    expect(requests.every((request) => request.status < 500)).toBe(true);
  }, 120_000);
});
