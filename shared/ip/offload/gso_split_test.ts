import { assert, assertEquals, assertThrows } from "../../../tests/support/assert.ts";
import { fuzz } from "../../../tests/support/bytes.ts";
import { buildIpv4, buildIpv4Udp, buildIpv6Udp } from "../../../tests/support/packet_builder.ts";
import {
  asPartialChecksum,
  buildTcpPacket,
  packetProblem,
  payloadBytes,
  timestampOption,
} from "../../../tests/support/offload_packets.ts";
import type { TcpPacketOptions } from "../../../tests/support/offload_packets.ts";
import {
  completeChecksum,
  emptyGsoPlan,
  planGsoSplit,
  TCP_ACK,
  TCP_CWR,
  TCP_FIN,
  TCP_PSH,
  writeGsoSegment,
} from "./gso_split.ts";
import type { GsoPlan } from "./gso_split.ts";
import {
  emptyVirtioNetHdr,
  OffloadError,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP,
  VIRTIO_NET_HDR_GSO_UDP_L4,
} from "./virtio_net_hdr.ts";
import type { VirtioNetHdr } from "./virtio_net_hdr.ts";

function hdr(fields: Partial<VirtioNetHdr>): VirtioNetHdr {
  return { ...emptyVirtioNetHdr(), ...fields };
}

/** Splits the whole packet into separate arrays (test convenience; the hot path writes into one buffer). */
function split(h: VirtioNetHdr, packet: Uint8Array, limit = 1500): Uint8Array[] {
  const plan = planGsoSplit(h, packet, 0, packet.length, limit, emptyGsoPlan());
  const out: Uint8Array[] = [];
  for (let i = 0; i < plan.segmentCount; i++) {
    const buffer = new Uint8Array(limit + 8);
    const n = writeGsoSegment(plan, packet, 0, i, buffer, 4, 4 + limit);
    assert(n <= limit, `segment ${i} is ${n} bytes, limit ${limit}`);
    out.push(buffer.slice(4, 4 + n));
  }
  return out;
}

const TCP4: TcpPacketOptions = {
  src: "198.18.0.2",
  dst: "198.18.1.2",
  seq: 0xfffff000, // wraps past 2^32 within the super-packet
  ack: 0x01020304,
  id: 0xfffe, // wraps past 0xffff
  options: timestampOption(0x11223344, 0x55667788),
};
const TCP6: TcpPacketOptions = { ...TCP4, src: "fd00::2", dst: "fd00:1::2", id: undefined };

/** A TCP super-packet of `total` payload bytes and its TSO header (gso_size `mss`). */
function tcpSuperPacket(base: TcpPacketOptions, total: number, mss: number, flags: number) {
  const v6 = base.src.includes(":");
  const packet = asPartialChecksum(
    buildTcpPacket({ ...base, flags, payload: payloadBytes(total) }),
  );
  const h = hdr({
    flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
    gsoType: (v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4) |
      ((flags & TCP_CWR) !== 0 ? VIRTIO_NET_HDR_GSO_ECN : 0),
    hdrLen: (v6 ? 40 : 20) + 32,
    gsoSize: mss,
    csumStart: v6 ? 40 : 20,
    csumOffset: 16,
  });
  return { packet, h };
}

/** What the kernel would have sent without TSO: segment i of the same stream. */
function tcpSegment(base: TcpPacketOptions, i: number, mss: number, total: number, flags: number) {
  const length = Math.min(mss, total - i * mss);
  const last = (i + 1) * mss >= total;
  let f = flags;
  if (!last) f &= ~(TCP_FIN | TCP_PSH);
  if (i > 0) f &= ~TCP_CWR;
  return buildTcpPacket({
    ...base,
    flags: f,
    seq: (base.seq + i * mss) >>> 0,
    id: base.id === undefined ? undefined : (base.id + i) & 0xffff,
    payload: payloadBytes(total).subarray(i * mss, i * mss + length),
  });
}

