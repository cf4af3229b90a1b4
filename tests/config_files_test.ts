// The example config files in docs/config/ are valid for their program, set
// or mention every option a file may hold, and print back (--print-config)
// as a file that gives the same configuration.
import { assert, assertEquals } from "./support/assert.ts";
import { inFile } from "../shared/config_file.ts";
import type { OptionTable } from "../shared/options.ts";
import { parseRelayConfig, RELAY_OPTIONS } from "../relay/config.ts";
import { CLIENT_OPTIONS, parseClientConfig } from "../client/config.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const readFile = (path: string) => Deno.readTextFileSync(path);

const programs = [
  { name: "relay", table: RELAY_OPTIONS as OptionTable, parse: parseRelayConfig },
  { name: "client", table: CLIENT_OPTIONS as OptionTable, parse: parseClientConfig },
];

for (const { name, table, parse } of programs) {
  const file = `${ROOT}docs/config/${name}.jsonc`;

  Deno.test(`docs/config/${name}.jsonc is a valid ${name} configuration`, () => {
    const result = parse(["--config", file], {}, readFile);
    if (result.ok !== true) throw new Error(JSON.stringify(result));
    assertEquals(result.warnings, []);
  });

  Deno.test(`docs/config/${name}.jsonc mentions every option a file may hold`, () => {
    const text = Deno.readTextFileSync(file);
    const missing = Object.entries(table)
      .filter(([, option]) => inFile(option))
      .map(([key]) => key)
      .filter((key) => !text.includes(`"${key}":`));
    assertEquals(missing, []);
  });

  Deno.test(`${name} --print-config reads back as the same configuration`, () => {
    const printed = parse(["--config", file, "--print-config"], {}, readFile);
    assert(printed.ok === "print");
    const copy = Deno.makeTempFileSync({ suffix: ".jsonc" });
    try {
      Deno.writeTextFileSync(copy, printed.text);
      const again = parse(["--config", copy], {}, readFile);
      const direct = parse(["--config", file], {}, readFile);
      assert(again.ok === true && direct.ok === true);
      assertEquals(again.config, direct.config);
    } finally {
      Deno.removeSync(copy);
    }
  });
}
