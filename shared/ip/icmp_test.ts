import { assert, assertEquals, assertStrictEquals } from "../../tests/support/assert.ts";
import { fuzz, hex } from "../../tests/support/bytes.ts";
import {
  buildIcmpv4Echo,
  buildIcmpv6Echo,
  buildIpv4,
  buildIpv4Udp,
  buildIpv6,
  buildIpv6Udp,
} from "../../tests/support/packet_builder.ts";
import { checksumIsValid, internetChecksum, ipPseudoHeaderSum } from "./checksum.ts";
import { parseIp } from "./ip_address.ts";
import { buildDestinationUnreachable, buildPacketTooBig } from "./icmp.ts";
import { ipProtocol, readDestination, readSource, validateIpPacket } from "./ip_header.ts";

const ip = (text: string) => parseIp(text)!;

// The hand-built packets of ip_header_test.ts.
const IPV4_UDP = hex(
  "45000020 00004000 4011aea5 c6120001 c6120002" + // 198.18.0.1 -> 198.18.0.2, DF, UDP
    "04d2162e 000c79dd 70696e67", // 1234 -> 5678, "ping"
);
const IPV6_ECHO = hex(
  "60000000 00083a40 fd000000000000000000000000000001 fd000000000000000000000000000002" +
    "80007383 12340001", // Echo Request, id 0x1234, seq 1
);

/** Checks every checksum of an ICMP error packet by recomputing it. */
function assertChecksumsValid(packet: Uint8Array): void {
  assertStrictEquals(validateIpPacket(packet), undefined);
  if (packet[0] >> 4 === 4) {
    assert(checksumIsValid(packet, 0, 20), "IPv4 header checksum");
    assert(checksumIsValid(packet, 20), "ICMP checksum");
  } else {
    const pseudo = ipPseudoHeaderSum(packet, 58, packet.length - 40);
    assert(checksumIsValid(packet, 40, packet.length, pseudo), "ICMPv6 checksum");
  }
}

Deno.test("buildPacketTooBig() answers IPv4 with a hand-worked Fragmentation Needed", () => {
  // IP header words 4500+003c+0000+0000+4001+c000+0201+c612+0001 = 20d51 -> 0d53 -> ~ = f2ac.
  // ICMP words 0304 + 0000(checksum) + 0000 + 0500, plus the quoted packet: its IPv4 header
  // sums to ffff, its UDP part 04d2+162e+000c+79dd+7069+6e67 = 173b9.
  // 0804 + ffff + 173b9 = 27bbc -> 7bbe -> ~ = 8441.
  const expected = hex(
    "45 00 003c" + // version 4, IHL 5, TOS 0, total length 60
      "0000 0000" + // identification 0, no flags
      "40 01 f2ac" + // TTL 64, protocol ICMP, header checksum
      "c0000201 c6120001" + // from 192.0.2.1 to the original source 198.18.0.1
      "03 04 8441" + // type 3 Destination Unreachable, code 4 Fragmentation Needed, checksum
      "0000 0500", // unused, Next-Hop MTU 1280 (RFC 1191 §4)
  );
  const answer = buildPacketTooBig(IPV4_UDP, 1280, ip("192.0.2.1"));
  assertEquals(answer, new Uint8Array([...expected, ...IPV4_UDP]));
  assertChecksumsValid(answer!);
});

Deno.test("buildPacketTooBig() answers IPv6 with a hand-worked Packet Too Big", () => {
  // Pseudo-header fd00+00ff + fd00+0001 + 0038 + 003a = 1fb72. ICMPv6 words 0200 + 0000 +
  // 0000 + 0500 = 0700. Quoted packet: 6000+0008+3a40 + fd00+0001 + fd00+0002 + 8000+7383+1234+0001
  // = 39a03. Total 59c75 -> 9c7a -> ~ = 6385.
  const expected = hex(
    "60000000" + // version 6, traffic class 0, flow label 0
      "0038 3a 40" + // payload length 56, next header ICMPv6, hop limit 64
      "fd0000000000000000000000000000ff" + // from fd00::ff
      "fd000000000000000000000000000001" + // to the original source fd00::1
      "02 00 6385" + // type 2 Packet Too Big, code 0, checksum
      "00000500", // MTU 1280
  );
  const answer = buildPacketTooBig(IPV6_ECHO, 1280, ip("fd00::ff"));
  assertEquals(answer, new Uint8Array([...expected, ...IPV6_ECHO]));
  assertChecksumsValid(answer!);
});

