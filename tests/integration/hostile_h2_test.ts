/**
 * Hostile input over HTTP/2 against the real `Relay` behind its TCP
 * listener on 127.0.0.1 (no root): a flood of streams and of reset
 * streams, malformed capsules, a peer whose window never opens, a header
 * list past the limit, too many connections from one source, a TCP
 * connection that never starts TLS. Throughout, a well-behaved client (the
 * real `Client` over HTTP/2) keeps exchanging packets: others are not
 * hurt. The raw peer is `tests/support/h2_raw.ts`.
 */
import { noRouting } from "../support/fake_routing.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { testCerts } from "../support/certs.ts";
import { until, within } from "../support/fake_quic.ts";
import { InMemoryPacketDevice } from "../support/memory_tun.ts";
import { buildIcmpv4Echo, buildIpv4Udp } from "../support/packet_builder.ts";
import { startTestRelay } from "../support/relay_harness.ts";
import type { TestRelay, TestRelayOptions } from "../support/relay_harness.ts";
import { connectIpHeaders, FRAME, frame, headerBlock, RawH2 } from "../support/h2_raw.ts";
import { Client } from "../../client/client.ts";
import type { ClientNetlink } from "../../client/client.ts";
import { dialH2 } from "../../client/transports.ts";
import { createLogger } from "../../shared/log.ts";
import { formatIp, parsePrefix } from "../../shared/ip/ip_address.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const REFUSED_STREAM = 0x7;
const CANCEL = 0x8;

const netlink: ClientNetlink = {
  setLinkMtu() {},
  setLinkTxQueueLength() {},
  addAddress() {},
  setLinkUp() {},
  deleteAddress() {},
};

/** A relay on TCP and a well-behaved client on HTTP/2 whose echo must keep working. */
async function withBystander(
  options: TestRelayOptions,
  fn: (relay: TestRelay, echo: (what: string) => Promise<void>, caPem: string) => Promise<void>,
): Promise<void> {
  const relay = await startTestRelay({ tcp: true, ...options });
  const { caPem } = await testCerts();
  const log = createLogger({ level: "error", write: () => {} });
  const tuns: InMemoryPacketDevice[] = [];
  const client = new Client({
    connect: () => Promise.reject(new Error("no QUIC in this test")),
    connectH2: () =>
      dialH2({
        hostname: "127.0.0.1",
        port: relay.tcpPort,
        serverName: "localhost",
        caCerts: [caPem],
        log,
      }),
    transport: "h2",
    openTun: (name, { mtu }) => {
      const tun = new InMemoryPacketDevice({ name, mtu });
      tuns.push(tun);
      return tun;
    },
    netlink,
    routing: noRouting(),
    tunName: "bystander",
    authority: "localhost",
    template: "/.well-known/masque/ip/{target}/{ipproto}/",
    mode: "datagram",
    mtu: 1500,
    routes: [parsePrefix("198.18.1.0/24")],
    log,
    timing: { pmtuWaitMs: 0 },
  });
  let sequence = 0;
  try {
    await within(client.start(), "the bystander's start", 10_000);
    const address = client.status().addresses as string[];
    const mine = address[0].split("/")[0];
    const echo = async (what: string) => {
      const seq = ++sequence;
      const request = buildIcmpv4Echo({ src: mine, dst: "198.18.1.2", sequence: seq });
      tuns[0].inject(request);
      const out = await within(relay.tun.nextWritten(5000), `the bystander's echo ${what}`, 6000);
      assertEquals(new Uint8Array(out), request, `the bystander's echo ${what}`);
      const reply = buildIcmpv4Echo({ src: "198.18.1.2", dst: mine, sequence: seq, reply: true });
      relay.tun.inject(reply);
      const back = await within(tuns[0].nextWritten(5000), `the bystander's reply ${what}`, 6000);
      assertEquals(new Uint8Array(back), reply);
    };
    await echo("before");
    await fn(relay, echo, caPem);
    await echo("after");
  } finally {
    await client.stop();
    await relay.close();
  }
}

