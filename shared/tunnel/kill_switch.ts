/**
 * The client's kill switch as an nftables ruleset (pure text; the client
 * installs it with `nft -f`, see `client/kill_switch.ts`).
 *
 * One table of the client's own, `inet` (both families), two chains:
 *
 * ```
 * output  (this host's packets)      forward  (packets routed through it)
 *   oif lo            accept           oif TUN        accept
 *   oif TUN           accept           iif TUN, replies accept (to containers, say)
 *   marked UDP to the relays'          allowed subnets accept
 *     addresses and ports accept       counter drop
 *   TCP to a relay's TCP port accept
 *   allowed subnets   accept
 *   IPv6 neighbour discovery, MLD reports accept
 *   DHCP / DHCPv6 requests accept
 *   counter drop
 * ```
 *
 * Everything else leaving by any interface but the TUN is dropped: with
 * the tunnel down or reconnecting, nothing goes out in the clear but the
 * QUIC packets to the relay, which carry the client's firewall mark
 * (`SO_MARK`). A drop in the output hook fails the sender at once
 * (`sendmsg` returns EPERM), so applications do not hang. Neighbour
 * discovery (hop limit 255, never routed) and DHCP keep the underlay's
 * own configuration working; they carry no user traffic.
 *
 * @module
 */

import { formatIp, formatPrefix, type IpPrefix, ipVersionOf } from "../ip/ip_address.ts";
import { unmapIpv4 } from "./full_tunnel.ts";

/** One relay endpoint the client's own socket talks to. */
export interface RelayEndpoint {
  /** 4 or 16 bytes; IPv4-mapped addresses count as IPv4. */
  readonly address: Uint8Array;
  /** Port, 1..65535. */
  readonly port: number;
  /**
   * `udp` (default): QUIC, allowed only with the client's mark. `tcp`: a
   * transport over TCP (HTTP/2), allowed to this address and port without
   * the mark, because a TCP socket cannot be marked before its SYN from
   * Deno; the FIB rule for the relay's address keeps it on the main table.
   */
  readonly protocol?: "udp" | "tcp";
}

/** `198.18.0.1 udp 443`: an endpoint as text, IPv4-mapped addresses unmapped (for comparing). */
export function formatRelayEndpoint(relay: RelayEndpoint): string {
  return `${formatIp(unmapIpv4(relay.address))} ${relay.protocol ?? "udp"} ${relay.port}`;
}

/** What the kill switch allows besides the TUN. */
export interface KillSwitchOptions {
  /** nftables table name: 1..64 letters, digits or `_`, starting with a letter. */
  readonly table: string;
  /** The TUN interface, whose traffic is always allowed. */
  readonly tunName: string;
  /** The firewall mark of the QUIC socket (1..2^32-1). */
  readonly fwmark: number;
  /** Mask for the mark (default 0xffffffff). */
  readonly fwmask?: number;
  /** Where the client's packets to its relays may go (marked QUIC; TCP). */
  readonly relays: readonly RelayEndpoint[];
  /** Destinations allowed outside the tunnel (`--allow-lan`): local networks. */
  readonly allowedSubnets?: readonly IpPrefix[];
  /** Allow IPv6 neighbour and router discovery (default true: IPv6 underlays need it). */
  readonly allowNeighbourDiscovery?: boolean;
  /** Allow DHCP and DHCPv6 requests (default true: the underlay keeps its lease). */
  readonly allowDhcp?: boolean;
}

/** The local networks `--allow-lan` allows when given no subnets: private, link-local and ULA ranges, and multicast. */
export const DEFAULT_LAN_SUBNETS: readonly string[] = [
  "10.0.0.0/8",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "169.254.0.0/16",
  "224.0.0.0/4",
  "fc00::/7",
  "fe80::/10",
  "ff00::/8",
];

/** The client's kill-switch table for TUN `tunName`, such as `masque_vpn_ks_mvpn0`. */
export function killSwitchTableName(tunName: string): string {
  return `masque_vpn_ks_${tunName.replace(/[^A-Za-z0-9_]/g, "_")}`;
}

const TABLE_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const INTERFACE_NAME = /^[A-Za-z0-9_.-]{1,15}$/;

/**
 * Problems with `options`, as messages (empty when usable): names that
 * could not be written into the ruleset safely, marks, ports, addresses.
 */
