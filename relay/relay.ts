/**
 * The relay: serves CONNECT-IP sessions on HTTP/3 connections and forwards
 * their packets through one TUN device.
 *
 * Packet path, client to world:
 *   QUIC datagram or DATAGRAM capsule -> session (context 0) ->
 *   policy (source is the session's address, header rules, destination
 *   routed, RFC 9484 §7) -> host firewall (not the relay host, not another
 *   client) -> TUN write -> kernel forwarding and NAT
 *
 * Client to client (`--allow-client-to-client` only):
 *   policy -> host firewall -> owning session, TTL decremented here ->
 *   session.sendPacket; never through the TUN
 *
 * World to client:
 *   TUN read (batch) -> destination address -> owning session ->
 *   session.sendPacket (datagram or capsule) -> QUIC;
 *   too big for the datagram limit -> ICMP Packet Too Big back into the TUN
 *   (RFC 9484 §10.1)
 *
 * The kernel decrements TTL when it forwards into or out of the TUN, so the
 * relay itself does only for the packets it passes between clients
 * (RFC 9484 §7).
 *
 * Everything here reaches the world through a {@linkcode PacketDevice} and
 * {@linkcode QuicConnLike}, so tests run it with an in-memory TUN.
 *
 * @module
 */

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
import { answerRequest } from "../shared/masque/h3_connect_ip.ts";
import type { H3ConnectIpSession } from "../shared/masque/h3_connect_ip.ts";
import type { IpAddressRange } from "../shared/ip/ip_address.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import { createPrefix, formatIp, formatPrefix } from "../shared/ip/ip_address.ts";
import {
  addressKey,
  decrementHopLimit,
  destinationKey,
  readDestination,
  validateIpPacket,
} from "../shared/ip/ip_header.ts";
import { buildPacketTooBig } from "../shared/ip/icmp.ts";
import { AddressPool } from "../shared/tunnel/address_pool.ts";
import { checkFromClient } from "../shared/tunnel/packet_policy.ts";
import type { DropReason } from "../shared/tunnel/packet_policy.ts";
import { HostFirewall, TO_CLIENT } from "../shared/tunnel/host_firewall.ts";
import type { HostService } from "../shared/tunnel/host_firewall.ts";
import type { PacketDevice } from "../shared/tunnel/packet_device.ts";
import { prefixesToRanges, routesWithin } from "../shared/tunnel/routes.ts";

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
}

/** The peer address of a QUIC connection, as `Deno.QuicConn.remoteAddr` has it. */
export interface PeerAddress {
  readonly hostname: string;
  readonly port: number;
}

/** Counters of the whole relay. */
export interface RelayStats {
  sessionsOpened: number;
  sessionsClosed: number;
  sessionsRefused: number;
  packetsFromClients: number;
  packetsToClients: number;
  /** Client packets dropped, by reason (RFC 9484 §7 checks, header rules, host firewall). */
  droppedFromClients: Record<string, number>;
  /** Client packets delivered to another client (`--allow-client-to-client`). */
  packetsBetweenClients: number;
  /** TUN packets with no session owning their destination. */
  droppedNoSession: number;
  /** TUN packets that could not be parsed. */
  droppedMalformed: number;
  /** Packet Too Big answers sent. */
  packetTooBig: number;
  tunWriteErrors: number;
  /** Connections that finished the handshake and were admitted. */
  connectionsAccepted: number;
  /**
   * Connections refused, by the limit they would have passed: `handshakes`
   * and `connections` before the handshake (QUIC refuse), `per-source`
   * right after it (closed with H3_EXCESSIVE_LOAD).
   */
  connectionsRefused: Record<ConnectionRefusal, number>;
  /** Handshakes that failed or timed out. */
  handshakesFailed: number;
  /** Connections closed for having no session for `sessionlessTimeoutMs`. */
  connectionsSessionless: number;
  /** ADDRESS_REQUEST capsules received (RFC 9484 §4.7.2). */
  addressRequests: number;
  /** ADDRESS_ASSIGN answers sent (each may answer several requests). */
  addressAnswers: number;
  /** Sessions closed because too many requested addresses waited for an answer. */
  addressRequestOverflows: number;
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
  readonly addresses: readonly IpPrefix[];
  readonly routes: readonly IpAddressRange[];
  readonly remote: string;
  readonly openedAt: number;
}

