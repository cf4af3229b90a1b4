/**
 * Per-packet forwarding checks of RFC 9484 §7 ("IP Packet Handling"): before
 * forwarding a packet out of the tunnel an endpoint parses its IP header and
 * checks it against what was negotiated with capsules (§4.7): the source must
 * be one of the addresses assigned to the sender (ADDRESS_ASSIGN, §4.7.1) and
 * the destination must lie in an advertised route whose IP protocol matches
 * (ROUTE_ADVERTISEMENT, §4.7.3; ICMP is always allowed). A failed check is a
 * forwarding error, not a protocol violation: the packet is dropped and
 * counted, optionally answered with ICMP (§8, see `shared/ip/icmp.ts`).
 *
 * These functions only decide: they return a {@linkcode Verdict} and leave
 * the dropping, counting and answering to the pump. They allocate nothing
 * per packet (verdicts are shared frozen objects) and cost O(addresses +
 * routes).
 *
 * @module
 */

import type { IpAddressRange, IpPrefix } from "../ip/ip_address.ts";
import {
  createIpv6Chain,
  destinationIn,
  destinationInRange,
  IP_PROTOCOL_ICMP,
  IP_PROTOCOL_ICMPV6,
  IP_PROTOCOL_TCP,
  IP_PROTOCOL_UDP,
  ipCarriesProtocol,
  ipPacketLength,
  IPV4_MIN_HEADER_LENGTH,
  ipv4FragmentOffset,
  ipv4MoreFragments,
  IPV6_HEADER_LENGTH,
  readIpv6Chain,
  sourceIn,
  validateIpPacket,
} from "../ip/ip_header.ts";

/**
 * Why a packet is not forwarded (declared here, so that a counter labelled
 * with the reason has a bounded set of values):
 * - `malformed`: {@linkcode validateIpPacket} rejected it (call it for details);
 * - `source not assigned`: the source is in none of the sender's assigned prefixes;
 * - `link-local destination`: link-local or link-local multicast, never
 *   forwarded beyond the tunnel (RFC 9484 §7);
 * - `destination not routed`: in no advertised route of its IP version;
 * - `protocol not allowed`: routed, but only for other IP protocols;
 * - `destination not assigned`: (client side) not one of the client's addresses;
 *   (relay side) in a client pool, but no session holds it;
 * - `IPv4 options`: an IPv4 header longer than 20 bytes (see {@linkcode checkHeaderRules});
 * - `zero TTL`: IPv4 TTL or IPv6 Hop Limit 0, never valid on the wire;
 * - `bad fragment`: a fragment no sender makes (see {@linkcode checkHeaderRules});
 * - `bad extension headers`: an IPv6 chain that cannot be walked within bounds
 *   (see `readIpv6Chain` in `shared/ip/ip_header.ts`);
 * - `hop-by-hop options`: an IPv6 Hop-by-Hop Options header;
 * - `routing header type 0`: deprecated by RFC 5095;
 * - `relay host`, `client to client`, `hop limit exceeded`: see
 *   `shared/tunnel/host_firewall.ts`.
 */
export const DROP_REASONS = [
  "malformed",
  "source not assigned",
  "link-local destination",
  "destination not routed",
  "protocol not allowed",
  "destination not assigned",
  "IPv4 options",
  "zero TTL",
  "bad fragment",
  "bad extension headers",
  "hop-by-hop options",
  "routing header type 0",
  "relay host",
  "client to client",
  "hop limit exceeded",
] as const;

/** One of {@linkcode DROP_REASONS}. */
export type DropReason = typeof DROP_REASONS[number];

/**
 * The reasons that mean "the session may not reach this destination with
 * this protocol": a relay answers them with ICMP Destination Unreachable,
 * administratively prohibited (RFC 9484 §7, RFC 1812 §5.2.7.1), so that the
 * application fails at once instead of timing out. Drops for the relay host
 * and other clients stay silent (they would confirm what is there).
 */
export const POLICY_REFUSALS: ReadonlySet<DropReason> = new Set<DropReason>([
  "destination not routed",
  "protocol not allowed",
]);

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

/** A shared frozen verdict that drops for `reason`; for policies built on this module. */
export function drop(reason: DropReason): Verdict {
  return Object.freeze({ ok: false, reason });
}

const DROP_MALFORMED = drop("malformed");
const DROP_SOURCE = drop("source not assigned");
const DROP_LINK_LOCAL = drop("link-local destination");
const DROP_NOT_ROUTED = drop("destination not routed");
const DROP_PROTOCOL = drop("protocol not allowed");
const DROP_NOT_ASSIGNED = drop("destination not assigned");
const DROP_OPTIONS = drop("IPv4 options");
const DROP_ZERO_TTL = drop("zero TTL");
const DROP_FRAGMENT = drop("bad fragment");
const DROP_EXTENSION_HEADERS = drop("bad extension headers");
const DROP_HOP_BY_HOP = drop("hop-by-hop options");
const DROP_ROUTING_0 = drop("routing header type 0");

/** Routing Type 0 (RFC 5095 §3: deprecated, a packet carrying it is not processed). */
const ROUTING_TYPE_0 = 0;
/** The largest IP packet a reassembly may produce: 65535 bytes (RFC 791 Total Length, RFC 8200 Payload Length). */
const MAX_REASSEMBLED_BYTES = 65535;

