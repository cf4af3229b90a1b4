import { fuzz } from "../../tests/support/bytes.ts";
import {
  assert,
  assertEquals,
  assertStrictEquals,
  assertThrows,
} from "../../tests/support/assert.ts";
import {
  compareIp,
  createPrefix,
  formatIp,
  formatPrefix,
  hasHostBits,
  ipEquals,
  ipVersionOf,
  parseIp,
  parsePrefix,
  prefixContains,
  prefixFirst,
  prefixLast,
} from "./ip_address.ts";

const bytes = (...values: number[]) => Uint8Array.from(values);

Deno.test("parseIp() reads IPv4 dotted quads", async (t) => {
  await t.step("198.18.0.1", () => assertEquals(parseIp("198.18.0.1"), bytes(198, 18, 0, 1)));
  await t.step("0.0.0.0", () => assertEquals(parseIp("0.0.0.0"), bytes(0, 0, 0, 0)));
  await t.step("255.255.255.255", () => {
    assertEquals(parseIp("255.255.255.255"), bytes(255, 255, 255, 255));
  });
});

Deno.test("parseIp() reads IPv6 in every RFC 4291 §2.2 form", async (t) => {
  const cases: [string, number[]][] = [
    ["::", []],
    ["::1", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]],
    ["fd00::", [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
    ["2001:DB8::8:800:200C:417A", [
      0x20,
      0x01,
      0x0d,
      0xb8,
      0,
      0,
      0,
      0,
      0,
      0x08,
      0x08,
      0x00,
      0x20,
      0x0c,
      0x41,
      0x7a,
    ]],
    ["2001:0db8:0000:0000:0000:ff00:0042:8329", [
      0x20,
      0x01,
      0x0d,
      0xb8,
      0,
      0,
      0,
      0,
      0,
      0,
      0xff,
      0x00,
      0x00,
      0x42,
      0x83,
      0x29,
    ]],
    ["1:2:3:4:5:6:7::", [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0]],
    ["::2:3:4:5:6:7:8", [0, 0, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]],
    ["::ffff:198.18.0.1", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1]],
    ["1:2:3:4:5:6:1.2.3.4", [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 1, 2, 3, 4]],
    ["::1.2.3.4", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]],
  ];
  for (const [text, expected] of cases) {
    await t.step(text, () => {
      const full = new Uint8Array(16);
      full.set(expected);
      assertEquals(parseIp(text), full);
    });
  }
});

Deno.test("parseIp() rejects malformed and non-strict text", async (t) => {
  const bad = [
    "",
    "1.2.3",
    "1.2.3.4.5",
    "256.0.0.1",
    "01.2.3.4", // leading zero
    "1.2.3.04",
    "1.2.3.-1",
    "1.2.3.4 ",
    " 1.2.3.4",
    "1..3.4",
    "0x1.2.3.4",
    "1.2.3.4/24",
    ":",
    ":::",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8::", // "::" must stand for at least one group
    "::1:2:3:4:5:6:7:8",
    "1:2:3:4::5:6:7:8",
    "1::2::3",
    ":1::",
    "1::2:",
    "12345::",
    "g::",
    "fe80::1%eth0", // zone id
    "[::1]",
    "::ffff:1.2.3.4.5",
    "::ffff:1.2.3",
    "::1.2.3.4:1", // IPv4 part must be last
    "1.2.3.4::",
    "1:2:3:4:5:6:7:1.2.3.4",
    "::ffff:01.2.3.4",
    ":1:2:3:4:5:6:7",
    "1::2:3:4:5:6:7:8", // "::" for no group at all
    "localhost",
  ];
  for (const text of bad) {
    await t.step(JSON.stringify(text), () => assertStrictEquals(parseIp(text), undefined));
  }
});