/** The relay's state: pools, sessions, and the TUN loop. */
export class Relay {
  readonly #tun: PacketDevice;
  readonly #options: RelayOptions;
  readonly #log: Logger;
  /** The client address pools that are on (one or two). */
  readonly #pools: readonly AddressPool[];
  /** Address key (of each assigned address) -> session. */
  readonly #byAddress = new Map<number | string, RelaySession>();
  readonly #sessions = new Set<RelaySession>();
  readonly #connections = new Map<H3Connection, ConnectionState>();
  readonly #limits: RelayLimits;
  readonly #limiter: ConnectionLimiter;
  /** Repeated log lines about peers (refusals, idle closes) are limited per message. */
  readonly #logLimiter = new LogLimiter({ linesPerWindow: 5, windowMs: 10_000 });
  readonly #firewall: HostFirewall;
  /**
   * Requests that `authorize` accepted and that are not yet open sessions.
   * answerRequest awaits (peer SETTINGS, the 200) between authorizing and
   * returning, so the session limit counts these too; each is reserved in the
   * synchronous `authorize` callback and given back when the request ends.
   * Their addresses are taken from the pools in the same callback.
   */
  #pendingSessions = 0;
  #nextId = 1;
  #stopped = false;
  readonly stats: RelayStats = {
    sessionsOpened: 0,
    sessionsClosed: 0,
    sessionsRefused: 0,
    packetsFromClients: 0,
    packetsToClients: 0,
    droppedFromClients: {},
    packetsBetweenClients: 0,
    droppedNoSession: 0,
    droppedMalformed: 0,
    packetTooBig: 0,
    tunWriteErrors: 0,
    connectionsAccepted: 0,
    connectionsRefused: { handshakes: 0, connections: 0, "per-source": 0 },
    handshakesFailed: 0,
    connectionsSessionless: 0,
    addressRequests: 0,
    addressAnswers: 0,
    addressRequestOverflows: 0,
  };

