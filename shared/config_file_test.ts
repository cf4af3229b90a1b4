import { assert, assertEquals } from "../tests/support/assert.ts";
import { formatPrefix } from "./ip/ip_address.ts";
import { parseConfigFile, REDACTED, renderConfig } from "./config_file.ts";
import {
  cidr,
  CONFIG_OPTION,
  integer,
  list,
  oneOf,
  type OptionValues,
  parseProgramOptions,
  PRINT_CONFIG_OPTION,
  single,
  TEXT,
  toggle,
} from "./options.ts";

/** A small table with one option of each shape, a secret, and the two command-line-only ones. */
const TABLE = {
  port: single({ flag: "port", valueName: "N", type: integer(1, 65535), default: 4433, help: "p" }),
  pool4: single({ flag: "pool4", valueName: "CIDR", type: cidr(4), help: "pool" }),
  mode: single({
    flag: "mode",
    valueName: "MODE",
    type: oneOf(["datagram", "stream"]),
    default: "datagram",
    env: "T_MODE",
    help: "mode",
  }),
  mtu: single({
    flag: "mtu",
    valueName: "N|auto",
    type: {
      kind: "auto or integer 1280..65535",
      parse: (text: string, name: string, errors: string[]) =>
        text === "auto" ? "auto" : integer(1280, 65535).parse(text, name, errors),
    },
    default: "auto",
    help: "mtu",
  }),
  routes: list({ flag: "route", valueName: "CIDR", type: cidr(), help: "route" }),
  nat: toggle({ flag: "nat", help: "nat" }),
  token: single({ flag: "token", valueName: "T", type: TEXT, secret: true, help: "secret" }),
  config: CONFIG_OPTION,
  printConfig: PRINT_CONFIG_OPTION,
};

type Values = OptionValues<typeof TABLE>;

function parse(args: string[], files: Record<string, string>, env: Record<string, string> = {}) {
  return parseProgramOptions({ table: TABLE, build: (v: Values) => v }, args, env, (path) => {
    const text = files[path];
    if (text === undefined) throw new Error("No such file or directory (os error 2)");
    return text;
  });
}

Deno.test("parseConfigFile() reads JSONC: comments, trailing commas, every JSON type", () => {
  const text = `// the relay
{
  /* block comment */
  "port": 443, // a number
  "pool4": "10.100.0.0/24",
  "mtu": 1400,
  "routes": ["198.18.0.0/15", "fd00::/8",],
  "nat": true,
}
`;
  const result = parseConfigFile(TABLE, text, "r.jsonc");
  assertEquals(result, {
    ok: true,
    values: {
      port: "443",
      pool4: "10.100.0.0/24",
      mtu: "1400",
      routes: ["198.18.0.0/15", "fd00::/8"],
      nat: true,
    },
  });
});

Deno.test("parseConfigFile() names the key and says what is wrong", async (t) => {
  const cases: [string, string, string[]][] = [
    ["a pool that is not a prefix", `{ "pool4": "10.100.0.0/33" }`, [
      'r.jsonc: pool4: Invalid prefix "10.100.0.0/33": length 33 exceeds 32 bits of an IPv4 address',
    ]],
    ["a number out of range", `{ "port": 70000 }`, [
      'r.jsonc: port must be an integer from 1 to 65535, not "70000"',
    ]],
    ["a string for a number", `{ "port": "443" }`, ["r.jsonc: port must be a number"]],
    ["a fraction", `{ "port": 44.5 }`, ["r.jsonc: port must be an integer"]],
    ["a string for a switch", `{ "nat": "yes" }`, ["r.jsonc: nat must be true or false"]],
    ["one string for a list", `{ "routes": "10.0.0.0/8" }`, [
      "r.jsonc: routes must be an array of strings",
    ]],
    ["a choice not offered", `{ "mode": "udp" }`, [
      'r.jsonc: mode must be datagram or stream, not "udp"',
    ]],
    ["an unknown key, with the nearest", `{ "prot": 1, "zzzzzzzz": 2 }`, [
      'r.jsonc: Unknown key "prot" (did you mean "port"?)',
      'r.jsonc: Unknown key "zzzzzzzz"',
    ]],
    ["a command-line-only key", `{ "config": "other.jsonc" }`, [
      'r.jsonc: Unknown key "config"',
    ]],
    ["a syntax error, with line and column", `{\n  "port": 443\n  "nat": true\n}`, [
      "r.jsonc:3:3: Cannot parse: comma expected",
    ]],
    ["not an object", `["port"]`, ["r.jsonc: must hold one JSON object of options"]],
  ];
  for (const [what, text, errors] of cases) {
    await t.step(what, () => {
      assertEquals(parseConfigFile(TABLE, text, "r.jsonc"), { ok: false, errors });
    });
  }
});

