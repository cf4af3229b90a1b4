/**
 * The client's core, beside the relay's `Relay`: open the TUN, dial a relay,
 * open the CONNECT-IP session, wait for the assignment, pick the MTU, give
 * the TUN its addresses and routes, pump packets, and when the session or
 * connection ends, reconnect. Everything that touches the host is passed in
 * (the QUIC dialer, the TUN opener, the netlink operations), so a test runs
 * a `Client` against a `Relay` on 127.0.0.1 with in-memory TUNs and no
 * root. `client/main.ts` only wires it to the real ones, the config,
 * signals, the status file and the admin endpoint.
 *
 * Two halves with different lifetimes:
 * - {@linkcode TunnelHost}: the TUN, its addresses, the policy routing
 *   (a table of the client's own and FIB rules, `client/routing.ts`, as
 *   `shared/tunnel/full_tunnel.ts` plans it), and the pump; long-lived. Its
 *   {@linkcode TunnelHooks} hold the rest of the full tunnel (kill switch
 *   and DNS, `client/full_tunnel.ts`); they stay in place across
 *   reconnects.
 * - {@linkcode ClientSession}: the QUIC connection, HTTP/3 and the
 *   session; replaceable.
 *
 * Setup, in order ({@linkcode Client.start}):
 *   stale routing of a killed client removed -> hooks' prepare (DNS
 *   recovery, kill switch with `--kill-switch on`) -> TunnelHost.open (the
 *   TUN, before any relay is asked: a client that cannot run takes no
 *   address) -> for each --relay in order: connect -> H3Connection.start
 *   -> openConnectIpSession (extended CONNECT) -> ADDRESS_ASSIGN +
 *   ROUTE_ADVERTISEMENT (RFC 9484 §4.7) -> MTU (`--mtu`, or auto: what the
 *   session carries, 1280..1500) -> planRouting -> TunnelHost.configure:
 *   MTU, txqueuelen, addresses, link up, routing plan, hooks -> pump: TUN
 *   loop, session packets
 * A DNS_ASSIGN (draft-ietf-masque-connect-ip-dns), which a relay sends
 * after its routes, or a new ROUTE_ADVERTISEMENT changes the plan in place
 * ({@linkcode TunnelHost.update}).
 *
 * Reconnect ({@linkcode Client.status} shows each, with its cause): when the
 * session ends, the connection closes, or nothing came from the relay for
 * `relayTimeoutMs` (QUIC's idle timeout, with keep-alives every second),
 * the TUN, its addresses, routes and hooks stay; packets for the tunnel's
 * routes are dropped and counted (`no session`) instead of leaving by
 * another way. The client tries the relays in order again after a backoff
 * with jitter ({@linkcode backoffDelay}: 250-500 ms first, up to 30 s),
 * asks the new session for the previous addresses with ADDRESS_REQUEST (RFC
 * 9484 §4.7.2), and when the relay assigns others (or another relay has
 * another address), changes the TUN's addresses and the routing in place
 * ({@linkcode TunnelHost.update}); the kill switch stays throughout. A GOAWAY
 * from the relay (it is draining) starts a reconnect at once while the old
 * session still carries packets; the new one replaces it when it is up.
 *
 * @module
 */

import { bringUpLink } from "../host/link.ts";
import type { LinkOps } from "../host/link.ts";
import { counterByLabel, CounterRegistry } from "../shared/counters.ts";
import type { Counter, HistogramFamily } from "../shared/counters.ts";
import { errorMessage } from "../shared/errors.ts";
import type { QuicConnLike } from "../shared/h3/quic.ts";
import type { IpAddressRange, IpPrefix } from "../shared/ip/ip_address.ts";
import { formatIp, formatPrefix, parseIp } from "../shared/ip/ip_address.ts";
import type { Capsule } from "../shared/masque/capsule.ts";
import { type DnsConfiguration, plainDnsServers } from "../shared/masque/dns_capsule.ts";
import {
  DEFAULT_FWMARK,
  DEFAULT_ROUTING_TABLE,
  DEFAULT_RULE_PRIORITY,
  diffRoutingPlans,
  type FullTunnelOptions,
  planRouting,
  type RoutingPlan,
  unmapIpv4,
} from "../shared/tunnel/full_tunnel.ts";
import type { RelayEndpoint } from "../shared/tunnel/kill_switch.ts";
import { routesWithin } from "../shared/tunnel/routes.ts";
import type { Logger } from "../shared/log.ts";
import type { HeaderField } from "../shared/h3/qpack.ts";
import { expandConnectIpPath } from "../shared/masque/connect_ip_request.ts";
import { SessionCounters } from "../shared/masque/connect_ip_session.ts";
import type { PacketMode } from "../shared/masque/connect_ip_session.ts";
import { ConnectIpError } from "../shared/masque/h3_connect_ip.ts";
import type { ConnectIpSession } from "../shared/masque/connect_ip_session.ts";
import type { TransportName } from "../shared/masque/connect_stream.ts";
import { CLIENT_KEY_HEADER } from "../shared/masque/connect_ip_request.ts";
import {
  openH2ClientSession,
  openH3ClientSession,
  openWebTransportClientSession,
} from "./transports.ts";
import type { H2Dialed, SessionRequest, WebTransportDialed } from "./transports.ts";

export type { H2Dialed, WebTransportDialed } from "./transports.ts";
import type { PacketDevice } from "../shared/tunnel/packet_device.ts";
import { checkFromRelay } from "../shared/tunnel/packet_policy.ts";
import { PumpCounters, TunnelPeer, TunnelPump } from "../shared/tunnel/pump.ts";
import type { PeerRouter } from "../shared/tunnel/pump.ts";
import { AUTO_MTU_MAX, AUTO_MTU_MIN, autoMtu, backoffDelay, describeSessionEnd } from "./tunnel.ts";
import type { Assignment } from "./tunnel.ts";
import type { DnsSettings } from "./dns.ts";

/** What the client needs of rtnetlink for its link: `ffi/netlink.ts`'s functions are these. */
export interface ClientNetlink extends LinkOps {
  /** Removes an address (a reconnect that was assigned another one). */
  deleteAddress(name: string, prefix: IpPrefix): void;
}

/** A routing plan in place (`client/routing.ts`'s `InstalledRouting` is one). */
export interface InstalledPlan {
  readonly plan: RoutingPlan;
  /** Moves to `plan` in place (adds, then deletes). */
  update(plan: RoutingPlan): void;
  /** Removes it all; returns what could not be removed. */
  remove(): string[];
}

/**
 * The policy routing operations (`client/routing.ts`: `removeStaleRouting`,
 * `installRouting`; fakes in tests).
 */
export interface ClientRouting {
  /** Removes the rules and routes a killed client with these options left. */
  removeStale(
    options: FullTunnelOptions,
  ): { readonly rules: readonly unknown[]; readonly routes: number };
  /** Installs `plan` through the TUN `tunName`, which is up. */
  install(plan: RoutingPlan, tunName: string): InstalledPlan;
}

/**
 * The client's TUN: a `PacketDevice`, and with TUN offloads (`ffi/tun_linux.ts`
 * `TunDevice`) a packet limit for the super-packets it splits, which the
 * client keeps at what the session carries, and the offloads in use.
 */
export interface ClientTun extends PacketDevice {
  setPacketLimit?(bytes: number): void;
  readonly offload?: string;
}

/**
 * Opens the TUN named `name` with packet slots of `mtu` bytes (the largest
 * MTU it will get); `client/main.ts` wraps `ffi/tun_linux.ts` `openTun`.
 */
export type TunOpener = (name: string, options: { mtu: number; log: Logger }) => ClientTun;

/** A QUIC connection to the relay, with the relay's address (`Deno.QuicConn` is one). */
export interface DialedConnection extends QuicConnLike {
  readonly remoteAddr: { readonly hostname: string; readonly port: number };
}

/** What the tunnel is made of, given to {@linkcode TunnelHost.configure} and `update`. */
export interface TunnelConfig {
  readonly addresses: readonly IpPrefix[];
  /** The policy routing (`planRouting`). */
  readonly plan: RoutingPlan;
  /** Where the QUIC packets go (unmapped address). */
  readonly relay: RelayEndpoint;
  /** The resolver to set, when the tunnel has nameservers. */
  readonly dns?: DnsSettings;
}

