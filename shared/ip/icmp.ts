/**
 * ICMP error messages that a tunnel endpoint sends back to the source of a
 * packet it cannot forward (RFC 9484 §7 and §10.1): Packet Too Big
 * (RFC 4443 §3.2), Fragmentation Needed (RFC 792, RFC 1191 §4) and
 * Destination Unreachable (RFC 792, RFC 4443 §3.1), which the relay sends
 * as "administratively prohibited" for a packet its policy refuses.
 *
 * Each builder returns a complete IP packet, ready to go back through the
 * tunnel or to the TUN, or `undefined` where the RFCs forbid an answer
 * (RFC 1122 §3.2.2, RFC 1812 §4.3.2.7, RFC 4443 §2.4 (e)). They never throw
 * on a bad packet: a packet that cannot be answered gets `undefined`.
 *
 * @module
 */

import { checksumAdd, checksumFinish, internetChecksum, ipv6PseudoHeaderSum } from "./checksum.ts";
import {
  IP_PROTOCOL_ICMP,
  IP_PROTOCOL_ICMPV6,
  ipPacketLength,
  ipProtocol,
  upperLayerOffset,
  validateIpPacket,
} from "./ip_header.ts";

/** ICMP Destination Unreachable message type (RFC 792). */
export const ICMP_DESTINATION_UNREACHABLE = 3;
/** ICMP Destination Unreachable code 4: fragmentation needed and DF set (RFC 792, RFC 1191 §4). */
export const ICMP_CODE_FRAGMENTATION_NEEDED = 4;
/** ICMPv6 Destination Unreachable message type (RFC 4443 §3.1). */
export const ICMPV6_DESTINATION_UNREACHABLE = 1;
/** ICMPv6 Packet Too Big message type (RFC 4443 §3.2). */
export const ICMPV6_PACKET_TOO_BIG = 2;

/**
 * The IPv4 datagram size every host must accept, 576 bytes (RFC 791 §3.1),
 * which bounds an ICMPv4 error (RFC 1812 §4.3.2.3).
 */
export const IPV4_MIN_REASSEMBLY_SIZE = 576;
/** The smallest IPv4 MTU, 68 bytes (RFC 791 §3.2 "Fragmentation"). */
export const IPV4_MIN_MTU = 68;
/** The IPv6 minimum link MTU, 1280 bytes (RFC 8200 §5), which bounds an ICMPv6 error (RFC 4443 §2.4 (c)). */
export const IPV6_MIN_MTU = 1280;
/** TTL / Hop Limit of the ICMP messages built here. */
export const ICMP_HOP_LIMIT = 64;

/** Why a packet could not be delivered, for {@linkcode buildDestinationUnreachable}. */
export type UnreachableReason =
  /** No route: ICMPv4 code 0 "net unreachable", ICMPv6 code 0 "no route to destination". */
  | "no route"
  /** Policy forbids the destination: code 13 (RFC 1812 §5.2.7.1) / ICMPv6 code 1. */
  | "administratively prohibited"
  /** The source address is not one the sender may use: code 13 / ICMPv6 code 5 (RFC 4443 §3.1). */
  | "source address failed policy";

const ICMPV4_UNREACHABLE_CODES: Record<UnreachableReason, number> = {
  "no route": 0,
  "administratively prohibited": 13,
  "source address failed policy": 13,
};
const ICMPV6_UNREACHABLE_CODES: Record<UnreachableReason, number> = {
  "no route": 0,
  "administratively prohibited": 1,
  "source address failed policy": 5,
};

/** ICMPv4 error types (RFC 1122 §3.2.2): unreachable, source quench, redirect, time exceeded, parameter problem. */
function isIcmpv4Error(type: number): boolean {
  return type === 3 || type === 4 || type === 5 || type === 11 || type === 12;
}

/**
 * Whether an IPv4 packet may be answered with an ICMP error (RFC 1122
 * §3.2.2, RFC 1812 §4.3.2.7): its source names one host (not 0/8, 127/8,
 * multicast 224/4 or reserved 240/4), its destination is not multicast or
 * broadcast, it is not a later fragment, and it is not an ICMP error itself.
 */
