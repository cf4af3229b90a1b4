import { assert, assertEquals, assertThrows } from "../../tests/support/assert.ts";
import { fuzz, hex } from "../../tests/support/bytes.ts";
import { CapsuleError } from "../errors.ts";
import { CapsuleParser, encodeCapsule } from "./capsule.ts";
import { formatIp, formatPrefix, parseIp, parsePrefix } from "../ip/ip_address.ts";
import {
  CAPSULE_DNS_ASSIGN,
  CAPSULE_PREF64,
  type DnsConfiguration,
  encodeDnsAssign,
  encodePref64,
  MAX_DOMAINS,
  MAX_NAMESERVERS,
  nameserverPort,
  parseDnsAssign,
  parsePref64,
  plainDnsConfiguration,
  plainDnsServers,
} from "./dns_capsule.ts";

const toHex = (value: Uint8Array) =>
  Array.from(value, (b) => b.toString(16).padStart(2, "0")).join("");
const bytes = (...parts: (number | string | number[])[]) => {
  const out: number[] = [];
  for (const part of parts) {
    if (typeof part === "number") out.push(part);
    else if (typeof part === "string") { for (const c of part) out.push(c.charCodeAt(0)); }
    else out.push(...part);
  }
  return new Uint8Array(out);
};

// The draft's split-tunnel example (draft-ietf-masque-connect-ip-dns-05 §3.6.2, Figure 6).
const SPLIT_TUNNEL = bytes(
  0x01, // Nameserver Count 1
  [0x00, 0x01], // Service Priority 1
  0x01, // IPv4 Address Count 1
  [192, 0, 2, 33], // 192.0.2.33
  0x01, // IPv6 Address Count 1
  [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01], // 2001:db8::1
  0x00, // Authentication Domain Name: length 0 (unencrypted DNS only)
  0x00, // Service Parameters Length 0
  0x01, // Internal Domain Count 1
  0x15, // Domain Length 21
  "internal.corp.example",
  0x02, // Search Domain Count 2
  0x15,
  "internal.corp.example",
  0x0c, // 12
  "corp.example",
);

// The draft's full-tunnel example (§3.6.1, Figure 5): DoH to the proxy itself.
const FULL_TUNNEL = bytes(
  0x01, // Nameserver Count 1
  [0x00, 0x01], // Service Priority 1
  0x00, // no IPv4 addresses
  0x00, // no IPv6 addresses
  0x12, // Authentication Domain Name: 18 bytes
  "masque.example.org",
  0x1e, // Service Parameters Length 30
  [0x00, 0x01, 0x00, 0x06], // key 1 (alpn), length 6
  [0x02, 0x68, 0x32, 0x02, 0x68, 0x33], // "h2", "h3" (length-prefixed ALPN ids)
  [0x00, 0x07, 0x00, 0x10], // key 7 (dohpath), length 16
  "/dns-query{?dns}",
  0x01, // Internal Domain Count 1
  0x00, // "" : the DNS root, every name
  0x00, // Search Domain Count 0
);

Deno.test("parseDnsAssign() reads the draft's split-tunnel example", () => {
  const [config, ...rest] = parseDnsAssign(SPLIT_TUNNEL);
  assertEquals(rest, []);
  assertEquals(config.nameservers.length, 1);
  const [ns] = config.nameservers;
  assertEquals(ns.priority, 1);
  assertEquals(ns.ipv4.map(formatIp), ["192.0.2.33"]);
  assertEquals(ns.ipv6.map(formatIp), ["2001:db8::1"]);
  assertEquals(ns.authDomain, "");
  assertEquals(ns.params, []);
  assertEquals(nameserverPort(ns), 53);
  assertEquals(config.internalDomains, ["internal.corp.example"]);
  assertEquals(config.searchDomains, ["internal.corp.example", "corp.example"]);
  assertEquals(plainDnsServers([config]).map(formatIp), ["192.0.2.33", "2001:db8::1"]);
});

Deno.test("parseDnsAssign() reads the draft's full-tunnel DoH example", () => {
  const [config] = parseDnsAssign(FULL_TUNNEL);
  const [ns] = config.nameservers;
  assertEquals(ns.authDomain, "masque.example.org");
  assertEquals(ns.params.map((p) => p.key), [1, 7]);
  assertEquals(new TextDecoder().decode(ns.params[1].value), "/dns-query{?dns}");
  assertEquals(config.internalDomains, [""]);
  // DoH only: nothing for resolv.conf.
  assertEquals(plainDnsServers([config]), []);
});

