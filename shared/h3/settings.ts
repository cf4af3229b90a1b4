/**
 * HTTP/3 SETTINGS (RFC 9114 §7.2.4) with the settings this VPN relies on:
 * QPACK (RFC 9204 §5), extended CONNECT (RFC 9220 §3) and HTTP datagrams
 * (RFC 9297 §2.1.1).
 *
 * A SETTINGS payload is a sequence of `Identifier (i) | Value (i)` pairs.
 *
 * @module
 */

import { H3_FRAME_ERROR, H3_SETTINGS_ERROR, H3Error } from "../errors.ts";
import { FRAME_SETTINGS } from "./frame.ts";
import {
  decodeVarint,
  decodeVarintBigInt,
  encodeVarintInto,
  varintSize,
  varintSizeFromFirstByte,
} from "./varint.ts";

/** Capacity in bytes of the peer's QPACK dynamic table (RFC 9204 §5); default 0. */
export const SETTINGS_QPACK_MAX_TABLE_CAPACITY = 0x01;
/** Largest field section in bytes the sender accepts (RFC 9114 §7.2.4.1); default unlimited. */
export const SETTINGS_MAX_FIELD_SECTION_SIZE = 0x06;
/** Streams that may be blocked on QPACK dynamic table updates (RFC 9204 §5); default 0. */
export const SETTINGS_QPACK_BLOCKED_STREAMS = 0x07;
/** 1 when the sender accepts extended CONNECT with `:protocol` (RFC 9220 §3); 0 or 1 only. */
export const SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x08;
/** 1 when the sender supports HTTP datagrams (RFC 9297 §2.1.1); 0 or 1 only. */
export const SETTINGS_H3_DATAGRAM = 0x33;

/** Received or local settings: identifier to value. */
export type Settings = ReadonlyMap<number, number>;

const SETTING_NAMES: ReadonlyMap<number, string> = new Map([
  [SETTINGS_QPACK_MAX_TABLE_CAPACITY, "SETTINGS_QPACK_MAX_TABLE_CAPACITY"],
  [SETTINGS_MAX_FIELD_SECTION_SIZE, "SETTINGS_MAX_FIELD_SECTION_SIZE"],
  [SETTINGS_QPACK_BLOCKED_STREAMS, "SETTINGS_QPACK_BLOCKED_STREAMS"],
  [SETTINGS_ENABLE_CONNECT_PROTOCOL, "SETTINGS_ENABLE_CONNECT_PROTOCOL"],
  [SETTINGS_H3_DATAGRAM, "SETTINGS_H3_DATAGRAM"],
]);

/** Settings whose only legal values are 0 and 1 (RFC 9220 §3, RFC 9297 §2.1.1). */
const BOOLEAN_SETTINGS: ReadonlySet<number> = new Set([
  SETTINGS_ENABLE_CONNECT_PROTOCOL,
  SETTINGS_H3_DATAGRAM,
]);

/** HTTP/2 setting identifiers that are reserved in HTTP/3 (RFC 9114 §7.2.4.1, §11.2.2). */
function isHttp2OnlySetting(id: number): boolean {
  return id >= 0x02 && id <= 0x05;
}

/** Largest N used for the GREASE identifier, keeping it a 4-byte varint. */
const GREASE_MAX_N = 0x100000;

function hex(value: number | bigint): string {
  return `0x${value.toString(16).padStart(2, "0")}`;
}

/**
 * Encodes a whole SETTINGS frame (RFC 9114 §7.2.4): type 0x04, length, then
 * the pairs in iteration order, followed by one reserved setting
 * `0x1f * N + 0x21` with random N and a random value below 256, as RFC 9114
 * §7.2.4.1 recommends so that peers keep ignoring unknown settings.
 *
 * Throws a `RangeError` for a duplicate identifier or an HTTP/2-only one
 * (0x02..0x05), which the peer would reject, and a `VarintError` for a value
 * that is not an integer in 0..2^53-1.
 *
 * @param options.grease Append the reserved setting; defaults to true.
 */
export function encodeSettingsFrame(
  settings: Iterable<readonly [number, number]>,
  options: { grease?: boolean } = {},
): Uint8Array {
  const pairs: Array<readonly [number, number]> = [];
  const seen = new Set<number>();
  for (const [id, value] of settings) {
    if (seen.has(id)) {
      throw new RangeError(`Cannot encode SETTINGS: duplicate setting ${hex(id)}`);
    }
    if (isHttp2OnlySetting(id)) {
      throw new RangeError(`Cannot encode SETTINGS: HTTP/2 setting ${hex(id)} is not allowed`);
    }
    seen.add(id);
    pairs.push([id, value]);
  }
  if (options.grease ?? true) {
    let id: number;
    do {
      id = 0x1f * Math.floor(Math.random() * GREASE_MAX_N) + 0x21;
    } while (seen.has(id));
    pairs.push([id, Math.floor(Math.random() * 256)]);
  }

  let payloadLength = 0;
  for (const [id, value] of pairs) payloadLength += varintSize(id) + varintSize(value);
  const out = new Uint8Array(
    varintSize(FRAME_SETTINGS) + varintSize(payloadLength) + payloadLength,
  );
  let offset = encodeVarintInto(out, 0, FRAME_SETTINGS);
  offset = encodeVarintInto(out, offset, payloadLength);
  for (const [id, value] of pairs) {
    offset = encodeVarintInto(out, offset, id);
    offset = encodeVarintInto(out, offset, value);
  }
  return out;
}

