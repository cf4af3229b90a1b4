/**
 * The real `Client` against the real `Relay` over HTTP/2 and WebTransport
 * (TLS over TCP on 127.0.0.1, `node:http2` and `@fails-components/
 * webtransport`), no root: in-memory TUNs and fake netlink. Each
 * transport: ADDRESS_ASSIGN and ROUTE_ADVERTISEMENT, an echo both ways, a
 * large packet (stream transports carry up to 65535 bytes), the relay's
 * status naming the transport. `--transport auto`: with QUIC unreachable
 * the client falls back to HTTP/2 within the handshake limit, and moves
 * back to HTTP/3 with the same addresses once QUIC works.
 */
import { noRouting } from "../support/fake_routing.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { testCerts } from "../support/certs.ts";
import { until, within } from "../support/fake_quic.ts";
import { InMemoryPacketDevice } from "../support/memory_tun.ts";
import { buildIcmpv4Echo, buildIpv6Udp } from "../support/packet_builder.ts";
import { startTestRelay } from "../support/relay_harness.ts";
import type { TestRelay } from "../support/relay_harness.ts";
import { dialTestServer } from "../support/certs.ts";
import { Client } from "../../client/client.ts";
import type { ClientNetlink, DialedConnection, TransportChoice } from "../../client/client.ts";
import { dialH2 } from "../../client/transports.ts";
import { dialWebTransport } from "../../client/webtransport.ts";
import { createLogger } from "../../shared/log.ts";
import { formatPrefix, parsePrefix } from "../../shared/ip/ip_address.ts";
import type { IpPrefix } from "../../shared/ip/ip_address.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

class FakeNetlink implements ClientNetlink {
  readonly calls: string[] = [];
  setLinkMtu(name: string, mtu: number) {
    this.calls.push(`mtu ${name} ${mtu}`);
  }
  setLinkTxQueueLength() {}
  addAddress(name: string, prefix: IpPrefix) {
    this.calls.push(`address ${name} ${formatPrefix(prefix)}`);
  }
  setLinkUp() {}
  deleteAddress() {}
}

/** A Client for `relay` on `transport`; `quic` replaces the QUIC dialer (to fail it). */
async function clientFor(
  relay: TestRelay,
  transport: TransportChoice,
  options: {
    quic?: () => Promise<DialedConnection>;
    timing?: ConstructorParameters<typeof Client>[0]["timing"];
  } = {},
) {
  const { caPem } = await testCerts();
  const lines: string[] = [];
  const log = createLogger({ level: "debug", write: (line) => lines.push(line) });
  const tcp = {
    hostname: "127.0.0.1",
    port: relay.tcpPort,
    serverName: "localhost",
    caCerts: [caPem],
    log,
  };
  const tuns: InMemoryPacketDevice[] = [];
  const netlink = new FakeNetlink();
  const client = new Client({
    connect: options.quic ?? (() => dialTestServer(relay.port)),
    connectH2: () => dialH2(tcp),
    connectWebTransport: (path) => dialWebTransport(tcp, path),
    transport,
    openTun: (name, { mtu }) => {
      const tun = new InMemoryPacketDevice({ name, mtu });
      tuns.push(tun);
      return tun;
    },
    netlink,
    routing: noRouting(),
    tunName: "mvpn-test",
    authority: "localhost",
    template: "/.well-known/masque/ip/{target}/{ipproto}/",
    mode: "datagram",
    mtu: "auto",
    routes: ["198.18.1.0/24", "fd00:2::/64"].map(parsePrefix),
    log,
    timing: { pmtuWaitMs: 0, ...options.timing },
  });
  return { client, tuns, netlink, lines };
}

/** The next packet written to `tun`, as a plain Uint8Array (node:http2 hands out Buffers). */
async function written(tun: InMemoryPacketDevice): Promise<Uint8Array> {
  return new Uint8Array(await tun.nextWritten(5000));
}

/** An echo request out through the tunnel and its reply back. */
async function echo(relay: TestRelay, tun: InMemoryPacketDevice, sequence: number) {
  const request = buildIcmpv4Echo({ src: "198.18.100.2", dst: "198.18.1.2", sequence });
  tun.inject(request);
  assertEquals(await written(relay.tun), request);
  const reply = buildIcmpv4Echo({
    src: "198.18.1.2",
    dst: "198.18.100.2",
    sequence,
    reply: true,
  });
  relay.tun.inject(reply);
  assertEquals(await written(tun), reply);
}

