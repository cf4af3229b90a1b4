import { assert, assertEquals, assertStrictEquals } from "../../tests/support/assert.ts";
import {
  buildIcmpv4Echo,
  buildIcmpv6Echo,
  buildIpv4,
  buildIpv4Udp,
  buildIpv6,
  buildIpv6Udp,
} from "../../tests/support/packet_builder.ts";
import { type IpAddressRange, type IpPrefix, parseIp, parsePrefix } from "../ip/ip_address.ts";
import { fuzz, hex } from "../../tests/support/bytes.ts";
import { validateIpPacket } from "../ip/ip_header.ts";
import {
  checkFromClient,
  checkFromRelay,
  checkHeaderRules,
  type ClientPolicy,
  DROP_REASONS,
  type DropReason,
  FORWARD,
  type Verdict,
} from "./packet_policy.ts";

const ip = (text: string) => parseIp(text)!;
const range = (start: string, end: string, ipProtocol = 0): IpAddressRange => ({
  version: start.includes(":") ? 6 : 4,
  start: ip(start),
  end: ip(end),
  ipProtocol,
});
const prefixes = (...texts: string[]): IpPrefix[] => texts.map(parsePrefix);
const udp4 = (src: string, dst: string) =>
  buildIpv4Udp({ src, dst, srcPort: 5000, dstPort: 53, payload: "q" });
const udp6 = (src: string, dst: string) =>
  buildIpv6Udp({ src, dst, srcPort: 5000, dstPort: 53, payload: "q" });
const dropped = (reason: DropReason): Verdict => ({ ok: false, reason });

