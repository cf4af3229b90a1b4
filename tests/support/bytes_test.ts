import { assert, assertEquals, assertThrows } from "./assert.ts";
import { hex, prng } from "./bytes.ts";

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
