/**
 * The three things the decode figures compare, each in its own process so each runs as it does in real
 * life, all kept alive for a whole bench so rounds can be interleaved:
 *   - lmhost: the real binary (`node bin/lmhost.js serve`) on a loopback port, started the way users start
 *     it (the bin sets UV_THREADPOOL_SIZE itself), streamed over HTTP like any client;
 *   - raw: node-llama-cpp alone (`sequence.evaluate` greedy loop, no chat wrapper, no server) in a child
 *     process (`bench/raw-worker.ts`) driven over stdin/stdout;
 *   - llama-server (optional, `--vs-llama-server PATH`): llama.cpp's own server on the same model.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { Agent, request as httpRequest } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repositoryRoot = path.resolve(here, "..");

/** One streamed generation: when it started, its first token and its end (performance.now() ms). */
export interface Generation {
  startedAt: number;
  firstTokenAt: number;
  endedAt: number;
  outputTokens: number;
  /** Prompt tokens reused from the KV cache, where the server reports it. */
  cachedTokens?: number;
  promptTokens?: number;
  responseId?: string;
  text?: string;
  /** Arrival time of each streamed text delta (one per token for these tokenizers). */
  tokenTimes?: number[];
}

/**
 * Decode speed of a generation, prefill excluded: tokens after the first over the time after it. Where the
 * arrival time of each streamed token is known (lmhost), the first quarter is left out too: the chat layer
 * holds back text that could start a stop string and releases it in a burst, which would make a rate
 * counted from the first delta look faster than the model runs.
 */
export function decodeRate(generation: Generation): number {
  const times = generation.tokenTimes;
  if (times !== undefined && times.length >= 8) {
    // Start at the end of a received chunk: the tokens of the chunk that carries the quarter mark were
    // generated before it arrived, so counting them after it would read a write that joined several
    // tokens as a faster decode.
    let from = Math.floor(times.length / 4);
    while (from < times.length - 2 && times[from + 1] === times[from]) from++;
    const span = (times.at(-1) ?? 0) - (times[from] ?? 0);
    // The rest arrived in one chunk: no time between chunks to measure over, so the coarse rate below.
    if (span > 0) return ((times.length - 1 - from) / span) * 1000;
  }
  return ((generation.outputTokens - 1) / (generation.endedAt - generation.firstTokenAt)) * 1000;
}

/**
 * Aggregate decode rate of concurrent generations while all of them decode, prefill excluded: the tokens
 * that arrive between the last stream's first token and the first stream's last token, over that window.
 * One generation: its decode rate from its first token. NaN without per-token times or with no overlap.
 */
export function steadyRate(generations: Generation[]): number {
  const times = generations.map((generation) => generation.tokenTimes ?? []);
  if (times.some((list) => list.length < 2)) return Number.NaN;
  const from = Math.max(...times.map((list) => list[0]!));
  const to = Math.min(...times.map((list) => list.at(-1)!));
  if (to <= from) return Number.NaN;
  const tokens = times.reduce(
    (sum, list) => sum + list.filter((time) => time > from && time <= to).length,
    0,
  );
  return (tokens / (to - from)) * 1000;
}

/**
 * CPU seconds a process has used (user + system, all its threads), from /proc: less sensitive to other
 * load on the machine than wall time, so CPU per token compares the server path's cost even when busy.
 */
export function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    // After the command: state is field 3, utime field 14, stime field 15 (1-based in proc(5)).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

export const ttftMs = (generation: Generation): number => generation.firstTokenAt - generation.startedAt;

function environmentWithout(names: string[], extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const environment = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !names.includes(name) && !name.startsWith("LMHOST_")),
  );
  return { ...environment, ...extra };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve();
      return;
    }
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

/**
 * POSTs `body` as JSON and reads the SSE answer, calling `onEvent` with each event's parsed data. Plain
 * node:http on a keep-alive agent rather than fetch: the client shares the 2 cores with the server's
 * compute threads, and undici's web-stream reader cost ~0.8 ms of CPU per streamed token on the 470M
 * model (measured per thread from /proc/PID/task/TID/schedstat), CPU taken from the decode being measured.
 */
