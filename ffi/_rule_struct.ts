/**
 * Byte layouts for policy routing over rtnetlink, as pure functions (no
 * FFI, testable without root): FIB rules (`struct fib_rule_hdr` and `FRA_*`
 * attributes, linux/fib_rules.h) and routes in a table of their own
 * (`struct rtmsg` with `RTA_TABLE`, linux/rtnetlink.h), the requests that
 * `ip rule add/del`, `ip rule show`, `ip route add/del ... table N` and
 * `ip route show table N` send, and parsers for the kernel's dump replies.
 *
 * Tables above 255 do not fit the 8-bit table field of the headers: as
 * iproute2 does, the header then says `RT_TABLE_UNSPEC` and the 32-bit
 * `FRA_TABLE` / `RTA_TABLE` attribute carries the id (it is sent for every
 * table, and read back in preference to the header).
 *
 * @module
 */

import { formatPrefix, type IpPrefix } from "../shared/ip/ip_address.ts";
import { checkPrefix } from "./_address.ts";
import {
  AF_INET,
  AF_INET6,
  encodeNetlinkMessage,
  encodeRtattr,
  encodeRtattrU32,
  encodeRtmsg,
  HOST_LITTLE_ENDIAN,
  type NetlinkMessage,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REQUEST,
  parseRtattrs,
  RT_SCOPE_LINK,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RTA_DST,
  RTA_OIF,
  RTM_DELROUTE,
  RTM_NEWROUTE,
  RTMSG_SIZE,
  RTN_UNICAST,
  RTPROT_BOOT,
  StructError,
} from "./_struct.ts";

/** rtnetlink message type: add a FIB rule. */
export const RTM_NEWRULE = 32;
/** Delete a FIB rule. */
export const RTM_DELRULE = 33;
/** Dump FIB rules. */
export const RTM_GETRULE = 34;
/** Dump routes. */
export const RTM_GETROUTE = 26;
/** Request flag: dump every object (`NLM_F_ROOT | NLM_F_MATCH`). */
export const NLM_F_DUMP = 0x300;

/** `sizeof(struct fib_rule_hdr)`: family, dst_len, src_len, tos, table, res1, res2, action (u8 each), flags u32. */
export const FIB_RULE_HDR_SIZE = 12;
/** Rule attribute: destination prefix (`to`). */
export const FRA_DST = 1;
/** Rule attribute: source prefix (`from`). */
export const FRA_SRC = 2;
/** Rule attribute: priority (u32), the order in which rules are tried. */
export const FRA_PRIORITY = 6;
/** Rule attribute: firewall mark to match (u32). */
export const FRA_FWMARK = 10;
/** Rule attribute: ignore lookup results with a prefix length <= this (u32; -1 = off). */
export const FRA_SUPPRESS_PREFIXLEN = 14;
/** Rule attribute: 32-bit table id. */
export const FRA_TABLE = 15;
/** Rule attribute: mask for {@linkcode FRA_FWMARK} (u32). */
export const FRA_FWMASK = 16;
/** Rule attribute: who installed the rule (u8, `RTPROT_*` values). */
export const FRA_PROTOCOL = 21;
/** Rule flag: match when the selectors do not (`ip rule add not ...`). */
export const FIB_RULE_INVERT = 0x2;
/** Rule action: look up a table. */
export const FR_ACT_TO_TBL = 1;
/** Route attribute: metric (u32). */
export const RTA_PRIORITY = 6;
/** Route attribute: 32-bit table id. */
export const RTA_TABLE = 15;
/** Routing table: none given (the 32-bit attribute carries the id). */
export const RT_TABLE_UNSPEC = 0;
/** Routing table: local (addresses of this host). */
export const RT_TABLE_LOCAL = 255;
/** Route type: packets are answered with ICMP unreachable (`ip route add unreachable`). */
export const RTN_UNREACHABLE = 7;
/** Route type: packets are dropped silently. */
export const RTN_BLACKHOLE = 6;
/** Largest table id (`ip route` accepts 1..2^32-1). */
export const MAX_TABLE_ID = 0xffffffff;

/** IP version of a rule or route. */
export type IpFamily = 4 | 6;

