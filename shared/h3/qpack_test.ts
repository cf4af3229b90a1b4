import { assert, assertEquals, assertThrows } from "../../tests/support/assert.ts";
import { fuzz, hex } from "../../tests/support/bytes.ts";
import {
  H3_EXCESSIVE_LOAD,
  H3Error,
  QPACK_DECODER_STREAM_ERROR,
  QPACK_DECOMPRESSION_FAILED,
  QPACK_ENCODER_STREAM_ERROR,
} from "../errors.ts";
import { huffmanEncode } from "./huffman.ts";
import {
  decodeFieldSection,
  DEFAULT_MAX_FIELD_SECTION_SIZE,
  encodeFieldSection,
  fieldSectionSize,
  type HeaderField,
  QPACK_STATIC_TABLE,
  QpackDecoderStreamReader,
  QpackEncoderStreamReader,
} from "./qpack.ts";

const ascii = (s: string) => new TextEncoder().encode(s);
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
};

/** Expects a QPACK_DECOMPRESSION_FAILED connection error with exactly `message`. */
function assertDecompressionFailed(bytes: Uint8Array, message: string): void {
  const error = assertThrows(() => decodeFieldSection(bytes), H3Error);
  assertEquals(error.message, message);
  assertEquals(error.code, QPACK_DECOMPRESSION_FAILED);
  assertEquals(error.connection, true);
}

/** Expects an H3_EXCESSIVE_LOAD stream error with exactly `message`. */
function assertTooLarge(bytes: Uint8Array, limit: number | undefined, message: string): void {
  const error = assertThrows(
    () => decodeFieldSection(bytes, { maxFieldSectionSize: limit }),
    H3Error,
  );
  assertEquals(error.message, message);
  assertEquals(error.code, H3_EXCESSIVE_LOAD);
  assertEquals(error.connection, false);
}

const DYNAMIC = "Cannot decode field section: dynamic table reference with a zero-capacity table";

// What libnghttp3 0.8.0's QPACK encoder (dynamic table capacity 0) wrote for
// a GET and for an RFC 9484 CONNECT-IP request, taken apart field by field.
const NGHTTP3_GET_FIELDS: HeaderField[] = [
  [":method", "GET"],
  [":scheme", "https"],
  [":authority", "example.com:4433"],
  [":path", "/"],
  ["user-agent", "nghttp3/ngtcp2 client"],
];
const NGHTTP3_GET = hex(
  "00" + // Required Insert Count 0
    "00" + // S=0, Delta Base 0
    "d1" + // 11 index 17 (6-bit prefix): :method GET
    "d7" + // 11 index 23: :scheme https
    "50" + // 0101 name index 0 (4-bit prefix): :authority
    "8c" + "2f91d35d055c87a6e34d32cf" + // H=1 length 12: Huffman "example.com:4433"
    "c1" + // 11 index 1: :path /
    "5f50" + // 0101 name index 15 + 0x50 = 95: user-agent
    "8f" + "aa69d29ad962a9924ac4a128316a4f", // H=1 length 15: "nghttp3/ngtcp2 client"
);
const NGHTTP3_CONNECT_IP_FIELDS: HeaderField[] = [
  [":method", "CONNECT"],
  [":protocol", "connect-ip"],
  [":scheme", "https"],
  [":authority", "relay.example:443"],
  [":path", "/.well-known/masque/ip/*/*/"],
  ["capsule-protocol", "?1"],
];
const NGHTTP3_CONNECT_IP = hex(
  "0000" + // Required Insert Count 0, Delta Base 0
    "cf" + // 11 index 15: :method CONNECT
    "2f00" + // 0010 1 + 3-bit length 7 + 0 = 7: Huffman literal name
    "b95d8749c87a3f" + // ":protocol"
    "87" + "21eaa8a44ac6af" + // H=1 length 7: "connect-ip"
    "d7" + // 11 index 23: :scheme https
    "50" + "8d" + "b0b40fd2e5f23a6ba0b71a699f" + // :authority, H=1 length 13: "relay.example:443"
    "51" + "95" + "617f05a285bad47f153148d1dad2b06ad8f963e58f" + // :path, H=1 length 21
    "2f04" + "20eb45b4156aec3a4e43d1" + // Huffman name, length 7 + 4 = 11: "capsule-protocol"
    "02" + "3f31", // H=0 length 2: "?1"
);

