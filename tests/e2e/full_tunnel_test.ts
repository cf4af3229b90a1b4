/**
 * End to end, the full tunnel (issue 14): relay and client as real
 * processes in network namespaces, the relay advertising 0.0.0.0/0 and ::/0
 * with NAT, the client namespace with default routes of its own for both
 * families (IPv4 at metric 0, the metric a tunnel route would have had;
 * IPv6 at 1024, the same as the kernel gives one, and at 100, lower), and
 * the target with routes back to the client's underlay, so that a packet
 * that went around the tunnel would reach it and be seen. Needs root, ip
 * and nft (skipped with the reason and the fix otherwise).
 *
 * - routing: the target sees only the relay's NAT addresses, both
 *   families, and the client's underlay carries nothing but marked QUIC to
 *   the relay (kill switch off: the routing alone does it);
 * - kill switch: with the relay gone, ping and TCP fail and nothing but
 *   QUIC leaves the underlay; it survives the client's SIGKILL; the next
 *   start takes over; when the user stops the client nothing of it remains;
 * - DNS: the relay's DNS_ASSIGN names a resolver in the target namespace;
 *   a lookup in the client namespace goes through the tunnel; the
 *   namespace's resolv.conf comes back after a stop and after SIGKILL plus
 *   restart.
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { createTopology, needsNamespaces } from "../support/netns.ts";
import type { Process, Topology } from "../support/netns.ts";
import { startClient, startRelay } from "../support/vpn.ts";
import type { ClientProcess, RelayProcess } from "../support/vpn.ts";

const TOOLS = new URL("./tools/", import.meta.url).pathname;
const opts = { ...await needsNamespaces(), sanitizeOps: false, sanitizeResources: false };

/** The relay's addresses on the target link: what NAT gives the client's packets. */
const NAT4 = "198.18.1.1";
const NAT6 = "fd00:0:0:2::1";
const KILL_SWITCH_TABLE = "masque_vpn_ks_mvpn0";
const QUIC_PORT = 4433;
/** What the client may run and write in these tests: nft, its state directory. */
const NFT = ["--allow-run=nft"];

async function withFullTunnelTopology(
  id: string,
  fn: (topo: Topology) => Promise<void>,
): Promise<void> {
  const topo = await createTopology({ id });
  try {
    await prepare(topo);
    await fn(topo);
  } catch (error) {
    for (const name of ["relay", "client", "client-2", "client-3", "dns"]) {
      const log = await Deno.readTextFile(`${topo.logDir}/${name}.log`).catch(() => "");
      if (log) {
        console.error(`--- ${name}.log (last lines)\n${log.split("\n").slice(-30).join("\n")}`);
      }
    }
    throw error;
  } finally {
    await topo.teardown();
  }
}

/**
 * Default routes in the client namespace, routes back in the target
 * namespace, and counters on both sides (see the module documentation).
 */
async function prepare(topo: Topology): Promise<void> {
  const relay4 = topo.relayUnderlay4;
  const relay6 = topo.relayUnderlay6;
  const client = (...args: string[]) => topo.run("client", ["ip", ...args]);
  await client("route", "add", "default", "via", relay4);
  await client("-6", "route", "add", "default", "via", relay6, "metric", "1024");
  await client("-6", "route", "add", "default", "via", relay6, "metric", "100");
  await topo.run("target", ["ip", "route", "add", "198.18.0.0/30", "via", NAT4]);
  await topo.run("target", ["ip", "-6", "route", "add", "fd00:0:0:1::/64", "via", NAT6]);
  const underlay = topo.interfaces.client;
  // What leaves the client's underlay, after every filter (postrouting).
  await nft(topo, "client", [
    "table inet watch {",
    "  counter quic {}",
    "  counter neighbour {}",
    "  counter other {}",
    "  chain out {",
    "    type filter hook postrouting priority 300; policy accept;",
    `    oifname != "${underlay}" accept`,
    `    meta mark 0xcabc ip daddr ${relay4} udp dport ${QUIC_PORT} counter name quic accept`,
    "    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, " +
    "mld-listener-report, mld2-listener-report } counter name neighbour accept",
    "    counter name other",
    "  }",
    "}",
  ]);
  // Where what reaches the target comes from.
  await nft(topo, "target", [
    "table inet watch {",
    "  counter nat4 {}",
    "  counter nat6 {}",
    "  counter other4 {}",
    "  counter other6 {}",
    "  chain in {",
    "    type filter hook input priority 0; policy accept;",
    `    ip saddr ${NAT4} counter name nat4 accept`,
    "    meta nfproto ipv4 counter name other4 accept",
    `    ip6 saddr ${NAT6} counter name nat6 accept`,
    "    ip6 saddr fe80::/10 accept",
    "    meta nfproto ipv6 counter name other6 accept",
    "  }",
    "}",
  ]);
}