Deno.test({
  name: "HTTP/2: a flood of streams is refused past the stream limit; a reset flood holds nothing",
  ...opts,
  fn: () =>
    withBystander({}, async (relay, echo, caPem) => {
      const raw = await RawH2.connect(relay.tcpPort, caPem);
      for (let i = 0; i < 50; i++) await raw.headers(1 + 2 * i, connectIpHeaders());
      await until(() => raw.accepted().length + raw.resets().length >= 50, "50 answers", 5000);
      // maxRequestsPerConnection (4) streams served, the rest REFUSED_STREAM.
      assertEquals(raw.accepted().length, 4);
      assertEquals(raw.resets().filter(([, code]) => code === REFUSED_STREAM).length, 46);
      await until(() => relay.relay.sessions.length === 5, "4 sessions and the bystander's", 5000);
      await echo("during the stream flood");
      raw.close();
      await until(() => relay.relay.sessions.length === 1, "the flood's sessions to end", 5000);

      // Streams opened and reset at once (HTTP/2 "rapid reset").
      const resetter = await RawH2.connect(relay.tcpPort, caPem);
      for (let i = 0; i < 1000 && !resetter.closed; i++) {
        await resetter.headers(1 + 2 * i, connectIpHeaders()).catch(() => {});
        await resetter.reset(1 + 2 * i, CANCEL).catch(() => {});
      }
      await echo("during the reset flood");
      resetter.close();
      await until(() => relay.relay.sessions.length === 1, "nothing left of the resets", 5000);
      await until(
        () => relay.relay.poolUsage.v4 === 1,
        "every reserved address back in the pool",
        5000,
      );
    }),
});

Deno.test({
  name: "HTTP/2: a malformed capsule ends its session only; the connection serves the next request",
  ...opts,
  fn: () =>
    withBystander({}, async (relay, echo, caPem) => {
      const raw = await RawH2.connect(relay.tcpPort, caPem);
      await raw.headers(1, connectIpHeaders());
      await until(() => raw.accepted().includes(1), "the session's 200", 5000);
      // ADDRESS_ASSIGN (type 1), length 3: too short for an assigned address.
      await raw.data(1, new Uint8Array([0x01, 0x03, 0x00, 0x04, 0x00]));
      await until(
        () => raw.resets().some(([stream, code]) => stream === 1 && code === CANCEL),
        "the relay's RST_STREAM CANCEL",
        5000,
      );
      await until(() => relay.relay.sessions.length === 1, "the session to end", 5000);
      assert(relay.count(/malformed capsule, closing session/) >= 1, "logged");
      await raw.headers(3, connectIpHeaders());
      await until(() => raw.accepted().includes(3), "the next request's 200", 5000);
      assertEquals(raw.goaway(), undefined);
      await echo("after the malformed capsule");
      raw.close();
    }),
});

Deno.test({
  name: "HTTP/2: a peer whose window never opens costs dropped packets, not memory",
  ...opts,
  fn: () =>
    withBystander({}, async (relay, echo, caPem) => {
      // SETTINGS_INITIAL_WINDOW_SIZE (0x4) = 0: the relay may send no DATA at all.
      const settings = new Uint8Array([0x00, 0x04, 0, 0, 0, 0]);
      const raw = await RawH2.connect(relay.tcpPort, caPem, settings);
      await raw.headers(1, connectIpHeaders());
      await until(() => relay.relay.sessions.length === 2, "the stuck session", 5000);
      const stuck = relay.relay.sessions.find((s) => s.transport === "h2" && s.id !== 1)!;
      const address = formatIp(stuck.addresses[0].address);
      // 3000 packets of 1400 bytes for it from the relay's TUN: 4.2 MB.
      for (let i = 0; i < 3000; i++) {
        relay.tun.inject(
          buildIpv4Udp({
            src: "198.18.1.2",
            dst: address,
            srcPort: 9,
            dstPort: 9,
            payload: new Uint8Array(1372),
          }),
        );
        if (i % 500 === 0) await new Promise((r) => setTimeout(r, 0));
      }
      await until(
        () => stuck.session.stats.packetsOut + stuck.session.stats.queueFull >= 3000,
        "every packet handled",
        10_000,
      );
      const queued = stuck.session.stream.queuedBytes ?? 0;
      assert(
        queued <= relay.relay.limits.maxQueuedBytes + 2048,
        `${queued} bytes queued for a peer that never reads`,
      );
      // All but what fits under the bound (and the little the kernel took) are dropped.
      const fit = Math.ceil(relay.relay.limits.maxQueuedBytes / 1400);
      assert(
        stuck.session.stats.queueFull >= 3000 - fit - 50,
        `${stuck.session.stats.queueFull} dropped, ${fit} fit under the bound`,
      );
      assertEquals(
        relay.relay.counters.value("session_packets_dropped_total", "queue full"),
        stuck.session.stats.queueFull,
      );
      await echo("while one peer never reads");
      raw.close();
    }),
});