Deno.test("QPACK_STATIC_TABLE holds the 99 entries of RFC 9204 Appendix A", async (t) => {
  await t.step("size and frozen", () => {
    assertEquals(QPACK_STATIC_TABLE.length, 99);
    assert(Object.isFrozen(QPACK_STATIC_TABLE));
    assert(QPACK_STATIC_TABLE.every((field) => Object.isFrozen(field)));
  });
  await t.step("spot checks at the indices the RFC gives", () => {
    assertEquals(QPACK_STATIC_TABLE[0], [":authority", ""]);
    assertEquals(QPACK_STATIC_TABLE[1], [":path", "/"]);
    assertEquals(QPACK_STATIC_TABLE[15], [":method", "CONNECT"]);
    assertEquals(QPACK_STATIC_TABLE[17], [":method", "GET"]);
    assertEquals(QPACK_STATIC_TABLE[23], [":scheme", "https"]);
    assertEquals(QPACK_STATIC_TABLE[25], [":status", "200"]);
    assertEquals(QPACK_STATIC_TABLE[52], ["content-type", "text/html; charset=utf-8"]);
    assertEquals(QPACK_STATIC_TABLE[63], [":status", "100"]);
    assertEquals(QPACK_STATIC_TABLE[85], [
      "content-security-policy",
      "script-src 'none'; object-src 'none'; base-uri 'none'",
    ]);
    assertEquals(QPACK_STATIC_TABLE[95], ["user-agent", ""]);
    assertEquals(QPACK_STATIC_TABLE[98], ["x-frame-options", "sameorigin"]);
  });
  await t.step("names are lowercase and no entry repeats", () => {
    const seen = new Set<string>();
    for (const [name, value] of QPACK_STATIC_TABLE) {
      assertEquals(name, name.toLowerCase());
      assert(!seen.has(`${name}: ${value}`), `${name}: ${value} repeats`);
      seen.add(`${name}: ${value}`);
    }
  });
});

Deno.test("decodeFieldSection() decodes the RFC 9204 B.1 field section", () => {
  const bytes = hex(
    "00" + // Required Insert Count 0
      "00" + // S=0, Delta Base 0
      "51" + // 01 N=0 T=1, name index 1: :path
      "0b" + // H=0, length 11
      "2f696e6465782e68746d6c", // "/index.html"
  );
  assertEquals(decodeFieldSection(bytes), [[":path", "/index.html"]]);
});

