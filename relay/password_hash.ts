/**
 * Hashing and checking stored credentials with scrypt (RFC 7914) from
 * `node:crypto`, which Deno runs off the main thread. The text form is the
 * PHC string of `shared/auth/scrypt_hash.ts`.
 *
 * Checks are bounded: {@linkcode HashGate} runs at most a few at once and
 * queues a few more, so a flood of credential attempts costs the relay a
 * bounded amount of CPU and memory (each hash holds 128 * r * N bytes).
 *
 * @module
 */

import { scrypt } from "node:crypto";
import { constantTimeEqual } from "../shared/auth/credentials.ts";
import {
  DEFAULT_SCRYPT,
  formatScryptHash,
  SCRYPT_KEY_BYTES,
  SCRYPT_SALT_BYTES,
  scryptMemory,
} from "../shared/auth/scrypt_hash.ts";
import type { ScryptHash, ScryptParams } from "../shared/auth/scrypt_hash.ts";

const encoder = new TextEncoder();

/** Derives `length` bytes from `secret` and `salt` with scrypt. */
export function deriveScrypt(
  secret: string,
  salt: Uint8Array,
  params: ScryptParams,
  length = SCRYPT_KEY_BYTES,
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    scrypt(
      encoder.encode(secret),
      salt,
      length,
      {
        N: 2 ** params.logN,
        r: params.r,
        p: params.p,
        maxmem: scryptMemory(params) + 1024 * 1024,
      },
      (error, key) => error ? reject(error) : resolve(new Uint8Array(key)),
    );
  });
}

/** A new salted hash of `secret`, as a PHC string. */
export async function hashSecret(
  secret: string,
  params: ScryptParams = DEFAULT_SCRYPT,
): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(SCRYPT_SALT_BYTES));
  const hash = await deriveScrypt(secret, salt, params);
  return formatScryptHash({ ...params, salt, hash });
}

/** Whether `secret` hashes to `stored`; the comparison takes the same time wherever they differ. */
export async function verifySecret(secret: string, stored: ScryptHash): Promise<boolean> {
  const derived = await deriveScrypt(secret, stored.salt, stored, stored.hash.length);
  return constantTimeEqual(derived, stored.hash);
}

/**
 * A stand-in hash with `params` and a random salt, checked when a request
 * names a user or token that does not exist, so that the answer takes as
 * long as for one that does (the time does not tell which names exist).
 */
export function dummyHash(params: ScryptParams = DEFAULT_SCRYPT): ScryptHash {
  return {
    ...params,
    salt: crypto.getRandomValues(new Uint8Array(SCRYPT_SALT_BYTES)),
    hash: crypto.getRandomValues(new Uint8Array(SCRYPT_KEY_BYTES)),
  };
}

/** Options of {@linkcode HashGate}. */
export interface HashGateOptions {
  /** Hashes computed at once; default 2. */
  readonly concurrency?: number;
  /** Hashes waiting for a turn; past this {@linkcode HashGate.run} refuses. Default 64. */
  readonly maxQueued?: number;
}

/**
 * Runs at most `concurrency` hash computations at once and queues up to
 * `maxQueued` more; {@linkcode run} returns `undefined` (and runs nothing)
 * when the queue is full.
 */
export class HashGate {
  readonly #concurrency: number;
  readonly #maxQueued: number;
  #running = 0;
  readonly #queue: (() => void)[] = [];
  /** Runs refused because the queue was full, since construction. */
  refused = 0;

  constructor(options: HashGateOptions = {}) {
    this.#concurrency = options.concurrency ?? 2;
    this.#maxQueued = options.maxQueued ?? 64;
  }

  /** Hashes running and waiting now. */
  get pending(): number {
    return this.#running + this.#queue.length;
  }

  /** Runs `work` in its turn, or returns `undefined` when too many wait already. */
  run<T>(work: () => Promise<T>): Promise<T> | undefined {
    if (this.#running < this.#concurrency) {
      this.#running++;
      return this.#go(work);
    }
    if (this.#queue.length >= this.#maxQueued) {
      this.refused++;
      return undefined;
    }
    // The slot is handed over by the run that finishes (#go), never taken twice.
    return new Promise<void>((resolve) => this.#queue.push(resolve)).then(() => this.#go(work));
  }

  async #go<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } finally {
      const next = this.#queue.shift();
      if (next !== undefined) next();
      else this.#running--;
    }
  }
}
