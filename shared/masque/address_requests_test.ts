import { assert, assertEquals } from "../../tests/support/assert.ts";
import { hex } from "../../tests/support/bytes.ts";
import { formatPrefix, parsePrefix } from "../ip/ip_address.ts";
import { encodeCapsule } from "./capsule.ts";
import type { Capsule, RequestedAddress } from "./capsule.ts";
import { AddressRequestAnswerer, buildAddressAnswer } from "./address_requests.ts";

const V4 = parsePrefix("198.18.100.2/32");
const V6 = parsePrefix("fd00:100::2/128");

const request = (requestId: number, prefix: string): RequestedAddress => ({
  requestId,
  prefix: parsePrefix(prefix),
});

/** An answer as "id prefix" strings, in order. */
const show = (answer: ReturnType<typeof buildAddressAnswer>) =>
  answer.map((a) => `${a.requestId} ${formatPrefix(a.prefix)}`);

Deno.test("buildAddressAnswer() answers each request id and lists the full assignment", async (t) => {
  await t.step("an IPv4 request keeps the IPv6 address in the answer (id 0)", () => {
    assertEquals(show(buildAddressAnswer([V4, V6], [request(5, "0.0.0.0/32")])), [
      "5 198.18.100.2/32",
      "0 fd00:100::2/128",
    ]);
  });
  await t.step("requests of both versions, and two of one version", () => {
    assertEquals(
      show(buildAddressAnswer([V4, V6], [
        request(1, "::/64"),
        request(2, "198.18.9.9/32"),
        request(3, "::/128"),
      ])),
      ["2 198.18.100.2/32", "1 fd00:100::2/128", "3 fd00:100::2/128"],
    );
  });
  await t.step("a version with no assigned address is refused with the all-zero address", () => {
    assertEquals(
      show(buildAddressAnswer([V4], [request(7, "::/64"), request(8, "0.0.0.0/32")])),
      ["8 198.18.100.2/32", "7 ::/128"],
    );
  });
  await t.step("the answer encodes as RFC 9484 §4.7.1 bytes", () => {
    const capsule: Capsule = {
      type: "address_assign",
      addresses: buildAddressAnswer([V4], [request(9, "::/64")]),
    };
    assertEquals(
      encodeCapsule(capsule),
      // 01 ADDRESS_ASSIGN, 1a length 26; 00 id 0, 04 IPv4, c6126402 198.18.100.2, 20 /32;
      // 09 id 9, 06 IPv6, 16 zero bytes ::, 80 /128
      hex("01 1a 00 04 c6126402 20 09 06 00000000000000000000000000000000 80"),
    );
  });
});

/** An answerer on a fake clock, whose writes settle when the test says. */
function fixture(options: { burst?: number; ratePerSecond?: number; maxPending?: number } = {}) {
  let now = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  let nextTimer = 1;
  const sent: Capsule[] = [];
  const settle: (() => void)[] = [];
  const fail: ((error: Error) => void)[] = [];
  const answerer = new AddressRequestAnswerer({
    assigned: [V4, V6],
    ratePerSecond: options.ratePerSecond ?? 2,
    burst: options.burst ?? 2,
    maxPending: options.maxPending ?? 10,
    send(capsule) {
      sent.push(capsule);
      return new Promise<void>((resolve, reject) => {
        settle.push(resolve);
        fail.push(reject);
      });
    },
    now: () => now,
    setTimer(fn, ms) {
      const id = nextTimer++;
      timers.set(id, { at: now + ms, fn });
      return id;
    },
    clearTimer(handle) {
      timers.delete(handle as number);
    },
  });
  return {
    answerer,
    sent,
    timers,
    /** Settles the oldest unsettled write, if any, and lets its continuation run. */
    async settleWrite() {
      fail.shift();
      settle.shift()?.();
      await Promise.resolve();
      await Promise.resolve();
    },
    async failWrite() {
      settle.shift();
      fail.shift()!(new Error("stream gone"));
      await Promise.resolve();
      await Promise.resolve();
    },
    /** Moves the clock to `ms` and runs the timers due. */
    advance(ms: number) {
      now = ms;
      for (const [id, timer] of [...timers]) {
        if (timer.at <= now) {
          timers.delete(id);
          timer.fn();
        }
      }
    },
    ids: (i: number) =>
      sent[i].type === "address_assign"
        ? sent[i].addresses.map((a) => a.requestId).filter((id) => id !== 0)
        : [],
  };
}