export function checkKillSwitchOptions(options: KillSwitchOptions): string[] {
  const errors: string[] = [];
  if (!TABLE_NAME.test(options.table)) {
    errors.push(
      `table name "${options.table}" must be a letter then up to 63 letters, digits or _`,
    );
  }
  if (!INTERFACE_NAME.test(options.tunName)) {
    errors.push(`interface "${options.tunName}" must be 1-15 letters, digits, '-', '_' or '.'`);
  }
  const u32 = (value: number) => Number.isInteger(value) && value > 0 && value <= 0xffffffff;
  if (!u32(options.fwmark)) errors.push(`fwmark ${options.fwmark} must be 1..4294967295`);
  if (options.fwmask !== undefined && !u32(options.fwmask)) {
    errors.push(`fwmask ${options.fwmask} must be 1..4294967295`);
  }
  if (options.relays.length === 0) errors.push("at least one relay endpoint is needed");
  for (const relay of options.relays) {
    if (ipVersionOf(relay.address) === undefined) {
      errors.push(`relay address has ${relay.address.length} bytes, not 4 or 16`);
    }
    if (!Number.isInteger(relay.port) || relay.port < 1 || relay.port > 65535) {
      errors.push(`relay port ${relay.port} is outside 1..65535`);
    }
    if (relay.protocol !== undefined && relay.protocol !== "udp" && relay.protocol !== "tcp") {
      errors.push(`relay protocol ${relay.protocol} is not udp or tcp`);
    }
  }
  return errors;
}

/**
 * The nftables ruleset (for `nft -f`) of the kill switch: the table is
 * deleted and defined again in one transaction, so replacing an installed
 * kill switch (a relay address changed on reconnect) leaves no moment
 * without one. Throws a `RangeError` when
 * {@linkcode checkKillSwitchOptions} finds problems.
 */
export function killSwitchRuleset(options: KillSwitchOptions): string {
  const errors = checkKillSwitchOptions(options);
  if (errors.length > 0) throw new RangeError(`Cannot build kill switch: ${errors.join("; ")}`);
  const tun = `"${options.tunName}"`;
  const mask = options.fwmask ?? 0xffffffff;
  const mark = mask === 0xffffffff
    ? `meta mark 0x${options.fwmark.toString(16)}`
    : `meta mark & 0x${mask.toString(16)} == 0x${options.fwmark.toString(16)}`;
  const seen = new Set<string>();
  const relayRules = options.relays.flatMap((relay) => {
    const key = formatRelayEndpoint(relay);
    if (seen.has(key)) return [];
    seen.add(key);
    const address = unmapIpv4(relay.address);
    const family = address.length === 4 ? "ip" : "ip6";
    const match = `${family} daddr ${formatIp(address)}`;
    return relay.protocol === "tcp"
      ? [`    ${match} tcp dport ${relay.port} accept`]
      : [`    ${mark} ${match} udp dport ${relay.port} accept`];
  });
  const allowed = (options.allowedSubnets ?? []).map((prefix) =>
    `    ${prefix.version === 4 ? "ip" : "ip6"} daddr ${formatPrefix(prefix)} accept`
  );
  const discovery = (options.allowNeighbourDiscovery ?? true)
    ? [
      "    icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } " +
      "ip6 hoplimit 255 accept",
      // Multicast listener reports keep switches with MLD snooping delivering neighbour solicitations.
      "    icmpv6 type { mld-listener-report, mld2-listener-report } ip6 hoplimit 1 accept",
    ]
    : [];
  const dhcp = (options.allowDhcp ?? true)
    ? [
      "    meta nfproto ipv4 udp sport 68 udp dport 67 accept",
      "    meta nfproto ipv6 udp sport 546 udp dport 547 accept",
    ]
    : [];
  const table = `inet ${options.table}`;
  return [
    // Create-if-missing, then delete: one transaction that replaces any previous version.
    `add table ${table}`,
    `delete table ${table}`,
    `table ${table} {`,
    "  chain output {",
    "    type filter hook output priority filter; policy accept;",
    '    oifname "lo" accept',
    `    oifname ${tun} accept`,
    ...relayRules,
    ...allowed,
    ...discovery,
    ...dhcp,
    "    counter drop",
    "  }",
    "  chain forward {",
    "    type filter hook forward priority filter; policy accept;",
    `    oifname ${tun} accept`,
    `    iifname ${tun} ct state established,related accept`,
    ...allowed,
    "    counter drop",
    "  }",
    "}",
    "",
  ].join("\n");
}
