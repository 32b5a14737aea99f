/**
 * Download progress for `lmhost get`, on stderr: on a terminal one bar redrawn in place (percentage,
 * size, speed, time left); otherwise (a log, CI, a pipe) a plain line every 10 % (at most one a second) or 5 seconds.
 * node-llama-cpp's own bar (ipull's) is not used: it takes over stdout and its Ctrl-C handler exits
 * the process with status 0, so an interrupted download would look successful.
 */
import type { DownloadProgress } from "../models/download/download.js";
import { formatBytes } from "./table.js";

export interface ProgressDisplay {
  update(progress: DownloadProgress): void;
  /** Ends the bar's line (call before printing anything else). */
  finish(): void;
}

export function createProgressDisplay(
  label: string,
  stream: NodeJS.WriteStream = process.stderr,
): ProgressDisplay {
  return stream.isTTY ? terminalBar(label, stream) : plainLines(label, stream);
}

function terminalBar(label: string, stream: NodeJS.WriteStream): ProgressDisplay {
  let lastDraw = 0;
  let drawn = false;
  let latest: DownloadProgress | undefined;
  const draw = () => {
    if (latest === undefined) return;
    const columns = stream.columns ?? 80;
    const fraction = latest.totalBytes > 0 ? Math.min(1, latest.downloadedBytes / latest.totalBytes) : 0;
    const details = ` ${String(Math.floor(fraction * 100)).padStart(3)}% ${formatBytes(latest.downloadedBytes)}/${formatBytes(latest.totalBytes)} ${formatSpeed(latest.bytesPerSecond)} ${formatEta(latest.secondsLeft)}`;
    const name = label.length > 30 ? `…${label.slice(-29)}` : label;
    const width = Math.max(10, Math.min(40, columns - details.length - name.length - 4));
    const filled = Math.round(fraction * width);
    stream.write(`\r\u001b[2K${name} [${"█".repeat(filled)}${"░".repeat(width - filled)}]${details}`);
    drawn = true;
  };
  return {
    update(progress) {
      latest = progress;
      const now = Date.now();
      // Ten redraws a second at most; finish() draws the last state.
      if (now - lastDraw < 100) return;
      lastDraw = now;
      draw();
    },
    finish() {
      draw();
      if (drawn) stream.write("\n");
      drawn = false;
    },
  };
}

function plainLines(label: string, stream: NodeJS.WriteStream): ProgressDisplay {
  let lastLine = 0;
  let lastTenth = -1;
  let latest: DownloadProgress | undefined;
  let lastPrinted: DownloadProgress | undefined;
  const print = (progress: DownloadProgress) => {
    const percent =
      progress.totalBytes > 0 ? Math.floor((progress.downloadedBytes / progress.totalBytes) * 100) : 0;
    stream.write(
      `${label}: ${percent}% (${formatBytes(progress.downloadedBytes)} of ${formatBytes(progress.totalBytes)}), ${formatSpeed(progress.bytesPerSecond)}, ${formatEta(progress.secondsLeft)}\n`,
    );
    lastPrinted = progress;
  };
  return {
    update(progress) {
      latest = progress;
      const tenth =
        progress.totalBytes > 0 ? Math.floor((progress.downloadedBytes / progress.totalBytes) * 10) : 0;
      const now = Date.now();
      if ((tenth === lastTenth || now - lastLine < 1_000) && now - lastLine < 5_000) return;
      if (tenth >= 10) return; // the 100 % line comes from finish()
      lastTenth = tenth;
      lastLine = now;
      print(progress);
    },
    finish() {
      if (latest !== undefined && latest !== lastPrinted) print(latest);
    },
  };
}

function formatSpeed(bytesPerSecond: number): string {
  return bytesPerSecond > 0 ? `${formatBytes(bytesPerSecond)}/s` : "–/s";
}

function formatEta(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return "ETA –";
  return `ETA ${formatDuration(seconds)}`;
}

export function formatDuration(seconds: number): string {
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole}s`;
  if (whole < 3600) return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, "0")}s`;
  return `${Math.floor(whole / 3600)}h${String(Math.floor((whole % 3600) / 60)).padStart(2, "0")}m`;
}
