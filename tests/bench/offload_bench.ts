/**
 * Micro-benchmark of the pure offload code (not a test; no root):
 *
 *   deno run tests/bench/offload_bench.ts [seconds]
 *
 * - split: one 64 KiB TSO4 super-packet (MSS 1448, timestamps) into 45
 *   segments written into one buffer, as the TUN reader worker will do;
 * - coalesce: a batch of 45 such segments merged back into one write and
 *   built into a buffer, as the TUN writer worker will do.
 *
 * Prints the time per super-packet and per segment (µs) and the segment
 * rate: what the offload code itself costs on a core, before any system
 * call.
 *
 * @module
 */
import { Coalescer } from "../../shared/ip/offload/coalescer.ts";
import { emptyGsoPlan, planGsoSplit, writeGsoSegment } from "../../shared/ip/offload/gso_split.ts";
import {
  emptyVirtioNetHdr,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_TCPV4,
} from "../../shared/ip/offload/virtio_net_hdr.ts";
import {
  asPartialChecksum,
  buildTcpPacket,
  payloadBytes,
  timestampOption,
} from "../support/offload_packets.ts";

const MSS = 1448;
const SEGMENTS = 45;
const seconds = Number(Deno.args[0] ?? 2);

const base = {
  src: "198.18.0.2",
  dst: "198.18.1.2",
  seq: 1,
  id: 1,
  options: timestampOption(1, 2),
};
const superPacket = asPartialChecksum(
  buildTcpPacket({ ...base, payload: payloadBytes(MSS * SEGMENTS) }),
);
const hdr = {
  ...emptyVirtioNetHdr(),
  flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
  gsoType: VIRTIO_NET_HDR_GSO_TCPV4,
  gsoSize: MSS,
  csumStart: 20,
  csumOffset: 16,
};
const plan = emptyGsoPlan();
const ring = new Uint8Array(SEGMENTS * 2048);
const offsets = Array.from({ length: SEGMENTS }, (_, i) => i * 2048 + 16);
const lengths = new Array<number>(SEGMENTS).fill(0);

function split(): void {
  planGsoSplit(hdr, superPacket, 0, superPacket.length, 1500, plan);
  for (let i = 0; i < plan.segmentCount; i++) {
    lengths[i] = writeGsoSegment(plan, superPacket, 0, i, ring, offsets[i], offsets[i] + 1500);
  }
}

const coalescer = new Coalescer({ maxBatch: SEGMENTS, udp: true });
const out = new Uint8Array(70_000);
function coalesce(): void {
  const writes = coalescer.coalesce(ring, offsets, lengths, SEGMENTS);
  for (let w = 0; w < writes; w++) coalescer.build(w, ring, offsets, lengths, out, 0);
}

function time(name: string, body: () => void): void {
  for (let i = 0; i < 200; i++) body(); // warm up
  let runs = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  while (performance.now() < deadline) {
    for (let i = 0; i < 50; i++) body();
    runs += 50;
  }
  const us = ((performance.now() - start) * 1000) / runs;
  console.log(
    `${name.padEnd(9)} ${us.toFixed(1).padStart(6)} µs per 64 KiB, ` +
      `${(us / SEGMENTS).toFixed(2)} µs per segment, ` +
      `${((runs * SEGMENTS) / seconds / 1e6).toFixed(2)} M segments/s`,
  );
}

split();
if (coalescer.coalesce(ring, offsets, lengths, SEGMENTS) !== 1) {
  throw new Error("the benchmark's segments did not coalesce into one write");
}
time("split", split);
time("coalesce", coalesce);
