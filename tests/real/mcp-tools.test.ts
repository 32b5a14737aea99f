/**
 * Remote and local MCP tools through POST /v1/responses, against real MCP servers on loopback
 * (server-everything over Streamable HTTP and SSE, over stdio from mcp.json, and an in-process SDK server),
 * with the scripted engine deciding which tool the "model" calls: the list → approval → call → answer flow
 * with previous_response_id and with re-sent history, denial, require_approval "never" streamed through the
 * official SDK, allowed_tools, max_tool_calls, failures as items (never 500), credentials that reach the
 * server but are never stored or echoed, and the opt-in and address guard as 400s.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ScriptedTurn } from "../../src/engine/scripted/scripted-engine.js";
import type { EngineRequest } from "../../src/engine/types.js";
import type { ResponseObject, ResponseStreamEvent } from "../../src/responses/wire-types.js";
import { SqliteResponseStore } from "../../src/store/sqlite/sqlite-store.js";
import { McpService, readMcpConfig } from "../../src/tools/mcp/service.js";
import { createFastApp, TEST_MODEL, type FastApp } from "../helpers/fast-app.js";
import { createRealApp, type RealApp } from "../helpers/real-app.js";
import { loadSpecValidator } from "../helpers/spec-validator.js";
import {
  everythingEntry,
  startEverything,
  startRecordingServer,
  type RecordingMcpServer,
  type RunningMcpServer,
} from "../helpers/mcp-servers.js";

let streamable: RunningMcpServer;
let sse: RunningMcpServer;
let recording: RecordingMcpServer;
const services: McpService[] = [];

beforeAll(async () => {
  [streamable, sse, recording] = await Promise.all([
    startEverything("streamableHttp"),
    startEverything("sse"),
    startRecordingServer(),
  ]);
});

afterAll(async () => {
  await Promise.all(services.map(async (service) => service.close()));
  await Promise.all([streamable?.stop(), sse?.stop(), recording?.stop()]);
});

function service(options: Partial<ConstructorParameters<typeof McpService>[0]> = {}): McpService {
  const created = new McpService({
    allowRemote: true,
    allowedHosts: ["127.0.0.1"],
    localServers: new Map(),
    callTimeoutSeconds: 10,
    ...options,
  });
  services.push(created);
  return created;
}

/** What the scripted "model" does: call `call` (engine name and arguments) once, then answer with the result. */
interface Plan {
  call?: { name: string; arguments: Record<string, unknown> };
}

function scriptedModel(plan: Plan): (request: EngineRequest) => ScriptedTurn {
  return (request) => {
    const last = request.items.at(-1);
    if (last?.type === "function-result") return { text: `The tool said: ${last.output}` };
    const call = plan.call;
    if (call !== undefined && (request.tools ?? []).some((tool) => tool.name === call.name)) {
      return {
        toolCalls: [{ callId: "call_1", name: call.name, arguments: JSON.stringify(call.arguments) }],
      };
    }
    return { text: "I answer without tools." };
  };
}

/** A fast app whose MCP servers come from `mcp` (default: a new service; null: none, so MCP is off). */
function app(
  plan: Plan,
  mcp: McpService | null = service(),
  extra: Parameters<typeof createFastApp>[0] = {},
) {
  return createFastApp({ respond: scriptedModel(plan), ...(mcp === null ? {} : { mcp }), ...extra });
}

async function create(fast: FastApp, body: Record<string, unknown>): Promise<ResponseObject> {
  const response = await fast.post("/v1/responses", { model: TEST_MODEL, ...body });
  const json = (await response.json()) as ResponseObject & { error?: { message: string } };
  expect(response.status, JSON.stringify(json.error)).toBe(200);
  return json;
}

const types = (response: ResponseObject) => response.output.map((item) => item.type);

