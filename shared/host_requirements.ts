/**
 * What the relay and the client need from the host before they start, and
 * what to tell the user when something is missing: the TUN device, root or
 * `CAP_NET_ADMIN`, `nft` (and `sysctl` while forwarding is off) for the
 * relay's `--nat` and for the client's `--kill-switch on`, and `CAP_NET_BIND_SERVICE` for a relay port below the
 * unprivileged range. Pure: the caller gathers the facts
 * (`host/host_facts.ts`, and whether commands run) and prints the problems.
 *
 * @module
 */

/** Linux capability number of `CAP_NET_BIND_SERVICE` (linux/capability.h). */
export const CAP_NET_BIND_SERVICE = 10;
/** Linux capability number of `CAP_NET_ADMIN` (linux/capability.h). */
export const CAP_NET_ADMIN = 12;

/** Whether a command could be started: found, not installed, or not allowed by Deno's permissions. */
export type CommandState = "found" | "missing" | "not permitted";

/** What the program is about to do. */
export interface HostNeeds {
  readonly program: "relay" | "client";
  /** The relay's `--nat`. */
  readonly nat?: boolean;
  /** The relay's UDP port. */
  readonly port?: number;
  /** The client's `--kill-switch on` (installed before the first connection, through `nft`). */
  readonly killSwitch?: boolean;
  /** The relay's TCP port (HTTP/2, WebTransport); undefined with `--no-tcp`. */
  readonly tcpPort?: number;
}

/** What was found on the host (see `host/host_facts.ts`). */
export interface HostState {
  /** `"ok"` when `/dev/net/tun` opened read-write, else the errno name. */
  readonly tunDevice: string;
  /** The effective capability set; undefined when unknown (then not checked). */
  readonly effectiveCapabilities: bigint | undefined;
  /** `net.ipv4.ip_unprivileged_port_start`; undefined when unknown (1024 assumed). */
  readonly unprivilegedPortStart: number | undefined;
  /** IPv4 and IPv6 forwarding are on; undefined when unknown. */
  readonly forwarding: boolean | undefined;
  /** States of the commands `--nat` (`nft`, `sysctl`) or the kill switch (`nft`) run, when asked for. */
  readonly commands?: Readonly<Record<string, CommandState>>;
}

/** One thing missing, and how to get it. */
export interface HostProblem {
  /** What is missing and what needs it. */
  readonly problem: string;
  /** The command or step that fixes it. */
  readonly fix: string;
}

/** The task of each program, for the messages. */
const TASK = { relay: "deno task relay", client: "deno task client" } as const;

/** Whether capability number `cap` is in `set`. */
export function hasCapability(set: bigint, cap: number): boolean {
  return ((set >> BigInt(cap)) & 1n) === 1n;
}

/**
 * The problems that would stop the program, in the order it would meet
 * them; empty when it can start. Unknown facts are not held against it.
 */
export function checkHost(needs: HostNeeds, state: HostState): HostProblem[] {
  const problems: HostProblem[] = [];
  const task = needs.nat ? "deno task relay:nat" : TASK[needs.program];
  const caps = state.effectiveCapabilities;
  const netAdmin = caps === undefined || hasCapability(caps, CAP_NET_ADMIN);
  if (!netAdmin) {
    problems.push({
      problem: `the ${needs.program} needs root or CAP_NET_ADMIN to create its TUN device and ` +
        "set its addresses and routes",
      fix: `run it as root (sudo ${task} ...), or with CAP_NET_ADMIN only: the systemd unit in ` +
        "deploy/systemd, or a container with --cap-add NET_ADMIN",
    });
  }
  if (state.tunDevice !== "ok") {
    const absent = state.tunDevice === "ENOENT" || state.tunDevice === "ENODEV" ||
      state.tunDevice === "ENXIO";
    problems.push(
      absent
        ? {
          problem: `there is no TUN device: /dev/net/tun cannot be opened (${state.tunDevice})`,
          fix: "load the driver as root: modprobe tun; in a container, pass the device: " +
            "docker run --device /dev/net/tun (compose: devices: [/dev/net/tun])",
        }
        : {
          problem: `/dev/net/tun cannot be opened (${state.tunDevice})`,
          fix: netAdmin
            ? "check the device's permissions (ls -l /dev/net/tun: crw-rw-rw- root root 10, 200)"
            : `run it as root (sudo ${task} ...)`,
        },
    );
  }
  if (needs.nat) {
    const nft = state.commands?.nft;
    if (nft === "missing") {
      problems.push({
        problem: "--nat needs nft (nftables), which is not installed",
        fix: "apt-get install -y nftables",
      });
    } else if (nft === "not permitted") {
      problems.push({
        problem: "--nat runs nft and sysctl, and this Deno may not run them",
        fix: "use deno task relay:nat, which grants --allow-run=nft,sysctl",
      });
    }
    const sysctl = state.commands?.sysctl;
    if (state.forwarding !== true && sysctl === "missing") {
      problems.push({
        problem: "--nat turns IP forwarding on with sysctl, which is not installed",
        fix: "apt-get install -y procps, or set net.ipv4.ip_forward=1 and " +
          "net.ipv6.conf.all.forwarding=1 before the relay starts (/etc/sysctl.d)",
      });
    }
  }
  if (needs.killSwitch) {
    const nft = state.commands?.nft;
    if (nft === "missing") {
      problems.push({
        problem: "--kill-switch on needs nft (nftables), which is not installed",
        fix: "apt-get install -y nftables, or --kill-switch off",
      });
    } else if (nft === "not permitted") {
      problems.push({
        problem: "--kill-switch on runs nft, and this Deno may not run it",
        fix: "use deno task client, which grants --allow-run=nft,resolvectl",
      });
    }
  }
  const firstFree = state.unprivilegedPortStart ?? 1024;
  const mayBind = caps === undefined || hasCapability(caps, CAP_NET_BIND_SERVICE);
  const ports = [
    { proto: "UDP", port: needs.port, flag: "--port" },
    { proto: "TCP", port: needs.tcpPort, flag: "--tcp-port" },
  ];
  for (const { proto, port, flag } of ports) {
    if (port === undefined || port === 0 || port >= firstFree || mayBind) continue;
    problems.push({
      problem: `${proto} port ${port} is below ${firstFree}: binding it needs root or ` +
        "CAP_NET_BIND_SERVICE",
      fix: "run it as root, or grant CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=" +
        "CAP_NET_ADMIN CAP_NET_BIND_SERVICE), or lower net.ipv4.ip_unprivileged_port_start, " +
        `or choose ${flag} ${firstFree} or above` + (proto === "TCP" ? " (or --no-tcp)" : ""),
    });
  }
  return problems;
}

/** The lines printed for `problems`: a heading, then each problem and its fix. */
export function formatHostProblems(
  program: HostNeeds["program"],
  problems: readonly HostProblem[],
): string[] {
  return [
    `error: the ${program} cannot start on this host:`,
    ...problems.flatMap((p) => [`  - ${p.problem}`, `    fix: ${p.fix}`]),
  ];
}
