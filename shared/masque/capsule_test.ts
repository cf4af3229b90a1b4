import {
  assert,
  assertEquals,
  assertStrictEquals,
  assertThrows,
} from "../../tests/support/assert.ts";
import { fuzz, hex, type Random } from "../../tests/support/bytes.ts";
import { CapsuleError, H3_EXCESSIVE_LOAD, H3Error } from "../errors.ts";
import { ByteBudget } from "../h3/byte_budget.ts";
import { encodeVarint } from "../h3/varint.ts";
import { createPrefix, type IpAddressRange, parseIp, parsePrefix } from "../ip/ip_address.ts";
import {
  type Capsule,
  CAPSULE_ADDRESS_ASSIGN,
  CAPSULE_ADDRESS_REQUEST,
  CAPSULE_DATAGRAM,
  CAPSULE_ROUTE_ADVERTISEMENT,
  CapsuleParser,
  datagramCapsuleHeaderSize,
  DEFAULT_MAX_CAPSULE_SIZE,
  encodeCapsule,
  isKnownCapsuleType,
  parseCapsuleValue,
  writeDatagramCapsuleHeader,
} from "./capsule.ts";

const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
};
const ip = (text: string) => parseIp(text)!;
const range = (start: string, end: string, ipProtocol: number): IpAddressRange => {
  const s = ip(start);
  return { version: s.length === 4 ? 4 : 6, start: s, end: ip(end), ipProtocol };
};

/** Parses `bytes` fed in chunks of `chunkSize` and returns every capsule. */
function parseAll(bytes: Uint8Array, chunkSize = bytes.length || 1, parser = new CapsuleParser()) {
  const out: Capsule[] = [];
  for (let i = 0; i < bytes.length; i += chunkSize) {
    parser.push(bytes.slice(i, i + chunkSize));
    for (let c = parser.next(); c !== undefined; c = parser.next()) out.push(c);
  }
  return out;
}

// Hand-built wire images, field by field (RFC 9297 §3.2, RFC 9484 §4.7).
const ASSIGN_V4 = hex(
  "01" + // Capsule Type = ADDRESS_ASSIGN
    "07" + // Capsule Length = 7
    "00" + // Request ID = 0 (unsolicited)
    "04" + // IP Version = 4
    "c6120001" + // IP Address = 198.18.0.1
    "20", // IP Prefix Length = 32
);
const REQUEST_V6 = hex(
  "02" + // Capsule Type = ADDRESS_REQUEST
    "13" + // Capsule Length = 19
    "01" + // Request ID = 1
    "06" + // IP Version = 6
    "00000000000000000000000000000000" + // IP Address = :: (any)
    "40", // IP Prefix Length = 64
);
const ROUTES = hex(
  "03" + // Capsule Type = ROUTE_ADVERTISEMENT
    "2c" + // Capsule Length = 44
    "04" + // IP Version = 4
    "c6120000" + // Start IP Address = 198.18.0.0
    "c613ffff" + // End IP Address = 198.19.255.255
    "00" + // IP Protocol = 0 (all)
    "06" + // IP Version = 6
    "fd000000000000000000000000000000" + // Start = fd00::
    "fdffffffffffffffffffffffffffffff" + // End = fdff:ffff:...
    "11", // IP Protocol = 17 (UDP)
);
const DATAGRAM = hex(
  "00" + // Capsule Type = DATAGRAM
    "05" + // Capsule Length = 5
    "00" + // Context ID = 0 (IP packet, RFC 9484 §6)
    "45000014", // first bytes of an IPv4 header
);

