/**
 * The network paths the benchmark compares, each set up in its own fresh
 * {@linkcode Topology} so that no route or rule of one leaks into another:
 *
 * - `direct`: no VPN; the client namespace routes the target network via
 *   the relay namespace's underlay address, which forwards in the kernel,
 *   and the target routes the client link back (no NAT).
 * - `datagram` / `stream`: the project's relay (with NAT) and client as
 *   real processes, packets in HTTP Datagrams or in DATAGRAM capsules.
 * - `h2` / `webtransport`: the same over TLS and TCP: CONNECT-IP over
 *   HTTP/2 (DATAGRAM capsules on the stream), and the WebTransport
 *   transport (length-prefixed packets on a WebTransport stream over
 *   HTTP/2). TCP inside TCP: see docs/performance.md.
 * - `wireguard-go`: one wireguard-go per side (client and relay namespace),
 *   MTU 1420, endpoint over the client <-> relay underlay, NAT on the relay
 *   as for the project's relay. One such path per `--wireguard-go` build
 *   ({@linkcode WireguardGoBuild}), each its own column.
 *
 * @module
 */
import type { Process, Topology } from "../support/netns.ts";
import { counter, startClient, startRelay } from "../support/vpn.ts";
import type { WireguardGoBuild } from "./_wireguard_go.ts";

/** The paths, in the order they are measured. */
export const PATH_NAMES = [
  "direct",
  "wireguard-go",
  "datagram",
  "stream",
  "h2",
  "webtransport",
] as const;

/** One of {@linkcode PATH_NAMES}. */
export type PathName = typeof PATH_NAMES[number];

/** The paths that run the project's relay and client (measured `--repeats` times). */
export const TUNNEL_PATHS: readonly PathName[] = ["datagram", "stream", "h2", "webtransport"];

/** Whether `name` runs the project's relay and client. */
export function isTunnelPath(name: PathName): boolean {
  return TUNNEL_PATHS.includes(name);
}

/** A process whose CPU time and peak memory the benchmark reports. */
export interface MeasuredProcess {
  readonly role: "client" | "relay";
  readonly pid: number;
  readonly process: Process;
}

/** A path ready to carry traffic from the client namespace to the target. */
export interface PathSetup {
  readonly name: PathName;
  /** The processes doing the forwarding in user space (none for `direct`). */
  readonly processes: readonly MeasuredProcess[];
  /** MTU of the interface the client's traffic leaves by, bytes. */
  readonly mtu: number;
  /** The interface in the client namespace that the client's traffic leaves by. */
  readonly clientInterface: string;
  /** The relay's tunnel interface, where the client's traffic enters the relay's kernel. */
  readonly relayInterface?: string;
  /** Drop counters of the project's client and relay (tunnel paths only). */
  readonly processDrops?: () => Promise<ProcessDrops>;
  /**
   * Tunnel paths: starts one more client (in the client namespace, on TUN
   * `tun`) that routes `target` (a prefix of the target's address that no
   * other client routes) through the tunnel.
   */
  readonly addClient?: (name: string, tun: string, target: string) => Promise<MeasuredProcess>;
}

/** How the project's client and relay are started. */
export interface TunnelOptions {
  /** `--tun-offload` for both. */
  readonly tunOffload: "on" | "off";
}

/** Packets the project's processes dropped, by place, since they started. */
export interface ProcessDrops {
  /** Client: a full send queue (datagrams waiting on QUIC, or stream writes). */
  readonly clientQueueFull: number;
  /** Relay: TUN writes refused (writer ring full, or the kernel). */
  readonly relayTunWrite: number;
  /** Relay: packets from clients dropped by the RFC 9484 §7 checks. */
  readonly relayPolicy: number;
  /** Client: packets it handed to the session (sent or dropped at a full queue). */
  readonly clientPacketsOut: number;
  /** Relay: packets that arrived from clients (forwarded or dropped by policy). */
  readonly relayPacketsIn: number;
}