// RFC 9484 §9.1 split-tunnel example: the client is 192.0.2.42/32 and may reach 192.0.2.0/24.
const SPLIT_TUNNEL: ClientPolicy = {
  addresses: prefixes("192.0.2.42/32"),
  routes: [range("192.0.2.0", "192.0.2.255")],
};
// RFC 9484 §9.3 IP flow forwarding example: 2001:db8:1234::a may send SCTP (132) to 2001:db8:3456::b.
const SCTP_FLOW: ClientPolicy = {
  addresses: prefixes("2001:db8:1234::a/128"),
  routes: [range("2001:db8:3456::b", "2001:db8:3456::b", 132)],
};
// A dual-stack full tunnel with an assigned IPv6 /64.
const FULL_TUNNEL: ClientPolicy = {
  addresses: prefixes("198.18.0.2/32", "fd00:0:0:2::/64"),
  routes: [
    range("0.0.0.0", "255.255.255.255"),
    range("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
  ],
};

Deno.test("checkFromClient() forwards packets from assigned sources to routed destinations", async (t) => {
  await t.step("RFC 9484 split tunnel: 192.0.2.42 -> 192.0.2.7", () => {
    assertStrictEquals(checkFromClient(udp4("192.0.2.42", "192.0.2.7"), SPLIT_TUNNEL), FORWARD);
  });
  await t.step("range ends are inclusive", () => {
    assertEquals(checkFromClient(udp4("192.0.2.42", "192.0.2.0"), SPLIT_TUNNEL), { ok: true });
    assertEquals(checkFromClient(udp4("192.0.2.42", "192.0.2.255"), SPLIT_TUNNEL), { ok: true });
  });
  await t.step("any source inside an assigned /64", () => {
    assertEquals(checkFromClient(udp6("fd00:0:0:2:abcd::9", "2001:db8::1"), FULL_TUNNEL), {
      ok: true,
    });
  });
  await t.step("dual stack: IPv4 in an IPv4 route, IPv6 in an IPv6 route", () => {
    assertEquals(checkFromClient(udp4("198.18.0.2", "203.0.113.1"), FULL_TUNNEL), { ok: true });
    assertEquals(checkFromClient(udp6("fd00:0:0:2::1", "2001:db8::1"), FULL_TUNNEL), { ok: true });
  });
});

Deno.test("checkFromClient() gives exact drop reasons", async (t) => {
  const cases: [string, Uint8Array, ClientPolicy, DropReason][] = [
    [
      "truncated header",
      udp4("192.0.2.42", "192.0.2.7").subarray(0, 19),
      SPLIT_TUNNEL,
      "malformed",
    ],
    ["empty packet", new Uint8Array(0), SPLIT_TUNNEL, "malformed"],
    ["spoofed IPv4 source", udp4("192.0.2.43", "192.0.2.7"), SPLIT_TUNNEL, "source not assigned"],
    [
      "IPv6 source when only IPv4 is assigned",
      udp6("fd00::1", "fd00::2"),
      SPLIT_TUNNEL,
      "source not assigned",
    ],
    [
      "source just outside the /64",
      udp6("fd00:0:0:3::1", "2001:db8::1"),
      FULL_TUNNEL,
      "source not assigned",
    ],
    [
      "destination outside the split tunnel",
      udp4("192.0.2.42", "192.0.3.0"),
      SPLIT_TUNNEL,
      "destination not routed",
    ],
    [
      "IPv6 destination with only IPv6 source assigned and no IPv6 route",
      udp6("2001:db8:1234::a", "2001:db8:3456::c"),
      SCTP_FLOW,
      "destination not routed",
    ],
    [
      "UDP where only SCTP is routed",
      udp6("2001:db8:1234::a", "2001:db8:3456::b"),
      SCTP_FLOW,
      "protocol not allowed",
    ],
    [
      "IPv4 link-local 169.254.1.1",
      udp4("198.18.0.2", "169.254.1.1"),
      FULL_TUNNEL,
      "link-local destination",
    ],
    [
      "IPv4 mDNS 224.0.0.251",
      udp4("198.18.0.2", "224.0.0.251"),
      FULL_TUNNEL,
      "link-local destination",
    ],
    ["IPv6 fe80::1", udp6("fd00:0:0:2::1", "fe80::1"), FULL_TUNNEL, "link-local destination"],
    [
      "IPv6 febf::1 (still fe80::/10)",
      udp6("fd00:0:0:2::1", "febf::1"),
      FULL_TUNNEL,
      "link-local destination",
    ],
    [
      "IPv6 all-nodes ff02::1",
      udp6("fd00:0:0:2::1", "ff02::1"),
      FULL_TUNNEL,
      "link-local destination",
    ],
    [
      "IPv6 interface-local ff01::1",
      udp6("fd00:0:0:2::1", "ff01::1"),
      FULL_TUNNEL,
      "link-local destination",
    ],
  ];
  for (const [name, packet, session, reason] of cases) {
    await t.step(name, () => assertEquals(checkFromClient(packet, session), dropped(reason)));
  }
  await t.step("a bad packet is malformed before its source is looked at", () => {
    const packet = udp4("10.9.9.9", "192.0.2.7");
    packet[11] ^= 0xff; // break the header checksum
    assertEquals(checkFromClient(packet, SPLIT_TUNNEL), dropped("malformed"));
  });
  await t.step("no routes at all", () => {
    const session = { addresses: SPLIT_TUNNEL.addresses, routes: [] };
    assertEquals(
      checkFromClient(udp4("192.0.2.42", "192.0.2.7"), session),
      dropped("destination not routed"),
    );
  });
  await t.step("routed multicast of wider scope (ff05::1, site-local) is not link-local", () => {
    assertEquals(checkFromClient(udp6("fd00:0:0:2::1", "ff05::1"), FULL_TUNNEL), { ok: true });
  });
});

Deno.test("checkFromClient() applies the route's IP protocol (RFC 9484 §4.6, §4.7.3)", async (t) => {
  const sctp = (payload: Uint8Array, nextHeader = 132) =>
    buildIpv6({ src: "2001:db8:1234::a", dst: "2001:db8:3456::b", nextHeader, payload });
  await t.step("SCTP is allowed", () => {
    assertEquals(checkFromClient(sctp(new Uint8Array(12)), SCTP_FLOW), { ok: true });
  });
  await t.step("SCTP behind Destination Options and Routing headers is found", () => {
    // Destination Options (next 43, 8 bytes) -> Routing type 4 with Segments Left 0
    // (next 132, 8 bytes) -> SCTP common header.
    const payload = new Uint8Array(8 + 8 + 12);
    payload[0] = 43;
    payload.set([132, 0, 4, 0], 8);
    assertEquals(checkFromClient(sctp(payload, 60), SCTP_FLOW), { ok: true });
  });
  await t.step("ICMPv6 is always allowed", () => {
    const echo = buildIcmpv6Echo({ src: "2001:db8:1234::a", dst: "2001:db8:3456::b" });
    assertEquals(checkFromClient(echo, SCTP_FLOW), { ok: true });
  });
  await t.step("ICMPv4 is always allowed, but only inside the range", () => {
    const session: ClientPolicy = {
      addresses: prefixes("198.18.0.2/32"),
      routes: [range("10.0.0.0", "10.0.0.255", 6)],
    };
    assertEquals(
      checkFromClient(buildIcmpv4Echo({ src: "198.18.0.2", dst: "10.0.0.1" }), session),
      { ok: true },
    );
    assertEquals(
      checkFromClient(buildIcmpv4Echo({ src: "198.18.0.2", dst: "10.0.1.1" }), session),
      dropped("destination not routed"),
    );
    assertEquals(
      checkFromClient(udp4("198.18.0.2", "10.0.0.1"), session),
      dropped("protocol not allowed"),
    );
  });
  await t.step("overlapping ranges for different protocols: any match forwards", () => {
    const session: ClientPolicy = {
      addresses: prefixes("198.18.0.2/32"),
      routes: [range("10.0.0.0", "10.0.0.255", 17), range("10.0.0.0", "10.0.0.255", 6)],
    };
    const tcp = buildIpv4({
      src: "198.18.0.2",
      dst: "10.0.0.1",
      protocol: 6,
      payload: new Uint8Array(20),
    });
    assertEquals(checkFromClient(tcp, session), { ok: true });
    assertEquals(checkFromClient(udp4("198.18.0.2", "10.0.0.1"), session), { ok: true });
    const gre = buildIpv4({
      src: "198.18.0.2",
      dst: "10.0.0.1",
      protocol: 47,
      payload: new Uint8Array(4),
    });
    assertEquals(checkFromClient(gre, session), dropped("protocol not allowed"));
  });
  await t.step("scope to the Fragment extension header (44) matches a fragment", () => {
    const session: ClientPolicy = {
      addresses: SCTP_FLOW.addresses,
      routes: [range("2001:db8:3456::b", "2001:db8:3456::b", 44)],
    };
    const fragment = new Uint8Array(8 + 8);
    fragment[0] = 17; // Fragment header -> UDP
    assertEquals(checkFromClient(sctp(fragment, 44), session), { ok: true });
    assertEquals(
      checkFromClient(udp6("2001:db8:1234::a", "2001:db8:3456::b"), session),
      dropped("protocol not allowed"),
    );
  });
});

Deno.test("checkFromClient() and checkFromRelay() return shared verdict objects", () => {
  const a = checkFromClient(udp4("192.0.2.43", "192.0.2.7"), SPLIT_TUNNEL);
  const b = checkFromClient(udp4("192.0.2.44", "192.0.2.8"), SPLIT_TUNNEL);
  assertStrictEquals(a, b);
  assert(Object.isFrozen(a));
  assertStrictEquals(checkFromRelay(udp4("1.1.1.1", "192.0.2.42"), SPLIT_TUNNEL), FORWARD);
});

Deno.test("checkFromRelay() accepts only packets for the client's own addresses", async (t) => {
  await t.step("to the assigned address, from anywhere (ICMP errors come from any router)", () => {
    assertEquals(checkFromRelay(udp4("203.0.113.1", "192.0.2.42"), SPLIT_TUNNEL), { ok: true });
    assertEquals(checkFromRelay(udp4("8.8.8.8", "192.0.2.42"), SPLIT_TUNNEL), { ok: true });
  });
  await t.step("to any address inside an assigned /64", () => {
    assertEquals(checkFromRelay(udp6("2001:db8::1", "fd00:0:0:2::77"), FULL_TUNNEL), { ok: true });
  });
  await t.step("to ff02::1, the MTU probe of RFC 9484 §7", () => {
    const probe = buildIcmpv6Echo({
      src: "fd00::1",
      dst: "ff02::1",
      payload: new Uint8Array(1232),
    });
    assertEquals(checkFromRelay(probe, FULL_TUNNEL), { ok: true });
    assertEquals(
      checkFromRelay(udp6("fd00::1", "ff02::2"), FULL_TUNNEL),
      dropped("destination not assigned"),
    );
  });
  await t.step("to another address", () => {
    assertEquals(
      checkFromRelay(udp4("8.8.8.8", "192.0.2.43"), SPLIT_TUNNEL),
      dropped("destination not assigned"),
    );
    assertEquals(
      checkFromRelay(udp6("2001:db8::1", "fd00::2"), SPLIT_TUNNEL),
      dropped("destination not assigned"),
    );
  });
  await t.step("malformed", () => {
    assertEquals(checkFromRelay(new Uint8Array([0x45, 0]), SPLIT_TUNNEL), dropped("malformed"));
  });
});

Deno.test("policy checks never throw on random and mutated packets", () =>
  fuzz((random) => {
    // Every reason but the host firewall's, which these checks never give.
    const firewall = ["relay host", "client to client", "hop limit exceeded"];
    const reasons = new Set<string>(DROP_REASONS.filter((r) => !firewall.includes(r)));
    const seeds = [
      udp4("198.18.0.2", "203.0.113.1"),
      udp6("fd00:0:0:2::1", "2001:db8::1"),
      buildIcmpv6Echo({ src: "fd00:0:0:2::1", dst: "2001:db8::1" }),
    ];
    const scoped: ClientPolicy = {
      addresses: FULL_TUNNEL.addresses,
      routes: [range("::", "ffff::", 6), range("0.0.0.0", "1.0.0.0", 17)],
    };
    let forwarded = 0;
    for (let i = 0; i < 5000; i++) {
      let packet: Uint8Array;
      if (i % 2 === 0) {
        packet = random.fill(new Uint8Array(Math.floor(random() * 90)));
      } else {
        packet = seeds[i % seeds.length].slice();
        for (let m = Math.floor(random() * 3); m > 0; m--) {
          packet[Math.floor(random() * packet.length)] = Math.floor(random() * 256);
        }
      }
      for (
        const verdict of [
          checkFromClient(packet, FULL_TUNNEL),
          checkFromClient(packet, scoped),
          checkFromRelay(packet, FULL_TUNNEL),
        ]
      ) {
        if (verdict.ok) forwarded++;
        else assert(reasons.has(verdict.reason), verdict.reason);
      }
    }
    assert(
      forwarded > 100,
      `only ${forwarded} forwarded; the fuzz is not reaching the route checks`,
    );
  }));

// Header rules: every case is a packet from FULL_TUNNEL's client to a routed destination, so
// only the rule under test can drop it.
const SRC4 = "198.18.0.2";
const SRC6 = "fd00:0:0:2::1";
const DST4 = "203.0.113.1";
const DST6 = "2001:db8::1";

/** IPv4 with protocol, payload bytes and extra header fields. */
const v4 = (protocol: number, bytes: number, extra: Partial<Parameters<typeof buildIpv4>[0]>) =>
  buildIpv4({ src: SRC4, dst: DST4, protocol, payload: new Uint8Array(bytes), ...extra });

/** IPv6 whose payload is `headers` (each [next header, bytes...]) then `upper` bytes. */
function v6(first: number, headers: number[][], upper: number, hopLimit = 64): Uint8Array {
  const length = headers.reduce((n, h) => n + h.length, 0) + upper;
  const payload = new Uint8Array(length);
  let offset = 0;
  for (const header of headers) {
    payload.set(header, offset);
    offset += header.length;
  }
  return buildIpv6({ src: SRC6, dst: DST6, nextHeader: first, payload, hopLimit });
}
/** An 8-byte Destination Options (or Hop-by-Hop) header: next header, length 0, PadN of 4. */
const opts8 = (next: number) => [next, 0, 1, 4, 0, 0, 0, 0];
/** A Fragment header: next header, reserved, offset (8-byte units) << 3 | M, identification. */
const frag = (next: number, offset: number, more: boolean) => [
  next,
  0,
  (offset << 3) >> 8,
  ((offset << 3) & 0xff) | (more ? 1 : 0),
  0,
  0,
  0,
  7,
];

Deno.test("checkHeaderRules() forwards what a well-behaved sender makes", async (t) => {
  const cases: [string, Uint8Array][] = [
    ["IPv4 TTL 1: the kernel answers with Time Exceeded", udp4Ttl(1)],
    ["IPv6 Hop Limit 1", buildIpv6Udp({ src: SRC6, dst: DST6, srcPort: 1, dstPort: 2, ttl: 1 })],
    ["IPv4 first UDP fragment", v4(17, 16, { moreFragments: true, dontFragment: false })],
    ["IPv4 middle fragment", v4(17, 16, { moreFragments: true, fragmentOffset: 2 })],
    ["IPv4 last fragment of odd length", v4(17, 13, { fragmentOffset: 4 })],
    ["IPv4 first TCP fragment with the whole header", v4(6, 24, { moreFragments: true })],
    ["IPv4 TCP fragment at offset 24 bytes", v4(6, 8, { fragmentOffset: 3 })],
    ["IPv4 last fragment ending at 65535", v4(17, 3, { fragmentOffset: 8189 })],
    ["IPv6 last fragment ending at 65535", v6(44, [frag(17, 8190, false)], 15)],
    ["IPv6 atomic fragment (RFC 6946)", v6(44, [frag(17, 0, false)], 8)],
    ["IPv6 first fragment", v6(44, [frag(17, 0, true)], 16)],
    [
      "IPv6 first fragment, Destination Options after it",
      v6(44, [frag(60, 0, true), opts8(17)], 8),
    ],
    ["IPv6 later fragment (its data is not walked)", v6(44, [frag(60, 2, true)], 16)],
    [
      "IPv6 Destination Options twice around Routing type 2",
      v6(60, [opts8(43), [60, 2, 2, 1, 0, 0, 0, 0, ...new Array(16).fill(0)], opts8(17)], 8),
    ],
    [
      "IPv6 with 8 extension headers",
      v6(60, Array.from({ length: 8 }, (_, i) => opts8(i < 7 ? 60 : 17)), 8),
    ],
  ];
  for (const [name, packet] of cases) {
    await t.step(name, () => {
      assertStrictEquals(checkHeaderRules(packet), FORWARD);
      assertStrictEquals(checkFromClient(packet, FULL_TUNNEL), FORWARD);
    });
  }
});

function udp4Ttl(ttl: number): Uint8Array {
  return buildIpv4Udp({ src: SRC4, dst: DST4, srcPort: 1, dstPort: 2, ttl });
}

Deno.test("checkHeaderRules() drops options, TTL 0, bad fragments and bad IPv6 chains", async (t) => {
  const cases: [string, Uint8Array, DropReason][] = [
    // IPv4 options (RFC 791 §3.1): type, length, data.
    ["IPv4 NOP/EOL padding only", v4(17, 8, { options: hex("01010100") }), "IPv4 options"],
    ["IPv4 Router Alert (RFC 2113)", v4(17, 8, { options: hex("94040000") }), "IPv4 options"],
    [
      "IPv4 loose source route via 192.0.2.1 (RFC 791 LSRR)",
      v4(17, 8, { options: hex("830704 c0000201 00") }),
      "IPv4 options",
    ],
    [
      "IPv4 strict source route (SSRR)",
      v4(17, 8, { options: hex("890704 c0000201 00") }),
      "IPv4 options",
    ],
    ["IPv4 TTL 0", udp4Ttl(0), "zero TTL"],
    [
      "IPv6 Hop Limit 0",
      buildIpv6Udp({ src: SRC6, dst: DST6, srcPort: 1, dstPort: 2, ttl: 0 }),
      "zero TTL",
    ],
    // RFC 1858 §3.1: a first fragment too short to hold the TCP flags.
    ["IPv4 tiny first TCP fragment (8 bytes)", v4(6, 8, { moreFragments: true }), "bad fragment"],
    // RFC 1858 §3.2: a TCP fragment at offset 8 bytes overwrites the flags.
    ["IPv4 TCP fragment at offset 8 bytes", v4(6, 16, { fragmentOffset: 1 }), "bad fragment"],
    [
      "IPv4 fragment with More Fragments not a multiple of 8",
      v4(17, 12, { moreFragments: true, fragmentOffset: 2 }),
      "bad fragment",
    ],
    ["IPv4 empty fragment with More Fragments", v4(17, 0, { moreFragments: true }), "bad fragment"],
    ["IPv4 fragment past 65535 bytes", v4(17, 4, { fragmentOffset: 8189 }), "bad fragment"],
    ["IPv6 Hop-by-Hop Options", v6(0, [opts8(17)], 8), "hop-by-hop options"],
    [
      "IPv6 Hop-by-Hop with Router Alert (RFC 2711)",
      v6(0, [[17, 0, 5, 2, 0, 0, 1, 0]], 8),
      "hop-by-hop options",
    ],
    [
      "IPv6 Routing type 0, one segment left (RFC 5095)",
      v6(43, [[17, 2, 0, 1, 0, 0, 0, 0, ...parseIp("2001:db8::99")!]], 8),
      "routing header type 0",
    ],
    [
      "IPv6 Routing type 0, no segment left",
      v6(43, [[17, 0, 0, 0, 0, 0, 0, 0]], 8),
      "routing header type 0",
    ],
    [
      "IPv6 with 9 extension headers",
      v6(60, Array.from({ length: 9 }, (_, i) => opts8(i < 8 ? 60 : 17)), 8),
      "bad extension headers",
    ],
    [
      "IPv6 header longer than the packet",
      v6(60, [[17, 10, 0, 0, 0, 0, 0, 0]], 8),
      "bad extension headers",
    ],
    [
      "IPv6 Hop-by-Hop after another header",
      v6(60, [opts8(0), opts8(17)], 8),
      "bad extension headers",
    ],
    [
      "IPv6 two Fragment headers",
      v6(44, [frag(44, 0, false), frag(17, 0, false)], 8),
      "bad extension headers",
    ],
    [
      "IPv6 first fragment whose chain ends after the packet (RFC 7112 §5)",
      v6(44, [frag(60, 0, true), [60, 0, 1, 4, 0, 0, 0, 0]], 0),
      "bad extension headers",
    ],
    [
      "IPv6 first fragment without the UDP header (RFC 7112 §5)",
      v6(44, [frag(60, 0, true), opts8(17)], 0),
      "bad fragment",
    ],
    ["IPv6 TCP fragment at offset 8 bytes", v6(44, [frag(6, 1, false)], 16), "bad fragment"],
    ["IPv6 fragment past 65535 bytes", v6(44, [frag(17, 8190, false)], 16), "bad fragment"],
  ];
  for (const [name, packet, reason] of cases) {
    await t.step(name, () => {
      assertEquals(validateIpPacket(packet), undefined, "the packet itself is well formed");
      assertEquals(checkHeaderRules(packet), dropped(reason));
      assertEquals(checkFromClient(packet, FULL_TUNNEL), dropped(reason));
    });
  }
  await t.step("a spoofed source is reported before the header rules", () => {
    const packet = buildIpv4Udp({ src: "198.18.0.3", dst: DST4, srcPort: 1, dstPort: 2, ttl: 0 });
    assertEquals(checkFromClient(packet, FULL_TUNNEL), dropped("source not assigned"));
  });
});
