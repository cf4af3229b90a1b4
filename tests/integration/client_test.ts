/**
 * The real `Client` against the real `Relay` over QUIC on 127.0.0.1, no
 * root: both TUNs are in memory and the client's netlink and policy routing
 * are fakes that record what they were asked to do. Packets both ways (an
 * ICMP echo out and its reply back), the assignment, the routing plan,
 * Packet Too Big for a packet larger than the session carries, DNS from the
 * relay, and a clean teardown.
 */
import { assert, assertEquals, assertRejects } from "../support/assert.ts";
import { dialTestServer } from "../support/certs.ts";
import { until, within } from "../support/fake_quic.ts";
import { InMemoryPacketDevice } from "../support/memory_tun.ts";
import { buildIcmpv4Echo, buildIpv6Udp } from "../support/packet_builder.ts";
import { startTestRelay } from "../support/relay_harness.ts";
import type { TestRelay } from "../support/relay_harness.ts";
import { Client } from "../../client/client.ts";
import type {
  ClientNetlink,
  ClientRouting,
  InstalledPlan,
  TunnelHooks,
} from "../../client/client.ts";
import type { RoutingPlan } from "../../shared/tunnel/full_tunnel.ts";
import { openH3ClientSession } from "../../client/transports.ts";
import { createFakeQuicPair } from "../support/fake_quic.ts";
import { H3Connection } from "../../shared/h3/connection.ts";
import { answerRequest } from "../../shared/masque/h3_connect_ip.ts";
import type { AnswerResult } from "../../shared/masque/h3_connect_ip.ts";
import { plainDnsConfiguration, plainDnsServers } from "../../shared/masque/dns_capsule.ts";
import { CounterRegistry } from "../../shared/counters.ts";
import { SessionCounters } from "../../shared/masque/connect_ip_session.ts";
import { prefixesToRanges } from "../../shared/tunnel/routes.ts";
import { createLogger, nullLogger } from "../../shared/log.ts";
import { formatIp, formatPrefix, parseIp, parsePrefix } from "../../shared/ip/ip_address.ts";
import type { IpPrefix } from "../../shared/ip/ip_address.ts";
import { readDestination, readSource } from "../../shared/ip/ip_header.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** Netlink that records each call as a line. */
class FakeNetlink implements ClientNetlink {
  readonly calls: string[] = [];
  setLinkMtu(name: string, mtu: number) {
    this.calls.push(`mtu ${name} ${mtu}`);
  }
  setLinkTxQueueLength(name: string, packets: number) {
    this.calls.push(`txqueuelen ${name} ${packets}`);
  }
  addAddress(name: string, prefix: IpPrefix) {
    this.calls.push(`address ${name} ${formatPrefix(prefix)}`);
  }
  deleteAddress(name: string, prefix: IpPrefix) {
    this.calls.push(`address del ${name} ${formatPrefix(prefix)}`);
  }
  setLinkUp(name: string) {
    this.calls.push(`up ${name}`);
  }
}

/** A plan's routes and rules as lines: `tunnel 198.18.1.0/24`, `32763 v4 lookup 51900`. */
function planLines(plan: RoutingPlan): string[] {
  return [
    ...plan.routes.map((r) => `${r.type} ${formatPrefix(r.destination)}`),
    ...plan.rules.map((r) =>
      `${r.priority} v${r.family} ${r.destination ? `to ${formatPrefix(r.destination)} ` : ""}` +
      `lookup ${r.table}`
    ),
  ];
}

