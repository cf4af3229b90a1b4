import { assert, assertEquals, assertThrows } from "../tests/support/assert.ts";
import { formatPrefix, parsePrefix } from "../shared/ip/ip_address.ts";
import type { ConnectIpScope } from "../shared/masque/connect_ip_request.ts";
import { ALLOW_EVERYONE, ANONYMOUS, Reservation, SessionAdmission } from "./sessions.ts";

const ANY: ConnectIpScope = { target: { kind: "any" }, ipProtocol: "any" };
const LIMIT_REACHED = { ok: false as const, status: 503, reason: "session limit reached" };

/** Reservations held and addresses in use in each pool. */
const held = (a: SessionAdmission) => [a.reserved, a.inUse(4), a.inUse(6)];

function admission(maxSessions: number, pool6 = "fd00:100::/64") {
  return new SessionAdmission({
    pools: [parsePrefix("198.18.100.0/24"), parsePrefix(pool6)],
    maxSessions,
  });
}

Deno.test("ALLOW_EVERYONE lets every request in as anonymous", async () => {
  const result = await ALLOW_EVERYONE.authenticate({ headers: [], scope: ANY, remote: "x" });
  assertEquals(result, { ok: true, identity: ANONYMOUS });
  assertEquals(ANONYMOUS.user, "anonymous");
});

Deno.test("admit() reserves a slot and one address of each pool, synchronously", () => {
  const a = admission(2);
  const first = a.admit(ANONYMOUS, ANY);
  assert(first instanceof Reservation);
  assertEquals(first.addresses.map(formatPrefix), ["198.18.100.2/32", "fd00:100::2/128"]);
  assertEquals(first.identity, ANONYMOUS);
  assertEquals(held(a), [1, 1, 1]);
  const second = a.admit(ANONYMOUS, ANY);
  assert(second instanceof Reservation);
  assertEquals(a.admit(ANONYMOUS, ANY), LIMIT_REACHED);
  assertEquals(held(a), [2, 2, 2]);
});

Deno.test("a reservation is released exactly once", () => {
  const a = admission(1);
  const reservation = a.admit(ANONYMOUS, ANY);
  assert(reservation instanceof Reservation);
  reservation.release();
  assertEquals(reservation.released, true);
  assertEquals(held(a), [0, 0, 0]);
  // Another request takes the slot; a second release of the first must not free it.
  const next = a.admit(ANONYMOUS, ANY);
  assert(next instanceof Reservation);
  reservation.release();
  assertEquals(held(a), [1, 1, 1]);
  assertEquals(a.admit(ANONYMOUS, ANY), LIMIT_REACHED);
});

Deno.test("an exhausted pool refuses with 503 and holds nothing", () => {
  // fd00:100::/126 leaves two client addresses (::2, ::3).
  const a = admission(10, "fd00:100::/126");
  assert(a.admit(ANONYMOUS, ANY) instanceof Reservation);
  assert(a.admit(ANONYMOUS, ANY) instanceof Reservation);
  assertEquals(a.admit(ANONYMOUS, ANY), {
    ok: false,
    status: 503,
    reason: "address pool exhausted",
  });
  // The IPv4 address taken before the IPv6 pool ran dry went back.
  assertEquals(held(a), [2, 2, 2]);
});

Deno.test("SessionAdmission needs a pool", () => {
  assertThrows(
    () => new SessionAdmission({ pools: [], maxSessions: 1 }),
    Error,
    "Cannot start relay: no address pool (pool4 or pool6)",
  );
});
