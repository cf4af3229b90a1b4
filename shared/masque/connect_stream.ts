/**
 * The transport seam of a CONNECT-IP session: what a {@linkcode ConnectIpSession}
 * needs from the stream its request opened, and nothing more, as
 * connect-ip-go's `http3Stream` interface is for its `Conn`.
 *
 * - The request stream carries the capsule protocol (RFC 9297 §3) both ways:
 *   {@linkcode ConnectStream.readBody} yields its bytes as the peer sends
 *   them, {@linkcode ConnectStream.writeData} writes capsule bytes.
 * - HTTP Datagrams (RFC 9297 §2) are optional: a transport without them
 *   (HTTP/2 extended CONNECT, RFC 8441) has no {@linkcode ConnectStream.datagrams}
 *   and its sessions carry packets in DATAGRAM capsules (stream mode).
 *
 * HTTP/3 implements it with `H3RequestStream` (`shared/h3/request_stream.ts`);
 * `shared/masque/h3_connect_ip.ts` opens and answers the request and makes
 * the session. HTTP/2 (`h2_connect_ip.ts`, no datagrams) and WebTransport
 * (`wt_connect_ip.ts`, packets on a stream of their own) are the others. Which packet mode a session uses is decided outside it, from
 * the peer's SETTINGS, and passed in.
 *
 * @module
 */

import type { ByteBudget } from "../h3/byte_budget.ts";

/**
 * The transports a CONNECT-IP session runs on: HTTP/3 (`h3`, RFC 9484 over
 * RFC 9220), HTTP/2 (`h2`, RFC 9484 over RFC 8441) and WebTransport over
 * HTTP/2 (`webtransport`, the project's own convention; see
 * `wt_connect_ip.ts`).
 */
export type TransportName = "h3" | "h2" | "webtransport";

/** What {@linkcode DatagramChannel.send} did with a datagram. */
export type DatagramSendResult = "sent" | "too_big" | "closed";

/**
 * The HTTP Datagrams of one request stream (RFC 9297 §2). A datagram's
 * payload is the session's bytes (context id and packet); the transport
 * puts what identifies the stream in front of it (HTTP/3: the quarter
 * stream id, §2.1).
 */
export interface DatagramChannel {
  /**
   * Bytes the transport writes in front of each payload, which a buffer
   * passed to {@linkcode send} leaves free at its start (HTTP/3: the size of
   * the quarter stream id varint). Fixed for the stream's life.
   */
  readonly prefixLength: number;
  /**
   * The largest payload that fits in one datagram now, in bytes (the
   * prefix not included). It may grow as path MTU discovery proceeds.
   */
  readonly maxPayloadSize: number;
  /**
   * Sends one datagram. `buffer` holds {@linkcode prefixLength} free bytes
   * and then the payload; the transport fills the prefix in place and is
   * done with the buffer when this returns, so the caller may reuse it (a
   * TUN slot, a scratch buffer). `"too_big"` when the payload exceeds
   * {@linkcode maxPayloadSize}, `"closed"` when the stream or connection
   * is gone. A datagram dropped at a full send queue is `"sent"`: datagrams
   * are unreliable (RFC 9297 §2). Never throws.
   */
  send(buffer: Uint8Array): DatagramSendResult;
  /**
   * Receives the stream's datagrams: `handler` gets each payload (after the
   * prefix), a view valid only during the call. One handler; a later call
   * replaces it.
   */
  onDatagram(handler: (payload: Uint8Array) => void): void;
}

/**
 * The stream of an accepted CONNECT-IP request (extended CONNECT, RFC 9220
 * and RFC 8441), after the request and a 2xx response.
 */
export interface ConnectStream {
  /**
   * Yields the bytes of the request stream's body (the capsule protocol)
   * as they arrive, until the peer ends the stream cleanly; rejects on a
   * stream or connection error. Each chunk is a view valid until the next
   * `next()` call. Call `next()` directly rather than `for await`, whose
   * loop variable would keep the chunk (and its read buffer) alive while
   * the next read waits.
   */
  readBody(): AsyncIterator<Uint8Array>;
  /** Writes capsule bytes; rejects when the stream is gone. */
  writeData(bytes: Uint8Array): Promise<void>;
  /** Whether writes can still succeed. */
  readonly writable: boolean;
  /**
   * Bytes passed to {@linkcode writeData} that still wait in this side's
   * buffers to be written (HTTP/2: the stream's write buffer), when the
   * transport can tell; a session bounds its stream-mode packets by it
   * (`ConnectIpSessionOptions.maxBytesQueued`).
   */
  readonly queuedBytes?: number;
  /** Ends the sending side cleanly (FIN) and stops taking datagrams. */
  end(): Promise<void>;
  /**
   * Abandons the stream: stops reading and ends the sending side. A read
   * waiting in {@linkcode readBody} then rejects with a stream error of
   * this side's making, never as if the peer had cut a frame short.
   */
  abort(): void;
  /**
   * Told of an error that ended the session's reading and is not the
   * session's own malformed capsule: the transport closes its connection
   * when the error is a connection error of its protocol (for example
   * HTTP/3's H3_EXCESSIVE_LOAD from {@linkcode bufferBudget}), and
   * otherwise ignores it.
   */
  fail(error: unknown): void;
  /**
   * The budget of bytes the peer may make this side hold between reads, in
   * which the session's capsule parser reserves a partial capsule; shared
   * by the connection's streams. Undefined: nothing is counted.
   */
  readonly bufferBudget?: ByteBudget;
  /** The stream's HTTP Datagrams, when the transport has them. */
  readonly datagrams?: DatagramChannel;
}
