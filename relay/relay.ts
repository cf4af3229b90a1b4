/**
 * The relay: admits CONNECT-IP requests on HTTP/3 connections and moves
 * their packets through one TUN device with the shared pump
 * (`shared/tunnel/pump.ts`, which lists the packet path's stages).
 *
 * What is the relay's own:
 * - connections: the handshake, total and per-source limits, and closing
 *   a connection that has had no session for `sessionlessTimeoutMs`;
 * - requests: `answerRequest` (HTTP/3), then admission in two steps
 *   (`relay/sessions.ts`: an asynchronous `authenticate`, a synchronous
 *   `admit` that reserves the slot and the addresses);
 * - sessions: ADDRESS_ASSIGN and ROUTE_ADVERTISEMENT, then DNS_ASSIGN with
 *   `--dns` (draft-ietf-masque-connect-ip-dns: never before the routes), ADDRESS_REQUEST
 *   answers, and a {@linkcode TunnelPeer} whose inbound policy is RFC 9484
 *   §7's checks on the client's packets (`checkFromClient`) and then the
 *   host firewall (not the relay host, not another client unless
 *   `--allow-client-to-client`);
 * - routing for the pump: the session that owns a destination address.
 *
 * The kernel decrements TTL when it forwards into or out of the TUN, so the
 * relay itself does only for the packets it passes between clients
 * (RFC 9484 §7). Everything here reaches the world through a
 * {@linkcode PacketDevice} and {@linkcode QuicConnLike}, so tests run it
 * with an in-memory TUN.
 *
 * @module
 */

import { counterByLabel, CounterRegistry } from "../shared/counters.ts";
import type { Collect, Counter, LabelSpec } from "../shared/counters.ts";
import { H3Connection } from "../shared/h3/connection.ts";
import type { QuicConnLike } from "../shared/h3/quic.ts";
import type { H3Limits } from "../shared/h3/connection.ts";
import { ConnectionLimiter, sourceKey } from "../shared/connection_limiter.ts";
import type { ConnectionRefusal } from "../shared/connection_limiter.ts";
import { errorMessage, H3_EXCESSIVE_LOAD, H3_NO_ERROR } from "../shared/errors.ts";
import type { Logger, LogLevel } from "../shared/log.ts";
import { AddressRequestAnswerer } from "../shared/masque/address_requests.ts";
import { LogLimiter } from "../shared/rate_limit.ts";
import { DEFAULT_RELAY_LIMITS } from "./limits.ts";
import type { RelayLimits } from "./limits.ts";
import type { ConnectIpScope } from "../shared/masque/connect_ip_request.ts";
import { SessionCounters } from "../shared/masque/connect_ip_session.ts";
import { answerRequest } from "../shared/masque/h3_connect_ip.ts";
import type { H3ConnectIpSession } from "../shared/masque/h3_connect_ip.ts";
import type { H3RequestStream } from "../shared/h3/request_stream.ts";
import type { IpAddressRange } from "../shared/ip/ip_address.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import { formatIp, formatPrefix } from "../shared/ip/ip_address.ts";
import { addressKey, destinationKey } from "../shared/ip/ip_header.ts";
import { checkFromClient } from "../shared/tunnel/packet_policy.ts";
import { HostFirewall, withDnsServices } from "../shared/tunnel/host_firewall.ts";
import { type DnsConfiguration, plainDnsConfiguration } from "../shared/masque/dns_capsule.ts";
import type { HostService } from "../shared/tunnel/host_firewall.ts";
import type { PacketDevice } from "../shared/tunnel/packet_device.ts";
import { PumpCounters, TunnelPeer, TunnelPump } from "../shared/tunnel/pump.ts";
import type { PeerRouter } from "../shared/tunnel/pump.ts";
import { prefixesToRanges, routesWithin } from "../shared/tunnel/routes.ts";
import { ALLOW_EVERYONE, Reservation, SessionAdmission } from "./sessions.ts";
import type { Authenticator, Identity } from "./sessions.ts";

