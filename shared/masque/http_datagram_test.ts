import { assertEquals } from "../../tests/support/assert.ts";
import { fuzz, hex } from "../../tests/support/bytes.ts";
import { decodeVarint } from "../h3/varint.ts";
import {
  CONTEXT_ID_IP_PACKET,
  contextIdSize,
  MALFORMED_CONTEXT_ID,
  parseContextId,
} from "./http_datagram.ts";

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
