import { assert, assertEquals, assertThrows } from "../../tests/support/assert.ts";
import { fuzz, hex } from "../../tests/support/bytes.ts";
import {
  HUFFMAN_EOS,
  huffmanCode,
  huffmanDecode,
  huffmanDecodedLength,
  huffmanEncode,
  huffmanEncodedLength,
  HuffmanError,
} from "./huffman.ts";

const ascii = (s: string) => new TextEncoder().encode(s);

/** RFC 7541 C.4.1-C.4.3 (requests) and C.6.1-C.6.3 (responses) Huffman strings. */
const RFC_EXAMPLES: ReadonlyArray<readonly [string, string]> = [
  ["www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"], // C.4.1 :authority
  ["no-cache", "a8eb 1064 9cbf"], // C.4.2 cache-control
  ["custom-key", "25a8 49e9 5ba9 7d7f"], // C.4.3 name
  ["custom-value", "25a8 49e9 5bb8 e8b4 bf"], // C.4.3 value
  ["302", "6402"], // C.6.1 :status
  ["private", "aec3 771a 4b"], // C.6.1 cache-control
  ["Mon, 21 Oct 2013 20:13:21 GMT", "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff"], // C.6.1 date
  ["https://www.example.com", "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"], // C.6.1 location
  ["307", "640e ff"], // C.6.2 :status
  ["gzip", "9bd9 ab"], // C.6.3 content-encoding
];

/**
 * A slow reference decoder that matches codes bit by bit against
 * `huffmanCode()`, to check the table-driven decoder against.
 */
function referenceDecode(bytes: Uint8Array): number[] | string {
  const byCode = new Map<string, number>();
  for (let s = 0; s <= HUFFMAN_EOS; s++) {
    const { code, length } = huffmanCode(s);
    byCode.set(`${length}:${code}`, s);
  }
  const out: number[] = [];
  let code = 0;
  let length = 0;
  let allOnes = true;
  for (const byte of bytes) {
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >>> bit) & 1;
      code = code * 2 + b;
      length++;
      allOnes &&= b === 1;
      const symbol = byCode.get(`${length}:${code}`);
      if (symbol === HUFFMAN_EOS) return "EOS symbol inside the string";
      if (symbol !== undefined) {
        out.push(symbol);
        code = 0;
        length = 0;
        allOnes = true;
      }
    }
  }
  if (length > 7 && allOnes) return "padding longer than 7 bits";
  if (!allOnes) return "padding not all ones";
  return out;
}

Deno.test("huffmanCode() table is the complete canonical code of RFC 7541 Appendix B", async (t) => {
  await t.step("lengths 5..30 and a Kraft sum of exactly 1", () => {
    let sum = 0; // in units of 2^-30, exact in a double
    for (let s = 0; s <= HUFFMAN_EOS; s++) {
      const { code, length } = huffmanCode(s);
      assert(length >= 5 && length <= 30, `symbol ${s} has length ${length}`);
      assert(code < 2 ** length, `symbol ${s} code does not fit its length`);
      sum += 2 ** (30 - length);
    }
    assertEquals(sum, 2 ** 30);
  });
  await t.step("codes are canonical: consecutive in (length, symbol) order", () => {
    const order = Array.from({ length: HUFFMAN_EOS + 1 }, (_, s) => s).sort((a, b) =>
      huffmanCode(a).length - huffmanCode(b).length || a - b
    );
    let expected = 0;
    let previous = huffmanCode(order[0]).length;
    for (const [k, s] of order.entries()) {
      const { code, length } = huffmanCode(s);
      if (k > 0) expected = (expected + 1) * 2 ** (length - previous);
      previous = length;
      assertEquals(code, expected, `symbol ${s}`);
    }
  });
  await t.step("spot checks against the printed table", () => {
    assertEquals(huffmanCode(0x30), { code: 0x0, length: 5 }); // '0'
    assertEquals(huffmanCode(0x20), { code: 0x14, length: 6 }); // ' '
    assertEquals(huffmanCode(0x3a), { code: 0x5c, length: 7 }); // ':'
    assertEquals(huffmanCode(0x7e), { code: 0x1ffd, length: 13 }); // '~'
    assertEquals(huffmanCode(0x0a), { code: 0x3ffffffc, length: 30 }); // LF
    assertEquals(huffmanCode(0xff), { code: 0x3ffffee, length: 26 });
    assertEquals(huffmanCode(HUFFMAN_EOS), { code: 0x3fffffff, length: 30 });
  });
});

