/** Human-readable figures for logs and the CLI: sizes (`1.2 MB`) and durations (`59m`, `3m 20s`). */
export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/**
 * A duration in seconds as its two largest units, rounded down: `45s`, `3m 20s`, `59m`, `1h 5m`, `2d 3h`
 * (a zero second unit is left out: `59m`, not `59m 0s`). Negative durations are `0s`.
 */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "never";
  let rest = Math.max(0, Math.floor(seconds));
  const units: [string, number][] = [
    ["d", 86_400],
    ["h", 3_600],
    ["m", 60],
    ["s", 1],
  ];
  const parts: string[] = [];
  for (const [name, size] of units) {
    const count = Math.floor(rest / size);
    rest -= count * size;
    if (parts.length > 0) {
      if (count > 0) parts.push(`${count}${name}`);
      break;
    }
    if (count > 0) parts.push(`${count}${name}`);
  }
  return parts.length === 0 ? "0s" : parts.join(" ");
}