/** The network behind the relay that every path routes (the target's link). */
export const TARGET_NET4 = "198.18.1.0/24";

/** The client's underlay network, routed back by the target on the direct path. */
const CLIENT_LINK_NET4 = "198.18.0.0/30";
/** WireGuard's tunnel addresses (inside 198.18.0.0/15, away from the project's pools). */
const WG_NET4 = "198.18.200.0/24";
const WG_RELAY4 = "198.18.200.1";
const WG_CLIENT4 = "198.18.200.2";
const WG_PORT = 51820;
const WG_MTU = 1420;
/** Interface names; wireguard-go's control socket is /var/run/wireguard/<name>.sock, shared by all namespaces. */
const WG_CLIENT_IF = "mvpnbench-wgc";
const WG_RELAY_IF = "mvpnbench-wgr";
const WG_NAT_TABLE = "mvpnbench_wg";
const WG_READY_TIMEOUT_MS = 5_000;

/**
 * Sets up `name` in `topo` (a fresh topology used for this path only);
 * `wireguardGo` is the build to run for the `wireguard-go` path.
 */
export function setupPath(
  topo: Topology,
  name: PathName,
  wireguardGo?: WireguardGoBuild,
  tunnel: TunnelOptions = { tunOffload: "on" },
): Promise<PathSetup> {
  switch (name) {
    case "direct":
      return setupDirect(topo);
    case "wireguard-go":
      if (wireguardGo?.command === undefined) {
        throw new Error(`wireguard-go: ${wireguardGo?.problem ?? "no build given"}`);
      }
      return setupWireguard(topo, wireguardGo.command);
    case "datagram":
    case "stream":
    case "h2":
    case "webtransport":
      return setupTunnel(topo, name, tunnel);
  }
}

async function setupDirect(topo: Topology): Promise<PathSetup> {
  await topo.run("client", ["ip", "route", "add", TARGET_NET4, "via", topo.relayUnderlay4]);
  await topo.run("target", ["ip", "route", "add", CLIENT_LINK_NET4, "via", "198.18.1.1"]);
  return { name: "direct", processes: [], mtu: 1500, clientInterface: topo.interfaces.client };
}

async function setupTunnel(
  topo: Topology,
  name: "datagram" | "stream" | "h2" | "webtransport",
  tunnel: TunnelOptions,
): Promise<PathSetup> {
  const overTcp = name === "h2" || name === "webtransport";
  const mode = name === "datagram" ? "datagram" : "stream";
  const args = [
    ...["--tun-offload", tunnel.tunOffload],
    ...["--transport", overTcp ? name : "h3"],
  ];
  const relay = await startRelay(topo, ["--tun-offload", tunnel.tunOffload]);
  const client = await startClient(topo, relay, { mode, targets: TARGET_NET4, extraArgs: args });
  return {
    name,
    processes: [
      { role: "client", pid: client.process.pid, process: client.process },
      { role: "relay", pid: relay.process.pid, process: relay.process },
    ],
    mtu: client.mtu,
    clientInterface: client.tun,
    relayInterface: "mvpn-relay",
    processDrops: async () => {
      const [c, r] = await Promise.all([client.status(), relay.status()]);
      const tunWrite = counter(r, "tunnel_packets_dropped_total", "inbound", "tun write failed");
      // Every other inbound drop is the relay's policy (RFC 9484 §7, host firewall).
      const policy = counter(r, "tunnel_packets_dropped_total", "inbound") - tunWrite;
      return {
        clientQueueFull: counter(c, "h3_datagrams_dropped_total", "queue full") +
          counter(c, "session_packets_dropped_total", "queue full"),
        relayTunWrite: tunWrite,
        relayPolicy: policy,
        clientPacketsOut: counter(c, "tunnel_packets_total", "outbound"),
        relayPacketsIn: counter(r, "tunnel_packets_total", "inbound") + tunWrite + policy,
      };
    },
    addClient: async (name, tun, target) => {
      const more = await startClient(topo, relay, {
        mode,
        name,
        tun,
        targets: target,
        extraArgs: args,
      });
      return { role: "client", pid: more.process.pid, process: more.process };
    },
  };
}