function postSse(
  url: string,
  body: unknown,
  signal: AbortSignal,
  onEvent: (data: Record<string, unknown>, receivedAt: number) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const request = httpRequest(url, {
      method: "POST",
      agent: keepAliveAgent,
      signal,
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
    });
    request.once("error", reject);
    request.once("response", (response) => {
      response.setEncoding("utf8");
      let buffer = "";
      if (response.statusCode !== 200) {
        response.on("data", (chunk: string) => (buffer += chunk));
        response.once("end", () => reject(new Error(`request failed: ${response.statusCode} ${buffer}`)));
        return;
      }
      response.on("data", (chunk: string) => {
        const receivedAt = performance.now();
        buffer += chunk;
        let boundary: number;
        while ((boundary = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, boundary);
          buffer = buffer.slice(boundary + 2);
          const dataAt = block.indexOf("data: ");
          if (dataAt < 0) continue;
          const data = block.slice(dataAt + 6);
          if (data !== "[DONE]") onEvent(JSON.parse(data) as Record<string, unknown>, receivedAt);
        }
      });
      response.once("end", resolve);
      response.once("error", reject);
      response.once("close", () => {
        if (!response.complete) reject(new Error(`${url}: the stream was cut short`));
      });
    });
    request.end(payload);
  });
}

const keepAliveAgent = new Agent({ keepAlive: true });

/** The body of a streamed Responses API request, as lmhost and llama-server take it. */
export interface ResponsesRequest {
  input: unknown;
  maxTokens: number;
  previousResponseId?: string;
  store?: boolean;
  /** Wall-time cap; the generation is cut there and measured as far as it got. */
  budgetMs?: number;
}

/** A streamed `POST /v1/responses` at temperature 0, timed per text delta. */
async function streamResponses(url: string, model: string, body: ResponsesRequest): Promise<Generation> {
  const startedAt = performance.now();
  let firstTokenAt = Number.NaN;
  let final: Record<string, unknown> | undefined;
  let deltas = 0;
  let text = "";
  const tokenTimes: number[] = [];
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), body.budgetMs ?? 600_000);
  const request = {
    model,
    input: body.input,
    max_output_tokens: body.maxTokens,
    temperature: 0,
    stream: true,
    ...(body.store === undefined ? {} : { store: body.store }),
    ...(body.previousResponseId === undefined ? {} : { previous_response_id: body.previousResponseId }),
  };
  await postSse(`${url}/v1/responses`, request, controller.signal, (event, receivedAt) => {
    if (event.type === "response.output_text.delta") {
      deltas++;
      text += event.delta as string;
      tokenTimes.push(receivedAt);
      if (Number.isNaN(firstTokenAt)) firstTokenAt = receivedAt;
    }
    if (
      event.type === "response.completed" ||
      event.type === "response.incomplete" ||
      event.type === "response.failed"
    )
      final = event.response as Record<string, unknown>;
  }).catch((error: unknown) => {
    if (!controller.signal.aborted) throw error;
  });
  clearTimeout(timer);
  const endedAt = performance.now();
  if (final === undefined) {
    if (!controller.signal.aborted) throw new Error(`${url}: stream ended without a final response`);
    // Cut at the budget: one text delta per token (this tokenizer has no multi-byte pieces).
    return { startedAt, firstTokenAt, endedAt, outputTokens: deltas, tokenTimes, text };
  }
  const usage = final.usage as {
    input_tokens: number;
    output_tokens: number;
    input_tokens_details?: { cached_tokens?: number };
  };
  return {
    startedAt,
    firstTokenAt,
    endedAt,
    outputTokens: usage.output_tokens,
    promptTokens: usage.input_tokens,
    cachedTokens: usage.input_tokens_details?.cached_tokens ?? 0,
    responseId: final.id as string,
    tokenTimes,
    text,
  };
}

export interface LmhostServer {
  url: string;
  modelId: string;
  pid: number;
  /** A streamed Responses API request. */
  generate(body: ResponsesRequest): Promise<Generation>;
  /** A small non-streaming request; resolves with its wall time. */
  request(body: Record<string, unknown>): Promise<number>;
  stop(): Promise<void>;
}

/** Starts `node bin/lmhost.js serve` on a free loopback port with one model file. */
export async function startLmhost(options: {
  modelFile: string;
  /** Undefined: lmhost's own default. */
  threads?: number;
  parallel?: number;
  extraArgs?: string[];
  /** Another checkout of lmhost to run (default this one), e.g. to compare two commits side by side. */
  root?: string;
}): Promise<LmhostServer> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "lmhost-bench-"));
  const port = await freePort();
  const args = [
    path.join(options.root ?? repositoryRoot, "bin/lmhost.js"),
    "serve",
    "--port",
    String(port),
    "--data-dir",
    dataDir,
    "--model",
    options.modelFile,
    "--parallel",
    String(options.parallel ?? 4),
    "--log-level",
    "warn",
    ...(options.threads === undefined ? [] : ["--threads", String(options.threads)]),
    ...(options.extraArgs ?? []),
  ];
  // As users start it: the bin sets UV_THREADPOOL_SIZE itself before libuv starts.
  const child = spawn(process.execPath, args, {
    cwd: options.root ?? repositoryRoot,
    env: environmentWithout(["UV_THREADPOOL_SIZE", "NODE_OPTIONS"]),
    stdio: ["ignore", "ignore", "pipe"],
  });
  let errors = "";
  child.stderr?.on("data", (chunk: Buffer) => (errors = (errors + chunk.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = performance.now() + 120_000;
  let modelId: string | undefined;
  while (modelId === undefined) {
    if (child.exitCode !== null) throw new Error(`lmhost exited with ${child.exitCode}: ${errors}`);
    if (performance.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`lmhost did not start: ${errors}`);
    }
    try {
      const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
      modelId = models.data[0]?.id;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  const id = modelId;
  const server: LmhostServer = {
    url,
    modelId: id,
    pid: child.pid ?? 0,
    generate: (body) => streamResponses(url, id, body),
    async request(body) {
      const started = performance.now();
      const response = await fetch(`${url}/v1/responses`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: id, ...body }),
      });
      await response.arrayBuffer();
      if (!response.ok) throw new Error(`lmhost request failed: ${response.status}`);
      return performance.now() - started;
    },
    stop: () => stopChild(child),
  };
  return server;
}

