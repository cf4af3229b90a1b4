/**
 * The system packages the demo, the test suite and the benchmark need, why,
 * and the plan that `tests/setup.ts` follows to get them: install the
 * missing ones with apt as root on Debian or Ubuntu, or stop with the exact
 * command to run. Pure: the caller gathers the facts (os-release, uid, which
 * commands are found) and carries the plan out.
 *
 * @module
 */

/** What a package is needed for: `deno task demo`, `deno task test`, `deno task bench`. */
export type Purpose = "demo" | "test" | "bench";

/** One Debian/Ubuntu package. */
export interface SystemPackage {
  /** Package name in Debian 12 and Ubuntu 22.04 or later. */
  readonly name: string;
  /** Commands that show it is installed (all of them on the PATH or in an sbin directory). */
  readonly commands: readonly string[];
  /** Why the project needs it, shown before it is installed. */
  readonly why: string;
  /** Which tasks need it. */
  readonly purposes: readonly Purpose[];
}

/** Every package, in install order; `.ci/run` installs none of them itself (the test task does). */
export const SYSTEM_PACKAGES: readonly SystemPackage[] = [
  {
    name: "iproute2",
    commands: ["ip"],
    why: "network namespaces, veth links, addresses and routes (demo, e2e, interop, root tests)",
    purposes: ["demo", "test", "bench"],
  },
  {
    name: "nftables",
    commands: ["nft"],
    why: "the relay's NAT (--nat) and host firewall, the client's kill switch, and their tests",
    purposes: ["demo", "test", "bench"],
  },
  {
    name: "iputils-ping",
    commands: ["ping"],
    why: "ping through the tunnel (demo, e2e and interop tests)",
    purposes: ["demo", "test", "bench"],
  },
  {
    name: "procps",
    commands: ["sysctl"],
    why: "IP forwarding in the relay's namespace",
    purposes: ["demo", "test", "bench"],
  },
  {
    name: "util-linux",
    commands: ["unshare", "setpriv"],
    why: "tests run commands in namespaces of their own (`unshare`) and as nobody (`setpriv`)",
    purposes: ["test"],
  },
  {
    name: "mount",
    commands: ["mount"],
    why: "the DNS test bind-mounts a resolv.conf",
    purposes: ["test"],
  },
  {
    name: "git",
    commands: ["git"],
    why: "the architecture test lists the tracked files with `git ls-files`",
    purposes: ["test"],
  },
  {
    name: "openssl",
    commands: ["openssl"],
    why: "reads and verifies the development certificates, independently of our code",
    purposes: ["test"],
  },
  {
    name: "ngtcp2-client",
    commands: ["gtlsclient"],
    why: "an independent HTTP/3 client for the interop tests",
    purposes: ["test"],
  },
  {
    name: "ngtcp2-server",
    commands: ["gtlsserver"],
    why: "an independent HTTP/3 server for the interop tests",
    purposes: ["test"],
  },
  {
    name: "ethtool",
    commands: ["ethtool"],
    why: "the connect-ip-go interop test turns TX checksum offload off on a link",
    purposes: ["test"],
  },
  {
    name: "tcpdump",
    commands: ["tcpdump"],
    why: "connect-ip-go's integration client records its TUN with it",
    purposes: ["test"],
  },
  {
    name: "systemd",
    commands: ["systemd-analyze"],
    why: "`systemd-analyze verify` checks the units in deploy/systemd",
    purposes: ["test"],
  },
  {
    name: "docker.io",
    commands: ["docker", "dockerd"],
    why: "the container e2e test builds the images and runs compose.yaml on its own engine",
    purposes: ["test"],
  },
  {
    name: "docker-compose",
    commands: ["docker-compose"],
    why: "the container e2e test and the compose file check",
    purposes: ["test"],
  },
  {
    name: "debootstrap",
    commands: ["debootstrap"],
    why: "the container e2e test builds the Debian base image without Docker Hub",
    purposes: ["test"],
  },
  {
    name: "npm",
    commands: ["npm"],
    why: "the container e2e test packs the Deno binary for the images (`npm pack`)",
    purposes: ["test"],
  },
  {
    name: "prometheus",
    commands: ["promtool"],
    why:
      "`promtool check metrics` checks the admin endpoint's /metrics (tests/integration/admin_test.ts)",
    purposes: ["test"],
  },
  {
    name: "iperf3",
    commands: ["iperf3"],
    why: "the benchmark's TCP and UDP throughput, and the e2e test of a user's rate limit",
    purposes: ["test", "bench"],
  },
  {
    name: "wireguard-tools",
    commands: ["wg"],
    why: "the benchmark configures wireguard-go with `wg`",
    purposes: ["bench"],
  },
  {
    name: "wireguard-go",
    commands: ["wireguard-go"],
    why: "the benchmark's WireGuard baseline",
    purposes: ["bench"],
  },
];

