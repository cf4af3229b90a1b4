/**
 * The relay's forwarding over real QUIC on 127.0.0.1 with an in-memory TUN:
 * address assignment, both directions, the RFC 9484 §7 checks, Packet Too
 * Big, pool release, the session limit and a 503 when a pool is exhausted,
 * the firewall around the relay host and between clients.
 * No root needed.
 */
import type { Authenticator } from "../../relay/sessions.ts";
import { nonZero } from "../support/counters.ts";
import { assert, assertEquals, assertRejects } from "../support/assert.ts";
import { dialTestServer, testCerts } from "../support/certs.ts";
import { InMemoryPacketDevice } from "../support/memory_tun.ts";
import { buildIpv4, buildIpv4Udp, buildIpv6Udp } from "../support/packet_builder.ts";
import { Relay } from "../../relay/relay.ts";
import { H3Connection } from "../../shared/h3/connection.ts";
import { createLogger, nullLogger } from "../../shared/log.ts";
import type { Logger } from "../../shared/log.ts";
import { expandConnectIpPath } from "../../shared/masque/connect_ip_request.ts";
import { ConnectIpError, openConnectIpSession } from "../../shared/masque/h3_connect_ip.ts";
import type { ConnectIpSession } from "../../shared/masque/connect_ip_session.ts";
import type { Capsule } from "../../shared/masque/capsule.ts";
import { formatIp, formatPrefix, parseIp, parsePrefix } from "../../shared/ip/ip_address.ts";
import { plainDnsServers } from "../../shared/masque/dns_capsule.ts";
import { until } from "../support/fake_quic.ts";
import { hopLimit, readDestination, readSource } from "../../shared/ip/ip_header.ts";
import type { HostService } from "../../shared/tunnel/host_firewall.ts";
import { formatHostService } from "../../shared/tunnel/host_firewall.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

async function startRelay(
  options: {
    routes?: string[];
    maxSessions?: number;
    /** `null`: no pool of that family (`--pool4 none`). */
    pool4?: string | null;
    pool6?: string | null;
    log?: Logger;
    allowRelayHost?: HostService[];
    allowClientToClient?: boolean;
    authenticator?: Authenticator;
    dns?: { servers: string[]; searchDomains: string[] };
  } = {},
) {
  const { certPem, keyPem } = await testCerts();
  const tun = new InMemoryPacketDevice({ name: "relay-tun", mtu: 1500 });
  const relay = new Relay(tun, {
    pool4: options.pool4 === null ? undefined : parsePrefix(options.pool4 ?? "198.18.100.0/24"),
    pool6: options.pool6 === null ? undefined : parsePrefix(options.pool6 ?? "fd00:100::/64"),
    routes: (options.routes ?? ["198.18.0.0/15", "fd00::/8"]).map(parsePrefix),
    maxSessions: options.maxSessions ?? 10,
    log: options.log ?? nullLogger,
    allowRelayHost: options.allowRelayHost,
    allowClientToClient: options.allowClientToClient,
    authenticator: options.authenticator,
    dns: options.dns && {
      servers: options.dns.servers.map((text) => parseIp(text)!),
      searchDomains: options.dns.searchDomains,
    },
  });
  relay.runTun();
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  const listener = endpoint.listen({ alpnProtocols: ["h3"], cert: certPem, key: keyPem });
  (async () => {
    for await (const incoming of listener) {
      Promise.resolve(incoming.accept()).then(
        (conn) => relay.acceptConnection(conn, "test"),
        () => {},
      );
    }
  })().catch(() => {});
  return {
    relay,
    tun,
    port: endpoint.addr.port,
    close() {
      relay.stop();
      tun.close();
      listener.stop();
      endpoint.close();
    },
  };
}

interface TestClient {
  session: ConnectIpSession;
  h3: H3Connection;
  v4: string;
  v6: string;
  capsules: Capsule[];
  received: Uint8Array[];
  nextPacket(): Promise<Uint8Array>;
}

