/**
 * The read side of TUN offloads: what a TUN opened with `IFF_VNET_HDR` and
 * `TUNSETOFFLOAD` hands out is turned back into ordinary IP packets no
 * larger than the session's packet limit.
 *
 * - A GSO super-packet (`VIRTIO_NET_HDR_GSO_TCPV4`, `_TCPV6`, `_UDP_L4`: up
 *   to 64 KiB of one TCP stream or of equal-sized UDP datagrams behind one IP
 *   and transport header) is split into segments: each gets a copy of the
 *   headers with the IP total length (IPv4) or payload length (IPv6), the
 *   IPv4 identification (incremented per segment) and header checksum, the
 *   TCP sequence number and flags (FIN and PSH only on the last segment, CWR
 *   only on the first) or the UDP length fixed, and a full transport
 *   checksum (the kernel leaves only the pseudo-header sum in the field).
 *   What the kernel's own `tcp_gso_segment()`/`__udp_gso_segment()` do, and
 *   wireguard-go's `tun/offload_linux.go` `gsoSplit()`.
 * - A plain packet with `VIRTIO_NET_HDR_F_NEEDS_CSUM` (CHECKSUM_PARTIAL) gets
 *   its transport checksum completed ({@linkcode completeChecksum}).
 *
 * Use: {@linkcode planGsoSplit} once per read (it checks everything and
 * fills a caller-owned {@linkcode GsoPlan}), then {@linkcode writeGsoSegment}
 * for each segment into the caller's buffer, e.g. a ring slot. The input is
 * never modified and nothing is allocated but one subarray view per copy.
 * Malformed input throws {@linkcode OffloadError} and nothing else.
 *
 * Supported: IPv4 with options, IPv6 whose fixed header is followed directly
 * by TCP or UDP (a super-packet with IPv6 extension headers is refused: the
 * kernel builds none for a TUN's own traffic).
 *
 * @module
 */
import { checksumAdd, checksumAdd16, checksumAdd32, checksumFinish } from "../checksum.ts";
import { IP_PROTOCOL_TCP, IP_PROTOCOL_UDP } from "../ip_header.ts";
import {
  OffloadError,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP_L4,
} from "./virtio_net_hdr.ts";
import type { VirtioNetHdr } from "./virtio_net_hdr.ts";

/** Offset of the checksum field in a TCP header (RFC 9293 §3.1). */
export const TCP_CHECKSUM_OFFSET = 16;
/** Offset of the checksum field in a UDP header (RFC 768). */
export const UDP_CHECKSUM_OFFSET = 6;
/** TCP flag bits in header byte 13 (RFC 9293 §3.1, RFC 3168 §6.1 for ECE/CWR). */
export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

const TCP_FLAGS_OFFSET = 13;
const UDP_HEADER_LENGTH = 8;

/** How one read from the TUN splits; filled by {@linkcode planGsoSplit}, owned by the caller. */
export interface GsoPlan {
  /** `VIRTIO_NET_HDR_GSO_*` without the ECN bit; `VIRTIO_NET_HDR_GSO_NONE` for a plain packet. */
  gsoType: number;
  /** Plain packet only: the transport checksum is to be completed. */
  needsChecksum: boolean;
  /** Where the transport header starts (`csum_start`, the IP header length), bytes. */
  csumStart: number;
  /** From `csumStart` to the checksum field, bytes. */
  csumOffset: number;
  /** 4 or 6 (0 for a plain packet: not looked at). */
  ipVersion: number;
  /** `IP_PROTOCOL_TCP` or `IP_PROTOCOL_UDP` (0 for a plain packet). */
  protocol: number;
  /** IP plus transport header length, bytes (the whole packet for a plain one). */
  headerLength: number;
  /** Payload bytes per segment; the last may be shorter. */
  segmentPayload: number;
  /** Payload bytes in all, after the headers. */
  payloadLength: number;
  /** Number of packets this read becomes, at least 1. */
  segmentCount: number;
  /** Largest segment, bytes (at most the limit given). */
  largestSegment: number;
}

/** A fresh plan to pass to {@linkcode planGsoSplit} again and again. */
export function emptyGsoPlan(): GsoPlan {
  return {
    gsoType: 0,
    needsChecksum: false,
    csumStart: 0,
    csumOffset: 0,
    ipVersion: 0,
    protocol: 0,
    headerLength: 0,
    segmentPayload: 0,
    payloadLength: 0,
    segmentCount: 0,
    largestSegment: 0,
  };
}