/** Directories searched for commands besides the PATH (root's tools live in sbin). */
export const COMMAND_DIRS: readonly string[] = [
  "/usr/local/sbin",
  "/usr/local/bin",
  "/usr/sbin",
  "/usr/bin",
  "/sbin",
  "/bin",
];

/** The packages `purpose` needs, in install order. */
export function packagesFor(purpose: Purpose): SystemPackage[] {
  return SYSTEM_PACKAGES.filter((pkg) => pkg.purposes.includes(purpose));
}

/** The package that provides `command`; throws for a command no package in the table provides. */
export function packageOf(command: string): SystemPackage {
  const pkg = SYSTEM_PACKAGES.find((p) => p.commands.includes(command));
  if (pkg === undefined) throw new Error(`No system package in the table provides ${command}`);
  return pkg;
}

/** `apt-get install -y --no-install-recommends NAMES`, the command that installs `names`. */
export function aptInstallCommand(names: readonly string[]): string {
  return `apt-get install -y --no-install-recommends ${names.join(" ")}`;
}

/** The fields of /etc/os-release this module uses. */
export interface OsRelease {
  /** `ID`, such as `debian` or `ubuntu`. */
  readonly id: string;
  /** `ID_LIKE`, split on spaces. */
  readonly idLike: readonly string[];
  /** `PRETTY_NAME`, or the id when there is none. */
  readonly prettyName: string;
}

/**
 * Parses os-release(5) text: `KEY=value` lines, values optionally in single
 * or double quotes; comments and other lines are ignored.
 */
export function parseOsRelease(text: string): OsRelease {
  const fields = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    let value = line.slice(eq + 1);
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.length >= 2 && value.endsWith(quote)) {
      value = value.slice(1, -1).replaceAll(`\\${quote}`, quote).replaceAll("\\\\", "\\");
    }
    fields.set(line.slice(0, eq), value);
  }
  const id = (fields.get("ID") ?? "").toLowerCase();
  const idLike = (fields.get("ID_LIKE") ?? "").toLowerCase().split(" ").filter((w) => w !== "");
  return { id, idLike, prettyName: fields.get("PRETTY_NAME") || id || "unknown" };
}

/** True for Debian, Ubuntu and distributions that say they are like them (`ID_LIKE`). */
export function usesApt(os: OsRelease): boolean {
  return [os.id, ...os.idLike].some((id) => id === "debian" || id === "ubuntu");
}

/** What the setup found on this machine. */
export interface SetupFacts {
  /** The parsed /etc/os-release, or undefined when it cannot be read. */
  readonly os: OsRelease | undefined;
  /** Effective uid 0. */
  readonly root: boolean;
  /** Whether `apt-get` was found. */
  readonly haveApt: boolean;
  /** Commands that were not found. */
  readonly missingCommands: ReadonlySet<string>;
}

/** What the setup does next. */
export type SetupPlan =
  | { readonly kind: "ready" }
  | {
    readonly kind: "install";
    /** The packages to install, with why each is needed. */
    readonly packages: readonly SystemPackage[];
    /** `apt-get install ...`, run after `apt-get update`. */
    readonly command: string;
  }
  | {
    readonly kind: "stop";
    readonly packages: readonly SystemPackage[];
    /** Why the setup cannot install them itself. */
    readonly problem: string;
    /** The exact command (or step) the user should run. */
    readonly command: string;
  };

/** The packages of `purpose` with a command in `missing`. */
export function missingPackages(
  purpose: Purpose,
  missing: ReadonlySet<string>,
): SystemPackage[] {
  return packagesFor(purpose).filter((pkg) => pkg.commands.some((c) => missing.has(c)));
}

/**
 * Decides what to do about `purpose`'s packages: nothing when none is
 * missing; install them with apt as root on Debian or Ubuntu; otherwise
 * stop, naming the command to run (with `sudo` when not root) or, on
 * another distribution, the packages by their Debian names.
 */
export function planSetup(purpose: Purpose, facts: SetupFacts): SetupPlan {
  const packages = missingPackages(purpose, facts.missingCommands);
  if (packages.length === 0) return { kind: "ready" };
  const install = aptInstallCommand(packages.map((pkg) => pkg.name));
  if (facts.os === undefined || !usesApt(facts.os) || !facts.haveApt) {
    const name = facts.os?.prettyName ?? "this system (no /etc/os-release)";
    return {
      kind: "stop",
      packages,
      problem: `${name} is not Debian or Ubuntu${
        facts.os && usesApt(facts.os) ? " (apt-get not found)" : ""
      }, so the setup cannot install packages itself`,
      command: `install with your package manager what provides ${
        packages.flatMap((pkg) => pkg.commands).join(", ")
      } (Debian: ${install})`,
    };
  }
  if (!facts.root) {
    return {
      kind: "stop",
      packages,
      problem: "installing packages needs root",
      command: `sudo apt-get update && sudo ${install}`,
    };
  }
  return { kind: "install", packages, command: install };
}
