/**
 * `POST /api/v0/download` {"model": "user/repo:Q4_K_M" | "user/repo/file.gguf" | URL, "quantization"?}
 * starts a download in the server, like LM Studio's REST API; `GET /api/v0/download/{job_id}` reports
 * its status, bytes, total and error; `GET /api/v0/download` lists the jobs. A completed model appears
 * in /v1/models (discovery reads the models folder on each listing). The model is resolved before the
 * answer, so a missing repo or quantization (404), a gated repo without a token (401) or no network
 * (502) is the request's own error. The server's HF_TOKEN and HF_ENDPOINT apply. Only Hugging Face
 * references are accepted: a plain URL would let any API client make the server fetch from its network.
 */
import path from "node:path";
import { z } from "zod";
import { DownloadError } from "../../models/download/errors.js";
import { huggingFaceEndpoint } from "../../models/download/hugging-face.js";
import { DownloadJobs, type DownloadJob } from "../../models/download/jobs.js";
import { describeReference, parseModelReference } from "../../models/download/reference.js";
import type { App, AppDeps } from "../../server/deps.js";
import { readJsonBody } from "../../server/json-body.js";
import { ApiError } from "../../shared/errors.js";

const downloadBodySchema = z
  .object({
    model: z.string().trim().min(1),
    /** LM Studio's field: the quantization of a repo named without one. */
    quantization: z.string().trim().min(1).optional(),
  })
  .strict();

export function toDownloadJson(job: DownloadJob) {
  return {
    job_id: job.id,
    object: "download" as const,
    status: job.status,
    model: job.model,
    file: job.file,
    path: job.path,
    model_id: job.modelId ?? null,
    downloaded_bytes: job.downloadedBytes,
    total_size_bytes: job.totalBytes,
    bytes_per_second: Math.round(job.bytesPerSecond),
    started_at: Math.floor(job.startedAt / 1000),
    completed_at: job.completedAt === undefined ? null : Math.floor(job.completedAt / 1000),
    error: job.error ?? null,
  };
}

export function registerDownloadRoutes(app: App, deps: AppDeps): void {
  const modelsDir =
    deps.config.modelsDir ??
    (deps.config.dataDir === undefined ? undefined : path.join(deps.config.dataDir, "models"));
  const jobs =
    deps.downloads ??
    (modelsDir === undefined
      ? undefined
      : new DownloadJobs({
          modelsDir,
          ...(deps.logger === undefined ? {} : { logger: deps.logger }),
          ...(deps.shutdownSignal === undefined ? {} : { signal: deps.shutdownSignal }),
        }));
  const requireJobs = (): DownloadJobs => {
    if (jobs === undefined)
      throw new ApiError({
        status: 503,
        message: "This server has no models directory, so it cannot download models.",
        code: "downloads_unavailable",
      });
    return jobs;
  };

  app.post("/api/v0/download", async (context) => {
    const body = await readJsonBody(context);
    const parsed = downloadBodySchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue?.path.join(".") || "model";
      const message =
        issue?.code === "unrecognized_keys"
          ? `Unknown field(s): ${issue.keys.join(", ")}; send {"model": "user/repo:Q4_K_M"}.`
          : field === "quantization"
            ? "`quantization` must be a non-empty string such as Q4_K_M."
            : '`model` is required: a Hugging Face repo ("user/repo", "user/repo:Q4_K_M", "user/repo/file.gguf") or a URL.';
      throw ApiError.invalid(message, issue?.code === "unrecognized_keys" ? null : field);
    }
    const { model, quantization } = parsed.data;
    try {
      const reference = parseModelReference(model, new URL(huggingFaceEndpoint()).hostname);
      // `quantization` picks a file of a repository: it cannot apply to a file, nor contradict `model`'s own.
      if (quantization !== undefined) {
        if (reference.kind !== "repo")
          throw ApiError.invalid(
            "`quantization` applies to a repository (user/repo); this `model` names one file.",
            "quantization",
          );
        if (
          reference.quantization !== undefined &&
          reference.quantization.toLowerCase() !== quantization.toLowerCase()
        )
          throw ApiError.invalid(
            `\`quantization\` (${quantization}) contradicts the one in \`model\` (${reference.quantization}).`,
            "quantization",
          );
      }
      const asked =
        reference.kind === "repo" && quantization !== undefined
          ? describeReference({ ...reference, quantization })
          : model;
      // Any client of the API could otherwise make the server fetch from hosts on its own network.
      if (reference.kind === "url")
        throw new DownloadError(
          "The server downloads from Hugging Face only (user/repo, user/repo:Q4_K_M, user/repo/file.gguf or a Hugging Face URL); run `lmhost get <url>` on the machine for other URLs.",
          400,
        );
      return context.json(toDownloadJson(await requireJobs().start(asked)));
    } catch (error) {
      // A gated repo is the Hub refusing the server's token, not this client's credentials: a 400.
      if (error instanceof DownloadError)
        throw new ApiError({
          status: error.status === 422 || error.status === 401 ? 400 : error.status,
          message: error.message,
          param: error.status < 500 ? "model" : null,
          code: error.code,
        });
      throw error;
    }
  });

  app.get("/api/v0/download", (context) =>
    context.json({ object: "list", data: requireJobs().list().map(toDownloadJson) }),
  );

  app.get("/api/v0/download/:id", (context) => {
    const id = context.req.param("id");
    const job = requireJobs().get(id);
    if (job === undefined) throw ApiError.notFound(`No download '${id}'.`, "id", "download_not_found");
    return context.json(toDownloadJson(job));
  });
}