/** Policy routing that records each call, and refuses to install when told to. */
class FakeRouting implements ClientRouting {
  readonly calls: string[] = [];
  installed: RoutingPlan | undefined;
  refuse: string | undefined;
  removeStale() {
    this.calls.push("remove stale");
    return { rules: [], routes: 0 };
  }
  install(plan: RoutingPlan, tunName: string): InstalledPlan {
    if (this.refuse) throw new Error(this.refuse);
    this.calls.push(`install ${tunName}: ${planLines(plan).join(", ")}`);
    this.installed = plan;
    // deno-lint-ignore no-this-alias
    const routing = this;
    return {
      get plan() {
        return routing.installed!;
      },
      update(next) {
        routing.calls.push(`update: ${planLines(next).join(", ")}`);
        routing.installed = next;
      },
      remove() {
        routing.calls.push("remove");
        routing.installed = undefined;
        return [];
      },
    };
  }
}

/** A Client for `relay` with an in-memory TUN and fake netlink and routing. */
function clientFor(
  relay: TestRelay,
  options: {
    mode?: "datagram" | "stream";
    routes?: string[];
    hooks?: TunnelHooks[];
    dns?: "relay" | "off" | string[];
    reconnect?: boolean;
    /** More relays to fail over to, after `relay`. */
    more?: TestRelay[];
    /** Where `relay` is now (a relay restarted elsewhere, as far as the client can tell). */
    port?: () => number;
  } = {},
) {
  const netlink = new FakeNetlink();
  const routing = new FakeRouting();
  const tuns: InMemoryPacketDevice[] = [];
  const lines: string[] = [];
  const client = new Client({
    relays: [relay, ...(options.more ?? [])].map((r, i) => ({
      name: `127.0.0.1:${r.port}`,
      connect: () => dialTestServer(i === 0 && options.port ? options.port() : r.port),
      authority: "localhost",
      template: "/.well-known/masque/ip/{target}/{ipproto}/",
    })),
    openTun: (name, { mtu }) => {
      const tun = new InMemoryPacketDevice({ name, mtu });
      tuns.push(tun);
      return tun;
    },
    netlink,
    routing,
    dns: Array.isArray(options.dns) ? options.dns.map((text) => parseIp(text)!) : options.dns,
    tunName: "mvpn-test",
    mode: options.mode ?? "datagram",
    mtu: 1280,
    routes: (options.routes ?? ["198.18.1.0/24"]).map(parsePrefix),
    log: createLogger({ level: "debug", write: (line) => lines.push(line) }),
    hooks: options.hooks,
    reconnect: options.reconnect,
    timing: { pmtuWaitMs: 0, backoff: () => 50, addressRequestWaitMs: 1000 },
  });
  return { client, netlink, routing, tuns, lines };
}

/** Runs `fn` with a relay and a started client for it, then stops both. */
async function withClient(
  options: Parameters<typeof clientFor>[1],
  fn: (relay: TestRelay, client: ReturnType<typeof clientFor>) => Promise<void>,
): Promise<void> {
  const relay = await startTestRelay();
  const client = clientFor(relay, options);
  try {
    await within(client.client.start(), "the client's start", 10_000);
    await fn(relay, client);
  } finally {
    await client.client.stop();
    await relay.close();
  }
}