describe("MCP tools: opt-in and the address guard", () => {
  it("without --allow-remote-mcp an mcp tool is a 400 naming it and saying how to enable it", async () => {
    const fast = app({}, null);
    const response = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: "hi",
      tools: [{ type: "mcp", server_label: "everything", server_url: streamable.url }],
    });
    const body = (await response.json()) as { error: { param: string; message: string } };
    expect(response.status, body.error.message).toBe(400);
    expect(body.error.param).toBe("tools[0]");
    expect(body.error.message).toContain("--allow-remote-mcp");
  });

  it("loopback without --mcp-allowed-hosts, and metadata addresses always, are 400s naming server_url", async () => {
    const strict = app({}, service({ allowedHosts: [] }));
    for (const url of [streamable.url, "http://localhost:9/mcp"]) {
      const response = await strict.post("/v1/responses", {
        model: TEST_MODEL,
        input: "hi",
        tools: [{ type: "mcp", server_label: "s", server_url: url }],
      });
      expect(response.status).toBe(400);
      const body = (await response.json()) as { error: { param: string; message: string } };
      expect(body.error.param).toBe("tools[0].server_url");
      expect(body.error.message).toContain("--mcp-allowed-hosts");
    }
    const open = app({}, service({ allowedHosts: ["169.254.169.254", "127.0.0.1"] }));
    const metadata = await open.post("/v1/responses", {
      model: TEST_MODEL,
      input: "hi",
      tools: [{ type: "mcp", server_label: "s", server_url: "http://169.254.169.254/latest" }],
    });
    expect(metadata.status).toBe(400);
    expect(((await metadata.json()) as { error: { message: string } }).error.message).toMatch(/metadata/);
    const scheme = await open.post("/v1/responses", {
      model: TEST_MODEL,
      input: "hi",
      tools: [{ type: "mcp", server_label: "s", server_url: "file:///etc/passwd" }],
    });
    expect(scheme.status).toBe(400);
  });
});

describe("MCP tools: credentials are checked without being shown", () => {
  it("a bad header value or a URL with a password is a 400 that does not quote the secret", async () => {
    const fast = app({});
    const cases: [Record<string, unknown>, string][] = [
      [{ headers: { "X-Key": "SECRET-a\nInjected: 1" } }, "tools[0].headers.X-Key"],
      [{ authorization: "SECRET-b\u0000" }, "tools[0].authorization"],
      [{ server_url: "http://user:SECRET-c@127.0.0.1:9/mcp" }, "tools[0].server_url"],
    ];
    for (const [fields, param] of cases) {
      const response = await fast.post("/v1/responses", {
        model: TEST_MODEL,
        input: "hi",
        tools: [{ type: "mcp", server_label: "s", server_url: streamable.url, ...fields }],
      });
      expect(response.status).toBe(400);
      const text = await response.text();
      expect(text).not.toContain("SECRET");
      expect((JSON.parse(text) as { error: { param: string } }).error.param).toBe(param);
    }
  });
});

