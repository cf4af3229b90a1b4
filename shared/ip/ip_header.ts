/**
 * Zero-allocation reads of IPv4 (RFC 791 §3.1) and IPv6 (RFC 8200 §3) headers,
 * for the per-packet path.
 *
 * Every function takes the packet as it came from the TUN device or out of an
 * HTTP Datagram (RFC 9484 §6), starting at the version nibble, and reads the
 * fields in place. Run {@linkcode validateIpPacket} once first; the other
 * functions assume a packet it accepted and never throw on one it did not
 * (they return a harmless value instead). Only {@linkcode readSource} and
 * {@linkcode readDestination} create an object (a subarray view).
 *
 * @module
 */

import type { IpPrefix } from "./ip_address.ts";
import { checksumAdd, checksumUpdate16 } from "./checksum.ts";

/** Length in bytes of an IPv4 header without options (RFC 791 §3.1, IHL 5). */
export const IPV4_MIN_HEADER_LENGTH = 20;
/** Length in bytes of the fixed IPv6 header (RFC 8200 §3). */
export const IPV6_HEADER_LENGTH = 40;

/** IP protocol number of ICMP (RFC 792). */
export const IP_PROTOCOL_ICMP = 1;
/** IP protocol number of TCP (RFC 9293). */
export const IP_PROTOCOL_TCP = 6;
/** IP protocol number of UDP (RFC 768). */
export const IP_PROTOCOL_UDP = 17;
/** IP protocol number of ICMPv6 (RFC 4443). */
export const IP_PROTOCOL_ICMPV6 = 58;

/** IPv6 Hop-by-Hop Options header (RFC 8200 §4.3). */
export const IPV6_EXT_HOP_BY_HOP = 0;
/** IPv6 Routing header (RFC 8200 §4.4). */
export const IPV6_EXT_ROUTING = 43;
/** IPv6 Fragment header (RFC 8200 §4.5). */
export const IPV6_EXT_FRAGMENT = 44;
/** IPv6 Authentication Header (RFC 4302 §2). */
export const IPV6_EXT_AUTHENTICATION = 51;
/** IPv6 Destination Options header (RFC 8200 §4.6). */
export const IPV6_EXT_DESTINATION_OPTIONS = 60;

/**
 * The most IPv6 extension headers {@linkcode ipProtocol} walks before giving
 * up. RFC 8200 §4.1 recommends each header appear at most once (Destination
 * Options twice), so a legitimate chain is shorter than this.
 */
export const IPV6_MAX_EXTENSION_HEADERS = 8;

const IPV4_SOURCE_OFFSET = 12;
const IPV4_DESTINATION_OFFSET = 16;
const IPV6_SOURCE_OFFSET = 8;
const IPV6_DESTINATION_OFFSET = 24;

/**
 * The IP version from the first nibble (RFC 791 §3.1, RFC 8200 §3): 4, 6, or
 * 0 for an empty packet or any other version.
 */
export function ipVersion(packet: Uint8Array): 4 | 6 | 0 {
  if (packet.length === 0) return 0;
  const version = packet[0] >> 4;
  return version === 4 ? 4 : version === 6 ? 6 : 0;
}

/**
 * Checks that `packet` holds one complete IPv4 or IPv6 header and that the
 * length the header announces fits in the bytes received. Returns the reason
 * to drop the packet, or `undefined` when it is well formed:
 *
 * - `empty packet`
 * - `unknown IP version 5`
 * - `truncated IPv4 header: 12 bytes, need 20` (also for IPv6, need 40)
 * - `bad IHL 4: header shorter than 20 bytes`
 * - `bad IHL 15: header 60 exceeds packet 40`
 * - `total length 16 shorter than header 20` (IPv4)
 * - `total length 1500 exceeds packet 1400` (for IPv6 the total is 40 plus
 *   the Payload Length)
 * - `bad IPv4 header checksum` (RFC 791 §3.1; IPv6 has none)
 *
 * Bytes after the announced total length are tolerated, as a router would
 * (RFC 1812 §5.2.2); {@linkcode ipPacketLength} tells how many count. An IPv6
 * Payload Length of zero (a jumbogram, RFC 2675) reads as a 40-byte packet.
 * Extension headers and the upper-layer header are not checked. Allocates
 * only the returned string, and only for a bad packet.
 */