async function nft(topo: Topology, ns: "client" | "target", lines: string[]): Promise<void> {
  await topo.run(ns, ["nft", "-f", "-"], {
    stdin: new TextEncoder().encode(lines.join("\n") + "\n"),
  });
}

/** The named counters of table `inet watch` in `ns`, by name: packets. */
async function counters(topo: Topology, ns: "client" | "target"): Promise<Record<string, number>> {
  const { stdout } = await topo.run(ns, [
    "nft",
    "-j",
    "list",
    "counters",
    "table",
    "inet",
    "watch",
  ]);
  const out: Record<string, number> = {};
  for (
    const item of JSON.parse(stdout).nftables as { counter?: { name: string; packets: number } }[]
  ) {
    if (item.counter) out[item.counter.name] = item.counter.packets;
  }
  return out;
}

async function resetCounters(topo: Topology, ns: "client" | "target"): Promise<void> {
  await topo.run(ns, ["nft", "reset", "counters", "table", "inet", "watch"]);
}

async function ping(topo: Topology, host: string): Promise<boolean> {
  const result = await topo.run("client", ["ping", "-c", "2", "-i", "0.2", "-W", "1", host], {
    check: false,
  });
  return result.code === 0;
}

/** UDP and TCP probes from the client namespace to `host_listener.ts` on the target. */
async function probe(topo: Topology, timeoutMs = 1500): Promise<string[]> {
  const probes = [topo.target4, topo.target6].flatMap((host) => [
    { proto: "udp", host, port: 7000 },
    { proto: "tcp", host, port: 7000 },
  ]);
  const { stdout } = await topo.run("client", [
    "deno",
    "run",
    "--allow-net",
    `${TOOLS}probe.ts`,
    "--timeout-ms",
    String(timeoutMs),
    JSON.stringify(probes),
  ]);
  return (JSON.parse(stdout) as { proto: string; host: string; answer: string }[])
    .map((p) => `${p.proto} ${p.host} ${p.answer.split(" ")[0]}`);
}

async function startListener(topo: Topology): Promise<Process> {
  const listener = topo.spawn("target", [
    "deno",
    "run",
    "--allow-net",
    `${TOOLS}host_listener.ts`,
    "--port",
    "7000",
  ], { name: "listener" });
  await listener.waitForLog(/"ready":true/, 15_000);
  return listener;
}

/** The sources `host_listener.ts` saw, without the IPv4-mapped prefix. */
async function listenerSources(topo: Topology): Promise<Set<string>> {
  const log = await Deno.readTextFile(`${topo.logDir}/listener.log`);
  const sources = log.split("\n").filter((line) => line.startsWith('{"event"'))
    .map((line) => (JSON.parse(line).from as string).replace(/^::ffff:/, ""));
  return new Set(sources);
}

/** What of the client's is left in its namespace: rules, routes of its table, its nft table. */
async function leftovers(topo: Topology): Promise<string[]> {
  const left: string[] = [];
  for (const family of ["-4", "-6"]) {
    const rules = (await topo.run("client", ["ip", family, "rule"])).stdout;
    for (const line of rules.split("\n")) if (/^3276[0-3]:/.test(line)) left.push(line);
    const routes = (await topo.run("client", ["ip", family, "route", "show", "table", "51900"]))
      .stdout;
    for (const line of routes.split("\n")) if (line.trim()) left.push(`table 51900: ${line}`);
  }
  const tables = (await topo.run("client", ["nft", "list", "tables"])).stdout;
  if (tables.includes(KILL_SWITCH_TABLE)) left.push(`nft ${KILL_SWITCH_TABLE}`);
  return left;
}

/** The device the client namespace's kernel routes `host` out of. */
async function routeDevice(topo: Topology, host: string): Promise<string> {
  const { stdout } = await topo.run("client", ["ip", "-j", "route", "get", host]);
  return JSON.parse(stdout)[0].dev;
}