/** One FIB rule (`ip rule`), as added, deleted and listed. */
export interface FibRule {
  /** 4 or 6: IPv4 and IPv6 have separate rule lists. */
  readonly family: IpFamily;
  /** Priority 0..2^32-1 (`ip rule add priority N`); lower is tried first. */
  readonly priority: number;
  /** The table looked up when the rule matches (`lookup N`). */
  readonly table: number;
  /** Match packets with this firewall mark (`fwmark M`). */
  readonly fwmark?: number;
  /** Mask for {@linkcode fwmark}; the kernel uses 0xffffffff when a mark has none. */
  readonly fwmask?: number;
  /** Match what the selectors do not match (`not`). */
  readonly invert?: boolean;
  /** Ignore routes of this prefix length or shorter found in the table (`suppress_prefixlength N`). */
  readonly suppressPrefixLength?: number;
  /** Match this destination prefix (`to P`). */
  readonly destination?: IpPrefix;
  /** Match this source prefix (`from P`). */
  readonly source?: IpPrefix;
  /** Who installed the rule (`protocol N`, an `RTPROT_*` value); absent or 0: unspecified. */
  readonly protocol?: number;
  /** `FR_ACT_*` action; listed rules only ({@linkcode FR_ACT_TO_TBL} for a lookup). */
  readonly action?: number;
}

/** Route types this module handles. */
export type RouteType = "unicast" | "unreachable" | "blackhole";

/** One route in a given table (`ip route add ... table N`). */
export interface TableRoute {
  /** Destination prefix; length 0 is the default route. */
  readonly destination: IpPrefix;
  /** Table id 1..2^32-1. */
  readonly table: number;
  /** Route type; `unicast` routes need {@linkcode oif}. */
  readonly type: RouteType;
  /** Output interface index (unicast routes; listed unreachable IPv6 routes show `lo`). */
  readonly oif?: number;
  /** Metric (`metric N`). */
  readonly metric?: number;
  /** `RTPROT_*` origin; listed routes only. */
  readonly protocol?: number;
}

const ROUTE_TYPES: Record<RouteType, number> = {
  unicast: RTN_UNICAST,
  unreachable: RTN_UNREACHABLE,
  blackhole: RTN_BLACKHOLE,
};

function familyNumber(family: IpFamily): number {
  return family === 4 ? AF_INET : AF_INET6;
}

function familyOf(number: number, what: string): IpFamily {
  if (number === AF_INET) return 4;
  if (number === AF_INET6) return 6;
  throw new StructError(`Cannot parse ${what}: address family ${number} is neither 2 nor 10`);
}

function checkU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new StructError(`Cannot pack ${what} ${value}: not a u32`);
  }
}

function checkTable(table: number, what: string): void {
  if (!Number.isInteger(table) || table < 1 || table > MAX_TABLE_ID) {
    throw new StructError(`Cannot pack ${what}: table ${table} is outside 1..4294967295`);
  }
}

function checkFamilyPrefix(family: IpFamily, prefix: IpPrefix, what: string): void {
  checkPrefix(prefix, `Cannot pack ${what}`);
  if (prefix.version !== family) {
    throw new StructError(
      `Cannot pack ${what}: ${formatPrefix(prefix)} is not an IPv${family} prefix`,
    );
  }
}

/** Formats a rule the way `ip rule` prints it, such as `32763: not from all fwmark 0xcabc lookup 51900`. */
export function formatRule(rule: FibRule): string {
  const parts = [`${rule.priority}:`];
  if (rule.invert) parts.push("not");
  parts.push("from", rule.source ? formatPrefix(rule.source) : "all");
  if (rule.destination) parts.push("to", formatPrefix(rule.destination));
  if (rule.fwmark !== undefined) {
    const mask = rule.fwmask ?? 0xffffffff;
    parts.push(
      "fwmark",
      `0x${rule.fwmark.toString(16)}${mask === 0xffffffff ? "" : `/0x${mask.toString(16)}`}`,
    );
  }
  parts.push("lookup", rule.table === RT_TABLE_MAIN ? "main" : String(rule.table));
  if (rule.suppressPrefixLength !== undefined) {
    parts.push("suppress_prefixlength", String(rule.suppressPrefixLength));
  }
  if (rule.protocol) parts.push("proto", String(rule.protocol));
  return `${parts.join(" ")} (IPv${rule.family})`;
}

/** Formats a route the way `ip route` prints it, such as `unreachable default table 51900`. */
export function formatTableRoute(route: TableRoute): string {
  const destination = route.destination.prefixLength === 0
    ? "default"
    : formatPrefix(route.destination);
  const parts = route.type === "unicast" ? [destination] : [route.type, destination];
  if (route.oif !== undefined && route.type === "unicast") parts.push("oif", String(route.oif));
  parts.push("table", String(route.table));
  if (route.metric !== undefined) parts.push("metric", String(route.metric));
  return parts.join(" ");
}