Deno.test("writeGsoSegment() splits a TSO4 super-packet as the kernel's segments", async (t) => {
  const mss = 1448;
  const total = 3 * mss - 100;
  for (
    const [name, flags] of [
      ["ACK", TCP_ACK],
      ["FIN|PSH only on the last segment", TCP_ACK | TCP_PSH | TCP_FIN],
      ["CWR only on the first segment", TCP_ACK | TCP_CWR | TCP_PSH],
    ] as const
  ) {
    await t.step(name, () => {
      const { packet, h } = tcpSuperPacket(TCP4, total, mss, flags);
      const segments = split(h, packet);
      assertEquals(segments.length, 3);
      segments.forEach((s, i) => {
        assertEquals(packetProblem(s), undefined, `segment ${i}`);
        assertEquals(s, tcpSegment(TCP4, i, mss, total, flags), `segment ${i}`);
      });
      // IDs fffe, ffff, 0000; sequence numbers wrap.
      assertEquals(segments.map((s) => (s[4] << 8) | s[5]), [0xfffe, 0xffff, 0]);
      assertEquals(segments[2][20 + 13] & (TCP_FIN | TCP_PSH), flags & (TCP_FIN | TCP_PSH));
    });
  }
});

Deno.test("writeGsoSegment() splits a TSO6 super-packet, payload length per segment", () => {
  const mss = 1428;
  const total = 5 * mss;
  const flags = TCP_ACK | TCP_PSH;
  const { packet, h } = tcpSuperPacket(TCP6, total, mss, flags);
  const segments = split(h, packet);
  assertEquals(segments.length, 5);
  segments.forEach((s, i) => {
    assertEquals(packetProblem(s), undefined, `segment ${i}`);
    assertEquals(s, tcpSegment(TCP6, i, mss, total, flags), `segment ${i}`);
  });
});

Deno.test("planGsoSplit() makes TCP segments smaller than gso_size to fit the limit", () => {
  const { packet, h } = tcpSuperPacket(TCP4, 4000, 1448, TCP_ACK | TCP_PSH);
  // 1280-byte limit: 52 bytes of headers leave 1228 per segment.
  const plan = planGsoSplit(h, packet, 0, packet.length, 1280, emptyGsoPlan());
  assertEquals([plan.segmentPayload, plan.segmentCount, plan.largestSegment], [1228, 4, 1280]);
  const segments = split(h, packet, 1280);
  segments.forEach((s, i) => {
    assertEquals(packetProblem(s), undefined);
    assertEquals(s, tcpSegment(TCP4, i, 1228, 4000, TCP_ACK | TCP_PSH));
  });
});

/** A USO super-packet of `count` datagrams of `size` payload bytes (the last `last`). */
function udpSuperPacket(v6: boolean, size: number, count: number, last = size) {
  const total = size * (count - 1) + last;
  const base = {
    src: v6 ? "fd00::2" : "198.18.0.2",
    dst: v6 ? "fd00:1::2" : "198.18.1.2",
    srcPort: 50000,
    dstPort: 443,
  };
  const whole = (v6 ? buildIpv6Udp : buildIpv4Udp)({ ...base, payload: payloadBytes(total) });
  const packet = asPartialChecksum(whole);
  const h = hdr({
    flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
    gsoType: VIRTIO_NET_HDR_GSO_UDP_L4,
    hdrLen: (v6 ? 40 : 20) + 8,
    gsoSize: size,
    csumStart: v6 ? 40 : 20,
    csumOffset: 6,
  });
  const expected = Array.from({ length: count }, (_, i) => {
    const payload = payloadBytes(total).subarray(
      i * size,
      i * size + (i === count - 1 ? last : size),
    );
    if (v6) return buildIpv6Udp({ ...base, payload });
    // buildIpv4Udp has identification 0; the split increments it per datagram.
    const udp = buildIpv4Udp({ ...base, payload }).subarray(20);
    return buildIpv4({ ...base, protocol: 17, payload: udp, identification: i });
  });
  return { packet, h, expected };
}

