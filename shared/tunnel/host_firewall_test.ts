import { fuzz } from "../../tests/support/bytes.ts";
import { assert, assertEquals, assertStrictEquals } from "../../tests/support/assert.ts";
import {
  buildIcmpv4Echo,
  buildIcmpv6Echo,
  buildIpv4,
  buildIpv4Udp,
  buildIpv6,
  buildIpv6Udp,
} from "../../tests/support/packet_builder.ts";
import { parseIp, parsePrefix } from "../ip/ip_address.ts";
import {
  formatHostService,
  FORWARD,
  HostFirewall,
  type HostFirewallOptions,
  type HostService,
  parseHostService,
  TO_CLIENT,
  withDnsServices,
} from "./host_firewall.ts";
import type { DropReason, Verdict } from "./packet_policy.ts";

// The relay of the e2e tests: pools 198.18.100.0/24 and fd00:100::/64, gateways .1 and ::1.
const POOLS = ["198.18.100.0/24", "fd00:100::/64"].map(parsePrefix);
const GATEWAYS = ["198.18.100.1", "fd00:100::1"].map((text) => parseIp(text)!);
const CLIENT4 = "198.18.100.2";
const CLIENT6 = "fd00:100::2";
// What the kernel's local table of the e2e relay namespace holds besides the TUN.
const KERNEL_LOCAL = [
  "127.0.0.0/8",
  "127.0.0.1/32",
  "127.255.255.255/32",
  "198.18.0.1/32",
  "198.18.0.3/32",
  "198.18.1.1/32",
  "198.18.1.3/32",
  "::1/128",
  "fd00:0:0:1::1/128",
  "fd00:0:0:2::/128",
  "fe80::1/128",
].map(parsePrefix);

function firewall(options: Partial<HostFirewallOptions> = {}): HostFirewall {
  const result = new HostFirewall({
    pools: POOLS,
    gateways: GATEWAYS,
    allow: [],
    clientToClient: false,
    ...options,
  });
  result.setHostPrefixes(KERNEL_LOCAL);
  return result;
}

const udp = (dst: string, dstPort = 53) =>
  dst.includes(":")
    ? buildIpv6Udp({ src: CLIENT6, dst, srcPort: 40000, dstPort, payload: "q" })
    : buildIpv4Udp({ src: CLIENT4, dst, srcPort: 40000, dstPort, payload: "q" });
const tcp = (dst: string, dstPort: number) => {
  const segment = new Uint8Array(20);
  segment.set([0x9c, 0x40, dstPort >> 8, dstPort & 0xff], 0);
  segment[12] = 0x50;
  segment[13] = 0x02; // SYN
  return dst.includes(":")
    ? buildIpv6({ src: CLIENT6, dst, nextHeader: 6, payload: segment })
    : buildIpv4({ src: CLIENT4, dst, protocol: 6, payload: segment });
};
const ping = (dst: string) =>
  dst.includes(":")
    ? buildIcmpv6Echo({ src: CLIENT6, dst })
    : buildIcmpv4Echo({ src: CLIENT4, dst });
const dropped = (reason: DropReason): Verdict => ({ ok: false, reason });

Deno.test("HostFirewall drops every destination of the relay host by default", async (t) => {
  const fw = firewall();
  const cases: [string, Uint8Array][] = [
    ["gateway (TUN) address, UDP", udp("198.18.100.1")],
    ["gateway (TUN) address, ping", ping("198.18.100.1")],
    ["gateway (TUN) IPv6 address, TCP", tcp("fd00:100::1", 22)],
    ["pool network address", udp("198.18.100.0")],
    ["pool broadcast address", udp("198.18.100.255")],
    ["pool first host, even when the TUN has another address", udp("198.18.100.1")],
    ["IPv6 pool Subnet-Router anycast (RFC 4291 §2.6.1)", udp("fd00:100::")],
    ["underlay address from the kernel's table", udp("198.18.0.1")],
    ["another interface's address", tcp("198.18.1.1", 22)],
    ["another interface's broadcast address", udp("198.18.1.3")],
    ["another interface's IPv6 address", ping("fd00:0:0:1::1")],
    ["another interface's IPv6 anycast", udp("fd00:0:0:2::")],
    ["loopback, even if the kernel's table lacked it", udp("127.0.0.1")],
    ["loopback prefix", udp("127.3.2.1")],
    ["IPv6 loopback", udp("::1")],
    ["IPv4 limited broadcast", udp("255.255.255.255")],
    ["IPv4 multicast (the relay routes none)", udp("239.1.2.3")],
    ["IPv6 multicast of global scope", udp("ff0e::1")],
  ];
  for (const [name, packet] of cases) {
    await t.step(name, () => assertEquals(fw.check(packet), dropped("relay host")));
  }
});

