/**
 * Policy routing over rtnetlink, the way wg-quick sets up a full tunnel with
 * `ip rule` and `ip route ... table N`, without running `ip`:
 *
 * - FIB rules of either family: add, delete, list ({@linkcode addRule},
 *   {@linkcode deleteRule}, {@linkcode listRules}), and
 *   {@linkcode deleteRulesWhere} to remove what a killed client left, found
 *   by its priorities and tables;
 * - routes in a table of the client's own, table ids above 255 included
 *   ({@linkcode addTableRoute}, {@linkcode listTableRoutes},
 *   {@linkcode flushTable});
 * - a firewall mark on this process's UDP socket bound to a port, so that
 *   the QUIC packets to the relay can be routed by the main table
 *   ({@linkcode markUdpSocket}, `SO_MARK`, socket(7)).
 *
 * Each call is synchronous (see `netlink.ts`) and needs `--allow-ffi`;
 * changes need CAP_NET_ADMIN. Failures throw a {@linkcode LibcError} such as
 * `Cannot add rule "32763: not from all fwmark 0xcabc lookup 51900 (IPv4)": File exists (EEXIST)`.
 *
 * @module
 */

import {
  encodeRouteDumpRequest,
  encodeRuleDumpRequest,
  encodeRuleRequest,
  encodeTableRouteRequest,
  type FibRule,
  formatRule,
  formatTableRoute,
  type IpFamily,
  type ListedRoute,
  parseRouteMessage,
  parseRuleMessage,
  type RouteType,
  RTM_NEWRULE,
  type TableRoute,
} from "./_rule_struct.ts";
import { RTM_NEWROUTE } from "./_struct.ts";
import { check, libc, LibcError } from "./libc.ts";
import { dump, linkIndex, nextSequence, talk } from "./netlink.ts";
import { findUdpSocket } from "./udp_buffers.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";

export type { FibRule, IpFamily, ListedRoute, RouteType, TableRoute };
export { formatRule, formatTableRoute, LibcError };

/** Adds a FIB rule (`ip rule add ...`). Throws EEXIST when an identical rule exists. */
export function addRule(rule: FibRule): void {
  const action = `Cannot add rule "${formatRule(rule)}"`;
  const seq = nextSequence();
  talk(encodeRuleRequest(seq, "add", rule), seq, action);
}

/**
 * Deletes the first FIB rule that matches every field given (`ip rule del
 * ...`). Throws ENOENT when there is none.
 */
export function deleteRule(rule: FibRule): void {
  const action = `Cannot delete rule "${formatRule(rule)}"`;
  const seq = nextSequence();
  talk(encodeRuleRequest(seq, "delete", rule), seq, action);
}

/**
 * The FIB rules of `family`, or of both families (IPv4 first), in the
 * kernel's order (by priority), as `ip rule show` lists them.
 */
export function listRules(family?: IpFamily): FibRule[] {
  const rules: FibRule[] = [];
  for (const f of family === undefined ? [4, 6] as const : [family]) {
    const seq = nextSequence();
    const action = `Cannot list IPv${f} rules`;
    for (const message of dump(encodeRuleDumpRequest(seq, f), seq, action)) {
      if (message.type === RTM_NEWRULE) rules.push(parseRuleMessage(message));
    }
  }
  return rules;
}

/**
 * Deletes every rule of either family for which `matches` returns true and
 * returns them: how a client removes what an instance killed by SIGKILL
 * left, identified by the priorities and tables it uses.
 */
export function deleteRulesWhere(matches: (rule: FibRule) => boolean): FibRule[] {
  const deleted: FibRule[] = [];
  for (const rule of listRules()) {
    if (!matches(rule)) continue;
    // Delete exactly what was listed; the kernel matches every field given.
    const { action: _action, ...selectors } = rule;
    deleteRule(selectors);
    deleted.push(rule);
  }
  return deleted;
}

/** A route to add: a {@linkcode TableRoute} whose interface is named rather than numbered. */
export interface TableRouteSpec extends Omit<TableRoute, "oif"> {
  /** Output interface name; required for `unicast` routes. */
  readonly device?: string;
}

function resolve(route: TableRouteSpec, action: string): TableRoute {
  const { device, ...rest } = route;
  if (device === undefined) return rest;
  try {
    return { ...rest, oif: linkIndex(device) };
  } catch (error) {
    if (error instanceof LibcError) throw new LibcError(action, error.errno);
    throw error;
  }
}

function describe(route: TableRouteSpec): string {
  const text = formatTableRoute(route);
  return route.device === undefined ? text : text.replace(" table ", ` dev ${route.device} table `);
}