describe("MCP tools: the call flow", () => {
  it("require_approval never: list → call → answer in one response, streamed and accepted by the SDK", async () => {
    const fast = app({ call: { name: "everything.echo", arguments: { message: "hello mcp" } } });
    const stream = fast.client.responses.stream({
      model: TEST_MODEL,
      input: "Echo something",
      tools: [
        { type: "mcp", server_label: "everything", server_url: streamable.url, require_approval: "never" },
      ],
    });
    const events: string[] = [];
    const spec = loadSpecValidator();
    for await (const event of stream) {
      events.push(event.type);
      // OpenAI's spec; Open Responses' contract only knows function tools.
      spec.assertStreamEvent(event, { openResponses: false });
    }
    const final = (await stream.finalResponse()) as unknown as ResponseObject;
    spec.assertResponse(final, { openResponses: false });
    expect(final.status).toBe("completed");
    expect(types(final)).toEqual(["mcp_list_tools", "mcp_call", "message"]);
    const listing = final.output[0];
    expect(listing?.type === "mcp_list_tools" && listing.tools.some((tool) => tool.name === "echo")).toBe(
      true,
    );
    expect(final.output[1]).toMatchObject({
      type: "mcp_call",
      server_label: "everything",
      name: "echo",
      arguments: '{"message":"hello mcp"}',
      output: "Echo: hello mcp",
      error: null,
      status: "completed",
      approval_request_id: null,
    });
    expect(final.output[2]).toMatchObject({
      type: "message",
      content: [{ text: "The tool said: Echo: hello mcp" }],
    });
    expect(events).toEqual(
      expect.arrayContaining([
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.mcp_call.in_progress",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.completed",
      ]),
    );
    // Two generations, one response: the usage adds up both.
    expect(fast.engineRequests).toHaveLength(2);
    expect(final.usage?.input_tokens).toBeGreaterThan(0);
  });

  it("approval: the response ends with mcp_approval_request; approving it runs the call in the next one", async () => {
    const fast = app({ call: { name: "everything.echo", arguments: { message: "approve me" } } });
    const tools = [{ type: "mcp", server_label: "everything", server_url: streamable.url }];
    const first = await create(fast, { input: "Echo something", tools });
    expect(types(first)).toEqual(["mcp_list_tools", "mcp_approval_request"]);
    loadSpecValidator().assertResponse(first, { openResponses: false });
    const request = first.output[1]!;
    expect(request).toMatchObject({ type: "mcp_approval_request", name: "echo", server_label: "everything" });
    expect(request.id).toMatch(/^mcpr_/);

    const second = await create(fast, {
      previous_response_id: first.id,
      input: [{ type: "mcp_approval_response", approval_request_id: request.id, approve: true }],
      tools,
    });
    // The listing of the conversation is reused: no second mcp_list_tools.
    expect(types(second)).toEqual(["mcp_call", "message"]);
    expect(second.output[0]).toMatchObject({ output: "Echo: approve me", approval_request_id: request.id });
    loadSpecValidator().assertResponse(second, { openResponses: false });
    const inputItems = await fast.request(`/v1/responses/${second.id}/input_items`);
    loadSpecValidator().assertItemList(await inputItems.json());

    // The same with the history re-sent instead of previous_response_id (a stateless client).
    const stateless = await create(fast, {
      input: [
        { role: "user", content: "Echo something" },
        ...first.output,
        { type: "mcp_approval_response", approval_request_id: request.id, approve: true },
      ],
      tools,
      store: false,
    });
    expect(types(stateless)).toEqual(["mcp_call", "message"]);
  });

  it("denial: no call runs, the model is told and answers", async () => {
    const fast = app({ call: { name: "everything.echo", arguments: { message: "deny me" } } });
    const tools = [{ type: "mcp", server_label: "everything", server_url: streamable.url }];
    const first = await create(fast, { input: "Echo something", tools });
    const requestId = first.output[1]!.id;
    const denied = await create(fast, {
      previous_response_id: first.id,
      input: [
        { type: "mcp_approval_response", approval_request_id: requestId, approve: false, reason: "not now" },
      ],
      tools,
    });
    expect(types(denied)).toEqual(["message"]);
    expect(JSON.stringify(denied.output)).toContain("denied this call: not now");
  });

  it("a denial is acted on in its own turn only, not again in later turns", async () => {
    const fast = app({ call: { name: "everything.echo", arguments: { message: "deny me" } } });
    const tools = [{ type: "mcp", server_label: "everything", server_url: streamable.url }];
    const first = await create(fast, { input: "Echo something", tools });
    const denied = await create(fast, {
      previous_response_id: first.id,
      input: [{ type: "mcp_approval_response", approval_request_id: first.output[1]!.id, approve: false }],
      tools,
    });
    await create(fast, { previous_response_id: denied.id, input: "hello", tools });
    const last = fast.engineRequests.at(-1)!;
    // The denial was told to the model in turn 2 (its answer quotes it); turn 3 does not add it again.
    expect(last.items.filter((item) => item.type === "function-result")).toEqual([]);
    expect(last.items.at(-1)).toMatchObject({ type: "message", role: "user", text: "hello" });
  });

  it("max_tool_calls counts every call: a second call in the same generation does not run", async () => {
    const twice = (request: EngineRequest): ScriptedTurn => {
      const last = request.items.at(-1);
      if (last?.type === "function-result") return { text: "done" };
      const call = (callId: string, message: string) => ({
        callId,
        name: "everything.echo",
        arguments: JSON.stringify({ message }),
      });
      return { toolCalls: [call("c1", "one"), call("c2", "two")] };
    };
    const fast = createFastApp({ respond: twice, mcp: service() });
    const response = await create(fast, {
      input: "hi",
      max_tool_calls: 1,
      tools: [
        { type: "mcp", server_label: "everything", server_url: streamable.url, require_approval: "never" },
      ],
    });
    const calls = response.output.filter((item) => item.type === "mcp_call");
    expect(calls).toHaveLength(2);
    expect(calls[0]).toMatchObject({ output: "Echo: one", error: null });
    expect(calls[1]).toMatchObject({ output: null, status: "failed" });
    expect((calls[1] as { error: string }).error).toContain("max_tool_calls (1)");
  });

  it("an approval response for an unknown request is a 400 naming it", async () => {
    const fast = app({});
    const response = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: [{ type: "mcp_approval_response", approval_request_id: "mcpr_nope", approve: true }],
      tools: [{ type: "mcp", server_label: "everything", server_url: streamable.url }],
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { param: string } }).error.param).toBe(
      "input[0].approval_request_id",
    );
  });

  it("allowed_tools: only the listed tools are offered; read_only keeps read-only ones", async () => {
    const fast = app({});
    await create(fast, {
      input: "hi",
      tools: [
        { type: "mcp", server_label: "everything", server_url: streamable.url, allowed_tools: ["echo"] },
      ],
    });
    expect(fast.engineRequests[0]?.tools?.map((tool) => tool.name)).toEqual(["everything.echo"]);
    const readOnly = app({});
    await create(readOnly, {
      input: "hi",
      tools: [
        {
          type: "mcp",
          server_label: "everything",
          server_url: streamable.url,
          allowed_tools: { read_only: true, tool_names: ["echo", "get-sum"] },
        },
      ],
    });
    for (const tool of readOnly.engineRequests[0]?.tools ?? [])
      expect(["everything.echo", "everything.get-sum"]).toContain(tool.name);
  });

  it("max_tool_calls stops offering MCP tools once reached", async () => {
    // The scripted model calls echo whenever it is offered and no result came back yet.
    const fast = app({ call: { name: "everything.echo", arguments: { message: "once" } } });
    const response = await create(fast, {
      input: "hi",
      max_tool_calls: 1,
      tools: [
        { type: "mcp", server_label: "everything", server_url: streamable.url, require_approval: "never" },
      ],
    });
    expect(types(response).filter((type) => type === "mcp_call")).toHaveLength(1);
    expect(fast.engineRequests.at(-1)?.tools ?? []).toEqual([]);
  });

  it("the SSE transport of an older server works too", async () => {
    const fast = app({ call: { name: "old.echo", arguments: { message: "over sse" } } });
    const response = await create(fast, {
      input: "hi",
      tools: [{ type: "mcp", server_label: "old", server_url: sse.url, require_approval: "never" }],
    });
    expect(response.output[1]).toMatchObject({ type: "mcp_call", output: "Echo: over sse" });
  });

  it("a local stdio server from mcp.json is used by label alone", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "lmhost-mcp-"));
    writeFileSync(
      path.join(dataDir, "mcp.json"),
      JSON.stringify({
        mcpServers: { local: { command: process.execPath, args: [everythingEntry, "stdio"] } },
      }),
    );
    const local = service({ allowRemote: false, localServers: readMcpConfig(dataDir) });
    const fast = app({ call: { name: "local.echo", arguments: { message: "from stdio" } } }, local);
    const response = await create(fast, {
      input: "hi",
      tools: [{ type: "mcp", server_label: "local", require_approval: "never" }],
    });
    expect(response.output[1]).toMatchObject({ type: "mcp_call", output: "Echo: from stdio" });
    // Remote servers stay off for this service; unknown labels are a 400 naming server_url.
    const unknown = await fast.post("/v1/responses", {
      model: TEST_MODEL,
      input: "hi",
      tools: [{ type: "mcp", server_label: "elsewhere" }],
    });
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { error: { param: string } }).error.param).toBe("tools[0].server_url");
  });
});

