/**
 * Rate limits for input a peer controls: a token bucket (how often a peer
 * may make the relay do work, e.g. answer an ADDRESS_REQUEST, or how many
 * bytes a user may send: a token per byte) and a limiter
 * of repeated log lines (so that a flood of refused connections does not
 * become a flood of log lines).
 *
 * Both are pure: the caller passes the time in milliseconds (any monotonic
 * clock, e.g. `performance.now()` or `Date.now()`), so tests drive them with
 * a fake clock.
 *
 * @module
 */

/** Options of {@linkcode TokenBucket}. */
export interface TokenBucketOptions {
  /** Tokens added per second; more than 0. */
  readonly ratePerSecond: number;
  /** Most tokens held at once, and how many the bucket starts with; at least 1. */
  readonly burst: number;
}

/**
 * A token bucket: `burst` tokens at first, refilled at `ratePerSecond` up to
 * `burst`. Each {@linkcode take} spends one. Over any interval of `t`
 * milliseconds at most `burst + ratePerSecond * t / 1000` takes succeed.
 */
export class TokenBucket {
  readonly #ratePerMs: number;
  readonly #burst: number;
  #tokens: number;
  #updatedAt: number;

  /**
   * Throws a `RangeError` when `ratePerSecond` is not a positive number or
   * `burst` is not an integer of at least 1. `now`: the current time, ms.
   */
  constructor(options: TokenBucketOptions, now: number) {
    if (!(options.ratePerSecond > 0) || !Number.isFinite(options.ratePerSecond)) {
      throw new RangeError(
        `Cannot create token bucket: rate ${options.ratePerSecond} per second is not positive`,
      );
    }
    if (!Number.isInteger(options.burst) || options.burst < 1) {
      throw new RangeError(`Cannot create token bucket: burst ${options.burst} is not at least 1`);
    }
    this.#ratePerMs = options.ratePerSecond / 1000;
    this.#burst = options.burst;
    this.#tokens = options.burst;
    this.#updatedAt = now;
  }

  #refill(now: number): void {
    if (now > this.#updatedAt) {
      this.#tokens = Math.min(
        this.#burst,
        this.#tokens + (now - this.#updatedAt) * this.#ratePerMs,
      );
      this.#updatedAt = now;
    }
  }

  /** Tokens available at `now` (ms), possibly fractional. */
  available(now: number): number {
    this.#refill(now);
    return this.#tokens;
  }

  /**
   * Spends `amount` tokens (default 1; bytes, for a rate on bytes) if as
   * many are there at `now` (ms); returns whether it did. Nothing is spent
   * on failure. An `amount` above `burst` never succeeds.
   */
  take(now: number, amount = 1): boolean {
    this.#refill(now);
    if (this.#tokens < amount) return false;
    this.#tokens -= amount;
    return true;
  }

  /** Milliseconds from `now` until a {@linkcode take} can succeed; 0 when one can now. */
  msUntilToken(now: number): number {
    this.#refill(now);
    if (this.#tokens >= 1) return 0;
    // The epsilon keeps float error (0.996 tokens at 4/s is 1.0000000000000009 ms) from adding 1 ms.
    return Math.max(1, Math.ceil((1 - this.#tokens) / this.#ratePerMs - 1e-9));
  }
}

/** Options of {@linkcode LogLimiter}. */
export interface LogLimiterOptions {
  /** Lines of one key allowed per window; at least 1. */
  readonly linesPerWindow: number;
  /** Window length, milliseconds. */
  readonly windowMs: number;
  /** Keys tracked at once; past this the oldest key is forgotten. Default 64. */
  readonly maxKeys?: number;
}

interface LogWindow {
  start: number;
  lines: number;
  suppressed: number;
}

/**
 * Limits repeated log lines: per key (e.g. the message), at most
 * `linesPerWindow` lines in each window of `windowMs`. A line that is let
 * through after others were held back reports how many were, so nothing is
 * lost from the count. The table holds at most `maxKeys` keys, so even keys
 * taken from peer input cannot grow it without bound.
 */
export class LogLimiter {
  readonly #linesPerWindow: number;
  readonly #windowMs: number;
  readonly #maxKeys: number;
  readonly #windows = new Map<string, LogWindow>();

  constructor(options: LogLimiterOptions) {
    this.#linesPerWindow = Math.max(1, Math.floor(options.linesPerWindow));
    this.#windowMs = options.windowMs;
    this.#maxKeys = Math.max(1, options.maxKeys ?? 64);
  }

  /**
   * Whether a line of `key` may be written at `now` (ms). Returns
   * `undefined` when it must be dropped, else the number of lines of this
   * key dropped since the last one written (to add to the line).
   */
  allow(key: string, now: number): number | undefined {
    let window = this.#windows.get(key);
    if (window === undefined) {
      if (this.#windows.size >= this.#maxKeys) {
        // Forget the key seen first (Map keeps insertion order).
        this.#windows.delete(this.#windows.keys().next().value!);
      }
      window = { start: now, lines: 0, suppressed: 0 };
      this.#windows.set(key, window);
    } else if (now - window.start >= this.#windowMs) {
      window.start = now;
      window.lines = 0;
    }
    if (window.lines >= this.#linesPerWindow) {
      window.suppressed++;
      return undefined;
    }
    window.lines++;
    const suppressed = window.suppressed;
    window.suppressed = 0;
    return suppressed;
  }

  /** Keys tracked now (at most `maxKeys`). */
  get size(): number {
    return this.#windows.size;
  }
}
