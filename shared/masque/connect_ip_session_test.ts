/**
 * CONNECT-IP sessions (RFC 9484) over real H3Connections on the in-memory
 * QUIC pair: opening and answering, both packet modes, what is dropped and
 * counted, malformed capsules ending one session only, the datagram size
 * limit, and the statuses of refused requests.
 */
import { assert, assertEquals, assertRejects } from "../../tests/support/assert.ts";
import { hex } from "../../tests/support/bytes.ts";
import { createFakeQuicPair, readAll, until, within } from "../../tests/support/fake_quic.ts";
import type { FakeQuicOptions } from "../../tests/support/fake_quic.ts";
import { H3_FRAME_UNEXPECTED } from "../errors.ts";
import { H3Connection } from "../h3/connection.ts";
import { encodeFrame, FRAME_HEADERS } from "../h3/frame.ts";
import { encodeFieldSection } from "../h3/qpack.ts";
import type { HeaderField } from "../h3/qpack.ts";
import {
  clientSettings,
  serverSettings,
  SETTINGS_ENABLE_CONNECT_PROTOCOL,
  SETTINGS_H3_DATAGRAM,
} from "../h3/settings.ts";
import type { Settings } from "../h3/settings.ts";
import { formatPrefix, parsePrefix } from "../ip/ip_address.ts";
import type { Capsule } from "./capsule.ts";
import { buildConnectIpRequest, DEFAULT_URI_TEMPLATE } from "./connect_ip_request.ts";
import {
  answerRequest,
  ConnectIpError,
  DEFAULT_MAX_PACKETS_QUEUED,
  openConnectIpSession,
} from "./connect_ip_session.ts";
import type {
  AnswerRequestOptions,
  AnswerResult,
  ConnectIpSession,
  PacketMode,
  SessionEnd,
} from "./connect_ip_session.ts";

/** RFC 9484 §4.6's default template expanded for any target and protocol. */
const ANY_PATH = "/.well-known/masque/ip/*/*/";

/** A stand-in IPv4 packet: version/IHL 0x45 then `rest`. */
const packet = (...rest: number[]) => new Uint8Array([0x45, ...rest]);

interface Setup {
  client: H3Connection;
  server: H3Connection;
  clientConn: ReturnType<typeof createFakeQuicPair>[0];
  serverConn: ReturnType<typeof createFakeQuicPair>[1];
  answers: AnswerResult[];
  /** Opens a session from the client and returns both ends. */
  open(
    mode: PacketMode,
    path?: string,
  ): Promise<{ client: ConnectIpSession; server: ConnectIpSession }>;
}

/** A client and a server H3Connection; the server answers each request with answerRequest(). */
async function setup(
  options: FakeQuicOptions & {
    clientSettings?: Settings;
    serverSettings?: Settings;
    answer?: AnswerRequestOptions;
  } = {},
): Promise<Setup> {
  const [clientConn, serverConn] = createFakeQuicPair(options);
  const answers: AnswerResult[] = [];
  const server = new H3Connection(serverConn, {
    role: "server",
    settings: options.serverSettings,
    onRequest: (request) => {
      answerRequest(request, options.answer).then((answer) => answers.push(answer));
    },
  });
  const client = new H3Connection(clientConn, {
    role: "client",
    settings: options.clientSettings,
  });
  await Promise.all([server.start(), client.start()]);
  const open = async (mode: PacketMode, path = ANY_PATH) => {
    const before = answers.length;
    const session = await within(
      openConnectIpSession(client, { authority: "localhost", path, mode }),
      "openConnectIpSession",
    );
    await until(() => answers.length > before, "the server's answer");
    const answer = answers[before];
    assert(answer.session !== undefined, "the server refused the session");
    return { client: session, server: answer.session };
  };
  return { client, server, clientConn, serverConn, answers, open };
}

/** Runs `session`, collecting packets (copied) and capsules. */
function collect(session: ConnectIpSession) {
  const packets: Uint8Array[] = [];
  const capsules: Capsule[] = [];
  const end: Promise<SessionEnd> = session.run({
    onPacket: (p) => packets.push(p.slice()),
    onCapsule: (c) => capsules.push(c),
  });
  return { packets, capsules, end };
}

/** A client settings map with SETTINGS_H3_DATAGRAM = `value`. */
function clientWithDatagrams(value: 0 | 1): Settings {
  const settings = clientSettings();
  settings.set(SETTINGS_H3_DATAGRAM, value);
  return settings;
}

