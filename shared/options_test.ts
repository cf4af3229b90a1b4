import { assert, assertEquals } from "../tests/support/assert.ts";
import { formatPrefix } from "./ip/ip_address.ts";
import {
  cidr,
  defaultSource,
  envNames,
  envSource,
  flagSource,
  integer,
  INTERFACE_NAME,
  list,
  oneOf,
  type OptionValues,
  parseArgsOptions,
  parseCidr,
  parseInteger,
  parseProgramOptions,
  renderHelp,
  renderMarkdownTable,
  resolveOptions,
  single,
  type Source,
  TEXT,
  toggle,
} from "./options.ts";

/** A small table with one option of each shape. */
const TABLE = {
  port: single({
    flag: "port",
    valueName: "N",
    type: integer(1, 65535),
    default: 4433,
    help: "port",
  }),
  name: single({ flag: "name", valueName: "NAME", type: TEXT, env: "T_NAME", help: "a name" }),
  tun: single({ flag: "tun", valueName: "NAME", type: INTERFACE_NAME, default: "t0", help: "TUN" }),
  mode: single({
    flag: "mode",
    valueName: "MODE",
    type: oneOf(["datagram", "stream"]),
    default: "datagram",
    env: "T_MODE",
    help: "packet mode",
  }),
  routes: list({ flag: "route", valueName: "CIDR", type: cidr(), env: "T_ROUTES", help: "route" }),
  names: list({ flag: "alias", valueName: "A", type: TEXT, default: ["a", "b"], help: "aliases" }),
  nat: toggle({ flag: "nat", env: "T_NAT", help: "masquerade" }),
  relay: single({
    flag: "relay",
    valueName: "URL",
    type: TEXT,
    required: "e.g. --relay x",
    help: "r",
  }),
};

type Values = OptionValues<typeof TABLE>;

function parse(args: string[], env: Record<string, string> = {}) {
  return parseProgramOptions({ table: TABLE, build: (v: Values) => v }, args, env);
}

Deno.test("parseProgramOptions() reports command-line mistakes, each named", async (t) => {
  const cases: [string, string[], string[]][] = [
    ["unknown flag, with the nearest known one; its value not reported again", ["--prot", "1"], [
      "Unknown option --prot (did you mean --port?)",
    ]],
    ["unknown flag with an inline value, then a stray argument", ["--prot=1", "2"], [
      "Unknown option --prot (did you mean --port?)",
      'Unexpected argument "2": options start with --',
    ]],
    ["unknown flag, nothing near", ["--bogus"], ["Unknown option --bogus"]],
    ["unknown short flag", ["-x"], ["Unknown option -x"]],
    ["missing value at the end", ["--port"], ["--port needs a value: --port N"]],
    ["missing value before the next option", ["--port", "--nat"], [
      '--port needs a value, not the option "--nat" (write --port=--nat if it is the value)',
    ]],
    ["a value given to a switch", ["--nat=yes"], ['--nat takes no value, not "yes"']],
    ["a stray argument", ["extra"], ['Unexpected argument "extra": options start with --']],
    ["after --, still not an option", ["--", "--port"], [
      'Unexpected argument "--port": options start with --',
    ]],
    ["bad integer", ["--port", "0x10"], ['--port must be an integer from 1 to 65535, not "0x10"']],
    ["bad CIDR, in a repeated flag", ["--route", "10.0.0.0/8", "--route", "10.0.0.0/40"], [
      '--route: Invalid prefix "10.0.0.0/40": length 40 exceeds 32 bits of an IPv4 address',
    ]],
    ["bad choice", ["--mode", "tcp"], ['--mode must be datagram or stream, not "tcp"']],
    ["empty text", ["--name="], ["--name must not be empty"]],
    ["bad interface name", ["--tun", "a/b"], [
      `--tun must be 1-15 letters, digits, '-', '_' or '.', not "a/b"`,
    ]],
  ];
  for (const [what, args, errors] of cases) {
    await t.step(what, () => {
      const r = parse(["--relay", "r", ...args]);
      assert(r.ok === false, JSON.stringify(r));
      assertEquals(r.errors, errors);
    });
  }
  await t.step("a required option left out", () => {
    const r = parse([]);
    assert(r.ok === false);
    assertEquals(r.errors, ["--relay URL is required, e.g. --relay x"]);
  });
  await t.step("every error at once: the command line's first, then table order", () => {
    const r = parse(["--mode", "x", "--bogus", "--port", "0"]);
    assert(r.ok === false);
    assertEquals(r.errors, [
      "Unknown option --bogus",
      '--port must be an integer from 1 to 65535, not "0"',
      '--mode must be datagram or stream, not "x"',
      "--relay URL is required, e.g. --relay x",
    ]);
  });
});

