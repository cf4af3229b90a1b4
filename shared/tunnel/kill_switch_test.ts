import { assert, assertEquals, assertThrows } from "../../tests/support/assert.ts";
import { parseIp, parsePrefix } from "../ip/ip_address.ts";
import {
  checkKillSwitchOptions,
  DEFAULT_LAN_SUBNETS,
  killSwitchRuleset,
  killSwitchTableName,
} from "./kill_switch.ts";

const BASE = {
  table: "masque_vpn_ks_mvpn0",
  tunName: "mvpn0",
  fwmark: 0xcabc,
  relays: [
    { address: parseIp("::ffff:198.18.0.1")!, port: 4433 },
    { address: parseIp("fd00:0:0:1::1")!, port: 443 },
  ],
};

Deno.test("killSwitchRuleset() allows the TUN, loopback and marked QUIC to the relay, then drops", () => {
  assertEquals(
    killSwitchRuleset(BASE),
    `add table inet masque_vpn_ks_mvpn0
delete table inet masque_vpn_ks_mvpn0
table inet masque_vpn_ks_mvpn0 {
  chain output {
    type filter hook output priority filter; policy accept;
    oifname "lo" accept
    oifname "mvpn0" accept
    meta mark 0xcabc ip daddr 198.18.0.1 udp dport 4433 accept
    meta mark 0xcabc ip6 daddr fd00:0:0:1::1 udp dport 443 accept
    icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept
    icmpv6 type { mld-listener-report, mld2-listener-report } ip6 hoplimit 1 accept
    meta nfproto ipv4 udp sport 68 udp dport 67 accept
    meta nfproto ipv6 udp sport 546 udp dport 547 accept
    counter drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    oifname "mvpn0" accept
    iifname "mvpn0" ct state established,related accept
    counter drop
  }
}
`,
  );
});

Deno.test("killSwitchRuleset() lets TCP to a relay's TCP port through unmarked, each endpoint once", () => {
  const text = killSwitchRuleset({
    ...BASE,
    relays: [
      ...BASE.relays,
      { address: parseIp("198.18.0.1")!, port: 4433 }, // the first one again, unmapped
      { address: parseIp("198.18.0.1")!, port: 443, protocol: "tcp" },
    ],
  });
  const relayLines = text.split("\n").filter((line) => line.includes("daddr"));
  assertEquals(relayLines, [
    "    meta mark 0xcabc ip daddr 198.18.0.1 udp dport 4433 accept",
    "    meta mark 0xcabc ip6 daddr fd00:0:0:1::1 udp dport 443 accept",
    "    ip daddr 198.18.0.1 tcp dport 443 accept",
  ]);
  assertThrows(
    () =>
      killSwitchRuleset({
        ...BASE,
        relays: [{ address: parseIp("198.18.0.1")!, port: 443, protocol: "sctp" as "tcp" }],
      }),
    RangeError,
    "relay protocol sctp is not udp or tcp",
  );
});

Deno.test("killSwitchRuleset() adds --allow-lan subnets to both chains and honours a mask", () => {
  const text = killSwitchRuleset({
    ...BASE,
    fwmask: 0xff00,
    fwmark: 0x100,
    allowedSubnets: DEFAULT_LAN_SUBNETS.map(parsePrefix),
    allowNeighbourDiscovery: false,
    allowDhcp: false,
  });
  assert(text.includes("meta mark & 0xff00 == 0x100 ip daddr 198.18.0.1 udp dport 4433 accept"));
  for (const subnet of ["ip daddr 192.168.0.0/16 accept", "ip6 daddr fe80::/10 accept"]) {
    assertEquals(text.split("\n").filter((line) => line.trim() === subnet).length, 2, subnet);
  }
  assert(!text.includes("icmpv6"), text);
  assert(!text.includes("sport 68"), text);
});

Deno.test("killSwitchRuleset() refuses names and values it cannot write safely", () => {
  assertEquals(
    checkKillSwitchOptions({
      ...BASE,
      table: 'x" ; flush ruleset',
      tunName: 'a"b',
      fwmark: 0,
      relays: [{ address: new Uint8Array(3), port: 0 }],
    }),
    [
      `table name "x" ; flush ruleset" must be a letter then up to 63 letters, digits or _`,
      `interface "a"b" must be 1-15 letters, digits, '-', '_' or '.'`,
      "fwmark 0 must be 1..4294967295",
      "relay address has 3 bytes, not 4 or 16",
      "relay port 0 is outside 1..65535",
    ],
  );
  assertThrows(
    () => killSwitchRuleset({ ...BASE, relays: [] }),
    RangeError,
    "Cannot build kill switch: at least one relay endpoint is needed",
  );
});

Deno.test("killSwitchTableName() names the table after the TUN", () => {
  assertEquals(killSwitchTableName("mvpn0"), "masque_vpn_ks_mvpn0");
  assertEquals(killSwitchTableName("tun.vpn-1"), "masque_vpn_ks_tun_vpn_1");
});
