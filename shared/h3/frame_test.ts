import {
  assert,
  assertEquals,
  assertStrictEquals,
  assertThrows,
} from "../../tests/support/assert.ts";
import { fuzz, hex } from "../../tests/support/bytes.ts";
import { H3_EXCESSIVE_LOAD, H3_FRAME_ERROR, H3_FRAME_UNEXPECTED, H3Error } from "../errors.ts";
import {
  DEFAULT_MAX_FRAME_PAYLOAD,
  encodeFrame,
  encodeFrameHeader,
  encodeGoawayFrame,
  FRAME_CANCEL_PUSH,
  FRAME_DATA,
  FRAME_GOAWAY,
  FRAME_HEADERS,
  FRAME_MAX_PUSH_ID,
  FRAME_PUSH_PROMISE,
  FRAME_SETTINGS,
  type FrameEvent,
  FrameReader,
  frameTypeName,
  parseGoawayPayload,
} from "./frame.ts";
import { ByteBudget } from "./byte_budget.ts";

const concat = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
};

/** Calls next() until it returns undefined. */
const drain = (reader: FrameReader) => {
  const events: FrameEvent[] = [];
  for (let e = reader.next(); e !== undefined; e = reader.next()) events.push(e);
  return events;
};

/** Pushes `bytes` one byte at a time, draining after each, and returns all events. */
const feedBytewise = (reader: FrameReader, bytes: Uint8Array) => {
  const events: FrameEvent[] = [];
  for (let i = 0; i < bytes.length; i++) {
    reader.push(bytes.subarray(i, i + 1));
    events.push(...drain(reader));
  }
  return events;
};

Deno.test("frame type constants match RFC 9114 §7.2 and §11.2.1", () => {
  assertEquals(
    [
      FRAME_DATA,
      FRAME_HEADERS,
      FRAME_CANCEL_PUSH,
      FRAME_SETTINGS,
      FRAME_PUSH_PROMISE,
      FRAME_GOAWAY,
      FRAME_MAX_PUSH_ID,
    ],
    [0x00, 0x01, 0x03, 0x04, 0x05, 0x07, 0x0d],
  );
  assertStrictEquals(DEFAULT_MAX_FRAME_PAYLOAD, 16384);
});

Deno.test("frameTypeName() names RFC 9114 types and prints others in hex", () => {
  assertEquals(frameTypeName(0x00), "DATA");
  assertEquals(frameTypeName(0x01), "HEADERS");
  assertEquals(frameTypeName(0x03), "CANCEL_PUSH");
  assertEquals(frameTypeName(0x04), "SETTINGS");
  assertEquals(frameTypeName(0x05), "PUSH_PROMISE");
  assertEquals(frameTypeName(0x07), "GOAWAY");
  assertEquals(frameTypeName(0x0d), "MAX_PUSH_ID");
  assertEquals(frameTypeName(0x2a), "0x2a");
  assertEquals(frameTypeName(0x02), "0x02");
  assertEquals(frameTypeName(0x21), "0x21");
});

Deno.test("encodeFrameHeader() writes Type (i) and Length (i) in shortest form", async (t) => {
  await t.step("HEADERS of 16 bytes: 01 type, 10 length", () => {
    assertEquals(encodeFrameHeader(FRAME_HEADERS, 16), hex("01 10"));
  });
  await t.step("DATA of 16384 bytes: 00 type, 80004000 4-byte length", () => {
    assertEquals(encodeFrameHeader(FRAME_DATA, 16384), hex("00 80004000"));
  });
  await t.step("reserved 0x7e (N=3), empty: 407e 2-byte type, 00 length", () => {
    assertEquals(encodeFrameHeader(0x7e, 0), hex("407e 00"));
  });
  await t.step("DATA of 2^30 bytes: 8-byte length", () => {
    assertEquals(encodeFrameHeader(FRAME_DATA, 2 ** 30), hex("00 c000000040000000"));
  });
});

