import { assertEquals, assertThrows } from "../../tests/support/assert.ts";
import { formatPrefix, parseIp, parsePrefix } from "../ip/ip_address.ts";
import {
  checkFullTunnelOptions,
  DEFAULT_FWMARK,
  DEFAULT_ROUTING_TABLE,
  DEFAULT_RULE_PRIORITY,
  diffRoutingPlans,
  isPlannedRule,
  type PlannedRoute,
  type PlannedRule,
  planRouting,
  type RoutingInput,
  type RoutingPlan,
  unmapIpv4,
} from "./full_tunnel.ts";
import { prefixesToRanges } from "./routes.ts";

const OPTIONS = {
  table: DEFAULT_ROUTING_TABLE,
  priority: DEFAULT_RULE_PRIORITY,
  fwmark: DEFAULT_FWMARK,
};
const ip = (text: string) => parseIp(text)!;
const ASSIGNED_BOTH = [parsePrefix("198.18.2.7/32"), parsePrefix("fd00:2::7/128")];
const RELAY4 = ip("198.18.0.1");
const RELAY6 = ip("fd00:0:0:1::1");

function input(
  advertised: string[],
  more: Partial<RoutingInput> = {},
): RoutingInput {
  return {
    advertised: prefixesToRanges(advertised.map(parsePrefix)),
    wanted: [],
    assigned: ASSIGNED_BOTH,
    relayAddresses: [RELAY4, RELAY6],
    dnsServers: [],
    ...more,
  };
}

/** The plan as `ip route` / `ip rule`-like lines. */
function lines(plan: RoutingPlan): { routes: string[]; rules: string[] } {
  return {
    routes: plan.routes.map((r) => `${r.type} ${formatPrefix(r.destination)}`),
    rules: plan.rules.map((r) =>
      [
        r.priority,
        `v${r.family}`,
        r.invert ? `not fwmark 0x${r.fwmark!.toString(16)}` : "",
        r.destination ? `to ${formatPrefix(r.destination)}` : "",
        `lookup ${r.table === 254 ? "main" : r.table}`,
        r.suppressPrefixLength !== undefined
          ? `suppress_prefixlength ${r.suppressPrefixLength}`
          : "",
      ].filter((part) => part !== "").join(" ")
    ),
  };
}

const WG_QUICK_4 = [
  "32762 v4 lookup main suppress_prefixlength 0",
  "32763 v4 not fwmark 0xcabc lookup 51900",
];
const WG_QUICK_6 = [
  "32762 v6 lookup main suppress_prefixlength 0",
  "32763 v6 not fwmark 0xcabc lookup 51900",
];

Deno.test("planRouting() for a full tunnel over both families: defaults in the own table, relay kept out", () => {
  const plan = planRouting(input(["0.0.0.0/0", "::/0"]), OPTIONS);
  assertEquals(lines(plan), {
    routes: ["tunnel 0.0.0.0/0", "tunnel ::/0"],
    rules: [
      "32761 v4 to 198.18.0.1/32 lookup main",
      ...WG_QUICK_4,
      "32761 v6 to fd00:0:0:1::1/128 lookup main",
      ...WG_QUICK_6,
    ],
  });
  assertEquals(plan.full, [4, 6]);
  assertEquals(plan.blocked, []);
  assertEquals(plan.priorities, { first: 32760, last: 32763 });
  assertEquals(plan.notes, []);
});

Deno.test("planRouting() for a full tunnel over IPv4 only blocks IPv6 instead of leaking it", () => {
  const plan = planRouting(
    input(["0.0.0.0/0"], { assigned: [parsePrefix("198.18.2.7/32")] }),
    OPTIONS,
  );
  assertEquals(lines(plan), {
    routes: ["tunnel 0.0.0.0/0", "unreachable ::/0"],
    rules: [
      "32761 v4 to 198.18.0.1/32 lookup main",
      ...WG_QUICK_4,
      // The relay over IPv6 is covered by the unreachable default, so it is kept out too.
      "32761 v6 to fd00:0:0:1::1/128 lookup main",
      ...WG_QUICK_6,
    ],
  });
  assertEquals(plan.full, [4]);
  assertEquals(plan.blocked, [6]);

  const open = planRouting(
    input(["0.0.0.0/0"], { assigned: [parsePrefix("198.18.2.7/32")] }),
    { ...OPTIONS, blockOtherFamilies: false },
  );
  assertEquals(lines(open).routes, ["tunnel 0.0.0.0/0"]);
  assertEquals(open.blocked, []);
});

Deno.test("planRouting() for a full tunnel over IPv6 only blocks IPv4", () => {
  const plan = planRouting(
    input(["::/0"], { assigned: [parsePrefix("fd00:2::7/128")], relayAddresses: [RELAY4] }),
    OPTIONS,
  );
  assertEquals(lines(plan), {
    routes: ["unreachable 0.0.0.0/0", "tunnel ::/0"],
    rules: ["32761 v4 to 198.18.0.1/32 lookup main", ...WG_QUICK_4, ...WG_QUICK_6],
  });
  assertEquals(plan.full, [6]);
  assertEquals(plan.blocked, [4]);
});