export interface RawWorker {
  threads: number;
  pid: number;
  /** Greedy decode of `maxTokens` after `prompt` on a cleared sequence. */
  generate(prompt: string, maxTokens: number, budgetMs?: number): Promise<Generation>;
  stop(): Promise<void>;
}

/** node-llama-cpp alone in a child process (bench/raw-worker.ts), same UV_THREADPOOL_SIZE as lmhost's bin. */
export async function startRaw(options: {
  modelFile: string;
  threads: number;
  /** Create the context as lmhost does (4 sequences, its flash-attention rule). */
  lmhostContext?: boolean;
}): Promise<RawWorker> {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      path.join(here, "raw-worker.ts"),
      options.modelFile,
      String(options.threads),
      ...(options.lmhostContext === true ? ["lmhost-context"] : []),
    ],
    {
      cwd: repositoryRoot,
      env: environmentWithout(["NODE_OPTIONS"], { UV_THREADPOOL_SIZE: "1" }),
      stdio: ["pipe", "pipe", "inherit"],
    },
  );
  const lines = createInterface({ input: child.stdout! });
  const waiting: ((line: string) => void)[] = [];
  lines.on("line", (line) => waiting.shift()?.(line));
  const next = () => new Promise<string>((resolve) => waiting.push(resolve));
  const exited = new Promise<never>((_, reject) =>
    child.once("exit", (code) => reject(new Error(`raw worker exited with ${code}`))),
  );
  exited.catch(() => undefined);
  const ready = await Promise.race([next(), exited]);
  if (ready !== "ready") throw new Error(`raw worker: ${ready}`);
  // The worker's clock is not ours: it reports durations, mapped onto this process's clock.
  return {
    threads: options.threads,
    pid: child.pid ?? 0,
    async generate(prompt, maxTokens, budgetMs) {
      const startedAt = performance.now();
      child.stdin!.write(`${JSON.stringify({ prompt, maxTokens, budgetMs })}\n`);
      const reply = JSON.parse(await Promise.race([next(), exited])) as {
        firstMs: number;
        totalMs: number;
        outputTokens: number;
      };
      return {
        startedAt,
        firstTokenAt: startedAt + reply.firstMs,
        endedAt: startedAt + reply.totalMs,
        outputTokens: reply.outputTokens,
      };
    },
    stop: () => stopChild(child),
  };
}

export interface LlamaServer {
  /**
   * A streamed request to llama-server's own `/v1/responses` (same chat template as lmhost's); it keeps no
   * state, so a follow-up re-sends the history and its slot's prompt cache reuses the common prefix.
   */
  generate(body: Omit<ResponsesRequest, "previousResponseId" | "store">): Promise<Generation>;
  stop(): Promise<void>;
}

/** llama.cpp's llama-server on a free loopback port, same model, threads, context and parallel slots. */
export async function startLlamaServer(options: {
  binary: string;
  modelFile: string;
  threads: number;
  contextPerSequence: number;
  parallel: number;
}): Promise<LlamaServer> {
  const port = await freePort();
  const child = spawn(
    options.binary,
    [
      "-m",
      options.modelFile,
      "-t",
      String(options.threads),
      "-tb",
      String(options.threads),
      "-c",
      String(options.contextPerSequence * options.parallel),
      "-np",
      String(options.parallel),
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let errors = "";
  child.stderr?.on("data", (chunk: Buffer) => (errors = (errors + chunk.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = performance.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`llama-server exited with ${child.exitCode}: ${errors}`);
    if (performance.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`llama-server did not start: ${errors}`);
    }
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return {
    generate: (body) => streamResponses(url, "model", body),
    stop: () => stopChild(child),
  };
}
