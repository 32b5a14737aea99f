/**
 * `npm run bench:freeze`: how long one hostile request freezes the server. Starts the real `lmhost` binary
 * (bin/lmhost.js → dist/) on the tiny ChatML model, then for each case sends the request while another
 * loop polls `GET /health` every 5 ms and records the slowest answer: the freeze a concurrent user sees.
 * Also sends identical temperature-1 requests to see whether sampling is random.
 *
 * Usage: `npm run bench:freeze [-- --regex-length 30 --enum-values 50000 --cases regex,enum,fields,nesting,seed]`. Prints one line per case and a
 * JSON summary. Figures here are wall-clock on a shared machine: compare runs made side by side.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { spawnServer } from "../tests/helpers/spawn-server.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const model = path.resolve(root, "assets/models/stories260K-chatml.gguf");
const modelId = "stories260K-chatml";

function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  const value = index >= 0 ? Number(process.argv[index + 1]) : fallback;
  return Number.isFinite(value) ? value : fallback;
}

interface CaseResult {
  name: string;
  status: number;
  requestMilliseconds: number;
  /** The slowest /health answer while the request ran (the freeze others see). */
  healthMaxMilliseconds: number;
  message: string;
}

/**
 * Polls GET /health every 5 ms until told to stop, then posts the slowest answer in milliseconds, counted
 * from when the poll was due (a frozen server delays the answer; a late timer would count too).
 */
const POLLER = `
const { parentPort, workerData } = require("node:worker_threads");
let polling = true;
let slowest = 0;
parentPort.on("message", () => { polling = false; });
(async () => {
  parentPort.postMessage("ready");
  while (polling) {
    const due = performance.now();
    await fetch(workerData.url + "/health", { headers: { connection: "close" } })
      .then((response) => response.arrayBuffer())
      .catch((error) => console.log("  /health failed: " + error));
    slowest = Math.max(slowest, performance.now() - due);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  parentPort.postMessage(slowest);
})();
`;

async function measure(
  url: string,
  name: string,
  body: string,
  endpoint = "/v1/responses",
): Promise<CaseResult> {
  // The poller runs on its own thread, so this process sending a 20 MB body never shows as a freeze.
  const poller = new Worker(POLLER, { eval: true, workerData: { url } });
  await new Promise((resolve) => poller.once("message", resolve));
  const started = performance.now();
  const response = await fetch(`${url}${endpoint}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  const text = await response.text();
  const requestMilliseconds = performance.now() - started;
  const healthMax = await new Promise<number>((resolve) => {
    poller.once("message", (value: number) => resolve(value));
    poller.postMessage("stop");
  });
  await poller.terminate();
  const message = summarize(text);
  return {
    name,
    status: response.status,
    requestMilliseconds,
    healthMaxMilliseconds: healthMax,
    message: message.slice(0, 100),
  };
}

/** The error message or the status of an answer, or its first characters when it is not JSON. */
function summarize(text: string): string {
  try {
    const parsed = JSON.parse(text) as { error?: { message?: string }; status?: string };
    return parsed.error?.message ?? parsed.status ?? "";
  } catch {
    return text.slice(0, 80);
  }
}

function nested(levels: number): string {
  return `{"model":"${modelId}","input":"hi","metadata":${"[".repeat(levels)}${"]".repeat(levels)}}`;
}

const casesIndex = process.argv.indexOf("--cases");
const cases = new Set(
  (casesIndex >= 0 ? (process.argv[casesIndex + 1] ?? "") : "regex,enum,fields,nesting,seed").split(","),
);
const regexLength = argument("regex-length", 26);
const enumValues = argument("enum-values", 50_000);
// The real binary, one thread, a fresh data dir (the test suite's own helper).
const server = await spawnServer(["--model", model]);
const results: CaseResult[] = [];
const report = (result: CaseResult) => {
  results.push(result);
  console.log(
    `${result.name.padEnd(44)} ${String(result.status).padStart(3)}  request ${result.requestMilliseconds.toFixed(0).padStart(7)} ms  /health max ${result.healthMaxMilliseconds.toFixed(0).padStart(7)} ms  ${result.message}`,
  );
};
try {
  // Load the model first so no case pays for it.
  await measure(server.url, "warm-up", JSON.stringify({ model: modelId, input: "hi", max_output_tokens: 4 }));

  if (cases.has("regex")) {
    const regexSchema = {
      type: "object",
      properties: { value: { type: "string", enum: [`${"a".repeat(regexLength)}!`], pattern: "^(a+)+$" } },
      required: ["value"],
      additionalProperties: false,
    };
    report(
      await measure(
        server.url,
        `1. enum + backtracking pattern (${regexLength} chars)`,
        JSON.stringify({
          model: modelId,
          input: "hi",
          max_output_tokens: 8,
          text: { format: { type: "json_schema", name: "x", schema: regexSchema } },
        }),
      ),
    );
    report(
      await measure(
        server.url,
        `1. same through /input_tokens`,
        JSON.stringify({
          model: modelId,
          input: "hi",
          text: { format: { type: "json_schema", name: "x", schema: regexSchema } },
        }),
        "/v1/responses/input_tokens",
      ),
    );
  }
  if (cases.has("enum")) {
    const bigEnum = Array.from({ length: enumValues }, (_, index) => `v${index}`);
    report(
      await measure(
        server.url,
        `2. enum of ${enumValues} values`,
        JSON.stringify({
          model: modelId,
          input: "hi",
          max_output_tokens: 4,
          text: {
            format: {
              type: "json_schema",
              name: "x",
              schema: { type: "object", properties: { v: { enum: bigEnum } }, required: ["v"] },
            },
          },
        }),
      ),
    );
  }
  if (cases.has("fields")) {
    report(
      await measure(
        server.url,
        "3. 18 MB of instructions",
        JSON.stringify({
          model: modelId,
          input: "hi",
          instructions: "word ".repeat(3_600_000),
          max_output_tokens: 4,
        }),
      ),
    );
    report(
      await measure(
        server.url,
        "3. same through /input_tokens",
        JSON.stringify({ model: modelId, input: "hi", instructions: "word ".repeat(3_600_000) }),
        "/v1/responses/input_tokens",
      ),
    );
    report(
      await measure(
        server.url,
        "3. input of 10,485,760 characters",
        JSON.stringify({ model: modelId, input: "a".repeat(10_485_760), max_output_tokens: 4 }),
      ),
    );
  }
  if (cases.has("nesting"))
    report(await measure(server.url, "3. body nested 9,900,000 levels", nested(9_900_000)));

  // 10. Identical temperature-1 requests, sent at once (so within the same second): distinct texts of 5?
  const texts = new Set<string>();
  if (cases.has("seed")) {
    await Promise.all(
      Array.from({ length: 5 }, async () => {
        const response = await fetch(`${server.url}/v1/responses`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            model: modelId,
            input: "Once upon a time",
            temperature: 1,
            max_output_tokens: 24,
          }),
        });
        const body = (await response.json()) as { output?: { content?: { text?: string }[] }[] };
        texts.add(
          (body.output ?? []).flatMap((item) => (item.content ?? []).map((part) => part.text)).join(""),
        );
      }),
    );
    console.log(`10. identical temperature-1 requests: ${texts.size} distinct texts of 5`);
  }
  console.log("\nJSON:", JSON.stringify({ freeze: results, distinctOfFive: texts.size }));
} finally {
  await server.stop();
}