export function validateIpPacket(packet: Uint8Array): string | undefined {
  const length = packet.length;
  if (length === 0) return "empty packet";
  const version = packet[0] >> 4;
  if (version === 4) {
    if (length < IPV4_MIN_HEADER_LENGTH) {
      return `truncated IPv4 header: ${length} bytes, need ${IPV4_MIN_HEADER_LENGTH}`;
    }
    const ihl = packet[0] & 0x0f;
    const headerLength = ihl * 4;
    if (headerLength < IPV4_MIN_HEADER_LENGTH) {
      return `bad IHL ${ihl}: header shorter than ${IPV4_MIN_HEADER_LENGTH} bytes`;
    }
    if (headerLength > length) {
      return `bad IHL ${ihl}: header ${headerLength} exceeds packet ${length}`;
    }
    const totalLength = (packet[2] << 8) | packet[3];
    if (totalLength < headerLength) {
      return `total length ${totalLength} shorter than header ${headerLength}`;
    }
    if (totalLength > length) return `total length ${totalLength} exceeds packet ${length}`;
    if (checksumAdd(0, packet, 0, headerLength) !== 0xffff) return "bad IPv4 header checksum";
    return undefined;
  }
  if (version === 6) {
    if (length < IPV6_HEADER_LENGTH) {
      return `truncated IPv6 header: ${length} bytes, need ${IPV6_HEADER_LENGTH}`;
    }
    const totalLength = IPV6_HEADER_LENGTH + ((packet[4] << 8) | packet[5]);
    if (totalLength > length) return `total length ${totalLength} exceeds packet ${length}`;
    return undefined;
  }
  return `unknown IP version ${version}`;
}

/**
 * The packet's length in bytes as its header announces it: the IPv4 Total
 * Length, or 40 plus the IPv6 Payload Length; 0 when the version is neither.
 * May be less than `packet.length` when trailing bytes follow the packet.
 */
export function ipPacketLength(packet: Uint8Array): number {
  const version = ipVersion(packet);
  if (version === 4 && packet.length >= 4) return (packet[2] << 8) | packet[3];
  if (version === 6 && packet.length >= 6) {
    return IPV6_HEADER_LENGTH + ((packet[4] << 8) | packet[5]);
  }
  return 0;
}

/**
 * Length in bytes of the header in front of the upper-layer data: IHL × 4 for
 * IPv4, and for IPv6 the 40-byte fixed header plus every extension header
 * {@linkcode ipProtocol} walks. -1 when the version is unknown or the chain
 * cannot be walked (truncated, or longer than
 * {@linkcode IPV6_MAX_EXTENSION_HEADERS}).
 */
export function upperLayerOffset(packet: Uint8Array): number {
  const version = ipVersion(packet);
  if (version === 4) return (packet[0] & 0x0f) * 4;
  if (version === 6 && packet.length >= IPV6_HEADER_LENGTH) {
    return walkIpv6(packet, -1) >= 0 ? walkOffset : -1;
  }
  return -1;
}

// Offset reached by the last walkIpv6() call; module state keeps the walk allocation-free.
let walkOffset = 0;

/**
 * Walks the IPv6 extension header chain (RFC 8200 §4). Returns the first Next
 * Header value that is not a walkable extension header, and leaves its offset
 * in `walkOffset`. Returns `stopAt` as soon as a Next Header equals it (for
 * {@linkcode ipCarriesProtocol}), and -1 when the chain is truncated or too long.
 */
