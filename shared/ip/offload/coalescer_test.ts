import { assert, assertEquals, assertThrows } from "../../../tests/support/assert.ts";
import { fuzz } from "../../../tests/support/bytes.ts";
import {
  buildIcmpv4Echo,
  buildIpv4Udp,
  buildIpv6Udp,
} from "../../../tests/support/packet_builder.ts";
import {
  buildTcpPacket,
  packetProblem,
  payloadBytes,
  timestampOption,
} from "../../../tests/support/offload_packets.ts";
import type { TcpPacketOptions } from "../../../tests/support/offload_packets.ts";
import { Coalescer, MAX_UDP_SEGMENTS } from "./coalescer.ts";
import {
  emptyGsoPlan,
  planGsoSplit,
  TCP_ACK,
  TCP_CWR,
  TCP_ECE,
  TCP_FIN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  TCP_URG,
  writeGsoSegment,
} from "./gso_split.ts";
import {
  OffloadError,
  parseVirtioNetHdr,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  VIRTIO_NET_HDR_LENGTH,
} from "./virtio_net_hdr.ts";

/** The packets laid out in one buffer, 3 bytes apart, as a writer ring would hold them. */
function batch(packets: Uint8Array[]) {
  const offsets: number[] = [];
  const lengths: number[] = [];
  let size = 0;
  for (const p of packets) {
    offsets.push(size + 3);
    lengths.push(p.length);
    size += p.length + 3;
  }
  const bytes = new Uint8Array(size).fill(0xcc);
  packets.forEach((p, i) => bytes.set(p, offsets[i]));
  return { bytes, offsets, lengths, count: packets.length };
}

interface Write {
  /** virtio_net_hdr + packet, as handed to write(2). */
  readonly bytes: Uint8Array;
  readonly packets: number;
}

function coalesce(packets: Uint8Array[], options: { udp?: boolean; maxSize?: number } = {}) {
  const c = new Coalescer({
    maxBatch: Math.max(1, packets.length),
    udp: options.udp ?? true,
    ...options,
  });
  const b = batch(packets);
  const count = c.coalesce(b.bytes, b.offsets, b.lengths, b.count);
  const writes: Write[] = [];
  for (let w = 0; w < count; w++) {
    const out = new Uint8Array(70_000);
    const n = c.build(w, b.bytes, b.offsets, b.lengths, out, 0);
    assertEquals(n, VIRTIO_NET_HDR_LENGTH + c.packetLength(w));
    writes.push({ bytes: out.slice(0, n), packets: c.packetCount(w) });
  }
  return writes;
}

/** What the kernel makes of one write: the packets it stands for (segmented with our splitter). */
function unpack(write: Write): Uint8Array[] {
  const h = parseVirtioNetHdr(write.bytes);
  const packet = write.bytes.subarray(VIRTIO_NET_HDR_LENGTH);
  const plan = planGsoSplit(h, packet, 0, packet.length, 65535, emptyGsoPlan());
  const out: Uint8Array[] = [];
  for (let i = 0; i < plan.segmentCount; i++) {
    const buffer = new Uint8Array(65535);
    out.push(buffer.slice(0, writeGsoSegment(plan, packet, 0, i, buffer, 0)));
  }
  return out;
}

const FLOW4: TcpPacketOptions = {
  src: "198.18.100.2",
  dst: "198.18.1.2",
  seq: 1000,
  ack: 77,
  id: 0x1230,
  dontFragment: false,
  options: timestampOption(1, 2),
};
const FLOW6: TcpPacketOptions = { ...FLOW4, src: "fd00:100::2", dst: "fd00:1::2", id: undefined };

/** `count` segments of one stream, `size` payload bytes each (the last `last`). */
function stream(base: TcpPacketOptions, count: number, size: number, last = size, psh = true) {
  const v6 = base.src.includes(":");
  return Array.from({ length: count }, (_, i) =>
    buildTcpPacket({
      ...base,
      seq: base.seq + i * size,
      id: v6 ? undefined : (base.id ?? 0) + i,
      flags: TCP_ACK | (psh && i === count - 1 ? TCP_PSH : 0),
      payload: payloadBytes(i === count - 1 ? last : size, i),
    }));
}