/**
 * `RTM_NEWRULE` (`ip rule add`, failing with EEXIST when an identical rule
 * exists) or `RTM_DELRULE` (`ip rule del`: the kernel deletes the first rule
 * that matches every attribute given).
 */
export function encodeRuleRequest(
  seq: number,
  operation: "add" | "delete",
  rule: FibRule,
): Uint8Array<ArrayBuffer> {
  const what = `rule ${formatRuleSafely(rule)}`;
  if (rule.family !== 4 && rule.family !== 6) {
    throw new StructError(`Cannot pack ${what}: IP version ${rule.family} is neither 4 nor 6`);
  }
  checkU32(rule.priority, "rule priority");
  checkTable(rule.table, what);
  const header = new Uint8Array(FIB_RULE_HDR_SIZE);
  header[0] = familyNumber(rule.family);
  header[1] = rule.destination?.prefixLength ?? 0;
  header[2] = rule.source?.prefixLength ?? 0;
  header[4] = rule.table < 256 ? rule.table : RT_TABLE_UNSPEC;
  header[7] = FR_ACT_TO_TBL;
  new DataView(header.buffer).setUint32(
    8,
    rule.invert ? FIB_RULE_INVERT : 0,
    HOST_LITTLE_ENDIAN,
  );
  const attrs = [
    encodeRtattrU32(FRA_PRIORITY, rule.priority),
    encodeRtattrU32(FRA_TABLE, rule.table),
  ];
  if (rule.destination) {
    checkFamilyPrefix(rule.family, rule.destination, what);
    attrs.push(encodeRtattr(FRA_DST, rule.destination.address));
  }
  if (rule.source) {
    checkFamilyPrefix(rule.family, rule.source, what);
    attrs.push(encodeRtattr(FRA_SRC, rule.source.address));
  }
  if (rule.fwmark !== undefined) {
    checkU32(rule.fwmark, "rule fwmark");
    attrs.push(encodeRtattrU32(FRA_FWMARK, rule.fwmark));
  }
  if (rule.fwmask !== undefined) {
    checkU32(rule.fwmask, "rule fwmask");
    attrs.push(encodeRtattrU32(FRA_FWMASK, rule.fwmask));
  }
  if (rule.suppressPrefixLength !== undefined) {
    const bits = rule.family === 4 ? 32 : 128;
    const length = rule.suppressPrefixLength;
    if (!Number.isInteger(length) || length < 0 || length > bits) {
      throw new StructError(
        `Cannot pack ${what}: suppress_prefixlength ${length} is outside 0..${bits}`,
      );
    }
    attrs.push(encodeRtattrU32(FRA_SUPPRESS_PREFIXLEN, length));
  }
  if (rule.protocol) {
    if (!Number.isInteger(rule.protocol) || rule.protocol < 0 || rule.protocol > 255) {
      throw new StructError(`Cannot pack ${what}: protocol ${rule.protocol} is not a u8`);
    }
    attrs.push(encodeRtattr(FRA_PROTOCOL, new Uint8Array([rule.protocol])));
  }
  const add = operation === "add";
  return encodeNetlinkMessage(
    {
      type: add ? RTM_NEWRULE : RTM_DELRULE,
      flags: add
        ? NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        : NLM_F_REQUEST | NLM_F_ACK,
      seq,
      pid: 0,
    },
    [header, ...attrs],
  );
}

function formatRuleSafely(rule: FibRule): string {
  try {
    return `"${formatRule(rule)}"`;
  } catch {
    return `with priority ${rule.priority}`;
  }
}

/** `RTM_GETRULE` dump of one family's rules (`ip -4 rule show` / `ip -6 rule show`). */
export function encodeRuleDumpRequest(seq: number, family: IpFamily): Uint8Array<ArrayBuffer> {
  const header = new Uint8Array(FIB_RULE_HDR_SIZE);
  header[0] = familyNumber(family);
  return encodeNetlinkMessage(
    { type: RTM_GETRULE, flags: NLM_F_REQUEST | NLM_F_DUMP, seq, pid: 0 },
    [header],
  );
}