function fullTunnelClient(
  topo: Topology,
  relay: RelayProcess,
  name: string,
  extraArgs: string[] = [],
  more: { write?: string[] } = {},
): Promise<ClientProcess> {
  return startClient(topo, relay, {
    name,
    // Empty: no --route, everything the relay advertises (0.0.0.0/0 and ::/0).
    targets: "",
    extraArgs,
    permissions: NFT,
    write: more.write,
  });
}

Deno.test({
  name: "e2e full tunnel: both families through the relay over default routes of any metric; " +
    "nothing else on the underlay",
  ...opts,
  async fn() {
    await withFullTunnelTopology("ft-route", async (topo) => {
      const relay = await startRelay(topo);
      await startListener(topo);
      // Control: without the tunnel, the defaults reach the target in the clear, and it sees it.
      assert(await ping(topo, topo.target4), "the target is reachable around the tunnel");
      assertEquals((await counters(topo, "target")).other4 > 0, true);
      await resetCounters(topo, "client");
      await resetCounters(topo, "target");

      // The kill switch off: the routing alone must keep everything in the tunnel.
      const client = await fullTunnelClient(topo, relay, "client", ["--kill-switch", "off"]);
      await client.process.waitForLog(/assigned .*full=IPv4,IPv6/);
      assertEquals(await routeDevice(topo, topo.target4), client.tun);
      assertEquals(await routeDevice(topo, topo.target6), client.tun);
      assert(await ping(topo, topo.target4), "ping over IPv4");
      assert(await ping(topo, topo.target6), "ping over IPv6");
      assertEquals(await probe(topo), [
        `udp ${topo.target4} reply`,
        `tcp ${topo.target4} connected`,
        `udp ${topo.target6} reply`,
        `tcp ${topo.target6} connected`,
      ]);
      assertEquals(await listenerSources(topo), new Set([NAT4, NAT6]));
      const target = await counters(topo, "target");
      assert(target.nat4 > 0 && target.nat6 > 0, JSON.stringify(target));
      assertEquals([target.other4, target.other6], [0, 0], "seen at the target from elsewhere");
      const underlay = await counters(topo, "client");
      assert(underlay.quic > 0, JSON.stringify(underlay));
      assertEquals(underlay.other, 0, "left the underlay outside QUIC to the relay");

      client.process.kill("SIGTERM");
      assertEquals((await client.process.status).code, 0);
      assertEquals(await leftovers(topo), []);
      // The host's own default routes were never touched.
      const defaults6 = (await topo.run("client", ["ip", "-6", "route", "show", "default"])).stdout;
      assertMatch(defaults6, /metric 100/);
      assertMatch(defaults6, /metric 1024/);
      assertEquals(await routeDevice(topo, topo.target4), topo.interfaces.client);
    });
  },
});

Deno.test({
  name: "e2e kill switch: nothing but QUIC leaves while the relay is gone or the client was " +
    "killed; the next start takes over; a stop leaves nothing behind",
  ...opts,
  async fn() {
    await withFullTunnelTopology("ft-kill", async (topo) => {
      let relay = await startRelay(topo);
      const first = await fullTunnelClient(topo, relay, "client");
      await first.process.waitForLog(/kill switch on/);
      assert(await ping(topo, topo.target4), "the tunnel works with the kill switch on");

      // The relay dies; the client has not noticed yet (its idle timeout is 30 s).
      relay.process.kill("SIGKILL");
      await relay.process.status;
      await resetCounters(topo, "client");
      assert(!(await ping(topo, topo.target4)), "ping over IPv4 with the relay gone");
      assert(!(await ping(topo, topo.target6)), "ping over IPv6 with the relay gone");
      assert(
        !(await ping(topo, topo.relayUnderlay4)),
        "the relay's own address, around the tunnel",
      );
      const tcp = await probe(topo, 1000);
      assert(
        tcp.every((line) => !line.endsWith(" connected") && !line.endsWith(" reply")),
        tcp.join(),
      );
      let underlay = await counters(topo, "client");
      assertEquals(underlay.other, 0, "left the underlay with the relay gone");
      assert(underlay.quic > 0, `no QUIC to the relay: ${JSON.stringify(underlay)}`);

      // The client crashes: its kill switch stays and keeps blocking.
      first.process.kill("SIGKILL");
      await first.process.status;
      assert((await leftovers(topo)).includes(`nft ${KILL_SWITCH_TABLE}`));
      await resetCounters(topo, "client");
      assert(!(await ping(topo, topo.target4)), "ping with the client killed");
      underlay = await counters(topo, "client");
      assertEquals(underlay.other, 0, "left the underlay after the client was killed");

      // The next start clears the killed client's routing and takes its kill switch over.
      relay = await startRelay(topo);
      const second = await fullTunnelClient(topo, relay, "client-2");
      await second.process.waitForLog(/removed the routing a previous client left/);
      await second.process.waitForLog(/kill switch left by a previous client replaced/);
      assert(await ping(topo, topo.target4), "the tunnel works again");
      assert(await ping(topo, topo.target6), "over IPv6 too");

      // The user stops it: normal routing comes back, nothing of the client's remains.
      second.process.kill("SIGTERM");
      assertEquals((await second.process.status).code, 0);
      await second.process.waitForLog(/kill switch removed/);
      assertEquals(await leftovers(topo), []);
      assert(await ping(topo, topo.relayUnderlay4), "the relay's address in the clear");
      assertEquals(await routeDevice(topo, topo.target4), topo.interfaces.client);
    });
  },
});