/** What the relay needs from its configuration. */
export interface RelayOptions {
  /** Client address pools; `undefined` turns a family off. At least one is set. */
  readonly pool4?: IpPrefix;
  readonly pool6?: IpPrefix;
  /** Advertised routes; those of a family without a pool are not advertised. */
  readonly routes: readonly IpPrefix[];
  readonly template?: string;
  readonly maxSessions: number;
  readonly log: Logger;
  /** Caps on connections and control capsules; each missing one has its default. */
  readonly limits?: Partial<RelayLimits>;
  /** Services on the relay host that clients may reach at the gateway addresses (default none). */
  readonly allowRelayHost?: readonly HostService[];
  /** Let clients reach each other's addresses (default false). */
  readonly allowClientToClient?: boolean;
  /** HTTP/3 limits of each connection (buffered bytes, HEADERS and SETTINGS time limits). */
  readonly h3?: H3Limits;
  /** Step 1 of admission (`relay/sessions.ts`); default: everyone, as `anonymous`. */
  readonly authenticator?: Authenticator;
  /** The registry to count in (default: a new one, {@linkcode Relay.counters}). */
  readonly counters?: CounterRegistry;
  /**
   * Plain DNS for the clients (`--dns`, `--dns-search`), sent in a
   * DNS_ASSIGN capsule right after ROUTE_ADVERTISEMENT; a server on a
   * gateway address adds `udp/53` and `tcp/53` to `allowRelayHost`.
   */
  readonly dns?: {
    readonly servers: readonly Uint8Array[];
    readonly searchDomains: readonly string[];
  };
}

/** The peer address of a QUIC connection, as `Deno.QuicConn.remoteAddr` has it. */
export interface PeerAddress {
  readonly hostname: string;
  readonly port: number;
}

/**
 * The relay's own counters, resolved once from its registry: sessions,
 * connections and ADDRESS_REQUESTs. The packet counters are the pump's
 * (`PumpCounters`), the HTTP/3 ones the connections' (`H3Counters`).
 */
class RelayCounters {
  readonly sessionsOpened: Counter;
  readonly sessionsClosed: Counter;
  readonly sessionsRefused: Counter;
  readonly connectionsAccepted: Counter;
  readonly connectionsRefused: Readonly<Record<ConnectionRefusal, Counter>>;
  readonly handshakesFailed: Counter;
  readonly connectionsSessionless: Counter;
  readonly addressRequests: Counter;
  readonly addressAnswers: Counter;
  readonly addressRequestOverflows: Counter;

  constructor(registry: CounterRegistry) {
    const one = (name: string, help: string) => registry.counter(name, { help }).child();
    this.sessionsOpened = one("relay_sessions_opened_total", "CONNECT-IP sessions opened");
    this.sessionsClosed = one("relay_sessions_closed_total", "CONNECT-IP sessions closed");
    this.sessionsRefused = one(
      "relay_sessions_refused_total",
      "Requests answered with an error status instead of a session",
    );
    this.connectionsAccepted = one(
      "relay_connections_accepted_total",
      "QUIC connections that finished the handshake and were admitted",
    );
    this.connectionsRefused = counterByLabel(
      registry,
      "relay_connections_refused_total",
      "Connections refused, by the limit they would have passed: handshakes and " +
        "connections before the handshake, per-source right after it",
      "limit",
      ["handshakes", "connections", "per-source"],
    );
    this.handshakesFailed = one(
      "relay_handshakes_failed_total",
      "Handshakes that failed or timed out",
    );
    this.connectionsSessionless = one(
      "relay_connections_sessionless_total",
      "Connections closed for having no session for sessionlessTimeoutMs",
    );
    this.addressRequests = one(
      "relay_address_requests_total",
      "ADDRESS_REQUEST capsules received (RFC 9484 §4.7.2)",
    );
    this.addressAnswers = one(
      "relay_address_answers_total",
      "ADDRESS_ASSIGN answers to ADDRESS_REQUESTs sent (each may answer several)",
    );
    this.addressRequestOverflows = one(
      "relay_address_request_overflows_total",
      "Sessions closed because too many requested addresses waited for an answer",
    );
  }
}

