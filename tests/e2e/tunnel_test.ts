/**
 * End to end: relay and clients as real processes in network namespaces,
 * real TUN devices, NAT; ping, TCP and UDP through the tunnel. Needs root;
 * skipped with a message otherwise.
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { needsNamespaces, withTopology } from "../support/netns.ts";
import type { FailureLogs, Topology } from "../support/netns.ts";
import { counter, startClient, startRelay, startTargetServers } from "../support/vpn.ts";
import type { RelayProcess, RelayStatus } from "../support/vpn.ts";

const TOOLS = new URL("./tools/", import.meta.url).pathname;
const opts = { ...await needsNamespaces(), sanitizeOps: false, sanitizeResources: false };

/** The logs printed when a test fails. */
const FAILURE_LOGS: FailureLogs = { names: ["relay", "client", "client2"], lines: 25 };

/** Sends one UDP datagram from the client namespace and returns the echo. */
async function udpRoundTrip(topo: Topology, host: string, text: string): Promise<string> {
  const code = `
    const s = Deno.listenDatagram({ transport: "udp", hostname: "${
    host.includes(":") ? "::" : "0.0.0.0"
  }", port: 0 });
    const timer = setTimeout(() => { console.log("timeout"); Deno.exit(1); }, 5000);
    await s.send(new TextEncoder().encode(${
    JSON.stringify(text)
  }), { transport: "udp", hostname: "${host}", port: 7 });
    const [data] = await s.receive();
    clearTimeout(timer);
    console.log(new TextDecoder().decode(data));
    s.close();`;
  const result = await topo.run("client", [Deno.execPath(), "eval", code], { check: false });
  return result.stdout.trim();
}

async function ping(topo: Topology, host: string, extra: string[] = []) {
  return await topo.run("client", ["ping", "-c", "3", "-i", "0.2", "-W", "2", ...extra, host], {
    check: false,
  });
}

for (const mode of ["datagram", "stream"] as const) {
  Deno.test({
    name: `e2e ${mode} mode: ping v4/v6, 10 MB TCP with checksum, UDP echo through the tunnel`,
    ...opts,
    async fn() {
      await withTopology(`e2e-${mode}`, FAILURE_LOGS, async (topo) => {
        await startTargetServers(topo);
        const relay = await startRelay(topo);
        const client = await startClient(topo, relay, { mode });
        assertMatch(client.addresses[0], /^198\.18\.100\.\d+\/32$/);
        assertMatch(client.addresses[1], /^fd00:100::[0-9a-f]+\/128$/);

        const v4 = await ping(topo, topo.target4);
        assertEquals(v4.code, 0, `IPv4 ping failed:\n${v4.stdout}${v4.stderr}`);
        assertMatch(v4.stdout, / 0% packet loss/);
        const v6 = await ping(topo, topo.target6);
        assertEquals(v6.code, 0, `IPv6 ping failed:\n${v6.stdout}${v6.stderr}`);

        assertEquals(
          await udpRoundTrip(topo, topo.target4, `hello v4 ${mode}`),
          `hello v4 ${mode}`,
        );
        assertEquals(
          await udpRoundTrip(topo, topo.target6, `hello v6 ${mode}`),
          `hello v6 ${mode}`,
        );

        const blast = await topo.run("client", [
          Deno.execPath(),
          "run",
          "--allow-net",
          `${TOOLS}tcp_blast.ts`,
          "client",
          "--host",
          topo.target4,
          "--port",
          "5201",
          "--bytes",
          String(10 * 1024 * 1024),
          "--timeout-ms",
          "60000",
        ], { check: false, timeoutMs: 70_000 });
        const result = JSON.parse(blast.stdout.trim().split("\n").pop() ?? "{}");
        assertEquals(result.ok, true, `TCP transfer failed: ${blast.stdout}${blast.stderr}`);
        assertEquals(result.bytes, 10 * 1024 * 1024);
        console.log(`  ${mode}: 10 MB TCP in ${result.seconds} s (${result.mbps} Mbit/s)`);

        // The relay really saw this session in the expected mode.
        const status = await waitForStatus(relay, (s) => s.sessions.length === 1);
        assertEquals(status.sessions[0].mode, mode);
        // The client's status file counts what it carried: the 10 MB went
        // out in at least 10 MB / MTU packets, and nothing was refused. With
        // --mtu auto the TUN MTU only grows during the transfer, so the MTU
        // in the latest status is the largest the packets can have had.
        const minimumAt = (mtu: unknown) => Math.floor((10 * 1024 * 1024) / Number(mtu));
        const counters = await waitFor(
          () => client.status().catch(() => undefined),
          (c) => counter(c, "tunnel_packets_total", "outbound") >= minimumAt(c?.mtu ?? client.mtu),
          "client status with at least 10 MB / MTU packets out",
        );
        assertEquals(counters?.mode, mode);
        assertEquals(counter(counters, "tun_write_drops_total"), 0);
      });
    },
  });
}

