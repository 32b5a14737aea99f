/**
 * The shape every bench module returns, shared by `bench/run.ts` and the figure modules it includes
 * (engine, Responses API, load, the optional prompt-cache bench): one named number, the median over
 * rounds with its min and max, its unit, and the target it is held to.
 */
export interface Figure {
  name: string;
  /** Median over rounds. */
  value: number;
  min: number;
  max: number;
  unit: string;
  target?: { op: "<=" | ">="; value: number };
  /** What the figure measures / what dominates it; printed under the table. */
  note?: string;
  /** Rounds the median was taken over. */
  rounds?: number;
}

export interface BenchOptions {
  quick: boolean;
  log: (line: string) => void;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

export function percentile(values: readonly number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)] ?? Number.NaN;
}

/** A figure from per-round samples: median, min, max. */
export function figureOf(
  name: string,
  samples: readonly number[],
  unit: string,
  extra: Pick<Figure, "target" | "note"> = {},
): Figure {
  const finite = samples.filter((value) => Number.isFinite(value));
  return {
    name,
    value: median(finite),
    min: finite.length > 0 ? Math.min(...finite) : Number.NaN,
    max: finite.length > 0 ? Math.max(...finite) : Number.NaN,
    unit,
    rounds: finite.length,
    ...extra,
  };
}

/**
 * A ratio figure from paired rounds (numerator[i] and denominator[i] measured back to back in the same
 * round): the median of the per-round ratios, so each ratio compares runs made under the same load.
 */
export function ratioOf(
  name: string,
  numerators: readonly number[],
  denominators: readonly number[],
  extra: Pick<Figure, "target" | "note"> = {},
): Figure {
  const ratios = numerators.map((numerator, index) => numerator / (denominators[index] ?? Number.NaN));
  return figureOf(name, ratios, "×", extra);
}

export function meets(figure: Figure): boolean | undefined {
  if (figure.target === undefined || !Number.isFinite(figure.value)) return undefined;
  return figure.target.op === "<="
    ? figure.value <= figure.target.value
    : figure.value >= figure.target.value;
}

function format(value: number): string {
  if (!Number.isFinite(value)) return "–";
  const magnitude = Math.abs(value);
  if (magnitude >= 100) return value.toFixed(0);
  if (magnitude >= 10) return value.toFixed(1);
  if (magnitude >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

/** The readable table printed at the end of a run. */
export function table(figures: readonly Figure[]): string {
  const rows = figures.map((figure) => {
    const verdict = meets(figure);
    return [
      figure.name,
      `${format(figure.value)} ${figure.unit}`,
      `${format(figure.min)} – ${format(figure.max)}`,
      figure.target === undefined ? "" : `${figure.target.op} ${format(figure.target.value)}`,
      verdict === undefined ? "" : verdict ? "ok" : "MISSED",
    ];
  });
  const header = ["figure", "median", "min – max", "target", ""];
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((width) => "-".repeat(width))), ...rows.map(line)].join("\n");
}