Deno.test("AddressRequestAnswerer merges requests while an answer is in flight", async () => {
  const f = fixture();
  assertEquals(f.answerer.receive([request(1, "0.0.0.0/32")]), "queued");
  assertEquals(f.sent.length, 1);
  // The first answer is not settled: these three wait and merge.
  for (const id of [2, 3, 4]) f.answerer.receive([request(id, "::/64")]);
  assertEquals(f.sent.length, 1);
  assertEquals(f.answerer.pending, 3);
  await f.settleWrite();
  // One answer for all three.
  assertEquals(f.sent.length, 2);
  assertEquals(f.ids(1), [2, 3, 4]);
  assertEquals(f.answerer.pending, 0);
  await f.settleWrite();
  assertEquals(f.sent.length, 2);
  assertEquals(f.answerer.answersSent, 2);
  assertEquals(f.answerer.requestsReceived, 4);
});

Deno.test("AddressRequestAnswerer paces answers with its token bucket", async () => {
  // 2 per second, burst 2: after two answers the third waits 500 ms.
  const f = fixture({ burst: 2, ratePerSecond: 2 });
  f.answerer.receive([request(1, "0.0.0.0/32")]);
  await f.settleWrite();
  f.answerer.receive([request(2, "0.0.0.0/32")]);
  await f.settleWrite();
  f.answerer.receive([request(3, "0.0.0.0/32")]);
  f.answerer.receive([request(4, "0.0.0.0/32")]);
  assertEquals(f.sent.length, 2);
  assertEquals([...f.timers.values()].map((t) => t.at), [500]);
  f.advance(499);
  assertEquals(f.sent.length, 2);
  f.advance(500);
  assertEquals(f.sent.length, 3);
  assertEquals(f.ids(2), [3, 4]);
});

Deno.test("AddressRequestAnswerer reports an overflow past maxPending and stops", async () => {
  const f = fixture({ maxPending: 10 });
  f.answerer.receive([request(1, "0.0.0.0/32")]); // in flight, never settled: the peer does not read
  const verdicts = [];
  for (let id = 2; id <= 13; id++) verdicts.push(f.answerer.receive([request(id, "0.0.0.0/32")]));
  // Ten wait; the eleventh is one too many.
  assertEquals(verdicts.slice(0, 10), Array(10).fill("queued"));
  assertEquals(verdicts.slice(10), ["overflow", "closed"]);
  assertEquals(f.answerer.pending, 0);
  await f.settleWrite();
  assertEquals(f.sent.length, 1);
});

Deno.test("AddressRequestAnswerer: a flood gets a bounded number of answers", async () => {
  const f = fixture({ burst: 8, ratePerSecond: 4, maxPending: 64 });
  let overflowAt = -1;
  // 10k requests, one per ms, each answer settling at once: the bucket holds the answers back.
  for (let i = 1; i <= 10_000; i++) {
    f.advance(i);
    const verdict = f.answerer.receive([request(i, "0.0.0.0/32")]);
    if (verdict === "overflow") {
      overflowAt = i;
      break;
    }
    await f.settleWrite();
  }
  assert(overflowAt > 0, "no overflow");
  // The burst, then 4 per second over the overflowAt ms it took.
  assert(f.sent.length <= 8 + Math.ceil(4 * overflowAt / 1000), `${f.sent.length} answers`);
  assertEquals(f.timers.size, 0);
});

Deno.test("AddressRequestAnswerer stops after a failed write or close()", async () => {
  const f = fixture();
  f.answerer.receive([request(1, "0.0.0.0/32")]);
  await f.failWrite();
  assertEquals(f.answerer.receive([request(2, "0.0.0.0/32")]), "closed");
  assertEquals(f.sent.length, 1);
  const g = fixture({ burst: 1 });
  g.answerer.receive([request(1, "0.0.0.0/32")]);
  await g.settleWrite();
  g.answerer.receive([request(2, "0.0.0.0/32")]);
  assertEquals(g.timers.size, 1);
  g.answerer.close();
  assertEquals(g.timers.size, 0);
  assertEquals(g.answerer.receive([request(3, "0.0.0.0/32")]), "closed");
});
