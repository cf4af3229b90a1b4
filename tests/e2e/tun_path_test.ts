/**
 * End to end tests of the TUN paths of relay and client, in network
 * namespaces (needs root):
 * - soak (issue 7, point 8): one stream-mode session floods the relay's TUN
 *   with 1428-byte ICMP echo requests for a bounded time and never reads the
 *   replies, while a well-behaved datagram-mode client pings through the same
 *   relay. When the flood stops, the pings must be answered again at once,
 *   and the relay's status file must show what happened to the TUN writes;
 * - receive path (issue 8, point 2): a client whose TUN MTU is 1280 gets a
 *   1400-byte echo reply from the relay (a host's MTU limits what it sends,
 *   not what it accepts, RFC 1122 §3.3.2).
 */
import { assert, assertEquals } from "../support/assert.ts";
import { needsNamespaces, withTopology } from "../support/netns.ts";
import type { FailureLogs, Topology } from "../support/netns.ts";
import { counter, startClient, startRelay } from "../support/vpn.ts";
import type { ClientStatus } from "../support/vpn.ts";

const TOOLS = new URL("./tools/", import.meta.url).pathname;
const opts = { ...await needsNamespaces(), sanitizeOps: false, sanitizeResources: false };
/** Length of the flood, seconds. */
const FLOOD_SECONDS = Number(Deno.env.get("MASQUE_SOAK_SECONDS") ?? 5);

/** The logs printed when a test fails. */
const FAILURE_LOGS: FailureLogs = { names: ["relay", "client", "flood"], lines: 25 };

/** One ping from the client namespace through `tun`; true when answered within 1 s. */
async function pingOnce(topo: Topology, tun: string): Promise<boolean> {
  const result = await topo.run(
    "client",
    ["ping", "-c", "1", "-W", "1", "-I", tun, topo.target4],
    { check: false },
  );
  return result.code === 0;
}

