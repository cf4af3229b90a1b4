import { assert, assertEquals, assertThrows } from "../tests/support/assert.ts";
import { skipUnless } from "../tests/support/skip.ts";
import {
  encodeRouteDumpRequest,
  encodeRuleDumpRequest,
  encodeRuleRequest,
  encodeTableRouteRequest,
  formatRule,
  formatTableRoute,
  parseRouteMessage,
  parseRuleMessage,
  RTM_NEWRULE,
} from "./_rule_struct.ts";
import { HOST_LITTLE_ENDIAN, parseNetlinkMessages, RTM_NEWROUTE, StructError } from "./_struct.ts";

// The structs are in host byte order; the hand-built bytes below are little-endian.
const LE = skipUnless(
  HOST_LITTLE_ENDIAN,
  "the expected bytes are written little-endian and this host is big-endian",
  "run on a little-endian host (x86-64, arm64)",
);

const v6 = (...tail: number[]) => {
  const out = new Uint8Array(16);
  out.set(tail, 16 - tail.length);
  return out;
};

Deno.test({
  name: "encodeRuleRequest() packs `ip rule add not fwmark 0xcabc lookup 51900 priority 32763`",
  ...LE,
  fn() {
    const bytes = encodeRuleRequest(7, "add", {
      family: 4,
      priority: 32763,
      table: 51900,
      fwmark: 0xcabc,
      invert: true,
    });
    assertEquals(
      Array.from(bytes),
      [
        ...[0x34, 0, 0, 0], // nlmsghdr length 52
        ...[32, 0], // RTM_NEWRULE
        ...[0x05, 0x06], // REQUEST | ACK | EXCL | CREATE
        ...[7, 0, 0, 0], // seq
        ...[0, 0, 0, 0], // pid
        2, // fib_rule_hdr: family AF_INET
        0, // dst_len
        0, // src_len
        0, // tos
        0, // table: RT_TABLE_UNSPEC, 51900 does not fit 8 bits
        0, // res1
        0, // res2
        1, // action FR_ACT_TO_TBL
        ...[2, 0, 0, 0], // flags FIB_RULE_INVERT
        ...[8, 0, 6, 0, 0xfb, 0x7f, 0, 0], // FRA_PRIORITY 32763
        ...[8, 0, 15, 0, 0xbc, 0xca, 0, 0], // FRA_TABLE 51900
        ...[8, 0, 10, 0, 0xbc, 0xca, 0, 0], // FRA_FWMARK 0xcabc
      ],
    );
  },
});

Deno.test({
  name: "encodeRuleRequest() packs an IPv6 `to` rule with suppress_prefixlength and protocol",
  ...LE,
  fn() {
    const bytes = encodeRuleRequest(1, "delete", {
      family: 6,
      priority: 100,
      table: 254,
      destination: { version: 6, address: v6(0xfd, 0, 0, 0x53), prefixLength: 128 },
      suppressPrefixLength: 0,
      protocol: 77,
    });
    const [message] = parseNetlinkMessages(bytes);
    assertEquals(message.type, 33); // RTM_DELRULE
    assertEquals(message.flags, 0x05); // REQUEST | ACK
    assertEquals(Array.from(message.payload.subarray(0, 12)), [
      10, // AF_INET6
      128, // dst_len
      0,
      0,
      254, // main fits the 8-bit field
      0,
      0,
      1,
      ...[0, 0, 0, 0],
    ]);
    // Then FRA_PRIORITY, FRA_TABLE, FRA_DST (4 + 16 bytes), FRA_SUPPRESS_PREFIXLEN, FRA_PROTOCOL (u8, padded).
    assertEquals(Array.from(message.payload.subarray(28, 32)), [20, 0, 1, 0]);
    assertEquals(Array.from(message.payload.subarray(48, 56)), [8, 0, 14, 0, 0, 0, 0, 0]);
    assertEquals(Array.from(message.payload.subarray(56, 64)), [5, 0, 21, 0, 77, 0, 0, 0]);
    assertEquals(message.payload.length, 64);
  },
});