for (const mode of ["datagram", "stream"] as const) {
  Deno.test({
    name:
      `Client and Relay over QUIC (${mode} mode): assignment, routes, an echo both ways, teardown`,
    ...opts,
    async fn() {
      const relay = await startTestRelay();
      const hookCalls: string[] = [];
      const { client, netlink, routing, tuns } = clientFor(relay, {
        mode,
        hooks: [{
          prepare: () => {
            hookCalls.push(`prepare, routing: ${routing.calls.join("; ")}`);
          },
          up: (tunnel) => {
            hookCalls.push(`up ${tunnel.name} ${tunnel.routes.map(formatPrefix).join(",")}`);
          },
          down: (reason) => {
            hookCalls.push(`down ${reason}`);
          },
        }],
      });
      try {
        await within(client.start(), "the client's start", 10_000);
        // The relay assigned the first address of each pool; the client
        // brought its link up with them and routed what it asked for.
        assertEquals(tuns.length, 1);
        const tun = tuns[0];
        assertEquals(netlink.calls, [
          "mtu mvpn-test 1280",
          "txqueuelen mvpn-test 2000",
          "address mvpn-test 198.18.100.2/32",
          "address mvpn-test fd00:100::2/128",
          "up mvpn-test",
        ]);
        // The routes go into the client's own table, with wg-quick's rules;
        // what a killed client left was cleared before anything else.
        assertEquals(routing.calls, [
          "remove stale",
          "install mvpn-test: tunnel 198.18.1.0/24, 32762 v4 lookup 254, 32763 v4 lookup 51900",
        ]);
        assertEquals(hookCalls, [
          "prepare, routing: remove stale",
          "up mvpn-test 198.18.1.0/24",
        ]);
        assertEquals(relay.relay.sessions.length, 1);
        assertEquals(relay.relay.sessions[0].session.mode, mode);

        // Out: an echo request the client's kernel would route into the TUN.
        const request = buildIcmpv4Echo({ src: "198.18.100.2", dst: "198.18.1.2", sequence: 7 });
        tun.inject(request);
        assertEquals(await relay.tun.nextWritten(5000), request);
        // Back: the target's reply, routed by the relay's kernel into its TUN.
        const reply = buildIcmpv4Echo({
          src: "198.18.1.2",
          dst: "198.18.100.2",
          sequence: 7,
          reply: true,
        });
        relay.tun.inject(reply);
        assertEquals(await tun.nextWritten(5000), reply);

        const counters = client.counters;
        assertEquals(counters.value("tunnel_packets_total", "outbound"), 1);
        assertEquals(counters.value("tunnel_packets_total", "inbound"), 1);
        assertEquals(relay.relay.counters.value("tunnel_packets_total", "inbound"), 1);
        assertEquals(relay.relay.counters.value("tunnel_packets_total", "outbound"), 1);
        const status = client.status();
        assertEquals([status.tun, status.mtu, status.mode], ["mvpn-test", 1280, mode]);

        await client.stop();
        // Teardown: the hook's down, the route removed, the TUN closed, the
        // session ended at the relay.
        assertEquals(hookCalls.slice(1), ["up mvpn-test 198.18.1.0/24", "down user"]);
        assertEquals(routing.calls.at(-1), "remove");
        assertEquals(routing.installed, undefined);
        assert(tun.closed, "the TUN is closed");
        await until(
          () => relay.relay.sessions.length === 0,
          "the relay to close the session",
          5000,
        );
        assertEquals(relay.relay.poolUsage, { v4: 0, v6: 0 });
      } finally {
        await client.stop();
        await relay.close();
      }
    },
  });
}

Deno.test({
  name: "Client: a packet larger than the session carries gets Packet Too Big back into its TUN",
  ...opts,
  fn: () =>
    withClient({ routes: ["fd00:2::/64"] }, async (relay, { client, tuns }) => {
      const limit = client.session!.session.maxPacketSize;
      const big = buildIpv6Udp({
        src: "fd00:100::2",
        dst: "fd00:2::5",
        srcPort: 1,
        dstPort: 2,
        payload: new Uint8Array(limit + 10 - 48),
      });
      tuns[0].inject(big);
      const icmp = await tuns[0].nextWritten(5000);
      assertEquals([icmp[6], icmp[40]], [58, 2]); // ICMPv6 Packet Too Big (RFC 4443 §3.2)
      assertEquals(new DataView(icmp.buffer).getUint32(44), limit);
      assertEquals(formatIp(readSource(icmp)), "fd00:2::5");
      assertEquals(formatIp(readDestination(icmp)), "fd00:100::2");
      assertEquals(client.counters.value("tunnel_packet_too_big_total", "outbound"), 1);
      assertEquals(relay.tun.written.length, 0);
    }),
});