function walkIpv6(packet: Uint8Array, stopAt: number): number {
  const length = packet.length;
  let next = packet[6];
  let offset = IPV6_HEADER_LENGTH;
  for (let count = 0;; count++) {
    if (next === stopAt) break;
    let headerLength: number;
    if (
      next === IPV6_EXT_HOP_BY_HOP || next === IPV6_EXT_ROUTING ||
      next === IPV6_EXT_DESTINATION_OPTIONS
    ) {
      if (offset + 2 > length) return -1;
      headerLength = (packet[offset + 1] + 1) * 8;
    } else if (next === IPV6_EXT_FRAGMENT) {
      headerLength = 8;
    } else if (next === IPV6_EXT_AUTHENTICATION) {
      if (offset + 2 > length) return -1;
      headerLength = (packet[offset + 1] + 2) * 4;
    } else {
      break;
    }
    if (count === IPV6_MAX_EXTENSION_HEADERS || offset + headerLength > length) return -1;
    next = packet[offset];
    offset += headerLength;
  }
  walkOffset = offset;
  return next;
}

/** IPv4 flag More Fragments in the Flags/Fragment Offset word (RFC 791 §3.1). */
export const IPV4_MORE_FRAGMENTS = 0x2000;
/** Mask of the 13-bit Fragment Offset in the same word, in 8-byte units (RFC 791 §3.1). */
export const IPV4_FRAGMENT_OFFSET_MASK = 0x1fff;

/**
 * The IPv4 Fragment Offset in 8-byte units (RFC 791 §3.1); 0 for an
 * unfragmented packet or a first fragment, and for anything but IPv4.
 */
export function ipv4FragmentOffset(packet: Uint8Array): number {
  if (ipVersion(packet) !== 4 || packet.length < IPV4_MIN_HEADER_LENGTH) return 0;
  return ((packet[6] << 8) | packet[7]) & IPV4_FRAGMENT_OFFSET_MASK;
}

/** Whether an IPv4 packet has More Fragments set (RFC 791 §3.1); false for anything but IPv4. */
export function ipv4MoreFragments(packet: Uint8Array): boolean {
  if (ipVersion(packet) !== 4 || packet.length < IPV4_MIN_HEADER_LENGTH) return false;
  return (packet[6] & (IPV4_MORE_FRAGMENTS >> 8)) !== 0;
}

/**
 * What {@linkcode readIpv6Chain} found in an IPv6 extension header chain
 * (RFC 8200 §4). The caller owns one and passes it to every call, so the walk
 * allocates nothing; every field is written by each successful call.
 */
export interface Ipv6Chain {
  /**
   * The upper-layer protocol: the first Next Header that is not Hop-by-Hop,
   * Routing, Fragment, Destination Options or Authentication; for a
   * non-first fragment, the Next Header of its Fragment header.
   */
  protocol: number;
  /**
   * Byte offset of the upper-layer header; for a non-first fragment, of the
   * fragment's data right after its Fragment header.
   */
  offset: number;
  /** Whether the chain has a Hop-by-Hop Options header (RFC 8200 §4.3). */
  hopByHop: boolean;
  /** Routing Type of the Routing header (RFC 8200 §4.4), -1 without one. */
  routingType: number;
  /** Segments Left of the Routing header, 0 without one. */
  routingSegmentsLeft: number;
  /** Whether the chain has a Fragment header (RFC 8200 §4.5). */
  fragment: boolean;
  /** Fragment Offset in 8-byte units; 0 without a Fragment header. */
  fragmentOffset: number;
  /** The M flag of the Fragment header; false without one. */
  moreFragments: boolean;
  /**
   * Bytes of fragmentable data this fragment carries (after its Fragment
   * header, RFC 8200 §4.5); 0 without a Fragment header.
   */
  fragmentDataLength: number;
}

/** A fresh {@linkcode Ipv6Chain} for {@linkcode readIpv6Chain} to fill. */
export function createIpv6Chain(): Ipv6Chain {
  return {
    protocol: -1,
    offset: 0,
    hopByHop: false,
    routingType: -1,
    routingSegmentsLeft: 0,
    fragment: false,
    fragmentOffset: 0,
    moreFragments: false,
    fragmentDataLength: 0,
  };
}

