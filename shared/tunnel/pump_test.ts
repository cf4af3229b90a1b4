/**
 * The pump with no root and no network: an in-memory TUN and fake sessions.
 * Each outbound and inbound outcome, what it counts, and that the common
 * outcomes are shared constants.
 */
import { assert, assertEquals, assertStrictEquals } from "../../tests/support/assert.ts";
import { InMemoryPacketDevice } from "../../tests/support/memory_tun.ts";
import {
  buildIcmpv4Echo,
  buildIcmpv6Echo,
  buildIpv4Udp,
  buildIpv6Udp,
} from "../../tests/support/packet_builder.ts";
import { CounterRegistry } from "../counters.ts";
import { formatIp, parsePrefix } from "../ip/ip_address.ts";
import { addressKey, destinationKey, hopLimit, readSource } from "../ip/ip_header.ts";
import { checkFromClient, checkFromRelay, drop, FORWARD } from "./packet_policy.ts";
import { TokenBucket } from "../rate_limit.ts";
import { prefixesToRanges } from "./routes.ts";
import type { HostVerdict } from "./host_firewall.ts";
import { DROP, PumpCounters, TO_PEER, TunnelPeer, TunnelPump, WRITE } from "./pump.ts";
import type { PacketSession, PeerRouter } from "./pump.ts";
import type { PacketDevice } from "./packet_device.ts";

/** A session that records what it was given. */
class FakeSession implements PacketSession {
  maxPacketSize = 1400;
  closed = false;
  readonly sent: Uint8Array[] = [];
  /** The headroom each sendPacket() call was given. */
  readonly headrooms: number[] = [];
  sendPacket(packet: Uint8Array, headroom = 0): "sent" | "too_big" | "closed" {
    if (this.closed) return "closed";
    if (packet.length > this.maxPacketSize) return "too_big";
    this.sent.push(packet.slice());
    this.headrooms.push(headroom);
    return "sent";
  }
}

/** Routes by destination address to the peers added with `own()`. */
class MapRouter implements PeerRouter {
  readonly #peers = new Map<number | string, TunnelPeer>();
  own(address: string, peer: TunnelPeer): void {
    this.#peers.set(addressKey(parsePrefix(address).address), peer);
  }
  peerFor(packet: Uint8Array): TunnelPeer | undefined {
    return this.#peers.get(destinationKey(packet));
  }
}

function setup(check: (packet: Uint8Array) => HostVerdict = () => FORWARD) {
  const registry = new CounterRegistry();
  const tun = new InMemoryPacketDevice();
  const router = new MapRouter();
  const session = new FakeSession();
  const peer = new TunnelPeer(session, check);
  router.own("198.18.100.2/32", peer);
  router.own("fd00:100::2/128", peer);
  const clock = { now: 0 };
  const pump = new TunnelPump({
    tun,
    router,
    counters: new PumpCounters(registry),
    now: () => clock.now,
  });
  const count = (name: string, ...labels: string[]) => registry.value(name, ...labels);
  return { registry, tun, router, session, peer, pump, count, clock };
}

/** An echo request of 228 bytes from `src` to `dst`. */
const bigEcho = (src: string, dst: string) =>
  buildIcmpv4Echo({ src, dst, payload: "x".repeat(200) });

const udp4 = (dst = "198.18.100.2", payload = "hello") =>
  buildIpv4Udp({ src: "198.18.1.2", dst, srcPort: 53, dstPort: 4000, payload });

Deno.test("outbound: a valid packet goes to the owning peer's session, with a constant action", () => {
  const s = setup();
  const packet = udp4();
  const action = s.pump.outbound(packet);
  assertStrictEquals(action, s.peer.send);
  s.pump.perform(action, packet);
  assertEquals(s.session.sent, [packet]);
  assertEquals(s.count("tunnel_packets_total", "outbound"), 1);
  assertEquals(s.count("tunnel_bytes_total", "outbound"), packet.length);
  assertEquals(s.tun.written, []);
});

Deno.test("outbound: drops are constants, counted by reason", async (t) => {
  await t.step("malformed", () => {
    const s = setup();
    const packet = udp4();
    packet[0] = 0x46; // IHL 6: the header claims an option that is not there
    packet[10] = packet[11] = 0; // and the checksum no longer matters
    assertStrictEquals(s.pump.outbound(packet), DROP.malformed);
    assertEquals(s.count("tunnel_packets_dropped_total", "outbound", "malformed"), 1);
  });
  await t.step("no session owns the destination", () => {
    const s = setup();
    assertStrictEquals(s.pump.outbound(udp4("198.18.100.9")), DROP["no session"]);
    assertEquals(s.count("tunnel_packets_dropped_total", "outbound", "no session"), 1);
  });
  await t.step("the session has closed", () => {
    const s = setup();
    s.session.closed = true;
    assertStrictEquals(s.pump.outbound(udp4()), DROP["session closed"]);
    assertEquals(s.count("tunnel_packets_dropped_total", "outbound", "session closed"), 1);
  });
  await t.step("the session closes between the decision and the send", () => {
    const s = setup();
    const packet = udp4();
    const action = s.pump.outbound(packet);
    s.session.closed = true;
    s.pump.perform(action, packet);
    assertEquals(s.count("tunnel_packets_dropped_total", "outbound", "session closed"), 1);
    assertEquals(s.count("tunnel_packets_total", "outbound"), 0);
  });
});

