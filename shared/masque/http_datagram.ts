/**
 * HTTP/3 Datagrams (RFC 9297 §2.1) carrying CONNECT-IP payloads (RFC 9484 §6).
 *
 * ```
 * HTTP/3 Datagram {
 *   Quarter Stream ID (i),      // request stream ID / 4
 *   HTTP Datagram Payload (..) {
 *     Context ID (i),           // 0: a full IP packet (RFC 9484 §6)
 *     Payload (..),
 *   }
 * }
 * ```
 *
 * Parsers return views into the datagram (no copy); writers let callers keep
 * headroom in front of a packet and write the header in place.
 *
 * @module
 */

import { CapsuleError, H3_DATAGRAM_ERROR, H3Error } from "../errors.ts";
import {
  decodeVarint,
  encodeVarintInto,
  varintSize,
  varintSizeFromFirstByte,
} from "../h3/varint.ts";

/** The context ID whose payload is a full IP packet (RFC 9484 §6). */
export const CONTEXT_ID_IP_PACKET = 0;

/** The largest Quarter Stream ID: (2^62 - 1) / 4, i.e. 2^60 - 1 (RFC 9297 §2.1). */
export const MAX_QUARTER_STREAM_ID = 2n ** 60n - 1n;

/**
 * A parsed HTTP/3 Datagram. `payload` is a view into the datagram after the
 * context ID (no copy). IDs above 2^53 - 1 are approximate; such a quarter
 * stream ID matches no open stream and such a context ID is never 0.
 */
export interface HttpDatagram {
  readonly quarterStreamId: number;
  readonly contextId: number;
  readonly payload: Uint8Array;
}

/**
 * Parses a QUIC DATAGRAM frame's payload as an HTTP/3 Datagram with a
 * context ID (RFC 9297 §2.1, RFC 9484 §6).
 *
 * Throws an {@linkcode H3Error} with code `H3_DATAGRAM_ERROR`: a connection
 * error (`connection: true`) when the Quarter Stream ID is truncated or above
 * 2^60 - 1 (RFC 9297 §2.1); a datagram-only error (`connection: false`) when
 * the context ID is missing or truncated, after which the caller drops the
 * datagram (the HTTP Datagram Payload is malformed, RFC 9484 §6).
 */
export function parseHttpDatagram(datagram: Uint8Array): HttpDatagram {
  if (datagram.length === 0) {
    throw new H3Error(H3_DATAGRAM_ERROR, "Cannot parse HTTP/3 datagram: empty datagram");
  }
  const qsidSize = varintSizeFromFirstByte(datagram[0]);
  if (qsidSize > datagram.length) {
    throw new H3Error(
      H3_DATAGRAM_ERROR,
      `Cannot parse HTTP/3 datagram: quarter stream ID needs ${qsidSize} bytes, have ${datagram.length}`,
    );
  }
  // An 8-byte varint with any of its top two value bits set is 2^60 or more.
  if (qsidSize === 8 && (datagram[0] & 0x30) !== 0) {
    throw new H3Error(
      H3_DATAGRAM_ERROR,
      "Cannot parse HTTP/3 datagram: quarter stream ID exceeds 2^60-1",
    );
  }
  const quarterStreamId = decodeVarint(datagram, 0);
  if (qsidSize === datagram.length) {
    throw new H3Error(
      H3_DATAGRAM_ERROR,
      "Cannot parse HTTP/3 datagram: missing context ID",
      { connection: false },
    );
  }
  const contextSize = varintSizeFromFirstByte(datagram[qsidSize]);
  if (qsidSize + contextSize > datagram.length) {
    throw new H3Error(
      H3_DATAGRAM_ERROR,
      `Cannot parse HTTP/3 datagram: context ID needs ${contextSize} bytes, have ${
        datagram.length - qsidSize
      }`,
      { connection: false },
    );
  }
  const contextId = decodeVarint(datagram, qsidSize);
  return { quarterStreamId, contextId, payload: datagram.subarray(qsidSize + contextSize) };
}

/** The size in bytes of the quarter stream ID and context ID in front of a payload. */
export function httpDatagramHeaderSize(quarterStreamId: number, contextId: number): number {
  return varintSize(quarterStreamId) + varintSize(contextId);
}

/**
 * Writes the quarter stream ID and context ID at `offset` and returns the
 * offset just after them, where the payload goes. Callers that read packets
 * at an offset of {@linkcode httpDatagramHeaderSize} bytes can send the
 * datagram without copying the packet. Throws a `VarintError` when `buf`
 * has no room.
 */
export function writeHttpDatagramHeader(
  buf: Uint8Array,
  offset: number,
  quarterStreamId: number,
  contextId: number,
): number {
  return encodeVarintInto(buf, encodeVarintInto(buf, offset, quarterStreamId), contextId);
}

/** Encodes an HTTP/3 Datagram into a new array (copies `payload`). */
export function encodeHttpDatagram(
  quarterStreamId: number,
  contextId: number,
  payload: Uint8Array,
): Uint8Array {
  const headerSize = httpDatagramHeaderSize(quarterStreamId, contextId);
  const out = new Uint8Array(headerSize + payload.length);
  writeHttpDatagramHeader(out, 0, quarterStreamId, contextId);
  out.set(payload, headerSize);
  return out;
}

/**
 * The Quarter Stream ID of a request stream: its stream ID divided by four
 * (RFC 9297 §2.1). Throws a `RangeError` unless `streamId` is a
 * client-initiated bidirectional stream ID (a non-negative multiple of 4,
 * RFC 9000 §2.1) whose quarter fits a safe integer.
 */
export function quarterStreamId(streamId: bigint | number): number {
  const id = typeof streamId === "bigint"
    ? streamId
    : Number.isSafeInteger(streamId)
    ? BigInt(streamId)
    : -1n;
  if (id < 0n || id % 4n !== 0n) {
    throw new RangeError(
      `Cannot derive quarter stream ID: ${streamId} is not a client-initiated bidirectional stream ID`,
    );
  }
  const quarter = id / 4n;
  if (quarter > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RangeError(`Cannot derive quarter stream ID: stream ID ${streamId} is too large`);
  }
  return Number(quarter);
}

/**
 * Splits an HTTP Datagram Payload, as carried in a DATAGRAM capsule
 * (RFC 9297 §3.5), into its context ID and data (a view, no copy;
 * RFC 9484 §6). Throws a {@linkcode CapsuleError} when the context ID is
 * missing or truncated; the caller drops the payload.
 */
export function parseDatagramPayload(payload: Uint8Array): { contextId: number; data: Uint8Array } {
  if (payload.length === 0) {
    throw new CapsuleError("Cannot parse HTTP Datagram Payload: missing context ID");
  }
  const size = varintSizeFromFirstByte(payload[0]);
  if (size > payload.length) {
    throw new CapsuleError(
      `Cannot parse HTTP Datagram Payload: context ID needs ${size} bytes, have ${payload.length}`,
    );
  }
  return { contextId: decodeVarint(payload, 0), data: payload.subarray(size) };
}
