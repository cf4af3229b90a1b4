/**
 * The option machinery of both programs. Each program declares its options
 * once, in a table keyed by the name its config file will use
 * (`maxSessions`), and everything else comes from that table:
 *
 * - the `node:util` `parseArgs` options ({@linkcode parseArgsOptions}) and
 *   the reading of the command line ({@linkcode flagSource});
 * - the environment variables read ({@linkcode envNames}, {@linkcode envSource});
 * - the layering: {@linkcode resolveOptions} takes sources in order of
 *   precedence: flags, environment, the config file (`--config`,
 *   `shared/config_file.ts`), defaults ({@linkcode defaultSource});
 * - `--help` ({@linkcode renderHelp}) and the README's option tables
 *   ({@linkcode renderMarkdownTable}, checked by `tests/option_docs_test.ts`).
 *
 * Pure: the `main.ts` files read `Deno.args` and the environment and hand
 * them in; a parser returns a frozen config or every error it found.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { configFileSource, parseConfigFile, renderConfig } from "./config_file.ts";
import type { ConfigFileResult } from "./config_file.ts";
import { errorMessage } from "./errors.ts";
import { type IpPrefix, parseIp, parsePrefix } from "./ip/ip_address.ts";
import { domainNameProblem } from "./masque/dns_capsule.ts";
import { LOG_FORMATS, LOG_LEVELS } from "./log.ts";

/** The outcome of a program's option parser: a frozen config, the errors, `--help` or `--version`. */
export type ParseResult<T> =
  | {
    readonly ok: true;
    readonly config: T;
    /** What the configuration will do that the user may not expect; to log at warn. */
    readonly warnings: readonly string[];
  }
  /** `--print-config`: the effective configuration as a config file, to print. */
  | { readonly ok: "print"; readonly text: string }
  | { readonly ok: false; readonly errors: readonly string[] }
  | { readonly ok: "help" }
  | { readonly ok: "version" };

/**
 * A value as a source gives it, before parsing: the text of a flag or an
 * environment variable, the texts of a repeated flag, or a switch.
 */
export type RawValue = string | boolean | readonly string[];

/** Where a setting came from. */
export type SettingOrigin = "flag" | "environment" | "file" | "default";

/** One option's value from one source, with the name errors call it by. */
export interface Setting {
  readonly raw: RawValue;
  /** `--port` for a flag, `MASQUE_LOG_LEVEL` for the environment, the key for a file. */
  readonly name: string;
  /** The source it came from (for `--print-config`). */
  readonly from?: SettingOrigin;
}

/** The type of an option's values: how one text is parsed, and what it is called in docs. */
export interface ValueType<T> {
  /** What a value is, for docs and the config file's schema: `integer 1..65535`. */
  readonly kind: string;
  /**
   * Parses one text. On failure pushes one message that starts with `name`
   * and says what is wrong, and returns `undefined`.
   */
  parse(text: string, name: string, errors: string[]): T | undefined;
}

/** What every option declares for its docs and sources. */
export interface OptionDoc {
  /** Flag name without the dashes: `max-sessions`. */
  readonly flag: string;
  /** Placeholder of the value in docs (`N`, `CIDR|none`); absent for a switch. */
  readonly valueName?: string;
  /** What it does, in Markdown (`code` in backticks, stripped for `--help`). */
  readonly help: string;
  /** Environment variable read when the flag is absent; a list's is comma-separated. */
  readonly env?: string;
  /** The default as a flag would give it; parsed like any other source's value. */
  readonly default?: string | readonly string[];
  /** The default as docs show it, when it is computed or needs words; Markdown. */
  readonly defaultText?: string;
  /** Set when the option must be given: an example for the error (`e.g. --relay https://r`). */
  readonly required?: string;
  /** Heading group in `--help` and the README; absent: the main table. */
  readonly group?: string;
  /** Only on the command line (`--config`, `--print-config`): not a config file key. */
  readonly commandLineOnly?: boolean;
  /** `--print-config` shows `<redacted>` instead of the value (a password, a token). */
  readonly secret?: boolean;
}