Deno.test("encodeFrame() writes header and a copy of the payload", () => {
  const payload = hex("d1 d7");
  const frame = encodeFrame(FRAME_HEADERS, payload);
  // 01 HEADERS, 02 length, d1d7 two QPACK bytes
  assertEquals(frame, hex("01 02 d1d7"));
  payload[0] = 0;
  assertEquals(frame, hex("01 02 d1d7"));
  // 00 DATA, 00 length: an empty frame is just its header
  assertEquals(encodeFrame(FRAME_DATA, new Uint8Array(0)), hex("00 00"));
});

Deno.test("encodeGoawayFrame() writes a whole GOAWAY frame", async (t) => {
  await t.step("stream 4: 07 type, 01 length, 04 ID", () => {
    assertEquals(encodeGoawayFrame(4), hex("07 01 04"));
  });
  await t.step("stream 1000: 07 type, 02 length, 43e8 2-byte ID", () => {
    assertEquals(encodeGoawayFrame(1000), hex("07 02 43e8"));
  });
  await t.step("stream 2^32: 07 type, 08 length, 8-byte ID", () => {
    assertEquals(encodeGoawayFrame(2 ** 32), hex("07 08 c000000100000000"));
  });
});

Deno.test("parseGoawayPayload() reads one varint and rejects anything else", async (t) => {
  await t.step("04 is stream 4", () => assertEquals(parseGoawayPayload(hex("04")), 4));
  await t.step("non-minimal 4004 is stream 4", () => {
    assertEquals(parseGoawayPayload(hex("4004")), 4);
  });
  await t.step("round trip through encodeGoawayFrame()", () => {
    for (const id of [0, 63, 64, 16383, 16384, 2 ** 30, 2 ** 40 + 4, Number.MAX_SAFE_INTEGER]) {
      const frame = encodeGoawayFrame(id);
      assertEquals(parseGoawayPayload(frame.subarray(2)), id);
    }
  });
  await t.step("empty payload", () => {
    const e = assertThrows(
      () => parseGoawayPayload(new Uint8Array(0)),
      H3Error,
      "Cannot parse GOAWAY: payload is empty",
    );
    assertEquals(e.code, H3_FRAME_ERROR);
  });
  await t.step("truncated: 80 announces 4 bytes, 2 present", () => {
    const e = assertThrows(
      () => parseGoawayPayload(hex("80 00")),
      H3Error,
      "Cannot parse GOAWAY: ID needs 4 bytes, payload has 2",
    );
    assertEquals(e.code, H3_FRAME_ERROR);
  });
  await t.step("trailing: 04 ID then 00 0000", () => {
    const e = assertThrows(
      () => parseGoawayPayload(hex("04 00 0000")),
      H3Error,
      "Cannot parse GOAWAY: 3 trailing bytes after the ID",
    );
    assertEquals(e.code, H3_FRAME_ERROR);
  });
});

Deno.test("FrameReader returns a hand-written SETTINGS frame whole", () => {
  const reader = new FrameReader();
  // 04 SETTINGS, 04 length, 33 H3_DATAGRAM = 01, 08 ENABLE_CONNECT_PROTOCOL = 01
  const bytes = hex("04 04 3301 0801");
  reader.push(bytes);
  const event = reader.next();
  assertEquals(event, { kind: "frame", type: FRAME_SETTINGS, payload: hex("3301 0801") });
  assertEquals(reader.next(), undefined);
  assert(reader.atFrameBoundary);
});

Deno.test("FrameReader returns a contiguous payload as a view of the pushed array", () => {
  const reader = new FrameReader();
  const bytes = hex("07 01 04"); // GOAWAY, length 1, stream 4
  reader.push(bytes);
  const event = reader.next();
  assert(event?.kind === "frame");
  assertStrictEquals(event.payload.buffer, bytes.buffer);
  assertStrictEquals(event.payload.byteOffset, 2);
});

