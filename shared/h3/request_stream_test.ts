/**
 * H3RequestStream on the in-memory QUIC pair, facing a raw client: a local
 * abort() is this side's stream error, never the peer's framing error, and
 * the stream's datagrams write the quarter stream id in place.
 */
import { assert, assertEquals } from "../../tests/support/assert.ts";
import { hex } from "../../tests/support/bytes.ts";
import { createFakeQuicPair, until, within } from "../../tests/support/fake_quic.ts";
import { H3_REQUEST_CANCELLED, H3Error } from "../errors.ts";
import { H3Connection } from "./connection.ts";
import { encodeFrame, FRAME_HEADERS } from "./frame.ts";
import { encodeFieldSection } from "./qpack.ts";
import type { H3RequestStream } from "./request_stream.ts";

/** A server facing a raw client that has sent its SETTINGS and opened one request. */
async function serverWithRequest() {
  const [raw, serverConn] = createFakeQuicPair({ maxDatagramSize: 100 });
  const requests: H3RequestStream[] = [];
  const server = new H3Connection(serverConn, {
    role: "server",
    onRequest: (request) => requests.push(request),
  });
  await server.start();
  // 00 CONTROL; 04 SETTINGS, 02 length; 33 01 SETTINGS_H3_DATAGRAM = 1
  await raw.openUni(hex("00 0402 3301"));
  const headers = encodeFieldSection([
    [":method", "CONNECT"],
    [":protocol", "connect-ip"],
    [":scheme", "https"],
    [":authority", "localhost"],
    [":path", "/"],
  ]);
  const client = await raw.openBidi(encodeFrame(FRAME_HEADERS, headers));
  await until(() => requests.length === 1, "the request");
  return { raw, server, request: requests[0], writer: client.writer };
}

Deno.test("abort() while a body read waits is a stream error of this side, not H3_FRAME_ERROR", async (t) => {
  // What the peer sent before the abort: [name, bytes of the request body]
  const cases: [string, string][] = [
    // 00 DATA, 0a length 10, then 4 of its 10 bytes: the read waits mid-frame
    ["inside a DATA frame", "00 0a 00054500"],
    // 00 DATA, 0a length 10: the frame header only
    ["after a frame header", "00 0a"],
    // 00: the frame type only
    ["inside a frame header", "00"],
    ["between frames", ""],
  ];
  for (const [name, bytes] of cases) {
    await t.step(name, async () => {
      const s = await serverWithRequest();
      if (bytes !== "") await s.writer.write(hex(bytes));
      const body = s.request.readBody();
      // Take what arrived (the start of the DATA frame's payload) until a read waits.
      let read = body.next();
      for (;;) {
        const settled = await Promise.race([
          read.then(() => true),
          new Promise((resolve) => setTimeout(() => resolve(false), 20)),
        ]);
        if (!settled) break;
        read = body.next();
      }
      s.request.abort();
      const error = await within(read.then(() => undefined, (e) => e), "the read");
      assert(error instanceof H3Error, String(error));
      assertEquals(error.code, H3_REQUEST_CANCELLED);
      assertEquals(error.connection, false);
      assertEquals(error.message, "Request stream abandoned by this side");
      await new Promise((resolve) => setTimeout(resolve, 10));
      // The connection is untouched: no connection error, no close.
      assertEquals(s.server.closeError, undefined);
      assertEquals(s.raw.closeInfo, undefined);
      s.raw.close();
    });
  }
});

Deno.test("H3Datagrams.send() writes the quarter stream id into the buffer's free prefix", async () => {
  const s = await serverWithRequest();
  const datagrams = s.request.datagrams;
  // Stream 0: quarter stream id 0, a one-byte varint.
  assertEquals(datagrams.prefixLength, 1);
  assertEquals(datagrams.maxPayloadSize, 99);
  const buffer = hex("ff 00 4501");
  assertEquals(datagrams.send(buffer), "sent");
  // 00 quarter stream id 0 written over the ff, in place; 00 context id; the packet
  assertEquals(buffer, hex("00 00 4501"));
  assertEquals(await within(s.raw.readDatagram(), "the datagram"), hex("00 00 4501"));
  assertEquals(datagrams.send(new Uint8Array(101)), "too_big");
  await s.request.end();
  assertEquals(datagrams.send(hex("ff 00 45")), "closed");
  s.raw.close();
});