Deno.test("decodeFieldSection() decodes each field line form", async (t) => {
  await t.step("indexed static 0xc0 | 17: :method GET", () => {
    assertEquals(decodeFieldSection(hex("0000 d1")), [[":method", "GET"]]);
  });
  await t.step("indexed static with a 2-byte index: ff 23 = 63 + 35 = 98", () => {
    assertEquals(decodeFieldSection(hex("0000 ff23")), [["x-frame-options", "sameorigin"]]);
  });
  await t.step("name reference with a Huffman value: :authority www.example.com", () => {
    // 50 = name index 0; 8c = H=1 length 12; RFC 7541 C.4.1 Huffman bytes.
    assertEquals(decodeFieldSection(hex("0000 50 8c f1e3c2e5f23a6ba0ab90f4ff")), [
      [":authority", "www.example.com"],
    ]);
  });
  await t.step("literal name and raw value: custom-key: custom-value", () => {
    // 27 03 = 001 N=0 H=0, length 7 + 3 = 10; 0c = H=0 length 12.
    assertEquals(
      decodeFieldSection(hex("0000 2703 637573746f6d2d6b6579 0c 637573746f6d2d76616c7565")),
      [["custom-key", "custom-value"]],
    );
  });
  await t.step("literal name and value, both Huffman (RFC 7541 C.4.3 bytes)", () => {
    // 2f 01 = H=1, length 7 + 1 = 8; 89 = H=1 length 9.
    assertEquals(
      decodeFieldSection(hex("0000 2f01 25a849e95ba97d7f 89 25a849e95bb8e8b4bf")),
      [["custom-key", "custom-value"]],
    );
  });
  await t.step("empty name and empty value", () => {
    assertEquals(decodeFieldSection(hex("0000 20 00")), [["", ""]]);
  });
  await t.step("a prefix only is an empty section", () => {
    assertEquals(decodeFieldSection(hex("0000")), []);
  });
  await t.step("a non-zero Delta Base is ignored when nothing is referenced", () => {
    assertEquals(decodeFieldSection(hex("00 85 d1")), [[":method", "GET"]]);
  });
  await t.step("UTF-8 values decode; invalid UTF-8 becomes U+FFFD", () => {
    assertEquals(decodeFieldSection(hex("0000 5f50 03 e282ac")), [["user-agent", "€"]]);
    assertEquals(decodeFieldSection(hex("0000 5f50 01 ff")), [["user-agent", "\ufffd"]]);
  });
});

Deno.test("decodeFieldSection() reads what nghttp3 sends", async (t) => {
  await t.step("GET with Huffman :authority and user-agent", () => {
    assertEquals(decodeFieldSection(NGHTTP3_GET), NGHTTP3_GET_FIELDS);
  });
  await t.step("extended CONNECT for connect-ip (RFC 9484 §3)", () => {
    assertEquals(decodeFieldSection(NGHTTP3_CONNECT_IP), NGHTTP3_CONNECT_IP_FIELDS);
  });
});

Deno.test("encodeFieldSection() writes the same bytes as nghttp3", async (t) => {
  await t.step("GET", () => assertEquals(encodeFieldSection(NGHTTP3_GET_FIELDS), NGHTTP3_GET));
  await t.step("extended CONNECT for connect-ip", () => {
    assertEquals(encodeFieldSection(NGHTTP3_CONNECT_IP_FIELDS), NGHTTP3_CONNECT_IP);
  });
});

Deno.test("encodeFieldSection() picks the shortest static form", async (t) => {
  await t.step("exact match -> Indexed Field Line, 1 and 2 bytes", () => {
    assertEquals(encodeFieldSection([[":method", "GET"]]), hex("0000 d1"));
    assertEquals(encodeFieldSection([[":status", "100"]]), hex("0000 ff00")); // 63 + 0
    assertEquals(encodeFieldSection([["x-frame-options", "sameorigin"]]), hex("0000 ff23"));
  });
  await t.step("name match -> Literal With Name Reference to the first entry", () => {
    // :method is at 15..21; the reference uses 15. "PATCH" in Huffman is not
    // shorter (7+6+7+7+7 = 34 bits = 5 bytes), so it goes raw.
    assertEquals(encodeFieldSection([[":method", "PATCH"]]), hex("0000 5f00 05 5041544348"));
    // :path at index 1; "/index.html" Huffman: 8 bytes < 11.
    assertEquals(
      encodeFieldSection([[":path", "/index.html"]]),
      concat(hex("0000 51 88"), huffmanEncode(ascii("/index.html"))),
    );
  });
  await t.step("no match -> Literal With Literal Name", () => {
    assertEquals(
      encodeFieldSection([["custom-key", "custom-value"]]),
      hex("0000 2f01 25a849e95ba97d7f 89 25a849e95bb8e8b4bf"),
    );
  });
  await t.step("huffman: false writes raw strings (RFC 9204 B.1 bytes)", () => {
    assertEquals(
      encodeFieldSection([[":path", "/index.html"]], { huffman: false }),
      hex("0000 510b 2f696e6465782e68746d6c"),
    );
    assertEquals(
      encodeFieldSection([["custom-key", "custom-value"]], { huffman: false }),
      hex("0000 2703 637573746f6d2d6b6579 0c 637573746f6d2d76616c7565"),
    );
  });
  await t.step("a 200-byte value takes a 2-byte length: 7f 49", () => {
    const value = "\u00ff".repeat(100); // 200 UTF-8 bytes, Huffman is longer
    const bytes = encodeFieldSection([["x-long", value]]);
    // H=0, 7f 49 = 127 + 73 = 200, right before the value.
    assertEquals(bytes.subarray(bytes.length - 202, bytes.length - 200), hex("7f49"));
    assertEquals(decodeFieldSection(bytes), [["x-long", value]]);
  });
  await t.step("every static entry is one indexed line that decodes to itself", () => {
    for (const [index, field] of QPACK_STATIC_TABLE.entries()) {
      const bytes = encodeFieldSection([field]);
      assertEquals(bytes.length, index < 63 ? 3 : 4, `index ${index}`);
      assertEquals(decodeFieldSection(bytes), [field]);
    }
  });
});

