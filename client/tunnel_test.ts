import { assertEquals } from "../tests/support/assert.ts";
import { formatPrefix, parseIp, parsePrefix, prefixContains } from "../shared/ip/ip_address.ts";
import { prefixesToRanges } from "../shared/tunnel/routes.ts";
import { AUTO_MTU_MAX, AUTO_MTU_MIN, autoMtu, describeSessionEnd, planRoutes } from "./tunnel.ts";

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

Deno.test("describeSessionEnd() says which side ended the session and why", async (t) => {
  const stats = (packetsOut: number, packetsIn: number) => ({
    packetsOut,
    packetsIn,
    bytesIn: 0,
    bytesOut: 0,
    capsulesIn: 2,
    capsulesOut: packetsOut,
    tooBig: 0,
    unknownContext: 0,
    malformed: 0,
    queueFull: 0,
  });
  const fin = { reason: "closed", message: "peer ended the stream" } as const;
  await t.step("stream mode, our DATAGRAM capsules and a FIN back (connect-ip-go)", () => {
    assertEquals(
      describeSessionEnd(fin, { mode: "stream", stats: stats(1, 0) }),
      "the relay ended the request stream (FIN, no error code) after 1 IP packet from us in " +
        "DATAGRAM capsules and none back: it probably does not accept DATAGRAM capsules " +
        "(RFC 9297 §3.5); try --mode datagram",
    );
  });
  await t.step("a FIN after packets went both ways", () => {
    assertEquals(
      describeSessionEnd(fin, { mode: "stream", stats: stats(5, 5) }),
      "the relay ended the request stream (FIN, no error code)",
    );
    assertEquals(
      describeSessionEnd(fin, { mode: "datagram", stats: stats(3, 0) }),
      "the relay ended the request stream (FIN, no error code)",
    );
  });
  await t.step("an error names its side itself", () => {
    const reset = {
      reason: "error",
      message: "Stream reset by the peer with H3_DATAGRAM_ERROR (0x33)",
    } as const;
    assertEquals(describeSessionEnd(reset, { mode: "stream", stats: stats(1, 0) }), reset.message);
  });
});