Deno.test("openConnectIpSession() and answerRequest() set up a session", async (t) => {
  await t.step("any target, any protocol", async () => {
    const s = await setup();
    const { client, server } = await s.open("datagram");
    assertEquals(client.mode, "datagram");
    assertEquals(server.mode, "datagram");
    assertEquals(client.stream.header(":status"), "200");
    assertEquals(client.stream.header("capsule-protocol"), "?1");
    assertEquals(client.stream.streamId, 0n);
    assertEquals(server.stream.streamId, 0n);
    const answer = s.answers[0];
    assert(answer.session !== undefined);
    assertEquals(answer.scope, { target: { kind: "any" }, ipProtocol: "any" });
    s.client.close();
  });
  await t.step("a scoped request: 198.18.0.0/15, UDP", async () => {
    const s = await setup();
    // %2F is the percent-encoded "/" of the prefix (RFC 9484 §4.6)
    await s.open("datagram", "/.well-known/masque/ip/198.18.0.0%2F15/17/");
    const answer = s.answers[0];
    assert(answer.session !== undefined);
    assert(answer.scope.target.kind === "prefix");
    assertEquals(formatPrefix(answer.scope.target.prefix), "198.18.0.0/15");
    assertEquals(answer.scope.ipProtocol, 17);
    s.client.close();
  });
  await t.step("the server answers in the mode the client's SETTINGS allow", async () => {
    const s = await setup({ clientSettings: clientWithDatagrams(0) });
    const { client, server } = await s.open("stream");
    assertEquals([client.mode, server.mode], ["stream", "stream"]);
    s.client.close();
  });
});

Deno.test("packets travel as HTTP Datagrams with context id 0 in datagram mode (RFC 9484 §6)", async () => {
  const s = await setup();
  const a = await s.open("datagram");
  const b = await s.open("datagram");
  const [aClient, aServer, bServer] = [collect(a.client), collect(a.server), collect(b.server)];

  assertEquals(a.client.sendPacket(packet(1, 2, 3)), "sent");
  assertEquals(b.client.sendPacket(packet(9)), "sent");
  // 00 quarter stream id 0 (stream 0), 00 context id 0, then the packet
  assertEquals(s.clientConn.datagramsSent[0], hex("00 00 45010203"));
  // 01 quarter stream id 1 (stream 4), 00 context id 0, then the packet
  assertEquals(s.clientConn.datagramsSent[1], hex("01 00 4509"));
  await until(() => aServer.packets.length === 1 && bServer.packets.length === 1, "packets");
  assertEquals(aServer.packets, [packet(1, 2, 3)]);
  assertEquals(bServer.packets, [packet(9)]);

  assertEquals(a.server.sendPacket(packet(4, 5)), "sent");
  assertEquals(s.serverConn.datagramsSent[0], hex("00 00 450405"));
  await until(() => aClient.packets.length === 1, "the reply");
  assertEquals(aClient.packets, [packet(4, 5)]);

  assertEquals(a.client.stats.packetsOut, 1);
  assertEquals(a.client.stats.bytesOut, 4);
  assertEquals(a.server.stats.packetsIn, 1);
  assertEquals(a.server.stats.bytesIn, 4);
  assertEquals(a.client.stats.packetsIn, 1);
  assertEquals(a.client.stats.bytesIn, 3);
  s.client.close();
});

Deno.test("packets travel as DATAGRAM capsules in stream mode (RFC 9297 §3.5)", async (t) => {
  await t.step("both sides in stream mode", async () => {
    const s = await setup({ clientSettings: clientWithDatagrams(0) });
    const { client, server } = await s.open("stream");
    const [c, v] = [collect(client), collect(server)];
    for (let i = 0; i < 10; i++) assertEquals(client.sendPacket(packet(i)), "sent");
    assertEquals(server.sendPacket(packet(0xee)), "sent");
    await until(() => v.packets.length === 10 && c.packets.length === 1, "packets");
    assertEquals(v.packets, Array.from({ length: 10 }, (_, i) => packet(i)));
    assertEquals(c.packets, [packet(0xee)]);
    assertEquals(server.stats.capsulesIn, 10);
    assertEquals(s.clientConn.datagramsSent.length, 0);
    assertEquals(s.serverConn.datagramsSent.length, 0);
    s.client.close();
  });
  await t.step("a hand-built DATAGRAM capsule", async () => {
    const s = await setup({ clientSettings: clientWithDatagrams(0) });
    const { client, server } = await s.open("stream");
    const v = collect(server);
    // 00 DATAGRAM capsule, 05 length, 00 context id 0, 45 01 02 03 the packet
    await client.stream.writeData(hex("00 05 00 45010203"));
    await until(() => v.packets.length === 1, "the packet");
    assertEquals(v.packets, [packet(1, 2, 3)]);
    s.client.close();
  });
  await t.step("a stream-mode client with a datagram-mode server", async () => {
    // The client sends capsules but allows datagrams, so the server sends datagrams.
    const s = await setup();
    const { client, server } = await s.open("stream");
    assertEquals([client.mode, server.mode], ["stream", "datagram"]);
    const [c, v] = [collect(client), collect(server)];
    client.sendPacket(packet(1));
    server.sendPacket(packet(2));
    await until(() => v.packets.length === 1 && c.packets.length === 1, "packets");
    assertEquals(s.clientConn.datagramsSent.length, 0);
    assertEquals(s.serverConn.datagramsSent.length, 1);
    s.client.close();
  });
});

