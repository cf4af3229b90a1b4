/**
 * Admission of CONNECT-IP requests, in two steps:
 *
 * 1. {@linkcode Authenticator.authenticate}, asynchronous: who is asking
 *    (a credential check may wait on a hash, a file, a token service). It
 *    sees the request's header fields and the peer's address and
 *    connection, nothing of HTTP/3, so every transport uses it. It returns
 *    an {@linkcode Identity} or the HTTP status to answer.
 * 2. {@linkcode SessionAdmission.admit}, synchronous: reserves a session
 *    slot and the addresses for that identity at once, so concurrent
 *    requests that all passed step 1 cannot together pass the limits (the
 *    race `tests/integration/hostile_test.ts` caught). The limits: the
 *    relay's sessions, the sessions of one connection, the sessions of one
 *    user (its policy's `maxSessions`, across all its connections). A user
 *    with a fixed address gets it; a newer session of the same user takes
 *    it from an older one, which is ended. It returns a
 *    {@linkcode Reservation}, released exactly once when the request fails
 *    or the session ends, or the status to answer.
 *
 * Users come from `relay/users.ts` (`UserAuthenticator`); with `--no-auth`
 * every request is {@linkcode ANONYMOUS} ({@linkcode ALLOW_EVERYONE}).
 *
 * @module
 */

import type { IpPrefix } from "../shared/ip/ip_address.ts";
import {
  addressBits,
  createPrefix,
  formatIp,
  formatPrefix,
  prefixContains,
} from "../shared/ip/ip_address.ts";
import type { HeaderField } from "../shared/h3/qpack.ts";
import type { UserPolicy } from "../shared/auth/policy.ts";
import type { ConnectIpScope } from "../shared/masque/connect_ip_request.ts";
import { AddressPool } from "../shared/tunnel/address_pool.ts";

/** Who a request comes from, once authenticated, and what it may do. */
export interface Identity {
  /** A name for logs and (capped) counter labels. */
  readonly user: string;
  readonly policy: UserPolicy;
  /**
   * What the request's credential was checked against (the stored hash's
   * text), when there is one: a reload that no longer has it ends the
   * sessions it opened (a replaced token).
   */
  readonly credential?: string;
}

/**
 * The identity of every request when the relay runs without users
 * (`--no-auth`): no per-user session limit (the relay's and the
 * connection's still hold), no route or rate limit.
 */
export const ANONYMOUS: Identity = Object.freeze({
  user: "anonymous",
  policy: Object.freeze({ maxSessions: Number.MAX_SAFE_INTEGER }),
});

/** What the authenticator sees of a request, whatever the transport. */
export interface AdmissionRequest {
  /** The request's header fields (`proxy-authorization` and the like). */
  readonly headers: readonly HeaderField[];
  /** The peer's address and port, for logs. */
  readonly remote: string;
  /** The peer's source key (IPv4 address or IPv6 /64, `sourceKey`), for the failure limiter. */
  readonly source: string;
  /**
   * The connection the request came on: a key for what the authenticator
   * keeps per connection (credentials verified once per connection).
   */
  readonly connection: object;
}

/** Why an authentication failed, for counters (a bounded set). */
export const AUTH_FAILURES = [
  "no credentials",
  "malformed credentials",
  "unknown user",
  "wrong secret",
  "overloaded",
] as const;

/** One of {@linkcode AUTH_FAILURES}. */
export type AuthFailure = typeof AUTH_FAILURES[number];

/**
 * A refusal: the HTTP status to answer and the reason for the log (the
 * body only for statuses other than 404). `failure`, for an authentication
 * that failed: what went wrong, and whether it counts against the source
 * in the failure limiter (`counts`; not when the relay was too busy to
 * check).
 */
export interface AdmissionRefusal {
  readonly ok: false;
  readonly status: number;
  readonly reason: string;
  readonly failure?: { readonly why: AuthFailure; readonly counts: boolean };
}