Deno.test("Coalescer merges a TCP/IPv4 stream with timestamps into one TSO4 write", () => {
  const packets = stream(FLOW4, 4, 1400, 300);
  const [write, ...rest] = coalesce(packets);
  assertEquals(rest.length, 0);
  assertEquals(write.packets, 4);
  assertEquals(parseVirtioNetHdr(write.bytes), {
    flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
    gsoType: VIRTIO_NET_HDR_GSO_TCPV4,
    hdrLen: 20 + 32,
    gsoSize: 1400,
    csumStart: 20,
    csumOffset: 16,
  });
  const merged = write.bytes.subarray(VIRTIO_NET_HDR_LENGTH);
  const view = new DataView(merged.buffer, merged.byteOffset);
  assertEquals(merged.length, 52 + 3 * 1400 + 300);
  assertEquals(view.getUint16(2), merged.length, "IPv4 total length");
  assertEquals(view.getUint16(4), 0x1230, "identification of the first");
  assertEquals(merged[33], TCP_ACK | TCP_PSH, "PSH of the last");
  // The payloads back to back.
  for (let i = 0; i < 4; i++) {
    assertEquals(
      merged.subarray(52 + i * 1400, 52 + i * 1400 + (i === 3 ? 300 : 1400)),
      payloadBytes(i === 3 ? 300 : 1400, i),
    );
  }
  // The checksum field holds the pseudo-header sum for the kernel to complete.
  const sum = view.getUint16(36);
  const expected = (0xc612 + 0x6402 + 0xc612 + 0x0102 + 6 + (merged.length - 20)) % 0xffff;
  assertEquals(sum, expected);
  assertEquals(unpack(write), packets, "split again, the original packets");
});

Deno.test("Coalescer merges TCP/IPv6 and UDP (IPv4 and IPv6); round trips give the packets back", async (t) => {
  await t.step("TCP/IPv6", () => {
    const packets = stream(FLOW6, 5, 1380);
    const writes = coalesce(packets);
    assertEquals(writes.map((w) => w.packets), [5]);
    const h = parseVirtioNetHdr(writes[0].bytes);
    assertEquals([h.gsoType, h.hdrLen, h.gsoSize, h.csumStart], [
      VIRTIO_NET_HDR_GSO_TCPV6,
      72,
      1380,
      40,
    ]);
    assertEquals(unpack(writes[0]), packets);
  });
  for (const v6 of [false, true]) {
    await t.step(`UDP/IPv${v6 ? 6 : 4}`, () => {
      const base = {
        src: v6 ? "fd00:100::2" : "198.18.100.2",
        dst: v6 ? "fd00:1::2" : "198.18.1.2",
        srcPort: 4433,
        dstPort: 5353,
      };
      // buildIpv4Udp sets identification 0 with DF: the identification is free.
      const packets = [0, 1, 2].map((i) =>
        (v6 ? buildIpv6Udp : buildIpv4Udp)({
          ...base,
          payload: payloadBytes(i === 2 ? 500 : 1200, i),
        })
      );
      const writes = coalesce(packets);
      assertEquals(writes.map((w) => w.packets), [3]);
      const h = parseVirtioNetHdr(writes[0].bytes);
      assertEquals([h.gsoType, h.hdrLen, h.gsoSize, h.csumOffset], [
        VIRTIO_NET_HDR_GSO_UDP_L4,
        (v6 ? 40 : 20) + 8,
        1200,
        6,
      ]);
      const back = unpack(writes[0]);
      back.forEach((p) => assertEquals(packetProblem(p), undefined));
      if (v6) assertEquals(back, packets);
      // IPv4: the kernel numbers the datagrams 0, 1, 2; only that differs.
      else back.forEach((p, i) => assertEquals(p.subarray(20), packets[i].subarray(20)));
    });
  }
  await t.step("UDP is left alone without USO", () => {
    const base = { src: "198.18.100.2", dst: "198.18.1.2", srcPort: 1, dstPort: 2 };
    const packets = [0, 1].map(() => buildIpv4Udp({ ...base, payload: payloadBytes(100) }));
    assertEquals(coalesce(packets, { udp: false }).map((w) => w.packets), [1, 1]);
  });
});

