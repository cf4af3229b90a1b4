/**
 * Admission of QUIC connections before any HTTP/3 is spoken: how many may be
 * in the handshake at once, how many may be open in total, and how many may
 * come from one source (an IPv4 address, or an IPv6 /64, which one host or
 * one household usually holds whole).
 *
 * The relay's accept loop asks {@linkcode ConnectionLimiter.beginHandshake}
 * before it accepts an incoming connection (refusing it when told to), calls
 * {@linkcode ConnectionLimiter.endHandshake} when the handshake settles, then
 * {@linkcode ConnectionLimiter.admit} with the peer's {@linkcode sourceKey}
 * and {@linkcode ConnectionLimiter.release} when the connection closes.
 *
 * Pure state: no clock, no I/O.
 *
 * @module
 */

import { formatIp, parseIp } from "./ip/ip_address.ts";

/** The limits a {@linkcode ConnectionLimiter} enforces; each at least 1. */
export interface ConnectionLimits {
  /** Connections whose handshake has begun and not settled. */
  readonly maxHandshakes: number;
  /** Open connections plus connections in the handshake. */
  readonly maxConnections: number;
  /** Open connections from one {@linkcode sourceKey}. */
  readonly maxConnectionsPerSource: number;
}

/** Why {@linkcode ConnectionLimiter} refused a connection. */
export type ConnectionRefusal = "handshakes" | "connections" | "per-source";

/**
 * The key a source address is counted under: an IPv4 address as itself, an
 * IPv4-mapped IPv6 address (`::ffff:198.18.0.1`, as a dual-stack socket
 * reports IPv4 peers) as that IPv4 address, and any other IPv6 address as its
 * /64 (`fd00:1:2:3::/64`). Text that is not an address is its own key.
 */
export function sourceKey(hostname: string): string {
  const address = parseIp(hostname);
  if (address === undefined) return hostname;
  if (address.length === 4) return formatIp(address);
  let mapped = address[10] === 0xff && address[11] === 0xff;
  for (let i = 0; i < 10 && mapped; i++) if (address[i] !== 0) mapped = false;
  if (mapped) return formatIp(address.subarray(12, 16));
  const prefix = new Uint8Array(16);
  prefix.set(address.subarray(0, 8));
  return `${formatIp(prefix)}/64`;
}

/**
 * Counts connections in the handshake, open connections, and open
 * connections per source, and says which limit a new one would pass. The
 * per-source table holds only sources with an open connection, so its size
 * is at most `maxConnections`.
 */
export class ConnectionLimiter {
  readonly limits: ConnectionLimits;
  #handshaking = 0;
  #open = 0;
  readonly #perSource = new Map<string, number>();

  /** Throws a `RangeError` when a limit is not an integer of at least 1. */
  constructor(limits: ConnectionLimits) {
    for (const [name, value] of Object.entries(limits)) {
      if (!Number.isInteger(value) || value < 1) {
        throw new RangeError(
          `Cannot create connection limiter: ${name} ${value} is not at least 1`,
        );
      }
    }
    this.limits = Object.freeze({ ...limits });
  }

  /** Connections in the handshake now. */
  get handshaking(): number {
    return this.#handshaking;
  }

  /** Connections admitted and not yet released. */
  get open(): number {
    return this.#open;
  }

  /** Sources with at least one open connection. */
  get sources(): number {
    return this.#perSource.size;
  }

  /** Open connections from `key` (a {@linkcode sourceKey}). */
  openFrom(key: string): number {
    return this.#perSource.get(key) ?? 0;
  }

  /**
   * A new connection wants to start its handshake. Returns `undefined` and
   * counts it as handshaking, or the limit it would pass (and counts
   * nothing): `"handshakes"` or `"connections"`.
   */
  beginHandshake(): ConnectionRefusal | undefined {
    if (this.#handshaking >= this.limits.maxHandshakes) return "handshakes";
    if (this.#handshaking + this.#open >= this.limits.maxConnections) return "connections";
    this.#handshaking++;
    return undefined;
  }

  /** A handshake begun with {@linkcode beginHandshake} has settled, either way. */
  endHandshake(): void {
    if (this.#handshaking > 0) this.#handshaking--;
  }

  /**
   * A connection from `key` finished its handshake (call
   * {@linkcode endHandshake} first). Returns `undefined` and counts it open,
   * or the limit it would pass (and counts nothing): `"per-source"` or
   * `"connections"`.
   */
  admit(key: string): ConnectionRefusal | undefined {
    const count = this.#perSource.get(key) ?? 0;
    if (count >= this.limits.maxConnectionsPerSource) return "per-source";
    if (this.#handshaking + this.#open >= this.limits.maxConnections) return "connections";
    this.#perSource.set(key, count + 1);
    this.#open++;
    return undefined;
  }

  /** A connection admitted from `key` has closed. */
  release(key: string): void {
    const count = this.#perSource.get(key);
    if (count === undefined) return;
    if (count <= 1) this.#perSource.delete(key);
    else this.#perSource.set(key, count - 1);
    this.#open--;
  }
}