/** What the tunnel is once up, for {@linkcode TunnelHooks}. */
export interface TunnelInfo extends TunnelConfig {
  readonly name: string;
  readonly mtu: number;
  /** The prefixes routed through the TUN (the plan's `tunnel` routes). */
  readonly routes: readonly IpPrefix[];
}

/** Why the tunnel is taken down: the user stopped the client, or it failed or ended. */
export type StopReason = "user" | "failure";

/**
 * Steps added to the tunnel's bring-up and teardown (the full tunnel's
 * kill switch and DNS, `client/full_tunnel.ts`). Not run on a session
 * swap, which runs `update` when something changed: the hooks stay in
 * place across reconnects.
 */
export interface TunnelHooks {
  /** At start, before the first connection. A throw fails the start. */
  prepare?(): void | Promise<void>;
  /** After the TUN is up with its addresses and routing. A throw fails the setup. */
  up?(tunnel: TunnelInfo): void | Promise<void>;
  /**
   * The tunnel changed in place (DNS servers, routes, the relay's address,
   * or the addresses after a reconnect).
   */
  update?(tunnel: TunnelInfo): void | Promise<void>;
  /** Before the routing goes and the TUN closes; run in reverse order of `up`. */
  down?(reason: StopReason): void | Promise<void>;
}

/** Options of {@linkcode TunnelHost}. */
export interface TunnelHostOptions {
  readonly name: string;
  readonly openTun: TunOpener;
  readonly netlink: ClientNetlink;
  readonly routing: ClientRouting;
  readonly log: Logger;
  readonly hooks?: readonly TunnelHooks[];
}

/**
 * The long-lived half of the client: the TUN with its addresses and
 * routing; see the module docs. {@linkcode down} undoes whatever
 * {@linkcode open} and {@linkcode configure} did, also after a failure
 * half way.
 */
export class TunnelHost {
  readonly #options: TunnelHostOptions;
  #tun: ClientTun | undefined;
  #mtu = 0;
  #addresses: IpPrefix[] = [];
  #routing: InstalledPlan | undefined;
  #info: TunnelInfo | undefined;
  readonly #hooksUp: TunnelHooks[] = [];
  #down = false;

  constructor(options: TunnelHostOptions) {
    this.#options = options;
  }

  /** The TUN, once {@linkcode open} opened it. */
  get tun(): ClientTun | undefined {
    return this.#tun;
  }

  /** The TUN's link MTU now, bytes (0 before {@linkcode configure}). */
  get mtu(): number {
    return this.#mtu;
  }

  /** The TUN's addresses. */
  get addresses(): readonly IpPrefix[] {
    return this.#addresses;
  }

  /** The routing plan in place, once {@linkcode configure} installed it. */
  get plan(): RoutingPlan | undefined {
    return this.#routing?.plan;
  }

  /** What the hooks were last told. */
  get info(): TunnelInfo | undefined {
    return this.#info;
  }

