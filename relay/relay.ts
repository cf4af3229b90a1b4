/**
 * The relay: admits CONNECT-IP requests on HTTP/3 connections and moves
 * their packets through one TUN device with the shared pump
 * (`shared/tunnel/pump.ts`, which lists the packet path's stages).
 *
 * What is the relay's own:
 * - connections: the handshake, total and per-source limits, and closing
 *   a connection that has had no session for `sessionlessTimeoutMs`;
 * - requests: `answerRequest` (HTTP/3), then admission in two steps
 *   (`relay/sessions.ts`: an asynchronous `authenticate` before anything
 *   about the resource is revealed, a synchronous `admit` that reserves
 *   the slot and the addresses); every 404 is one answer (`notFound`), so
 *   a request without valid credentials looks like one for an unknown path;
 * - failed authentications per source (`shared/auth/failure_limiter.ts`):
 *   a source past the limit has its connections closed and new ones
 *   closed after the handshake, for a back-off that doubles;
 * - users: each session's routes are the relay's within the user's policy
 *   and the request's scope (`shared/auth/policy.ts`); a packet outside
 *   them is answered with ICMP administratively prohibited (rate-limited
 *   per session); a user's rate is a byte bucket per direction shared by
 *   its sessions; {@linkcode Relay.applyPolicies} applies a reload;
 * - sessions: ADDRESS_ASSIGN and ROUTE_ADVERTISEMENT, then DNS_ASSIGN with
 *   `--dns` (draft-ietf-masque-connect-ip-dns: never before the routes), ADDRESS_REQUEST
 *   answers, and a {@linkcode TunnelPeer} whose inbound policy is RFC 9484
 *   §7's checks on the client's packets (`checkFromClient`) and then the
 *   host firewall (not the relay host, not another client unless
 *   `--allow-client-to-client`); one audit line when a session opens and
 *   one when it closes (user, peer, addresses, scope, duration, traffic,
 *   why);
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

import { FailureLimiter } from "../shared/auth/failure_limiter.ts";
import { sessionRoutes } from "../shared/auth/policy.ts";
import type { UserPolicy } from "../shared/auth/policy.ts";
import { CREDENTIAL_FIELDS } from "../shared/auth/credentials.ts";
import { counterByLabel, CounterRegistry } from "../shared/counters.ts";
import type {
  Collect,
  Counter,
  CounterFamily,
  HistogramFamily,
  LabelSpec,
} from "../shared/counters.ts";
import { H3Connection } from "../shared/h3/connection.ts";
import type { QuicConnLike } from "../shared/h3/quic.ts";
import type { H3Limits } from "../shared/h3/connection.ts";
import { ConnectionLimiter, sourceKey } from "../shared/connection_limiter.ts";
import type { ConnectionRefusal } from "../shared/connection_limiter.ts";
import { errorMessage, H3_EXCESSIVE_LOAD, H3_NO_ERROR } from "../shared/errors.ts";
import type { Logger, LogLevel } from "../shared/log.ts";
import { AddressRequestAnswerer } from "../shared/masque/address_requests.ts";
import { LogLimiter, TokenBucket } from "../shared/rate_limit.ts";
import { AUTH_MAX_BACKOFF_MS, DEFAULT_RELAY_LIMITS } from "./limits.ts";
import type { RelayLimits } from "./limits.ts";
import type { ConnectIpScope } from "../shared/masque/connect_ip_request.ts";
import { SessionCounters } from "../shared/masque/connect_ip_session.ts";
import { answerRequest, respondNotFound } from "../shared/masque/h3_connect_ip.ts";
import type { AuthorizeResult } from "../shared/masque/h3_connect_ip.ts";
import type { ConnectIpSession } from "../shared/masque/connect_ip_session.ts";
import type { TransportName } from "../shared/masque/connect_stream.ts";
import {
  answerH2Request,
  H2_ENHANCE_YOUR_CALM,
  H2_NO_ERROR,
} from "../shared/masque/h2_connect_ip.ts";
import type { H2ServerStreamLike } from "../shared/masque/h2_connect_ip.ts";
import type { H3RequestStream } from "../shared/h3/request_stream.ts";
import { ByteBudget, DEFAULT_MAX_BUFFERED_BYTES } from "../shared/h3/byte_budget.ts";
import type { HeaderField } from "../shared/h3/qpack.ts";
import { CLIENT_KEY_HEADER, MAX_CLIENT_KEY_LENGTH } from "../shared/masque/connect_ip_request.ts";
import type { IpAddressRange } from "../shared/ip/ip_address.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import { compareIp, formatIp, formatPrefix } from "../shared/ip/ip_address.ts";
import type { RequestedAddress } from "../shared/masque/capsule.ts";
import { addressKey, destinationKey } from "../shared/ip/ip_header.ts";
import { checkFromClient } from "../shared/tunnel/packet_policy.ts";
import { HostFirewall, withDnsServices } from "../shared/tunnel/host_firewall.ts";
import { type DnsConfiguration, plainDnsConfiguration } from "../shared/masque/dns_capsule.ts";
import type { HostService } from "../shared/tunnel/host_firewall.ts";
import type { PacketDevice } from "../shared/tunnel/packet_device.ts";
import { PUMP_DROP_REASONS, PumpCounters, TunnelPeer, TunnelPump } from "../shared/tunnel/pump.ts";
import type { PeerLimits, PeerRouter, PumpDropReason } from "../shared/tunnel/pump.ts";
import { ALLOW_EVERYONE, AUTH_FAILURES, Reservation, SessionAdmission } from "./sessions.ts";
import type { Authenticator, AuthFailure, Identity } from "./sessions.ts";

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
  /**
   * Writes every 404 (unknown paths, requests without valid credentials);
   * default `text/plain` "not found" (`--decoy` gives its own page).
   */
  readonly notFound?: (request: H3RequestStream) => Promise<void>;
  /** Answers GET and other non-CONNECT requests (`--decoy`); default `notFound`. */
  readonly serveOther?: (request: H3RequestStream) => Promise<number>;
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
  readonly tcpConnectionsAccepted: Counter;
  readonly connectionsRefused: Readonly<Record<ConnectionRefusal | "auth-failures", Counter>>;
  readonly handshakesFailed: Counter;
  readonly connectionsSessionless: Counter;
  readonly addressRequests: Counter;
  readonly addressAnswers: Counter;
  readonly addressRequestOverflows: Counter;
  readonly authFailures: Readonly<Record<AuthFailure, Counter>>;
  readonly authSuccesses: Counter;
  readonly sourcesBlocked: Counter;
  readonly sessionsEvicted: Counter;
  readonly sessionsRemoved: Counter;
  readonly addressesGranted: Counter;
  readonly setupSeconds: HistogramFamily;
  /** Bytes by user (capped label) and direction, added every second from the sessions. */
  readonly userBytes: CounterFamily;
  readonly #userDrops;

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
    this.tcpConnectionsAccepted = one(
      "relay_tcp_connections_accepted_total",
      "TLS over TCP connections (HTTP/2, WebTransport) that finished the handshake and were " +
        "admitted",
    );
    this.connectionsRefused = counterByLabel(
      registry,
      "relay_connections_refused_total",
      "Connections refused, by the limit they would have passed: handshakes and " +
        "connections before the handshake, per-source right after it",
      "limit",
      ["handshakes", "connections", "per-source", "auth-failures"],
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
    this.addressesGranted = one(
      "relay_addresses_granted_total",
      "Addresses given to a session that asked for them with ADDRESS_REQUEST (free in the " +
        "pool: a reconnecting client's previous one; or moved from another session of the same " +
        "client: a move between transports)",
    );
    this.addressRequestOverflows = one(
      "relay_address_request_overflows_total",
      "Sessions closed because too many requested addresses waited for an answer",
    );
    this.authFailures = counterByLabel(
      registry,
      "relay_auth_failures_total",
      "Requests without valid credentials, by why (answered 404, as an unknown path)",
      "reason",
      AUTH_FAILURES,
    );
    this.authSuccesses = one(
      "relay_auth_successes_total",
      "Requests whose credentials were valid (checked, or remembered on the connection)",
    );
    this.sourcesBlocked = one(
      "relay_auth_sources_blocked_total",
      "Times a source (IPv4 address or IPv6 /64) was blocked for failed authentications",
    );
    this.sessionsEvicted = one(
      "relay_sessions_evicted_total",
      "Sessions ended because a newer session of the same user took their fixed address",
    );
    this.sessionsRemoved = one(
      "relay_sessions_removed_total",
      "Sessions ended because a reload removed their user or the credential they used",
    );
    this.setupSeconds = registry.histogram("relay_session_setup_seconds", {
      help: "Time from a request's HEADERS to its 200 response, seconds",
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    });
    this.userBytes = registry.counter("relay_user_bytes_total", {
      help: `Bytes of IP packets per user (at most ${USER_LABEL_CAP} users by name, then ` +
        '"other"), outbound to the client and inbound from it; updated every second',
      labels: [
        { name: "user", cap: USER_LABEL_CAP },
        { name: "direction", values: ["outbound", "inbound"] },
      ],
    });
    this.#userDrops = registry.counter("relay_user_packets_dropped_total", {
      help: "IP packets of each user's sessions dropped, by user, direction and reason " +
        `(at most ${USER_LABELS} users, then "other")`,
      labels: [
        { name: "user", cap: USER_LABELS },
        { name: "direction", values: ["outbound", "inbound"] },
        { name: "reason", values: PUMP_DROP_REASONS },
      ],
    });
  }

  /** A function that counts one drop of `user`'s (counters resolved on first use). */
  userDrops(user: string): (direction: "outbound" | "inbound", reason: PumpDropReason) => void {
    const resolved = new Map<string, Counter>();
    const family = this.#userDrops;
    return (direction, reason) => {
      const key = `${direction}\0${reason}`;
      let counter = resolved.get(key);
      if (counter === undefined) {
        counter = family.child(user, direction, reason);
        resolved.set(key, counter);
      }
      counter.value++;
    };
  }
}