Deno.test("buildPacketTooBig() quotes as much as fits in the minimum MTU", async (t) => {
  await t.step("IPv4: 1500-byte packet -> 576-byte answer quoting 548 bytes", () => {
    const original = buildIpv4Udp({
      src: "198.18.0.7",
      dst: "203.0.113.9",
      srcPort: 4000,
      dstPort: 443,
      payload: new Uint8Array(1500 - 28).fill(0xab),
    });
    const answer = buildPacketTooBig(original, 1400, ip("198.18.0.1"))!;
    assertStrictEquals(answer.length, 576);
    assertEquals(answer.subarray(28), original.subarray(0, 548));
    assertEquals(readDestination(answer), ip("198.18.0.7"));
    assertEquals(readSource(answer), ip("198.18.0.1"));
    assertEquals(answer.subarray(26, 28), hex("0578")); // Next-Hop MTU 1400
    assertChecksumsValid(answer);
  });
  await t.step("IPv6: 1500-byte packet -> 1280-byte answer quoting 1232 bytes", () => {
    const original = buildIpv6Udp({
      src: "fd00::7",
      dst: "2001:db8::9",
      srcPort: 4000,
      dstPort: 443,
      payload: new Uint8Array(1500 - 48).fill(0xcd),
    });
    const answer = buildPacketTooBig(original, 1400, ip("fd00::1"))!;
    assertStrictEquals(answer.length, 1280);
    assertEquals(answer.subarray(48), original.subarray(0, 1232));
    assertEquals(answer.subarray(44, 48), hex("00000578"));
    assertChecksumsValid(answer);
  });
  await t.step("trailing bytes after the total length are not quoted", () => {
    const padded = new Uint8Array(IPV4_UDP.length + 10).fill(0xee);
    padded.set(IPV4_UDP);
    assertEquals(buildPacketTooBig(padded, 1280, ip("192.0.2.1"))!.subarray(28), IPV4_UDP);
  });
});