Deno.test("datagrams with an unknown or malformed context id are counted and dropped (RFC 9484 §6)", async () => {
  const s = await setup();
  const { client, server } = await s.open("datagram");
  const v = collect(server);
  // 00 quarter stream id 0; 02 context id 2, unknown; payload
  await s.clientConn.sendDatagram(hex("00 02 aabb"));
  // 00; 40 02: context id 2 as a 2-byte varint
  await s.clientConn.sendDatagram(hex("00 4002 aa"));
  // 00; 40: a 2-byte context id cut short
  await s.clientConn.sendDatagram(hex("00 40"));
  // 00; nothing: no context id at all
  await s.clientConn.sendDatagram(hex("00"));
  // DATAGRAM capsule (00), length 03, context id 04, payload
  await client.stream.writeData(hex("00 03 04 aabb"));
  // 00; 40 00: context id 0 as a non-minimal 2-byte varint is still an IP packet
  await s.clientConn.sendDatagram(hex("00 4000 4501"));
  // The capsule travels on the stream, the rest as datagrams: either may come first.
  await until(
    () => v.packets.length === 1 && server.stats.unknownContext === 3,
    "the packet and the capsule",
  );
  assertEquals(v.packets, [packet(1)]);
  assertEquals(server.stats.unknownContext, 3);
  assertEquals(server.stats.malformed, 2);
  assertEquals(server.stats.packetsIn, 1);
  assertEquals(s.server.closeError, undefined);
  assertEquals(s.serverConn.closeInfo, undefined);
  s.client.close();
});

Deno.test("a malformed capsule ends only its session (RFC 9297 §3.3)", async (t) => {
  const cases: [string, string, string][] = [
    [
      // 03 ROUTE_ADVERTISEMENT, 0a length; 04 IPv4, start c6120002 (198.18.0.2),
      // end c6120001 (198.18.0.1), 00 any protocol
      "ROUTE_ADVERTISEMENT with start after end",
      "03 0a 04 c6120002 c6120001 00",
      "Cannot parse ROUTE_ADVERTISEMENT capsule: range 0 start 198.18.0.2 is after end 198.18.0.1",
    ],
    [
      // 01 ADDRESS_ASSIGN, 07 length; 00 request id, 04 IPv4, c6120002, 21 prefix length 33
      "ADDRESS_ASSIGN with a prefix longer than the address",
      "01 07 00 04 c6120002 21",
      "Cannot parse ADDRESS_ASSIGN capsule: address 0 prefix length 33 exceeds 32 bits of an IPv4 address",
    ],
    [
      // 02 ADDRESS_REQUEST, 07 length; 00 request id 0 (must not be zero), 04, 0.0.0.0, 20 /32
      "ADDRESS_REQUEST with request id 0",
      "02 07 00 04 00000000 20",
      "Cannot parse ADDRESS_REQUEST capsule: address 0 has request ID 0",
    ],
    [
      // 00 DATAGRAM, 80 01 11 70: length 70000 as a 4-byte varint
      "a DATAGRAM capsule over the size limit",
      "00 80011170",
      "Cannot parse capsule: length 70000 exceeds limit 65551",
    ],
  ];
  for (const [name, bytes, message] of cases) {
    await t.step(name, async () => {
      const s = await setup();
      const bad = await s.open("datagram");
      const good = await s.open("datagram");
      const [badClient, badServer] = [collect(bad.client), collect(bad.server)];
      const [goodClient, goodServer] = [collect(good.client), collect(good.server)];
      await bad.client.stream.writeData(hex(bytes));
      assertEquals(await within(badServer.end, "the bad session's end"), {
        reason: "error",
        message,
      });
      assertEquals(bad.server.closed, true);
      assertEquals(bad.server.sendPacket(packet(1)), "closed");
      // The server ended the stream; the client's session ends cleanly.
      assertEquals(await within(badClient.end, "the client's end"), {
        reason: "closed",
        message: "peer ended the stream",
      });
      assertEquals(bad.client.sendPacket(packet(1)), "closed");

      // The other session and the connection carry on.
      assertEquals(good.client.sendPacket(packet(7)), "sent");
      assertEquals(good.server.sendPacket(packet(8)), "sent");
      await until(
        () => goodServer.packets.length === 1 && goodClient.packets.length === 1,
        "the good session's packets",
      );
      assertEquals([goodServer.packets[0], goodClient.packets[0]], [packet(7), packet(8)]);
      assertEquals(s.serverConn.closeInfo, undefined);
      s.client.close();
    });
  }
  await t.step("a stream that ends inside a capsule", async () => {
    const s = await setup();
    const { client, server } = await s.open("datagram");
    const v = collect(server);
    // 01 ADDRESS_ASSIGN, 0a length, then only 3 of its 10 bytes, then FIN
    await client.stream.writeData(hex("01 0a 000400"));
    await client.close();
    assertEquals(await within(v.end, "the session's end"), {
      reason: "error",
      message: "Cannot parse capsule: stream ended inside a capsule value (7 bytes missing)",
    });
    assertEquals(s.serverConn.closeInfo, undefined);
    s.client.close();
  });
  await t.step("an unknown capsule type is skipped (RFC 9297 §3.2)", async () => {
    const s = await setup();
    const { client, server } = await s.open("datagram");
    const v = collect(server);
    // 17 unknown type 0x17, 03 length, 3 bytes; then a DATAGRAM capsule 00 03 00 45 07
    await client.stream.writeData(hex("17 03 aabbcc 00 03 00 4507"));
    await until(() => v.packets.length === 1, "the packet");
    assertEquals(v.packets, [packet(7)]);
    assertEquals(server.closed, false);
    s.client.close();
  });
});

