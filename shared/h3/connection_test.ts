/**
 * RFC 9114 connection-level rules of {@linkcode H3Connection}, driven over
 * the in-memory QUIC pair against a raw peer that writes hand-built bytes.
 * Every connection error is checked by the exact close code and reason the
 * raw peer sees.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "../../tests/support/assert.ts";
import { fuzz, hex } from "../../tests/support/bytes.ts";
import { createFakeQuicPair, readAll, until, within } from "../../tests/support/fake_quic.ts";
import type { FakeQuicConn, FakeQuicOptions } from "../../tests/support/fake_quic.ts";
import {
  H3_CLOSED_CRITICAL_STREAM,
  H3_DATAGRAM_ERROR,
  H3_EXCESSIVE_LOAD,
  H3_FRAME_ERROR,
  H3_FRAME_UNEXPECTED,
  H3_ID_ERROR,
  H3_MISSING_SETTINGS,
  H3_REQUEST_INCOMPLETE,
  H3_SETTINGS_ERROR,
  H3_STREAM_CREATION_ERROR,
  H3Error,
  QPACK_DECODER_STREAM_ERROR,
  QPACK_DECOMPRESSION_FAILED,
  QPACK_ENCODER_STREAM_ERROR,
} from "../errors.ts";
import { createLogger } from "../log.ts";
import { H3Connection } from "./connection.ts";
import type { H3RequestStream } from "./request_stream.ts";
import type { H3ConnectionOptions, H3Timers } from "./connection.ts";
import { clientSettings, parseSettingsPayload, serverSettings } from "./settings.ts";

/**
 * A control stream with a valid SETTINGS frame:
 * 00 stream type CONTROL (RFC 9114 §6.2.1);
 * 04 frame type SETTINGS, 06 length;
 * 08 01 SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 9220 §3);
 * 33 01 SETTINGS_H3_DATAGRAM = 1 (RFC 9297 §2.1.1);
 * 21 0a reserved setting 0x21 = 10 (RFC 9114 §7.2.4.1), which must be kept and ignored.
 */
const CONTROL_WITH_SETTINGS = "00  04 06  0801 3301 210a";

/**
 * A GET request's HEADERS frame: 01 HEADERS, 10 length (16 bytes); QPACK prefix 00 00
 * (Required Insert Count 0, Base 0, RFC 9204 §4.5.1); d1 indexed static 17
 * `:method GET`; d7 static 23 `:scheme https`; c1 static 1 `:path /`;
 * 50 literal with static name ref 0 `:authority`, 09 length, "localhost".
 */
const GET_HEADERS = "01 10  0000 d1 d7 c1 50 09 6c6f63616c686f7374";

/** The server's bodiless 404: 01 HEADERS, 03 length, 00 00 prefix, db static 27 `:status 404`. */
const RESPONSE_404 = "01 03  0000 db";

/** A real H3Connection in `role` facing a raw peer on the other end of the pair. */
async function againstRawPeer(
  role: "client" | "server",
  options: FakeQuicOptions & Partial<H3ConnectionOptions> = {},
): Promise<{ h3: H3Connection; raw: FakeQuicConn }> {
  const [clientConn, serverConn] = createFakeQuicPair(options);
  const h3 = new H3Connection(role === "client" ? clientConn : serverConn, { ...options, role });
  await h3.start();
  return { h3, raw: role === "client" ? serverConn : clientConn };
}

/** Two real H3Connections; the server answers every request with 200 "ok" unless told otherwise. */
async function connectedPair(
  options: FakeQuicOptions & { onRequest?: (request: H3RequestStream) => void } = {},
) {
  const [clientConn, serverConn] = createFakeQuicPair(options);
  const server = new H3Connection(serverConn, {
    role: "server",
    onRequest: options.onRequest ?? (async (request) => {
      await request.respond(200, [], "ok");
      await request.end();
    }),
  });
  const client = new H3Connection(clientConn, { role: "client" });
  await Promise.all([server.start(), client.start()]);
  return { client, server, clientConn, serverConn };
}

/** Asserts that `raw` saw the connection close with `code` and exactly `reason`. */
async function assertClosedWith(
  raw: FakeQuicConn,
  h3: H3Connection,
  code: number,
  reason: string,
): Promise<void> {
  const info = await within(raw.closed, `close with code 0x${code.toString(16)}`);
  assertEquals({ code: info.closeCode, reason: info.reason }, { code, reason });
  assert(h3.closeError instanceof H3Error, "closeError is set");
  assertEquals(h3.closeError.code, code);
  assertEquals((await within(h3.closed, "H3Connection.closed")).closeCode, code);
}

/** Gives the connection time to react, then asserts it is still open. */
async function assertStillOpen(raw: FakeQuicConn): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 20));
  assertEquals(raw.closeInfo, undefined, `closed: ${JSON.stringify(raw.closeInfo)}`);
}

/** Sends a GET on `client` and returns the status and body. */
async function get(client: H3Connection): Promise<{ status: number; body: string }> {
  const stream = await client.request([
    [":method", "GET"],
    [":scheme", "https"],
    [":authority", "localhost"],
    [":path", "/"],
  ], { end: true });
  const status = await within(stream.readResponse(), "the response");
  let body = "";
  for await (const chunk of stream.readBody()) body += new TextDecoder().decode(chunk);
  return { status, body };
}

// --- SETTINGS and the control stream (RFC 9114 §6.2.1, §7.2.4) -------------

Deno.test("H3Connection sends SETTINGS first on its control stream", async (t) => {
  for (const role of ["client", "server"] as const) {
    await t.step(role, async () => {
      const { h3, raw } = await againstRawPeer(role);
      const { value: stream } = await raw.incomingUnidirectionalStreams.getReader().read();
      assert(stream !== undefined);
      // Its own uni stream ids: client 2, server 3 (RFC 9000 §2.1).
      assertEquals(stream.id, role === "client" ? 2n : 3n);
      const { value: bytes } = await stream.getReader().read();
      assert(bytes !== undefined);
      // 00 CONTROL, 04 SETTINGS, length, then pairs including one reserved setting.
      assertEquals([bytes[0], bytes[1]], [0x00, 0x04]);
      assertEquals(bytes[2], bytes.length - 3);
      const sent = parseSettingsPayload(bytes.subarray(3));
      const reserved = [...sent.keys()].filter((id) => id >= 0x21 && (id - 0x21) % 0x1f === 0);
      assertEquals(reserved.length, 1);
      sent.delete(reserved[0]);
      assertEquals(sent, role === "client" ? clientSettings() : serverSettings());
      h3.close();
    });
  }
});

