/**
 * Quarter stream ids (RFC 9297 §2.1): every HTTP/3 Datagram starts with the
 * id of the request stream it belongs to, divided by four, as a variable-length
 * integer. The connection routes received datagrams by it.
 *
 * ```
 * HTTP/3 Datagram {
 *   Quarter Stream ID (i),      // request stream id / 4, at most 2^60 - 1
 *   HTTP Datagram Payload (..),
 * }
 * ```
 *
 * @module
 */

import { H3_DATAGRAM_ERROR, H3Error } from "../errors.ts";
import { decodeVarint, varintSizeFromFirstByte } from "./varint.ts";

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
 * Reads the Quarter Stream ID at the start of a received QUIC datagram; the
 * HTTP Datagram Payload starts {@linkcode quarterStreamIdSize} bytes in. No
 * allocation. A datagram whose id is truncated or above 2^60 - 1 is a
 * connection error (RFC 9297 §2.1): throws an {@linkcode H3Error} with code
 * H3_DATAGRAM_ERROR. Ids above 2^53 - 1 are approximate; they match no open
 * stream.
 */
export function parseQuarterStreamId(datagram: Uint8Array): number {
  if (datagram.length === 0 || varintSizeFromFirstByte(datagram[0]) > datagram.length) {
    throw new H3Error(H3_DATAGRAM_ERROR, "Cannot parse HTTP Datagram: truncated quarter stream id");
  }
  // Only an 8-byte varint (first byte 0xc0..0xff) with bit 60 or 61 set (the
  // first byte's 0x30) exceeds 2^60 - 1: first byte 0xd0 or above. Checked on
  // the byte because numbers above 2^53 are rounded.
  if (datagram[0] >= 0xd0) {
    throw new H3Error(
      H3_DATAGRAM_ERROR,
      "Cannot parse HTTP Datagram: quarter stream id above 2^60-1",
    );
  }
  return decodeVarint(datagram, 0);
}

/**
 * The size in bytes (1, 2, 4 or 8) of the Quarter Stream ID at the start of
 * a datagram that {@linkcode parseQuarterStreamId} accepted.
 */
export function quarterStreamIdSize(datagram: Uint8Array): number {
  return varintSizeFromFirstByte(datagram[0]);
}
