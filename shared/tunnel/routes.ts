/**
 * Route arithmetic between prefixes (what the kernel routes) and address
 * ranges (what ROUTE_ADVERTISEMENT carries, RFC 9484 §4.7.3).
 *
 * @module
 */

import type { IpPrefix, IpVersion } from "../ip/ip_address.ts";
import { compareIp, createPrefix, prefixFirst, prefixLast } from "../ip/ip_address.ts";
import type { IpAddressRange } from "../ip/ip_address.ts";

function toBig(address: Uint8Array): bigint {
  let value = 0n;
  for (const byte of address) value = (value << 8n) | BigInt(byte);
  return value;
}

function fromBig(value: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let v = value;
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

function versionLength(version: IpVersion): number {
  return version === 4 ? 4 : 16;
}

/**
 * Turns prefixes into ROUTE_ADVERTISEMENT ranges with protocol
 * `ipProtocol` (0 = any): sorted by version, then start, with overlapping
 * or adjacent ranges merged, as RFC 9484 §4.7.3 requires.
 */
export function prefixesToRanges(
  prefixes: readonly IpPrefix[],
  ipProtocol = 0,
): IpAddressRange[] {
  const ranges = prefixes.map((p) => ({
    version: p.version,
    start: toBig(prefixFirst(p)),
    end: toBig(prefixLast(p)),
  }));
  ranges.sort((a, b) =>
    a.version - b.version || (a.start < b.start ? -1 : a.start > b.start ? 1 : 0)
  );
  const merged: typeof ranges = [];
  for (const range of ranges) {
    const last = merged[merged.length - 1];
    if (last && last.version === range.version && range.start <= last.end + 1n) {
      if (range.end > last.end) last.end = range.end;
    } else {
      merged.push({ ...range });
    }
  }
  return merged.map((r) => ({
    version: r.version,
    start: fromBig(r.start, versionLength(r.version)),
    end: fromBig(r.end, versionLength(r.version)),
    ipProtocol,
  }));
}

/**
 * The smallest list of prefixes that covers exactly `start`..`end`
 * (inclusive), in ascending order.
 */
export function rangeToPrefixes(
  version: IpVersion,
  start: Uint8Array,
  end: Uint8Array,
): IpPrefix[] {
  const bits = version === 4 ? 32 : 128;
  const length = versionLength(version);
  const out: IpPrefix[] = [];
  let low = toBig(start);
  const high = toBig(end);
  while (low <= high) {
    // The largest block aligned at `low` that does not pass `high`.
    let size = 0;
    while (size < bits) {
      const next = size + 1;
      const block = 1n << BigInt(next);
      if (low % block !== 0n || low + block - 1n > high) break;
      size = next;
    }
    out.push(createPrefix(fromBig(low, length), bits - size));
    low += 1n << BigInt(size);
  }
  return out;
}

/**
 * The parts of `wanted` that lie inside `ranges`, as prefixes: the routes a
 * client installs when it asked for `wanted` and the relay advertised
 * `ranges`. With `wanted` empty, every advertised range is taken.
 */
export function routesWithin(
  ranges: readonly IpAddressRange[],
  wanted: readonly IpPrefix[],
): IpPrefix[] {
  const out: IpPrefix[] = [];
  const wantedRanges = wanted.length === 0
    ? ranges.map((r) => ({ version: r.version, start: r.start, end: r.end }))
    : wanted.map((p) => ({ version: p.version, start: prefixFirst(p), end: prefixLast(p) }));
  for (const w of wantedRanges) {
    for (const r of ranges) {
      if (r.version !== w.version) continue;
      const start = compareIp(w.start, r.start) >= 0 ? w.start : r.start;
      const end = compareIp(w.end, r.end) <= 0 ? w.end : r.end;
      if (compareIp(start, end) <= 0) out.push(...rangeToPrefixes(w.version, start, end));
    }
  }
  return dedupe(out);
}

function dedupe(prefixes: IpPrefix[]): IpPrefix[] {
  const seen = new Set<string>();
  return prefixes.filter((p) => {
    const key = `${p.version}/${[...p.address].join(".")}/${p.prefixLength}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