Deno.test("formatIp() writes RFC 5952 §4 canonical text", async (t) => {
  const cases: [string, string][] = [
    ["198.18.0.1", "198.18.0.1"],
    ["2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // first of equal runs (§4.2.3)
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // single zero group kept (§4.2.2)
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"], // longest run wins (§4.2.3)
    ["0:0:0:0:0:0:0:0", "::"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["fd00:0:0:0:0:0:0:0", "fd00::"],
    ["1:0:0:0:0:0:0:0", "1::"],
    ["::ffff:c612:1", "::ffff:198.18.0.1"], // IPv4-mapped in mixed notation (§5)
    ["::c612:1", "::c612:1"], // deprecated IPv4-compatible stays hex
    ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
  ];
  for (const [input, expected] of cases) {
    await t.step(`${input} -> ${expected}`, () => {
      const address = parseIp(input);
      assert(address !== undefined);
      assertEquals(formatIp(address), expected);
    });
  }
  await t.step("other lengths throw", () => {
    assertThrows(
      () => formatIp(new Uint8Array(5)),
      RangeError,
      "Cannot format IP address: length 5 is not 4 or 16",
    );
  });
});

Deno.test("formatIp() and parseIp() round trip random addresses", () =>
  fuzz((random) => {
    for (let i = 0; i < 3000; i++) {
      const address = new Uint8Array(i % 2 === 0 ? 4 : 16);
      random.fill(address);
      // Make zero runs likely so that "::" placement is exercised.
      for (let j = 0; j < address.length; j += 2) {
        if (random() < 0.5) address[j] = address[j + 1] = 0;
      }
      const text = formatIp(address);
      assertEquals(parseIp(text), address, text);
      assertEquals(formatIp(parseIp(text)!), text);
    }
  }));

Deno.test("parsePrefix() reads prefixes and bare addresses", async (t) => {
  await t.step("198.18.0.0/15", () => {
    const prefix = parsePrefix("198.18.0.0/15");
    assertEquals(prefix, { version: 4, address: bytes(198, 18, 0, 0), prefixLength: 15 });
  });
  await t.step("fd00::/8", () => {
    const prefix = parsePrefix("fd00::/8");
    assertEquals(prefix.version, 6);
    assertEquals(prefix.prefixLength, 8);
    assertEquals(formatIp(prefix.address), "fd00::");
  });
  await t.step("bare IPv4 is /32", () => {
    assertEquals(parsePrefix("198.18.2.1").prefixLength, 32);
  });
  await t.step("bare IPv6 is /128", () => {
    assertEquals(parsePrefix("fd00::1").prefixLength, 128);
  });
  await t.step("/0", () => {
    assertEquals(parsePrefix("1.2.3.4/0"), {
      version: 4,
      address: bytes(0, 0, 0, 0),
      prefixLength: 0,
    });
  });
  await t.step("host bits are masked off", () => {
    assertEquals(formatPrefix(parsePrefix("198.19.255.255/15")), "198.18.0.0/15");
    assertEquals(formatPrefix(parsePrefix("fd12:3456::1/20")), "fd12:3000::/20");
    assertEquals(formatPrefix(parsePrefix("10.1.2.3/24")), "10.1.2.0/24");
  });
  await t.step("the result is frozen", () => assert(Object.isFrozen(parsePrefix("::/0"))));
});

Deno.test("parsePrefix() rejects malformed prefixes with a clear message", async (t) => {
  const cases: [string, string][] = [
    ["", `Invalid prefix "": "" is not an IP address`],
    ["1.2.3/8", `Invalid prefix "1.2.3/8": "1.2.3" is not an IP address`],
    ["1.2.3.4/33", `Invalid prefix "1.2.3.4/33": length 33 exceeds 32 bits of an IPv4 address`],
    ["fd00::/129", `Invalid prefix "fd00::/129": length 129 exceeds 128 bits of an IPv6 address`],
    ["1.2.3.4/", `Invalid prefix "1.2.3.4/": "" is not a prefix length`],
    ["1.2.3.4/08", `Invalid prefix "1.2.3.4/08": "08" is not a prefix length`],
    ["1.2.3.4/-1", `Invalid prefix "1.2.3.4/-1": "-1" is not a prefix length`],
    ["1.2.3.4/8/8", `Invalid prefix "1.2.3.4/8/8": "8/8" is not a prefix length`],
    ["1.2.3.4/ 8", `Invalid prefix "1.2.3.4/ 8": " 8" is not a prefix length`],
    ["fd00::/1000", `Invalid prefix "fd00::/1000": "1000" is not a prefix length`],
  ];
  for (const [text, message] of cases) {
    await t.step(JSON.stringify(text), () => {
      const error = assertThrows(() => parsePrefix(text), Error);
      assertEquals(error.message, message);
    });
  }
});

Deno.test("formatPrefix() and parsePrefix() round trip", () =>
  fuzz((random) => {
    for (let i = 0; i < 2000; i++) {
      const address = new Uint8Array(i % 2 === 0 ? 4 : 16);
      random.fill(address);
      const prefixLength = Math.floor(random() * (address.length * 8 + 1));
      const prefix = createPrefix(address, prefixLength);
      assertEquals(parsePrefix(formatPrefix(prefix)), prefix);
      assert(!hasHostBits(prefix.address, prefixLength));
    }
  }));

Deno.test("prefixContains() checks the network bits only", (t) =>
  fuzz(async (random) => {
    const v4 = parsePrefix("198.18.0.0/15");
    await t.step("inside", () => {
      assert(prefixContains(v4, parseIp("198.18.0.0")!));
      assert(prefixContains(v4, parseIp("198.19.255.255")!));
    });
    await t.step("outside", () => {
      assert(!prefixContains(v4, parseIp("198.17.255.255")!));
      assert(!prefixContains(v4, parseIp("198.20.0.0")!));
    });
    await t.step("other version is never inside", () => {
      assert(!prefixContains(parsePrefix("::/0"), parseIp("1.2.3.4")!));
      assert(!prefixContains(parsePrefix("0.0.0.0/0"), parseIp("::")!));
    });
    await t.step("/0 holds every address of its version", () => {
      assert(prefixContains(parsePrefix("0.0.0.0/0"), parseIp("255.255.255.255")!));
    });
    await t.step("/128 holds one address", () => {
      const one = parsePrefix("fd00::1");
      assert(prefixContains(one, parseIp("fd00::1")!));
      assert(!prefixContains(one, parseIp("fd00::")!));
    });
    await t.step("agrees with prefixFirst()/prefixLast() on random input", () => {
      for (let i = 0; i < 2000; i++) {
        const address = new Uint8Array(i % 2 === 0 ? 4 : 16);
        random.fill(address);
        const prefix = createPrefix(address, Math.floor(random() * (address.length * 8 + 1)));
        const probe = new Uint8Array(address.length);
        random.fill(probe);
        if (random() < 0.5) probe.set(address.subarray(0, address.length >> 1));
        const expected = compareIp(probe, prefixFirst(prefix)) >= 0 &&
          compareIp(probe, prefixLast(prefix)) <= 0;
        assertEquals(prefixContains(prefix, probe), expected);
      }
    });
  }));

Deno.test("prefixFirst() and prefixLast() give the range ends", async (t) => {
  await t.step("198.18.0.0/15", () => {
    const prefix = parsePrefix("198.18.0.0/15");
    assertEquals(formatIp(prefixFirst(prefix)), "198.18.0.0");
    assertEquals(formatIp(prefixLast(prefix)), "198.19.255.255");
  });
  await t.step("fd00::/8", () => {
    assertEquals(
      formatIp(prefixLast(parsePrefix("fd00::/8"))),
      "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    );
  });
  await t.step("/32 is one address", () => {
    const prefix = parsePrefix("1.2.3.4/32");
    assertEquals(prefixFirst(prefix), prefixLast(prefix));
  });
  await t.step("results are copies", () => {
    const prefix = parsePrefix("10.0.0.0/8");
    prefixFirst(prefix)[0] = 99;
    prefixLast(prefix)[0] = 99;
    assertEquals(prefix.address, bytes(10, 0, 0, 0));
  });
});

Deno.test("compareIp() and ipEquals() order addresses as big-endian numbers", async (t) => {
  await t.step("order", () => {
    assert(compareIp(parseIp("1.2.3.4")!, parseIp("1.2.3.5")!) < 0);
    assert(compareIp(parseIp("2.0.0.0")!, parseIp("1.255.255.255")!) > 0);
    assertEquals(compareIp(parseIp("fd00::1")!, parseIp("fd00::1")!), 0);
    assert(compareIp(parseIp("255.255.255.255")!, parseIp("::")!) < 0);
  });
  await t.step("equality", () => {
    assert(ipEquals(parseIp("fd00::1")!, parseIp("fd00:0::0:1")!));
    assert(!ipEquals(parseIp("fd00::1")!, parseIp("fd00::2")!));
    assert(!ipEquals(parseIp("0.0.0.0")!, parseIp("::")!));
  });
});

Deno.test("createPrefix() and hasHostBits() validate and mask", async (t) => {
  await t.step("masks a copy", () => {
    const address = bytes(10, 1, 2, 3);
    const prefix = createPrefix(address, 12);
    assertEquals(prefix.address, bytes(10, 0, 0, 0));
    assertEquals(address, bytes(10, 1, 2, 3));
  });
  await t.step("hasHostBits()", () => {
    assert(hasHostBits(bytes(10, 0, 0, 1), 24));
    assert(!hasHostBits(bytes(10, 0, 0, 0), 24));
    assert(hasHostBits(bytes(10, 16, 0, 0), 11));
    assert(!hasHostBits(bytes(10, 16, 0, 0), 12));
    assert(!hasHostBits(bytes(255, 255, 255, 255), 32));
  });
  await t.step("bad lengths throw RangeError", () => {
    assertThrows(
      () => createPrefix(bytes(1, 2, 3, 4), 33),
      RangeError,
      "Cannot create prefix: length 33 is outside 0..32 for IPv4",
    );
    assertThrows(
      () => createPrefix(new Uint8Array(5), 0),
      RangeError,
      "Cannot create prefix: address length 5 is not 4 or 16",
    );
  });
  await t.step("ipVersionOf()", () => {
    assertEquals(ipVersionOf(new Uint8Array(4)), 4);
    assertEquals(ipVersionOf(new Uint8Array(16)), 6);
    assertEquals(ipVersionOf(new Uint8Array(8)), undefined);
  });
});

Deno.test("parseIp() and parsePrefix() on random text return or throw Error only", () =>
  fuzz((random) => {
    const alphabet = "0123456789abcdefABCDEF:./%[] g-";
    for (let i = 0; i < 5000; i++) {
      let text = "";
      const length = Math.floor(random() * 45);
      for (let j = 0; j < length; j++) text += alphabet[Math.floor(random() * alphabet.length)];
      const address = parseIp(text);
      if (address !== undefined) {
        assert(address.length === 4 || address.length === 16);
        assertEquals(parseIp(formatIp(address)), address);
      }
      try {
        parsePrefix(text);
      } catch (error) {
        assert(
          error instanceof Error && error.message.startsWith("Invalid prefix "),
          String(error),
        );
      }
    }
  }));
