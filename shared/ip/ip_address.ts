/**
 * IPv4 and IPv6 addresses and prefixes as raw bytes.
 *
 * Addresses are `Uint8Array`s of 4 bytes (IPv4) or 16 bytes (IPv6) in network
 * byte order, the form they take in packet headers and in RFC 9484 capsules.
 * Text forms follow RFC 4291 §2.2 (input) and RFC 5952 §4 (output).
 *
 * @module
 */

/** An IP version number as carried in RFC 9484 capsules and IP headers. */
export type IpVersion = 4 | 6;

/** Address length in bytes for each version. */
export const IPV4_ADDRESS_LENGTH = 4;
/** Address length in bytes for each version. */
export const IPV6_ADDRESS_LENGTH = 16;

/**
 * An inclusive range of addresses `start`..`end` (4 or 16 bytes each) for IP
 * protocol `ipProtocol`, 0 meaning every protocol: one IP Address Range of a
 * ROUTE_ADVERTISEMENT capsule (RFC 9484 §4.7.3), and the form routes take in
 * the packet policy.
 */
export interface IpAddressRange {
  readonly version: IpVersion;
  readonly start: Uint8Array;
  readonly end: Uint8Array;
  readonly ipProtocol: number;
}

/**
 * An IP prefix (CIDR block). `address` is 4 or 16 bytes with every bit past
 * `prefixLength` zero; `prefixLength` is 0..32 or 0..128 bits.
 */
export interface IpPrefix {
  readonly version: IpVersion;
  readonly address: Uint8Array;
  readonly prefixLength: number;
}

const DEC_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

function parseIpv4Into(text: string, out: Uint8Array, offset: number): boolean {
  const parts = text.split(".");
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    if (!DEC_OCTET.test(parts[i])) return false;
    const value = Number(parts[i]);
    if (value > 255) return false;
    out[offset + i] = value;
  }
  return true;
}

function parseGroups(
  text: string,
  out: Uint8Array,
  offset: number,
  allowIpv4Tail: boolean,
): number {
  // Returns the number of bytes written, or -1. Empty text means no groups.
  if (text === "") return 0;
  const groups = text.split(":");
  let written = 0;
  for (let i = 0; i < groups.length; i++) {
    const group = groups[i];
    if (allowIpv4Tail && i === groups.length - 1 && group.includes(".")) {
      if (offset + written + 4 > out.length) return -1;
      if (!parseIpv4Into(group, out, offset + written)) return -1;
      written += 4;
      continue;
    }
    if (!HEX_GROUP.test(group)) return -1;
    if (offset + written + 2 > out.length) return -1;
    const value = parseInt(group, 16);
    out[offset + written] = value >> 8;
    out[offset + written + 1] = value & 0xff;
    written += 2;
  }
  return written;
}

function parseIpv6(text: string): Uint8Array | undefined {
  const out = new Uint8Array(IPV6_ADDRESS_LENGTH);
  const ellipsis = text.indexOf("::");
  if (ellipsis < 0) {
    return parseGroups(text, out, 0, true) === IPV6_ADDRESS_LENGTH ? out : undefined;
  }
  if (text.indexOf("::", ellipsis + 1) >= 0) return undefined;
  const head = text.slice(0, ellipsis);
  const tail = text.slice(ellipsis + 2);
  const headBytes = parseGroups(head, out, 0, false);
  if (headBytes < 0) return undefined;
  const tailBuf = new Uint8Array(IPV6_ADDRESS_LENGTH);
  const tailBytes = parseGroups(tail, tailBuf, 0, true);
  if (tailBytes < 0) return undefined;
  // "::" stands for one or more groups of zeros (RFC 4291 §2.2).
  if (headBytes + tailBytes > IPV6_ADDRESS_LENGTH - 2) return undefined;
  out.set(tailBuf.subarray(0, tailBytes), IPV6_ADDRESS_LENGTH - tailBytes);
  return out;
}

/**
 * Parses an IPv4 dotted quad (`198.18.0.1`) or an IPv6 address in any
 * RFC 4291 §2.2 form (`fd00::1`, `::ffff:198.18.0.1`). Strict: IPv4 octets
 * have no leading zeros, no zone ids (`%eth0`), no brackets, no whitespace.
 * Returns a new 4- or 16-byte array, or `undefined` when `text` is not an address.
 */
export function parseIp(text: string): Uint8Array | undefined {
  if (text.includes(":")) return parseIpv6(text);
  const out = new Uint8Array(IPV4_ADDRESS_LENGTH);
  return parseIpv4Into(text, out, 0) ? out : undefined;
}

function formatIpv4(address: Uint8Array, offset: number): string {
  return `${address[offset]}.${address[offset + 1]}.${address[offset + 2]}.${address[offset + 3]}`;
}

function isIpv4Mapped(address: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (address[i] !== 0) return false;
  return address[10] === 0xff && address[11] === 0xff;
}

/**
 * Formats a 4-byte address as a dotted quad and a 16-byte address in the
 * RFC 5952 §4 canonical form: lowercase hex, no leading zeros, the longest
 * (first on a tie) run of two or more zero groups shortened to `::`, and
 * IPv4-mapped addresses in mixed notation (RFC 5952 §5: `::ffff:198.18.0.1`).
 * Throws a `RangeError` for any other length.
 */
