// The docs and the permissions follow the option tables (relay/config.ts,
// client/config.ts): the README's tables are the generated ones byte for
// byte (`deno task docs` rewrites them), every flag the docs name exists,
// `docs/security.md` lists every limit, `--help` shows every option in 80
// columns, and the tasks allow exactly the environment variables the
// programs read.
import { RUNNER_FLAGS } from "./support/test_report.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { updateConfigKeyTables, updateOptionTables } from "./option_docs.ts";
import { CLIENT_ENV, CLIENT_HELP, CLIENT_OPTIONS, parseClientConfig } from "../client/config.ts";
import { parseRelayConfig, RELAY_ENV, RELAY_HELP, RELAY_OPTIONS } from "../relay/config.ts";
import { HELP as BENCH_HELP } from "./bench/_settings.ts";
import { USERS_OPTIONS } from "../relay/users_main.ts";

const ROOT = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFileSync(new URL(path, ROOT));

/** Deno's own flags, which the docs name beside the programs'. */
const DENO_FLAGS = [
  "--allow-all",
  "--allow-env",
  "--allow-ffi",
  "--allow-net",
  "--allow-read",
  "--allow-run",
  "--allow-sys",
  "--allow-write",
  "--unstable-net",
  "--v8-flags",
];

const flagsOf = (table: Record<string, { flag: string }>) =>
  Object.values(table).map((option) => `--${option.flag}`);

Deno.test("README's option tables are the ones the option tables render (deno task docs)", () => {
  const readme = read("README.md");
  for (const marker of ["relay", "relay limits", "client"]) {
    assert(readme.includes(`<!-- options: ${marker} -->\n`), `marker "${marker}" missing`);
  }
  const expected = updateOptionTables(readme);
  if (expected !== readme) {
    const a = readme.split("\n");
    const b = expected.split("\n");
    const line = a.findIndex((text, i) => text !== b[i]);
    throw new Error(
      `README.md line ${line + 1} differs from the option tables; run deno task docs\n` +
        `README:    ${a[line]}\ngenerated: ${b[line]}`,
    );
  }
});

Deno.test("docs/operations.md's config key tables are the generated ones (deno task docs)", () => {
  const text = read("docs/operations.md");
  for (const marker of ["relay", "client"]) {
    assert(text.includes(`<!-- config keys: ${marker} -->\n`), `marker "${marker}" missing`);
  }
  assertEquals(updateConfigKeyTables(text), text, "run deno task docs");
});

Deno.test("every flag the docs name is an option of the relay, the client, deno task users, the bench, the test runner or Deno", () => {
  const known = new Set([
    ...flagsOf(RELAY_OPTIONS),
    ...flagsOf(USERS_OPTIONS),
    ...flagsOf(CLIENT_OPTIONS),
    "--help",
    "--version",
    "--json", // deno task status
    ...DENO_FLAGS,
    ...RUNNER_FLAGS,
    ...[...BENCH_HELP.matchAll(/--[a-z0-9-]+/g)].map((m) => m[0]),
  ]);
  // docs/full-tunnel.md is left out: a draft naming the client options issue 14 will add.
  const files = [
    "README.md",
    "docs/security.md",
    "docs/rfc_map.md",
    "docs/interop.md",
    "docs/architecture.md",
    "docs/operations.md",
  ];
  const unknown: string[] = [];
  for (const file of files) {
    const text = read(file);
    // A flag at the start of a code span, or written after a program's name in a command.
    for (const match of text.matchAll(/`(--[a-z0-9-]+)|(?:relay|client)\S* (--[a-z0-9-]+)/g)) {
      const flag = match[1] ?? match[2];
      if (!known.has(flag)) unknown.push(`${file}: ${flag}`);
    }
  }
  assertEquals(unknown, []);
});

Deno.test("docs/security.md lists every relay limit, and nothing else, in its limits table", () => {
  const text = read("docs/security.md");
  const start = text.indexOf("## Connections, request streams and control capsules");
  const end = text.indexOf("\n## ", start + 1);
  const rows = text.slice(start, end).split("\n").filter((line) => line.startsWith("| `--"));
  const named = rows.flatMap((row) =>
    [...row.split("|")[1].matchAll(/`(--[a-z-]+)`/g)].map((m) => m[1])
  );
  const limits = Object.values(RELAY_OPTIONS).filter((option) => option.group === "limits");
  assertEquals(named.sort(), limits.map((option) => `--${option.flag}`).sort());
});

Deno.test("--help shows every option, in 80 columns", async (t) => {
  for (
    const [name, help, table] of [
      ["relay", RELAY_HELP, RELAY_OPTIONS],
      ["client", CLIENT_HELP, CLIENT_OPTIONS],
    ] as const
  ) {
    await t.step(name, () => {
      const long = help.split("\n").filter((line) => line.length > 80);
      assertEquals(long, []);
      const lines = help.split("\n");
      for (const flag of [...flagsOf(table), "--help", "--version"]) {
        const listed = lines.some((line) =>
          line.startsWith(`  ${flag} `) || line === `  ${flag}` || line.startsWith(`  -h, ${flag} `)
        );
        assert(listed, `${name} --help lacks ${flag}`);
      }
    });
  }
});

Deno.test("deno.json's tasks allow exactly the environment variables the programs read", () => {
  const tasks: Record<string, string> = JSON.parse(read("deno.json")).tasks;
  const allowed = (task: string) => {
    const match = tasks[task].match(/--allow-env=(\S+)/);
    return match ? match[1].split(",").sort() : [];
  };
  assertEquals(allowed("relay"), [...RELAY_ENV].sort());
  assertEquals(allowed("relay:nat"), [...RELAY_ENV].sort());
  assertEquals(allowed("client"), [...CLIENT_ENV].sort());
});

/** The README's example config file: the jsonc block that starts with `// relay.jsonc`. */
function readmeConfig(): string {
  const readme = read("README.md");
  const start = readme.indexOf("```jsonc\n// relay.jsonc");
  assert(start >= 0, "the README's relay.jsonc example is missing");
  const body = readme.slice(start + "```jsonc\n".length);
  return body.slice(0, body.indexOf("```"));
}

Deno.test("the README's relay and client commands parse", () => {
  const commands = read("README.md").split("\n").filter((line) =>
    /^(?:\S+=\S+ )?deno task (?:relay|relay:nat|client) /.test(line)
  );
  assert(commands.length >= 4, commands.join("\n"));
  for (const command of commands) {
    const words = command.replace(/\s+#.*$/, "").split(" ");
    const at = words.indexOf("task");
    const program = words[at + 1];
    const args = words.slice(at + 2);
    // `--config docs/config/relay.jsonc`: relative to the repository;
    // `--config relay.jsonc`: the README's example file.
    const readFile = (path: string) => path === "relay.jsonc" ? readmeConfig() : read(path);
    const result = program === "client"
      ? parseClientConfig(args, {}, readFile)
      : parseRelayConfig(args, {}, readFile);
    assert(result.ok === true || result.ok === "print", `${command}: ${JSON.stringify(result)}`);
  }
});

Deno.test("--version is answered by both programs", () => {
  assertEquals(parseRelayConfig(["--version"]).ok, "version");
  assertEquals(parseClientConfig(["--version"]).ok, "version");
});
