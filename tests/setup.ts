/**
 * Gets this machine ready for `deno task demo`, `deno task test` or
 * `deno task bench`: finds which of the system packages they need
 * (tests/support/system_packages.ts) are missing and, as root on Debian or
 * Ubuntu, installs them with apt after saying what and why; otherwise it
 * stops with the exact command to run. Also checks for `/dev/net/tun`.
 *
 * ```
 * deno task setup            # what the test suite needs (the most)
 * deno task setup demo       # what the demo needs
 * deno task setup bench      # what the benchmark needs
 * deno task setup --list     # the table: package, commands, why, tasks
 * ```
 *
 * `tests/run_tests.ts` (`deno task test`) and `tests/demo.ts` call
 * {@linkcode ensureSystem} first. Exits 0 when ready, 1 when not.
 *
 * @module
 */
import {
  COMMAND_DIRS,
  parseOsRelease,
  planSetup,
  type Purpose,
  SYSTEM_PACKAGES,
  type SystemPackage,
} from "./support/system_packages.ts";
import type { OsRelease } from "./support/system_packages.ts";

const APT_TIMEOUT_MS = 30 * 60_000;

/** Options of {@linkcode ensureSystem}. */
export interface EnsureOptions {
  /** Where progress goes (default: standard error). */
  say?: (line: string) => void;
}

/**
 * Makes sure the packages `purpose` needs are installed and `/dev/net/tun`
 * exists. Returns true when the machine is ready; false after printing what
 * is missing and the command that would fix it.
 */
export async function ensureSystem(
  purpose: Purpose,
  options: EnsureOptions = {},
): Promise<boolean> {
  const say = options.say ?? ((line: string) => console.error(line));
  const root = isRoot();
  const missing = await missingCommands(purpose);
  const os = await readOsRelease();
  const haveApt = await findCommand("apt-get") !== undefined;
  const plan = planSetup(purpose, { os, root, haveApt, missingCommands: missing });
  let ready = true;
  if (plan.kind === "stop") {
    say(
      `setup: ${plan.packages.length} package(s) that \`deno task ${purpose}\` needs are missing:`,
    );
    for (const line of describe(plan.packages)) say(line);
    say(`setup: ${plan.problem}. Run:`);
    say(`  ${plan.command}`);
    ready = false;
  } else if (plan.kind === "install") {
    say(
      `setup: installing ${plan.packages.length} package(s) that \`deno task ${purpose}\` needs:`,
    );
    for (const line of describe(plan.packages)) say(line);
    say(`setup: apt-get update && ${plan.command}`);
    ready = await aptInstall(plan.packages, say);
  } else {
    const count = SYSTEM_PACKAGES.filter((p) => p.purposes.includes(purpose)).length;
    say(`setup: the ${count} packages \`deno task ${purpose}\` needs are installed`);
  }
  if (purpose !== "test" || root) {
    // Deno wants --allow-all before it looks into /dev itself; test(1) does not.
    const tun = await new Deno.Command("sh", { args: ["-c", "test -c /dev/net/tun"] }).output()
      .then((o) => o.success, () => false);
    if (!tun) {
      say("setup: /dev/net/tun is missing: the relay and the client create TUN devices. Run:");
      say("  modprobe tun   (in a container: docker run --device /dev/net/tun, or --privileged)");
      ready = false;
    }
  }
  return ready;
}

/** The commands of `purpose`'s packages that are not found. */
export async function missingCommands(purpose: Purpose): Promise<Set<string>> {
  const missing = new Set<string>();
  for (const pkg of SYSTEM_PACKAGES.filter((p) => p.purposes.includes(purpose))) {
    for (const command of pkg.commands) {
      if (await findCommand(command) === undefined) missing.add(command);
    }
  }
  return missing;
}