Deno.test("buildPacketTooBig() stays silent where the RFCs forbid an answer", async (t) => {
  const from4 = ip("192.0.2.1");
  const from6 = ip("fd00::ff");
  const v4 = (src: string, dst: string, dontFragment = true) =>
    buildIpv4Udp({ src, dst, srcPort: 1, dstPort: 2, payload: "x", dontFragment });
  const v6 = (src: string, dst: string) =>
    buildIpv6Udp({ src, dst, srcPort: 1, dstPort: 2, payload: "x" });
  const silent: [string, Uint8Array, Uint8Array][] = [
    ["IPv4 without DF (may be fragmented)", v4("198.18.0.1", "8.8.8.8", false), from4],
    ["IPv4 from 0.0.0.0", v4("0.0.0.0", "8.8.8.8"), from4],
    ["IPv4 from loopback", v4("127.0.0.1", "8.8.8.8"), from4],
    ["IPv4 from multicast", v4("224.0.0.5", "8.8.8.8"), from4],
    ["IPv4 from 255.255.255.255", v4("255.255.255.255", "8.8.8.8"), from4],
    ["IPv4 to multicast", v4("198.18.0.1", "239.1.2.3"), from4],
    ["IPv4 to limited broadcast", v4("198.18.0.1", "255.255.255.255"), from4],
    ["IPv6 from ::", v6("::", "2001:db8::1"), from6],
    ["IPv6 from ::1", v6("::1", "2001:db8::1"), from6],
    ["IPv6 from multicast", v6("ff02::1", "2001:db8::1"), from6],
    ["malformed original", IPV4_UDP.subarray(0, 19), from4],
    ["from of the wrong version", IPV4_UDP, from6],
    ["IPv6 with from of the wrong version", IPV6_ECHO, from4],
  ];
  for (const [name, packet, from] of silent) {
    await t.step(name, () => assertStrictEquals(buildPacketTooBig(packet, 1280, from), undefined));
  }
  await t.step("IPv4 ICMP errors are not answered, echo requests are", () => {
    for (const type of [3, 4, 5, 11, 12]) {
      const icmp = hex("00000000 00000000");
      icmp[0] = type;
      const packet = buildIpv4({ src: "198.18.0.1", dst: "8.8.8.8", protocol: 1, payload: icmp });
      assertStrictEquals(buildPacketTooBig(packet, 576, from4), undefined, `type ${type}`);
    }
    const echo = buildIcmpv4Echo({ src: "198.18.0.1", dst: "8.8.8.8" });
    assert(buildPacketTooBig(echo, 576, from4) !== undefined);
  });
  await t.step("an ICMPv6 error (type < 128) behind a Hop-by-Hop header is not answered", () => {
    const packet = buildIpv6({
      src: "fd00::1",
      dst: "2001:db8::1",
      nextHeader: 0,
      payload: hex("3a000000 00000000" + "01040000 00000000"), // HBH -> ICMPv6 type 1
    });
    assertStrictEquals(ipProtocol(packet), 58);
    assertStrictEquals(buildPacketTooBig(packet, 1280, from6), undefined);
    packet[48] = 128; // now an Echo Request
    assert(buildPacketTooBig(packet, 1280, from6) !== undefined);
  });
  await t.step("an IPv4 later fragment is not answered", () => {
    const packet = v4("198.18.0.1", "8.8.8.8");
    packet[7] = 0x10; // fragment offset 16 (x 8 bytes), DF still set
    packet[10] = packet[11] = 0;
    const checksum = internetChecksum(packet, 0, 20);
    packet[10] = checksum >> 8;
    packet[11] = checksum & 0xff;
    assertStrictEquals(validateIpPacket(packet), undefined);
    assertStrictEquals(buildPacketTooBig(packet, 576, from4), undefined);
    packet[7] = 0; // the first fragment (offset 0) is answered
    packet[10] = packet[11] = 0;
    const firstChecksum = internetChecksum(packet, 0, 20);
    packet[10] = firstChecksum >> 8;
    packet[11] = firstChecksum & 0xff;
    assert(buildPacketTooBig(packet, 576, from4) !== undefined);
  });
  await t.step("MTU outside 68..65535 / 1280..2^32-1", () => {
    assertStrictEquals(buildPacketTooBig(IPV4_UDP, 67, from4), undefined);
    assertStrictEquals(buildPacketTooBig(IPV4_UDP, 65536, from4), undefined);
    assertStrictEquals(buildPacketTooBig(IPV4_UDP, 1280.5, from4), undefined);
    assertStrictEquals(buildPacketTooBig(IPV6_ECHO, 1279, from6), undefined);
    assert(buildPacketTooBig(IPV4_UDP, 68, from4) !== undefined);
  });
  await t.step("IPv6 to multicast IS answered (RFC 4443 §2.4 (e.3))", () => {
    const answer = buildPacketTooBig(v6("fd00::1", "ff0e::1"), 1280, from6);
    assert(answer !== undefined);
    assertChecksumsValid(answer);
  });
});