async function connect(port: number): Promise<TestClient> {
  const conn = await dialTestServer(port);
  const h3 = new H3Connection(conn, { role: "client" });
  await h3.start();
  const session = await openConnectIpSession(h3, {
    authority: "localhost",
    path: expandConnectIpPath("/.well-known/masque/ip/{target}/{ipproto}/", {
      target: { kind: "any" },
      ipProtocol: "any",
    }),
    mode: "datagram",
  });
  const capsules: Capsule[] = [];
  const received: Uint8Array[] = [];
  let wake: (() => void) | undefined;
  session.run({
    onPacket: (p) => {
      received.push(p.slice());
      wake?.();
    },
    onCapsule: (c) => {
      capsules.push(c);
      wake?.();
    },
  });
  const waitFor = async (check: () => boolean) => {
    const deadline = Date.now() + 5000;
    while (!check()) {
      if (Date.now() > deadline) throw new Error("timed out");
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 50);
      });
    }
  };
  await waitFor(() => capsules.some((c) => c.type === "route_advertisement"));
  const assign = capsules.find((c) => c.type === "address_assign");
  assert(assign?.type === "address_assign");
  const [v4, v6] = assign.addresses.map((a) => formatIp(a.prefix.address));
  let taken = 0;
  return {
    session,
    h3,
    v4,
    v6,
    capsules,
    received,
    nextPacket: async () => {
      const index = taken++;
      await waitFor(() => received.length > index);
      return received[index];
    },
  };
}