Deno.test({
  name: "Client: without reconnect, the relay ending the session ends the tunnel, with why",
  ...opts,
  fn: () =>
    withClient({ reconnect: false }, async (relay, { client }) => {
      await relay.relay.sessions[0].session.close();
      const why = await within(client.ended, "the end", 5000);
      assertEquals(why, "session ended: the relay ended the request stream (FIN, no error code)");
    }),
});

Deno.test({
  name: "Client: a setup step that fails undoes the steps before it",
  ...opts,
  async fn() {
    const relay = await startTestRelay();
    const downs: string[] = [];
    const { client, routing, tuns } = clientFor(relay, {
      routes: ["198.18.1.0/24", "198.18.2.0/24"],
      hooks: [{ down: (reason) => void downs.push(reason) }],
    });
    routing.refuse = "Cannot add route 198.18.2.0/24 dev mvpn-test table 51900: refused";
    try {
      await assertRejects(() => client.start(), Error, "Cannot add route 198.18.2.0/24");
      assert(tuns[0].closed, "the TUN is closed");
      // The hooks hear that it failed (a kill switch stays in place then).
      assertEquals(downs, ["failure"]);
      await until(() => relay.relay.sessions.length === 0, "the relay to close the session", 5000);
    } finally {
      await client.stop();
      await relay.close();
    }
  },
});

/** Hooks that keep every TunnelInfo they are given. */
function recordingHooks() {
  const seen: {
    what: string;
    dns?: { servers: readonly string[]; searchDomains: readonly string[] };
  }[] = [];
  const hooks: TunnelHooks = {
    up: (tunnel) => void seen.push({ what: "up", dns: tunnel.dns }),
    update: (tunnel) => void seen.push({ what: "update", dns: tunnel.dns }),
  };
  return { seen, hooks, last: () => seen.at(-1)?.dns };
}

Deno.test({
  name:
    "Client: DNS from the relay's DNS_ASSIGN goes to the hooks, with a route and rule to the server",
  ...opts,
  async fn() {
    const relay = await startTestRelay({
      // A resolver outside the advertised routes: the client adds a host route to it.
      dns: { servers: ["198.51.100.53"], searchDomains: ["corp.example"] },
      routes: ["198.18.0.0/15"],
    });
    const recorded = recordingHooks();
    const { client, routing } = clientFor(relay, { routes: [], hooks: [recorded.hooks] });
    try {
      await within(client.start(), "the client's start", 10_000);
      await until(() => recorded.last() !== undefined, "the DNS settings", 5000);
      await client.settled();
      assertEquals(recorded.last(), {
        servers: ["198.51.100.53"],
        searchDomains: ["corp.example"],
      });
      assertEquals(planLines(routing.installed!), [
        "tunnel 198.18.0.0/15",
        "tunnel 198.51.100.53/32",
        "32760 v4 to 198.51.100.53/32 lookup 51900",
        "32762 v4 lookup 254",
        "32763 v4 lookup 51900",
      ]);
      assertEquals(client.status().dns, recorded.last());
    } finally {
      await client.stop();
      await relay.close();
    }
  },
});

/** Opens a session on `relay` that holds its first addresses (198.18.100.2, fd00:100::2). */
async function takeFirstAddresses(relay: TestRelay) {
  const other = clientFor(relay, { reconnect: false });
  await within(other.client.start(), "the other client's start", 10_000);
  return other.client;
}