Deno.test("huffmanEncode() produces the RFC 7541 C.4 and C.6 strings", async (t) => {
  for (const [text, encoded] of RFC_EXAMPLES) {
    await t.step(`${JSON.stringify(text)} -> ${encoded}`, () => {
      assertEquals(huffmanEncode(ascii(text)), hex(encoded));
      assertEquals(huffmanEncodedLength(ascii(text)), hex(encoded).length);
    });
  }
  await t.step("the empty string encodes to nothing", () => {
    assertEquals(huffmanEncode(new Uint8Array(0)), new Uint8Array(0));
  });
  await t.step("a 30-bit code next to short ones: '0' LF '0' -> 07 ff ff ff 80", () => {
    // 00000 | 111111111111111111111111111100 | 00000 (40 bits, no padding)
    assertEquals(huffmanEncode(hex("300a30")), hex("07ffffff80"));
  });
});

Deno.test("huffmanDecode() decodes the RFC 7541 C.4 and C.6 strings", async (t) => {
  for (const [text, encoded] of RFC_EXAMPLES) {
    await t.step(`${encoded} -> ${JSON.stringify(text)}`, () => {
      assertEquals(huffmanDecode(hex(encoded)), ascii(text));
      assertEquals(huffmanDecodedLength(hex(encoded)), text.length);
    });
  }
  await t.step("the empty string", () => assertEquals(huffmanDecode(new Uint8Array(0)).length, 0));
  await t.step("07 ff ff ff 80 -> '0' LF '0'", () => {
    assertEquals(huffmanDecode(hex("07ffffff80")), hex("300a30"));
  });
});

Deno.test("huffmanDecode() round-trips every byte value", async (t) => {
  await t.step("each byte alone", () => {
    for (let b = 0; b < 256; b++) {
      const encoded = huffmanEncode(Uint8Array.of(b));
      assertEquals(encoded.length, Math.ceil(huffmanCode(b).length / 8));
      assertEquals(huffmanDecode(encoded), Uint8Array.of(b), `byte ${b}`);
    }
  });
  await t.step("all 256 bytes in one string, forwards and backwards", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    assertEquals(huffmanDecode(huffmanEncode(all)), all);
    all.reverse();
    assertEquals(huffmanDecode(huffmanEncode(all)), all);
  });
  await t.step("2000 random strings of 0..64 bytes", () =>
    fuzz((random) => {
      for (let i = 0; i < 2000; i++) {
        const input = Uint8Array.from(
          { length: Math.floor(random() * 65) },
          // Mostly printable ASCII, sometimes any byte.
          () => random() < 0.8 ? 0x20 + Math.floor(random() * 95) : Math.floor(random() * 256),
        );
        const encoded = huffmanEncode(input);
        assertEquals(encoded.length, huffmanEncodedLength(input));
        assertEquals(huffmanDecode(encoded), input);
      }
    }, 7541));
});

