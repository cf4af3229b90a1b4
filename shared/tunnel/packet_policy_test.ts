import { assert, assertEquals, assertStrictEquals } from "../../tests/support/assert.ts";
import {
  buildIcmpv4Echo,
  buildIcmpv6Echo,
  buildIpv4,
  buildIpv4Udp,
  buildIpv6,
  buildIpv6Udp,
} from "../../tests/support/packet_builder.ts";
import { type IpPrefix, parseIp, parsePrefix } from "../packet/ip_address.ts";
import {
  checkFromClient,
  checkFromRelay,
  type ClientPolicy,
  type DropReason,
  FORWARD,
  type IpAddressRange,
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
  await t.step("SCTP behind Hop-by-Hop and Destination Options headers is found", () => {
    // HBH (next 60, 8 bytes) -> Destination Options (next 132, 8 bytes) -> SCTP common header.
    const payload = new Uint8Array(8 + 8 + 12);
    payload[0] = 60;
    payload[8] = 132;
    assertEquals(checkFromClient(sctp(payload, 0), SCTP_FLOW), { ok: true });
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

Deno.test("policy checks never throw on random and mutated packets", () => {
  const reasons = new Set<string>([
    "malformed",
    "source not assigned",
    "link-local destination",
    "destination not routed",
    "protocol not allowed",
    "destination not assigned",
  ]);
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
      packet = crypto.getRandomValues(new Uint8Array(Math.floor(Math.random() * 90)));
    } else {
      packet = seeds[i % seeds.length].slice();
      for (let m = Math.floor(Math.random() * 3); m > 0; m--) {
        packet[Math.floor(Math.random() * packet.length)] = Math.floor(Math.random() * 256);
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
  assert(forwarded > 100, `only ${forwarded} forwarded; the fuzz is not reaching the route checks`);
});