Deno.test("FrameReader skips reserved (GREASE) frames", async (t) => {
  await t.step("0x21 (N=0) with a 3-byte payload between SETTINGS and GOAWAY", () => {
    const reader = new FrameReader();
    reader.push(hex(
      "04 00" + // SETTINGS, empty
        "21 03 aabbcc" + // reserved 0x21, length 3, payload ignored
        "07 01 00", // GOAWAY, length 1, stream 0
    ));
    assertEquals(drain(reader), [
      { kind: "frame", type: FRAME_SETTINGS, payload: new Uint8Array(0) },
      { kind: "frame", type: FRAME_GOAWAY, payload: hex("00") },
    ]);
    assert(reader.atFrameBoundary);
  });
  await t.step("0xbc (N=5) as a 2-byte type, pushed byte by byte", () => {
    const reader = new FrameReader();
    // 40bc reserved type, 4002 non-minimal length 2, ffff payload, 01 01 c0 HEADERS
    const events = feedBytewise(reader, hex("40bc 4002 ffff 01 01 c0"));
    assertEquals(events, [{ kind: "frame", type: FRAME_HEADERS, payload: hex("c0") }]);
    assert(reader.atFrameBoundary);
  });
  await t.step("unknown type 0x2a with an empty payload", () => {
    const reader = new FrameReader();
    reader.push(hex("2a 00 0d 01 05")); // 0x2a empty; MAX_PUSH_ID, length 1, push ID 5
    assertEquals(drain(reader), [{ kind: "frame", type: FRAME_MAX_PUSH_ID, payload: hex("05") }]);
  });
});

Deno.test("FrameReader reports every frame header to onFrameStart, also those without events", () => {
  const types: number[] = [];
  const reader = new FrameReader({ onFrameStart: (type) => types.push(type) });
  // 00 00: empty DATA (no event); 21 01 ff: reserved 0x21 (skipped);
  // 01 01 c0: HEADERS, length 1
  const events = feedBytewise(reader, hex("00 00  21 01 ff  01 01 c0"));
  assertEquals(types, [FRAME_DATA, 0x21, FRAME_HEADERS]);
  assertEquals(events, [{ kind: "frame", type: FRAME_HEADERS, payload: hex("c0") }]);
  // An H3Error thrown by the callback is the reader's error from then on.
  const strict = new FrameReader({
    onFrameStart: (type) => {
      if (type === FRAME_DATA) throw new H3Error(H3_FRAME_UNEXPECTED, "no DATA here");
    },
  });
  strict.push(hex("00 00  01 01 c0"));
  assertThrows(() => strict.next(), H3Error, "no DATA here");
  assertThrows(() => strict.next(), H3Error, "no DATA here");
});

Deno.test("FrameReader skips an unknown 1 MB frame across many pushes without buffering", () => {
  const reader = new FrameReader();
  // 2a unknown type, 800f4240 4-byte length 1,000,000
  reader.push(hex("2a 800f4240"));
  assertEquals(reader.next(), undefined);
  const piece = new Uint8Array(1000).fill(0x01); // would parse as HEADERS if not skipped
  for (let i = 0; i < 999; i++) {
    reader.push(piece);
    assertEquals(reader.next(), undefined);
    assert(!reader.atFrameBoundary);
  }
  // The last 1000 payload bytes and a CANCEL_PUSH (03, length 1, push 7) in one push.
  reader.push(concat([piece, hex("03 01 07")]));
  assertEquals(drain(reader), [{ kind: "frame", type: FRAME_CANCEL_PUSH, payload: hex("07") }]);
  assert(reader.atFrameBoundary);
});

Deno.test("FrameReader skips an unknown frame whose length is above 2^53", () => {
  const reader = new FrameReader();
  // 2a unknown, ffffffffffffffff length 2^62-1
  reader.push(hex("2a ffffffffffffffff"));
  for (let i = 0; i < 100; i++) {
    reader.push(new Uint8Array(4096));
    assertEquals(reader.next(), undefined);
  }
  assert(!reader.atFrameBoundary);
});

