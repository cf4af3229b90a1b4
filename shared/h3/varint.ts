/**
 * QUIC variable-length integers (RFC 9000 §16).
 *
 * The two high bits of the first byte give the encoded length (1, 2, 4 or 8
 * bytes); the remaining bits hold the value in network byte order. Values
 * above `Number.MAX_SAFE_INTEGER` are only exact through the `BigInt`
 * variants; the `number` variants are what the hot path uses.
 *
 * @module
 */

/** The largest value a varint can hold: 2^62 - 1 (RFC 9000 §16). */
export const VARINT_MAX = (1n << 62n) - 1n;

/** A varint that is truncated, or a value that cannot be encoded. */
export class VarintError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "VarintError";
  }
}

/** The encoded length in bytes announced by a varint's first byte. */
export function varintSizeFromFirstByte(firstByte: number): 1 | 2 | 4 | 8 {
  return (1 << (firstByte >> 6)) as 1 | 2 | 4 | 8;
}

/**
 * The number of bytes `value` takes when encoded in its shortest form.
 * Throws a {@linkcode VarintError} for negative, fractional or too large values.
 */
export function varintSize(value: number | bigint): 1 | 2 | 4 | 8 {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new VarintError(`Cannot encode varint: ${value} is not a non-negative safe integer`);
    }
    if (value < 0x40) return 1;
    if (value < 0x4000) return 2;
    if (value < 0x40000000) return 4;
    return 8;
  }
  if (value < 0n || value > VARINT_MAX) {
    throw new VarintError(`Cannot encode varint: ${value} is outside 0..2^62-1`);
  }
  if (value < 0x40n) return 1;
  if (value < 0x4000n) return 2;
  if (value < 0x40000000n) return 4;
  return 8;
}

function checkAvailable(buf: Uint8Array, offset: number): number {
  if (offset >= buf.length) {
    throw new VarintError(`Cannot read varint: need 1 byte at offset ${offset}, have 0`);
  }
  const size = varintSizeFromFirstByte(buf[offset]);
  if (offset + size > buf.length) {
    throw new VarintError(
      `Cannot read varint: need ${size} bytes at offset ${offset}, have ${buf.length - offset}`,
    );
  }
  return size;
}

/**
 * Reads the varint at `offset`. Throws a {@linkcode VarintError} when the
 * buffer ends before the varint does; use {@linkcode varintSizeFromFirstByte}
 * first in streaming parsers. Values above 2^53 lose precision; use
 * {@linkcode decodeVarintBigInt} where they matter.
 */
export function decodeVarint(buf: Uint8Array, offset = 0): number {
  const size = checkAvailable(buf, offset);
  switch (size) {
    case 1:
      return buf[offset];
    case 2:
      return ((buf[offset] & 0x3f) << 8) | buf[offset + 1];
    case 4:
      return ((buf[offset] & 0x3f) * 0x1000000) +
        ((buf[offset + 1] << 16) | (buf[offset + 2] << 8) | buf[offset + 3]);
    default: {
      const high = ((buf[offset] & 0x3f) * 0x1000000) +
        ((buf[offset + 1] << 16) | (buf[offset + 2] << 8) | buf[offset + 3]);
      const low = (buf[offset + 4] * 0x1000000) +
        ((buf[offset + 5] << 16) | (buf[offset + 6] << 8) | buf[offset + 7]);
      return high * 0x100000000 + low;
    }
  }
}

/** Reads the varint at `offset` exactly, as a `bigint`. */
export function decodeVarintBigInt(buf: Uint8Array, offset = 0): bigint {
  const size = checkAvailable(buf, offset);
  let value = BigInt(buf[offset] & 0x3f);
  for (let i = 1; i < size; i++) value = (value << 8n) | BigInt(buf[offset + i]);
  return value;
}

/**
 * Writes `value` at `offset` in its shortest form and returns the offset just
 * past it. The caller guarantees room for {@linkcode varintSize} bytes.
 */
export function encodeVarintInto(buf: Uint8Array, offset: number, value: number | bigint): number {
  const size = varintSize(value);
  if (offset + size > buf.length) {
    throw new VarintError(
      `Cannot write varint: need ${size} bytes at offset ${offset}, have ${buf.length - offset}`,
    );
  }
  if (typeof value === "bigint") {
    let v = value;
    for (let i = size - 1; i >= 0; i--) {
      buf[offset + i] = Number(v & 0xffn);
      v >>= 8n;
    }
  } else if (size === 8) {
    const high = Math.floor(value / 0x100000000);
    const low = value >>> 0;
    buf[offset] = high >>> 24;
    buf[offset + 1] = (high >>> 16) & 0xff;
    buf[offset + 2] = (high >>> 8) & 0xff;
    buf[offset + 3] = high & 0xff;
    buf[offset + 4] = low >>> 24;
    buf[offset + 5] = (low >>> 16) & 0xff;
    buf[offset + 6] = (low >>> 8) & 0xff;
    buf[offset + 7] = low & 0xff;
  } else {
    let v = value;
    for (let i = size - 1; i >= 0; i--) {
      buf[offset + i] = v & 0xff;
      v = Math.floor(v / 256);
    }
  }
  buf[offset] |= [0x00, 0x40, 0, 0x80, 0, 0, 0, 0xc0][size - 1];
  return offset + size;
}

/** Encodes `value` into a new array in its shortest form. */
export function encodeVarint(value: number | bigint): Uint8Array {
  const out = new Uint8Array(varintSize(value));
  encodeVarintInto(out, 0, value);
  return out;
}