Deno.test("H3Connection parses the peer's SETTINGS into peerSettings", async (t) => {
  for (const maxChunkSize of [Infinity, 1]) {
    await t.step(`delivered in chunks of ${maxChunkSize} bytes`, async () => {
      const { h3, raw } = await againstRawPeer("client", { maxChunkSize });
      await raw.openUni(hex(CONTROL_WITH_SETTINGS));
      const settings = await within(h3.peerSettings, "peerSettings");
      assertEquals(settings, new Map([[0x08, 1], [0x33, 1], [0x21, 10]]));
      await assertStillOpen(raw);
      raw.close();
    });
  }
  await t.step("peerSettings rejects when the connection closes first", async () => {
    const { h3, raw } = await againstRawPeer("client");
    raw.close({ closeCode: 0x100, reason: "bye" });
    await assertRejects(
      () => within(h3.peerSettings, "peerSettings"),
      Error,
      'Connection closed before SETTINGS: code 0x100 "bye"',
    );
  });
});

Deno.test("H3Connection closes with H3_MISSING_SETTINGS when the control stream does not begin with SETTINGS", async (t) => {
  const cases: [string, string, string][] = [
    // 07 GOAWAY, 01 length, 00 id
    ["GOAWAY first", "00 070100", "GOAWAY"],
    // 00 DATA, 02 length, "hi"
    ["DATA first", "00 00026869", "DATA"],
    // 01 HEADERS, 02 length, 00 00 empty field section
    ["HEADERS first", "00 01020000", "HEADERS"],
    // 0d MAX_PUSH_ID, 01 length, 00
    ["MAX_PUSH_ID first", "00 0d0100", "MAX_PUSH_ID"],
  ];
  for (const [name, bytes, frame] of cases) {
    await t.step(name, async () => {
      const { h3, raw } = await againstRawPeer("client");
      await raw.openUni(hex(bytes));
      await assertClosedWith(
        raw,
        h3,
        H3_MISSING_SETTINGS,
        `Peer's control stream began with ${frame}, not SETTINGS`,
      );
      await assertRejects(() => h3.peerSettings, H3Error, "not SETTINGS");
    });
  }
  // FrameReader reports no event for an empty DATA frame or a skipped
  // reserved frame, so the first frame's type is read from the bytes.
  await t.step("an empty DATA frame first", async () => {
    const { h3, raw } = await againstRawPeer("client");
    // 00 control; 00 DATA, 00 length; then 04 SETTINGS, 00 length
    await raw.openUni(hex("00 0000 0400"));
    await assertClosedWith(
      raw,
      h3,
      H3_MISSING_SETTINGS,
      "Peer's control stream began with DATA, not SETTINGS",
    );
    await assertRejects(() => h3.peerSettings, H3Error, "not SETTINGS");
  });
  await t.step("a reserved frame type first (RFC 9114 §7.2.8)", async () => {
    const { h3, raw } = await againstRawPeer("client");
    // 00 control; 21 reserved frame type 0x21 (0x1f * 0 + 0x21), 01 length, ff; then SETTINGS
    await raw.openUni(hex("00 2101ff 0400"));
    await assertClosedWith(
      raw,
      h3,
      H3_MISSING_SETTINGS,
      "Peer's control stream began with 0x21, not SETTINGS",
    );
  });
  await t.step("SETTINGS first, one byte per read, its type in a 2-byte varint", async () => {
    const { h3, raw } = await againstRawPeer("client", { maxChunkSize: 1 });
    // 00 control; 40 04 SETTINGS as a non-minimal 2-byte varint, 02 length, 33 01 H3_DATAGRAM = 1
    await raw.openUni(hex("00 4004 02 3301"));
    const settings = await within(h3.peerSettings, "peerSettings");
    assertEquals(settings.get(0x33), 1);
    await assertStillOpen(raw);
    raw.close();
  });
});

Deno.test("H3Connection closes with H3_STREAM_CREATION_ERROR on a second control stream", async () => {
  const { h3, raw } = await againstRawPeer("server");
  await raw.openUni(hex(CONTROL_WITH_SETTINGS));
  await within(h3.peerSettings, "peerSettings");
  // 00 CONTROL, 04 SETTINGS, 00 empty
  await raw.openUni(hex("00 0400"));
  await assertClosedWith(raw, h3, H3_STREAM_CREATION_ERROR, "Peer opened a second control stream");
});

Deno.test("H3Connection closes with H3_CLOSED_CRITICAL_STREAM when a critical stream ends", async (t) => {
  await t.step("control stream ended after SETTINGS", async () => {
    const { h3, raw } = await againstRawPeer("client");
    await raw.openUni(hex(CONTROL_WITH_SETTINGS), { end: true });
    await assertClosedWith(raw, h3, H3_CLOSED_CRITICAL_STREAM, "Peer closed its control stream");
  });
  await t.step("control stream ended right after its type", async () => {
    const { h3, raw } = await againstRawPeer("server");
    await raw.openUni(hex("00"), { end: true });
    await assertClosedWith(raw, h3, H3_CLOSED_CRITICAL_STREAM, "Peer closed its control stream");
  });
  await t.step("QPACK decoder stream ended (RFC 9204 §4.2)", async () => {
    const { h3, raw } = await againstRawPeer("server");
    await raw.openUni(hex(CONTROL_WITH_SETTINGS));
    // 03 QPACK decoder stream, then FIN
    await raw.openUni(hex("03"), { end: true });
    await assertClosedWith(raw, h3, H3_CLOSED_CRITICAL_STREAM, "Peer closed a QPACK stream");
  });
});

Deno.test("H3Connection closes with H3_STREAM_CREATION_ERROR on a second QPACK stream of a kind", async (t) => {
  for (const [type, kind] of [["02", "encoder"], ["03", "decoder"]]) {
    await t.step(kind, async () => {
      const { h3, raw } = await againstRawPeer("client");
      await raw.openUni(hex(CONTROL_WITH_SETTINGS));
      await raw.openUni(hex(type));
      await assertStillOpen(raw);
      await raw.openUni(hex(type));
      await assertClosedWith(
        raw,
        h3,
        H3_STREAM_CREATION_ERROR,
        `Peer opened a second QPACK ${kind} stream`,
      );
    });
  }
});