// Reused by every check, so the walk allocates nothing.
const chain = createIpv6Chain();

/**
 * Bytes of upper-layer header a first fragment must carry so that a filter
 * sees what it matches on: the whole TCP header up to its flags and window
 * (20, RFC 1858 §3), the UDP header (8), the ICMP / ICMPv6 header with its
 * identifier or next-hop word (8). Other protocols: 0.
 */
function minimumFirstFragmentBytes(protocol: number): number {
  if (protocol === IP_PROTOCOL_TCP) return 20;
  if (
    protocol === IP_PROTOCOL_UDP || protocol === IP_PROTOCOL_ICMP ||
    protocol === IP_PROTOCOL_ICMPV6
  ) return 8;
  return 0;
}

/**
 * The fragment rules shared by both IP versions, for a packet that is a
 * fragment: `offset` in 8-byte units, `data` bytes of fragmentable data,
 * `unfragmentable` bytes that count towards the 65535-byte limit besides
 * (the IPv4 header; the IPv6 headers before the Fragment header, without the
 * fixed header), and the upper-layer header (first fragment) at
 * `upperOffset`. A fragment is bad when the packet it belongs to would
 * reassemble past 65535 bytes (the "ping of death"; RFC 791 §3.1 Total
 * Length, RFC 8200 §4.5 Payload Length), when a fragment with More Fragments set is not a multiple of 8
 * bytes (RFC 791 §3.2, RFC 8200 §4.5), when the first fragment does not hold
 * the upper-layer header ({@linkcode minimumFirstFragmentBytes}; RFC 1858
 * §3.1, RFC 7112 §5), or when a TCP fragment starts at offset 8 bytes, which
 * can only overwrite the TCP flags (RFC 1858 §3.2, RFC 3128).
 */
function fragmentIsBad(
  protocol: number,
  offset: number,
  more: boolean,
  data: number,
  unfragmentable: number,
  upperOffset: number,
  packetLength: number,
): boolean {
  if (unfragmentable + offset * 8 + data > MAX_REASSEMBLED_BYTES) return true;
  if (more && (data === 0 || (data & 7) !== 0)) return true;
  if (offset === 0) return upperOffset + minimumFirstFragmentBytes(protocol) > packetLength;
  return offset === 1 && protocol === IP_PROTOCOL_TCP;
}

/**
 * Rules on the IP header itself that the relay applies to every packet from
 * a client, beyond RFC 9484 §7's address checks (§7 allows "additional
 * filtering policies"); `docs/decisions.md` gives the reasons:
 *
 * - IPv4 options (IHL > 5) are dropped, every option alike: source routing
 *   (LSRR/SSRR, RFC 7126) and Router Alert (RFC 2113; the kernel
 *   hands such a forwarded packet to local raw sockets, RFC 6398) included;
 * - TTL / Hop Limit 0 is dropped (RFC 1122 §3.2.1.7, RFC 1812 §5.3.1: never sent; TTL 1 goes
 *   on, and the kernel's forwarding answers it with Time Exceeded);
 * - fragments: see {@linkcode fragmentIsBad};
 * - IPv6: a chain that `readIpv6Chain` cannot walk, a Hop-by-Hop Options
 *   header (the IPv6 counterpart of options; Router Alert again) and a
 *   Routing header of type 0 (RFC 5095) are dropped.
 *
 * @param packet a packet {@linkcode validateIpPacket} accepted
 */
export function checkHeaderRules(packet: Uint8Array): Verdict {
  const length = ipPacketLength(packet);
  if (packet[0] >> 4 === 4) {
    if ((packet[0] & 0x0f) !== 5) return DROP_OPTIONS;
    if (packet[8] === 0) return DROP_ZERO_TTL;
    const offset = ipv4FragmentOffset(packet);
    const more = ipv4MoreFragments(packet);
    if (
      (offset !== 0 || more) &&
      fragmentIsBad(
        packet[9],
        offset,
        more,
        length - IPV4_MIN_HEADER_LENGTH,
        IPV4_MIN_HEADER_LENGTH,
        IPV4_MIN_HEADER_LENGTH,
        length,
      )
    ) return DROP_FRAGMENT;
    return FORWARD;
  }
  if (packet[7] === 0) return DROP_ZERO_TTL;
  if (!readIpv6Chain(packet, chain)) return DROP_EXTENSION_HEADERS;
  if (chain.hopByHop) return DROP_HOP_BY_HOP;
  if (chain.routingType === ROUTING_TYPE_0) return DROP_ROUTING_0;
  if (
    chain.fragment &&
    fragmentIsBad(
      chain.protocol,
      chain.fragmentOffset,
      chain.moreFragments,
      chain.fragmentDataLength,
      // The headers between the fixed header and the Fragment header.
      length - chain.fragmentDataLength - IPV6_HEADER_LENGTH - 8,
      chain.offset,
      length,
    )
  ) return DROP_FRAGMENT;
  return FORWARD;
}

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
 * one of `session.addresses`, the header rules of
 * {@linkcode checkHeaderRules}, destination not link-local, destination in one
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
  const header = checkHeaderRules(packet);
  if (!header.ok) return header;
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