Deno.test("HostFirewall forwards other destinations and drops client to client", async (t) => {
  const fw = firewall();
  await t.step("the target behind the relay", () => {
    assertStrictEquals(fw.check(udp("198.18.1.2")), FORWARD);
    assertStrictEquals(fw.check(tcp("fd00:0:0:2::2", 80)), FORWARD);
    assertStrictEquals(fw.check(ping("203.0.113.9")), FORWARD);
  });
  await t.step("addresses next to host addresses", () => {
    assertStrictEquals(fw.check(udp("198.18.0.2")), FORWARD); // the underlay peer
    assertStrictEquals(fw.check(udp("128.0.0.1")), FORWARD);
    assertStrictEquals(fw.check(udp("240.0.0.1")), FORWARD); // reserved, not broadcast
  });
  await t.step("another client's address", () => {
    assertEquals(fw.check(udp("198.18.100.3")), dropped("client to client"));
    assertEquals(fw.check(ping("fd00:100::3")), dropped("client to client"));
  });
  await t.step("a free pool address", () => {
    assertEquals(fw.check(udp("198.18.100.254")), dropped("client to client"));
  });
  await t.step("--allow-client-to-client hands pool destinations to the relay", () => {
    const open = firewall({ clientToClient: true });
    assertStrictEquals(open.check(udp("198.18.100.3")), TO_CLIENT);
    assertStrictEquals(open.check(ping("fd00:100::3")), TO_CLIENT);
    // The gateway, network and broadcast addresses stay the relay host's.
    assertEquals(open.check(udp("198.18.100.255")), dropped("relay host"));
    assertEquals(open.check(udp("198.18.100.1")), dropped("relay host"));
  });
});

Deno.test("HostFirewall lets allowed services through at the gateway addresses only", async (t) => {
  const allow = ["udp/53", "tcp/8000-8080", "ping"].map((text) => parseHostService(text));
  const fw = firewall({ allow: allow as HostService[] });
  await t.step("udp/53 at both gateways", () => {
    assertStrictEquals(fw.check(udp("198.18.100.1", 53)), FORWARD);
    assertStrictEquals(fw.check(udp("fd00:100::1", 53)), FORWARD);
  });
  await t.step("tcp/8000-8080, ends included", () => {
    assertStrictEquals(fw.check(tcp("198.18.100.1", 8000)), FORWARD);
    assertStrictEquals(fw.check(tcp("fd00:100::1", 8080)), FORWARD);
    assertEquals(fw.check(tcp("198.18.100.1", 8081)), dropped("relay host"));
    assertEquals(fw.check(tcp("198.18.100.1", 7999)), dropped("relay host"));
  });
  await t.step("ping: echo requests only", () => {
    assertStrictEquals(fw.check(ping("198.18.100.1")), FORWARD);
    assertStrictEquals(fw.check(ping("fd00:100::1")), FORWARD);
    const reply = buildIcmpv4Echo({ src: CLIENT4, dst: "198.18.100.1", reply: true });
    assertEquals(fw.check(reply), dropped("relay host"));
  });
  await t.step("the other protocol on the same port", () => {
    assertEquals(fw.check(tcp("198.18.100.1", 53)), dropped("relay host"));
    assertEquals(fw.check(udp("198.18.100.1", 8000)), dropped("relay host"));
  });
  await t.step("the same service at another host address", () => {
    assertEquals(fw.check(udp("198.18.0.1", 53)), dropped("relay host"));
    assertEquals(fw.check(udp("198.18.100.255", 53)), dropped("relay host"));
    assertEquals(fw.check(ping("fd00:0:0:1::1")), dropped("relay host"));
  });
  await t.step("a fragment, even of an allowed service", () => {
    const fragment = buildIpv4({
      src: CLIENT4,
      dst: "198.18.100.1",
      protocol: 17,
      payload: udp("198.18.100.1", 53).subarray(20, 36),
      moreFragments: true,
      dontFragment: false,
    });
    assertEquals(fw.check(fragment), dropped("relay host"));
    const payload = new Uint8Array(8 + 16);
    payload.set([17, 0, 0, 1, 0, 0, 0, 9], 0); // Fragment header, offset 0, M
    payload.set([0x9c, 0x40, 0, 53], 8);
    const fragment6 = buildIpv6({ src: CLIENT6, dst: "fd00:100::1", nextHeader: 44, payload });
    assertEquals(fw.check(fragment6), dropped("relay host"));
  });
  await t.step("a UDP header behind IPv6 Destination Options is found", () => {
    const inner = udp("fd00:100::1", 53).subarray(40);
    const payload = new Uint8Array(8 + inner.length);
    payload.set([17, 0, 1, 4, 0, 0, 0, 0], 0);
    payload.set(inner, 8);
    const packet = buildIpv6({ src: CLIENT6, dst: "fd00:100::1", nextHeader: 60, payload });
    assertStrictEquals(fw.check(packet), FORWARD);
  });
  await t.step("a header too short to hold the port", () => {
    const short = buildIpv4({
      src: CLIENT4,
      dst: "198.18.100.1",
      protocol: 17,
      payload: new Uint8Array([0, 1, 0]),
    });
    assertEquals(fw.check(short), dropped("relay host"));
  });
});

