/**
 * Byte helpers shared by the test files: `hex()` for writing wire bytes by
 * hand, `prng()` for seeded, replayable sequences, and `fuzz()`, which every
 * fuzz test runs in: it draws its inputs from a seeded generator, names the
 * seed when the test fails, and takes the seed from `MASQUE_TEST_SEED` when
 * that is set, to replay a failure.
 *
 * @module
 */

import { errorMessage } from "../../shared/errors.ts";

/**
 * Returns the bytes written as hex digits in `text`, e.g. `hex("00 ff 10")`.
 * Whitespace anywhere is ignored, so fields can be spaced and split across
 * lines; an empty string gives an empty array. The caller owns the result.
 *
 * Throws an `Error` on an odd number of digits or on a character that is not a
 * hex digit, so a typo in a test vector fails loudly instead of shifting bytes.
 */
export function hex(text: string): Uint8Array {
  const digits = text.replace(/\s+/g, "");
  const bad = digits.search(/[^0-9a-fA-F]/);
  if (bad !== -1) {
    throw new Error(
      `Cannot parse hex: ${JSON.stringify(digits[bad])} at digit ${bad} is not a hex digit`,
    );
  }
  if (digits.length % 2 !== 0) {
    throw new Error(`Cannot parse hex: ${digits.length} digits is an odd count`);
  }
  const out = new Uint8Array(digits.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * Returns a deterministic generator (mulberry32) of numbers in [0, 1), so that
 * a failing fuzz case can be replayed from its seed. Only the low 32 bits of an
 * integer `seed` matter. The same seed always gives the same sequence.
 */
export function prng(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The environment variable that fixes the seed of every fuzz test, to replay a failure. */
export const SEED_ENV = "MASQUE_TEST_SEED";

/**
 * A seeded generator: called, a number in [0, 1) (mulberry32, as
 * {@linkcode prng}); `int(n)` an integer in 0..n-1; `bytes(n)` a new array of
 * `n` random bytes; `fill(array)` fills and returns `array`.
 */
export interface Random {
  (): number;
  /** The seed the sequence started from. */
  readonly seed: number;
  int(below: number): number;
  bytes(length: number): Uint8Array<ArrayBuffer>;
  fill<T extends Uint8Array>(array: T): T;
}

/** A {@linkcode Random} starting from `seed` (only its low 32 bits matter). */
export function seededRandom(seed: number): Random {
  const next = prng(seed);
  const int = (below: number) => Math.floor(next() * below);
  const fill = <T extends Uint8Array>(array: T): T => {
    for (let i = 0; i < array.length; i++) array[i] = int(256);
    return array;
  };
  return Object.assign(() => next(), {
    seed,
    int,
    fill,
    bytes: (length: number) => fill(new Uint8Array(length)),
  });
}

/**
 * The seed for a fuzz test: `MASQUE_TEST_SEED` when set (a decimal or `0x`
 * hex integer), else `fallback`, else a fresh random 32-bit seed.
 * Throws on a `MASQUE_TEST_SEED` that is not an integer.
 */
export function testSeed(fallback?: number): number {
  let text: string | undefined;
  try {
    text = Deno.env.get(SEED_ENV);
  } catch {
    text = undefined; // no --allow-env: no replay seed
  }
  if (text !== undefined && text !== "") {
    const seed = Number(text);
    if (!Number.isInteger(seed)) {
      throw new Error(`Cannot use ${SEED_ENV}=${JSON.stringify(text)}: not an integer`);
    }
    return seed;
  }
  return fallback ?? crypto.getRandomValues(new Uint32Array(1))[0];
}

/**
 * Runs a fuzz test's `body` with a {@linkcode Random} seeded by
 * {@linkcode testSeed}`(fallbackSeed)` and returns what it returns. When the
 * body throws (or its promise rejects), the error is thrown again wrapped in
 * one that names the seed and how to replay it:
 * `Fuzz test failed with seed 1234 (replay: MASQUE_TEST_SEED=1234): ...`, with
 * the original as its `cause`.
 */
export function fuzz<T>(body: (random: Random) => T, fallbackSeed?: number): T {
  const seed = testSeed(fallbackSeed);
  const fail = (error: unknown): never => {
    throw new Error(
      `Fuzz test failed with seed ${seed} (replay: ${SEED_ENV}=${seed}): ${errorMessage(error)}`,
      { cause: error },
    );
  };
  let result: T;
  try {
    result = body(seededRandom(seed));
  } catch (error) {
    return fail(error);
  }
  if (result instanceof Promise) return result.catch(fail) as T;
  return result;
}