Deno.test("encodeFieldSection() and decodeFieldSection() round-trip random header lists", (t) =>
  fuzz(async (random) => {
    const staticNames = [...new Set(QPACK_STATIC_TABLE.map(([name]) => name))];
    const text = (length: number, alphabet: string) => {
      const symbols = Array.from(alphabet); // code points, so "😀" stays whole
      return Array.from({ length }, () => symbols[Math.floor(random() * symbols.length)]).join("");
    };
    const printable = Array.from({ length: 95 }, (_, i) => String.fromCharCode(0x20 + i)).join("");
    const randomFields = (): HeaderField[] =>
      Array.from({ length: Math.floor(random() * 12) }, (): HeaderField => {
        const r = random();
        if (r < 0.25) return QPACK_STATIC_TABLE[Math.floor(random() * 99)];
        const name = r < 0.6
          ? staticNames[Math.floor(random() * staticNames.length)]
          : text(1 + Math.floor(random() * 20), "abcdefghijklmnopqrstuvwxyz0123456789-_");
        const value = random() < 0.9
          ? text(Math.floor(random() * 80), printable)
          : text(Math.floor(random() * 10), "äé€😀\u0000\t");
        return [name, value];
      });
    for (const huffman of [true, false]) {
      await t.step(`huffman: ${huffman}, 1000 lists`, () => {
        for (let i = 0; i < 1000; i++) {
          const fields = randomFields();
          const bytes = encodeFieldSection(fields, { huffman });
          assertEquals(decodeFieldSection(bytes), fields);
        }
      });
    }
  }, 9204));

Deno.test("fieldSectionSize() counts name + value + 32 per field (RFC 9114 §4.2.2)", () => {
  assertEquals(fieldSectionSize([]), 0);
  assertEquals(fieldSectionSize([[":method", "GET"]]), 7 + 3 + 32);
  assertEquals(fieldSectionSize([["x", "€"]]), 1 + 3 + 32); // UTF-8 bytes
  assertEquals(fieldSectionSize(NGHTTP3_GET_FIELDS), 42 + 44 + 58 + 38 + 63);
});

Deno.test("decodeFieldSection() rejects dynamic table references", async (t) => {
  await t.step("Required Insert Count 1", () => assertDecompressionFailed(hex("0100 d1"), DYNAMIC));
  await t.step("Required Insert Count with a multi-byte encoding", () => {
    assertDecompressionFailed(hex("ff01 00"), DYNAMIC);
  });
  await t.step("Indexed Field Line with T=0: 81", () => {
    assertDecompressionFailed(hex("0000 81"), DYNAMIC);
  });
  await t.step("Literal With Name Reference with T=0: 41", () => {
    assertDecompressionFailed(hex("0000 41 00"), DYNAMIC);
  });
  await t.step("Indexed Field Line With Post-Base Index: 10", () => {
    assertDecompressionFailed(hex("0000 10"), DYNAMIC);
  });
  await t.step("Literal With Post-Base Name Reference: 00 00", () => {
    assertDecompressionFailed(hex("0000 0000"), DYNAMIC);
  });
  await t.step("a dynamic reference after valid lines", () => {
    assertDecompressionFailed(hex("0000 d1 d7 80"), DYNAMIC);
  });
});

