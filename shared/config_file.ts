/**
 * The config file of both programs (`--config FILE`): JSON with comments and
 * trailing commas (JSONC, read with `jsonc-parser`), one object whose keys
 * are the option table's keys (`maxSessions`, `pool4`), validated against a
 * schema made from the same table with `zod`:
 *
 * - the file's syntax: `relay.jsonc:3:14: Cannot parse: comma expected`;
 * - unknown keys, with the nearest known one: `Unknown key "maxSesion" (did
 *   you mean "maxSessions"?)`; command-line-only options (`config`,
 *   `printConfig`) are unknown here;
 * - each value's JSON type: a switch is `true`/`false`, a repeatable option
 *   an array of strings, an integer option a number, the rest a string;
 * - each value as the option's own type reads it, with the same messages as
 *   for a flag, naming the key: `pool4: Invalid prefix "10.100.0.0/33": ...`.
 *
 * The file is then one more source for `resolveOptions`, between the
 * environment and the defaults ({@linkcode configFileSource}), and
 * {@linkcode renderConfig} writes the effective configuration back in the
 * same form (`--print-config`), secrets redacted.
 *
 * @module
 */

import { parse as parseJsonc, printParseErrorCode } from "npm:jsonc-parser@3.3.1";
import type { ParseError } from "npm:jsonc-parser@3.3.1";
import { z } from "npm:zod@4.6.7";
import type { Option, OptionTable, RawValue, Resolved, Setting, Source } from "./options.ts";
import { formatMarkdownTable, nearestName, splitList } from "./options.ts";

/** What a config file gives: a value per key, as a source would. */
export type ConfigFileValues = Readonly<Record<string, RawValue>>;

/** The JSON type an option takes in the file. */
export type FileValueKind = "boolean" | "strings" | "integer" | "integer or string" | "string";

/** The JSON type `option` takes in a config file. */
export function fileValueKind(option: Option<unknown>): FileValueKind {
  if (option.valueName === undefined) return "boolean";
  if (option.repeatable) return "strings";
  const kind = option.type.kind;
  // An integer that may be written in hex (`--fwmark 0xcabc`) is a string as well.
  if (kind.startsWith("integer") && !kind.includes("hex")) return "integer";
  if (kind.includes("integer")) return "integer or string";
  return "string";
}

/** Whether `option` may be set in a config file (not `--config` or `--print-config`). */
export function inFile(option: Option<unknown>): boolean {
  return option.commandLineOnly !== true;
}

function schemaFor(option: Option<unknown>): z.ZodType {
  switch (fileValueKind(option)) {
    case "boolean":
      return z.boolean({ error: "must be true or false" });
    case "strings":
      return z.array(z.string({ error: "must be a string" }), {
        error: "must be an array of strings",
      });
    case "integer":
      return z.number({ error: "must be a number" }).int({ error: "must be an integer" });
    case "integer or string":
      return z.union([z.number().int(), z.string()], { error: "must be an integer or a string" });
    case "string":
      return z.string({ error: "must be a string" });
  }
}

/** A file value as a source's raw value: numbers as their decimal text. */
function toRaw(value: unknown): RawValue {
  if (typeof value === "number") return String(value);
  if (Array.isArray(value)) return value.map(String);
  return value as string | boolean;
}

/**
 * The zod schema of a table's config file: a strict object of the keys that
 * may be in a file, each optional, of its JSON type, and read by the
 * option's own type (errors named by the key).
 */
export function configFileSchema(table: OptionTable): z.ZodType<Record<string, unknown>> {
  const shape: Record<string, z.ZodType> = {};
  for (const [key, option] of Object.entries(table)) {
    if (inFile(option)) shape[key] = schemaFor(option).optional();
  }
  return z.strictObject(shape).superRefine((values, ctx) => {
    for (const [key, value] of Object.entries(values)) {
      if (value === undefined) continue;
      const errors: string[] = [];
      table[key].read({ raw: toRaw(value), name: key, from: "file" }, errors);
      for (const message of errors) ctx.addIssue({ code: "custom", message, path: [key] });
    }
  });
}

/** A config file read and checked: its values, or every error with the file's name in front. */
export type ConfigFileResult =
  | { readonly ok: true; readonly values: ConfigFileValues }
  | { readonly ok: false; readonly errors: readonly string[] };

/**
 * Reads a config file's text against a table. `fileName` starts each error
 * (`relay.jsonc: port must be an integer from 1 to 65535, not "70000"`).
 */