/**
 * Parses a SETTINGS frame payload (RFC 9114 §7.2.4) into a new map. Unknown
 * and reserved identifiers are kept; values above 2^53 lose precision.
 *
 * Throws an {@linkcode H3Error} (a connection error) with code:
 * - H3_SETTINGS_ERROR for a duplicate identifier, an HTTP/2-only identifier
 *   0x02..0x05 (RFC 9114 §7.2.4.1), or SETTINGS_ENABLE_CONNECT_PROTOCOL
 *   (RFC 9220 §3) or SETTINGS_H3_DATAGRAM (RFC 9297 §2.1.1) with a value
 *   other than 0 or 1;
 * - H3_FRAME_ERROR when the payload ends inside a pair (RFC 9114 §7.1).
 */
export function parseSettingsPayload(payload: Uint8Array): Map<number, number> {
  const settings = new Map<number, number>();
  // Identifiers above 2^53 may collide as numbers; duplicates among them are
  // checked exactly.
  const largeIds = new Set<bigint>();
  let offset = 0;
  while (offset < payload.length) {
    const idSize = varintSizeFromFirstByte(payload[offset]);
    if (offset + idSize > payload.length) throw truncated(payload, offset, "identifier");
    const id = decodeVarint(payload, offset);
    const valueOffset = offset + idSize;
    if (valueOffset >= payload.length) throw truncated(payload, valueOffset, "value");
    const valueSize = varintSizeFromFirstByte(payload[valueOffset]);
    if (valueOffset + valueSize > payload.length) throw truncated(payload, valueOffset, "value");
    const value = decodeVarint(payload, valueOffset);

    if (Number.isSafeInteger(id)) {
      if (settings.has(id)) {
        throw new H3Error(H3_SETTINGS_ERROR, `Cannot parse SETTINGS: duplicate setting ${hex(id)}`);
      }
    } else {
      const exactId = decodeVarintBigInt(payload, offset);
      if (largeIds.has(exactId)) {
        throw new H3Error(
          H3_SETTINGS_ERROR,
          `Cannot parse SETTINGS: duplicate setting ${hex(exactId)}`,
        );
      }
      largeIds.add(exactId);
    }
    if (isHttp2OnlySetting(id)) {
      throw new H3Error(
        H3_SETTINGS_ERROR,
        `Cannot parse SETTINGS: HTTP/2 setting ${hex(id)} is not allowed in HTTP/3`,
      );
    }
    if (BOOLEAN_SETTINGS.has(id) && value !== 0 && value !== 1) {
      throw new H3Error(
        H3_SETTINGS_ERROR,
        `Cannot parse SETTINGS: ${SETTING_NAMES.get(id)} value ${
          decodeVarintBigInt(payload, valueOffset)
        } must be 0 or 1`,
      );
    }
    settings.set(id, value);
    offset = valueOffset + valueSize;
  }
  return settings;
}

function truncated(payload: Uint8Array, offset: number, field: string): H3Error {
  return new H3Error(
    H3_FRAME_ERROR,
    `Cannot parse SETTINGS: ${field} at offset ${offset} is truncated (payload is ${payload.length} bytes)`,
  );
}

/**
 * The relay's settings (RFC 9114 §7.2.4.1): no QPACK dynamic table
 * (RFC 9204 §5), extended CONNECT enabled (RFC 9220 §3), HTTP datagrams
 * enabled (RFC 9297 §2.1.1). A new map each call.
 */
export function serverSettings(): Map<number, number> {
  return new Map([
    [SETTINGS_QPACK_MAX_TABLE_CAPACITY, 0],
    [SETTINGS_QPACK_BLOCKED_STREAMS, 0],
    [SETTINGS_ENABLE_CONNECT_PROTOCOL, 1],
    [SETTINGS_H3_DATAGRAM, 1],
  ]);
}

/**
 * The client's settings: as {@linkcode serverSettings} but without
 * SETTINGS_ENABLE_CONNECT_PROTOCOL, which only the server of extended CONNECT
 * announces (RFC 9220 §3). A new map each call.
 */
export function clientSettings(): Map<number, number> {
  return new Map([
    [SETTINGS_QPACK_MAX_TABLE_CAPACITY, 0],
    [SETTINGS_QPACK_BLOCKED_STREAMS, 0],
    [SETTINGS_H3_DATAGRAM, 1],
  ]);
}
