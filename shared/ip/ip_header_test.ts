import {
  assert,
  assertEquals,
  assertStrictEquals,
  assertThrows,
} from "../../tests/support/assert.ts";
import { fuzz, hex, type Random } from "../../tests/support/bytes.ts";
import {
  buildIcmpv6Echo,
  buildIpv4,
  buildIpv4Udp,
  buildIpv6,
  buildIpv6Udp,
} from "../../tests/support/packet_builder.ts";
import { checksumIsValid } from "./checksum.ts";
import { parseIp, parsePrefix } from "./ip_address.ts";
import {
  addressKey,
  createIpv6Chain,
  decrementHopLimit,
  destinationIn,
  destinationInRange,
  destinationKey,
  hopLimit,
  ipCarriesProtocol,
  ipPacketLength,
  ipProtocol,
  ipv4FragmentOffset,
  ipv4MoreFragments,
  ipVersion,
  readDestination,
  readIpv6Chain,
  readSource,
  sourceIn,
  sourceKey,
  upperLayerOffset,
  validateIpPacket,
} from "./ip_header.ts";

const ip = (text: string) => parseIp(text)!;

// 198.18.0.1:1234 -> 198.18.0.2:5678, UDP payload "ping". Checksums worked by hand:
// IPv4 header words 4500+0020+0000+4000+4011+c612+0001+c612+0002 = 25158 -> 515a -> ~ = aea5.
// UDP: pseudo c612+0001+c612+0002+0011+000c + 04d2+162e+000c+7069+6e67 = 28620 -> 8622 -> ~ = 79dd.
const IPV4_UDP = hex(
  "45 00 0020" + // version 4, IHL 5; TOS 0; total length 32
    "0000 4000" + // identification 0; flags DF, fragment offset 0
    "40 11 aea5" + // TTL 64; protocol 17 (UDP); header checksum
    "c6120001 c6120002" + // source 198.18.0.1; destination 198.18.0.2
    "04d2 162e 000c 79dd" + // UDP ports 1234 -> 5678, length 12, checksum
    "70696e67", // "ping"
);

// fd00::1 -> fd00::2 ICMPv6 Echo Request. Checksum: pseudo-header fd00+0001+fd00+0002+0008+003a
// = fa46, + 8000 + 1234 + 0001 = 18c7b -> 8c7c -> ~ = 7383.
const IPV6_ECHO = hex(
  "60000000" + // version 6, traffic class 0, flow label 0
    "0008 3a 40" + // payload length 8; next header 58 (ICMPv6); hop limit 64
    "fd000000000000000000000000000001" + // source fd00::1
    "fd000000000000000000000000000002" + // destination fd00::2
    "80 00 7383 1234 0001", // type 128 Echo Request, code 0, checksum, identifier, sequence
);

Deno.test("packet builders reproduce the hand-built packets", () => {
  assertEquals(
    buildIpv4Udp({
      src: "198.18.0.1",
      dst: "198.18.0.2",
      srcPort: 1234,
      dstPort: 5678,
      payload: "ping",
    }),
    IPV4_UDP,
  );
  assertEquals(
    buildIcmpv6Echo({ src: "fd00::1", dst: "fd00::2", identifier: 0x1234, sequence: 1 }),
    IPV6_ECHO,
  );
});

Deno.test("ip_header reads every field of a hand-built IPv4 UDP packet", () => {
  assertStrictEquals(validateIpPacket(IPV4_UDP), undefined);
  assertStrictEquals(ipVersion(IPV4_UDP), 4);
  assertStrictEquals(ipProtocol(IPV4_UDP), 17);
  assertStrictEquals(upperLayerOffset(IPV4_UDP), 20);
  assertStrictEquals(ipPacketLength(IPV4_UDP), 32);
  assertStrictEquals(hopLimit(IPV4_UDP), 64);
  assertEquals(readSource(IPV4_UDP), ip("198.18.0.1"));
  assertEquals(readDestination(IPV4_UDP), ip("198.18.0.2"));
  // 0xc6120002 as a signed 32-bit integer.
  assertStrictEquals(destinationKey(IPV4_UDP), 0xc6120002 | 0);
  assertStrictEquals(sourceKey(IPV4_UDP), 0xc6120001 | 0);
  assert(ipCarriesProtocol(IPV4_UDP, 17));
  assert(!ipCarriesProtocol(IPV4_UDP, 6));
});

