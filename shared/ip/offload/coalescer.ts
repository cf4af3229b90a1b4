/**
 * The write side of TUN offloads: consecutive TCP segments of one flow in a
 * batch of packets bound for the TUN (and UDP datagrams, when the TUN has
 * USO) are merged into one super-packet with a `virtio_net_hdr` that tells
 * the kernel how it was built, so the kernel forwards one 64 KiB packet
 * instead of 45 small ones (GRO done in user space, as wireguard-go's
 * `tun/offload_linux.go` `handleGRO()` does, with the kernel's own GRO
 * rules from `tcp_gro_receive()`/`inet_gro_receive()`).
 *
 * A packet joins the latest group of its flow only when all of these hold;
 * otherwise it starts a group of its own (which is then its flow's latest):
 * - TCP over IPv4 without options or over IPv6 without extension headers,
 *   not a fragment, length fields that match the packet, at least one
 *   payload byte; flags exactly ACK or ACK|PSH (no SYN, FIN, RST, URG, ECE,
 *   CWR); a valid transport checksum (merging would otherwise hide a
 *   corrupt packet behind the checksum the kernel computes).
 * - Same addresses and ports, IPv4 TOS, TTL and DF (and reserved) bit, or
 *   IPv6 version/traffic class/flow label and hop limit; IPv4
 *   identification one more than the previous segment's unless DF is set
 *   (then the kernel ignores it).
 * - TCP: same header length and option bytes (timestamps included), same
 *   acknowledgment number, sequence number right after the group's last
 *   byte; the group's last segment has no PSH (PSH ends a group).
 * - Payload no larger than the group's first (`gso_size`); a smaller one
 *   ends the group.
 * - The merged packet stays within the size limit (65535 bytes by
 *   default) and, for UDP, 64 segments (the kernel's `UDP_MAX_SEGMENTS`).
 *
 * A packet of a TCP or UDP flow that cannot join (a pure ACK, a FIN, a bad
 * checksum, a retransmission) still becomes its flow's latest group, so no
 * later packet of that flow is merged ahead of it: the order within a flow
 * is kept. Flows may pass each other (groups are written in the order of
 * their first packet). The merged packet keeps its first segment's headers
 * (window, identification, options) with the lengths, the IPv4 header
 * checksum and PSH from the last segment fixed up, and the transport
 * checksum field holding the pseudo-header sum for the kernel to complete
 * (`VIRTIO_NET_HDR_F_NEEDS_CSUM`).
 *
 * Nothing is allocated per batch: the {@linkcode Coalescer} owns typed
 * arrays sized for its largest batch. Pure code (no Deno global).
 *
 * @module
 */
import { checksumAdd, checksumFinish, internetChecksum } from "../checksum.ts";
import { IP_PROTOCOL_TCP, IP_PROTOCOL_UDP } from "../ip_header.ts";
import {
  pseudoHeaderSum,
  TCP_ACK,
  TCP_CHECKSUM_OFFSET,
  TCP_PSH,
  UDP_CHECKSUM_OFFSET,
} from "./gso_split.ts";
import {
  OffloadError,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  VIRTIO_NET_HDR_LENGTH,
} from "./virtio_net_hdr.ts";

/** Largest IP packet (IPv4 total length, and the limit used for IPv6 too), bytes. */
export const MAX_COALESCED_SIZE = 65535;
/** Most datagrams in one UDP super-packet (`UDP_MAX_SEGMENTS` of older kernels; newer allow 128). */
export const MAX_UDP_SEGMENTS = 64;

const TCP_FLAGS_OFFSET = 13;
const UDP_HEADER_LENGTH = 8;

/** Kind of a group: what its packets are. */
const KIND_NONE = 0; // not TCP/UDP, or no flow to read (never merged, no barrier)
const KIND_TCP4 = 1;
const KIND_TCP6 = 2;
const KIND_UDP4 = 3;
const KIND_UDP6 = 4;

