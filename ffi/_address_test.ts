import { assertEquals, assertThrows } from "../tests/support/assert.ts";
import { checkPrefix, formatAddress, formatPrefix, PrefixError } from "./_address.ts";

function v6(...groups: number[]): Uint8Array {
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

Deno.test("formatAddress() writes IPv4 as a dotted quad", () => {
  assertEquals(formatAddress(new Uint8Array([198, 18, 2, 0])), "198.18.2.0");
  assertEquals(formatAddress(new Uint8Array([0, 0, 0, 0])), "0.0.0.0");
  assertEquals(formatAddress(new Uint8Array([255, 255, 255, 255])), "255.255.255.255");
});

Deno.test("formatAddress() follows RFC 5952 for IPv6", async (t) => {
  const cases: [string, Uint8Array, string][] = [
    ["section 4.2.1: longest run shortened", v6(0x2001, 0xdb8, 0, 0, 0, 0, 2, 1), "2001:db8::2:1"],
    [
      "section 4.2.2: one zero group stays",
      v6(0x2001, 0xdb8, 0, 1, 1, 1, 1, 1),
      "2001:db8:0:1:1:1:1:1",
    ],
    ["section 4.2.3: longer run wins", v6(0x2001, 0, 0, 1, 0, 0, 0, 1), "2001:0:0:1::1"],
    [
      "section 4.2.3: first run wins a tie",
      v6(0x2001, 0xdb8, 0, 0, 1, 0, 0, 1),
      "2001:db8::1:0:0:1",
    ],
    [
      "section 4.3: lower case, no leading zeros",
      v6(0x2001, 0xdb8, 0xabcd, 0x0a),
      "2001:db8:abcd:a::",
    ],
    ["unspecified address", v6(), "::"],
    ["loopback", v6(0, 0, 0, 0, 0, 0, 0, 1), "::1"],
    ["unique local prefix", v6(0xfd00), "fd00::"],
    ["no zero group", v6(1, 2, 3, 4, 5, 6, 7, 8), "1:2:3:4:5:6:7:8"],
  ];
  for (const [name, bytes, text] of cases) {
    await t.step(name, () => assertEquals(formatAddress(bytes), text));
  }
});

Deno.test("formatAddress() shows other lengths as hex bytes", () => {
  assertEquals(formatAddress(new Uint8Array([1, 0xab, 0])), "01:ab:00");
});

Deno.test("formatPrefix() appends the prefix length", () => {
  assertEquals(
    formatPrefix({ version: 4, address: new Uint8Array([198, 18, 2, 0]), prefixLength: 24 }),
    "198.18.2.0/24",
  );
  assertEquals(
    formatPrefix({ version: 6, address: v6(0xfd00, 0, 0, 0, 0, 0, 0, 1), prefixLength: 64 }),
    "fd00::1/64",
  );
});

Deno.test("checkPrefix() accepts valid prefixes and rejects the rest", async (t) => {
  await t.step("valid", () => {
    checkPrefix({ version: 4, address: new Uint8Array(4), prefixLength: 0 }, "Cannot x");
    checkPrefix({ version: 4, address: new Uint8Array(4), prefixLength: 32 }, "Cannot x");
    checkPrefix({ version: 6, address: new Uint8Array(16), prefixLength: 128 }, "Cannot x");
  });
  await t.step("IPv4 length 33", () => {
    assertThrows(
      () =>
        checkPrefix(
          { version: 4, address: new Uint8Array(4), prefixLength: 33 },
          "Cannot add route",
        ),
      PrefixError,
      "Cannot add route: prefix length 33 exceeds 32 for IPv4",
    );
  });
  await t.step("IPv6 length 129", () => {
    assertThrows(
      () => checkPrefix({ version: 6, address: new Uint8Array(16), prefixLength: 129 }, "Cannot x"),
      PrefixError,
      "Cannot x: prefix length 129 exceeds 128 for IPv6",
    );
  });
  await t.step("negative or fractional length", () => {
    assertThrows(
      () => checkPrefix({ version: 4, address: new Uint8Array(4), prefixLength: -1 }, "Cannot x"),
      PrefixError,
      "Cannot x: prefix length -1 is not an integer >= 0",
    );
    assertThrows(
      () => checkPrefix({ version: 4, address: new Uint8Array(4), prefixLength: 1.5 }, "Cannot x"),
      PrefixError,
      "prefix length 1.5 is not an integer",
    );
  });
  await t.step("address of the wrong size", () => {
    assertThrows(
      () => checkPrefix({ version: 6, address: new Uint8Array(4), prefixLength: 8 }, "Cannot x"),
      PrefixError,
      "Cannot x: IPv6 address has 4 bytes, expected 16",
    );
  });
});