Deno.test("ip_header reads every field of a hand-built IPv6 ICMPv6 packet", () => {
  assertStrictEquals(validateIpPacket(IPV6_ECHO), undefined);
  assertStrictEquals(ipVersion(IPV6_ECHO), 6);
  assertStrictEquals(ipProtocol(IPV6_ECHO), 58);
  assertStrictEquals(upperLayerOffset(IPV6_ECHO), 40);
  assertStrictEquals(ipPacketLength(IPV6_ECHO), 48);
  assertStrictEquals(hopLimit(IPV6_ECHO), 64);
  assertEquals(readSource(IPV6_ECHO), ip("fd00::1"));
  assertEquals(readDestination(IPV6_ECHO), ip("fd00::2"));
  assertStrictEquals(destinationKey(IPV6_ECHO), String.fromCharCode(0xfd00, 0, 0, 0, 0, 0, 0, 2));
});

Deno.test("readSource() returns a view that shares the packet's memory", () => {
  const packet = IPV4_UDP.slice();
  const source = readSource(packet);
  packet[15] = 9;
  assertEquals(source, ip("198.18.0.9"));
});

Deno.test("validateIpPacket() gives exact drop reasons", async (t) => {
  const cases: [string, Uint8Array, string][] = [
    ["empty", new Uint8Array(0), "empty packet"],
    ["version 5", hex("50"), "unknown IP version 5"],
    ["version 0", new Uint8Array(40), "unknown IP version 0"],
    ["IPv4 12 bytes", IPV4_UDP.subarray(0, 12), "truncated IPv4 header: 12 bytes, need 20"],
    ["IPv6 39 bytes", IPV6_ECHO.subarray(0, 39), "truncated IPv6 header: 39 bytes, need 40"],
  ];
  for (const [name, packet, reason] of cases) {
    await t.step(name, () => assertStrictEquals(validateIpPacket(packet), reason));
  }
  await t.step("IHL 4 is below the 20-byte minimum", () => {
    const packet = IPV4_UDP.slice();
    packet[0] = 0x44;
    assertStrictEquals(validateIpPacket(packet), "bad IHL 4: header shorter than 20 bytes");
  });
  await t.step("IHL 15 (60 bytes) is longer than the 32-byte packet", () => {
    const packet = IPV4_UDP.slice();
    packet[0] = 0x4f;
    assertStrictEquals(validateIpPacket(packet), "bad IHL 15: header 60 exceeds packet 32");
  });
  await t.step("total length shorter than the header", () => {
    const packet = buildIpv4({
      src: "198.18.0.1",
      dst: "198.18.0.2",
      protocol: 17,
      payload: new Uint8Array(8),
    });
    packet[2] = 0;
    packet[3] = 16;
    assertStrictEquals(validateIpPacket(packet), "total length 16 shorter than header 20");
  });
  await t.step("IPv4 total length 1500 in a 1400-byte packet", () => {
    const packet = buildIpv4({
      src: "198.18.0.1",
      dst: "198.18.0.2",
      protocol: 17,
      payload: new Uint8Array(1500 - 20),
    });
    assertStrictEquals(
      validateIpPacket(packet.subarray(0, 1400)),
      "total length 1500 exceeds packet 1400",
    );
  });
  await t.step("IPv6 payload length 1460 in a 1400-byte packet", () => {
    const packet = buildIpv6({
      src: "fd00::1",
      dst: "fd00::2",
      nextHeader: 17,
      payload: new Uint8Array(1460),
    });
    assertStrictEquals(
      validateIpPacket(packet.subarray(0, 1400)),
      "total length 1500 exceeds packet 1400",
    );
  });
  await t.step("IPv4 header checksum off by one", () => {
    const packet = IPV4_UDP.slice();
    packet[11] ^= 1;
    assertStrictEquals(validateIpPacket(packet), "bad IPv4 header checksum");
  });
});