Deno.test("a session ends cleanly when the peer ends its stream", async () => {
  const s = await setup();
  const { client, server } = await s.open("datagram");
  const v = collect(server);
  await client.close();
  assertEquals(client.sendPacket(packet(1)), "closed");
  assertEquals(await within(v.end, "the end"), {
    reason: "closed",
    message: "peer ended the stream",
  });
  assertEquals(server.closed, true);
  s.client.close();
});

Deno.test("capsules reach onCapsule; DATAGRAM capsules do not", async () => {
  const s = await setup();
  const { client, server } = await s.open("datagram");
  const c = collect(client);
  await server.sendCapsule({
    type: "route_advertisement",
    ranges: [{
      version: 4,
      start: new Uint8Array([198, 18, 0, 0]),
      end: new Uint8Array([198, 19, 255, 255]),
      ipProtocol: 0,
    }],
  });
  // 00 DATAGRAM capsule, 02 length, 00 context, 45
  await server.stream.writeData(hex("00 02 00 45"));
  await until(() => c.capsules.length === 1 && c.packets.length === 1, "capsule and packet");
  assertEquals(c.capsules[0].type, "route_advertisement");
  assertEquals(server.stats.capsulesOut, 1);
  assertEquals(client.stats.capsulesIn, 2);
  s.client.close();
});

Deno.test("maxPacketSize is the datagram limit minus the quarter stream id and context id", async (t) => {
  await t.step("quarter stream id 0: 1 + 1 header bytes", async () => {
    const s = await setup({ maxDatagramSize: 1200 });
    const { client } = await s.open("datagram");
    assertEquals(client.maxPacketSize, 1198);
    s.clientConn.maxDatagramSize = 100;
    assertEquals(client.maxPacketSize, 98);
    s.clientConn.maxDatagramSize = 1;
    assertEquals(client.maxPacketSize, 0);
    s.client.close();
  });
  await t.step("quarter stream id 64: a 2-byte varint", async () => {
    const s = await setup({ maxDatagramSize: 1200 });
    // Streams 0..252 (quarter ids 0..63) carry refused GETs; stream 256 is quarter id 64.
    const get: HeaderField[] = [
      [":method", "GET"],
      [":scheme", "https"],
      [":authority", "localhost"],
      [":path", "/"],
    ];
    for (let i = 0; i < 64; i++) {
      const stream = await s.client.request(get, { end: true });
      assertEquals(await within(stream.readResponse(), "404"), 404);
    }
    const { client, server } = await s.open("datagram");
    assertEquals(client.stream.quarterStreamId, 64);
    assertEquals(client.maxPacketSize, 1197);
    const v = collect(server);
    assertEquals(client.sendPacket(new Uint8Array(1197).fill(0x45)), "sent");
    // 40 40: quarter stream id 64 as a 2-byte varint, 00 context id, then the packet
    assertEquals(s.clientConn.datagramsSent.at(-1)!.subarray(0, 4), hex("4040 00 45"));
    assertEquals(s.clientConn.datagramsSent.at(-1)!.length, 1200);
    await until(() => v.packets.length === 1, "the packet");
    s.client.close();
  });
  await t.step("stream mode: 65535", async () => {
    const s = await setup({ maxDatagramSize: 1200, clientSettings: clientWithDatagrams(0) });
    const { client } = await s.open("stream");
    assertEquals(client.maxPacketSize, 65535);
    s.client.close();
  });
});