Deno.test("decodeFieldSection() rejects static indices past the table", async (t) => {
  await t.step("indexed 63 + 36 = 99", () => {
    assertDecompressionFailed(
      hex("0000 ff24"),
      "Cannot decode field section: static table index 99 out of range (99 entries)",
    );
  });
  await t.step("name reference 15 + 84 = 99", () => {
    assertDecompressionFailed(
      hex("0000 5f54 00"),
      "Cannot decode field section: static table index 99 out of range (99 entries)",
    );
  });
  await t.step("the largest accepted integer, 2^32 - 1", () => {
    // ff = prefix 63, then 2^32 - 1 - 63 in 7-bit groups, least significant first.
    const value = 2 ** 32 - 1 - 63;
    const bytes = [0x00, 0x00, 0xff];
    let rest = value;
    while (rest >= 0x80) {
      bytes.push((rest % 0x80) | 0x80);
      rest = Math.floor(rest / 0x80);
    }
    bytes.push(rest);
    assertDecompressionFailed(
      Uint8Array.from(bytes),
      "Cannot decode field section: static table index 4294967295 out of range (99 entries)",
    );
  });
});

Deno.test("decodeFieldSection() rejects truncated input", async (t) => {
  const cases: Array<[string, string, string]> = [
    ["empty input", "", "truncated Required Insert Count at offset 0"],
    ["no Delta Base", "00", "truncated Delta Base at offset 1"],
    [
      "Required Insert Count cut in its continuation",
      "ff",
      "truncated Required Insert Count at offset 0",
    ],
    ["static index cut", "0000 ff", "truncated static index at offset 2"],
    ["name index cut", "0000 5f", "truncated name index at offset 2"],
    ["value length missing", "0000 51", "truncated value length at offset 3"],
    ["value length cut", "0000 51 7f", "truncated value length at offset 3"],
    ["value cut", "0000 51 0b 2f69", "value at offset 3 has length 11 but 2 bytes remain"],
    ["literal name length cut", "0000 27", "truncated name length at offset 2"],
    ["literal name cut", "0000 23 6162", "name at offset 2 has length 3 but 2 bytes remain"],
    ["value missing after a literal name", "0000 21 61", "truncated value length at offset 4"],
    ["Huffman value cut", "0000 50 8c f1e3", "value at offset 3 has length 12 but 2 bytes remain"],
  ];
  for (const [name, bytes, message] of cases) {
    await t.step(name, () => {
      assertDecompressionFailed(hex(bytes), `Cannot decode field section: ${message}`);
    });
  }
});

Deno.test("decodeFieldSection() rejects integers above 2^32 - 1", async (t) => {
  await t.step("static index 63 + 2^32 - 1 + ...: ff ff ff ff ff 0f", () => {
    assertDecompressionFailed(
      hex("0000 ffffffffff0f"),
      "Cannot decode field section: static index at offset 2 exceeds 4294967295",
    );
  });
  await t.step("a value length of 2^35 - 1", () => {
    assertDecompressionFailed(
      hex("0000 51 7fffffffff7f"),
      "Cannot decode field section: value length at offset 3 exceeds 4294967295",
    );
  });
  await t.step("zero continuation bytes past 35 bits: ff 80 80 80 80 80 00", () => {
    assertDecompressionFailed(
      hex("ff8080808080 00"),
      "Cannot decode field section: Required Insert Count at offset 0 exceeds 4294967295",
    );
  });
  await t.step("a length of exactly 2^32 - 1 is parsed, then found truncated", () => {
    // 0x7f + (2^32 - 1 - 127) in 7-bit groups.
    assertDecompressionFailed(
      hex("0000 51 7f 80ffffff0f"),
      "Cannot decode field section: value at offset 3 has length 4294967295 but 0 bytes remain",
    );
  });
});