Deno.test("H3Connection closes with H3_FRAME_UNEXPECTED on frames not allowed on the control stream", async (t) => {
  const cases: [string, "client" | "server", string, string][] = [
    // 00 DATA, 02 length, "hi" (RFC 9114 §7.2.1)
    ["DATA", "client", "00 02 6869", "Unexpected DATA frame on the control stream"],
    // 01 HEADERS, 02 length, 00 00 (§7.2.2)
    ["HEADERS", "server", "01 02 0000", "Unexpected HEADERS frame on the control stream"],
    // 04 SETTINGS again, 00 length (§7.2.4: a second SETTINGS)
    ["a second SETTINGS", "client", "04 00", "Unexpected SETTINGS frame on the control stream"],
    // 05 PUSH_PROMISE, 01 length, 00 (§7.2.5)
    ["PUSH_PROMISE", "client", "05 01 00", "Unexpected PUSH_PROMISE frame on the control stream"],
    // 0d MAX_PUSH_ID from a server (§7.2.7)
    ["MAX_PUSH_ID from the server", "client", "0d 01 00", "Server sent MAX_PUSH_ID"],
    // 02 PRIORITY: an HTTP/2 frame type (§7.2.8)
    [
      "HTTP/2 PRIORITY",
      "server",
      "02 00",
      "Cannot parse frame: HTTP/2 frame type 0x02 (PRIORITY) is not allowed in HTTP/3",
    ],
  ];
  for (const [name, role, frame, reason] of cases) {
    await t.step(name, async () => {
      const { h3, raw } = await againstRawPeer(role);
      await raw.openUni(hex(CONTROL_WITH_SETTINGS + frame));
      await assertClosedWith(raw, h3, H3_FRAME_UNEXPECTED, reason);
    });
  }
  await t.step("MAX_PUSH_ID and CANCEL_PUSH from a client are accepted", async () => {
    const { raw } = await againstRawPeer("server");
    // 0d MAX_PUSH_ID 01 length 00; 03 CANCEL_PUSH 01 length 00
    await raw.openUni(hex(CONTROL_WITH_SETTINGS + "0d0100 030100"));
    await assertStillOpen(raw);
    raw.close();
  });
  await t.step("reserved frame types are skipped (RFC 9114 §7.2.8)", async () => {
    const { raw } = await againstRawPeer("client");
    // 21 reserved type, 03 length, 3 bytes; 40 5f reserved type 0x5f (2-byte varint), 00 length
    await raw.openUni(hex(CONTROL_WITH_SETTINGS + "2103aabbcc 405f00"));
    await assertStillOpen(raw);
    raw.close();
  });
});

Deno.test("H3Connection closes with H3_SETTINGS_ERROR on invalid SETTINGS", async (t) => {
  const cases: [string, string, number, string][] = [
    // 04 SETTINGS, 02 length, 33 H3_DATAGRAM = 02
    [
      "H3_DATAGRAM = 2",
      "00 0402 3302",
      H3_SETTINGS_ERROR,
      "Cannot parse SETTINGS: SETTINGS_H3_DATAGRAM value 2 must be 0 or 1",
    ],
    // 08 ENABLE_CONNECT_PROTOCOL = 02
    [
      "ENABLE_CONNECT_PROTOCOL = 2",
      "00 0402 0802",
      H3_SETTINGS_ERROR,
      "Cannot parse SETTINGS: SETTINGS_ENABLE_CONNECT_PROTOCOL value 2 must be 0 or 1",
    ],
    // 33 01 twice
    [
      "a duplicate setting",
      "00 0404 3301 3301",
      H3_SETTINGS_ERROR,
      "Cannot parse SETTINGS: duplicate setting 0x33",
    ],
    // 03: SETTINGS_MAX_CONCURRENT_STREAMS of HTTP/2 (RFC 9114 §7.2.4.1)
    [
      "an HTTP/2 setting",
      "00 0402 030a",
      H3_SETTINGS_ERROR,
      "Cannot parse SETTINGS: HTTP/2 setting 0x03 is not allowed in HTTP/3",
    ],
    // 04 SETTINGS, 01 length, 33 with no value: H3_FRAME_ERROR (§7.1)
    [
      "a pair cut short",
      "00 0401 33",
      H3_FRAME_ERROR,
      "Cannot parse SETTINGS: value at offset 1 is truncated (payload is 1 bytes)",
    ],
  ];
  for (const [name, bytes, code, reason] of cases) {
    await t.step(name, async () => {
      const { h3, raw } = await againstRawPeer("client");
      await raw.openUni(hex(bytes));
      await assertClosedWith(raw, h3, code, reason);
      await assertRejects(() => h3.peerSettings, H3Error, reason);
    });
  }
});

Deno.test("H3Connection refuses push streams, which it never allowed (RFC 9114 §4.6, §6.2.2)", async (t) => {
  await t.step("a client's push stream at the server: H3_STREAM_CREATION_ERROR", async () => {
    const { h3, raw } = await againstRawPeer("server");
    // 01 PUSH stream type, 00 push id
    await raw.openUni(hex("01 00"));
    await assertClosedWith(
      raw,
      h3,
      H3_STREAM_CREATION_ERROR,
      "Peer opened a push stream, which was never allowed",
    );
  });
  await t.step("a server's push stream without MAX_PUSH_ID: H3_ID_ERROR", async () => {
    const { h3, raw } = await againstRawPeer("client");
    await raw.openUni(hex("01 00"));
    await assertClosedWith(
      raw,
      h3,
      H3_ID_ERROR,
      "Peer opened a push stream, which was never allowed",
    );
  });
});

Deno.test("H3Connection ignores unknown and reserved unidirectional stream types (RFC 9114 §6.2, §9)", async (t) => {
  const cases: [string, string][] = [
    ["reserved type 0x21", "21 deadbeef"],
    ["reserved type 0x5f as a 2-byte varint", "405f 00010203"],
    ["unknown type 0x54", "4054 ffffffff"],
    ["unknown type 0x3fffffff as a 4-byte varint", "bfffffff 00"],
  ];
  for (const [name, bytes] of cases) {
    await t.step(name, async () => {
      const { client, clientConn } = await connectedPair();
      const writer = await clientConn.openUni(hex(bytes));
      // The server stops reading it (STOP_SENDING) ...
      await assertRejects(
        () => within(writer.closed, "STOP_SENDING"),
        Error,
        "stopped by the peer (STOP_SENDING)",
      );
      // ... and the connection keeps working.
      assertEquals(await get(client), { status: 200, body: "ok" });
      assertEquals(clientConn.closeInfo, undefined);
      client.close();
    });
  }
  await t.step("a stream that ends before its type is ignored", async () => {
    const { client, clientConn } = await connectedPair();
    await clientConn.openUni(new Uint8Array(0), { end: true });
    // 40: first byte of a 2-byte type, then FIN
    await clientConn.openUni(hex("40"), { end: true });
    assertEquals(await get(client), { status: 200, body: "ok" });
    assertEquals(clientConn.closeInfo, undefined);
    client.close();
  });
});

// --- GOAWAY (RFC 9114 §5.2) ------------------------------------------------

Deno.test("H3Connection records the server's GOAWAY and opens no request after it", async () => {
  const { h3, raw } = await againstRawPeer("client");
  // 07 GOAWAY, 01 length, 08: stream 8 is the first the server will not process
  await raw.openUni(hex(CONTROL_WITH_SETTINGS + "07 01 08"));
  await until(() => h3.goawayId !== undefined, "goawayId");
  assertEquals(h3.goawayId, 8);
  await assertRejects(
    () => h3.request([[":method", "GET"]]),
    Error,
    "Cannot open a request: the server sent GOAWAY",
  );
  await assertStillOpen(raw);
  raw.close();
});

