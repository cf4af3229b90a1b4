// Root tests: a plan installed in a throwaway namespace whose "TUN" is one
// end of a veth pair (mva) and whose underlay (mvb) has default routes of
// both families, one of them at the metric the tunnel's would have. The
// kernel's own route lookup (`ip route get`) says where packets would go.
import { assertEquals, assertThrows } from "../tests/support/assert.ts";
import { skipUnlessRoot } from "../tests/support/skip.ts";
import { createNetns, deleteNetns, inNetns, IS_ROOT, runIp } from "../ffi/_testing.ts";
import { LibcError } from "../ffi/policy_routing.ts";
import { parseIp, parsePrefix } from "../shared/ip/ip_address.ts";
import {
  DEFAULT_FWMARK,
  DEFAULT_ROUTING_TABLE,
  DEFAULT_RULE_PRIORITY,
  planRouting,
  type RoutingPlan,
} from "../shared/tunnel/full_tunnel.ts";
import { prefixesToRanges } from "../shared/tunnel/routes.ts";
import { installRouting, removeStaleRouting } from "./routing.ts";

const ROOT_ONLY = {
  ...await skipUnlessRoot(IS_ROOT, ["ip"]),
  sanitizeOps: true,
  sanitizeResources: true,
};
const OPTIONS = {
  table: DEFAULT_ROUTING_TABLE,
  priority: DEFAULT_RULE_PRIORITY,
  fwmark: DEFAULT_FWMARK,
};
const MARK = `0x${DEFAULT_FWMARK.toString(16)}`;

function fullTunnelPlan(): RoutingPlan {
  return planRouting({
    advertised: prefixesToRanges([parsePrefix("0.0.0.0/0"), parsePrefix("::/0")]),
    wanted: [],
    assigned: [parsePrefix("198.18.2.7/32"), parsePrefix("fd00:2::7/128")],
    relayAddresses: [parseIp("::ffff:198.18.0.1")!, parseIp("fd00:0:0:1::1")!],
    // A resolver on the local network: it must still be reached through the tunnel.
    dnsServers: [parseIp("198.18.9.53")!],
  }, OPTIONS);
}

function withHost(body: (ns: string) => void): void {
  const ns = createNetns();
  try {
    const ip = (...args: string[]) => runIp(["-n", ns, ...args]);
    ip("link", "add", "mva", "type", "veth", "peer", "name", "mvb");
    ip("link", "set", "mva", "up");
    ip("link", "set", "mvb", "up");
    ip("address", "add", "198.18.2.7/32", "dev", "mva");
    ip("address", "add", "fd00:2::7/128", "dev", "mva", "nodad");
    ip("address", "add", "198.18.9.2/24", "dev", "mvb");
    ip("address", "add", "fd00:9::2/64", "dev", "mvb", "nodad");
    ip("route", "add", "default", "via", "198.18.9.1", "dev", "mvb");
    ip("-6", "route", "add", "default", "via", "fd00:9::1", "dev", "mvb", "metric", "1024");
    ip("-6", "route", "add", "default", "via", "fd00:9::3", "dev", "mvb", "metric", "10");
    body(ns);
  } finally {
    deleteNetns(ns);
  }
}

/** The device the kernel would send a packet to `destination` out of. */
function deviceFor(ns: string, destination: string, marked = false): string {
  const extra = marked ? ["mark", MARK] : [];
  return JSON.parse(runIp(["-n", ns, "-j", "route", "get", destination, ...extra]))[0].dev;
}

function ownRules(ns: string): number[] {
  const rules: { priority: number }[] = [
    ...JSON.parse(runIp(["-n", ns, "-4", "-j", "rule", "show"])),
    ...JSON.parse(runIp(["-n", ns, "-6", "-j", "rule", "show"])),
  ];
  return rules.map((r) => r.priority).filter((p) => p >= 32760 && p <= 32763);
}

function tableText(ns: string): string {
  return runIp(["-n", ns, "route", "show", "table", String(DEFAULT_ROUTING_TABLE)]) +
    runIp(["-n", ns, "-6", "route", "show", "table", String(DEFAULT_ROUTING_TABLE)]);
}

