/**
 * Failed authentication attempts per source (an IPv4 address or an IPv6
 * /64: `sourceKey` in `shared/connection_limiter.ts`): a source that fails
 * `maxFailures` times within `windowMs` is blocked for a back-off period,
 * which doubles each time the source is blocked again (up to
 * `maxBackoffMs`). The relay closes a blocked source's connections and
 * closes new ones right after the handshake.
 *
 * The table is bounded: at most `maxEntries` sources. A new source past the
 * cap evicts the source seen longest ago, preferring one that is only
 * counting over one that is blocked, so a flood of failures from many
 * sources cannot grow it (and frees blocked sources last).
 *
 * Pure: the caller passes the time in milliseconds.
 *
 * @module
 */

/** Options of {@linkcode FailureLimiter}. */
export interface FailureLimiterOptions {
  /** Failures within `windowMs` that block a source; at least 1. */
  readonly maxFailures: number;
  /** The window failures are counted in, milliseconds. */
  readonly windowMs: number;
  /** The first back-off, milliseconds; doubled at each block that follows. */
  readonly backoffMs: number;
  /** The longest back-off, milliseconds. */
  readonly maxBackoffMs: number;
  /** Sources tracked at once; at least 1. */
  readonly maxEntries: number;
}

/** The defaults: 10 failures a minute block for 1 min, 2 min, 4 min ... up to 1 h; 10,000 sources. */
export const DEFAULT_FAILURE_LIMITS: FailureLimiterOptions = Object.freeze({
  maxFailures: 10,
  windowMs: 60_000,
  backoffMs: 60_000,
  maxBackoffMs: 3_600_000,
  maxEntries: 10_000,
});

interface Entry {
  windowStart: number;
  failures: number;
  blockedUntil: number;
  /** The back-off the next block gets, ms. */
  nextBackoff: number;
  /** The last failure, ms. */
  lastFailure: number;
}

/** What {@linkcode FailureLimiter.fail} did. */
export interface FailureOutcome {
  /** Whether this failure blocked the source (it was not blocked before). */
  readonly blocked: boolean;
  /** Milliseconds the source stays blocked from now; 0 when it is not blocked. */
  readonly blockedForMs: number;
}

/** See the module docs. */
export class FailureLimiter {
  readonly options: FailureLimiterOptions;
  /** Sources counting failures, least recently failed first (Map keeps insertion order). */
  readonly #counting = new Map<string, Entry>();
  /** Sources blocked (or that were, and have not failed since), least recently failed first. */
  readonly #blocked = new Map<string, Entry>();
  #evicted = 0;

  /** Throws a `RangeError` for a limit that is not a positive integer. */
  constructor(options: Partial<FailureLimiterOptions> = {}) {
    const merged = { ...DEFAULT_FAILURE_LIMITS, ...options };
    for (const [name, value] of Object.entries(merged)) {
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new RangeError(`Cannot create failure limiter: ${name} ${value} is not at least 1`);
      }
    }
    this.options = Object.freeze(merged);
  }

  /** Sources tracked now (at most `maxEntries`). */
  get size(): number {
    return this.#counting.size + this.#blocked.size;
  }

  /** Sources evicted to keep the cap, since construction. */
  get evicted(): number {
    return this.#evicted;
  }

  /** Sources blocked at `now`. */
  blockedCount(now: number): number {
    let n = 0;
    for (const entry of this.#blocked.values()) if (entry.blockedUntil > now) n++;
    return n;
  }

  /** Milliseconds `key` stays blocked from `now`; 0 when it is not blocked. */
  blockedFor(key: string, now: number): number {
    const entry = this.#blocked.get(key);
    return entry === undefined ? 0 : Math.max(0, entry.blockedUntil - now);
  }

  /** Counts a failed attempt from `key` at `now`; see {@linkcode FailureOutcome}. */
  fail(key: string, now: number): FailureOutcome {
    const o = this.options;
    let entry = this.#blocked.get(key);
    if (entry !== undefined) {
      this.#blocked.delete(key);
      if (entry.blockedUntil > now) {
        // Still blocked: keep the block, move to the newest end.
        entry.lastFailure = now;
        this.#blocked.set(key, entry);
        return { blocked: false, blockedForMs: entry.blockedUntil - now };
      }
      // The block ran out; quiet as long as the longest back-off after it forgets the level.
      if (now - entry.blockedUntil >= o.maxBackoffMs) entry.nextBackoff = o.backoffMs;
      entry.failures = 0;
      entry.windowStart = now;
    } else {
      entry = this.#counting.get(key);
      if (entry !== undefined) this.#counting.delete(key);
    }
    if (entry === undefined) {
      this.#makeRoom();
      entry = {
        windowStart: now,
        failures: 0,
        blockedUntil: 0,
        nextBackoff: o.backoffMs,
        lastFailure: now,
      };
    }
    if (now - entry.windowStart >= o.windowMs) {
      entry.windowStart = now;
      entry.failures = 0;
    }
    entry.failures++;
    entry.lastFailure = now;
    if (entry.failures < o.maxFailures) {
      this.#counting.set(key, entry);
      return { blocked: false, blockedForMs: 0 };
    }
    entry.blockedUntil = now + entry.nextBackoff;
    entry.nextBackoff = Math.min(entry.nextBackoff * 2, o.maxBackoffMs);
    entry.failures = 0;
    this.#blocked.set(key, entry);
    return { blocked: true, blockedForMs: entry.blockedUntil - now };
  }

  #makeRoom(): void {
    if (this.size < this.options.maxEntries) return;
    const from = this.#counting.size > 0 ? this.#counting : this.#blocked;
    from.delete(from.keys().next().value!);
    this.#evicted++;
  }
}
