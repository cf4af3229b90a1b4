/**
 * The relay's firewall around its own host and between its clients: which
 * client packets that passed {@linkcode checkFromClient} may go on to the
 * relay's TUN (and so to the host's kernel), which are for another client,
 * and which are dropped.
 *
 * RFC 9484 §7 lets a proxy "implement additional filtering policies on the
 * IP packets they forward". Without this, the relay's TUN hands the kernel
 * every packet whose destination is routed, and the kernel delivers those
 * for its own addresses to local sockets: a client could reach services on
 * the relay host that listen on any address, through the TUN address,
 * through the host's other addresses, or through broadcast. So, in order:
 *
 * 1. A destination the relay host would take itself is dropped as
 *    `relay host`: every address of the host (the gateway addresses on the
 *    TUN, the pools' network addresses and first hosts (which `AddressPool`
 *    keeps for the relay), the IPv4 pools' broadcast addresses,
 *    and whatever {@linkcode HostFirewall.setHostPrefixes} was last given,
 *    which the relay takes from the kernel's local routes), loopback
 *    (127.0.0.0/8, ::1), IPv4 limited broadcast and all multicast (the relay
 *    routes no multicast, so only local sockets could take it). The one
 *    exception is a service named in {@linkcode HostFirewallOptions.allow}
 *    (`udp/53`, `tcp/853`, `ping`), and only at a gateway address, only
 *    unfragmented.
 * 2. A destination inside a client pool (another client) is dropped as
 *    `client to client`, or with
 *    {@linkcode HostFirewallOptions.clientToClient} handed back to the relay
 *    to deliver itself ({@linkcode TO_CLIENT}).
 * 3. Anything else goes to the TUN ({@linkcode FORWARD}).
 *
 * Lookups are a `Set` of 32-bit words (IPv6: the last word, then a full
 * compare) and a short list of prefixes: O(1) for host addresses,
 * O(wider local prefixes + pools) per packet, and no allocation.
 *
 * @module
 */

import type { IpPrefix, IpVersion } from "../ip/ip_address.ts";
import { createPrefix, formatIp, formatPrefix, parsePrefix } from "../ip/ip_address.ts";
import {
  createIpv6Chain,
  destinationIn,
  IP_PROTOCOL_ICMP,
  IP_PROTOCOL_ICMPV6,
  IP_PROTOCOL_TCP,
  IP_PROTOCOL_UDP,
  ipPacketLength,
  ipv4FragmentOffset,
  ipv4MoreFragments,
  readIpv6Chain,
} from "../ip/ip_header.ts";
import { drop, FORWARD, type Verdict } from "./packet_policy.ts";

export { FORWARD } from "./packet_policy.ts";

/** A service on the relay host that clients may reach at the gateway addresses. */
export type HostService =
  | {
    /** Transport protocol. */
    readonly protocol: "udp" | "tcp";
    /** Inclusive destination port range, 1..65535. */
    readonly firstPort: number;
    readonly lastPort: number;
  }
  /** ICMP Echo Request (type 8, RFC 792) and ICMPv6 Echo Request (type 128, RFC 4443 §4.1). */
  | { readonly protocol: "ping" };

/**
 * Parses one `--allow-relay-host` value: `udp/PORT`, `tcp/PORT`,
 * `udp/FIRST-LAST`, `tcp/FIRST-LAST` (ports 1..65535) or `ping`. Returns the
 * service, or an error message such as
 * `--allow-relay-host "udp/99999": port 99999 is outside 1..65535`.
 * Linear, no regular expression.
 */
export function parseHostService(text: string): HostService | string {
  const fail = (why: string) => `--allow-relay-host "${text}": ${why}`;
  if (text === "ping") return { protocol: "ping" };
  const slash = text.indexOf("/");
  const protocol = slash < 0 ? text : text.slice(0, slash);
  if (protocol !== "udp" && protocol !== "tcp") {
    return fail("expected udp/PORT, tcp/PORT, udp/FIRST-LAST, tcp/FIRST-LAST or ping");
  }
  if (slash < 0) return fail(`${protocol} needs a port, as in ${protocol}/53`);
  const ports = text.slice(slash + 1);
  const dash = ports.indexOf("-");
  const first = parsePort(dash < 0 ? ports : ports.slice(0, dash));
  const last = dash < 0 ? first : parsePort(ports.slice(dash + 1));
  if (typeof first === "string") return fail(first);
  if (typeof last === "string") return fail(last);
  if (last < first) return fail(`port range ${first}-${last} is empty`);
  return { protocol, firstPort: first, lastPort: last };
}

