/**
 * A small leveled logger. Deno std's `@std/log` cannot be resolved here
 * (docs/decisions.md), and `shared/` must not touch `console`, so the
 * formatting lives here and the caller passes the sink that writes a line.
 *
 * @module
 */

/** Log levels, lowest first. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** One of {@linkcode LOG_LEVELS}. */
export type LogLevel = typeof LOG_LEVELS[number];

/** How lines are written: `time LEVEL message key=value`, or one JSON object per line. */
export const LOG_FORMATS = ["text", "json"] as const;
/** One of {@linkcode LOG_FORMATS}. */
export type LogFormat = typeof LOG_FORMATS[number];

/** Structured context appended to a log line as `key=value`. */
export type LogFields = Readonly<Record<string, string | number | bigint | boolean | undefined>>;

/** What `shared/` code logs through. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  with(fields: LogFields): Logger;
  /** Whether lines at `level` are written (to skip building costly messages). */
  enabled(level: LogLevel): boolean;
}

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Lowest level written. Default `"info"`. */
  readonly level?: LogLevel;
  /** Writes one formatted line (no trailing newline). */
  readonly write: (line: string, level: LogLevel) => void;
  /** Returns the current time; default `() => new Date()`. */
  readonly now?: () => Date;
  /** `"text"` (default, {@linkcode formatLogLine}) or `"json"` ({@linkcode formatJsonLogLine}). */
  readonly format?: LogFormat;
}

function formatValue(value: string | number | bigint | boolean): string {
  const text = String(value);
  return /^[^\s"=]+$/.test(text) ? text : JSON.stringify(text);
}

/** Formats one line: `2026-11-25T12:00:00.000Z INFO message key=value`. */
export function formatLogLine(
  time: Date,
  level: LogLevel,
  message: string,
  fields: LogFields,
): string {
  let line = `${time.toISOString()} ${level.toUpperCase().padEnd(5)} ${message}`;
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined) line += ` ${key}=${formatValue(value)}`;
  }
  return line;
}

/**
 * Formats one line as a JSON object: `ts` (ISO 8601), `level`, `msg`, then
 * the fields (undefined ones left out, bigints as strings). A field named
 * `ts`, `level` or `msg` cannot replace those: it is written as `field_ts`...
 */
export function formatJsonLogLine(
  time: Date,
  level: LogLevel,
  message: string,
  fields: LogFields,
): string {
  const out: Record<string, string | number | boolean> = {
    ts: time.toISOString(),
    level,
    msg: message,
  };
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const name = key === "ts" || key === "level" || key === "msg" ? `field_${key}` : key;
    out[name] = typeof value === "bigint" ? value.toString() : value;
  }
  return JSON.stringify(out);
}

/** Creates a {@linkcode Logger} that writes lines at or above `options.level`. */
export function createLogger(options: LoggerOptions, base: LogFields = {}): Logger {
  const threshold = LOG_LEVELS.indexOf(options.level ?? "info");
  const now = options.now ?? (() => new Date());
  const format = options.format === "json" ? formatJsonLogLine : formatLogLine;
  const log = (level: LogLevel, message: string, fields?: LogFields) => {
    if (LOG_LEVELS.indexOf(level) < threshold) return;
    options.write(format(now(), level, message, { ...base, ...fields }), level);
  };
  return {
    debug: (message, fields) => log("debug", message, fields),
    info: (message, fields) => log("info", message, fields),
    warn: (message, fields) => log("warn", message, fields),
    error: (message, fields) => log("error", message, fields),
    with: (fields) => createLogger(options, { ...base, ...fields }),
    enabled: (level) => LOG_LEVELS.indexOf(level) >= threshold,
  };
}

/** A logger that drops everything. */
export const nullLogger: Logger = createLogger({ level: "error", write: () => {} });
