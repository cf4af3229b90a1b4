/**
 * QPACK field section encoding and decoding (RFC 9204) without a dynamic
 * table.
 *
 * Both peers of this project advertise SETTINGS_QPACK_MAX_TABLE_CAPACITY = 0
 * and SETTINGS_QPACK_BLOCKED_STREAMS = 0, so a field section may only use the
 * static table (RFC 9204 Appendix A) and literals, and the encoder and
 * decoder streams carry almost nothing: {@linkcode QpackEncoderStreamReader}
 * and {@linkcode QpackDecoderStreamReader} accept what may still come and
 * reject the rest. The decoder treats every dynamic table reference as
 * QPACK_DECOMPRESSION_FAILED (RFC 9204 §2.2.3) and bounds the decoded size by
 * SETTINGS_MAX_FIELD_SECTION_SIZE as RFC 9114 §4.2.2 counts it.
 *
 * Strings are UTF-8 on the wire here: the encoder writes `TextEncoder`
 * bytes and the decoder reads with a non-fatal `TextDecoder`, so ASCII
 * round-trips byte for byte and invalid UTF-8 becomes U+FFFD.
 *
 * @module
 */

import {
  H3_EXCESSIVE_LOAD,
  H3Error,
  QPACK_DECODER_STREAM_ERROR,
  QPACK_DECOMPRESSION_FAILED,
  QPACK_ENCODER_STREAM_ERROR,
} from "../errors.ts";
import {
  huffmanDecode,
  huffmanDecodedLength,
  huffmanEncode,
  huffmanEncodedLength,
  HuffmanError,
} from "./huffman.ts";

/** A field line: a lowercase name and a value (RFC 9114 §4.2). */
export type HeaderField = readonly [name: string, value: string];

/** The QPACK static table, indexed from 0 (RFC 9204 Appendix A). */
export const QPACK_STATIC_TABLE: readonly HeaderField[] = Object.freeze(
  ([
    [":authority", ""],
    [":path", "/"],
    ["age", "0"],
    ["content-disposition", ""],
    ["content-length", "0"],
    ["cookie", ""],
    ["date", ""],
    ["etag", ""],
    ["if-modified-since", ""],
    ["if-none-match", ""],
    ["last-modified", ""],
    ["link", ""],
    ["location", ""],
    ["referer", ""],
    ["set-cookie", ""],
    [":method", "CONNECT"],
    [":method", "DELETE"],
    [":method", "GET"],
    [":method", "HEAD"],
    [":method", "OPTIONS"],
    [":method", "POST"],
    [":method", "PUT"],
    [":scheme", "http"],
    [":scheme", "https"],
    [":status", "103"],
    [":status", "200"],
    [":status", "304"],
    [":status", "404"],
    [":status", "503"],
    ["accept", "*/*"],
    ["accept", "application/dns-message"],
    ["accept-encoding", "gzip, deflate, br"],
    ["accept-ranges", "bytes"],
    ["access-control-allow-headers", "cache-control"],
    ["access-control-allow-headers", "content-type"],
    ["access-control-allow-origin", "*"],
    ["cache-control", "max-age=0"],
    ["cache-control", "max-age=2592000"],
    ["cache-control", "max-age=604800"],
    ["cache-control", "no-cache"],
    ["cache-control", "no-store"],
    ["cache-control", "public, max-age=31536000"],
    ["content-encoding", "br"],
    ["content-encoding", "gzip"],
    ["content-type", "application/dns-message"],
    ["content-type", "application/javascript"],
    ["content-type", "application/json"],
    ["content-type", "application/x-www-form-urlencoded"],
    ["content-type", "image/gif"],
    ["content-type", "image/jpeg"],
    ["content-type", "image/png"],
    ["content-type", "text/css"],
    ["content-type", "text/html; charset=utf-8"],
    ["content-type", "text/plain"],
    ["content-type", "text/plain;charset=utf-8"],
    ["range", "bytes=0-"],
    ["strict-transport-security", "max-age=31536000"],
    ["strict-transport-security", "max-age=31536000; includesubdomains"],
    ["strict-transport-security", "max-age=31536000; includesubdomains; preload"],
    ["vary", "accept-encoding"],
    ["vary", "origin"],
    ["x-content-type-options", "nosniff"],
    ["x-xss-protection", "1; mode=block"],
    [":status", "100"],
    [":status", "204"],
    [":status", "206"],
    [":status", "302"],
    [":status", "400"],
    [":status", "403"],
    [":status", "421"],
    [":status", "425"],
    [":status", "500"],
    ["accept-language", ""],
    ["access-control-allow-credentials", "FALSE"],
    ["access-control-allow-credentials", "TRUE"],
    ["access-control-allow-headers", "*"],
    ["access-control-allow-methods", "get"],
    ["access-control-allow-methods", "get, post, options"],
    ["access-control-allow-methods", "options"],
    ["access-control-expose-headers", "content-length"],
    ["access-control-request-headers", "content-type"],
    ["access-control-request-method", "get"],
    ["access-control-request-method", "post"],
    ["alt-svc", "clear"],
    ["authorization", ""],
    ["content-security-policy", "script-src 'none'; object-src 'none'; base-uri 'none'"],
    ["early-data", "1"],
    ["expect-ct", ""],
    ["forwarded", ""],
    ["if-range", ""],
    ["origin", ""],
    ["purpose", "prefetch"],
    ["server", ""],
    ["timing-allow-origin", "*"],
    ["upgrade-insecure-requests", "1"],
    ["user-agent", ""],
    ["x-forwarded-for", ""],
    ["x-frame-options", "deny"],
    ["x-frame-options", "sameorigin"],
  ] satisfies HeaderField[]).map((field) => Object.freeze(field)),
);

