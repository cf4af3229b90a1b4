import { assert, assertEquals } from "../tests/support/assert.ts";
import { parseIp, parsePrefix } from "../shared/ip/ip_address.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import { hostInputChain, watchHostAddresses } from "./firewall.ts";
import { natRuleset } from "./nat.ts";
import { nullLogger } from "../shared/log.ts";
import { haveCommand } from "../tests/support/netns.ts";
import { NEEDS_ROOT, RUN_AS_ROOT, skipUnless, skipUnlessCommands } from "../tests/support/skip.ts";

const GATEWAYS = ["198.18.100.1", "fd00:100::1"].map((text) => parseIp(text)!);

Deno.test("hostInputChain() drops what comes in on the TUN for the host, but allowed services", () => {
  assertEquals(
    hostInputChain("mvpn-relay", GATEWAYS, [
      { protocol: "udp", firstPort: 53, lastPort: 53 },
      { protocol: "tcp", firstPort: 8000, lastPort: 8080 },
      { protocol: "ping" },
    ]),
    [
      "  chain input {",
      "    type filter hook input priority filter; policy accept;",
      '    iifname "mvpn-relay" ip daddr 198.18.100.1 udp dport 53 accept',
      '    iifname "mvpn-relay" ip daddr 198.18.100.1 tcp dport 8000-8080 accept',
      '    iifname "mvpn-relay" ip daddr 198.18.100.1 icmp type echo-request accept',
      '    iifname "mvpn-relay" ip6 daddr fd00:100::1 udp dport 53 accept',
      '    iifname "mvpn-relay" ip6 daddr fd00:100::1 tcp dport 8000-8080 accept',
      '    iifname "mvpn-relay" ip6 daddr fd00:100::1 icmpv6 type echo-request accept',
      '    iifname "mvpn-relay" counter drop',
      "  }",
    ],
  );
  assertEquals(hostInputChain("t0", GATEWAYS, []).slice(2), [
    '    iifname "t0" counter drop',
    "  }",
  ]);
});

Deno.test("natRuleset() puts the input chain into the relay's own table", () => {
  const ruleset = natRuleset(
    "masque_vpn_t0",
    ["198.18.100.0/24", "fd00:100::/64"].map(parsePrefix),
    "t0",
    hostInputChain("t0", GATEWAYS, [{ protocol: "ping" }]),
  );
  assertEquals(ruleset.split("\n"), [
    "table inet masque_vpn_t0 {",
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    '    ip saddr 198.18.100.0/24 oifname != "t0" masquerade',
    '    ip6 saddr fd00:100::/64 oifname != "t0" masquerade',
    "  }",
    "  chain input {",
    "    type filter hook input priority filter; policy accept;",
    '    iifname "t0" ip daddr 198.18.100.1 icmp type echo-request accept',
    '    iifname "t0" ip6 daddr fd00:100::1 icmpv6 type echo-request accept',
    '    iifname "t0" counter drop',
    "  }",
    "}",
    "",
  ]);
});

Deno.test({
  name: "the relay's ruleset passes `nft --check`",
  ...(Deno.uid() === 0
    ? await skipUnlessCommands(["nft"], haveCommand)
    : skipUnless(false, NEEDS_ROOT, RUN_AS_ROOT)),
  async fn() {
    const ruleset = natRuleset(
      "masque_vpn_check",
      ["198.18.100.0/24", "fd00:100::/64"].map(parsePrefix),
      "t0",
      hostInputChain("t0", GATEWAYS, [
        { protocol: "udp", firstPort: 53, lastPort: 53 },
        { protocol: "tcp", firstPort: 1, lastPort: 1024 },
        { protocol: "ping" },
      ]),
    );
    const child = new Deno.Command("nft", {
      args: ["--check", "-f", "-"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(ruleset));
    await writer.close();
    const output = await child.output();
    assertEquals(output.code, 0, new TextDecoder().decode(output.stderr));
  },
});

Deno.test("watchHostAddresses() hands the relay this host's local routes and stops", () => {
  const seen: IpPrefix[][] = [];
  const watch = watchHostAddresses({
    setHostPrefixes(prefixes) {
      seen.push([...prefixes]);
      return true;
    },
  }, nullLogger);
  watch.stop();
  assertEquals(seen.length, 1);
  assert(
    seen[0].some((p) => p.version === 4 && p.address[0] === 127 && p.prefixLength === 8),
    "127.0.0.0/8 is a local route of every host",
  );
});
