/**
 * The wireguard-go builds the benchmark compares (`--wireguard-go PATH`,
 * repeatable): what each one is, what its column is called, and why it
 * cannot be measured when it cannot. Pure functions; bench.ts probes the
 * machine and hands the results in.
 *
 * A build that cannot run (no such file, not executable, `--version` fails,
 * or `wg` from wireguard-tools missing) still gets a column, which says
 * "not run" and why: a comparison must never lose a reference silently.
 *
 * @module
 */
import type { PathName } from "./_paths.ts";

/** What bench.ts found out about one `--wireguard-go` argument. */
export interface WireguardGoProbe {
  /** The argument as given: a path (`../shared/bin/wireguard-go-0.0.20250522`) or a name looked up in PATH. */
  readonly path: string;
  /** The executable to start (absolute path, or the name when found in PATH); undefined when not found. */
  readonly command?: string;
  /** Why `command` is undefined (e.g. "no such file"). */
  readonly notFound?: string;
  /** Standard output of `<command> --version`; undefined when it did not run or failed. */
  readonly versionOutput?: string;
  /** Why `--version` failed (exit status or error), when it did. */
  readonly versionError?: string;
  /** Whether `wg` (wireguard-tools, which configures every build) is installed. */
  readonly haveWg: boolean;
}

/** One wireguard-go column of the benchmark. */
export interface WireguardGoBuild {
  /** The argument as given. */
  readonly path: string;
  /** Column label: `wireguard-go 0.0.20250522`, with the path added when two builds share a version. */
  readonly label: string;
  /** The executable to start; undefined when the build cannot run. */
  readonly command?: string;
  /** Version from `--version` without the leading `v` (`0.0.20220316`); undefined when unknown. */
  readonly version?: string;
  /** Why this build cannot be measured; undefined when it can. */
  readonly problem?: string;
}

/**
 * The version in wireguard-go's `--version` output, whose first line is
 * `wireguard-go v0.0.20250522`; undefined when there is none.
 */
export function parseWireguardGoVersion(output: string): string | undefined {
  const first = output.trimStart().split("\n", 1)[0].trim();
  const words = first.split(/\s+/);
  if (words.length < 2 || words[0] !== "wireguard-go") return undefined;
  const version = words[1].startsWith("v") ? words[1].slice(1) : words[1];
  return version === "" ? undefined : version;
}

/**
 * One column per probe, in the order given. Labels carry the version
 * (`wireguard-go 0.0.20250522`); the path is added where the version is
 * unknown or shared by two builds, so every label is unique.
 */
export function describeWireguardGoBuilds(
  probes: readonly WireguardGoProbe[],
): WireguardGoBuild[] {
  const described = probes.map(describeOne);
  // The same version twice: the path tells them apart; the same path
  // twice: a counter does.
  const withPath = relabel(
    described,
    (b) => b.version === undefined ? b.label : `${b.label} (${b.path})`,
  );
  return relabel(withPath, (b, n) => `${b.label} #${n}`);
}

/** Applies `rename` to every build whose label is not unique; `n` counts from 1 per label. */
function relabel(
  builds: readonly WireguardGoBuild[],
  rename: (b: WireguardGoBuild, n: number) => string,
): WireguardGoBuild[] {
  const count = new Map<string, number>();
  for (const b of builds) count.set(b.label, (count.get(b.label) ?? 0) + 1);
  const seen = new Map<string, number>();
  return builds.map((b) => {
    if (count.get(b.label) === 1) return b;
    const n = (seen.get(b.label) ?? 0) + 1;
    seen.set(b.label, n);
    return { ...b, label: rename(b, n) };
  });
}

function describeOne(probe: WireguardGoProbe): WireguardGoBuild {
  const version = probe.versionOutput === undefined
    ? undefined
    : parseWireguardGoVersion(probe.versionOutput);
  const label = version === undefined ? `wireguard-go ${probe.path}` : `wireguard-go ${version}`;
  let problem: string | undefined;
  if (probe.command === undefined) {
    problem = `${probe.path}: ${probe.notFound ?? "not found"}`;
  } else if (probe.versionError !== undefined) {
    problem = `\`${probe.path} --version\` failed: ${probe.versionError}`;
  } else if (version === undefined) {
    const start = (probe.versionOutput ?? "").trim().split("\n", 1)[0].slice(0, 60);
    problem = `\`${probe.path} --version\` does not name a wireguard-go version ` +
      `(it printed ${JSON.stringify(start)})`;
  } else if (!probe.haveWg) {
    problem = "wg not found (apt-get install wireguard-tools)";
  }
  return {
    path: probe.path,
    label,
    ...(problem === undefined ? { command: probe.command } : {}),
    ...(version === undefined ? {} : { version }),
    ...(problem === undefined ? {} : { problem }),
  };
}

/** One column of the benchmark: a path, its label, and for wireguard-go the build it runs. */
export interface PathPlan {
  readonly name: PathName;
  /** Column label: the path's name, or the build's label for wireguard-go. */
  readonly label: string;
  /** Topology id, unique per column (`bench-wg1`, `bench-datagram`). */
  readonly topologyId: string;
  readonly wireguardGo?: WireguardGoBuild;
}

/**
 * The columns to measure, in the order of `paths`: `wireguard-go` becomes
 * one column per build (none when no build was given).
 */
export function planPaths(
  paths: readonly PathName[],
  builds: readonly WireguardGoBuild[],
): PathPlan[] {
  return paths.flatMap((name): PathPlan[] =>
    name === "wireguard-go"
      ? builds.map((b, i) => ({
        name,
        label: b.label,
        topologyId: `bench-wg${i + 1}`,
        wireguardGo: b,
      }))
      : [{ name, label: name, topologyId: `bench-${name}` }]
  );
}
