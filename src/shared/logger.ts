/**
 * A small levelled logger writing one line per event to stderr: human-readable text
 * (`2026-12-07T04:30:00.000Z info  message key=value`) or, with format "json", one JSON object per line
 * (`{"time", "level", "msg", ...fields}`) for log collectors.
 */
export type LogLevel = "silent" | "error" | "warn" | "info" | "debug";
export type LogFormat = "text" | "json";

/** Structured values attached to a line (a request's status, tokens, ms...). Undefined values are left out. */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

const order: Record<LogLevel, number> = { silent: 0, error: 1, warn: 2, info: 3, debug: 4 };

export interface Logger {
  error(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
}

export interface LoggerOptions {
  format?: LogFormat;
  write?: (line: string) => void;
}

/** `createLogger(level)`, `createLogger(level, write)` or `createLogger(level, {format, write})`. */
export function createLogger(
  level: LogLevel,
  writeOrOptions: ((line: string) => void) | LoggerOptions = {},
): Logger {
  const options = typeof writeOrOptions === "function" ? { write: writeOrOptions } : writeOrOptions;
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const format = options.format ?? "text";
  const at = (messageLevel: Exclude<LogLevel, "silent">) => (message: string, fields?: LogFields) => {
    if (order[messageLevel] > order[level]) return;
    const time = new Date().toISOString();
    write(
      format === "json"
        ? `${JSON.stringify({ time, level: messageLevel, msg: message, ...definedFields(fields) })}\n`
        : `${time} ${messageLevel.padEnd(5)} ${message}${textFields(fields)}\n`,
    );
  };
  return { error: at("error"), warn: at("warn"), info: at("info"), debug: at("debug") };
}

/** True when `level` lets lines of `messageLevel` through (e.g. isEnabled("info", "debug") is false). */
export function levelEnabled(level: LogLevel, messageLevel: Exclude<LogLevel, "silent">): boolean {
  return order[messageLevel] <= order[level];
}

function definedFields(fields: LogFields | undefined): LogFields {
  if (fields === undefined) return {};
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined));
}

/** Fields a text line already shows in its message (a request line reads `POST /v1/responses 200 ...`). */
const SHOWN_IN_MESSAGE = new Set(["method", "path", "status"]);

function textFields(fields: LogFields | undefined): string {
  const entries = Object.entries(definedFields(fields)).filter(([key]) => !SHOWN_IN_MESSAGE.has(key));
  if (entries.length === 0) return "";
  return (
    " " +
    entries
      .map(([key, value]) => {
        const text = String(value);
        return `${key}=${/[\s"=]/.test(text) || text === "" ? JSON.stringify(text) : text}`;
      })
      .join(" ")
  );
}

export const silentLogger: Logger = createLogger("silent");
