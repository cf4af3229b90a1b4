/**
 * Byte helpers shared by the test files: `hex()` for writing wire bytes by
 * hand and `prng()` for seeded, replayable fuzz inputs.
 *
 * @module
 */

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
