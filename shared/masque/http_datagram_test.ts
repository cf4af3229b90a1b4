import { assertEquals, assertThrows } from "../../tests/support/assert.ts";
import { fuzz, hex } from "../../tests/support/bytes.ts";
import { decodeVarint, VarintError } from "../h3/varint.ts";
import { parseQuarterStreamId, quarterStreamIdSize } from "../h3/quarter_stream.ts";
import {
  CONTEXT_ID_IP_PACKET,
  contextIdSize,
  httpDatagramHeaderSize,
  MALFORMED_CONTEXT_ID,
  parseContextId,
  writeHttpDatagramHeader,
} from "./http_datagram.ts";

Deno.test("writeHttpDatagramHeader() writes the quarter stream ID and context ID in place", async (t) => {
  await t.step("hand-built bytes: quarter 100 (2-byte 4064), context 0, a packet start", () => {
    const buf = new Uint8Array(httpDatagramHeaderSize(100, CONTEXT_ID_IP_PACKET) + 2);
    assertEquals(writeHttpDatagramHeader(buf, 0, 100, CONTEXT_ID_IP_PACKET), 3);
    buf.set(hex("4500"), 3);
    assertEquals(buf, hex("4064 00 4500"));
  });
  await t.step("header written in the headroom in front of a packet", () => {
    const packet = hex("45000014aabbccdd");
    const headroom = httpDatagramHeaderSize(64, 0);
    assertEquals(headroom, 3);
    const buf = new Uint8Array(headroom + packet.length);
    buf.set(packet, headroom);
    assertEquals(writeHttpDatagramHeader(buf, 0, 64, 0), headroom);
    assertEquals(buf, hex("4040 00 45000014aabbccdd"));
  });
  await t.step("no room throws VarintError", () => {
    assertThrows(() => writeHttpDatagramHeader(new Uint8Array(1), 0, 64, 0), VarintError);
  });
});

Deno.test("parseContextId() reads the context ID of an HTTP Datagram Payload", () => {
  // [payload, context id, its size]; a missing or truncated id is MALFORMED_CONTEXT_ID
  const cases: [string, number, number][] = [
    ["00 45000014", CONTEXT_ID_IP_PACKET, 1], // context 0, then an IPv4 packet
    ["4100 ff", 256, 2],
    ["4000 45", 0, 2], // a non-minimal 0 is still context 0 (RFC 9000 §16)
  ];
  for (const [bytes, id, size] of cases) {
    assertEquals([parseContextId(hex(bytes)), contextIdSize(hex(bytes))], [id, size], bytes);
  }
  assertEquals(parseContextId(new Uint8Array(0)), MALFORMED_CONTEXT_ID);
  assertEquals(parseContextId(hex("c0 00")), MALFORMED_CONTEXT_ID);
});

Deno.test("writeHttpDatagramHeader() round trips through the quarter stream and context ID readers", () =>
  fuzz((random) => {
    for (let i = 0; i < 2000; i++) {
      const qsid = Math.floor(random() * 2 ** (random() * 50));
      const context = Math.floor(random() * 2 ** (random() * 32));
      const payload = random.bytes(random.int(40));
      const header = httpDatagramHeaderSize(qsid, context);
      const datagram = new Uint8Array(header + payload.length);
      datagram.set(payload, writeHttpDatagramHeader(datagram, 0, qsid, context));
      assertEquals(parseQuarterStreamId(datagram), qsid);
      const rest = datagram.subarray(quarterStreamIdSize(datagram));
      assertEquals(parseContextId(rest), context);
      assertEquals(rest.subarray(contextIdSize(rest)), payload);
    }
  }));

Deno.test("parseContextId() on random input returns an ID within the payload or MALFORMED_CONTEXT_ID", () =>
  fuzz((random) => {
    for (let i = 0; i < 5000; i++) {
      const input = random.bytes(random.int(12));
      const id = parseContextId(input);
      if (id === MALFORMED_CONTEXT_ID) continue;
      assertEquals(contextIdSize(input) <= input.length, true);
      assertEquals(id, decodeVarint(input, 0));
    }
  }));
