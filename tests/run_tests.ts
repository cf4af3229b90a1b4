/**
 * `deno task test`: the whole suite (unit, integration, e2e, interop,
 * containers, deploy checks) in one command, as the README gives it.
 *
 * 1. Setup (tests/setup.ts): the system packages the suite needs, installed
 *    with apt as root on Debian or Ubuntu after saying what and why, or a
 *    stop with the command to run.
 * 2. `deno test` with the suite's permissions and a JUnit report, each test
 *    that cannot run recording why and how to make it run
 *    (tests/support/skip.ts).
 * 3. The list of what did not run, with reasons and commands; the run fails
 *    when the full suite was asked for and part of it did not run.
 *
 * ```
 * deno task test                        # the full suite; as root
 * deno task test --allow-skip           # or deno task test:allow-skip: skips do not fail
 * deno task test shared/ --filter qpack # a part (skips are listed, never fail)
 * deno task test --no-setup ...         # no package or root check
 * deno task test --root DIR ...          # the suite under DIR (tests of this runner)
 * ```
 *
 * Other arguments go to `deno test`. Exits with `deno test`'s code, or 1
 * when the setup stops or tests were skipped (see above).
 *
 * @module
 */
import { ensureSystem, isRoot, pathWithSbin } from "./setup.ts";
import { README_TEST_COMMAND, SKIP_FILE_ENV } from "./support/skip.ts";
import {
  parseJunitSkipped,
  parseRunnerArgs,
  parseSkipRecords,
  summarizeSkips,
} from "./support/test_report.ts";

/** The permissions the suite runs with. */
const TEST_PERMISSIONS = [
  "--unstable-net",
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-env",
  "--allow-ffi",
  "--allow-sys",
];

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);

async function main(): Promise<number> {
  const args = parseRunnerArgs(Deno.args);
  const started = performance.now();
  const say = (line: string) => console.error(line);
  if (!args.noSetup && args.fullSuite && !isRoot() && !args.allowSkip) {
    say("The full suite needs root (network namespaces, TUN devices, nftables, its own Docker");
    say("engine) and installs what it needs with apt. Run it as root:");
    say(`  sudo ${README_TEST_COMMAND}`);
    say("or run what can run without root: deno task test --allow-skip");
    return 1;
  }
  if (!args.noSetup) {
    const ready = await ensureSystem("test", { say });
    if (!ready) {
      if (args.fullSuite && !args.allowSkip) {
        say("setup: not ready; the full suite would skip tests. Run the command above, or");
        say("accept the skips with: deno task test --allow-skip");
        return 1;
      }
      say("setup: not ready; going on (the tests that cannot run are listed at the end)");
    }
  }

  const work = await Deno.makeTempDir({ prefix: "mvpn-test-run-" });
  const junit = `${work}/junit.xml`;
  const skipFile = `${work}/skips.jsonl`;
  await Deno.writeTextFile(skipFile, "");
  // The child gets Ctrl-C too; we wait for it and still print the summary.
  const ignoreInterrupt = () => {};
  Deno.addSignalListener("SIGINT", ignoreInterrupt);
  let code: number;
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["test", ...TEST_PERMISSIONS, `--junit-path=${junit}`, ...args.denoTestArgs],
      cwd: args.root ?? ROOT,
      env: { [SKIP_FILE_ENV]: skipFile, PATH: pathWithSbin(Deno.env.get("PATH") ?? "") },
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    code = (await child.status).code;
    const xml = await Deno.readTextFile(junit).catch(() => undefined);
    const rootUrl = toFileUrl(args.root ?? ROOT);
    const records = parseSkipRecords(await Deno.readTextFile(skipFile).catch(() => ""), rootUrl);
    if (xml === undefined) {
      say(`deno test wrote no report (exit code ${code}); no list of skipped tests`);
    } else {
      const summary = summarizeSkips({
        skipped: parseJunitSkipped(xml, rootUrl),
        records,
        fullSuite: args.fullSuite,
        allowSkip: args.allowSkip,
      });
      if (summary.lines.length > 0) console.log("\n" + summary.lines.join("\n"));
      else console.log("\nEvery test ran: none was skipped.");
      if (code === 0 && summary.fail) code = 1;
    }
  } finally {
    Deno.removeSignalListener("SIGINT", ignoreInterrupt);
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
  const minutes = (performance.now() - started) / 60_000;
  console.log(`deno task test: exit code ${code} after ${minutes.toFixed(1)} min`);
  return code;
}

function toFileUrl(dir: string): string {
  return new URL(`file://${encodeURI(dir.endsWith("/") ? dir : `${dir}/`)}`).href;
}

if (import.meta.main) Deno.exit(await main());