Deno.test("HostFirewall.setHostPrefixes() replaces the kernel's addresses, never its own", () => {
  const fw = firewall();
  assertEquals(fw.check(udp("198.18.1.1")), dropped("relay host"));
  // An address added to the host later, and a wider AnyIP route.
  assert(fw.setHostPrefixes(["198.18.2.1/32", "10.9.0.0/16"].map(parsePrefix)));
  assertEquals(fw.check(udp("198.18.2.1")), dropped("relay host"));
  assertEquals(fw.check(udp("10.9.200.7")), dropped("relay host"));
  assertStrictEquals(fw.check(udp("198.18.1.1")), FORWARD); // gone from the host
  // The relay's own addresses and loopback stay, whatever the kernel says.
  assertEquals(fw.check(udp("198.18.100.1")), dropped("relay host"));
  assertEquals(fw.check(udp("198.18.100.255")), dropped("relay host"));
  assertEquals(fw.check(udp("127.0.0.1")), dropped("relay host"));
  assert(!fw.setHostPrefixes(["10.9.0.0/16", "198.18.2.1/32"].map(parsePrefix)), "same set");
  assertEquals(fw.protectedAddresses, [
    "198.18.100.1",
    "fd00:100::1",
    "198.18.100.0",
    "198.18.100.255",
    "fd00:100::",
    "10.9.0.0/16",
    "198.18.2.1/32",
    "127.0.0.0/8",
    "::1/128",
  ]);
});

Deno.test("parseHostService() reads udp/PORT, tcp/FIRST-LAST and ping", async (t) => {
  await t.step("valid", () => {
    assertEquals(parseHostService("udp/53"), { protocol: "udp", firstPort: 53, lastPort: 53 });
    assertEquals(parseHostService("tcp/1-65535"), {
      protocol: "tcp",
      firstPort: 1,
      lastPort: 65535,
    });
    assertEquals(parseHostService("ping"), { protocol: "ping" });
    for (const text of ["udp/53", "tcp/8000-8080", "ping"]) {
      const service = parseHostService(text);
      assert(typeof service !== "string");
      assertEquals(formatHostService(service), text);
    }
  });
  const bad: [string, string][] = [
    ["icmp", "expected udp/PORT, tcp/PORT, udp/FIRST-LAST, tcp/FIRST-LAST or ping"],
    ["sctp/53", "expected udp/PORT, tcp/PORT, udp/FIRST-LAST, tcp/FIRST-LAST or ping"],
    ["UDP/53", "expected udp/PORT, tcp/PORT, udp/FIRST-LAST, tcp/FIRST-LAST or ping"],
    ["udp", "udp needs a port, as in udp/53"],
    ["udp/", 'port "" is not a number of 1 to 5 digits'],
    ["udp/0", "port 0 is outside 1..65535"],
    ["udp/65536", "port 65536 is outside 1..65535"],
    ["udp/123456", 'port "123456" is not a number of 1 to 5 digits'],
    ["tcp/53x", 'port "53x" is not a number'],
    ["tcp/ 53", 'port " 53" is not a number'],
    ["tcp/90-80", "port range 90-80 is empty"],
    ["tcp/80-", 'port "" is not a number of 1 to 5 digits'],
    ["tcp/80-90-100", 'port "90-100" is not a number of 1 to 5 digits'],
  ];
  for (const [text, why] of bad) {
    await t.step(`rejects ${JSON.stringify(text)}`, () => {
      assertEquals(parseHostService(text), `--allow-relay-host "${text}": ${why}`);
    });
  }
});