Deno.test({
  name:
    "installRouting() sends everything but marked traffic, the relay and the LAN through the TUN",
  ...ROOT_ONLY,
  fn: () =>
    withHost((ns) => {
      assertEquals(deviceFor(ns, "203.0.113.7"), "mvb");
      const installed = inNetns(ns, () => installRouting(fullTunnelPlan(), "mva"));
      // The main table's default routes are still there, untouched.
      assertEquals(JSON.parse(runIp(["-n", ns, "-6", "-j", "route", "show", "default"])).length, 2);

      assertEquals(deviceFor(ns, "203.0.113.7"), "mva");
      assertEquals(deviceFor(ns, "2001:db8::7"), "mva");
      assertEquals(deviceFor(ns, "203.0.113.7", true), "mvb");
      assertEquals(deviceFor(ns, "2001:db8::7", true), "mvb");
      assertEquals(deviceFor(ns, "198.18.0.1"), "mvb"); // the relay, even unmarked
      assertEquals(deviceFor(ns, "fd00:0:0:1::1"), "mvb");
      assertEquals(deviceFor(ns, "198.18.9.5"), "mvb"); // the local network (a more specific route)
      assertEquals(deviceFor(ns, "fd00:9::5"), "mvb");
      assertEquals(deviceFor(ns, "198.18.9.53"), "mva"); // DNS on the LAN still goes through the tunnel

      const problems = inNetns(ns, () => installed.remove());
      assertEquals(problems, []);
      assertEquals(ownRules(ns), []);
      assertEquals(tableText(ns), "");
      assertEquals(deviceFor(ns, "203.0.113.7"), "mvb");
      assertEquals(deviceFor(ns, "2001:db8::7"), "mvb");
    }),
});

Deno.test({
  name: "removeStaleRouting() clears what a killed client left, so the next start installs again",
  ...ROOT_ONLY,
  fn: () =>
    withHost((ns) => {
      inNetns(ns, () => installRouting(fullTunnelPlan(), "mva")); // never removed: SIGKILL
      // IPv4: DNS, relay, suppress, unmarked; IPv6: relay, suppress, unmarked.
      assertEquals(ownRules(ns).length, 7);
      const stale = inNetns(ns, () => removeStaleRouting(OPTIONS));
      assertEquals(stale.rules.length, 7);
      assertEquals(stale.routes, 2);
      assertEquals(ownRules(ns), []);
      assertEquals(tableText(ns), "");
      const again = inNetns(ns, () => installRouting(fullTunnelPlan(), "mva"));
      assertEquals(deviceFor(ns, "203.0.113.7"), "mva");
      // Without the cleanup, a start over a killed client's leftovers fails.
      assertThrows(
        () => inNetns(ns, () => installRouting(fullTunnelPlan(), "mva")),
        LibcError,
        "File exists (EEXIST)",
      );
      inNetns(ns, () => removeStaleRouting(OPTIONS));
      assertEquals(inNetns(ns, () => again.remove()), []); // already gone: not an error
    }),
});

Deno.test({
  name: "installRouting() removes what it added when a step fails",
  ...ROOT_ONLY,
  fn: () =>
    withHost((ns) => {
      // Someone else's identical rule makes the IPv6 suppress rule fail with EEXIST.
      runIp([
        "-n",
        ns,
        "-6",
        "rule",
        "add",
        "table",
        "main",
        "suppress_prefixlength",
        "0",
        "priority",
        "32762",
      ]);
      assertThrows(
        () => inNetns(ns, () => installRouting(fullTunnelPlan(), "mva")),
        LibcError,
        'Cannot add rule "32762: from all lookup main suppress_prefixlength 0 (IPv6)": File exists (EEXIST)',
      );
      assertEquals(ownRules(ns), [32762]); // only the other one's rule is left
      assertEquals(tableText(ns), "");
      assertThrows(
        () => inNetns(ns, () => installRouting(fullTunnelPlan(), "mvgone0")),
        LibcError,
        `Cannot add route default dev mvgone0 table ${DEFAULT_ROUTING_TABLE}: No such device (ENODEV)`,
      );
      assertEquals(tableText(ns), "");
    }),
});

Deno.test({
  name: "InstalledRouting.update() moves to a new plan in place: new DNS server, split routes",
  ...ROOT_ONLY,
  fn: () =>
    withHost((ns) => {
      const installed = inNetns(ns, () => installRouting(fullTunnelPlan(), "mva"));
      // The relay now advertises only 203.0.113.0/24 and names a resolver on another network.
      const split = planRouting({
        advertised: prefixesToRanges([parsePrefix("203.0.113.0/24")]),
        wanted: [],
        assigned: [parsePrefix("198.18.2.7/32"), parsePrefix("fd00:2::7/128")],
        relayAddresses: [parseIp("198.18.0.1")!],
        dnsServers: [parseIp("198.51.100.53")!],
      }, OPTIONS);
      inNetns(ns, () => installed.update(split));
      assertEquals(installed.plan, split);
      assertEquals(deviceFor(ns, "203.0.113.7"), "mva");
      assertEquals(deviceFor(ns, "198.51.100.53"), "mva"); // the new resolver, by its host route
      assertEquals(deviceFor(ns, "198.18.9.53"), "mvb"); // the old one: gone from the tunnel
      assertEquals(deviceFor(ns, "192.0.2.1"), "mvb"); // no default route in the tunnel any more
      assertEquals(deviceFor(ns, "2001:db8::7"), "mvb"); // nor IPv6
      // IPv4 only now: DNS, suppress, unmarked (the relay is not covered by the split routes).
      assertEquals(ownRules(ns), [32760, 32762, 32763]);
      assertEquals(inNetns(ns, () => installed.remove()), []);
      assertEquals(ownRules(ns), []);
      assertEquals(tableText(ns), "");
    }),
});