Deno.test("sendPacket() in stream mode drops and counts packets past maxPacketsQueued until writes settle", async () => {
  const s = await setup({ clientSettings: clientWithDatagrams(0) });
  const { client, server } = await s.open("stream");
  const v = collect(server);
  const numbered = (i: number) => packet(i >> 8, i & 0xff);
  // The bound plus 88 packets in one turn of the event loop, as TUN
  // batches are sent: no write has settled yet, so the first
  // DEFAULT_MAX_PACKETS_QUEUED are written and 88 dropped, each still
  // reported as sent (the session is open).
  const total = DEFAULT_MAX_PACKETS_QUEUED + 88;
  for (let i = 0; i < total; i++) assertEquals(client.sendPacket(numbered(i)), "sent");
  assertEquals(client.stats.packetsOut, DEFAULT_MAX_PACKETS_QUEUED);
  assertEquals(client.stats.bytesOut, DEFAULT_MAX_PACKETS_QUEUED * 3);
  assertEquals(client.stats.queueFull, 88);
  // A capsule that is not a packet is never dropped, full queue or not
  // (either endpoint may send ADDRESS_ASSIGN, RFC 9484 §4.7.1).
  const assigned = client.sendCapsule({
    type: "address_assign",
    addresses: [{ requestId: 0, prefix: parsePrefix("198.18.0.2/32") }],
  });
  await until(() => v.packets.length === DEFAULT_MAX_PACKETS_QUEUED, "the queued packets");
  assertEquals(
    v.packets,
    Array.from({ length: DEFAULT_MAX_PACKETS_QUEUED }, (_, i) => numbered(i)),
  );
  await within(assigned, "the ADDRESS_ASSIGN write");
  await until(() => v.capsules.length === 1, "the ADDRESS_ASSIGN");
  assertEquals(v.capsules[0].type, "address_assign");
  // The writes have settled: there is room again.
  await new Promise((resolve) => setTimeout(resolve, 0));
  assertEquals(client.sendPacket(numbered(9999)), "sent");
  await until(() => v.packets.length === DEFAULT_MAX_PACKETS_QUEUED + 1, "the packet after");
  assertEquals(v.packets.at(-1), numbered(9999));
  assertEquals(client.stats.packetsOut, DEFAULT_MAX_PACKETS_QUEUED + 1);
  assertEquals(client.stats.queueFull, 88);
  assertEquals(server.stats.packetsIn, DEFAULT_MAX_PACKETS_QUEUED + 1);
  s.client.close();
});

Deno.test("pendingCapsuleWrites counts sendCapsule() writes until they settle, failed or not", async () => {
  const s = await setup();
  const { client, server } = await s.open("datagram");
  const v = collect(server);
  const capsule: Capsule = {
    type: "address_request",
    addresses: [{ requestId: 1, prefix: parsePrefix("0.0.0.0/32") }],
  };
  assertEquals(client.pendingCapsuleWrites, 0);
  const writes = [client.sendCapsule(capsule), client.sendCapsule(capsule)];
  // Both are waiting: neither promise can have settled within this turn.
  assertEquals(client.pendingCapsuleWrites, 2);
  await within(Promise.all(writes), "the two capsule writes");
  assertEquals(client.pendingCapsuleWrites, 0);
  await until(() => v.capsules.length === 2, "the two capsules");
  // A write on a closed connection rejects and is no longer pending.
  s.client.close();
  await assertRejects(() => client.sendCapsule(capsule));
  assertEquals(client.pendingCapsuleWrites, 0);
});