/**
 * Walks the extension header chain of an IPv6 packet that
 * {@linkcode validateIpPacket} accepted, within its Payload Length, and fills
 * `chain`. Returns false, leaving `chain` partly written, when the chain
 * cannot be walked within bounds:
 *
 * - more than {@linkcode IPV6_MAX_EXTENSION_HEADERS} headers;
 * - a header that does not fit in the packet (for a first fragment this is
 *   a chain split across fragments, which RFC 7112 §5 forbids);
 * - Hop-by-Hop Options anywhere but first (RFC 8200 §4.1), or a second
 *   Hop-by-Hop, Routing or Fragment header (§4.1 allows each once).
 *
 * The walk stops at the Fragment header of a non-first fragment, whose data
 * are not headers. Also false for a packet that is not IPv6. O(headers),
 * no allocation.
 */
export function readIpv6Chain(packet: Uint8Array, chain: Ipv6Chain): boolean {
  if (ipVersion(packet) !== 6 || packet.length < IPV6_HEADER_LENGTH) return false;
  const length = Math.min(packet.length, ipPacketLength(packet));
  chain.hopByHop = false;
  chain.routingType = -1;
  chain.routingSegmentsLeft = 0;
  chain.fragment = false;
  chain.fragmentOffset = 0;
  chain.moreFragments = false;
  chain.fragmentDataLength = 0;
  let next = packet[6];
  let offset = IPV6_HEADER_LENGTH;
  for (let count = 0;; count++) {
    let headerLength: number;
    if (
      next === IPV6_EXT_HOP_BY_HOP || next === IPV6_EXT_ROUTING ||
      next === IPV6_EXT_DESTINATION_OPTIONS
    ) {
      if (offset + 2 > length) return false;
      headerLength = (packet[offset + 1] + 1) * 8;
    } else if (next === IPV6_EXT_FRAGMENT) {
      headerLength = 8;
    } else if (next === IPV6_EXT_AUTHENTICATION) {
      if (offset + 2 > length) return false;
      headerLength = (packet[offset + 1] + 2) * 4;
    } else {
      break;
    }
    if (count === IPV6_MAX_EXTENSION_HEADERS || offset + headerLength > length) return false;
    if (next === IPV6_EXT_HOP_BY_HOP) {
      if (count !== 0) return false;
      chain.hopByHop = true;
    } else if (next === IPV6_EXT_ROUTING) {
      if (chain.routingType >= 0) return false;
      chain.routingType = packet[offset + 2];
      chain.routingSegmentsLeft = packet[offset + 3];
    } else if (next === IPV6_EXT_FRAGMENT) {
      if (chain.fragment) return false;
      const word = (packet[offset + 2] << 8) | packet[offset + 3];
      chain.fragment = true;
      chain.fragmentOffset = word >> 3;
      chain.moreFragments = (word & 1) === 1;
      chain.fragmentDataLength = length - (offset + 8);
      if (chain.fragmentOffset !== 0) {
        chain.protocol = packet[offset];
        chain.offset = offset + 8;
        return true;
      }
    }
    next = packet[offset];
    offset += headerLength;
  }
  chain.protocol = next;
  chain.offset = offset;
  return true;
}

/**
 * The upper-layer protocol number: the IPv4 Protocol field (RFC 791 §3.1), or
 * for IPv6 the Next Header found after walking the Hop-by-Hop, Routing,
 * Fragment, Destination Options and Authentication headers (RFC 8200 §4,
 * RFC 4302), at most {@linkcode IPV6_MAX_EXTENSION_HEADERS} of them, as
 * RFC 9484 §4.6 asks of scoping by protocol. For a non-first fragment it is
 * the protocol of the fragmented packet. Other extension headers (ESP, Mobility,
 * HIP, Shim6) are returned as the protocol. Returns -1 for an unknown version
 * or a chain that is truncated or too long.
 */
export function ipProtocol(packet: Uint8Array): number {
  const version = ipVersion(packet);
  if (version === 4) return packet.length > 9 ? packet[9] : -1;
  if (version === 6) return packet.length >= IPV6_HEADER_LENGTH ? walkIpv6(packet, -1) : -1;
  return -1;
}

/**
 * Whether `protocol` is the packet's upper-layer protocol or, for IPv6, any
 * Next Header value along its extension header chain, so that a scope such as
 * "Fragment (44)" also matches (RFC 9484 §4.6: "walk the chain of extensions
 * to find the matching IP protocol number").
 */
