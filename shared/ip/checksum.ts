/**
 * The Internet checksum (RFC 1071) and the pseudo-headers that TCP, UDP and
 * ICMPv6 include in it (RFC 768, RFC 9293 §3.1, RFC 8200 §8.1).
 *
 * The checksum is the 16-bit one's complement of the one's complement sum of
 * the data taken as big-endian 16-bit words. It is built incrementally: start
 * from 0 (or from a pseudo-header sum), {@linkcode checksumAdd} each piece,
 * then {@linkcode checksumFinish}. Every "sum" passed between these functions
 * is a folded 16-bit one's complement sum (0..0xffff), so it stays a small
 * integer. Nothing here allocates.
 *
 * @module
 */

/** Folds carries above bit 15 back into the low 16 bits (RFC 1071 §4.1). */
function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** Below this many bytes {@linkcode checksumAdd} sums byte by byte (a view costs more). */
const WORD_SUM_MIN_BYTES = 64;

/**
 * Adds `bytes[start, end)` to the running sum `sum` and returns the new folded
 * sum (RFC 1071 §4.1).
 *
 * The bytes are taken as big-endian 16-bit words counted from `start`; an odd
 * trailing byte is padded on the right with a zero byte, as RFC 1071 asks for
 * the last byte of the data. So when the data is added in several pieces, only
 * the last piece may have an odd length.
 *
 * Long spans are summed as native 16-bit words through a `Uint16Array` view
 * (about three times faster in V8 than byte pairs): RFC 1071 §2(B), the sum
 * is independent of byte order, so the native (little-endian) sum, byte
 * swapped when the words line up with the big-endian ones, is the same sum.
 *
 * @param sum a folded sum from a previous call, or 0
 * @param bytes the data; not modified
 * @param start first byte, default 0
 * @param end one past the last byte, default `bytes.length`
 */
