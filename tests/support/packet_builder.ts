/**
 * Test helpers for the packet path: builders for IPv4/IPv6 packets with
 * correct checksums (RFC 791, RFC 8200, RFC 768, RFC 792, RFC 4443). The
 * in-memory TUN is in `memory_tun.ts`.
 *
 * @module
 */

import { parseIp } from "../../shared/ip/ip_address.ts";
import {
  checksumAdd,
  checksumFinish,
  internetChecksum,
  ipv4PseudoHeaderSum,
  ipv6PseudoHeaderSum,
} from "../../shared/ip/checksum.ts";

/** An address as text (`198.18.0.1`, `fd00::1`) or as 4 / 16 bytes. */
export type AddressInput = string | Uint8Array;

function toAddress(input: AddressInput, length: 4 | 16): Uint8Array {
  const bytes = typeof input === "string" ? parseIp(input) : input;
  if (bytes === undefined || bytes.length !== length) {
    throw new Error(
      `Cannot build packet: "${String(input)}" is not an IPv${length === 4 ? 4 : 6} address`,
    );
  }
  return bytes;
}

function toBytes(payload: Uint8Array | string | undefined): Uint8Array {
  if (payload === undefined) return new Uint8Array(0);
  return typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
}

/** Options for {@linkcode buildIpv4}. */
export interface Ipv4Options {
  src: AddressInput;
  dst: AddressInput;
  /** IP protocol number (RFC 791 §3.1). */
  protocol: number;
  /** Everything after the IPv4 header. */
  payload: Uint8Array;
  /** Time to Live, default 64. */
  ttl?: number;
  /** Don't Fragment flag, default true (what Linux sets with PMTU discovery on). */
  dontFragment?: boolean;
  /** Identification, default 0. */
  identification?: number;
  /** IPv4 options (a multiple of 4 bytes, at most 40), default none. */
  options?: Uint8Array;
  /** Fragment Offset in 8-byte units, default 0. */
  fragmentOffset?: number;
  /** More Fragments flag, default false. */
  moreFragments?: boolean;
}

/**
 * An IPv4 packet (RFC 791 §3.1) with a correct header checksum: version 4,
 * IHL 5 (+options), TOS 0, total length, identification, flags (DF, MF per
 * option), fragment offset, TTL, protocol, checksum, source, destination.
 */
export function buildIpv4(options: Ipv4Options): Uint8Array {
  const extra = options.options ?? new Uint8Array(0);
  if (extra.length % 4 !== 0 || extra.length > 40) {
    throw new Error(
      `Cannot build packet: IPv4 options length ${extra.length} is not a multiple of 4 up to 40`,
    );
  }
  const headerLength = 20 + extra.length;
  const packet = new Uint8Array(headerLength + options.payload.length);
  const view = new DataView(packet.buffer);
  packet[0] = 0x40 | (headerLength / 4);
  view.setUint16(2, packet.length);
  view.setUint16(4, options.identification ?? 0);
  view.setUint16(
    6,
    ((options.dontFragment ?? true) ? 0x4000 : 0) | (options.moreFragments ? 0x2000 : 0) |
      ((options.fragmentOffset ?? 0) & 0x1fff),
  );
  packet[8] = options.ttl ?? 64;
  packet[9] = options.protocol;
  packet.set(toAddress(options.src, 4), 12);
  packet.set(toAddress(options.dst, 4), 16);
  packet.set(extra, 20);
  view.setUint16(10, internetChecksum(packet, 0, headerLength));
  packet.set(options.payload, headerLength);
  return packet;
}

/** Options for {@linkcode buildIpv6}. */
export interface Ipv6Options {
  src: AddressInput;
  dst: AddressInput;
  /** Next Header (RFC 8200 §3). */
  nextHeader: number;
  /** Everything after the fixed header (extension headers included). */
  payload: Uint8Array;
  /** Hop Limit, default 64. */
  hopLimit?: number;
  /** Flow Label, default 0. */
  flowLabel?: number;
}

/** An IPv6 packet (RFC 8200 §3): version 6, traffic class 0, flow label, payload length, next header, hop limit, source, destination. */
export function buildIpv6(options: Ipv6Options): Uint8Array {
  const packet = new Uint8Array(40 + options.payload.length);
  const view = new DataView(packet.buffer);
  view.setUint32(0, (6 << 28) | ((options.flowLabel ?? 0) & 0xfffff));
  view.setUint16(4, options.payload.length);
  packet[6] = options.nextHeader;
  packet[7] = options.hopLimit ?? 64;
  packet.set(toAddress(options.src, 16), 8);
  packet.set(toAddress(options.dst, 16), 24);
  packet.set(options.payload, 40);
  return packet;
}