Deno.test("encodeDnsAssign() round-trips both examples, several configurations, and nothing", () => {
  assertEquals(toHex(encodeDnsAssign(parseDnsAssign(SPLIT_TUNNEL))), toHex(SPLIT_TUNNEL));
  assertEquals(toHex(encodeDnsAssign(parseDnsAssign(FULL_TUNNEL))), toHex(FULL_TUNNEL));
  const both = new Uint8Array([...SPLIT_TUNNEL, ...FULL_TUNNEL]);
  assertEquals(parseDnsAssign(both).length, 2);
  assertEquals(toHex(encodeDnsAssign(parseDnsAssign(both))), toHex(both));
  assertEquals(parseDnsAssign(new Uint8Array(0)), []);
  assertEquals(encodeDnsAssign([]).length, 0);
});

Deno.test("encodeCapsule() puts the draft's provisional types in front", () => {
  const configurations = parseDnsAssign(SPLIT_TUNNEL);
  const capsule = encodeCapsule({ type: "dns_assign", configurations });
  // 0x1ACE79EC as a 4-byte varint (prefix 0b10), then the length 86 as a 2-byte varint.
  assertEquals(toHex(capsule.subarray(0, 6)), "9ace79ec4056");
  assertEquals(capsule.length, 6 + SPLIT_TUNNEL.length);
  assertEquals(encodeCapsule({ type: "pref64", prefixes: [] }), hex("a74c0fbc 00"));
  assertEquals(CAPSULE_DNS_ASSIGN, 0x1ace79ec);
  assertEquals(CAPSULE_PREF64, 0x274c0fbc);
});

Deno.test("CapsuleParser hands DNS_ASSIGN and PREF64 over parsed, and closes on a malformed one", () => {
  const parser = new CapsuleParser();
  // 9ace79ec DNS_ASSIGN, 4056 length 86, the split-tunnel example; then
  // a74c0fbc PREF64, 0d length 13: 60 prefix length 96, 64:ff9b::/96 (12 bytes).
  parser.push(new Uint8Array([...hex("9ace79ec 4056"), ...SPLIT_TUNNEL]));
  parser.push(hex("a74c0fbc 0d 60 0064ff9b 00000000 00000000"));
  const dns = parser.next();
  assert(dns?.type === "dns_assign");
  assertEquals(dns.configurations[0].searchDomains, ["internal.corp.example", "corp.example"]);
  const pref64 = parser.next();
  assert(pref64?.type === "pref64");
  assertEquals(pref64.prefixes.map(formatPrefix), ["64:ff9b::/96"]);
  assertEquals(parser.next(), undefined);
  // 9ace79ec DNS_ASSIGN, 03 length 3: 01 one nameserver, 00 00 priority 0 (forbidden).
  parser.push(hex("9ace79ec 03 01 0000"));
  assertThrows(() => parser.next(), CapsuleError, "Cannot parse DNS_ASSIGN capsule");
});

Deno.test("plainDnsServers() orders by priority and skips encrypted-only and other ports", () => {
  const configs: DnsConfiguration[] = [{
    nameservers: [
      { priority: 5, ipv4: [parseIp("198.18.1.53")!], ipv6: [], authDomain: "", params: [] },
      {
        priority: 1,
        ipv4: [parseIp("198.18.1.54")!],
        ipv6: [],
        authDomain: "dns.example",
        params: [{ key: 2, value: new Uint8Array(0) }], // no-default-alpn: encrypted only
      },
      {
        priority: 2,
        ipv4: [parseIp("198.18.1.55")!],
        ipv6: [parseIp("fd00::55")!],
        authDomain: "",
        params: [],
      },
      {
        priority: 3,
        ipv4: [parseIp("198.18.1.56")!],
        ipv6: [],
        authDomain: "",
        params: [{ key: 3, value: new Uint8Array([0x14, 0xe9]) }], // port 5353
      },
    ],
    internalDomains: [""],
    searchDomains: ["corp.example"],
  }];
  const parsed = parseDnsAssign(encodeDnsAssign(configs));
  assertEquals(nameserverPort(parsed[0].nameservers[3]), 5353);
  assertEquals(plainDnsServers(parsed).map(formatIp), ["198.18.1.55", "fd00::55", "198.18.1.53"]);
});

