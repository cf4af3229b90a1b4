/**
 * Starts the relay and clients as real processes inside a
 * {@linkcode Topology}, the way the README runs them, for e2e tests, the
 * demo and the benchmark.
 *
 * @module
 */
import type { SnapshotValue } from "../../shared/counters.ts";
import { writeUsersFile } from "../../relay/users.ts";
import type { NamespaceRole, Process, Topology } from "./netns.ts";
import { makeUsers } from "./users.ts";
import type { TestUserSpec } from "./users.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

/**
 * V8 flags for both processes: the ones the `deno task relay` and `client`
 * tasks give (deno.json: a 4 MiB young generation, so that a datagram's
 * garbage is collected before it piles up), plus `MASQUE_V8_FLAGS` for
 * profiling (`MASQUE_V8_FLAGS=--perf-basic-prof`).
 */
const V8_FLAGS = ["--max-semi-space-size=4", Deno.env.get("MASQUE_V8_FLAGS")]
  .filter((flag) => flag).join(",");

/** Tunnel pools used by tests: inside 198.18.0.0/15 and fd00::/8. */
/** The e2e tests' helper programs (echo servers, TCP sink). */
const E2E_TOOLS = new URL("../e2e/tools/", import.meta.url).pathname;

export const TEST_POOL4 = "198.18.100.0/24";
export const TEST_POOL6 = "fd00:100::/64";

/** A started relay. */
export interface RelayProcess {
  readonly process: Process;
  readonly certDir: string;
  readonly statusFile: string;
  /** The users file (absent with `noAuth`). */
  readonly usersFile?: string;
  /** Each user's token, by name. */
  readonly tokens: Readonly<Record<string, string>>;
  /** Reads the relay's JSON status file (written every 2 s). */
  status(): Promise<RelayStatus>;
}

/** The counters in a status file: a `CounterRegistry` snapshot (shared/counters.ts). */
export type StatusCounters = Record<string, SnapshotValue>;

/** What the relay writes to its status file (`Relay.status()`). */
export interface RelayStatus {
  sessions: { id: number; addresses: string[]; mode: string }[];
  counters: StatusCounters;
}

/** What the client writes to its status file (`Client.status()`). */
export interface ClientStatus {
  tun: string;
  mtu: number;
  mode: string;
  /** The largest IP packet the session carries now, bytes. */
  maxPacketSize: number;
  counters: StatusCounters;
}

/**
 * One counter of a status file, summed over the labels not given; 0 when
 * the status has no such counter yet:
 * `counter(status, "tunnel_packets_dropped_total", "inbound", "relay host")`.
 */
export function counter(
  status: { counters?: StatusCounters } | undefined,
  name: string,
  ...labels: string[]
): number {
  let node: SnapshotValue | undefined = status?.counters?.[name];
  for (const label of labels) node = typeof node === "object" ? node[label] : undefined;
  return node === undefined ? 0 : sum(node);
}

function sum(value: SnapshotValue): number {
  return typeof value === "number"
    ? value
    : Object.values(value).reduce<number>((total, child) => total + sum(child), 0);
}

/** The non-zero drop reasons of one direction in a status file, e.g. `{ "relay host": 3 }`. */
export function dropReasons(
  status: { counters?: StatusCounters },
  direction: "outbound" | "inbound",
): Record<string, number> {
  const node = (status.counters?.tunnel_packets_dropped_total as Record<string, SnapshotValue>)
    ?.[direction];
  const out: Record<string, number> = {};
  if (typeof node !== "object") return out;
  for (const [reason, value] of Object.entries(node)) {
    if (sum(value) !== 0) out[reason] = sum(value);
  }
  return out;
}

/** The user every client of {@linkcode startClient} logs in as unless told otherwise. */
export const TEST_USER = "tester";

/**
 * Starts the relay in the relay namespace with a status file and, unless
 * `options.nat` is false, NAT; waits until it listens. It has a users file
 * with `options.users` (default one user, {@linkcode TEST_USER}), unless
 * `options.noAuth`.
 */
export async function startRelay(
  topo: Topology,
  extraArgs: string[] = [],
  options: {
    nat?: boolean;
    users?: readonly TestUserSpec[];
    noAuth?: boolean;
    /** The process's name, for its log file (default "relay"; a restarted relay takes another). */
    name?: string;
    /** A relay started before (a restart): its users file and tokens are used again. */
    usersOf?: RelayProcess;
  } = {},
): Promise<RelayProcess> {
  const certDir = `${topo.logDir}/certs`;
  const statusFile = `${topo.logDir}/relay-status.json`;
  let usersFile: string | undefined;
  let tokens: Record<string, string> = {};
  if (options.usersOf !== undefined) {
    usersFile = options.usersOf.usersFile;
    tokens = options.usersOf.tokens;
  } else if (!options.noAuth) {
    const made = await makeUsers(
      options.users ?? [{ name: TEST_USER, policy: { maxSessions: 64 } }],
    );
    tokens = made.tokens;
    usersFile = `${topo.logDir}/users.json`;
    await writeUsersFile(usersFile, made.entries);
  }
  const process = topo.spawn("relay", [
    Deno.execPath(),
    "run",
    "--unstable-net",
    "--allow-net",
    "--allow-ffi",
    "--allow-read",
    `--allow-write=${topo.logDir}`,
    "--allow-run=nft,sysctl",
    "--allow-env=MASQUE_LOG_LEVEL",
    ...(V8_FLAGS ? [`--v8-flags=${V8_FLAGS}`] : []),
    `${ROOT}relay/main.ts`,
    "--dev-certs",
    certDir,
    "--dev-cert-name",
    topo.relayUnderlay4,
    "--pool4",
    TEST_POOL4,
    "--pool6",
    TEST_POOL6,
    ...(options.nat === false ? [] : ["--nat"]),
    "--status-file",
    statusFile,
    ...(usersFile ? ["--users", usersFile] : ["--no-auth"]),
    ...extraArgs,
  ], { name: options.name ?? "relay" });
  await process.waitForLog(/listening/, 20_000);
  return {
    process,
    certDir,
    statusFile,
    usersFile,
    tokens,
    status: async () => JSON.parse(await Deno.readTextFile(statusFile)) as RelayStatus,
  };
}

