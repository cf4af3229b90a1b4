/**
 * The relay's pool of client addresses (RFC 9484 §4.7.1 ADDRESS_ASSIGN): one
 * host address per client out of a configured prefix such as
 * `198.18.0.0/15` or `fd00:1::/64`.
 *
 * Addresses are handed out in order from a counter, so a /64 costs nothing
 * up front; released addresses go to a FIFO free list that is used only once
 * the counter runs out, which keeps an address unused as long as possible
 * before a different client gets it (stale packets for the old client then
 * rarely reach the new one). Allocation is O(1) amortized.
 *
 * @module
 */

import { formatIp, formatPrefix, hasHostBits, type IpPrefix } from "../ip/ip_address.ts";

function toBigInt(bytes: Uint8Array): bigint {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return value;
}

/**
 * Client addresses out of one IPv4 or IPv6 prefix. Reserved and never handed
 * out: the network address (all host bits zero; for IPv6 the Subnet-Router
 * anycast address, RFC 4291 §2.6.1), the first host, which the relay's own TUN
 * interface takes ({@linkcode AddressPool.gateway}), and for IPv4 the
 * broadcast address (all host bits one, RFC 919).
 */
export class AddressPool {
  /** The prefix addresses come from. */
  readonly prefix: IpPrefix;
  /**
   * How many client addresses the pool holds (reserved ones excluded): exact
   * up to 2^53, otherwise the nearest double (a /64 gives 2^64 - 2).
   */
  readonly size: number;

  #network: bigint;
  #bytes: number;
  #first: bigint; // offset of the first client address
  #last: bigint; // offset of the last client address
  #next: bigint; // next never-used offset
  #free: bigint[] = [];
  #freeHead = 0;
  #inUse = new Set<bigint>();
  /** Offsets kept for one user each (fixed addresses): never handed out by allocate(). */
  #reserved = new Set<bigint>();