/** Users named in counter labels; past it they count as "other". */
const USER_LABELS = 1000;

/** Distinct users `relay_user_bytes_total` labels; the rest count as `other`. */
export const USER_LABEL_CAP = 100;

/** How often sessions' figures are sampled (last packet, per-user bytes), milliseconds. */
export const SAMPLE_INTERVAL_MS = 1000;

/** ICMP administratively prohibited answers per session: 10 per second after a burst of 10. */
const PROHIBITED_ANSWERS = { ratePerSecond: 10, burst: 10 } as const;

/** A user's rate bucket holds 100 ms of its rate, and at least 64 KiB (a TSO-sized burst). */
function rateBucket(bitsPerSecond: number, now: number): TokenBucket {
  const bytesPerSecond = bitsPerSecond / 8;
  return new TokenBucket(
    { ratePerSecond: bytesPerSecond, burst: Math.max(65_536, Math.round(bytesPerSecond / 10)) },
    now,
  );
}

/** What the relay keeps per user with open sessions: its policy, rate buckets, drop counter. */
interface UserState {
  policy: UserPolicy;
  limits: { outbound?: TokenBucket; inbound?: TokenBucket };
  readonly sessions: Set<RelaySession>;
  readonly drops: (direction: "outbound" | "inbound", reason: PumpDropReason) => void;
}

/**
 * An HTTP/2 connection (TLS over TCP) as the relay serves it:
 * `relay/tcp_listener.ts` makes one of a `node:http2` session.
 */
export interface H2ConnectionLike {
  /** Sends GOAWAY with `code` (RFC 9113 §6.8) and closes the connection and its streams. */
  close(code: number, reason: string): void;
  /** `listener` runs once when the connection has closed, for any reason. */
  onClose(listener: () => void): void;
}

/** What {@linkcode Relay.admitH2Connection} gives the TCP listener for one connection. */
export interface RelayH2Connection {
  /**
   * Serves one request stream with its field lines (`node:http2`'s raw
   * list); never throws.
   */
  serveStream(stream: H2ServerStreamLike, headers: readonly HeaderField[]): void;
  /** The connection's budget of bytes held between reads. */
  readonly budget: ByteBudget;
  /** Marks a session of another protocol (WebTransport) as open on it: no sessionless close meanwhile. */
  hold(): () => void;
}

