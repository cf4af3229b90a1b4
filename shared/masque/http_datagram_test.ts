import {
  assert,
  assertEquals,
  assertStrictEquals,
  assertThrows,
} from "../../tests/support/assert.ts";
import { hex } from "../../tests/support/bytes.ts";
import { CapsuleError, H3_DATAGRAM_ERROR, H3Error } from "../errors.ts";
import { VarintError } from "../h3/varint.ts";
import {
  CONTEXT_ID_IP_PACKET,
  encodeHttpDatagram,
  httpDatagramHeaderSize,
  parseDatagramPayload,
  parseHttpDatagram,
  quarterStreamId,
  writeHttpDatagramHeader,
} from "./http_datagram.ts";

Deno.test("parseHttpDatagram() reads hand-built datagrams", async (t) => {
  await t.step("stream 0, context 0, an IPv4 header start", () => {
    const datagram = hex(
      "00" + // Quarter Stream ID = 0 (stream 0)
        "00" + // Context ID = 0 (IP packet)
        "4500001c", // payload
    );
    const parsed = parseHttpDatagram(datagram);
    assertEquals(parsed, { quarterStreamId: 0, contextId: 0, payload: hex("4500001c") });
    assertStrictEquals(parsed.payload.buffer, datagram.buffer); // a view, not a copy
    assertEquals(parsed.payload.byteOffset, 2);
  });
  await t.step("stream 400 (quarter 100 as 2-byte varint 4064), context 2", () => {
    assertEquals(parseHttpDatagram(hex("4064 02 60")), {
      quarterStreamId: 100,
      contextId: 2,
      payload: hex("60"),
    });
  });
  await t.step("empty payload after the context ID", () => {
    assertEquals(parseHttpDatagram(hex("01 00")).payload, new Uint8Array(0));
  });
  await t.step("largest quarter stream ID 2^60-1 (8-byte varint cfff...)", () => {
    const parsed = parseHttpDatagram(hex("cfffffffffffffff 00"));
    assertEquals(parsed.contextId, 0);
    assert(parsed.quarterStreamId > 2 ** 59);
  });
  await t.step("non-minimal varints are accepted (RFC 9000 §16)", () => {
    assertEquals(parseHttpDatagram(hex("4001 4000 ff")), {
      quarterStreamId: 1,
      contextId: 0,
      payload: hex("ff"),
    });
  });
});

Deno.test("parseHttpDatagram() rejects malformed datagrams", async (t) => {
  const cases: [string, string, string, boolean][] = [
    ["empty", "", "Cannot parse HTTP/3 datagram: empty datagram", true],
    [
      "truncated quarter stream ID",
      "40",
      "Cannot parse HTTP/3 datagram: quarter stream ID needs 2 bytes, have 1",
      true,
    ],
    [
      "quarter stream ID 2^60",
      "d000000000000000 00",
      "Cannot parse HTTP/3 datagram: quarter stream ID exceeds 2^60-1",
      true,
    ],
    ["missing context ID", "04", "Cannot parse HTTP/3 datagram: missing context ID", false],
    [
      "truncated context ID",
      "04 80aa",
      "Cannot parse HTTP/3 datagram: context ID needs 4 bytes, have 2",
      false,
    ],
  ];
  for (const [name, bytes, message, connection] of cases) {
    await t.step(name, () => {
      const error = assertThrows(() => parseHttpDatagram(hex(bytes)), H3Error);
      assertEquals(error.message, message);
      assertEquals(error.code, H3_DATAGRAM_ERROR);
      assertEquals(error.connection, connection);
    });
  }
});

Deno.test("encodeHttpDatagram() and writeHttpDatagramHeader() round trip", async (t) => {
  await t.step("hand-built bytes", () => {
    assertEquals(encodeHttpDatagram(100, CONTEXT_ID_IP_PACKET, hex("4500")), hex("4064 00 4500"));
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
  await t.step("random values", () => {
    for (let i = 0; i < 2000; i++) {
      const qsid = Math.floor(Math.random() * 2 ** (Math.random() * 50));
      const context = Math.floor(Math.random() * 2 ** (Math.random() * 32));
      const payload = new Uint8Array(Math.floor(Math.random() * 40));
      crypto.getRandomValues(payload);
      const datagram = encodeHttpDatagram(qsid, context, payload);
      assertEquals(datagram.length, httpDatagramHeaderSize(qsid, context) + payload.length);
      assertEquals(parseHttpDatagram(datagram), {
        quarterStreamId: qsid,
        contextId: context,
        payload,
      });
    }
  });
});

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

Deno.test("parseDatagramPayload() splits a DATAGRAM capsule payload", async (t) => {
  await t.step("context 0 and a packet", () => {
    const payload = hex("00 45000014");
    const parsed = parseDatagramPayload(payload);
    assertEquals(parsed, { contextId: 0, data: hex("45000014") });
    assertStrictEquals(parsed.data.buffer, payload.buffer);
  });
  await t.step("2-byte context ID", () => {
    assertEquals(parseDatagramPayload(hex("4100 ff")), { contextId: 256, data: hex("ff") });
  });
  await t.step("empty payload", () => {
    assertThrows(
      () => parseDatagramPayload(new Uint8Array(0)),
      CapsuleError,
      "Cannot parse HTTP Datagram Payload: missing context ID",
    );
  });
  await t.step("truncated context ID", () => {
    assertThrows(
      () => parseDatagramPayload(hex("c0 00")),
      CapsuleError,
      "Cannot parse HTTP Datagram Payload: context ID needs 8 bytes, have 2",
    );
  });
});

Deno.test("parseHttpDatagram() on random input throws only H3Error", () => {
  for (let i = 0; i < 5000; i++) {
    const input = new Uint8Array(Math.floor(Math.random() * 12));
    crypto.getRandomValues(input);
    try {
      const parsed = parseHttpDatagram(input);
      // The payload is exactly the tail of the datagram after two varints.
      assertEquals(parsed.payload.byteOffset + parsed.payload.length, input.length);
      assert(parsed.payload.length <= input.length - 2);
    } catch (error) {
      assert(error instanceof H3Error, `unexpected ${error}`);
      assertEquals(error.code, H3_DATAGRAM_ERROR);
    }
    try {
      parseDatagramPayload(input);
    } catch (error) {
      assert(error instanceof CapsuleError, `unexpected ${error}`);
    }
  }
});
