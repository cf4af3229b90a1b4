/**
 * Per-packet forwarding checks of RFC 9484 §7 ("IP Packet Handling"): before
 * forwarding a packet out of the tunnel an endpoint parses its IP header and
 * checks it against what was negotiated with capsules (§4.7): the source must
 * be one of the addresses assigned to the sender (ADDRESS_ASSIGN, §4.7.1) and
 * the destination must lie in an advertised route whose IP protocol matches
 * (ROUTE_ADVERTISEMENT, §4.7.3; ICMP is always allowed). A failed check is a
 * forwarding error, not a protocol violation: the packet is dropped and
 * counted, optionally answered with ICMP (§8, see `shared/packet/icmp.ts`).
 *
 * These functions only decide: they return a {@linkcode Verdict} and leave
 * the dropping, counting and answering to the pump. They allocate nothing
 * per packet (verdicts are shared frozen objects) and cost O(addresses +
 * routes).
 *
 * @module
 */

import type { IpPrefix, IpVersion } from "../packet/ip_address.ts";
import {
  destinationIn,
  destinationInRange,
  IP_PROTOCOL_ICMP,
  IP_PROTOCOL_ICMPV6,
  ipCarriesProtocol,
  sourceIn,
  validateIpPacket,
} from "../packet/ip_header.ts";

/**
 * One IP Address Range of a ROUTE_ADVERTISEMENT capsule (RFC 9484 §4.7.3):
 * inclusive `start`..`end` (4 or 16 bytes each) for IP protocol `ipProtocol`,
 * 0 meaning every protocol. Declared here with the same shape as the type in
 * `shared/masque/capsule.ts`, so either can be passed.
 */
export interface IpAddressRange {
  readonly version: IpVersion;
  readonly start: Uint8Array;
  readonly end: Uint8Array;
  readonly ipProtocol: number;
}

/**
 * Why a packet is not forwarded:
 * - `malformed`: {@linkcode validateIpPacket} rejected it (call it for details);
 * - `source not assigned`: the source is in none of the sender's assigned prefixes;
 * - `link-local destination`: link-local or link-local multicast, never
 *   forwarded beyond the tunnel (RFC 9484 §7);
 * - `destination not routed`: in no advertised route of its IP version;
 * - `protocol not allowed`: routed, but only for other IP protocols;
 * - `destination not assigned`: (client side) not one of the client's addresses.
 */
export type DropReason =
  | "malformed"
  | "source not assigned"
  | "link-local destination"
  | "destination not routed"
  | "protocol not allowed"
  | "destination not assigned";

/** The outcome of a check: forward the packet, or drop it for `reason`. */
export type Verdict = { readonly ok: true } | { readonly ok: false; readonly reason: DropReason };

/** What the relay knows about one client session. */
export interface ClientPolicy {
  /** Prefixes assigned to the client (ADDRESS_ASSIGN, RFC 9484 §4.7.1). */
  readonly addresses: readonly IpPrefix[];
  /** Routes advertised to the client (ROUTE_ADVERTISEMENT, RFC 9484 §4.7.3). */
  readonly routes: readonly IpAddressRange[];
}

/** What the client knows about its own side of the tunnel. */
export interface RelayPolicy {
  /** Prefixes the relay assigned to this client (RFC 9484 §4.7.1). */
  readonly addresses: readonly IpPrefix[];
}

/** The verdict to forward; shared and frozen. */
export const FORWARD: Verdict = Object.freeze({ ok: true });

function drop(reason: DropReason): Verdict {
  return Object.freeze({ ok: false, reason });
}

const DROP_MALFORMED = drop("malformed");
const DROP_SOURCE = drop("source not assigned");
const DROP_LINK_LOCAL = drop("link-local destination");
const DROP_NOT_ROUTED = drop("destination not routed");
const DROP_PROTOCOL = drop("protocol not allowed");
const DROP_NOT_ASSIGNED = drop("destination not assigned");

function sourceAssigned(packet: Uint8Array, addresses: readonly IpPrefix[]): boolean {
  for (let i = 0; i < addresses.length; i++) if (sourceIn(packet, addresses[i])) return true;
  return false;
}

