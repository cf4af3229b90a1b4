/**
 * End to end with users: the relay (`--users`) and two clients as real
 * processes in network namespaces, real TUNs, NAT, iperf3. Needs root and
 * iperf3; recorded as skipped otherwise (tests/support/skip.ts).
 *
 * - alice may reach 198.18.1.0/24 and fd00:0:0:2::/64: she does, and a
 *   ping to 198.18.4.1 (behind the relay, outside her routes, sent into
 *   her tunnel by a route added by hand) prints "Packet filtered" (ICMP
 *   administratively prohibited, type 3 code 13); likewise for IPv6;
 * - bob, at 10 Mbit/s, measures at most 11 Mbit/s with iperf3 each way,
 *   while alice's iperf3 at the same time gets far more;
 * - a peer without credentials cannot take an address from the pool while
 *   both work;
 * - `deno task users remove bob` and SIGHUP: bob's client loses its tunnel
 *   within about a second; alice goes on.
 */
import { assert, assertEquals } from "../support/assert.ts";
import { isRoot, TOPOLOGY_COMMANDS, withTopology } from "../support/netns.ts";
import type { FailureLogs, Topology } from "../support/netns.ts";
import { counter, startClient, startRelay } from "../support/vpn.ts";
import type { RelayProcess, RelayStatus } from "../support/vpn.ts";
import { parseIperfTcp } from "../bench/_measure.ts";
import { parsePrefix } from "../../shared/ip/ip_address.ts";
import { skipUnlessRoot } from "../support/skip.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const opts = {
  ...await skipUnlessRoot(isRoot(), [...TOPOLOGY_COMMANDS, "iperf3"]),
  sanitizeOps: false,
  sanitizeResources: false,
};

/** Behind the relay, through the target: bob's iperf3 server, and what alice may not reach. */
const BOB_TARGET = "198.18.3.1";
const FORBIDDEN4 = "198.18.4.1";
const FORBIDDEN6 = "fd00:0:0:4::1";

/** The logs printed when a test fails. */
const FAILURE_LOGS: FailureLogs = { names: ["relay", "client", "client2"], lines: 25 };

