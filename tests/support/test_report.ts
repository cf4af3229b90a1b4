/**
 * The end of `deno task test` (tests/run_tests.ts): which tests did not run,
 * why, and the command that would make them run, from Deno's JUnit report
 * (every ignored test and step, by file) and the records of
 * `tests/support/skip.ts`; and whether the run fails because of them.
 *
 * @module
 */
import { REPO_ROOT, repoRelative, type SkipRecord } from "./skip.ts";

/** A test or step Deno reported as ignored. */
export interface SkippedTest {
  /** Repository-relative test file (absolute path when outside the repository). */
  readonly file: string;
  /** The test's name; a step's is `parent > step`. */
  readonly name: string;
}

/**
 * The ignored tests in a JUnit XML report as `deno test --junit-path`
 * writes it: each `<testcase name=... classname=FILE>` holding a
 * `<skipped/>`, FILE relative to `root` (where `deno test` ran; default the
 * repository). Scans with `indexOf`, no regular expression.
 */
export function parseJunitSkipped(xml: string, root: string = REPO_ROOT): SkippedTest[] {
  const found: SkippedTest[] = [];
  let at = 0;
  for (;;) {
    const start = xml.indexOf("<testcase ", at);
    if (start < 0) break;
    const tagEnd = xml.indexOf(">", start);
    if (tagEnd < 0) break;
    const selfClosing = xml[tagEnd - 1] === "/";
    const close = selfClosing ? tagEnd : xml.indexOf("</testcase>", tagEnd);
    const bodyEnd = close < 0 ? xml.length : close;
    const tag = xml.slice(start, tagEnd);
    if (!selfClosing && xml.slice(tagEnd, bodyEnd).includes("<skipped")) {
      const name = attribute(tag, "name") ?? "(unnamed)";
      const classname = attribute(tag, "classname");
      // Deno names the file relative to the directory it ran in (the repository root).
      const file = classname === undefined ? "(unknown file)" : repoRelative(
        classname.startsWith("file:") ? classname : new URL(classname, root).href,
        root,
      );
      found.push({ file, name });
    }
    at = bodyEnd;
  }
  return found;
}

/** The unescaped value of ` key="..."` in `tag`, or undefined. */
function attribute(tag: string, key: string): string | undefined {
  const marker = ` ${key}="`;
  const start = tag.indexOf(marker);
  if (start < 0) return undefined;
  const end = tag.indexOf('"', start + marker.length);
  if (end < 0) return undefined;
  return unescapeXml(tag.slice(start + marker.length, end));
}

/** Replaces the five XML entities and numeric character references. */
export function unescapeXml(text: string): string {
  let out = "";
  let at = 0;
  for (;;) {
    const amp = text.indexOf("&", at);
    if (amp < 0) return out + text.slice(at);
    const semi = text.indexOf(";", amp);
    out += text.slice(at, amp);
    const entity = semi < 0 ? "" : text.slice(amp + 1, semi);
    const named: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };
    let decoded: string | undefined = named[entity];
    if (decoded === undefined && entity.startsWith("#")) {
      const code = entity[1] === "x"
        ? parseInt(entity.slice(2), 16)
        : parseInt(entity.slice(1), 10);
      if (Number.isInteger(code) && code >= 0 && code <= 0x10ffff) {
        decoded = String.fromCodePoint(code);
      }
    }
    if (decoded === undefined) {
      out += "&";
      at = amp + 1;
    } else {
      out += decoded;
      at = semi + 1;
    }
  }
}

/**
 * Parses the JSON lines `skipUnless` appends; lines that are not records are
 * left out. Files are made relative to `root` (a `file:` URL ending in `/`,
 * default the repository), as {@linkcode parseJunitSkipped} names them.
 */
export function parseSkipRecords(text: string, root: string = REPO_ROOT): SkipRecord[] {
  const records: SkipRecord[] = [];
  const seen = new Set<string>();
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      continue;
    }
    if (
      typeof value === "object" && value !== null &&
      typeof (value as SkipRecord).file === "string" &&
      typeof (value as SkipRecord).reason === "string" &&
      typeof (value as SkipRecord).fix === "string"
    ) {
      const { reason, fix } = value as SkipRecord;
      const recorded = (value as SkipRecord).file;
      // skip.ts names files relative to the repository, or by absolute path.
      const file = repoRelative(
        new URL(recorded.startsWith("/") ? `file://${recorded}` : recorded, REPO_ROOT).href,
        root,
      );
      const key = JSON.stringify([file, reason, fix]);
      if (!seen.has(key)) records.push({ file, reason, fix });
      seen.add(key);
    }
  }
  return records;
}

/** Input of {@linkcode summarizeSkips}. */
export interface SkipSummaryInput {
  /** Ignored tests from the JUnit report. */
  readonly skipped: readonly SkippedTest[];
  /** What `skipUnless` recorded. */
  readonly records: readonly SkipRecord[];
  /** The whole suite was asked for (no file or `--filter` given). */
  readonly fullSuite: boolean;
  /** `--allow-skip` was given. */
  readonly allowSkip: boolean;
  /** Names listed per file before "and N more". */
  readonly namesPerFile?: number;
}