/** Options of a {@linkcode Coalescer}. */
export interface CoalescerOptions {
  /** Most packets one batch may hold. */
  readonly maxBatch: number;
  /** Merge UDP datagrams too (the TUN accepted `TUN_F_USO4 | TUN_F_USO6`, Linux 6.2+). */
  readonly udp: boolean;
  /** Largest merged IP packet, bytes; default and maximum {@linkcode MAX_COALESCED_SIZE}. */
  readonly maxSize?: number;
}

/**
 * Groups a batch of IP packets into writes for a TUN with `IFF_VNET_HDR`
 * (rules in the module documentation). Reuse one per writer: each
 * {@linkcode coalesce} call replaces the previous result.
 *
 * ```ts
 * const writes = coalescer.coalesce(ring, offsets, lengths, count);
 * for (let w = 0; w < writes; w++) {
 *   const n = coalescer.build(w, ring, offsets, lengths, out, 0);
 *   write(fd, out, n); // virtio_net_hdr + packet
 * }
 * ```
 */
export class Coalescer {
  readonly #maxBatch: number;
  readonly #udp: boolean;
  readonly #maxSize: number;
  /** Per packet: the next packet of its group, or -1. */
  readonly #next: Int32Array;
  /** Per group. */
  readonly #first: Int32Array;
  readonly #tail: Int32Array;
  readonly #count: Int32Array;
  readonly #size: Int32Array;
  readonly #segment: Int32Array;
  readonly #kind: Uint8Array;
  readonly #open: Uint8Array;
  readonly #firstChecked: Uint8Array;
  readonly #hash: Int32Array;
  readonly #ipHeader: Int32Array;
  readonly #header: Int32Array;
  readonly #nextSeq: Float64Array;
  #groups = 0;

  constructor(options: CoalescerOptions) {
    if (!(Number.isInteger(options.maxBatch) && options.maxBatch >= 1)) {
      throw new RangeError(`Coalescer: maxBatch ${options.maxBatch} is not a positive integer`);
    }
    const maxSize = options.maxSize ?? MAX_COALESCED_SIZE;
    if (!(Number.isInteger(maxSize) && maxSize >= 1 && maxSize <= MAX_COALESCED_SIZE)) {
      throw new RangeError(`Coalescer: maxSize ${maxSize} is outside 1..${MAX_COALESCED_SIZE}`);
    }
    const n = options.maxBatch;
    this.#maxBatch = n;
    this.#udp = options.udp;
    this.#maxSize = maxSize;
    this.#next = new Int32Array(n);
    this.#first = new Int32Array(n);
    this.#tail = new Int32Array(n);
    this.#count = new Int32Array(n);
    this.#size = new Int32Array(n);
    this.#segment = new Int32Array(n);
    this.#kind = new Uint8Array(n);
    this.#open = new Uint8Array(n);
    this.#firstChecked = new Uint8Array(n);
    this.#hash = new Int32Array(n);
    this.#ipHeader = new Int32Array(n);
    this.#header = new Int32Array(n);
    this.#nextSeq = new Float64Array(n);
  }