Deno.test("parseProgramOptions() layers flags over environment over the file over defaults", () => {
  const files = { "c.jsonc": `{ "port": 443, "mode": "stream", "pool4": "10.9.0.0/16" }` };
  const fromFile = parse(["--config", "c.jsonc"], files);
  assert(fromFile.ok === true);
  assertEquals(fromFile.config.port, 443);
  assertEquals(fromFile.config.mode, "stream");
  assertEquals(formatPrefix(fromFile.config.pool4!), "10.9.0.0/16");
  assertEquals(fromFile.config.mtu, "auto"); // the default
  const env = parse(["--config", "c.jsonc"], files, { T_MODE: "datagram" });
  assert(env.ok === true);
  assertEquals(env.config.mode, "datagram");
  const flag = parse(["--config", "c.jsonc", "--port", "8443", "--mode", "stream"], files, {
    T_MODE: "datagram",
  });
  assert(flag.ok === true);
  assertEquals([flag.config.port, flag.config.mode], [8443, "stream"]);
});

Deno.test("parseProgramOptions() reports a config file it cannot read or use", () => {
  assertEquals(parse(["--config", "missing.jsonc"], {}), {
    ok: false,
    errors: ["Cannot read --config missing.jsonc: No such file or directory (os error 2)"],
  });
  // The file's errors come with the command line's and every option's.
  assertEquals(parse(["--config", "c.jsonc", "--port", "0"], { "c.jsonc": `{ "mtu": 100 }` }), {
    ok: false,
    errors: [
      'c.jsonc: mtu must be an integer from 1280 to 65535, not "100"',
      '--port must be an integer from 1 to 65535, not "0"',
    ],
  });
});

Deno.test("--print-config prints the effective configuration, which reads back the same", () => {
  const files = { "c.jsonc": `{ "port": 443, "routes": ["fd00::/8"], "token": "s3cret" }` };
  const printed = parse(["--config", "c.jsonc", "--nat", "--print-config"], files, {
    T_MODE: "stream",
  });
  assert(printed.ok === "print");
  assertEquals(
    printed.text,
    `{
  "port": 443, // file
  // "pool4": not set (no default)
  "mode": "stream", // environment T_MODE
  "mtu": "auto", // default
  "routes": ["fd00::/8"], // file
  "nat": true, // flag --nat
  "token": "${REDACTED}", // file
}
`,
  );
  // Read back as a file (the secret aside), it gives the same configuration.
  const again = parse(["--config", "p.jsonc"], {
    "p.jsonc": printed.text.replace(REDACTED, "s3cret"),
  });
  const direct = parse(["--config", "c.jsonc", "--nat"], files, { T_MODE: "stream" });
  assert(again.ok === true && direct.ok === true);
  assertEquals({ ...again.config, config: undefined }, { ...direct.config, config: undefined });
});

Deno.test("renderConfig() writes numbers as numbers and lists as arrays", () => {
  const text = renderConfig(TABLE, {
    port: { raw: "8443", name: "--port", from: "flag" },
    pool4: undefined,
    mode: { raw: "datagram", name: "--mode", from: "default" },
    mtu: { raw: "1400", name: "MTU", from: "environment" },
    routes: { raw: "10.0.0.0/8, fd00::/8", name: "R", from: "environment" },
    nat: { raw: "0", name: "NAT", from: "environment" },
    token: undefined,
    config: undefined,
    printConfig: undefined,
  });
  assert(text.includes(`"port": 8443, // flag --port`));
  assert(text.includes(`"mtu": 1400, // environment MTU`));
  assert(text.includes(`"routes": ["10.0.0.0/8","fd00::/8"], // environment R`));
  assert(text.includes(`"nat": false, // environment NAT`));
});
