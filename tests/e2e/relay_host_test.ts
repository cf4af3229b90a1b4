/**
 * End to end: the firewall around the relay host (issue 7, point 6). The
 * relay and two clients run as real processes in network namespaces; client
 * A probes, with UDP, TCP and ping, every address of the relay host (its TUN
 * addresses, the pool's network, first host and broadcast addresses, its
 * addresses on both links, and an address added after it started) and the
 * other client's addresses, while a service listens on the relay host on
 * every address. Client B runs in the target namespace, where the relay is
 * 198.18.1.1. Needs root; skipped with a message otherwise.
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { needsNamespaces, withTopology } from "../support/netns.ts";
import type { FailureLogs, NamespaceRole, Process, Topology } from "../support/netns.ts";
import { counter, startClient, startRelay } from "../support/vpn.ts";
import type { RelayProcess, RelayStatus } from "../support/vpn.ts";

const TOOLS = new URL("./tools/", import.meta.url).pathname;
const opts = { ...await needsNamespaces(), sanitizeOps: false, sanitizeResources: false };

/** The relay's address on the target link, where client B connects. */
const RELAY_ON_TARGET_LINK4 = "198.18.1.1";
const RELAY_ON_TARGET_LINK6 = "fd00:0:0:2::1";
/** An address the relay host gets after the relay started, and the network A routes it in. */
const LATE_ADDRESS = "198.18.2.1";
const LATE_NETWORK = "198.18.2.0/24";
/** The service port on the relay host. */
const SERVICE_PORT = 53;

/** The logs printed when a test fails. */
const FAILURE_LOGS: FailureLogs = {
  names: ["relay", "client", "client2", "host_listener"],
  lines: 25,
};

/** Starts the UDP+TCP listener on every address of the relay host. */
async function startHostListener(topo: Topology): Promise<Process> {
  const listener = topo.spawn("relay", [
    Deno.execPath(),
    "run",
    "--allow-net",
    `${TOOLS}host_listener.ts`,
    "--port",
    String(SERVICE_PORT),
  ], { name: "host_listener" });
  await listener.waitForLog(/"ready":true/, 15_000);
  return listener;
}

/** What the listener on the relay host saw: one entry per datagram or connection. */
async function listenerEvents(listener: Process): Promise<{ event: string; from: string }[]> {
  const text = await Deno.readTextFile(listener.logFile);
  return text.split("\n").filter((line) => line.startsWith('{"event"')).map((l) => JSON.parse(l));
}

interface Probe {
  proto: "udp" | "tcp";
  host: string;
  port: number;
  from?: string;
}

/** Runs all probes at once from `ns`; returns "host proto -> answer" lines. */
async function probe(topo: Topology, ns: NamespaceRole, probes: Probe[]): Promise<string[]> {
  const result = await topo.run(ns, [
    Deno.execPath(),
    "run",
    "--allow-net",
    `${TOOLS}probe.ts`,
    "--timeout-ms",
    "1500",
    JSON.stringify(probes),
  ]);
  const answers: (Probe & { answer: string })[] = JSON.parse(result.stdout.trim());
  return answers.map((a) => `${a.proto} ${a.host}:${a.port} -> ${a.answer}`);
}

async function ping(topo: Topology, ns: NamespaceRole, host: string, extra: string[] = []) {
  return await topo.run(ns, ["ping", "-c", "2", "-i", "0.2", "-W", "1", ...extra, host], {
    check: false,
  });
}

/** The relay's TUN addresses as the kernel has them, IPv4 then IPv6 (global scope). */
async function relayTunAddresses(topo: Topology): Promise<{ v4: string; v6: string }> {
  const show = async (family: string) => {
    const out = await topo.run("relay", ["ip", "-j", family, "addr", "show", "dev", "mvpn-relay"]);
    const [link] = JSON.parse(out.stdout) as { addr_info: { local: string; scope: string }[] }[];
    return link.addr_info.find((a) => a.scope === "global")!.local;
  };
  return { v4: await show("-4"), v6: await show("-6") };
}

