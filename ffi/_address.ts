/**
 * IP prefixes as `ffi/` sees them (the same shape as the one in `shared/`,
 * declared again here because `ffi/` does not import `shared/`), and a small
 * formatter for error messages: `198.18.2.0/24`, `fd00::1/64` (RFC 5952).
 *
 * @module
 */

/** An IP address with a prefix length, such as 198.18.2.0/24. */
export interface IpPrefix {
  /** 4 or 6. */
  readonly version: 4 | 6;
  /** 4 bytes for IPv4, 16 for IPv6, network byte order. */
  readonly address: Uint8Array;
  /** Number of leading bits that form the network part: 0..32 or 0..128. */
  readonly prefixLength: number;
}

/** A prefix that does not fit its IP version. */
export class PrefixError extends Error {
  /** @param message the full message, such as `Cannot add route: prefix length 33 exceeds 32 for IPv4` */
  constructor(message: string) {
    super(message);
    this.name = "PrefixError";
  }
}

/**
 * Throws a {@linkcode PrefixError} unless the address has 4 (IPv4) or 16 (IPv6)
 * bytes and the prefix length is an integer within 0..32 or 0..128.
 *
 * @param action what was attempted, such as `"Cannot add route"`
 */
export function checkPrefix(prefix: IpPrefix, action: string): void {
  const bytes = prefix.version === 4 ? 4 : prefix.version === 6 ? 16 : 0;
  if (bytes === 0) {
    throw new PrefixError(`${action}: IP version ${prefix.version} is neither 4 nor 6`);
  }
  if (prefix.address.length !== bytes) {
    throw new PrefixError(
      `${action}: IPv${prefix.version} address has ${prefix.address.length} bytes, expected ${bytes}`,
    );
  }
  const bits = bytes * 8;
  if (!Number.isInteger(prefix.prefixLength) || prefix.prefixLength < 0) {
    throw new PrefixError(`${action}: prefix length ${prefix.prefixLength} is not an integer >= 0`);
  }
  if (prefix.prefixLength > bits) {
    throw new PrefixError(
      `${action}: prefix length ${prefix.prefixLength} exceeds ${bits} for IPv${prefix.version}`,
    );
  }
}

/**
 * Formats an address in its usual text form: dotted quad for 4 bytes, RFC 5952
 * (lower case, longest run of two or more zero groups as `::`) for 16 bytes,
 * hex bytes for anything else.
 */
export function formatAddress(address: Uint8Array): string {
  if (address.length === 4) return address.join(".");
  if (address.length !== 16) {
    return Array.from(address, (b) => b.toString(16).padStart(2, "0")).join(":");
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((address[i] << 8) | address[i + 1]);
  // RFC 5952 section 4.2: shorten the longest run of zero groups (the first
  // one on a tie), and never a single group.
  let bestStart = -1;
  let bestLength = 1;
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
  const hex = (list: number[]) => list.map((g) => g.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/** Formats a prefix as `address/length`, such as `198.18.2.0/24` or `fd00::/64`. */
export function formatPrefix(prefix: IpPrefix): string {
  return `${formatAddress(prefix.address)}/${prefix.prefixLength}`;
}
