import { assertEquals, assertThrows } from "../../tests/support/assert.ts";
import { fuzz, hex } from "../../tests/support/bytes.ts";
import {
  decodeVarint,
  decodeVarintBigInt,
  encodeVarint,
  encodeVarintInto,
  VARINT_MAX,
  VarintError,
  varintSize,
} from "./varint.ts";

Deno.test("decodeVarint() reads the RFC 9000 A.1 examples", async (t) => {
  await t.step("8 bytes: c2197c5eff14e88c = 151288809941952652", () => {
    assertEquals(decodeVarintBigInt(hex("c2197c5eff14e88c")), 151288809941952652n);
  });
  await t.step("4 bytes: 9d7f3e7d = 494878333", () => {
    assertEquals(decodeVarint(hex("9d7f3e7d")), 494878333);
  });
  await t.step("2 bytes: 7bbd = 15293", () => {
    assertEquals(decodeVarint(hex("7bbd")), 15293);
  });
  await t.step("1 byte: 25 = 37", () => assertEquals(decodeVarint(hex("25")), 37));
  await t.step("2-byte non-minimal: 4025 = 37", () => assertEquals(decodeVarint(hex("4025")), 37));
});

Deno.test("encodeVarint() writes the shortest form and the largest values", async (t) => {
  await t.step("boundaries of each length", () => {
    assertEquals(encodeVarint(63), hex("3f"));
    assertEquals(encodeVarint(64), hex("4040"));
    assertEquals(encodeVarint(16383), hex("7fff"));
    assertEquals(encodeVarint(16384), hex("80004000"));
    assertEquals(encodeVarint(1073741823), hex("bfffffff"));
    assertEquals(encodeVarint(1073741824), hex("c000000040000000"));
  });
  await t.step("2^62-1 as bigint", () => {
    assertEquals(encodeVarint(VARINT_MAX), hex("ffffffffffffffff"));
    assertEquals(decodeVarintBigInt(hex("ffffffffffffffff")), VARINT_MAX);
  });
  await t.step("MAX_SAFE_INTEGER as number", () => {
    const bytes = encodeVarint(Number.MAX_SAFE_INTEGER);
    assertEquals(bytes, hex("c01fffffffffffff"));
    assertEquals(decodeVarint(bytes), Number.MAX_SAFE_INTEGER);
  });
  await t.step("RFC example round trip", () => {
    assertEquals(encodeVarint(151288809941952652n), hex("c2197c5eff14e88c"));
    assertEquals(encodeVarint(494878333), hex("9d7f3e7d"));
  });
});

Deno.test("varint round trips random values", () =>
  fuzz((random) => {
    for (let i = 0; i < 2000; i++) {
      const v = Math.floor(random() * 2 ** (random() * 53));
      const buf = new Uint8Array(10);
      const end = encodeVarintInto(buf, 1, v);
      assertEquals(end - 1, varintSize(v));
      assertEquals(decodeVarint(buf, 1), v);
      assertEquals(decodeVarintBigInt(buf, 1), BigInt(v));
    }
  }));

Deno.test("varint rejects truncation and out-of-range values", () => {
  assertThrows(
    () => decodeVarint(hex("9d7f3e")),
    VarintError,
    "Cannot read varint: need 4 bytes at offset 0, have 3",
  );
  assertThrows(() => decodeVarint(new Uint8Array(0)), VarintError, "need 1 byte");
  assertThrows(() => encodeVarint(-1), VarintError, "not a non-negative safe integer");
  assertThrows(() => encodeVarint(1.5), VarintError, "not a non-negative safe integer");
  assertThrows(() => encodeVarint(VARINT_MAX + 1n), VarintError, "outside 0..2^62-1");
  assertThrows(
    () => encodeVarintInto(new Uint8Array(1), 0, 64),
    VarintError,
    "Cannot write varint: need 2 bytes at offset 0, have 1",
  );
});
