import { assert, assertEquals } from "../../tests/support/assert.ts";
import { MAX_READ_BUFFER, MIN_READ_BUFFER, SHRINK_AFTER, StreamReader } from "./stream_reader.ts";

/**
 * A byte stream that answers each BYOB read with the next of `sizes` bytes (or as many as fit),
 * as Deno's QUIC receive stream fills the view it is given. Records each view's size.
 */
function byteStream(sizes: number[]) {
  const offered: number[] = [];
  let cancelled = false;
  let i = 0;
  const stream = new ReadableStream({
    type: "bytes",
    pull(controller: ReadableByteStreamController) {
      const request = controller.byobRequest!;
      const view = request.view!;
      offered.push(view.byteLength);
      if (i >= sizes.length) {
        controller.close();
        request.respond(0);
        return;
      }
      const n = Math.min(sizes[i++], view.byteLength);
      new Uint8Array(view.buffer, view.byteOffset, n).fill(i);
      request.respond(n);
    },
    cancel() {
      cancelled = true;
    },
  });
  return { stream, offered, cancelled: () => cancelled };
}

Deno.test("StreamReader starts small, doubles after full reads and halves after runs of small ones", async () => {
  // 2048, 4096, ... 65536 filled: the buffer doubles up to the maximum and stays there.
  const full = [2048, 4096, 8192, 16384, 32768, 65536, 65536];
  // Then 10-byte reads: every SHRINK_AFTER of them in a row halve it, down to the minimum;
  // a read over a quarter of the buffer (20000 of 32768) starts the count again.
  const small = [
    ...Array(SHRINK_AFTER).fill(10),
    20000,
    ...Array(SHRINK_AFTER * 5).fill(10),
  ];
  const { stream, offered } = byteStream([...full, ...small]);
  const reader = new StreamReader(stream);
  assertEquals(reader.bufferSize, MIN_READ_BUFFER);
  const lengths: number[] = [];
  for (;;) {
    const result = await reader.read();
    if (result.done) break;
    lengths.push(result.value.length);
  }
  assertEquals(lengths, [...full, ...small]);
  const expected = [
    2048,
    4096,
    8192,
    16384,
    32768,
    65536,
    65536, // growing with full reads
    ...Array(SHRINK_AFTER).fill(65536), // 8 small reads: halved after them
    32768, // the 20000-byte read
    ...Array(SHRINK_AFTER).fill(32768),
    ...Array(SHRINK_AFTER).fill(16384),
    ...Array(SHRINK_AFTER).fill(8192),
    ...Array(SHRINK_AFTER).fill(4096),
    ...Array(SHRINK_AFTER).fill(2048), // at the minimum it stays
    2048, // the read that sees the end
  ];
  assertEquals(offered, expected);
  assertEquals(MAX_READ_BUFFER, 65536);
});

Deno.test("StreamReader never grows while bytes trickle in", async () => {
  const { stream, offered } = byteStream(Array(100).fill(1));
  const reader = new StreamReader(stream);
  while (!(await reader.read()).done) {
    // one byte per read
  }
  assert(offered.every((size) => size === MIN_READ_BUFFER));
});

Deno.test("StreamReader gives each read a buffer of its own", async () => {
  const { stream } = byteStream([3, 3]);
  const reader = new StreamReader(stream);
  const a = await reader.read();
  const b = await reader.read();
  assert(!a.done && !b.done);
  assert(a.value.buffer !== b.value.buffer);
  assertEquals(a.value, Uint8Array.of(1, 1, 1));
  assertEquals(b.value, Uint8Array.of(2, 2, 2));
  assertEquals(a.value.buffer.byteLength, MIN_READ_BUFFER);
  assertEquals((await reader.read()).done, true);
});

Deno.test("StreamReader reads a stream that is not a byte stream with a default reader", async () => {
  const chunks = [Uint8Array.of(1), Uint8Array.of(2, 3)];
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      const chunk = chunks.shift();
      if (chunk) controller.enqueue(chunk);
      else controller.close();
    },
  });
  const reader = new StreamReader(stream);
  assertEquals(reader.bufferSize, 0);
  assertEquals(await reader.read(), { done: false, value: Uint8Array.of(1) });
  assertEquals(await reader.read(), { done: false, value: Uint8Array.of(2, 3) });
  assertEquals((await reader.read()).done, true);
});

Deno.test("StreamReader.cancel() cancels the stream and never rejects", async () => {
  const { stream, cancelled } = byteStream([1, 1, 1]);
  const reader = new StreamReader(stream);
  await reader.read();
  await reader.cancel();
  assert(cancelled());
  await reader.cancel();
  assertEquals((await reader.read()).done, true);
});
