import { assertEquals, assertStrictEquals, assertThrows } from "../tests/support/assert.ts";
import { CounterRegistry, OTHER } from "./counters.ts";

Deno.test("CounterRegistry: children are resolved once and bumped; the snapshot nests by label", () => {
  const registry = new CounterRegistry();
  const opened = registry.counter("sessions_opened_total", { help: "Sessions opened" });
  const drops = registry.counter("packets_dropped_total", {
    help: "Packets dropped, by direction and reason",
    labels: [
      { name: "direction", values: ["outbound", "inbound"] },
      { name: "reason", values: ["malformed", "no session"] },
    ],
  });
  const noSession = drops.child("outbound", "no session");
  assertStrictEquals(drops.child("outbound", "no session"), noSession);
  noSession.value++;
  noSession.value += 2;
  opened.child().value++;
  assertEquals(registry.snapshot(), {
    sessions_opened_total: 1,
    // Every declared combination is there from the start, zeros included.
    packets_dropped_total: {
      outbound: { malformed: 0, "no session": 3 },
      inbound: { malformed: 0, "no session": 0 },
    },
  });
  assertEquals(registry.value("packets_dropped_total", "outbound", "no session"), 3);
  assertEquals(registry.value("packets_dropped_total", "inbound", "malformed"), 0);
  assertEquals(registry.value("sessions_opened_total"), 1);
  // A leading part of the labels sums what is below it.
  assertEquals(registry.value("packets_dropped_total", "outbound"), 3);
  assertEquals(registry.value("packets_dropped_total"), 3);
  assertThrows(
    () => registry.value("no_such_total"),
    Error,
    "Cannot read counter no_such_total: not registered",
  );
});

Deno.test("CounterRegistry: labels are bounded", async (t) => {
  await t.step("a declared label refuses other values", () => {
    const family = new CounterRegistry().counter("x_total", {
      help: "x",
      labels: [{ name: "direction", values: ["outbound", "inbound"] }],
    });
    assertThrows(
      () => family.child("sideways"),
      Error,
      'Cannot count x_total: label direction has no value "sideways"',
    );
    assertThrows(() => family.child(), Error, "Cannot count x_total: 0 label values for 1 labels");
  });
  await t.step("a capped label counts values past its cap under 'other'", () => {
    const registry = new CounterRegistry();
    const family = registry.counter("sessions_total", {
      help: "Sessions by user",
      labels: [{ name: "user", cap: 2 }],
    });
    family.child("alice").value++;
    family.child("bob").value++;
    family.child("mallory").value++;
    family.child("eve").value += 2;
    family.child("alice").value++;
    assertStrictEquals(family.child("mallory"), family.child(OTHER));
    assertEquals(registry.snapshot(), { sessions_total: { alice: 2, bob: 1, other: 3 } });
    assertEquals(family.samples().length, 3);
  });
});

Deno.test("CounterRegistry: collected families are read at snapshot time", () => {
  const registry = new CounterRegistry();
  const tun = { writeDrops: 0 };
  const pools = { ipv4: 0, ipv6: 0 };
  registry.counter("tun_write_drops_total", {
    help: "Packets the TUN writer ring dropped",
    collect: () => tun.writeDrops,
  });
  const gauge = registry.gauge("pool_addresses_in_use", {
    help: "Addresses in use, by family",
    labels: [{ name: "family", values: ["ipv4", "ipv6"] }],
    collect: () => pools,
  });
  tun.writeDrops = 4;
  pools.ipv4 = 2;
  assertEquals(registry.snapshot(), {
    tun_write_drops_total: 4,
    pool_addresses_in_use: { ipv4: 2, ipv6: 0 },
  });
  assertEquals(gauge.kind, "gauge");
  assertEquals(gauge.samples(), [{ labels: ["ipv4"], value: 2 }, { labels: ["ipv6"], value: 0 }]);
  assertThrows(() => gauge.child("ipv4"), Error, "its values are collected");
});

Deno.test("CounterRegistry: one name, one shape; names are metric names", () => {
  const registry = new CounterRegistry();
  const help = "Datagrams received";
  const first = registry.counter("h3_datagrams_total", { help });
  // A second connection registering the same counter gets the same family.
  assertStrictEquals(registry.counter("h3_datagrams_total", { help }), first);
  assertThrows(() => registry.gauge("h3_datagrams_total", { help }), Error, "another shape");
  assertThrows(
    () =>
      registry.counter("h3_datagrams_total", {
        help,
        labels: [{ name: "direction", values: ["in"] }],
      }),
    Error,
    "Cannot register counter h3_datagrams_total: registered already with another shape",
  );
  assertThrows(() => registry.counter("bad name", { help }), Error, "not a metric name");
  assertThrows(() => registry.counter("9lives", { help }), Error, "not a metric name");
  assertThrows(
    () => registry.counter("x_total", { help, labels: [{ name: "user", cap: 0 }] }),
    Error,
    "label user needs a cap above 0",
  );
  assertEquals([...registry.families()].map((f) => [f.name, f.help, f.kind]), [
    ["h3_datagrams_total", help, "counter"],
  ]);
});