Deno.test("encodeRuleRequest() refuses values that do not fit", async (t) => {
  const base = { family: 4 as const, priority: 1, table: 100 };
  const cases: [string, Parameters<typeof encodeRuleRequest>[2], string][] = [
    ["table 0", { ...base, table: 0 }, "table 0 is outside 1..4294967295"],
    ["table 2^32", { ...base, table: 2 ** 32 }, "table 4294967296 is outside"],
    ["priority -1", { ...base, priority: -1 }, "rule priority -1: not a u32"],
    ["fwmark 1.5", { ...base, fwmark: 1.5 }, "rule fwmark 1.5: not a u32"],
    [
      "suppress 33 for IPv4",
      { ...base, suppressPrefixLength: 33 },
      "suppress_prefixlength 33 is outside 0..32",
    ],
    [
      "IPv6 destination in an IPv4 rule",
      { ...base, destination: { version: 6, address: v6(1), prefixLength: 128 } },
      "::1/128 is not an IPv4 prefix",
    ],
    ["protocol 256", { ...base, protocol: 256 }, "protocol 256 is not a u8"],
  ];
  for (const [name, rule, message] of cases) {
    await t.step(name, () => {
      assertThrows(() => encodeRuleRequest(1, "add", rule), StructError, message);
    });
  }
});

Deno.test({
  name: "parseRuleMessage() reads a dumped rule; the 32-bit table wins over the header",
  ...LE,
  fn() {
    const payload = [
      ...[10, 128, 0, 0, 252, 0, 0, 1, 2, 0, 0, 0], // AF_INET6, dst_len 128, table COMPAT, TO_TBL, INVERT
      ...[8, 0, 6, 0, 0xfa, 0x7f, 0, 0], // FRA_PRIORITY 32762
      ...[8, 0, 15, 0, 0xbc, 0xca, 0, 0], // FRA_TABLE 51900
      ...[8, 0, 10, 0, 0x01, 0, 0, 0], // FRA_FWMARK 1
      ...[8, 0, 16, 0, 0xff, 0, 0, 0], // FRA_FWMASK 0xff
      ...[8, 0, 14, 0, 0xff, 0xff, 0xff, 0xff], // FRA_SUPPRESS_PREFIXLEN -1: off
      ...[20, 0, 1, 0, 0xfd, ...new Array(14).fill(0), 0x53], // FRA_DST fd00::53
      ...[5, 0, 21, 0, 77, 0, 0, 0], // FRA_PROTOCOL 77
      ...[8, 0, 99, 0, 1, 2, 3, 4], // unknown attribute, skipped
    ];
    const rule = parseRuleMessage({
      type: RTM_NEWRULE,
      flags: 2,
      seq: 1,
      pid: 0,
      payload: new Uint8Array(payload),
    });
    assertEquals(rule.family, 6);
    assertEquals(rule.priority, 32762);
    assertEquals(rule.table, 51900);
    assertEquals(rule.invert, true);
    assertEquals(rule.fwmark, 1);
    assertEquals(rule.fwmask, 0xff);
    assertEquals(rule.suppressPrefixLength, undefined);
    assertEquals(rule.protocol, 77);
    assertEquals(rule.destination?.prefixLength, 128);
    assertEquals(
      formatRule(rule),
      "32762: not from all to fd00::53/128 fwmark 0x1/0xff lookup 51900 proto 77 (IPv6)",
    );
  },
});

