// Root tests change rules and routes inside a throwaway network namespace
// (created with `ip netns add`, entered by the test thread with setns(2),
// deleted in a finally block) and check the result with `ip -n NS -j`.
import { assert, assertEquals, assertThrows } from "../tests/support/assert.ts";
import { skipUnlessRoot } from "../tests/support/skip.ts";
import { createNetns, deleteNetns, inNetns, IS_ROOT, runIp } from "./_testing.ts";
import {
  addRule,
  addTableRoute,
  deleteRule,
  deleteRulesWhere,
  deleteTableRoute,
  type FibRule,
  flushTable,
  LibcError,
  listRules,
  listTableRoutes,
  markUdpSocket,
  socketMark,
} from "./policy_routing.ts";

const ROOT_ONLY = {
  ...await skipUnlessRoot(IS_ROOT, ["ip"]),
  sanitizeOps: true,
  sanitizeResources: true,
};

const TABLE = 51900;
const MARK = 0xcabc;
const ANY4 = { version: 4 as const, address: new Uint8Array(4), prefixLength: 0 };
const ANY6 = { version: 6 as const, address: new Uint8Array(16), prefixLength: 0 };
const DNS6 = {
  version: 6 as const,
  address: new Uint8Array([0xfd, 0, ...new Array(13).fill(0), 0x53]),
  prefixLength: 128,
};

/** The wg-quick pair for one family: main without default routes, then unmarked traffic to TABLE. */
function wgQuickRules(family: 4 | 6): FibRule[] {
  return [
    { family, priority: 32762, table: 254, suppressPrefixLength: 0 },
    { family, priority: 32763, table: TABLE, fwmark: MARK, invert: true },
  ];
}

/** Runs `body` in a fresh namespace that holds a veth pair `mva`/`mvb`, both up. */
function withNamespace(body: (ns: string) => void): void {
  const ns = createNetns();
  try {
    runIp(["-n", ns, "link", "add", "mva", "type", "veth", "peer", "name", "mvb"]);
    runIp(["-n", ns, "link", "set", "mva", "up"]);
    runIp(["-n", ns, "link", "set", "mvb", "up"]);
    body(ns);
  } finally {
    deleteNetns(ns);
  }
}

type IpRule = {
  priority: number;
  table: string;
  fwmark?: string;
  not?: null;
  suppress_prefixlen?: number;
  dst?: string;
  protocol?: string;
};

function ipRules(ns: string, family: "-4" | "-6"): IpRule[] {
  return JSON.parse(runIp(["-n", ns, family, "-j", "-d", "rule", "show"]));
}

Deno.test({
  name: "addRule() installs wg-quick's rules for both families as `ip rule` shows them",
  ...ROOT_ONLY,
  fn: () =>
    withNamespace((ns) => {
      inNetns(ns, () => {
        for (const rule of [...wgQuickRules(4), ...wgQuickRules(6)]) addRule(rule);
        addRule({ family: 6, priority: 32760, table: TABLE, destination: DNS6, protocol: 77 });
      });
      for (const family of ["-4", "-6"] as const) {
        const rules = ipRules(ns, family);
        const suppress = rules.find((r) => r.priority === 32762);
        assertEquals(suppress?.table, "main");
        assertEquals(suppress?.suppress_prefixlen, 0);
        const marked = rules.find((r) => r.priority === 32763);
        assertEquals(marked?.table, String(TABLE));
        assertEquals(marked?.fwmark, "0xcabc");
        assert(marked && "not" in marked, JSON.stringify(marked));
      }
      const dns = ipRules(ns, "-6").find((r) => r.priority === 32760);
      assertEquals(dns?.dst, "fd00::53");
      assertEquals(dns?.protocol, "77");

      // listRules() reads back what `ip` shows, the kernel's own rules included.
      const listed = inNetns(ns, () => listRules());
      assertEquals(
        listed.map((r) => `${r.family}/${r.priority}/${r.table}`),
        [
          "4/0/255",
          "4/32762/254",
          "4/32763/51900",
          "4/32766/254",
          "4/32767/253",
          "6/0/255",
          "6/32760/51900",
          "6/32762/254",
          "6/32763/51900",
          "6/32766/254",
        ],
      );
      const marked = listed.find((r) => r.family === 6 && r.priority === 32763);
      assertEquals(marked?.invert, true);
      assertEquals(marked?.fwmark, MARK);
      assertEquals(marked?.fwmask, 0xffffffff); // the kernel's default mask
      assertEquals(listed.find((r) => r.priority === 32760)?.protocol, 77);

      inNetns(ns, () => {
        assertThrows(
          () => addRule(wgQuickRules(4)[1]),
          LibcError,
          `Cannot add rule "32763: not from all fwmark 0xcabc lookup ${TABLE} (IPv4)": File exists (EEXIST)`,
        );
        deleteRule(wgQuickRules(4)[1]);
        assertThrows(
          () => deleteRule(wgQuickRules(4)[1]),
          LibcError,
          "No such file or directory (ENOENT)",
        );
      });
      assertEquals(ipRules(ns, "-4").find((r) => r.priority === 32763), undefined);
    }),
});