/** Polls `read` every 250 ms until `check` holds; returns that value. */
async function waitFor<T>(
  read: () => Promise<T>,
  check: (value: T) => boolean,
  what: string,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (check(value)) return value;
    if (Date.now() > deadline) {
      throw new Error(`${what} never came; last: ${JSON.stringify(value)}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** IPv4 pool addresses in use, from a relay status. */
const poolV4 = (s: RelayStatus) => counter(s, "relay_pool_addresses_in_use", "ipv4");

async function waitForStatus(
  relay: RelayProcess,
  check: (s: Awaited<ReturnType<RelayProcess["status"]>>) => boolean,
) {
  const status = await waitFor(
    () => relay.status().catch(() => undefined),
    (s) => s !== undefined && check(s),
    "a matching relay status",
  );
  return status!;
}

Deno.test({
  name:
    "e2e: two clients at once get different addresses and both reach the target; spoofing is dropped",
  ...opts,
  async fn() {
    await withTopology("e2e-two", FAILURE_LOGS, async (topo) => {
      await startTargetServers(topo);
      const relay = await startRelay(topo);
      const a = await startClient(topo, relay, { name: "client", tun: "mvpn0" });
      // Both clients share the client namespace, so the second one routes
      // only the target's host addresses (a /24 route can exist once).
      const b = await startClient(topo, relay, {
        name: "client2",
        tun: "mvpn1",
        targets: `${topo.target4}/32,${topo.target6}/128`,
      });
      assert(a.addresses[0] !== b.addresses[0], `same address ${a.addresses[0]}`);
      assert(a.addresses[1] !== b.addresses[1], `same address ${a.addresses[1]}`);
      const addrB = b.addresses[0].split("/")[0];
      // Pick each tunnel by binding to its device.
      for (const client of [a, b]) {
        const r = await ping(topo, topo.target4, ["-I", client.tun]);
        assertEquals(r.code, 0, `ping via ${client.tun} failed:\n${r.stdout}${r.stderr}`);
      }

      // Client A sends packets with client B's source address: the relay
      // drops them (RFC 9484 §7) and counts them.
      const victim = "198.18.1.3";
      await topo.run("client", ["ip", "route", "add", `${victim}/32`, "dev", a.tun, "src", addrB]);
      const before = await waitForStatus(relay, () => true);
      const spoofed = await topo.run("client", [
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "1",
        "-I",
        addrB,
        victim,
      ], { check: false });
      assert(spoofed.code !== 0, "spoofed ping should not be answered");
      const after = await waitForStatus(
        relay,
        (s) =>
          counter(s, "tunnel_packets_dropped_total", "inbound", "source not assigned") >=
            counter(before, "tunnel_packets_dropped_total", "inbound", "source not assigned") + 3,
      );
      assert(counter(after, "tunnel_packets_dropped_total", "inbound", "source not assigned") >= 3);
    });
  },
});

Deno.test({
  name: "e2e: a client killed with SIGKILL loses its session and its address returns to the pool",
  ...opts,
  async fn() {
    await withTopology("e2e-kill", FAILURE_LOGS, async (topo) => {
      const relay = await startRelay(topo, ["--idle-timeout", "3"]);
      const first = await startClient(topo, relay, { name: "client" });
      await waitForStatus(relay, (s) => poolV4(s) === 1 && s.sessions.length === 1);
      first.process.kill("SIGKILL");
      await first.process.status;
      // The TUN went away with the process; the relay notices after its idle timeout.
      const status = await waitForStatus(relay, (s) => s.sessions.length === 0 && poolV4(s) === 0);
      assertEquals(counter(status, "relay_sessions_closed_total"), 1);
      const second = await startClient(topo, relay, { name: "client2" });
      // Released addresses are reused oldest-first, after never-used ones: the pool is not leaking.
      await waitForStatus(relay, (s) => poolV4(s) === 1 && s.sessions.length === 1);
      assert(second.addresses.length === 2);
    });
  },
});

Deno.test({
  name: "e2e: a client stopped with SIGTERM removes its routes, rules and TUN and exits 0",
  ...opts,
  async fn() {
    await withTopology("e2e-term", FAILURE_LOGS, async (topo) => {
      const relay = await startRelay(topo);
      const client = await startClient(topo, relay);
      // The tunnel's routes are in the client's own table (51900), with rules to it.
      const table = ["route", "show", "table", "51900", "dev", client.tun];
      const routes = await topo.run("client", ["ip", ...table]);
      assertMatch(routes.stdout, /198\.18\.1\.0\/24/);
      assertMatch((await topo.run("client", ["ip", "rule"])).stdout, /lookup 51900/);
      client.process.kill("SIGTERM");
      const exit = await client.process.status;
      assertEquals(exit.code, 0);
      const link = await topo.run("client", ["ip", "link", "show", client.tun], { check: false });
      assert(link.code !== 0, `TUN ${client.tun} still exists:\n${link.stdout}`);
      for (const family of ["-4", "-6"]) {
        const left = await topo.run("client", ["ip", family, "route", "show", "table", "all"]);
        assert(!left.stdout.includes("table 51900"), `route left behind:\n${left.stdout}`);
        const rules = await topo.run("client", ["ip", family, "rule"]);
        assert(!rules.stdout.includes("51900"), `rule left behind:\n${rules.stdout}`);
      }
      await waitForStatus(relay, (s) => s.sessions.length === 0 && poolV4(s) === 0);
    });
  },
});