Deno.test({
  name: "e2e DNS: the relay's resolver through the tunnel, resolv.conf restored after a stop " +
    "and after SIGKILL plus restart",
  ...opts,
  async fn() {
    await withFullTunnelTopology("ft-dns", async (topo) => {
      // `ip netns exec` mounts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf.
      const dir = `/etc/netns/${topo.names.client}`;
      const resolvConf = `${dir}/resolv.conf`;
      const original =
        `# the client namespace's own resolver, on its LAN\nnameserver ${topo.relayUnderlay4}\n`;
      await Deno.mkdir(dir, { recursive: true });
      await Deno.writeTextFile(resolvConf, original);
      const state = `${topo.logDir}/state`;
      try {
        const dns = topo.spawn("target", [
          "deno",
          "run",
          "--allow-net",
          `${TOOLS}dns_server.ts`,
          "--port",
          "53",
          "--name",
          "vpn-test.example",
          "--a",
          topo.target4,
          "--aaaa",
          topo.target6,
        ], { name: "dns" });
        await dns.waitForLog(/"ready":true/, 15_000);
        const relay = await startRelay(topo, ["--dns", topo.target4, "--dns-search", "example"]);
        const start = (name: string) =>
          fullTunnelClient(topo, relay, name, ["--state-dir", state], {
            write: ["/etc/resolv.conf", state],
          });

        const first = await start("client");
        await first.process.waitForLog(/resolver set .*servers=198\.18\.1\.2/);
        assertEquals(
          await Deno.readTextFile(resolvConf).then((text) =>
            text.split("\n").filter((line) => !line.startsWith("#"))
          ),
          [`nameserver ${topo.target4}`, "search example", ""],
        );
        // A lookup in the client namespace, as any program would do it (glibc).
        const lookup = await topo.run("client", ["getent", "ahostsv4", "vpn-test"]);
        assertMatch(lookup.stdout, /^198\.18\.1\.2\s/);
        // It came through the tunnel: the server saw the relay's NAT address.
        const queries = (await Deno.readTextFile(`${topo.logDir}/dns.log`)).split("\n")
          .filter((line) => line.startsWith('{"query"')).map((line) => JSON.parse(line));
        assert(queries.length > 0, "the DNS server got no query");
        assert(queries.every((q) => q.from === NAT4), JSON.stringify(queries));
        assert(queries.some((q) => q.query === "vpn-test.example"), JSON.stringify(queries));

        first.process.kill("SIGTERM");
        assertEquals((await first.process.status).code, 0);
        assertEquals(await Deno.readTextFile(resolvConf), original, "after a stop");

        const second = await start("client-2");
        await second.process.waitForLog(/resolver set/);
        second.process.kill("SIGKILL");
        await second.process.status;
        assert((await Deno.readTextFile(resolvConf)).includes(`nameserver ${topo.target4}`));

        const third = await start("client-3");
        await third.process.waitForLog(
          new RegExp(`restored the resolver a previous client left .*pid=${second.process.pid}`),
        );
        await third.process.waitForLog(/resolver set/);
        third.process.kill("SIGTERM");
        assertEquals((await third.process.status).code, 0);
        assertEquals(await Deno.readTextFile(resolvConf), original, "after SIGKILL and restart");
        assertEquals(await leftovers(topo), []);
        const kept = [...Deno.readDirSync(state)].map((entry) => entry.name);
        assertEquals(kept, ["dns-host.lock"], "only the (unlocked) lock file stays");
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    });
  },
});