Deno.test("parseProgramOptions() answers --help and --version before any error", () => {
  assertEquals(parse(["--bogus", "-h"]).ok, "help");
  assertEquals(parse(["--help"]).ok, "help");
  assertEquals(parse(["--version", "--port", "x"]).ok, "version");
});

Deno.test("parseProgramOptions() layers flags over environment over defaults", async (t) => {
  await t.step("defaults only", () => {
    const r = parse(["--relay", "r"]);
    assert(r.ok === true);
    const { port, name, mode, routes, names, nat } = r.config;
    assertEquals({ port, name, mode, routes, names, nat }, {
      port: 4433,
      name: undefined,
      mode: "datagram",
      routes: undefined,
      names: ["a", "b"],
      nat: false,
    });
  });
  await t.step("environment over defaults; a list's variable is comma-separated", () => {
    const r = parse(["--relay", "r"], {
      T_NAME: "from-env",
      T_MODE: "stream",
      T_ROUTES: " 198.18.0.0/15, ,fd00::/8 ",
      T_NAT: "1",
    });
    assert(r.ok === true);
    assertEquals(r.config.name, "from-env");
    assertEquals(r.config.mode, "stream");
    assertEquals(r.config.routes?.map(formatPrefix), ["198.18.0.0/15", "fd00::/8"]);
    assertEquals(r.config.nat, true);
  });
  await t.step("flags over environment; repeated flags make the list, in order", () => {
    const r = parse(
      [
        "--relay",
        "r",
        "--name",
        "flag",
        "--mode=datagram",
        "--route",
        "10.0.0.0/8",
        "--route=::/0",
      ],
      { T_NAME: "env", T_MODE: "stream", T_ROUTES: "198.18.0.0/15" },
    );
    assert(r.ok === true);
    assertEquals([r.config.name, r.config.mode], ["flag", "datagram"]);
    assertEquals(r.config.routes?.map(formatPrefix), ["10.0.0.0/8", "::/0"]);
  });
  await t.step("a one-value flag given twice: the last counts", () => {
    const r = parse(["--relay", "r", "--port", "1", "--port", "2"]);
    assert(r.ok === true);
    assertEquals(r.config.port, 2);
  });
  await t.step("an empty variable counts as unset", () => {
    const r = parse(["--relay", "r"], { T_MODE: "", T_NAME: "" });
    assert(r.ok === true);
    assertEquals([r.config.mode, r.config.name], ["datagram", undefined]);
  });
  await t.step("errors name the variable the value came from", () => {
    const r = parse(["--relay", "r"], { T_MODE: "tcp", T_ROUTES: "x", T_NAT: "yes" });
    assert(r.ok === false);
    assertEquals(r.errors, [
      'T_MODE must be datagram or stream, not "tcp"',
      'T_ROUTES: Invalid prefix "x": "x" is not an IP address',
      'T_NAT must be true or false, not "yes"',
    ]);
  });
  await t.step("the config is what build() returns, frozen lists", () => {
    const r = parse(["--relay", "r", "--route", "10.0.0.0/8"]);
    assert(r.ok === true);
    assert(Object.isFrozen(r.config.routes));
    assert(Object.isFrozen(r.config.names));
  });
});

Deno.test("resolveOptions() takes each option from the first source that has it", () => {
  // A config file (issue 11) is one more source between environment and defaults.
  const file: Source = (key) =>
    key === "port"
      ? { raw: "8443", name: "port" }
      : key === "mode"
      ? { raw: "datagram", name: "mode" }
      : key === "tun"
      ? { raw: "not a name", name: "tun" }
      : undefined;
  const resolved = resolveOptions(TABLE, [
    flagSource(TABLE, ["--mode", "stream"]).source,
    envSource({ T_NAME: "env" }),
    file,
    defaultSource,
  ]);
  assertEquals(resolved.errors, [
    `tun must be 1-15 letters, digits, '-', '_' or '.', not "not a name"`,
    "--relay URL is required, e.g. --relay x",
  ]);
  const { port, mode, name, names } = resolved.values;
  assertEquals({ port, mode, name, names }, {
    port: 8443,
    mode: "stream",
    name: "env",
    names: ["a", "b"],
  });
  assertEquals("tun" in resolved.values, false);
  assertEquals([resolved.names.port, resolved.names.mode, resolved.names.name], [
    "port",
    "--mode",
    "T_NAME",
  ]);
  assertEquals(resolved.names.relay, "--relay");
});