Deno.test("H3Connection closes with H3_ID_ERROR on a bad GOAWAY id", async (t) => {
  await t.step("an id larger than the previous GOAWAY's", async () => {
    const { h3, raw } = await againstRawPeer("client");
    // GOAWAY 8, then GOAWAY 12
    await raw.openUni(hex(CONTROL_WITH_SETTINGS + "070108 07010c"));
    await assertClosedWith(raw, h3, H3_ID_ERROR, "GOAWAY id 12 larger than previous 8");
  });
  // RFC 9114 §5.2: "A client MUST treat receipt of a GOAWAY frame containing
  // a stream ID of any other type as a connection error of type H3_ID_ERROR."
  await t.step("an id that is not a client-initiated bidirectional stream", async () => {
    const { h3, raw } = await againstRawPeer("client");
    // 07 GOAWAY, 01 length, 02: a client unidirectional stream id
    await raw.openUni(hex(CONTROL_WITH_SETTINGS + "070102"));
    await assertClosedWith(
      raw,
      h3,
      H3_ID_ERROR,
      "GOAWAY id 2 is not a client-initiated bidirectional stream",
    );
  });
  await t.step("an 8-byte id whose low bits make it a server stream", async () => {
    const { h3, raw } = await againstRawPeer("client");
    // 07 GOAWAY, 08 length, c0 00 00 00 00 00 00 05: stream 5 (server bidi) in an 8-byte varint
    await raw.openUni(hex(CONTROL_WITH_SETTINGS + "0708 c000000000000005"));
    await assertClosedWith(
      raw,
      h3,
      H3_ID_ERROR,
      "GOAWAY id 5 is not a client-initiated bidirectional stream",
    );
  });
});

// --- HTTP Datagrams (RFC 9297 §2.1) ----------------------------------------

// RFC 9297 §2.1: a datagram whose quarter stream id cannot be parsed, or is
// above the largest legal value 2^60-1, "MUST be treated as an HTTP/3
// connection error of type H3_DATAGRAM_ERROR."
Deno.test("H3Connection closes with H3_DATAGRAM_ERROR on a malformed quarter stream id", async (t) => {
  const truncated = "Cannot parse HTTP Datagram: truncated quarter stream id";
  const tooLarge = "Cannot parse HTTP Datagram: quarter stream id above 2^60-1";
  const cases: [string, string, string][] = [
    ["empty", "", truncated],
    ["40: a 2-byte varint with 1 byte", "40", truncated],
    ["c0 00 00 00: an 8-byte varint with 4 bytes", "c0000000", truncated],
    // ff ff ff ff ff ff ff ff: 8-byte varint 2^62-1, the largest varint
    ["2^62-1", "ffffffffffffffff 00", tooLarge],
    // d0 00 00 00 00 00 00 00: 8-byte varint 2^60, one above the limit
    ["2^60", "d000000000000000 00", tooLarge],
  ];
  for (const [name, bytes, message] of cases) {
    await t.step(name, async () => {
      const { h3, raw } = await againstRawPeer("server");
      await raw.sendDatagram(hex(bytes));
      await assertClosedWith(raw, h3, H3_DATAGRAM_ERROR, message);
      assertEquals(h3.stats.datagramsMalformed, 1);
      assertEquals(h3.stats.datagramsIn, 1);
      assertEquals(h3.stats.datagramsUnroutable, 0);
    });
  }
});

Deno.test("H3Connection drops and counts datagrams for a quarter stream id nobody registered", async () => {
  const { h3, raw } = await againstRawPeer("server");
  const routed: number[][] = [];
  h3.registerDatagramHandler(0, (payload) => routed.push([...payload]));
  // 05: quarter stream id 5 (stream 20), unknown; 00 aa: payload
  await raw.sendDatagram(hex("05 00aa"));
  // 40 07: quarter stream id 7 in a 2-byte varint, unknown
  await raw.sendDatagram(hex("4007 01"));
  // 00: quarter stream id 0, registered; 00 bb: payload
  await raw.sendDatagram(hex("00 00bb"));
  // 40 00: quarter stream id 0 in a non-minimal 2-byte varint, still stream 0
  await raw.sendDatagram(hex("4000 cc"));
  await until(() => routed.length === 2, "two routed datagrams");
  assertEquals(routed, [[0x00, 0xbb], [0xcc]]);
  assertEquals(h3.stats.datagramsIn, 4);
  assertEquals(h3.stats.datagramsUnroutable, 2);
  assertEquals(h3.stats.datagramsMalformed, 0);
  h3.unregisterDatagramHandler(0);
  await raw.sendDatagram(hex("00 00dd"));
  await until(() => h3.stats.datagramsUnroutable === 3, "the third unroutable datagram");
  assertEquals(routed.length, 2);
  await assertStillOpen(raw);
  raw.close();
});

Deno.test("H3Connection takes the largest legal quarter stream id, 2^60-1 (unroutable here)", async () => {
  const { h3, raw } = await againstRawPeer("server");
  // cf ff ff ff ff ff ff ff: 8-byte varint 2^60-1
  await raw.sendDatagram(hex("cfffffffffffffff 00"));
  await until(() => h3.stats.datagramsUnroutable === 1, "the unroutable datagram");
  assertEquals(h3.stats.datagramsMalformed, 0);
  await assertStillOpen(raw);
  raw.close();
});

Deno.test("sendRawDatagram() refuses datagrams over maxDatagramSize and after close", async () => {
  const { h3, raw } = await againstRawPeer("client", { maxDatagramSize: 10 });
  assertEquals(h3.maxDatagramSize, 10);
  assertEquals(h3.sendRawDatagram(new Uint8Array(11)), false);
  assertEquals(h3.sendRawDatagram(new Uint8Array(10).fill(7)), true);
  assertEquals(await within(raw.readDatagram(), "the datagram"), new Uint8Array(10).fill(7));
  assertEquals(h3.stats.datagramsOut, 1);
  h3.close();
  assertEquals(h3.sendRawDatagram(new Uint8Array(1)), false);
  assertEquals(h3.stats.datagramsOut, 1);
});

Deno.test("sendRawDatagram() drops and counts datagrams past maxDatagramsQueued until sends settle", async () => {
  const { h3, raw } = await againstRawPeer("client", { maxDatagramsQueued: 3 });
  // Five in one turn of the event loop: no send has settled yet, so the
  // queue holds three and the last two are dropped (still reported as sent:
  // datagrams are unreliable).
  for (let i = 0; i < 5; i++) assertEquals(h3.sendRawDatagram(Uint8Array.of(i)), true);
  assertEquals(h3.stats.datagramsOut, 3);
  assertEquals(h3.stats.datagramsQueueFull, 2);
  for (let i = 0; i < 3; i++) {
    assertEquals(await within(raw.readDatagram(), `datagram ${i}`), Uint8Array.of(i));
  }
  // Once the sends have settled there is room again.
  await new Promise((resolve) => setTimeout(resolve, 0));
  assertEquals(h3.sendRawDatagram(Uint8Array.of(9)), true);
  assertEquals(await within(raw.readDatagram(), "datagram 9"), Uint8Array.of(9));
  assertEquals(h3.stats.datagramsOut, 4);
  assertEquals(h3.stats.datagramsQueueFull, 2);
  h3.close();
});

// --- Request streams (RFC 9114 §4.1, §6.1, §7.1) ---------------------------