Deno.test({
  name: "deleteRulesWhere() removes a killed client's rules by priority and leaves the rest",
  ...ROOT_ONLY,
  fn: () =>
    withNamespace((ns) => {
      // What a client killed by SIGKILL left, and a rule of someone else's at a nearby priority.
      for (const rule of [...wgQuickRules(4), ...wgQuickRules(6)]) {
        runIp([
          "-n",
          ns,
          `-${rule.family}`,
          "rule",
          "add",
          ...(rule.invert ? ["not", "fwmark", `0x${MARK.toString(16)}`] : []),
          "table",
          rule.table === 254 ? "main" : String(rule.table),
          ...(rule.suppressPrefixLength === 0 ? ["suppress_prefixlength", "0"] : []),
          "priority",
          String(rule.priority),
        ]);
      }
      runIp(["-n", ns, "rule", "add", "table", "100", "priority", "32764"]);
      const deleted = inNetns(
        ns,
        () => deleteRulesWhere((r) => r.priority >= 32760 && r.priority <= 32763),
      );
      assertEquals(deleted.length, 4);
      assertEquals(ipRules(ns, "-4").map((r) => r.priority), [0, 32764, 32766, 32767]);
      assertEquals(ipRules(ns, "-6").map((r) => r.priority), [0, 32766]);
    }),
});

Deno.test({
  name:
    "addTableRoute() fills a table above 255 beside main's default routes, flushTable() empties it",
  ...ROOT_ONLY,
  fn: () =>
    withNamespace((ns) => {
      // The host's own default routes, as in the issue: IPv6 at the metric the tunnel would use.
      runIp(["-n", ns, "address", "add", "198.18.9.2/24", "dev", "mvb"]);
      runIp(["-n", ns, "route", "add", "default", "via", "198.18.9.1", "dev", "mvb"]);
      runIp(["-n", ns, "-6", "route", "add", "default", "dev", "mvb", "metric", "1024"]);
      inNetns(ns, () => {
        addTableRoute({ destination: ANY4, table: TABLE, type: "unicast", device: "mva" });
        addTableRoute({ destination: ANY6, table: TABLE, type: "unicast", device: "mva" });
        addTableRoute({ destination: DNS6, table: TABLE, type: "unicast", device: "mva" });
        addTableRoute({
          destination: { version: 4, address: new Uint8Array([198, 18, 5, 0]), prefixLength: 24 },
          table: TABLE,
          type: "unreachable",
        });
        assertThrows(
          () => addTableRoute({ destination: ANY4, table: TABLE, type: "unicast", device: "mva" }),
          LibcError,
          `Cannot add route default dev mva table ${TABLE}: File exists (EEXIST)`,
        );
        assertThrows(
          () =>
            addTableRoute({ destination: ANY4, table: TABLE, type: "unicast", device: "nope0" }),
          LibcError,
          `Cannot add route default dev nope0 table ${TABLE}: No such device (ENODEV)`,
        );
      });
      const v4 = JSON.parse(runIp(["-n", ns, "-4", "-j", "route", "show", "table", String(TABLE)]));
      assertEquals(
        v4.map((r: { type?: string; dst: string; dev?: string }) =>
          `${r.type ?? "unicast"} ${r.dst} ${r.dev ?? ""}`
        ),
        ["unicast default mva", "unreachable 198.18.5.0/24 "],
      );
      const v6 = JSON.parse(runIp(["-n", ns, "-6", "-j", "route", "show", "table", String(TABLE)]));
      assertEquals(v6.map((r: { dst: string; dev: string }) => `${r.dst} ${r.dev}`), [
        "fd00::53 mva",
        "default mva",
      ]);
      // The main table kept its own default routes.
      assertEquals(JSON.parse(runIp(["-n", ns, "-6", "-j", "route", "show", "default"])).length, 1);
      assertEquals(JSON.parse(runIp(["-n", ns, "-4", "-j", "route", "show", "default"])).length, 1);

      inNetns(ns, () => {
        const listed = listTableRoutes(TABLE);
        assertEquals(listed.length, 4);
        assertEquals(listed.filter((r) => r.type === "unreachable").length, 1);
        deleteTableRoute({ destination: DNS6, table: TABLE, type: "unicast", device: "mva" });
        assertEquals(flushTable(TABLE), 3);
        assertEquals(listTableRoutes(TABLE), []);
        assertEquals(flushTable(TABLE), 0);
      });
      assertEquals(runIp(["-n", ns, "-6", "route", "show", "table", String(TABLE)]), "");
      assertEquals(JSON.parse(runIp(["-n", ns, "-6", "-j", "route", "show", "default"])).length, 1);
    }),
});

Deno.test({
  name: "markUdpSocket() marks the QUIC endpoint's socket and the mark selects the main table",
  ...ROOT_ONLY,
  fn: () =>
    withNamespace((ns) => {
      runIp(["-n", ns, "address", "add", "198.18.9.2/24", "dev", "mvb"]);
      runIp(["-n", ns, "route", "add", "default", "via", "198.18.9.1", "dev", "mvb"]);
      inNetns(ns, () => {
        for (const rule of wgQuickRules(4)) addRule(rule);
        addTableRoute({ destination: ANY4, table: TABLE, type: "unicast", device: "mva" });
      });
      // The kernel's own lookup: unmarked traffic goes to the tunnel's device, marked to the underlay.
      const route = (...extra: string[]) =>
        JSON.parse(runIp(["-n", ns, "-j", "route", "get", "203.0.113.7", ...extra]))[0].dev;
      assertEquals(route(), "mva");
      assertEquals(route("mark", `0x${MARK.toString(16)}`), "mvb");

      const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
      try {
        const marked = markUdpSocket(endpoint.addr.port, MARK);
        assertEquals(marked.mark, MARK);
        assertEquals(socketMark(marked.fd), MARK);
      } finally {
        endpoint.close();
      }
      assertThrows(
        () => markUdpSocket(9, MARK),
        Error,
        "no UDP socket of this process is bound to port 9",
      );
      assertThrows(() => markUdpSocket(9, 0), RangeError, "mark 0 is outside 1..2^32-1");
    }),
});