/** One declared option whose resolved value has type `T`. */
export interface Option<T> extends OptionDoc {
  /** The flag may be given several times; the value is a list. */
  readonly repeatable: boolean;
  /** The value's type (of each element, for a list; `boolean` for a switch). */
  readonly type: ValueType<unknown>;
  /** Reads a setting into the value; `undefined` after pushing errors. */
  read(setting: Setting, errors: string[]): T | undefined;
}

/** A program's options by config key, in the order of `--help` and the README. */
export type OptionTable = Readonly<Record<string, Option<unknown>>>;

/** The values a table resolves to, by key. */
export type OptionValues<Table extends OptionTable> = {
  readonly [K in keyof Table]: Table[K] extends Option<infer T> ? T : never;
};

/** Gives an option's setting from one place (the command line, the environment, a file), if any. */
export type Source = (key: string, option: Option<unknown>) => Setting | undefined;

type SingleSpec<T> = Omit<OptionDoc, "default"> & {
  readonly valueName: string;
  readonly type: ValueType<T>;
  readonly default?: string | number;
};

/** An option with one value; given twice, the last one counts. */
export function single<T>(
  spec: SingleSpec<T> & ({ readonly default: string | number } | { readonly required: string }),
): Option<T>;
/** An option with one value and no default: `undefined` when not given. */
export function single<T>(spec: SingleSpec<T>): Option<T | undefined>;
export function single<T>(spec: SingleSpec<T>): Option<T | undefined> {
  return Object.freeze({
    ...spec,
    default: spec.default === undefined ? undefined : String(spec.default),
    repeatable: false,
    read({ raw, name }: Setting, errors: string[]) {
      if (typeof raw === "boolean") {
        errors.push(`${name} needs a value (${spec.type.kind})`);
        return undefined;
      }
      if (typeof raw !== "string") {
        errors.push(`${name} takes one value, not a list`);
        return undefined;
      }
      return spec.type.parse(raw, name, errors);
    },
  });
}

type ListSpec<T> = Omit<OptionDoc, "default"> & {
  readonly valueName: string;
  readonly type: ValueType<T>;
  readonly default?: readonly string[];
};

/**
 * A repeatable option: each flag adds an element; from the environment, a
 * comma-separated list.
 */
export function list<T>(spec: ListSpec<T> & { readonly default: readonly string[] }): Option<
  readonly T[]
>;
/** A repeatable option that must be given at least once. */
export function list<T>(spec: ListSpec<T> & { readonly required: string }): Option<readonly T[]>;
/** A repeatable option with no default: `undefined` when not given. */
export function list<T>(spec: ListSpec<T>): Option<readonly T[] | undefined>;
export function list<T>(spec: ListSpec<T>): Option<readonly T[] | undefined> {
  return Object.freeze({
    ...spec,
    repeatable: true,
    read({ raw, name }: Setting, errors: string[]) {
      if (typeof raw === "boolean") {
        errors.push(`${name} needs a value (${spec.type.kind})`);
        return undefined;
      }
      const values: T[] = [];
      const before = errors.length;
      for (const text of typeof raw === "string" ? splitList(raw) : raw) {
        const value = spec.type.parse(text, name, errors);
        if (value !== undefined) values.push(value);
      }
      return errors.length > before ? undefined : Object.freeze(values);
    },
  });
}

/** A switch (`--nat`): off unless given; from text, `true`/`1` or `false`/`0`. */
export function toggle(spec: Omit<OptionDoc, "valueName" | "default" | "required">): Option<
  boolean
> {
  return Object.freeze({
    ...spec,
    default: "false",
    repeatable: false,
    type: BOOLEAN,
    read({ raw, name }: Setting, errors: string[]) {
      if (typeof raw === "boolean") return raw;
      if (typeof raw === "string") return BOOLEAN.parse(raw, name, errors);
      errors.push(`${name} takes one value, not a list`);
      return undefined;
    },
  });
}