Deno.test("outbound: a packet larger than the session carries is answered with Packet Too Big into the TUN", async (t) => {
  await t.step(
    "IPv6: ICMPv6 type 2 from the packet's destination, with the session's limit",
    () => {
      const s = setup();
      s.session.maxPacketSize = 1280;
      const big = buildIpv6Udp({
        src: "fd00:1::5",
        dst: "fd00:100::2",
        srcPort: 1,
        dstPort: 2,
        payload: new Uint8Array(1400),
      });
      const action = s.pump.outbound(big);
      assert(action.kind === "reply" && action.via === undefined);
      s.pump.perform(action, big);
      assertEquals(s.session.sent, []);
      assertEquals(s.tun.written.length, 1);
      const icmp = s.tun.written[0];
      assertEquals(icmp[6], 58); // Next Header: ICMPv6
      assertEquals(icmp[40], 2); // Type 2: Packet Too Big (RFC 4443 §3.2)
      assertEquals(new DataView(icmp.buffer).getUint32(44), 1280); // MTU
      assertEquals(formatIp(readSource(icmp)), "fd00:100::2");
      assertEquals(s.count("tunnel_packet_too_big_total", "outbound"), 1);
      assertEquals(s.count("tunnel_packets_dropped_total", "outbound", "too big"), 0);
    },
  );
  await t.step("no answer allowed (the packet is itself an ICMP error): dropped as too big", () => {
    const s = setup();
    s.session.maxPacketSize = 100;
    const error = bigEcho("198.18.1.2", "198.18.100.2");
    error[20] = 3; // ICMP type 3, Destination Unreachable: an error, never answered
    assertStrictEquals(s.pump.outbound(error), DROP["too big"]);
    assertEquals(s.count("tunnel_packets_dropped_total", "outbound", "too big"), 1);
    assertEquals(s.tun.written, []);
  });
});

Deno.test("inbound: the peer's policy decides; passed packets go to the TUN", async (t) => {
  const assigned = { addresses: [parsePrefix("198.18.100.2/32")] };
  await t.step("to our address: written, counted", () => {
    const s = setup((packet) => checkFromRelay(packet, assigned));
    const packet = udp4();
    const action = s.pump.inbound(s.peer, packet);
    assertStrictEquals(action, WRITE);
    s.pump.perform(action, packet);
    assertEquals(s.tun.written, [packet]);
    assertEquals(s.count("tunnel_packets_total", "inbound"), 1);
  });
  await t.step("to another address: dropped with the policy's reason", () => {
    const s = setup((packet) => checkFromRelay(packet, assigned));
    s.pump.receive(s.peer, udp4("198.18.100.3"));
    assertEquals(s.tun.written, []);
    assertEquals(
      s.count("tunnel_packets_dropped_total", "inbound", "destination not assigned"),
      1,
    );
  });
  await t.step("the TUN refuses the write", () => {
    const s = setup();
    const tun = new InMemoryPacketDevice({ refuse: () => true });
    const pump = new TunnelPump({
      tun,
      router: s.router,
      counters: new PumpCounters(s.registry),
    });
    pump.receive(s.peer, udp4());
    assertEquals(s.count("tunnel_packets_dropped_total", "inbound", "tun write failed"), 1);
    assertEquals(s.count("tunnel_packets_total", "inbound"), 0);
  });
});