export function ipCarriesProtocol(packet: Uint8Array, protocol: number): boolean {
  const version = ipVersion(packet);
  if (version === 4) return packet.length > 9 && packet[9] === protocol;
  if (version === 6 && packet.length >= IPV6_HEADER_LENGTH) {
    return walkIpv6(packet, protocol) === protocol;
  }
  return false;
}

/** Byte offset of the source address, or -1 when the version is unknown or the header is short. */
function sourceOffset(packet: Uint8Array): number {
  const version = ipVersion(packet);
  if (version === 4) return packet.length >= IPV4_MIN_HEADER_LENGTH ? IPV4_SOURCE_OFFSET : -1;
  if (version === 6) return packet.length >= IPV6_HEADER_LENGTH ? IPV6_SOURCE_OFFSET : -1;
  return -1;
}

/** Byte offset of the destination address, or -1 when the version is unknown or the header is short. */
function destinationOffset(packet: Uint8Array): number {
  const version = ipVersion(packet);
  if (version === 4) return packet.length >= IPV4_MIN_HEADER_LENGTH ? IPV4_DESTINATION_OFFSET : -1;
  if (version === 6) return packet.length >= IPV6_HEADER_LENGTH ? IPV6_DESTINATION_OFFSET : -1;
  return -1;
}

/** Address length in bytes for the packet's version (4 or 16). */
function addressLength(packet: Uint8Array): number {
  return packet[0] >> 4 === 4 ? 4 : 16;
}

function inPrefixAt(packet: Uint8Array, offset: number, prefix: IpPrefix): boolean {
  const base = prefix.address;
  if (offset < 0 || base.length !== addressLength(packet)) return false;
  const fullBytes = prefix.prefixLength >> 3;
  for (let i = 0; i < fullBytes; i++) if (packet[offset + i] !== base[i]) return false;
  const rest = prefix.prefixLength & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (packet[offset + fullBytes] & mask) === (base[fullBytes] & mask);
}

/** Compares the address at `offset` with `address` as unsigned big-endian numbers. */
function compareAt(packet: Uint8Array, offset: number, address: Uint8Array): number {
  for (let i = 0; i < address.length; i++) {
    const d = packet[offset + i] - address[i];
    if (d !== 0) return d;
  }
  return 0;
}

function inRangeAt(
  packet: Uint8Array,
  offset: number,
  start: Uint8Array,
  end: Uint8Array,
): boolean {
  const length = addressLength(packet);
  if (offset < 0 || start.length !== length || end.length !== length) return false;
  return compareAt(packet, offset, start) >= 0 && compareAt(packet, offset, end) <= 0;
}

/**
 * Whether the packet's source address lies in `prefix` (RFC 9484 §4.7.1:
 * an assigned prefix allows any source inside it). No allocation.
 */
export function sourceIn(packet: Uint8Array, prefix: IpPrefix): boolean {
  return inPrefixAt(packet, sourceOffset(packet), prefix);
}

/** Whether the packet's destination address lies in `prefix`. No allocation. */
export function destinationIn(packet: Uint8Array, prefix: IpPrefix): boolean {
  return inPrefixAt(packet, destinationOffset(packet), prefix);
}

/**
 * Whether the packet's destination address lies in the inclusive range
 * `start..end`, both of the packet's address length (RFC 9484 §4.7.3
 * IP Address Range). No allocation.
 */
export function destinationInRange(
  packet: Uint8Array,
  start: Uint8Array,
  end: Uint8Array,
): boolean {
  return inRangeAt(packet, destinationOffset(packet), start, end);
}

/**
 * The source address as a view into `packet` (4 or 16 bytes; shares its
 * memory, so copy it before the packet buffer is reused). Empty for a packet
 * {@linkcode validateIpPacket} would reject for its version or length.
 */
export function readSource(packet: Uint8Array): Uint8Array {
  const offset = sourceOffset(packet);
  return offset < 0
    ? packet.subarray(0, 0)
    : packet.subarray(offset, offset + addressLength(packet));
}