/**
 * Checks the packet `packet[start, end)` (what followed the
 * `virtio_net_hdr` `hdr`) and plans its split into packets of at most
 * `maxPacketSize` bytes.
 *
 * TCP segments are made smaller than `gso_size` when the limit asks for it
 * (sequence numbers follow). UDP datagrams keep their `gso_size` (it is the
 * application's datagram size), so a UDP super-packet whose datagrams exceed
 * the limit is refused. The kernel's `hdr_len` is not trusted (it can be the
 * whole first packet on a forwarding path); the header length comes from the
 * packet, as wireguard-go does.
 *
 * @param into the plan to fill (returned)
 * @throws {OffloadError} an unsupported GSO type, a header that does not fit
 *   the packet or contradicts it, a segment that cannot fit the limit
 */
export function planGsoSplit(
  hdr: VirtioNetHdr,
  packet: Uint8Array,
  start: number,
  end: number,
  maxPacketSize: number,
  into: GsoPlan,
): GsoPlan {
  if (!(start >= 0 && start <= end && end <= packet.length)) {
    throw new OffloadError(
      `Cannot split GSO packet: range [${start}, ${end}) is outside ${packet.length} bytes`,
    );
  }
  const length = end - start;
  const gsoType = hdr.gsoType & ~VIRTIO_NET_HDR_GSO_ECN;
  into.gsoType = gsoType;
  into.csumStart = hdr.csumStart;
  into.csumOffset = hdr.csumOffset;
  if (gsoType === VIRTIO_NET_HDR_GSO_NONE) {
    if (length === 0) throw new OffloadError("Cannot split GSO packet: empty packet");
    if (length > maxPacketSize) {
      throw new OffloadError(
        `Cannot split GSO packet: plain packet of ${length} bytes exceeds limit ${maxPacketSize}`,
      );
    }
    into.needsChecksum = (hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0;
    if (into.needsChecksum) checkChecksumPosition(length, hdr.csumStart, hdr.csumOffset);
    into.ipVersion = 0;
    into.protocol = 0;
    into.headerLength = length;
    into.segmentPayload = 0;
    into.payloadLength = 0;
    into.segmentCount = 1;
    into.largestSegment = length;
    return into;
  }
  into.needsChecksum = false;

  let protocol: number;
  if (gsoType === VIRTIO_NET_HDR_GSO_TCPV4 || gsoType === VIRTIO_NET_HDR_GSO_TCPV6) {
    protocol = IP_PROTOCOL_TCP;
  } else if (gsoType === VIRTIO_NET_HDR_GSO_UDP_L4) {
    protocol = IP_PROTOCOL_UDP;
  } else {
    throw new OffloadError(`Cannot split GSO packet: unsupported gso_type ${hdr.gsoType}`);
  }
  if (length < 1) throw new OffloadError("Cannot split GSO packet: empty packet");
  const version = packet[start] >> 4;
  const csumStart = hdr.csumStart;
  if (version === 4) {
    if (gsoType === VIRTIO_NET_HDR_GSO_TCPV6) {
      throw new OffloadError("Cannot split GSO packet: gso_type TCPV6 on an IPv4 packet");
    }
    const ihl = (packet[start] & 0x0f) * 4;
    if (ihl < 20 || length < ihl) {
      throw new OffloadError(
        `Cannot split GSO packet: IPv4 header length ${ihl} in a ${length}-byte packet`,
      );
    }
    if (csumStart !== ihl) {
      throw new OffloadError(
        `Cannot split GSO packet: csum_start ${csumStart} is not the IPv4 header length ${ihl}`,
      );
    }
    if (packet[start + 9] !== protocol) {
      throw new OffloadError(
        `Cannot split GSO packet: IPv4 protocol ${packet[start + 9]} does not match gso_type ` +
          `${hdr.gsoType}`,
      );
    }
    if ((packet[start + 6] & 0x3f) !== 0 || packet[start + 7] !== 0) {
      throw new OffloadError("Cannot split GSO packet: the IPv4 super-packet is a fragment");
    }
  } else if (version === 6) {
    if (gsoType === VIRTIO_NET_HDR_GSO_TCPV4) {
      throw new OffloadError("Cannot split GSO packet: gso_type TCPV4 on an IPv6 packet");
    }
    if (length < 40) {
      throw new OffloadError(`Cannot split GSO packet: IPv6 packet of ${length} bytes`);
    }
    if (csumStart !== 40 || packet[start + 6] !== protocol) {
      throw new OffloadError(
        `Cannot split GSO packet: IPv6 next header ${packet[start + 6]} at csum_start ` +
          `${csumStart} (extension headers are not supported)`,
      );
    }
  } else {
    throw new OffloadError(`Cannot split GSO packet: IP version ${version}`);
  }

  let transportLength: number;
  if (protocol === IP_PROTOCOL_TCP) {
    if (length < csumStart + 20) {
      throw new OffloadError(
        `Cannot split GSO packet: TCP header at ${csumStart} does not fit ${length} bytes`,
      );
    }
    transportLength = (packet[start + csumStart + 12] >> 4) * 4;
    if (transportLength < 20) {
      throw new OffloadError(`Cannot split GSO packet: TCP header length ${transportLength}`);
    }
    if (hdr.csumOffset !== TCP_CHECKSUM_OFFSET) {
      throw new OffloadError(`Cannot split GSO packet: csum_offset ${hdr.csumOffset} for TCP`);
    }
  } else {
    transportLength = UDP_HEADER_LENGTH;
    if (hdr.csumOffset !== UDP_CHECKSUM_OFFSET) {
      throw new OffloadError(`Cannot split GSO packet: csum_offset ${hdr.csumOffset} for UDP`);
    }
  }
  const headerLength = csumStart + transportLength;
  if (length <= headerLength) {
    throw new OffloadError(
      `Cannot split GSO packet: ${length} bytes leave no payload after ${headerLength} bytes of ` +
        "headers",
    );
  }
  if (hdr.gsoSize < 1) throw new OffloadError("Cannot split GSO packet: gso_size 0");
  const payloadLength = length - headerLength;
  let segmentPayload = hdr.gsoSize;
  if (protocol === IP_PROTOCOL_TCP) {
    segmentPayload = Math.min(segmentPayload, maxPacketSize - headerLength);
    if (segmentPayload < 1) {
      throw new OffloadError(
        `Cannot split GSO packet: ${headerLength} bytes of headers leave no room under limit ` +
          maxPacketSize,
      );
    }
  } else if (headerLength + Math.min(segmentPayload, payloadLength) > maxPacketSize) {
    throw new OffloadError(
      `Cannot split GSO packet: UDP datagrams of ${
        headerLength + Math.min(segmentPayload, payloadLength)
      } bytes exceed limit ${maxPacketSize} (their size is the sender's)`,
    );
  }
  into.ipVersion = version;
  into.protocol = protocol;
  into.headerLength = headerLength;
  into.segmentPayload = segmentPayload;
  into.payloadLength = payloadLength;
  into.segmentCount = Math.ceil(payloadLength / segmentPayload);
  into.largestSegment = headerLength + Math.min(segmentPayload, payloadLength);
  return into;
}

/**
 * Writes segment `index` (0-based, below `plan.segmentCount`) of the packet
 * `packet[start, …)` that `plan` was made for into `out[outOffset, outEnd)`,
 * complete with correct lengths, IDs, sequence numbers, flags and
 * checksums, and returns its length in bytes. Writes nothing outside
 * `out[outOffset, outOffset + length)`.
 *
 * @throws {OffloadError} `index` out of range, or the segment does not fit
 *   before `outEnd`
 */
export function writeGsoSegment(
  plan: GsoPlan,
  packet: Uint8Array,
  start: number,
  index: number,
  out: Uint8Array,
  outOffset: number,
  outEnd: number = out.length,
): number {
  if (!(index >= 0 && index < plan.segmentCount && Number.isInteger(index))) {
    throw new OffloadError(
      `Cannot write GSO segment: index ${index} is outside 0..${plan.segmentCount - 1}`,
    );
  }
  const headerLength = plan.headerLength;
  const first = start + headerLength + index * plan.segmentPayload;
  const dataLength = plan.gsoType === VIRTIO_NET_HDR_GSO_NONE
    ? 0
    : Math.min(plan.segmentPayload, plan.payloadLength - index * plan.segmentPayload);
  const size = headerLength + dataLength;
  if (!(outOffset >= 0 && outEnd <= out.length && outOffset + size <= outEnd)) {
    throw new OffloadError(
      `Cannot write GSO segment: ${size} bytes do not fit in [${outOffset}, ${outEnd}) of ` +
        `${out.length}`,
    );
  }
  if (start < 0 || start + headerLength > packet.length || first + dataLength > packet.length) {
    throw new OffloadError(
      `Cannot write GSO segment: the packet (${packet.length} bytes from ${start}) is shorter ` +
        "than its plan",
    );
  }
  out.set(packet.subarray(start, start + headerLength), outOffset);
  if (plan.gsoType === VIRTIO_NET_HDR_GSO_NONE) {
    if (plan.needsChecksum) {
      completeChecksum(out, outOffset, outOffset + size, plan.csumStart, plan.csumOffset);
    }
    return size;
  }
  out.set(packet.subarray(first, first + dataLength), outOffset + headerLength);

  const csumStart = plan.csumStart;
  if (plan.ipVersion === 4) {
    writeBe16(out, outOffset + 2, size);
    const id = (packet[start + 4] << 8) | packet[start + 5];
    writeBe16(out, outOffset + 4, id + index);
    writeBe16(out, outOffset + 10, 0);
    writeBe16(
      out,
      outOffset + 10,
      checksumFinish(checksumAdd(0, out, outOffset, outOffset + csumStart)),
    );
  } else {
    writeBe16(out, outOffset + 4, size - 40);
  }
  const transport = outOffset + csumStart;
  if (plan.protocol === IP_PROTOCOL_TCP) {
    const seq = readBe32(packet, start + csumStart + 4) + index * plan.segmentPayload;
    writeBe32(out, transport + 4, seq);
    let flags = out[transport + TCP_FLAGS_OFFSET];
    if (index < plan.segmentCount - 1) flags &= ~(TCP_FIN | TCP_PSH);
    if (index > 0) flags &= ~TCP_CWR;
    out[transport + TCP_FLAGS_OFFSET] = flags;
  } else {
    writeBe16(out, transport + 4, size - csumStart);
  }
  const checksumAt = transport + plan.csumOffset;
  out[checksumAt] = 0;
  out[checksumAt + 1] = 0;
  let sum = pseudoHeaderSum(out, outOffset, plan.ipVersion, plan.protocol, size - csumStart);
  sum = checksumAdd(sum, out, transport, outOffset + size);
  let checksum = checksumFinish(sum);
  // RFC 768: a computed 0 goes out as ffff (0 means "no checksum" for UDP).
  if (checksum === 0 && plan.protocol === IP_PROTOCOL_UDP) checksum = 0xffff;
  writeBe16(out, checksumAt, checksum);
  return size;
}

/**
 * Completes a partial transport checksum in place (CHECKSUM_PARTIAL,
 * `VIRTIO_NET_HDR_F_NEEDS_CSUM`): the field at `csumStart + csumOffset`
 * holds the pseudo-header sum; the checksum over `[csumStart, end)` with it
 * included is the one's complement to store (RFC 1071). A result of 0 is
 * stored as ffff, as the kernel's `skb_checksum_help()` does (both mean zero
 * in one's complement; for UDP, 0 would mean "no checksum").
 *
 * @param start where the IP packet starts in `packet`; offsets count from it
 * @param end one past its last byte
 * @throws {OffloadError} the field lies outside the packet, or `csumOffset` is odd
 */
export function completeChecksum(
  packet: Uint8Array,
  start: number,
  end: number,
  csumStart: number,
  csumOffset: number,
): void {
  if (!(start >= 0 && start <= end && end <= packet.length)) {
    throw new OffloadError(
      `Cannot complete checksum: range [${start}, ${end}) is outside ${packet.length} bytes`,
    );
  }
  checkChecksumPosition(end - start, csumStart, csumOffset);
  const at = start + csumStart + csumOffset;
  const checksum = checksumFinish(checksumAdd(0, packet, start + csumStart, end)) || 0xffff;
  writeBe16(packet, at, checksum);
}

function checkChecksumPosition(length: number, csumStart: number, csumOffset: number): void {
  if (csumStart + csumOffset + 2 > length) {
    throw new OffloadError(
      `Cannot complete checksum: field at ${csumStart} + ${csumOffset} is outside a ` +
        `${length}-byte packet`,
    );
  }
  if (csumOffset % 2 !== 0) {
    throw new OffloadError(`Cannot complete checksum: csum_offset ${csumOffset} is odd`);
  }
}

/**
 * The pseudo-header sum (RFC 9293 §3.1, RFC 768, RFC 8200 §8.1) of the IP
 * packet at `bytes[at]`, read in place.
 */
export function pseudoHeaderSum(
  bytes: Uint8Array,
  at: number,
  ipVersion: number,
  protocol: number,
  transportLength: number,
): number {
  if (ipVersion === 6) {
    return checksumAdd16(
      checksumAdd32(checksumAdd(0, bytes, at + 8, at + 40), transportLength),
      protocol,
    );
  }
  return checksumAdd16(
    checksumAdd16(checksumAdd(0, bytes, at + 12, at + 20), protocol),
    transportLength,
  );
}

function writeBe16(out: Uint8Array, at: number, value: number): void {
  out[at] = (value >>> 8) & 0xff;
  out[at + 1] = value & 0xff;
}

function writeBe32(out: Uint8Array, at: number, value: number): void {
  out[at] = (value >>> 24) & 0xff;
  out[at + 1] = (value >>> 16) & 0xff;
  out[at + 2] = (value >>> 8) & 0xff;
  out[at + 3] = value & 0xff;
}

function readBe32(bytes: Uint8Array, at: number): number {
  return ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
}