Deno.test("parseDnsAssign() rejects malformed values with a clear error", async (t) => {
  const ns = (priority: number[], rest: (number | string | number[])[]) =>
    bytes(0x01, priority, ...rest);
  const noDomains = [0x00, 0x00];
  const cases: [string, Uint8Array, string][] = [
    [
      "ends inside the nameserver",
      bytes(0x01, 0x00),
      "nameserver count 1 needs at least 6 bytes, 1 left",
    ],
    ["priority 0", ns([0, 0], [0, 0, 0, 0, ...noDomains]), "nameserver 0 has service priority 0"],
    [
      "address count beyond the value",
      ns([0, 1], [0x03, 1, 2, 3, 4]),
      "configuration 0 nameserver 0 IPv4 address count 3 needs at least 12 bytes, 4 left",
    ],
    [
      "ends inside an IPv6 address",
      ns([0, 1], [0x00, 0x01, 0x20, 0x01]),
      "IPv6 address count 1 needs at least 16 bytes, 2 left",
    ],
    [
      "ipv4hint",
      ns([0, 1], [0x01, [1, 2, 3, 4], 0x00, 0x00, 0x08, [0, 4, 0, 4, 1, 2, 3, 4], ...noDomains]),
      "has ipv4hint, which the draft forbids",
    ],
    [
      "keys out of order",
      ns([0, 1], [
        0x01,
        [1, 2, 3, 4],
        0x00,
        0x00,
        0x0b,
        [0, 7, 0, 1, 0x2f],
        [0, 3, 0, 2, 0, 53],
        ...noDomains,
      ]),
      "has SvcParamKey 3 after 7",
    ],
    [
      "alpn without a name",
      ns([0, 1], [0x01, [1, 2, 3, 4], 0x00, 0x00, 0x07, [0, 1, 0, 3, 2, 0x68, 0x33], ...noDomains]),
      "has alpn or no-default-alpn but no authentication domain name",
    ],
    [
      "port of 3 bytes",
      ns([0, 1], [0x01, [1, 2, 3, 4], 0x00, 0x00, 0x07, [0, 3, 0, 3, 0, 0, 53], ...noDomains]),
      "has a port of 3 bytes, not 2",
    ],
    [
      "SvcParam longer than its block",
      ns([0, 1], [0x01, [1, 2, 3, 4], 0x00, 0x00, 0x05, [0, 7, 0, 9, 0x2f], ...noDomains]),
      "SvcParam 7 needs 9 bytes, 1 left",
    ],
    [
      "domain with a space",
      bytes(0x00, 0x01, 0x05, "a b.c", 0x00),
      `internal domain 0 "a b.c" has byte 0x20 at 1`,
    ],
    [
      "domain with an empty label",
      bytes(0x00, 0x00, 0x01, 0x04, "a..b"),
      `search domain 0 "a..b" has an empty label`,
    ],
    [
      "label of 64 bytes",
      bytes(0x00, 0x01, [0x40, 0x40], "a".repeat(64), 0x00),
      "has a label longer than 63 bytes",
    ],
    [
      "UTF-8 domain (not an A-label)",
      bytes(0x00, 0x01, 0x02, [0xc3, 0xa9], 0x00),
      "has byte 0xc3 at 0",
    ],
    [
      "too many nameservers",
      bytes(MAX_NAMESERVERS + 1, new Array(200).fill(0)),
      `nameserver count ${MAX_NAMESERVERS + 1} exceeds the limit of ${MAX_NAMESERVERS}`,
    ],
    [
      "too many domains",
      bytes(0x00, [0x40, MAX_DOMAINS + 1]),
      `internal domain count ${MAX_DOMAINS + 1} exceeds the limit of ${MAX_DOMAINS}`,
    ],
    ["truncated varint", bytes(0x00, 0x00, 0x40), "value ends inside search domain count"],
    ["ends before the domain counts", bytes(0x00), "value ends before internal domain count"],
  ];
  for (const [name, value, message] of cases) {
    await t.step(name, () => {
      assertThrows(() => parseDnsAssign(value), CapsuleError, message);
    });
  }
});

Deno.test("parseDnsAssign() never throws anything but CapsuleError on random and mutated input", () =>
  fuzz((random) => {
    const seedValues = [SPLIT_TUNNEL, FULL_TUNNEL];
    const byte = () => Math.floor(random() * 256);
    let rejected = 0;
    for (let i = 0; i < 3000; i++) {
      let value: Uint8Array;
      if (i % 2 === 0) {
        value = Uint8Array.from({ length: i % 97 }, byte);
      } else {
        value = seedValues[i % 4 === 1 ? 0 : 1].slice(0, 1 + (i % 90));
        for (let flip = 0; flip < 3; flip++) value[byte() % value.length] ^= 1 << (byte() % 8);
      }
      try {
        parseDnsAssign(value);
      } catch (error) {
        assert(error instanceof CapsuleError, `${error} for ${toHex(value)}`);
        rejected++;
      }
    }
    assert(rejected > 1000, `only ${rejected} of 3000 rejected`);
  }, 14));

