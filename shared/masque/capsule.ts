/**
 * Capsules (RFC 9297 §3.2) and the CONNECT-IP control capsules
 * ADDRESS_ASSIGN, ADDRESS_REQUEST and ROUTE_ADVERTISEMENT (RFC 9484 §4.7),
 * and DNS_ASSIGN and PREF64 of draft-ietf-masque-connect-ip-dns-05, whose
 * values `dns_capsule.ts` reads and writes.
 *
 * ```
 * Capsule { Capsule Type (i), Capsule Length (i), Capsule Value (..) }
 * ```
 *
 * {@linkcode CapsuleParser} reads capsules from the request stream in
 * arbitrary chunks; {@linkcode encodeCapsule} writes them. Every parse error is
 * a {@linkcode CapsuleError}, on which the caller aborts the request stream
 * (RFC 9297 §3.3, RFC 9484 §4.7).
 *
 * @module
 */

import { ChunkQueue } from "../chunk_queue.ts";
import { CapsuleError, errorMessage, H3Error } from "../errors.ts";
import type { ByteBudget } from "../h3/byte_budget.ts";
import {
  decodeVarint,
  encodeVarintInto,
  varintSize,
  varintSizeFromFirstByte,
} from "../h3/varint.ts";
import {
  addressBits,
  compareIp,
  formatIp,
  hasHostBits,
  type IpAddressRange,
  type IpPrefix,
  type IpVersion,
} from "../ip/ip_address.ts";
import {
  CAPSULE_DNS_ASSIGN,
  CAPSULE_PREF64,
  type DnsConfiguration,
  encodeDnsAssign,
  encodePref64,
  parseDnsAssign,
  parsePref64,
} from "./dns_capsule.ts";

/** DATAGRAM capsule: carries an HTTP Datagram Payload (RFC 9297 §3.5). */
export const CAPSULE_DATAGRAM = 0x00;
/** ADDRESS_ASSIGN capsule (RFC 9484 §4.7.1). */
export const CAPSULE_ADDRESS_ASSIGN = 0x01;
/** ADDRESS_REQUEST capsule (RFC 9484 §4.7.2). */
export const CAPSULE_ADDRESS_REQUEST = 0x02;
/** ROUTE_ADVERTISEMENT capsule (RFC 9484 §4.7.3). */
export const CAPSULE_ROUTE_ADVERTISEMENT = 0x03;

/**
 * Default limit in bytes on the value of a capsule of a known type: a
 * DATAGRAM capsule carries a whole IP packet (up to 65535 bytes) behind its
 * context ID, with room to spare.
 */
export const DEFAULT_MAX_CAPSULE_SIZE = 65535 + 16;

/**
 * One Assigned Address of an ADDRESS_ASSIGN capsule (RFC 9484 §4.7.1).
 * `requestId` echoes an ADDRESS_REQUEST, or is 0 for an unsolicited
 * assignment. The prefix has no host bits set.
 */
export interface AssignedAddress {
  readonly requestId: number;
  readonly prefix: IpPrefix;
}

/**
 * One Requested Address of an ADDRESS_REQUEST capsule (RFC 9484 §4.7.2).
 * `requestId` is never 0. An all-zero address asks for any address of that
 * version; the prefix length is still the preferred length.
 */
export interface RequestedAddress {
  readonly requestId: number;
  readonly prefix: IpPrefix;
}

/** A parsed capsule of one of the types this module knows. */
export type Capsule =
  /** `payload` is the HTTP Datagram Payload: context ID varint then data (RFC 9484 §6). */
  | { readonly type: "datagram"; readonly payload: Uint8Array }
  | { readonly type: "address_assign"; readonly addresses: readonly AssignedAddress[] }
  | { readonly type: "address_request"; readonly addresses: readonly RequestedAddress[] }
  | { readonly type: "route_advertisement"; readonly ranges: readonly IpAddressRange[] }
  /** DNS_ASSIGN (draft-ietf-masque-connect-ip-dns-05 §3.4); none: clears earlier ones. */
  | { readonly type: "dns_assign"; readonly configurations: readonly DnsConfiguration[] }
  /** PREF64 (draft §4): NAT64 prefixes; none withdraws earlier ones. */
  | { readonly type: "pref64"; readonly prefixes: readonly IpPrefix[] };