Deno.test("FrameReader streams DATA payloads", async (t) => {
  await t.step("byte by byte: one 1-byte chunk per payload byte", () => {
    const reader = new FrameReader();
    const bytes = hex("00 05 68656c6c6f"); // DATA, length 5, "hello"
    const seen: Array<FrameEvent | undefined> = [];
    for (let i = 0; i < bytes.length; i++) {
      reader.push(bytes.subarray(i, i + 1));
      seen.push(reader.next());
      assertEquals(reader.next(), undefined);
      assertEquals(reader.atFrameBoundary, i === bytes.length - 1);
    }
    assertEquals(seen, [
      undefined, // type byte
      undefined, // length byte
      ...Array.from(
        hex("68656c6c6f"),
        (b): FrameEvent => ({ kind: "data", chunk: Uint8Array.of(b) }),
      ),
    ]);
  });
  await t.step("zero-copy: chunks are views of the pushed arrays", () => {
    const reader = new FrameReader();
    // DATA length 6 "abc" in the first push, "def" and a HEADERS (01 01 c0) in the second
    const first = hex("00 06 616263");
    const second = hex("646566 01 01 c0");
    reader.push(first);
    const a = reader.next();
    assert(a?.kind === "data");
    assertEquals(a.chunk, hex("616263"));
    assertStrictEquals(a.chunk.buffer, first.buffer);
    assertStrictEquals(a.chunk.byteOffset, 2);
    reader.push(second);
    const b = reader.next();
    assert(b?.kind === "data");
    assertEquals(b.chunk, hex("646566"));
    assertStrictEquals(b.chunk.buffer, second.buffer);
    assertEquals(reader.next(), { kind: "frame", type: FRAME_HEADERS, payload: hex("c0") });
    assertEquals(reader.next(), undefined);
  });
  await t.step("a large DATA frame is never returned whole before it has all arrived", () => {
    const reader = new FrameReader();
    reader.push(encodeFrameHeader(FRAME_DATA, 100_000));
    let total = 0;
    for (let i = 0; i < 100; i++) {
      reader.push(new Uint8Array(1000).fill(i));
      const events = drain(reader);
      assertEquals(events.length, 1);
      const e = events[0];
      assert(e.kind === "data");
      assertEquals(e.chunk, new Uint8Array(1000).fill(i));
      total += e.chunk.length;
    }
    assertEquals(total, 100_000);
    assert(reader.atFrameBoundary);
  });
  await t.step("empty DATA frames produce no events", () => {
    const reader = new FrameReader();
    reader.push(hex("00 00  00 00  00 01 7a  00 00")); // two empty, "z", empty
    assertEquals(drain(reader), [{ kind: "data", chunk: hex("7a") }]);
    assert(reader.atFrameBoundary);
  });
  await t.step("a DATA length above 2^53 streams", () => {
    const reader = new FrameReader();
    reader.push(hex("00 ffffffffffffffff 0102")); // DATA, length 2^62-1, two bytes
    assertEquals(drain(reader), [{ kind: "data", chunk: hex("0102") }]);
    assert(!reader.atFrameBoundary);
  });
});

Deno.test("FrameReader reassembles frames split anywhere across pushes", async (t) => {
  await t.step("type and length varints split byte by byte", () => {
    const reader = new FrameReader();
    // 4001 non-minimal HEADERS type, 80000003 4-byte length 3, payload 0000d1
    const events = feedBytewise(reader, hex("4001 80000003 0000d1"));
    assertEquals(events, [{ kind: "frame", type: FRAME_HEADERS, payload: hex("0000d1") }]);
  });
  await t.step("a 16384-byte HEADERS payload pushed one byte at a time", () => {
    const payload = Uint8Array.from({ length: 16384 }, (_, i) => i & 0xff);
    const reader = new FrameReader();
    const events = feedBytewise(reader, encodeFrame(FRAME_HEADERS, payload));
    assertEquals(events, [{ kind: "frame", type: FRAME_HEADERS, payload }]);
    assert(reader.atFrameBoundary);
  });
  await t.step("atFrameBoundary is false mid-header and mid-payload", () => {
    const reader = new FrameReader();
    assert(reader.atFrameBoundary);
    reader.push(hex("01")); // HEADERS type only
    assertEquals(reader.next(), undefined);
    assert(!reader.atFrameBoundary);
    reader.push(hex("02 d1")); // length 2, 1 of 2 payload bytes
    assertEquals(reader.next(), undefined);
    assert(!reader.atFrameBoundary);
    reader.push(hex("d7"));
    assertEquals(reader.next(), { kind: "frame", type: FRAME_HEADERS, payload: hex("d1d7") });
    assert(reader.atFrameBoundary);
  });
});

