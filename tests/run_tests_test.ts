// `deno task test` (tests/run_tests.ts) run on small suites of its own in a
// temporary directory (`--root`, `--no-setup`): what it lists after the run
// and its exit code.
import { assert, assertEquals, assertMatch } from "./support/assert.ts";

const RUNNER = new URL("./run_tests.ts", import.meta.url).pathname;
const SKIP = new URL("./support/skip.ts", import.meta.url).href;

async function runner(root: string, args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", RUNNER, "--no-setup", "--root", root, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

async function suite(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "mvpn-runner-test-" });
  for (const [name, text] of Object.entries(files)) {
    await Deno.mkdir(`${dir}/${name.split("/").slice(0, -1).join("/")}`, { recursive: true });
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
  return dir;
}

const SKIPPING = `import { skipUnless } from ${JSON.stringify(SKIP)};
Deno.test({
  name: "needs a unicorn",
  ...skipUnless(false, "no unicorn is installed", "apt-get install -y unicorn"),
  fn() {},
});
Deno.test("runs", () => {});
`;
const SILENT = `Deno.test({ name: "quietly left out", ignore: true, fn() {} });\n`;
const PASSING = `Deno.test("fine", () => {});\n`;

Deno.test("deno task test: a full suite with a skip fails, listing the reason and the fix", async () => {
  const root = await suite({ "a/unicorn_test.ts": SKIPPING, "b/silent_test.ts": SILENT });
  try {
    const result = await runner(root, []);
    assertEquals(result.code, 1, result.stdout + result.stderr);
    const summary = result.stdout.slice(result.stdout.indexOf("2 tests did not run:"));
    const lines = summary.split("\n");
    assertEquals(lines.slice(0, 9), [
      "2 tests did not run:",
      "  a/unicorn_test.ts (1 test)",
      "    - needs a unicorn",
      "    why: no unicorn is installed",
      "    run: apt-get install -y unicorn",
      "  b/silent_test.ts (1 test)",
      "    - quietly left out",
      "    why: ignored without a recorded reason: use skipUnless() from tests/support/skip.ts",
      "The full suite was asked for and 2 tests did not run: failing. Run the commands above, " +
      "or accept it with `deno task test --allow-skip`.",
    ]);
    assertMatch(lines[9], /^deno task test: exit code 1 after \d+\.\d min$/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("deno task test --allow-skip, or a part of the suite: skips listed, exit 0", async () => {
  const root = await suite({ "a/unicorn_test.ts": SKIPPING, "c/pass_test.ts": PASSING });
  try {
    const allowed = await runner(root, ["--allow-skip"]);
    assertEquals(allowed.code, 0, allowed.stdout + allowed.stderr);
    assert(allowed.stdout.includes("    why: no unicorn is installed\n"), allowed.stdout);
    assert(allowed.stdout.includes("--allow-skip: accepted."), allowed.stdout);
    const part = await runner(root, ["a/"]);
    assertEquals(part.code, 0, part.stdout + part.stderr);
    assert(part.stdout.includes("1 test did not run:"), part.stdout);
    assert(!part.stdout.includes("failing"), part.stdout);
    const none = await runner(root, ["c/"]);
    assertEquals(none.code, 0, none.stdout + none.stderr);
    assert(none.stdout.includes("Every test ran: none was skipped."), none.stdout);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("deno task test passes a failure's exit code on, with the skips still listed", async () => {
  const root = await suite({
    "a/unicorn_test.ts": SKIPPING,
    "d/fail_test.ts": `Deno.test("broken", () => { throw new Error("boom"); });\n`,
  });
  try {
    const result = await runner(root, ["--allow-skip"]);
    assertEquals(result.code, 1);
    assert(result.stdout.includes("    why: no unicorn is installed\n"), result.stdout);
    assert(result.stdout.includes("boom"), result.stdout);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