Deno.test("Coalescer writes a single packet as it is behind a zero virtio_net_hdr", () => {
  const ping = buildIcmpv4Echo({ src: "198.18.100.2", dst: "198.18.1.2" });
  const [write] = coalesce([ping]);
  assertEquals(write.bytes.subarray(0, VIRTIO_NET_HDR_LENGTH), new Uint8Array(10));
  assertEquals(write.bytes.subarray(VIRTIO_NET_HDR_LENGTH), ping);
  assertEquals(parseVirtioNetHdr(write.bytes).gsoType, VIRTIO_NET_HDR_GSO_NONE);
});

Deno.test("Coalescer does not merge what the kernel's GRO would not", async (t) => {
  const [a, b] = stream(FLOW4, 2, 1000, 1000, false);
  const second = (o: Partial<TcpPacketOptions>) =>
    buildTcpPacket({
      ...FLOW4,
      seq: 2000,
      id: FLOW4.id! + 1,
      payload: payloadBytes(1000, 1),
      ...o,
    });
  const cases: [string, Uint8Array[]][] = [
    ["SYN", [a, second({ flags: TCP_SYN | TCP_ACK })]],
    ["FIN", [a, second({ flags: TCP_FIN | TCP_ACK })]],
    ["RST", [a, second({ flags: TCP_RST | TCP_ACK })]],
    ["URG", [a, second({ flags: TCP_URG | TCP_ACK })]],
    ["ECE", [a, second({ flags: TCP_ECE | TCP_ACK })]],
    ["CWR", [a, second({ flags: TCP_CWR | TCP_ACK })]],
    ["no ACK", [a, second({ flags: 0 })]],
    ["pure ACK (no payload)", [a, second({ payload: new Uint8Array(0) })]],
    ["other TTL", [a, second({ ttl: 63 })]],
    ["other TOS", [a, second({ tos: 4 })]],
    ["other DF", [a, second({ dontFragment: true })]],
    ["identification not the next (no DF)", [a, second({ id: FLOW4.id! + 5 })]],
    ["other timestamps", [a, second({ options: timestampOption(2, 2) })]],
    ["other options length", [a, second({ options: new Uint8Array([1, 1, 1, 1]) })]],
    ["other acknowledgment number", [a, second({ ack: 78 })]],
    ["sequence gap", [a, second({ seq: 2001 })]],
    ["retransmission", [a, a]],
    ["other port", [a, second({ srcPort: 40001 })]],
    ["other destination", [a, second({ dst: "198.18.1.3" })]],
    ["larger than the first", [a, second({ payload: payloadBytes(1001, 1) })]],
    ["bad checksum on the second", [a, second({ badChecksum: true })]],
    ["bad checksum on the first", [
      buildTcpPacket({ ...FLOW4, payload: payloadBytes(1000), badChecksum: true }),
      b,
    ]],
    ["PSH ends a group", [
      buildTcpPacket({ ...FLOW4, flags: TCP_ACK | TCP_PSH, payload: payloadBytes(1000) }),
      b,
    ]],
  ];
  for (const [name, packets] of cases) {
    await t.step(name, () => {
      const writes = coalesce(packets);
      assertEquals(writes.map((w) => w.packets), packets.map(() => 1));
      // Each goes out unchanged, in order.
      writes.forEach((w, i) => assertEquals(w.bytes.subarray(VIRTIO_NET_HDR_LENGTH), packets[i]));
    });
  }
  await t.step("nothing after a smaller segment", () => {
    const packets = [
      ...stream(FLOW4, 2, 1000, 500, false),
      second({ seq: 2500, id: FLOW4.id! + 2 }),
    ];
    assertEquals(coalesce(packets).map((w) => w.packets), [2, 1]);
  });
  await t.step("IPv4 options", () => {
    const withOptions = [a, b].map((p) => {
      const out = new Uint8Array(p.length + 4);
      out.set(p.subarray(0, 20));
      out.set([1, 1, 1, 0], 20); // NOP NOP NOP EOL
      out.set(p.subarray(20), 24);
      out[0] = 0x46;
      new DataView(out.buffer).setUint16(2, out.length);
      return out;
    });
    assertEquals(coalesce(withOptions).map((w) => w.packets), [1, 1]);
  });
  await t.step("the identification is free with DF", () => {
    const df = { ...FLOW4, dontFragment: true };
    const packets = [0, 1].map((i) =>
      buildTcpPacket({ ...df, seq: 1000 + i * 1000, id: i * 77, payload: payloadBytes(1000, i) })
    );
    assertEquals(coalesce(packets).map((w) => w.packets), [2]);
  });
  await t.step("the 65535-byte limit", () => {
    // 47 × 1400 + 52 = 65852 > 65535: 46 segments fit (64452 bytes), the 47th starts a new write.
    const packets = stream(FLOW4, 47, 1400, 1400, false);
    assertEquals(coalesce(packets).map((w) => w.packets), [46, 1]);
    assertEquals(coalesce(packets, { maxSize: 9000 }).map((w) => w.packets), [
      6,
      6,
      6,
      6,
      6,
      6,
      6,
      5,
    ]);
  });
  await t.step(`at most ${MAX_UDP_SEGMENTS} UDP datagrams`, () => {
    const base = { src: "198.18.100.2", dst: "198.18.1.2", srcPort: 1, dstPort: 2 };
    const packets = Array.from(
      { length: 70 },
      () => buildIpv4Udp({ ...base, payload: payloadBytes(10) }),
    );
    assertEquals(coalesce(packets).map((w) => w.packets), [64, 6]);
  });
});