describe("MCP tools: failures and credentials", () => {
  it("a tool error, a timeout and an unreachable server are items with errors, never a 500", async () => {
    const fast = app({ call: { name: "rec.fail", arguments: {} } }, service({ callTimeoutSeconds: 1 }));
    const tools = [
      { type: "mcp", server_label: "rec", server_url: recording.url, require_approval: "never" },
    ];
    const failed = await create(fast, { input: "hi", tools });
    expect(failed.output[1]).toMatchObject({ type: "mcp_call", status: "failed", error: "the tool broke" });

    const slow = app(
      { call: { name: "rec.slow", arguments: { milliseconds: 3_000 } } },
      service({ callTimeoutSeconds: 1 }),
    );
    const timedOut = await create(slow, { input: "hi", tools });
    expect(timedOut.output[1]).toMatchObject({ type: "mcp_call", status: "failed" });
    expect((timedOut.output[1] as { error: string }).error).toMatch(/rec.*timed out|timeout/i);

    const unreachable = await create(app({}), {
      input: "hi",
      tools: [{ type: "mcp", server_label: "gone", server_url: "http://127.0.0.1:9/mcp" }],
    });
    expect(unreachable.status).toBe("completed");
    expect(unreachable.output[0]).toMatchObject({ type: "mcp_list_tools", server_label: "gone", tools: [] });
    expect((unreachable.output[0] as { error: string }).error).toContain("'gone'");
  });

  it("headers and authorization reach the server but are never stored, logged or echoed", async () => {
    const databaseFile = path.join(mkdtempSync(path.join(tmpdir(), "lmhost-mcp-")), "responses.sqlite");
    const store = SqliteResponseStore.open(databaseFile);
    const fast = app({ call: { name: "rec.add", arguments: { a: 2, b: 3 } } }, service(), { store });
    const stream = fast.client.responses.stream({
      model: TEST_MODEL,
      input: "hi",
      tools: [
        {
          type: "mcp",
          server_label: "rec",
          server_url: recording.url,
          require_approval: "never",
          authorization: "token-SECRET-1",
          headers: { "X-Extra": "header-SECRET-2" },
        },
      ],
    });
    const seen: ResponseStreamEvent[] = [];
    for await (const event of stream) seen.push(event as unknown as ResponseStreamEvent);
    const final = (await stream.finalResponse()) as unknown as ResponseObject;
    expect(final.output[1]).toMatchObject({ type: "mcp_call", output: "5" });
    expect(
      recording.headers.some(
        (headers) =>
          headers["x-extra"] === "header-SECRET-2" && headers.authorization === "Bearer token-SECRET-1",
      ),
    ).toBe(true);
    const items = await fast.request(`/v1/responses/${final.id}/input_items`);
    const stored = await fast.request(`/v1/responses/${final.id}`);
    store.close();
    const everything = [
      JSON.stringify(seen),
      JSON.stringify(final),
      await items.text(),
      await stored.text(),
      readFileSync(databaseFile).toString("latin1"),
    ].join("\n");
    const leak = everything.indexOf("SECRET");
    expect(leak, everything.slice(Math.max(0, leak - 300), leak + 50)).toBe(-1);
    expect(final.tools[0]).toEqual({
      type: "mcp",
      server_label: "rec",
      server_url: recording.url,
      require_approval: "never",
    });
  });
});