Deno.test("validateIpPacket() accepts edge cases", async (t) => {
  await t.step("trailing bytes after the total length", () => {
    const padded = new Uint8Array(IPV4_UDP.length + 6);
    padded.set(IPV4_UDP);
    assertStrictEquals(validateIpPacket(padded), undefined);
    assertStrictEquals(ipPacketLength(padded), 32);
  });
  await t.step("IPv4 header alone (total length 20)", () => {
    const packet = buildIpv4({
      src: "0.0.0.0",
      dst: "255.255.255.255",
      protocol: 253,
      payload: new Uint8Array(0),
    });
    assertStrictEquals(validateIpPacket(packet), undefined);
  });
  await t.step("IPv4 with 4 bytes of options (IHL 6)", () => {
    // Option 0x94 Router Alert (RFC 2113), length 4, value 0.
    const packet = buildIpv4({
      src: "198.18.0.1",
      dst: "198.18.0.2",
      protocol: 2,
      payload: new Uint8Array(8),
      options: hex("94040000"),
    });
    assertStrictEquals(packet[0], 0x46);
    assertStrictEquals(validateIpPacket(packet), undefined);
    assertStrictEquals(upperLayerOffset(packet), 24);
    assertStrictEquals(ipProtocol(packet), 2);
  });
  await t.step("IPv6 with an empty payload", () => {
    const packet = buildIpv6({
      src: "::",
      dst: "ff02::1",
      nextHeader: 59,
      payload: new Uint8Array(0),
    });
    assertStrictEquals(validateIpPacket(packet), undefined);
    assertStrictEquals(ipProtocol(packet), 59);
  });
});