function mayAnswerIpv4(packet: Uint8Array): boolean {
  const source = packet[12];
  if (source === 0 || source === 127 || source >= 224) return false;
  if (packet[16] >= 224) return false;
  if ((((packet[6] << 8) | packet[7]) & 0x1fff) !== 0) return false;
  if (packet[9] === IP_PROTOCOL_ICMP) {
    const offset = (packet[0] & 0x0f) * 4;
    if (offset >= ipPacketLength(packet) || isIcmpv4Error(packet[offset])) return false;
  }
  return true;
}

/**
 * Whether an IPv6 packet may be answered with an ICMPv6 error
 * (RFC 4443 §2.4 (e)): its source is not unspecified, loopback or multicast;
 * its destination is not multicast unless `toMulticast` (allowed for Packet
 * Too Big, (e.3)); and it is not an ICMPv6 error (type < 128) itself, which
 * needs a walkable extension header chain to tell.
 */
function mayAnswerIpv6(packet: Uint8Array, toMulticast: boolean): boolean {
  if (packet[8] === 0xff) return false;
  let zeros = 0;
  for (let i = 8; i < 23; i++) if (packet[i] === 0) zeros++;
  if (zeros === 15 && packet[23] <= 1) return false;
  if (!toMulticast && packet[24] === 0xff) return false;
  const protocol = ipProtocol(packet);
  if (protocol < 0) return false;
  if (protocol === IP_PROTOCOL_ICMPV6) {
    const offset = upperLayerOffset(packet);
    if (offset >= ipPacketLength(packet) || packet[offset] < 128) return false;
  }
  return true;
}

function buildIcmpv4Error(
  original: Uint8Array,
  from: Uint8Array,
  type: number,
  code: number,
  restOfHeader: number,
): Uint8Array {
  const quoted = Math.min(ipPacketLength(original), IPV4_MIN_REASSEMBLY_SIZE - 20 - 8);
  const out = new Uint8Array(20 + 8 + quoted);
  out[0] = 0x45; // version 4, IHL 5
  out[2] = out.length >> 8;
  out[3] = out.length & 0xff;
  out[8] = ICMP_HOP_LIMIT;
  out[9] = IP_PROTOCOL_ICMP;
  out.set(from, 12);
  out.set(original.subarray(12, 16), 16);
  out[20] = type;
  out[21] = code;
  out[24] = (restOfHeader >>> 24) & 0xff;
  out[25] = (restOfHeader >>> 16) & 0xff;
  out[26] = (restOfHeader >>> 8) & 0xff;
  out[27] = restOfHeader & 0xff;
  out.set(original.subarray(0, quoted), 28);
  const icmpChecksum = internetChecksum(out, 20);
  out[22] = icmpChecksum >> 8;
  out[23] = icmpChecksum & 0xff;
  const headerChecksum = internetChecksum(out, 0, 20);
  out[10] = headerChecksum >> 8;
  out[11] = headerChecksum & 0xff;
  return out;
}

function buildIcmpv6Error(
  original: Uint8Array,
  from: Uint8Array,
  type: number,
  code: number,
  restOfHeader: number,
): Uint8Array {
  const quoted = Math.min(ipPacketLength(original), IPV6_MIN_MTU - 40 - 8);
  const payloadLength = 8 + quoted;
  const out = new Uint8Array(40 + payloadLength);
  out[0] = 0x60; // version 6, traffic class 0, flow label 0
  out[4] = payloadLength >> 8;
  out[5] = payloadLength & 0xff;
  out[6] = IP_PROTOCOL_ICMPV6;
  out[7] = ICMP_HOP_LIMIT;
  out.set(from, 8);
  out.set(original.subarray(8, 24), 24);
  out[40] = type;
  out[41] = code;
  out[44] = (restOfHeader >>> 24) & 0xff;
  out[45] = (restOfHeader >>> 16) & 0xff;
  out[46] = (restOfHeader >>> 8) & 0xff;
  out[47] = restOfHeader & 0xff;
  out.set(original.subarray(0, quoted), 48);
  const pseudo = ipv6PseudoHeaderSum(from, out.subarray(24, 40), IP_PROTOCOL_ICMPV6, payloadLength);
  const checksum = checksumFinish(checksumAdd(pseudo, out, 40));
  out[42] = checksum >> 8;
  out[43] = checksum & 0xff;
  return out;
}

