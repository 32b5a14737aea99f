/** A small levelled logger writing one line per event to stderr (JSON-free, human readable). */
export type LogLevel = "silent" | "error" | "warn" | "info" | "debug";

const order: Record<LogLevel, number> = { silent: 0, error: 1, warn: 2, info: 3, debug: 4 };

export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
}

export function createLogger(
  level: LogLevel,
  write: (line: string) => void = (line) => process.stderr.write(line),
): Logger {
  const at = (messageLevel: Exclude<LogLevel, "silent">) => (message: string) => {
    if (order[messageLevel] <= order[level])
      write(`${new Date().toISOString()} ${messageLevel.padEnd(5)} ${message}\n`);
  };
  return { error: at("error"), warn: at("warn"), info: at("info"), debug: at("debug") };
}

export const silentLogger: Logger = createLogger("silent");