  /**
   * Throws an `Error` when the prefix is inconsistent, has host bits set, or
   * leaves no client address: an IPv4 prefix must be /30 or shorter, an IPv6
   * prefix /126 or shorter.
   */
  constructor(prefix: IpPrefix) {
    const bytes = prefix.version === 4 ? 4 : 16;
    if (prefix.address.length !== bytes || (prefix.version !== 4 && prefix.version !== 6)) {
      throw new Error(
        `Cannot create address pool: IPv${prefix.version} prefix with a ${prefix.address.length}-byte address`,
      );
    }
    const bits = bytes * 8;
    if (
      !Number.isInteger(prefix.prefixLength) || prefix.prefixLength < 0 ||
      prefix.prefixLength > bits
    ) {
      throw new Error(
        `Cannot create address pool: prefix length ${prefix.prefixLength} is outside 0..${bits}`,
      );
    }
    if (hasHostBits(prefix.address, prefix.prefixLength)) {
      throw new Error(
        `Cannot create address pool: ${
          formatIp(prefix.address)
        }/${prefix.prefixLength} has host bits set`,
      );
    }
    const hostBits = BigInt(bits - prefix.prefixLength);
    const lastOffset = (1n << hostBits) - 1n;
    this.#last = prefix.version === 4 ? lastOffset - 1n : lastOffset;
    this.#first = 2n;
    if (this.#last < this.#first) {
      const maximum = prefix.version === 4 ? 30 : 126;
      throw new Error(
        `Cannot create address pool: ${
          formatPrefix(prefix)
        } leaves no address for clients (need /${maximum} or shorter)`,
      );
    }
    this.prefix = prefix;
    this.#bytes = bytes;
    this.#network = toBigInt(prefix.address);
    this.#next = this.#first;
    this.size = Number(this.#last - this.#first + 1n);
  }

  /** The relay's own address in the prefix (the first host); a new array each call. */
  get gateway(): Uint8Array {
    return this.#toAddress(1n);
  }

  /** How many addresses are kept for users ({@linkcode setReserved}). */
  get reserved(): number {
    return this.#reserved.size;
  }

  /** How many addresses are allocated now. */
  get inUse(): number {
    return this.#inUse.size;
  }

  #toAddress(offset: bigint): Uint8Array {
    const out = new Uint8Array(this.#bytes);
    let value = this.#network + offset;
    for (let i = this.#bytes - 1; i >= 0; i--) {
      out[i] = Number(value & 0xffn);
      value >>= 8n;
    }
    return out;
  }

  /** The offset of `address` in the prefix, or -1n when it is not inside. */
  #offsetOf(address: Uint8Array): bigint {
    if (address.length !== this.#bytes) return -1n;
    const offset = toBigInt(address) - this.#network;
    return offset >= 0n && offset <= this.#last + (this.prefix.version === 4 ? 1n : 0n)
      ? offset
      : -1n;
  }

  /**
   * Hands out a free client address (4 or 16 bytes, a /32 or /128 host
   * address; a new array), or `undefined` when every one is in use.
   */
  allocate(): Uint8Array | undefined {
    while (this.#next <= this.#last) {
      const offset = this.#next++;
      if (!this.#inUse.has(offset) && !this.#reserved.has(offset)) {
        this.#inUse.add(offset);
        return this.#toAddress(offset);
      }
    }
    while (this.#freeHead < this.#free.length) {
      const offset = this.#free[this.#freeHead++];
      if (this.#freeHead > 1024 && this.#freeHead * 2 > this.#free.length) {
        this.#free = this.#free.slice(this.#freeHead);
        this.#freeHead = 0;
      }
      if (!this.#inUse.has(offset) && !this.#reserved.has(offset)) {
        this.#inUse.add(offset);
        return this.#toAddress(offset);
      }
    }
    return undefined;
  }

  /**
   * Keeps `addresses` (client addresses of this pool; others are ignored)
   * out of {@linkcode allocate}, replacing the previous set: the fixed
   * addresses of users, which only {@linkcode claim} hands out. An address
   * in use stays with its holder until released. Returns how many of
   * `addresses` were taken.
   */
  setReserved(addresses: readonly Uint8Array[]): number {
    const previous = this.#reserved;
    this.#reserved = new Set();
    for (const address of addresses) {
      const offset = this.#offsetOf(address);
      if (offset >= this.#first && offset <= this.#last) this.#reserved.add(offset);
    }
    // Freed from the reservation: back to the free list if the counter passed it.
    for (const offset of previous) {
      if (!this.#reserved.has(offset) && !this.#inUse.has(offset) && offset < this.#next) {
        this.#free.push(offset);
      }
    }
    return this.#reserved.size;
  }

  /**
   * Takes a specific client address, as when a client's ADDRESS_REQUEST names
   * one (RFC 9484 §4.7.2). Returns false when it is outside the prefix,
   * reserved, or already in use.
   */
  claim(address: Uint8Array): boolean {
    const offset = this.#offsetOf(address);
    if (offset < this.#first || offset > this.#last || this.#inUse.has(offset)) return false;
    this.#inUse.add(offset);
    return true;
  }

  /**
   * Returns an address to the pool. Returns false, changing nothing, for an
   * address that is not currently allocated: outside the prefix, of the other
   * version, reserved, never allocated, or already released.
   */
  release(address: Uint8Array): boolean {
    const offset = this.#offsetOf(address);
    if (offset < 0n || !this.#inUse.delete(offset)) return false;
    // An address the counter has not reached yet (claimed) needs no free-list
    // entry, nor does a reserved one (setReserved adds it when it is freed).
    if (offset < this.#next && !this.#reserved.has(offset)) this.#free.push(offset);
    return true;
  }

  /** Whether `address` is currently allocated. */
  isInUse(address: Uint8Array): boolean {
    const offset = this.#offsetOf(address);
    return offset >= 0n && this.#inUse.has(offset);
  }
}
