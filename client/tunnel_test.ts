import { assertEquals } from "../tests/support/assert.ts";
import { formatPrefix, parseIp, parsePrefix, prefixContains } from "../shared/packet/ip_address.ts";
import { prefixesToRanges } from "../shared/tunnel/routes.ts";
import { AUTO_MTU_MAX, AUTO_MTU_MIN, autoMtu, planRoutes } from "./tunnel.ts";

const advertised = prefixesToRanges(["0.0.0.0/0", "::/0"].map(parsePrefix), 0);

Deno.test("planRoutes() installs routes only for the families the relay assigned", async (t) => {
  await t.step("both families", () => {
    const routes = planRoutes(
      {
        addresses: ["198.18.100.2/32", "fd00:100::2/128"].map(parsePrefix),
        routes: advertised,
      },
      ["198.18.1.0/24", "fd00:0:0:2::/64"].map(parsePrefix),
    );
    assertEquals(routes.map(formatPrefix), ["198.18.1.0/24", "fd00:0:0:2::/64"]);
  });
  await t.step("IPv4 only: no IPv6 route, though IPv6 is advertised and wanted", () => {
    const routes = planRoutes(
      { addresses: [parsePrefix("198.18.100.2/32")], routes: advertised },
      ["198.18.1.0/24", "fd00:0:0:2::/64"].map(parsePrefix),
    );
    assertEquals(routes.map(formatPrefix), ["198.18.1.0/24"]);
  });
  await t.step("IPv6 only, everything advertised, the relay's address cut out", () => {
    const routes = planRoutes(
      { addresses: [parsePrefix("fd00:100::2/128")], routes: advertised },
      [],
      parseIp("198.18.0.1"),
    );
    assertEquals(routes.map(formatPrefix), ["::/0"]);
  });
  await t.step("IPv4 only, everything advertised, the relay's address cut out", () => {
    const routes = planRoutes(
      { addresses: [parsePrefix("198.18.100.2/32")], routes: advertised },
      [],
      parseIp("198.18.0.1"),
    );
    assertEquals(routes.length, 32);
    assertEquals(routes.some((r) => r.version === 6), false);
    assertEquals(routes.map(formatPrefix).slice(0, 2), ["0.0.0.0/1", "128.0.0.0/2"]);
    assertEquals(routes.some((r) => prefixContains(r, parseIp("198.18.0.1")!)), false);
  });
  await t.step("no address at all: no route", () => {
    assertEquals(planRoutes({ addresses: [], routes: advertised }, []), []);
  });
});

Deno.test("autoMtu() follows the datagram limit between 1280 and 1500", () => {
  assertEquals([AUTO_MTU_MIN, AUTO_MTU_MAX], [1280, 1500]);
  // Before path MTU discovery (Deno's first limit), in between, and on a large path.
  assertEquals([autoMtu(1160), autoMtu(1290), autoMtu(1414), autoMtu(8950)], [
    1280,
    1290,
    1414,
    1500,
  ]);
});
