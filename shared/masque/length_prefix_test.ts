import {
  assert,
  assertEquals,
  assertStrictEquals,
  assertThrows,
} from "../../tests/support/assert.ts";
import { hex } from "../../tests/support/bytes.ts";
import {
  encodeLengthPrefixed,
  LengthPrefixDecoder,
  LengthPrefixError,
  MAX_LENGTH_PREFIXED_PACKET,
} from "./length_prefix.ts";

function drain(decoder: LengthPrefixDecoder): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let p = decoder.next(); p !== undefined; p = decoder.next()) out.push(p);
  return out;
}

Deno.test("encodeLengthPrefixed() writes a big-endian length then the packet", async (t) => {
  await t.step("4-byte packet", () => {
    // 0004 = length 4, then the packet
    assertEquals(encodeLengthPrefixed(hex("45000014")), hex("0004 45000014"));
  });
  await t.step("300-byte packet: length 012c", () => {
    const framed = encodeLengthPrefixed(new Uint8Array(300).fill(7));
    assertEquals(framed.subarray(0, 2), hex("012c"));
    assertEquals(framed.length, 302);
  });
  await t.step("65535-byte packet: length ffff", () => {
    const framed = encodeLengthPrefixed(new Uint8Array(MAX_LENGTH_PREFIXED_PACKET));
    assertEquals(framed.subarray(0, 2), hex("ffff"));
  });
  await t.step("too long", () => {
    assertThrows(
      () => encodeLengthPrefixed(new Uint8Array(65536)),
      LengthPrefixError,
      "Cannot encode length-prefixed frame: length 65536 exceeds limit 65535",
    );
  });
  await t.step("empty", () => {
    assertThrows(
      () => encodeLengthPrefixed(new Uint8Array(0)),
      LengthPrefixError,
      "Cannot encode length-prefixed frame: packet is empty",
    );
  });
});

Deno.test("LengthPrefixDecoder reads hand-built frames", async (t) => {
  await t.step("two frames in one chunk, views without copies", () => {
    const decoder = new LengthPrefixDecoder();
    const chunk = hex("0002 aabb 0001 cc");
    decoder.push(chunk);
    const packets = drain(decoder);
    assertEquals(packets, [hex("aabb"), hex("cc")]);
    assertStrictEquals(packets[0].buffer, chunk.buffer);
    assertEquals(decoder.buffered, 0);
  });
  await t.step("partial frame waits for more bytes", () => {
    const decoder = new LengthPrefixDecoder();
    decoder.push(hex("00"));
    assertStrictEquals(decoder.next(), undefined);
    decoder.push(hex("03 aa"));
    assertStrictEquals(decoder.next(), undefined);
    assertEquals(decoder.buffered, 3);
    decoder.push(hex("bbcc 00"));
    assertEquals(decoder.next(), hex("aabbcc"));
    assertStrictEquals(decoder.next(), undefined);
    assertEquals(decoder.buffered, 1);
  });
});

Deno.test("LengthPrefixDecoder rejects a zero length", () => {
  const decoder = new LengthPrefixDecoder();
  decoder.push(hex("0001 aa 0000 0001 bb"));
  assertEquals(decoder.next(), hex("aa"));
  const error = assertThrows(() => decoder.next(), LengthPrefixError);
  assertEquals(
    error.message,
    "Cannot decode length-prefixed frame: length 0 (an empty packet or a desynchronized stream)",
  );
  decoder.push(hex("0001 cc"));
  assertStrictEquals(assertThrows(() => decoder.next(), LengthPrefixError), error);
});

Deno.test("LengthPrefixDecoder round trips random packets at every chunking", () => {
  for (let round = 0; round < 200; round++) {
    const packets = Array.from({ length: 1 + Math.floor(Math.random() * 6) }, () => {
      const size = Math.random() < 0.05 ? 65535 : 1 + Math.floor(Math.random() * 1500);
      const p = new Uint8Array(size);
      crypto.getRandomValues(p.subarray(0, Math.min(size, 65536)));
      return p;
    });
    const stream = new Uint8Array(packets.reduce((n, p) => n + p.length + 2, 0));
    let offset = 0;
    for (const p of packets) {
      stream.set(encodeLengthPrefixed(p), offset);
      offset += p.length + 2;
    }
    const decoder = new LengthPrefixDecoder();
    const got: Uint8Array[] = [];
    for (let i = 0; i < stream.length;) {
      const size = 1 + Math.floor(Math.random() * (round % 2 === 0 ? 7 : 3000));
      decoder.push(stream.slice(i, i + size));
      i += size;
      got.push(...drain(decoder));
    }
    assertEquals(got, packets);
    assertEquals(decoder.buffered, 0);
  }
});

Deno.test("LengthPrefixDecoder on random input throws only LengthPrefixError", () => {
  for (let i = 0; i < 3000; i++) {
    const input = new Uint8Array(Math.floor(Math.random() * 64));
    crypto.getRandomValues(input);
    // Small lengths make complete frames likely.
    if (input.length > 0 && Math.random() < 0.7) input[0] = 0;
    const decoder = new LengthPrefixDecoder();
    let returned = 0;
    try {
      for (let j = 0; j < input.length; j += 5) {
        decoder.push(input.slice(j, j + 5));
        for (const p of drain(decoder)) returned += p.length + 2;
      }
      assertEquals(returned + decoder.buffered, input.length);
    } catch (error) {
      assert(error instanceof LengthPrefixError, `unexpected ${error}`);
    }
  }
});

Deno.test("LengthPrefixDecoder reassembles a 65535-byte packet from 1-byte chunks", () => {
  const packet = new Uint8Array(65535);
  crypto.getRandomValues(packet);
  const stream = encodeLengthPrefixed(packet);
  const decoder = new LengthPrefixDecoder();
  const started = performance.now();
  for (let i = 0; i < stream.length - 1; i++) {
    decoder.push(stream.subarray(i, i + 1));
    assertStrictEquals(decoder.next(), undefined);
  }
  decoder.push(stream.subarray(stream.length - 1));
  assertEquals(decoder.next(), packet);
  assertEquals(decoder.buffered, 0);
  // Linear work: quadratic chunk handling took seconds here.
  assert(performance.now() - started < 2000);
});