Deno.test("Coalescer keeps the order within a flow; flows may pass each other", async (t) => {
  await t.step("two interleaved flows", () => {
    const a = stream(FLOW4, 3, 1000);
    const b = stream({ ...FLOW4, srcPort: 40001, id: 0x5000 }, 3, 1000);
    const writes = coalesce([a[0], b[0], a[1], b[1], a[2], b[2]]);
    assertEquals(writes.map((w) => w.packets), [3, 3]);
    assertEquals(unpack(writes[0]), a);
    assertEquals(unpack(writes[1]), b);
  });
  await t.step("a packet that cannot join holds later ones of its flow behind it", () => {
    const [a1, a2] = stream(FLOW4, 2, 1000, 1000, false);
    const ack = buildTcpPacket({ ...FLOW4, seq: 2000, ack: 77, id: 0x1231 });
    // a1, pure ACK, a2 (a2 is in sequence after a1 but may not jump the ACK).
    const a2Renumbered = buildTcpPacket({
      ...FLOW4,
      seq: 2000,
      id: 0x1232,
      payload: payloadBytes(1000, 1),
    });
    const writes = coalesce([a1, ack, a2Renumbered]);
    assertEquals(writes.map((w) => w.packets), [1, 1, 1]);
    assertEquals(writes.map((w) => w.bytes.subarray(VIRTIO_NET_HDR_LENGTH)), [
      a1,
      ack,
      a2Renumbered,
    ]);
    assert(a2.length > 0);
  });
  await t.step("other protocols in between do not stop a merge", () => {
    const [a1, a2] = stream(FLOW4, 2, 1000);
    const ping = buildIcmpv4Echo({ src: "198.18.100.2", dst: "198.18.1.2" });
    const writes = coalesce([a1, ping, a2]);
    assertEquals(writes.map((w) => w.packets), [2, 1]);
    assertEquals(writes[1].bytes.subarray(VIRTIO_NET_HDR_LENGTH), ping);
  });
});