Deno.test("FrameReader rejects a buffered frame longer than the limit", async (t) => {
  await t.step("HEADERS of 70000 bytes, before the payload arrives", () => {
    const reader = new FrameReader();
    reader.push(hex("01 80011170")); // HEADERS, 4-byte length 70000
    const e = assertThrows(
      () => reader.next(),
      H3Error,
      "Cannot parse frame: HEADERS payload 70000 exceeds limit 16384",
    );
    assertEquals(e.code, H3_EXCESSIVE_LOAD);
    assert(e.connection);
  });
  await t.step("a custom limit: SETTINGS of 11 bytes with maxFramePayload 10", () => {
    const reader = new FrameReader({ maxFramePayload: 10 });
    reader.push(hex("04 0b"));
    const e = assertThrows(
      () => reader.next(),
      H3Error,
      "Cannot parse frame: SETTINGS payload 11 exceeds limit 10",
    );
    assertEquals(e.code, H3_EXCESSIVE_LOAD);
  });
  await t.step("exactly at the limit is accepted", () => {
    const reader = new FrameReader({ maxFramePayload: 10 });
    const payload = new Uint8Array(10).fill(0xee);
    reader.push(encodeFrame(FRAME_PUSH_PROMISE, payload));
    assertEquals(drain(reader), [{ kind: "frame", type: FRAME_PUSH_PROMISE, payload }]);
  });
  await t.step("a length above 2^53 on GOAWAY", () => {
    const reader = new FrameReader();
    reader.push(hex("07 ffffffffffffffff"));
    assertThrows(
      () => reader.next(),
      H3Error,
      "Cannot parse frame: GOAWAY payload 4611686018427388000 exceeds limit 16384",
    );
  });
  await t.step("DATA is not limited", () => {
    const reader = new FrameReader({ maxFramePayload: 0 });
    reader.push(hex("00 03 010203"));
    assertEquals(drain(reader), [{ kind: "data", chunk: hex("010203") }]);
  });
  await t.step("the constructor rejects a negative limit", () => {
    assertThrows(
      () => new FrameReader({ maxFramePayload: -1 }),
      RangeError,
      "Cannot create FrameReader: maxFramePayload -1 is not a byte count",
    );
  });
});

