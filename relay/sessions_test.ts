import { assert, assertEquals, assertThrows } from "../tests/support/assert.ts";
import { formatPrefix, parseIp, parsePrefix } from "../shared/ip/ip_address.ts";
import type { ConnectIpScope } from "../shared/masque/connect_ip_request.ts";
import { ALLOW_EVERYONE, ANONYMOUS, Reservation, SessionAdmission } from "./sessions.ts";
import type { Identity } from "./sessions.ts";

const ANY: ConnectIpScope = { target: { kind: "any" }, ipProtocol: "any" };
const LIMIT_REACHED = { ok: false as const, status: 503, reason: "session limit reached" };

/** Reservations held and addresses in use in each pool. */
const held = (a: SessionAdmission) => [a.reserved, a.inUse(4), a.inUse(6)];

function admission(maxSessions: number, pool6 = "fd00:100::/64", maxSessionsPerConnection = 100) {
  return new SessionAdmission({
    pools: [parsePrefix("198.18.100.0/24"), parsePrefix(pool6)],
    maxSessions,
    maxSessionsPerConnection,
  });
}

/** A connection (any object is a key). */
const CONN = {};

Deno.test("ALLOW_EVERYONE lets every request in as anonymous", async () => {
  const result = await ALLOW_EVERYONE.authenticate({
    headers: [],
    remote: "x",
    source: "x",
    connection: CONN,
  });
  assertEquals(result, { ok: true, identity: ANONYMOUS });
  assertEquals(ANONYMOUS.user, "anonymous");
});

Deno.test("admit() reserves a slot and one address of each pool, synchronously", () => {
  const a = admission(2);
  const first = a.admit(ANONYMOUS, ANY, CONN);
  assert(first instanceof Reservation);
  assertEquals(first.addresses.map(formatPrefix), ["198.18.100.2/32", "fd00:100::2/128"]);
  assertEquals(first.identity, ANONYMOUS);
  assertEquals(held(a), [1, 1, 1]);
  const second = a.admit(ANONYMOUS, ANY, CONN);
  assert(second instanceof Reservation);
  assertEquals(a.admit(ANONYMOUS, ANY, CONN), LIMIT_REACHED);
  assertEquals(held(a), [2, 2, 2]);
});

Deno.test("a reservation is released exactly once", () => {
  const a = admission(1);
  const reservation = a.admit(ANONYMOUS, ANY, CONN);
  assert(reservation instanceof Reservation);
  reservation.release();
  assertEquals(reservation.released, true);
  assertEquals(held(a), [0, 0, 0]);
  // Another request takes the slot; a second release of the first must not free it.
  const next = a.admit(ANONYMOUS, ANY, CONN);
  assert(next instanceof Reservation);
  reservation.release();
  assertEquals(held(a), [1, 1, 1]);
  assertEquals(a.admit(ANONYMOUS, ANY, CONN), LIMIT_REACHED);
});