/** The destination address as a view into `packet`; see {@linkcode readSource}. */
export function readDestination(packet: Uint8Array): Uint8Array {
  const offset = destinationOffset(packet);
  return offset < 0
    ? packet.subarray(0, 0)
    : packet.subarray(offset, offset + addressLength(packet));
}

function keyAt(bytes: Uint8Array, offset: number, length: number): number | string {
  if (length === 4) {
    return (bytes[offset] << 24) | (bytes[offset + 1] << 16) | (bytes[offset + 2] << 8) |
      bytes[offset + 3];
  }
  return String.fromCharCode(
    (bytes[offset] << 8) | bytes[offset + 1],
    (bytes[offset + 2] << 8) | bytes[offset + 3],
    (bytes[offset + 4] << 8) | bytes[offset + 5],
    (bytes[offset + 6] << 8) | bytes[offset + 7],
    (bytes[offset + 8] << 8) | bytes[offset + 9],
    (bytes[offset + 10] << 8) | bytes[offset + 11],
    (bytes[offset + 12] << 8) | bytes[offset + 13],
    (bytes[offset + 14] << 8) | bytes[offset + 15],
  );
}

/**
 * A `Map` key for the packet's destination address, equal to
 * {@linkcode addressKey} of that address, so the relay can find the session
 * that owns it. IPv4 gives the address as a signed 32-bit integer (no
 * allocation; most private ranges stay V8 small integers); IPv6 gives an
 * 8-character string of its 16-bit groups (measured ~1.2× faster to look up
 * than a `bigint` and ~2.5× faster than hex). Numbers and strings never
 * collide, so one map can hold both versions. Returns `""`, which no address
 * produces, for a packet with an unknown version or a short header.
 */
export function destinationKey(packet: Uint8Array): number | string {
  const offset = destinationOffset(packet);
  return offset < 0 ? "" : keyAt(packet, offset, addressLength(packet));
}

/** Like {@linkcode destinationKey}, for the source address. */
export function sourceKey(packet: Uint8Array): number | string {
  const offset = sourceOffset(packet);
  return offset < 0 ? "" : keyAt(packet, offset, addressLength(packet));
}

/**
 * The {@linkcode destinationKey} of a 4- or 16-byte address. Throws a
 * `RangeError` for any other length.
 */
export function addressKey(address: Uint8Array): number | string {
  if (address.length !== 4 && address.length !== 16) {
    throw new RangeError(`Cannot make address key: length ${address.length} is not 4 or 16`);
  }
  return keyAt(address, 0, address.length);
}

/**
 * The IPv4 TTL (RFC 791 §3.1) or IPv6 Hop Limit (RFC 8200 §3); -1 when the
 * header is short or the version unknown.
 */
export function hopLimit(packet: Uint8Array): number {
  const version = ipVersion(packet);
  if (version === 4) return packet.length >= IPV4_MIN_HEADER_LENGTH ? packet[8] : -1;
  if (version === 6) return packet.length >= IPV6_HEADER_LENGTH ? packet[7] : -1;
  return -1;
}

/**
 * Decrements the TTL / Hop Limit in place, as RFC 9484 §7 asks right before a
 * packet is sent in an HTTP Datagram, patching the IPv4 header checksum
 * incrementally (RFC 1624 §3). Returns false, changing nothing, when the value
 * is 0 or 1 (the packet must be dropped, RFC 1812 §5.3.1, RFC 8200 §3) or the
 * header is short or of an unknown version.
 */
export function decrementHopLimit(packet: Uint8Array): boolean {
  const version = ipVersion(packet);
  if (version === 4 && packet.length >= IPV4_MIN_HEADER_LENGTH) {
    const ttl = packet[8];
    if (ttl <= 1) return false;
    const oldWord = (ttl << 8) | packet[9];
    const checksum = checksumUpdate16((packet[10] << 8) | packet[11], oldWord, oldWord - 0x100);
    packet[8] = ttl - 1;
    packet[10] = checksum >> 8;
    packet[11] = checksum & 0xff;
    return true;
  }
  if (version === 6 && packet.length >= IPV6_HEADER_LENGTH) {
    if (packet[7] <= 1) return false;
    packet[7]--;
    return true;
  }
  return false;
}