Deno.test("FrameReader keeps copies, not pushed arrays, between reads", async (t) => {
  await t.step("a 16000-byte HEADERS frame trickled as 1-byte views of 64 KiB buffers", () => {
    const budget = new ByteBudget(1 << 20);
    const reader = new FrameReader({ budget });
    const payload = Uint8Array.from({ length: 16000 }, (_, i) => i * 13);
    // 01 HEADERS, 7e 80: 2-byte varint length 16000, then the payload
    const frame = encodeFrame(FRAME_HEADERS, payload);
    const pushedBuffers = new Set<ArrayBufferLike>();
    for (let i = 0; i < frame.length - 1; i++) {
      const read = new Uint8Array(65536);
      read[0] = frame[i];
      pushedBuffers.add(read.buffer);
      reader.push(read.subarray(0, 1));
      assertStrictEquals(reader.next(), undefined);
      // At most twice what arrived (plus a little), and never more than the frame's payload.
      assert(reader.retainedBytes <= Math.min(2 * (i + 1) + 64, 16000), `after ${i + 1} bytes`);
      assertEquals(budget.used, reader.retainedBytes);
    }
    reader.push(frame.subarray(frame.length - 1));
    const event = reader.next();
    assert(event?.kind === "frame");
    assertEquals(event.payload, payload);
    assert(!pushedBuffers.has(event.payload.buffer));
    // The last byte was appended in place: the payload is the reader's storage, sized exactly.
    assertEquals(event.payload.buffer.byteLength, 16000);
    assertEquals(budget.used, 0);
    assertEquals(reader.next(), undefined);
  });
  await t.step("bytes after a frame event are copied; DATA in the same push stays a view", () => {
    const budget = new ByteBudget(1 << 20);
    const reader = new FrameReader({ budget });
    // 00 DATA, 03 length, "abc"; 01 HEADERS, 01 length, c0; then 00 DATA, 05 length, "de" (partial)
    const chunk = hex("00 03 616263  01 01 c0  00 05 6465");
    reader.push(chunk);
    const data = reader.next();
    assert(data?.kind === "data");
    assertStrictEquals(data.chunk.buffer, chunk.buffer);
    const headers = reader.next();
    assertEquals(headers, { kind: "frame", type: FRAME_HEADERS, payload: hex("c0") });
    // What followed the HEADERS frame was copied when it was returned.
    assert(reader.retainedBytes >= 4 && budget.used === reader.retainedBytes);
    const rest = reader.next();
    assert(rest?.kind === "data");
    assertEquals(rest.chunk, hex("6465"));
    assert(rest.chunk.buffer !== chunk.buffer);
    assertEquals(reader.next(), undefined);
    assertEquals(budget.used, 0);
  });
  await t.step("past the budget: H3_EXCESSIVE_LOAD, sticky, storage given back", () => {
    const budget = new ByteBudget(1000);
    const reader = new FrameReader({ budget });
    // 01 HEADERS, 47 d0: length 2000 (under the frame limit), then 1200 payload bytes
    reader.push(concat([hex("01 47d0"), new Uint8Array(1200)]));
    const error = assertThrows(
      () => reader.next(),
      H3Error,
      "Cannot buffer 1200 more bytes for a partial HTTP/3 frame: 0 of 1000 bytes already buffered on this connection",
    );
    assertEquals(error.code, H3_EXCESSIVE_LOAD);
    assertStrictEquals(assertThrows(() => reader.next(), H3Error), error);
    assertEquals(budget.used, 0);
  });
  await t.step("clear() gives the storage back", () => {
    const budget = new ByteBudget(1 << 20);
    const reader = new FrameReader({ budget });
    reader.push(hex("01 0a 0000")); // HEADERS, length 10, 2 of 10 payload bytes
    assertEquals(reader.next(), undefined);
    assert(budget.used > 0);
    reader.clear();
    assertEquals(budget.used, 0);
  });
});

Deno.test("FrameReader rejects HTTP/2-only frame types", async (t) => {
  const cases: Array<[string, string]> = [
    ["02", "Cannot parse frame: HTTP/2 frame type 0x02 (PRIORITY) is not allowed in HTTP/3"],
    ["06", "Cannot parse frame: HTTP/2 frame type 0x06 (PING) is not allowed in HTTP/3"],
    ["08", "Cannot parse frame: HTTP/2 frame type 0x08 (WINDOW_UPDATE) is not allowed in HTTP/3"],
    ["09", "Cannot parse frame: HTTP/2 frame type 0x09 (CONTINUATION) is not allowed in HTTP/3"],
    ["4002", "Cannot parse frame: HTTP/2 frame type 0x02 (PRIORITY) is not allowed in HTTP/3"],
  ];
  for (const [type, message] of cases) {
    await t.step(`type ${type}`, () => {
      const reader = new FrameReader();
      reader.push(hex(`${type} 00`)); // type, empty payload
      const e = assertThrows(() => reader.next(), H3Error, message);
      assertEquals(e.message, message);
      assertEquals(e.code, H3_FRAME_UNEXPECTED);
    });
  }
});

Deno.test("FrameReader keeps throwing the same error after one", () => {
  const reader = new FrameReader();
  reader.push(hex("06 00 04 00")); // PING (HTTP/2), then an empty SETTINGS
  const first = assertThrows(() => reader.next(), H3Error);
  const second = assertThrows(() => reader.next(), H3Error);
  assertStrictEquals(second, first);
});

