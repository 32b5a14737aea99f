/**
 * The real Codex CLI (`@openai/codex` 0.169) applies a patch lmhost returns through its freeform
 * `apply_patch` custom tool. Codex sends that tool only when its model metadata says so: a model catalog
 * (`model_catalog_json` in config.toml) whose entry for the model has `apply_patch_tool_type: "freeform"`.
 * Codex then offers `{type: "custom", name: "apply_patch", format: {type: "grammar", syntax: "lark", ...}}`;
 * lmhost (the scripted engine writes the patch: Codex's ~10k-token prompt does not fit the tiny models)
 * answers with a `custom_tool_call`, Codex applies it in a temporary git repository (adding one file and
 * updating another), sends the `custom_tool_call_output` back, and prints lmhost's final answer. The patch
 * is checked against Codex's grammar (the one Codex sent, through lmhost's converter) and the files on disk
 * are checked after the run.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { serve } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { larkToGbnf } from "../../src/engine/llama/grammar/lark.js";
import type { EngineRequest } from "../../src/engine/types.js";
import { codexApplyPatchGrammar, isApplyPatchSentence } from "../helpers/apply-patch-grammar.js";
import { createFastApp, TEST_MODEL, type FastApp } from "../helpers/fast-app.js";
import { matchesGbnf, parseGbnf } from "../helpers/gbnf.js";
import { runCodexExec, type CodexRun } from "../helpers/codex.js";

const patch = [
  "*** Begin Patch",
  "*** Add File: hello.txt",
  "+Hello from lmhost",
  "*** Update File: notes.txt",
  "@@",
  " line one",
  "-line two",
  "+line two, patched by lmhost",
  "*** End Patch",
  "",
].join("\n");

/** First turn: call apply_patch with the patch; after its output: say what Codex answered. */
function respond(request: EngineRequest) {
  const result = request.items.findLast((item) => item.type === "function-result");
  if (result === undefined) {
    const tool = request.tools?.find((candidate) => candidate.name === "apply_patch");
    if (tool?.freeform === undefined) return { text: "No freeform apply_patch tool was offered." };
    return { toolCalls: [{ callId: "call_patch", name: "apply_patch", arguments: patch }] };
  }
  return { text: "The patch was applied." };
}

/** Codex's model metadata for the test model: a freeform apply_patch tool (the rest: plain defaults). */
function modelCatalog(): string {
  return JSON.stringify({
    models: [
      {
        slug: TEST_MODEL,
        display_name: "lmhost test model",
        description: null,
        supported_reasoning_levels: [],
        shell_type: "shell_command",
        visibility: "list",
        supported_in_api: true,
        priority: 1,
        availability_nux: null,
        upgrade: null,
        base_instructions: "You are a coding agent.",
        model_messages: null,
        supports_reasoning_summaries: false,
        default_reasoning_summary: "auto",
        support_verbosity: false,
        default_verbosity: null,
        apply_patch_tool_type: "freeform",
        truncation_policy: { mode: "bytes", limit: 10000 },
        supports_parallel_tool_calls: false,
        supports_image_detail_original: false,
        context_window: null,
        auto_compact_token_limit: null,
        effective_context_window_percent: 95,
        experimental_supported_tools: [],
        input_modalities: ["text"],
        supports_search_tool: false,
      },
    ],
  });
}

/** Codex in a temporary git repository holding a committed notes.txt; the files as Codex left them. */
async function runCodex(
  baseUrl: string,
  prompt: string,
): Promise<CodexRun & { files: Record<string, string> }> {
  const work = mkdtempSync(path.join(tmpdir(), "lmhost-codex-patch-"));
  try {
    const git = (...args: string[]) => execFileSync("git", args, { cwd: work, stdio: "ignore" });
    git("init", "-q");
    writeFileSync(path.join(work, "notes.txt"), "line one\nline two\n");
    git("add", "notes.txt");
    git("-c", "user.name=lmhost", "-c", "user.email=lmhost@example.invalid", "commit", "-q", "-m", "notes");
    const run = await runCodexExec({
      baseUrl,
      prompt,
      work,
      configLines: (home) => {
        const catalog = path.join(home, "model-catalog.json");
        writeFileSync(catalog, modelCatalog());
        return [`model_catalog_json = ${JSON.stringify(catalog)}`];
      },
    });
    const read = (name: string) => {
      try {
        return readFileSync(path.join(work, name), "utf8");
      } catch {
        return "<missing>";
      }
    };
    return { ...run, files: { "hello.txt": read("hello.txt"), "notes.txt": read("notes.txt") } };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

describe("the real Codex CLI applies lmhost's apply_patch call", () => {
  let fast: FastApp;
  let server: ReturnType<typeof serve>;
  let baseUrl: string;
  const bodies: Record<string, unknown>[] = [];

  beforeAll(async () => {
    fast = createFastApp({ respond });
    const fetch = async (request: Request): Promise<Response> => {
      if (request.method === "POST" && new URL(request.url).pathname === "/v1/responses")
        bodies.push((await request.clone().json()) as Record<string, unknown>);
      return fast.app.fetch(request);
    };
    await new Promise<void>((resolve) => {
      server = serve({ fetch, hostname: "127.0.0.1", port: 0 }, () => resolve());
    });
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it("offers the freeform tool, applies the patch on disk and sends the output back", async () => {
    const run = await runCodex(baseUrl, "Add hello.txt and patch notes.txt.");
    const summary = `exit ${run.code}\n${JSON.stringify(run.events, null, 1)}\n${run.stderr}`;
    expect(run.code, summary).toBe(0);

    // Codex sent its freeform apply_patch with its Lark grammar; lmhost's converter accepts it and the
    // patch is a sentence of it (lmhost's GBNF and the independent recognizer agree).
    const offered = (bodies[0]?.tools ?? []) as { type: string; name?: string; format?: unknown }[];
    const applyPatch = offered.find((tool) => tool.name === "apply_patch");
    expect(applyPatch, JSON.stringify(offered.map((tool) => [tool.type, tool.name]))).toMatchObject({
      type: "custom",
      format: { type: "grammar", syntax: "lark" },
    });
    const definition = (applyPatch?.format as { definition: string }).definition;
    // The tests' copy of the grammar (the oracle's source) is the one Codex 0.169 sends.
    expect(definition.trim()).toBe(codexApplyPatchGrammar.trim());
    expect(matchesGbnf(parseGbnf(larkToGbnf(definition)), patch)).toBe(true);
    expect(isApplyPatchSentence(patch)).toBe(true);
    expect(fast.engineRequests[0]?.tools?.find((tool) => tool.name === "apply_patch")?.freeform).toEqual({
      grammar: { syntax: "lark", definition },
    });

    // Codex applied it: the new file and the updated line are on disk.
    expect(run.files, summary).toEqual({
      "hello.txt": "Hello from lmhost\n",
      "notes.txt": "line one\nline two, patched by lmhost\n",
    });
    // The second request carried the custom_tool_call and its output; lmhost's answer came through.
    const input = (bodies[1]?.input ?? []) as { type: string; call_id?: string }[];
    expect(
      input.map((item) => item.type),
      summary,
    ).toEqual(expect.arrayContaining(["custom_tool_call", "custom_tool_call_output"]));
    const completed = run.events
      .filter((event) => event.type === "item.completed")
      .map((event) => event.item);
    expect(completed, summary).toContainEqual(
      expect.objectContaining({ type: "agent_message", text: "The patch was applied." }),
    );
    expect(run.events.at(-1)?.type, summary).toBe("turn.completed");
  }, 120_000);
});
