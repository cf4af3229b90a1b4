import { assert, assertEquals, assertThrows } from "../../tests/support/assert.ts";
import { FailureLimiter } from "./failure_limiter.ts";

const MINUTE = 60_000;

Deno.test("FailureLimiter blocks a source at its 10th failure in a minute", () => {
  const limiter = new FailureLimiter();
  for (let i = 1; i <= 9; i++) {
    assertEquals(limiter.fail("198.18.0.1", i * 1000), { blocked: false, blockedForMs: 0 });
  }
  assertEquals(limiter.blockedFor("198.18.0.1", 9000), 0);
  assertEquals(limiter.fail("198.18.0.1", 10_000), { blocked: true, blockedForMs: MINUTE });
  assertEquals(limiter.blockedFor("198.18.0.1", 10_000), MINUTE);
  assertEquals(limiter.blockedFor("198.18.0.1", 40_000), 30_000);
  // Other sources are not affected.
  assertEquals(limiter.blockedFor("198.18.0.2", 10_000), 0);
  // A failure while blocked does not extend or re-announce the block.
  assertEquals(limiter.fail("198.18.0.1", 20_000), { blocked: false, blockedForMs: 50_000 });
  assertEquals(limiter.blockedFor("198.18.0.1", 70_000), 0);
});

Deno.test("FailureLimiter forgets failures older than the window", () => {
  const limiter = new FailureLimiter();
  for (let i = 0; i < 9; i++) limiter.fail("a", i);
  // The window started at 0; at 60 s a new one starts with this failure.
  assertEquals(limiter.fail("a", MINUTE).blocked, false);
  for (let i = 0; i < 8; i++) assertEquals(limiter.fail("a", MINUTE + 1 + i).blocked, false);
  assertEquals(limiter.fail("a", MINUTE + 100).blocked, true);
});

Deno.test("FailureLimiter doubles the back-off at each block, up to the longest", () => {
  const limiter = new FailureLimiter({ maxFailures: 2, backoffMs: 1000, maxBackoffMs: 5000 });
  let now = 0;
  const blockedFor: number[] = [];
  for (let round = 0; round < 5; round++) {
    limiter.fail("a", now);
    const outcome = limiter.fail("a", now);
    assert(outcome.blocked);
    blockedFor.push(outcome.blockedForMs);
    now += outcome.blockedForMs;
  }
  assertEquals(blockedFor, [1000, 2000, 4000, 5000, 5000]);
  // Quiet for the longest back-off: back to the first.
  now += 5000;
  limiter.fail("a", now);
  assertEquals(limiter.fail("a", now).blockedForMs, 1000);
});

Deno.test("FailureLimiter keeps at most maxEntries sources, evicting counting ones before blocked ones", () => {
  const limiter = new FailureLimiter({ maxFailures: 3, maxEntries: 100 });
  // Ten blocked sources.
  for (let s = 0; s < 10; s++) for (let i = 0; i < 3; i++) limiter.fail(`blocked-${s}`, 0);
  // A flood of 100,000 sources failing once each (spoofing would look like this).
  for (let s = 0; s < 100_000; s++) limiter.fail(`flood-${s}`, 1);
  assertEquals(limiter.size, 100);
  assertEquals(limiter.evicted, 100_000 + 10 - 100);
  // The blocked sources survived the flood.
  for (let s = 0; s < 10; s++) assert(limiter.blockedFor(`blocked-${s}`, 2) > 0, `blocked-${s}`);
  assertEquals(limiter.blockedCount(2), 10);
  // With only blocked sources left, the oldest blocked one goes.
  const small = new FailureLimiter({ maxFailures: 1, maxEntries: 2 });
  small.fail("x", 0);
  small.fail("y", 1);
  small.fail("z", 2);
  assertEquals([small.blockedFor("x", 3), small.blockedFor("y", 3) > 0], [0, true]);
});

Deno.test("FailureLimiter refuses limits below 1", () => {
  assertThrows(() => new FailureLimiter({ maxFailures: 0 }), RangeError, "maxFailures 0");
  assertThrows(() => new FailureLimiter({ maxEntries: 1.5 }), RangeError, "maxEntries");
});