Deno.test("between peers: forwarded on the other session, hop limit decremented, never the TUN", async (t) => {
  /** Two peers that may reach each other (the relay's --allow-client-to-client). */
  function twoPeers() {
    const s = setup(() => TO_PEER);
    const other = new FakeSession();
    const otherPeer = new TunnelPeer(other, () => TO_PEER);
    s.router.own("198.18.100.3/32", otherPeer);
    return { ...s, other, otherPeer };
  }
  await t.step("delivered", () => {
    const s = twoPeers();
    const packet = buildIcmpv4Echo({ src: "198.18.100.2", dst: "198.18.100.3", ttl: 64 });
    const action = s.pump.inbound(s.peer, packet);
    assertStrictEquals(action, s.otherPeer.forward);
    s.pump.perform(action, packet);
    assertEquals(s.other.sent.length, 1);
    assertEquals(hopLimit(s.other.sent[0]), 63);
    assertEquals(s.tun.written, []);
    assertEquals(s.count("tunnel_packets_between_peers_total"), 1);
    assertEquals(s.count("tunnel_packets_total", "inbound"), 1);
  });
  await t.step("no peer owns the destination", () => {
    const s = twoPeers();
    s.pump.receive(s.peer, buildIcmpv4Echo({ src: "198.18.100.2", dst: "198.18.100.9" }));
    assertEquals(
      s.count("tunnel_packets_dropped_total", "inbound", "destination not assigned"),
      1,
    );
  });
  await t.step("TTL 1 is not forwarded", () => {
    const s = twoPeers();
    s.pump.receive(s.peer, buildIcmpv4Echo({ src: "198.18.100.2", dst: "198.18.100.3", ttl: 1 }));
    assertEquals(s.other.sent, []);
    assertEquals(s.count("tunnel_packets_dropped_total", "inbound", "hop limit exceeded"), 1);
  });
  await t.step("too big for the receiver: Packet Too Big back on the sender's session", () => {
    const s = twoPeers();
    s.other.maxPacketSize = 100;
    const packet = bigEcho("198.18.100.2", "198.18.100.3");
    s.pump.receive(s.peer, packet);
    assertEquals(s.other.sent, []);
    assertEquals(s.session.sent.length, 1);
    const icmp = s.session.sent[0];
    assertEquals([icmp[9], icmp[20], icmp[21]], [1, 3, 4]); // ICMP, Dest. Unreachable, Frag. Needed
    assertEquals(formatIp(readSource(icmp)), "198.18.100.3");
    assertEquals(s.count("tunnel_packet_too_big_total", "inbound"), 1);
  });
  await t.step("a policy drop between peers", () => {
    const s = setup(() => drop("client to client"));
    s.pump.receive(s.peer, buildIcmpv6Echo({ src: "fd00:100::2", dst: "fd00:100::3" }));
    assertEquals(s.count("tunnel_packets_dropped_total", "inbound", "client to client"), 1);
  });
});

Deno.test("rate limits: bytes past a peer's bucket are dropped as rate limited, each way, and counted for the peer", async (t) => {
  for (const direction of ["outbound", "inbound"] as const) {
    await t.step(direction, () => {
      const s = setup();
      const packet = udp4("198.18.100.2", "x".repeat(72)); // 100 bytes
      const bucket = new TokenBucket({ ratePerSecond: 1000, burst: 250 }, 0);
      s.peer.limits = direction === "outbound" ? { outbound: bucket } : { inbound: bucket };
      const peerDrops: string[] = [];
      s.peer.drops = (dir, reason) => peerDrops.push(`${dir} ${reason}`);
      const run = () =>
        direction === "outbound" ? s.pump.outbound(packet) : s.pump.inbound(s.peer, packet);
      // 250 bytes at once: two packets pass, the third is dropped.
      assertEquals([run().kind, run().kind], [
        direction === "outbound" ? "send" : "write",
        direction === "outbound" ? "send" : "write",
      ]);
      assertStrictEquals(run(), DROP["rate limited"]);
      assertEquals(s.count("tunnel_packets_dropped_total", direction, "rate limited"), 1);
      assertEquals(peerDrops, [`${direction} rate limited`]);
      // 100 ms later 100 bytes more have come in: one more packet.
      s.clock.now = 100;
      assert(run().kind !== "drop");
      assertStrictEquals(run(), DROP["rate limited"]);
    });
  }
  await t.step("the other direction is not limited by this bucket", () => {
    const s = setup();
    s.peer.limits = { inbound: new TokenBucket({ ratePerSecond: 1000, burst: 100 }, 0) };
    for (let i = 0; i < 10; i++) assertStrictEquals(s.pump.outbound(udp4()), s.peer.send);
  });
});

