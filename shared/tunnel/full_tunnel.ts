/**
 * The client's routing plan, computed the way wg-quick routes a full
 * tunnel, for split and full tunnels over IPv4, IPv6 or both. Pure: the
 * client applies the plan through `ffi/policy_routing.ts`.
 *
 * ```
 * table T (the client's own)      every tunnelled prefix -> TUN; for a family the
 *                                 tunnel does not carry fully while another one
 *                                 is full: unreachable default; host routes to
 *                                 DNS servers the relay does not advertise
 * rules (per family that has routes in T), tried in this order:
 *   P+0  to DNS/32|128           lookup T     DNS always through the tunnel
 *   P+1  to RELAY/32|128         lookup main  the relay outside it, even unmarked
 *                                             (only where T covers the relay)
 *   P+2  from all                lookup main suppress_prefixlength 0
 *                                             main's routes, but not its defaults:
 *                                             local and more specific routes win
 *   P+3  not fwmark M            lookup T     everything else, unless it is the
 *                                             QUIC socket's marked traffic
 * ```
 *
 * Marked packets (the QUIC endpoint's socket carries mark M, `SO_MARK`)
 * skip P+3 and fall through to the kernel's `lookup main` rule (32766), so
 * they leave by the underlay's default route. Default routes in main, of
 * any metric and either family, are never touched, so adding the plan
 * cannot fail with EEXIST (issue 14). The relay rules also keep the
 * reverse-path filter (`rp_filter`) from dropping the relay's replies,
 * whose reverse lookup is unmarked.
 *
 * @module
 */

import type { IpAddressRange } from "../ip/ip_address.ts";
import {
  createPrefix,
  formatIp,
  formatPrefix,
  ipEquals,
  type IpPrefix,
  type IpVersion,
  ipVersionOf,
  prefixContains,
} from "../ip/ip_address.ts";
import { routesWithin } from "./routes.ts";

/** The client's routing table id by default (wg-quick uses 51820 for its own). */
export const DEFAULT_ROUTING_TABLE = 51900;
/** The firewall mark of the client's QUIC socket by default (0xcabc). */
export const DEFAULT_FWMARK = 51900;
/** The first of the four rule priorities the client uses by default (32760..32763). */
export const DEFAULT_RULE_PRIORITY = 32760;
/** How many consecutive rule priorities a plan uses, from {@linkcode FullTunnelOptions.priority}. */
export const RULE_PRIORITY_COUNT = 4;
/** The main table (`lookup main`). */
export const MAIN_TABLE = 254;

/** Where the plan's routing lives; the defaults are the constants above. */
export interface FullTunnelOptions {
  /** The client's own table, 1..2^32-1 except 253..255 (default, main, local). */
  readonly table: number;
  /** First rule priority; the plan uses this and the next three, all below 32766 (main). */
  readonly priority: number;
  /** Firewall mark of the QUIC socket, 1..2^32-1. */
  readonly fwmark: number;
  /** Mask for the mark (default 0xffffffff); the mark has no bits outside it. */
  readonly fwmask?: number;
  /**
   * When some family goes fully through the tunnel, send the other
   * family's unmarked traffic that main would route by default to an
   * unreachable route instead of the underlay (default true): a relay
   * that assigns only IPv4 then does not leave IPv6 going around the
   * tunnel. Main's more specific routes (the local networks) still win.
   */
  readonly blockOtherFamilies?: boolean;
}

/** What the plan is computed from. */
export interface RoutingInput {
  /** The relay's ROUTE_ADVERTISEMENT ranges (RFC 9484 §4.7.3). */
  readonly advertised: readonly IpAddressRange[];
  /** `--route` prefixes; empty: everything the relay advertises. */
  readonly wanted: readonly IpPrefix[];
  /** The relay's ADDRESS_ASSIGN prefixes: families without one get no routes. */
  readonly assigned: readonly IpPrefix[];
  /** The relay's address(es) as the QUIC connection sees them (IPv4-mapped allowed). */
  readonly relayAddresses: readonly Uint8Array[];
  /** DNS servers to use through the tunnel (IPv4-mapped allowed). */
  readonly dnsServers: readonly Uint8Array[];
}