export function checksumAdd(
  sum: number,
  bytes: Uint8Array,
  start = 0,
  end: number = bytes.length,
): number {
  if (end - start >= WORD_SUM_MIN_BYTES && LITTLE_ENDIAN) return wordSum(sum, bytes, start, end);
  const last = end - 1;
  let i = start;
  // Folding every 8191 words keeps the sum below 2^30, a V8 small integer.
  while (i < last) {
    const stop = Math.min(last, i + 0x3ffe);
    for (; i < stop; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
    sum = fold(sum);
  }
  if (i === last) sum += bytes[i] << 8;
  return fold(sum);
}

/** Whether this host stores a Uint16Array's words little endian (x86-64, arm64: yes). */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * {@linkcode checksumAdd} over native 16-bit words: a byte before the first
 * even address, then the words, then a byte after them, each byte weighed by
 * its position from `start` (even: high byte, odd: low byte).
 */
function wordSum(sum: number, bytes: Uint8Array, start: number, end: number): number {
  const base = bytes.byteOffset;
  let i = start;
  let edges = 0;
  if (((base + i) & 1) !== 0) edges += bytes[i++] << 8; // i - start is 0: a high byte
  const words = (end - i) >>> 1;
  const view = new Uint16Array(bytes.buffer, base + i, words);
  // A double past 2^30, exact for any span below 2^37 bytes.
  let native = 0;
  let k = 0;
  for (; k + 4 <= words; k += 4) native += view[k] + view[k + 1] + view[k + 2] + view[k + 3];
  for (; k < words; k++) native += view[k];
  // Words that start at an even distance from `start` line up with the
  // big-endian words, so their little-endian sum is the byte-swapped sum.
  const aligned = ((i - start) & 1) === 0;
  i += words * 2;
  if (i < end) edges += aligned ? bytes[i] << 8 : bytes[i];
  let folded = fold(native);
  if (aligned) folded = ((folded & 0xff) << 8) | (folded >>> 8);
  return fold(sum + edges + folded);
}

/** Adds one 16-bit value (0..0xffff) to the running sum (RFC 1071 §4.1). */
export function checksumAdd16(sum: number, value: number): number {
  return fold(sum + (value & 0xffff));
}

/** Adds one 32-bit value as two 16-bit words, high word first (RFC 1071 §4.1). */
export function checksumAdd32(sum: number, value: number): number {
  return fold(sum + ((value >>> 16) & 0xffff) + (value & 0xffff));
}

/**
 * Turns a running sum into the checksum field's value: the one's complement of
 * the folded sum, 0..0xffff (RFC 1071 §1).
 */
export function checksumFinish(sum: number): number {
  return ~fold(sum) & 0xffff;
}

/**
 * The Internet checksum of `bytes[start, end)` (RFC 1071), as the value to
 * write into a checksum field that was zero while summing.
 */
export function internetChecksum(bytes: Uint8Array, start = 0, end: number = bytes.length): number {
  return checksumFinish(checksumAdd(0, bytes, start, end));
}

/**
 * Whether data that includes its own checksum field sums to 0xffff (negative
 * zero), i.e. the checksum is correct (RFC 1071 §1 "to check a checksum").
 *
 * @param initialSum a pseudo-header sum where the protocol includes one, else 0
 */
export function checksumIsValid(
  bytes: Uint8Array,
  start = 0,
  end: number = bytes.length,
  initialSum = 0,
): boolean {
  return checksumAdd(initialSum, bytes, start, end) === 0xffff;
}

/**
 * The sum of the IPv4 pseudo-header used by UDP (RFC 768) and TCP
 * (RFC 9293 §3.1): source address, destination address, a zero byte, the
 * protocol number and the upper-layer length in bytes.
 *
 * @param source 4 bytes
 * @param destination 4 bytes
 * @param protocol IP protocol number, 0..255
 * @param length upper-layer header plus data, in bytes, 0..0xffff
 */
export function ipv4PseudoHeaderSum(
  source: Uint8Array,
  destination: Uint8Array,
  protocol: number,
  length: number,
): number {
  let sum = checksumAdd(0, source, 0, 4);
  sum = checksumAdd(sum, destination, 0, 4);
  return fold(sum + (protocol & 0xff) + (length & 0xffff));
}

/**
 * The sum of the IPv6 pseudo-header used by UDP, TCP and ICMPv6
 * (RFC 8200 §8.1, RFC 4443 §2.3): source address, destination address, the
 * 32-bit upper-layer packet length, three zero bytes and the next header value.
 *
 * @param source 16 bytes
 * @param destination 16 bytes
 * @param nextHeader the upper-layer protocol number (e.g. 58 for ICMPv6), 0..255
 * @param length upper-layer header plus data, in bytes
 */
export function ipv6PseudoHeaderSum(
  source: Uint8Array,
  destination: Uint8Array,
  nextHeader: number,
  length: number,
): number {
  let sum = checksumAdd(0, source, 0, 16);
  sum = checksumAdd(sum, destination, 0, 16);
  sum = checksumAdd32(sum, length);
  return fold(sum + (nextHeader & 0xff));
}

/**
 * The pseudo-header sum for an IP packet, reading both addresses in place from
 * its IPv4 (RFC 791 §3.1: source at byte 12, destination at 16) or IPv6
 * (RFC 8200 §3: source at byte 8, destination at 24) header. The caller has
 * already checked that the header is complete.
 *
 * @param packet an IP packet starting with its header; not modified
 * @param protocol the upper-layer protocol number
 * @param length the upper-layer length in bytes
 */
export function ipPseudoHeaderSum(packet: Uint8Array, protocol: number, length: number): number {
  if (packet[0] >> 4 === 6) {
    const sum = checksumAdd32(checksumAdd(0, packet, 8, 40), length);
    return fold(sum + (protocol & 0xff));
  }
  return fold(checksumAdd(0, packet, 12, 20) + (protocol & 0xff) + (length & 0xffff));
}

/**
 * Updates a checksum after one 16-bit word of the summed data changed from
 * `oldWord` to `newWord`, without summing the data again
 * (RFC 1624 §3, equation 3: HC' = ~(~HC + ~m + m')). Used to decrement a TTL.
 *
 * @returns the new checksum field value, 0..0xffff
 */
export function checksumUpdate16(checksum: number, oldWord: number, newWord: number): number {
  return checksumFinish((~checksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff));
}