Deno.test("prohibited: a packet outside the session's routes is answered with ICMP administratively prohibited, at the bucket's rate", async (t) => {
  /** A relay-side peer allowed 198.18.1.0/24 only, answering from gateway 198.18.100.1. */
  function relayPeer(burst: number) {
    const policy = {
      addresses: [parsePrefix("198.18.100.2/32"), parsePrefix("fd00:100::2/128")],
      routes: prefixesToRanges([parsePrefix("198.18.1.0/24"), parsePrefix("fd00:1::/64")]),
    };
    const s = setup((packet) => checkFromClient(packet, policy));
    s.peer.limits = {
      prohibited: {
        bucket: new TokenBucket({ ratePerSecond: 1, burst }, 0),
        from: (version) => parsePrefix(version === 4 ? "198.18.100.1" : "fd00:100::1").address,
      },
    };
    return s;
  }
  await t.step("IPv4: type 3 code 13 from the gateway, on the sender's session", () => {
    const s = relayPeer(2);
    const packet = buildIcmpv4Echo({ src: "198.18.100.2", dst: "198.18.2.1" });
    const action = s.pump.inbound(s.peer, packet);
    assert(action.kind === "reply" && action.via === s.peer && action.icmp === "prohibited");
    s.pump.perform(action, packet);
    assertEquals(s.tun.written, []);
    const icmp = s.session.sent[0];
    assertEquals([icmp[9], icmp[20], icmp[21]], [1, 3, 13]);
    assertEquals(formatIp(readSource(icmp)), "198.18.100.1");
    assertEquals(s.count("tunnel_prohibited_answers_total"), 1);
    assertEquals(
      s.count("tunnel_packets_dropped_total", "inbound", "destination not routed"),
      1,
    );
  });
  await t.step("IPv6: type 1 code 1", () => {
    const s = relayPeer(2);
    s.pump.receive(s.peer, buildIcmpv6Echo({ src: "fd00:100::2", dst: "fd00:2::1" }));
    const icmp = s.session.sent[0];
    assertEquals([icmp[6], icmp[40], icmp[41]], [58, 1, 1]);
    assertEquals(formatIp(readSource(icmp)), "fd00:100::1");
  });
  await t.step("past the bucket: dropped without an answer", () => {
    const s = relayPeer(2);
    for (let i = 0; i < 5; i++) {
      s.pump.receive(s.peer, buildIcmpv4Echo({ src: "198.18.100.2", dst: "198.18.2.1" }));
    }
    assertEquals(s.session.sent.length, 2);
    assertEquals(s.count("tunnel_prohibited_answers_total"), 2);
    assertEquals(
      s.count("tunnel_packets_dropped_total", "inbound", "destination not routed"),
      5,
    );
    s.clock.now = 1000;
    s.pump.receive(s.peer, buildIcmpv4Echo({ src: "198.18.100.2", dst: "198.18.2.1" }));
    assertEquals(s.session.sent.length, 3);
  });
  await t.step("other drops stay silent (a spoofed source, the relay host)", () => {
    const s = relayPeer(10);
    s.pump.receive(s.peer, buildIcmpv4Echo({ src: "198.18.100.9", dst: "198.18.2.1" }));
    assertEquals(s.session.sent, []);
    assertEquals(s.count("tunnel_packets_dropped_total", "inbound", "source not assigned"), 1);
  });
  await t.step("a peer without the limit is not answered", () => {
    const s = relayPeer(10);
    s.peer.limits = {};
    s.pump.receive(s.peer, buildIcmpv4Echo({ src: "198.18.100.2", dst: "198.18.2.1" }));
    assertEquals(s.session.sent, []);
  });
});

Deno.test("runTun() pumps every packet the TUN reads until it closes", async () => {
  const s = setup();
  const packets = Array.from({ length: 40 }, (_, i) => udp4("198.18.100.2", `packet ${i}`));
  s.tun.inject(...packets, udp4("198.18.100.7"));
  const done = s.pump.runTun();
  await new Promise((resolve) => setTimeout(resolve, 10));
  s.tun.close();
  await done;
  // The in-memory TUN overwrites its batches after each read: each was sent in time.
  assertEquals(s.session.sent, packets);
  assertEquals(s.count("tunnel_packets_total", "outbound"), 40);
  assertEquals(s.count("tunnel_packets_dropped_total", "outbound", "no session"), 1);
});

Deno.test("the TUN's headroom goes with packets read from it, and with nothing else", async () => {
  const s = setup(() => TO_PEER);
  const other = new FakeSession();
  s.router.own("198.18.100.3/32", new TunnelPeer(other, () => TO_PEER));
  // A TUN that leaves 16 bytes in front of each packet it reads (ffi/tun_linux.ts `headroom`).
  const memory = new InMemoryPacketDevice();
  const tun: PacketDevice = {
    name: memory.name,
    mtu: memory.mtu,
    headroom: 16,
    readBatch: () => memory.readBatch(),
    writePacket: (packet) => memory.writePacket(packet),
    close: () => memory.close(),
  };
  const pump = new TunnelPump({ tun, router: s.router, counters: new PumpCounters(s.registry) });
  memory.inject(udp4());
  const done = pump.runTun();
  await new Promise((resolve) => setTimeout(resolve, 10));
  memory.close();
  await done;
  assertEquals(s.session.headrooms, [16]);
  // Between peers the packet is a view of a received datagram: no headroom.
  pump.receive(s.peer, buildIcmpv4Echo({ src: "198.18.100.2", dst: "198.18.100.3" }));
  assertEquals(other.headrooms, [0]);
});