/** An extension header in the RFC 6564 uniform format, `units` 8-byte units long. */
function extension(nextHeader: number, units = 1): Uint8Array {
  const header = new Uint8Array(units * 8);
  header[0] = nextHeader;
  header[1] = units - 1;
  return header;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

Deno.test("ipProtocol() walks IPv6 extension headers", async (t) => {
  const udp = hex("04d2 162e 0008 0000");
  const v6 = (nextHeader: number, ...parts: Uint8Array[]) =>
    buildIpv6({ src: "fd00::1", dst: "fd00::2", nextHeader, payload: concat(...parts) });

  await t.step("Hop-by-Hop (8) -> Fragment (8) -> UDP", () => {
    // Fragment header: next header 17, reserved, offset 0 / M=1, identification.
    const packet = v6(0, extension(44), hex("11 00 0001 00000001"), udp);
    assertStrictEquals(ipProtocol(packet), 17);
    assertStrictEquals(upperLayerOffset(packet), 56);
    assert(ipCarriesProtocol(packet, 17));
    assert(ipCarriesProtocol(packet, 44), "the Fragment header is in the chain");
    assert(ipCarriesProtocol(packet, 0), "the Hop-by-Hop header is in the chain");
    assert(!ipCarriesProtocol(packet, 6));
    assert(!ipCarriesProtocol(packet, 60));
  });
  await t.step("Destination Options of 24 bytes -> TCP", () => {
    const packet = v6(60, extension(6, 3), new Uint8Array(20));
    assertStrictEquals(ipProtocol(packet), 6);
    assertStrictEquals(upperLayerOffset(packet), 64);
  });
  await t.step("Routing -> Authentication Header (payload len 4 = 24 bytes) -> ICMPv6", () => {
    const ah = new Uint8Array(24);
    ah[0] = 58;
    ah[1] = 4; // (4 + 2) * 4 = 24 bytes (RFC 4302 §2.2)
    const packet = v6(43, extension(51), ah, hex("80000000 00000000"));
    assertStrictEquals(ipProtocol(packet), 58);
    assertStrictEquals(upperLayerOffset(packet), 40 + 8 + 24);
  });
  await t.step("ESP (50) ends the walk: its payload is encrypted", () => {
    assertStrictEquals(ipProtocol(v6(0, extension(50), new Uint8Array(16))), 50);
  });
  await t.step("a chain running past the packet gives -1", () => {
    const packet = v6(0, extension(60, 1), hex("11 05")); // Destination Options claims 48 bytes
    assertStrictEquals(validateIpPacket(packet), undefined);
    assertStrictEquals(ipProtocol(packet), -1);
    assertStrictEquals(upperLayerOffset(packet), -1);
    assert(ipCarriesProtocol(packet, 60), "headers before the break still count");
    assert(!ipCarriesProtocol(packet, 17));
  });
  await t.step("a Fragment header cut short gives -1", () => {
    assertStrictEquals(ipProtocol(v6(44, hex("1100"))), -1);
  });
  await t.step("8 extension headers are walked, 9 are too many", () => {
    const chain = (n: number) =>
      Array.from({ length: n }, (_, i) => extension(i === n - 1 ? 17 : 60));
    assertStrictEquals(ipProtocol(v6(60, ...chain(8), udp)), 17);
    assertStrictEquals(ipProtocol(v6(60, ...chain(9), udp)), -1);
  });
});

Deno.test("address matching reads the header in place", async (t) => {
  await t.step("destinationIn() with byte-aligned, partial-byte and zero lengths", () => {
    assert(destinationIn(IPV4_UDP, parsePrefix("198.18.0.0/15")));
    assert(destinationIn(IPV4_UDP, parsePrefix("198.18.0.2/32")));
    assert(!destinationIn(IPV4_UDP, parsePrefix("198.18.0.3/32")));
    assert(destinationIn(IPV4_UDP, parsePrefix("0.0.0.0/0")));
    assert(!destinationIn(IPV4_UDP, parsePrefix("::/0")), "other version never matches");
    assert(!destinationIn(IPV4_UDP, parsePrefix("198.16.0.0/15")));
    assert(destinationIn(IPV6_ECHO, parsePrefix("fd00::/8")));
    assert(destinationIn(IPV6_ECHO, parsePrefix("fd00::2/127")));
    assert(!destinationIn(IPV6_ECHO, parsePrefix("fd00::/127")));
  });
  await t.step("/15 boundaries: 198.19.255.255 in, 198.20.0.0 and 198.17.255.255 out", () => {
    const prefix = parsePrefix("198.18.0.0/15");
    const to = (dst: string) =>
      buildIpv4({ src: "10.0.0.1", dst, protocol: 17, payload: new Uint8Array(0) });
    assert(destinationIn(to("198.19.255.255"), prefix));
    assert(!destinationIn(to("198.20.0.0"), prefix));
    assert(!destinationIn(to("198.17.255.255"), prefix));
  });
  await t.step("sourceIn()", () => {
    assert(sourceIn(IPV6_ECHO, parsePrefix("fd00::/64")));
    assert(!sourceIn(IPV6_ECHO, parsePrefix("fd01::/64")));
  });
  await t.step("destinationInRange() is inclusive", () => {
    assert(destinationInRange(IPV4_UDP, ip("198.18.0.2"), ip("198.18.0.2")));
    assert(destinationInRange(IPV4_UDP, ip("198.18.0.0"), ip("198.18.0.255")));
    assert(!destinationInRange(IPV4_UDP, ip("198.18.0.3"), ip("198.18.0.255")));
    assert(!destinationInRange(IPV4_UDP, ip("198.18.0.0"), ip("198.18.0.1")));
    assert(!destinationInRange(IPV4_UDP, ip("::"), ip("ffff::")));
    assert(destinationInRange(IPV6_ECHO, ip("fd00::"), ip("fd00::ffff")));
    assert(!destinationInRange(IPV6_ECHO, ip("fd00::3"), ip("fd00::ffff")));
  });
  await t.step("a packet too short for its header never matches", () => {
    const short = IPV4_UDP.subarray(0, 10);
    assert(!sourceIn(short, parsePrefix("0.0.0.0/0")));
    assert(!destinationIn(short, parsePrefix("0.0.0.0/0")));
    assertStrictEquals(readSource(short).length, 0);
    assertStrictEquals(destinationKey(short), "");
    assertStrictEquals(destinationKey(new Uint8Array(0)), "");
  });
});

Deno.test("destinationKey() equals addressKey() and tells addresses apart", (t) =>
  fuzz(async (random) => {
    await t.step("IPv4 and IPv6 packets against their addresses", () => {
      assertStrictEquals(destinationKey(IPV4_UDP), addressKey(ip("198.18.0.2")));
      assertStrictEquals(destinationKey(IPV6_ECHO), addressKey(ip("fd00::2")));
      assertStrictEquals(addressKey(ip("0.0.0.1")), 1);
      assertStrictEquals(addressKey(ip("255.255.255.255")), -1);
    });
    await t.step("random addresses: keys equal exactly when addresses are equal", () => {
      const seen = new Map<number | string, string>();
      for (let i = 0; i < 5000; i++) {
        const v4 = i % 2 === 0;
        const address = random.fill(new Uint8Array(v4 ? 4 : 16));
        if (i % 10 === 1) address.fill(0, 2); // many addresses sharing a prefix
        const packet = v4
          ? buildIpv4({ src: "10.0.0.1", dst: address, protocol: 17, payload: new Uint8Array(0) })
          : buildIpv6({ src: "fd00::1", dst: address, nextHeader: 17, payload: new Uint8Array(0) });
        const key = destinationKey(packet);
        assertStrictEquals(key, addressKey(address));
        const text = address.join(".");
        const previous = seen.get(key);
        assert(previous === undefined || previous === text, `${text} and ${previous} share a key`);
        seen.set(key, text);
      }
    });
    await t.step("addressKey() rejects other lengths", () => {
      assertThrows(
        () => addressKey(new Uint8Array(5)),
        RangeError,
        "Cannot make address key: length 5 is not 4 or 16",
      );
    });
  }));

Deno.test("decrementHopLimit() patches the IPv4 checksum and refuses TTL 1", async (t) => {
  await t.step("IPv4 TTL 64 -> 63 with a still valid header checksum", () => {
    const packet = IPV4_UDP.slice();
    assert(decrementHopLimit(packet));
    assertStrictEquals(packet[8], 63);
    assert(checksumIsValid(packet, 0, 20));
    assertStrictEquals(validateIpPacket(packet), undefined);
  });
  await t.step("IPv4 down to 1, then refused without change", () => {
    const packet = buildIpv4Udp({
      src: "198.18.0.1",
      dst: "198.18.0.2",
      srcPort: 1,
      dstPort: 2,
      ttl: 255,
    });
    for (let ttl = 254; ttl >= 1; ttl--) {
      assert(decrementHopLimit(packet));
      assertStrictEquals(packet[8], ttl);
      assert(checksumIsValid(packet, 0, 20), `checksum after TTL ${ttl}`);
    }
    const before = packet.slice();
    assert(!decrementHopLimit(packet));
    assertEquals(packet, before);
  });
  await t.step("IPv6 hop limit 2 -> 1 -> refused; 0 refused", () => {
    const packet = buildIpv6Udp({ src: "fd00::1", dst: "fd00::2", srcPort: 1, dstPort: 2, ttl: 2 });
    assert(decrementHopLimit(packet));
    assertStrictEquals(hopLimit(packet), 1);
    assert(!decrementHopLimit(packet));
    packet[7] = 0;
    assert(!decrementHopLimit(packet));
  });
  await t.step("garbage is refused", () => assert(!decrementHopLimit(hex("50"))));
});

function randomLength(random: Random, max: number): number {
  return random.int(max + 1);
}

Deno.test("ipv4FragmentOffset() and ipv4MoreFragments() read the flags word", () => {
  // Flags/offset word 2 0b1 0000 0000 0011: More Fragments, offset 3 (24 bytes).
  const fragment = hex(
    "45 00 001c 1234 2003 40 11 0000 c6120001 c6120002 0000000000000000",
  );
  assertStrictEquals(ipv4FragmentOffset(fragment), 3);
  assertStrictEquals(ipv4MoreFragments(fragment), true);
  assertStrictEquals(ipv4FragmentOffset(IPV4_UDP), 0, "DF only");
  assertStrictEquals(ipv4MoreFragments(IPV4_UDP), false);
  const last = fragment.slice();
  last.set([0x1f, 0xff], 6); // offset 8191, no flags
  assertStrictEquals(ipv4FragmentOffset(last), 8191);
  assertStrictEquals(ipv4MoreFragments(last), false);
  assertStrictEquals(ipv4FragmentOffset(IPV6_ECHO), 0, "not IPv4");
  assertStrictEquals(ipv4MoreFragments(IPV6_ECHO), false);
});

Deno.test("readIpv6Chain() reports the chain's headers, fragment and upper layer", async (t) => {
  const chain = createIpv6Chain();
  const udp = hex("04d2 162e 0008 0000");
  const v6 = (nextHeader: number, ...parts: Uint8Array[]) =>
    buildIpv6({ src: "fd00::1", dst: "fd00::2", nextHeader, payload: concat(...parts) });

  await t.step("no extension headers", () => {
    assert(readIpv6Chain(IPV6_ECHO, chain));
    assertEquals({ ...chain }, {
      protocol: 58,
      offset: 40,
      hopByHop: false,
      routingType: -1,
      routingSegmentsLeft: 0,
      fragment: false,
      fragmentOffset: 0,
      moreFragments: false,
      fragmentDataLength: 0,
    });
  });
  await t.step("Hop-by-Hop -> Routing type 4, 2 left -> first Fragment, M -> UDP", () => {
    // Routing: next 44, length 0 (8 bytes), type 4, segments left 2, 4 bytes of data.
    // Fragment: next 17, reserved, offset 0 with M=1 (0001), identification 7.
    const packet = v6(
      0,
      extension(43),
      hex("2c 00 04 02 00000000"),
      hex("11 00 0001 00000007"),
      udp,
    );
    assert(readIpv6Chain(packet, chain));
    assertEquals({ ...chain }, {
      protocol: 17,
      offset: 64,
      hopByHop: true,
      routingType: 4,
      routingSegmentsLeft: 2,
      fragment: true,
      fragmentOffset: 0,
      moreFragments: true,
      fragmentDataLength: 8,
    });
  });
  await t.step("a later fragment stops at its Fragment header", () => {
    // Fragment: next 60 (the fragmented packet went on with Destination Options), offset 5 (0028).
    const packet = v6(44, hex("3c 00 0028 00000007"), hex("ff ff"), new Uint8Array(14));
    assert(readIpv6Chain(packet, chain));
    assertEquals(
      [chain.protocol, chain.offset, chain.fragmentOffset, chain.moreFragments],
      [60, 48, 5, false],
    );
    assertEquals(chain.fragmentDataLength, 16);
  });
  await t.step("trailing bytes after the Payload Length are not walked", () => {
    const packet = concat(v6(60, hex("11 05")), new Uint8Array(48));
    assertStrictEquals(validateIpPacket(packet), undefined);
    assert(!readIpv6Chain(packet, chain), "the 48-byte header ends after the packet");
  });
  const bad: [string, Uint8Array][] = [
    ["Hop-by-Hop after Destination Options", v6(60, extension(0), extension(17), udp)],
    ["two Routing headers", v6(43, hex("2b 00 04 00 00000000"), hex("11 00 04 00 00000000"), udp)],
    ["two Fragment headers", v6(44, hex("2c 00 0000 00000001"), hex("11 00 0000 00000001"), udp)],
    [
      "9 headers",
      v6(60, ...Array.from({ length: 9 }, (_, i) => extension(i === 8 ? 17 : 60)), udp),
    ],
    ["a Fragment header cut short", v6(44, hex("1100"))],
    ["not IPv6", IPV4_UDP],
  ];
  for (const [name, packet] of bad) {
    await t.step(`false for ${name}`, () => assert(!readIpv6Chain(packet, chain)));
  }
});

Deno.test("validateIpPacket() and the readers never throw on random and mutated bytes", () =>
  fuzz((random) => {
    const chain = createIpv6Chain();
    const seeds = [
      IPV4_UDP,
      IPV6_ECHO,
      buildIpv6({
        src: "fd00::1",
        dst: "fd00::2",
        nextHeader: 0,
        payload: concat(extension(44), hex("11000000 00000001"), new Uint8Array(8)),
      }),
    ];
    let accepted = 0;
    for (let i = 0; i < 5000; i++) {
      let packet: Uint8Array;
      if (i % 2 === 0) {
        packet = random.fill(new Uint8Array(randomLength(random, 80)));
        if (i % 4 === 0 && packet.length > 0) {
          packet[0] = (packet[0] & 0x0f) | (i % 8 === 0 ? 0x40 : 0x60);
        }
      } else {
        packet = seeds[i % seeds.length].slice(0, randomLength(random, 80));
        for (let m = randomLength(random, 3); m > 0 && packet.length > 0; m--) {
          packet[randomLength(random, packet.length - 1)] = randomLength(random, 255);
        }
      }
      const reason = validateIpPacket(packet);
      // Every reader must be total, valid packet or not.
      ipVersion(packet);
      ipProtocol(packet);
      upperLayerOffset(packet);
      ipCarriesProtocol(packet, 17);
      destinationKey(packet);
      sourceKey(packet);
      hopLimit(packet);
      ipv4FragmentOffset(packet);
      ipv4MoreFragments(packet);
      const walked = readIpv6Chain(packet, chain);
      if (walked && reason === undefined) {
        assert(chain.offset <= ipPacketLength(packet), `chain offset ${chain.offset}`);
      }
      readSource(packet);
      destinationIn(packet, parsePrefix("fd00::/8"));
      destinationInRange(packet, ip("0.0.0.0"), ip("255.255.255.255"));
      if (reason === undefined) {
        accepted++;
        const length = ipVersion(packet) === 4 ? 4 : 16;
        assertStrictEquals(readSource(packet).length, length);
        assertStrictEquals(readDestination(packet).length, length);
        assert(ipPacketLength(packet) <= packet.length);
        const offset = upperLayerOffset(packet);
        assert(offset === -1 || offset <= packet.length, `offset ${offset} of ${packet.length}`);
      } else {
        assertStrictEquals(typeof reason, "string");
      }
      decrementHopLimit(packet);
    }
    assert(
      accepted > 100,
      `only ${accepted} packets were valid; the fuzz is not reaching the readers`,
    );
  }));
