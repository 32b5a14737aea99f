/**
 * `POST /api/v0/download` end to end: a real `lmhost serve` process (HF_ENDPOINT pointing at the
 * stand-in) downloads a model in the background, `GET /api/v0/download/{id}` follows it to `completed`,
 * and the model is then listed by /v1/models; a missing repo, a gated repo and bad bodies are the
 * request's own errors naming `model`, and the server keeps serving.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256, startHfStandIn, testRepositories, type HfStandIn } from "../helpers/hf-stand-in.js";
import { randomLlamaModel, storiesChatmlModel, storiesModel } from "../helpers/paths.js";
import { spawnServer, type SpawnedServer } from "../helpers/spawn-server.js";

const models = {
  stories: readFileSync(storiesModel),
  storiesChatml: readFileSync(storiesChatmlModel),
  randomLlama: readFileSync(randomLlamaModel),
};
let standIn: HfStandIn;
let server: SpawnedServer;
let modelsDir: string;

beforeAll(async () => {
  standIn = await startHfStandIn(testRepositories(models));
  modelsDir = mkdtempSync(path.join(tmpdir(), "lmhost-api-dl-"));
  server = await spawnServer(["--models-dir", modelsDir], {
    env: { HF_ENDPOINT: standIn.url, HF_HOME: mkdtempSync(path.join(tmpdir(), "lmhost-hf-home-")) },
  });
});
afterAll(async () => {
  await server?.stop();
  await standIn?.close();
});

async function call(method: "GET" | "POST", route: string, body?: unknown) {
  const response = await fetch(`${server.url}${route}`, {
    method,
    headers: { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- wire JSON, checked field by field below
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

describe("POST /api/v0/download", () => {
  it("downloads in the background; the job reports bytes and completes; /v1/models lists the model", async () => {
    const started = await call("POST", "/api/v0/download", {
      model: "lmhost-test/stories-GGUF",
      quantization: "Q8_0",
    });
    expect(started.status).toBe(200);
    expect(started.body).toMatchObject({
      object: "download",
      status: "downloading",
      model: "lmhost-test/stories-GGUF:Q8_0",
      file: "stories-Q8_0.gguf",
      total_size_bytes: models.stories.length,
      error: null,
    });
    const id = started.body.job_id as string;
    expect(id).toMatch(/^download_/);
    let job = started.body;
    for (let waited = 0; job.status === "downloading" && waited < 30_000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      job = (await call("GET", `/api/v0/download/${id}`)).body;
    }
    expect(job).toMatchObject({
      status: "completed",
      model_id: "lmhost-test/stories-GGUF",
      path: path.join(modelsDir, "lmhost-test/stories-GGUF/stories-Q8_0.gguf"),
      downloaded_bytes: models.stories.length,
      total_size_bytes: models.stories.length,
      error: null,
    });
    expect(typeof job.completed_at).toBe("number");
    expect(sha256(readFileSync(job.path as string))).toBe(sha256(models.stories));
    const listed = await call("GET", "/v1/models");
    expect((listed.body.data as { id: string }[]).map((model) => model.id)).toContain(
      "lmhost-test/stories-GGUF",
    );
    const jobs = await call("GET", "/api/v0/download");
    expect((jobs.body.data as { job_id: string }[]).map((each) => each.job_id)).toContain(id);
    // Asked again: the file is there.
    const again = await call("POST", "/api/v0/download", { model: "lmhost-test/stories-GGUF:Q8_0" });
    for (let waited = 0; again.body.status === "downloading" && waited < 10_000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      again.body = (await call("GET", `/api/v0/download/${again.body.job_id as string}`)).body;
    }
    expect(again.body.status).toBe("already_downloaded");
  });

  it("answers a missing repo, a gated repo and bad bodies with errors naming the field", async () => {
    const missing = await call("POST", "/api/v0/download", { model: "lmhost-test/nothing-GGUF" });
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ param: "model", code: "repository_not_found" });
    expect(missing.body.error.message).toContain("no repository lmhost-test/nothing-GGUF");
    const noQuant = await call("POST", "/api/v0/download", { model: "lmhost-test/stories-GGUF:Q2_K" });
    expect(noQuant.status).toBe(404);
    expect(noQuant.body.error.message).toContain("available: F16 (1.7 MB), Q4_K_M (1.1 MB), Q8_0 (1.1 MB)");
    const gated = await call("POST", "/api/v0/download", { model: "lmhost-test/gated-GGUF" });
    expect(gated.status).toBe(400);
    expect(gated.body.error).toMatchObject({ param: "model", code: "gated_repository" });
    expect(gated.body.error.message).toContain("HF_TOKEN");
    // Plain URLs are for `lmhost get` on the machine: the API does not fetch from arbitrary hosts.
    const plainUrl = await call("POST", "/api/v0/download", { model: "http://10.0.0.1/internal/model.gguf" });
    expect(plainUrl.status).toBe(400);
    expect(plainUrl.body.error).toMatchObject({ param: "model", code: "invalid_model_reference" });
    expect(plainUrl.body.error.message).toContain("Hugging Face only");
    const empty = await call("POST", "/api/v0/download", {});
    expect(empty.status).toBe(400);
    expect(empty.body.error.param).toBe("model");
    const unknownField = await call("POST", "/api/v0/download", { model: "a/b", sha: "x" });
    expect(unknownField.status).toBe(400);
    expect(unknownField.body.error.message).toContain("sha");
    const notAJob = await call("GET", "/api/v0/download/download_nope");
    expect(notAJob.status).toBe(404);
    expect(notAJob.body.error.code).toBe("download_not_found");
    expect((await call("GET", "/v1/models")).status).toBe(200);
  });
});
