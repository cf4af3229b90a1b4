/**
 * The README's option tables, generated from the programs' option tables
 * (`relay/config.ts`, `client/config.ts`). Each sits between two markers:
 *
 * ```
 * <!-- options: relay -->
 *
 * | option | meaning | default |
 * ...
 *
 * <!-- end options -->
 * ```
 *
 * `deno task docs` rewrites them; `tests/option_docs_test.ts` fails when the
 * README differs from what this would write.
 *
 * @module
 */

import { type OptionTable, renderMarkdownTable } from "../shared/options.ts";
import { renderConfigKeys } from "../shared/config_file.ts";
import { RELAY_OPTIONS } from "../relay/config.ts";
import { CLIENT_OPTIONS } from "../client/config.ts";

/** Each marked table by its marker name: the program's table and the group. */
export const OPTION_TABLES: Readonly<Record<string, { table: OptionTable; group?: string }>> = {
  relay: { table: RELAY_OPTIONS },
  "relay limits": { table: RELAY_OPTIONS, group: "limits" },
  client: { table: CLIENT_OPTIONS },
  "client full tunnel": { table: CLIENT_OPTIONS, group: "full tunnel" },
};

const END = "<!-- end options -->";

/**
 * `markdown` with every marked table replaced by the one rendered from its
 * option table. Throws on an unknown or unclosed marker.
 */
export function updateOptionTables(markdown: string): string {
  let out = "";
  let at = 0;
  for (;;) {
    const start = markdown.indexOf("<!-- options: ", at);
    if (start < 0) return out + markdown.slice(at);
    const close = markdown.indexOf(" -->\n", start);
    const name = markdown.slice(start + "<!-- options: ".length, close);
    const entry = OPTION_TABLES[name];
    if (close < 0 || entry === undefined) throw new Error(`Unknown options marker "${name}"`);
    const end = markdown.indexOf(END, close);
    if (end < 0) throw new Error(`Options marker "${name}" has no "${END}"`);
    out += `${markdown.slice(at, close + 5)}\n${renderMarkdownTable(entry.table, entry.group)}\n`;
    at = end;
  }
}

const KEYS_END = "<!-- end config keys -->";

/**
 * `markdown` with every config-key table (`<!-- config keys: relay -->` ...
 * `<!-- end config keys -->`, in `docs/operations.md`) replaced by the one
 * rendered from the program's option table ({@linkcode renderConfigKeys}).
 */
export function updateConfigKeyTables(markdown: string): string {
  let out = "";
  let at = 0;
  for (;;) {
    const start = markdown.indexOf("<!-- config keys: ", at);
    if (start < 0) return out + markdown.slice(at);
    const close = markdown.indexOf(" -->\n", start);
    const name = markdown.slice(start + "<!-- config keys: ".length, close);
    const entry = OPTION_TABLES[name];
    if (close < 0 || entry === undefined) throw new Error(`Unknown config keys marker "${name}"`);
    const end = markdown.indexOf(KEYS_END, close);
    if (end < 0) throw new Error(`Config keys marker "${name}" has no "${KEYS_END}"`);
    out += `${markdown.slice(at, close + 5)}\n${renderConfigKeys(entry.table)}\n`;
    at = end;
  }
}

if (import.meta.main) {
  for (
    const [file, update] of [
      ["README.md", updateOptionTables],
      ["docs/operations.md", updateConfigKeyTables],
    ] as const
  ) {
    const path = new URL(`../${file}`, import.meta.url);
    const before = await Deno.readTextFile(path);
    const after = update(before);
    if (after !== before) await Deno.writeTextFile(path, after);
    console.log(after === before ? `${file}: tables up to date` : `${file}: updated`);
  }
}