/** Polls the relay's status file until `check` holds. */
async function waitForStatus(
  relay: RelayProcess,
  check: (s: RelayStatus) => boolean,
  what: string,
): Promise<RelayStatus> {
  const deadline = Date.now() + 10_000;
  let last: RelayStatus | undefined;
  for (;;) {
    last = await relay.status().catch(() => undefined);
    if (last && check(last)) return last;
    if (Date.now() > deadline) throw new Error(`${what} never came; last: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const hostOf = (address: string) => address.split("/")[0];

Deno.test({
  name:
    "e2e firewall: UDP, TCP and ping from a client to the relay host and another client go unanswered; the target still answers (relay without --nat)",
  ...opts,
  async fn() {
    await withTopology("fw-host", FAILURE_LOGS, async (topo) => {
      const echo = topo.spawn("target", [
        Deno.execPath(),
        "run",
        "--allow-net",
        `${TOOLS}udp_echo.ts`,
        "--port",
        "7",
      ], { name: "udp_echo" });
      await echo.waitForLog(/"ready":true/, 15_000);
      const listener = await startHostListener(topo);
      // No NAT: the target routes the pools back through the relay.
      await topo.run("target", ["ip", "route", "add", "198.18.100.0/24", "via", "198.18.1.1"]);
      await topo.run("target", [
        "ip",
        "-6",
        "route",
        "add",
        "fd00:100::/64",
        "via",
        "fd00:0:0:2::1",
      ]);
      const relay = await startRelay(topo, ["--dev-cert-name", RELAY_ON_TARGET_LINK4], {
        nat: false,
      });
      const a = await startClient(topo, relay);
      const b = await startClient(topo, relay, {
        name: "client2",
        ns: "target",
        tun: "mvpn1",
        relayHost: RELAY_ON_TARGET_LINK4,
        targets: "198.19.255.0/24", // a route B never uses
      });
      const [a4, a6] = a.addresses.map(hostOf);
      const [b4, b6] = b.addresses.map(hostOf);

      // A sends into the tunnel: the pool and the late network by route, and everything from
      // its tunnel addresses by policy routing (the relay's underlay address included, which
      // its QUIC connection reaches directly).
      for (
        const cmd of [
          ["ip", "route", "add", "198.18.100.0/24", "dev", a.tun],
          ["ip", "-6", "route", "add", "fd00:100::/64", "dev", a.tun],
          ["ip", "route", "add", LATE_NETWORK, "dev", a.tun],
          ["ip", "rule", "add", "from", a4, "lookup", "100"],
          ["ip", "route", "add", "default", "dev", a.tun, "table", "100"],
          ["ip", "-6", "rule", "add", "from", a6, "lookup", "100"],
          ["ip", "-6", "route", "add", "default", "dev", a.tun, "table", "100"],
        ]
      ) await topo.run("client", cmd);

      // An address the relay host gets now, after the relay started.
      await topo.run("relay", ["ip", "addr", "add", `${LATE_ADDRESS}/32`, "dev", "lo"]);
      await relay.process.waitForLog(/relay host addresses closed to clients.*198\.18\.2\.1/, 5000);

      const tun = await relayTunAddresses(topo);
      const hostAddresses4 = [
        ...new Set([tun.v4, "198.18.100.0", "198.18.100.1", "198.18.100.255"]),
        topo.relayUnderlay4,
        RELAY_ON_TARGET_LINK4,
        LATE_ADDRESS,
      ];
      const hostAddresses6 = [
        ...new Set([tun.v6, "fd00:100::"]),
        topo.relayUnderlay6,
        RELAY_ON_TARGET_LINK6,
      ];
      const probes: Probe[] = [
        ...hostAddresses4.map((host) => ({ proto: "udp" as const, host, port: 53, from: a4 })),
        ...hostAddresses6.map((host) => ({ proto: "udp" as const, host, port: 53, from: a6 })),
        { proto: "tcp", host: tun.v4, port: 53 },
        { proto: "tcp", host: RELAY_ON_TARGET_LINK4, port: 53 },
        { proto: "tcp", host: RELAY_ON_TARGET_LINK6, port: 53 },
        { proto: "tcp", host: LATE_ADDRESS, port: 53 },
      ];
      const [answers, ...pings] = await Promise.all([
        probe(topo, "client", probes),
        ping(topo, "client", tun.v4),
        ping(topo, "client", topo.relayUnderlay4, ["-I", a4]),
        ping(topo, "client", RELAY_ON_TARGET_LINK6),
        ping(topo, "client", b4),
        ping(topo, "client", b6),
      ]);
      assertEquals(answers, probes.map((p) => `${p.proto} ${p.host}:${p.port} -> silent`));
      for (const result of pings) {
        assert(result.code !== 0, `ping was answered:\n${result.stdout}`);
      }
      assertEquals(await listenerEvents(listener), [], "the service on the relay host saw nothing");

      // The relay itself dropped them (no nft here): counted per reason.
      const udpAndTcp = probes.length;
      const status = await waitForStatus(
        relay,
        (s) =>
          counter(s, "tunnel_packets_dropped_total", "inbound", "relay host") >= udpAndTcp + 6 &&
          counter(s, "tunnel_packets_dropped_total", "inbound", "client to client") >= 4,
        "relay-host and client-to-client drops",
      );
      assertEquals(
        counter(status, "tunnel_packets_dropped_total", "inbound", "tun write failed"),
        0,
      );

      // The same client still reaches the target behind the relay, and TTL 1 gets
      // Time Exceeded from the relay's kernel, as from any router.
      const [v4, v6, udp, ttl] = await Promise.all([
        ping(topo, "client", topo.target4),
        ping(topo, "client", topo.target6),
        probe(topo, "client", [
          { proto: "udp", host: topo.target4, port: 7 },
          { proto: "udp", host: topo.target6, port: 7 },
        ]),
        ping(topo, "client", topo.target4, ["-t", "1"]),
      ]);
      assertEquals(v4.code, 0, `IPv4 ping to the target failed:\n${v4.stdout}${v4.stderr}`);
      assertEquals(v6.code, 0, `IPv6 ping to the target failed:\n${v6.stdout}${v6.stderr}`);
      assertEquals(udp, [
        `udp ${topo.target4}:7 -> reply probe`,
        `udp ${topo.target6}:7 -> reply probe`,
      ]);
      assertMatch(ttl.stdout, /Time to live exceeded/);
    });
  },
});

Deno.test({
  name:
    "e2e firewall: --allow-relay-host opens a service at the relay's TUN address only; --allow-client-to-client lets clients ping each other; the nft chain goes with the relay",
  ...opts,
  async fn() {
    await withTopology("fw-allow", FAILURE_LOGS, async (topo) => {
      const listener = await startHostListener(topo);
      const relay = await startRelay(topo, [
        "--dev-cert-name",
        RELAY_ON_TARGET_LINK4,
        "--allow-relay-host",
        `udp/${SERVICE_PORT}`,
        "--allow-relay-host",
        "ping",
        "--allow-client-to-client",
      ]);
      const pools = "198.18.100.0/24,fd00:100::/64";
      await startClient(topo, relay, { targets: `198.18.1.0/24,${pools}` });
      const b = await startClient(topo, relay, {
        name: "client2",
        ns: "target",
        tun: "mvpn1",
        relayHost: RELAY_ON_TARGET_LINK4,
        targets: pools,
      });
      const [b4, b6] = b.addresses.map(hostOf);
      const tun = await relayTunAddresses(topo);

      const [answers, gateway, toB4, toB6] = await Promise.all([
        probe(topo, "client", [
          { proto: "udp", host: tun.v4, port: SERVICE_PORT },
          { proto: "udp", host: tun.v6, port: SERVICE_PORT },
          { proto: "udp", host: RELAY_ON_TARGET_LINK4, port: SERVICE_PORT },
          { proto: "tcp", host: tun.v4, port: SERVICE_PORT },
        ]),
        ping(topo, "client", tun.v4),
        ping(topo, "client", b4),
        ping(topo, "client", b6),
      ]);
      assertEquals(answers, [
        `udp ${tun.v4}:${SERVICE_PORT} -> reply hello probe`,
        `udp ${tun.v6}:${SERVICE_PORT} -> reply hello probe`,
        `udp ${RELAY_ON_TARGET_LINK4}:${SERVICE_PORT} -> silent`, // another host address
        `tcp ${tun.v4}:${SERVICE_PORT} -> silent`, // only UDP is allowed
      ]);
      assertEquals(gateway.code, 0, `ping to the relay's TUN address failed:\n${gateway.stdout}`);
      assertEquals(toB4.code, 0, `ping A -> B failed:\n${toB4.stdout}${toB4.stderr}`);
      assertEquals(toB6.code, 0, `ping A -> B (IPv6) failed:\n${toB6.stdout}${toB6.stderr}`);
      assertEquals((await listenerEvents(listener)).map((e) => e.event), ["udp", "udp"]);
      // Two pings each way, both families, relayed by the relay itself.
      await waitForStatus(
        relay,
        (s) => counter(s, "tunnel_packets_between_peers_total") >= 8,
        "8 packets between clients",
      );

      // With --nat the relay's own table also holds the input chain; it goes with the relay.
      const table = await topo.run("relay", [
        "nft",
        "list",
        "table",
        "inet",
        "masque_vpn_mvpn_relay",
      ]);
      assertMatch(table.stdout, /chain input/);
      assertMatch(
        table.stdout,
        new RegExp(`ip daddr ${tun.v4.replaceAll(".", "\\.")} udp dport 53 accept`),
      );
      assertMatch(table.stdout, /iifname "mvpn-relay" counter packets \d+ bytes \d+ drop/);
      relay.process.kill("SIGTERM");
      assertEquals((await relay.process.status).code, 0);
      const tables = await topo.run("relay", ["nft", "list", "tables"]);
      assert(!tables.stdout.includes("masque_vpn"), `table left behind:\n${tables.stdout}`);
    });
  },
});