/** Splits a comma-separated list, trimming each element and dropping empty ones. */
export function splitList(text: string): string[] {
  return text.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

/** `true`/`1` or `false`/`0`. */
export const BOOLEAN: ValueType<boolean> = {
  kind: "true or false",
  parse(text, name, errors) {
    if (text === "true" || text === "1") return true;
    if (text === "false" || text === "0") return false;
    errors.push(`${name} must be true or false, not "${text}"`);
    return undefined;
  },
};

/** Any text but the empty one (file names, host names). */
export const TEXT: ValueType<string> = {
  kind: "text",
  parse(text, name, errors) {
    if (text !== "") return text;
    errors.push(`${name} must not be empty`);
    return undefined;
  },
};

/** A decimal integer from `min` to `max`, ends included. */
export function integer(min: number, max: number): ValueType<number> {
  return {
    kind: `integer ${min}..${max}`,
    parse: (text, name, errors) => parseInteger(text, name, min, max, errors),
  };
}

/** One of `choices`, exactly as written. */
export function oneOf<const T extends string>(choices: readonly T[]): ValueType<T> {
  const listed = choices.length === 1
    ? choices[0]
    : `${choices.slice(0, -1).join(", ")} or ${choices[choices.length - 1]}`;
  return {
    kind: `one of ${choices.join(", ")}`,
    parse(text, name, errors) {
      const found = choices.find((choice) => choice === text);
      if (found === undefined) errors.push(`${name} must be ${listed}, not "${text}"`);
      return found;
    },
  };
}

/** An IP prefix (`198.18.0.0/15`, `fd00::/8`), optionally of one version; host bits are cleared. */
export function cidr(version?: 4 | 6): ValueType<IpPrefix> {
  return {
    kind: version ? `IPv${version} prefix` : "IP prefix",
    parse: (text, name, errors) => parseCidr(text, name, errors, version),
  };
}

/** One IP address (`198.18.1.53`, `fd00::53`): 4 or 16 bytes. */
export const IP_ADDRESS: ValueType<Uint8Array> = {
  kind: "IP address",
  parse(text, name, errors) {
    const address = parseIp(text.trim());
    if (address === undefined) errors.push(`${name} must be an IP address, not "${text}"`);
    return address;
  },
};

/** A domain name in presentation format made of A-labels (`corp.example`). */
export const DOMAIN_NAME: ValueType<string> = {
  kind: "domain name",
  parse(text, name, errors) {
    const problem = text === "" ? "is empty" : domainNameProblem(text);
    if (problem === undefined) return text;
    errors.push(`${name} "${text}" ${problem}`);
    return undefined;
  },
};

/** A network interface name as Linux takes it: 1-15 letters, digits, `-`, `_` or `.`. */
export const INTERFACE_NAME: ValueType<string> = {
  kind: "interface name",
  parse(text, name, errors) {
    if (/^[A-Za-z0-9_.-]{1,15}$/.test(text)) return text;
    errors.push(`${name} must be 1-15 letters, digits, '-', '_' or '.', not "${text}"`);
    return undefined;
  },
};

/** `--log-level`, the same on both programs; environment `MASQUE_LOG_LEVEL`. */
export const LOG_LEVEL_OPTION = single({
  flag: "log-level",
  valueName: "LEVEL",
  type: oneOf(LOG_LEVELS),
  default: "info",
  env: "MASQUE_LOG_LEVEL",
  help: "debug, info, warn or error",
});

/** `--log-format`, the same on both programs: `text` lines or one JSON object per line. */
export const LOG_FORMAT_OPTION = single({
  flag: "log-format",
  valueName: "FORMAT",
  type: oneOf(LOG_FORMATS),
  default: "text",
  help: "`text`: `time LEVEL message key=value`; `json`: one object per line with `ts`, " +
    "`level`, `msg` and the fields",
});

/** A listening address and port: `127.0.0.1:9464`, `[::1]:9464`. */
export interface HostPort {
  readonly hostname: string;
  readonly port: number;
}

/** `ADDR:PORT`, an IPv6 address in brackets. */
export const HOST_PORT: ValueType<HostPort> = {
  kind: "ADDR:PORT",
  parse(text, name, errors) {
    const colon = text.lastIndexOf(":");
    let host = colon > 0 ? text.slice(0, colon) : "";
    if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
    else if (host.includes(":")) host = "";
    const port = parseInteger(text.slice(colon + 1), name, 1, 65535, []);
    if (host === "" || port === undefined) {
      errors.push(`${name} must be ADDR:PORT (127.0.0.1:9464, [::1]:9464), not "${text}"`);
      return undefined;
    }
    return { hostname: host, port };
  },
};

/** `--admin`, the same on both programs: the HTTP endpoint for metrics, health and status. */
export const ADMIN_OPTION = single({
  flag: "admin",
  valueName: "ADDR:PORT",
  type: HOST_PORT,
  defaultText: "off",
  help: "serve `/metrics` (Prometheus), `/healthz`, `/readyz` and `/status` (JSON) over " +
    "HTTP here, e.g. `127.0.0.1:9464`; no authentication, so keep it on loopback or a " +
    "private network",
});

/** `--tun-offload`, the same on both programs: ask the kernel for TUN offloads. */
export const TUN_OFFLOAD_OPTION = single({
  flag: "tun-offload",
  valueName: "on|off",
  type: oneOf(["on", "off"]),
  default: "on",
  help: "TUN segmentation offloads: the kernel hands over and takes 64 KB TCP super-packets, " +
    "which the TUN workers split and merge; `off` for a kernel that misbehaves",
});

/** Parses a decimal integer within bounds, or records an error. */
export function parseInteger(
  text: string,
  name: string,
  min: number,
  max: number,
  errors: string[],
): number | undefined {
  const value = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max)) {
    errors.push(`${name} must be an integer from ${min} to ${max}, not "${text}"`);
    return undefined;
  }
  return value;
}

