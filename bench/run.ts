/**
 * `npm run bench`: every benchmark side by side in one process run, printing figures and ratios.
 * Machines here are shared and noisy, so each comparison is made within one run (interleaved where it
 * matters), never against a stored number.
 */
import { runEngineBench } from "./engine-bench.js";
import { runLoadBench } from "./load-bench.js";
import { runResponsesBench, runTruncationBench } from "./responses-bench.js";

const engine = await runEngineBench();
const responses = await runResponsesBench();
const truncation = await runTruncationBench();
const load = await runLoadBench();
console.log("\nJSON:", JSON.stringify({ engine, responses, truncation, load }));