for (const transport of ["h2", "webtransport"] as const) {
  Deno.test({
    name: `Client and Relay over ${transport}: assignment, routes, packets both ways, teardown`,
    ...opts,
    async fn() {
      const relay = await startTestRelay({ tcp: true });
      const { client, tuns, netlink } = await clientFor(relay, transport);
      try {
        await within(client.start(), "the client's start", 15_000);
        assertEquals(client.transport, { name: transport, reason: `--transport ${transport}` });
        // ADDRESS_ASSIGN and ROUTE_ADVERTISEMENT arrived: addresses and the routes asked for.
        assertEquals(netlink.calls, [
          "mtu mvpn-test 1500",
          "address mvpn-test 198.18.100.2/32",
          "address mvpn-test fd00:100::2/128",
        ]);
        // The routes asked for, through the TUN (policy routing, issue 14); the relay's
        // endpoint is TCP, for the kill switch.
        const info = client.host.info!;
        assertEquals(
          info.plan.routes.filter((r) => r.type === "tunnel").map((r) =>
            formatPrefix(r.destination)
          ),
          ["198.18.1.0/24", "fd00:2::/64"],
        );
        assertEquals(info.relay.protocol, "tcp");
        assertEquals(info.relay.port, relay.tcpPort);
        const [entry] = relay.relay.sessions;
        assertEquals(entry.transport, transport);
        assertEquals(
          (relay.relay.status().sessions as { transport: string }[])[0].transport,
          transport,
        );
        assertEquals(relay.relay.counters.value("relay_sessions_by_transport", transport), 1);
        const tun = tuns[0];
        await echo(relay, tun, 1);
        // A stream transport carries a packet larger than any QUIC datagram.
        const big = buildIpv6Udp({
          src: "fd00:100::2",
          dst: "fd00:2::5",
          srcPort: 1,
          dstPort: 2,
          payload: new Uint8Array(3000).fill(7),
        });
        tun.inject(big);
        assertEquals(await written(relay.tun), big);
        const status = client.status();
        assertEquals([status.transport, status.mtu], [transport, 1500]);
        assertEquals(client.counters.value("client_transport", transport), 1);
        await client.stop();
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
  name:
    "--transport auto: no QUIC handshake in time -> HTTP/2; QUIC back -> HTTP/3, same addresses",
  ...opts,
  async fn() {
    const relay = await startTestRelay({ tcp: true });
    // QUIC that never completes its handshake (UDP dropped), until `blocked` is lifted.
    let blocked = true;
    const quic = () =>
      blocked ? new Promise<DialedConnection>(() => {}) : dialTestServer(relay.port);
    const { client, tuns, lines } = await clientFor(relay, "auto", {
      quic,
      timing: { h3HandshakeTimeoutMs: 300, h3RetryIntervalMs: 500 },
    });
    try {
      const started = Date.now();
      await within(client.start(), "the client's start", 10_000);
      assert(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
      assertEquals(client.transport.name, "h2");
      assertEquals(
        client.transport.reason,
        "auto: HTTP/2 because HTTP/3 failed (no QUIC handshake within 0.3 s)",
      );
      assertEquals(client.counters.value("client_transport_fallbacks_total"), 1);
      const tun = tuns[0];
      await echo(relay, tun, 1);
      // Tries while QUIC is still blocked fail and leave the tunnel alone.
      await until(
        () => client.counters.value("client_transport_move_failures_total") >= 1,
        "a failed try",
        5000,
      );
      assertEquals(client.transport.name, "h2");
      await echo(relay, tun, 2);
      blocked = false;
      await until(() => client.transport.name === "h3", "the move to HTTP/3", 10_000);
      assertEquals(client.transport.reason, "auto: moved back to HTTP/3, which works again");
      // The same addresses, now on the HTTP/3 session; the HTTP/2 one is gone.
      await until(() => relay.relay.sessions.length === 1, "the old session to close", 5000);
      const [entry] = relay.relay.sessions;
      assertEquals(entry.transport, "h3");
      assertEquals(entry.addresses.map(formatPrefix), ["198.18.100.2/32", "fd00:100::2/128"]);
      assertEquals(client.status().addresses, ["198.18.100.2/32", "fd00:100::2/128"]);
      await echo(relay, tun, 3);
      // The tunnel went on: the move did not end it.
      const ended = await Promise.race([
        client.ended,
        new Promise((r) => setTimeout(r, 200, "no")),
      ]);
      assertEquals(ended, "no");
      assert(lines.some((line) => line.includes("moved to HTTP/3")), "logged the move");
      // The addresses the HTTP/3 session was first given went back to the pool.
      assertEquals(relay.relay.poolUsage, { v4: 1, v6: 1 });
    } finally {
      await client.stop();
      await relay.close();
    }
  },
});
