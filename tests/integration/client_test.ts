/**
 * The real `Client` against the real `Relay` over QUIC on 127.0.0.1, no
 * root: both TUNs are in memory and the client's netlink is a fake that
 * records what it was asked to do. Packets both ways (an ICMP echo out and
 * its reply back), the assignment, the routes, Packet Too Big for a packet
 * larger than the session carries, and a clean teardown.
 */
import { assert, assertEquals, assertRejects } from "../support/assert.ts";
import { dialTestServer } from "../support/certs.ts";
import { until, within } from "../support/fake_quic.ts";
import { InMemoryPacketDevice } from "../support/memory_tun.ts";
import { buildIcmpv4Echo, buildIpv6Udp } from "../support/packet_builder.ts";
import { startTestRelay } from "../support/relay_harness.ts";
import type { TestRelay } from "../support/relay_harness.ts";
import { Client } from "../../client/client.ts";
import type { ClientNetlink, TunnelHooks } from "../../client/client.ts";
import { createLogger } from "../../shared/log.ts";
import { formatIp, formatPrefix, parsePrefix } from "../../shared/ip/ip_address.ts";
import type { IpPrefix } from "../../shared/ip/ip_address.ts";
import { readDestination, readSource } from "../../shared/ip/ip_header.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** Netlink that records each call as a line, and refuses a route when told to. */
class FakeNetlink implements ClientNetlink {
  readonly calls: string[] = [];
  readonly routes = new Set<string>();
  refuseRoute: string | undefined;
  setLinkMtu(name: string, mtu: number) {
    this.calls.push(`mtu ${name} ${mtu}`);
  }
  setLinkTxQueueLength(name: string, packets: number) {
    this.calls.push(`txqueuelen ${name} ${packets}`);
  }
  addAddress(name: string, prefix: IpPrefix) {
    this.calls.push(`address ${name} ${formatPrefix(prefix)}`);
  }
  setLinkUp(name: string) {
    this.calls.push(`up ${name}`);
  }
  addRoute(prefix: IpPrefix, name: string) {
    const route = formatPrefix(prefix);
    if (route === this.refuseRoute) throw new Error(`Cannot add route ${route}: refused`);
    this.routes.add(route);
    this.calls.push(`route add ${route} dev ${name}`);
  }
  deleteRoute(prefix: IpPrefix, name: string) {
    this.routes.delete(formatPrefix(prefix));
    this.calls.push(`route del ${formatPrefix(prefix)} dev ${name}`);
  }
}

/** A Client for `relay` with an in-memory TUN and fake netlink. */
function clientFor(
  relay: TestRelay,
  options: { mode?: "datagram" | "stream"; routes?: string[]; hooks?: TunnelHooks[] } = {},
) {
  const netlink = new FakeNetlink();
  const tuns: InMemoryPacketDevice[] = [];
  const lines: string[] = [];
  const client = new Client({
    connect: () => dialTestServer(relay.port),
    openTun: (name, { mtu }) => {
      const tun = new InMemoryPacketDevice({ name, mtu });
      tuns.push(tun);
      return tun;
    },
    netlink,
    tunName: "mvpn-test",
    authority: "localhost",
    template: "/.well-known/masque/ip/{target}/{ipproto}/",
    mode: options.mode ?? "datagram",
    mtu: 1280,
    routes: (options.routes ?? ["198.18.1.0/24"]).map(parsePrefix),
    log: createLogger({ level: "debug", write: (line) => lines.push(line) }),
    hooks: options.hooks,
    timing: { pmtuWaitMs: 0 },
  });
  return { client, netlink, tuns, lines };
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
      const { client, netlink, tuns } = clientFor(relay, {
        mode,
        hooks: [{
          up: (tunnel) => {
            hookCalls.push(`up ${tunnel.name} ${tunnel.routes.map(formatPrefix).join(",")}`);
          },
          down: () => {
            hookCalls.push("down");
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
          "route add 198.18.1.0/24 dev mvpn-test",
        ]);
        assertEquals(hookCalls, ["up mvpn-test 198.18.1.0/24"]);
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
        assertEquals(hookCalls, ["up mvpn-test 198.18.1.0/24", "down"]);
        assertEquals(netlink.calls.at(-1), "route del 198.18.1.0/24 dev mvpn-test");
        assertEquals(netlink.routes.size, 0);
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
  name: "Client: the relay ending the session ends the tunnel, with why",
  ...opts,
  fn: () =>
    withClient({}, async (relay, { client }) => {
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
    const { client, netlink, tuns } = clientFor(relay, {
      routes: ["198.18.1.0/24", "198.18.2.0/24"],
    });
    netlink.refuseRoute = "198.18.2.0/24";
    try {
      await assertRejects(() => client.start(), Error, "Cannot add route 198.18.2.0/24: refused");
      assertEquals(netlink.calls.slice(-2), [
        "route add 198.18.1.0/24 dev mvpn-test",
        "route del 198.18.1.0/24 dev mvpn-test",
      ]);
      assert(tuns[0].closed, "the TUN is closed");
      await until(() => relay.relay.sessions.length === 0, "the relay to close the session", 5000);
    } finally {
      await client.stop();
      await relay.close();
    }
  },
});