function readU32(payload: Uint8Array, what: string): number {
  if (payload.length < 4) {
    throw new StructError(`Cannot parse ${what}: attribute has ${payload.length} bytes, need 4`);
  }
  return new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0, HOST_LITTLE_ENDIAN);
}

function readPrefix(
  family: IpFamily,
  payload: Uint8Array,
  prefixLength: number,
  what: string,
): IpPrefix {
  const bytes = family === 4 ? 4 : 16;
  if (payload.length !== bytes) {
    throw new StructError(
      `Cannot parse ${what}: IPv${family} address attribute has ${payload.length} bytes, expected ${bytes}`,
    );
  }
  if (prefixLength > bytes * 8) {
    throw new StructError(
      `Cannot parse ${what}: prefix length ${prefixLength} exceeds ${bytes * 8} for IPv${family}`,
    );
  }
  return { version: family, address: payload.slice(), prefixLength };
}

/**
 * Parses one `RTM_NEWRULE` message of a rule dump. Throws a
 * {@linkcode StructError} on a short header or a malformed attribute.
 */
export function parseRuleMessage(message: NetlinkMessage): FibRule {
  const what = "rule";
  if (message.type !== RTM_NEWRULE) {
    throw new StructError(`Cannot parse rule: message type ${message.type} is not ${RTM_NEWRULE}`);
  }
  const { payload } = message;
  if (payload.length < FIB_RULE_HDR_SIZE) {
    throw new StructError(
      `Cannot parse rule: ${payload.length} bytes, shorter than the ${FIB_RULE_HDR_SIZE}-byte header`,
    );
  }
  const family = familyOf(payload[0], what);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
  const flags = view.getUint32(8, HOST_LITTLE_ENDIAN);
  let table = payload[4];
  let priority = 0;
  const rule: {
    -readonly [K in keyof FibRule]: FibRule[K];
  } = { family, priority, table, action: payload[7] };
  if (flags & FIB_RULE_INVERT) rule.invert = true;
  for (const attr of parseRtattrs(payload.subarray(FIB_RULE_HDR_SIZE))) {
    switch (attr.type) {
      case FRA_PRIORITY:
        priority = readU32(attr.payload, what);
        break;
      case FRA_TABLE:
        table = readU32(attr.payload, what);
        break;
      case FRA_FWMARK:
        rule.fwmark = readU32(attr.payload, what);
        break;
      case FRA_FWMASK:
        rule.fwmask = readU32(attr.payload, what);
        break;
      case FRA_SUPPRESS_PREFIXLEN: {
        const value = readU32(attr.payload, what);
        if (value !== 0xffffffff) rule.suppressPrefixLength = value;
        break;
      }
      case FRA_DST:
        rule.destination = readPrefix(family, attr.payload, payload[1], what);
        break;
      case FRA_SRC:
        rule.source = readPrefix(family, attr.payload, payload[2], what);
        break;
      case FRA_PROTOCOL:
        if (attr.payload.length < 1) throw new StructError("Cannot parse rule: empty protocol");
        if (attr.payload[0] !== 0) rule.protocol = attr.payload[0];
        break;
    }
  }
  rule.priority = priority;
  rule.table = table;
  return rule;
}

/**
 * `RTM_NEWROUTE` into `route.table` (`ip route add [unreachable|blackhole]
 * P [dev X] table N [metric M]`, failing with EEXIST when present) or
 * `RTM_DELROUTE` (`ip route del`: type, interface and metric are matched
 * when given).
 */