  constructor(tun: PacketDevice, options: RelayOptions) {
    this.#tun = tun;
    this.#options = options;
    this.#log = options.log;
    const pools = [options.pool4, options.pool6].filter((p) => p !== undefined);
    if (pools.length === 0) throw new Error("Cannot start relay: no address pool (pool4 or pool6)");
    this.#pools = pools.map((prefix) => new AddressPool(prefix));
    this.#limits = Object.freeze({ ...DEFAULT_RELAY_LIMITS, ...options.limits });
    this.#limiter = new ConnectionLimiter(this.#limits);
    this.#firewall = new HostFirewall({
      pools,
      gateways: this.gatewayAddresses.map((prefix) => prefix.address),
      allow: options.allowRelayHost ?? [],
      clientToClient: options.allowClientToClient ?? false,
    });
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
      this.stats.handshakesFailed++;
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
    this.stats.connectionsAccepted++;
    try {
      return this.#serve(conn, `${peer.hostname}:${peer.port}`, source);
    } catch (error) {
      this.#limiter.release(source);
      throw error;
    }
  }

  #refused(refusal: ConnectionRefusal, source: string | undefined): void {
    this.stats.connectionsRefused[refusal]++;
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

  #pool(version: 4 | 6): AddressPool | undefined {
    return this.#pools.find((pool) => pool.prefix.version === version);
  }

  /**
   * The relay's own TUN addresses: the first host of each pool with the
   * pool's prefix length (`198.18.100.1/24`), so the kernel routes the whole
   * pool to the TUN.
   */
  get gatewayAddresses(): readonly IpPrefix[] {
    return this.#pools.map((pool) => ({
      version: pool.prefix.version,
      address: pool.gateway,
      prefixLength: pool.prefix.prefixLength,
    }));
  }

  /** The sessions now open. */
  get sessions(): readonly RelaySession[] {
    return [...this.#sessions];
  }

  /** Addresses in use in each pool. */
  get poolUsage(): { v4: number; v6: number } {
    return { v4: this.#pool(4)?.inUse ?? 0, v6: this.#pool(6)?.inUse ?? 0 };
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
      onRequest: (request) => {
        this.#serveRequest(request, remote, log).catch((error) => {
          log.warn("request failed", {
            error: errorMessage(error),
          });
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
      log.warn("connection setup failed", {
        error: errorMessage(error),
      });
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
      this.stats.connectionsSessionless++;
      this.#logLimited("info", "closing connection without a session", {
        seconds: ms / 1000,
        source: state.source,
      });
      state.h3.close(H3_NO_ERROR, `no session for ${ms / 1000} s`);
    }, ms);
  }

  async #serveRequest(
    request: Parameters<NonNullable<ConstructorParameters<typeof H3Connection>[1]["onRequest"]>>[0],
    remote: string,
    log: Logger,
  ): Promise<void> {
    // Reserved in the synchronous authorize callback, so that concurrent
    // requests cannot all pass the checks: a session slot and one address of
    // each pool. A request the relay cannot serve gets 503 and no session,
    // rather than a 200 and a session closed at once.
    let addresses: IpPrefix[] | undefined;
    let answer: Awaited<ReturnType<typeof answerRequest>>;
    try {
      answer = await answerRequest(request, {
        template: this.#options.template,
        log,
        authorize: () => {
          if (this.#sessions.size + this.#pendingSessions >= this.#options.maxSessions) {
            return { accept: false, status: 503, reason: "session limit reached" };
          }
          addresses = this.#allocateAddresses();
          if (addresses === undefined) {
            return { accept: false, status: 503, reason: "address pool exhausted" };
          }
          this.#pendingSessions++;
          return { accept: true };
        },
      });
    } catch (error) {
      if (addresses !== undefined) this.#releaseAddresses(addresses);
      throw error;
    } finally {
      // From here on the session, if any, counts in #sessions (no await
      // until #open) or was refused.
      if (addresses !== undefined) this.#pendingSessions--;
    }
    if (!answer.session) {
      // answerRequest returns no session only for requests it refused before
      // or in authorize, which then reserved nothing.
      this.stats.sessionsRefused++;
      log.info("request refused", { status: answer.status, reason: answer.reason });
      return;
    }
    if (addresses === undefined) throw new Error("Cannot open session: no addresses reserved");
    const routes = this.#routesFor(answer.scope);
    const entry: RelaySession = {
      id: this.#nextId++,
      session: answer.session,
      addresses,
      routes,
      remote,
      openedAt: Date.now(),
    };
    this.#open(entry);
    const slog = log.with({ session: entry.id });
    slog.info("session opened", {
      mode: answer.session.mode,
      addresses: addresses.map(formatPrefix).join(","),
    });
    try {
      await answer.session.sendCapsule({
        type: "address_assign",
        addresses: addresses.map((prefix) => ({ requestId: 0, prefix })),
      });
      await answer.session.sendCapsule({ type: "route_advertisement", ranges: routes });
    } catch (error) {
      slog.warn("could not send capsules", { error: String(error) });
    }
    const requests = new AddressRequestAnswerer({
      assigned: entry.addresses,
      ratePerSecond: this.#limits.addressRequestsPerSecond,
      burst: this.#limits.addressRequestBurst,
      maxPending: this.#limits.maxPendingAddressRequests,
      send: (capsule) => {
        this.stats.addressAnswers++;
        return answer.session.sendCapsule(capsule);
      },
      now: () => performance.now(),
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
    });
    const end = await answer.session.run({
      onPacket: (packet) => this.#fromClient(entry, packet, slog),
      onCapsule: (capsule) => {
        // ADDRESS_REQUEST: answered from the assignment made up front, at a
        // bounded rate, merged while an answer is unsent (RFC 9484 §4.7.2).
        if (capsule.type !== "address_request") return;
        this.stats.addressRequests++;
        if (requests.receive(capsule.addresses) === "overflow") {
          this.stats.addressRequestOverflows++;
          const limit = this.#limits.maxPendingAddressRequests;
          this.#logLimited("warn", "closing session: too many ADDRESS_REQUESTs waiting", {
            session: entry.id,
            peer: remote,
            limit,
            pendingCapsuleWrites: answer.session.pendingCapsuleWrites,
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
    this.#close(entry);
    slog.info("session closed", {
      reason: end.message,
      packetsIn: answer.session.stats.packetsIn,
      packetsOut: answer.session.stats.packetsOut,
    });
  }

  /**
   * One client address from each pool that is on (a /32 and/or a /128), or
   * `undefined` with nothing taken when any of them is exhausted.
   */
  #allocateAddresses(): IpPrefix[] | undefined {
    const taken: IpPrefix[] = [];
    for (const pool of this.#pools) {
      const address = pool.allocate();
      if (address === undefined) {
        this.#releaseAddresses(taken);
        return undefined;
      }
      taken.push(createPrefix(address, address.length * 8));
    }
    return taken;
  }

  #releaseAddresses(addresses: readonly IpPrefix[]): void {
    for (const prefix of addresses) this.#pool(prefix.version)?.release(prefix.address);
  }

  /**
   * The advertised routes of the families the relay assigns addresses of,
   * narrowed to what the client asked for (RFC 9484 §4.6).
   */
  #routesFor(scope: ConnectIpScope): IpAddressRange[] {
    const protocol = scope.ipProtocol === "any" ? 0 : scope.ipProtocol;
    const all = prefixesToRanges(
      this.#options.routes.filter((route) => this.#pool(route.version) !== undefined),
      protocol,
    );
    if (scope.target.kind === "any") return all;
    return prefixesToRanges(routesWithin(all, [scope.target.prefix]), protocol);
  }

  #open(entry: RelaySession): void {
    this.#sessions.add(entry);
    const state = this.#connections.get(entry.session.stream.connection);
    if (state !== undefined) {
      state.sessions++;
      clearTimeout(state.timer);
      state.timer = undefined;
    }
    for (const prefix of entry.addresses) this.#byAddress.set(addressKey(prefix.address), entry);
    this.stats.sessionsOpened++;
  }

  #close(entry: RelaySession): void {
    if (!this.#sessions.delete(entry)) return;
    for (const prefix of entry.addresses) {
      const key = addressKey(prefix.address);
      if (this.#byAddress.get(key) === entry) this.#byAddress.delete(key);
    }
    this.#releaseAddresses(entry.addresses);
    this.stats.sessionsClosed++;
    const state = this.#connections.get(entry.session.stream.connection);
    if (state !== undefined) {
      state.sessions--;
      this.#armSessionless(state);
    }
  }

  #fromClient(entry: RelaySession, packet: Uint8Array, log: Logger): void {
    const verdict = checkFromClient(packet, entry);
    if (!verdict.ok) return this.#dropFromClient(verdict.reason, log);
    const host = this.#firewall.check(packet);
    if (host === TO_CLIENT) return this.#toOtherClient(entry, packet, log);
    if (!host.ok) return this.#dropFromClient(host.reason, log);
    this.stats.packetsFromClients++;
    if (!this.#tun.writePacket(packet)) this.stats.tunWriteErrors++;
  }

  #dropFromClient(reason: DropReason, log: Logger): void {
    this.stats.droppedFromClients[reason] = (this.stats.droppedFromClients[reason] ?? 0) + 1;
    if (log.enabled("debug")) log.debug("dropped packet from client", { reason });
  }

  /**
   * Delivers a packet from one client to the session that owns its
   * destination, as a router between them would: the TTL / Hop Limit is
   * decremented right before the packet goes into a datagram (RFC 9484 §7),
   * and a packet that does not fit the receiver's datagram limit is answered
   * with Packet Too Big to the sender (RFC 9484 §10.1). Not through the TUN:
   * the kernel would forward it back out of the interface it came in on and
   * send the sender an ICMP Redirect.
   */
  #toOtherClient(from: RelaySession, packet: Uint8Array, log: Logger): void {
    const to = this.#byAddress.get(destinationKey(packet));
    if (to === undefined) return this.#dropFromClient("destination not assigned", log);
    if (!decrementHopLimit(packet)) return this.#dropFromClient("hop limit exceeded", log);
    this.stats.packetsFromClients++;
    const result = to.session.sendPacket(packet);
    if (result === "sent") {
      this.stats.packetsBetweenClients++;
    } else if (result === "too_big") {
      const answer = buildPacketTooBig(packet, to.session.maxPacketSize, readDestination(packet));
      if (answer && from.session.sendPacket(answer) === "sent") this.stats.packetTooBig++;
    }
  }

  /**
   * Reads the TUN until it closes and sends each packet to the session that
   * owns its destination address.
   */
  async runTun(): Promise<void> {
    for (;;) {
      const batch = await this.#tun.readBatch();
      if (batch === null || this.#stopped) return;
      for (const packet of batch) this.#toClient(packet);
    }
  }

  #toClient(packet: Uint8Array): void {
    if (validateIpPacket(packet) !== undefined) {
      this.stats.droppedMalformed++;
      return;
    }
    const entry = this.#byAddress.get(destinationKey(packet));
    if (entry === undefined) {
      this.stats.droppedNoSession++;
      return;
    }
    // Into the TUN slot's headroom: the datagram goes out without a copy.
    const result = entry.session.sendPacket(packet, this.#tun.headroom ?? 0);
    if (result === "sent") {
      this.stats.packetsToClients++;
    } else if (result === "too_big") {
      // From the client's address (the packet's destination): the kernel
      // routes it back like any client packet, and conntrack relates it to
      // the flow so NAT applies. An answer from the relay's own address
      // would be dropped as a martian.
      const answer = buildPacketTooBig(
        packet,
        entry.session.maxPacketSize,
        readDestination(packet),
      );
      if (answer) {
        this.stats.packetTooBig++;
        this.#tun.writePacket(answer);
      }
    }
  }

  /** Closes every connection (GOAWAY first) and stops the TUN loop. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const state of this.#connections.values()) {
      clearTimeout(state.timer);
      state.timer = undefined;
    }
    await Promise.all([...this.#connections.keys()].map(async (h3) => {
      await h3.goaway(0);
      h3.close();
    }));
  }

  /** A JSON-friendly snapshot for the status file and logs. */
  status(): Record<string, unknown> {
    return {
      sessions: this.sessions.map((s) => ({
        id: s.id,
        remote: s.remote,
        mode: s.session.mode,
        addresses: s.addresses.map(formatPrefix),
        openedAt: new Date(s.openedAt).toISOString(),
        pendingCapsuleWrites: s.session.pendingCapsuleWrites,
        ...s.session.stats,
      })),
      connections: this.connectionCounts,
      pools: this.poolUsage,
      gateway: this.#pools.map((pool) => formatIp(pool.gateway)),
      firewall: {
        protected: this.#firewall.protectedAddresses,
        allowRelayHost: this.#firewall.allowed,
        allowClientToClient: this.#options.allowClientToClient ?? false,
      },
      stats: this.stats,
    };
  }
}