Deno.test("decodeFieldSection() rejects malformed Huffman strings", async (t) => {
  await t.step("value padding longer than 7 bits: 81 ff", () => {
    assertDecompressionFailed(
      hex("0000 51 81 ff"),
      "Cannot decode field section: invalid Huffman value at offset 3: padding longer than 7 bits",
    );
  });
  await t.step("name padding not all ones: 29 06", () => {
    assertDecompressionFailed(
      hex("0000 29 06 00"),
      "Cannot decode field section: invalid Huffman name at offset 2: padding not all ones",
    );
  });
  await t.step("EOS inside a value", () => {
    assertDecompressionFailed(
      hex("0000 51 85 ffffffff03"),
      "Cannot decode field section: invalid Huffman value at offset 3: EOS symbol inside the string",
    );
  });
});

Deno.test("decodeFieldSection() enforces the field section size limit", async (t) => {
  await t.step("a 70000-byte section against the default 65536", () => {
    assertEquals(DEFAULT_MAX_FIELD_SECTION_SIZE, 65536);
    // A literal name "x-pad" (5 bytes) and a raw value of 70000 - 32 - 5 = 69963 bytes.
    const fields: HeaderField[] = [["x-pad", "a".repeat(69963)]];
    const bytes = encodeFieldSection(fields, { huffman: false });
    assertEquals(fieldSectionSize(fields), 70000);
    assertTooLarge(bytes, undefined, "Cannot decode field section: size 70000 exceeds limit 65536");
  });
  await t.step("the same with a Huffman value reports the exact decoded size", () => {
    const bytes = encodeFieldSection([["x-pad", "a".repeat(69963)]]);
    assert(bytes.length < 50000, "the value should be Huffman-coded");
    assertTooLarge(bytes, undefined, "Cannot decode field section: size 70000 exceeds limit 65536");
  });
  await t.step("indexed lines count 32 each: three :method GET against 100", () => {
    assertEquals(decodeFieldSection(hex("0000 d1d1"), { maxFieldSectionSize: 100 }).length, 2);
    assertTooLarge(
      hex("0000 d1d1d1"),
      100,
      "Cannot decode field section: size 126 exceeds limit 100",
    );
  });
  await t.step("a section of exactly the limit passes", () => {
    const fields: HeaderField[] = [["x-pad", "b".repeat(100)]];
    const limit = fieldSectionSize(fields);
    for (const huffman of [true, false]) {
      const bytes = encodeFieldSection(fields, { huffman });
      assertEquals(decodeFieldSection(bytes, { maxFieldSectionSize: limit }), fields);
      assertTooLarge(
        bytes,
        limit - 1,
        `Cannot decode field section: size ${limit} exceeds limit ${limit - 1}`,
      );
    }
  });
  await t.step("the name alone can exceed the limit", () => {
    // 32 + 10 (":authority") = 42 > 40, before the value is read.
    assertTooLarge(hex("0000 50 8c"), 40, "Cannot decode field section: size 42 exceeds limit 40");
  });
  await t.step("a literal name past the limit is refused before its value", () => {
    assertTooLarge(
      hex("0000 2703 637573746f6d2d6b6579"),
      41,
      "Cannot decode field section: size 42 exceeds limit 41",
    );
  });
  await t.step("size is checked before a malformed later line", () => {
    assertTooLarge(hex("0000 d1 81"), 41, "Cannot decode field section: size 42 exceeds limit 41");
  });
});

