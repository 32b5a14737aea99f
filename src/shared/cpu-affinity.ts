/**
 * Pins this process to one CPU (Linux, via util-linux `taskset`). With one inference thread this
 * removes the cross-CPU wake-ups between node's threadpool and llama.cpp that dominate per-token time
 * on small machines (×1.25–1.30 measured, ../shared/ENGINE-NOTES.md). Threads created later inherit
 * the mask, so call it before the first model loads. Best effort: returns what it did.
 */
import { execFileSync } from "node:child_process";

export function pinToOneCpu(): { pinned: boolean; cpu?: number; reason?: string } {
  if (process.platform !== "linux") return { pinned: false, reason: "not Linux" };
  try {
    const current = execFileSync("taskset", ["-c", "-p", String(process.pid)], { encoding: "utf8" });
    const list = current.split(":").pop()?.trim() ?? "";
    const cpus = expandCpuList(list);
    const cpu = cpus[cpus.length - 1];
    if (cpu === undefined) return { pinned: false, reason: `cannot read the CPU list '${list}'` };
    execFileSync("taskset", ["-a", "-c", "-p", String(cpu), String(process.pid)], { stdio: "ignore" });
    return { pinned: true, cpu };
  } catch (error) {
    return { pinned: false, reason: (error as Error).message.split("\n")[0] ?? "taskset failed" };
  }
}

/** "0-3,6" → [0, 1, 2, 3, 6] */
export function expandCpuList(list: string): number[] {
  const cpus: number[] = [];
  for (const range of list.split(",")) {
    const [start, end] = range.split("-").map((value) => Number.parseInt(value, 10));
    if (start === undefined || Number.isNaN(start)) continue;
    for (let cpu = start; cpu <= (end === undefined || Number.isNaN(end) ? start : end); cpu++)
      cpus.push(cpu);
  }
  return cpus;
}