function parsePort(text: string): number | string {
  if (text.length === 0 || text.length > 5) {
    return `port "${text}" is not a number of 1 to 5 digits`;
  }
  let value = 0;
  for (let i = 0; i < text.length; i++) {
    const digit = text.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return `port "${text}" is not a number`;
    value = value * 10 + digit;
  }
  if (value < 1 || value > 65535) return `port ${value} is outside 1..65535`;
  return value;
}

/** The text form {@linkcode parseHostService} reads: `udp/53`, `tcp/8000-8080`, `ping`. */
export function formatHostService(service: HostService): string {
  if (service.protocol === "ping") return "ping";
  const { protocol, firstPort, lastPort } = service;
  return firstPort === lastPort
    ? `${protocol}/${firstPort}`
    : `${protocol}/${firstPort}-${lastPort}`;
}

/**
 * `allow` with `udp/53` and `tcp/53` added when a DNS server the relay
 * hands its clients (`--dns`) is one of its `gateways` and `allow` does not
 * already let clients reach that port: naming the relay itself as the
 * clients' resolver implies they may reach it there. Returns `allow`
 * itself when nothing is added.
 */
export function withDnsServices(
  allow: readonly HostService[],
  dnsServers: readonly Uint8Array[],
  gateways: readonly Uint8Array[],
): readonly HostService[] {
  const onGateway = dnsServers.some((server) =>
    gateways.some((gateway) => formatIp(gateway) === formatIp(server))
  );
  if (!onGateway) return allow;
  const added: HostService[] = [];
  for (const protocol of ["udp", "tcp"] as const) {
    const covered = allow.some((service) =>
      service.protocol === protocol && service.firstPort <= 53 && service.lastPort >= 53
    );
    if (!covered) added.push({ protocol, firstPort: 53, lastPort: 53 });
  }
  return added.length === 0 ? allow : [...allow, ...added];
}

/** What the firewall is built from; the relay's configuration. */
export interface HostFirewallOptions {
  /** The client pools (one address each per client is assigned out of these). */
  readonly pools: readonly IpPrefix[];
  /** The relay's own addresses on its TUN, the only ones where `allow` applies. */
  readonly gateways: readonly Uint8Array[];
  /** Services on the relay host that clients may reach at a gateway address. */
  readonly allow: readonly HostService[];
  /** Let clients reach each other's addresses ({@linkcode TO_CLIENT}). */
  readonly clientToClient: boolean;
}

/**
 * The verdict for a packet whose destination is in a client pool, when
 * clients may reach each other: the relay delivers it to the session owning
 * that address itself (shared, frozen).
 */
export const TO_CLIENT = Object.freeze({ ok: true, toClient: true } as const);

/** What {@linkcode HostFirewall.check} decides. */
export type HostVerdict = Verdict | typeof TO_CLIENT;

const DROP_RELAY_HOST = drop("relay host");
const DROP_CLIENT_TO_CLIENT = drop("client to client");

/** Always the relay host, whatever the kernel's tables say: loopback. */
const LOOPBACK = ["127.0.0.0/8", "::1/128"].map(parsePrefix);

const ICMP_ECHO_REQUEST = 8;
const ICMPV6_ECHO_REQUEST = 128;

// Reused by every check, so the walk allocates nothing.
const chain = createIpv6Chain();

/** The first address of `prefix` (all host bits zero). */
function networkAddress(prefix: IpPrefix): Uint8Array {
  return createPrefix(prefix.address, prefix.prefixLength).address;
}

/** The second address of `prefix`, its first host, which `AddressPool` keeps for the relay. */
function firstHost(prefix: IpPrefix): Uint8Array {
  const out = networkAddress(prefix);
  for (let i = out.length - 1; i >= 0; i--) {
    if (out[i] !== 0xff) {
      out[i]++;
      break;
    }
    out[i] = 0;
  }
  return out;
}

/** The last address of an IPv4 `prefix` (all host bits one, the broadcast address, RFC 919). */
function broadcastAddress(prefix: IpPrefix): Uint8Array {
  const out = prefix.address.slice();
  for (let bit = prefix.prefixLength; bit < 32; bit++) out[bit >> 3] |= 0x80 >> (bit & 7);
  return out;
}