Deno.test("Coalescer.build() refuses a small buffer and a changed batch, writing nothing outside", () => {
  const packets = stream(FLOW4, 3, 1000);
  const c = new Coalescer({ maxBatch: 8, udp: false });
  const b = batch(packets);
  assertEquals(c.coalesce(b.bytes, b.offsets, b.lengths, b.count), 1);
  const out = new Uint8Array(4000).fill(0xee);
  assertThrows(
    () => c.build(0, b.bytes, b.offsets, b.lengths, out, 100, 3000),
    OffloadError,
    "Cannot build coalesced packet: 3062 bytes do not fit in [100, 3000) of 4000",
  );
  const longer = [...b.lengths];
  longer[2] += 50;
  assertThrows(
    () => c.build(0, b.bytes, b.offsets, longer, out, 0),
    OffloadError,
    "the batch changed since coalesce()",
  );
  assert(out.subarray(3062).every((x) => x === 0xee), "nothing past the planned size");
  assertThrows(() => c.build(1, b.bytes, b.offsets, b.lengths, out, 0), RangeError, "write 1");
  assertThrows(
    () => c.coalesce(b.bytes, b.offsets, b.lengths, 9),
    RangeError,
    "exceeds maxBatch 8",
  );
  assertThrows(
    () => c.coalesce(b.bytes, [b.bytes.length - 2], [10], 1),
    RangeError,
    "is outside",
  );
});

Deno.test("fuzz: coalesce then split gives back every packet, each flow in order", () =>
  fuzz((random) => {
    const int = (n: number) => Math.floor(random() * n);
    const c = new Coalescer({ maxBatch: 64, udp: true });
    const out = new Uint8Array(70_000);
    let merged = 0;
    for (let round = 0; round < 200; round++) {
      // A few flows, each a run of segments (sometimes with a FIN, a retransmission,
      // a pure ACK or a bad checksum), interleaved at random.
      const flows: Uint8Array[][] = [];
      for (let f = 0, n = 1 + int(4); f < n; f++) {
        const v6 = random() < 0.5;
        const base: TcpPacketOptions = {
          ...(v6 ? FLOW6 : FLOW4),
          srcPort: 30000 + f,
          seq: int(2 ** 32),
          dontFragment: random() < 0.5,
          id: v6 ? undefined : int(65536),
        };
        const size = 1 + int(1400);
        const list = stream(base, 1 + int(20), size, 1 + int(size), random() < 0.5);
        if (random() < 0.3) list[int(list.length)] = buildTcpPacket({ ...base, seq: 1 }); // pure ACK
        if (random() < 0.2) list.push(list[0]); // retransmission
        if (random() < 0.2) {
          const i = int(list.length);
          list[i] = list[i].slice();
          list[i][list[i].length - 1] ^= 1; // corrupted payload
        }
        flows.push(list);
      }
      const order: Uint8Array[] = [];
      const cursors = flows.map(() => 0);
      while (order.length < 64 && cursors.some((c, f) => c < flows[f].length)) {
        const f = int(flows.length);
        if (cursors[f] < flows[f].length) order.push(flows[f][cursors[f]++]);
      }
      const b = batch(order);
      const writes = c.coalesce(b.bytes, b.offsets, b.lengths, b.count);
      const back: Uint8Array[] = [];
      for (let w = 0; w < writes; w++) {
        const n = c.build(w, b.bytes, b.offsets, b.lengths, out, 0);
        if (c.packetCount(w) > 1) merged++;
        back.push(...unpack({ bytes: out.slice(0, n), packets: c.packetCount(w) }));
      }
      // Same packets; within each flow (source port) the same order.
      assertEquals(back.length, order.length, `round ${round}`);
      const key = (p: Uint8Array) => {
        const ip = p[0] >> 4 === 6 ? 40 : 20;
        return `${p[0] >> 4}:${(p[ip] << 8) | p[ip + 1]}`;
      };
      const byFlow = (list: Uint8Array[]) => {
        const m = new Map<string, Uint8Array[]>();
        for (const p of list) m.set(key(p), [...(m.get(key(p)) ?? []), p]);
        return m;
      };
      const want = byFlow(order);
      for (const [k, got] of byFlow(back)) {
        assertEquals(got, want.get(k), `round ${round} flow ${k}`);
      }
    }
    assert(merged > 100, `only ${merged} merged writes`);
  }));