Deno.test({
  name: "Client: survives a relay restart and gets its previous addresses back",
  ...opts,
  async fn() {
    let relay = await startTestRelay();
    const other = await takeFirstAddresses(relay);
    // Deno keeps a closed endpoint's port while its connections live, so the
    // restarted relay gets a new port; the client's relay entry dials it.
    const { client, netlink, routing, tuns } = clientFor(relay, { port: () => relay.port });
    try {
      await within(client.start(), "the client's start", 10_000);
      assertEquals(client.host.addresses.map(formatPrefix), ["198.18.100.3/32", "fd00:100::3/128"]);
      await other.stop();
      const callsBefore = netlink.calls.length;
      const routingBefore = routing.calls.length;

      // Gone; while it is, packets for the tunnel are dropped and counted.
      await relay.close();
      await until(() => client.state === "reconnecting", "the client to notice", 10_000);
      const request = buildIcmpv4Echo({ src: "198.18.100.3", dst: "198.18.1.2", sequence: 1 });
      tuns[0].inject(request);
      await until(
        () => client.counters.value("tunnel_packets_dropped_total", "outbound", "no session") === 1,
        "the drop to be counted",
        5000,
      );

      // Back with a fresh pool, which would hand out .2 first.
      relay = await startTestRelay();
      await until(() => client.reconnects[0]?.downMs !== undefined, "a reconnect", 10_000);
      assertEquals(client.host.addresses.map(formatPrefix), ["198.18.100.3/32", "fd00:100::3/128"]);
      assertEquals(relay.relay.sessions[0].addresses.map(formatPrefix), [
        "198.18.100.3/32",
        "fd00:100::3/128",
      ]);
      assertEquals(relay.relay.counters.value("relay_addresses_granted_total"), 2);
      // Nothing changed on the TUN: no address or routing call since the first bring-up.
      assertEquals(netlink.calls.slice(callsBefore), []);
      assertEquals(routing.calls.slice(routingBefore), []);
      // relay.close() sends GOAWAY and closes at once: either may be seen first.
      const [record] = client.reconnects;
      assert(["goaway", "connection closed"].includes(record.cause), record.cause);
      assertEquals(record.sameAddresses, true);
      assertEquals(client.counters.value("client_reconnects_total"), 1);

      // Traffic flows again, both ways.
      const again = buildIcmpv4Echo({ src: "198.18.100.3", dst: "198.18.1.2", sequence: 2 });
      tuns[0].inject(again);
      assertEquals(await relay.tun.nextWritten(5000), again);
      const reply = buildIcmpv4Echo({
        src: "198.18.1.2",
        dst: "198.18.100.3",
        sequence: 2,
        reply: true,
      });
      relay.tun.inject(reply);
      assertEquals(await tuns[0].nextWritten(5000), reply);
    } finally {
      await client.stop();
      await other.stop();
      await relay.close();
    }
  },
});

Deno.test({
  name: "Client: a new assignment after a reconnect changes the TUN's addresses in place",
  ...opts,
  async fn() {
    let relay = await startTestRelay();
    const { client, netlink } = clientFor(relay, { port: () => relay.port });
    try {
      await within(client.start(), "the client's start", 10_000);
      const callsBefore = netlink.calls.length;
      await relay.close();
      relay = await startTestRelay({ pool4: "198.18.101.0/24" });
      await until(() => client.reconnects[0]?.downMs !== undefined, "a reconnect", 10_000);
      assertEquals(client.host.addresses.map(formatPrefix), ["fd00:100::2/128", "198.18.101.2/32"]);
      // The new address first, then the old one goes; routes and link untouched.
      assertEquals(netlink.calls.slice(callsBefore), [
        "address mvpn-test 198.18.101.2/32",
        "address del mvpn-test 198.18.100.2/32",
      ]);
      assertEquals(client.reconnects[0].sameAddresses, false);
      assert(client.status().state === "up");
    } finally {
      await client.stop();
      await relay.close();
    }
  },
});