describe("MCP tools on the real engine (stories260K-chatml, forced tool choice)", () => {
  let real: RealApp;

  beforeAll(async () => {
    real = await createRealApp({ mcp: service() });
  });

  afterAll(async () => {
    await real?.close();
  });

  const tools = () => [
    {
      type: "mcp" as const,
      server_label: "everything",
      server_url: streamable.url,
      allowed_tools: ["get-structured-content"],
    },
  ];
  const forced = { type: "mcp" as const, server_label: "everything", name: "get-structured-content" };

  it("list → approval request → approve → call → message, through previous_response_id", async () => {
    const first = await real.client.responses.create({
      model: "stories260K-chatml",
      input: "What is the weather?",
      tools: tools(),
      tool_choice: forced,
      temperature: 0,
      max_output_tokens: 64,
    });
    expect(first.output.map((item) => item.type)).toEqual(["mcp_list_tools", "mcp_approval_request"]);
    const request = first.output[1] as { id: string; arguments: string; name: string };
    expect(request.name).toBe("get-structured-content");
    // The grammar forced schema-valid arguments: one of the enum's cities.
    expect(["New York", "Chicago", "Los Angeles"]).toContain(
      (JSON.parse(request.arguments) as { location: string }).location,
    );

    const second = await real.client.responses.create({
      model: "stories260K-chatml",
      previous_response_id: first.id,
      input: [{ type: "mcp_approval_response", approval_request_id: request.id, approve: true }],
      tools: tools(),
      temperature: 0,
      max_output_tokens: 16,
    });
    const call = second.output[0] as { type: string; output: string | null; approval_request_id: string };
    expect(call.type).toBe("mcp_call");
    expect(call.approval_request_id).toBe(request.id);
    expect(call.output ?? "").toMatch(/temperature|weather|conditions/i);
    expect(second.output.at(-1)?.type).toBe("message");
    // The second response re-used the cached prompt of the first.
    expect(second.usage?.input_tokens_details.cached_tokens).toBeGreaterThan(0);
  });

  it("a round after an MCP call waits for a busy sequence instead of failing the response with queue_full", async () => {
    // One sequence and no room to wait: a new request that finds it busy is a 429 at once.
    const busy = await createRealApp({ mcp: service(), parallel: 1, maxQueue: 0 });
    recording.closeGate();
    try {
      const created = await busy.client.responses.create({
        model: "stories260K-chatml",
        input: "Open the gate",
        background: true,
        tools: [
          {
            type: "mcp",
            server_label: "recording",
            server_url: recording.url,
            require_approval: "never",
            allowed_tools: ["gate"],
          },
        ],
        tool_choice: { type: "mcp", server_label: "recording", name: "gate" },
        // One call (this SDK's create() types lack max_tool_calls; the API takes it).
        ...{ max_tool_calls: 1 },
        temperature: 0,
        max_output_tokens: 16,
      });
      // While its call runs, the response holds no sequence: another request takes the only one (the SDK
      // retries a 429 if the first round's lease was not released yet).
      await expect.poll(() => recording.gateCalls, { timeout: 30_000 }).toBe(1);
      const other = await busy.client.responses.create({
        model: "stories260K-chatml",
        input: "Once upon a time",
        stream: true,
        temperature: 0,
        max_output_tokens: 400,
      });
      const events = other[Symbol.asyncIterator]();
      for (let event = await events.next(); !event.done; event = await events.next()) {
        if (event.value.type === "response.output_text.delta") break;
      }
      // The call answers while the other request generates: the next round finds the sequence busy.
      const racing = await busy.client.responses.retrieve(created.id);
      recording.openGate();
      expect(racing.status).toBe("in_progress");
      for (let event = await events.next(); !event.done; event = await events.next()) {
        if (event.value.type === "response.completed") expect(event.value.response.status).toBe("completed");
      }
      let final = await busy.client.responses.retrieve(created.id);
      for (let waited = 0; final.status === "in_progress" || final.status === "queued"; waited += 100) {
        if (waited > 60_000) throw new Error("the MCP response did not finish");
        await new Promise((resolve) => setTimeout(resolve, 100));
        final = await busy.client.responses.retrieve(created.id);
      }
      // Not failed (queue_full): the answer after the call ran, to its end or to max_output_tokens.
      expect(final.error).toBeNull();
      expect(["completed", "incomplete"]).toContain(final.status);
      if (final.status === "incomplete") expect(final.incomplete_details?.reason).toBe("max_output_tokens");
      expect(final.output.map((item) => item.type)).toEqual(["mcp_list_tools", "mcp_call", "message"]);
      expect(final.output[1]).toMatchObject({ name: "gate", output: "the gate is open", error: null });
      // The round after the call did find the sequence busy and waited for it (no new request can wait).
      const lease = await busy.models.acquire("stories260K-chatml");
      try {
        expect(lease.loaded.pool.stats.maxWaitingSeen).toBeGreaterThanOrEqual(1);
      } finally {
        lease.release();
      }
    } finally {
      recording.openGate();
      await busy.close();
    }
  });

  it("require_approval never: the call runs in the same streamed response; the SDK accepts the stream", async () => {
    const stream = real.client.responses.stream({
      model: "stories260K-chatml",
      input: "What is the weather?",
      tools: tools().map((tool) => ({ ...tool, require_approval: "never" as const })),
      tool_choice: forced,
      max_tool_calls: 1,
      temperature: 0,
      max_output_tokens: 64,
    });
    const spec = loadSpecValidator();
    for await (const event of stream) spec.assertStreamEvent(event, { openResponses: false });
    const final = await stream.finalResponse();
    expect(final.output.map((item) => item.type)).toEqual(["mcp_list_tools", "mcp_call", "message"]);
    expect(final.output[1]).toMatchObject({ status: "completed", error: null });
  });
});