/** A route of the plan, always in the plan's table. */
export interface PlannedRoute {
  readonly destination: IpPrefix;
  /** `tunnel`: through the TUN device; `unreachable`: answered with ICMP unreachable. */
  readonly type: "tunnel" | "unreachable";
}

/** Why a rule is in the plan. */
export type RulePurpose = "dns" | "relay" | "suppress" | "unmarked";

/** A FIB rule of the plan (the fields of `ffi/policy_routing.ts`'s `FibRule`). */
export interface PlannedRule {
  readonly purpose: RulePurpose;
  readonly family: IpVersion;
  readonly priority: number;
  readonly table: number;
  readonly destination?: IpPrefix;
  readonly fwmark?: number;
  readonly fwmask?: number;
  readonly invert?: boolean;
  readonly suppressPrefixLength?: number;
}

/** What {@linkcode planRouting} returns. */
export interface RoutingPlan {
  readonly table: number;
  readonly fwmark: number;
  readonly fwmask: number;
  /** The priorities the plan may use, inclusive: how a later start finds stale rules. */
  readonly priorities: { readonly first: number; readonly last: number };
  readonly routes: readonly PlannedRoute[];
  readonly rules: readonly PlannedRule[];
  /** Families whose default route goes through the tunnel. */
  readonly full: readonly IpVersion[];
  /** Families whose default route the plan makes unreachable ({@linkcode FullTunnelOptions.blockOtherFamilies}). */
  readonly blocked: readonly IpVersion[];
  /** DNS servers reachable through the tunnel (unmapped), in input order. */
  readonly dnsServers: readonly Uint8Array[];
  /** What was left out and why, such as `IPv6 routes skipped: the relay assigned no IPv6 address`. */
  readonly notes: readonly string[];
}

/**
 * Problems with `options`, as messages (empty when they are usable):
 * table, priorities below main's rule at 32766, mark inside its mask.
 */
export function checkFullTunnelOptions(options: FullTunnelOptions): string[] {
  const errors: string[] = [];
  const { table, priority, fwmark } = options;
  const fwmask = options.fwmask ?? 0xffffffff;
  const u32 = (value: number) => Number.isInteger(value) && value >= 0 && value <= 0xffffffff;
  if (!u32(table) || table === 0 || (table >= 253 && table <= 255)) {
    errors.push(
      `routing table ${table} must be 1..4294967295 and not 253..255 (default, main, local)`,
    );
  }
  const last = priority + RULE_PRIORITY_COUNT - 1;
  if (!Number.isInteger(priority) || priority < 1 || last >= 32766) {
    errors.push(
      `rule priority ${priority} must be 1..${
        32766 - RULE_PRIORITY_COUNT
      }: the plan uses ${RULE_PRIORITY_COUNT} priorities, all before main's rule at 32766`,
    );
  }
  if (!u32(fwmark) || fwmark === 0) errors.push(`fwmark ${fwmark} must be 1..4294967295`);
  if (!u32(fwmask) || fwmask === 0) errors.push(`fwmask ${fwmask} must be 1..4294967295`);
  else if (u32(fwmark) && ((fwmark & ~fwmask) >>> 0) !== 0) {
    errors.push(
      `fwmark 0x${fwmark.toString(16)} has bits outside mask 0x${fwmask.toString(16)}`,
    );
  }
  return errors;
}

/**
 * A 16-byte IPv4-mapped address (`::ffff:198.18.0.1`, what a dual-stack
 * socket reports for an IPv4 peer) as its 4-byte IPv4 address; any other
 * address unchanged.
 */
export function unmapIpv4(address: Uint8Array): Uint8Array {
  if (address.length !== 16) return address;
  for (let i = 0; i < 10; i++) if (address[i] !== 0) return address;
  if (address[10] !== 0xff || address[11] !== 0xff) return address;
  return address.slice(12);
}