const CAPSULE_NAMES: Record<Capsule["type"], string> = {
  datagram: "DATAGRAM",
  address_assign: "ADDRESS_ASSIGN",
  address_request: "ADDRESS_REQUEST",
  route_advertisement: "ROUTE_ADVERTISEMENT",
  dns_assign: "DNS_ASSIGN",
  pref64: "PREF64",
};

/** Whether {@linkcode parseCapsuleValue} understands capsules of `type`. */
export function isKnownCapsuleType(type: number): boolean {
  return type === CAPSULE_DATAGRAM || type === CAPSULE_ADDRESS_ASSIGN ||
    type === CAPSULE_ADDRESS_REQUEST || type === CAPSULE_ROUTE_ADVERTISEMENT ||
    type === CAPSULE_DNS_ASSIGN || type === CAPSULE_PREF64;
}

function addressLength(version: IpVersion): number {
  return version === 4 ? 4 : 16;
}

// ---------------------------------------------------------------------------
// Validation shared by the parser and the encoder

function checkPrefixEntry(
  context: string,
  index: number,
  requestId: number,
  prefix: IpPrefix,
  isRequest: boolean,
): void {
  if (isRequest && requestId === 0) {
    // RFC 9484 §4.7.2: Request IDs MUST NOT be zero (0 marks unsolicited assignments).
    throw new CapsuleError(`${context}: address ${index} has request ID 0`);
  }
  const bits = addressBits(prefix.version);
  if (prefix.prefixLength > bits) {
    throw new CapsuleError(
      `${context}: address ${index} prefix length ${prefix.prefixLength} exceeds ${bits} bits of an IPv${prefix.version} address`,
    );
  }
  if (hasHostBits(prefix.address, prefix.prefixLength)) {
    throw new CapsuleError(
      `${context}: address ${index} ${
        formatIp(prefix.address)
      } has bits set past prefix length ${prefix.prefixLength}`,
    );
  }
}

function checkRanges(context: string, ranges: readonly IpAddressRange[]): void {
  for (let i = 0; i < ranges.length; i++) {
    const range = ranges[i];
    if (compareIp(range.start, range.end) > 0) {
      throw new CapsuleError(
        `${context}: range ${i} start ${formatIp(range.start)} is after end ${formatIp(range.end)}`,
      );
    }
    if (i === 0) continue;
    // RFC 9484 §4.7.3: sorted by IP Version, then IP Protocol, then address,
    // and ranges of the same version and protocol do not overlap.
    const previous = ranges[i - 1];
    if (range.version < previous.version) {
      throw new CapsuleError(
        `${context}: range ${i} (IPv${range.version}) follows an IPv${previous.version} range`,
      );
    }
    if (range.version !== previous.version) continue;
    if (range.ipProtocol < previous.ipProtocol) {
      throw new CapsuleError(
        `${context}: range ${i} (IP protocol ${range.ipProtocol}) follows a range for IP protocol ${previous.ipProtocol}`,
      );
    }
    if (range.ipProtocol !== previous.ipProtocol) continue;
    if (compareIp(range.start, previous.start) < 0) {
      throw new CapsuleError(
        `${context}: range ${i} starting at ${formatIp(range.start)} is not sorted after range ${
          i - 1
        } starting at ${formatIp(previous.start)}`,
      );
    }
    if (compareIp(range.start, previous.end) <= 0) {
      throw new CapsuleError(
        `${context}: range ${i} starting at ${formatIp(range.start)} overlaps range ${
          i - 1
        } ending at ${formatIp(previous.end)}`,
      );
    }
  }
}

// ---------------------------------------------------------------------------
// Parsing capsule values

class ValueReader {
  readonly #value: Uint8Array;
  readonly #context: string;
  offset = 0;

  constructor(value: Uint8Array, context: string) {
    this.#value = value;
    this.#context = context;
  }

  get done(): boolean {
    return this.offset >= this.#value.length;
  }