  /**
   * Runs the hooks' `prepare` (at start, before the first connection);
   * {@linkcode down} then runs their `down` even if the tunnel never came up.
   */
  async prepare(): Promise<void> {
    for (const hooks of this.#options.hooks ?? []) {
      if (!this.#hooksUp.includes(hooks)) this.#hooksUp.push(hooks);
      await hooks.prepare?.();
    }
  }

  /**
   * Opens the TUN with packet slots of `capacity` bytes, before the client
   * asks any relay for a session: a host where the TUN cannot be opened (no
   * root or CAP_NET_ADMIN) takes no address from the relay.
   */
  open(capacity: number): ClientTun {
    if (this.#tun !== undefined || this.#down) throw new Error("Cannot open the TUN twice");
    const { log } = this.#options;
    this.#tun = this.#options.openTun(this.#options.name, { mtu: capacity, log });
    return this.#tun;
  }

  /**
   * Brings the open TUN's link up with `mtu` and the addresses
   * (`host/link.ts`), installs the routing plan, then runs the hooks' `up`.
   * Throws with what failed; call {@linkcode down} to undo.
   */
  async configure(config: TunnelConfig, mtu: number): Promise<void> {
    const tun = this.#tun;
    if (tun === undefined || this.#down) throw new Error("Cannot configure the TUN: not open");
    if (this.#routing !== undefined) throw new Error("Cannot bring the tunnel up twice");
    bringUpLink(this.#options.netlink, tun.name, mtu, config.addresses);
    this.#addresses = [...config.addresses];
    this.#mtu = mtu;
    this.#routing = this.#options.routing.install(config.plan, tun.name);
    const info = this.#describe(config);
    for (const hooks of this.#options.hooks ?? []) {
      if (!this.#hooksUp.includes(hooks)) this.#hooksUp.push(hooks);
      await hooks.up?.(info);
    }
  }

  /** Opens the TUN and configures it ({@linkcode open}, {@linkcode configure}). */
  async up(config: TunnelConfig, mtu: number, capacity: number): Promise<ClientTun> {
    const tun = this.open(capacity);
    await this.configure(config, mtu);
    return tun;
  }

  /**
   * Changes the tunnel in place to `config`: the TUN's addresses (a
   * reconnect that was assigned others; new ones are added before old ones
   * go) and the routing plan (new DNS servers, routes, or the relay's
   * address), then tells the hooks through their `update`. The link and
   * the hooks stay. Returns whether anything changed; throws the first
   * failure (the rest then stays as it was where it could).
   */
  async update(config: TunnelConfig): Promise<boolean> {
    const tun = this.#tun;
    const routing = this.#routing;
    if (tun === undefined || routing === undefined || this.#down) return false;
    const { netlink } = this.#options;
    const key = formatPrefix;
    const has = (list: readonly IpPrefix[], prefix: IpPrefix) =>
      list.some((p) => key(p) === key(prefix));
    let changed = false;
    for (const prefix of config.addresses) {
      if (has(this.#addresses, prefix)) continue;
      netlink.addAddress(tun.name, prefix);
      this.#addresses.push(prefix);
      changed = true;
    }
    for (const prefix of [...this.#addresses]) {
      if (has(config.addresses, prefix)) continue;
      netlink.deleteAddress(tun.name, prefix);
      this.#addresses.splice(this.#addresses.indexOf(prefix), 1);
      changed = true;
    }
    const info = this.#info;
    if (info === undefined || !samePlan(info.plan, config.plan)) {
      routing.update(config.plan);
      changed = true;
    } else if (!sameTunnel(config, info)) {
      changed = true; // the relay's endpoint or the DNS: the hooks' business
    }
    if (!changed) return false;
    const next = this.#describe({ ...config, addresses: [...this.#addresses] });
    for (const hooks of this.#hooksUp) await hooks.update?.(next);
    return true;
  }

  #describe(config: TunnelConfig): TunnelInfo {
    const info: TunnelInfo = {
      ...config,
      name: this.#tun!.name,
      mtu: this.#mtu,
      routes: config.plan.routes.filter((r) => r.type === "tunnel").map((r) => r.destination),
    };
    this.#info = info;
    return info;
  }

  /** Sets the TUN's link MTU (`--mtu auto` raising it as the path allows). */
  setMtu(mtu: number): void {
    if (this.#tun === undefined) return;
    this.#options.netlink.setLinkMtu(this.#tun.name, mtu);
    this.#mtu = mtu;
  }

  /**
   * Runs the hooks' `down` (newest first), removes the routing and closes
   * the TUN (the kernel then removes the interface and its addresses).
   * Failures are logged and the rest still done. Idempotent.
   */
  async down(reason: StopReason): Promise<void> {
    if (this.#down) return;
    this.#down = true;
    const { log } = this.#options;
    const step = async (what: string, fn: () => void | Promise<void>) => {
      try {
        await fn();
      } catch (error) {
        log.warn("cleanup step failed", { step: what, error: errorMessage(error) });
      }
    };
    while (this.#hooksUp.length > 0) {
      const hooks = this.#hooksUp.pop()!;
      if (hooks.down) await step("tunnel hook", () => hooks.down!(reason));
    }
    const routing = this.#routing;
    this.#routing = undefined;
    if (routing) {
      await step("remove routing", () => {
        const problems = routing.remove();
        if (problems.length > 0) throw new Error(problems.join("; "));
      });
    }
    const tun = this.#tun;
    if (tun === undefined) return;
    await step("close TUN", () => tun.close());
  }
}

/** What changed in what the relay told a session, after its assignment. */
export type RelayUpdate = "routes" | "dns" | "pref64";

/** Why a session is over, as the client tells it apart. */
export type SessionEndCause = "goaway" | "session ended" | "connection closed";

/** What {@linkcode ClientSession.run} resolves `ended` with. */
export interface ClientSessionEnd {
  readonly cause: SessionEndCause;
  /** The session's or connection's own words. */
  readonly message: string;
  /**
   * The relay ended the session itself (FIN on the request stream, the
   * connection alive): it removed the user, replaced its credentials, gave
   * its fixed address to a newer session, or refuses DATAGRAM capsules.
   * Reconnecting would fight that decision or end the same way.
   */
  readonly permanent?: boolean;
}

/**
 * What a transport's opener (`client/transports.ts`) gives a
 * {@linkcode ClientSession}: the session, the relay's address, and how the
 * connection under it ends, says GOAWAY and is closed.
 */
export interface ClientSessionParts {
  readonly transport: TransportName;
  readonly session: ConnectIpSession;
  readonly relay: { readonly hostname: string; readonly port: number };
  /** Resolves with why when the connection under the session closes. */
  readonly closed: Promise<string>;
  /** Calls back once when the relay says it is draining (GOAWAY), with the stream id. */
  readonly onGoaway?: (callback: (id: bigint | number) => void) => void;
  /** Closes the connection (after the session's FIN). */
  readonly close: () => void;
  readonly log: Logger;
}

/**
 * The replaceable half of the client: one connection (QUIC with HTTP/3,
 * or TLS over TCP with HTTP/2 or WebTransport) and the CONNECT-IP session
 * on it; see the module docs.
 */
export class ClientSession {
  readonly transport: TransportName;
  readonly session: ConnectIpSession;
  /** The relay's address, IPv4-mapped addresses unmapped (undefined for a name). */
  readonly relayAddress: Uint8Array | undefined;
  /** The relay's port: UDP for HTTP/3, TCP for HTTP/2 and WebTransport. */
  readonly relayPort: number;
  /** The relay's address as dialled, for logs and the status. */
  readonly remote: string;
  /** The relay's last ROUTE_ADVERTISEMENT (RFC 9484 §4.7.3). */
  routes: readonly IpAddressRange[] | undefined;
  /** The relay's last DNS_ASSIGN (draft-ietf-masque-connect-ip-dns-05 §3.4), if any. */
  dns: readonly DnsConfiguration[] | undefined;
  /** The relay's last PREF64 (draft §4): NAT64 prefixes, reported only. */
  pref64: readonly IpPrefix[] = [];
  /** DNS_ASSIGN capsules ignored because no ROUTE_ADVERTISEMENT came before them (draft §7). */
  dnsIgnored = 0;
  readonly #log: Logger;
  readonly #parts: ClientSessionParts;

  constructor(parts: ClientSessionParts) {
    this.#parts = parts;
    this.transport = parts.transport;
    this.session = parts.session;
    const address = parseIp(parts.relay.hostname);
    this.relayAddress = address && unmapIpv4(address);
    this.relayPort = parts.relay.port;
    this.remote = parts.relay.hostname;
    this.#log = parts.log;
  }

  /** The relay endpoint's protocol, for the kill switch and the routing. */
  get relayProtocol(): "udp" | "tcp" {
    return this.transport === "h3" ? "udp" : "tcp";
  }

  /**
   * Runs the session, handing its packets to `onPacket`, and resolves
   * `assignment` once an ADDRESS_ASSIGN with at least one address (of
   * either family or both) and a ROUTE_ADVERTISEMENT have arrived (RFC 9484
   * §4.7); an empty ADDRESS_ASSIGN assigns nothing yet, and the all-zero
   * "not assigned" answers (§4.7.2) are left out. With `request` (a
   * reconnect: the addresses the client had), it first sends an
   * ADDRESS_REQUEST for them (§4.7.2) and waits up to `requestWaitMs` for
   * the ADDRESS_ASSIGN that answers it, then takes the latest assignment.
   * Later ROUTE_ADVERTISEMENT, DNS_ASSIGN and PREF64 capsules update
   * {@linkcode routes}, {@linkcode dns} and {@linkcode pref64} and call
   * `onUpdate`. A DNS_ASSIGN before any ROUTE_ADVERTISEMENT is ignored: the
   * draft's security section forbids sending one, since it could point the
   * client at a nameserver outside the tunnel. `ended` resolves when the
   * session ends, the connection closes or the relay sends GOAWAY, with
   * why; `finished` when the session or connection is over (not at GOAWAY).
   */
  run(
    onPacket: (packet: Uint8Array) => void,
    timeoutMs: number,
    onUpdate: (what: RelayUpdate) => void = () => {},
    request: readonly IpPrefix[] = [],
    requestWaitMs = 2000,
  ): {
    assignment: Promise<Assignment>;
    ended: Promise<ClientSessionEnd>;
    finished: Promise<ClientSessionEnd>;
  } {
    let resolve!: (assignment: Assignment) => void;
    let reject!: (error: Error) => void;
    const assignment = new Promise<Assignment>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    assignment.catch(() => {});
    let addresses: IpPrefix[] | undefined;
    let assigned = false;
    let answered = request.length === 0;
    let waitTimer: ReturnType<typeof setTimeout> | undefined;
    const done = () => {
      if (assigned || !addresses || !this.routes) return;
      if (!answered) {
        // Both arrived; give the answer to our request a moment.
        waitTimer ??= setTimeout(() => {
          answered = true;
          done();
        }, requestWaitMs);
        return;
      }
      assigned = true;
      clearTimeout(timer);
      clearTimeout(waitTimer);
      resolve({ addresses, routes: this.routes });
    };
    const timer = setTimeout(() => {
      const missing = [
        ...(addresses ? [] : ["an ADDRESS_ASSIGN with an address"]),
        ...(this.routes ? [] : ["a ROUTE_ADVERTISEMENT"]),
      ];
      reject(
        new Error(`The relay sent no ${missing.join(" and no ")} within ${timeoutMs / 1000} s`),
      );
    }, timeoutMs);
    const requestIds = new Set(request.map((_, i) => i + 1));
    const onCapsule = (capsule: Capsule) => {
      let update: RelayUpdate | undefined;
      if (capsule.type === "address_assign") {
        const given = capsule.addresses
          .filter((a) => a.prefix.address.some((byte) => byte !== 0))
          .map((a) => a.prefix);
        if (given.length > 0 && !assigned) addresses = given;
        if (capsule.addresses.some((a) => requestIds.has(a.requestId))) answered = true;
      } else if (capsule.type === "route_advertisement") {
        this.routes = [...capsule.ranges];
        update = "routes";
      } else if (capsule.type === "dns_assign") {
        if (this.routes === undefined) {
          this.dnsIgnored++;
          this.#log.warn("DNS_ASSIGN before any ROUTE_ADVERTISEMENT ignored (draft §7)");
          return;
        }
        this.dns = capsule.configurations;
        update = "dns";
      } else if (capsule.type === "pref64") {
        this.pref64 = capsule.prefixes;
        update = "pref64";
      }
      if (assigned) {
        if (update) onUpdate(update);
      } else done();
    };
    const sessionEnd = this.session.run({ onPacket, onCapsule });
    if (request.length > 0) {
      this.session.sendCapsule({
        type: "address_request",
        addresses: request.map((prefix, i) => ({ requestId: i + 1, prefix })),
      }).catch(() => {}); // a session that ended says so through `ended`
    }
    const finished = Promise.race([
      sessionEnd.then((end): ClientSessionEnd => ({
        cause: "session ended",
        message: describeSessionEnd(end, this.session),
        permanent: end.reason === "closed",
      })),
      this.#parts.closed.then((message): ClientSessionEnd => ({
        cause: "connection closed",
        message,
      })),
    ]);
    const ended = Promise.race([
      finished,
      new Promise<ClientSessionEnd>((res) =>
        this.#parts.onGoaway?.((id) =>
          res({ cause: "goaway", message: `the relay sent GOAWAY (stream ${id}): it is draining` })
        )
      ),
    ]);
    ended.then((end) => {
      clearTimeout(timer);
      clearTimeout(waitTimer);
      reject(new Error(`Session ended before the relay assigned addresses: ${end.message}`));
    });
    return { assignment, ended, finished };
  }

  /** Ends the session (FIN) and closes the connection with H3_NO_ERROR. */
  async close(): Promise<void> {
    await this.session.close().catch(() => {});
    this.#parts.close();
  }
}

/** Whether two routing plans have the same routes and rules. */
function samePlan(a: RoutingPlan, b: RoutingPlan): boolean {
  const change = diffRoutingPlans(a, b);
  return change.addRoutes.length + change.deleteRoutes.length + change.addRules.length +
      change.deleteRules.length === 0;
}

/** Whether `config` asks for nothing that `info` does not already have (addresses aside). */
function sameTunnel(config: TunnelConfig, info: TunnelInfo): boolean {
  const endpoint = (c: TunnelConfig) => `${formatIp(c.relay.address)}:${c.relay.port}`;
  return samePlan(info.plan, config.plan) &&
    endpoint(config) === endpoint(info) &&
    JSON.stringify(config.dns ?? null) === JSON.stringify(info.dns ?? null);
}

/** The plan's routes for a log line: `198.18.1.0/24,unreachable ::/0`, or `none`. */
function describeRoutes(plan: RoutingPlan): string {
  return plan.routes.map((r) =>
    r.type === "tunnel" ? formatPrefix(r.destination) : `${r.type} ${formatPrefix(r.destination)}`
  ).join(",") || "none";
}

/** Answers that say this client may not use the relay: 404 (credentials not accepted), 403... */
const REFUSALS: ReadonlySet<number> = new Set([401, 403, 404, 407]);

/**
 * Whether `error` is a relay's answer that the request is not allowed
 * ({@linkcode REFUSALS}), not a passing outage (503) or limit (429).
 */
function isRefusal(error: unknown): boolean {
  return error instanceof ConnectIpError && error.status !== undefined &&
    REFUSALS.has(error.status);
}

/** Every relay answered a reconnect with a 4xx ({@linkcode isRefusal}); `cause` is the last. */
class RefusedEverywhere extends Error {
  constructor(cause: unknown) {
    super(errorMessage(cause), { cause });
  }
}

/** How long the client waits for its assignment, milliseconds. */
export const ASSIGNMENT_TIMEOUT_MS = 10_000;
/** How long a reconnect waits for the answer to its ADDRESS_REQUEST, milliseconds. */
export const ADDRESS_REQUEST_WAIT_MS = 2000;
/** How long to wait for path MTU discovery to allow 1280-byte packets, milliseconds. */
export const PMTU_WAIT_MS = 3000;
/** How often `--mtu auto` compares the TUN MTU with the datagram limit, milliseconds. */
export const MTU_FOLLOW_INTERVAL_MS = 1000;
/** How many reconnects {@linkcode Client.status} lists. */
export const RECONNECT_HISTORY = 10;

/** One relay the client may use: how to dial it and what to ask for. */
export interface RelayTarget {
  /** How logs and the status name it: `relay.example:4433`. */
  readonly name: string;
  /** Dials it (QUIC with ALPN h3); main.ts grows the socket's buffers first. */
  readonly connect: () => Promise<DialedConnection>;
  /** `:authority` of the request. */
  readonly authority: string;
  /** Its URI template (expanded for any target and protocol). */
  readonly template: string;
  /** Dials its TCP port with TLS and ALPN h2 (HTTP/2), for `--transport h2|auto`. */
  readonly connectH2?: () => Promise<H2Dialed>;
  /** Opens a WebTransport session to its TCP port at the path given. */
  readonly connectWebTransport?: (path: string) => Promise<WebTransportDialed>;
}

/** `--transport`: one transport, or `auto` (HTTP/3, else HTTP/2, moving back). */
export type TransportChoice = TransportName | "auto";

/** How long `auto` waits for the QUIC handshake before it uses HTTP/2, milliseconds. */
export const H3_HANDSHAKE_TIMEOUT_MS = 2000;
/** How often `auto` on HTTP/2 tries HTTP/3 again, milliseconds. */
export const H3_RETRY_INTERVAL_MS = 300_000;

/** Options of {@linkcode Client}. */
export interface ClientOptions {
  /**
   * The relays, in order of preference (`--relay`, repeatable): each
   * connect and reconnect tries them in this order.
   */
  readonly relays?: readonly RelayTarget[];
  /** One relay, when `relays` is not given: how to dial it. */
  readonly connect?: () => Promise<DialedConnection>;
  /** With `connect`: the relay's HTTP/2 and WebTransport dialers. */
  readonly connectH2?: RelayTarget["connectH2"];
  readonly connectWebTransport?: RelayTarget["connectWebTransport"];
  readonly authority?: string;
  readonly template?: string;
  /** `--transport` (default `h3`). */
  readonly transport?: TransportChoice;
  readonly openTun: TunOpener;
  readonly netlink: ClientNetlink;
  /** The policy routing (`client/routing.ts`). */
  readonly routing: ClientRouting;
  /** Table, rule priorities and mark (default: the `DEFAULT_*` constants of full_tunnel.ts). */
  readonly fullTunnel?: FullTunnelOptions;
  /**
   * Nameservers for the tunnel: `relay` (the relay's DNS_ASSIGN, the
   * default), `off` (none), or these addresses instead of the relay's.
   */
  readonly dns?: "relay" | "off" | readonly Uint8Array[];
  readonly tunName: string;
  readonly mode: PacketMode;
  /** Fields added to the request: the credentials (`shared/auth/credentials.ts`). */
  readonly headers?: readonly HeaderField[];
  /** The TUN MTU, bytes, or `"auto"` (see {@linkcode autoMtu}). */
  readonly mtu: number | "auto";
  /** The networks to route through the tunnel; empty: every advertised route. */
  readonly routes: readonly IpPrefix[];
  readonly log: Logger;
  /** The registry to count in (default: a new one, {@linkcode Client.counters}). */
  readonly counters?: CounterRegistry;
  readonly hooks?: readonly TunnelHooks[];
  /** Reconnect after the session ends (default true); false: {@linkcode Client.ended} resolves. */
  readonly reconnect?: boolean;
  /** Waits, milliseconds (tests shorten them); `backoff` gives the wait before attempt n. */
  readonly timing?: {
    readonly assignmentTimeoutMs?: number;
    readonly pmtuWaitMs?: number;
    readonly mtuFollowIntervalMs?: number;
    readonly addressRequestWaitMs?: number;
    readonly backoff?: (attempt: number) => number;
    /** `auto`: the QUIC handshake's time limit before HTTP/2 is used. */
    readonly h3HandshakeTimeoutMs?: number;
    /** `auto` on HTTP/2 or WebTransport: how often HTTP/3 is tried again. */
    readonly h3RetryIntervalMs?: number;
  };
  /** A random secret sent as `masque-vpn-client-key` (default: a new one); see connect_ip_request.ts. */
  readonly clientKey?: string;
}

/** The client's connection state, as its status shows it. */
export type ClientState = "connecting" | "up" | "reconnecting" | "stopped";

/** One reconnect, for the status. */
export interface ReconnectRecord {
  /** When the session ended, ISO 8601. */
  readonly at: string;
  readonly cause: SessionEndCause;
  readonly message: string;
  /** How long until traffic flowed again, milliseconds (absent while it has not). */
  downMs?: number;
  /** The relay it reconnected to. */
  relay?: string;
  /** Whether the new session kept the addresses of the old. */
  sameAddresses?: boolean;
}

/** A session that is open and assigned, with the peer the pump sends on. */
interface LiveSession {
  readonly number: number;
  readonly relay: RelayTarget;
  readonly client: ClientSession;
  readonly peer: TunnelPeer;
  readonly assigned: Assignment;
  readonly ended: Promise<ClientSessionEnd>;
  /** Resolves when the session or connection is over (GOAWAY aside). */
  readonly finished: Promise<ClientSessionEnd>;
  readonly openedAt: number;
}

/**
 * The client's counters beside the pump's, HTTP/3's and the session's:
 * reconnects by cause, failed attempts, whether a session is up, and how
 * long sessions took to open.
 */
class ClientCounters {
  readonly reconnects: Readonly<Record<SessionEndCause, Counter>>;
  readonly attemptsFailed: Counter;
  readonly setupSeconds: HistogramFamily;
  /** Times `auto` used HTTP/2 because HTTP/3 did not connect. */
  readonly fallbacks: Counter;
  /** Moves back to HTTP/3, and tries that failed. */
  readonly moves: Counter;
  readonly moveFailures: Counter;

  constructor(
    registry: CounterRegistry,
    connected: () => number,
    transport: () => TransportName | undefined,
  ) {
    const transports = ["h3", "h2", "webtransport"] as const;
    registry.gauge("client_transport", {
      help: "1 for the transport the tunnel runs on now",
      labels: [{ name: "transport", values: transports }],
      collect: () => {
        const now = transport();
        return Object.fromEntries(transports.map((t) => [t, t === now ? 1 : 0]));
      },
    });
    this.fallbacks = registry.counter("client_transport_fallbacks_total", {
      help: "Times --transport auto used HTTP/2 because HTTP/3 did not connect",
    }).child();
    this.moves = registry.counter("client_transport_moves_total", {
      help: "Times --transport auto moved the tunnel back to HTTP/3 (make before break)",
    }).child();
    this.moveFailures = registry.counter("client_transport_move_failures_total", {
      help: "Tries to move back to HTTP/3 that failed (no QUIC, or the addresses not given back)",
    }).child();
    this.reconnects = counterByLabel(
      registry,
      "client_reconnects_total",
      "Sessions that ended other than by the user stopping the client, by cause",
      "cause",
      ["goaway", "session ended", "connection closed"],
    );
    this.attemptsFailed = registry.counter("client_connect_failures_total", {
      help: "Attempts to open a session with a relay that failed",
    }).child();
    this.setupSeconds = registry.histogram("client_session_setup_seconds", {
      help: "Time from dialling a relay to the session's assignment, seconds",
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10],
    });
    registry.gauge("client_session_up", {
      help: "1 while a session carries the tunnel's packets, else 0",
      collect: connected,
    });
  }
}

/**
 * The client; see the module docs. {@linkcode start}, then wait for
 * {@linkcode ended} (or a signal), then {@linkcode stop}.
 */
export class Client implements PeerRouter {
  readonly #options: ClientOptions;
  readonly #log: Logger;
  readonly #host: TunnelHost;
  readonly #relays: readonly RelayTarget[];
  readonly #clientKey: string;
  /** Why the current session's transport was chosen (`--transport`, a fallback, a move back). */
  #transportReason = "";
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #moving = false;
  readonly #pumpCounters: PumpCounters;
  readonly #sessionCounters: SessionCounters;
  readonly #counters: ClientCounters;
  #live: LiveSession | undefined;
  #peer: TunnelPeer | undefined;
  #pump: TunnelPump | undefined;
  #followTimer: ReturnType<typeof setInterval> | undefined;
  #ended: Promise<string> | undefined;
  #end!: (why: string) => void;
  #stopped = false;
  #state: ClientState = "connecting";
  #sessions = 0;
  #lastError: string | undefined;
  readonly #history: ReconnectRecord[] = [];
  #reconnecting = false;
  readonly #wakers = new Set<() => void>();
  /** Resolves once the tunnel is up, or setup failed: changes wait for it. */
  #settledSetup!: () => void;
  /** Changes to the tunnel (relay updates, reconnects), one at a time, after the setup. */
  #updates: Promise<void> = new Promise((resolve) => this.#settledSetup = resolve);
  /** Every counter of the client: the pump's, HTTP/3's, the session's (and main.ts's TUN). */
  readonly counters: CounterRegistry;

  constructor(options: ClientOptions) {
    this.#options = options;
    this.#log = options.log;
    this.counters = options.counters ?? new CounterRegistry();
    this.#pumpCounters = new PumpCounters(this.counters);
    this.#sessionCounters = new SessionCounters(this.counters);
    this.#counters = new ClientCounters(
      this.counters,
      () => (this.#peer ? 1 : 0),
      () => this.#live?.client.transport,
    );
    this.#relays = options.relays ?? [{
      name: options.authority ?? "relay",
      connect: options.connect ??
        (() => Promise.reject(new Error("Cannot connect: no relay given"))),
      connectH2: options.connectH2,
      connectWebTransport: options.connectWebTransport,
      authority: options.authority ?? "",
      template: options.template ?? "",
    }];
    this.#clientKey = options.clientKey ?? randomKey();
    if (this.#relays.length === 0) throw new Error("Cannot start the client: no relay given");
    this.#host = new TunnelHost({
      name: options.tunName,
      openTun: options.openTun,
      netlink: options.netlink,
      routing: options.routing,
      log: options.log,
      hooks: options.hooks,
    });
  }

  /** The table, priorities and mark in use. */
  get fullTunnelOptions(): FullTunnelOptions {
    return this.#options.fullTunnel ?? {
      table: DEFAULT_ROUTING_TABLE,
      priority: DEFAULT_RULE_PRIORITY,
      fwmark: DEFAULT_FWMARK,
    };
  }

  /** The tunnel's host side (TUN, MTU, routes). */
  get host(): TunnelHost {
    return this.#host;
  }

  /** The current session, once {@linkcode start} opened it (none while reconnecting). */
  get session(): ClientSession | undefined {
    return this.#live?.client;
  }

  /** Where the client is: connecting, up, reconnecting or stopped. */
  get state(): ClientState {
    return this.#state;
  }

  /** The reconnects so far, oldest first (the last {@linkcode RECONNECT_HISTORY}). */
  get reconnects(): readonly ReconnectRecord[] {
    return this.#history;
  }

  /**
   * Resolves, once the tunnel is up, when the client cannot go on: the TUN
   * failed, or (with `reconnect: false`) the session ended; with why.
   * Never rejects.
   */
  get ended(): Promise<string> {
    if (this.#ended === undefined) throw new Error("Cannot wait for the end: not started");
    return this.#ended;
  }

  /** The pump's router: every packet goes to the one session; none while reconnecting. */
  peerFor(_packet: Uint8Array): TunnelPeer | undefined {
    return this.#peer;
  }

  /**
   * Removes what a killed client left, prepares the hooks, opens the TUN,
   * then the first session with the first relay that gives one, and sets
   * the tunnel up (see the module docs). Throws a clear error when a step
   * fails, having undone the steps before it (the session is closed at
   * once, so the relay frees its address).
   */
  async start(): Promise<void> {
    const options = this.#options;
    const log = this.#log;
    const timing = options.timing ?? {};
    this.#ended = new Promise((resolve) => this.#end = resolve);
    let live: LiveSession | undefined;
    try {
      // What a client killed with SIGKILL left would otherwise collide (EEXIST).
      const stale = options.routing.removeStale(this.fullTunnelOptions);
      if (stale.rules.length > 0 || stale.routes > 0) {
        log.info("removed the routing a previous client left", {
          rules: stale.rules.length,
          routes: stale.routes,
        });
      }
      await this.#host.prepare();
      // The TUN before any relay: a client that cannot open it takes no address.
      // With --mtu auto the link MTU is raised as the datagram limit grows,
      // so the TUN's packet slots are sized for the largest MTU auto picks.
      const capacity = options.mtu === "auto" ? AUTO_MTU_MAX : options.mtu;
      const tun = this.#host.open(capacity);
      live = await this.#openAny([]);
      if (this.#stopped) throw new Error("Cannot start: the client was stopped");
      const mtu = await this.#chooseMtu(live.client.session, timing.pmtuWaitMs ?? PMTU_WAIT_MS);
      // Planned after the MTU wait, so that a DNS_ASSIGN that came meanwhile is in.
      const config = this.#tunnelConfig(live.client, live.assigned.addresses);
      this.#logAssigned(live, config);
      await this.#host.configure(config, mtu);
      log.info("tunnel up", { tun: tun.name, mtu, offload: tun.offload });
      this.#pump = new TunnelPump({ tun, router: this, counters: this.#pumpCounters, log });
      this.#use(live);
      this.#settledSetup();
      this.#pump.runTun().catch((error) => {
        log.warn("TUN loop failed", { error: errorMessage(error) });
        this.#end(`TUN loop failed: ${errorMessage(error)}`);
      });
      const follow = options.mtu === "auto" && live.client.session.mode === "datagram";
      this.#follow(follow, timing.mtuFollowIntervalMs ?? MTU_FOLLOW_INTERVAL_MS);
    } catch (error) {
      this.#settledSetup();
      await this.stop("failure");
      // A session that was opened but not yet in use: closed now, so the
      // relay frees its addresses at once rather than at its idle timeout.
      if (live !== undefined && live !== this.#live) await live.client.close();
      throw error;
    }
  }

  /**
   * Opens a session with the first relay, in order, that gives one, asking
   * for `previous` addresses; throws the last relay's error (each failure
   * is logged and counted).
   */
  async #openAny(previous: readonly IpPrefix[]): Promise<LiveSession> {
    let last: unknown;
    let refusals = 0;
    for (const relay of this.#relays) {
      if (this.#stopped) break;
      try {
        return await this.#open(relay, previous);
      } catch (error) {
        last = error;
        if (isRefusal(error)) refusals++;
        this.#lastError = errorMessage(error);
        this.#counters.attemptsFailed.value++;
        if (this.#relays.length > 1) {
          this.#log.warn("relay failed", { relay: relay.name, error: errorMessage(error) });
        }
      }
    }
    if (last !== undefined && refusals === this.#relays.length) throw new RefusedEverywhere(last);
    throw last ?? new Error("Cannot connect: the client is stopping");
  }

  /** What every transport's request carries: the credentials and the client key. */
  #request(relay: RelayTarget, log: Logger): SessionRequest {
    return {
      authority: relay.authority,
      path: expandConnectIpPath(relay.template, { target: { kind: "any" }, ipProtocol: "any" }),
      headers: [...(this.#options.headers ?? []), [CLIENT_KEY_HEADER, this.#clientKey]],
      log,
      counters: this.counters,
      sessionCounters: this.#sessionCounters,
    };
  }

  /**
   * A session with `relay` on `transport`. For HTTP/3, `handshakeTimeoutMs`
   * bounds the QUIC handshake (`auto`); a late connection is closed.
   */
  async #openOn(
    relay: RelayTarget,
    transport: TransportName,
    log: Logger,
    handshakeTimeoutMs?: number,
  ): Promise<ClientSession> {
    const request = this.#request(relay, log);
    if (transport === "h3") {
      const connect = handshakeTimeoutMs === undefined
        ? relay.connect
        : () => withTimeout(relay.connect(), handshakeTimeoutMs, (conn) => conn.close());
      return await openH3ClientSession(connect, { ...request, mode: this.#options.mode });
    }
    if (transport === "h2") {
      if (relay.connectH2 === undefined) throw new Error("Cannot use HTTP/2: no TCP dialer");
      return await openH2ClientSession(relay.connectH2, request);
    }
    const connect = relay.connectWebTransport;
    if (connect === undefined) throw new Error("Cannot use WebTransport: no WebTransport dialer");
    // The WebTransport client sends no header of ours: the credentials go in
    // the path's query (relay/webtransport.ts, the project's convention).
    const credentials = request.headers?.find(([name]) => name === "proxy-authorization")?.[1];
    const path = credentials === undefined
      ? request.path
      : `${request.path}?proxy-authorization=${encodeURIComponent(credentials)}`;
    return await openWebTransportClientSession(() => connect(path), request);
  }

  /**
   * The configured transport, or with `auto` HTTP/3 and, when no QUIC
   * handshake completes within the time limit or QUIC fails, HTTP/2. A
   * refusal by the relay (an HTTP status) is not a reason to fall back: it
   * would refuse over HTTP/2 too.
   */
  async #openFirst(relay: RelayTarget, log: Logger): Promise<ClientSession> {
    const choice = this.#options.transport ?? "h3";
    if (choice !== "auto") {
      const session = await this.#openOn(relay, choice, log);
      this.#transportReason = `--transport ${choice}`;
      return session;
    }
    const timing = this.#options.timing ?? {};
    try {
      const session = await this.#openOn(
        relay,
        "h3",
        log,
        timing.h3HandshakeTimeoutMs ?? H3_HANDSHAKE_TIMEOUT_MS,
      );
      this.#transportReason = "auto: HTTP/3 connected";
      return session;
    } catch (error) {
      if (error instanceof ConnectIpError && error.status !== undefined) throw error;
      const why = errorMessage(error);
      log.warn("HTTP/3 did not connect; trying HTTP/2", { error: why });
      this.#counters.fallbacks.value++;
      const session = await this.#openOn(relay, "h2", log);
      this.#transportReason = `auto: HTTP/2 because HTTP/3 failed (${why})`;
      return session;
    }
  }

  /** `auto` on HTTP/2: tries HTTP/3 again after the retry interval. */
  #scheduleMoveBack(): void {
    if (this.#stopped || this.#options.transport !== "auto") return;
    if (this.#live === undefined || this.#live.client.transport === "h3") return;
    const ms = this.#options.timing?.h3RetryIntervalMs ?? H3_RETRY_INTERVAL_MS;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#moveBack().then((moved) => {
        if (!moved) this.#scheduleMoveBack();
      });
    }, ms);
  }

  /**
   * Moves the tunnel back to HTTP/3 through the reconnect machinery, make
   * before break: a new HTTP/3 session asks for the current addresses with
   * ADDRESS_REQUEST (RFC 9484 §4.7.2; the relay moves them from this
   * client's session, same user and `masque-vpn-client-key`); only when it
   * gets exactly them back does it replace the old session (`#replace`),
   * which is then closed. Otherwise the new one is closed and the tunnel
   * stays. Resolves whether it moved.
   */
  async #moveBack(): Promise<boolean> {
    const old = this.#live;
    if (this.#stopped || this.#moving || old === undefined || old.client.transport === "h3") {
      return false;
    }
    this.#moving = true;
    const timing = this.#options.timing ?? {};
    const previous = [...this.#host.addresses];
    let live: LiveSession | undefined;
    try {
      live = await this.#open(old.relay, previous, {
        transport: "h3",
        handshakeTimeoutMs: timing.h3HandshakeTimeoutMs ?? H3_HANDSHAKE_TIMEOUT_MS,
      });
      const got = live.assigned.addresses;
      const same = got.length === previous.length &&
        previous.every((p) => got.some((a) => formatPrefix(a) === formatPrefix(p)));
      if (!same) {
        throw new Error(
          `the relay gave ${got.map(formatPrefix).join(",")} instead of ` +
            previous.map(formatPrefix).join(","),
        );
      }
      if (this.#stopped || this.#live !== old) throw new Error("the tunnel changed meanwhile");
      const record: ReconnectRecord = {
        at: new Date().toISOString(),
        cause: "session ended",
        message: "moving back to HTTP/3",
      };
      const moving = live;
      const replaced = this.#updates.then(() =>
        this.#replace(moving, record, Date.now(), previous)
      );
      this.#updates = replaced.catch(() => {});
      await replaced;
      this.#transportReason = "auto: moved back to HTTP/3, which works again";
      this.#counters.moves.value++;
      this.#log.info("moved to HTTP/3", {
        from: old.client.transport,
        addresses: previous.map(formatPrefix).join(","),
      });
      return true;
    } catch (error) {
      this.#counters.moveFailures.value++;
      this.#log.info(`staying on ${old.client.transport}`, {
        reason: `HTTP/3 not usable: ${errorMessage(error)}`,
      });
      if (live !== undefined && this.#live !== live) await live.client.close();
      return false;
    } finally {
      this.#moving = false;
    }
  }

  /** One session with `relay`, assigned; closed again when anything fails. */
  async #open(
    relay: RelayTarget,
    previous: readonly IpPrefix[],
    only?: { readonly transport: TransportName; readonly handshakeTimeoutMs?: number },
  ): Promise<LiveSession> {
    const timing = this.#options.timing ?? {};
    const number = ++this.#sessions;
    const log = this.#log.with({ session: number });
    const started = performance.now();
    log.info("connecting", { relay: relay.name, mode: this.#options.mode });
    const client = only === undefined
      ? await this.#openFirst(relay, log)
      : await this.#openOn(relay, only.transport, log, only.handshakeTimeoutMs);
    try {
      const session = client.session;
      log.info("session open", {
        relay: client.remote,
        transport: client.transport,
        reason: this.#transportReason,
      });
      // The inbound policy: only packets to our assigned addresses (RFC 9484 §7).
      const policy = { addresses: [] as readonly IpPrefix[] };
      const peer = new TunnelPeer(session, (packet) => checkFromRelay(packet, policy));
      const { assignment, ended, finished } = client.run(
        (packet) => this.#pump?.receive(peer, packet),
        timing.assignmentTimeoutMs ?? ASSIGNMENT_TIMEOUT_MS,
        (what) => this.#relayChanged(client, what),
        previous,
        timing.addressRequestWaitMs ?? ADDRESS_REQUEST_WAIT_MS,
      );
      const assigned = await assignment;
      policy.addresses = assigned.addresses;
      this.#counters.setupSeconds.observe((performance.now() - started) / 1000);
      this.#warnRoutes(assigned, log);
      return { number, relay, client, peer, assigned, ended, finished, openedAt: Date.now() };
    } catch (error) {
      await client.close();
      throw error;
    }
  }

  /**
   * The tunnel for `client`'s session: the routing plan from what the relay
   * advertised, `--route`, the relay's address and the DNS servers (the
   * relay's plain ones, `--dns`, or none), and the resolver settings.
   */
  #tunnelConfig(client: ClientSession, addresses: readonly IpPrefix[]): TunnelConfig {
    const options = this.#options;
    const configured = options.dns ?? "relay";
    const fromRelay = configured === "relay" ? client.dns ?? [] : [];
    const servers = configured === "relay"
      ? plainDnsServers(fromRelay)
      : configured === "off"
      ? []
      : [...configured];
    const relayAddress = client.relayAddress;
    if (relayAddress === undefined) {
      throw new Error("Cannot plan routing: the relay's address is not an IP address");
    }
    const plan = planRouting({
      advertised: client.routes ?? [],
      wanted: options.routes,
      assigned: addresses,
      relayAddresses: [relayAddress],
      dnsServers: servers,
    }, this.fullTunnelOptions);
    const searchDomains = [...new Set(fromRelay.flatMap((c) => c.searchDomains))];
    return {
      addresses,
      plan,
      relay: { address: relayAddress, port: client.relayPort, protocol: client.relayProtocol },
      dns: plan.dnsServers.length > 0
        ? { servers: plan.dnsServers.map(formatIp), searchDomains }
        : undefined,
    };
  }

  /** Logs `live`'s assignment and the tunnel planned for it. */
  #logAssigned(live: LiveSession, config: TunnelConfig): void {
    const log = this.#log.with({ session: live.number });
    log.info("assigned", {
      addresses: live.assigned.addresses.map(formatPrefix).join(","),
      routes: describeRoutes(config.plan),
      full: config.plan.full.map((v) => `IPv${v}`).join(",") || "none",
      dns: config.dns?.servers.join(",") ?? "none",
    });
    for (const note of config.plan.notes) log.info(note);
  }

  /**
   * `client`'s relay sent new routes, DNS or PREF64: the tunnel follows, one
   * change at a time, if `client` is (by then) the session in use.
   */
  #relayChanged(client: ClientSession, what: RelayUpdate): void {
    if (what === "pref64") {
      this.#log.info("NAT64 prefixes from the relay (not used)", {
        pref64: client.pref64.map(formatPrefix).join(",") || "none",
      });
      return;
    }
    this.#updates = this.#updates.then(async () => {
      const info = this.#host.info;
      if (info === undefined || this.#stopped || this.#live?.client !== client) return;
      const config = this.#tunnelConfig(client, this.#host.addresses);
      // Already in what the setup used (it came during the MTU wait).
      if (sameTunnel(config, info)) return;
      this.#log.info(what === "dns" ? "DNS from the relay" : "routes from the relay", {
        routes: describeRoutes(config.plan),
        dns: config.dns?.servers.join(",") ?? "none",
      });
      await this.#host.update(config);
    }).catch((error) => {
      this.#log.warn("cannot change the tunnel", { error: errorMessage(error) });
    });
  }

  /** The transport in use and why it was chosen (`--transport`, a fallback, a move back). */
  get transport(): { readonly name: TransportName | undefined; readonly reason: string } {
    return { name: this.#live?.client.transport, reason: this.#transportReason };
  }

  /** Waits until the setup and the changes queued so far (a late DNS_ASSIGN, a reconnect) are done. */
  settled(): Promise<void> {
    return this.#updates;
  }

  /** Warns about each `--route` the relay does not advertise (it is not routed). */
  #warnRoutes(assigned: Assignment, log: Logger): void {
    const versions = new Set(assigned.addresses.map((prefix) => prefix.version));
    const ranges = assigned.routes.filter((range) => versions.has(range.version));
    for (const wanted of this.#options.routes) {
      const within = routesWithin(ranges, [wanted]);
      const whole = within.length === 1 && formatPrefix(within[0]) === formatPrefix(wanted);
      if (whole) continue;
      const advertised = ranges.length === 0
        ? "nothing of its IP version"
        : routesWithin(ranges, []).map(formatPrefix).join(", ");
      log.warn(
        within.length === 0
          ? `--route ${formatPrefix(wanted)} is outside what the relay advertises ` +
            `(${advertised}): it is not routed through the tunnel`
          : `--route ${formatPrefix(wanted)} is only partly within what the relay advertises ` +
            `(${advertised}): only ${within.map(formatPrefix).join(", ")} is routed`,
      );
    }
  }

  /** Makes `live` the session the pump sends on, and watches for its end. */
  #use(live: LiveSession): void {
    this.#live = live;
    this.#peer = live.peer;
    this.#state = "up";
    live.ended.then((end) => this.#lost(live, end));
    // `auto` on HTTP/2: HTTP/3 again later, make before break.
    this.#scheduleMoveBack();
  }

  /**
   * `live` ended (or the relay sent GOAWAY on it): unless the user stopped
   * the client, reconnect. After GOAWAY the old session keeps carrying
   * packets until the new one is up or it ends.
   */
  #lost(live: LiveSession, end: ClientSessionEnd): void {
    if (this.#stopped || this.#live !== live) return;
    const log = this.#log.with({ session: live.number });
    if (this.#options.reconnect === false || end.permanent) {
      if (end.permanent && this.#options.reconnect !== false) {
        log.warn("the relay ended the session: not reconnecting", { why: end.message });
      }
      this.#end(`${end.cause}: ${end.message}`);
      return;
    }
    this.#counters.reconnects[end.cause].value++;
    this.#lastError = end.message;
    const record: ReconnectRecord = {
      at: new Date().toISOString(),
      cause: end.cause,
      message: end.message,
    };
    this.#history.push(record);
    if (this.#history.length > RECONNECT_HISTORY) this.#history.shift();
    if (end.cause === "goaway") {
      log.info("relay is draining: reconnecting now", { relay: live.relay.name });
      // The old session still carries packets; when it is over, nothing does.
      live.finished.then(() => {
        if (this.#live === live && !this.#stopped) this.#down(live);
      });
      this.#reconnect(record, live, 0);
      return;
    }
    log.warn("session lost: reconnecting", { cause: end.cause, why: end.message });
    this.#down(live);
    this.#reconnect(record, undefined, 1);
  }

  /** No session carries packets: those for the tunnel's routes are dropped (`no session`). */
  #down(live: LiveSession): void {
    if (this.#live === live) {
      this.#live = undefined;
      this.#peer = undefined;
      if (!this.#stopped) this.#state = "reconnecting";
    }
    // Close it for good (FIN and CONNECTION_CLOSE), so the relay frees its addresses now.
    live.client.close();
  }

  /**
   * Tries the relays in order until one gives a session, waiting
   * {@linkcode backoffDelay} before each round (none before the first after
   * GOAWAY), then puts it in place of `old` (if still there).
   */
  async #reconnect(record: ReconnectRecord, old: LiveSession | undefined, firstAttempt: number) {
    if (this.#reconnecting) return;
    this.#reconnecting = true;
    if (old === undefined) this.#state = "reconnecting";
    const lostAt = Date.now();
    const previous = [...this.#host.addresses];
    const backoff = this.#options.timing?.backoff ?? backoffDelay;
    try {
      for (let attempt = firstAttempt; !this.#stopped; attempt++) {
        await this.#sleep(attempt === 0 ? 0 : backoff(attempt - 1));
        if (this.#stopped) return;
        let live: LiveSession;
        try {
          live = await this.#openAny(previous);
        } catch (error) {
          if (error instanceof RefusedEverywhere) {
            // Trying again would be refused again, and counted against this
            // source by the relay's failure limiter.
            this.#log.error("every relay refused the reconnect: stopping", {
              error: errorMessage(error.cause),
            });
            this.#end(`reconnect refused: ${errorMessage(error.cause)}`);
            return;
          }
          this.#log.warn("reconnect failed", { attempt: attempt + 1, error: errorMessage(error) });
          continue;
        }
        if (this.#stopped) {
          live.client.close();
          return;
        }
        // In turn with the relay's updates, so the tunnel changes one step at a time.
        const replaced = this.#updates.then(() => this.#replace(live, record, lostAt, previous));
        this.#updates = replaced.catch(() => {});
        await replaced;
        if (old !== undefined && this.#live !== old) old.client.close();
        return;
      }
    } finally {
      this.#reconnecting = false;
    }
  }

  /**
   * Puts `live` in place: the TUN's addresses and the routing changed in
   * place where they differ (the hooks, such as the kill switch, told).
   */
  async #replace(
    live: LiveSession,
    record: ReconnectRecord,
    lostAt: number,
    previous: readonly IpPrefix[],
  ): Promise<void> {
    if (this.#stopped) {
      live.client.close();
      return;
    }
    const log = this.#log.with({ session: live.number });
    const same = previous.length === live.assigned.addresses.length &&
      previous.every((p) =>
        live.assigned.addresses.some((a) => formatPrefix(a) === formatPrefix(p))
      );
    try {
      const config = this.#tunnelConfig(live.client, live.assigned.addresses);
      this.#logAssigned(live, config);
      if (await this.#host.update(config)) {
        log.info("tunnel updated in place", {
          addresses: this.#host.addresses.map(formatPrefix).join(","),
          routes: describeRoutes(config.plan),
        });
      }
    } catch (error) {
      log.warn("cannot update the tunnel in place", { error: errorMessage(error) });
    }
    const old = this.#live;
    this.#use(live);
    if (old !== undefined && old !== live) old.client.close();
    record.downMs = Date.now() - lostAt;
    record.relay = live.relay.name;
    record.sameAddresses = same;
    this.#lastError = undefined;
    log.info("reconnected", {
      relay: live.relay.name,
      afterMs: record.downMs,
      sameAddresses: same,
    });
  }

  /** Waits `ms`, or less when the client stops. */
  #sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#wakers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#wakers.add(wake);
    });
  }

  /**
   * The first TUN MTU: the configured one, or with `auto` the largest packet
   * the session carries now (datagram mode; raised later as it grows) or
   * 1500 (stream mode). Waits up to `waitMs` for QUIC's path MTU discovery
   * when the path does not yet carry 1280 (RFC 9484 §10.1: the tunnel must
   * carry the IPv6 minimum).
   */
  async #chooseMtu(session: ConnectIpSession, waitMs: number): Promise<number> {
    const configured = this.#options.mtu;
    if (session.mode === "stream") return configured === "auto" ? AUTO_MTU_MAX : configured;
    const wanted = configured === "auto" ? AUTO_MTU_MIN : configured;
    const deadline = Date.now() + waitMs;
    while (session.maxPacketSize < wanted && Date.now() < deadline && !this.#stopped) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const carried = session.maxPacketSize;
    if (carried < wanted) {
      this.#log.warn(
        "the QUIC path carries smaller packets than the TUN MTU; larger ones get Packet Too Big",
        { mtu: wanted, maxPacket: carried },
      );
    }
    return configured === "auto" ? autoMtu(carried) : configured;
  }

  /**
   * What follows the session's datagram limit every `intervalMs` (the
   * session in use then: it changes on a reconnect). With TUN offloads, the
   * TUN's packet limit: TCP super-packets are cut to what the session
   * carries (it can shrink below the MTU, or grow with path MTU discovery).
   * With `followMtu` (`--mtu auto` in datagram mode), the link MTU: QUIC's
   * path MTU discovery keeps raising the datagram limit after the session
   * opened (from about 1290 to 1414 on a 1500-byte path); the TUN MTU
   * follows it up, never down (a smaller path gets Packet Too Big).
   */
  #follow(followMtu: boolean, intervalMs: number): void {
    const tun = this.#host.tun;
    const limit = () => this.#live?.client.session.maxPacketSize;
    const first = limit();
    if (first !== undefined) tun?.setPacketLimit?.(first);
    if (!followMtu && tun?.setPacketLimit === undefined) return;
    this.#followTimer = setInterval(() => {
      const carried = limit();
      if (carried === undefined) return;
      tun?.setPacketLimit?.(carried);
      if (!followMtu) return;
      const next = autoMtu(carried);
      const mtu = this.#host.mtu;
      if (next <= mtu) return;
      try {
        this.#host.setMtu(next);
        this.#log.info("TUN MTU raised", { from: mtu, to: next });
      } catch (error) {
        this.#log.warn("cannot raise the TUN MTU", { to: next, error: errorMessage(error) });
      }
    }, intervalMs);
  }

  /**
   * Takes the tunnel down (hooks, routing, TUN) and then ends the session
   * and the connection. `reason` tells the hooks whether the user stopped
   * the client (the kill switch goes) or it failed (the kill switch
   * stays). Idempotent.
   */
  async stop(reason: StopReason = "user"): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#state = "stopped";
    for (const wake of [...this.#wakers]) wake();
    clearInterval(this.#followTimer);
    clearTimeout(this.#retryTimer);
    this.#pump?.stop();
    this.#peer = undefined;
    // A change under way finishes first (never wait for a setup that is not running).
    if (this.#host.info !== undefined) await this.#updates;
    await this.#host.down(reason);
    const live = this.#live;
    this.#live = undefined;
    await live?.client.close();
  }

  /** The counts the "stopping" log line gives. */
  summary(): Record<string, number> {
    const value = (name: string, ...labels: string[]) => this.counters.value(name, ...labels);
    return {
      packetsOut: value("tunnel_packets_total", "outbound"),
      packetsIn: value("tunnel_packets_total", "inbound"),
      droppedOut: value("tunnel_packets_dropped_total", "outbound"),
      droppedIn: value("tunnel_packets_dropped_total", "inbound"),
      packetTooBig: value("tunnel_packet_too_big_total"),
      reconnects: value("client_reconnects_total"),
    };
  }

  /**
   * A JSON-friendly snapshot for the status file and `/status`: the state,
   * the relay, the tunnel, the session, the reconnects and every counter.
   */
  status(): Record<string, unknown> {
    const live = this.#live;
    const session = live?.client.session;
    const info = this.#host.info;
    return {
      role: "client",
      state: this.#state,
      relay: live?.relay.name,
      relayAddress: live?.client.remote,
      transport: live?.client.transport,
      transportReason: live === undefined ? undefined : this.#transportReason,
      relays: this.#relays.map((relay) => relay.name),
      sessionNumber: live?.number,
      since: live === undefined ? undefined : new Date(live.openedAt).toISOString(),
      tun: this.#host.tun?.name,
      mtu: this.#host.mtu,
      addresses: this.#host.addresses.map(formatPrefix),
      routes: (info?.routes ?? []).map(formatPrefix),
      routing: info && {
        table: info.plan.table,
        routes: info.plan.routes.map((r) => `${r.type} ${formatPrefix(r.destination)}`),
        full: info.plan.full.map((v) => `IPv${v}`),
        blocked: info.plan.blocked.map((v) => `IPv${v}`),
      },
      dns: info?.dns,
      pref64: live?.client.pref64.map(formatPrefix),
      mode: session?.mode ?? this.#options.mode,
      maxPacketSize: session?.maxPacketSize,
      session: session === undefined
        ? undefined
        : { ...session.stats, pendingCapsuleWrites: session.pendingCapsuleWrites },
      reconnects: this.#history,
      lastError: this.#lastError,
      counters: this.counters.snapshot(),
    };
  }
}

/**
 * `promise`, or a rejection after `ms` milliseconds; a value that comes
 * after that goes to `late` (to close a connection nobody waits for).
 */
function withTimeout<T>(promise: Promise<T>, ms: number, late?: (value: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      reject(new Error(`no QUIC handshake within ${ms / 1000} s`));
    }, ms);
    promise.then((value) => {
      clearTimeout(timer);
      if (timedOut) late?.(value);
      else resolve(value);
    }, (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** A random 128-bit client key, base64url without padding (22 characters). */
function randomKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let text = btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
  while (text.endsWith("=")) text = text.slice(0, -1);
  return text;
}