function hostPrefix(address: Uint8Array): IpPrefix {
  return createPrefix(address, address.length * 8);
}

/**
 * Computes the routes and rules for the tunnel (see the module
 * documentation). Throws a `RangeError` when `options` fail
 * {@linkcode checkFullTunnelOptions} or an address is neither 4 nor 16 bytes.
 */
export function planRouting(input: RoutingInput, options: FullTunnelOptions): RoutingPlan {
  const errors = checkFullTunnelOptions(options);
  if (errors.length > 0) throw new RangeError(`Cannot plan routing: ${errors.join("; ")}`);
  const { table, priority, fwmark } = options;
  const fwmask = options.fwmask ?? 0xffffffff;
  const blockOthers = options.blockOtherFamilies ?? true;
  const notes: string[] = [];
  const routes: PlannedRoute[] = [];
  const rules: PlannedRule[] = [];
  const full: IpVersion[] = [];
  const blocked: IpVersion[] = [];
  const dnsServers: Uint8Array[] = [];

  const tunnelled = routesWithin(input.advertised, input.wanted);
  for (const prefix of input.wanted) {
    if (!tunnelled.some((r) => r.version === prefix.version && covers(prefix, r))) {
      notes.push(`--route ${formatPrefix(prefix)} skipped: the relay does not advertise it`);
    }
  }
  const perFamily = new Map<IpVersion, IpPrefix[]>([[4, []], [6, []]]);
  for (const version of [4, 6] as const) {
    const mine = tunnelled.filter((r) => r.version === version);
    if (mine.length === 0) continue;
    if (!input.assigned.some((a) => a.version === version)) {
      notes.push(`IPv${version} routes skipped: the relay assigned no IPv${version} address`);
      continue;
    }
    perFamily.set(version, mine);
    if (mine.some((r) => r.prefixLength === 0)) full.push(version);
  }

  const dnsPerFamily = new Map<IpVersion, Uint8Array[]>([[4, []], [6, []]]);
  for (const raw of input.dnsServers) {
    const address = checkedAddress(raw, "DNS server");
    const version = ipVersionOf(address)!;
    if (!input.assigned.some((a) => a.version === version)) {
      notes.push(
        `DNS server ${formatIp(address)} not used: the relay assigned no IPv${version} address`,
      );
      continue;
    }
    if (dnsServers.some((d) => ipEquals(d, address))) continue;
    dnsServers.push(address);
    dnsPerFamily.get(version)!.push(address);
  }

  for (const version of [4, 6] as const) {
    for (const prefix of perFamily.get(version)!) {
      routes.push({ destination: prefix, type: "tunnel" });
    }
    for (const server of dnsPerFamily.get(version)!) {
      if (perFamily.get(version)!.some((r) => prefixContains(r, server))) continue;
      routes.push({ destination: hostPrefix(server), type: "tunnel" });
      notes.push(
        `added a route to DNS server ${formatIp(server)}: the tunnel's routes do not cover it`,
      );
    }
  }
  if (blockOthers && full.length > 0) {
    for (const version of [4, 6] as const) {
      if (full.includes(version)) continue;
      blocked.push(version);
      routes.push({
        destination: createPrefix(new Uint8Array(version === 4 ? 4 : 16), 0),
        type: "unreachable",
      });
    }
  }

  // IPv4 first, then IPv6 (a stable sort keeps each family's order).
  routes.sort((a, b) => a.destination.version - b.destination.version);
  for (const version of [4, 6] as const) {
    const inTable = routes.filter((r) => r.destination.version === version);
    if (inTable.length === 0) continue;
    for (const server of dnsPerFamily.get(version)!) {
      rules.push({
        purpose: "dns",
        family: version,
        priority,
        table,
        destination: hostPrefix(server),
      });
    }
    const seen = new Set<string>();
    for (const raw of input.relayAddresses) {
      const relay = checkedAddress(raw, "relay address");
      if (ipVersionOf(relay) !== version || seen.has(formatIp(relay))) continue;
      seen.add(formatIp(relay));
      if (!inTable.some((r) => prefixContains(r.destination, relay))) continue;
      rules.push({
        purpose: "relay",
        family: version,
        priority: priority + 1,
        table: MAIN_TABLE,
        destination: hostPrefix(relay),
      });
    }
    rules.push({
      purpose: "suppress",
      family: version,
      priority: priority + 2,
      table: MAIN_TABLE,
      suppressPrefixLength: 0,
    });
    rules.push({
      purpose: "unmarked",
      family: version,
      priority: priority + 3,
      table,
      fwmark,
      ...(fwmask === 0xffffffff ? {} : { fwmask }),
      invert: true,
    });
  }
  return {
    table,
    fwmark,
    fwmask,
    priorities: { first: priority, last: priority + RULE_PRIORITY_COUNT - 1 },
    routes,
    rules,
    full,
    blocked,
    dnsServers,
    notes,
  };
}