/** A started client. */
export interface ClientProcess {
  readonly process: Process;
  readonly tun: string;
  /** Addresses the relay assigned, e.g. ["198.18.100.2/32", "fd00:100::2/128"]. */
  readonly addresses: string[];
  /** MTU the client gave its TUN (from its "tunnel up" line). */
  readonly mtu: number;
  /** The client's status file as last written (every 2 s). */
  status(): Promise<ClientStatus>;
}

/** Starts a client in the client namespace; waits until its tunnel is up. */
export async function startClient(
  topo: Topology,
  relay: RelayProcess,
  options: {
    name?: string;
    tun?: string;
    mode?: "datagram" | "stream";
    /** TARGET_CIDRS for this client (default: the target's two networks). */
    targets?: string;
    extraArgs?: string[];
    /** The namespace to run in (default "client"). */
    ns?: NamespaceRole;
    /** The relay address to connect to (default the relay's address on the client link). */
    relayHost?: string;
    /** More `deno run` permissions (`--allow-run=nft`). */
    permissions?: string[];
    /** More paths for `--allow-write` (the resolver's, a state directory). */
    write?: string[];
    /** Log in as this user of the relay (default {@linkcode TEST_USER}, if the relay has users). */
    user?: string;
  } = {},
): Promise<ClientProcess> {
  const tun = options.tun ?? "mvpn0";
  const statusFile = `${topo.logDir}/${options.name ?? "client"}-status.json`;
  const token = relay.tokens[options.user ?? TEST_USER];
  const tokenFile = `${topo.logDir}/${options.name ?? "client"}.token`;
  if (token !== undefined) await Deno.writeTextFile(tokenFile, `${token}\n`, { mode: 0o600 });
  const process = topo.spawn(options.ns ?? "client", [
    Deno.execPath(),
    "run",
    "--unstable-net",
    "--allow-net",
    "--allow-ffi",
    "--allow-read",
    "--allow-env=TARGET_CIDRS,MASQUE_LOG_LEVEL,MASQUE_TOKEN",
    `--allow-write=${[statusFile, ...(options.write ?? [])].join(",")}`,
    ...(options.permissions ?? []),
    ...(V8_FLAGS ? [`--v8-flags=${V8_FLAGS}`] : []),
    `${ROOT}client/main.ts`,
    "--status-file",
    statusFile,
    "--relay",
    `https://${options.relayHost ?? topo.relayUnderlay4}:4433`,
    "--ca",
    `${relay.certDir}/ca.pem`,
    "--tun",
    tun,
    "--mode",
    options.mode ?? "datagram",
    ...(token !== undefined ? ["--token-file", tokenFile] : []),
    ...(options.extraArgs ?? []),
  ], {
    name: options.name ?? "client",
    // The prototype's variable: which networks go through the tunnel.
    env: { TARGET_CIDRS: options.targets ?? "198.18.1.0/24,fd00:0:0:2::/64" },
  });
  const assigned = await process.waitForLog(/assigned .*addresses=/, 20_000);
  const up = await process.waitForLog(/tunnel up/, 20_000);
  const addresses = assigned.match(/addresses=(\S+)/)![1].split(",");
  return {
    process,
    tun,
    addresses,
    mtu: Number(up.match(/mtu=(\d+)/)?.[1] ?? NaN),
    status: async () => JSON.parse(await Deno.readTextFile(statusFile)) as ClientStatus,
  };
}

/** UDP echo on port 7 and the SHA-256 TCP sink on port 5201 in the target namespace. */
export async function startTargetServers(topo: Topology): Promise<void> {
  const deno = Deno.execPath();
  const udp = topo.spawn("target", [
    deno,
    "run",
    "--allow-net",
    `${E2E_TOOLS}udp_echo.ts`,
    "--port",
    "7",
  ], {
    name: "udp_echo",
  });
  const tcp = topo.spawn(
    "target",
    [deno, "run", "--allow-net", `${E2E_TOOLS}tcp_blast.ts`, "server", "--port", "5201"],
    { name: "tcp_blast" },
  );
  await udp.waitForLog(/"ready":true/, 15_000);
  await tcp.waitForLog(/"ready":true/, 15_000);
}