/** One connection as the relay tracks it: QUIC with HTTP/3, or TLS over TCP with HTTP/2. */
interface ConnectionState {
  /** The H3Connection, or the HTTP/2 connection's handle. */
  readonly key: object;
  /** Its {@linkcode sourceKey} when the connection limiter counts it. */
  readonly source: string | undefined;
  /** Its {@linkcode sourceKey} for the failure limiter (always set). */
  readonly authSource: string;
  /** Open sessions on it. */
  sessions: number;
  /**
   * Whether a request on it carried valid credentials: blocking its source
   * for failed authentications does not close it (a user behind the same
   * NAT as a prober keeps its tunnel), unless it fails itself while blocked.
   */
  authenticated: boolean;
  /** Closes it when it has had no session for `sessionlessTimeoutMs`. */
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The highest request stream id seen (for GOAWAY when draining), or -1. */
  maxStreamId: number;
  /** Closes the connection without an error, telling the peer `reason`. */
  readonly close: (reason: string) => void;
  /** Closes it at once for excessive load (H3_EXCESSIVE_LOAD, ENHANCE_YOUR_CALM). */
  readonly closeExcessive: () => void;
  /** Tells the peer no new requests are taken (GOAWAY), before {@linkcode close}. */
  readonly goaway: () => Promise<void>;
  /** GOAWAY past the last request seen, for a drain (open sessions go on). */
  readonly drain: () => Promise<void>;
}

/** One client session as the relay tracks it. */
export interface RelaySession {
  readonly id: number;
  readonly session: ConnectIpSession;
  /** The transport the session runs on. */
  readonly transport: TransportName;
  readonly identity: Identity;
  /** The addresses it is assigned now (an ADDRESS_REQUEST may change them). */
  addresses: readonly IpPrefix[];
  /** The routes advertised now (they change when a reload changes the user's policy). */
  routes: readonly IpAddressRange[];
  /** What the request asked for (RFC 9484 §4.6). */
  readonly scope: ConnectIpScope;
  /** The slot and addresses it holds. */
  readonly reservation: Reservation;
  /** The request's `masque-vpn-client-key`, if it sent one (never logged). */
  readonly clientKey: string | undefined;
  readonly remote: string;
  readonly openedAt: number;
  /** The session as the pump sees it, with its inbound policy. */
  readonly peer: TunnelPeer;
  /** Why the relay ended it, when it did (a reload, a newer session). */
  endedBy?: string;
  /** When a packet from the client last arrived (ms since the epoch, sampled every second). */
  lastPacketAt: number | undefined;
  /** What {@linkcode SAMPLE_INTERVAL_MS} sampling saw last: packets in, bytes out and in. */
  readonly sampled: { packetsIn: number; bytesOut: number; bytesIn: number };
}

/**
 * One request's admission (`Relay.#admissionFor`): what `authenticate`
 * and `authorize` found, for the session that follows.
 */
export interface RequestAdmission {
  identity: Identity | undefined;
  routes: IpAddressRange[];
  reservation: Reservation | undefined;
  authenticate(): Promise<AuthorizeResult>;
  authorize(scope: ConnectIpScope): AuthorizeResult;
}

/** What {@linkcode Relay.admitSession} decided: an admission holding a reservation, or the status. */
export type RelayAdmission =
  | { readonly ok: true; readonly admission: RequestAdmission }
  | { readonly ok: false; readonly status: number; readonly reason: string };

/** The relay's state: connections, admission, sessions, and the pump. */
export class Relay implements PeerRouter {
  readonly #options: RelayOptions;
  readonly #log: Logger;
  readonly #admission: SessionAdmission;
  readonly #authenticator: Authenticator;
  /** Address key (of each assigned address) -> session. */
  readonly #byAddress = new Map<number | string, RelaySession>();
  readonly #sessions = new Set<RelaySession>();
  readonly #byReservation = new Map<Reservation, RelaySession>();
  readonly #connections = new Map<object, ConnectionState>();
  readonly #limits: RelayLimits;
  readonly #limiter: ConnectionLimiter;
  /** Repeated log lines about peers (refusals, idle closes) are limited per message. */
  readonly #logLimiter = new LogLimiter({ linesPerWindow: 5, windowMs: 10_000 });
  readonly #firewall: HostFirewall;
  readonly #pump: TunnelPump;
  readonly #counters: RelayCounters;
  readonly #sessionCounters: SessionCounters;
  readonly #dns: DnsConfiguration | undefined;
  /** Failed authentications per source. */
  readonly #failures: FailureLimiter;
  /** Users with open sessions. */
  readonly #users = new Map<string, UserState>();
  #nextId = 1;
  #stopped = false;
  #draining = false;
  #sampler: ReturnType<typeof setInterval> | undefined;
  /**
   * Every counter of the relay: its own, the pump's, its connections' and
   * sessions' (and what `relay/main.ts` adds, such as the TUN's).
   */
  readonly counters: CounterRegistry;