Deno.test("an exhausted pool refuses with 503 and holds nothing", () => {
  // fd00:100::/126 leaves two client addresses (::2, ::3).
  const a = admission(10, "fd00:100::/126");
  assert(a.admit(ANONYMOUS, ANY, CONN) instanceof Reservation);
  assert(a.admit(ANONYMOUS, ANY, CONN) instanceof Reservation);
  assertEquals(a.admit(ANONYMOUS, ANY, CONN), {
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

Deno.test("admit() holds a user to its maxSessions across connections, and a connection to its cap", () => {
  const a = admission(100, "fd00:100::/64", 3);
  const alice: Identity = { user: "alice", policy: { maxSessions: 2 } };
  const bob: Identity = { user: "bob", policy: { maxSessions: 10 } };
  const [c1, c2] = [{}, {}];
  const first = a.admit(alice, ANY, c1);
  assert(first instanceof Reservation);
  assert(a.admit(alice, ANY, c2) instanceof Reservation);
  assertEquals(a.admit(alice, ANY, c1), {
    ok: false,
    status: 429,
    reason: "session limit of user alice reached (2)",
  });
  assertEquals(a.sessionsOf("alice"), 2);
  // Bob is not affected; c1 holds alice's first and two of bob's, then is full.
  assert(a.admit(bob, ANY, c1) instanceof Reservation);
  assert(a.admit(bob, ANY, c1) instanceof Reservation);
  assertEquals(a.admit(bob, ANY, c1), {
    ok: false,
    status: 429,
    reason: "session limit of this connection reached (3)",
  });
  assert(a.admit(bob, ANY, c2) instanceof Reservation);
  // A release frees the user's slot and the connection's.
  first.release();
  assertEquals(a.sessionsOf("alice"), 1);
  assert(a.admit(alice, ANY, c1) instanceof Reservation);
  // Anonymous has no per-user limit.
  const b = admission(50);
  for (let i = 0; i < 50; i++) assert(b.admit(ANONYMOUS, ANY, {}) instanceof Reservation);
});

Deno.test("admit() gives a user its fixed addresses; a newer session of the user takes them over", () => {
  const a = admission(100);
  const fixed4 = parseIp("198.18.100.2")!;
  const fixed6 = parseIp("fd00:100::2")!;
  a.setFixedAddresses([fixed4, fixed6]);
  const carol: Identity = {
    user: "carol",
    policy: { maxSessions: 4, address4: fixed4, address6: fixed6 },
  };
  // Others never get the fixed addresses.
  const other = a.admit(ANONYMOUS, ANY, CONN);
  assert(other instanceof Reservation);
  assertEquals(other.addresses.map(formatPrefix), ["198.18.100.3/32", "fd00:100::3/128"]);
  const first = a.admit(carol, ANY, CONN);
  assert(first instanceof Reservation);
  assertEquals(first.addresses.map(formatPrefix), ["198.18.100.2/32", "fd00:100::2/128"]);
  const evicted: string[] = [];
  first.onEvict = (why) => evicted.push(why);
  const second = a.admit(carol, ANY, {});
  assert(second instanceof Reservation);
  assertEquals(second.addresses.map(formatPrefix), ["198.18.100.2/32", "fd00:100::2/128"]);
  assertEquals(evicted, ["a newer session of carol took 198.18.100.2"]);
  assert(first.released);
  assertEquals(held(a), [2, 2, 2]);
  // The old reservation's late release does not free the new holder's addresses.
  first.release();
  assertEquals(held(a), [2, 2, 2]);
  second.release();
});

Deno.test("request() moves an address from a reservation the caller allows, and frees the one replaced", () => {
  const a = admission(10);
  const old = a.admit(ANONYMOUS, ANY, CONN);
  const other = a.admit(ANONYMOUS, ANY, CONN);
  const next = a.admit(ANONYMOUS, ANY, CONN);
  assert(old instanceof Reservation && other instanceof Reservation && next instanceof Reservation);
  assertEquals(next.addresses.map(formatPrefix), ["198.18.100.4/32", "fd00:100::4/128"]);
  const changes = a.request(next, old.addresses, (holder) => holder === old);
  assertEquals(
    changes.map((c) => [formatPrefix(c.granted), formatPrefix(c.replaced), c.from === old]),
    [["198.18.100.2/32", "198.18.100.4/32", true], ["fd00:100::2/128", "fd00:100::4/128", true]],
  );
  assertEquals(next.addresses.map(formatPrefix), ["198.18.100.2/32", "fd00:100::2/128"]);
  assertEquals(old.addresses, []);
  // ::4 and .4 went back: three reservations hold four addresses of each pool no more.
  assertEquals(held(a), [3, 2, 2]);
  // Another holder that the caller does not allow keeps its address.
  assertEquals(a.request(next, other.addresses, () => false), []);
  assertEquals(other.addresses.map(formatPrefix), ["198.18.100.3/32", "fd00:100::3/128"]);
  // Releasing the emptied reservation frees nothing that moved.
  old.release();
  assertEquals(held(a), [2, 2, 2]);
  next.release();
  assertEquals(held(a), [1, 1, 1]);
});

Deno.test("request() grants a free address of a pool and ignores prefixes and strangers", () => {
  const a = admission(10);
  const r = a.admit(ANONYMOUS, ANY, CONN);
  assert(r instanceof Reservation);
  const wanted = ["198.18.100.77/32", "fd00:100::/64", "198.18.200.1/32", "198.18.100.1/32"]
    .map(parsePrefix);
  const changes = a.request(r, wanted, () => true);
  // Only the free single address of the pool: not a prefix, not outside the
  // pool, not the relay's own first host.
  assertEquals(changes.map((c) => formatPrefix(c.granted)), ["198.18.100.77/32"]);
  assertEquals(r.addresses.map(formatPrefix), ["198.18.100.77/32", "fd00:100::2/128"]);
  assertEquals(held(a), [1, 1, 1]);
});