Deno.test("parseProgramOptions() runs the program's checks after each option's, on what was read", () => {
  const r = parseProgramOptions(
    {
      table: TABLE,
      check: (v, names) => v.nat && v.routes === undefined ? [`${names.nat} needs --route`] : [],
      build: (v: Values) => v,
    },
    ["--nat", "--port", "0", "--relay", "r"],
    {},
  );
  assert(r.ok === false);
  assertEquals(r.errors, [
    '--port must be an integer from 1 to 65535, not "0"',
    "--nat needs --route",
  ]);
});

Deno.test("parseArgsOptions() and envNames() come from the table", () => {
  const options = parseArgsOptions(TABLE);
  assertEquals(options.port, { type: "string", multiple: false });
  assertEquals(options.route, { type: "string", multiple: true });
  assertEquals(options.nat, { type: "boolean", multiple: false });
  assertEquals(options.help, { type: "boolean", short: "h" });
  assertEquals(options.version, { type: "boolean" });
  assertEquals(Object.keys(options).length, Object.keys(TABLE).length + 2);
  assertEquals(envNames(TABLE), ["T_NAME", "T_MODE", "T_ROUTES", "T_NAT"]);
});

Deno.test("renderHelp() lists every option with its notes, wrapped to 80 columns", () => {
  const help = renderHelp(TABLE, {
    title: "t",
    usage: "Usage: u",
    groups: [{ heading: "Options" }],
  });
  const lines = help.split("\n");
  assertEquals(lines.slice(0, 5), ["t", "", "Usage: u", "", "Options:"]);
  assert(lines.every((line) => line.length <= 80), help);
  for (const option of Object.values(TABLE)) assert(help.includes(`--${option.flag}`), option.flag);
  assert(help.includes("  --port N             port (default 4433)\n"), help);
  assert(help.includes("  --alias A            aliases (repeatable; default a, b)\n"), help);
  assert(help.includes("  --relay URL          r (required)\n"), help);
  assert(help.includes("  -h, --help           show this help\n  --version"), help);
});

Deno.test("renderMarkdownTable() pads columns as deno fmt does and escapes pipes", () => {
  const table = {
    pool: single({
      flag: "pool",
      valueName: "CIDR|none",
      type: TEXT,
      default: "10.0.0.0/24",
      help: "the `pool` (§3)",
    }),
    nat: toggle({ flag: "nat", env: "X", help: "on" }),
  };
  assertEquals(
    renderMarkdownTable(table),
    [
      "| option              | meaning              | default     |",
      "| ------------------- | -------------------- | ----------- |",
      "| `--pool CIDR\\|none` | the `pool` (§3)      | 10.0.0.0/24 |",
      "| `--nat`             | on (environment `X`) | off         |",
      "",
    ].join("\n"),
  );
});

Deno.test("parseInteger() accepts decimal integers within bounds and records errors", async (t) => {
  await t.step("within bounds, ends included", () => {
    const errors: string[] = [];
    assertEquals(
      [
        parseInteger("1280", "--mtu", 1280, 65535, errors),
        parseInteger("65535", "--mtu", 1280, 65535, errors),
      ],
      [1280, 65535],
    );
    assertEquals(errors, []);
  });
  for (const text of ["1279", "65536", "-1", "1e3", "0x10", " 1400", "", "14.5"]) {
    await t.step(`refuses ${JSON.stringify(text)}`, () => {
      const errors: string[] = [];
      assertEquals(parseInteger(text, "--mtu", 1280, 65535, errors), undefined);
      assertEquals(errors, [`--mtu must be an integer from 1280 to 65535, not "${text}"`]);
    });
  }
});

Deno.test("parseCidr() reads a prefix, optionally of one version, and records errors", async (t) => {
  await t.step("any version, surrounding space trimmed", () => {
    const errors: string[] = [];
    const prefix = parseCidr(" 198.18.0.1/15 ", "--route", errors);
    assertEquals([prefix && formatPrefix(prefix), errors], ["198.18.0.0/15", []]);
  });
  await t.step("the wrong version", () => {
    const errors: string[] = [];
    assertEquals(parseCidr("fd00::/64", "--pool4", errors, 4), undefined);
    assertEquals(errors, ['--pool4 must be an IPv4 prefix, not "fd00::/64"']);
  });
  await t.step("not a prefix", () => {
    const errors: string[] = [];
    assertEquals(parseCidr("198.18.0.0/33", "--route", errors), undefined);
    assertEquals(errors, [
      '--route: Invalid prefix "198.18.0.0/33": length 33 exceeds 32 bits of an IPv4 address',
    ]);
  });
});