Deno.test("sendPacket() reports too_big and closed", async (t) => {
  await t.step("datagram mode", async () => {
    const s = await setup({ maxDatagramSize: 200 });
    const { client, server } = await s.open("datagram");
    const v = collect(server);
    const fits = new Uint8Array(client.maxPacketSize).fill(0x45);
    assertEquals(client.sendPacket(fits), "sent");
    assertEquals(client.sendPacket(new Uint8Array(client.maxPacketSize + 1)), "too_big");
    assertEquals(client.stats.tooBig, 1);
    assertEquals(client.stats.packetsOut, 1);
    assertEquals(s.clientConn.datagramsSent.length, 1);
    await until(() => v.packets.length === 1, "the packet that fits");
    assertEquals(v.packets[0], fits);
    await client.close();
    assertEquals(client.sendPacket(packet(1)), "closed");
    assertEquals(s.clientConn.datagramsSent.length, 1);
    s.client.close();
  });
  await t.step("stream mode", async () => {
    const s = await setup({ clientSettings: clientWithDatagrams(0) });
    const { client, server } = await s.open("stream");
    const v = collect(server);
    const biggest = new Uint8Array(65535).fill(0x45);
    assertEquals(client.sendPacket(biggest), "sent");
    assertEquals(client.sendPacket(new Uint8Array(65536)), "too_big");
    await until(() => v.packets.length === 1, "the 65535-byte packet");
    assertEquals(v.packets[0], biggest);
    s.client.close();
  });
  await t.step("after the connection closed", async () => {
    const s = await setup();
    const { client } = await s.open("datagram");
    s.serverConn.close({ closeCode: 0x100, reason: "" });
    await within(s.client.closed, "the close");
    assertEquals(client.sendPacket(packet(1)), "closed");
    assertEquals(s.clientConn.datagramsSent.length, 0);
  });
});

Deno.test("answerRequest() answers other requests with proper statuses", async (t) => {
  const authorized: string[] = [];
  const s = await setup({
    answer: {
      authorize: (scope) => {
        authorized.push(JSON.stringify(scope));
        if (scope.ipProtocol === 6) return { accept: false, status: 403 };
        if (scope.ipProtocol === 17) {
          return { accept: false, status: 503, reason: "address pool exhausted" };
        }
        return { accept: true };
      },
    },
  });
  const ask = async (headers: HeaderField[]) => {
    const before = s.answers.length;
    const stream = await s.client.request(headers, { end: true });
    const status = await within(stream.readResponse(), "the response");
    let body = "";
    for await (const chunk of stream.readBody()) body += new TextDecoder().decode(chunk);
    await until(() => s.answers.length > before, "the answer");
    return { status, body, answer: s.answers[before] };
  };
  const connectIp = (path: string): HeaderField[] =>
    buildConnectIpRequest({ authority: "localhost", path });
  const cases: [string, HeaderField[], number, string][] = [
    [
      "GET is 404",
      [[":method", "GET"], [":scheme", "https"], [":authority", "localhost"], [":path", "/"]],
      404,
      "not found",
    ],
    [
      "plain CONNECT is 405 (RFC 9114 §4.4)",
      [[":method", "CONNECT"], [":authority", "198.18.0.1:443"]],
      405,
      "plain CONNECT is not supported; use connect-ip",
    ],
    [
      "plain CONNECT with :path is malformed: 400 (RFC 9114 §4.4)",
      [[":method", "CONNECT"], [":authority", "198.18.0.1:443"], [":path", "/"]],
      400,
      "malformed CONNECT: :scheme and :path without :protocol",
    ],
    [
      "an uppercase field name is malformed: 400 whatever the method (RFC 9114 §4.2)",
      [["Upper", "x"], [":method", "CONNECT"]],
      400,
      'uppercase header name "Upper"',
    ],
    [
      "a pseudo-header after a regular field is malformed: 400 on a GET (RFC 9114 §4.3)",
      [[":method", "GET"], ["accept", "*/*"], [":scheme", "https"], [":path", "/"]],
      400,
      "pseudo-header :scheme after a regular header",
    ],
    [
      "no field lines at all: 400, not 404 (RFC 9114 §4.3.1)",
      [],
      400,
      "missing :method",
    ],
    [
      "a GET without :path is malformed: 400 (RFC 9114 §4.3.1)",
      [[":method", "GET"], [":scheme", "https"], [":authority", "localhost"]],
      400,
      "malformed request: missing :scheme or :path",
    ],
    [
      "another :protocol is 501",
      [
        [":method", "CONNECT"],
        [":protocol", "connect-udp"],
        [":scheme", "https"],
        [":authority", "localhost"],
        [":path", "/.well-known/masque/udp/198.18.0.1/53/"],
        ["capsule-protocol", "?1"],
      ],
      501,
      'unsupported :protocol "connect-udp"',
    ],
    [
      "a path outside the template is 400",
      connectIp("/vpn"),
      400,
      `path "/vpn" does not match template "${DEFAULT_URI_TEMPLATE}"`,
    ],
    [
      "an ipproto above 255 is 400",
      connectIp("/.well-known/masque/ip/*/256/"),
      400,
      'ipproto "256" is not 0..255 or "*"',
    ],
    [
      "a request authorize() refuses gets its status: 403",
      connectIp("/.well-known/masque/ip/*/6/"),
      403,
      "request refused",
    ],
    [
      "a refusal with a reason gets its status and the reason as body: 503",
      connectIp("/.well-known/masque/ip/*/17/"),
      503,
      "address pool exhausted",
    ],
  ];
  for (const [name, headers, status, reason] of cases) {
    await t.step(name, async () => {
      const got = await ask(headers);
      assertEquals(got.status, status);
      assertEquals(got.body, `${reason}\n`);
      assertEquals(got.answer, { session: undefined, status, reason });
    });
  }
  // authorize() saw only the well-formed connect-ip request.
  assertEquals(authorized, [
    '{"target":{"kind":"any"},"ipProtocol":6}',
    '{"target":{"kind":"any"},"ipProtocol":17}',
  ]);
  assertEquals(s.serverConn.closeInfo, undefined);
  s.client.close();
});