Deno.test("writeGsoSegment() splits USO super-packets into the sender's datagrams", async (t) => {
  for (const v6 of [false, true]) {
    await t.step(v6 ? "IPv6" : "IPv4", () => {
      const { packet, h, expected } = udpSuperPacket(v6, 1200, 4, 77);
      const segments = split(h, packet);
      assertEquals(segments.length, 4);
      segments.forEach((s, i) => {
        assertEquals(packetProblem(s), undefined, `datagram ${i}`);
        assertEquals(s, expected[i], `datagram ${i}`);
      });
    });
  }
  await t.step("a datagram larger than the limit is refused, not re-split", () => {
    const { packet, h } = udpSuperPacket(false, 1400, 3);
    assertThrows(
      () => planGsoSplit(h, packet, 0, packet.length, 1280, emptyGsoPlan()),
      OffloadError,
      "Cannot split GSO packet: UDP datagrams of 1428 bytes exceed limit 1280",
    );
  });
});

Deno.test("a plain packet with NEEDS_CSUM gets its checksum completed", async (t) => {
  await t.step("TCP over IPv4 (completeChecksum in place)", () => {
    const good = buildTcpPacket({ ...TCP4, payload: payloadBytes(333), flags: TCP_ACK | TCP_PSH });
    const partial = asPartialChecksum(good);
    const buffer = new Uint8Array(partial.length + 6);
    buffer.set(partial, 3);
    completeChecksum(buffer, 3, 3 + partial.length, 20, 16);
    assertEquals(buffer.subarray(3, 3 + good.length), good);
  });
  await t.step("UDP over IPv6 (through planGsoSplit / writeGsoSegment)", () => {
    const good = buildIpv6Udp({
      src: "fd00::2",
      dst: "fd00:1::2",
      srcPort: 1,
      dstPort: 2,
      payload: payloadBytes(99),
    });
    const h = hdr({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 40, csumOffset: 6 });
    assertEquals(split(h, asPartialChecksum(good)), [good]);
  });
  await t.step("a computed 0 is stored as ffff", () => {
    // Choose two payload bytes so that the checksum comes out 0.
    const base = { src: "198.18.0.2", dst: "198.18.1.2", srcPort: 7, dstPort: 9 };
    const payload = payloadBytes(20);
    payload[0] = payload[1] = 0;
    const probe = buildIpv4Udp({ ...base, payload });
    // The checksum is ~(S + w): with w = 0 it is ~S, so w = ffff - S makes it 0.
    const sum = ~((probe[26] << 8) | probe[27]) & 0xffff;
    const word = 0xffff - sum;
    payload[0] = word >> 8;
    payload[1] = word & 0xff;
    const zero = asPartialChecksum(buildIpv4Udp({ ...base, payload }));
    completeChecksum(zero, 0, zero.length, 20, 6);
    assertEquals([zero[26], zero[27]], [0xff, 0xff]);
    assertEquals(packetProblem(zero), undefined);
  });
  await t.step("without NEEDS_CSUM the packet is copied as it is", () => {
    const packet = buildTcpPacket({ ...TCP4, payload: payloadBytes(10) });
    const odd = packet.slice();
    odd[30] ^= 0xff; // even a wrong checksum is left alone: the kernel did not ask
    assertEquals(split(hdr({}), odd), [odd]);
  });
});

