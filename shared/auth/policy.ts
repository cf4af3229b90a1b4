/**
 * What one user may do through the relay, and the routes a session gets:
 * the intersection of the relay's routes, the user's policy and the
 * request's scope (RFC 9484 §4.6 target and ipproto), advertised in
 * ROUTE_ADVERTISEMENT (§4.7.3) and enforced on every packet by
 * `checkFromClient` (§7).
 *
 * Pure: no I/O.
 *
 * @module
 */

import type { IpAddressRange, IpPrefix } from "../ip/ip_address.ts";
import { compareIp } from "../ip/ip_address.ts";
import type { ConnectIpScope } from "../masque/connect_ip_request.ts";
import { prefixesToRanges, routesWithin } from "../tunnel/routes.ts";

/** Sessions a user may hold at once when its entry does not say. */
export const DEFAULT_USER_MAX_SESSIONS = 4;
/** The most sessions a users file may give one user. */
export const MAX_USER_SESSIONS = 100_000;

/** One user's policy, as the users file gives it. */
export interface UserPolicy {
  /** Prefixes the user may reach; `undefined`: every route of the relay. */
  readonly routes?: readonly IpPrefix[];
  /** IP protocol numbers (1..255) the user may send; `undefined`: any. ICMP is always allowed. */
  readonly protocols?: readonly number[];
  /** Sessions at once across all the user's connections. */
  readonly maxSessions: number;
  /** Bits per second in each direction, over all the user's sessions; `undefined`: no limit. */
  readonly rateBitsPerSecond?: number;
  /** The IPv4 address the user's sessions get (from the pool, reserved for the user). */
  readonly address4?: Uint8Array;
  /** The IPv6 address, likewise. */
  readonly address6?: Uint8Array;
}

/** A policy with no restriction beyond the session limit. */
export const OPEN_POLICY: UserPolicy = Object.freeze({
  maxSessions: DEFAULT_USER_MAX_SESSIONS,
});

/**
 * The IP protocols a session may use: the request's `ipproto` (RFC 9484
 * §4.6) within the user's `protocols`. `[0]` means any; `[]` means the
 * request asks for a protocol the user may not use.
 */
export function sessionProtocols(
  policy: Pick<UserPolicy, "protocols">,
  scope: Pick<ConnectIpScope, "ipProtocol">,
): number[] {
  const allowed = policy.protocols;
  if (scope.ipProtocol === "any") return allowed === undefined ? [0] : [...allowed].sort(byNumber);
  if (allowed === undefined || allowed.includes(scope.ipProtocol)) return [scope.ipProtocol];
  return [];
}

function byNumber(a: number, b: number): number {
  return a - b;
}

/**
 * The routes of one session, as ROUTE_ADVERTISEMENT ranges sorted as
 * RFC 9484 §4.7.3 asks (IP version, then IP protocol, then address; no
 * overlap within one version and protocol): the `relayRoutes` (already of
 * the families the relay assigns), within the user's `routes`, within the
 * request's target, for each protocol of {@linkcode sessionProtocols}.
 * Empty when nothing is left: the request asks for what the user may not
 * reach.
 */
export function sessionRoutes(
  relayRoutes: readonly IpPrefix[],
  policy: Pick<UserPolicy, "routes" | "protocols">,
  scope: ConnectIpScope,
): IpAddressRange[] {
  let prefixes: readonly IpPrefix[] = relayRoutes;
  if (policy.routes !== undefined) {
    prefixes = policy.routes.length === 0
      ? []
      : routesWithin(prefixesToRanges(prefixes), policy.routes);
  }
  if (scope.target.kind === "prefix") {
    prefixes = routesWithin(prefixesToRanges(prefixes), [scope.target.prefix]);
  }
  const ranges: IpAddressRange[] = [];
  for (const protocol of sessionProtocols(policy, scope)) {
    ranges.push(...prefixesToRanges(prefixes, protocol));
  }
  return ranges.sort((a, b) =>
    a.version - b.version || a.ipProtocol - b.ipProtocol || compareIp(a.start, b.start)
  );
}