/**
 * Builds the answer to a packet too big for the tunnel (RFC 9484 §10.1): for
 * IPv6 an ICMPv6 Packet Too Big (RFC 4443 §3.2, type 2 code 0, 32-bit MTU),
 * for IPv4 a Destination Unreachable "fragmentation needed and DF set"
 * (RFC 792, type 3 code 4, with the Next-Hop MTU of RFC 1191 §4). The message
 * goes from `from` (the tunnel-side address of the sender, 4 or 16 bytes) to
 * the original source with TTL / Hop Limit 64, and quotes as much of the
 * original packet as fits in 576 (IPv4, RFC 1812 §4.3.2.3) or 1280 bytes
 * (IPv6, RFC 4443 §2.4 (c)). Checksums are filled in; ICMPv6's covers the
 * pseudo-header (RFC 4443 §2.3).
 *
 * Returns `undefined`, building nothing, when:
 * - `original` fails {@linkcode validateIpPacket}, or `from` is not an address
 *   of the same version;
 * - `mtu` is not an integer in 68..65535 (IPv4) or 1280..2^32-1 (IPv6,
 *   RFC 8200 §5);
 * - IPv4 without Don't Fragment: the packet may be fragmented instead, the
 *   caller decides;
 * - the RFCs forbid an error in reply: the original is an ICMP error, a later
 *   IPv4 fragment, comes from an unspecified, loopback or multicast source,
 *   or (IPv4 only) goes to a multicast or broadcast destination.
 *
 * @param original the packet that did not fit; not modified
 * @param mtu the largest packet, in bytes, that the tunnel can carry
 * @param from the address the ICMP message is sent from
 * @returns a new packet
 */
export function buildPacketTooBig(
  original: Uint8Array,
  mtu: number,
  from: Uint8Array,
): Uint8Array | undefined {
  if (validateIpPacket(original) !== undefined || !Number.isInteger(mtu)) return undefined;
  if (original[0] >> 4 === 4) {
    if (from.length !== 4 || mtu < IPV4_MIN_MTU || mtu > 0xffff) return undefined;
    if ((original[6] & 0x40) === 0) return undefined; // DF not set
    if (!mayAnswerIpv4(original)) return undefined;
    return buildIcmpv4Error(
      original,
      from,
      ICMP_DESTINATION_UNREACHABLE,
      ICMP_CODE_FRAGMENTATION_NEEDED,
      mtu,
    );
  }
  if (from.length !== 16 || mtu < IPV6_MIN_MTU || mtu > 0xffffffff) return undefined;
  if (!mayAnswerIpv6(original, true)) return undefined;
  return buildIcmpv6Error(original, from, ICMPV6_PACKET_TOO_BIG, 0, mtu);
}

/**
 * Builds a Destination Unreachable message (RFC 792 type 3; RFC 4443 §3.1
 * type 1) telling the original source why its packet was dropped, as
 * RFC 9484 §7 suggests for invalid sources and unroutable destinations. Same
 * addressing, quoting and refusal rules as {@linkcode buildPacketTooBig},
 * except that there is no MTU, IPv4 DF does not matter, and no IPv6 error is
 * sent for a multicast destination (RFC 4443 §2.4 (e.3)).
 *
 * @param original the dropped packet; not modified
 * @param reason picks the code for the packet's IP version
 * @param from the address the ICMP message is sent from, 4 or 16 bytes
 * @returns a new packet, or `undefined` where no error may be sent
 */
export function buildDestinationUnreachable(
  original: Uint8Array,
  reason: UnreachableReason,
  from: Uint8Array,
): Uint8Array | undefined {
  if (validateIpPacket(original) !== undefined) return undefined;
  if (original[0] >> 4 === 4) {
    if (from.length !== 4 || !mayAnswerIpv4(original)) return undefined;
    return buildIcmpv4Error(
      original,
      from,
      ICMP_DESTINATION_UNREACHABLE,
      ICMPV4_UNREACHABLE_CODES[reason],
      0,
    );
  }
  if (from.length !== 16 || !mayAnswerIpv6(original, false)) return undefined;
  return buildIcmpv6Error(
    original,
    from,
    ICMPV6_DESTINATION_UNREACHABLE,
    ICMPV6_UNREACHABLE_CODES[reason],
    0,
  );
}