/**
 * Whether a rule found in the kernel (after a crash, say) belongs to a
 * client using `options`: its priority is in the plan's range and it looks
 * up the client's table or main. A later start deletes such rules before
 * installing its own.
 */
export function isPlannedRule(
  rule: { readonly priority: number; readonly table: number },
  options: Pick<FullTunnelOptions, "priority" | "table">,
): boolean {
  return rule.priority >= options.priority &&
    rule.priority < options.priority + RULE_PRIORITY_COUNT &&
    (rule.table === options.table || rule.table === MAIN_TABLE);
}

function covers(outer: IpPrefix, inner: IpPrefix): boolean {
  return outer.prefixLength <= inner.prefixLength && prefixContains(outer, inner.address);
}

function checkedAddress(raw: Uint8Array, what: string): Uint8Array {
  const address = unmapIpv4(raw);
  if (ipVersionOf(address) === undefined) {
    throw new RangeError(`Cannot plan routing: ${what} has ${raw.length} bytes, not 4 or 16`);
  }
  return address;
}

/** What changes between two plans of the same table (see {@linkcode diffRoutingPlans}). */
export interface RoutingChange {
  readonly addRoutes: readonly PlannedRoute[];
  readonly deleteRoutes: readonly PlannedRoute[];
  readonly addRules: readonly PlannedRule[];
  readonly deleteRules: readonly PlannedRule[];
}

function routeKey(route: PlannedRoute): string {
  return `${route.type} ${formatPrefix(route.destination)}`;
}

function ruleKey(rule: PlannedRule): string {
  return [
    rule.family,
    rule.priority,
    rule.table,
    rule.destination ? formatPrefix(rule.destination) : "",
    rule.fwmark ?? "",
    rule.fwmask ?? "",
    rule.invert ? "not" : "",
    rule.suppressPrefixLength ?? "",
  ].join(" ");
}

/**
 * The routes and rules to add and delete to go from plan `from` to plan
 * `to` without a moment in between where neither is in place (new DNS
 * servers, new advertised routes or another relay address on reconnect):
 * the caller adds first, then deletes. Both plans must use the same table,
 * priorities and mark; throws a `RangeError` otherwise.
 */
export function diffRoutingPlans(from: RoutingPlan, to: RoutingPlan): RoutingChange {
  if (
    from.table !== to.table || from.fwmark !== to.fwmark || from.fwmask !== to.fwmask ||
    from.priorities.first !== to.priorities.first
  ) {
    throw new RangeError(
      "Cannot change routing in place: the table, rule priorities or mark differ",
    );
  }
  const missing = <T>(items: readonly T[], others: readonly T[], key: (item: T) => string) => {
    const keys = new Set(others.map(key));
    return items.filter((item) => !keys.has(key(item)));
  };
  return {
    addRoutes: missing(to.routes, from.routes, routeKey),
    deleteRoutes: missing(from.routes, to.routes, routeKey),
    addRules: missing(to.rules, from.rules, ruleKey),
    deleteRules: missing(from.rules, to.rules, ruleKey),
  };
}
