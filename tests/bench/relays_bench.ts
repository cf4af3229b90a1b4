/**
 * Does a second relay on the same host add throughput? (Not a test; needs
 * root and iperf3.) The upper bound of spreading sessions over several QUIC
 * endpoints (Workers or processes, each with its own UDP port, TUN and pool
 * slice): 4 clients in datagram mode, one iperf3 TCP stream each, against
 * one relay serving all four and against two relay processes serving two
 * each, alternating, up and then down:
 *
 *   deno run --unstable-net --allow-all tests/bench/relays_bench.ts [seconds] [rounds]
 *
 * Prints per run the total and each client's Mbit/s, each relay's CPU and
 * its main thread's (percent of a core) and how busy the machine was.
 * docs/performance.md ("Many clients, many cores") has the figures from the
 * 2-core development machine; repeat it on a machine with more cores before
 * building a relay with several endpoints.
 *
 * @module
 */
import { createTopology } from "../support/netns.ts";
import { type ClientProcess, type RelayProcess, startClient, startRelay } from "../support/vpn.ts";
import { parseIperfTcp, parseProcStat } from "./_measure.ts";

const SECONDS = Number(Deno.args[0] ?? 5);
const ROUNDS = Number(Deno.args[1] ?? 2);
const IPERF_BASE_PORT = 5301;
/** One route per client TUN, each a different prefix of the target's address. */
const TARGETS = [
  "198.18.1.0/24",
  "198.18.1.2/32",
  "198.18.1.2/31",
  "198.18.1.0/30",
  "198.18.1.0/29",
  "198.18.1.0/28",
];

/** CPU ticks (user + system) in a /proc stat file; NaN once the process is gone. */
async function ticks(path: string): Promise<number> {
  try {
    const t = parseProcStat(await Deno.readTextFile(path));
    return t.user + t.system;
  } catch {
    return NaN;
  }
}

/** Busy and all ticks of the whole machine (the first line of /proc/stat). */
async function machineTicks(): Promise<{ busy: number; all: number }> {
  const fields = (await Deno.readTextFile("/proc/stat")).split("\n", 1)[0].trim().split(/\s+/)
    .slice(1, 9).map(Number);
  const all = fields.reduce((a, b) => a + b, 0);
  return { busy: all - fields[3] - fields[4], all };
}

const topo = await createTopology({ id: `relays-${Deno.pid}` });
try {
  const relayA = await startRelay(topo);
  // The second relay: its own port, TUN, pools and status file. (startRelay
  // writes a fresh users file at the same path; relay A read its own at start.)
  const relayB = await startRelay(topo, [
    ...["--port", "4434", "--tun", "mvpn-relay2"],
    ...["--pool4", "198.18.101.0/24", "--pool6", "fd00:101::/64"],
    ...["--status-file", `${topo.logDir}/relay2-status.json`],
  ]);
  const client = (name: string, relay: RelayProcess, port: number, target: string) =>
    startClient(topo, relay, {
      name,
      tun: `mvpn${name}`,
      targets: target,
      extraArgs: ["--relay", `https://${topo.relayUnderlay4}:${port}`],
    });
  const shared = [
    await client("c1", relayA, 4433, TARGETS[0]),
    await client("c2", relayA, 4433, TARGETS[1]),
  ];
  const onA = [
    await client("c3a", relayA, 4433, TARGETS[2]),
    await client("c4a", relayA, 4433, TARGETS[3]),
  ];
  const onB = [
    await client("c3b", relayB, 4434, TARGETS[4]),
    await client("c4b", relayB, 4434, TARGETS[5]),
  ];
  const servers = [];
  for (let i = 0; i < 4; i++) {
    const server = topo.spawn("target", [
      ...["iperf3", "-s", "-p", String(IPERF_BASE_PORT + i), "--forceflush"],
    ], { name: `iperf3-server-${i + 1}` });
    await server.waitForLog(/Server listening/, 5_000);
    servers.push(server);
  }
  const pids = [relayA.process.pid, relayB.process.pid];
  const sample = async () => ({
    at: performance.now(),
    machine: await machineTicks(),
    relays: await Promise.all(pids.map((p) => ticks(`/proc/${p}/stat`))),
    mains: await Promise.all(pids.map((p) => ticks(`/proc/${p}/task/${p}/stat`))),
  });
  const run = async (label: string, clients: ClientProcess[], reverse: boolean) => {
    const before = await sample();
    const mbps = await Promise.all(clients.map(async (c, i) => {
      const { stdout } = await topo.run("client", [
        ...["iperf3", "-c", topo.target4, "-p", String(IPERF_BASE_PORT + i), "-J"],
        ...["--bind-dev", c.tun, "-t", String(SECONDS), ...(reverse ? ["-R"] : [])],
      ], { check: false, timeoutMs: SECONDS * 1000 + 15_000 });
      try {
        return parseIperfTcp(stdout).bitsPerSecond / 1e6;
      } catch {
        return NaN;
      }
    }));
    const after = await sample();
    const seconds = (after.at - before.at) / 1000;
    // Clock ticks are 1/100 s: ticks per second are percent of a core.
    const pct = (a: number[], b: number[], i: number) => Math.round((b[i] - a[i]) / seconds);
    const total = mbps.reduce((a, b) => a + b, 0);
    console.log(
      `${reverse ? "down" : "up  "} ${label.padEnd(18)} ${total.toFixed(0).padStart(5)} Mbit/s ` +
        `(${mbps.map((m) => m.toFixed(0)).join(" / ")}); relay A ${
          pct(before.relays, after.relays, 0)
        }% (main ${pct(before.mains, after.mains, 0)}%), relay B ${
          pct(before.relays, after.relays, 1)
        }% (main ${pct(before.mains, after.mains, 1)}%); machine ${
          Math.round(
            100 * (after.machine.busy - before.machine.busy) /
              (after.machine.all - before.machine.all),
          )
        }% busy`,
    );
  };
  console.log(`load average ${(await Deno.readTextFile("/proc/loadavg")).split(" ", 3).join(" ")}`);
  for (let round = 0; round < ROUNDS; round++) {
    for (const reverse of [false, true]) {
      await run("one client", [shared[0]], reverse);
      await run("4 on one relay", [...shared, ...onA], reverse);
      await run("2 + 2 on two", [...shared, ...onB], reverse);
    }
  }
  for (const server of servers) server.kill("SIGKILL");
  const all = [...shared, ...onA, ...onB];
  for (const c of all) c.process.kill("SIGTERM");
  await Promise.all(all.map((c) => c.process.status));
} finally {
  await topo.teardown();
}
