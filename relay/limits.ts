/**
 * The relay's caps on what one peer, or all peers together, can make it
 * hold or do, with their defaults. `docs/security.md` lists each with what
 * it protects against; `relay/config.ts` has the flags.
 *
 * @module
 */

/** Caps on connections, streams and control capsules. */
export interface RelayLimits {
  /**
   * Concurrent request streams a client may open on one connection (QUIC
   * `maxConcurrentBidirectionalStreams`). Each connect-ip session holds one,
   * so with {@linkcode maxConnectionsPerSource} it bounds the sessions, and
   * the pool addresses, one source can take.
   */
  readonly maxRequestsPerConnection: number;
  /**
   * Concurrent unidirectional streams a client may open on one connection
   * (QUIC `maxConcurrentUnidirectionalStreams`): its control stream, QPACK
   * encoder and decoder streams, and a few of unknown type (GREASE), which
   * the relay stops reading at once.
   */
  readonly maxUnidirectionalStreams: number;
  /** Open connections plus connections in the handshake; past it new ones are refused. */
  readonly maxConnections: number;
  /** Open connections from one IPv4 address or IPv6 /64. */
  readonly maxConnectionsPerSource: number;
  /** Connections in the QUIC handshake at once; past it new ones are refused. */
  readonly maxHandshakes: number;
  /**
   * A connection with no open session this long is closed, milliseconds:
   * counted from the handshake, and again from the end of its last session.
   */
  readonly sessionlessTimeoutMs: number;
  /** ADDRESS_ASSIGN answers one session gets per second (RFC 9484 §4.7.2). */
  readonly addressRequestsPerSecond: number;
  /** ADDRESS_ASSIGN answers one session may get at once before the rate applies. */
  readonly addressRequestBurst: number;
  /**
   * Requested addresses (request ids) of one session waiting for their
   * answer: merged while an answer is unsent or the rate holds it back.
   * Past this the session is closed.
   */
  readonly maxPendingAddressRequests: number;
  /**
   * Sessions of one connection at once, whatever the transport (on HTTP/3
   * the stream cap {@linkcode maxRequestsPerConnection} may bind first).
   */
  readonly maxSessionsPerConnection: number;
  /** Failed authentications of one source (IPv4 address or IPv6 /64) per minute that block it. */
  readonly authFailuresPerMinute: number;
  /** How long a source is blocked the first time, milliseconds; doubled at each block after. */
  readonly authBackoffMs: number;
  /** Sources the failure limiter tracks; past it the oldest are forgotten. */
  readonly authFailureSources: number;
  /**
   * Bytes a session over TCP (HTTP/2, WebTransport) may have waiting to be
   * written before its packets are dropped: over TCP each byte queued is
   * delay for every packet behind it.
   */
  readonly maxQueuedBytes: number;
}

/**
 * The defaults. A client of this project opens one connection with one
 * request and never sends ADDRESS_REQUEST; the caps leave room for a few
 * clients behind one NAT and for clients that re-request their addresses,
 * and bound what a hostile one holds: 8 connections of about 160 KiB each,
 * 32 pool addresses, 1 KiB of pending answers.
 */
export const DEFAULT_RELAY_LIMITS: RelayLimits = Object.freeze({
  maxRequestsPerConnection: 4,
  maxUnidirectionalStreams: 8,
  maxConnections: 1024,
  maxConnectionsPerSource: 8,
  maxHandshakes: 64,
  sessionlessTimeoutMs: 10_000,
  addressRequestsPerSecond: 4,
  addressRequestBurst: 8,
  maxPendingAddressRequests: 64,
  maxSessionsPerConnection: 8,
  authFailuresPerMinute: 10,
  authBackoffMs: 60_000,
  authFailureSources: 10_000,
  maxQueuedBytes: 512 * 1024,
});

/** The longest a source stays blocked for failed authentications, milliseconds (1 h). */
export const AUTH_MAX_BACKOFF_MS = 3_600_000;

/**
 * The QUIC transport options that carry the stream caps, for
 * `Deno.QuicEndpoint.listen()`. `idleTimeoutMs` is QUIC's idle timeout.
 */
export function quicListenLimits(
  limits: Pick<RelayLimits, "maxRequestsPerConnection" | "maxUnidirectionalStreams">,
  idleTimeoutMs?: number,
): {
  maxConcurrentBidirectionalStreams: number;
  maxConcurrentUnidirectionalStreams: number;
  maxIdleTimeout?: number;
} {
  return {
    maxConcurrentBidirectionalStreams: limits.maxRequestsPerConnection,
    maxConcurrentUnidirectionalStreams: limits.maxUnidirectionalStreams,
    ...(idleTimeoutMs !== undefined ? { maxIdleTimeout: idleTimeoutMs } : {}),
  };
}