Deno.test("planRouting() for split tunnels uses the same table and rules, and nothing for absent families", async (t) => {
  await t.step("IPv4", () => {
    const plan = planRouting(input(["198.18.1.0/24"]), OPTIONS);
    assertEquals(lines(plan), { routes: ["tunnel 198.18.1.0/24"], rules: WG_QUICK_4 });
    assertEquals(plan.full, []);
    assertEquals(plan.blocked, []);
  });
  await t.step("IPv6", () => {
    const plan = planRouting(input(["fd00:0:0:2::/64"]), OPTIONS);
    assertEquals(lines(plan), { routes: ["tunnel fd00:0:0:2::/64"], rules: WG_QUICK_6 });
  });
  await t.step("both, narrowed by --route", () => {
    const plan = planRouting(
      input(["198.18.0.0/15", "fd00::/8"], {
        wanted: [
          parsePrefix("198.18.1.0/30"),
          parsePrefix("fd00:0:0:2::/64"),
          parsePrefix("10.0.0.0/8"),
        ],
      }),
      OPTIONS,
    );
    assertEquals(lines(plan), {
      routes: ["tunnel 198.18.1.0/30", "tunnel fd00:0:0:2::/64"],
      // The relay (198.18.0.1) lies outside the narrowed routes: no exception rule.
      rules: [...WG_QUICK_4, ...WG_QUICK_6],
    });
    assertEquals(plan.notes, ["--route 10.0.0.0/8 skipped: the relay does not advertise it"]);
  });
  await t.step("a split tunnel covering the relay keeps the relay out", () => {
    const plan = planRouting(input(["198.18.0.0/16"]), OPTIONS);
    assertEquals(lines(plan).rules, ["32761 v4 to 198.18.0.1/32 lookup main", ...WG_QUICK_4]);
  });
});

Deno.test("planRouting() skips a family the relay assigned no address in", () => {
  const plan = planRouting(
    input(["0.0.0.0/0", "::/0"], { assigned: [parsePrefix("198.18.2.7/32")] }),
    OPTIONS,
  );
  assertEquals(lines(plan).routes, ["tunnel 0.0.0.0/0", "unreachable ::/0"]);
  assertEquals(plan.full, [4]);
  assertEquals(plan.notes, ["IPv6 routes skipped: the relay assigned no IPv6 address"]);
});

Deno.test("planRouting() sends DNS servers through the tunnel, with a route when none covers them", () => {
  const plan = planRouting(
    input(["198.18.1.0/24", "fd00:0:0:2::/64"], {
      // One covered, one not, one IPv4-mapped duplicate, one of a family without address.
      dnsServers: [ip("198.18.1.2"), ip("9.9.9.9"), ip("::ffff:198.18.1.2"), ip("fd00:0:0:2::53")],
      assigned: [parsePrefix("198.18.2.7/32"), parsePrefix("fd00:2::7/128")],
    }),
    OPTIONS,
  );
  assertEquals(lines(plan), {
    routes: ["tunnel 198.18.1.0/24", "tunnel 9.9.9.9/32", "tunnel fd00:0:0:2::/64"],
    rules: [
      "32760 v4 to 198.18.1.2/32 lookup 51900",
      "32760 v4 to 9.9.9.9/32 lookup 51900",
      ...WG_QUICK_4,
      "32760 v6 to fd00:0:0:2::53/128 lookup 51900",
      ...WG_QUICK_6,
    ],
  });
  assertEquals(plan.dnsServers.map((a) => a.length), [4, 4, 16]);
  assertEquals(plan.notes, [
    "added a route to DNS server 9.9.9.9: the tunnel's routes do not cover it",
  ]);

  const noV6 = planRouting(
    input(["0.0.0.0/0"], {
      assigned: [parsePrefix("198.18.2.7/32")],
      dnsServers: [ip("fd00::53")],
    }),
    OPTIONS,
  );
  assertEquals(noV6.dnsServers, []);
  assertEquals(noV6.notes, ["DNS server fd00::53 not used: the relay assigned no IPv6 address"]);
});

Deno.test("planRouting() with no routes at all plans nothing", () => {
  const plan = planRouting(input([]), OPTIONS);
  assertEquals(lines(plan), { routes: [], rules: [] });
});

Deno.test("planRouting() takes the table, priorities and mask it is given", () => {
  const plan = planRouting(input(["0.0.0.0/0"], { relayAddresses: [] }), {
    table: 200,
    priority: 1000,
    fwmark: 0x100,
    fwmask: 0xff00,
    blockOtherFamilies: false,
  });
  assertEquals(plan.rules.map((r) => `${r.priority} ${r.table} ${r.fwmask ?? "-"}`), [
    "1002 254 -",
    "1003 200 65280",
  ]);
});

