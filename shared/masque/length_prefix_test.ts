import {
  assert,
  assertEquals,
  assertStrictEquals,
  assertThrows,
} from "../../tests/support/assert.ts";
import { fuzz, hex } from "../../tests/support/bytes.ts";
import { ByteBudget } from "../h3/byte_budget.ts";
import { H3Error } from "../errors.ts";
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
  fuzz((random) => {
    for (let round = 0; round < 200; round++) {
      const packets = Array.from({ length: 1 + random.int(6) }, () => {
        const size = random() < 0.05 ? 65535 : 1 + random.int(1500);
        return random.bytes(size);
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
        const size = 1 + random.int(round % 2 === 0 ? 7 : 3000);
        decoder.push(stream.slice(i, i + size));
        i += size;
        got.push(...drain(decoder).map((p) => p.slice()));
      }
      assertEquals(got, packets);
      assertEquals(decoder.buffered, 0);
    }
  });
});

Deno.test("LengthPrefixDecoder on random input throws only LengthPrefixError", () => {
  fuzz((random) => {
    for (let i = 0; i < 3000; i++) {
      const input = random.bytes(random.int(64));
      // Small lengths make complete frames likely.
      if (input.length > 0 && random() < 0.7) input[0] = 0;
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
});

Deno.test("LengthPrefixDecoder reassembles a 65535-byte packet from 1-byte chunks in storage of its size", () => {
  const packet = new Uint8Array(65535);
  crypto.getRandomValues(packet);
  const stream = encodeLengthPrefixed(packet);
  const decoder = new LengthPrefixDecoder();
  for (let i = 0; i < stream.length - 1; i++) {
    decoder.push(stream.subarray(i, i + 1));
    assertStrictEquals(decoder.next(), undefined);
    // Storage grows with what trickles in, never past the frame.
    assert(decoder.retainedBytes <= stream.length, `${decoder.retainedBytes} bytes held`);
  }
  decoder.push(stream.subarray(stream.length - 1));
  assertEquals(decoder.next(), packet);
  assertEquals(decoder.buffered, 0);
});

Deno.test("LengthPrefixDecoder keeps a copy of a partial frame, not the read buffer it came in", () => {
  // A 64 KiB read whose last 3 bytes start a frame: only those are kept.
  const read = new Uint8Array(65536);
  read.set(encodeLengthPrefixed(new Uint8Array(65531).fill(1)), 0);
  read.set(hex("0010 aa"), 65533);
  const decoder = new LengthPrefixDecoder();
  decoder.push(read);
  assertEquals(decoder.next()?.length, 65531);
  assertStrictEquals(decoder.next(), undefined);
  assertEquals(decoder.buffered, 3);
  assert(decoder.retainedBytes < 64, `${decoder.retainedBytes} bytes retained`);
  read.fill(0); // the read buffer is reused: the decoder's copy is unaffected
  decoder.push(new Uint8Array(15).fill(0xbb));
  assertEquals(decoder.next(), hex("aa" + "bb".repeat(15)));
});

Deno.test("LengthPrefixDecoder.nextFrame() returns the length field with the packet", () => {
  const decoder = new LengthPrefixDecoder();
  decoder.push(hex("0002 aabb"));
  assertEquals(decoder.nextFrame(), hex("0002 aabb"));
});

Deno.test("LengthPrefixDecoder reserves a partial frame in the budget and fails past it", () => {
  const budget = new ByteBudget(1000);
  const decoder = new LengthPrefixDecoder({ budget });
  decoder.push(hex("0100 aabb")); // a 256-byte packet, 2 of its bytes here
  assertStrictEquals(decoder.next(), undefined);
  assert(budget.used >= 4, `${budget.used} reserved`);
  decoder.push(new Uint8Array(254));
  assertEquals(decoder.next()?.length, 256);
  decoder.clear();
  assertEquals(budget.used, 0);
  const small = new LengthPrefixDecoder({ budget: new ByteBudget(100) });
  small.push(new Uint8Array([0xff, 0xff, ...new Uint8Array(200)]));
  const error = assertThrows(() => small.next(), H3Error);
  assert(error.message.startsWith("Cannot buffer"), error.message);
});
