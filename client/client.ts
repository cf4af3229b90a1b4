/**
 * The client's core, beside the relay's `Relay`: dial the relay, open the
 * CONNECT-IP session, wait for the assignment, pick the MTU, bring up the
 * TUN with the addresses and routes, and pump packets until the session or
 * connection ends. Everything that touches the host is passed in (the QUIC
 * dialer, the TUN opener, the netlink operations), so a test runs a
 * `Client` against a `Relay` on 127.0.0.1 with in-memory TUNs and no root.
 * `client/main.ts` only wires it to the real ones, the config, signals and
 * the status file.
 *
 * Two halves with different lifetimes:
 * - {@linkcode TunnelHost}: the TUN, its addresses, the policy routing
 *   (a table of the client's own and FIB rules, `client/routing.ts`, as
 *   `shared/tunnel/full_tunnel.ts` plans it), and the pump; long-lived. Its
 *   {@linkcode TunnelHooks} hold the rest of the full tunnel (kill switch
 *   and DNS, `client/full_tunnel.ts`).
 * - {@linkcode ClientSession}: the QUIC connection, HTTP/3 and the
 *   session; replaceable. Reconnecting (issue 11) opens a new one, asks
 *   for the previous addresses with ADDRESS_REQUEST, and points the pump's
 *   router at its peer, with the host untouched.
 *
 * Setup, in order ({@linkcode Client.start}):
 *   stale routing of a killed client removed -> hooks' prepare (DNS
 *   recovery, kill switch with `--kill-switch on`) -> connect ->
 *   H3Connection.start -> openConnectIpSession (extended CONNECT)
 *   -> ADDRESS_ASSIGN + ROUTE_ADVERTISEMENT (RFC 9484 §4.7) -> planRouting
 *   -> MTU (`--mtu`, or auto: what the session carries, 1280..1500)
 *   -> TunnelHost.up: open TUN, MTU, txqueuelen, addresses, link up,
 *      routing plan, hooks -> pump: TUN loop, session packets
 * A DNS_ASSIGN (draft-ietf-masque-connect-ip-dns), which a relay sends
 * after its routes, or a new ROUTE_ADVERTISEMENT changes the plan in place
 * ({@linkcode TunnelHost.update}).
 *
 * @module
 */

import { bringUpLink } from "../host/link.ts";
import type { LinkOps } from "../host/link.ts";
import { CounterRegistry } from "../shared/counters.ts";
import { errorMessage } from "../shared/errors.ts";
import { H3Connection } from "../shared/h3/connection.ts";
import type { QuicCloseInfoLike, QuicConnLike } from "../shared/h3/quic.ts";
import { describeClose } from "../shared/h3/quic.ts";
import { clientSettings, SETTINGS_H3_DATAGRAM } from "../shared/h3/settings.ts";
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
import type { Logger } from "../shared/log.ts";
import type { HeaderField } from "../shared/h3/qpack.ts";
import { expandConnectIpPath } from "../shared/masque/connect_ip_request.ts";
import { SessionCounters } from "../shared/masque/connect_ip_session.ts";
import type { PacketMode, SessionEnd } from "../shared/masque/connect_ip_session.ts";
import { openConnectIpSession } from "../shared/masque/h3_connect_ip.ts";
import type { H3ConnectIpSession } from "../shared/masque/h3_connect_ip.ts";
import type { PacketDevice } from "../shared/tunnel/packet_device.ts";
import { checkFromRelay } from "../shared/tunnel/packet_policy.ts";
import { PumpCounters, TunnelPeer, TunnelPump } from "../shared/tunnel/pump.ts";
import type { PeerRouter } from "../shared/tunnel/pump.ts";
import { AUTO_MTU_MAX, AUTO_MTU_MIN, autoMtu, describeSessionEnd } from "./tunnel.ts";
import type { Assignment } from "./tunnel.ts";
import type { DnsSettings } from "./dns.ts";

