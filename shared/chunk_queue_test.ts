import { assert, assertEquals, assertStrictEquals, assertThrows } from "../tests/support/assert.ts";
import { ChunkQueue } from "./chunk_queue.ts";
import { H3_EXCESSIVE_LOAD, H3Error } from "./errors.ts";
import { ByteBudget } from "./h3/byte_budget.ts";

function queueOf(...chunks: number[][]): ChunkQueue {
  const queue = new ChunkQueue();
  for (const chunk of chunks) queue.push(Uint8Array.from(chunk));
  return queue;
}

Deno.test("ChunkQueue.peekByte() reads across chunk boundaries without consuming", () => {
  const queue = queueOf([1, 2], [3], [4, 5, 6]);
  assertEquals([0, 1, 2, 3, 4, 5].map((i) => queue.peekByte(i)), [1, 2, 3, 4, 5, 6]);
  assertEquals(queue.peekByte(0), 1);
  assertEquals(queue.byteLength, 6);
});

Deno.test("ChunkQueue.peekByte() counts from the first unconsumed byte", () => {
  const queue = queueOf([1, 2], [3], [4, 5, 6]);
  assert(queue.discard(3));
  assertEquals(queue.peekByte(0), 4);
  assertEquals(queue.peekByte(2), 6);
  assertEquals(queue.peekByte(3), undefined);
});

Deno.test("ChunkQueue.take() returns a view inside one chunk and a copy across chunks", async (t) => {
  await t.step("inside one chunk: a view of the pushed array", () => {
    const chunk = Uint8Array.from([1, 2, 3, 4]);
    const queue = new ChunkQueue();
    queue.push(chunk);
    assert(queue.discard(1));
    const taken = queue.take(2);
    assertEquals(taken, Uint8Array.from([2, 3]));
    assertStrictEquals(taken?.buffer, chunk.buffer);
    assertEquals(queue.byteLength, 1);
  });
  await t.step("across three chunks: a copy", () => {
    const queue = queueOf([1, 2], [3], [4, 5, 6]);
    assert(queue.discard(1));
    assertEquals(queue.take(4), Uint8Array.from([2, 3, 4, 5]));
    assertEquals(queue.byteLength, 1);
    assertEquals(queue.peekByte(0), 6);
  });
  await t.step("zero bytes: empty, nothing consumed", () => {
    const queue = queueOf([1]);
    assertEquals(queue.take(0)?.length, 0);
    assertEquals(new ChunkQueue().take(0)?.length, 0);
    assertEquals(queue.byteLength, 1);
  });
});

Deno.test("ChunkQueue.discard() steps over chunk boundaries", () => {
  const queue = queueOf([1, 2], [3], [4, 5, 6]);
  assert(queue.discard(2)); // exactly the first chunk
  assertEquals(queue.peekByte(0), 3);
  assert(queue.discard(2)); // the second chunk and one byte of the third
  assertEquals(queue.peekByte(0), 5);
  assert(queue.discard(0));
  assertEquals(queue.byteLength, 2);
});

Deno.test("ChunkQueue ignores empty chunks", () => {
  const queue = new ChunkQueue();
  queue.push(new Uint8Array(0));
  assertEquals(queue.byteLength, 0);
  queue.push(Uint8Array.from([1]));
  queue.push(new Uint8Array(0));
  queue.push(Uint8Array.from([2, 3]));
  queue.push(new Uint8Array(0));
  assertEquals(queue.byteLength, 3);
  assertEquals(queue.peekByte(1), 2);
  assertEquals(queue.take(3), Uint8Array.from([1, 2, 3]));
});

Deno.test("ChunkQueue reads exactly to the end, then accepts more", async (t) => {
  await t.step("take", () => {
    const queue = queueOf([1, 2], [3]);
    assertEquals(queue.take(3), Uint8Array.from([1, 2, 3]));
    assertEquals(queue.byteLength, 0);
    assertEquals(queue.peekByte(0), undefined);
    queue.push(Uint8Array.from([4]));
    assertEquals(queue.take(1), Uint8Array.from([4]));
  });
  await t.step("discard", () => {
    const queue = queueOf([1, 2], [3]);
    assert(queue.discard(3));
    assertEquals(queue.byteLength, 0);
    queue.push(Uint8Array.from([4, 5]));
    assertEquals(queue.peekByte(1), 5);
  });
});

