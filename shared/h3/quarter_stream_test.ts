import { assertEquals, assertThrows } from "../../tests/support/assert.ts";
import { fuzz, hex } from "../../tests/support/bytes.ts";
import { H3_DATAGRAM_ERROR, H3Error } from "../errors.ts";
import { parseQuarterStreamId, quarterStreamId, quarterStreamIdSize } from "./quarter_stream.ts";

Deno.test("quarterStreamId() divides client bidirectional stream IDs by four", async (t) => {
  await t.step("valid IDs", () => {
    assertEquals(quarterStreamId(0), 0);
    assertEquals(quarterStreamId(4), 1);
    assertEquals(quarterStreamId(400n), 100);
    assertEquals(quarterStreamId(4n * BigInt(Number.MAX_SAFE_INTEGER)), Number.MAX_SAFE_INTEGER);
  });
  for (const id of [1, 2, 3, 5n, -4, 4.5]) {
    await t.step(`rejects ${id}`, () => {
      assertThrows(
        () => quarterStreamId(id),
        RangeError,
        `Cannot derive quarter stream ID: ${id} is not a client-initiated bidirectional stream ID`,
      );
    });
  }
  await t.step("rejects a quarter above 2^53-1", () => {
    assertThrows(() => quarterStreamId(2n ** 60n), RangeError, "is too large");
  });
});

Deno.test("parseQuarterStreamId() reads hand-built datagrams and rejects bad ids", async (t) => {
  const truncated = "truncated quarter stream id";
  const tooLarge = "quarter stream id above 2^60-1";
  // [what, datagram, quarter stream id and its size, or the error]
  const cases: [string, string, [number, number] | string][] = [
    ["stream 0: quarter 0, then context 0 and a packet", "00 00 4500001c", [0, 1]],
    ["stream 400: quarter 100 as the 2-byte varint 4064", "4064 02 60", [100, 2]],
    ["non-minimal 1 (RFC 9000 §16)", "4001 00", [1, 2]],
    ["a bare id with no payload", "05", [5, 1]],
    ["largest, 2^60-1 (8-byte cfff...)", "cfffffffffffffff 00", [2 ** 60 - 1, 8]],
    ["empty", "", truncated],
    ["2-byte varint with one byte", "40", truncated],
    ["8-byte varint with seven bytes", "c0 000000000000", truncated],
    ["2^60 (d000...)", "d000000000000000 00", tooLarge],
    ["2^62-1 (ffff...)", "ffffffffffffffff", tooLarge],
  ];
  for (const [what, bytes, expected] of cases) {
    await t.step(what, () => {
      const datagram = hex(bytes);
      if (typeof expected !== "string") {
        assertEquals([parseQuarterStreamId(datagram), quarterStreamIdSize(datagram)], expected);
        return;
      }
      const error = assertThrows(() => parseQuarterStreamId(datagram), H3Error);
      assertEquals(
        [error.message, error.code, error.connection],
        [`Cannot parse HTTP Datagram: ${expected}`, H3_DATAGRAM_ERROR, true],
      );
    });
  }
});

Deno.test("parseQuarterStreamId() on random input returns an id within the datagram or throws H3Error", () =>
  fuzz((random) => {
    for (let i = 0; i < 5000; i++) {
      const input = random.bytes(random.int(12));
      try {
        parseQuarterStreamId(input);
        assertEquals(quarterStreamIdSize(input) <= input.length, true, `input ${input}`);
      } catch (error) {
        if (!(error instanceof H3Error) || error.code !== H3_DATAGRAM_ERROR) throw error;
      }
    }
  }));