export function encodeTableRouteRequest(
  seq: number,
  operation: "add" | "delete",
  route: TableRoute,
): Uint8Array<ArrayBuffer> {
  const what = `route ${formatTableRouteSafely(route)}`;
  checkPrefix(route.destination, `Cannot pack ${what}`);
  checkTable(route.table, what);
  const type = ROUTE_TYPES[route.type];
  if (type === undefined) throw new StructError(`Cannot pack ${what}: unknown type ${route.type}`);
  if (operation === "add" && route.type === "unicast" && route.oif === undefined) {
    throw new StructError(`Cannot pack ${what}: a unicast route needs an output interface`);
  }
  const add = operation === "add";
  const family = route.destination.version;
  const attrs = route.destination.prefixLength > 0
    ? [encodeRtattr(RTA_DST, route.destination.address)]
    : [];
  attrs.push(encodeRtattrU32(RTA_TABLE, route.table));
  if (route.oif !== undefined) attrs.push(encodeRtattrU32(RTA_OIF, route.oif));
  if (route.metric !== undefined) {
    checkU32(route.metric, "route metric");
    attrs.push(encodeRtattrU32(RTA_PRIORITY, route.metric));
  }
  // As iproute2: scope link for an IPv4 route through a device, universe otherwise;
  // "nowhere" on delete matches any scope.
  const scope = !add
    ? RT_SCOPE_NOWHERE
    : route.type === "unicast" && family === 4
    ? RT_SCOPE_LINK
    : RT_SCOPE_UNIVERSE;
  return encodeNetlinkMessage(
    {
      type: add ? RTM_NEWROUTE : RTM_DELROUTE,
      flags: add
        ? NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        : NLM_F_REQUEST | NLM_F_ACK,
      seq,
      pid: 0,
    },
    [
      encodeRtmsg({
        family: familyNumber(family),
        dstLength: route.destination.prefixLength,
        srcLength: 0,
        tos: 0,
        table: route.table < 256 ? route.table : RT_TABLE_UNSPEC,
        protocol: add ? RTPROT_BOOT : 0,
        scope,
        type,
        flags: 0,
      }),
      ...attrs,
    ],
  );
}

function formatTableRouteSafely(route: TableRoute): string {
  try {
    return `"${formatTableRoute(route)}"`;
  } catch {
    return `in table ${route.table}`;
  }
}

/** `RTM_GETROUTE` dump of one family's routes in every table (`ip -4 route show table all`). */
export function encodeRouteDumpRequest(seq: number, family: IpFamily): Uint8Array<ArrayBuffer> {
  return encodeNetlinkMessage(
    { type: RTM_GETROUTE, flags: NLM_F_REQUEST | NLM_F_DUMP, seq, pid: 0 },
    [
      encodeRtmsg({
        family: familyNumber(family),
        dstLength: 0,
        srcLength: 0,
        tos: 0,
        table: 0,
        protocol: 0,
        scope: 0,
        type: 0,
        flags: 0,
      }),
    ],
  );
}

/** A route of a dump: the fields of {@linkcode TableRoute}, with any kernel route type. */
export interface ListedRoute extends Omit<TableRoute, "type"> {
  /** `RTN_*` number of the route's type. */
  readonly typeNumber: number;
  /** The route's type when this module names it. */
  readonly type: RouteType | undefined;
}

/**
 * Parses one `RTM_NEWROUTE` message of a route dump. Throws a
 * {@linkcode StructError} on a short header or a malformed attribute.
 */
export function parseRouteMessage(message: NetlinkMessage): ListedRoute {
  const what = "route";
  if (message.type !== RTM_NEWROUTE) {
    throw new StructError(
      `Cannot parse route: message type ${message.type} is not ${RTM_NEWROUTE}`,
    );
  }
  const { payload } = message;
  if (payload.length < RTMSG_SIZE) {
    throw new StructError(
      `Cannot parse route: ${payload.length} bytes, shorter than the ${RTMSG_SIZE}-byte header`,
    );
  }
  const family = familyOf(payload[0], what);
  const dstLength = payload[1];
  let table = payload[4];
  let destination: IpPrefix = {
    version: family,
    address: new Uint8Array(family === 4 ? 4 : 16),
    prefixLength: 0,
  };
  if (dstLength > (family === 4 ? 32 : 128)) {
    throw new StructError(
      `Cannot parse route: prefix length ${dstLength} exceeds ${
        family === 4 ? 32 : 128
      } for IPv${family}`,
    );
  }
  let oif: number | undefined;
  let metric: number | undefined;
  for (const attr of parseRtattrs(payload.subarray(RTMSG_SIZE))) {
    if (attr.type === RTA_DST) destination = readPrefix(family, attr.payload, dstLength, what);
    else if (attr.type === RTA_TABLE) table = readU32(attr.payload, what);
    else if (attr.type === RTA_OIF) oif = readU32(attr.payload, what);
    else if (attr.type === RTA_PRIORITY) metric = readU32(attr.payload, what);
  }
  const typeNumber = payload[7];
  const type = (Object.keys(ROUTE_TYPES) as RouteType[]).find((name) =>
    ROUTE_TYPES[name] === typeNumber
  );
  return {
    destination,
    table,
    typeNumber,
    type,
    protocol: payload[5],
    ...(oif === undefined ? {} : { oif }),
    ...(metric === undefined ? {} : { metric }),
  };
}