Deno.test("planGsoSplit() and writeGsoSegment() reject malformed input with OffloadError", async (t) => {
  const { packet: tcp4, h: tso4 } = tcpSuperPacket(TCP4, 3000, 1448, TCP_ACK);
  const { packet: tcp6, h: tso6 } = tcpSuperPacket(TCP6, 3000, 1428, TCP_ACK);
  const { packet: udp4, h: uso4 } = udpSuperPacket(false, 1000, 2);
  const mutate = (p: Uint8Array, at: number, value: number) => {
    const copy = p.slice();
    copy[at] = value;
    return copy;
  };
  const cases: [string, VirtioNetHdr, Uint8Array, string][] = [
    ["UFO", { ...uso4, gsoType: VIRTIO_NET_HDR_GSO_UDP }, udp4, "unsupported gso_type 3"],
    ["unknown type", { ...tso4, gsoType: 0x42 }, tcp4, "unsupported gso_type 66"],
    ["TCPV6 on IPv4", { ...tso4, gsoType: VIRTIO_NET_HDR_GSO_TCPV6 }, tcp4, "TCPV6 on an IPv4"],
    ["TCPV4 on IPv6", { ...tso6, gsoType: VIRTIO_NET_HDR_GSO_TCPV4 }, tcp6, "TCPV4 on an IPv6"],
    ["IP version 5", tso4, mutate(tcp4, 0, 0x55), "IP version 5"],
    ["IHL 4", tso4, mutate(tcp4, 0, 0x44), "IPv4 header length 16"],
    ["csum_start", { ...tso4, csumStart: 24 }, tcp4, "csum_start 24 is not the IPv4 header"],
    ["IPv4 protocol", tso4, mutate(tcp4, 9, 17), "IPv4 protocol 17 does not match"],
    ["fragment", tso4, mutate(tcp4, 6, 0x20), "is a fragment"],
    ["IPv6 extension header", tso6, mutate(tcp6, 6, 0), "extension headers are not supported"],
    ["TCP data offset 4", tso4, mutate(tcp4, 32, 0x40), "TCP header length 16"],
    ["TCP csum_offset", { ...tso4, csumOffset: 6 }, tcp4, "csum_offset 6 for TCP"],
    ["UDP csum_offset", { ...uso4, csumOffset: 16 }, udp4, "csum_offset 16 for UDP"],
    ["gso_size 0", { ...tso4, gsoSize: 0 }, tcp4, "gso_size 0"],
    ["no payload", tso4, tcp4.subarray(0, 52), "leave no payload after 52 bytes"],
    ["truncated TCP header", tso4, tcp4.subarray(0, 30), "TCP header at 20 does not fit 30"],
    ["empty", tso4, new Uint8Array(0), "empty packet"],
    ["short IPv6", tso6, tcp6.subarray(0, 39), "IPv6 packet of 39 bytes"],
    ["plain over limit", hdr({}), new Uint8Array(1501), "plain packet of 1501 bytes exceeds"],
    [
      "NEEDS_CSUM field outside",
      hdr({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 20, csumOffset: 16 }),
      new Uint8Array(37),
      "field at 20 + 16 is outside a 37-byte packet",
    ],
    [
      "NEEDS_CSUM odd offset",
      hdr({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 20, csumOffset: 7 }),
      new Uint8Array(40),
      "csum_offset 7 is odd",
    ],
    ["headers over the limit", tso4, tcp4, "leave no room under limit 52"],
  ];
  for (const [name, h, packet, message] of cases) {
    await t.step(name, () => {
      const limit = name === "headers over the limit" ? 52 : 1500;
      assertThrows(
        () => planGsoSplit(h, packet, 0, packet.length, limit, emptyGsoPlan()),
        OffloadError,
        message,
      );
    });
  }
  await t.step("range outside the buffer", () => {
    assertThrows(
      () => planGsoSplit(tso4, tcp4, 10, tcp4.length + 1, 1500, emptyGsoPlan()),
      OffloadError,
      `range [10, ${tcp4.length + 1}) is outside ${tcp4.length} bytes`,
    );
  });
  const plan = planGsoSplit(tso4, tcp4, 0, tcp4.length, 1500, emptyGsoPlan());
  await t.step("segment index out of range", () => {
    assertThrows(
      () => writeGsoSegment(plan, tcp4, 0, 3, new Uint8Array(1500), 0),
      OffloadError,
      "index 3 is outside 0..2",
    );
  });
  await t.step("output too small, and nothing written", () => {
    const out = new Uint8Array(3000).fill(0xab);
    assertThrows(
      () => writeGsoSegment(plan, tcp4, 0, 0, out, 1600, 3000),
      OffloadError,
      "Cannot write GSO segment: 1500 bytes do not fit in [1600, 3000) of 3000",
    );
    assertThrows(() => writeGsoSegment(plan, tcp4, 0, 0, out, 0, 4000), OffloadError);
    assert(out.every((b) => b === 0xab));
  });
  await t.step("a packet shorter than its plan", () => {
    assertThrows(
      () => writeGsoSegment(plan, tcp4.subarray(0, 2000), 0, 1, new Uint8Array(1500), 0),
      OffloadError,
      "is shorter than its plan",
    );
  });
});