Deno.test({
  name: "Client: --dns ADDR replaces the relay's nameservers, --dns off ignores them",
  ...opts,
  async fn() {
    const relay = await startTestRelay({ dns: { servers: ["198.18.1.53"] } });
    try {
      const own = recordingHooks();
      const mine = clientFor(relay, { dns: ["198.18.1.99"], hooks: [own.hooks] });
      await within(mine.client.start(), "the client's start", 10_000);
      await until(() => mine.client.session?.session.stats.capsulesIn === 3, "DNS_ASSIGN", 5000);
      await mine.client.settled();
      assertEquals(own.last(), { servers: ["198.18.1.99"], searchDomains: [] });
      await mine.client.stop();

      const off = recordingHooks();
      const none = clientFor(relay, { dns: "off", hooks: [off.hooks] });
      await within(none.client.start(), "the client's start", 10_000);
      await until(() => none.client.session?.session.stats.capsulesIn === 3, "DNS_ASSIGN", 5000);
      await none.client.settled();
      assertEquals(off.seen.map((s) => s.dns), off.seen.map(() => undefined));
      assert(!planLines(none.routing.installed!).some((line) => line.startsWith("32760")));
      await none.client.stop();
    } finally {
      await relay.close();
    }
  },
});

Deno.test({
  name: "Client: a reconnect the relay refuses (404: credentials not accepted) ends the client",
  ...opts,
  async fn() {
    let relay = await startTestRelay();
    const { client, lines } = clientFor(relay, { port: () => relay.port });
    try {
      await within(client.start(), "the client's start", 10_000);
      await relay.close();
      // Back, but this client's credentials are no longer accepted (a user removed).
      relay = await startTestRelay({
        authenticator: {
          authenticate: () =>
            Promise.resolve({ ok: false, status: 404, reason: "not authenticated: unknown user" }),
        },
      });
      const why = await within(client.ended, "the client to end", 10_000);
      assert(why.startsWith("reconnect refused: "), why);
      assert(why.includes("the relay answered 404"), why);
      // Once: no retry that the relay's failure limiter would count.
      await new Promise((resolve) => setTimeout(resolve, 300));
      assertEquals(lines.filter((line) => /INFO +connecting /.test(line)).length, 2);
      assertEquals(client.reconnects.length, 1);
    } finally {
      await client.stop();
      await relay.close();
    }
  },
});

Deno.test({
  name: "Client: GOAWAY makes it reconnect at once (to the next relay), without an error",
  ...opts,
  async fn() {
    const first = await startTestRelay();
    const second = await startTestRelay();
    const { client, tuns } = clientFor(first, { more: [second] });
    try {
      await within(client.start(), "the client's start", 10_000);
      assertEquals(first.relay.sessions.length, 1);
      let ended = false;
      client.ended.then(() => ended = true);
      await first.relay.drain();
      // The draining relay refuses new connections, so the client goes to the next one.
      await until(
        () => second.relay.sessions.length === 1,
        "a session on the second relay",
        10_000,
      );
      await until(() => first.relay.sessions.length === 0, "the old session to close", 5000);
      assertEquals(client.state, "up");
      assertEquals(client.reconnects.map((r) => [r.cause, r.relay]), [
        ["goaway", `127.0.0.1:${second.port}`],
      ]);
      // The second relay's pool is fresh: it granted the addresses the client had.
      assertEquals(second.relay.sessions[0].addresses.map(formatPrefix), [
        "198.18.100.2/32",
        "fd00:100::2/128",
      ]);
      const request = buildIcmpv4Echo({ src: "198.18.100.2", dst: "198.18.1.2", sequence: 3 });
      tuns[0].inject(request);
      assertEquals(await second.tun.nextWritten(5000), request);
      assert(!ended, "the client did not end");
    } finally {
      await client.stop();
      await first.close();
      await second.close();
    }
  },
});