Deno.test("H3Connection answers a hand-encoded GET on a raw request stream", async (t) => {
  for (const maxChunkSize of [Infinity, 1]) {
    await t.step(`delivered in chunks of ${maxChunkSize} bytes`, async () => {
      const { h3, raw } = await againstRawPeer("server", { maxChunkSize });
      const { id, reader } = await raw.openBidi(hex(GET_HEADERS), { end: true });
      assertEquals(id, 0n);
      // No onRequest: the server answers 404 and ends the stream.
      assertEquals(await readAll(reader), hex(RESPONSE_404));
      assertEquals(h3.stats.requestStreams, 1);
      await assertStillOpen(raw);
      raw.close();
    });
  }
});

Deno.test("H3Connection closes the connection on malformed request streams", async (t) => {
  const cases: [string, string, number, string][] = [
    // 00 DATA, 02 length, "hi" before any HEADERS (RFC 9114 §4.1)
    [
      "DATA before HEADERS",
      "00 02 6869",
      H3_FRAME_UNEXPECTED,
      "DATA frame before HEADERS on a request stream",
    ],
    // 00 DATA, 00 length: an empty DATA frame is still a frame before HEADERS
    [
      "an empty DATA frame before HEADERS",
      "00 00 " + GET_HEADERS,
      H3_FRAME_UNEXPECTED,
      "DATA frame before HEADERS on a request stream",
    ],
    // 04 SETTINGS, 00 length (§7.2.4: only on the control stream)
    [
      "SETTINGS on a request stream",
      "04 00",
      H3_FRAME_UNEXPECTED,
      "Unexpected SETTINGS frame on a request stream",
    ],
    // 07 GOAWAY, 01 length, 00 (§7.2.6)
    [
      "GOAWAY on a request stream",
      "07 01 00",
      H3_FRAME_UNEXPECTED,
      "Unexpected GOAWAY frame on a request stream",
    ],
    // 01 HEADERS, 03 length; 01 Required Insert Count 1 (RFC 9204 §4.5.1), 00 base, d1
    [
      "HEADERS with a Required Insert Count of 1",
      "01 03 0100 d1",
      QPACK_DECOMPRESSION_FAILED,
      "Cannot decode field section: dynamic table reference with a zero-capacity table",
    ],
    // 01 HEADERS, 03 length; 00 00 prefix; 80: Indexed Field Line, T=0 (dynamic) index 0
    [
      "HEADERS with an indexed dynamic-table line",
      "01 03 0000 80",
      QPACK_DECOMPRESSION_FAILED,
      "Cannot decode field section: dynamic table reference with a zero-capacity table",
    ],
    // 01 HEADERS, 04 length; 00 00 prefix; 40 00: literal with dynamic name ref 0, empty value
    [
      "HEADERS with a dynamic name reference",
      "01 04 0000 4000",
      QPACK_DECOMPRESSION_FAILED,
      "Cannot decode field section: dynamic table reference with a zero-capacity table",
    ],
    // 01 HEADERS, 03 length; 00 00 prefix; 10: Indexed Field Line with Post-Base Index 0
    [
      "HEADERS with a post-base index",
      "01 03 0000 10",
      QPACK_DECOMPRESSION_FAILED,
      "Cannot decode field section: dynamic table reference with a zero-capacity table",
    ],
    // 01 HEADERS, 0a length, but only 00 00 follow before FIN (§7.1)
    [
      "a stream that ends inside a HEADERS frame",
      "01 0a 0000",
      H3_FRAME_ERROR,
      "Request stream ended inside a frame",
    ],
    // 01 HEADERS: the length varint itself is cut (40 = first byte of two)
    [
      "a stream that ends inside a frame header",
      "01 40",
      H3_FRAME_ERROR,
      "Request stream ended inside a frame",
    ],
  ];
  for (const [name, bytes, code, reason] of cases) {
    await t.step(name, async () => {
      const { h3, raw } = await againstRawPeer("server");
      await raw.openBidi(hex(bytes), { end: true });
      await assertClosedWith(raw, h3, code, reason);
    });
  }
});

Deno.test("H3Connection ends only the stream on request-stream errors that are not connection errors", async (t) => {
  await t.step("a request stream that ends before HEADERS (H3_REQUEST_INCOMPLETE)", async () => {
    const { raw } = await againstRawPeer("server");
    const { reader } = await raw.openBidi(new Uint8Array(0), { end: true });
    assertEquals(await readAll(reader), new Uint8Array(0));
    // The connection still serves the next request.
    const next = await raw.openBidi(hex(GET_HEADERS), { end: true });
    assertEquals(await readAll(next.reader), hex(RESPONSE_404));
    await assertStillOpen(raw);
    raw.close();
  });
  await t.step("a field section over maxFieldSectionSize (H3_EXCESSIVE_LOAD)", async () => {
    const { raw } = await againstRawPeer("server", { maxFieldSectionSize: 40 });
    const { reader } = await raw.openBidi(hex(GET_HEADERS), { end: true });
    assertEquals(await readAll(reader), new Uint8Array(0));
    await assertStillOpen(raw);
    raw.close();
  });
  await t.step("the client sees a bodiless end as H3_REQUEST_INCOMPLETE", async () => {
    const { h3, raw } = await againstRawPeer("client");
    const bidi = raw.incomingBidirectionalStreams.getReader();
    const stream = await h3.request([[":method", "GET"]], { end: true });
    const { value: request } = await bidi.read();
    assert(request !== undefined);
    await request.writable.close();
    const error = await assertRejects(
      () => within(stream.readResponse(), "the response"),
      H3Error,
      "Stream ended before a response arrived",
    );
    assertEquals(error.code, H3_REQUEST_INCOMPLETE);
    assertEquals(error.connection, false);
    raw.close();
  });
});

Deno.test("H3Connection (client) closes with H3_STREAM_CREATION_ERROR when the server opens a bidirectional stream", async () => {
  const { h3, raw } = await againstRawPeer("client");
  const { writable } = await raw.createBidirectionalStream();
  assertEquals(writable.id, 1n);
  await assertClosedWith(
    raw,
    h3,
    H3_STREAM_CREATION_ERROR,
    "Server opened a bidirectional stream (RFC 9114 §6.1)",
  );
});

Deno.test("H3Connection (client) reports a malformed response to the caller", async (t) => {
  const cases: [string, string, number, string][] = [
    ["DATA before HEADERS", "00 02 6869", H3_FRAME_UNEXPECTED, "DATA frame before HEADERS"],
    ["a dynamic table reference", "01 03 0100 d9", QPACK_DECOMPRESSION_FAILED, "dynamic table"],
    ["a stream that ends inside a frame", "01 0a 00", H3_FRAME_ERROR, "ended inside a frame"],
    // 01 HEADERS 03 length 00 00 prefix, d1 `:method GET`: no :status
    ["no :status", "01 03 0000 d1", 0x10e, "Malformed response: :status undefined"],
  ];
  for (const [name, bytes, code, message] of cases) {
    await t.step(name, async () => {
      const { h3, raw } = await againstRawPeer("client");
      const bidi = raw.incomingBidirectionalStreams.getReader();
      const stream = await h3.request([[":method", "GET"]], { end: true });
      const { value: request } = await bidi.read();
      assert(request !== undefined);
      const writer = request.writable.getWriter();
      await writer.write(hex(bytes));
      await writer.close();
      const error = await assertRejects(
        () => within(stream.readResponse(), "the response"),
        H3Error,
        message,
      );
      assertEquals(error.code, code);
      raw.close();
    });
  }
});

