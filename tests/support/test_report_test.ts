import { assert, assertEquals } from "./assert.ts";
import { frameFile } from "./skip.ts";
import {
  NO_REASON,
  parseJunitSkipped,
  parseRunnerArgs,
  parseSkipRecords,
  summarizeSkips,
  unescapeXml,
} from "./test_report.ts";

/** What `deno test --junit-path` (Deno 2.9.6) wrote for a file with an ignored test and step. */
const JUNIT = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="deno test" tests="7" failures="0" errors="0" time="2.456">
    <testsuite name="./a_test.ts" tests="6" disabled="3" errors="0" failures="0">
        <testcase name="plain ignored" classname="./a_test.ts" time="0.000" line="1" col="6">
            <skipped/>
        </testcase>
        <testcase name="ok one" classname="./a_test.ts" time="0.001" line="2" col="6">
        </testcase>
        <testcase name="with steps" classname="./a_test.ts" time="0.136" line="3" col="6">
        </testcase>
        <testcase name="quoted &lt;&amp;&gt; &quot;x&quot;" classname="./a_test.ts" time="0.000" line="7" col="6">
            <skipped/>
        </testcase>
        <testcase name="with steps &gt; step ignored" classname="./a_test.ts" time="0.000" line="4" col="11">
            <skipped/>
        </testcase>
        <testcase name="with steps &gt; step ok" classname="./a_test.ts" time="0.000" line="5" col="11">
        </testcase>
    </testsuite>
    <testsuite name="./tests/b_test.ts" tests="1" disabled="0" errors="0" failures="0">
        <testcase name="b fine" classname="./tests/b_test.ts" time="0.002" line="1" col="6">
        </testcase>
    </testsuite>
</testsuites>
`;

Deno.test("parseJunitSkipped() lists ignored tests and steps with their file", () => {
  assertEquals(parseJunitSkipped(JUNIT), [
    { file: "a_test.ts", name: "plain ignored" },
    { file: "a_test.ts", name: 'quoted <&> "x"' },
    { file: "a_test.ts", name: "with steps > step ignored" },
  ]);
  assertEquals(parseJunitSkipped(""), []);
  // A report cut short ends the scan without an error.
  assertEquals(parseJunitSkipped(JUNIT.slice(0, 400)), [{
    file: "a_test.ts",
    name: "plain ignored",
  }]);
});

Deno.test("unescapeXml() decodes entities and leaves stray ampersands", () => {
  assertEquals(unescapeXml("a &lt;b&gt; &amp;&apos;&#65;&#x42;"), "a <b> &'AB");
  assertEquals(unescapeXml("AT&T &unknown; &"), "AT&T &unknown; &");
});

Deno.test("parseSkipRecords() keeps well-formed records once each", () => {
  const line = JSON.stringify({ file: "x_test.ts", reason: "r", fix: "f" });
  assertEquals(parseSkipRecords(`${line}\n${line}\nnot json\n{"file":1}\n\n`), [
    { file: "x_test.ts", reason: "r", fix: "f" },
  ]);
});

Deno.test("summarizeSkips() lists the tests with reasons and fails the full suite", async (t) => {
  const skipped = [
    { file: "tests/e2e/tunnel_test.ts", name: "one" },
    { file: "tests/e2e/tunnel_test.ts", name: "two" },
    { file: "tests/e2e/tunnel_test.ts", name: "three" },
    { file: "tests/other_test.ts", name: "silent" },
  ];
  const records = [
    { file: "tests/e2e/tunnel_test.ts", reason: "needs root", fix: "sudo deno task test" },
    { file: "tests/unrelated_test.ts", reason: "filtered out", fix: "x" },
  ];
  await t.step("full suite without --allow-skip: fails", () => {
    const summary = summarizeSkips({
      skipped,
      records,
      fullSuite: true,
      allowSkip: false,
      namesPerFile: 2,
    });
    assertEquals(summary.lines, [
      "4 tests did not run:",
      "  tests/e2e/tunnel_test.ts (3 tests)",
      "    - one",
      "    - two",
      "    - and 1 more",
      "    why: needs root",
      "    run: sudo deno task test",
      "  tests/other_test.ts (1 test)",
      "    - silent",
      `    why: ${NO_REASON}`,
      "The full suite was asked for and 4 tests did not run: failing. Run the commands above, " +
      "or accept it with `deno task test --allow-skip`.",
    ]);
    assert(summary.fail);
    assertEquals(summary.unexplained, 1);
  });
  await t.step("--allow-skip: listed, not failing", () => {
    const summary = summarizeSkips({ skipped, records, fullSuite: true, allowSkip: true });
    assert(!summary.fail);
    assertEquals(summary.lines.at(-1), "--allow-skip: accepted.");
  });
  await t.step("a part of the suite: listed, not failing", () => {
    const summary = summarizeSkips({ skipped, records, fullSuite: false, allowSkip: false });
    assert(!summary.fail);
    assertEquals(summary.lines.at(-1), `    why: ${NO_REASON}`);
  });
  await t.step("nothing skipped: nothing to say", () => {
    assertEquals(
      summarizeSkips({ skipped: [], records, fullSuite: true, allowSkip: false }),
      { lines: [], fail: false, unexplained: 0 },
    );
  });
});

Deno.test("parseRunnerArgs() takes its own flags and tells the full suite from a part", () => {
  assertEquals(parseRunnerArgs([]), {
    allowSkip: false,
    noSetup: false,
    denoTestArgs: [],
    fullSuite: true,
  });
  assertEquals(parseRunnerArgs(["--allow-skip", "--fail-fast", "--no-setup"]), {
    allowSkip: true,
    noSetup: true,
    denoTestArgs: ["--fail-fast"],
    fullSuite: true,
  });
  assertEquals(parseRunnerArgs(["shared/"]).fullSuite, false);
  assertEquals(parseRunnerArgs(["--filter", "qpack"]).fullSuite, false);
  assertEquals(parseRunnerArgs(["--filter=qpack"]).fullSuite, false);
  // A flag's value is not a path; arguments after -- go to the test modules.
  assertEquals(parseRunnerArgs(["--seed", "7", "--", "x_test.ts"]), {
    allowSkip: false,
    noSetup: false,
    denoTestArgs: ["--seed", "7", "--", "x_test.ts"],
    fullSuite: true,
  });
});

Deno.test("frameFile() takes the file URL out of a V8 stack line", () => {
  assertEquals(
    frameFile("    at fn (file:///repo/tests/e2e/tunnel_test.ts:12:34)"),
    "file:///repo/tests/e2e/tunnel_test.ts",
  );
  assertEquals(frameFile("    at async file:///repo/a_test.ts:3:1"), "file:///repo/a_test.ts");
  assertEquals(frameFile("    at ext:core/01_core.js:1:2"), undefined);
  assertEquals(frameFile("Error"), undefined);
});