async function waitForStatus(
  relay: RelayProcess,
  ok: (status: RelayStatus) => boolean,
  ms = 8000,
): Promise<RelayStatus> {
  const deadline = Date.now() + ms;
  let last: RelayStatus | undefined;
  while (Date.now() < deadline) {
    last = await relay.status().catch(() => undefined);
    if (last && ok(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`relay status never matched; last: ${JSON.stringify(last)?.slice(0, 2000)}`);
}

/** One iperf3 TCP run from the client namespace, bits per second at the receiver. */
async function iperf(topo: Topology, host: string, port: number, extra: string[] = []) {
  const result = await topo.run("client", [
    ...["iperf3", "-c", host, "-p", String(port), "-t", "6", "-O", "1", "--json", ...extra],
  ], { check: false, timeoutMs: 30_000 });
  return parseIperfTcp(result.stdout).bitsPerSecond;
}

Deno.test({
  name:
    "e2e: per-user routes (ICMP prohibited), a 10 Mbit/s rate, no address for strangers, removal by SIGHUP",
  ...opts,
  async fn() {
    await withTopology("e2e-auth", FAILURE_LOGS, async (topo) => {
      // Addresses behind the relay besides the target's own.
      for (const address of [`${BOB_TARGET}/32`, `${FORBIDDEN4}/32`, `${FORBIDDEN6}/128`]) {
        await topo.run("target", ["ip", "addr", "add", address, "dev", "lo"]);
      }
      await topo.run("relay", ["ip", "route", "add", "198.18.3.0/24", "via", topo.target4]);
      await topo.run("relay", ["ip", "route", "add", "198.18.4.0/24", "via", topo.target4]);
      await topo.run("relay", ["ip", "-6", "route", "add", "fd00:0:0:4::/64", "via", topo.target6]);
      for (const port of [5201, 5202]) {
        topo.spawn("target", ["iperf3", "-s", "-p", String(port)], { name: `iperf3-${port}` });
      }
      const relay = await startRelay(topo, [], {
        users: [
          {
            name: "alice",
            policy: { routes: ["198.18.1.0/24", "fd00:0:0:2::/64"].map(parsePrefix) },
          },
          { name: "bob", policy: { rateBitsPerSecond: 10_000_000 } },
        ],
      });
      const alice = await startClient(topo, relay, { name: "client", tun: "mvpn0", user: "alice" });
      const bob = await startClient(topo, relay, {
        name: "client2",
        tun: "mvpn1",
        user: "bob",
        targets: "198.18.3.0/24",
        // A second client in the same namespace: its own table, rules and mark.
        extraArgs: ["--routing-table", "51901", "--rule-priority", "32700", "--fwmark", "51901"],
      });

      // Alice reaches her prefix...
      const ok = await topo.run("client", ["ping", "-c", "2", "-W", "2", topo.target4], {
        check: false,
      });
      assertEquals(ok.code, 0, ok.stdout + ok.stderr);
      // ...and what lies outside it is refused with ICMP, which ping prints.
      await topo.run("client", ["ip", "route", "add", `${FORBIDDEN4}/32`, "dev", alice.tun]);
      await topo.run("client", ["ip", "-6", "route", "add", `${FORBIDDEN6}/128`, "dev", alice.tun]);
      const refused4 = await topo.run("client", [
        ...["ping", "-c", "3", "-i", "0.3", "-W", "2", FORBIDDEN4],
      ], { check: false });
      assert(refused4.code !== 0, refused4.stdout);
      assert(/Packet filtered/.test(refused4.stdout), refused4.stdout);
      const refused6 = await topo.run("client", [
        ...["ping", "-6", "-c", "3", "-i", "0.3", "-W", "2", FORBIDDEN6],
      ], { check: false });
      assert(refused6.code !== 0, refused6.stdout);
      assert(/Administratively prohibited/i.test(refused6.stdout), refused6.stdout);
      console.log(`alice: ${refused4.stdout.split("\n").find((l) => l.includes("filtered"))}`);
      const afterPing = await waitForStatus(
        relay,
        (s) => counter(s, "tunnel_prohibited_answers_total") >= 6,
      );
      assert(
        counter(
          afterPing,
          "relay_user_packets_dropped_total",
          "alice",
          "inbound",
          "destination not routed",
        ) >= 6,
      );

      // Bob's rate, each way, while alice sends at the same time.
      const [bobUp, aliceUp] = await Promise.all([
        iperf(topo, BOB_TARGET, 5202),
        iperf(topo, topo.target4, 5201),
      ]);
      const [bobDown, aliceDown] = await Promise.all([
        iperf(topo, BOB_TARGET, 5202, ["-R"]),
        iperf(topo, topo.target4, 5201, ["-R"]),
      ]);
      const mbit = (bps: number) => (bps / 1e6).toFixed(1);
      console.log(
        `iperf3: bob up ${mbit(bobUp)} down ${mbit(bobDown)} Mbit/s (limit 10); ` +
          `alice up ${mbit(aliceUp)} down ${mbit(aliceDown)} Mbit/s meanwhile`,
      );
      for (const bps of [bobUp, bobDown]) assert(bps <= 11e6 && bps >= 3e6, `bob ${mbit(bps)}`);
      for (const bps of [aliceUp, aliceDown]) assert(bps >= 22e6, `alice ${mbit(bps)}`);
      const afterIperf = await relay.status();
      assert(
        counter(afterIperf, "relay_user_packets_dropped_total", "bob", "inbound", "rate limited") >
          0,
      );
      assert(
        counter(afterIperf, "relay_user_packets_dropped_total", "bob", "outbound", "rate limited") >
          0,
      );
      assertEquals(counter(afterIperf, "relay_user_packets_dropped_total", "alice", "outbound"), 0);

      // A stranger without credentials asks for 40 sessions: none, no address.
      const stranger = await topo.run("client", [
        ...["deno", "run", "--unstable-net", "--allow-net", "--allow-read"],
        `${ROOT}tests/bench/_scale_client.ts`,
        ...["--host", topo.relayUnderlay4, "--ca", `${relay.certDir}/ca.pem`],
        ...["--sessions", "40", "--per-connection", "4", "--concurrency", "4"],
        ...["--timeout-ms", "15000", "--hold-ms", "500"],
      ], { check: false, timeoutMs: 60_000 });
      const summary = JSON.parse(stranger.stdout.trim().split("\n").pop()!);
      assertEquals(summary.sessions, 0, stranger.stdout);
      // The stranger shares alice's and bob's address: its failures block the
      // source, which closes its own connections but not theirs.
      const during = await waitForStatus(
        relay,
        (s) => counter(s, "relay_auth_failures_total", "no credentials") >= 10,
      );
      assertEquals(counter(during, "relay_auth_sources_blocked_total"), 1);
      assertEquals(during.sessions.length, 2);
      assertEquals(counter(during, "relay_pool_addresses_in_use", "ipv4"), 2);

      // Bob is removed; SIGHUP; his client loses its tunnel, alice keeps hers.
      const removed = await new Deno.Command(Deno.execPath(), {
        args: [
          ...["run", "--allow-read", "--allow-write", `${ROOT}relay/users_main.ts`],
          ...["remove", "bob", "--users", relay.usersFile!],
        ],
      }).output();
      assert(removed.success, new TextDecoder().decode(removed.stderr));
      const started = performance.now();
      relay.process.kill("SIGHUP");
      await relay.process.waitForLog(/users reloaded .*sessionsEnded=1/, 5000);
      const ended = await Promise.race([
        bob.process.status,
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 5000)),
      ]);
      assert(ended !== undefined, "bob's client is still running");
      console.log(`bob's client exited ${Math.round(performance.now() - started)} ms after SIGHUP`);
      await relay.process.waitForLog(/certificate reloaded/, 5000);
      const still = await topo.run("client", ["ping", "-c", "2", "-W", "2", topo.target4], {
        check: false,
      });
      assertEquals(still.code, 0, still.stdout + still.stderr);
      const final = await waitForStatus(relay, (s) => s.sessions.length === 1);
      assertEquals(counter(final, "relay_sessions_removed_total"), 1);
    });
  },
});
