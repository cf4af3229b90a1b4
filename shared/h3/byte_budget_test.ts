import { assertEquals, assertStrictEquals, assertThrows } from "../../tests/support/assert.ts";
import { H3_EXCESSIVE_LOAD, H3Error } from "../errors.ts";
import { ByteBudget, DEFAULT_MAX_BUFFERED_BYTES } from "./byte_budget.ts";

Deno.test("ByteBudget reserves up to its limit and counts the peak", () => {
  const budget = new ByteBudget(100);
  budget.reserve(60, "a partial HTTP/3 frame");
  budget.reserve(40, "a partial capsule");
  assertEquals({ used: budget.used, peak: budget.peak, limit: budget.limit }, {
    used: 100,
    peak: 100,
    limit: 100,
  });
  budget.release(70);
  budget.reserve(0, "nothing");
  assertEquals({ used: budget.used, peak: budget.peak }, { used: 30, peak: 100 });
  assertEquals(DEFAULT_MAX_BUFFERED_BYTES, 262144);
});

Deno.test("ByteBudget refuses a reservation past its limit with H3_EXCESSIVE_LOAD", () => {
  const seen: H3Error[] = [];
  const budget = new ByteBudget(100, { onExceeded: (error) => seen.push(error) });
  budget.reserve(90, "a partial HTTP/3 frame");
  const error = assertThrows(
    () => budget.reserve(11, "a partial capsule"),
    H3Error,
    "Cannot buffer 11 more bytes for a partial capsule: 90 of 100 bytes already buffered on this connection",
  );
  assertEquals(error.code, H3_EXCESSIVE_LOAD);
  assertEquals(error.connection, true);
  assertEquals(seen.length, 1);
  assertStrictEquals(seen[0], error);
  // Nothing was reserved by the refused call.
  assertEquals(budget.used, 90);
});

Deno.test("ByteBudget never goes below zero and rejects a bad limit", () => {
  const budget = new ByteBudget(10);
  budget.reserve(5, "x");
  budget.release(8);
  assertEquals(budget.used, 0);
  assertThrows(() => new ByteBudget(-1), RangeError, "limit -1 is not a byte count");
  assertThrows(() => new ByteBudget(1.5), RangeError);
});