Deno.test("parseRuleMessage() and parseRouteMessage() reject malformed messages", async (t) => {
  const rule = (payload: number[]) => ({
    type: RTM_NEWRULE,
    flags: 0,
    seq: 0,
    pid: 0,
    payload: new Uint8Array(payload),
  });
  const route = (payload: number[]) => ({ ...rule(payload), type: RTM_NEWROUTE });
  const header = [2, 0, 0, 0, 254, 0, 0, 1, 0, 0, 0, 0];
  const cases: [string, () => unknown, string][] = [
    [
      "short rule header",
      () => parseRuleMessage(rule([2, 0, 0])),
      "3 bytes, shorter than the 12-byte header",
    ],
    [
      "unknown family",
      () => parseRuleMessage(rule([7, ...header.slice(1)])),
      "address family 7 is neither 2 nor 10",
    ],
    [
      "u32 attribute of 2 bytes",
      () => parseRuleMessage(rule([...header, 6, 0, 6, 0, 1, 2, 0, 0])),
      "attribute has 2 bytes, need 4",
    ],
    [
      "IPv4 destination of 16 bytes",
      () =>
        parseRuleMessage(rule([2, 32, ...header.slice(2), 20, 0, 1, 0, ...new Array(16).fill(1)])),
      "IPv4 address attribute has 16 bytes, expected 4",
    ],
    [
      "attribute longer than the message",
      () => parseRuleMessage(rule([...header, 40, 0, 6, 0, 1, 2, 3, 4])),
      "Cannot parse rtattr: length 40 is outside 4..8",
    ],
    ["wrong message type", () => parseRuleMessage(route(header)), "message type 24 is not 32"],
    [
      "short route header",
      () => parseRouteMessage(route([2])),
      "1 bytes, shorter than the 12-byte header",
    ],
    [
      "route prefix longer than the family",
      () => parseRouteMessage(route([2, 33, ...header.slice(2)])),
      "prefix length 33 exceeds 32 for IPv4",
    ],
  ];
  for (const [name, parse, message] of cases) {
    await t.step(name, () => {
      assertThrows(parse, StructError, message);
    });
  }
});

Deno.test({
  name: "encodeTableRouteRequest() packs `ip -6 route add unreachable default table 51900`",
  ...LE,
  fn() {
    const bytes = encodeTableRouteRequest(3, "add", {
      destination: { version: 6, address: new Uint8Array(16), prefixLength: 0 },
      table: 51900,
      type: "unreachable",
    });
    assertEquals(Array.from(bytes), [
      ...[36, 0, 0, 0], // length 16 + 12 + 8
      ...[24, 0], // RTM_NEWROUTE
      ...[0x05, 0x06], // REQUEST | ACK | EXCL | CREATE
      ...[3, 0, 0, 0],
      ...[0, 0, 0, 0],
      10, // AF_INET6
      0, // dst_len 0: default, no RTA_DST
      0,
      0,
      0, // RT_TABLE_UNSPEC
      3, // RTPROT_BOOT
      0, // RT_SCOPE_UNIVERSE
      7, // RTN_UNREACHABLE
      ...[0, 0, 0, 0],
      ...[8, 0, 15, 0, 0xbc, 0xca, 0, 0], // RTA_TABLE 51900
    ]);
  },
});

Deno.test({
  name: "encodeTableRouteRequest() and parseRouteMessage() agree on a unicast route",
  ...LE,
  fn() {
    const route = {
      destination: {
        version: 4 as const,
        address: new Uint8Array([198, 18, 1, 0]),
        prefixLength: 24,
      },
      table: 200,
      type: "unicast" as const,
      oif: 5,
      metric: 10,
    };
    const [message] = parseNetlinkMessages(encodeTableRouteRequest(1, "add", route));
    assertEquals(message.payload[4], 200); // fits the header
    assertEquals(message.payload[6], 253); // RT_SCOPE_LINK for an IPv4 route through a device
    const parsed = parseRouteMessage(message);
    assertEquals(parsed.type, "unicast");
    assertEquals(parsed.table, 200);
    assertEquals(parsed.oif, 5);
    assertEquals(parsed.metric, 10);
    assertEquals(Array.from(parsed.destination.address), [198, 18, 1, 0]);
    assertEquals(formatTableRoute(route), "198.18.1.0/24 oif 5 table 200 metric 10");
    assertThrows(
      () => encodeTableRouteRequest(1, "add", { ...route, oif: undefined }),
      StructError,
      "a unicast route needs an output interface",
    );
  },
});

Deno.test("dump requests ask for every object of one family", () => {
  for (
    const [bytes, type] of [[encodeRuleDumpRequest(9, 6), 34], [encodeRouteDumpRequest(9, 4), 26]]
  ) {
    const [message] = parseNetlinkMessages(bytes as Uint8Array);
    assertEquals(message.type, type);
    assertEquals(message.flags, 0x301); // REQUEST | DUMP
    assertEquals(message.seq, 9);
    assert(message.payload[0] === (type === 34 ? 10 : 2));
  }
});