/**
 * The SETTINGS_MAX_FIELD_SECTION_SIZE this decoder applies when the caller
 * gives none, in bytes as RFC 9114 §4.2.2 counts them.
 */
export const DEFAULT_MAX_FIELD_SECTION_SIZE = 65536;

/** The per-field overhead in the field section size, in bytes (RFC 9114 §4.2.2). */
export const FIELD_SIZE_OVERHEAD = 32;

/** The largest prefixed integer the decoder accepts (RFC 9204 §4.1.1). */
export const QPACK_MAX_INTEGER = 2 ** 32 - 1;

const DYNAMIC_REFERENCE = "dynamic table reference with a zero-capacity table";

// Field line representations (RFC 9204 §4.5): the high bits of the first byte.
const INDEXED = 0x80; // 1T + 6-bit index (§4.5.2)
const INDEXED_STATIC = 0x40; // T
const LITERAL_NAME_REF = 0x40; // 01NT + 4-bit index (§4.5.4)
const LITERAL_NAME_REF_STATIC = 0x10; // T
const LITERAL_NAME = 0x20; // 001NH + 3-bit name length (§4.5.6)
// A string literal's H flag is the bit just above its length prefix (§4.1.2):
// 0x08 for a literal name, 0x80 for a value.

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/**
 * The size of `fields` as SETTINGS_MAX_FIELD_SECTION_SIZE counts it: the
 * UTF-8 lengths of each name and value plus 32 bytes per field
 * (RFC 9114 §4.2.2).
 */
export function fieldSectionSize(fields: readonly HeaderField[]): number {
  let size = 0;
  for (const [name, value] of fields) {
    size += utf8Length(name) + utf8Length(value) + FIELD_SIZE_OVERHEAD;
  }
  return size;
}

function utf8Length(s: string): number {
  let ascii = true;
  for (let i = 0; i < s.length && ascii; i++) ascii = s.charCodeAt(i) < 0x80;
  return ascii ? s.length : encoder.encode(s).length;
}

function failed(message: string): H3Error {
  return new H3Error(QPACK_DECOMPRESSION_FAILED, `Cannot decode field section: ${message}`);
}