/** What {@linkcode summarizeSkips} decided. */
export interface SkipSummary {
  /** Lines to print after the run (empty when everything ran). */
  readonly lines: string[];
  /** True when the run must fail because part of the full suite did not run. */
  readonly fail: boolean;
  /** Tests ignored in a file that recorded no reason (not through `skipUnless`). */
  readonly unexplained: number;
}

/** Reason shown for ignored tests of a file that recorded none. */
export const NO_REASON =
  "ignored without a recorded reason: use skipUnless() from tests/support/skip.ts";

/**
 * The summary printed at the end of `deno task test`: per file, the tests
 * that did not run (the first few by name), each reason and its command.
 * Fails when the full suite was asked for, something did not run and
 * `--allow-skip` was not given.
 */
export function summarizeSkips(input: SkipSummaryInput): SkipSummary {
  const perFile = input.namesPerFile ?? 4;
  const byFile = new Map<string, string[]>();
  for (const test of input.skipped) {
    const names = byFile.get(test.file) ?? [];
    names.push(test.name);
    byFile.set(test.file, names);
  }
  if (byFile.size === 0) return { lines: [], fail: false, unexplained: 0 };
  const total = input.skipped.length;
  const lines = [`${total} test${total === 1 ? "" : "s"} did not run:`];
  let unexplained = 0;
  for (const [file, names] of [...byFile].sort(([a], [b]) => a.localeCompare(b))) {
    lines.push(`  ${file} (${names.length} ${names.length === 1 ? "test" : "tests"})`);
    for (const name of names.slice(0, perFile)) lines.push(`    - ${name}`);
    if (names.length > perFile) lines.push(`    - and ${names.length - perFile} more`);
    const reasons = input.records.filter((record) => record.file === file);
    if (reasons.length === 0) {
      unexplained += names.length;
      lines.push(`    why: ${NO_REASON}`);
    }
    for (const record of reasons) {
      lines.push(`    why: ${record.reason}`);
      lines.push(`    run: ${record.fix}`);
    }
  }
  const fail = input.fullSuite && !input.allowSkip;
  if (fail) {
    lines.push(
      `The full suite was asked for and ${total} test${total === 1 ? "" : "s"} did not run: ` +
        "failing. Run the commands above, or accept it with `deno task test --allow-skip`.",
    );
  } else if (input.fullSuite) {
    lines.push("--allow-skip: accepted.");
  }
  return { lines, fail, unexplained };
}

/** Flags of `deno test` whose value is the next argument. */
const VALUE_FLAGS = new Set([
  "--filter",
  "--seed",
  "--reporter",
  "--junit-path",
  "--coverage",
  "--config",
  "-c",
  "--import-map",
  "--lock",
  "--location",
  "--cert",
  "--v8-flags",
]);

/** The runner's own flags (`deno task test --allow-skip`); the others go to `deno test`. */
export const RUNNER_FLAGS: readonly string[] = ["--allow-skip", "--no-setup", "--root"];

/** The arguments of `deno task test`, split into ours and those for `deno test`. */
export interface RunnerArgs {
  /** `--allow-skip`: tests that cannot run do not fail the run. */
  readonly allowSkip: boolean;
  /** `--no-setup`: do not check for root or install system packages first. */
  readonly noSetup: boolean;
  /** `--root DIR`: run the tests under DIR instead of the repository's (tests of the runner). */
  readonly root?: string;
  /** Arguments passed on to `deno test`. */
  readonly denoTestArgs: readonly string[];
  /** No file, directory or `--filter` was given. */
  readonly fullSuite: boolean;
}

/** Splits `args` (see {@linkcode RunnerArgs}). */
export function parseRunnerArgs(args: readonly string[]): RunnerArgs {
  let allowSkip = false;
  let noSetup = false;
  let root: string | undefined;
  let fullSuite = true;
  const denoTestArgs: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--allow-skip") {
      allowSkip = true;
      continue;
    }
    if (arg === "--no-setup") {
      noSetup = true;
      continue;
    }
    if (arg === "--root" && i + 1 < args.length) {
      root = args[++i];
      continue;
    }
    if (arg === "--") {
      denoTestArgs.push(...args.slice(i)); // the rest goes to the test modules
      break;
    }
    denoTestArgs.push(arg);
    if (arg === "--filter" || arg.startsWith("--filter=")) fullSuite = false;
    if (VALUE_FLAGS.has(arg) && i + 1 < args.length) {
      denoTestArgs.push(args[++i]);
    } else if (!arg.startsWith("-")) {
      fullSuite = false; // a file or directory
    }
  }
  return { allowSkip, noSetup, denoTestArgs, fullSuite, ...(root === undefined ? {} : { root }) };
}