export function parseConfigFile(
  table: OptionTable,
  text: string,
  fileName: string,
): ConfigFileResult {
  const syntax: ParseError[] = [];
  const data: unknown = parseJsonc(text, syntax, {
    allowTrailingComma: true,
    disallowComments: false,
  });
  if (syntax.length > 0) {
    return {
      ok: false,
      errors: syntax.map((error) => {
        const { line, column } = position(text, error.offset);
        return `${fileName}:${line}:${column}: Cannot parse: ${describeSyntax(error)}`;
      }),
    };
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return { ok: false, errors: [`${fileName}: must hold one JSON object of options`] };
  }
  const result = configFileSchema(table).safeParse(data);
  if (!result.success) {
    const keys = Object.entries(table).filter(([, option]) => inFile(option)).map(([k]) => k);
    return {
      ok: false,
      errors: result.error.issues.flatMap((issue): string[] => {
        if (issue.code === "unrecognized_keys") {
          return issue.keys.map((key) => {
            const near = nearestName(key, keys);
            return `${fileName}: Unknown key "${key}"${near ? ` (did you mean "${near}"?)` : ""}`;
          });
        }
        // Custom issues are the option types' own messages, which start with the key.
        if (issue.code === "custom") return [`${fileName}: ${issue.message}`];
        return [`${fileName}: ${issue.path.join(".")} ${issue.message}`];
      }),
    };
  }
  const values: Record<string, RawValue> = {};
  for (const [key, value] of Object.entries(result.data)) {
    if (value !== undefined) values[key] = toRaw(value);
  }
  return { ok: true, values: Object.freeze(values) };
}

function describeSyntax(error: ParseError): string {
  const code = printParseErrorCode(error.error);
  // "CommaExpected" -> "comma expected"
  return code.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
}

function position(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 0x0a) {
      line++;
      start = i + 1;
    }
  }
  return { line, column: offset - start + 1 };
}

/** A config file's values as a source; errors name the key. */
export function configFileSource(values: ConfigFileValues): Source {
  return (key) => {
    const raw = values[key];
    return raw === undefined ? undefined : { raw, name: key, from: "file" };
  };
}

/** The text `--print-config` shows in place of a secret's value. */
export const REDACTED = "<redacted>";

/**
 * The effective configuration as a config file (JSONC): every option that
 * may be in a file, in table order, with the value it took and, in a
 * comment, where that came from (`flag --port`, `environment
 * MASQUE_LOG_LEVEL`, `file`, `default`); options no source set are shown
 * commented out. Secrets are {@linkcode REDACTED}. The output read back
 * with `--config` gives the same configuration.
 */
export function renderConfig<Table extends OptionTable>(
  table: Table,
  settings: Resolved<Table>["settings"],
): string {
  const lines = ["{"];
  const entries = Object.entries(table).filter(([, option]) => inFile(option));
  entries.forEach(([key, option]) => {
    const setting: Setting | undefined = settings[key];
    if (setting === undefined) {
      lines.push(`  // ${JSON.stringify(key)}: not set (${option.defaultText ?? "no default"})`);
      return;
    }
    const value = option.secret ? REDACTED : fileValue(option, setting.raw);
    // Every entry ends with a comma: JSONC allows the last one's.
    lines.push(`  ${JSON.stringify(key)}: ${JSON.stringify(value)}, // ${origin(setting)}`);
  });
  lines.push("}");
  return lines.join("\n") + "\n";
}

function origin(setting: Setting): string {
  switch (setting.from) {
    case "flag":
      return `flag ${setting.name}`;
    case "environment":
      return `environment ${setting.name}`;
    case "file":
      return "file";
    default:
      return "default";
  }
}

/** A raw value in the JSON type the file takes for `option`. */
function fileValue(option: Option<unknown>, raw: RawValue): unknown {
  const kind = fileValueKind(option);
  if (kind === "boolean") {
    return typeof raw === "boolean" ? raw : raw === "true" || raw === "1";
  }
  if (kind === "strings") return typeof raw === "string" ? splitList(raw) : raw;
  if (typeof raw !== "string") return raw;
  if ((kind === "integer" || kind === "integer or string") && /^[0-9]+$/.test(raw)) {
    return Number(raw);
  }
  return raw;
}

/**
 * The config file's keys of `table` as a Markdown table (`key | flag | JSON
 * value | default`), formatted as `deno fmt` formats Markdown tables, for
 * `docs/operations.md` (checked by `tests/option_docs_test.ts`).
 */
export function renderConfigKeys(table: OptionTable): string {
  const rows = [["key", "flag", "JSON value", "default"]];
  for (const [key, option] of Object.entries(table)) {
    if (!inFile(option)) continue;
    const kind = fileValueKind(option);
    const value = kind === "boolean"
      ? "`true` or `false`"
      : kind === "strings"
      ? `array of strings (${option.type.kind})`
      : kind === "integer"
      ? `number (${option.type.kind})`
      : kind === "integer or string"
      ? `number or string (${option.type.kind})`
      : `string (${option.type.kind})`;
    const shown = option.defaultText ??
      (option.required !== undefined
        ? "required"
        : option.valueName === undefined
        ? "`false`"
        : option.default === undefined
        ? ""
        : JSON.stringify(fileValue(option, option.default)));
    rows.push([`\`${key}\``, `\`--${option.flag}\``, value, shown]);
  }
  return formatMarkdownTable(rows);
}