/** Step 1: who is asking; see the module docs. */
export interface Authenticator {
  /**
   * The identity behind `request`, or the status to answer (404 for
   * missing or wrong credentials: the answer to an unknown path). May take
   * its time; must not reserve anything.
   */
  authenticate(
    request: AdmissionRequest,
  ): Promise<{ readonly ok: true; readonly identity: Identity } | AdmissionRefusal>;
  /**
   * Spends the time a credential check would on a request that carries
   * credentials but was not checked (a GET), so that the time of a 404
   * does not tell the two apart. Optional.
   */
  imitate?(headers: readonly HeaderField[]): Promise<void>;
}

/** Lets every request in as {@linkcode ANONYMOUS} (`--no-auth`). */
export const ALLOW_EVERYONE: Authenticator = Object.freeze({
  authenticate: () => Promise.resolve({ ok: true as const, identity: ANONYMOUS }),
});

/**
 * A session slot and addresses held for one request, then its session.
 * {@linkcode release} gives them back; calls after the first do nothing.
 */
export class Reservation {
  readonly identity: Identity;
  #addresses: readonly IpPrefix[];
  /** The connection it was made on (the per-connection limit's key). */
  readonly connection: object;
  /**
   * Called once when a newer session of the same user takes this
   * reservation's fixed address; the reservation is released right after.
   * The relay sets it to end the session.
   */
  onEvict: ((why: string) => void) | undefined;
  readonly #release: (reservation: Reservation) => void;
  #released = false;

  constructor(
    identity: Identity,
    addresses: readonly IpPrefix[],
    connection: object,
    release: (reservation: Reservation) => void,
  ) {
    this.identity = identity;
    this.#addresses = addresses;
    this.connection = connection;
    this.onEvict = undefined;
    this.#release = release;
  }

  /**
   * One address of each pool that is on: a /32 and/or a /128. Changes only
   * through {@linkcode SessionAdmission.move} and {@linkcode SessionAdmission.request}.
   */
  get addresses(): readonly IpPrefix[] {
    return this.#addresses;
  }

  /** For {@linkcode SessionAdmission.move}: the address of `wanted`'s version becomes `wanted`. */
  replace(wanted: IpPrefix): IpPrefix | undefined {
    const old = this.#addresses.find((prefix) => prefix.version === wanted.version);
    if (old === undefined) return undefined;
    this.#addresses = Object.freeze(
      this.#addresses.map((prefix) => (prefix === old ? wanted : prefix)),
    );
    return old;
  }

  /** For {@linkcode SessionAdmission.request}: gives up `prefix`, which moved to another reservation. */
  drop(prefix: IpPrefix): void {
    const key = formatPrefix(prefix);
    this.#addresses = Object.freeze(this.#addresses.filter((a) => formatPrefix(a) !== key));
  }

  /** Whether {@linkcode release} has been called. */
  get released(): boolean {
    return this.#released;
  }

  /** Gives the slot and the addresses back, once. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#release(this);
  }
}

/** One address {@linkcode SessionAdmission.request} granted. */
export interface AddressChange {
  /** The address the reservation holds now. */
  readonly granted: IpPrefix;
  /** The address of the same IP version it gave back to the pool. */
  readonly replaced: IpPrefix;
  /** The reservation `granted` was taken from; undefined when it was free. */
  readonly from: Reservation | undefined;
}

/** Options of {@linkcode SessionAdmission}. */
export interface SessionAdmissionOptions {
  /** Client address pools; at least one. */
  readonly pools: readonly IpPrefix[];
  /** Sessions (open, or reserved and opening) at once. */
  readonly maxSessions: number;
  /** Sessions of one connection at once (default: no limit beyond `maxSessions`). */
  readonly maxSessionsPerConnection?: number;
}

function addressKey(address: Uint8Array): string {
  return formatIp(address);
}