Deno.test("CapsuleParser reads hand-built capsules", async (t) => {
  await t.step("ADDRESS_ASSIGN 198.18.0.1/32, request 0", () => {
    assertEquals(parseAll(ASSIGN_V4), [{
      type: "address_assign",
      addresses: [{ requestId: 0, prefix: parsePrefix("198.18.0.1/32") }],
    }]);
  });
  await t.step("ADDRESS_REQUEST ::/64, request 1", () => {
    assertEquals(parseAll(REQUEST_V6), [{
      type: "address_request",
      addresses: [{ requestId: 1, prefix: parsePrefix("::/64") }],
    }]);
  });
  await t.step("ROUTE_ADVERTISEMENT with an IPv4 and an IPv6 range", () => {
    assertEquals(parseAll(ROUTES), [{
      type: "route_advertisement",
      ranges: [
        range("198.18.0.0", "198.19.255.255", 0),
        range("fd00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 17),
      ],
    }]);
  });
  await t.step("DATAGRAM", () => {
    assertEquals(parseAll(DATAGRAM), [{ type: "datagram", payload: hex("0045000014") }]);
  });
  await t.step("empty ADDRESS_ASSIGN withdraws all addresses and is valid", () => {
    assertEquals(parseAll(hex("0100")), [{ type: "address_assign", addresses: [] }]);
  });
  await t.step("empty ROUTE_ADVERTISEMENT is valid", () => {
    assertEquals(parseAll(hex("0300")), [{ type: "route_advertisement", ranges: [] }]);
  });
  await t.step("two-byte varint request ID and a /15 prefix", () => {
    // 01 type, 08 length, 4100 = request 256, 04, c6120000, 0f = /15
    assertEquals(parseAll(hex("0108 4100 04 c6120000 0f")), [{
      type: "address_assign",
      addresses: [{ requestId: 256, prefix: parsePrefix("198.18.0.0/15") }],
    }]);
  });
});

Deno.test("encodeCapsule() writes the hand-built bytes", async (t) => {
  await t.step("ADDRESS_ASSIGN", () => {
    assertEquals(
      encodeCapsule({
        type: "address_assign",
        addresses: [{ requestId: 0, prefix: parsePrefix("198.18.0.1") }],
      }),
      ASSIGN_V4,
    );
  });
  await t.step("ADDRESS_REQUEST", () => {
    assertEquals(
      encodeCapsule({
        type: "address_request",
        addresses: [{ requestId: 1, prefix: parsePrefix("::/64") }],
      }),
      REQUEST_V6,
    );
  });
  await t.step("ROUTE_ADVERTISEMENT", () => {
    assertEquals(
      encodeCapsule({
        type: "route_advertisement",
        ranges: [
          range("198.18.0.0", "198.19.255.255", 0),
          range("fd00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 17),
        ],
      }),
      ROUTES,
    );
  });
  await t.step("DATAGRAM", () => {
    assertEquals(encodeCapsule({ type: "datagram", payload: hex("0045000014") }), DATAGRAM);
  });
  await t.step("DATAGRAM header for a 1500-byte payload", () => {
    // 00 = DATAGRAM, 45dc = 2-byte varint 1500
    const header = new Uint8Array(datagramCapsuleHeaderSize(1500));
    assertEquals(writeDatagramCapsuleHeader(header, 0, 1500), 3);
    assertEquals(header, hex("0045dc"));
    const buf = new Uint8Array(8);
    assertEquals(writeDatagramCapsuleHeader(buf, 2, 63), 4);
    assertEquals(buf, hex("0000003f00000000"));
  });
});

Deno.test("CapsuleParser handles every chunk boundary", () => {
  const unknown = concat(encodeVarint(0x17 + 0x29 * 3), encodeVarint(3), hex("aabbcc")); // GREASE type
  const stream = concat(ASSIGN_V4, unknown, REQUEST_V6, DATAGRAM, ROUTES, hex("0100"));
  const expected = parseAll(stream);
  assertEquals(expected.map((c) => c.type), [
    "address_assign",
    "address_request",
    "datagram",
    "route_advertisement",
    "address_assign",
  ]);
  for (let size = 1; size <= stream.length; size++) {
    const parser = new CapsuleParser();
    assertEquals(parseAll(stream, size, parser), expected, `chunk size ${size}`);
    assert(parser.atCapsuleBoundary);
    parser.finish();
  }
  // Every single split point into two chunks.
  for (let split = 0; split <= stream.length; split++) {
    const parser = new CapsuleParser();
    parser.push(stream.slice(0, split));
    const got: Capsule[] = [];
    for (let c = parser.next(); c !== undefined; c = parser.next()) got.push(c);
    parser.push(stream.slice(split));
    for (let c = parser.next(); c !== undefined; c = parser.next()) got.push(c);
    assertEquals(got, expected, `split at ${split}`);
  }
});

Deno.test("CapsuleParser skips unknown capsules without buffering them", async (t) => {
  await t.step("a 1 GB unknown capsule under a raised limit, streamed in 64 KiB pieces", () => {
    const parser = new CapsuleParser({ maxUnknownCapsuleSize: 2 ** 30 });
    // type 0x2a (unknown), length 2^30 (8-byte varint c000000040000000)
    parser.push(hex("2a c000000040000000"));
    assertStrictEquals(parser.next(), undefined);
    const piece = new Uint8Array(65536);
    for (let sent = 0; sent < 2 ** 30; sent += piece.length) {
      parser.push(piece);
      if (sent % (2 ** 24) === 0) assertStrictEquals(parser.next(), undefined);
      assertStrictEquals(parser.buffered, 0);
    }
    assert(parser.atCapsuleBoundary);
    parser.push(ASSIGN_V4);
    assertEquals(parser.next()?.type, "address_assign");
  });
  await t.step("an unknown capsule at the limit is skipped", () => {
    const parser = new CapsuleParser({ maxCapsuleSize: 4, maxUnknownCapsuleSize: 16 });
    // 3f unknown type, 10 length 16, 16 zero bytes; then 01 ADDRESS_ASSIGN, 00 length
    parser.push(concat(hex("3f 10"), new Uint8Array(16), hex("0100")));
    assertEquals(parser.next(), { type: "address_assign", addresses: [] });
  });
  await t.step("parseCapsuleValue() returns undefined for unknown types", () => {
    assertStrictEquals(parseCapsuleValue(0x04, hex("00")), undefined);
    assertStrictEquals(parseCapsuleValue(0x1ace79ed, hex("")), undefined);
    // DNS_ASSIGN (draft-ietf-masque-connect-ip-dns-05): known, and empty clears earlier ones.
    assertEquals(parseCapsuleValue(0x1ace79ec, hex("")), {
      type: "dns_assign",
      configurations: [],
    });
    assert(isKnownCapsuleType(CAPSULE_ROUTE_ADVERTISEMENT));
    assert(!isKnownCapsuleType(0x04));
  });
});

Deno.test("CapsuleParser rejects unknown capsules over their size limit", async (t) => {
  await t.step("length 2^62-1 (the largest varint) with the default limit", () => {
    const parser = new CapsuleParser();
    // 2a unknown type; ff ff ff ff ff ff ff ff: 8-byte varint 2^62-1
    parser.push(hex("2a ffffffffffffffff"));
    assertThrows(
      () => parser.next(),
      CapsuleError,
      "Cannot parse capsule: unknown type 0x2a with length 4611686018427388000 exceeds limit 65551",
    );
  });
  await t.step("the default is the known-capsule limit", () => {
    // 3f unknown type, 80 01 00 10: 4-byte varint 65552, one past 65551
    const over = new CapsuleParser();
    over.push(hex("3f 80010010"));
    assertThrows(() => over.next(), CapsuleError, "exceeds limit 65551");
    const at = new CapsuleParser({ maxCapsuleSize: 16 });
    at.push(hex("3f 11")); // 3f unknown type, 11 length 17 > 16
    assertThrows(
      () => at.next(),
      CapsuleError,
      "Cannot parse capsule: unknown type 0x3f with length 17 exceeds limit 16",
    );
  });
  await t.step("the error is sticky and drops what was buffered", () => {
    const parser = new CapsuleParser({ maxUnknownCapsuleSize: 1 });
    parser.push(hex("3f 02 0000 0100"));
    const first = assertThrows(() => parser.next(), CapsuleError);
    assertEquals(parser.buffered, 0);
    parser.push(ASSIGN_V4);
    assertStrictEquals(assertThrows(() => parser.next(), CapsuleError), first);
  });
});

Deno.test("CapsuleParser rejects known capsules over the size limit", async (t) => {
  await t.step("default limit", () => {
    const parser = new CapsuleParser();
    // DATAGRAM with length 70000 (4-byte varint 80011170): rejected from the header alone.
    parser.push(hex("00 80011170"));
    assertThrows(
      () => parser.next(),
      CapsuleError,
      "Cannot parse capsule: length 70000 exceeds limit 65551",
    );
    assertEquals(DEFAULT_MAX_CAPSULE_SIZE, 65551);
  });
  await t.step("the limit itself is accepted", () => {
    const parser = new CapsuleParser({ maxCapsuleSize: 3 });
    parser.push(hex("00 03 00 aa bb"));
    assertEquals(parser.next(), { type: "datagram", payload: hex("00aabb") });
  });
  await t.step("errors are sticky", () => {
    const parser = new CapsuleParser({ maxCapsuleSize: 3 });
    parser.push(hex("01 04"));
    const first = assertThrows(() => parser.next(), CapsuleError);
    parser.push(hex("0100"));
    assertStrictEquals(assertThrows(() => parser.next(), CapsuleError), first);
  });
});

Deno.test("CapsuleParser.finish() rejects a stream that ends inside a capsule", async (t) => {
  await t.step("inside the header", () => {
    const parser = new CapsuleParser();
    parser.push(hex("40")); // first byte of a 2-byte type
    assertStrictEquals(parser.next(), undefined);
    assert(!parser.atCapsuleBoundary);
    assertThrows(
      () => parser.finish(),
      CapsuleError,
      "Cannot parse capsule: stream ended inside a capsule header (1 bytes buffered)",
    );
  });
  await t.step("inside the value", () => {
    const parser = new CapsuleParser();
    parser.push(ASSIGN_V4.subarray(0, 5)); // type, length 7, and 3 of the 7 value bytes
    assertStrictEquals(parser.next(), undefined);
    assertThrows(
      () => parser.finish(),
      CapsuleError,
      "Cannot parse capsule: stream ended inside a capsule value (4 bytes missing)",
    );
  });
  await t.step("inside a skipped capsule", () => {
    const parser = new CapsuleParser();
    parser.push(hex("2a 05 0102"));
    assertStrictEquals(parser.next(), undefined);
    assertThrows(() => parser.finish(), CapsuleError, "(3 bytes missing)");
  });
  await t.step("empty stream is fine", () => new CapsuleParser().finish());
});

Deno.test("parseCapsuleValue() rejects malformed control capsules", async (t) => {
  const cases: [string, number, string, string][] = [
    [
      "IP version 5",
      CAPSULE_ADDRESS_ASSIGN,
      "00 05 c6120001 20",
      "Cannot parse ADDRESS_ASSIGN capsule: address 0 has IP version 5 (byte 1), not 4 or 6",
    ],
    [
      "prefix longer than an IPv4 address",
      CAPSULE_ADDRESS_ASSIGN,
      "00 04 c6120001 21",
      "Cannot parse ADDRESS_ASSIGN capsule: address 0 prefix length 33 exceeds 32 bits of an IPv4 address",
    ],
    [
      "prefix longer than an IPv6 address",
      CAPSULE_ADDRESS_REQUEST,
      "01 06 fd000000000000000000000000000001 81",
      "Cannot parse ADDRESS_REQUEST capsule: address 0 prefix length 129 exceeds 128 bits of an IPv6 address",
    ],
    [
      "host bits set past the prefix",
      CAPSULE_ADDRESS_ASSIGN,
      "00 04 c6120001 18",
      "Cannot parse ADDRESS_ASSIGN capsule: address 0 198.18.0.1 has bits set past prefix length 24",
    ],
    [
      "host bits set in the second address",
      CAPSULE_ADDRESS_REQUEST,
      "01 04 00000000 20  02 06 fd000000000000000000000000000001 40",
      "Cannot parse ADDRESS_REQUEST capsule: address 1 fd00::1 has bits set past prefix length 64",
    ],
    [
      "request ID 0 in ADDRESS_REQUEST",
      CAPSULE_ADDRESS_REQUEST,
      "00 04 00000000 20",
      "Cannot parse ADDRESS_REQUEST capsule: address 0 has request ID 0",
    ],
    [
      "empty ADDRESS_REQUEST",
      CAPSULE_ADDRESS_REQUEST,
      "",
      "Cannot parse ADDRESS_REQUEST capsule: no requested addresses",
    ],
    [
      "truncated address",
      CAPSULE_ADDRESS_ASSIGN,
      "00 04 c61200",
      "Cannot parse ADDRESS_ASSIGN capsule: truncated IP address at byte 2 of 5",
    ],
    [
      "missing prefix length",
      CAPSULE_ADDRESS_ASSIGN,
      "00 04 c6120001",
      "Cannot parse ADDRESS_ASSIGN capsule: truncated IP prefix length at byte 6 of 6",
    ],
    [
      "trailing byte after a complete address",
      CAPSULE_ADDRESS_ASSIGN,
      "00 04 c6120001 20 07",
      "Cannot parse ADDRESS_ASSIGN capsule: truncated IP version at byte 8 of 8",
    ],
    [
      "truncated request ID varint",
      CAPSULE_ADDRESS_ASSIGN,
      "80 00",
      "Cannot parse ADDRESS_ASSIGN capsule: truncated request ID at byte 0 of 2",
    ],
    [
      "request ID above 2^53-1",
      CAPSULE_ADDRESS_ASSIGN,
      "c020000000000000 04 c6120001 20",
      "Cannot parse ADDRESS_ASSIGN capsule: request ID at byte 0 exceeds 2^53-1",
    ],
    [
      "range start after end",
      CAPSULE_ROUTE_ADVERTISEMENT,
      "04 c6120009 c6120001 00",
      "Cannot parse ROUTE_ADVERTISEMENT capsule: range 0 start 198.18.0.9 is after end 198.18.0.1",
    ],
    [
      "range IP version 0",
      CAPSULE_ROUTE_ADVERTISEMENT,
      "00 c6120009 c6120001 00",
      "Cannot parse ROUTE_ADVERTISEMENT capsule: range 0 has IP version 0 (byte 0), not 4 or 6",
    ],
    [
      "IPv6 range before IPv4 range",
      CAPSULE_ROUTE_ADVERTISEMENT,
      "06 fd000000000000000000000000000000 fd0000000000000000000000000000ff 00" +
      " 04 c6120000 c61200ff 00",
      "Cannot parse ROUTE_ADVERTISEMENT capsule: range 1 (IPv4) follows an IPv6 range",
    ],
    [
      "protocols out of order",
      CAPSULE_ROUTE_ADVERTISEMENT,
      "04 c6120000 c61200ff 11  04 c6120000 c61200ff 06",
      "Cannot parse ROUTE_ADVERTISEMENT capsule: range 1 (IP protocol 6) follows a range for IP protocol 17",
    ],
    [
      "addresses out of order",
      CAPSULE_ROUTE_ADVERTISEMENT,
      "04 c6120100 c61201ff 00  04 c6120000 c61200ff 00",
      "Cannot parse ROUTE_ADVERTISEMENT capsule: range 1 starting at 198.18.0.0 is not sorted after range 0 starting at 198.18.1.0",
    ],
    [
      "overlapping ranges",
      CAPSULE_ROUTE_ADVERTISEMENT,
      "04 c6120000 c61200ff 00  04 c61200ff c61201ff 00",
      "Cannot parse ROUTE_ADVERTISEMENT capsule: range 1 starting at 198.18.0.255 overlaps range 0 ending at 198.18.0.255",
    ],
    [
      "truncated range",
      CAPSULE_ROUTE_ADVERTISEMENT,
      "04 c6120000 c61200ff",
      "Cannot parse ROUTE_ADVERTISEMENT capsule: truncated IP protocol at byte 9 of 9",
    ],
    [
      "IPv6 range cut inside the end address",
      CAPSULE_ROUTE_ADVERTISEMENT,
      "06 fd000000000000000000000000000000 fd00",
      "Cannot parse ROUTE_ADVERTISEMENT capsule: truncated end IP address at byte 17 of 19",
    ],
  ];
  for (const [name, type, bytes, message] of cases) {
    await t.step(name, () => {
      const error = assertThrows(() => parseCapsuleValue(type, hex(bytes)), CapsuleError);
      assertEquals(error.message, message);
    });
  }
  await t.step("through the streaming parser too", () => {
    const parser = new CapsuleParser();
    parser.push(hex("02 00"));
    assertThrows(
      () => parser.next(),
      CapsuleError,
      "Cannot parse ADDRESS_REQUEST capsule: no requested addresses",
    );
  });
});

Deno.test("parseCapsuleValue() accepts valid edge cases", async (t) => {
  await t.step("adjacent ranges that do not overlap", () => {
    const capsule = parseCapsuleValue(
      CAPSULE_ROUTE_ADVERTISEMENT,
      hex("04 c6120000 c61200ff 00  04 c6120100 c61201ff 00"),
    );
    assertEquals(capsule?.type, "route_advertisement");
  });
  await t.step("overlapping ranges for different protocols", () => {
    const capsule = parseCapsuleValue(
      CAPSULE_ROUTE_ADVERTISEMENT,
      hex("04 00000000 ffffffff 06  04 00000000 ffffffff 11"),
    );
    assertEquals(capsule?.type, "route_advertisement");
  });
  await t.step("a single-address range", () => {
    assertEquals(
      parseCapsuleValue(CAPSULE_ROUTE_ADVERTISEMENT, hex("04 c6120001 c6120001 01")),
      { type: "route_advertisement", ranges: [range("198.18.0.1", "198.18.0.1", 1)] },
    );
  });
  await t.step("/0 prefix", () => {
    assertEquals(
      parseCapsuleValue(CAPSULE_ADDRESS_ASSIGN, hex("05 06 " + "00".repeat(16) + "00")),
      {
        type: "address_assign",
        addresses: [{ requestId: 5, prefix: parsePrefix("::/0") }],
      },
    );
  });
  await t.step("DATAGRAM payload is a view of the value", () => {
    const value = hex("00aabb");
    const capsule = parseCapsuleValue(CAPSULE_DATAGRAM, value);
    assert(capsule?.type === "datagram");
    assertStrictEquals(capsule.payload, value);
  });
  await t.step("control capsules do not alias the input", () => {
    const value = hex("00 04 c6120001 20");
    const capsule = parseCapsuleValue(CAPSULE_ADDRESS_ASSIGN, value);
    value[2] = 0;
    assert(capsule?.type === "address_assign");
    assertEquals(capsule.addresses[0].prefix.address, ip("198.18.0.1"));
  });
});

Deno.test("encodeCapsule() refuses to write malformed capsules", async (t) => {
  const cases: [string, Capsule, string][] = [
    [
      "empty ADDRESS_REQUEST",
      { type: "address_request", addresses: [] },
      "Cannot encode ADDRESS_REQUEST capsule: no requested addresses",
    ],
    [
      "request ID 0",
      { type: "address_request", addresses: [{ requestId: 0, prefix: parsePrefix("::/0") }] },
      "Cannot encode ADDRESS_REQUEST capsule: address 0 has request ID 0",
    ],
    [
      "negative request ID",
      { type: "address_assign", addresses: [{ requestId: -1, prefix: parsePrefix("::/0") }] },
      "Cannot encode ADDRESS_ASSIGN capsule: address 0 has request ID -1",
    ],
    [
      "host bits",
      {
        type: "address_assign",
        addresses: [{
          requestId: 0,
          prefix: { version: 4, address: ip("10.0.0.1"), prefixLength: 8 },
        }],
      },
      "Cannot encode ADDRESS_ASSIGN capsule: address 0 10.0.0.1 has bits set past prefix length 8",
    ],
    [
      "address length does not match version",
      {
        type: "address_assign",
        addresses: [{
          requestId: 0,
          prefix: { version: 6, address: ip("10.0.0.1"), prefixLength: 8 },
        }],
      },
      "Cannot encode ADDRESS_ASSIGN capsule: address 0 has a 4-byte address for IPv6",
    ],
    [
      "prefix too long",
      {
        type: "address_assign",
        addresses: [{
          requestId: 0,
          prefix: { version: 4, address: ip("10.0.0.1"), prefixLength: 40 },
        }],
      },
      "Cannot encode ADDRESS_ASSIGN capsule: address 0 prefix length 40 exceeds 32 bits of an IPv4 address",
    ],
    [
      "unsorted ranges",
      {
        type: "route_advertisement",
        ranges: [range("10.0.1.0", "10.0.1.255", 0), range("10.0.0.0", "10.0.0.255", 0)],
      },
      "Cannot encode ROUTE_ADVERTISEMENT capsule: range 1 starting at 10.0.0.0 is not sorted after range 0 starting at 10.0.1.0",
    ],
    [
      "IP protocol 256",
      { type: "route_advertisement", ranges: [range("10.0.0.0", "10.0.0.255", 256)] },
      "Cannot encode ROUTE_ADVERTISEMENT capsule: range 0 has IP protocol 256",
    ],
    [
      "mixed-version range",
      {
        type: "route_advertisement",
        ranges: [{ version: 4, start: ip("10.0.0.0"), end: ip("::1"), ipProtocol: 0 }],
      },
      "Cannot encode ROUTE_ADVERTISEMENT capsule: range 0 has a 16-byte address for IPv4",
    ],
  ];
  for (const [name, capsule, message] of cases) {
    await t.step(name, () => {
      const error = assertThrows(() => encodeCapsule(capsule), CapsuleError);
      assertEquals(error.message, message);
    });
  }
});

function randomAddress(random: Random, version: 4 | 6): Uint8Array {
  const out = new Uint8Array(version === 4 ? 4 : 16);
  random.fill(out);
  return out;
}

function randomCapsule(random: Random): Capsule {
  const kind = Math.floor(random() * 4);
  const count = Math.floor(random() * 4);
  const version = (): 4 | 6 => (random() < 0.5 ? 4 : 6);
  if (kind === 0) {
    const payload = new Uint8Array(Math.floor(random() * 300));
    random.fill(payload);
    return { type: "datagram", payload };
  }
  if (kind === 1 || kind === 2) {
    const addresses = Array.from({ length: kind === 2 ? count + 1 : count }, () => {
      const v = version();
      const prefix = createPrefix(
        randomAddress(random, v),
        Math.floor(random() * (v === 4 ? 33 : 129)),
      );
      const requestId = Math.floor(random() * 2 ** (random() * 40)) +
        (kind === 2 ? 1 : 0);
      return { requestId, prefix };
    });
    return kind === 1
      ? { type: "address_assign", addresses }
      : { type: "address_request", addresses };
  }
  // Sorted, non-overlapping: cut one random address space into pieces.
  const ranges: IpAddressRange[] = [];
  for (const v of [4, 6] as const) {
    for (const proto of [0, 6, 17]) {
      if (random() < 0.5) continue;
      const points = Array.from({ length: 4 }, () => randomAddress(random, v)).sort((a, b) => {
        for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
        return 0;
      });
      ranges.push({ version: v, start: points[0], end: points[1], ipProtocol: proto });
      if (points[2].some((b, i) => b !== points[1][i])) {
        ranges.push({ version: v, start: points[2], end: points[3], ipProtocol: proto });
      }
    }
  }
  return { type: "route_advertisement", ranges };
}

Deno.test("encodeCapsule() and CapsuleParser round trip random capsules", () =>
  fuzz((random) => {
    for (let round = 0; round < 300; round++) {
      const capsules = Array.from({ length: 1 + Math.floor(random() * 5) }, () =>
        randomCapsule(random));
      const stream = concat(...capsules.map(encodeCapsule));
      const chunk = 1 + Math.floor(random() * 64);
      assertEquals(parseAll(stream, chunk), capsules);
    }
  }));

Deno.test("CapsuleParser on random and mutated input throws only CapsuleError", () =>
  fuzz((random) => {
    const valid = concat(ASSIGN_V4, REQUEST_V6, ROUTES, DATAGRAM);
    for (let i = 0; i < 3000; i++) {
      let input: Uint8Array;
      if (i % 2 === 0) {
        input = new Uint8Array(Math.floor(random() * 120));
        random.fill(input);
      } else {
        input = valid.slice(0, Math.floor(random() * (valid.length + 1)));
        for (let m = 0; m < 1 + Math.floor(random() * 4); m++) {
          if (input.length > 0) {
            input[Math.floor(random() * input.length)] ^= 1 << Math.floor(random() * 8);
          }
        }
      }
      const parser = new CapsuleParser({ maxCapsuleSize: 1 + Math.floor(random() * 200) });
      try {
        parseAll(input, 1 + Math.floor(random() * 16), parser);
        parser.finish();
      } catch (error) {
        assert(error instanceof CapsuleError, `unexpected ${error}`);
        assert(error.message.startsWith("Cannot parse "), error.message);
      }
    }
  }));

Deno.test("CapsuleParser reassembles a full-size DATAGRAM capsule from 1-byte chunks", () => {
  const payload = Uint8Array.from({ length: DEFAULT_MAX_CAPSULE_SIZE }, (_, i) => i * 7);
  const stream = encodeCapsule({ type: "datagram", payload });
  const parser = new CapsuleParser();
  for (let i = 0; i < stream.length - 1; i++) {
    parser.push(stream.subarray(i, i + 1));
    assertStrictEquals(parser.next(), undefined);
  }
  parser.push(stream.subarray(stream.length - 1));
  assertEquals(parser.next(), { type: "datagram", payload });
  assert(parser.atCapsuleBoundary);
});

Deno.test("CapsuleParser keeps copies, not pushed chunks, between reads", async (t) => {
  await t.step("whole capsules in one chunk: payloads are views, nothing kept", () => {
    const budget = new ByteBudget(1 << 20);
    const parser = new CapsuleParser({ budget });
    const chunk = concat(DATAGRAM, DATAGRAM);
    parser.push(chunk);
    const a = parser.next();
    const b = parser.next();
    assert(a?.type === "datagram" && b?.type === "datagram");
    assertStrictEquals(a.payload.buffer, chunk.buffer);
    assertStrictEquals(b.payload.buffer, chunk.buffer);
    assertStrictEquals(parser.next(), undefined);
    assertEquals({ retained: parser.retainedBytes, used: budget.used }, { retained: 0, used: 0 });
  });
  await t.step("a 1400-byte DATAGRAM capsule trickled as 1-byte views of 64 KiB buffers", () => {
    const budget = new ByteBudget(1 << 20);
    const parser = new CapsuleParser({ budget });
    const payload = Uint8Array.from({ length: 1400 }, (_, i) => i * 5);
    const stream = encodeCapsule({ type: "datagram", payload });
    const pushedBuffers = new Set<ArrayBufferLike>();
    for (let i = 0; i < stream.length - 1; i++) {
      const read = new Uint8Array(65536);
      read[0] = stream[i];
      pushedBuffers.add(read.buffer);
      parser.push(read.subarray(0, 1));
      assertStrictEquals(parser.next(), undefined);
      assert(parser.retainedBytes <= Math.min(2 * (i + 1) + 64, 1400), `after ${i + 1} bytes`);
      assertEquals(budget.used, parser.retainedBytes);
    }
    parser.push(stream.subarray(stream.length - 1));
    const capsule = parser.next();
    assert(capsule?.type === "datagram");
    assertEquals(capsule.payload, payload);
    assert(!pushedBuffers.has(capsule.payload.buffer));
    assertEquals(budget.used, 0);
  });
  await t.step("past the budget: the budget's H3Error, sticky", () => {
    const budget = new ByteBudget(100);
    const parser = new CapsuleParser({ budget });
    // 00 DATAGRAM, 41 f4: length 500; 200 of its bytes
    parser.push(concat(hex("00 41f4"), new Uint8Array(200)));
    const error = assertThrows(
      () => parser.next(),
      H3Error,
      "Cannot buffer 200 more bytes for a partial capsule: 0 of 100 bytes already buffered on this connection",
    );
    assertEquals(error.code, H3_EXCESSIVE_LOAD);
    assertStrictEquals(assertThrows(() => parser.next(), H3Error), error);
    assertEquals(budget.used, 0);
  });
  await t.step("clear() and finish() give the storage back", () => {
    const budget = new ByteBudget(1 << 20);
    const parser = new CapsuleParser({ budget });
    parser.push(hex("00 10 0045")); // DATAGRAM, length 16, 2 of 16 value bytes
    assertStrictEquals(parser.next(), undefined);
    assertEquals(budget.used, 16);
    assertThrows(() => parser.finish(), CapsuleError, "stream ended inside a capsule value");
    assertEquals(budget.used, 0);
    const other = new CapsuleParser({ budget });
    other.push(hex("00 10 0045"));
    assertStrictEquals(other.next(), undefined);
    other.clear();
    assertEquals(budget.used, 0);
  });
});