Deno.test({
  name: "Client: a refusal's reason is shown, and no session is held when the TUN cannot open",
  ...opts,
  async fn() {
    const relay = await startTestRelay({ maxSessions: 1 });
    const other = await takeFirstAddresses(relay);
    const { client } = clientFor(relay);
    try {
      await assertRejects(
        () => client.start(),
        Error,
        "Cannot open connect-ip session: the relay answered 503: session limit reached",
      );
    } finally {
      await client.stop();
      await other.stop();
    }
    // A TUN that cannot open: the relay is never asked.
    const refused = new Client({
      relays: [{
        name: "r",
        connect: () => dialTestServer(relay.port),
        authority: "localhost",
        template: "/.well-known/masque/ip/{target}/{ipproto}/",
      }],
      openTun: () => {
        throw new Error("Cannot create TUN mvpn-test: Operation not permitted (EPERM)");
      },
      netlink: new FakeNetlink(),
      routing: new FakeRouting(),
      tunName: "mvpn-test",
      mode: "datagram",
      mtu: 1280,
      routes: [],
      log: createLogger({ level: "error", write: () => {} }),
    });
    try {
      const sessionsBefore = relay.relay.counters.value("relay_sessions_opened_total");
      await assertRejects(() => refused.start(), Error, "Operation not permitted");
      assertEquals(relay.relay.counters.value("relay_sessions_opened_total"), sessionsBefore);
      assertEquals(relay.relay.counters.value("relay_connections_accepted_total"), 2);
    } finally {
      await refused.stop();
      await relay.close();
    }
  },
});

Deno.test({
  name: "ClientSession ignores a DNS_ASSIGN sent before the routes (draft security section)",
  ...opts,
  async fn() {
    const [clientConn, serverConn] = createFakeQuicPair();
    const answered: Promise<AnswerResult>[] = [];
    const server = new H3Connection(serverConn, {
      role: "server",
      onRequest: (request) => void answered.push(answerRequest(request)),
    });
    const dns = (address: string) => ({
      type: "dns_assign" as const,
      configurations: [plainDnsConfiguration([parseIp(address)!], [])],
    });
    try {
      await server.start();
      const counters = new CounterRegistry();
      const opening = openH3ClientSession(
        () =>
          Promise.resolve(
            Object.assign(clientConn, { remoteAddr: { hostname: "::ffff:198.18.0.1", port: 443 } }),
          ),
        {
          authority: "localhost",
          path: "/.well-known/masque/ip/*/*/",
          mode: "datagram",
          log: nullLogger,
          counters,
          sessionCounters: new SessionCounters(counters),
        },
      );
      await until(() => answered.length === 1, "the request", 5000);
      const session = (await answered[0]).session!;
      const client = await opening;
      assertEquals(formatIp(client.relayAddress!), "198.18.0.1"); // unmapped
      const updates: string[] = [];
      const { assignment } = client.run(() => {}, 5000, (what) => void updates.push(what));
      // A resolver outside the tunnel before any route: ignored. Then the usual order.
      await session.sendCapsule(dns("203.0.113.53"));
      await session.sendCapsule({
        type: "address_assign",
        addresses: [{ requestId: 0, prefix: parsePrefix("198.18.100.2/32") }],
      });
      await session.sendCapsule({
        type: "route_advertisement",
        ranges: prefixesToRanges([parsePrefix("0.0.0.0/0")]),
      });
      await within(assignment, "the assignment", 5000);
      await session.sendCapsule(dns("198.18.100.1"));
      await until(() => updates.length === 1, "the DNS update", 5000);
      assertEquals(client.dnsIgnored, 1);
      assertEquals(updates, ["dns"]);
      assertEquals(plainDnsServers(client.dns!).map(formatIp), ["198.18.100.1"]);
      session.run({ onPacket: () => {} });
      await client.close();
    } finally {
      server.close();
    }
  },
});

Deno.test({
  name: "Client: a --route outside what the relay advertises gets a warning",
  ...opts,
  fn: () =>
    withClient({ routes: ["198.18.1.0/24", "10.9.0.0/16"] }, (_relay, { lines }) => {
      const warnings = lines.filter((line) => line.includes("WARN"));
      assertEquals(warnings.length, 1, warnings.join("\n"));
      assert(
        warnings[0].includes(
          "--route 10.9.0.0/16 is outside what the relay advertises (198.18.0.0/15, fd00::/8): " +
            "it is not routed through the tunnel",
        ),
        warnings[0],
      );
      return Promise.resolve();
    }),
});