Deno.test("checkFullTunnelOptions() explains unusable tables, priorities and marks", () => {
  assertEquals(checkFullTunnelOptions(OPTIONS), []);
  assertEquals(
    checkFullTunnelOptions({ table: 254, priority: 32763, fwmark: 0x1ff, fwmask: 0xff }),
    [
      "routing table 254 must be 1..4294967295 and not 253..255 (default, main, local)",
      "rule priority 32763 must be 1..32762: the plan uses 4 priorities, all before main's rule at 32766",
      "fwmark 0x1ff has bits outside mask 0xff",
    ],
  );
  assertEquals(checkFullTunnelOptions({ table: 2 ** 32, priority: 0, fwmark: 0 }).length, 3);
  assertThrows(
    () => planRouting(input([]), { ...OPTIONS, table: 0 }),
    RangeError,
    "Cannot plan routing: routing table 0 must be",
  );
});

Deno.test("isPlannedRule() recognises a killed client's rules by priority and table", () => {
  const mine = { priority: DEFAULT_RULE_PRIORITY, table: DEFAULT_ROUTING_TABLE };
  assertEquals(isPlannedRule({ priority: 32760, table: 51900 }, mine), true);
  assertEquals(isPlannedRule({ priority: 32763, table: 254 }, mine), true);
  assertEquals(isPlannedRule({ priority: 32764, table: 51900 }, mine), false);
  assertEquals(isPlannedRule({ priority: 32762, table: 100 }, mine), false);
  assertEquals(isPlannedRule({ priority: 32766, table: 254 }, mine), false);
});

Deno.test("unmapIpv4() turns ::ffff:a.b.c.d into a.b.c.d and leaves others alone", () => {
  assertEquals(Array.from(unmapIpv4(ip("::ffff:198.18.0.1"))), [198, 18, 0, 1]);
  assertEquals(unmapIpv4(ip("fd00::1")).length, 16);
  assertEquals(unmapIpv4(ip("::198.18.0.1")).length, 16);
  assertEquals(unmapIpv4(ip("198.18.0.1")).length, 4);
  assertThrows(
    () => planRouting(input(["0.0.0.0/0"], { relayAddresses: [new Uint8Array(5)] }), OPTIONS),
    RangeError,
    "relay address has 5 bytes, not 4 or 16",
  );
});

Deno.test("diffRoutingPlans() adds and deletes only what differs between two plans", async (t) => {
  const before = planRouting(input(["0.0.0.0/0", "::/0"]), OPTIONS);
  await t.step("the same plan: nothing", () => {
    const change = diffRoutingPlans(before, planRouting(input(["0.0.0.0/0", "::/0"]), OPTIONS));
    assertEquals(change, { addRoutes: [], deleteRoutes: [], addRules: [], deleteRules: [] });
  });
  await t.step("a DNS server arrives (DNS_ASSIGN after the routes): its rule and route", () => {
    const after = planRouting(
      input(["0.0.0.0/0", "::/0"], { dnsServers: [ip("198.18.9.53")] }),
      OPTIONS,
    );
    const change = diffRoutingPlans(before, after);
    // Covered by the tunnel's default route: a rule, no route.
    assertEquals(lines({ ...after, routes: change.addRoutes, rules: change.addRules }), {
      routes: [],
      rules: ["32760 v4 to 198.18.9.53/32 lookup 51900"],
    });
    assertEquals([change.deleteRoutes, change.deleteRules], [[], []]);
  });
  await t.step("another relay address and split routes: old ones deleted, new ones added", () => {
    const after = planRouting(
      input(["198.18.0.0/15"], { relayAddresses: [ip("198.18.0.5")] }),
      OPTIONS,
    );
    const change = diffRoutingPlans(before, after);
    const text = (routes: readonly PlannedRoute[], rules: readonly PlannedRule[]) =>
      lines({ ...after, routes, rules });
    assertEquals(text(change.addRoutes, change.addRules), {
      routes: ["tunnel 198.18.0.0/15"],
      rules: ["32761 v4 to 198.18.0.5/32 lookup main"],
    });
    assertEquals(text(change.deleteRoutes, change.deleteRules), {
      routes: ["tunnel 0.0.0.0/0", "tunnel ::/0"],
      rules: [
        "32761 v4 to 198.18.0.1/32 lookup main",
        "32761 v6 to fd00:0:0:1::1/128 lookup main",
        ...WG_QUICK_6,
      ],
    });
  });
  await t.step("another table: refused", () => {
    const other = planRouting(input(["0.0.0.0/0"]), { ...OPTIONS, table: 7 });
    assertThrows(() => diffRoutingPlans(before, other), RangeError, "Cannot change routing");
  });
});