/**
 * Adds a route to table `route.table` (`ip route add [unreachable] P [dev
 * X] table N`). Throws EEXIST when the route exists in that table; routes
 * of other tables (the main table's default routes of any metric) do not
 * collide.
 */
export function addTableRoute(route: TableRouteSpec): void {
  const action = `Cannot add route ${describe(route)}`;
  const seq = nextSequence();
  talk(encodeTableRouteRequest(seq, "add", resolve(route, action)), seq, action);
}

/** Deletes a route from its table (`ip route del ... table N`). Throws ESRCH when absent. */
export function deleteTableRoute(route: TableRouteSpec): void {
  const action = `Cannot delete route ${describe(route)}`;
  const seq = nextSequence();
  talk(encodeTableRouteRequest(seq, "delete", resolve(route, action)), seq, action);
}

/** The routes of table `table` (`ip route show table N`), IPv4 first unless `family` is given. */
export function listTableRoutes(table: number, family?: IpFamily): ListedRoute[] {
  const routes: ListedRoute[] = [];
  for (const f of family === undefined ? [4, 6] as const : [family]) {
    const seq = nextSequence();
    const action = `Cannot list IPv${f} routes of table ${table}`;
    for (const message of dump(encodeRouteDumpRequest(seq, f), seq, action)) {
      if (message.type !== RTM_NEWROUTE) continue;
      const route = parseRouteMessage(message);
      if (route.table === table) routes.push(route);
    }
  }
  return routes;
}

/**
 * Deletes every route of table `table`, both families (`ip route flush
 * table N`), and returns how many were deleted. A table of the client's
 * own holds nothing else, so this is also the cleanup after a SIGKILL.
 */
export function flushTable(table: number): number {
  let deleted = 0;
  for (const route of listTableRoutes(table)) {
    const request: TableRoute = {
      destination: route.destination,
      table: route.table,
      // Type 0 on delete matches a route of any type.
      type: route.type ?? "unicast",
      ...(route.oif === undefined ? {} : { oif: route.oif }),
      ...(route.metric === undefined ? {} : { metric: route.metric }),
    };
    const action = `Cannot delete route ${formatTableRoute(request)}`;
    const seq = nextSequence();
    try {
      talk(encodeTableRouteRequest(seq, "delete", request), seq, action);
      deleted++;
    } catch (error) {
      // Gone meanwhile (its interface was deleted, say): what was wanted.
      if (!(error instanceof LibcError && error.code === "ESRCH")) throw error;
    }
  }
  return deleted;
}

const SOL_SOCKET = 1;
/** `SO_MARK` (asm-generic/socket.h): the firewall mark of every packet the socket sends. */
const SO_MARK = 36;

/** What {@linkcode markUdpSocket} did. */
export interface MarkedSocket {
  /** The socket's file descriptor. */
  readonly fd: number;
  /** The mark read back from the socket. */
  readonly mark: number;
}

/**
 * Sets firewall mark `mark` on this process's UDP socket bound to `port`
 * (a Deno QUIC endpoint's, found by port as for its buffers): every packet
 * it sends then carries the mark, which FIB rules (`fwmark`) and nftables
 * (`meta mark`) match. Needs CAP_NET_ADMIN. Throws an Error when no socket
 * is bound to `port`, a {@linkcode LibcError} when the kernel refuses.
 */
export function markUdpSocket(port: number, mark: number): MarkedSocket {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`Cannot mark UDP socket: port ${port} is outside 1..65535`);
  }
  if (!Number.isInteger(mark) || mark < 1 || mark > 0xffffffff) {
    throw new RangeError(`Cannot mark UDP socket: mark ${mark} is outside 1..2^32-1`);
  }
  const fd = findUdpSocket(port);
  if (fd === undefined) {
    throw new Error(
      `Cannot mark UDP socket: no UDP socket of this process is bound to port ${port}`,
    );
  }
  const action = `Cannot set mark 0x${mark.toString(16)} on the UDP socket of port ${port}`;
  check(libc().setsockopt(fd, SOL_SOCKET, SO_MARK, new Uint32Array([mark]), 4), action);
  return { fd, mark: socketMark(fd) };
}

/** The firewall mark of socket `fd` (`getsockopt(SO_MARK)`). */
export function socketMark(fd: number): number {
  const value = new Uint32Array(1);
  const length = new Uint32Array([4]);
  check(
    libc().getsockopt(fd, SOL_SOCKET, SO_MARK, value, length),
    `Cannot read the mark of socket ${fd}`,
  );
  return value[0];
}

/** Re-exported for callers that build rules. */
export type { IpPrefix };