/**
 * Link-local unicast and multicast destinations: IPv4 169.254.0.0/16
 * (RFC 3927) and 224.0.0.0/24 (RFC 5771 Local Network Control Block); IPv6
 * fe80::/10 (RFC 4291 §2.5.6) and multicast of interface- or link-local scope
 * ff01::/16, ff02::/16 (RFC 4291 §2.7), also with the other flag bits ff1x/ff3x.
 */
function isLinkLocalDestination(packet: Uint8Array): boolean {
  if (packet[0] >> 4 === 4) {
    return (packet[16] === 169 && packet[17] === 254) ||
      (packet[16] === 224 && packet[17] === 0 && packet[18] === 0);
  }
  const first = packet[24];
  const second = packet[25];
  if (first === 0xfe && (second & 0xc0) === 0x80) return true;
  const scope = second & 0x0f;
  return first === 0xff && (scope === 1 || scope === 2);
}

/**
 * Checks a packet the relay received from a client over the tunnel before it
 * goes to the relay's TUN (RFC 9484 §7), in this order: well formed, source in
 * one of `session.addresses`, destination not link-local, destination in one
 * of `session.routes` of the packet's IP version whose `ipProtocol` is 0, is
 * carried by the packet (the IPv6 extension header chain is walked,
 * RFC 9484 §4.6), or the packet is ICMP / ICMPv6 (§4.7.3). When the
 * destination is in some range but none of them allows the protocol, the
 * reason is `protocol not allowed`.
 *
 * @param packet a packet starting at its IP header; not modified
 */
export function checkFromClient(packet: Uint8Array, session: ClientPolicy): Verdict {
  if (validateIpPacket(packet) !== undefined) return DROP_MALFORMED;
  if (!sourceAssigned(packet, session.addresses)) return DROP_SOURCE;
  if (isLinkLocalDestination(packet)) return DROP_LINK_LOCAL;
  const version = packet[0] >> 4;
  const routes = session.routes;
  let routed = false;
  // -1: not looked at yet; 1 / 0: the packet is / is not ICMP of its version.
  let icmp = -1;
  for (let i = 0; i < routes.length; i++) {
    const range = routes[i];
    if (range.version !== version || !destinationInRange(packet, range.start, range.end)) continue;
    routed = true;
    if (range.ipProtocol === 0 || ipCarriesProtocol(packet, range.ipProtocol)) return FORWARD;
    if (icmp < 0) {
      icmp = ipCarriesProtocol(packet, version === 4 ? IP_PROTOCOL_ICMP : IP_PROTOCOL_ICMPV6)
        ? 1
        : 0;
    }
    if (icmp === 1) return FORWARD;
  }
  return routed ? DROP_PROTOCOL : DROP_NOT_ROUTED;
}

/**
 * Checks a packet the client received from the relay over the tunnel before
 * it goes to the client's TUN: well formed, and addressed to one of the
 * client's own `session.addresses`, or to the all-nodes multicast address
 * ff02::1, which the relay may use to probe the tunnel MTU (RFC 9484 §7). The
 * source is not checked: ICMP errors may come from any address (§8).
 *
 * @param packet a packet starting at its IP header; not modified
 */
export function checkFromRelay(packet: Uint8Array, session: RelayPolicy): Verdict {
  if (validateIpPacket(packet) !== undefined) return DROP_MALFORMED;
  const addresses = session.addresses;
  for (let i = 0; i < addresses.length; i++) {
    if (destinationIn(packet, addresses[i])) return FORWARD;
  }
  return isAllNodes(packet) ? FORWARD : DROP_NOT_ASSIGNED;
}

/** Whether an IPv6 packet goes to ff02::1 (RFC 4291 §2.7.1). */
function isAllNodes(packet: Uint8Array): boolean {
  if (packet[0] >> 4 !== 6 || packet[24] !== 0xff || packet[25] !== 0x02) return false;
  for (let i = 26; i < 39; i++) if (packet[i] !== 0) return false;
  return packet[39] === 1;
}