Deno.test("buildDestinationUnreachable() picks the code for each version", async (t) => {
  const cases = [
    ["no route", 0, 0],
    ["administratively prohibited", 13, 1],
    ["source address failed policy", 13, 5],
  ] as const;
  for (const [reason, code4, code6] of cases) {
    await t.step(reason, () => {
      const a4 = buildDestinationUnreachable(IPV4_UDP, reason, ip("192.0.2.1"))!;
      assertEquals(a4.subarray(20, 21), hex("03"));
      assertStrictEquals(a4[21], code4);
      assertEquals(a4.subarray(24, 28), hex("00000000"));
      assertChecksumsValid(a4);
      const a6 = buildDestinationUnreachable(IPV6_ECHO, reason, ip("fd00::ff"))!;
      assertStrictEquals(a6[40], 1);
      assertStrictEquals(a6[41], code6);
      assertChecksumsValid(a6);
    });
  }
  await t.step("IPv4 without DF is still answered", () => {
    const packet = buildIpv4Udp({
      src: "198.18.0.1",
      dst: "8.8.8.8",
      srcPort: 1,
      dstPort: 2,
      dontFragment: false,
    });
    assert(buildDestinationUnreachable(packet, "no route", ip("192.0.2.1")) !== undefined);
  });
  await t.step("IPv6 to multicast is not answered", () => {
    const packet = buildIcmpv6Echo({ src: "fd00::1", dst: "ff02::1" });
    assertStrictEquals(buildDestinationUnreachable(packet, "no route", ip("fd00::ff")), undefined);
  });
  await t.step("an ICMP error is not answered", () => {
    const error = buildDestinationUnreachable(IPV4_UDP, "no route", ip("192.0.2.1"))!;
    assertStrictEquals(
      buildDestinationUnreachable(error, "administratively prohibited", ip("192.0.2.9")),
      undefined,
    );
  });
});

Deno.test("buildDestinationUnreachable() builds a hand-worked administratively prohibited", () => {
  // A 28-byte IPv4 ICMP Echo Request 198.18.100.2 -> 198.18.2.1, answered from 198.18.100.1.
  const original = hex(
    "45 00 001c 0000 4000 40 01 0000" + // v4 IHL 5, total 28, DF, TTL 64, ICMP, checksum 0
      "c6126402 c6120201" + //              src 198.18.100.2, dst 198.18.2.1
      "08 00 f7ff 0000 0000", //             Echo Request, checksum, id 0, seq 0
  );
  const cs = internetChecksum(original, 0, 20);
  original[10] = cs >> 8;
  original[11] = cs & 0xff;
  const answer = buildDestinationUnreachable(
    original,
    "administratively prohibited",
    ip("198.18.100.1"),
  )!;
  assertEquals(answer.length, 20 + 8 + 28);
  assertEquals(answer.subarray(0, 10), hex("45 00 0038 0000 0000 40 01")); // 56 bytes, TTL 64, ICMP
  assertEquals(answer.subarray(12, 20), hex("c6126401 c6126402")); // from the gateway, to the sender
  assertEquals(answer.subarray(20, 22), hex("03 0d")); // type 3 Destination Unreachable, code 13
  assertEquals(answer.subarray(24, 28), hex("00000000")); // unused
  assertEquals(answer.subarray(28), original); // the whole original, quoted
  assertChecksumsValid(answer);
});

Deno.test("ICMP builders never throw on random and mutated packets", () =>
  fuzz((random) => {
    const seeds = [IPV4_UDP, IPV6_ECHO, buildIcmpv4Echo({ src: "198.18.0.1", dst: "1.1.1.1" })];
    const from4 = ip("192.0.2.1");
    const from6 = ip("fd00::ff");
    let answered = 0;
    for (let i = 0; i < 4000; i++) {
      const packet = i % 2 === 0
        ? random.fill(new Uint8Array(Math.floor(random() * 100)))
        : seeds[i % 3].slice();
      if (i % 2 === 1) {
        for (let m = Math.floor(random() * 3); m > 0; m--) {
          packet[Math.floor(random() * packet.length)] = Math.floor(random() * 256);
        }
      }
      for (const from of [from4, from6]) {
        const answers = [
          buildPacketTooBig(packet, 1280, from),
          buildDestinationUnreachable(packet, "administratively prohibited", from),
        ];
        for (const answer of answers) {
          if (answer === undefined) continue;
          answered++;
          assertChecksumsValid(answer);
        }
      }
    }
    assert(answered > 100, `only ${answered} answers; the fuzz is not reaching the builders`);
  }));
