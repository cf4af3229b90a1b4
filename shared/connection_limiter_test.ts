import { assertEquals, assertThrows } from "../tests/support/assert.ts";
import { ConnectionLimiter, sourceKey } from "./connection_limiter.ts";

Deno.test("sourceKey() counts IPv4 per address and IPv6 per /64", async (t) => {
  const cases: [string, string][] = [
    ["198.18.0.7", "198.18.0.7"],
    // A dual-stack socket reports IPv4 peers as IPv4-mapped IPv6 addresses.
    ["::ffff:198.18.0.7", "198.18.0.7"],
    ["fd00:1:2:3:4:5:6:7", "fd00:1:2:3::/64"],
    ["fd00:1:2:3:ffff:ffff:ffff:ffff", "fd00:1:2:3::/64"],
    ["::1", "::/64"],
    // Not an address: its own key (never thrown on).
    ["localhost", "localhost"],
    ["", ""],
  ];
  for (const [hostname, key] of cases) {
    await t.step(
      `${hostname || "(empty)"} -> ${key}`,
      () => assertEquals(sourceKey(hostname), key),
    );
  }
});

Deno.test("ConnectionLimiter refuses handshakes past maxHandshakes and frees them as they settle", () => {
  const limiter = new ConnectionLimiter({
    maxHandshakes: 2,
    maxConnections: 10,
    maxConnectionsPerSource: 10,
  });
  assertEquals([1, 2, 3].map(() => limiter.beginHandshake()), [undefined, undefined, "handshakes"]);
  assertEquals(limiter.handshaking, 2);
  limiter.endHandshake();
  assertEquals(limiter.beginHandshake(), undefined);
  limiter.endHandshake();
  limiter.endHandshake();
  limiter.endHandshake(); // one too many: stays at 0
  assertEquals(limiter.handshaking, 0);
});

Deno.test("ConnectionLimiter caps connections per source and in total", () => {
  const limiter = new ConnectionLimiter({
    maxHandshakes: 100,
    maxConnections: 5,
    maxConnectionsPerSource: 2,
  });
  const open = (key: string) => {
    const refused = limiter.beginHandshake();
    if (refused) return refused;
    limiter.endHandshake();
    return limiter.admit(key) ?? "ok";
  };
  assertEquals(
    ["a", "a", "a", "b", "b", "c", "c"].map(open),
    ["ok", "ok", "per-source", "ok", "ok", "ok", "connections"],
  );
  assertEquals({ open: limiter.open, sources: limiter.sources }, { open: 5, sources: 3 });
  // In the handshake counts against the total too.
  limiter.release("c");
  assertEquals(limiter.beginHandshake(), undefined);
  assertEquals(limiter.beginHandshake(), "connections");
  limiter.endHandshake();
  assertEquals(limiter.admit("a"), "per-source");
  limiter.release("a");
  assertEquals(limiter.admit("a"), undefined);
  assertEquals(limiter.openFrom("a"), 2);
  // Releasing a source that holds nothing changes nothing.
  limiter.release("nobody");
  assertEquals(limiter.open, 4);
  for (const key of ["a", "a", "b", "b"]) limiter.release(key);
  assertEquals({ open: limiter.open, sources: limiter.sources }, { open: 0, sources: 0 });
});

Deno.test("ConnectionLimiter rejects a limit below 1", () => {
  assertThrows(
    () =>
      new ConnectionLimiter({ maxHandshakes: 0, maxConnections: 1, maxConnectionsPerSource: 1 }),
    RangeError,
    "Cannot create connection limiter: maxHandshakes 0 is not at least 1",
  );
});