Deno.test("HostFirewall.check() never throws on random and mutated packets", () =>
  fuzz((random) => {
    const fw = firewall({
      allow: [{ protocol: "udp", firstPort: 1, lastPort: 65535 }, { protocol: "ping" }],
      clientToClient: true,
    });
    const seeds = [udp("198.18.100.1"), udp("fd00:100::1"), tcp("198.18.1.2", 80), ping("::1")];
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const packet = seeds[i % seeds.length].slice();
      for (let m = 1 + Math.floor(random() * 3); m > 0; m--) {
        packet[Math.floor(random() * packet.length)] = Math.floor(random() * 256);
      }
      const verdict = fw.check(packet);
      seen.add(verdict === TO_CLIENT ? "to client" : verdict.ok ? "forward" : verdict.reason);
    }
    assert(seen.has("forward") && seen.has("relay host"), [...seen].join(", "));
  }));

Deno.test("HostFirewall allows services at the gateways it is given, not at the pool's first host", () => {
  // A relay whose TUN took the pool's network address: services answer there; .1 stays closed.
  const fw = new HostFirewall({
    pools: POOLS,
    gateways: [parseIp("198.18.100.0")!],
    allow: [{ protocol: "udp", firstPort: 53, lastPort: 53 }],
    clientToClient: true,
  });
  assertStrictEquals(fw.check(udp("198.18.100.0")), FORWARD);
  assertEquals(fw.check(udp("198.18.100.1")), dropped("relay host"));
  assertStrictEquals(fw.check(udp("198.18.100.2")), TO_CLIENT);
  assertEquals(fw.protectedAddresses.slice(0, 4), [
    "198.18.100.0",
    "198.18.100.1",
    "198.18.100.255",
    "fd00:100::",
  ]);
});

Deno.test("withDnsServices() allows port 53 when a --dns server is a gateway address", async (t) => {
  const udp53 = parseHostService("udp/53") as HostService;
  await t.step("a resolver on the gateway: udp/53 and tcp/53 added", () => {
    const allow = withDnsServices([], [parseIp("198.18.100.1")!], GATEWAYS);
    assertEquals(allow.map(formatHostService), ["udp/53", "tcp/53"]);
    const firewall = new HostFirewall({
      pools: POOLS,
      gateways: GATEWAYS,
      allow,
      clientToClient: false,
    });
    const query = buildIpv4Udp({ src: CLIENT4, dst: "198.18.100.1", srcPort: 5000, dstPort: 53 });
    assertStrictEquals(firewall.check(query), FORWARD);
  });
  await t.step("already allowed (a range covers 53): nothing added, the same list", () => {
    const allow = [udp53, parseHostService("tcp/1-100") as HostService];
    assertStrictEquals(withDnsServices(allow, [parseIp("fd00:100::1")!], GATEWAYS), allow);
  });
  await t.step("a resolver elsewhere (the target network): nothing added", () => {
    const allow: HostService[] = [];
    assertStrictEquals(withDnsServices(allow, [parseIp("198.18.1.2")!], GATEWAYS), allow);
    const firewall = new HostFirewall({
      pools: POOLS,
      gateways: GATEWAYS,
      allow,
      clientToClient: false,
    });
    const query = buildIpv4Udp({ src: CLIENT4, dst: "198.18.100.1", srcPort: 5000, dstPort: 53 });
    assertEquals((firewall.check(query) as Verdict).ok, false);
  });
});