Deno.test({
  name: "HTTP/2: a header list past 16 KiB is refused before it reaches the relay",
  ...opts,
  fn: () =>
    withBystander({}, async (relay, echo, caPem) => {
      const raw = await RawH2.connect(relay.tcpPort, caPem);
      const block = headerBlock([...connectIpHeaders(), ["x-big", "a".repeat(40_000)]]);
      // HEADERS then CONTINUATION frames of 16 KiB (the default maximum frame size).
      const parts = [];
      for (let at = 0; at < block.length; at += 16_384) parts.push(block.subarray(at, at + 16_384));
      await raw.write(frame(FRAME.HEADERS, 0, 1, parts[0]));
      for (let i = 1; i < parts.length; i++) {
        await raw.write(frame(FRAME.CONTINUATION, i === parts.length - 1 ? 0x4 : 0, 1, parts[i]))
          .catch(() => {});
      }
      await until(
        () =>
          raw.closed || raw.resets().length > 0 || raw.goaway() !== undefined ||
          raw.frames.some((f) => f.type === FRAME.HEADERS && f.stream === 1),
        "the refusal",
        5000,
      );
      assertEquals(raw.accepted(), []);
      assertEquals(relay.relay.sessions.length, 1);
      assert(relay.count(/request refused.*status=431/) === 1, "refused with 431");
      await echo("after the oversized header list");
      raw.close();
    }),
});

Deno.test({
  name:
    "TCP: a source past its connection limit is refused before TLS; a silent one after the handshake limit",
  ...opts,
  fn: () =>
    withBystander(
      { limits: { maxConnectionsPerSource: 3 }, handshakeTimeoutMs: 500 },
      async (relay, echo, caPem) => {
        // The bystander holds one of 127.0.0.1's three.
        const two = [
          await RawH2.connect(relay.tcpPort, caPem),
          await RawH2.connect(relay.tcpPort, caPem),
        ];
        let refused = false;
        try {
          const third = await RawH2.connect(relay.tcpPort, caPem);
          await until(() => third.closed, "the refused connection to close", 2000);
          third.close();
          refused = true;
        } catch {
          refused = true;
        }
        assert(refused);
        assertEquals(
          relay.relay.counters.value("relay_connections_refused_total", "per-source"),
          1,
        );
        for (const raw of two) raw.close();
        // Generous: on a loaded host the close can take seconds to be seen.
        await until(() => relay.relay.connectionCounts.open === 1, "the two to close", 10_000);
        // A TCP connection that never starts TLS is closed at the handshake limit.
        const silent = await Deno.connect({ hostname: "127.0.0.1", port: relay.tcpPort });
        const read = await within(
          silent.read(new Uint8Array(1)),
          "the silent connection's close",
          3000,
        )
          .catch((error) => error);
        assert(read === null || read instanceof Error, `read ${read}`);
        silent.close();
        await until(
          () => relay.relay.connectionCounts.handshaking === 0,
          "no handshake left",
          3000,
        );
        assertEquals(relay.relay.counters.value("relay_handshakes_failed_total"), 1);
        await echo("after the refused connections");
      },
    ),
});
