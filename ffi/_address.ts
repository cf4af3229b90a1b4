/**
 * The check that a prefix handed to netlink fits its IP version. Prefixes
 * and their text forms come from `shared/ip/ip_address.ts`, the one module
 * of `shared/` that `ffi/` imports (it has no dependencies, as wireguard-go's
 * `tun/` uses Go's `net/netip`).
 *
 * @module
 */

import type { IpPrefix } from "../shared/ip/ip_address.ts";

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