  constructor(tun: PacketDevice, options: RelayOptions) {
    this.#options = options;
    this.#log = options.log;
    const pools = [options.pool4, options.pool6].filter((p) => p !== undefined);
    this.#authenticator = options.authenticator ?? ALLOW_EVERYONE;
    this.#limits = Object.freeze({ ...DEFAULT_RELAY_LIMITS, ...options.limits });
    this.#admission = new SessionAdmission({
      pools,
      maxSessions: options.maxSessions,
      maxSessionsPerConnection: this.#limits.maxSessionsPerConnection,
    });
    this.#limiter = new ConnectionLimiter(this.#limits);
    const gateways = this.gatewayAddresses.map((prefix) => prefix.address);
    const dnsServers = options.dns?.servers ?? [];
    this.#dns = dnsServers.length > 0
      ? plainDnsConfiguration(dnsServers, options.dns?.searchDomains ?? [])
      : undefined;
    this.#failures = new FailureLimiter({
      maxFailures: this.#limits.authFailuresPerMinute,
      windowMs: 60_000,
      backoffMs: this.#limits.authBackoffMs,
      maxBackoffMs: Math.max(AUTH_MAX_BACKOFF_MS, this.#limits.authBackoffMs),
      maxEntries: this.#limits.authFailureSources,
    });
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
        "relay_sessions_by_transport",
        "CONNECT-IP sessions open, by transport",
        () => {
          const open = { h3: 0, h2: 0, webtransport: 0 };
          for (const session of this.#sessions) open[session.transport]++;
          return open;
        },
        { name: "transport", values: ["h3", "h2", "webtransport"] },
      ],
      [
        "relay_pool_addresses_in_use",
        "Client addresses assigned or reserved, by pool",
        () => ({ ipv4: this.#admission.inUse(4), ipv6: this.#admission.inUse(6) }),
        { name: "pool", values: ["ipv4", "ipv6"] },
      ],
      [
        "relay_auth_sources_blocked",
        "Sources blocked now for failed authentications",
        () => this.#failures.blockedCount(performance.now()),
      ],
      [
        "relay_auth_failure_sources",
        "Sources the failure limiter tracks now (at most --auth-failure-sources)",
        () => this.#failures.size,
      ],
      ["relay_users", "Users with an open session", () => this.#users.size],
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
   * A TCP connection, whose address is known at once, gives `hostname` and
   * is also refused when its source has `maxConnectionsPerSource` open.
   */
  beginHandshake(hostname?: string): boolean {
    if (this.#draining || this.#stopped) return false;
    if (hostname !== undefined) {
      // Over TCP the source is known before the handshake: a source at its
      // limit costs no TLS handshake.
      const source = sourceKey(hostname);
      if (this.#limiter.openFrom(source) >= this.#limits.maxConnectionsPerSource) {
        this.#refused("per-source", source);
        return false;
      }
    }
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
    const blockedMs = this.#failures.blockedFor(source, performance.now());
    if (blockedMs > 0) {
      this.#counters.connectionsRefused["auth-failures"].value++;
      this.#logLimited("info", "connection refused", {
        limit: "auth-failures",
        source,
        seconds: Math.ceil(blockedMs / 1000),
      });
      try {
        conn.close({ closeCode: H3_EXCESSIVE_LOAD, reason: "" });
      } catch {
        // already closed
      }
      return undefined;
    }
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
    const authSource = source ?? sourceKey(remote.slice(0, remote.lastIndexOf(":")));
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
    const state: ConnectionState = {
      key: h3,
      source,
      authSource,
      sessions: 0,
      authenticated: false,
      timer: undefined,
      maxStreamId: -1,
      close: (reason) => h3.close(H3_NO_ERROR, reason),
      closeExcessive: () => h3.close(H3_EXCESSIVE_LOAD, ""),
      goaway: () => h3.goaway(0),
      drain: () => h3.goaway(state.maxStreamId + 4),
    };
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
      if (state.sessions > 0 || !this.#connections.has(state.key)) return;
      this.#counters.connectionsSessionless.value++;
      this.#logLimited("info", "closing connection without a session", {
        seconds: ms / 1000,
        source: state.source,
      });
      state.close(`no session for ${ms / 1000} s`);
    }, ms);
  }

  /**
   * Admission of a session another protocol's server answers (WebTransport)
   * on the HTTP/2 connection `conn`: the same two steps as every request
   * (credentials from `headers`; then the scope `scopeOf` reads from the
   * path, the user's routes for it and the reservation), on that
   * connection's state. On success, run the session
   * with {@linkcode serveSession}.
   */
  async admitSession(
    conn: H2ConnectionLike,
    headers: readonly HeaderField[],
    remote: string,
    scopeOf: () =>
      | { readonly ok: true; readonly scope: ConnectIpScope }
      | { readonly ok: false; readonly status: number; readonly reason: string },
  ): Promise<RelayAdmission> {
    const state = this.#connections.get(conn);
    if (state === undefined) return { ok: false, status: 503, reason: "connection closed" };
    const admission = this.#admissionFor(state, headers, remote);
    const identity = await admission.authenticate();
    if (!identity.accept) {
      return { ok: false, status: identity.status, reason: identity.reason ?? "refused" };
    }
    const scope = scopeOf();
    if (!scope.ok) return scope;
    const decision = admission.authorize(scope.scope);
    if (!decision.accept) {
      return { ok: false, status: decision.status, reason: decision.reason ?? "refused" };
    }
    return { ok: true, admission };
  }

  async #serveRequest(
    state: ConnectionState,
    request: H3RequestStream,
    remote: string,
    log: Logger,
  ): Promise<void> {
    // Admission in two steps (relay/sessions.ts): authenticate may await and
    // runs before anything about the resource is revealed; admit reserves the
    // slot and the addresses synchronously in authorize, so concurrent
    // requests cannot all pass the limits. A request the relay cannot serve
    // gets its status and no session, rather than a 200 and a session closed
    // at once.
    const started = performance.now();
    state.maxStreamId = Math.max(state.maxStreamId, Number(request.streamId));
    // Every line about this request and its session carries its id.
    const id = this.#nextId++;
    log = log.with({ session: id });
    const admission = this.#admissionFor(state, request.headers, remote);
    let answer: Awaited<ReturnType<typeof answerRequest>>;
    try {
      answer = await answerRequest(request, {
        template: this.#options.template,
        log,
        counters: this.#sessionCounters,
        notFound: (r) => this.#notFound(r, admission.identity !== undefined),
        serveOther: this.#options.serveOther,
        authenticate: () => admission.authenticate(),
        authorize: (scope) => admission.authorize(scope),
      });
    } catch (error) {
      admission.reservation?.release();
      throw error;
    }
    const clientKey = clientKeyOf(request.headers);
    await this.#serveAnswer(state, answer, admission, remote, log, "h3", clientKey, id, started);
  }

  /**
   * One request's admission on `state`'s connection, whatever the transport:
   * `authenticate` checks the credentials in `headers` (counting failures
   * against the source), `authorize` then checks the user's routes for the
   * scope and reserves the slot and addresses synchronously. What they
   * found stays on the returned object.
   */
  #admissionFor(
    state: ConnectionState,
    headers: readonly HeaderField[],
    remote: string,
  ): RequestAdmission {
    const admission: RequestAdmission = {
      identity: undefined,
      routes: [],
      reservation: undefined,
      authenticate: async (): Promise<AuthorizeResult> => {
        const auth = await this.#authenticator.authenticate({
          headers,
          remote,
          source: state.authSource,
          connection: state.key,
        });
        if (auth.ok) {
          this.#counters.authSuccesses.value++;
          state.authenticated = true;
          admission.identity = auth.identity;
          return { accept: true };
        }
        if (auth.failure !== undefined) this.#authFailed(state, remote, auth.failure);
        return { accept: false, status: auth.status, reason: auth.reason };
      },
      authorize: (scope: ConnectIpScope): AuthorizeResult => {
        if (this.#stopped) return { accept: false, status: 503, reason: "relay stopping" };
        if (this.#draining) return { accept: false, status: 503, reason: "relay draining" };
        const who = admission.identity;
        if (who === undefined) return { accept: false, status: 403, reason: "not authenticated" };
        admission.routes = this.#routesFor(who.policy, scope);
        if (admission.routes.length === 0) {
          return {
            accept: false,
            status: 403,
            reason: "the request's scope has no route this user may reach",
          };
        }
        const admitted = this.#admission.admit(who, scope, state.key);
        if (!(admitted instanceof Reservation)) {
          return { accept: false, status: admitted.status, reason: admitted.reason };
        }
        admission.reservation = admitted;
        return { accept: true };
      },
    };
    return admission;
  }

  /** Runs the session an answer made, or counts and logs its refusal. */
  async #serveAnswer(
    state: ConnectionState,
    answer:
      | { readonly session: ConnectIpSession; readonly scope: ConnectIpScope }
      | { readonly session: undefined; readonly status: number; readonly reason: string },
    admission: RequestAdmission,
    remote: string,
    log: Logger,
    transport: TransportName,
    clientKey: string | undefined,
    id: number,
    started: number,
  ): Promise<void> {
    const reservation = admission.reservation;
    // Once authenticated, every line about the request and its session names the user.
    if (admission.identity !== undefined) log = log.with({ user: admission.identity.user });
    if (!answer.session) {
      // Refused before or in authorize, which then reserved nothing.
      this.#counters.sessionsRefused.value++;
      log.info("request refused", {
        status: answer.status,
        reason: answer.reason,
        transport,
      });
      return;
    }
    if (reservation === undefined) throw new Error("Cannot open session: nothing reserved");
    this.#counters.setupSeconds.observe((performance.now() - started) / 1000);
    try {
      await this.#runSession(
        id,
        state,
        answer.session,
        answer.scope,
        admission.routes,
        reservation,
        remote,
        log,
        transport,
        clientKey,
      );
    } finally {
      reservation.release();
    }
  }

  /**
   * Serves an HTTP/2 connection whose TLS handshake has finished (the TCP
   * listener called {@linkcode beginHandshake} and {@linkcode endHandshake}
   * around it), unless its source already has `maxConnectionsPerSource`
   * open connections or the total is reached: then it is closed with
   * ENHANCE_YOUR_CALM, counted and logged, and `undefined` returned.
   */
  admitH2Connection(conn: H2ConnectionLike, peer: PeerAddress): RelayH2Connection | undefined {
    const source = sourceKey(peer.hostname);
    // A source blocked for failed authentications, as over QUIC.
    const blockedMs = this.#failures.blockedFor(source, performance.now());
    if (blockedMs > 0) {
      this.#counters.connectionsRefused["auth-failures"].value++;
      this.#logLimited("info", "connection refused", {
        limit: "auth-failures",
        source,
        seconds: Math.ceil(blockedMs / 1000),
      });
      conn.close(H2_ENHANCE_YOUR_CALM, "");
      return undefined;
    }
    const refusal = this.#limiter.admit(source);
    if (refusal !== undefined) {
      this.#refused(refusal, source);
      conn.close(
        H2_ENHANCE_YOUR_CALM,
        refusal === "per-source"
          ? "too many connections from this address"
          : "too many connections",
      );
      return undefined;
    }
    this.#counters.tcpConnectionsAccepted.value++;
    const remote = `${peer.hostname}:${peer.port}`;
    const log = this.#log.with({ peer: remote, transport: "h2" });
    const budget = new ByteBudget(this.#options.h3?.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES);
    const failConnection = (code: number, reason: string) => {
      log.warn("closing HTTP/2 connection", { code, reason });
      conn.close(code, reason);
    };
    const state: ConnectionState = {
      key: conn,
      source,
      authSource: source,
      sessions: 0,
      authenticated: false,
      timer: undefined,
      close: (reason) => conn.close(H2_NO_ERROR, reason),
      closeExcessive: () => conn.close(H2_ENHANCE_YOUR_CALM, ""),
      goaway: () => Promise.resolve(),
      // node:http2 takes no GOAWAY of ours here: new requests get 503 "relay draining".
      drain: () => Promise.resolve(),
      maxStreamId: -1,
    };
    this.#connections.set(conn, state);
    this.#armSessionless(state);
    conn.onClose(() => {
      if (!this.#connections.delete(conn)) return;
      clearTimeout(state.timer);
      state.timer = undefined;
      this.#limiter.release(source);
      log.debug("connection closed");
    });
    return {
      budget,
      serveStream: (stream, headers) => {
        this.#serveH2Stream(state, stream, headers, remote, log, budget, failConnection)
          .catch((error) => log.warn("request failed", { error: errorMessage(error) }));
      },
      hold: () => {
        state.sessions++;
        clearTimeout(state.timer);
        state.timer = undefined;
        let held = true;
        return () => {
          if (!held) return;
          held = false;
          state.sessions--;
          if (this.#connections.has(state.key)) this.#armSessionless(state);
        };
      },
    };
  }

  async #serveH2Stream(
    state: ConnectionState,
    stream: H2ServerStreamLike,
    headers: readonly HeaderField[],
    remote: string,
    log: Logger,
    budget: ByteBudget,
    failConnection: (code: number, reason: string) => void,
  ): Promise<void> {
    // The same admission as over HTTP/3: credentials first, before anything
    // about the resource is revealed; every 404 is the relay's one answer.
    const started = performance.now();
    const id = this.#nextId++;
    log = log.with({ session: id });
    const admission = this.#admissionFor(state, headers, remote);
    let answer: Awaited<ReturnType<typeof answerH2Request>>;
    try {
      answer = await answerH2Request(stream, headers, {
        template: this.#options.template,
        log,
        counters: this.#sessionCounters,
        authenticate: () => admission.authenticate(),
        authorize: (scope) => admission.authorize(scope),
        budget,
        failConnection,
        maxQueuedBytes: this.#limits.maxQueuedBytes,
      });
    } catch (error) {
      admission.reservation?.release();
      throw error;
    }
    await this.#serveAnswer(
      state,
      answer,
      admission,
      remote,
      log,
      "h2",
      clientKeyOf(headers),
      id,
      started,
    );
  }

  /**
   * Runs a session that another protocol's server answered after
   * {@linkcode authorize} reserved for it (WebTransport), on the HTTP/2
   * connection `conn` it arrived on; releases the reservation when it ends.
   */
  async serveSession(
    conn: H2ConnectionLike,
    session: ConnectIpSession,
    scope: ConnectIpScope,
    admission: RequestAdmission,
    remote: string,
    transport: TransportName,
  ): Promise<void> {
    const state = this.#connections.get(conn);
    const id = this.#nextId++;
    const log = this.#log.with({
      peer: remote,
      transport,
      session: id,
      ...(admission.identity ? { user: admission.identity.user } : {}),
    });
    const reservation = admission.reservation;
    try {
      if (state === undefined || reservation === undefined) {
        await session.close();
        throw new Error("Cannot serve session: its connection is closed");
      }
      await this.#runSession(
        id,
        state,
        session,
        scope,
        admission.routes,
        reservation,
        remote,
        log,
        transport,
        undefined,
      );
    } finally {
      reservation?.release();
    }
  }

  /**
   * The one 404 answer. A request that carries credentials but was not
   * checked (a GET, a path outside the template) first waits as long as a
   * check would, so the time does not tell them apart either.
   */
  async #notFound(request: H3RequestStream, checked: boolean): Promise<void> {
    const imitate = this.#authenticator.imitate;
    if (
      !checked && imitate !== undefined &&
      request.headers.some(([name]) => (CREDENTIAL_FIELDS as readonly string[]).includes(name))
    ) {
      await imitate.call(this.#authenticator, request.headers).catch(() => {});
    }
    await (this.#options.notFound ?? respondNotFound)(request);
  }

  /**
   * Counts a failed authentication against the source; when that blocks it,
   * closes every connection from it that has not authenticated. A failure
   * on a connection whose source is blocked closes that connection too, so
   * an authenticated connection cannot keep trying credentials.
   */
  #authFailed(
    state: ConnectionState,
    remote: string,
    failure: { readonly why: AuthFailure; readonly counts: boolean },
  ): void {
    this.#counters.authFailures[failure.why].value++;
    this.#logLimited("info", "authentication failed", { peer: remote, reason: failure.why });
    if (!failure.counts) return;
    const outcome = this.#failures.fail(state.authSource, performance.now());
    if (!outcome.blocked) {
      if (outcome.blockedForMs > 0) state.closeExcessive();
      return;
    }
    this.#counters.sourcesBlocked.value++;
    let closed = 0;
    let kept = 0;
    for (const other of this.#connections.values()) {
      if (other.authSource !== state.authSource) continue;
      if (other.authenticated && other !== state) {
        kept++;
        continue;
      }
      closed++;
      other.closeExcessive();
    }
    this.#log.warn("source blocked for failed authentications", {
      source: state.authSource,
      failures: this.#limits.authFailuresPerMinute,
      seconds: Math.ceil(outcome.blockedForMs / 1000),
      connectionsClosed: closed,
      authenticatedKept: kept,
    });
  }

  /** The user's state (policy, rate buckets, drop counter), made when its first session opens. */
  #userState(identity: Identity): UserState {
    let user = this.#users.get(identity.user);
    if (user === undefined) {
      user = {
        policy: identity.policy,
        limits: this.#rateLimits(identity.policy),
        sessions: new Set(),
        drops: this.#counters.userDrops(identity.user),
      };
      this.#users.set(identity.user, user);
    }
    return user;
  }

  #rateLimits(policy: UserPolicy): UserState["limits"] {
    const rate = policy.rateBitsPerSecond;
    if (rate === undefined) return {};
    const now = performance.now();
    return { outbound: rateBucket(rate, now), inbound: rateBucket(rate, now) };
  }

  /** The pump's limits of one session: its user's rate, and its own ICMP answers. */
  #peerLimits(user: UserState, prohibited: PeerLimits["prohibited"]): PeerLimits {
    return { ...user.limits, prohibited };
  }

  async #runSession(
    id: number,
    state: ConnectionState,
    session: ConnectIpSession,
    scope: ConnectIpScope,
    routes: IpAddressRange[],
    reservation: Reservation,
    remote: string,
    log: Logger,
    transport: TransportName,
    clientKey: string | undefined,
  ): Promise<void> {
    const firewall = this.#firewall;
    const user = this.#userState(reservation.identity);
    const gateways = this.gatewayAddresses;
    const prohibited: PeerLimits["prohibited"] = {
      bucket: new TokenBucket(PROHIBITED_ANSWERS, performance.now()),
      from: (version) => gateways.find((prefix) => prefix.version === version)?.address,
    };
    // RFC 9484 §7's checks on the client's packets (against the entry's
    // addresses and current routes), then the host firewall.
    const check = (packet: Uint8Array) => {
      const verdict = checkFromClient(packet, entry);
      return verdict.ok ? firewall.check(packet) : verdict;
    };
    const entry: RelaySession = {
      id,
      session,
      transport,
      identity: reservation.identity,
      addresses: reservation.addresses,
      reservation,
      clientKey,
      routes,
      scope,
      remote,
      openedAt: Date.now(),
      peer: new TunnelPeer(session, check, this.#peerLimits(user, prohibited)),
      lastPacketAt: undefined,
      sampled: { packetsIn: 0, bytesOut: 0, bytesIn: 0 },
    };
    entry.peer.drops = user.drops;
    reservation.onEvict = (why) => this.#endSession(entry, why);
    user.sessions.add(entry);
    this.#open(state, entry);
    // The log carries the session id and the user.
    const slog = log;
    const audit = () => ({
      peer: remote,
      addresses: entry.addresses.map(formatPrefix).join(","),
      target: scope.target.kind === "any" ? "*" : formatPrefix(scope.target.prefix),
      ipproto: scope.ipProtocol === "any" ? "*" : scope.ipProtocol,
    });
    slog.info("session opened", { ...audit(), transport, mode: session.mode });
    try {
      await session.sendCapsule({
        type: "address_assign",
        addresses: entry.addresses.map((prefix) => ({ requestId: 0, prefix })),
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
        // A request for a specific free address (a reconnecting client's
        // previous one) moves the session there first; or one the same
        // client's other session holds (a move between transports, make
        // before break). The answer lists the new assignment.
        if (
          this.#grantRequested(entry, reservation, capsule.addresses, slog) ||
          this.#grant(entry, capsule.addresses.map((a) => a.prefix), slog)
        ) {
          requests.reassign(entry.addresses);
        }
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
    this.#sample(entry, Date.now());
    this.#close(state, entry);
    user.sessions.delete(entry);
    if (user.sessions.size === 0 && this.#users.get(entry.identity.user) === user) {
      this.#users.delete(entry.identity.user);
    }
    const stats = session.stats;
    slog.info("session closed", {
      ...audit(),
      seconds: Math.round((Date.now() - entry.openedAt) / 100) / 10,
      packetsIn: stats.packetsIn,
      packetsOut: stats.packetsOut,
      bytesIn: stats.bytesIn,
      bytesOut: stats.bytesOut,
      reason: entry.endedBy ?? end.message,
    });
  }

  /**
   * Moves `entry` to the specific addresses an ADDRESS_REQUEST names (RFC
   * 9484 §4.7.2), each only when free in its pool and not a user's fixed
   * address: a client reconnecting asks for the addresses it had, so that
   * its applications' sockets survive. At most once per IP version per
   * session, so a session cannot walk the pool. Returns whether an address
   * changed; the answer to the request then lists the new assignment.
   */
  #grantRequested(
    entry: RelaySession,
    reservation: Reservation,
    requested: readonly RequestedAddress[],
    log: Logger,
  ): boolean {
    let changed = false;
    for (const { prefix } of requested) {
      const bits = prefix.address.length * 8;
      if (prefix.prefixLength !== bits || prefix.address.every((byte) => byte === 0)) continue;
      const current = entry.addresses.find((a) => a.version === prefix.version);
      if (current === undefined || formatIp(current.address) === formatIp(prefix.address)) continue;
      const moved = this.#moved.get(entry) ?? new Set<number>();
      if (moved.has(prefix.version)) continue;
      const old = this.#admission.move(reservation, prefix);
      if (old === undefined) continue;
      moved.add(prefix.version);
      this.#moved.set(entry, moved);
      const oldKey = addressKey(old.address);
      if (this.#byAddress.get(oldKey) === entry) this.#byAddress.delete(oldKey);
      entry.addresses = reservation.addresses;
      this.#byAddress.set(addressKey(prefix.address), entry);
      this.#counters.addressesGranted.value++;
      changed = true;
      log.info("address granted as requested", {
        from: formatPrefix(old),
        to: formatPrefix(prefix),
      });
    }
    return changed;
  }

  /** Sessions that moved to a requested address, and for which IP versions. */
  readonly #moved = new WeakMap<RelaySession, Set<number>>();

  /**
   * Every second: when each session last received a packet, and the bytes
   * each user moved (`relay_user_bytes_total`).
   */
  #sample(entry: RelaySession, now: number): void {
    const stats = entry.session.stats;
    const sampled = entry.sampled;
    if (stats.packetsIn !== sampled.packetsIn) {
      entry.lastPacketAt = now;
      sampled.packetsIn = stats.packetsIn;
    }
    const user = entry.identity.user;
    const out = stats.bytesOut - sampled.bytesOut;
    const inbound = stats.bytesIn - sampled.bytesIn;
    if (out > 0) this.#counters.userBytes.child(user, "outbound").value += out;
    if (inbound > 0) this.#counters.userBytes.child(user, "inbound").value += inbound;
    sampled.bytesOut = stats.bytesOut;
    sampled.bytesIn = stats.bytesIn;
  }

  /**
   * Ends a session from the relay's side at once: it stops forwarding (its
   * addresses leave the routing map), the stream is finished and
   * abandoned, and its run ends, which releases its reservation.
   */
  #endSession(entry: RelaySession, why: string): void {
    if (entry.endedBy !== undefined) return;
    entry.endedBy = why;
    for (const prefix of entry.addresses) {
      const key = addressKey(prefix.address);
      if (this.#byAddress.get(key) === entry) this.#byAddress.delete(key);
    }
    entry.session.close().catch(() => {});
    entry.session.stream.abort();
  }

  /**
   * Applies a reload of the users: `policyOf` gives each user's new policy,
   * or `undefined` for a user that is gone, and `holds` whether a
   * session's identity still holds (its credential was not replaced).
   * Sessions of removed users and replaced credentials end at once; the
   * others keep running under the new policy: new routes
   * (advertised again when they changed, and enforced from now on), the new
   * rate. Addresses stay until a session ends; the fixed addresses of
   * `fixed` are kept out of the pools from now on. Returns how many
   * sessions ended and how many got new routes.
   */
  applyPolicies(
    policyOf: (user: string) => UserPolicy | undefined,
    fixed: readonly Uint8Array[],
    holds: (identity: Identity) => boolean = () => true,
  ): { ended: number; rerouted: number } {
    this.#admission.setFixedAddresses(fixed);
    let ended = 0;
    let rerouted = 0;
    for (const [name, user] of this.#users) {
      const policy = policyOf(name);
      if (policy === undefined) {
        for (const entry of user.sessions) {
          this.#counters.sessionsRemoved.value++;
          this.#endSession(entry, "user removed");
          ended++;
        }
        continue;
      }
      for (const entry of user.sessions) {
        if (holds(entry.identity)) continue;
        this.#counters.sessionsRemoved.value++;
        this.#endSession(entry, "credentials replaced");
        ended++;
      }
      const old = user.policy;
      user.policy = policy;
      if (policy.rateBitsPerSecond !== old.rateBitsPerSecond) {
        user.limits = this.#rateLimits(policy);
      }
      for (const entry of user.sessions) {
        const prohibited = entry.peer.limits.prohibited;
        entry.peer.limits = this.#peerLimits(user, prohibited);
        const routes = this.#routesFor(policy, entry.scope);
        if (sameRanges(routes, entry.routes)) continue;
        entry.routes = routes;
        rerouted++;
        entry.session.sendCapsule({ type: "route_advertisement", ranges: routes }).catch(() => {});
      }
    }
    return { ended, rerouted };
  }

  /**
   * The routes of a session: the relay's routes of the families it assigns
   * addresses of, within the user's policy and the request's scope
   * (RFC 9484 §4.6; `shared/auth/policy.ts`).
   */
  #routesFor(policy: UserPolicy, scope: ConnectIpScope): IpAddressRange[] {
    const versions = new Set(this.#admission.pools.map((pool) => pool.prefix.version));
    return sessionRoutes(
      this.#options.routes.filter((route) => versions.has(route.version)),
      policy,
      scope,
    );
  }

  /**
   * Grants what an ADDRESS_REQUEST asks for where the session may have it
   * (`SessionAdmission.request`): a free address of a pool, or one another
   * session of the same client holds (the same `masque-vpn-client-key` and
   * user), which moves here. Packets to a granted address go to this
   * session at once. The other session keeps accepting packets from the
   * moved address until it ends (the client switches over to this one), so
   * the move loses no packet the client sends meanwhile.
   */
  #grant(entry: RelaySession, wanted: readonly IpPrefix[], log: Logger): boolean {
    // Free addresses are #grantRequested's (once per IP version); here only
    // one the same client's other session holds.
    const changes = this.#admission.request(entry.reservation, wanted, (holder) => {
      const other = this.#byReservation.get(holder);
      return other !== undefined && other !== entry && entry.clientKey !== undefined &&
        other.clientKey === entry.clientKey && other.identity.user === entry.identity.user;
    }, { fromPool: false });
    if (changes.length === 0) return false;
    for (const change of changes) {
      const replaced = addressKey(change.replaced.address);
      if (this.#byAddress.get(replaced) === entry) this.#byAddress.delete(replaced);
      this.#byAddress.set(addressKey(change.granted.address), entry);
      const donor = change.from && this.#byReservation.get(change.from);
      if (donor) donor.addresses = change.from!.addresses;
      this.#counters.addressesGranted.value++;
      log.info("address granted", {
        address: formatPrefix(change.granted),
        replaced: formatPrefix(change.replaced),
        from: donor ? `session ${donor.id}` : "pool",
      });
    }
    // The inbound check (checkFromClient) reads the entry's addresses.
    entry.addresses = entry.reservation.addresses;
    return true;
  }

  #open(state: ConnectionState, entry: RelaySession): void {
    this.#byReservation.set(entry.reservation, entry);
    this.#sessions.add(entry);
    state.sessions++;
    clearTimeout(state.timer);
    state.timer = undefined;
    for (const prefix of entry.addresses) this.#byAddress.set(addressKey(prefix.address), entry);
    this.#counters.sessionsOpened.value++;
  }

  #close(state: ConnectionState, entry: RelaySession): void {
    if (!this.#sessions.delete(entry)) return;
    this.#byReservation.delete(entry.reservation);
    for (const prefix of entry.addresses) {
      const key = addressKey(prefix.address);
      if (this.#byAddress.get(key) === entry) this.#byAddress.delete(key);
    }
    this.#counters.sessionsClosed.value++;
    state.sessions--;
    if (this.#connections.has(state.key)) this.#armSessionless(state);
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
    this.#sampler ??= setInterval(() => {
      const now = Date.now();
      for (const entry of this.#sessions) this.#sample(entry, now);
    }, SAMPLE_INTERVAL_MS);
    return this.#pump.runTun();
  }

  /** Whether {@linkcode drain} was called. */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * Starts a drain (SIGTERM): sends every connection GOAWAY naming the
   * first request stream it will not serve (RFC 9114 §5.2), so clients go
   * elsewhere or come back later; from now on new connections are refused
   * before the handshake and new requests get 503 "relay draining", while
   * the open sessions go on until {@linkcode stop}.
   */
  async drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    await Promise.all(
      [...this.#connections.values()].map((state) => state.drain()),
    );
  }

  /** Closes every connection (GOAWAY first) and stops the TUN loop. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#sampler);
    this.#pump.stop();
    for (const state of this.#connections.values()) {
      clearTimeout(state.timer);
      state.timer = undefined;
    }
    await Promise.all([...this.#connections.values()].map(async (state) => {
      await state.goaway().catch(() => {});
      state.close("relay stopping");
    }));
  }

  /**
   * A JSON-friendly snapshot for the status file: each session, the
   * gateway addresses and firewall settings, and every counter
   * ({@linkcode counters}).
   */
  status(): Record<string, unknown> {
    return {
      role: "relay",
      draining: this.#draining,
      sessions: this.sessions.map((s) => ({
        id: s.id,
        remote: s.remote,
        user: s.identity.user,
        transport: s.transport,
        mode: s.session.mode,
        addresses: s.addresses.map(formatPrefix),
        target: s.scope.target.kind === "any" ? "*" : formatPrefix(s.scope.target.prefix),
        ipproto: s.scope.ipProtocol === "any" ? "*" : s.scope.ipProtocol,
        openedAt: new Date(s.openedAt).toISOString(),
        lastPacketAt: s.lastPacketAt === undefined
          ? undefined
          : new Date(s.lastPacketAt).toISOString(),
        droppedByPolicy: s.peer.dropped,
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

function sameRanges(a: readonly IpAddressRange[], b: readonly IpAddressRange[]): boolean {
  return a.length === b.length && a.every((range, i) => {
    const other = b[i];
    return range.version === other.version && range.ipProtocol === other.ipProtocol &&
      compareIp(range.start, other.start) === 0 && compareIp(range.end, other.end) === 0;
  });
}

/** The request's client key (`masque-vpn-client-key`), if it has a usable one. */
function clientKeyOf(headers: readonly HeaderField[]): string | undefined {
  const key = headers.find(([name]) => name === CLIENT_KEY_HEADER)?.[1];
  return key !== undefined && key.length > 0 && key.length <= MAX_CLIENT_KEY_LENGTH
    ? key
    : undefined;
}
