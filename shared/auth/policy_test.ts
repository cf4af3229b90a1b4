import { assertEquals } from "../../tests/support/assert.ts";
import { formatIp, parsePrefix } from "../ip/ip_address.ts";
import type { IpAddressRange } from "../ip/ip_address.ts";
import type { ConnectIpScope } from "../masque/connect_ip_request.ts";
import { encodeCapsule } from "../masque/capsule.ts";
import { sessionProtocols, sessionRoutes } from "./policy.ts";

const RELAY = ["198.18.0.0/15", "fd00::/8"].map(parsePrefix);
const ANY: ConnectIpScope = { target: { kind: "any" }, ipProtocol: "any" };
const show = (ranges: IpAddressRange[]) =>
  ranges.map((r) => `${formatIp(r.start)}-${formatIp(r.end)}/${r.ipProtocol}`);

Deno.test("sessionProtocols(): the request's ipproto within the user's protocols", () => {
  assertEquals(sessionProtocols({}, { ipProtocol: "any" }), [0]);
  assertEquals(sessionProtocols({}, { ipProtocol: 17 }), [17]);
  assertEquals(sessionProtocols({ protocols: [17, 6] }, { ipProtocol: "any" }), [6, 17]);
  assertEquals(sessionProtocols({ protocols: [6, 17] }, { ipProtocol: 17 }), [17]);
  assertEquals(sessionProtocols({ protocols: [6] }, { ipProtocol: 17 }), []);
});

Deno.test("sessionRoutes() intersects the relay's routes, the user's and the request's scope", async (t) => {
  await t.step("no user routes, any scope: the relay's", () => {
    assertEquals(show(sessionRoutes(RELAY, {}, ANY)), [
      "198.18.0.0-198.19.255.255/0",
      "fd00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/0",
    ]);
  });
  await t.step("user routes inside and outside the relay's", () => {
    const routes = ["198.18.1.0/24", "10.0.0.0/8", "fd00:0:0:2::/64"].map(parsePrefix);
    assertEquals(show(sessionRoutes(RELAY, { routes }, ANY)), [
      "198.18.1.0-198.18.1.255/0",
      "fd00:0:0:2::-fd00::2:ffff:ffff:ffff:ffff/0",
    ]);
  });
  await t.step("a user route wider than the relay's is cut to it", () => {
    const routes = [parsePrefix("198.0.0.0/8")];
    assertEquals(show(sessionRoutes(RELAY, { routes }, ANY)), ["198.18.0.0-198.19.255.255/0"]);
  });
  await t.step("a target narrows the user's routes further", () => {
    const routes = [parsePrefix("198.18.1.0/24")];
    const scope: ConnectIpScope = {
      target: { kind: "prefix", prefix: parsePrefix("198.18.1.128/25") },
      ipProtocol: "any",
    };
    assertEquals(show(sessionRoutes(RELAY, { routes }, scope)), ["198.18.1.128-198.18.1.255/0"]);
  });
  await t.step("a target outside the user's routes: nothing", () => {
    const scope: ConnectIpScope = {
      target: { kind: "prefix", prefix: parsePrefix("198.18.2.0/24") },
      ipProtocol: "any",
    };
    assertEquals(sessionRoutes(RELAY, { routes: [parsePrefix("198.18.1.0/24")] }, scope), []);
  });
  await t.step("protocols: one range per protocol, sorted version, protocol, address", () => {
    const routes = ["198.18.2.0/24", "198.18.1.0/24", "fd00::/64"].map(parsePrefix);
    const ranges = sessionRoutes(RELAY, { routes, protocols: [17, 6] }, ANY);
    assertEquals(show(ranges), [
      "198.18.1.0-198.18.2.255/6",
      "198.18.1.0-198.18.2.255/17",
      "fd00::-fd00::ffff:ffff:ffff:ffff/6",
      "fd00::-fd00::ffff:ffff:ffff:ffff/17",
    ]);
    // A valid ROUTE_ADVERTISEMENT (RFC 9484 §4.7.3): the encoder checks the order.
    encodeCapsule({ type: "route_advertisement", ranges });
  });
  await t.step("a protocol the user may not use: nothing", () => {
    assertEquals(sessionRoutes(RELAY, { protocols: [6] }, { ...ANY, ipProtocol: 17 }), []);
  });
  await t.step("an empty route list: nothing", () => {
    assertEquals(sessionRoutes(RELAY, { routes: [] }, ANY), []);
  });
});