Deno.test("ChunkQueue asked for more bytes than it holds returns not-enough and consumes nothing", async (t) => {
  await t.step("peekByte", () => {
    const queue = queueOf([1], [2]);
    assertEquals(queue.peekByte(2), undefined);
    assertEquals(queue.peekByte(-1), undefined);
    assertEquals(new ChunkQueue().peekByte(0), undefined);
  });
  await t.step("take", () => {
    const queue = queueOf([1], [2]);
    assertEquals(queue.take(3), undefined);
    assertEquals(queue.byteLength, 2);
    assertEquals(queue.take(2), Uint8Array.from([1, 2]));
  });
  await t.step("discard", () => {
    const queue = queueOf([1], [2]);
    assertEquals(queue.discard(3), false);
    assertEquals(queue.byteLength, 2);
    assertEquals(queue.peekByte(0), 1);
  });
});

Deno.test("ChunkQueue rejects a negative count", () => {
  const queue = queueOf([1]);
  assertThrows(() => queue.take(-1), RangeError, "Cannot take -1 bytes: length is negative");
  assertThrows(() => queue.discard(-1), RangeError, "Cannot discard -1 bytes: count is negative");
  assertEquals(queue.byteLength, 1);
});

Deno.test("ChunkQueue.clear() drops every byte", () => {
  const queue = queueOf([1, 2], [3]);
  assert(queue.discard(1));
  queue.clear();
  assertEquals(queue.byteLength, 0);
  assertEquals(queue.peekByte(0), undefined);
  queue.push(Uint8Array.from([9]));
  assertEquals(queue.take(1), Uint8Array.from([9]));
});

Deno.test("ChunkQueue keeps order through thousands of 1-byte chunks", () => {
  // More than the 1024 used-up slots after which the chunk list is compacted.
  const queue = new ChunkQueue();
  const count = 5000;
  for (let i = 0; i < count; i++) queue.push(Uint8Array.of(i & 0xff));
  let next = 0;
  while (queue.byteLength > 0) {
    const size = Math.min(1 + (next % 7), queue.byteLength);
    const taken = queue.take(size);
    assertEquals(taken, Uint8Array.from({ length: size }, (_, k) => (next + k) & 0xff));
    next += size;
  }
  assertEquals(next, count);
});

Deno.test("ChunkQueue matches a flat array under random pushes, reads and compactions", () => {
  let seed = 0x2545f491;
  const random = (n: number) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const budget = new ByteBudget(1 << 20);
  const queue = new ChunkQueue({ budget });
  let model: number[] = [];
  let pushed = 0;
  // Views handed out earlier must keep their bytes: storage is never rewritten under them.
  const handedOut: [Uint8Array, number[]][] = [];
  for (let round = 0; round < 5000; round++) {
    const op = random(7);
    if (op === 0) {
      const chunk = Uint8Array.from({ length: random(6) }, () => pushed++ & 0xff);
      queue.push(chunk);
      model.push(...chunk);
    } else if (op === 1) {
      const index = random(model.length + 2);
      assertEquals(queue.peekByte(index), model[index]);
    } else if (op === 2) {
      const length = random(model.length + 3);
      const taken = queue.take(length);
      if (length > model.length) {
        assertEquals(taken, undefined);
      } else {
        assertEquals(taken, Uint8Array.from(model.slice(0, length)));
        if (taken && round % 7 === 0) handedOut.push([taken, model.slice(0, length)]);
        model = model.slice(length);
      }
    } else if (op === 3) {
      const count = random(model.length + 3);
      assertEquals(queue.discard(count), count <= model.length);
      if (count <= model.length) model = model.slice(count);
    } else if (op === 4) {
      queue.compact(random(3) === 0 ? model.length + random(20) : 0);
    } else if (op === 5) {
      const max = 1 + random(8);
      const taken = queue.takeUpTo(max);
      if (model.length === 0) {
        assertEquals(taken, undefined);
      } else {
        assert(taken !== undefined && taken.length >= 1 && taken.length <= max);
        assertEquals(taken, Uint8Array.from(model.slice(0, taken.length)));
        model = model.slice(taken.length);
      }
    } else {
      const out = new Uint8Array(random(10));
      const n = queue.peekInto(out);
      assertEquals(n, Math.min(out.length, model.length));
      assertEquals(out.subarray(0, n), Uint8Array.from(model.slice(0, n)));
    }
    assertEquals(queue.byteLength, model.length);
    assertEquals(budget.used, queue.retainedBytes);
  }
  for (const [view, bytes] of handedOut) assertEquals(view, Uint8Array.from(bytes));
  queue.clear();
  assertEquals(budget.used, 0);
});