Deno.test({
  name: "relay assigns addresses and routes, and forwards packets both ways to the right client",
  ...opts,
  async fn() {
    const server = await startRelay();
    const a = await connect(server.port);
    const b = await connect(server.port);
    try {
      assertEquals([a.v4, a.v6], ["198.18.100.2", "fd00:100::2"]);
      assertEquals([b.v4, b.v6], ["198.18.100.3", "fd00:100::3"]);
      const routes = a.capsules.find((c) => c.type === "route_advertisement");
      assert(routes?.type === "route_advertisement");
      assertEquals(
        routes.ranges.map((r) => `${formatIp(r.start)}-${formatIp(r.end)}`),
        ["198.18.0.0-198.19.255.255", "fd00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
      );

      // Client to world: the packet appears on the relay's TUN unchanged.
      const out = buildIpv4Udp({
        src: a.v4,
        dst: "198.18.1.2",
        srcPort: 1000,
        dstPort: 7,
        payload: new Uint8Array([1, 2, 3]),
      });
      a.session.sendPacket(out);
      assertEquals(await server.tun.nextWritten(), out);
      const out6 = buildIpv6Udp({ src: b.v6, dst: "fd00:0:0:2::2", srcPort: 1000, dstPort: 7 });
      b.session.sendPacket(out6);
      assertEquals(await server.tun.nextWritten(), out6);

      // World to client: each reply reaches the session owning its destination.
      const toB = buildIpv4Udp({ src: "198.18.1.2", dst: b.v4, srcPort: 7, dstPort: 1000 });
      const toA = buildIpv6Udp({ src: "fd00:0:0:2::2", dst: a.v6, srcPort: 7, dstPort: 1000 });
      server.tun.inject(toB, toA);
      assertEquals(await b.nextPacket(), toB);
      assertEquals(await a.nextPacket(), toA);
      assertEquals(server.relay.counters.value("tunnel_packets_total", "outbound"), 2);
    } finally {
      a.h3.close();
      b.h3.close();
      server.close();
    }
  },
});

Deno.test({
  name: "relay drops and counts spoofed, unrouted and malformed client packets",
  ...opts,
  async fn() {
    const server = await startRelay({ routes: ["198.18.1.0/24", "fd00::/8"] });
    const a = await connect(server.port);
    const b = await connect(server.port);
    try {
      const sends = [
        buildIpv4Udp({ src: b.v4, dst: "198.18.1.2", srcPort: 1, dstPort: 7 }), // B's address
        buildIpv4Udp({ src: a.v4, dst: "192.0.2.1", srcPort: 1, dstPort: 7 }), // not routed
        new Uint8Array([0x45, 0, 0, 10]), // truncated header
      ];
      for (const p of sends) a.session.sendPacket(p);
      const ok = buildIpv4Udp({ src: a.v4, dst: "198.18.1.2", srcPort: 1, dstPort: 7 });
      a.session.sendPacket(ok);
      // Only the good packet reaches the TUN; datagrams on one connection arrive in order here.
      assertEquals(await server.tun.nextWritten(), ok);
      const dropped = nonZero(server.relay.counters, "tunnel_packets_dropped_total", "inbound");
      assertEquals(dropped["source not assigned"], 1);
      assertEquals(dropped["destination not routed"], 1);
      assertEquals(dropped["malformed"], 1);
      assertEquals(server.tun.written.length, 1);
    } finally {
      a.h3.close();
      b.h3.close();
      server.close();
    }
  },
});

Deno.test({
  name: "relay answers a packet too big for the datagram limit with ICMP Fragmentation Needed",
  ...opts,
  async fn() {
    const server = await startRelay();
    const a = await connect(server.port);
    try {
      const limit = a.session.maxPacketSize; // the client's view; the relay's is the same size
      const big = buildIpv4({
        src: "198.18.1.2",
        dst: a.v4,
        protocol: 17,
        payload: new Uint8Array(limit + 100 - 20),
        dontFragment: true,
      });
      server.tun.inject(big);
      const icmp = await server.tun.nextWritten();
      // IPv4 header, then ICMP type 3 code 4 with the next-hop MTU in bytes 6-7.
      assertEquals(icmp[9], 1);
      assertEquals(formatIp(readSource(icmp)), a.v4);
      assertEquals(formatIp(readDestination(icmp)), "198.18.1.2");
      assertEquals([icmp[20], icmp[21]], [3, 4]);
      const mtu = (icmp[26] << 8) | icmp[27];
      assert(mtu > 1000 && mtu <= limit + 16, `next-hop MTU ${mtu}, limit ${limit}`);
      assertEquals(server.relay.counters.value("tunnel_packet_too_big_total", "outbound"), 1);
      assertEquals(a.received.length, 0);
    } finally {
      a.h3.close();
      server.close();
    }
  },
});

Deno.test({
  name:
    "relay returns addresses to the pool when a session ends and refuses sessions over the limit",
  ...opts,
  async fn() {
    const server = await startRelay({ maxSessions: 1 });
    const a = await connect(server.port);
    try {
      assertEquals(server.relay.poolUsage, { v4: 1, v6: 1 });
      const b = connect(server.port);
      await assertRejects(() => b, ConnectIpError, "the relay answered 503");
      a.h3.close();
      const deadline = Date.now() + 5000;
      while (server.relay.sessions.length > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assertEquals(server.relay.poolUsage, { v4: 0, v6: 0 });
      assertEquals(server.relay.counters.value("relay_sessions_closed_total"), 1);
      const c = await connect(server.port);
      assertEquals(formatPrefix(parsePrefix(c.v4)), "198.18.100.3/32");
      c.h3.close();
    } finally {
      server.close();
    }
  },
});

/** Waits until the relay has `count` open sessions. */
async function sessionsOpen(relay: Relay, count: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (relay.sessions.length !== count) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} sessions`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A UDP packet from `client` to the world and its reply, each checked on the other side. */
async function roundTrip(server: Awaited<ReturnType<typeof startRelay>>, client: TestClient) {
  const out = buildIpv4Udp({ src: client.v4, dst: "198.18.1.2", srcPort: 1000, dstPort: 7 });
  assertEquals(client.session.sendPacket(out), "sent");
  assertEquals(await server.tun.nextWritten(), out);
  const back = buildIpv6Udp({ src: "fd00:0:0:2::2", dst: client.v6, srcPort: 7, dstPort: 1000 });
  server.tun.inject(back);
  assertEquals(await client.nextPacket(), back);
}

Deno.test({
  name: "relay answers 503 with no session when an address pool is exhausted",
  ...opts,
  async fn(t) {
    await t.step(
      "IPv6 /126: two clients, the third refused, a new one gets a freed address",
      async () => {
        // fd00:100::/126 holds two clients: ::0 is the Subnet-Router anycast
        // address and ::1 the relay's own.
        const lines: string[] = [];
        const server = await startRelay({
          pool6: "fd00:100::/126",
          log: createLogger({ level: "info", write: (line) => lines.push(line) }),
        });
        const a = await connect(server.port);
        const b = await connect(server.port);
        let d: TestClient | undefined;
        try {
          assertEquals([a.v6, b.v6], ["fd00:100::2", "fd00:100::3"]);
          await assertRejects(() => connect(server.port), ConnectIpError, "the relay answered 503");
          assertEquals(server.relay.counters.value("relay_sessions_refused_total"), 1);
          assertEquals(server.relay.counters.value("relay_sessions_opened_total"), 2);
          assertEquals(server.relay.poolUsage, { v4: 2, v6: 2 });
          assertEquals(
            lines.filter((l) => /INFO .*request refused .*status=503/.test(l)).length,
            1,
          );
          assert(lines.some((l) => l.includes('reason="address pool exhausted"')));

          // The refusal did not disturb the two sessions.
          await roundTrip(server, a);
          await roundTrip(server, b);

          a.h3.close();
          await sessionsOpen(server.relay, 1);
          assertEquals(server.relay.poolUsage, { v4: 1, v6: 1 });
          d = await connect(server.port);
          assertEquals(d.v6, "fd00:100::2");
          await roundTrip(server, d);
          await roundTrip(server, b);
          assertEquals(server.relay.counters.value("relay_sessions_refused_total"), 1);
        } finally {
          a.h3.close();
          b.h3.close();
          d?.h3.close();
          server.close();
        }
      },
    );
    await t.step(
      "IPv4 /30: one client, the second refused, then served once it leaves",
      async () => {
        // 198.18.100.0/30: .0 network, .1 the relay, .3 broadcast; .2 is the
        // only client address.
        const server = await startRelay({ pool4: "198.18.100.0/30" });
        const a = await connect(server.port);
        let c: TestClient | undefined;
        try {
          assertEquals(a.v4, "198.18.100.2");
          await assertRejects(() => connect(server.port), ConnectIpError, "the relay answered 503");
          assertEquals(server.relay.counters.value("relay_sessions_refused_total"), 1);
          assertEquals(server.relay.poolUsage, { v4: 1, v6: 1 });
          await roundTrip(server, a);
          a.h3.close();
          await sessionsOpen(server.relay, 0);
          c = await connect(server.port);
          assertEquals(c.v4, "198.18.100.2");
          await roundTrip(server, c);
        } finally {
          a.h3.close();
          c?.h3.close();
          server.close();
        }
      },
    );
  },
});

Deno.test("relay's TUN address is the first host of each pool, with the pool's prefix length", () => {
  const relay = new Relay(new InMemoryPacketDevice({ name: "relay-tun", mtu: 1500 }), {
    pool4: parsePrefix("198.18.100.0/24"),
    pool6: parsePrefix("fd00:100::/64"),
    routes: [],
    maxSessions: 1,
    log: nullLogger,
  });
  // Not the network address (198.18.100.0/24): that is what `ip addr` showed
  // when the host bits were cleared.
  assertEquals(relay.gatewayAddresses.map(formatPrefix), ["198.18.100.1/24", "fd00:100::1/64"]);
});

for (const family of [4, 6] as const) {
  Deno.test({
    name: `relay with only an IPv${family} pool assigns, advertises and forwards IPv${family} only`,
    ...opts,
    async fn() {
      const server = await startRelay(family === 4 ? { pool6: null } : { pool4: null });
      const client = await connect(server.port);
      try {
        const assign = client.capsules.find((c) => c.type === "address_assign");
        assert(assign?.type === "address_assign");
        const own = family === 4 ? "198.18.100.2/32" : "fd00:100::2/128";
        assertEquals(assign.addresses.map((a) => formatPrefix(a.prefix)), [own]);
        const routes = client.capsules.find((c) => c.type === "route_advertisement");
        assert(routes?.type === "route_advertisement");
        // --route lists both families; a family without a pool is not advertised.
        assertEquals(
          routes.ranges.map((r) => `${formatIp(r.start)}-${formatIp(r.end)}`),
          [
            family === 4
              ? "198.18.0.0-198.19.255.255"
              : "fd00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
          ],
        );
        assertEquals(server.relay.gatewayAddresses.map(formatPrefix), [
          family === 4 ? "198.18.100.1/24" : "fd00:100::1/64",
        ]);
        assertEquals(server.relay.poolUsage, family === 4 ? { v4: 1, v6: 0 } : { v4: 0, v6: 1 });

        const address = own.split("/")[0];
        const out = family === 4
          ? buildIpv4Udp({ src: address, dst: "198.18.1.2", srcPort: 1000, dstPort: 7 })
          : buildIpv6Udp({ src: address, dst: "fd00:0:0:2::2", srcPort: 1000, dstPort: 7 });
        assertEquals(client.session.sendPacket(out), "sent");
        assertEquals(await server.tun.nextWritten(), out);
        const back = family === 4
          ? buildIpv4Udp({ src: "198.18.1.2", dst: address, srcPort: 7, dstPort: 1000 })
          : buildIpv6Udp({ src: "fd00:0:0:2::2", dst: address, srcPort: 7, dstPort: 1000 });
        server.tun.inject(back);
        assertEquals(await client.nextPacket(), back);
      } finally {
        client.h3.close();
        server.close();
      }
    },
  });
}

Deno.test({
  name: "relay drops and counts client packets to the relay host and to other clients",
  ...opts,
  async fn() {
    const server = await startRelay();
    const a = await connect(server.port);
    const b = await connect(server.port);
    try {
      // What the kernel of the relay host would report as its own besides the TUN.
      server.relay.setHostPrefixes(["198.18.0.1/32", "198.18.1.1/32"].map(parsePrefix));
      const toA = (dst: string, dstPort = 53) =>
        dst.includes(":")
          ? buildIpv6Udp({ src: a.v6, dst, srcPort: 5000, dstPort })
          : buildIpv4Udp({ src: a.v4, dst, srcPort: 5000, dstPort });
      const sends = [
        toA(formatIp(server.relay.gatewayAddresses[0].address)), // the relay's TUN address
        toA(formatIp(server.relay.gatewayAddresses[1].address)),
        toA("198.18.100.255"), // the pool's broadcast address
        toA("198.18.0.1"), // another address of the host
        toA("198.18.1.1"),
        toA("198.18.100.1"), // the pool's first host, reserved for the relay
        toA(b.v4), // another client
        toA(b.v6),
        buildIpv4Udp({ src: a.v4, dst: "198.18.1.2", srcPort: 5000, dstPort: 53, ttl: 0 }),
      ];
      for (const packet of sends) a.session.sendPacket(packet);
      const ok = toA("198.18.1.2");
      a.session.sendPacket(ok);
      // Datagrams on one connection arrive in order here: the last one is the only one written.
      assertEquals(await server.tun.nextWritten(), ok);
      assertEquals(server.tun.written.length, 1);
      assertEquals(nonZero(server.relay.counters, "tunnel_packets_dropped_total", "inbound"), {
        "relay host": 6,
        "client to client": 2,
        "zero TTL": 1,
      });
      assertEquals(b.received.length, 0);
      // An address the host gains later is closed as soon as the relay is told.
      server.relay.setHostPrefixes(["198.18.1.2/32"].map(parsePrefix));
      a.session.sendPacket(toA("198.18.1.2"));
      a.session.sendPacket(toA("198.18.0.1")); // gone from the host: forwarded again
      assertEquals(formatIp(readDestination(await server.tun.nextWritten())), "198.18.0.1");
      assertEquals(
        server.relay.counters.value("tunnel_packets_dropped_total", "inbound", "relay host"),
        7,
      );
    } finally {
      a.h3.close();
      b.h3.close();
      server.close();
    }
  },
});

Deno.test({
  name: "relay with allowed services and client to client: a service port and the other client",
  ...opts,
  async fn() {
    const server = await startRelay({
      allowRelayHost: [{ protocol: "udp", firstPort: 53, lastPort: 53 }],
      allowClientToClient: true,
    });
    const a = await connect(server.port);
    const b = await connect(server.port);
    try {
      const gateway = formatIp(server.relay.gatewayAddresses[0].address);
      const dns = buildIpv4Udp({ src: a.v4, dst: gateway, srcPort: 5000, dstPort: 53 });
      a.session.sendPacket(buildIpv4Udp({
        src: a.v4,
        dst: gateway,
        srcPort: 5000,
        dstPort: 22,
      }));
      a.session.sendPacket(dns);
      assertEquals(await server.tun.nextWritten(), dns);

      // A to B, delivered by the relay itself with the TTL / Hop Limit one lower (RFC 9484 §7).
      const toB = buildIpv4Udp({ src: a.v4, dst: b.v4, srcPort: 5000, dstPort: 7, ttl: 9 });
      a.session.sendPacket(toB);
      const got = await b.nextPacket();
      assertEquals(hopLimit(got), 8);
      assertEquals(got.subarray(20), toB.subarray(20));
      const toB6 = buildIpv6Udp({ src: a.v6, dst: b.v6, srcPort: 5000, dstPort: 7, ttl: 2 });
      a.session.sendPacket(toB6);
      assertEquals(hopLimit(await b.nextPacket()), 1);
      // TTL 1 cannot be decremented; a free pool address has no session.
      a.session.sendPacket(buildIpv4Udp({ src: a.v4, dst: b.v4, srcPort: 1, dstPort: 7, ttl: 1 }));
      a.session.sendPacket(
        buildIpv4Udp({ src: a.v4, dst: "198.18.100.77", srcPort: 1, dstPort: 7 }),
      );
      const back = buildIpv4Udp({ src: b.v4, dst: a.v4, srcPort: 7, dstPort: 5000 });
      b.session.sendPacket(back);
      assertEquals((await a.nextPacket()).subarray(20), back.subarray(20));
      const counters = server.relay.counters;
      assertEquals(counters.value("tunnel_packets_between_peers_total"), 3);
      assertEquals(nonZero(counters, "tunnel_packets_dropped_total", "inbound"), {
        "relay host": 1,
        "hop limit exceeded": 1,
        "destination not assigned": 1,
      });
      assertEquals(server.tun.written.length, 1, "nothing between clients went to the TUN");
    } finally {
      a.h3.close();
      b.h3.close();
      server.close();
    }
  },
});

Deno.test({
  name: "an authenticator's refusal is the answer, and nothing is reserved for it",
  ...opts,
  async fn() {
    const seen: string[] = [];
    const lines: string[] = [];
    const server = await startRelay({
      log: createLogger({ level: "info", write: (line) => lines.push(line) }),
      authenticator: {
        async authenticate(request) {
          await new Promise((resolve) => setTimeout(resolve, 5));
          seen.push(`${request.headers.find(([n]) => n === ":protocol")?.[1]}`);
          return { ok: false, status: 401, reason: "no credentials" };
        },
      },
    });
    try {
      await assertRejects(() => connect(server.port), ConnectIpError, "the relay answered 401");
      assertEquals(seen, ["connect-ip"]);
      assertEquals(server.relay.counters.value("relay_sessions_refused_total"), 1);
      assertEquals(server.relay.poolUsage, { v4: 0, v6: 0 });
      assertEquals(
        lines.filter((l) => /INFO .*request refused .*status=401 reason="no credentials"/.test(l))
          .length,
        1,
      );
    } finally {
      server.close();
    }
  },
});

Deno.test({
  name:
    "relay with --dns: DNS_ASSIGN after the routes, and its resolver on the gateway is reachable",
  ...opts,
  async fn() {
    const server = await startRelay({
      dns: { servers: ["198.18.100.1", "fd00:100::1"], searchDomains: ["corp.example"] },
    });
    const a = await connect(server.port);
    try {
      await until(() => a.capsules.length >= 3, "DNS_ASSIGN", 5000);
      // Addresses, routes, then DNS: never DNS before the routes (draft §7).
      assertEquals(a.capsules.map((c) => c.type), [
        "address_assign",
        "route_advertisement",
        "dns_assign",
      ]);
      const dns = a.capsules[2];
      assert(dns.type === "dns_assign");
      assertEquals(plainDnsServers(dns.configurations).map(formatIp), [
        "198.18.100.1",
        "fd00:100::1",
      ]);
      assertEquals(dns.configurations[0].internalDomains, [""]);
      assertEquals(dns.configurations[0].searchDomains, ["corp.example"]);
      // The resolver is the gateway: udp/53 and tcp/53 are implied, nothing else.
      assertEquals(server.relay.hostServices.map(formatHostService), ["udp/53", "tcp/53"]);
      const gateway = formatIp(server.relay.gatewayAddresses[0].address);
      const query = buildIpv4Udp({ src: a.v4, dst: gateway, srcPort: 5000, dstPort: 53 });
      a.session.sendPacket(buildIpv4Udp({ src: a.v4, dst: gateway, srcPort: 5000, dstPort: 22 }));
      a.session.sendPacket(query);
      assertEquals(await server.tun.nextWritten(), query);
      assertEquals(nonZero(server.relay.counters, "tunnel_packets_dropped_total", "inbound"), {
        "relay host": 1,
      });
    } finally {
      a.h3.close();
      server.close();
    }
  },
});