// RFC 9114 §4.1: an invalid frame sequence on a request stream is a
// connection error of type H3_FRAME_UNEXPECTED, on the client as on the server.
Deno.test("H3Connection (client) closes the connection on a response that is a connection error", async (t) => {
  const cases: [string, string, number, string][] = [
    // 00 DATA, 02 length, "hi" before any HEADERS
    [
      "DATA before HEADERS",
      "00 02 6869",
      H3_FRAME_UNEXPECTED,
      "DATA frame before HEADERS on a request stream",
    ],
    // 00 DATA, 00 length, then 01 HEADERS 03 length 00 00 d9 `:status 200`
    [
      "an empty DATA frame before HEADERS",
      "00 00 01 03 0000 d9",
      H3_FRAME_UNEXPECTED,
      "DATA frame before HEADERS on a request stream",
    ],
    // 01 HEADERS, 03 length; 01 Required Insert Count 1, 00 base, d9 (RFC 9204 §4.5.1)
    [
      "a dynamic table reference",
      "01 03 0100 d9",
      QPACK_DECOMPRESSION_FAILED,
      "Cannot decode field section: dynamic table reference with a zero-capacity table",
    ],
  ];
  for (const [name, bytes, code, reason] of cases) {
    await t.step(name, async () => {
      const { h3, raw } = await againstRawPeer("client");
      const bidi = raw.incomingBidirectionalStreams.getReader();
      const stream = await h3.request([[":method", "GET"]], { end: true });
      const { value: request } = await bidi.read();
      assert(request !== undefined);
      const writer = request.writable.getWriter();
      await writer.write(hex(bytes));
      await writer.close();
      await assertRejects(() => stream.readResponse(), H3Error, reason);
      await assertClosedWith(raw, h3, code, reason);
    });
  }
  await t.step("a malformed response (H3_MESSAGE_ERROR) is only a stream error", async () => {
    const { h3, raw } = await againstRawPeer("client");
    const bidi = raw.incomingBidirectionalStreams.getReader();
    const stream = await h3.request([[":method", "GET"]], { end: true });
    const { value: request } = await bidi.read();
    assert(request !== undefined);
    const writer = request.writable.getWriter();
    // 01 HEADERS 03 length 00 00 prefix, d1 `:method GET`: no :status
    await writer.write(hex("01 03 0000 d1"));
    await writer.close();
    await assertRejects(() => stream.readResponse(), H3Error, "Malformed response");
    assertEquals(h3.closeError, undefined);
    await assertStillOpen(raw);
    raw.close();
  });
});

Deno.test("H3Connection.request() is refused on the server side", async () => {
  const { h3, raw } = await againstRawPeer("server");
  await assertRejects(
    () => h3.request([[":method", "GET"]]),
    Error,
    "Cannot open a request: this side is the server",
  );
  raw.close();
});

Deno.test("a GET round trip between two H3Connections, bytes delivered one at a time", async () => {
  const { client, server, clientConn } = await connectedPair({ maxChunkSize: 1 });
  assertEquals(await get(client), { status: 200, body: "ok" });
  // Each side sees the other's defaults (plus one reserved setting).
  assertEquals((await within(client.peerSettings, "client's peerSettings")).get(0x08), 1);
  assertEquals((await within(server.peerSettings, "server's peerSettings")).get(0x08), undefined);
  assertEquals((await server.peerSettings).get(0x33), 1);
  client.close(0x100, "done");
  assertEquals(await within(server.closed, "close"), { closeCode: 0x100, reason: "done" });
  assertEquals(clientConn.closeInfo, { closeCode: 0x100, reason: "done" });
});

// --- Fuzz ------------------------------------------------------------------

/** Connection error codes a control stream may legitimately end with. */
const CONTROL_STREAM_CODES = new Set([
  H3_CLOSED_CRITICAL_STREAM,
  H3_MISSING_SETTINGS,
  H3_FRAME_UNEXPECTED,
  H3_FRAME_ERROR,
  H3_EXCESSIVE_LOAD,
  H3_SETTINGS_ERROR,
  H3_ID_ERROR,
]);

Deno.test("random control streams always end in a connection error with an RFC 9114 code", () =>
  fuzz(async (random) => {
    for (let i = 0; i < 300; i++) {
      const { h3, raw } = await againstRawPeer(i % 2 === 0 ? "client" : "server", {
        maxChunkSize: 1 + Math.floor(random() * 8),
      });
      // Half start with a valid SETTINGS frame, so the later frame rules are reached.
      const prefix = i % 4 < 2 ? hex(CONTROL_WITH_SETTINGS) : hex("00");
      const noise = Uint8Array.from({ length: Math.floor(random() * 24) }, () =>
        // Mostly small values, so that frame types and lengths are meaningful.
        random() < 0.7 ? Math.floor(random() * 16) : Math.floor(random() * 256));
      const bytes = new Uint8Array(prefix.length + noise.length);
      bytes.set(prefix);
      bytes.set(noise, prefix.length);
      // FIN at the end: if nothing else does, the closed control stream must.
      await raw.openUni(bytes, { end: true });
      const info = await within(raw.closed, `close of case ${i}`);
      assert(
        CONTROL_STREAM_CODES.has(info.closeCode),
        `case ${i} (${
          [...bytes].map((b) => b.toString(16)).join(" ")
        }) closed with ${info.closeCode}`,
      );
      assert(info.reason.length > 0, `case ${i} closed without a reason`);
      assertEquals(h3.closeError?.code, info.closeCode);
    }
  }, 9114));

Deno.test("random request streams end the stream or the connection, never anything else", () =>
  fuzz(async (random) => {
    const codes = new Set([
      H3_FRAME_UNEXPECTED,
      H3_FRAME_ERROR,
      H3_EXCESSIVE_LOAD,
      QPACK_DECOMPRESSION_FAILED,
    ]);
    let closed = 0;
    for (let i = 0; i < 300; i++) {
      const { h3, raw } = await againstRawPeer("server", { maxChunkSize: 1 + (i % 5) });
      const headers = hex(GET_HEADERS);
      // Mutate a valid request: flip a few bytes, truncate, or append noise.
      const bytes = headers.slice(0, Math.floor(random() * (headers.length + 1)));
      for (let k = 0; k < 3; k++) {
        if (bytes.length > 0) bytes[Math.floor(random() * bytes.length)] = random() * 256;
      }
      const { reader } = await raw.openBidi(bytes, { end: true });
      // Either the stream is answered or ended, or the connection is closed.
      const outcome = await within(
        Promise.race([
          readAll(reader).then(() => "stream" as const).catch(() => "stream" as const),
          raw.closed.then(() => "connection" as const),
        ]),
        `outcome of case ${i}`,
      );
      if (outcome === "connection" || raw.closeInfo !== undefined) {
        const info = await raw.closed;
        assert(codes.has(info.closeCode), `case ${i} closed with ${info.closeCode}`);
        assertEquals(h3.closeError?.code, info.closeCode);
        closed++;
      }
      raw.close();
    }
    assert(closed > 0, "no case was a connection error");
  }, 4));