/** Step 2: the slots and the pools; see the module docs. */
export class SessionAdmission {
  readonly #pools: readonly AddressPool[];
  readonly #maxSessions: number;
  readonly #maxPerConnection: number;
  readonly #reservations = new Set<Reservation>();
  readonly #perConnection = new Map<object, number>();
  readonly #perUser = new Map<string, number>();
  /** Users' fixed addresses (text): never given to an ADDRESS_REQUEST ({@linkcode move}). */
  #fixed = new Set<string>();
  /** Fixed address (text) -> the reservation holding it. */
  readonly #fixedHolders = new Map<string, Reservation>();
  readonly #released = (reservation: Reservation) => {
    this.#reservations.delete(reservation);
    decrement(this.#perConnection, reservation.connection);
    decrement(this.#perUser, reservation.identity.user);
    for (const prefix of reservation.addresses) {
      const key = addressKey(prefix.address);
      if (this.#fixedHolders.get(key) === reservation) this.#fixedHolders.delete(key);
      this.#pool(prefix.version)?.release(prefix.address);
    }
  };

  constructor(options: SessionAdmissionOptions) {
    if (options.pools.length === 0) {
      throw new Error("Cannot start relay: no address pool (pool4 or pool6)");
    }
    this.#pools = options.pools.map((prefix) => new AddressPool(prefix));
    this.#maxSessions = options.maxSessions;
    this.#maxPerConnection = options.maxSessionsPerConnection ?? Number.MAX_SAFE_INTEGER;
  }

  /** The pools that are on (one or two). */
  get pools(): readonly AddressPool[] {
    return this.#pools;
  }

  /** Reservations held now: sessions open and requests between admit and their session. */
  get reserved(): number {
    return this.#reservations.size;
  }

  /** Reservations of `user` now. */
  sessionsOf(user: string): number {
    return this.#perUser.get(user) ?? 0;
  }

  #pool(version: 4 | 6): AddressPool | undefined {
    return this.#pools.find((pool) => pool.prefix.version === version);
  }

  /** Addresses in use in the pool of `version` (0 when that pool is off). */
  inUse(version: 4 | 6): number {
    return this.#pool(version)?.inUse ?? 0;
  }

  /**
   * Moves `reservation` to the address `wanted` (a /32 or /128 of a pool
   * that is on), as a client's ADDRESS_REQUEST for its previous address
   * asks (RFC 9484 §4.7.2): when `wanted` is free it is taken and the
   * reservation's address of that version goes back to its pool. Returns
   * the address given up, or `undefined` (nothing changed) when `wanted` is
   * outside the pools, in use, or a user's fixed address (its user gets it
   * at admission, `setFixedAddresses`).
   */
  move(reservation: Reservation, wanted: IpPrefix): IpPrefix | undefined {
    if (reservation.released || !this.#reservations.has(reservation)) return undefined;
    const pool = this.#pool(wanted.version);
    if (pool === undefined || wanted.prefixLength !== wanted.address.length * 8) return undefined;
    if (this.#fixed.has(addressKey(wanted.address))) return undefined;
    if (!pool.claim(wanted.address)) return undefined;
    const old = reservation.replace(createPrefix(wanted.address, wanted.prefixLength));
    if (old === undefined) {
      pool.release(wanted.address);
      return undefined;
    }
    pool.release(old.address);
    return old;
  }

  /**
   * Gives `to` the addresses it asks for with ADDRESS_REQUEST (RFC 9484
   * §4.7.2), where it may have them: a single address (/32, /128) of a
   * pool, free in the pool, or held by another reservation that
   * `mayTakeFrom` allows (the same client's other session). Each address
   * granted replaces the one `to` held of its IP version, which goes back to
   * the pool; one taken from another reservation leaves it. Other requests
   * (a prefix, an address outside the pools or in use by someone else)
   * change nothing. Returns what moved, so the caller can route the
   * addresses anew.
   */
  request(
    to: Reservation,
    wanted: readonly IpPrefix[],
    mayTakeFrom: (holder: Reservation) => boolean,
    options: { readonly fromPool?: boolean } = {},
  ): AddressChange[] {
    const changes: AddressChange[] = [];
    for (const prefix of wanted) {
      if (prefix.prefixLength !== addressBits(prefix.version)) continue;
      const key = formatPrefix(prefix);
      const current = to.addresses.find((a) => a.version === prefix.version);
      if (current === undefined || formatPrefix(current) === key) continue;
      const pool = this.#pool(prefix.version);
      if (pool === undefined || !prefixContains(pool.prefix, prefix.address)) continue;
      if (this.#fixed.has(addressKey(prefix.address))) continue;
      let from: Reservation | undefined;
      if (options.fromPool !== false && pool.claim(prefix.address)) {
        // free: now ours
      } else {
        for (const holder of this.#reservations) {
          if (holder === to || !holder.addresses.some((a) => formatPrefix(a) === key)) continue;
          if (mayTakeFrom(holder)) from = holder;
          break;
        }
        if (from === undefined) continue;
        from.drop(prefix);
      }
      pool.release(current.address);
      to.replace(prefix);
      changes.push({ granted: prefix, replaced: current, from });
    }
    return changes;
  }

  /**
   * Keeps users' fixed addresses out of the pools' dynamic allocation
   * (replacing the previous set; at start and on each reload).
   */
  setFixedAddresses(addresses: readonly Uint8Array[]): void {
    for (const pool of this.#pools) pool.setReserved(addresses);
    this.#fixed = new Set(addresses.map(addressKey));
  }

  /**
   * Reserves a session slot and one address of each pool for `identity`
   * on `connection`, synchronously, or refuses (nothing is then held): 503
   * when the relay's session limit or a pool is used up, 429 when the
   * connection's or the user's session limit is reached. A fixed address
   * of the user's policy is taken from the older session of the same user
   * that holds it (its `onEvict` is called and it is released). `scope` is
   * what the request asked for (its routes were checked before).
   */
  admit(
    identity: Identity,
    _scope: ConnectIpScope,
    connection: object,
  ): Reservation | AdmissionRefusal {
    if (this.#reservations.size >= this.#maxSessions) {
      return { ok: false, status: 503, reason: "session limit reached" };
    }
    if ((this.#perConnection.get(connection) ?? 0) >= this.#maxPerConnection) {
      return {
        ok: false,
        status: 429,
        reason: `session limit of this connection reached (${this.#maxPerConnection})`,
      };
    }
    const policy = identity.policy;
    if (this.sessionsOf(identity.user) >= policy.maxSessions) {
      return {
        ok: false,
        status: 429,
        reason: `session limit of user ${identity.user} reached (${policy.maxSessions})`,
      };
    }
    const addresses: IpPrefix[] = [];
    const fixed: string[] = [];
    const undo = () => {
      for (const prefix of addresses) this.#pool(prefix.version)?.release(prefix.address);
    };
    for (const pool of this.#pools) {
      const version = pool.prefix.version;
      const wanted = version === 4 ? policy.address4 : policy.address6;
      let address: Uint8Array | undefined;
      if (wanted !== undefined) {
        const holder = this.#fixedHolders.get(addressKey(wanted));
        if (holder !== undefined && holder.identity.user === identity.user) {
          holder.onEvict?.(`a newer session of ${identity.user} took ${formatIp(wanted)}`);
          holder.release();
        }
        if (pool.claim(wanted)) {
          address = wanted.slice();
          fixed.push(addressKey(wanted));
        } else {
          undo();
          return {
            ok: false,
            status: 503,
            reason: `fixed address ${formatIp(wanted)} is in use`,
          };
        }
      } else {
        address = pool.allocate();
      }
      if (address === undefined) {
        undo();
        return { ok: false, status: 503, reason: "address pool exhausted" };
      }
      addresses.push(createPrefix(address, address.length * 8));
    }
    const reservation = new Reservation(identity, addresses, connection, this.#released);
    this.#reservations.add(reservation);
    this.#perConnection.set(connection, (this.#perConnection.get(connection) ?? 0) + 1);
    this.#perUser.set(identity.user, this.sessionsOf(identity.user) + 1);
    for (const key of fixed) this.#fixedHolders.set(key, reservation);
    return reservation;
  }
}

function decrement<K>(map: Map<K, number>, key: K): void {
  const count = map.get(key) ?? 0;
  if (count <= 1) map.delete(key);
  else map.set(key, count - 1);
}