Deno.test("huffmanDecode() rejects malformed strings (RFC 7541 §5.2)", async (t) => {
  await t.step("EOS inside the string: 30 one bits then '0'", () => {
    // 111111111111111111111111111111 | 00000 | pad 1
    assertThrows(
      () => huffmanDecode(hex("ffffffff 03")),
      HuffmanError,
      "Cannot decode Huffman string: EOS symbol inside the string",
    );
  });
  await t.step("EOS as the whole string (32 one bits)", () => {
    assertThrows(
      () => huffmanDecode(hex("ffffffff")),
      HuffmanError,
      "Cannot decode Huffman string: EOS symbol inside the string",
    );
  });
  await t.step("padding longer than 7 bits: a lone ff", () => {
    assertThrows(
      () => huffmanDecode(hex("ff")),
      HuffmanError,
      "Cannot decode Huffman string: padding longer than 7 bits",
    );
  });
  await t.step("padding longer than 7 bits: '0' then 11 one bits", () => {
    // 00000 | 111 11111111
    assertThrows(
      () => huffmanDecode(hex("07ff")),
      HuffmanError,
      "Cannot decode Huffman string: padding longer than 7 bits",
    );
  });
  await t.step("padding not all ones: '0' then 110", () => {
    // 00000 | 110
    assertThrows(
      () => huffmanDecode(hex("06")),
      HuffmanError,
      "Cannot decode Huffman string: padding not all ones",
    );
  });
  await t.step("padding not all ones: a truncated 10-bit code 11111110", () => {
    assertThrows(
      () => huffmanDecode(hex("fe")),
      HuffmanError,
      "Cannot decode Huffman string: padding not all ones",
    );
  });
  await t.step("a valid string with its last byte cut off", () => {
    // "www.example.com" ends ... f4 ff; without ff the 'm' code is cut.
    assertThrows(
      () => huffmanDecode(hex("f1e3 c2e5 f23a 6ba0 ab90 f4")),
      HuffmanError,
      "Cannot decode Huffman string: padding",
    );
  });
});

Deno.test("huffmanDecode() enforces maxLength", async (t) => {
  const encoded = hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"); // "www.example.com", 15 bytes
  await t.step("a limit equal to the decoded length passes", () => {
    assertEquals(huffmanDecode(encoded, 15), ascii("www.example.com"));
    assertEquals(huffmanDecodedLength(encoded, 15), 15);
  });
  await t.step("one byte less fails", () => {
    assertThrows(
      () => huffmanDecode(encoded, 14),
      HuffmanError,
      "Cannot decode Huffman string: decoded length exceeds limit 14",
    );
    assertThrows(() => huffmanDecodedLength(encoded, 14), HuffmanError, "exceeds limit 14");
  });
  await t.step("a limit of 0 accepts only the empty string", () => {
    assertEquals(huffmanDecode(new Uint8Array(0), 0).length, 0);
    assertThrows(() => huffmanDecode(hex("07"), 0), HuffmanError, "exceeds limit 0");
  });
});

Deno.test("huffmanDecode() agrees with a bit-by-bit reference on random input", () =>
  fuzz((random) => {
    let decoded = 0;
    for (let i = 0; i < 3000; i++) {
      let input: Uint8Array;
      if (i % 2 === 0) {
        input = Uint8Array.from({ length: Math.floor(random() * 12) }, () => random() * 256);
      } else {
        // Mutate a valid encoding: flip one bit, or cut or extend it.
        const source = Uint8Array.from(
          { length: 1 + Math.floor(random() * 20) },
          () => random() * 256,
        );
        const valid = huffmanEncode(source);
        const choice = Math.floor(random() * 3);
        if (choice === 0) {
          input = valid.slice();
          input[Math.floor(random() * input.length)] ^= 1 << Math.floor(random() * 8);
        } else if (choice === 1) {
          input = valid.subarray(0, Math.floor(random() * valid.length));
        } else {
          input = Uint8Array.of(...valid, Math.floor(random() * 256));
        }
      }
      const expected = referenceDecode(input);
      let actual: number[] | string;
      try {
        actual = Array.from(huffmanDecode(input));
        decoded++;
      } catch (error) {
        if (!(error instanceof HuffmanError)) throw error;
        actual = error.reason;
      }
      assertEquals(actual, expected, `input ${Array.from(input)}`);
      // A string that decodes has exactly one valid encoding.
      if (typeof actual !== "string") assertEquals(huffmanEncode(Uint8Array.from(actual)), input);
    }
    assert(decoded > 100, `only ${decoded} inputs decoded`);
  }, 9204));
