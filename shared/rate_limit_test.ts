import { assert, assertEquals, assertThrows } from "../tests/support/assert.ts";
import { LogLimiter, TokenBucket } from "./rate_limit.ts";

Deno.test("TokenBucket allows its burst at once, then one token per 1000/rate ms", () => {
  const bucket = new TokenBucket({ ratePerSecond: 4, burst: 3 }, 0);
  assertEquals([1, 2, 3, 4].map(() => bucket.take(0)), [true, true, true, false]);
  // 4 per second: one token every 250 ms.
  assertEquals(bucket.msUntilToken(0), 250);
  assertEquals(bucket.take(249), false);
  assertEquals(bucket.msUntilToken(249), 1);
  assertEquals(bucket.take(250), true);
  assertEquals(bucket.take(250), false);
  // Refill stops at the burst: after 10 s only 3 tokens are there.
  assertEquals(bucket.available(10_250), 3);
  assertEquals([1, 2, 3, 4].map(() => bucket.take(10_250)), [true, true, true, false]);
});

Deno.test("TokenBucket never lets more than burst + rate * t through, whatever the timing", () => {
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const bucket = new TokenBucket({ ratePerSecond: 5, burst: 8 }, 0);
  let now = 0;
  let taken = 0;
  for (let i = 0; i < 100_000; i++) {
    now += random() * 3; // a request every 0-3 ms, ~67 s in all
    if (bucket.take(now)) taken++;
  }
  assert(taken <= 8 + 5 * now / 1000, `${taken} tokens in ${now} ms`);
  // It also did not starve: the rate was reached within one token.
  assert(taken >= 5 * now / 1000 - 1, `only ${taken} tokens in ${now} ms`);
});

Deno.test("TokenBucket on bytes: packets of random sizes stay within burst + rate * t bytes", () => {
  let seed = 11;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  // 10 Mbit/s = 1,250,000 bytes/s, with a burst of 100 ms.
  const rate = 1_250_000;
  const burst = 125_000;
  const bucket = new TokenBucket({ ratePerSecond: rate, burst }, 0);
  let now = 0;
  let bytes = 0;
  let refused = 0;
  for (let i = 0; i < 200_000; i++) {
    now += random() * 0.2; // offered: ~1400 bytes every 0.1 ms, about 9 times the rate
    const size = 40 + Math.floor(random() * 1460);
    if (bucket.take(now, size)) bytes += size;
    else refused++;
  }
  assert(bytes <= burst + rate * now / 1000, `${bytes} bytes in ${now} ms`);
  assert(bytes >= rate * now / 1000 - 1500, `only ${bytes} bytes in ${now} ms`);
  assert(refused > 0);
  // More than the burst at once never passes, and a refusal spends nothing.
  const fresh = new TokenBucket({ ratePerSecond: 1000, burst: 1500 }, 0);
  assertEquals(fresh.take(0, 1501), false);
  assertEquals(fresh.take(0, 1500), true);
});

Deno.test("TokenBucket does not refill when time goes backwards", () => {
  const bucket = new TokenBucket({ ratePerSecond: 1, burst: 1 }, 1000);
  assert(bucket.take(1000));
  assertEquals(bucket.take(500), false);
  assertEquals(bucket.take(1999), false);
  assert(bucket.take(2000));
});

Deno.test("TokenBucket rejects a rate or burst it cannot honour", () => {
  assertThrows(
    () => new TokenBucket({ ratePerSecond: 0, burst: 1 }, 0),
    RangeError,
    "Cannot create token bucket: rate 0 per second is not positive",
  );
  assertThrows(
    () => new TokenBucket({ ratePerSecond: 1, burst: 0 }, 0),
    RangeError,
    "Cannot create token bucket: burst 0 is not at least 1",
  );
  assertThrows(() => new TokenBucket({ ratePerSecond: NaN, burst: 1 }, 0), RangeError);
});

Deno.test("LogLimiter lets a few lines of a key through per window and reports the rest", () => {
  const limiter = new LogLimiter({ linesPerWindow: 2, windowMs: 1000 });
  const results = Array.from({ length: 5 }, (_, i) => limiter.allow("refused", i));
  assertEquals(results, [0, 0, undefined, undefined, undefined]);
  // Another key has its own budget.
  assertEquals(limiter.allow("idle", 10), 0);
  // The next window's first line carries the three held back.
  assertEquals(limiter.allow("refused", 1000), 3);
  assertEquals(limiter.allow("refused", 1001), 0);
  assertEquals(limiter.allow("refused", 1002), undefined);
});

Deno.test("LogLimiter keeps at most maxKeys keys", () => {
  const limiter = new LogLimiter({ linesPerWindow: 1, windowMs: 1000, maxKeys: 3 });
  for (let i = 0; i < 1000; i++) limiter.allow(`key ${i}`, 0);
  assertEquals(limiter.size, 3);
  // The newest key is still limited; an evicted one starts afresh.
  assertEquals(limiter.allow("key 999", 1), undefined);
  assertEquals(limiter.allow("key 0", 1), 0);
});
