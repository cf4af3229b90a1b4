import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { fuzz, hex, prng, SEED_ENV, seededRandom, testSeed } from "./bytes.ts";

Deno.test("hex() reads pairs of digits and ignores whitespace", async (t) => {
  await t.step("spaced bytes", () => {
    assertEquals(hex("00 ff 10"), new Uint8Array([0x00, 0xff, 0x10]));
  });
  await t.step("no spaces, mixed case", () => {
    assertEquals(hex("deadBEEF"), new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
  });
  await t.step("tabs, newlines and a space inside a byte", () => {
    assertEquals(hex("\n  0 1\t02\n  03  \n"), new Uint8Array([0x01, 0x02, 0x03]));
  });
  await t.step("empty and whitespace-only input", () => {
    assertEquals(hex(""), new Uint8Array(0));
    assertEquals(hex(" \n "), new Uint8Array(0));
  });
});

Deno.test("hex() rejects an odd digit count and a non-hex character", async (t) => {
  await t.step("odd count", () => {
    assertThrows(() => hex("00 f"), Error, "Cannot parse hex: 3 digits is an odd count");
  });
  await t.step("non-hex character", () => {
    assertThrows(() => hex("00 fg"), Error, 'Cannot parse hex: "g" at digit 3 is not a hex digit');
  });
  await t.step("0x prefix", () => {
    assertThrows(() => hex("0x01"), Error, '"x" at digit 1');
  });
});

Deno.test("prng() gives the mulberry32 sequence the seeded tests were written against", () => {
  const random = prng(1);
  // Computed once with the copies this module replaced.
  assertEquals(
    [random(), random(), random(), random(), random()],
    [
      0.6270739405881613,
      0.002735721180215478,
      0.5274470399599522,
      0.9810509674716741,
      0.9683778982143849,
    ],
  );
});

Deno.test("prng() repeats for a seed, differs across seeds and stays in [0, 1)", () => {
  const a = prng(9204);
  const b = prng(9204);
  const c = prng(9205);
  let differs = false;
  for (let i = 0; i < 10_000; i++) {
    const x = a();
    assertEquals(b(), x);
    if (c() !== x) differs = true;
    assert(x >= 0 && x < 1, `output ${x} is outside [0, 1)`);
  }
  assert(differs, "seeds 9204 and 9205 gave the same sequence");
});

Deno.test("seededRandom() repeats for a seed and gives integers and bytes in range", () => {
  const a = seededRandom(7);
  const b = seededRandom(7);
  assertEquals(a.seed, 7);
  assertEquals([a(), a.int(10), a.bytes(5)], [b(), b.int(10), b.bytes(5)]);
  assertEquals(seededRandom(1)(), prng(1)(), "the same sequence as prng()");
  for (let i = 0; i < 1000; i++) {
    const n = a.int(3);
    assert(n === 0 || n === 1 || n === 2, `int(3) gave ${n}`);
  }
  assertEquals(a.fill(new Uint8Array(4)).length, 4);
});

Deno.test("testSeed() takes MASQUE_TEST_SEED, then the fallback, then a fresh seed", () => {
  const saved = Deno.env.get(SEED_ENV);
  try {
    Deno.env.delete(SEED_ENV);
    assertEquals(testSeed(42), 42);
    assert(Number.isInteger(testSeed()) && testSeed() >= 0);
    Deno.env.set(SEED_ENV, "0x10");
    assertEquals(testSeed(42), 16);
    Deno.env.set(SEED_ENV, "seven");
    assertThrows(() => testSeed(), Error, 'Cannot use MASQUE_TEST_SEED="seven": not an integer');
  } finally {
    if (saved === undefined) Deno.env.delete(SEED_ENV);
    else Deno.env.set(SEED_ENV, saved);
  }
});

Deno.test("fuzz() names the seed of a failing run, sync or async", async () => {
  const saved = Deno.env.get(SEED_ENV);
  try {
    Deno.env.delete(SEED_ENV);
    assertEquals(fuzz((random) => random.seed, 99), 99);
    const error = assertThrows(
      () =>
        fuzz(() => {
          throw new RangeError("boom");
        }, 1234),
      Error,
      "Fuzz test failed with seed 1234 (replay: MASQUE_TEST_SEED=1234): boom",
    );
    assert(error.cause instanceof RangeError);
    await assertRejects(
      () => fuzz(() => Promise.reject(new Error("later")), 5),
      Error,
      "Fuzz test failed with seed 5 (replay: MASQUE_TEST_SEED=5): later",
    );
  } finally {
    if (saved !== undefined) Deno.env.set(SEED_ENV, saved);
  }
});
