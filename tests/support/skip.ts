/**
 * The registry of tests that cannot run on this machine. A test that needs
 * something (root, a command, a binary, a kernel feature) takes its
 * `ignore` from {@linkcode skipUnless}, which also writes down why and the
 * command that would make it run:
 *
 * ```ts
 * Deno.test({ name: "...", ...skipUnless(isRoot(), NEEDS_ROOT, RUN_AS_ROOT), fn });
 * ```
 *
 * Under `deno task test` (tests/run_tests.ts) each record is appended, as one
 * JSON line, to the file named by {@linkcode SKIP_FILE_ENV}; the runner lists
 * them after the run next to the tests Deno reports as ignored, and fails the
 * full suite when anything did not run. Under a bare `deno test` the reason
 * and the command are printed once per file instead.
 *
 * @module
 */

import { aptInstallCommand, packageOf } from "./system_packages.ts";

/** Environment variable naming the JSON-lines file {@linkcode skipUnless} appends to. */
export const SKIP_FILE_ENV = "MASQUE_SKIP_FILE";

/** The README's test command, which installs what the suite needs (as root). */
export const README_TEST_COMMAND = "npx -y deno@2.9.6 task test";

/** The setup step alone: installs what the suite needs (as root). */
export const SETUP_COMMAND = "npx -y deno@2.9.6 task setup";

/** Reason for tests that need root. */
export const NEEDS_ROOT = "needs root (network namespaces, TUN devices, nftables)";

/** The command that runs the suite as root. */
export const RUN_AS_ROOT = `run the suite as root: sudo ${README_TEST_COMMAND}`;

/** One test (or group of tests of one file) that cannot run, and how to make it run. */
export interface SkipRecord {
  /** Repository-relative path of the test file, such as `tests/e2e/tunnel_test.ts`. */
  readonly file: string;
  /** Why it cannot run here: `gtlsclient is not installed`. */
  readonly reason: string;
  /** The command (or step) that would make it run: `apt-get install -y ngtcp2-client`. */
  readonly fix: string;
}

/** The repository root, as a `file:` URL ending in `/`. */
export const REPO_ROOT = new URL("../../", import.meta.url).href;
const printed = new Set<string>();

/**
 * Test options that run the test when `condition` holds and otherwise
 * ignore it, recording `reason` and `fix` for the summary of
 * `deno task test` (see the module documentation). The test file is taken
 * from the call stack: the nearest `_test.ts` frame.
 */
export function skipUnless(condition: boolean, reason: string, fix: string): { ignore: boolean } {
  if (condition) return { ignore: false };
  const record: SkipRecord = { file: callerTestFile(), reason, fix };
  const key = JSON.stringify(record);
  if (printed.has(key)) return { ignore: true };
  printed.add(key);
  const path = skipFile();
  if (path === undefined) {
    console.warn(`${record.file}: skipped: ${reason} (to run it: ${fix})`);
  } else {
    try {
      Deno.writeTextFileSync(path, key + "\n", { append: true });
    } catch (error) {
      console.warn(
        `${record.file}: skipped: ${reason} (to run it: ${fix}); cannot record: ${error}`,
      );
    }
  }
  return { ignore: true };
}

function skipFile(): string | undefined {
  try {
    return Deno.env.get(SKIP_FILE_ENV) || undefined;
  } catch {
    return undefined; // no --allow-env
  }
}

/** The repository-relative path of the nearest `_test.ts` file on the call stack. */
function callerTestFile(): string {
  const stack = new Error().stack ?? "";
  let fallback: string | undefined;
  for (const line of stack.split("\n")) {
    const file = frameFile(line);
    if (file === undefined || file.endsWith("/tests/support/skip.ts")) continue;
    if (file.endsWith("_test.ts")) return repoRelative(file);
    fallback ??= file;
  }
  return fallback === undefined ? "(unknown file)" : repoRelative(fallback);
}

/** The `file://` URL of a V8 stack frame line (`    at fn (file:///x.ts:1:2)`), without position. */
export function frameFile(line: string): string | undefined {
  const start = line.indexOf("file://");
  if (start < 0) return undefined;
  let end = line.length;
  if (line.endsWith(")")) end--;
  // Drop ":line:col" from the end.
  for (let i = 0; i < 2; i++) {
    const colon = line.lastIndexOf(":", end - 1);
    if (colon <= start) return undefined;
    end = colon;
  }
  return line.slice(start, end);
}

/** `url` relative to the repository root, or its absolute path when outside. */
export function repoRelative(url: string, root: string = REPO_ROOT): string {
  const path = (u: string) => decodeURIComponent(new URL(u).pathname);
  const base = path(root);
  const file = path(url);
  return file.startsWith(base) ? file.slice(base.length) : file;
}

/** Reason and command for a test that needs `command`, which is not installed. */
export function missingCommand(command: string): { reason: string; fix: string } {
  const pkg = packageOf(command);
  return {
    reason: `${command} is not installed`,
    fix: `${aptInstallCommand([pkg.name])} (or, as root: ${SETUP_COMMAND})`,
  };
}

/**
 * {@linkcode skipUnless} for tests that need `commands`: runs them when
 * every one is found, else records the first missing one with its package.
 * `found` tells whether a command is installed (default: `command -v`).
 */
export async function skipUnlessCommands(
  commands: readonly string[],
  found: (command: string) => Promise<boolean> = commandFound,
): Promise<{ ignore: boolean }> {
  for (const command of commands) {
    if (!await found(command)) {
      const { reason, fix } = missingCommand(command);
      return skipUnless(false, reason, fix);
    }
  }
  return { ignore: false };
}

/**
 * {@linkcode skipUnless} for tests that need root (`root`, as the caller
 * reads it) and `commands`: root is checked first, then the commands.
 */
export async function skipUnlessRoot(
  root: boolean,
  commands: readonly string[] = [],
): Promise<{ ignore: boolean }> {
  if (!root) return skipUnless(false, NEEDS_ROOT, RUN_AS_ROOT);
  return await skipUnlessCommands(commands);
}

/** True when `name` is a command `sh` finds (`command -v`). */
export async function commandFound(name: string): Promise<boolean> {
  try {
    const { code } = await new Deno.Command("sh", {
      args: ["-c", 'command -v "$1"', "sh", name],
      stdout: "null",
      stderr: "null",
    }).output();
    return code === 0;
  } catch {
    return false;
  }
}