/** One connection as the relay tracks it. */
interface ConnectionState {
  readonly h3: H3Connection;
  /** Its {@linkcode sourceKey} when the connection limiter counts it. */
  readonly source: string | undefined;
  /** Open sessions on it. */
  sessions: number;
  /** Closes it when it has had no session for `sessionlessTimeoutMs`. */
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** One client session as the relay tracks it. */
export interface RelaySession {
  readonly id: number;
  readonly session: H3ConnectIpSession;
  readonly identity: Identity;
  readonly addresses: readonly IpPrefix[];
  readonly routes: readonly IpAddressRange[];
  readonly remote: string;
  readonly openedAt: number;
  /** The session as the pump sees it, with its inbound policy. */
  readonly peer: TunnelPeer;
}

/** The relay's state: connections, admission, sessions, and the pump. */
export class Relay implements PeerRouter {
  readonly #options: RelayOptions;
  readonly #log: Logger;
  readonly #admission: SessionAdmission;
  readonly #authenticator: Authenticator;
  /** Address key (of each assigned address) -> session. */
  readonly #byAddress = new Map<number | string, RelaySession>();
  readonly #sessions = new Set<RelaySession>();
  readonly #connections = new Map<H3Connection, ConnectionState>();
  readonly #limits: RelayLimits;
  readonly #limiter: ConnectionLimiter;
  /** Repeated log lines about peers (refusals, idle closes) are limited per message. */
  readonly #logLimiter = new LogLimiter({ linesPerWindow: 5, windowMs: 10_000 });
  readonly #firewall: HostFirewall;
  readonly #pump: TunnelPump;
  readonly #counters: RelayCounters;
  readonly #sessionCounters: SessionCounters;
  readonly #dns: DnsConfiguration | undefined;
  #nextId = 1;
  #stopped = false;
  /**
   * Every counter of the relay: its own, the pump's, its connections' and
   * sessions' (and what `relay/main.ts` adds, such as the TUN's).
   */
  readonly counters: CounterRegistry;

