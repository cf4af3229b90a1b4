/**
 * HTTP Datagram Payloads carrying CONNECT-IP packets (RFC 9484 §6), and the
 * header in front of them in an HTTP/3 Datagram (RFC 9297 §2.1).
 *
 * ```
 * HTTP/3 Datagram {
 *   Quarter Stream ID (i),      // request stream ID / 4 (h3/quarter_stream.ts)
 *   HTTP Datagram Payload (..) {
 *     Context ID (i),           // 0: a full IP packet (RFC 9484 §6)
 *     Payload (..),
 *   }
 * }
 * ```
 *
 * Readers allocate nothing. The session writes the context id in front of
 * each packet (`connect_ip_session.ts`), and the HTTP/3 stream writes the
 * quarter stream id in front of that, both in place in one buffer
 * (`H3Datagrams` in `shared/h3/request_stream.ts`).
 *
 * @module
 */

import { decodeVarint, varintSizeFromFirstByte } from "../h3/varint.ts";

/** The context ID whose payload is a full IP packet (RFC 9484 §6). */
export const CONTEXT_ID_IP_PACKET = 0;

/** What {@linkcode parseContextId} returns for a payload without a whole context ID. */
export const MALFORMED_CONTEXT_ID = -1;

/**
 * Reads the Context ID at the start of an HTTP Datagram Payload, as received
 * in an HTTP/3 Datagram or a DATAGRAM capsule (RFC 9297 §3.5, RFC 9484 §6).
 * Returns {@linkcode MALFORMED_CONTEXT_ID} when the payload is empty or the
 * ID is truncated; the caller drops the payload. The data starts
 * {@linkcode contextIdSize} bytes in. No allocation. IDs above 2^53 - 1 are
 * approximate; such an ID is never 0.
 */
export function parseContextId(payload: Uint8Array): number {
  if (payload.length === 0 || varintSizeFromFirstByte(payload[0]) > payload.length) {
    return MALFORMED_CONTEXT_ID;
  }
  return decodeVarint(payload, 0);
}

/**
 * The size in bytes (1, 2, 4 or 8) of the Context ID at the start of a
 * payload that {@linkcode parseContextId} accepted.
 */
export function contextIdSize(payload: Uint8Array): number {
  return varintSizeFromFirstByte(payload[0]);
}