/** Options for the UDP builders. */
export interface UdpOptions {
  src: AddressInput;
  dst: AddressInput;
  srcPort: number;
  dstPort: number;
  payload?: Uint8Array | string;
  /** TTL / Hop Limit, default 64. */
  ttl?: number;
  /** IPv4 only: Don't Fragment, default true. */
  dontFragment?: boolean;
}

function udpDatagram(options: UdpOptions): Uint8Array {
  const payload = toBytes(options.payload);
  const udp = new Uint8Array(8 + payload.length);
  const view = new DataView(udp.buffer);
  view.setUint16(0, options.srcPort);
  view.setUint16(2, options.dstPort);
  view.setUint16(4, udp.length);
  udp.set(payload, 8);
  return udp;
}

function setUdpChecksum(udp: Uint8Array, pseudoSum: number): void {
  // RFC 768: a computed 0 is sent as ffff, since 0 means "no checksum".
  const checksum = checksumFinish(checksumAdd(pseudoSum, udp)) || 0xffff;
  udp[6] = checksum >> 8;
  udp[7] = checksum & 0xff;
}

/** An IPv4 packet carrying a UDP datagram (RFC 768) with a correct checksum. */
export function buildIpv4Udp(options: UdpOptions): Uint8Array {
  const udp = udpDatagram(options);
  setUdpChecksum(
    udp,
    ipv4PseudoHeaderSum(toAddress(options.src, 4), toAddress(options.dst, 4), 17, udp.length),
  );
  return buildIpv4({
    src: options.src,
    dst: options.dst,
    protocol: 17,
    payload: udp,
    ttl: options.ttl,
    dontFragment: options.dontFragment,
  });
}

/** An IPv6 packet carrying a UDP datagram (RFC 768, RFC 8200 §8.1) with a correct checksum. */
export function buildIpv6Udp(options: UdpOptions): Uint8Array {
  const udp = udpDatagram(options);
  setUdpChecksum(
    udp,
    ipv6PseudoHeaderSum(toAddress(options.src, 16), toAddress(options.dst, 16), 17, udp.length),
  );
  return buildIpv6({
    src: options.src,
    dst: options.dst,
    nextHeader: 17,
    payload: udp,
    hopLimit: options.ttl,
  });
}

/** Options for the echo builders. */
export interface EchoOptions {
  src: AddressInput;
  dst: AddressInput;
  /** Identifier, default 0x1234. */
  identifier?: number;
  /** Sequence number, default 1. */
  sequence?: number;
  payload?: Uint8Array | string;
  /** Build an Echo Reply instead of an Echo Request. */
  reply?: boolean;
  /** TTL / Hop Limit, default 64. */
  ttl?: number;
  /** IPv4 only: Don't Fragment, default true. */
  dontFragment?: boolean;
}

function echoMessage(type: number, options: EchoOptions): Uint8Array {
  const payload = toBytes(options.payload);
  const message = new Uint8Array(8 + payload.length);
  const view = new DataView(message.buffer);
  message[0] = type;
  view.setUint16(4, options.identifier ?? 0x1234);
  view.setUint16(6, options.sequence ?? 1);
  message.set(payload, 8);
  return message;
}

/** An IPv4 ICMP Echo Request (type 8) or Reply (type 0), RFC 792, with a correct ICMP checksum. */
export function buildIcmpv4Echo(options: EchoOptions): Uint8Array {
  const icmp = echoMessage(options.reply ? 0 : 8, options);
  new DataView(icmp.buffer).setUint16(2, internetChecksum(icmp));
  return buildIpv4({
    src: options.src,
    dst: options.dst,
    protocol: 1,
    payload: icmp,
    ttl: options.ttl,
    dontFragment: options.dontFragment,
  });
}

/** An ICMPv6 Echo Request (type 128) or Reply (type 129), RFC 4443 §4, checksummed with the pseudo-header. */
export function buildIcmpv6Echo(options: EchoOptions): Uint8Array {
  const icmp = echoMessage(options.reply ? 129 : 128, options);
  const pseudo = ipv6PseudoHeaderSum(
    toAddress(options.src, 16),
    toAddress(options.dst, 16),
    58,
    icmp.length,
  );
  new DataView(icmp.buffer).setUint16(2, checksumFinish(checksumAdd(pseudo, icmp)));
  return buildIpv6({
    src: options.src,
    dst: options.dst,
    nextHeader: 58,
    payload: icmp,
    hopLimit: options.ttl,
  });
}
