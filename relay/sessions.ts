/**
 * Admission of CONNECT-IP requests, in two steps:
 *
 * 1. {@linkcode Authenticator.authenticate}, asynchronous: who is asking
 *    (a credential check may wait on a file, a database, a token service).
 *    It returns an {@linkcode Identity} or the HTTP status to answer.
 * 2. {@linkcode SessionAdmission.admit}, synchronous: reserves a session
 *    slot and the addresses for that identity at once, so concurrent
 *    requests that all passed step 1 cannot together pass the limits (the
 *    race `tests/integration/hostile_test.ts` caught). It returns a
 *    {@linkcode Reservation}, released exactly once when the request fails
 *    or the session ends, or the status to answer.
 *
 * Today every request is let in as {@linkcode ANONYMOUS}
 * ({@linkcode ALLOW_EVERYONE}). Users and per-user policy (issue 10: a
 * user's session limit, fixed addresses, routes) plug in here: the
 * authenticator returns an identity whose `policy` carries them, and
 * `admit` applies it.
 *
 * @module
 */

import type { IpPrefix } from "../shared/ip/ip_address.ts";
import { createPrefix } from "../shared/ip/ip_address.ts";
import type { HeaderField } from "../shared/h3/qpack.ts";
import type { ConnectIpScope } from "../shared/masque/connect_ip_request.ts";
import { AddressPool } from "../shared/tunnel/address_pool.ts";

/**
 * What a user may do, as the authenticator found it. Empty today; issue 10
 * adds per-user settings here (session limit, fixed addresses, routes),
 * which {@linkcode SessionAdmission.admit} then applies.
 */
export type IdentityPolicy = Readonly<Record<string, unknown>>;

/** Who a request comes from, once authenticated. */
export interface Identity {
  /** A name for logs and (capped) counter labels. */
  readonly user: string;
  readonly policy: IdentityPolicy;
}

/** The identity of every request while the relay has no users. */
export const ANONYMOUS: Identity = Object.freeze({ user: "anonymous", policy: Object.freeze({}) });

/** What the authenticator sees of a request. */
export interface AdmissionRequest {
  /** The request's header fields (`authorization` and the like). */
  readonly headers: readonly HeaderField[];
  /** The target and IP protocol it asks for (RFC 9484 §4.6). */
  readonly scope: ConnectIpScope;
  /** The peer's address and port, for logs. */
  readonly remote: string;
}

/** A refusal: the HTTP status to answer and the reason for the body and the log. */
export interface AdmissionRefusal {
  readonly ok: false;
  readonly status: number;
  readonly reason: string;
}

/** Step 1: who is asking; see the module docs. */
export interface Authenticator {
  /**
   * The identity behind `request`, or the status to answer (401, 403...).
   * May take its time; must not reserve anything.
   */
  authenticate(
    request: AdmissionRequest,
  ): Promise<{ readonly ok: true; readonly identity: Identity } | AdmissionRefusal>;
}

/** Lets every request in as {@linkcode ANONYMOUS}. */
export const ALLOW_EVERYONE: Authenticator = Object.freeze({
  authenticate: () => Promise.resolve({ ok: true as const, identity: ANONYMOUS }),
});

/**
 * A session slot and addresses held for one request, then its session.
 * {@linkcode release} gives them back; calls after the first do nothing.
 */
export class Reservation {
  readonly identity: Identity;
  /** One address of each pool that is on: a /32 and/or a /128. */
  readonly addresses: readonly IpPrefix[];
  readonly #release: (reservation: Reservation) => void;
  #released = false;

  constructor(
    identity: Identity,
    addresses: readonly IpPrefix[],
    release: (reservation: Reservation) => void,
  ) {
    this.identity = identity;
    this.addresses = addresses;
    this.#release = release;
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

/** Options of {@linkcode SessionAdmission}. */
export interface SessionAdmissionOptions {
  /** Client address pools; at least one. */
  readonly pools: readonly IpPrefix[];
  /** Sessions (open, or reserved and opening) at once. */
  readonly maxSessions: number;
}

/** Step 2: the slots and the pools; see the module docs. */
export class SessionAdmission {
  readonly #pools: readonly AddressPool[];
  readonly #maxSessions: number;
  readonly #reservations = new Set<Reservation>();
  readonly #released = (reservation: Reservation) => {
    this.#reservations.delete(reservation);
    for (const prefix of reservation.addresses) {
      this.#pool(prefix.version)?.release(prefix.address);
    }
  };

  constructor(options: SessionAdmissionOptions) {
    if (options.pools.length === 0) {
      throw new Error("Cannot start relay: no address pool (pool4 or pool6)");
    }
    this.#pools = options.pools.map((prefix) => new AddressPool(prefix));
    this.#maxSessions = options.maxSessions;
  }

  /** The pools that are on (one or two). */
  get pools(): readonly AddressPool[] {
    return this.#pools;
  }

  /** Reservations held now: sessions open and requests between admit and their session. */
  get reserved(): number {
    return this.#reservations.size;
  }

  #pool(version: 4 | 6): AddressPool | undefined {
    return this.#pools.find((pool) => pool.prefix.version === version);
  }

  /** Addresses in use in the pool of `version` (0 when that pool is off). */
  inUse(version: 4 | 6): number {
    return this.#pool(version)?.inUse ?? 0;
  }

  /**
   * Reserves a session slot and one address of each pool for `identity`,
   * synchronously, or refuses with 503 when the session limit or a pool is
   * exhausted (nothing is then held). `scope` is what the request asked
   * for; per-user policy (issue 10) will read both.
   */
  admit(identity: Identity, _scope: ConnectIpScope): Reservation | AdmissionRefusal {
    if (this.#reservations.size >= this.#maxSessions) {
      return { ok: false, status: 503, reason: "session limit reached" };
    }
    const addresses: IpPrefix[] = [];
    for (const pool of this.#pools) {
      const address = pool.allocate();
      if (address === undefined) {
        for (const prefix of addresses) this.#pool(prefix.version)?.release(prefix.address);
        return { ok: false, status: 503, reason: "address pool exhausted" };
      }
      addresses.push(createPrefix(address, address.length * 8));
    }
    const reservation = new Reservation(identity, addresses, this.#released);
    this.#reservations.add(reservation);
    return reservation;
  }
}