  constructor(tun: PacketDevice, options: RelayOptions) {
    this.#options = options;
    this.#log = options.log;
    const pools = [options.pool4, options.pool6].filter((p) => p !== undefined);
    this.#admission = new SessionAdmission({ pools, maxSessions: options.maxSessions });
    this.#authenticator = options.authenticator ?? ALLOW_EVERYONE;
    this.#limits = Object.freeze({ ...DEFAULT_RELAY_LIMITS, ...options.limits });
    this.#limiter = new ConnectionLimiter(this.#limits);
    const gateways = this.gatewayAddresses.map((prefix) => prefix.address);
    const dnsServers = options.dns?.servers ?? [];
    this.#dns = dnsServers.length > 0
      ? plainDnsConfiguration(dnsServers, options.dns?.searchDomains ?? [])
      : undefined;
    this.#firewall = new HostFirewall({
      pools,
      gateways,
      allow: withDnsServices(options.allowRelayHost ?? [], dnsServers, gateways),
      clientToClient: options.allowClientToClient ?? false,
    });
    this.counters = options.counters ?? new CounterRegistry();
    this.#counters = new RelayCounters(this.counters);
    this.#sessionCounters = new SessionCounters(this.counters);
    this.#pump = new TunnelPump({
      tun,
      router: this,
      counters: new PumpCounters(this.counters),
      log: options.log,
    });
    const gauges: [string, string, Collect, LabelSpec?][] = [
      ["relay_sessions", "CONNECT-IP sessions open", () => this.#sessions.size],
      [
        "relay_connections",
        "QUIC connections open and in the handshake",
        () => ({ open: this.#connections.size, handshaking: this.#limiter.handshaking }),
        { name: "state", values: ["open", "handshaking"] },
      ],
      [
        "relay_connection_sources",
        "Sources (IPv4 address or IPv6 /64) with an open connection",
        () => this.#limiter.sources,
      ],
      [
        "relay_pool_addresses_in_use",
        "Client addresses assigned or reserved, by pool",
        () => ({ ipv4: this.#admission.inUse(4), ipv6: this.#admission.inUse(6) }),
        { name: "pool", values: ["ipv4", "ipv6"] },
      ],
    ];
    for (const [name, help, collect, label] of gauges) {
      this.counters.gauge(name, { help, collect, labels: label && [label] });
    }
  }

  /** The caps in force (the defaults with the options' overrides). */
  get limits(): RelayLimits {
    return this.#limits;
  }

  /** Connections now open and in the handshake, and sources with an open connection. */
  get connectionCounts(): { open: number; handshaking: number; sources: number } {
    return {
      open: this.#connections.size,
      handshaking: this.#limiter.handshaking,
      sources: this.#limiter.sources,
    };
  }

  /**
   * A new QUIC connection wants its handshake. Returns true and counts it
   * as handshaking (call {@linkcode endHandshake} when `accept()` settles),
   * or false when it would pass `maxHandshakes` or `maxConnections`: the
   * caller refuses it without reading anything from it (in Deno 2.9,
   * reading a `QuicIncoming`'s address consumes it). Counted and logged.
   */
  beginHandshake(): boolean {
    const refusal = this.#limiter.beginHandshake();
    if (refusal === undefined) return true;
    this.#refused(refusal, undefined);
    return false;
  }

  /** A handshake that {@linkcode beginHandshake} let start has settled; `error` if it failed. */
  endHandshake(error?: unknown): void {
    this.#limiter.endHandshake();
    if (error !== undefined) {
      this.#counters.handshakesFailed.value++;
      this.#logLimited("debug", "handshake failed", { error: String(error) });
    }
  }

  /**
   * Serves a connection whose handshake has finished, unless its source (an
   * IPv4 address or IPv6 /64, {@linkcode sourceKey}) already has
   * `maxConnectionsPerSource` open connections: then it is closed with
   * H3_EXCESSIVE_LOAD, counted and logged, and `undefined` returned.
   */
  admitConnection(conn: QuicConnLike, peer: PeerAddress): H3Connection | undefined {
    const source = sourceKey(peer.hostname);
    const refusal = this.#limiter.admit(source);
    if (refusal !== undefined) {
      this.#refused(refusal, source);
      try {
        conn.close({
          closeCode: H3_EXCESSIVE_LOAD,
          reason: refusal === "per-source"
            ? "too many connections from this address"
            : "too many connections",
        });
      } catch {
        // already closed
      }
      return undefined;
    }
    this.#counters.connectionsAccepted.value++;
    try {
      return this.#serve(conn, `${peer.hostname}:${peer.port}`, source);
    } catch (error) {
      this.#limiter.release(source);
      throw error;
    }
  }

  #refused(refusal: ConnectionRefusal, source: string | undefined): void {
    this.#counters.connectionsRefused[refusal].value++;
    this.#logLimited("info", "connection refused", {
      limit: refusal,
      source,
      open: this.#connections.size,
      handshaking: this.#limiter.handshaking,
    });
  }

  /**
   * Logs at most a few lines per message every 10 s; a line after some were
   * held back says how many (`suppressed`).
   */
  #logLimited(
    level: LogLevel,
    message: string,
    fields: Record<string, string | number | undefined>,
  ) {
    if (!this.#log.enabled(level)) return;
    const suppressed = this.#logLimiter.allow(message, performance.now());
    if (suppressed === undefined) return;
    this.#log[level](message, suppressed > 0 ? { ...fields, suppressed } : fields);
  }

  /**
   * Tells the firewall every local address and prefix of the relay host
   * (its local, broadcast and anycast routes), which no client may reach
   * (see `shared/tunnel/host_firewall.ts`). Returns whether they changed.
   */
  setHostPrefixes(prefixes: readonly IpPrefix[]): boolean {
    return this.#firewall.setHostPrefixes(prefixes);
  }

  /**
   * The relay's own TUN addresses: the first host of each pool with the
   * pool's prefix length (`198.18.100.1/24`), so the kernel routes the whole
   * pool to the TUN.
   */
  get gatewayAddresses(): readonly IpPrefix[] {
    return this.#admission.pools.map((pool) => ({
      version: pool.prefix.version,
      address: pool.gateway,
      prefixLength: pool.prefix.prefixLength,
    }));
  }

  /**
   * The services clients may reach at the gateway addresses:
   * `allowRelayHost`, plus `udp/53` and `tcp/53` when a `dns` server is a
   * gateway address (the host's nftables input chain takes the same list).
   */
  get hostServices(): readonly HostService[] {
    return this.#firewall.services;
  }

  /** The sessions now open. */
  get sessions(): readonly RelaySession[] {
    return [...this.#sessions];
  }

  /** Addresses in use in each pool. */
  get poolUsage(): { v4: number; v6: number } {
    return { v4: this.#admission.inUse(4), v6: this.#admission.inUse(6) };
  }

  /**
   * Serves HTTP/3 on a new QUIC connection from `remote`, outside the
   * connection limits (see {@linkcode admitConnection}); the other caps apply.
   */
  acceptConnection(conn: QuicConnLike, remote: string): H3Connection {
    return this.#serve(conn, remote, undefined);
  }

  #serve(conn: QuicConnLike, remote: string, source: string | undefined): H3Connection {
    const log = this.#log.with({ peer: remote });
    const h3 = new H3Connection(conn, {
      ...this.#options.h3,
      role: "server",
      log,
      counters: this.counters,
      onRequest: (request) => {
        this.#serveRequest(state, request, remote, log).catch((error) => {
          log.warn("request failed", { error: errorMessage(error) });
        });
      },
    });
    const state: ConnectionState = { h3, source, sessions: 0, timer: undefined };
    this.#connections.set(h3, state);
    this.#armSessionless(state);
    h3.onClose((info) => {
      this.#connections.delete(h3);
      clearTimeout(state.timer);
      state.timer = undefined;
      if (source !== undefined) this.#limiter.release(source);
      log.debug("connection closed", { code: info.closeCode, reason: info.reason });
    });
    h3.start().catch((error) => {
      log.warn("connection setup failed", { error: errorMessage(error) });
    });
    return h3;
  }

  /** Starts the sessionless timer of a connection that has no open session. */
  #armSessionless(state: ConnectionState): void {
    if (this.#stopped || state.sessions > 0 || state.timer !== undefined) return;
    const ms = this.#limits.sessionlessTimeoutMs;
    state.timer = setTimeout(() => {
      state.timer = undefined;
      if (state.sessions > 0 || !this.#connections.has(state.h3)) return;
      this.#counters.connectionsSessionless.value++;
      this.#logLimited("info", "closing connection without a session", {
        seconds: ms / 1000,
        source: state.source,
      });
      state.h3.close(H3_NO_ERROR, `no session for ${ms / 1000} s`);
    }, ms);
  }

  async #serveRequest(
    state: ConnectionState,
    request: H3RequestStream,
    remote: string,
    log: Logger,
  ): Promise<void> {
    // Admission in two steps (relay/sessions.ts): authenticate may await;
    // admit reserves the slot and the addresses synchronously right after,
    // so concurrent requests cannot all pass the limits. A request the relay
    // cannot serve gets its status and no session, rather than a 200 and a
    // session closed at once.
    let reservation: Reservation | undefined;
    let answer: Awaited<ReturnType<typeof answerRequest>>;
    try {
      answer = await answerRequest(request, {
        template: this.#options.template,
        log,
        counters: this.#sessionCounters,
        authorize: async (scope) => {
          const auth = await this.#authenticator.authenticate({
            headers: request.headers,
            scope,
            remote,
          });
          if (!auth.ok) return { accept: false, status: auth.status, reason: auth.reason };
          if (this.#stopped) return { accept: false, status: 503, reason: "relay stopping" };
          const admitted = this.#admission.admit(auth.identity, scope);
          if (!(admitted instanceof Reservation)) {
            return { accept: false, status: admitted.status, reason: admitted.reason };
          }
          reservation = admitted;
          return { accept: true };
        },
      });
    } catch (error) {
      reservation?.release();
      throw error;
    }
    if (!answer.session) {
      // Refused before or in authorize, which then reserved nothing.
      this.#counters.sessionsRefused.value++;
      log.info("request refused", { status: answer.status, reason: answer.reason });
      return;
    }
    if (reservation === undefined) throw new Error("Cannot open session: nothing reserved");
    try {
      await this.#runSession(state, answer.session, answer.scope, reservation, remote, log);
    } finally {
      reservation.release();
    }
  }

  async #runSession(
    state: ConnectionState,
    session: H3ConnectIpSession,
    scope: ConnectIpScope,
    reservation: Reservation,
    remote: string,
    log: Logger,
  ): Promise<void> {
    const addresses = reservation.addresses;
    const routes = this.#routesFor(scope);
    const policy = { addresses, routes };
    const firewall = this.#firewall;
    const entry: RelaySession = {
      id: this.#nextId++,
      session,
      identity: reservation.identity,
      addresses,
      routes,
      remote,
      openedAt: Date.now(),
      // RFC 9484 §7's checks on the client's packets, then the host firewall.
      peer: new TunnelPeer(session, (packet) => {
        const verdict = checkFromClient(packet, policy);
        return verdict.ok ? firewall.check(packet) : verdict;
      }),
    };
    this.#open(state, entry);
    const slog = log.with({ session: entry.id });
    slog.info("session opened", {
      mode: session.mode,
      user: entry.identity.user,
      addresses: addresses.map(formatPrefix).join(","),
    });
    try {
      await session.sendCapsule({
        type: "address_assign",
        addresses: addresses.map((prefix) => ({ requestId: 0, prefix })),
      });
      await session.sendCapsule({ type: "route_advertisement", ranges: routes });
      // After the routes, never before them (draft-ietf-masque-connect-ip-dns-05 §7).
      if (this.#dns) await session.sendCapsule({ type: "dns_assign", configurations: [this.#dns] });
    } catch (error) {
      slog.warn("could not send capsules", { error: String(error) });
    }
    const requests = new AddressRequestAnswerer({
      assigned: entry.addresses,
      ratePerSecond: this.#limits.addressRequestsPerSecond,
      burst: this.#limits.addressRequestBurst,
      maxPending: this.#limits.maxPendingAddressRequests,
      send: (capsule) => {
        this.#counters.addressAnswers.value++;
        return session.sendCapsule(capsule);
      },
      now: () => performance.now(),
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
    });
    const pump = this.#pump;
    const peer = entry.peer;
    const end = await session.run({
      onPacket: (packet) => pump.receive(peer, packet),
      onCapsule: (capsule) => {
        // ADDRESS_REQUEST: answered from the assignment made up front, at a
        // bounded rate, merged while an answer is unsent (RFC 9484 §4.7.2).
        if (capsule.type !== "address_request") return;
        this.#counters.addressRequests.value++;
        if (requests.receive(capsule.addresses) === "overflow") {
          this.#counters.addressRequestOverflows.value++;
          const limit = this.#limits.maxPendingAddressRequests;
          this.#logLimited("warn", "closing session: too many ADDRESS_REQUESTs waiting", {
            session: entry.id,
            peer: remote,
            limit,
            pendingCapsuleWrites: session.pendingCapsuleWrites,
          });
          // run() ends the session (only it) with this message when a
          // handler throws, and the message is the reason it logs.
          throw new Error(
            `Too many ADDRESS_REQUESTs: more than ${limit} requested addresses waiting for an answer`,
          );
        }
      },
    });
    requests.close();
    this.#close(state, entry);
    slog.info("session closed", {
      reason: end.message,
      packetsIn: session.stats.packetsIn,
      packetsOut: session.stats.packetsOut,
    });
  }

  /**
   * The advertised routes of the families the relay assigns addresses of,
   * narrowed to what the client asked for (RFC 9484 §4.6).
   */
  #routesFor(scope: ConnectIpScope): IpAddressRange[] {
    const protocol = scope.ipProtocol === "any" ? 0 : scope.ipProtocol;
    const versions = new Set(this.#admission.pools.map((pool) => pool.prefix.version));
    const all = prefixesToRanges(
      this.#options.routes.filter((route) => versions.has(route.version)),
      protocol,
    );
    if (scope.target.kind === "any") return all;
    return prefixesToRanges(routesWithin(all, [scope.target.prefix]), protocol);
  }

  #open(state: ConnectionState, entry: RelaySession): void {
    this.#sessions.add(entry);
    state.sessions++;
    clearTimeout(state.timer);
    state.timer = undefined;
    for (const prefix of entry.addresses) this.#byAddress.set(addressKey(prefix.address), entry);
    this.#counters.sessionsOpened.value++;
  }

  #close(state: ConnectionState, entry: RelaySession): void {
    if (!this.#sessions.delete(entry)) return;
    for (const prefix of entry.addresses) {
      const key = addressKey(prefix.address);
      if (this.#byAddress.get(key) === entry) this.#byAddress.delete(key);
    }
    this.#counters.sessionsClosed.value++;
    state.sessions--;
    if (this.#connections.has(state.h3)) this.#armSessionless(state);
  }

  /** The pump's router: the session that owns `packet`'s destination address. */
  peerFor(packet: Uint8Array): TunnelPeer | undefined {
    return this.#byAddress.get(destinationKey(packet))?.peer;
  }

  /**
   * Reads the TUN until it closes (or {@linkcode stop}) and sends each
   * packet to the session that owns its destination (the pump's outbound
   * path).
   */
  runTun(): Promise<void> {
    return this.#pump.runTun();
  }

  /** Closes every connection (GOAWAY first) and stops the TUN loop. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#pump.stop();
    for (const state of this.#connections.values()) {
      clearTimeout(state.timer);
      state.timer = undefined;
    }
    await Promise.all([...this.#connections.keys()].map(async (h3) => {
      await h3.goaway(0);
      h3.close();
    }));
  }

  /**
   * A JSON-friendly snapshot for the status file: each session, the
   * gateway addresses and firewall settings, and every counter
   * ({@linkcode counters}).
   */
  status(): Record<string, unknown> {
    return {
      sessions: this.sessions.map((s) => ({
        id: s.id,
        remote: s.remote,
        user: s.identity.user,
        mode: s.session.mode,
        addresses: s.addresses.map(formatPrefix),
        openedAt: new Date(s.openedAt).toISOString(),
        pendingCapsuleWrites: s.session.pendingCapsuleWrites,
        ...s.session.stats,
      })),
      gateway: this.#admission.pools.map((pool) => formatIp(pool.gateway)),
      firewall: {
        protected: this.#firewall.protectedAddresses,
        allowRelayHost: this.#firewall.allowed,
        allowClientToClient: this.#options.allowClientToClient ?? false,
      },
      dns: this.#dns === undefined ? undefined : {
        servers: this.#options.dns!.servers.map(formatIp),
        searchDomains: this.#dns.searchDomains,
      },
      counters: this.counters.snapshot(),
    };
  }
}