/** What the client needs of rtnetlink for its link: `ffi/netlink.ts`'s functions are these. */
export type ClientNetlink = LinkOps;

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

/** What the tunnel is made of, given to {@linkcode TunnelHost.up} and `update`. */
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
 * swap, which runs `update` when something changed.
 */
export interface TunnelHooks {
  /** At start, before the first connection. A throw fails the start. */
  prepare?(): void | Promise<void>;
  /** After the TUN is up with its addresses and routing. A throw fails the setup. */
  up?(tunnel: TunnelInfo): void | Promise<void>;
  /** The tunnel changed in place (DNS servers, routes, the relay's address). */
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
 * {@linkcode up} did, also after a failure half way.
 */
export class TunnelHost {
  readonly #options: TunnelHostOptions;
  #tun: ClientTun | undefined;
  #mtu = 0;
  #routing: InstalledPlan | undefined;
  #info: TunnelInfo | undefined;
  readonly #hooksUp: TunnelHooks[] = [];
  #down = false;

  constructor(options: TunnelHostOptions) {
    this.#options = options;
  }

  /** The TUN, once {@linkcode up} opened it. */
  get tun(): ClientTun | undefined {
    return this.#tun;
  }

  /** The TUN's link MTU now, bytes (0 before {@linkcode up}). */
  get mtu(): number {
    return this.#mtu;
  }