Deno.test("decodeFieldSection() throws only H3Error on random and mutated input", (t) =>
  fuzz(async (random) => {
    const seeds = [
      NGHTTP3_GET,
      NGHTTP3_CONNECT_IP,
      hex("0000 510b 2f696e6465782e68746d6c"),
      hex("0000 2f01 25a849e95ba97d7f 89 25a849e95bb8e8b4bf"),
      encodeFieldSection([["x-long", "z".repeat(300)], [":status", "421"]], { huffman: false }),
    ];
    const check = (input: Uint8Array) => {
      try {
        const fields = decodeFieldSection(input, { maxFieldSectionSize: 4096 });
        // Whatever decodes must survive a re-encode.
        assertEquals(decodeFieldSection(encodeFieldSection(fields)), fields);
        return true;
      } catch (error) {
        if (!(error instanceof H3Error)) throw error;
        assert(error.message.startsWith("Cannot decode field section: "), error.message);
        assert(error.code === QPACK_DECOMPRESSION_FAILED || error.code === H3_EXCESSIVE_LOAD);
        return false;
      }
    };
    await t.step("3000 random byte strings after a valid prefix", () => {
      let decoded = 0;
      for (let i = 0; i < 3000; i++) {
        const body = Uint8Array.from({ length: Math.floor(random() * 24) }, () => random() * 256);
        if (check(concat(hex("0000"), body))) decoded++;
      }
      assert(decoded > 0, "some random sections should decode");
    });
    await t.step("3000 mutations of valid sections", () => {
      for (let i = 0; i < 3000; i++) {
        const input = seeds[i % seeds.length].slice();
        for (let flips = 1 + Math.floor(random() * 3); flips > 0; flips--) {
          const at = Math.floor(random() * input.length);
          if (random() < 0.5) input[at] ^= 1 << Math.floor(random() * 8);
          else input[at] = Math.floor(random() * 256);
        }
        check(random() < 0.2 ? input.subarray(0, Math.floor(random() * input.length)) : input);
      }
    });
  }, 1114));

Deno.test("QpackEncoderStreamReader accepts only Set Dynamic Table Capacity 0 (RFC 9204 §4.3)", async (t) => {
  await t.step("20: Set Dynamic Table Capacity (001) with capacity 0, any number of times", () => {
    const reader = new QpackEncoderStreamReader();
    reader.push(hex("20"));
    reader.push(hex("20 20"));
    reader.push(new Uint8Array(0));
    assertEquals(reader.capacityZero, 3);
  });
  const cases: [string, string, string][] = [
    // 21: 001 + capacity 1 (5-bit prefix)
    [
      "capacity 1",
      "21",
      "Set Dynamic Table Capacity above 0 exceeds SETTINGS_QPACK_MAX_TABLE_CAPACITY 0",
    ],
    // 3f e1 1f: 001 + 31 and continuation 0x61 + 0x1f << 7: capacity 4096, the RFC 9204 default max
    ["capacity 4096", "3f e11f", "Set Dynamic Table Capacity above 0"],
    // c0 00: 1 T=1 static name index 0 (:authority), 00 empty value (§4.3.2)
    [
      "Insert with Name Reference",
      "c0 00",
      "Insert with Name Reference into a zero-capacity table",
    ],
    // 41 61 00: 01 H=0 name length 1 "a", 00 empty value (§4.3.3)
    ["Insert with Literal Name", "41 61 00", "Insert with Literal Name into a zero-capacity table"],
    // 00: 000 Duplicate relative index 0 (§4.3.4)
    ["Duplicate", "00", "Duplicate with an empty dynamic table"],
    // a valid capacity 0 first, then an insert
    ["an insert after capacity 0", "20 c000", "Insert with Name Reference"],
  ];
  for (const [name, bytes, message] of cases) {
    await t.step(`${bytes}: ${name} is QPACK_ENCODER_STREAM_ERROR`, () => {
      const error = assertThrows(
        () => new QpackEncoderStreamReader().push(hex(bytes)),
        H3Error,
        `Cannot parse QPACK encoder stream: ${message}`,
      );
      assertEquals(error.code, QPACK_ENCODER_STREAM_ERROR);
      assertEquals(error.connection, true);
    });
  }
});

