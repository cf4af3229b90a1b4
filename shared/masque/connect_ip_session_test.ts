/**
 * CONNECT-IP sessions (RFC 9484) over real H3Connections on the in-memory
 * QUIC pair: both packet modes, what is dropped and counted, malformed
 * capsules ending one session only, the datagram size limit; and over a
 * fake ConnectStream, which is all a session needs of its transport.
 * `h3_connect_ip_test.ts` tests opening and answering the request.
 */
import { assert, assertEquals, assertRejects } from "../../tests/support/assert.ts";
import { hex } from "../../tests/support/bytes.ts";
import { until, within } from "../../tests/support/fake_quic.ts";
import type { HeaderField } from "../h3/qpack.ts";
import { parsePrefix } from "../ip/ip_address.ts";
import type { Capsule } from "./capsule.ts";
import { DEFAULT_MAX_PACKETS_QUEUED } from "./connect_ip_session.ts";
import {
  clientWithDatagrams,
  collect,
  packet,
  setupH3Sessions,
} from "../../tests/support/h3_sessions.ts";

import { assertThrows } from "../../tests/support/assert.ts";
import { createConnectStreamPair } from "../../tests/support/fake_connect_stream.ts";
import { H3_EXCESSIVE_LOAD, H3Error } from "../errors.ts";
import { ByteBudget } from "../h3/byte_budget.ts";
import { ConnectIpSession } from "./connect_ip_session.ts";

Deno.test("packets travel as HTTP Datagrams with context id 0 in datagram mode (RFC 9484 §6)", async () => {
  const s = await setupH3Sessions();
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
    const s = await setupH3Sessions({ clientSettings: clientWithDatagrams(0) });
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
    const s = await setupH3Sessions({ clientSettings: clientWithDatagrams(0) });
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
    const s = await setupH3Sessions();
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
  const s = await setupH3Sessions();
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
      const s = await setupH3Sessions();
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
    const s = await setupH3Sessions();
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
    const s = await setupH3Sessions();
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
  const s = await setupH3Sessions();
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
  const s = await setupH3Sessions();
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
    const s = await setupH3Sessions({ maxDatagramSize: 1200 });
    const { client } = await s.open("datagram");
    assertEquals(client.maxPacketSize, 1198);
    s.clientConn.maxDatagramSize = 100;
    assertEquals(client.maxPacketSize, 98);
    s.clientConn.maxDatagramSize = 1;
    assertEquals(client.maxPacketSize, 0);
    s.client.close();
  });
  await t.step("quarter stream id 64: a 2-byte varint", async () => {
    const s = await setupH3Sessions({ maxDatagramSize: 1200 });
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
    const s = await setupH3Sessions({
      maxDatagramSize: 1200,
      clientSettings: clientWithDatagrams(0),
    });
    const { client } = await s.open("stream");
    assertEquals(client.maxPacketSize, 65535);
    s.client.close();
  });
});

Deno.test("sendPacket() in stream mode drops and counts packets past maxPacketsQueued until writes settle", async () => {
  const s = await setupH3Sessions({ clientSettings: clientWithDatagrams(0) });
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
  const s = await setupH3Sessions();
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
    const s = await setupH3Sessions({ maxDatagramSize: 200 });
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
    const s = await setupH3Sessions({ clientSettings: clientWithDatagrams(0) });
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
    const s = await setupH3Sessions();
    const { client } = await s.open("datagram");
    s.serverConn.close({ closeCode: 0x100, reason: "" });
    await within(s.client.closed, "the close");
    assertEquals(client.sendPacket(packet(1)), "closed");
    assertEquals(s.clientConn.datagramsSent.length, 0);
  });
});

Deno.test("a session's partial capsule counts in its connection's budget", async () => {
  const s = await setupH3Sessions({ maxChunkSize: 1 });
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

Deno.test("a session needs only a ConnectStream: prefix | context id | packet in one buffer", async (t) => {
  await t.step("datagram mode leaves the transport's prefix free in front", async () => {
    const [a, b] = createConnectStreamPair({ prefixLength: 3, maxPayloadSize: 100 });
    const client = new ConnectIpSession(a, { mode: "datagram" });
    const server = collect(new ConnectIpSession(b, { mode: "datagram" }));
    // The payload limit minus the one-byte context id.
    assertEquals(client.maxPacketSize, 99);
    assertEquals(client.sendPacket(packet(1, 2)), "sent");
    // ee ee ee: the fake transport's prefix; 00 context id 0; the packet
    assertEquals(a.datagrams!.datagramsSent, [hex("eeeeee 00 450102")]);
    await until(() => server.packets.length === 1, "the packet");
    assertEquals(server.packets, [packet(1, 2)]);
    assertEquals(client.sendPacket(new Uint8Array(100).fill(0x45)), "too_big");
    assertEquals(client.stats.tooBig, 1);
    await client.close();
    assertEquals(client.sendPacket(packet(3)), "closed");
    assertEquals(await within(server.end, "the end"), {
      reason: "closed",
      message: "peer ended the stream",
    });
  });
  await t.step("a transport without datagrams carries packets in capsules only", async () => {
    const [a, b] = createConnectStreamPair({ datagrams: false });
    assertThrows(
      () => new ConnectIpSession(a, { mode: "datagram" }),
      Error,
      "Cannot run a session in datagram mode: the transport has no datagrams",
    );
    const client = new ConnectIpSession(a, { mode: "stream" });
    const server = collect(new ConnectIpSession(b, { mode: "stream" }));
    assertEquals(client.maxPacketSize, 65535);
    assertEquals(client.sendPacket(packet(7)), "sent");
    await until(() => server.packets.length === 1, "the packet");
    assertEquals(server.packets, [packet(7)]);
    assertEquals(server.capsules, []);
  });
  await t.step("errors that are not a malformed capsule go to the transport's fail()", async () => {
    // A budget of 2 bytes and a partial capsule of 6: the budget's connection error.
    const [a, b] = createConnectStreamPair({ bufferBudget: new ByteBudget(2) });
    const server = collect(new ConnectIpSession(b, { mode: "datagram" }));
    // 00 DATAGRAM, 0a length 10, then 4 of its bytes
    await a.writeData(hex("00 0a 00450102"));
    const end = await within(server.end, "the end");
    assertEquals(end.reason, "error");
    assertEquals(b.failures.length, 1);
    assert(b.failures[0] instanceof H3Error && b.failures[0].code === H3_EXCESSIVE_LOAD);
    assertEquals(b.aborted, true);
    // A malformed capsule ends the session but is not the transport's business.
    const [c, d] = createConnectStreamPair();
    const other = collect(new ConnectIpSession(d, { mode: "datagram" }));
    // 01 ADDRESS_ASSIGN, 07 length; 00 request id, 04 IPv4, c6120002, 21 prefix length 33
    await c.writeData(hex("01 07 00 04 c6120002 21"));
    assertEquals((await within(other.end, "the end")).reason, "error");
    assertEquals(d.failures, []);
  });
});