Deno.test("openConnectIpSession() fails clearly", async (t) => {
  await t.step("the relay refuses: ConnectIpError with the status", async () => {
    const s = await setup({ answer: { authorize: () => ({ accept: false, status: 403 }) } });
    const error = await assertRejects(
      () =>
        openConnectIpSession(s.client, {
          authority: "localhost",
          path: ANY_PATH,
          mode: "datagram",
        }),
      ConnectIpError,
      "Cannot open connect-ip session: the relay answered 403",
    );
    assertEquals(error.status, 403);
    s.client.close();
  });
  await t.step("the relay does not enable extended CONNECT", async () => {
    const settings = serverSettings();
    settings.delete(SETTINGS_ENABLE_CONNECT_PROTOCOL);
    const s = await setup({ serverSettings: settings });
    await assertRejects(
      () =>
        openConnectIpSession(s.client, { authority: "localhost", path: ANY_PATH, mode: "stream" }),
      ConnectIpError,
      "the relay does not enable extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL is not 1)",
    );
    s.client.close();
  });
  await t.step("datagram mode when the relay does not enable HTTP Datagrams", async () => {
    const settings = serverSettings();
    settings.set(SETTINGS_H3_DATAGRAM, 0);
    const s = await setup({ serverSettings: settings });
    await assertRejects(
      () =>
        openConnectIpSession(s.client, {
          authority: "localhost",
          path: ANY_PATH,
          mode: "datagram",
        }),
      ConnectIpError,
      "SETTINGS_H3_DATAGRAM is not 1); try --mode stream",
    );
    s.client.close();
  });
  await t.step("the connection closes before SETTINGS", async () => {
    const [clientConn, serverConn] = createFakeQuicPair();
    const client = new H3Connection(clientConn, { role: "client" });
    await client.start();
    serverConn.close({ closeCode: 0x10a, reason: "no" });
    await assertRejects(
      () =>
        openConnectIpSession(client, { authority: "localhost", path: ANY_PATH, mode: "stream" }),
      ConnectIpError,
      'Cannot open connect-ip session: no SETTINGS from the relay (Connection closed before SETTINGS: code 0x10a "no")',
    );
  });
  await t.step("a 200 without capsule-protocol", async () => {
    const [clientConn, raw] = createFakeQuicPair();
    const client = new H3Connection(clientConn, { role: "client" });
    await client.start();
    // 00 control stream; 04 SETTINGS 04 length; 08 01 extended CONNECT; 33 01 datagrams
    await raw.openUni(hex("00 0404 0801 3301"));
    const bidi = raw.incomingBidirectionalStreams.getReader();
    const opening = openConnectIpSession(client, {
      authority: "localhost",
      path: ANY_PATH,
      mode: "datagram",
    });
    const { value: request } = await within(bidi.read(), "the request");
    assert(request !== undefined);
    const writer = request.writable.getWriter();
    // 01 HEADERS, 03 length, 00 00 prefix, d9 static 25 `:status 200`
    await writer.write(hex("01 03 0000 d9"));
    await assertRejects(
      () => opening,
      ConnectIpError,
      "Cannot open connect-ip session: the response lacks capsule-protocol: ?1",
    );
    // The client gave up on the stream: its request HEADERS, then FIN; and STOP_SENDING.
    const sent = await readAll(request.readable.getReader());
    assertEquals(sent[0], 0x01);
    await assertRejects(() => within(writer.closed, "STOP_SENDING"), Error, "STOP_SENDING");
    raw.close();
  });
});