  /** The routing plan in place, once {@linkcode up} installed it. */
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
   * Opens the TUN with packet slots of `capacity` bytes, brings its link up
   * with `mtu` and the addresses (`host/link.ts`), installs the routing
   * plan, then runs the hooks. Throws with what failed; call
   * {@linkcode down} to undo.
   */
  async up(config: TunnelConfig, mtu: number, capacity: number): Promise<ClientTun> {
    if (this.#tun !== undefined || this.#down) throw new Error("Cannot bring the tunnel up twice");
    const { netlink, log } = this.#options;
    const tun = this.#options.openTun(this.#options.name, { mtu: capacity, log });
    this.#tun = tun;
    bringUpLink(netlink, tun.name, mtu, config.addresses);
    this.#mtu = mtu;
    this.#routing = this.#options.routing.install(config.plan, tun.name);
    const info = this.#describe(config);
    for (const hooks of this.#options.hooks ?? []) {
      if (!this.#hooksUp.includes(hooks)) this.#hooksUp.push(hooks);
      await hooks.up?.(info);
    }
    return tun;
  }

  /**
   * Changes the routing plan in place and tells the hooks (new DNS
   * servers, routes, or relay address after a reconnect). Throws the first
   * failure; the routing then stays as it was where it could.
   */
  async update(config: TunnelConfig): Promise<void> {
    if (this.#routing === undefined || this.#down) return;
    this.#routing.update(config.plan);
    const info = this.#describe(config);
    for (const hooks of this.#hooksUp) await hooks.update?.(info);
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

/** Options of {@linkcode ClientSession.open}. */
export interface ClientSessionOptions {
  readonly connect: () => Promise<DialedConnection>;
  /** `:authority` of the request. */
  readonly authority: string;
  /** URI template of the relay (expanded for any target and protocol). */
  readonly template: string;
  readonly mode: PacketMode;
  /** Fields added to the request: the credentials (`proxy-authorization`). */
  readonly headers?: readonly HeaderField[];
  readonly log: Logger;
  /** The registry the connection counts in. */
  readonly counters: CounterRegistry;
  /** The session's counters, resolved from the same registry. */
  readonly sessionCounters: SessionCounters;
}

/** What changed in what the relay told a session, after its assignment. */
export type RelayUpdate = "routes" | "dns" | "pref64";

/**
 * The replaceable half of the client: one QUIC connection, HTTP/3 on it,
 * and the CONNECT-IP session; see the module docs.
 */
export class ClientSession {
  readonly h3: H3Connection;
  readonly session: H3ConnectIpSession;
  /** The relay's address, IPv4-mapped addresses unmapped (undefined for a name). */
  readonly relayAddress: Uint8Array | undefined;
  /** The relay's UDP port. */
  readonly relayPort: number;
  /** The relay's last ROUTE_ADVERTISEMENT (RFC 9484 §4.7.3). */
  routes: readonly IpAddressRange[] | undefined;
  /** The relay's last DNS_ASSIGN (draft-ietf-masque-connect-ip-dns-05 §3.4), if any. */
  dns: readonly DnsConfiguration[] | undefined;
  /** The relay's last PREF64 (draft §4): NAT64 prefixes, reported only. */
  pref64: readonly IpPrefix[] = [];
  /** DNS_ASSIGN capsules ignored because no ROUTE_ADVERTISEMENT came before them (draft §7). */
  dnsIgnored = 0;
  readonly #log: Logger;

  private constructor(
    h3: H3Connection,
    session: H3ConnectIpSession,
    relay: { hostname: string; port: number },
    log: Logger,
  ) {
    this.h3 = h3;
    this.session = session;
    const address = parseIp(relay.hostname);
    this.relayAddress = address && unmapIpv4(address);
    this.relayPort = relay.port;
    this.#log = log;
  }

  /**
   * Dials the relay, starts HTTP/3 (in stream mode advertising
   * SETTINGS_H3_DATAGRAM = 0, so the relay sends capsules) and opens the
   * session. Throws a clear error; closes what it opened on failure.
   */
  static async open(options: ClientSessionOptions): Promise<ClientSession> {
    const conn = await options.connect();
    const settings = new Map(clientSettings());
    // In stream mode we tell the relay not to send HTTP Datagrams (RFC 9297 §2.1.1).
    if (options.mode === "stream") settings.set(SETTINGS_H3_DATAGRAM, 0);
    const h3 = new H3Connection(conn, {
      role: "client",
      settings,
      log: options.log,
      counters: options.counters,
    });
    try {
      await h3.start();
      const session = await openConnectIpSession(h3, {
        authority: options.authority,
        path: expandConnectIpPath(options.template, {
          target: { kind: "any" },
          ipProtocol: "any",
        }),
        mode: options.mode,
        headers: options.headers,
        log: options.log,
        counters: options.sessionCounters,
      });
      return new ClientSession(h3, session, conn.remoteAddr, options.log);
    } catch (error) {
      h3.close();
      throw error;
    }
  }

  /**
   * Runs the session, handing its packets to `onPacket`, and resolves once
   * an ADDRESS_ASSIGN with at least one address (of either family or both)
   * and a ROUTE_ADVERTISEMENT have arrived (RFC 9484 §4.7); an empty
   * ADDRESS_ASSIGN assigns nothing yet. Later ROUTE_ADVERTISEMENT,
   * DNS_ASSIGN and PREF64 capsules update {@linkcode routes},
   * {@linkcode dns} and {@linkcode pref64} and call `onUpdate`. A
   * DNS_ASSIGN before any ROUTE_ADVERTISEMENT is ignored: the draft's
   * security section forbids sending one, since it could point the client
   * at a nameserver outside the tunnel. `ended` resolves when the session
   * ends, with why.
   */
  run(
    onPacket: (packet: Uint8Array) => void,
    timeoutMs: number,
    onUpdate: (what: RelayUpdate) => void = () => {},
  ): { assignment: Promise<Assignment>; ended: Promise<SessionEnd> } {
    let resolve!: (assignment: Assignment) => void;
    let reject!: (error: Error) => void;
    const assignment = new Promise<Assignment>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    let addresses: IpPrefix[] | undefined;
    let assigned = false;
    const timer = setTimeout(() => {
      const missing = [
        ...(addresses ? [] : ["an ADDRESS_ASSIGN with an address"]),
        ...(this.routes ? [] : ["a ROUTE_ADVERTISEMENT"]),
      ];
      reject(
        new Error(`The relay sent no ${missing.join(" and no ")} within ${timeoutMs / 1000} s`),
      );
    }, timeoutMs);
    const onCapsule = (capsule: Capsule) => {
      let update: RelayUpdate | undefined;
      if (capsule.type === "address_assign" && capsule.addresses.length > 0) {
        addresses = capsule.addresses.map((a) => a.prefix);
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
      } else if (addresses && this.routes) {
        assigned = true;
        clearTimeout(timer);
        resolve({ addresses, routes: this.routes });
      }
    };
    const ended = this.session.run({ onPacket, onCapsule });
    ended.then((end) => {
      clearTimeout(timer);
      reject(new Error(`Session ended before the relay assigned addresses: ${end.message}`));
    });
    return { assignment, ended };
  }

  /** Ends the session (FIN) and closes the connection with H3_NO_ERROR. */
  async close(): Promise<void> {
    await this.session.close().catch(() => {});
    this.h3.close();
  }
}

/** Whether `config` asks for nothing that `info` does not already have. */
function sameTunnel(config: TunnelConfig, info: TunnelInfo): boolean {
  const change = diffRoutingPlans(info.plan, config.plan);
  const endpoint = (c: TunnelConfig) => `${formatIp(c.relay.address)}:${c.relay.port}`;
  return change.addRoutes.length + change.deleteRoutes.length + change.addRules.length +
          change.deleteRules.length === 0 &&
    endpoint(config) === endpoint(info) &&
    JSON.stringify(config.dns ?? null) === JSON.stringify(info.dns ?? null);
}

/** The plan's routes for a log line: `198.18.1.0/24,unreachable ::/0`, or `none`. */
function describeRoutes(plan: RoutingPlan): string {
  return plan.routes.map((r) =>
    r.type === "tunnel" ? formatPrefix(r.destination) : `${r.type} ${formatPrefix(r.destination)}`
  ).join(",") || "none";
}

/** How long the client waits for its assignment, milliseconds. */
export const ASSIGNMENT_TIMEOUT_MS = 10_000;
/** How long to wait for path MTU discovery to allow 1280-byte packets, milliseconds. */
export const PMTU_WAIT_MS = 3000;
/** How often `--mtu auto` compares the TUN MTU with the datagram limit, milliseconds. */
export const MTU_FOLLOW_INTERVAL_MS = 1000;

/** Options of {@linkcode Client}. */
export interface ClientOptions {
  /** Dials the relay (QUIC with ALPN h3); main.ts grows the socket's buffers first. */
  readonly connect: () => Promise<DialedConnection>;
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
  readonly authority: string;
  readonly template: string;
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
  /** Waits, milliseconds (tests shorten them). */
  readonly timing?: {
    readonly assignmentTimeoutMs?: number;
    readonly pmtuWaitMs?: number;
    readonly mtuFollowIntervalMs?: number;
  };
}

/**
 * The client; see the module docs. {@linkcode start}, then wait for
 * {@linkcode ended} (or a signal), then {@linkcode stop}.
 */
export class Client implements PeerRouter {
  readonly #options: ClientOptions;
  readonly #log: Logger;
  readonly #host: TunnelHost;
  readonly #pumpCounters: PumpCounters;
  readonly #sessionCounters: SessionCounters;
  #session: ClientSession | undefined;
  #peer: TunnelPeer | undefined;
  #pump: TunnelPump | undefined;
  #followTimer: ReturnType<typeof setInterval> | undefined;
  #ended: Promise<string> | undefined;
  #stopped = false;
  /** Resolves once the tunnel is up, or setup failed: changes wait for it. */
  #settledSetup!: () => void;
  /** Changes to the tunnel, one at a time, after the setup. */
  #updates: Promise<void> = new Promise((resolve) => this.#settledSetup = resolve);
  /** Every counter of the client: the pump's, HTTP/3's, the session's (and main.ts's TUN). */
  readonly counters: CounterRegistry;

  constructor(options: ClientOptions) {
    this.#options = options;
    this.#log = options.log;
    this.counters = options.counters ?? new CounterRegistry();
    this.#pumpCounters = new PumpCounters(this.counters);
    this.#sessionCounters = new SessionCounters(this.counters);
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

  /** The current session, once {@linkcode start} opened it. */
  get session(): ClientSession | undefined {
    return this.#session;
  }

  /**
   * Resolves, once the tunnel is up, with why it ended: the session ended
   * (by the relay, or a protocol error) or the connection closed. Never
   * rejects.
   */
  get ended(): Promise<string> {
    if (this.#ended === undefined) throw new Error("Cannot wait for the end: not started");
    return this.#ended;
  }

  /** The pump's router: every packet goes to the one session. */
  peerFor(_packet: Uint8Array): TunnelPeer | undefined {
    return this.#peer;
  }

  /**
   * Sets the tunnel up (see the module docs). Throws a clear error when a
   * step fails, having undone the steps before it.
   */
  async start(): Promise<void> {
    const options = this.#options;
    const log = this.#log;
    const timing = options.timing ?? {};
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
      const client = await ClientSession.open({
        connect: options.connect,
        authority: options.authority,
        template: options.template,
        mode: options.mode,
        headers: options.headers,
        log,
        counters: this.counters,
        sessionCounters: this.#sessionCounters,
      });
      this.#session = client;
      const session = client.session;
      log.info("session open", { stream: session.stream.streamId });
      // The inbound policy: only packets to our assigned addresses (RFC 9484 §7).
      const policy = { addresses: [] as readonly IpPrefix[] };
      const peer = new TunnelPeer(session, (packet) => checkFromRelay(packet, policy));
      const { assignment, ended } = client.run(
        (packet) => this.#pump?.receive(peer, packet),
        timing.assignmentTimeoutMs ?? ASSIGNMENT_TIMEOUT_MS,
        (what) => this.#relayChanged(what),
      );
      const assigned = await assignment;
      policy.addresses = assigned.addresses;
      const mtu = await this.#chooseMtu(timing.pmtuWaitMs ?? PMTU_WAIT_MS);
      // Planned after the MTU wait, so that a DNS_ASSIGN that came meanwhile is in.
      const config = this.#tunnelConfig(assigned.addresses);
      log.info("assigned", {
        addresses: assigned.addresses.map(formatPrefix).join(","),
        routes: describeRoutes(config.plan),
        full: config.plan.full.map((v) => `IPv${v}`).join(",") || "none",
        dns: config.dns?.servers.join(",") ?? "none",
      });
      for (const note of config.plan.notes) log.info(note);
      // With --mtu auto the link MTU is raised as the datagram limit grows, so
      // the TUN's packet slots are sized for the largest MTU auto picks.
      const follow = options.mtu === "auto" && session.mode === "datagram";
      const tun = await this.#host.up(config, mtu, follow ? Math.max(mtu, AUTO_MTU_MAX) : mtu);
      this.#settledSetup();
      log.info("tunnel up", { tun: tun.name, mtu, offload: tun.offload });
      this.#pump = new TunnelPump({ tun, router: this, counters: this.#pumpCounters, log });
      this.#peer = peer;
      this.#pump.runTun().catch((error) => {
        log.warn("TUN loop failed", { error: errorMessage(error) });
      });
      this.#follow(follow, timing.mtuFollowIntervalMs ?? MTU_FOLLOW_INTERVAL_MS);
      this.#ended = Promise.race([
        ended.then((end) => `session ended: ${describeSessionEnd(end, session)}`),
        client.h3.closed.then((info: QuicCloseInfoLike) =>
          `connection closed: ${describeClose(info)}`
        ),
      ]);
    } catch (error) {
      this.#settledSetup();
      await this.stop("failure");
      throw error;
    }
  }

  /**
   * The tunnel for the current session: the routing plan from what the
   * relay advertised, `--route`, the relay's address and the DNS servers
   * (the relay's plain ones, `--dns`, or none), and the resolver settings.
   */
  #tunnelConfig(addresses: readonly IpPrefix[]): TunnelConfig {
    const options = this.#options;
    const client = this.#session!;
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
      relay: { address: relayAddress, port: client.relayPort },
      dns: plan.dnsServers.length > 0
        ? { servers: plan.dnsServers.map(formatIp), searchDomains }
        : undefined,
    };
  }

  /** The relay sent new routes, DNS or PREF64: the tunnel follows, one change at a time. */
  #relayChanged(what: RelayUpdate): void {
    const client = this.#session;
    if (client === undefined) return;
    if (what === "pref64") {
      this.#log.info("NAT64 prefixes from the relay (not used)", {
        pref64: client.pref64.map(formatPrefix).join(",") || "none",
      });
      return;
    }
    this.#updates = this.#updates.then(async () => {
      const info = this.#host.info;
      if (info === undefined || this.#stopped || this.#session !== client) return;
      const config = this.#tunnelConfig(info.addresses);
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

  /** Waits until the setup and the changes queued so far (a late DNS_ASSIGN) are done. */
  settled(): Promise<void> {
    return this.#updates;
  }

  /**
   * The first TUN MTU: the configured one, or with `auto` the largest packet
   * the session carries now (datagram mode; raised later as it grows) or
   * 1500 (stream mode). Waits up to `waitMs` for QUIC's path MTU discovery
   * when the path does not yet carry 1280 (RFC 9484 §10.1: the tunnel must
   * carry the IPv6 minimum).
   */
  async #chooseMtu(waitMs: number): Promise<number> {
    const configured = this.#options.mtu;
    const session = this.#session!.session;
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
   * What follows the session's datagram limit every `intervalMs`. With TUN
   * offloads, the TUN's packet limit: TCP super-packets are cut to what the
   * session carries (it can shrink below the MTU, or grow with path MTU
   * discovery). With `mtu` (`--mtu auto` in datagram mode), the link MTU:
   * QUIC's path MTU discovery keeps raising the datagram limit after the
   * session opened (from about 1290 to 1414 on a 1500-byte path); the TUN
   * MTU follows it up, never down (a smaller path gets Packet Too Big).
   */
  #follow(followMtu: boolean, intervalMs: number): void {
    const session = this.#session!.session;
    const tun = this.#host.tun;
    tun?.setPacketLimit?.(session.maxPacketSize);
    if (!followMtu && tun?.setPacketLimit === undefined) return;
    this.#followTimer = setInterval(() => {
      tun?.setPacketLimit?.(session.maxPacketSize);
      if (!followMtu) return;
      const next = autoMtu(session.maxPacketSize);
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
    clearInterval(this.#followTimer);
    this.#pump?.stop();
    this.#peer = undefined;
    // A change under way finishes first (never wait for a setup that is not running).
    if (this.#host.info !== undefined) await this.#updates;
    await this.#host.down(reason);
    await this.#session?.close();
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
    };
  }

  /** A JSON-friendly snapshot for the status file: the tunnel, the session and every counter. */
  status(): Record<string, unknown> {
    const session = this.#session?.session;
    const info = this.#host.info;
    return {
      tun: this.#host.tun?.name,
      mtu: this.#host.mtu,
      routing: info && {
        table: info.plan.table,
        routes: info.plan.routes.map((r) => `${r.type} ${formatPrefix(r.destination)}`),
        full: info.plan.full.map((v) => `IPv${v}`),
        blocked: info.plan.blocked.map((v) => `IPv${v}`),
      },
      dns: info?.dns,
      pref64: this.#session?.pref64.map(formatPrefix),
      mode: session?.mode ?? this.#options.mode,
      maxPacketSize: session?.maxPacketSize,
      session: session === undefined
        ? undefined
        : { ...session.stats, pendingCapsuleWrites: session.pendingCapsuleWrites },
      counters: this.counters.snapshot(),
    };
  }
}