  #truncated(what: string): CapsuleError {
    return new CapsuleError(
      `${this.#context}: truncated ${what} at byte ${this.offset} of ${this.#value.length}`,
    );
  }

  varint(what: string): number {
    const value = this.#value;
    if (this.offset >= value.length) throw this.#truncated(what);
    const size = varintSizeFromFirstByte(value[this.offset]);
    if (this.offset + size > value.length) throw this.#truncated(what);
    const result = decodeVarint(value, this.offset);
    if (!Number.isSafeInteger(result)) {
      throw new CapsuleError(`${this.#context}: ${what} at byte ${this.offset} exceeds 2^53-1`);
    }
    this.offset += size;
    return result;
  }

  byte(what: string): number {
    if (this.offset >= this.#value.length) throw this.#truncated(what);
    return this.#value[this.offset++];
  }

  bytes(length: number, what: string): Uint8Array {
    if (this.offset + length > this.#value.length) throw this.#truncated(what);
    const out = this.#value.slice(this.offset, this.offset + length);
    this.offset += length;
    return out;
  }

  version(context: string, index: number, what: string): IpVersion {
    const at = this.offset;
    const version = this.byte("IP version");
    if (version === 4 || version === 6) return version;
    throw new CapsuleError(
      `${context}: ${what} ${index} has IP version ${version} (byte ${at}), not 4 or 6`,
    );
  }
}

function parseAddressList(
  value: Uint8Array,
  isRequest: boolean,
): { requestId: number; prefix: IpPrefix }[] {
  const context = `Cannot parse ${isRequest ? "ADDRESS_REQUEST" : "ADDRESS_ASSIGN"} capsule`;
  const reader = new ValueReader(value, context);
  const entries: { requestId: number; prefix: IpPrefix }[] = [];
  while (!reader.done) {
    const index = entries.length;
    const requestId = reader.varint("request ID");
    const version = reader.version(context, index, "address");
    const address = reader.bytes(addressLength(version), "IP address");
    const prefixLength = reader.byte("IP prefix length");
    const prefix: IpPrefix = Object.freeze({ version, address, prefixLength });
    checkPrefixEntry(context, index, requestId, prefix, isRequest);
    entries.push(Object.freeze({ requestId, prefix }));
  }
  if (isRequest && entries.length === 0) {
    // RFC 9484 §4.7.2: an ADDRESS_REQUEST carries at least one Requested Address.
    throw new CapsuleError(`${context}: no requested addresses`);
  }
  return entries;
}

function parseRanges(value: Uint8Array): IpAddressRange[] {
  const context = "Cannot parse ROUTE_ADVERTISEMENT capsule";
  const reader = new ValueReader(value, context);
  const ranges: IpAddressRange[] = [];
  while (!reader.done) {
    const version = reader.version(context, ranges.length, "range");
    const start = reader.bytes(addressLength(version), "start IP address");
    const end = reader.bytes(addressLength(version), "end IP address");
    const ipProtocol = reader.byte("IP protocol");
    ranges.push(Object.freeze({ version, start, end, ipProtocol }));
  }
  checkRanges(context, ranges);
  return ranges;
}

/**
 * Interprets the value of a capsule of type `type` (RFC 9297 §3.2). Returns
 * `undefined` for a type this module does not know, which the caller skips
 * (RFC 9297 §3.2). A DATAGRAM capsule's payload is `value` itself (no copy);
 * control capsules copy what they keep.
 *
 * Throws a {@linkcode CapsuleError} for a malformed value (RFC 9484 §4.7):
 * an IP version other than 4 or 6, a prefix longer than the address, host
 * bits set past the prefix length (the field is a prefix; connect-ip-go
 * rejects these too), a request ID of 0 or an empty list in ADDRESS_REQUEST,
 * a range whose start is after its end, ranges out of order or overlapping,
 * a request ID above 2^53-1 (a limit of this implementation), or a value
 * that ends inside an entry.
 */
export function parseCapsuleValue(type: number, value: Uint8Array): Capsule | undefined {
  switch (type) {
    case CAPSULE_DATAGRAM:
      return { type: "datagram", payload: value };
    case CAPSULE_ADDRESS_ASSIGN:
      return Object.freeze({
        type: "address_assign",
        addresses: Object.freeze(parseAddressList(value, false)),
      });
    case CAPSULE_ADDRESS_REQUEST:
      return Object.freeze({
        type: "address_request",
        addresses: Object.freeze(parseAddressList(value, true)),
      });
    case CAPSULE_ROUTE_ADVERTISEMENT:
      return Object.freeze({
        type: "route_advertisement",
        ranges: Object.freeze(parseRanges(value)),
      });
    case CAPSULE_DNS_ASSIGN:
      return Object.freeze({
        type: "dns_assign",
        configurations: Object.freeze(parseDnsAssign(value)),
      });
    case CAPSULE_PREF64:
      return Object.freeze({ type: "pref64", prefixes: Object.freeze(parsePref64(value)) });
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------
// Encoding

function checkAddressShape(
  context: string,
  index: number,
  version: number,
  address: Uint8Array,
  what: string,
): void {
  if (version !== 4 && version !== 6) {
    throw new CapsuleError(`${context}: ${what} ${index} has IP version ${version}, not 4 or 6`);
  }
  if (address.length !== addressLength(version)) {
    throw new CapsuleError(
      `${context}: ${what} ${index} has a ${address.length}-byte address for IPv${version}`,
    );
  }
}

function encodeAddressList(
  context: string,
  entries: readonly { requestId: number; prefix: IpPrefix }[],
  isRequest: boolean,
): Uint8Array {
  if (isRequest && entries.length === 0) {
    throw new CapsuleError(`${context}: no requested addresses`);
  }
  let size = 0;
  for (let i = 0; i < entries.length; i++) {
    const { requestId, prefix } = entries[i];
    if (!Number.isSafeInteger(requestId) || requestId < 0) {
      throw new CapsuleError(`${context}: address ${i} has request ID ${requestId}`);
    }
    checkAddressShape(context, i, prefix.version, prefix.address, "address");
    if (!Number.isInteger(prefix.prefixLength) || prefix.prefixLength < 0) {
      throw new CapsuleError(`${context}: address ${i} has prefix length ${prefix.prefixLength}`);
    }
    checkPrefixEntry(context, i, requestId, prefix, isRequest);
    size += varintSize(requestId) + 1 + prefix.address.length + 1;
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const { requestId, prefix } of entries) {
    offset = encodeVarintInto(out, offset, requestId);
    out[offset++] = prefix.version;
    out.set(prefix.address, offset);
    offset += prefix.address.length;
    out[offset++] = prefix.prefixLength;
  }
  return out;
}

function encodeRanges(context: string, ranges: readonly IpAddressRange[]): Uint8Array {
  let size = 0;
  for (let i = 0; i < ranges.length; i++) {
    const range = ranges[i];
    checkAddressShape(context, i, range.version, range.start, "range");
    checkAddressShape(context, i, range.version, range.end, "range");
    if (!Number.isInteger(range.ipProtocol) || range.ipProtocol < 0 || range.ipProtocol > 255) {
      throw new CapsuleError(`${context}: range ${i} has IP protocol ${range.ipProtocol}`);
    }
    size += 2 + 2 * range.start.length;
  }
  checkRanges(context, ranges);
  const out = new Uint8Array(size);
  let offset = 0;
  for (const range of ranges) {
    out[offset++] = range.version;
    out.set(range.start, offset);
    offset += range.start.length;
    out.set(range.end, offset);
    offset += range.end.length;
    out[offset++] = range.ipProtocol;
  }
  return out;
}

function typeNumber(capsule: Capsule): number {
  switch (capsule.type) {
    case "datagram":
      return CAPSULE_DATAGRAM;
    case "address_assign":
      return CAPSULE_ADDRESS_ASSIGN;
    case "address_request":
      return CAPSULE_ADDRESS_REQUEST;
    case "route_advertisement":
      return CAPSULE_ROUTE_ADVERTISEMENT;
    case "dns_assign":
      return CAPSULE_DNS_ASSIGN;
    case "pref64":
      return CAPSULE_PREF64;
  }
}

/**
 * Encodes a whole capsule: type, length and value (RFC 9297 §3.2). Throws a
 * {@linkcode CapsuleError} (`Cannot encode ... capsule: ...`) for a value the
 * parser would reject, so a peer never receives a malformed capsule.
 */
export function encodeCapsule(capsule: Capsule): Uint8Array {
  const context = `Cannot encode ${CAPSULE_NAMES[capsule.type]} capsule`;
  let value: Uint8Array;
  switch (capsule.type) {
    case "datagram":
      value = capsule.payload;
      break;
    case "address_assign":
      value = encodeAddressList(context, capsule.addresses, false);
      break;
    case "address_request":
      value = encodeAddressList(context, capsule.addresses, true);
      break;
    case "route_advertisement":
      value = encodeRanges(context, capsule.ranges);
      break;
    case "dns_assign":
      value = encodeDnsAssign(capsule.configurations);
      break;
    case "pref64":
      value = encodePref64(capsule.prefixes);
      break;
  }
  const type = typeNumber(capsule);
  const headerSize = varintSize(type) + varintSize(value.length);
  const out = new Uint8Array(headerSize + value.length);
  encodeVarintInto(out, encodeVarintInto(out, 0, type), value.length);
  out.set(value, headerSize);
  return out;
}

/** The size in bytes of a DATAGRAM capsule's type and length for a payload of `payloadLength` bytes. */
export function datagramCapsuleHeaderSize(payloadLength: number): number {
  return 1 + varintSize(payloadLength);
}

/**
 * Writes a DATAGRAM capsule's type and length at `offset` and returns the
 * offset after them, so that the payload can follow in the same buffer
 * (RFC 9297 §3.5).
 */
export function writeDatagramCapsuleHeader(
  buf: Uint8Array,
  offset: number,
  payloadLength: number,
): number {
  return encodeVarintInto(buf, encodeVarintInto(buf, offset, CAPSULE_DATAGRAM), payloadLength);
}

// ---------------------------------------------------------------------------
// Streaming parser

const STATE_HEADER = 0;
const STATE_SKIP = 1;
const STATE_VALUE = 2;

/**
 * Reads capsules from a request stream delivered in chunks of any size
 * (RFC 9297 §3.2).
 *
 * Feed bytes with {@linkcode CapsuleParser.push} and drain with
 * {@linkcode CapsuleParser.next} until it returns `undefined`. Capsules of
 * unknown types are skipped as their bytes arrive, never buffered. A capsule
 * of a known type longer than `maxCapsuleSize` bytes, or of an unknown type
 * longer than `maxUnknownCapsuleSize`, is an error as soon as its header is
 * read. At the end of the stream, call {@linkcode CapsuleParser.finish}: a
 * stream that ends inside a capsule is malformed (RFC 9297 §3.3).
 *
 * Buffer ownership: DATAGRAM payloads are returned as views into a pushed
 * chunk when a capsule lies in one, so callers must not reuse a chunk's
 * memory after pushing it. When `next()` returns `undefined` the parser
 * copies the bytes it still holds (a partial capsule) into storage of its
 * own, reserved in `budget` when one is given, and keeps no pushed chunk:
 * a chunk that is a view into a large read buffer is never pinned while the
 * stream waits. The storage is sized to the capsule being read, so the
 * capsule's last bytes are appended in place and it is returned without a
 * second copy. Errors are {@linkcode CapsuleError}s, except the budget's
 * H3_EXCESSIVE_LOAD {@linkcode H3Error} (a connection error); both are
 * sticky: once one is thrown, every later `next()` throws it again.
 */
export class CapsuleParser {
  readonly #maxCapsuleSize: number;
  readonly #maxUnknownCapsuleSize: number;
  readonly #queue: ChunkQueue;
  #state = STATE_HEADER;
  #type = 0;
  #remaining = 0;
  #error: CapsuleError | H3Error | undefined;
  readonly #scratch = new Uint8Array(8);

  /**
   * @param options.maxCapsuleSize Limit in bytes on a known capsule's value;
   *   default {@linkcode DEFAULT_MAX_CAPSULE_SIZE}.
   * @param options.maxUnknownCapsuleSize Limit in bytes on the value of a
   *   capsule of an unknown type, which is skipped; default `maxCapsuleSize`.
   * @param options.budget The connection's budget, in which a partial capsule
   *   kept between reads is reserved.
   */
  constructor(
    options: { maxCapsuleSize?: number; maxUnknownCapsuleSize?: number; budget?: ByteBudget } = {},
  ) {
    this.#maxCapsuleSize = options.maxCapsuleSize ?? DEFAULT_MAX_CAPSULE_SIZE;
    this.#maxUnknownCapsuleSize = options.maxUnknownCapsuleSize ?? this.#maxCapsuleSize;
    this.#queue = new ChunkQueue({ budget: options.budget, what: "a partial capsule" });
  }

  /** Adds bytes read from the stream (see the class notes on ownership). */
  push(chunk: Uint8Array): void {
    if (this.#error !== undefined || chunk.length === 0) return;
    if (this.#state === STATE_SKIP && this.#queue.byteLength === 0) {
      const skipped = Math.min(chunk.length, this.#remaining);
      this.#remaining -= skipped;
      if (this.#remaining === 0) this.#state = STATE_HEADER;
      if (skipped === chunk.length) return;
      chunk = chunk.subarray(skipped);
    }
    this.#queue.push(chunk);
  }

  /** Bytes held by the parser: buffered but not yet returned or skipped. */
  get buffered(): number {
    return this.#queue.byteLength;
  }

  /** Bytes of storage the parser owns now (a partial capsule kept between reads). */
  get retainedBytes(): number {
    return this.#queue.retainedBytes;
  }

  /** Whether no capsule is partly read: the stream may end here (RFC 9297 §3.3). */
  get atCapsuleBoundary(): boolean {
    return this.#state === STATE_HEADER && this.#queue.byteLength === 0;
  }

  /**
   * Returns the next complete capsule of a known type, or `undefined` when
   * more bytes are needed. Throws a {@linkcode CapsuleError} for a malformed
   * capsule, and the budget's {@linkcode H3Error} when it cannot hold a
   * partial capsule.
   */
  next(): Capsule | undefined {
    if (this.#error !== undefined) throw this.#error;
    try {
      const capsule = this.#next();
      if (capsule === undefined) {
        this.#queue.compact(this.#state === STATE_VALUE ? this.#remaining : 16);
      }
      return capsule;
    } catch (error) {
      this.#error = error instanceof CapsuleError || error instanceof H3Error
        ? error
        : new CapsuleError(
          `Cannot parse capsule: ${errorMessage(error)}`,
        );
      this.#queue.clear();
      throw this.#error;
    }
  }

  /** Drops what is buffered and gives its storage back to the budget (the stream is done). */
  clear(): void {
    this.#queue.clear();
  }

  /**
   * Declares the end of the stream. Call after `next()` has returned
   * `undefined`; throws a {@linkcode CapsuleError} when the stream ended
   * inside a capsule (RFC 9297 §3.3).
   */
  finish(): void {
    if (this.#error !== undefined) throw this.#error;
    if (this.atCapsuleBoundary) return;
    const inside = this.#state === STATE_HEADER
      ? `a capsule header (${this.#queue.byteLength} bytes buffered)`
      : `a capsule value (${this.#remaining - this.#queue.byteLength} bytes missing)`;
    this.#error = new CapsuleError(`Cannot parse capsule: stream ended inside ${inside}`);
    this.#queue.clear();
    throw this.#error;
  }

  #next(): Capsule | undefined {
    for (;;) {
      if (this.#state === STATE_SKIP) {
        const skipped = Math.min(this.#remaining, this.#queue.byteLength);
        this.#queue.discard(skipped);
        this.#remaining -= skipped;
        if (this.#remaining > 0) return undefined;
        this.#state = STATE_HEADER;
      }
      if (this.#state === STATE_VALUE) {
        const value = this.#queue.take(this.#remaining);
        if (value === undefined) return undefined;
        this.#state = STATE_HEADER;
        this.#remaining = 0;
        const capsule = parseCapsuleValue(this.#type, value);
        if (capsule !== undefined) return capsule;
        continue;
      }
      if (!this.#readHeader()) return undefined;
    }
  }

  #readHeader(): boolean {
    const buffered = this.#queue.byteLength;
    if (buffered === 0) return false;
    const typeSize = varintSizeFromFirstByte(this.#peek(0));
    if (buffered <= typeSize) return false;
    const lengthSize = varintSizeFromFirstByte(this.#peek(typeSize));
    if (buffered < typeSize + lengthSize) return false;
    const type = this.#readVarint(typeSize);
    const length = this.#readVarint(lengthSize);
    if (!isKnownCapsuleType(type)) {
      // RFC 9297 §3.2 says to skip unknown capsules; one this long would
      // swallow the rest of the stream, so it ends the session instead.
      if (length > this.#maxUnknownCapsuleSize) {
        throw new CapsuleError(
          `Cannot parse capsule: unknown type 0x${
            type.toString(16)
          } with length ${length} exceeds limit ${this.#maxUnknownCapsuleSize}`,
        );
      }
      this.#state = STATE_SKIP;
    } else {
      if (length > this.#maxCapsuleSize) {
        throw new CapsuleError(
          `Cannot parse capsule: length ${length} exceeds limit ${this.#maxCapsuleSize}`,
        );
      }
      this.#state = STATE_VALUE;
    }
    this.#type = type;
    this.#remaining = length;
    return true;
  }

  #peek(index: number): number {
    const byte = this.#queue.peekByte(index);
    if (byte === undefined) {
      throw new CapsuleError("Cannot parse capsule: internal buffer underrun");
    }
    return byte;
  }

  #readVarint(size: number): number {
    for (let i = 0; i < size; i++) this.#scratch[i] = this.#peek(i);
    this.#queue.discard(size);
    return decodeVarint(this.#scratch, 0);
  }
}