export function formatIp(address: Uint8Array): string {
  if (address.length === IPV4_ADDRESS_LENGTH) return formatIpv4(address, 0);
  if (address.length !== IPV6_ADDRESS_LENGTH) {
    throw new RangeError(`Cannot format IP address: length ${address.length} is not 4 or 16`);
  }
  if (isIpv4Mapped(address)) return `::ffff:${formatIpv4(address, 12)}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((address[i] << 8) | address[i + 1]);
  let bestStart = -1;
  let bestLength = 1; // a single zero group is not shortened (RFC 5952 §4.2.2)
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) =>
    groups.slice(from, to).map((g) => g.toString(16)).join(":");
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

/** The IP version of a 4- or 16-byte address, or `undefined` for other lengths. */
export function ipVersionOf(address: Uint8Array): IpVersion | undefined {
  if (address.length === IPV4_ADDRESS_LENGTH) return 4;
  if (address.length === IPV6_ADDRESS_LENGTH) return 6;
  return undefined;
}

/** The address length in bits for `version` (32 or 128). */
export function addressBits(version: IpVersion): 32 | 128 {
  return version === 4 ? 32 : 128;
}

/**
 * Whether `address` has any bit set past the first `prefixLength` bits (the
 * host part). RFC 9484 §4.7.1 and §4.7.2 require these bits to be zero in
 * capsules. No allocation.
 */
export function hasHostBits(address: Uint8Array, prefixLength: number): boolean {
  const fullBytes = prefixLength >> 3;
  const rest = prefixLength & 7;
  let i = fullBytes;
  if (rest !== 0 && i < address.length) {
    if ((address[i] & (0xff >> rest)) !== 0) return true;
    i++;
  }
  for (; i < address.length; i++) if (address[i] !== 0) return true;
  return false;
}

/**
 * Builds a prefix from a 4- or 16-byte address and a length in bits, copying
 * the address and clearing its host bits. Throws a `RangeError` for an
 * address of another length or a prefix length outside 0..32 / 0..128.
 */
export function createPrefix(address: Uint8Array, prefixLength: number): IpPrefix {
  const version = ipVersionOf(address);
  if (version === undefined) {
    throw new RangeError(`Cannot create prefix: address length ${address.length} is not 4 or 16`);
  }
  const bits = addressBits(version);
  if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > bits) {
    throw new RangeError(
      `Cannot create prefix: length ${prefixLength} is outside 0..${bits} for IPv${version}`,
    );
  }
  const copy = address.slice();
  const fullBytes = prefixLength >> 3;
  const rest = prefixLength & 7;
  let i = fullBytes;
  if (rest !== 0) {
    copy[i] &= (0xff << (8 - rest)) & 0xff;
    i++;
  }
  copy.fill(0, i);
  return Object.freeze({ version, address: copy, prefixLength });
}

/**
 * Parses `198.18.0.0/15`, `fd00::/8`, or a bare address (a /32 or /128).
 * Host bits past the prefix length are cleared (`198.18.0.1/15` reads as
 * `198.18.0.0/15`). The length is decimal without leading zeros. Throws
 * `Error("Invalid prefix \"x\": ...")`.
 */
export function parsePrefix(text: string): IpPrefix {
  const slash = text.indexOf("/");
  const addressText = slash < 0 ? text : text.slice(0, slash);
  const address = parseIp(addressText);
  if (address === undefined) {
    throw new Error(`Invalid prefix "${text}": "${addressText}" is not an IP address`);
  }
  const bits = address.length * 8;
  if (slash < 0) return createPrefix(address, bits);
  const lengthText = text.slice(slash + 1);
  if (!/^(?:0|[1-9][0-9]{0,2})$/.test(lengthText)) {
    throw new Error(`Invalid prefix "${text}": "${lengthText}" is not a prefix length`);
  }
  const length = Number(lengthText);
  if (length > bits) {
    throw new Error(
      `Invalid prefix "${text}": length ${length} exceeds ${bits} bits of an IPv${
        bits === 32 ? 4 : 6
      } address`,
    );
  }
  return createPrefix(address, length);
}

/** Formats a prefix as `address/length`, the address per {@linkcode formatIp}. */
export function formatPrefix(prefix: IpPrefix): string {
  return `${formatIp(prefix.address)}/${prefix.prefixLength}`;
}

/**
 * Whether `address` lies inside `prefix`. An address of the other version
 * is never inside. No allocation; meant for the per-packet path.
 */
export function prefixContains(prefix: IpPrefix, address: Uint8Array): boolean {
  const base = prefix.address;
  if (address.length !== base.length) return false;
  const fullBytes = prefix.prefixLength >> 3;
  for (let i = 0; i < fullBytes; i++) if (address[i] !== base[i]) return false;
  const rest = prefix.prefixLength & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (address[fullBytes] & mask) === base[fullBytes];
}

/** The first address of `prefix` (a new array; the network address). */
export function prefixFirst(prefix: IpPrefix): Uint8Array {
  return prefix.address.slice();
}

/** The last address of `prefix` (a new array; all host bits set). */
export function prefixLast(prefix: IpPrefix): Uint8Array {
  const out = prefix.address.slice();
  const fullBytes = prefix.prefixLength >> 3;
  const rest = prefix.prefixLength & 7;
  let i = fullBytes;
  if (rest !== 0) {
    out[i] |= 0xff >> rest;
    i++;
  }
  out.fill(0xff, i);
  return out;
}

/**
 * Orders two addresses as unsigned big-endian numbers: negative, zero or
 * positive. Addresses of different lengths order IPv4 before IPv6.
 */
export function compareIp(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return a.length - b.length;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return 0;
}

/** Whether two addresses have the same length and bytes. */
export function ipEquals(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