/**
 * Whether the destination is IPv4 multicast (224.0.0.0/4, RFC 5771) or
 * limited broadcast (255.255.255.255, RFC 919), or IPv6 multicast (ff00::/8,
 * RFC 4291 §2.7).
 */
function isMulticastOrBroadcast(packet: Uint8Array): boolean {
  if (packet[0] >> 4 === 4) {
    const first = packet[16];
    return (first >= 224 && first <= 239) ||
      (first === 255 && packet[17] === 255 && packet[18] === 255 && packet[19] === 255);
  }
  return packet[24] === 0xff;
}

/**
 * A set of IPv4 and IPv6 addresses that answers "is the packet's
 * destination in it" without allocating: IPv4 addresses are 32-bit numbers
 * in a `Set`; IPv6 addresses are filed under their last 32 bits and compared
 * in full on a hit.
 */
class DestinationSet {
  readonly #v4 = new Set<number>();
  readonly #v6 = new Map<number, Uint8Array[]>();

  /** Adds a 4- or 16-byte address; returns false when it was there already. */
  add(address: Uint8Array): boolean {
    if (this.hasAt(address, 0, address.length)) return false;
    const low = word(address, address.length - 4);
    if (address.length === 4) this.#v4.add(low);
    else {
      const list = this.#v6.get(low);
      if (list) list.push(address.slice());
      else this.#v6.set(low, [address.slice()]);
    }
    return true;
  }

  /** Whether the packet's destination (validated IPv4 or IPv6) is in the set. */
  hasDestination(packet: Uint8Array): boolean {
    return packet[0] >> 4 === 4 ? this.hasAt(packet, 16, 4) : this.hasAt(packet, 24, 16);
  }

  /** Whether the `length`-byte address at `offset` of `bytes` is in the set. */
  hasAt(bytes: Uint8Array, offset: number, length: number): boolean {
    const low = word(bytes, offset + length - 4);
    if (length === 4) return this.#v4.has(low);
    const list = this.#v6.get(low);
    if (list === undefined) return false;
    for (let i = 0; i < list.length; i++) {
      const candidate = list[i];
      let j = 0;
      while (j < 12 && candidate[j] === bytes[offset + j]) j++;
      if (j === 12) return true;
    }
    return false;
  }
}

/** The big-endian 32-bit word at `offset`, as a signed number (no allocation). */
function word(bytes: Uint8Array, offset: number): number {
  return (bytes[offset] << 24) | (bytes[offset + 1] << 16) | (bytes[offset + 2] << 8) |
    bytes[offset + 3];
}

/** The relay's firewall; see the module documentation. */
export class HostFirewall {
  readonly #pools: readonly IpPrefix[];
  readonly #allow: readonly HostService[];
  readonly #clientToClient: boolean;
  /** The gateway addresses (where `allow` applies). */
  readonly #gateways = new DestinationSet();
  /** Addresses the relay derives itself: gateways, pool network, first host and broadcast addresses. */
  readonly #own: Uint8Array[] = [];
  readonly #ownTexts: string[] = [];
  /** Single host addresses (/32, /128) of the host: own ones plus the kernel's. */
  #hostAddresses = new DestinationSet();
  /** Wider local prefixes: loopback plus the kernel's (AnyIP routes, for example). */
  #hostPrefixes: readonly IpPrefix[] = LOOPBACK;
  #hostPrefixTexts: readonly string[] = [];