Deno.test("ChunkQueue.compact() copies what it keeps out of the pushed arrays", async (t) => {
  await t.step(
    "1-byte views of 64 KiB buffers: storage grows with the bytes, not the buffers",
    () => {
      const budget = new ByteBudget(1 << 20);
      const queue = new ChunkQueue({ budget });
      const pushedBuffers = new Set<ArrayBufferLike>();
      for (let i = 0; i < 1000; i++) {
        const read = new Uint8Array(65536); // what Deno's QUIC read returns: a view into 64 KiB
        read[0] = i & 0xff;
        const view = read.subarray(0, 1);
        pushedBuffers.add(view.buffer);
        queue.push(view);
        queue.compact();
        assert(queue.retainedBytes <= 2 * (i + 1) + 64, `${queue.retainedBytes} after ${i + 1}`);
      }
      assertEquals(queue.byteLength, 1000);
      assertEquals(budget.used, queue.retainedBytes);
      const all = queue.take(1000)!;
      assertEquals(all, Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff));
      assert(!pushedBuffers.has(all.buffer), "the bytes still live in a pushed buffer");
      assertEquals(budget.used, 0);
    },
  );
  await t.step("storage sized to `want` takes the completing bytes in place", () => {
    const budget = new ByteBudget(1000);
    const queue = new ChunkQueue({ budget });
    queue.push(Uint8Array.from([1, 2, 3, 4]));
    queue.compact(10); // 4 of the 10 bytes the caller waits for
    assertEquals(queue.retainedBytes, 10);
    queue.push(Uint8Array.from([5, 6, 7, 8, 9, 10]));
    queue.compact(10);
    // No second allocation: the budget never held more than the 10 bytes.
    assertEquals({ used: budget.used, peak: budget.peak }, { used: 10, peak: 10 });
    const whole = queue.take(10)!;
    assertEquals(whole, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
    assertEquals(whole.buffer.byteLength, 10);
    assertEquals(budget.used, 0);
  });
  await t.step("nothing pushed since the last compact: nothing copied", () => {
    const budget = new ByteBudget(1000);
    const queue = new ChunkQueue({ budget });
    const chunk = Uint8Array.from([1, 2, 3]);
    queue.push(chunk);
    assertStrictEquals(queue.take(3)?.buffer, chunk.buffer);
    queue.compact(100);
    assertEquals({ retained: queue.retainedBytes, used: budget.used }, { retained: 0, used: 0 });
  });
  await t.step("past the budget: H3_EXCESSIVE_LOAD and the queue unchanged", () => {
    const budget = new ByteBudget(8);
    const queue = new ChunkQueue({ budget, what: "a partial capsule" });
    queue.push(new Uint8Array(9).fill(7));
    const error = assertThrows(
      () => queue.compact(),
      H3Error,
      "Cannot buffer 9 more bytes for a partial capsule: 0 of 8 bytes already buffered on this connection",
    );
    assertEquals(error.code, H3_EXCESSIVE_LOAD);
    assertEquals(queue.byteLength, 9);
    assertEquals(budget.used, 0);
    assertEquals(queue.take(9), new Uint8Array(9).fill(7));
  });
  await t.step("clear() gives the storage back", () => {
    const budget = new ByteBudget(1000);
    const queue = new ChunkQueue({ budget });
    queue.push(Uint8Array.from([1, 2, 3]));
    queue.compact(50);
    assertEquals(budget.used, 50);
    queue.clear();
    assertEquals({ used: budget.used, bytes: queue.byteLength }, { used: 0, bytes: 0 });
  });
});