/** Parses a prefix, optionally of one IP version, or records an error. */
export function parseCidr(
  text: string,
  name: string,
  errors: string[],
  version?: 4 | 6,
): IpPrefix | undefined {
  try {
    const prefix = parsePrefix(text.trim());
    if (version !== undefined && prefix.version !== version) {
      errors.push(`${name} must be an IPv${version} prefix, not "${text}"`);
      return undefined;
    }
    return prefix;
  } catch (error) {
    errors.push(`${name}: ${errorMessage(error)}`);
    return undefined;
  }
}

/** The `node:util` `parseArgs` options of a table, with `-h, --help` and `--version`. */
export function parseArgsOptions(
  table: OptionTable,
): Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> {
  const options: Record<
    string,
    { type: "string" | "boolean"; multiple?: boolean; short?: string }
  > = {};
  for (const option of Object.values(table)) {
    options[option.flag] = {
      type: option.valueName === undefined ? "boolean" : "string",
      multiple: option.repeatable,
    };
  }
  options.help = { type: "boolean", short: "h" };
  options.version = { type: "boolean" };
  return options;
}

/** What the command line holds: `--help`, `--version`, its errors, and the flags as a source. */
export interface CommandLine {
  readonly help: boolean;
  readonly version: boolean;
  /** Unknown options, missing values, values given to switches, stray arguments. */
  readonly errors: readonly string[];
  readonly source: Source;
}

/**
 * Reads the command line against a table. Every problem is listed, not just
 * the first: an unknown option (with the nearest known one; the argument
 * after it is taken as its value), a flag without its value, a value given
 * to a switch, an argument that is not an option.
 */