  constructor(options: HostFirewallOptions) {
    this.#pools = [...options.pools];
    this.#allow = [...options.allow];
    this.#clientToClient = options.clientToClient;
    const own = [...options.gateways];
    for (const gateway of options.gateways) this.#gateways.add(gateway);
    for (const pool of this.#pools) {
      own.push(networkAddress(pool), firstHost(pool));
      if (pool.version === 4) own.push(broadcastAddress(pool));
    }
    for (const address of own) {
      if (!this.#hostAddresses.add(address)) continue;
      this.#own.push(address);
      this.#ownTexts.push(formatIp(address));
    }
  }

  /**
   * Replaces what the firewall knows of the host's addresses beyond its own
   * (every local, broadcast and anycast destination of the kernel's routing
   * tables, `ip route show table local`). Host prefixes (/32, /128) go into
   * a map; wider ones (127.0.0.0/8, AnyIP routes) into a list checked per
   * packet. Returns whether the set changed.
   */
  setHostPrefixes(prefixes: readonly IpPrefix[]): boolean {
    const addresses = new DestinationSet();
    for (const address of this.#own) addresses.add(address);
    const wider: IpPrefix[] = [...LOOPBACK];
    const texts: string[] = [];
    for (const prefix of prefixes) {
      const bits = prefix.version === 4 ? 32 : 128;
      if (prefix.prefixLength === bits) addresses.add(prefix.address);
      else if (!LOOPBACK.some((l) => formatPrefix(l) === formatPrefix(prefix))) {
        wider.push(prefix);
      }
      texts.push(formatPrefix(prefix));
    }
    texts.sort();
    const changed = texts.length !== this.#hostPrefixTexts.length ||
      texts.some((t, i) => t !== this.#hostPrefixTexts[i]);
    this.#hostAddresses = addresses;
    this.#hostPrefixes = wider;
    this.#hostPrefixTexts = texts;
    return changed;
  }

  /**
   * What the firewall now protects, for logs and the status file: its own
   * addresses, then the kernel's local prefixes last given to
   * {@linkcode setHostPrefixes}, then loopback.
   */
  get protectedAddresses(): string[] {
    return [...this.#ownTexts, ...this.#hostPrefixTexts, ...LOOPBACK.map(formatPrefix)];
  }

  /** The services clients may reach at the gateway addresses. */
  get services(): readonly HostService[] {
    return this.#allow;
  }

  /** The services clients may reach, as `--allow-relay-host` spells them. */
  get allowed(): string[] {
    return this.#allow.map(formatHostService);
  }

  /**
   * Decides for a packet that {@linkcode checkFromClient} let through:
   * {@linkcode FORWARD} to the TUN, {@linkcode TO_CLIENT} for the relay to
   * deliver to another session, or a drop (`relay host`, `client to client`).
   *
   * @param packet a packet starting at its IP header; not modified
   */
  check(packet: Uint8Array): HostVerdict {
    if (isMulticastOrBroadcast(packet)) return DROP_RELAY_HOST;
    if (this.#hostAddresses.hasDestination(packet)) {
      return this.#gateways.hasDestination(packet) && this.#allowed(packet)
        ? FORWARD
        : DROP_RELAY_HOST;
    }
    const wider = this.#hostPrefixes;
    for (let i = 0; i < wider.length; i++) {
      if (destinationIn(packet, wider[i])) return DROP_RELAY_HOST;
    }
    const pools = this.#pools;
    for (let i = 0; i < pools.length; i++) {
      if (destinationIn(packet, pools[i])) {
        return this.#clientToClient ? TO_CLIENT : DROP_CLIENT_TO_CLIENT;
      }
    }
    return FORWARD;
  }

  /** Whether an unfragmented packet goes to one of the allowed services. */
  #allowed(packet: Uint8Array): boolean {
    if (this.#allow.length === 0) return false;
    const version: IpVersion = packet[0] >> 4 === 4 ? 4 : 6;
    let protocol: number;
    let offset: number;
    if (version === 4) {
      if (ipv4FragmentOffset(packet) !== 0 || ipv4MoreFragments(packet)) return false;
      protocol = packet[9];
      offset = (packet[0] & 0x0f) * 4;
    } else {
      if (!readIpv6Chain(packet, chain) || chain.fragment) return false;
      protocol = chain.protocol;
      offset = chain.offset;
    }
    const length = ipPacketLength(packet);
    if (offset + 4 > length) return false;
    const port = (packet[offset + 2] << 8) | packet[offset + 3];
    for (const service of this.#allow) {
      if (service.protocol === "ping") {
        if (
          (version === 4 && protocol === IP_PROTOCOL_ICMP &&
            packet[offset] === ICMP_ECHO_REQUEST) ||
          (version === 6 && protocol === IP_PROTOCOL_ICMPV6 &&
            packet[offset] === ICMPV6_ECHO_REQUEST)
        ) return true;
      } else if (
        protocol === (service.protocol === "udp" ? IP_PROTOCOL_UDP : IP_PROTOCOL_TCP) &&
        port >= service.firstPort && port <= service.lastPort
      ) return true;
    }
    return false;
  }
}