// --- Limits: time limits, buffered bytes, QPACK streams ----------------------

/** A fake clock for the connection's time limits: nothing fires until advance(). */
class FakeTimers implements H3Timers {
  now = 0;
  readonly #pending = new Map<number, { at: number; callback: () => void }>();
  #next = 1;

  schedule(callback: () => void, ms: number): () => void {
    const id = this.#next++;
    this.#pending.set(id, { at: this.now + ms, callback });
    return () => this.#pending.delete(id);
  }

  /** Timers scheduled and neither fired nor cancelled. */
  get pending(): number {
    return this.#pending.size;
  }

  advance(ms: number): void {
    this.now += ms;
    for (const [id, timer] of [...this.#pending]) {
      if (timer.at <= this.now) {
        this.#pending.delete(id);
        timer.callback();
      }
    }
  }
}

Deno.test("H3Connection closes with H3_MISSING_SETTINGS when no SETTINGS arrive in time", async (t) => {
  for (const role of ["client", "server"] as const) {
    await t.step(`${role}: no control stream at all`, async () => {
      const timers = new FakeTimers();
      const { h3, raw } = await againstRawPeer(role, { timers, settingsTimeoutMs: 10_000 });
      timers.advance(9_999);
      await assertStillOpen(raw);
      timers.advance(1);
      await assertClosedWith(
        raw,
        h3,
        H3_MISSING_SETTINGS,
        "No SETTINGS from the peer within 10000 ms",
      );
      assertEquals(h3.stats.settingsTimeouts, 1);
      await assertRejects(() => h3.peerSettings, H3Error, "No SETTINGS from the peer");
    });
  }
  await t.step("a control stream that stops inside its SETTINGS frame", async () => {
    const timers = new FakeTimers();
    const { h3, raw } = await againstRawPeer("server", { timers, settingsTimeoutMs: 50 });
    // 00 CONTROL; 04 SETTINGS, 06 length, then only 2 of the 6 payload bytes
    await raw.openUni(hex("00 04 06 0801"));
    await assertStillOpen(raw);
    timers.advance(50);
    await assertClosedWith(raw, h3, H3_MISSING_SETTINGS, "No SETTINGS from the peer within 50 ms");
  });
  await t.step("SETTINGS in time: the limit is cancelled", async () => {
    const timers = new FakeTimers();
    const { h3, raw } = await againstRawPeer("server", { timers, settingsTimeoutMs: 50 });
    await raw.openUni(hex(CONTROL_WITH_SETTINGS));
    await within(h3.peerSettings, "peerSettings");
    assertEquals(timers.pending, 0);
    timers.advance(1000);
    await assertStillOpen(raw);
    assertEquals(h3.stats.settingsTimeouts, 0);
    raw.close();
  });
  await t.step("the limit is cancelled when the connection closes first", async () => {
    const timers = new FakeTimers();
    const { h3, raw } = await againstRawPeer("client", { timers });
    raw.close();
    await within(h3.closed, "close");
    assertEquals(timers.pending, 0);
  });
});

Deno.test("H3Connection (server) closes a request stream whose HEADERS do not arrive in time", async (t) => {
  // 01 HEADERS, 10 length (16 bytes), then 15 of them: one byte short (see GET_HEADERS)
  const partial = hex(GET_HEADERS).subarray(0, 17);
  await t.step("a partial HEADERS frame: the stream is closed, the connection kept", async () => {
    const timers = new FakeTimers();
    const lines: string[] = [];
    const { h3, raw } = await againstRawPeer("server", {
      timers,
      headersTimeoutMs: 10_000,
      log: createLogger({ level: "debug", write: (line) => lines.push(line) }),
    });
    await raw.openUni(hex(CONTROL_WITH_SETTINGS));
    const { reader, writer } = await raw.openBidi(partial);
    timers.advance(9_999);
    await assertStillOpen(raw);
    assertEquals(h3.stats.headersTimeouts, 0);
    timers.advance(1);
    // The server ends its side without a response and stops reading ours.
    assertEquals(await readAll(reader), new Uint8Array(0));
    await assertRejects(() => writer.write(hex("00")), Error, "STOP_SENDING");
    assertEquals(h3.stats.headersTimeouts, 1);
    assertEquals(h3.bufferBudget.used, 0);
    assertEquals(
      lines.filter((l) => /DEBUG request stream closed: no HEADERS in time/.test(l)).length,
      1,
    );
    // The connection still serves the next request.
    const next = await raw.openBidi(hex(GET_HEADERS), { end: true });
    assertEquals(await readAll(next.reader), hex(RESPONSE_404));
    await assertStillOpen(raw);
    assertEquals(timers.pending, 0);
    raw.close();
  });
  await t.step("a stream that sent nothing at all", async () => {
    const timers = new FakeTimers();
    const { h3, raw } = await againstRawPeer("server", { timers, headersTimeoutMs: 100 });
    await raw.openUni(hex(CONTROL_WITH_SETTINGS));
    const { reader } = await raw.openBidi(new Uint8Array(0));
    await new Promise((resolve) => setTimeout(resolve, 10));
    timers.advance(100);
    assertEquals(await readAll(reader), new Uint8Array(0));
    assertEquals(h3.stats.headersTimeouts, 1);
    await assertStillOpen(raw);
    raw.close();
  });
  await t.step("HEADERS in time: the limit is cancelled", async () => {
    const timers = new FakeTimers();
    const { h3, raw } = await againstRawPeer("server", { timers, headersTimeoutMs: 100 });
    await raw.openUni(hex(CONTROL_WITH_SETTINGS));
    const { reader } = await raw.openBidi(hex(GET_HEADERS), { end: true });
    assertEquals(await readAll(reader), hex(RESPONSE_404));
    timers.advance(1000);
    assertEquals(h3.stats.headersTimeouts, 0);
    assertEquals(timers.pending, 0);
    raw.close();
  });
});

Deno.test("H3Connection closes with H3_EXCESSIVE_LOAD past maxBufferedBytes", async (t) => {
  // 01 HEADERS, 40 fa: length 250, and 200 of its payload bytes: 200 bytes held per stream
  const partial = new Uint8Array(203);
  partial.set(hex("01 40fa"));
  await t.step("partial HEADERS frames on several request streams", async () => {
    const { h3, raw } = await againstRawPeer("server", { maxBufferedBytes: 500 });
    await raw.openUni(hex(CONTROL_WITH_SETTINGS));
    await raw.openBidi(partial);
    await raw.openBidi(partial);
    await until(() => h3.bufferBudget.used >= 400, "two partial frames held");
    await assertStillOpen(raw);
    await raw.openBidi(partial);
    const info = await within(raw.closed, "the close");
    assertEquals(info.closeCode, H3_EXCESSIVE_LOAD);
    assertMatch(
      info.reason,
      /^Cannot buffer \d+ more bytes for a partial HTTP\/3 frame: \d+ of 500 bytes already buffered on this connection$/,
    );
    assertEquals(h3.stats.bufferBudgetExceeded, 1);
  });
  await t.step("what a stream held is given back when it completes", async () => {
    const { h3, raw } = await againstRawPeer("server", { maxBufferedBytes: 500 });
    await raw.openUni(hex(CONTROL_WITH_SETTINGS));
    for (let i = 0; i < 5; i++) {
      // GET_HEADERS in two writes: the first leaves 15 of 16 payload bytes held.
      const { writer, reader } = await raw.openBidi(hex(GET_HEADERS).subarray(0, 17));
      await until(() => h3.bufferBudget.used > 0, "the partial frame held");
      await writer.write(hex(GET_HEADERS).subarray(17));
      await writer.close();
      assertEquals(await readAll(reader), hex(RESPONSE_404));
      assertEquals(h3.bufferBudget.used, 0);
    }
    await assertStillOpen(raw);
    raw.close();
  });
  await t.step("a control stream's partial frame counts too", async () => {
    const { h3, raw } = await againstRawPeer("client", { maxBufferedBytes: 100 });
    // 00 CONTROL; 04 SETTINGS, 40 c8: length 200, and 150 bytes of it
    const bytes = new Uint8Array(154);
    bytes.set(hex("00 04 40c8"));
    await raw.openUni(bytes);
    const info = await within(raw.closed, "the close");
    assertEquals(info.closeCode, H3_EXCESSIVE_LOAD);
    assertEquals(h3.stats.bufferBudgetExceeded, 1);
  });
});

Deno.test("H3Connection keeps no read buffer while a frame trickles in", async () => {
  // The fake QUIC delivers each byte as its own chunk; each is a view into a 64 KiB buffer here.
  const { h3, raw } = await againstRawPeer("server", { maxChunkSize: 1 });
  await raw.openUni(hex(CONTROL_WITH_SETTINGS));
  await within(h3.peerSettings, "peerSettings");
  const { writer, reader } = await raw.openBidi(new Uint8Array(0));
  const headers = hex(GET_HEADERS);
  for (let i = 0; i < headers.length - 1; i++) {
    await writer.write(headers.subarray(i, i + 1));
    await new Promise((resolve) => setTimeout(resolve, 0));
    // What is held is at most the frame itself (2 header bytes + 16 payload bytes).
    assert(h3.bufferBudget.used <= 18, `${h3.bufferBudget.used} bytes after ${i + 1}`);
  }
  await writer.write(headers.subarray(headers.length - 1));
  await writer.close();
  assertEquals(await readAll(reader), hex(RESPONSE_404));
  assert(h3.stats.streamReads >= headers.length, `${h3.stats.streamReads} reads`);
  assertEquals(h3.bufferBudget.used, 0);
  raw.close();
});

Deno.test("H3Connection reads the peer's QPACK streams by instruction (RFC 9204 §4.3, §4.4)", async (t) => {
  await t.step("Set Dynamic Table Capacity 0 and Stream Cancellations are accepted", async () => {
    const { h3, raw } = await againstRawPeer("server", { maxChunkSize: 1 });
    await raw.openUni(hex(CONTROL_WITH_SETTINGS));
    // 02 encoder stream; 20: Set Dynamic Table Capacity 0
    await raw.openUni(hex("02 20"));
    // 03 decoder stream; 44: Stream Cancellation of stream 4; 7f 81 01: of stream 192
    await raw.openUni(hex("03 44 7f8101"));
    await assertStillOpen(raw);
    assertEquals(h3.closeError, undefined);
    raw.close();
  });
  const cases: [string, string, number, string][] = [
    // 02 encoder; 3f e1 1f: Set Dynamic Table Capacity 4096
    [
      "capacity 4096 on the encoder stream",
      "02 3fe11f",
      QPACK_ENCODER_STREAM_ERROR,
      "Cannot parse QPACK encoder stream: Set Dynamic Table Capacity above 0 exceeds SETTINGS_QPACK_MAX_TABLE_CAPACITY 0",
    ],
    // 02 encoder; c0 00: Insert with Name Reference to static :authority, empty value
    [
      "an insert on the encoder stream",
      "02 c000",
      QPACK_ENCODER_STREAM_ERROR,
      "Cannot parse QPACK encoder stream: Insert with Name Reference into a zero-capacity table",
    ],
    // 03 decoder; 80: Section Acknowledgment of stream 0
    [
      "a Section Acknowledgment on the decoder stream",
      "03 80",
      QPACK_DECODER_STREAM_ERROR,
      "Cannot parse QPACK decoder stream: Section Acknowledgment, but no field section referenced the dynamic table",
    ],
    // 03 decoder; 01: Insert Count Increment 1
    [
      "an Insert Count Increment on the decoder stream",
      "03 01",
      QPACK_DECODER_STREAM_ERROR,
      "Cannot parse QPACK decoder stream: Insert Count Increment, but no entry was ever inserted",
    ],
  ];
  for (const [name, bytes, code, reason] of cases) {
    await t.step(name, async () => {
      const { h3, raw } = await againstRawPeer("client");
      await raw.openUni(hex(CONTROL_WITH_SETTINGS));
      await raw.openUni(hex(bytes));
      await assertClosedWith(raw, h3, code, reason);
    });
  }
});

Deno.test("H3Connection reads a stream type delivered byte by byte", async () => {
  // 40 21: the reserved stream type 0x21 (RFC 9114 §6.2.3) as a 2-byte varint; then 40 02:
  // the QPACK encoder type 0x02 in a 2-byte form, followed by 20 (capacity 0).
  const { h3, raw } = await againstRawPeer("server", { maxChunkSize: 1 });
  await raw.openUni(hex(CONTROL_WITH_SETTINGS));
  await raw.openUni(hex("4021 ffff"));
  await raw.openUni(hex("4002 20"));
  await within(h3.peerSettings, "peerSettings");
  await assertStillOpen(raw);
  assertEquals(h3.bufferBudget.used, 0);
  // A second encoder stream shows that the 2-byte type was read as 0x02.
  await raw.openUni(hex("02"));
  await assertClosedWith(
    raw,
    h3,
    H3_STREAM_CREATION_ERROR,
    "Peer opened a second QPACK encoder stream",
  );
});

Deno.test("H3Connection (server) stops reading a request it refused", async () => {
  const { h3, raw } = await againstRawPeer("server");
  await raw.openUni(hex(CONTROL_WITH_SETTINGS));
  // GET_HEADERS and then 5 bytes of a DATA frame of 100 (00 40 64 ...): not finished.
  const { reader, writer } = await raw.openBidi(hex(GET_HEADERS + " 00 4064 0102"));
  assertEquals(await readAll(reader), hex(RESPONSE_404));
  // The server sent STOP_SENDING and holds none of the body.
  await assertRejects(() => writer.write(hex("03")), Error, "STOP_SENDING");
  assertEquals(h3.bufferBudget.used, 0);
  await assertStillOpen(raw);
  raw.close();
});