Deno.test({
  name: "e2e soak: a stream-mode flood of the relay's TUN; pings of another session recover",
  ...opts,
  async fn() {
    await withTopology("e2e-soak", FAILURE_LOGS, async (topo) => {
      const relay = await startRelay(topo);
      const client = await startClient(topo, relay, { name: "client", tun: "mvpn0" });
      assert(await pingOnce(topo, client.tun), "ping before the flood");

      const flood = topo.spawn("client", [
        Deno.execPath(),
        "run",
        "--unstable-net",
        "--allow-net",
        "--allow-read",
        `${TOOLS}stream_flood.ts`,
        "--relay",
        `${topo.relayUnderlay4}:4433`,
        "--ca",
        `${relay.certDir}/ca.pem`,
        "--target",
        topo.target4,
        "--seconds",
        String(FLOOD_SECONDS),
        "--size",
        "1428",
        "--token-file",
        `${topo.logDir}/client.token`,
      ], { name: "flood" });
      await flood.waitForLog(/"ready":true/, 20_000);
      // The other session pings all through the flood (counted, not asserted:
      // the relay may drop some of them while its write ring is full).
      const during = topo.run("client", [
        "ping",
        "-c",
        String(FLOOD_SECONDS * 5),
        "-i",
        "0.2",
        "-W",
        "1",
        "-I",
        client.tun,
        topo.target4,
      ], { check: false, timeoutMs: (FLOOD_SECONDS + 10) * 1000 });
      const done = await flood.waitForLog(/"done":true/, (FLOOD_SECONDS + 20) * 1000);
      console.log(`  flood: ${done.trim()}`);
      const stopped = Date.now();
      const answered = (await during).stdout.match(/(\d+) received/)?.[1];
      console.log(`  pings during the flood: ${answered ?? "?"} of ${FLOOD_SECONDS * 5} answered`);

      // Answered again within a couple of seconds of the flood's end...
      let recovered = false;
      while (!recovered && Date.now() - stopped < 3000) {
        recovered = await pingOnce(topo, client.tun);
      }
      assert(recovered, "no ping answered in the 3 s after the flood stopped");
      // ... and from then on, every one.
      const after = await topo.run("client", [
        "ping",
        "-c",
        "10",
        "-i",
        "0.2",
        "-W",
        "1",
        "-I",
        client.tun,
        topo.target4,
      ], { check: false });
      assertEquals(after.code, 0, `pings after the flood:\n${after.stdout}`);
      assert(/ 0% packet loss/.test(after.stdout), `pings after the flood:\n${after.stdout}`);

      await new Promise((resolve) => setTimeout(resolve, 2500)); // a fresh status file
      const status = await relay.status();
      const value = (name: string, ...labels: string[]) => counter(status, name, ...labels);
      const tunWriteFailed = value("tunnel_packets_dropped_total", "inbound", "tun write failed");
      console.log(`  relay counters: ${JSON.stringify(status.counters)}`);
      assert(
        value("tunnel_packets_total", "inbound") + tunWriteFailed > 1000,
        "the flood reached the relay",
      );
      // The status file tells the TUN's story: drops of the writer ring on
      // their own, and no worker had to be restarted.
      assert("tun_written_packets_total" in status.counters, "no TUN counters in the status file");
      assert(value("tun_written_packets_total") > 1000, JSON.stringify(status.counters));
      assertEquals(value("tun_writer_restarts_total"), 0);
      assertEquals(value("tun_reader_restarts_total"), 0);
      assert(
        value("tun_write_drops_total") <= tunWriteFailed,
        "every ring drop is also a refused writePacket()",
      );
      const log = await Deno.readTextFile(relay.process.logFile);
      const lines = log.split("\n");
      const full = lines.filter((line) => line.includes("TUN write ring full")).length;
      const drained = lines.filter((line) => line.includes("TUN write ring drains again")).length;
      console.log(`  relay warnings of a full write ring: ${full}`);
      // One warning per run of drops that lasted 1 s or more, each with its end.
      assert(full <= value("tun_write_ring_full_episodes_total"), `${full} warnings`);
      assertEquals(drained, full);
      await flood.status;
    });
  },
});

Deno.test({
  name: "e2e: a client with TUN MTU 1280 receives 1400-byte packets from the relay (stream mode)",
  ...opts,
  async fn() {
    await withTopology("e2e-emtu", FAILURE_LOGS, async (topo) => {
      const relay = await startRelay(topo);
      const client = await startClient(topo, relay, {
        mode: "stream",
        extraArgs: ["--mtu", "1280"],
      });
      assertEquals(client.mtu, 1280);
      // 1372 bytes of data: a 1400-byte echo request, which the client's
      // kernel fragments to fit its TUN (-M dont), and a 1400-byte reply,
      // which the relay carries whole in a DATAGRAM capsule.
      const big = await topo.run("client", [
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "2",
        "-s",
        "1372",
        "-M",
        "dont",
        topo.target4,
      ], { check: false });
      assertEquals(big.code, 0, `1400-byte pings failed:\n${big.stdout}${big.stderr}`);
      assert(/ 0% packet loss/.test(big.stdout), big.stdout);
      const status = await waitForClientStatus(
        client,
        (c) => counter(c, "tun_oversize_packets_total") >= 3,
      );
      assertEquals(counter(status, "tun_write_errors_total"), 0);
      assertEquals(counter(status, "tun_write_drops_total"), 0);
    });
  },
});

/** Polls the client's status file (written every 2 s) until `check` holds. */
async function waitForClientStatus(
  client: Awaited<ReturnType<typeof startClient>>,
  check: (status: ClientStatus) => boolean,
): Promise<ClientStatus> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const counters = await client.status().catch(() => undefined);
    if (counters && check(counters)) return counters;
    if (Date.now() > deadline) {
      throw new Error(`client status never matched: ${JSON.stringify(counters)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
