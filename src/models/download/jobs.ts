/**
 * Downloads a running server does for `POST /api/v0/download`: each is a job with an id whose status,
 * bytes and error `GET /api/v0/download/{id}` reports. The model is resolved before the job exists (a
 * missing repo or quantization, a gated repo, no network are errors of the request itself); the bytes
 * are fetched in the background. A finished file lands in the models directory, where discovery lists it
 * in /v1/models. Asking again for a model (or another name of the same file) whose download is running
 * returns the running job.
 */
import { randomUUID } from "node:crypto";
import path from "node:path";
import type { Logger } from "../../shared/logger.js";
import { DownloadError } from "./errors.js";
import { planDownload, runDownload, type DownloadPlan } from "./download.js";

export type DownloadJobStatus = "downloading" | "completed" | "already_downloaded" | "failed";

export interface DownloadJob {
  id: string;
  /** As asked. */
  model: string;
  status: DownloadJobStatus;
  /** The file chosen (the repository path, or the URL). */
  file: string;
  /** Where the model file is (or will be). */
  path: string;
  /** The id to use in requests once completed. */
  modelId?: string;
  downloadedBytes: number;
  totalBytes: number;
  bytesPerSecond: number;
  startedAt: number;
  completedAt?: number;
  error?: { message: string; code: string };
}

export interface DownloadJobsOptions {
  modelsDir: string;
  environment?: NodeJS.ProcessEnv;
  logger?: Logger;
  /** Aborts every running download (server shutdown); the partial files stay for a later resume. */
  signal?: AbortSignal;
}

/** Finished jobs kept for status queries. */
const MAX_FINISHED_JOBS = 100;
/** Downloads running at once; one more is a 429 (each holds connections and writes a multi-GB file). */
export const MAX_RUNNING_DOWNLOADS = 3;

export class DownloadJobs {
  private readonly jobs = new Map<string, DownloadJob>();
  /** Running jobs by the model as asked and by the file they write. */
  private readonly running = new Map<string, string>();
  private readonly options: DownloadJobsOptions;
  /** The runs of jobs still downloading (settled() waits for them). */
  private readonly runs = new Set<Promise<void>>();

  constructor(options: DownloadJobsOptions) {
    this.options = options;
  }

  get modelsDir(): string {
    return this.options.modelsDir;
  }

  /** Resolves `model` (throws DownloadError) and starts its download; returns the job. */
  async start(model: string): Promise<DownloadJob> {
    const runningId = this.running.get(model.trim());
    const runningJob = runningId === undefined ? undefined : this.jobs.get(runningId);
    if (runningJob !== undefined) return { ...runningJob };
    const context = {
      modelsDir: this.options.modelsDir,
      environment: this.options.environment,
      signal: this.options.signal,
    };
    if (this.runs.size >= MAX_RUNNING_DOWNLOADS)
      throw new DownloadError(
        `${MAX_RUNNING_DOWNLOADS} downloads are already running; try again when one has finished.`,
        429,
      );
    const plan = await planDownload(model, context);
    // Two names for the same file (`user/repo` and `user/repo:Q4_K_M`) must not write one partial file twice.
    const filePath = path.join(plan.destinationDir, plan.fileNames[0] ?? "");
    const samePath = this.running.get(filePath);
    const samePathJob = samePath === undefined ? undefined : this.jobs.get(samePath);
    if (samePathJob !== undefined) return { ...samePathJob };
    const job: DownloadJob = {
      id: `download_${randomUUID().replace(/-/g, "")}`,
      model,
      status: "downloading",
      file: plan.chosen?.choice.path ?? plan.description,
      path: filePath,
      downloadedBytes: 0,
      totalBytes: plan.sizeBytes ?? 0,
      bytesPerSecond: 0,
      startedAt: Date.now(),
    };
    this.jobs.set(job.id, job);
    this.running.set(model.trim(), job.id);
    this.running.set(filePath, job.id);
    this.options.logger?.info(`download ${job.id}: ${plan.description} → ${job.path}`);
    const run = this.run(job, plan, context).finally(() => {
      this.running.delete(filePath);
      this.runs.delete(run);
    });
    this.runs.add(run);
    this.prune();
    return { ...job };
  }

  /** Resolves when every running download has ended (shutdown aborts them through the jobs' signal first). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.runs]);
  }

  get(id: string): DownloadJob | undefined {
    const job = this.jobs.get(id);
    return job === undefined ? undefined : { ...job };
  }

  list(): DownloadJob[] {
    return [...this.jobs.values()].map((job) => ({ ...job }));
  }

  private async run(
    job: DownloadJob,
    plan: DownloadPlan,
    context: {
      modelsDir: string;
      environment?: NodeJS.ProcessEnv | undefined;
      signal?: AbortSignal | undefined;
    },
  ): Promise<void> {
    try {
      const result = await runDownload(plan, {
        ...context,
        onProgress: (progress) => {
          job.downloadedBytes = progress.downloadedBytes;
          job.totalBytes = progress.totalBytes;
          job.bytesPerSecond = progress.bytesPerSecond;
        },
      });
      job.status = result.alreadyPresent ? "already_downloaded" : "completed";
      job.path = result.path;
      job.modelId = result.id;
      job.downloadedBytes = result.sizeBytes;
      job.totalBytes = result.sizeBytes;
      job.bytesPerSecond = 0;
      this.options.logger?.info(`download ${job.id}: ${job.status}, model id ${result.id}`);
    } catch (error) {
      job.status = "failed";
      job.bytesPerSecond = 0;
      const code = (error as { code?: unknown }).code;
      job.error = {
        message: (error as Error).message,
        code: typeof code === "string" ? code : "download_failed",
      };
      this.options.logger?.warn(`download ${job.id} failed: ${job.error.message}`);
    } finally {
      job.completedAt = Date.now();
      this.running.delete(job.model.trim());
    }
  }

  private prune(): void {
    const finished = [...this.jobs.values()].filter((job) => job.completedAt !== undefined);
    for (const job of finished.slice(0, Math.max(0, finished.length - MAX_FINISHED_JOBS)))
      this.jobs.delete(job.id);
  }
}