Deno.test("a connection error on a session's stream closes the whole connection", async () => {
  const [raw, serverConn] = createFakeQuicPair();
  const ends: Promise<SessionEnd>[] = [];
  const server = new H3Connection(serverConn, {
    role: "server",
    onRequest: async (request) => {
      const answer = await answerRequest(request);
      if (answer.session) ends.push(answer.session.run({ onPacket: () => {} }));
    },
  });
  await server.start();
  // The client's control stream: 00, SETTINGS 04 02: 33 01 (datagrams on).
  await raw.openUni(hex("00 0402 3301"));
  const headers = encodeFieldSection(
    buildConnectIpRequest({ authority: "localhost", path: ANY_PATH }),
  );
  const { reader, writer } = await raw.openBidi(encodeFrame(FRAME_HEADERS, headers));
  const { value: response } = await within(reader.read(), "the response");
  // 01 HEADERS frame, its length, 00 00, d9 `:status 200`, then capsule-protocol
  assertEquals(response?.subarray(2, 5), hex("0000 d9"));
  await until(() => ends.length === 1, "the session");
  // 04 SETTINGS, 00 length: a frame that is a connection error on a request stream
  await writer.write(hex("04 00"));
  assertEquals(await within(ends[0], "the session's end"), {
    reason: "error",
    message: "Unexpected SETTINGS frame on a request stream",
  });
  const info = await within(raw.closed, "the close");
  assertEquals(info, {
    closeCode: H3_FRAME_UNEXPECTED,
    reason: "Unexpected SETTINGS frame on a request stream",
  });
});

Deno.test("answerRequest() calls authorize only once the peer's SETTINGS have arrived", async (t) => {
  /** A server that answers with answerRequest(), facing a raw client that sends no SETTINGS yet. */
  async function serverWithoutClientSettings(settingsTimeoutMs: number) {
    const [clientConn, serverConn] = createFakeQuicPair();
    const authorized: number[] = [];
    const answers: Promise<AnswerResult>[] = [];
    const server = new H3Connection(serverConn, {
      role: "server",
      settingsTimeoutMs,
      onRequest: (request) => {
        const answer = answerRequest(request, {
          authorize: () => {
            authorized.push(Number(request.streamId));
            return { accept: true };
          },
        });
        answer.catch(() => {});
        answers.push(answer);
      },
    });
    await server.start();
    // Requests on raw streams: HEADERS of a connect-ip request, the stream left open.
    const block = encodeFieldSection(
      buildConnectIpRequest({ authority: "localhost", path: ANY_PATH }),
    );
    const request = encodeFrame(FRAME_HEADERS, block);
    const streams = [];
    for (let i = 0; i < 5; i++) streams.push(await clientConn.openBidi(request));
    await until(() => answers.length === 5, "the five requests to reach answerRequest");
    await new Promise((resolve) => setTimeout(resolve, 20));
    return { server, clientConn, authorized, answers, streams };
  }

  await t.step("requests before SETTINGS wait; SETTINGS let them through", async () => {
    const s = await serverWithoutClientSettings(5000);
    assertEquals(s.authorized, []);
    // 00 CONTROL; 04 SETTINGS, 02 length; 33 01 SETTINGS_H3_DATAGRAM = 1
    await s.clientConn.openUni(hex("00 0402 3301"));
    const answers = await within(Promise.all(s.answers), "the answers");
    assertEquals(s.authorized, [0, 4, 8, 12, 16]);
    assert(answers.every((a) => a.session?.mode === "datagram"));
    s.clientConn.close();
  });
  await t.step(
    "no SETTINGS before the time limit: nothing authorized, every answer rejects",
    async () => {
      const s = await serverWithoutClientSettings(100);
      const results = await within(Promise.allSettled(s.answers), "the answers", 3000);
      assertEquals(s.authorized, []);
      for (const result of results) {
        assert(result.status === "rejected");
        assertEquals(
          String(result.reason),
          "Error: Cannot answer request: no SETTINGS from the peer (No SETTINGS from the peer within 100 ms)",
        );
      }
      assertEquals((await within(s.clientConn.closed, "the close")).closeCode, 0x10a);
    },
  );
});

Deno.test("a session's partial capsule counts in its connection's budget", async () => {
  const s = await setup({ maxChunkSize: 1 });
  const { client, server } = await s.open("stream");
  const got = collect(server);
  const budget = s.server.bufferBudget;
  // 00 DATAGRAM, 0a length 10; 00 context id; 9 bytes of packet; written 1 byte per DATA frame.
  const capsule = hex("00 0a 00 45 01 02 03 04 05 06 07 08");
  for (let i = 0; i < capsule.length - 1; i++) {
    await client.stream.writeData(capsule.subarray(i, i + 1));
  }
  await until(() => budget.used > 0, "the partial capsule held");
  assert(budget.used <= 16, `${budget.used} bytes held for a 12-byte capsule`);
  await client.stream.writeData(capsule.subarray(capsule.length - 1));
  await until(() => got.packets.length === 1, "the packet");
  assertEquals(got.packets[0], hex("45 01 02 03 04 05 06 07 08"));
  assertEquals(budget.used, 0);
  s.clientConn.close();
});