Deno.test("FrameReader round trips encodeFrame() output in random chunkings", () =>
  fuzz((random) => {
    const known = [
      FRAME_HEADERS,
      FRAME_CANCEL_PUSH,
      FRAME_SETTINGS,
      FRAME_PUSH_PROMISE,
      FRAME_GOAWAY,
      FRAME_MAX_PUSH_ID,
    ];
    for (let iteration = 0; iteration < 300; iteration++) {
      const parts: Uint8Array[] = [];
      const expectedFrames: FrameEvent[] = [];
      const expectedData: number[] = [];
      const frames = 1 + Math.floor(random() * 8);
      for (let f = 0; f < frames; f++) {
        const size = Math.floor(random() ** 3 * 3000);
        const payload = Uint8Array.from({ length: size }, () => Math.floor(random() * 256));
        const pick = random();
        if (pick < 0.3) {
          parts.push(encodeFrame(FRAME_DATA, payload));
          expectedData.push(...payload);
        } else if (pick < 0.5) {
          const n = Math.floor(random() * 2 ** 20);
          parts.push(encodeFrame(0x1f * n + 0x21, payload)); // reserved: skipped
        } else {
          const type = known[Math.floor(random() * known.length)];
          parts.push(encodeFrame(type, payload));
          expectedFrames.push({ kind: "frame", type, payload });
        }
      }
      const stream = concat(parts);
      const reader = new FrameReader();
      const frameEvents: FrameEvent[] = [];
      const data: number[] = [];
      let offset = 0;
      while (offset < stream.length) {
        const end = Math.min(stream.length, offset + 1 + Math.floor(random() ** 2 * 500));
        reader.push(stream.subarray(offset, end));
        offset = end;
        for (const e of drain(reader)) {
          if (e.kind === "data") {
            assert(e.chunk.length > 0, "empty data chunk");
            data.push(...e.chunk);
          } else {
            frameEvents.push(e);
          }
        }
      }
      assertEquals(frameEvents, expectedFrames);
      assertEquals(data, expectedData);
      assert(reader.atFrameBoundary);
    }
  }, 1));

Deno.test("FrameReader fuzz: random and mutated streams only throw H3Error and terminate", () =>
  fuzz((random) => {
    const seeds = [
      hex("04 04 3301 0801 21 03 aabbcc 01 02 d1d7 00 05 68656c6c6f 07 01 04"),
      concat([encodeFrame(FRAME_HEADERS, new Uint8Array(200)), encodeFrame(FRAME_DATA, hex("01"))]),
      hex("40bc 4002 ffff 0d 01 05 03 01 07 2a 800f4240"),
    ];
    let errors = 0;
    for (let iteration = 0; iteration < 3000; iteration++) {
      let stream: Uint8Array;
      if (random() < 0.3) {
        stream = Uint8Array.from({ length: Math.floor(random() * 64) }, () => random() * 256);
      } else {
        stream = seeds[Math.floor(random() * seeds.length)].slice();
        const flips = 1 + Math.floor(random() * 4);
        for (let i = 0; i < flips && stream.length > 0; i++) {
          stream[Math.floor(random() * stream.length)] = Math.floor(random() * 256);
        }
        if (random() < 0.3) stream = stream.subarray(0, Math.floor(random() * stream.length));
      }
      const reader = new FrameReader({ maxFramePayload: 1 + Math.floor(random() * 300) });
      try {
        let offset = 0;
        while (offset < stream.length) {
          const end = Math.min(stream.length, offset + 1 + Math.floor(random() * 8));
          reader.push(stream.subarray(offset, end));
          offset = end;
          // Every event consumes at least one byte, so more calls than bytes means a loop.
          let calls = 0;
          while (reader.next() !== undefined) assert(++calls <= stream.length, "next() loops");
        }
      } catch (error) {
        if (!(error instanceof H3Error)) throw error;
        errors++;
      }
    }
    assert(errors > 0, "fuzzing never hit an error path");
  }, 2));