/** The path of `name` on the PATH or in the usual bin and sbin directories; undefined when absent. */
export async function findCommand(name: string): Promise<string | undefined> {
  let path = "";
  try {
    path = Deno.env.get("PATH") ?? "";
  } catch {
    // No --allow-env: the usual directories only.
  }
  const dirs = [...path.split(":").filter((d) => d.startsWith("/")), ...COMMAND_DIRS];
  for (const dir of dirs) {
    const info = await Deno.stat(`${dir}/${name}`).catch(() => undefined);
    if (info?.isFile && info.mode !== null && (info.mode & 0o111) !== 0) return `${dir}/${name}`;
  }
  return undefined;
}

/** A PATH with the sbin directories added where they are missing (root's tools live there). */
export function pathWithSbin(path: string): string {
  const dirs = path.split(":").filter((d) => d !== "");
  for (const dir of COMMAND_DIRS) if (!dirs.includes(dir)) dirs.push(dir);
  return dirs.join(":");
}

/** True when the effective uid is 0 (false when it cannot be read). */
export function isRoot(): boolean {
  try {
    return Deno.uid() === 0;
  } catch {
    return false;
  }
}

async function readOsRelease(): Promise<OsRelease | undefined> {
  for (const file of ["/etc/os-release", "/usr/lib/os-release"]) {
    const text = await Deno.readTextFile(file).catch(() => undefined);
    if (text !== undefined) return parseOsRelease(text);
  }
  return undefined;
}

function describe(packages: readonly SystemPackage[]): string[] {
  const width = Math.max(...packages.map((pkg) => pkg.name.length));
  return packages.map((pkg) => `  ${pkg.name.padEnd(width)}  ${pkg.why}`);
}

async function aptInstall(
  packages: readonly SystemPackage[],
  say: (line: string) => void,
): Promise<boolean> {
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const update = await runInherited("apt-get", ["update", "-q"], env);
  if (!update) {
    say("setup: `apt-get update` failed (see above); fix the package sources and run again");
    return false;
  }
  const names = packages.map((pkg) => pkg.name);
  const installed = await runInherited(
    "apt-get",
    ["install", "-y", "-q", "--no-install-recommends", ...names],
    env,
  );
  if (!installed) {
    say(`setup: \`apt-get install ${names.join(" ")}\` failed (see above)`);
    return false;
  }
  const still: string[] = [];
  for (const pkg of packages) {
    for (const command of pkg.commands) {
      if (await findCommand(command) === undefined) still.push(`${command} (${pkg.name})`);
    }
  }
  if (still.length > 0) {
    say(`setup: installed, but still not found: ${still.join(", ")}`);
    return false;
  }
  say(`setup: installed ${names.join(" ")}`);
  return true;
}

/** Runs a command with its output on our standard error; true when it exits 0. */
async function runInherited(
  command: string,
  args: string[],
  env: Record<string, string>,
): Promise<boolean> {
  const child = new Deno.Command(command, {
    args,
    env,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), APT_TIMEOUT_MS);
  const status = await child.status.finally(() => clearTimeout(timer));
  return status.success;
}

function printTable(): void {
  const rows = SYSTEM_PACKAGES.map((pkg) => [
    pkg.name,
    pkg.commands.join(", "),
    pkg.purposes.join(", "),
    pkg.why,
  ]);
  const header = ["package", "commands", "tasks", "why"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const row of [header, ...rows]) {
    console.log(row.map((cell, i) => i === 3 ? cell : cell.padEnd(widths[i])).join("  "));
  }
}

if (import.meta.main) {
  const args = Deno.args;
  if (args.includes("--list")) {
    printTable();
    Deno.exit(0);
  }
  const purpose = (args[0] ?? "test") as Purpose;
  if (!["demo", "test", "bench"].includes(purpose)) {
    console.error(`error: unknown task "${args[0]}": use demo, test or bench (or --list)`);
    Deno.exit(2);
  }
  Deno.exit(await ensureSystem(purpose) ? 0 : 1);
}
