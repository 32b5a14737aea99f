/**
 * `lmhost get`'s progress display: a bar redrawn in place on a terminal (size, speed, time left), plain
 * lines at most every 10 % otherwise, each ending with the final state.
 */
import { describe, expect, it } from "vitest";
import { createProgressDisplay, formatDuration } from "../../src/cli/progress.js";

function fakeStream(isTTY: boolean) {
  const writes: string[] = [];
  const stream = { isTTY, columns: 100, write: (text: string) => writes.push(text) > 0 };
  return { stream: stream as unknown as NodeJS.WriteStream, writes };
}

const MB = 1024 * 1024;

describe("progress display", () => {
  it("redraws one line on a terminal with percentage, sizes, speed and time left", () => {
    const { stream, writes } = fakeStream(true);
    const display = createProgressDisplay("model-Q4_K_M.gguf", stream);
    display.update({
      downloadedBytes: 3 * MB,
      totalBytes: 12 * MB,
      bytesPerSecond: 2 * MB,
      secondsLeft: 4.5,
    });
    display.finish();
    const line = writes[0] ?? "";
    expect(line.startsWith("\r\u001b[2Kmodel-Q4_K_M.gguf [")).toBe(true);
    expect(line).toMatch(/\[█+░+\] {2}25% 3\.0 MB\/12\.0 MB 2\.0 MB\/s ETA 5s$/);
    expect(writes.at(-1)).toBe("\n");
    expect(writes.join("")).not.toContain("\n\r");
  });

  it("prints plain lines when not on a terminal, the last at 100 %", () => {
    const { stream, writes } = fakeStream(false);
    const display = createProgressDisplay("m.gguf", stream);
    for (let bytes = 0; bytes <= 10 * MB; bytes += MB / 4)
      display.update({ downloadedBytes: bytes, totalBytes: 10 * MB, bytesPerSecond: MB });
    display.finish();
    expect(writes.length).toBeLessThanOrEqual(3);
    expect(writes[0]).toBe("m.gguf: 0% (0 B of 10.0 MB), 1.0 MB/s, ETA –\n");
    expect(writes.at(-1)).toMatch(/^m\.gguf: 100% \(10\.0 MB of 10\.0 MB\)/);
    expect(writes.every((line) => !line.includes("\r"))).toBe(true);
  });

  it("formats durations for humans", () => {
    expect([formatDuration(4.4), formatDuration(75), formatDuration(7_260)]).toEqual([
      "4s",
      "1m15s",
      "2h01m",
    ]);
  });
});
