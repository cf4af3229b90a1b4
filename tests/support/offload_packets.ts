/**
 * Builders for TCP segments in IPv4 and IPv6 packets (RFC 9293 §3.1) with
 * correct checksums, for the offload tests: every field the segmentation
 * and coalescing rules look at can be set.
 *
 * @module
 */
import {
  checksumAdd,
  checksumFinish,
  internetChecksum,
  ipPseudoHeaderSum,
} from "../../shared/ip/checksum.ts";
import { parseIp } from "../../shared/ip/ip_address.ts";

/** One TCP segment in an IP packet. Defaults: ACK, window 502, no options, TTL 64, DF. */
export interface TcpPacketOptions {
  /** `198.18.0.2` or `fd00::2`; both addresses of one family. */
  src: string;
  dst: string;
  srcPort?: number;
  dstPort?: number;
  seq: number;
  ack?: number;
  /** TCP flag byte (FIN 0x01 … CWR 0x80), default ACK (0x10). */
  flags?: number;
  window?: number;
  /** TCP options, padded to a multiple of 4 with zeros. */
  options?: Uint8Array;
  payload?: Uint8Array;
  /** TTL / hop limit. */
  ttl?: number;
  /** IPv4 TOS / IPv6 traffic class. */
  tos?: number;
  /** IPv4 only. */
  id?: number;
  /** IPv4 only, default true. */
  dontFragment?: boolean;
  /** IPv6 only. */
  flowLabel?: number;
  /** Corrupt the TCP checksum (flip its low bit). */
  badChecksum?: boolean;
}

/** TCP timestamps option (RFC 7323 §3): NOP, NOP, kind 8, length 10, TSval, TSecr. */
export function timestampOption(tsval: number, tsecr: number): Uint8Array {
  const out = new Uint8Array(12);
  const view = new DataView(out.buffer);
  out.set([1, 1, 8, 10]);
  view.setUint32(4, tsval);
  view.setUint32(8, tsecr);
  return out;
}

/** Deterministic payload bytes: `length` bytes starting from `seed`. */
export function payloadBytes(length: number, seed = 0): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (seed + i * 7 + (i >> 8)) & 0xff;
  return out;
}

function address(text: string): Uint8Array {
  const bytes = parseIp(text);
  if (bytes === undefined) throw new Error(`Cannot build packet: "${text}" is not an address`);
  return bytes;
}

/** An IPv4 or IPv6 packet (by the addresses' family) carrying one TCP segment. */
export function buildTcpPacket(o: TcpPacketOptions): Uint8Array {
  const src = address(o.src);
  const dst = address(o.dst);
  const v6 = src.length === 16;
  const options = o.options ?? new Uint8Array(0);
  const optionLength = Math.ceil(options.length / 4) * 4;
  const tcpLength = 20 + optionLength;
  const payload = o.payload ?? new Uint8Array(0);
  const ipLength = v6 ? 40 : 20;
  const packet = new Uint8Array(ipLength + tcpLength + payload.length);
  const view = new DataView(packet.buffer);
  if (v6) {
    view.setUint32(0, (6 << 28) | ((o.tos ?? 0) << 20) | ((o.flowLabel ?? 0) & 0xfffff));
    view.setUint16(4, tcpLength + payload.length);
    packet[6] = 6;
    packet[7] = o.ttl ?? 64;
    packet.set(src, 8);
    packet.set(dst, 24);
  } else {
    packet[0] = 0x45;
    packet[1] = o.tos ?? 0;
    view.setUint16(2, packet.length);
    view.setUint16(4, o.id ?? 0);
    view.setUint16(6, (o.dontFragment ?? true) ? 0x4000 : 0);
    packet[8] = o.ttl ?? 64;
    packet[9] = 6;
    packet.set(src, 12);
    packet.set(dst, 16);
    view.setUint16(10, internetChecksum(packet, 0, 20));
  }
  const t = ipLength;
  view.setUint16(t, o.srcPort ?? 40000);
  view.setUint16(t + 2, o.dstPort ?? 5201);
  view.setUint32(t + 4, o.seq >>> 0);
  view.setUint32(t + 8, (o.ack ?? 1) >>> 0);
  packet[t + 12] = (tcpLength / 4) << 4;
  packet[t + 13] = o.flags ?? 0x10;
  view.setUint16(t + 14, o.window ?? 502);
  packet.set(options, t + 20);
  packet.set(payload, t + tcpLength);
  view.setUint16(t + 16, tcpChecksum(packet, ipLength) ^ (o.badChecksum ? 1 : 0));
  return packet;
}

/**
 * The TCP (or UDP) checksum the packet's transport header should carry,
 * computed with the field taken as 0 (RFC 9293 §3.1, RFC 768).
 */
export function tcpChecksum(packet: Uint8Array, ipLength: number, protocol = 6): number {
  const field = ipLength + (protocol === 6 ? 16 : 6);
  const copy = packet.slice();
  copy[field] = 0;
  copy[field + 1] = 0;
  const sum = ipPseudoHeaderSum(copy, protocol, copy.length - ipLength);
  return checksumFinish(checksumAdd(sum, copy, ipLength));
}

/**
 * Why `packet` (IPv4 or IPv6 with TCP or UDP right after the fixed header
 * or IPv4 options) is not a correct packet, or undefined when it is: length
 * fields, the IPv4 header checksum, the UDP length, the transport checksum.
 */
export function packetProblem(packet: Uint8Array): string | undefined {
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  const v6 = packet[0] >> 4 === 6;
  const ipLength = v6 ? 40 : (packet[0] & 0x0f) * 4;
  const protocol = v6 ? packet[6] : packet[9];
  if (v6) {
    if (view.getUint16(4) !== packet.length - 40) return "IPv6 payload length";
  } else {
    if (view.getUint16(2) !== packet.length) return "IPv4 total length";
    if (internetChecksum(packet, 0, ipLength) !== 0) return "IPv4 header checksum";
  }
  if (protocol === 17 && view.getUint16(ipLength + 4) !== packet.length - ipLength) {
    return "UDP length";
  }
  const field = view.getUint16(ipLength + (protocol === 6 ? 16 : 6));
  if (field !== tcpChecksum(packet, ipLength, protocol)) {
    // 0 and ffff are the same checksum; UDP sends ffff for a computed 0.
    if (!(field === 0xffff && tcpChecksum(packet, ipLength, protocol) === 0)) {
      return `transport checksum ${field.toString(16)}, want ${
        tcpChecksum(packet, ipLength, protocol).toString(16)
      }`;
    }
  }
  return undefined;
}

/**
 * A GSO super-packet as a TUN hands it out: `packet` (one TCP segment or
 * UDP datagram carrying all the payload) with its transport checksum field
 * replaced by the pseudo-header sum (CHECKSUM_PARTIAL). Returns a copy.
 */
export function asPartialChecksum(packet: Uint8Array): Uint8Array {
  const out = packet.slice();
  const v6 = out[0] >> 4 === 6;
  const ipLength = v6 ? 40 : (out[0] & 0x0f) * 4;
  const protocol = v6 ? out[6] : out[9];
  const sum = ipPseudoHeaderSum(out, protocol, out.length - ipLength);
  new DataView(out.buffer).setUint16(ipLength + (protocol === 6 ? 16 : 6), sum);
  return out;
}