  /**
   * Groups packet `i` = `bytes[offsets[i], offsets[i] + lengths[i])` for
   * `i < count` and returns the number of writes (groups), in the order of
   * their first packet. The packets are only read.
   *
   * @throws {RangeError} `count` above `maxBatch`, or a packet outside `bytes`
   */
  coalesce(
    bytes: Uint8Array,
    offsets: ArrayLike<number>,
    lengths: ArrayLike<number>,
    count: number,
  ): number {
    if (!(count >= 0 && count <= this.#maxBatch)) {
      throw new RangeError(`Coalescer: batch of ${count} exceeds maxBatch ${this.#maxBatch}`);
    }
    this.#groups = 0;
    for (let i = 0; i < count; i++) {
      const at = offsets[i];
      const length = lengths[i];
      if (!(at >= 0 && length >= 0 && at + length <= bytes.length)) {
        throw new RangeError(
          `Coalescer: packet ${i} [${at}, ${at + length}) is outside ${bytes.length} bytes`,
        );
      }
      this.#next[i] = -1;
      this.#add(bytes, offsets, lengths, i);
    }
    return this.#groups;
  }

  /** Packets merged into write `w` (1: the packet goes as it is). */
  packetCount(w: number): number {
    this.#check(w);
    return this.#count[w];
  }

  /** Index in the batch of the first packet of write `w` (for a caller that writes single packets in place). */
  firstPacket(w: number): number {
    this.#check(w);
    return this.#first[w];
  }

  /** Length of write `w`'s IP packet, bytes (without the 10-byte `virtio_net_hdr`). */
  packetLength(w: number): number {
    this.#check(w);
    return this.#size[w];
  }

  /**
   * Writes write `w` into `out[outOffset, outEnd)`: the `virtio_net_hdr`
   * (all zero for a single packet) followed by the IP packet, merged when
   * the group has several. Returns the bytes written (10 + packetLength).
   * The batch must be the one last passed to {@linkcode coalesce},
   * unchanged.
   *
   * @throws {OffloadError} it does not fit before `outEnd`
   */
  build(
    w: number,
    bytes: Uint8Array,
    offsets: ArrayLike<number>,
    lengths: ArrayLike<number>,
    out: Uint8Array,
    outOffset: number,
    outEnd: number = out.length,
  ): number {
    this.#check(w);
    const total = VIRTIO_NET_HDR_LENGTH + this.#size[w];
    if (!(outOffset >= 0 && outEnd <= out.length && outOffset + total <= outEnd)) {
      throw new OffloadError(
        `Cannot build coalesced packet: ${total} bytes do not fit in [${outOffset}, ${outEnd}) ` +
          `of ${out.length}`,
      );
    }
    const first = this.#first[w];
    const firstAt = offsets[first];
    const p = outOffset + VIRTIO_NET_HDR_LENGTH;
    const limit = p + this.#size[w];
    // The batch must be the one coalesce() saw; never write past what it planned.
    if (p + lengths[first] > limit) throw changedBatch();
    out.set(bytes.subarray(firstAt, firstAt + lengths[first]), p);
    const kind = this.#kind[w];
    if (this.#count[w] === 1) {
      out.fill(0, outOffset, p);
      return total;
    }
    const ipHeader = this.#ipHeader[w];
    const header = this.#header[w];
    let end = p + lengths[first];
    let last = first;
    for (let i = this.#next[first]; i !== -1; i = this.#next[i]) {
      const at = offsets[i];
      if (end + lengths[i] - header > limit || lengths[i] < header) throw changedBatch();
      out.set(bytes.subarray(at + header, at + lengths[i]), end);
      end += lengths[i] - header;
      last = i;
    }
    const size = end - p;
    const tcp = kind === KIND_TCP4 || kind === KIND_TCP6;
    const v6 = kind === KIND_TCP6 || kind === KIND_UDP6;
    if (v6) {
      writeBe16(out, p + 4, size - 40);
    } else {
      writeBe16(out, p + 2, size);
      writeBe16(out, p + 10, 0);
      writeBe16(out, p + 10, internetChecksum(out, p, p + ipHeader));
    }
    const transport = p + ipHeader;
    if (tcp) {
      out[transport + TCP_FLAGS_OFFSET] |= bytes[offsets[last] + ipHeader + TCP_FLAGS_OFFSET] &
        TCP_PSH;
    } else {
      writeBe16(out, transport + 4, size - ipHeader);
    }
    const csumOffset = tcp ? TCP_CHECKSUM_OFFSET : UDP_CHECKSUM_OFFSET;
    // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum, not complemented.
    writeBe16(
      out,
      transport + csumOffset,
      pseudoHeaderSum(out, p, v6 ? 6 : 4, tcp ? IP_PROTOCOL_TCP : IP_PROTOCOL_UDP, size - ipHeader),
    );
    // virtio_net_hdr, little endian (see virtio_net_hdr.ts).
    out[outOffset] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    out[outOffset + 1] = kind === KIND_TCP4
      ? VIRTIO_NET_HDR_GSO_TCPV4
      : kind === KIND_TCP6
      ? VIRTIO_NET_HDR_GSO_TCPV6
      : VIRTIO_NET_HDR_GSO_UDP_L4;
    writeLe16(out, outOffset + 2, header);
    writeLe16(out, outOffset + 4, this.#segment[w]);
    writeLe16(out, outOffset + 6, ipHeader);
    writeLe16(out, outOffset + 8, csumOffset);
    return total;
  }

  #check(w: number): void {
    if (!(w >= 0 && w < this.#groups)) {
      throw new RangeError(`Coalescer: write ${w} is outside 0..${this.#groups - 1}`);
    }
  }

  #add(bytes: Uint8Array, offsets: ArrayLike<number>, lengths: ArrayLike<number>, i: number) {
    const at = offsets[i];
    const length = lengths[i];
    const kind = flowKind(bytes, at, length, this.#udp);
    const ipHeader = kind === KIND_NONE ? 0 : ipHeaderLength(bytes, at, kind);
    const hash = kind === KIND_NONE ? 0 : flowHash(bytes, at, kind, ipHeader);
    if (kind !== KIND_NONE) {
      // The latest group of this flow, if any.
      for (let g = this.#groups - 1; g >= 0; g--) {
        if (this.#kind[g] !== kind || this.#hash[g] !== hash || this.#ipHeader[g] !== ipHeader) {
          continue;
        }
        const tail = this.#tail[g];
        if (!sameFlow(bytes, at, offsets[tail], kind, ipHeader)) continue;
        if (this.#open[g] === 1 && this.#tryAppend(bytes, offsets, lengths, g, i)) return;
        break;
      }
    }
    const g = this.#groups++;
    this.#first[g] = i;
    this.#tail[g] = i;
    this.#count[g] = 1;
    this.#size[g] = length;
    this.#kind[g] = kind;
    this.#hash[g] = hash;
    this.#ipHeader[g] = ipHeader;
    this.#firstChecked[g] = 0;
    this.#open[g] = kind !== KIND_NONE && this.#isCandidate(bytes, at, length, kind, ipHeader)
      ? 1
      : 0;
    if (this.#open[g] === 1) {
      const header = ipHeader + transportHeaderLength(bytes, at, kind, ipHeader);
      this.#header[g] = header;
      this.#segment[g] = length - header;
      if (kind === KIND_TCP4 || kind === KIND_TCP6) {
        this.#nextSeq[g] = (readBe32(bytes, at + ipHeader + 4) + length - header) % 0x100000000;
        // PSH ends a group.
        if ((bytes[at + ipHeader + TCP_FLAGS_OFFSET] & TCP_PSH) !== 0) this.#open[g] = 0;
      }
    } else {
      this.#header[g] = 0;
      this.#segment[g] = 0;
    }
  }

  /** A packet that may join a group or start one (not yet checked against a group). */
  #isCandidate(
    bytes: Uint8Array,
    at: number,
    length: number,
    kind: number,
    ipHeader: number,
  ): boolean {
    if (length > this.#maxSize) return false;
    const v6 = kind === KIND_TCP6 || kind === KIND_UDP6;
    if (v6) {
      if (((bytes[at + 4] << 8) | bytes[at + 5]) !== length - 40) return false;
    } else {
      if (ipHeader !== 20) return false; // IPv4 options: never merged
      if (((bytes[at + 2] << 8) | bytes[at + 3]) !== length) return false;
      if ((bytes[at + 6] & 0x3f) !== 0 || bytes[at + 7] !== 0) return false; // a fragment
    }
    const transport = at + ipHeader;
    if (kind === KIND_TCP4 || kind === KIND_TCP6) {
      if (length < ipHeader + 20) return false;
      const tcpHeader = (bytes[transport + 12] >> 4) * 4;
      if (tcpHeader < 20 || length <= ipHeader + tcpHeader) return false;
      const flags = bytes[transport + TCP_FLAGS_OFFSET];
      return flags === TCP_ACK || flags === (TCP_ACK | TCP_PSH);
    }
    if (length <= ipHeader + UDP_HEADER_LENGTH) return false;
    return ((bytes[transport + 4] << 8) | bytes[transport + 5]) === length - ipHeader;
  }

  #tryAppend(
    bytes: Uint8Array,
    offsets: ArrayLike<number>,
    lengths: ArrayLike<number>,
    g: number,
    i: number,
  ): boolean {
    const at = offsets[i];
    const length = lengths[i];
    const kind = this.#kind[g];
    const ipHeader = this.#ipHeader[g];
    if (!this.#isCandidate(bytes, at, length, kind, ipHeader)) return false;
    const header = this.#header[g];
    if (ipHeader + transportHeaderLength(bytes, at, kind, ipHeader) !== header) return false;
    const payload = length - header;
    const segment = this.#segment[g];
    if (payload > segment) return false;
    if (this.#size[g] + payload > this.#maxSize) return false;
    const tcp = kind === KIND_TCP4 || kind === KIND_TCP6;
    if (!tcp && this.#count[g] >= MAX_UDP_SEGMENTS) return false;
    const firstAt = offsets[this.#first[g]];
    if (!ipHeadersMatch(bytes, firstAt, at, kind, this.#count[g])) return false;
    if (tcp) {
      // Acknowledgment number and options as the first segment's, in sequence.
      for (let b = 8; b < 12; b++) {
        if (bytes[firstAt + ipHeader + b] !== bytes[at + ipHeader + b]) return false;
      }
      for (let b = ipHeader + 20; b < header; b++) {
        if (bytes[firstAt + b] !== bytes[at + b]) return false;
      }
      if (readBe32(bytes, at + ipHeader + 4) !== this.#nextSeq[g]) return false;
    }
    if (this.#firstChecked[g] === 0) {
      if (!transportChecksumValid(bytes, firstAt, lengths[this.#first[g]], kind, ipHeader)) {
        this.#open[g] = 0;
        return false;
      }
      this.#firstChecked[g] = 1;
    }
    if (!transportChecksumValid(bytes, at, length, kind, ipHeader)) return false;

    this.#next[this.#tail[g]] = i;
    this.#tail[g] = i;
    this.#count[g]++;
    this.#size[g] += payload;
    if (tcp) {
      this.#nextSeq[g] = (this.#nextSeq[g] + payload) % 0x100000000;
      if ((bytes[at + ipHeader + TCP_FLAGS_OFFSET] & TCP_PSH) !== 0) this.#open[g] = 0;
    }
    if (payload < segment) this.#open[g] = 0;
    return true;
  }
}

function changedBatch(): OffloadError {
  return new OffloadError("Cannot build coalesced packet: the batch changed since coalesce()");
}

/** The group kind of the packet at `bytes[at, at + length)`: KIND_NONE unless TCP/UDP with readable ports. */
function flowKind(bytes: Uint8Array, at: number, length: number, udp: boolean): number {
  if (length < 1) return KIND_NONE;
  const version = bytes[at] >> 4;
  if (version === 4) {
    const ihl = (bytes[at] & 0x0f) * 4;
    if (length < 20 || ihl < 20 || length < ihl + 4) return KIND_NONE;
    // A non-first fragment carries no ports.
    if ((bytes[at + 6] & 0x1f) !== 0 || bytes[at + 7] !== 0) return KIND_NONE;
    const protocol = bytes[at + 9];
    if (protocol === IP_PROTOCOL_TCP) return KIND_TCP4;
    return protocol === IP_PROTOCOL_UDP && udp ? KIND_UDP4 : KIND_NONE;
  }
  if (version === 6) {
    if (length < 44) return KIND_NONE;
    const next = bytes[at + 6];
    if (next === IP_PROTOCOL_TCP) return KIND_TCP6;
    return next === IP_PROTOCOL_UDP && udp ? KIND_UDP6 : KIND_NONE;
  }
  return KIND_NONE;
}

function ipHeaderLength(bytes: Uint8Array, at: number, kind: number): number {
  return kind === KIND_TCP6 || kind === KIND_UDP6 ? 40 : (bytes[at] & 0x0f) * 4;
}

function transportHeaderLength(
  bytes: Uint8Array,
  at: number,
  kind: number,
  ipHeader: number,
): number {
  return kind === KIND_TCP4 || kind === KIND_TCP6
    ? (bytes[at + ipHeader + 12] >> 4) * 4
    : UDP_HEADER_LENGTH;
}

/** A cheap 32-bit mix of both addresses and ports, to skip most other flows without comparing bytes. */
function flowHash(bytes: Uint8Array, at: number, kind: number, ipHeader: number): number {
  const v6 = kind === KIND_TCP6 || kind === KIND_UDP6;
  let h = readBe32(bytes, at + ipHeader) | 0; // ports
  const from = at + (v6 ? 8 : 12);
  const to = at + (v6 ? 40 : 20);
  for (let b = from; b < to; b += 4) h = (Math.imul(h, 0x01000193) ^ readBe32(bytes, b)) | 0;
  return h;
}

function sameFlow(bytes: Uint8Array, a: number, b: number, kind: number, ipHeader: number) {
  const v6 = kind === KIND_TCP6 || kind === KIND_UDP6;
  for (let i = v6 ? 8 : 12, end = v6 ? 40 : 20; i < end; i++) {
    if (bytes[a + i] !== bytes[b + i]) return false;
  }
  for (let i = 0; i < 4; i++) {
    if (bytes[a + ipHeader + i] !== bytes[b + ipHeader + i]) return false;
  }
  return true;
}

/**
 * The IP header rules between a group's first packet (at `first`, with
 * `count` packets so far) and a packet that would follow.
 */
function ipHeadersMatch(
  bytes: Uint8Array,
  first: number,
  at: number,
  kind: number,
  count: number,
): boolean {
  if (kind === KIND_TCP6 || kind === KIND_UDP6) {
    // Version, traffic class and flow label; hop limit.
    for (let b = 0; b < 4; b++) if (bytes[first + b] !== bytes[at + b]) return false;
    return bytes[first + 7] === bytes[at + 7];
  }
  // TOS, TTL, and the reserved and DF bits.
  if (bytes[first + 1] !== bytes[at + 1] || bytes[first + 8] !== bytes[at + 8]) return false;
  if ((bytes[first + 6] & 0xc0) !== (bytes[at + 6] & 0xc0)) return false;
  if ((bytes[at + 6] & 0x40) !== 0) return true; // DF: the identification does not matter
  const id = (bytes[first + 4] << 8) | bytes[first + 5];
  return ((bytes[at + 4] << 8) | bytes[at + 5]) === ((id + count) & 0xffff);
}

function transportChecksumValid(
  bytes: Uint8Array,
  at: number,
  length: number,
  kind: number,
  ipHeader: number,
): boolean {
  const v6 = kind === KIND_TCP6 || kind === KIND_UDP6;
  const tcp = kind === KIND_TCP4 || kind === KIND_TCP6;
  const sum = pseudoHeaderSum(
    bytes,
    at,
    v6 ? 6 : 4,
    tcp ? IP_PROTOCOL_TCP : IP_PROTOCOL_UDP,
    length - ipHeader,
  );
  return checksumFinish(checksumAdd(sum, bytes, at + ipHeader, at + length)) === 0;
}

function readBe32(bytes: Uint8Array, at: number): number {
  return ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
}

function writeBe16(out: Uint8Array, at: number, value: number): void {
  out[at] = (value >>> 8) & 0xff;
  out[at + 1] = value & 0xff;
}

function writeLe16(out: Uint8Array, at: number, value: number): void {
  out[at] = value & 0xff;
  out[at + 1] = (value >>> 8) & 0xff;
}