Deno.test("fuzz: the splitter throws only OffloadError and writes only its segment", () =>
  fuzz((random) => {
    const int = (n: number) => Math.floor(random() * n);
    const { packet: tcp4 } = tcpSuperPacket(TCP4, 5000, 1448, TCP_ACK | TCP_FIN);
    const { packet: tcp6 } = tcpSuperPacket(TCP6, 5000, 1428, TCP_ACK | TCP_PSH);
    const { packet: udp4 } = udpSuperPacket(false, 900, 5, 33);
    const { packet: udp6 } = udpSuperPacket(true, 900, 5, 33);
    const seeds = [tcp4, tcp6, udp4, udp6];
    const types = [0, 1, 3, 4, 5, 0x81, 0x84, int(256)];
    const plan: GsoPlan = emptyGsoPlan();
    const out = new Uint8Array(70_000);
    let splits = 0;
    let segments = 0;
    for (let round = 0; round < 3000; round++) {
      let packet: Uint8Array;
      if (round % 10 === 0) {
        packet = new Uint8Array(int(200));
        for (let i = 0; i < packet.length; i++) packet[i] = int(256);
      } else {
        packet = seeds[int(seeds.length)].slice(0, int(6000));
        for (let m = int(4); m > 0; m--) {
          if (packet.length > 0) packet[int(packet.length)] = int(256);
        }
      }
      const h = hdr({
        flags: int(4),
        gsoType: types[int(types.length)],
        hdrLen: int(200),
        gsoSize: random() < 0.1 ? int(8) : int(2000),
        csumStart: random() < 0.8 ? [20, 40][int(2)] : int(100),
        csumOffset: random() < 0.8 ? [6, 16][int(2)] : int(40),
      });
      const limit = random() < 0.2 ? int(2000) : 1500;
      const input = packet.slice();
      try {
        planGsoSplit(h, packet, 0, packet.length, limit, plan);
      } catch (error) {
        if (!(error instanceof OffloadError)) {
          throw new Error(`round ${round}: ${error}`);
        }
        continue;
      }
      splits++;
      for (let i = 0; i < Math.min(plan.segmentCount, 50); i++) {
        const offset = int(100);
        const end = offset + (random() < 0.1 ? int(limit) : limit);
        out.fill(0x5a, 0, 2200);
        let n = 0;
        try {
          n = writeGsoSegment(plan, packet, 0, i, out, offset, end);
        } catch (error) {
          if (!(error instanceof OffloadError)) {
            throw new Error(`round ${round} segment ${i}: ${error}`);
          }
        }
        segments++;
        assert(n <= limit && offset + n <= end, `round ${round}: ${n} bytes`);
        for (let b = 0; b < 2200; b++) {
          if ((b < offset || b >= offset + n) && out[b] !== 0x5a) {
            throw new Error(`round ${round}: byte ${b} written outside the segment`);
          }
        }
        // An untouched GSO super-packet comes out as correct packets.
        if (n > 0 && h.gsoType !== VIRTIO_NET_HDR_GSO_NONE && input.length === packet.length) {
          const segment = out.slice(offset, offset + n);
          if (seeds.some((s) => s.length === packet.length && s.every((b, k) => b === packet[k]))) {
            assertEquals(packetProblem(segment), undefined, `round ${round}`);
          }
        }
      }
      assertEquals(packet, input, `round ${round}: the input was modified`);
    }
    assert(splits > 100 && segments > 100, `only ${splits} plans and ${segments} segments`);
  }));