Deno.test("encodeDnsAssign() refuses what the parser would reject", () => {
  const ok = { priority: 1, ipv4: [parseIp("198.18.1.53")!], ipv6: [], authDomain: "", params: [] };
  const config = (nameserver: typeof ok, domains: string[] = []) => [{
    nameservers: [nameserver],
    internalDomains: domains,
    searchDomains: [],
  }];
  assertThrows(
    () => encodeDnsAssign(config({ ...ok, priority: 0 })),
    CapsuleError,
    "Cannot encode DNS_ASSIGN capsule: configuration 0 nameserver 0 has service priority 0, not 1..65535",
  );
  assertThrows(
    () => encodeDnsAssign(config({ ...ok, ipv4: [new Uint8Array(16)] })),
    CapsuleError,
    "has an IPv4 address of 16 bytes",
  );
  assertThrows(() => encodeDnsAssign(config(ok, ["bad domain"])), CapsuleError, "has byte 0x20");
});

Deno.test("parsePref64() reads the draft's example 64:ff9b::/96", () => {
  // draft §4.3, Figure 9: Prefix Length 96, then the highest 96 bits of 64:ff9b::.
  const value = bytes(0x60, [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0]);
  const prefixes = parsePref64(value);
  assertEquals(prefixes.map(formatPrefix), ["64:ff9b::/96"]);
  assertEquals(toHex(encodePref64(prefixes)), toHex(value));
  const several = [parsePrefix("64:ff9b:1::/48"), parsePrefix("2001:db8::/32")];
  assertEquals(parsePref64(encodePref64(several)).map(formatPrefix), [
    "64:ff9b:1::/48",
    "2001:db8::/32",
  ]);
  assertEquals(parsePref64(new Uint8Array(0)), []); // withdraws earlier prefixes
});

Deno.test("parsePref64() and encodePref64() reject malformed prefixes", async (t) => {
  const cases: [string, () => unknown, string][] = [
    ["12 bytes", () => parsePref64(new Uint8Array(12)), "length 12 is not a multiple of 13"],
    ["length 33", () => parsePref64(bytes(33, new Array(12).fill(0))), "prefix 0 has length 33"],
    [
      "bits past the length",
      () => parsePref64(bytes(32, [0x20, 1, 0xd, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0])),
      "prefix 0 2001:db8:100:: has bits set past length 32",
    ],
    [
      "17 prefixes",
      () => parsePref64(new Uint8Array(13 * 17)),
      "17 prefixes exceed the limit of 16",
    ],
    [
      "IPv4 prefix",
      () => encodePref64([parsePrefix("198.18.0.0/32")]),
      "prefix 0 must be IPv6 of length 32, 40, 48, 56, 64 or 96, not IPv4/32",
    ],
    ["IPv6 /128", () => encodePref64([parsePrefix("64:ff9b::/128")]), "not IPv6/128"],
  ];
  for (const [name, run, message] of cases) {
    await t.step(name, () => {
      assertThrows(run, CapsuleError, message);
    });
  }
});

Deno.test("plainDnsConfiguration() is one plain nameserver for every name, encoded as the draft says", () => {
  const config = plainDnsConfiguration(
    [parseIp("198.18.100.1")!, parseIp("fd00:100::1")!],
    ["corp.example"],
  );
  assertEquals(plainDnsServers([config]).map(formatIp), ["198.18.100.1", "fd00:100::1"]);
  assertEquals(
    toHex(encodeDnsAssign([config])),
    toHex(bytes(
      0x01, // Nameserver Count 1
      [0x00, 0x01], // Service Priority 1
      0x01, // IPv4 Address Count 1
      [198, 18, 100, 1],
      0x01, // IPv6 Address Count 1
      [0xfd, 0x00, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], // fd00:100::1
      0x00, // Authentication Domain Name: empty (plain DNS)
      0x00, // Service Parameters Length 0
      0x01, // Internal Domain Count 1
      0x00, // "": the root, every name
      0x01, // Search Domain Count 1
      0x0c, // 12
      "corp.example",
    )),
  );
});