async function wgKeyPair(topo: Topology, file: string): Promise<string> {
  const { stdout: privateKey } = await topo.run("client", ["wg", "genkey"]);
  await Deno.writeTextFile(file, privateKey, { mode: 0o600 });
  const { stdout: publicKey } = await topo.run("client", ["wg", "pubkey"], {
    stdin: new TextEncoder().encode(privateKey),
  });
  return publicKey.trim();
}

async function startWireguardGo(
  topo: Topology,
  command: string,
  ns: "client" | "relay",
  ifname: string,
): Promise<Process> {
  const process = topo.spawn(ns, [command, "-f", ifname], {
    name: `${ns}-wireguard-go`,
    env: { WG_PROCESS_FOREGROUND: "1", LOG_LEVEL: "error" },
  });
  const deadline = Date.now() + WG_READY_TIMEOUT_MS;
  for (;;) {
    const { code } = await topo.run(ns, ["wg", "show", ifname], { check: false });
    if (code === 0) return process;
    if (Date.now() > deadline) {
      throw new Error(`wireguard-go did not create ${ifname} in ${WG_READY_TIMEOUT_MS} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function setupWireguard(topo: Topology, command: string): Promise<PathSetup> {
  const clientKey = `${topo.logDir}/wg-client.key`;
  const relayKey = `${topo.logDir}/wg-relay.key`;
  const clientPublic = await wgKeyPair(topo, clientKey);
  const relayPublic = await wgKeyPair(topo, relayKey);
  const relayProcess = await startWireguardGo(topo, command, "relay", WG_RELAY_IF);
  const clientProcess = await startWireguardGo(topo, command, "client", WG_CLIENT_IF);

  await topo.run("relay", [
    ...["wg", "set", WG_RELAY_IF, "private-key", relayKey, "listen-port", String(WG_PORT)],
    ...["peer", clientPublic, "allowed-ips", `${WG_CLIENT4}/32`],
  ]);
  await topo.run("relay", ["ip", "address", "add", `${WG_RELAY4}/24`, "dev", WG_RELAY_IF]);
  await topo.run("relay", ["ip", "link", "set", WG_RELAY_IF, "mtu", String(WG_MTU), "up"]);
  // Masquerade toward the target, as the project's relay does with --nat.
  const ruleset = [
    `table inet ${WG_NAT_TABLE} {`,
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    `    ip saddr ${WG_NET4} oifname "${topo.interfaces.relayToTarget}" masquerade`,
    "  }",
    "}",
    "",
  ].join("\n");
  await topo.run("relay", ["nft", "-f", "-"], { stdin: new TextEncoder().encode(ruleset) });

  await topo.run("client", [
    ...["wg", "set", WG_CLIENT_IF, "private-key", clientKey],
    ...["peer", relayPublic, "endpoint", `${topo.relayUnderlay4}:${WG_PORT}`],
    ...["allowed-ips", TARGET_NET4],
  ]);
  await topo.run("client", ["ip", "address", "add", `${WG_CLIENT4}/24`, "dev", WG_CLIENT_IF]);
  await topo.run("client", ["ip", "link", "set", WG_CLIENT_IF, "mtu", String(WG_MTU), "up"]);
  await topo.run("client", ["ip", "route", "add", TARGET_NET4, "dev", WG_CLIENT_IF]);
  return {
    name: "wireguard-go",
    processes: [
      { role: "client", pid: clientProcess.pid, process: clientProcess },
      { role: "relay", pid: relayProcess.pid, process: relayProcess },
    ],
    mtu: WG_MTU,
    clientInterface: WG_CLIENT_IF,
    relayInterface: WG_RELAY_IF,
  };
}
