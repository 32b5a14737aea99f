/**
 * The built-in demo model as a first-time user meets it: the real `lmhost` binary with an empty models
 * folder and data dir serves `lmhost-demo`, warns loudly at start-up with the command to get a real model,
 * and answers README's quick-start request (read from README.md, so the docs cannot drift) with
 * `completed`; with a real model present the demo is not listed (--demo / --no-demo: tests/fast/demo-model.test.ts).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storiesModel } from "../helpers/paths.js";
import { readmeQuickStartBody } from "../helpers/readme.js";
import { runCli, spawnServer, type SpawnedServer } from "../helpers/spawn-server.js";

const emptyFolder = (prefix: string) => mkdtempSync(path.join(tmpdir(), prefix));

async function modelIds(url: string): Promise<string[]> {
  const response = await fetch(`${url}/v1/models`);
  expect(response.status).toBe(200);
  return ((await response.json()) as { data: { id: string }[] }).data.map((model) => model.id);
}

describe("lmhost serve with no model anywhere", () => {
  let server: SpawnedServer;

  beforeAll(async () => {
    server = await spawnServer(["--models-dir", emptyFolder("lmhost-demo-models-")]);
  });
  afterAll(async () => {
    await server?.stop("SIGKILL");
  });

  it("serves the built-in demo as lmhost-demo, and says so with the command to get a real model", async () => {
    expect(await modelIds(server.url)).toEqual(["lmhost-demo"]);
    const output = server.output();
    expect(output).toContain("DEMO MODEL");
    expect(output).toContain("260K-parameter");
    expect(output).toContain("lmhost get Qwen/Qwen3-0.6B-GGUF");
    expect(output).toContain("lmhost serve --model path/to/model.gguf");
    // The warning comes before the address, where a user reading the start-up lines sees it.
    expect(output.indexOf("DEMO MODEL")).toBeLessThan(output.indexOf("listening on"));
  });

  it("answers README's quick-start request, verbatim, with a completed story", async () => {
    const body = readmeQuickStartBody();
    expect(body.model).toBe("lmhost-demo");
    const response = await fetch(`${server.url}/v1/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    expect(response.status).toBe(200);
    const result = (await response.json()) as {
      status: string;
      incomplete_details: unknown;
      output: { type: string; content: { type: string; text: string }[] }[];
      usage: { output_tokens: number };
    };
    expect(result.status).toBe("completed");
    expect(result.incomplete_details).toBeNull();
    const text = result.output.find((item) => item.type === "message")?.content[0]?.text ?? "";
    // A story, in words: the model continues "Once upon a time" and ends it by itself.
    expect(text.split(/\s+/).length).toBeGreaterThan(20);
    expect(text).toMatch(/[a-z]+ [a-z]+ [a-z]+/);
    expect(result.usage.output_tokens).toBeLessThan(Number(body.max_output_tokens));
  });

  it("names `lmhost get` when a request asks for a model that does not exist", async () => {
    const response = await fetch(`${server.url}/v1/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o", input: "hi" }),
    });
    expect(response.status).toBe(404);
    const { error } = (await response.json()) as { error: { code: string; message: string; param: string } };
    expect(error).toMatchObject({ code: "model_not_found", param: "model" });
    expect(error.message).toContain("lmhost-demo");
    expect(error.message).toContain("lmhost get <user/repo>");
  });
});

describe("the demo beside real models", () => {
  it("is not listed when a real model is served", async () => {
    const real = await spawnServer([
      "--models-dir",
      emptyFolder("lmhost-demo-models-"),
      "--model",
      storiesModel,
    ]);
    try {
      expect(await modelIds(real.url)).toEqual(["stories260K"]);
      expect(real.output()).not.toContain("DEMO MODEL");
    } finally {
      await real.stop("SIGKILL");
    }
  });

  it("`lmhost ls` with nothing on disk names `lmhost get` and the demo", async () => {
    const result = await runCli(["ls", "--models-dir", emptyFolder("lmhost-demo-models-")]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("no models found in");
    expect(result.stdout).toContain("lmhost get <user/repo>");
    expect(result.stdout).toContain("lmhost-demo");
  });
});