function staticEntry(index: number): HeaderField {
  if (index >= QPACK_STATIC_TABLE.length) {
    throw failed(
      `static table index ${index} out of range (${QPACK_STATIC_TABLE.length} entries)`,
    );
  }
  return QPACK_STATIC_TABLE[index];
}

/** A cursor over an encoded field section that throws {@linkcode H3Error}s. */
class FieldSectionReader {
  readonly #bytes: Uint8Array;
  readonly #limit: number;
  #offset = 0;
  #size = 0;

  constructor(bytes: Uint8Array, limit: number) {
    this.#bytes = bytes;
    this.#limit = limit;
  }

  get done(): boolean {
    return this.#offset >= this.#bytes.length;
  }

  peek(): number {
    return this.#bytes[this.#offset];
  }

  /** Adds `bytes` to the field section size and enforces the limit. */
  count(bytes: number): void {
    this.#size += bytes;
    if (this.#size > this.#limit) this.#tooLarge();
  }

  #tooLarge(): never {
    throw new H3Error(
      H3_EXCESSIVE_LOAD,
      `Cannot decode field section: size ${this.#size} exceeds limit ${this.#limit}`,
      { connection: false },
    );
  }

  /** A prefixed integer with a `prefixBits`-bit prefix (RFC 7541 §5.1, RFC 9204 §4.1.1). */
  integer(prefixBits: number, what: string): number {
    const bytes = this.#bytes;
    const start = this.#offset;
    if (start >= bytes.length) throw failed(`truncated ${what} at offset ${start}`);
    const mask = (1 << prefixBits) - 1;
    let value = bytes[this.#offset++] & mask;
    if (value < mask) return value;
    for (let shift = 0;; shift += 7) {
      if (this.#offset >= bytes.length) throw failed(`truncated ${what} at offset ${start}`);
      const byte = bytes[this.#offset++];
      value += (byte & 0x7f) * 2 ** shift;
      // Five continuation bytes carry 35 bits: enough for 2^32 - 1 and no more.
      if (value > QPACK_MAX_INTEGER || ((byte & 0x80) !== 0 && shift >= 28)) {
        throw failed(`${what} at offset ${start} exceeds ${QPACK_MAX_INTEGER}`);
      }
      if ((byte & 0x80) === 0) return value;
    }
  }

  /**
   * A string literal whose H flag is the bit just above a `prefixBits`-bit
   * length (RFC 9204 §4.1.2); counts its decoded length towards the size
   * limit before building the string.
   */
  string(prefixBits: number, what: string): string {
    const huffman = (this.peek() & (1 << prefixBits)) !== 0;
    const start = this.#offset;
    const length = this.integer(prefixBits, `${what} length`);
    const available = this.#bytes.length - this.#offset;
    if (length > available) {
      throw failed(`${what} at offset ${start} has length ${length} but ${available} bytes remain`);
    }
    const raw = this.#bytes.subarray(this.#offset, this.#offset + length);
    this.#offset += length;
    if (!huffman) {
      this.count(length);
      return decodeText(raw);
    }
    const budget = this.#limit - this.#size;
    let decoded: Uint8Array;
    try {
      decoded = huffmanDecode(raw, budget);
    } catch (error) {
      // Over budget, or malformed: measure without a limit to tell which.
      let decodedLength: number;
      try {
        decodedLength = huffmanDecodedLength(raw);
      } catch (malformed) {
        throw failed(`invalid Huffman ${what} at offset ${start}: ${reasonOf(malformed)}`);
      }
      if (decodedLength > budget) this.count(decodedLength);
      throw failed(`invalid Huffman ${what} at offset ${start}: ${reasonOf(error)}`);
    }
    this.count(decoded.length);
    return decodeText(decoded);
  }
}

function reasonOf(error: unknown): string {
  if (error instanceof HuffmanError) return error.reason;
  throw error;
}

function decodeText(bytes: Uint8Array): string {
  // Short ASCII strings are the common case; skip the TextDecoder call.
  if (bytes.length <= 64) {
    let s = "";
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      if (b >= 0x80) return decoder.decode(bytes);
      s += String.fromCharCode(b);
    }
    return s;
  }
  return decoder.decode(bytes);
}

/**
 * Decodes an encoded field section (RFC 9204 §4.5) that uses only the static
 * table and literals. `options.maxFieldSectionSize` is the limit this
 * endpoint advertised in SETTINGS_MAX_FIELD_SECTION_SIZE (RFC 9114 §4.2.2),
 * in bytes; it defaults to {@linkcode DEFAULT_MAX_FIELD_SECTION_SIZE} and is
 * enforced while decoding, before oversized strings are built.
 *
 * Throws only {@linkcode H3Error}: QPACK_DECOMPRESSION_FAILED for a dynamic
 * table reference, a static index past the table, truncated input, an
 * integer above 2^32 - 1 or a malformed Huffman string; H3_EXCESSIVE_LOAD
 * (a stream error, `connection: false`) for a section over the size limit.
 * The input is not retained.
 */
export function decodeFieldSection(
  bytes: Uint8Array,
  options: { maxFieldSectionSize?: number } = {},
): HeaderField[] {
  const reader = new FieldSectionReader(
    bytes,
    options.maxFieldSectionSize ?? DEFAULT_MAX_FIELD_SECTION_SIZE,
  );
  // Encoded Field Section Prefix (RFC 9204 §4.5.1).
  if (reader.integer(8, "Required Insert Count") !== 0) throw failed(DYNAMIC_REFERENCE);
  // With a Required Insert Count of 0 the Base is unused (§4.5.1.2).
  reader.integer(7, "Delta Base");

  const fields: HeaderField[] = [];
  while (!reader.done) {
    const first = reader.peek();
    if (first & INDEXED) {
      // Indexed Field Line (§4.5.2).
      if (!(first & INDEXED_STATIC)) throw failed(DYNAMIC_REFERENCE);
      const field = staticEntry(reader.integer(6, "static index"));
      reader.count(field[0].length + field[1].length + FIELD_SIZE_OVERHEAD);
      fields.push(field);
    } else if (first & LITERAL_NAME_REF) {
      // Literal Field Line with Name Reference (§4.5.4).
      if (!(first & LITERAL_NAME_REF_STATIC)) throw failed(DYNAMIC_REFERENCE);
      const name = staticEntry(reader.integer(4, "name index"))[0];
      reader.count(name.length + FIELD_SIZE_OVERHEAD);
      fields.push([name, reader.string(7, "value")]);
    } else if (first & LITERAL_NAME) {
      // Literal Field Line with Literal Name (§4.5.6).
      reader.count(FIELD_SIZE_OVERHEAD);
      const name = reader.string(3, "name");
      fields.push([name, reader.string(7, "value")]);
    } else {
      // 0001xxxx Indexed Field Line with Post-Base Index (§4.5.3) and
      // 0000xxxx Literal Field Line with Post-Base Name Reference (§4.5.5).
      throw failed(DYNAMIC_REFERENCE);
    }
  }
  return fields;
}

// --- Encoder ----------------------------------------------------------------

const STATIC_EXACT = new Map<string, Map<string, number>>();
const STATIC_NAME = new Map<string, number>();
for (const [index, [name, value]] of QPACK_STATIC_TABLE.entries()) {
  if (!STATIC_NAME.has(name)) STATIC_NAME.set(name, index);
  let values = STATIC_EXACT.get(name);
  if (values === undefined) STATIC_EXACT.set(name, values = new Map());
  if (!values.has(value)) values.set(value, index);
}

/** A growable output buffer for the encoder. */
class ByteWriter {
  #buffer: Uint8Array;
  #length = 0;

  constructor(capacity: number) {
    this.#buffer = new Uint8Array(capacity);
  }

  #reserve(extra: number): void {
    if (this.#length + extra <= this.#buffer.length) return;
    const grown = new Uint8Array(Math.max(this.#buffer.length * 2, this.#length + extra));
    grown.set(this.#buffer.subarray(0, this.#length));
    this.#buffer = grown;
  }

  /** A prefixed integer (RFC 7541 §5.1) with `flags` in the bits above the prefix. */
  integer(value: number, prefixBits: number, flags: number): void {
    this.#reserve(6);
    const mask = (1 << prefixBits) - 1;
    if (value < mask) {
      this.#buffer[this.#length++] = flags | value;
      return;
    }
    this.#buffer[this.#length++] = flags | mask;
    let rest = value - mask;
    while (rest >= 0x80) {
      this.#buffer[this.#length++] = (rest % 0x80) | 0x80;
      rest = Math.floor(rest / 0x80);
    }
    this.#buffer[this.#length++] = rest;
  }

  /** A string literal (RFC 9204 §4.1.2), Huffman-coded when that is shorter. */
  string(text: string, prefixBits: number, flags: number, huffman: boolean): void {
    const raw = encoder.encode(text);
    const huffmanLength = huffman ? huffmanEncodedLength(raw) : Infinity;
    const useHuffman = huffmanLength < raw.length;
    const bytes = useHuffman ? huffmanEncode(raw) : raw;
    this.integer(bytes.length, prefixBits, flags | (useHuffman ? 1 << prefixBits : 0));
    this.#reserve(bytes.length);
    this.#buffer.set(bytes, this.#length);
    this.#length += bytes.length;
  }

  bytes(): Uint8Array {
    return this.#buffer.slice(0, this.#length);
  }
}

/**
 * Encodes `fields` as a field section (RFC 9204 §4.5) that needs no dynamic
 * table: the prefix 0x00 0x00 (Required Insert Count 0, Base 0), then for
 * each field an Indexed Field Line for an exact static table match, a
 * Literal Field Line with Name Reference for a static name match, or a
 * Literal Field Line with Literal Name. Strings are UTF-8 and Huffman-coded
 * where that is shorter unless `options.huffman` is false. Names are written
 * as given: callers pass lowercase names (RFC 9114 §4.2). Returns a new
 * array owned by the caller.
 */
export function encodeFieldSection(
  fields: readonly HeaderField[],
  options: { huffman?: boolean } = {},
): Uint8Array {
  const huffman = options.huffman ?? true;
  const writer = new ByteWriter(64 + fields.length * 16);
  writer.integer(0, 8, 0x00); // Required Insert Count
  writer.integer(0, 7, 0x00); // S = 0, Delta Base
  for (const [name, value] of fields) {
    const exact = STATIC_EXACT.get(name)?.get(value);
    if (exact !== undefined) {
      writer.integer(exact, 6, INDEXED | INDEXED_STATIC);
      continue;
    }
    const nameIndex = STATIC_NAME.get(name);
    if (nameIndex !== undefined) {
      writer.integer(nameIndex, 4, LITERAL_NAME_REF | LITERAL_NAME_REF_STATIC);
    } else {
      writer.string(name, 3, LITERAL_NAME, huffman);
    }
    writer.string(value, 7, 0x00, huffman);
  }
  return writer.bytes();
}

// ---------------------------------------------------------------------------
// Encoder and decoder streams (RFC 9204 §4.2, §4.3, §4.4) with a zero-capacity table

function encoderStreamError(message: string): H3Error {
  return new H3Error(QPACK_ENCODER_STREAM_ERROR, `Cannot parse QPACK encoder stream: ${message}`);
}

function decoderStreamError(message: string): H3Error {
  return new H3Error(QPACK_DECODER_STREAM_ERROR, `Cannot parse QPACK decoder stream: ${message}`);
}

/**
 * Reads the peer's QPACK encoder stream (RFC 9204 §4.3) when this side
 * advertised SETTINGS_QPACK_MAX_TABLE_CAPACITY 0. The only instruction the
 * peer may send is Set Dynamic Table Capacity 0 (`0x20`): any capacity above
 * 0 exceeds the maximum (§4.3.1), and with no room in the table every Insert
 * with Name Reference (§4.3.2), Insert with Literal Name (§4.3.3) and
 * Duplicate (§4.3.4) is invalid. {@linkcode QpackEncoderStreamReader.push}
 * throws an {@linkcode H3Error} QPACK_ENCODER_STREAM_ERROR (a connection
 * error) on the first byte that begins one of those, so nothing is ever
 * buffered. The pushed array is not retained.
 */
export class QpackEncoderStreamReader {
  /** Set Dynamic Table Capacity 0 instructions read so far. */
  capacityZero = 0;

  /** Reads the instructions in `chunk`; see the class notes. */
  push(chunk: Uint8Array): void {
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i];
      if (byte === 0x20) {
        this.capacityZero++;
      } else if (byte & 0x80) {
        throw encoderStreamError("Insert with Name Reference into a zero-capacity table");
      } else if (byte & 0x40) {
        throw encoderStreamError("Insert with Literal Name into a zero-capacity table");
      } else if (byte & 0x20) {
        throw encoderStreamError(
          "Set Dynamic Table Capacity above 0 exceeds SETTINGS_QPACK_MAX_TABLE_CAPACITY 0",
        );
      } else {
        throw encoderStreamError("Duplicate with an empty dynamic table");
      }
    }
  }
}

/** Largest stream ID (RFC 9000 §2.1: a 62-bit integer). */
const MAX_STREAM_ID = 2n ** 62n - 1n;
/** Continuation bytes of a 6-bit-prefix integer up to 2^62 - 1: 62 bits in 7-bit groups. */
const MAX_STREAM_ID_CONTINUATIONS = 9;

/**
 * Reads the peer's QPACK decoder stream (RFC 9204 §4.4) when this side never
 * references the dynamic table (its encoder sends only Required Insert Count
 * 0). Stream Cancellation (§4.4.2) is valid: a decoder sends it when a
 * stream is reset or abandoned, and §2.2.2.2 lets a decoder with a
 * zero-capacity table send it as well. Section Acknowledgment (§4.4.1) is a
 * connection error, since no field section with a non-zero Required Insert
 * Count was ever sent, and so is Insert Count Increment (§4.4.3), which
 * would acknowledge inserts that never happened (or is 0).
 * {@linkcode QpackDecoderStreamReader.push} throws an {@linkcode H3Error}
 * QPACK_DECODER_STREAM_ERROR for those, and for a Stream ID above 2^62 - 1.
 * An instruction cut between pushes waits for its next bytes; what is kept
 * across pushes is a few numbers, never the pushed array.
 */
export class QpackDecoderStreamReader {
  /** Stream Cancellation instructions read so far. */
  cancellations = 0;
  /** Inside a Stream Cancellation's integer: continuation bytes read, else -1. */
  #continuations = -1;
  /** The integer so far; exact (a BigInt) because stream IDs go up to 2^62 - 1. */
  #value = 0n;

  /** Reads the instructions in `chunk`; see the class notes. */
  push(chunk: Uint8Array): void {
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i];
      if (this.#continuations >= 0) {
        this.#value += BigInt(byte & 0x7f) << BigInt(7 * this.#continuations);
        this.#continuations++;
        if (
          this.#value > MAX_STREAM_ID ||
          ((byte & 0x80) !== 0 && this.#continuations >= MAX_STREAM_ID_CONTINUATIONS)
        ) {
          throw decoderStreamError("Stream Cancellation stream ID exceeds 2^62-1");
        }
        if ((byte & 0x80) === 0) this.#endCancellation();
      } else if (byte & 0x80) {
        throw decoderStreamError(
          "Section Acknowledgment, but no field section referenced the dynamic table",
        );
      } else if (byte & 0x40) {
        // Stream Cancellation: 01 and a 6-bit prefix integer (RFC 9204 §4.4.2).
        if ((byte & 0x3f) < 0x3f) {
          this.#endCancellation();
        } else {
          this.#value = 0x3fn;
          this.#continuations = 0;
        }
      } else {
        throw decoderStreamError("Insert Count Increment, but no entry was ever inserted");
      }
    }
  }

  #endCancellation(): void {
    this.cancellations++;
    this.#continuations = -1;
    this.#value = 0n;
  }
}