export function flagSource(table: OptionTable, args: readonly string[]): CommandLine {
  const byFlag = new Map(Object.values(table).map((option) => [option.flag, option]));
  const settings = new Map<string, RawValue>();
  const errors: string[] = [];
  let help = false;
  let version = false;
  const { tokens } = parseArgs({
    args: [...args],
    options: parseArgsOptions(table),
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  // The argument after an unknown option is taken as its value, not reported again.
  let afterUnknown = -1;
  for (const token of tokens) {
    if (token.kind === "positional") {
      if (token.index !== afterUnknown) {
        errors.push(`Unexpected argument "${token.value}": options start with --`);
      }
      continue;
    }
    if (token.kind !== "option") continue;
    if (token.name === "help") help = true;
    if (token.name === "version") version = true;
    if (token.name === "help" || token.name === "version") continue;
    const option = byFlag.get(token.name);
    const raw = token.rawName;
    if (option === undefined) {
      if (token.value === undefined) afterUnknown = token.index + 1;
      const near = nearestName(token.name, [...byFlag.keys(), "help", "version"]);
      errors.push(`Unknown option ${raw}${near ? ` (did you mean --${near}?)` : ""}`);
    } else if (option.valueName === undefined) {
      if (token.value !== undefined) errors.push(`${raw} takes no value, not "${token.value}"`);
      else settings.set(option.flag, true);
    } else if (token.value === undefined) {
      errors.push(`${raw} needs a value: ${raw} ${option.valueName}`);
    } else if (!token.inlineValue && token.value.startsWith("-")) {
      errors.push(
        `${raw} needs a value, not the option "${token.value}" (write ${raw}=${token.value} if it is the value)`,
      );
    } else if (option.repeatable) {
      const previous = settings.get(option.flag);
      settings.set(option.flag, [...(Array.isArray(previous) ? previous : []), token.value]);
    } else settings.set(option.flag, token.value);
  }
  return {
    help,
    version,
    errors,
    source: (_key, option) => {
      const raw = settings.get(option.flag);
      return raw === undefined ? undefined : { raw, name: `--${option.flag}`, from: "flag" };
    },
  };
}

/** The known name within two edits of `name`, if there is one (for "did you mean"). */
export function nearestName(name: string, flags: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const flag of flags) {
    const d = editDistance(name, flag);
    if (d < bestDistance) [best, bestDistance] = [flag, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length];
}

/** The environment variables a table reads, in table order. */
export function envNames(table: OptionTable): string[] {
  const names = Object.values(table).flatMap((option) => option.env ? [option.env] : []);
  return [...new Set(names)];
}

/** The environment as a source; an empty variable counts as unset. */
export function envSource(env: Readonly<Record<string, string | undefined>>): Source {
  return (_key, option) => {
    const raw = option.env === undefined ? undefined : env[option.env];
    return raw === undefined || raw === ""
      ? undefined
      : { raw, name: option.env!, from: "environment" };
  };
}

/** The table's defaults as a source, the last one; errors name the flag. */
export const defaultSource: Source = (_key, option) =>
  option.default === undefined
    ? undefined
    : { raw: option.default, name: `--${option.flag}`, from: "default" };

/** A table's values from its sources, with every error and the name each value came by. */
export interface Resolved<Table extends OptionTable> {
  /** The values read without error; an option with an error is absent. */
  readonly values: Partial<OptionValues<Table>>;
  readonly errors: readonly string[];
  /** How errors should name each option: as its source named it, else as its flag. */
  readonly names: { readonly [K in keyof Table]: string };
  /** The setting each option was read from; `undefined` when no source had it. */
  readonly settings: { readonly [K in keyof Table]: Setting | undefined };
}

/**
 * Resolves each option from the first source, in order of precedence, that
 * has it: flags, environment, config file, defaults. An option no source
 * has is `undefined`, or an error when it is required. Errors come in table
 * order.
 */
export function resolveOptions<Table extends OptionTable>(
  table: Table,
  sources: readonly Source[],
): Resolved<Table> {
  const values: Record<string, unknown> = {};
  const names: Record<string, string> = {};
  const settings: Record<string, Setting | undefined> = {};
  const errors: string[] = [];
  for (const [key, option] of Object.entries(table)) {
    let setting: Setting | undefined;
    for (const source of sources) {
      setting = source(key, option);
      if (setting !== undefined) break;
    }
    names[key] = setting?.name ?? `--${option.flag}`;
    settings[key] = setting;
    if (setting === undefined) {
      if (option.required !== undefined) {
        errors.push(`--${option.flag} ${option.valueName} is required, ${option.required}`);
      } else values[key] = undefined;
      continue;
    }
    const before = errors.length;
    const value = option.read(setting, errors);
    if (errors.length === before) values[key] = value;
  }
  return {
    values: values as Partial<OptionValues<Table>>,
    errors,
    names: names as { [K in keyof Table]: string },
    settings: settings as { [K in keyof Table]: Setting | undefined },
  };
}

/** What a program adds to its table: checks across options, and the config built from the values. */
export interface Program<Table extends OptionTable, Config> {
  readonly table: Table;
  /** Errors that involve several options; runs on what was read, even after errors. */
  check?(values: Partial<OptionValues<Table>>, names: Resolved<Table>["names"]): string[];
  /**
   * Warnings about a configuration that reads without error but will not do
   * what the user may expect (a pool with host bits, a session limit the
   * pools cannot serve); `settings` has each value as given.
   */
  warn?(
    values: OptionValues<Table>,
    names: Resolved<Table>["names"],
    settings: Resolved<Table>["settings"],
  ): string[];
  /** The frozen config, from values that all read without error. */
  build(values: OptionValues<Table>): Config;
}

/**
 * Reads a config file's text synchronously (`Deno.readTextFileSync` in
 * `main.ts`); throws with why it cannot.
 */
export type ReadFile = (path: string) => string;

/**
 * How a program names its command-line-only options: `--config FILE` and
 * `--print-config`, keys `config` and `printConfig` in its table
 * ({@linkcode CONFIG_OPTION}, {@linkcode PRINT_CONFIG_OPTION}).
 */
const CONFIG_KEY = "config";
const PRINT_CONFIG_KEY = "printConfig";

/** `--config FILE`: options from a JSONC file, below flags and environment. */
export const CONFIG_OPTION = single({
  flag: "config",
  valueName: "FILE",
  type: TEXT,
  commandLineOnly: true,
  help: "read options from a JSON file with comments (keys as in `--print-config`); " +
    "flags and environment override it",
});

/** `--print-config`: print the effective configuration (as a config file) and exit. */
export const PRINT_CONFIG_OPTION = toggle({
  flag: "print-config",
  commandLineOnly: true,
  help: "print the effective configuration as a config file, secrets redacted, and exit",
});

/**
 * Parses a program's command line, environment and config file: flags over
 * environment over the file (`--config FILE`, read with `readFile` when the
 * table has {@linkcode CONFIG_OPTION}) over defaults. Returns `"help"` or
 * `"version"` when asked, else every error (the command line's, the file's,
 * each option's in table order, then the program's checks), else the
 * effective configuration as text for `--print-config`, else the config
 * with its warnings.
 */
export function parseProgramOptions<Table extends OptionTable, Config>(
  program: Program<Table, Config>,
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  readFile?: ReadFile,
): ParseResult<Config> {
  const table = program.table;
  const commandLine = flagSource(table, args);
  if (commandLine.help) return { ok: "help" };
  if (commandLine.version) return { ok: "version" };
  const sources = [commandLine.source, envSource(env)];
  const errors = [...commandLine.errors];
  const configSetting = CONFIG_KEY in table
    ? commandLine.source(CONFIG_KEY, table[CONFIG_KEY])
    : undefined;
  if (typeof configSetting?.raw === "string" && configSetting.raw !== "") {
    const path = configSetting.raw;
    const file = readConfigFile(table, path, readFile);
    if (file.ok) sources.push(configFileSource(file.values));
    else errors.push(...file.errors);
  }
  const resolved = resolveOptions(table, [...sources, defaultSource]);
  errors.push(...resolved.errors);
  errors.push(...(program.check?.(resolved.values, resolved.names) ?? []));
  if (errors.length > 0) return { ok: false, errors };
  // Every option read without error: each value is there, or optional by its type.
  const values = resolved.values as OptionValues<Table>;
  if (PRINT_CONFIG_KEY in table && values[PRINT_CONFIG_KEY] === true) {
    return { ok: "print", text: renderConfig(table, resolved.settings) };
  }
  return {
    ok: true,
    config: program.build(values),
    warnings: program.warn?.(values, resolved.names, resolved.settings) ?? [],
  };
}

function readConfigFile(
  table: OptionTable,
  path: string,
  readFile: ReadFile | undefined,
): ConfigFileResult {
  let text: string;
  try {
    if (readFile === undefined) throw new Error("no file reader given");
    text = readFile(path);
  } catch (error) {
    return { ok: false, errors: [`Cannot read --config ${path}: ${errorMessage(error)}`] };
  }
  return parseConfigFile(table, text, path);
}

/** How `--help` and the README show the program's options. */
export interface HelpLayout {
  /** First line: what the program is. */
  readonly title: string;
  /** `Usage: ...` line. */
  readonly usage: string;
  /** Headings in order: `undefined` is the main group (`Options`). */
  readonly groups: readonly { readonly id?: string; readonly heading: string }[];
}

const HELP_WIDTH = 80;
const HELP_INDENT = 23;

/** The `--help` text: title, usage, then each group's options, wrapped to 80 columns. */
export function renderHelp(table: OptionTable, layout: HelpLayout): string {
  const lines = [layout.title, "", layout.usage];
  for (const group of layout.groups) {
    lines.push("", `${group.heading}:`);
    for (const option of Object.values(table)) {
      if (option.group !== group.id) continue;
      const shown = defaultCell(option);
      const notes = [
        ...(option.repeatable ? ["repeatable"] : []),
        ...(option.required !== undefined
          ? ["required"]
          : option.valueName !== undefined && shown !== ""
          ? [`default ${shown}`]
          : []),
        ...(option.env ? [envNote(option)] : []),
      ];
      const text = notes.length > 0 ? `${option.help} (${notes.join("; ")})` : option.help;
      lines.push(...helpEntry(flagCell(option), plain(text)));
    }
    if (group.id === undefined) {
      lines.push(...helpEntry("-h, --help", "show this help"));
      lines.push(...helpEntry("--version", "show the version"));
    }
  }
  return lines.join("\n") + "\n";
}

function helpEntry(flags: string, text: string): string[] {
  const wrapped = wrap(text, HELP_WIDTH - HELP_INDENT);
  const pad = " ".repeat(HELP_INDENT);
  if (flags.length + 3 > HELP_INDENT) {
    return [`  ${flags}`, ...wrapped.map((line) => pad + line)];
  }
  return wrapped.map((line, i) =>
    i === 0 ? `  ${flags.padEnd(HELP_INDENT - 2)}${line}` : pad + line
  );
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  lines.push(line);
  return lines;
}

/** Markdown to terminal text: code spans lose their backticks. */
function plain(markdown: string): string {
  return markdown.replaceAll("`", "");
}

function flagCell(option: OptionDoc): string {
  return option.valueName === undefined
    ? `--${option.flag}`
    : `--${option.flag} ${option.valueName}`;
}

function envNote(option: Option<unknown>): string {
  return `environment \`${option.env}\`${option.repeatable ? ", comma-separated" : ""}`;
}

function defaultCell(option: Option<unknown>): string {
  if (option.defaultText !== undefined) return option.defaultText;
  if (option.required !== undefined) return "required";
  if (option.valueName === undefined) return "off";
  const value = option.default;
  if (value === undefined) return "";
  return typeof value === "string" ? value : value.join(", ");
}

/**
 * The README's table of one group of options (`option | meaning | default`),
 * formatted as `deno fmt` formats Markdown tables, so the README holds it
 * byte for byte.
 */
export function renderMarkdownTable(table: OptionTable, group?: string): string {
  const rows = [["option", "meaning", "default"]];
  for (const option of Object.values(table)) {
    if (option.group !== group) continue;
    const notes = [
      ...(option.repeatable ? ["repeatable"] : []),
      ...(option.env ? [envNote(option)] : []),
    ];
    const meaning = notes.length > 0 ? `${option.help} (${notes.join("; ")})` : option.help;
    rows.push([`\`${flagCell(option)}\``, meaning, defaultCell(option)]);
  }
  return formatMarkdownTable(rows);
}

/**
 * A Markdown table of `rows` (the first is the header), with `|` in cells
 * escaped and columns padded as `deno fmt` pads them, so generated tables in
 * the docs stay byte for byte what the formatter leaves.
 */
export function formatMarkdownTable(rows: readonly (readonly string[])[]): string {
  const cells = rows.map((row) => row.map((cell) => cell.replaceAll("|", "\\|")));
  const widths = cells[0].map((_, column) =>
    Math.max(3, ...cells.map((row) => [...row[column]].length))
  );
  const line = (row: string[]) =>
    `| ${row.map((cell, i) => cell + " ".repeat(widths[i] - [...cell].length)).join(" | ")} |`;
  return [
    line(cells[0]),
    line(widths.map((width) => "-".repeat(width))),
    ...cells.slice(1).map(line),
  ].join("\n") + "\n";
}