Deno.test("QpackDecoderStreamReader accepts only Stream Cancellation (RFC 9204 §4.4)", async (t) => {
  await t.step("Stream Cancellation (01 + 6-bit stream ID), whole and cut anywhere", () => {
    // 40: stream 0; 44: stream 4; 7f 00: stream 63 (prefix full, continuation 0);
    // 7f 81 01: stream 63 + 1 + (1 << 7) = 192;
    // 7f c0 ff ff ff ff ff ff ff 3f: 63 + (2^62 - 64) = 2^62 - 1, the largest (9 continuations)
    const bytes = hex("40 44 7f00 7f8101 7fc0ffffffffffffff3f");
    for (let split = 0; split <= bytes.length; split++) {
      const reader = new QpackDecoderStreamReader();
      reader.push(bytes.subarray(0, split));
      reader.push(bytes.subarray(split));
      assertEquals(reader.cancellations, 5, `split at ${split}`);
    }
    const oneByOne = new QpackDecoderStreamReader();
    for (const byte of bytes) oneByOne.push(Uint8Array.of(byte));
    assertEquals(oneByOne.cancellations, 5);
  });
  await t.step("a truncated Stream Cancellation waits for its next bytes", () => {
    const reader = new QpackDecoderStreamReader();
    reader.push(hex("7f 81")); // prefix full, one continuation byte with more to come
    assertEquals(reader.cancellations, 0);
    reader.push(hex("01"));
    assertEquals(reader.cancellations, 1);
  });
  const cases: [string, string, string][] = [
    // 84: 1 + stream ID 4 (7-bit prefix) (§4.4.1)
    [
      "Section Acknowledgment",
      "84",
      "Section Acknowledgment, but no field section referenced the dynamic table",
    ],
    // 01: 00 + increment 1 (§4.4.3)
    ["Insert Count Increment 1", "01", "Insert Count Increment, but no entry was ever inserted"],
    // 00: an increment of 0 is an error in any case (§4.4.3)
    ["Insert Count Increment 0", "00", "Insert Count Increment"],
    // 7f c1 ff ff ff ff ff ff ff 3f: 63 + (2^62 - 63) = 2^62, one past the largest stream ID
    [
      "stream ID 2^62",
      "7f c1ffffffffffffff3f",
      "Stream Cancellation stream ID exceeds 2^62-1",
    ],
    // 7f 80 80 80 80 80 80 80 80 80: zero-valued padding past nine continuation bytes
    [
      "endless continuation bytes",
      "7f 808080808080808080",
      "Stream Cancellation stream ID exceeds 2^62-1",
    ],
    // a valid cancellation first, then an acknowledgment
    ["an acknowledgment after a cancellation", "44 80", "Section Acknowledgment"],
  ];
  for (const [name, bytes, message] of cases) {
    await t.step(`${bytes}: ${name} is QPACK_DECODER_STREAM_ERROR`, () => {
      const error = assertThrows(
        () => new QpackDecoderStreamReader().push(hex(bytes)),
        H3Error,
        `Cannot parse QPACK decoder stream: ${message}`,
      );
      assertEquals(error.code, QPACK_DECODER_STREAM_ERROR);
    });
  }
});

Deno.test("QPACK stream readers on random input throw only QPACK stream errors", () =>
  fuzz((random) => {
    for (let round = 0; round < 2000; round++) {
      const bytes = Uint8Array.from(
        { length: 1 + Math.floor(random() * 20) },
        () => random() * 256,
      );
      for (
        const [reader, code] of [
          [new QpackEncoderStreamReader(), QPACK_ENCODER_STREAM_ERROR],
          [new QpackDecoderStreamReader(), QPACK_DECODER_STREAM_ERROR],
        ] as const
      ) {
        try {
          reader.push(bytes);
        } catch (error) {
          assert(error instanceof H3Error && error.code === code, String(error));
        }
      }
    }
  }, 0x9204));
