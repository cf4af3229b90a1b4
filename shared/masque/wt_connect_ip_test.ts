import { assert, assertEquals } from "../../tests/support/assert.ts";
import { hex } from "../../tests/support/bytes.ts";
import { until } from "../../tests/support/fake_quic.ts";
import { ByteBudget } from "../h3/byte_budget.ts";
import { CounterRegistry } from "../counters.ts";
import { parsePrefix } from "../ip/ip_address.ts";
import type { Capsule } from "./capsule.ts";
import { ConnectIpSession, SessionCounters } from "./connect_ip_session.ts";
import { WT_WRITE_BATCH_BYTES, WtConnectStream } from "./wt_connect_ip.ts";
import type { WtBidiStreamLike } from "./wt_connect_ip.ts";

/** Two ends of an in-memory bidirectional stream, and what crossed it. */
function bidiPair(): [WtBidiStreamLike, WtBidiStreamLike, Uint8Array[]] {
  const toB = new TransformStream<Uint8Array, Uint8Array>();
  const toA = new TransformStream<Uint8Array, Uint8Array>();
  const sent: Uint8Array[] = [];
  const tap = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      sent.push(chunk.slice());
      controller.enqueue(chunk);
    },
  });
  toB.readable.pipeTo(tap.writable).catch(() => {});
  return [
    { readable: toA.readable, writable: toB.writable },
    { readable: tap.readable, writable: toA.writable },
    sent,
  ];
}

function sessionPair(options: { budget?: ByteBudget; rawClient?: boolean } = {}) {
  const [clientPackets, relayPackets, packetBytes] = bidiPair();
  const [clientCapsules, relayCapsules] = bidiPair();
  const closed: string[] = [];
  const relayStream = new WtConnectStream(relayPackets, relayCapsules, {
    budget: options.budget,
    closeSession: (reason) => closed.push(reason),
  });
  const relay = new ConnectIpSession(relayStream, { mode: "datagram" });
  const client = options.rawClient
    ? undefined!
    : new ConnectIpSession(new WtConnectStream(clientPackets, clientCapsules), {
      mode: "datagram",
    });
  return { relay, client, packetBytes, closed, relayPackets, clientPackets };
}

Deno.test("WebTransport streams carry length-prefixed packets and RFC 9484 capsules both ways", async () => {
  const { relay, client, packetBytes } = sessionPair();
  assertEquals(client.maxPacketSize, 65535);
  const atRelay: Uint8Array[] = [];
  const atClient: Uint8Array[] = [];
  const capsules: Capsule[] = [];
  const relayEnd = relay.run({ onPacket: (p) => atRelay.push(p.slice()) });
  client.run({ onPacket: (p) => atClient.push(p.slice()), onCapsule: (c) => capsules.push(c) });
  // A packet from the TUN with headroom: sent as 0004 + the packet.
  const slot = hex("0000000000000000 45000014");
  assertEquals(client.sendPacket(slot.subarray(8), 8), "sent");
  await until(() => atRelay.length === 1, "the packet at the relay");
  assertEquals(atRelay[0], hex("45000014"));
  assertEquals(packetBytes[0], hex("0004 45000014"), "the first prototype's framing on the wire");
  assertEquals(relay.sendPacket(hex("60000000")), "sent");
  await until(() => atClient.length === 1, "the packet at the client");
  assertEquals(atClient[0], hex("60000000"));
  await relay.sendCapsule({
    type: "address_assign",
    addresses: [{ requestId: 0, prefix: parsePrefix("198.18.100.2/32") }],
  });
  await until(() => capsules.length === 1, "ADDRESS_ASSIGN at the client");
  assertEquals(capsules[0].type, "address_assign");
  await client.close();
  assertEquals((await relayEnd).message, "peer ended the stream");
});

Deno.test("A zero length on the packet stream ends the session", async () => {
  const { relay, clientPackets } = sessionPair({ rawClient: true });
  const end = relay.run({ onPacket: () => {} });
  const writer = clientPackets.writable.getWriter();
  await writer.write(hex("0001 45 0000"));
  const ended = await end;
  assertEquals(ended.reason, "error");
  assert(ended.message.includes("length 0"), ended.message);
});

Deno.test("A partial packet past the connection's budget closes the WebTransport session", async () => {
  const { relay, clientPackets, closed } = sessionPair({
    budget: new ByteBudget(500),
    rawClient: true,
  });
  const end = relay.run({ onPacket: () => {} });
  const writer = clientPackets.writable.getWriter();
  await writer.write(new Uint8Array([0x10, 0x00, ...new Uint8Array(1000)]));
  const ended = await end;
  assertEquals(ended.reason, "error");
  assertEquals(closed.length, 1);
  assert(closed[0].startsWith("Cannot buffer"), closed[0]);
});

Deno.test("Packets are dropped and counted when maxQueuedBytes wait on the packet stream", () => {
  // A packet stream whose peer never reads: writes never settle.
  const stuck = new WritableStream<Uint8Array>({ write: () => new Promise(() => {}) });
  const counters = new SessionCounters(new CounterRegistry());
  const capsules = new TransformStream<Uint8Array, Uint8Array>();
  const stream = new WtConnectStream(
    { readable: new ReadableStream(), writable: stuck },
    { readable: capsules.readable, writable: capsules.writable },
    { maxQueuedBytes: 5000, queueFull: counters.queueFull },
  );
  const session = new ConnectIpSession(stream, { mode: "datagram" });
  const packet = new Uint8Array(1400).fill(0x45);
  for (let i = 0; i < 10; i++) assertEquals(session.sendPacket(packet), "sent");
  // 3 frames of 1402 bytes fit in 5000; the other 7 are dropped.
  assertEquals(stream.datagrams.queuedBytes, 3 * 1402);
  assertEquals(stream.datagrams.dropped, 7);
  assertEquals(counters.queueFull.value, 7);
});

Deno.test("Packets sent while a write is in flight go out joined in one write, in order, before the close", async () => {
  // A packet stream whose writes settle only when the test says so.
  const writes: Uint8Array[] = [];
  const settle: (() => void)[] = [];
  let closed = false;
  const writable = new WritableStream<Uint8Array>({
    write: (chunk) => {
      writes.push(chunk.slice());
      return new Promise<void>((resolve) => settle.push(resolve));
    },
    close: () => {
      closed = true;
    },
  });
  const capsules = new TransformStream<Uint8Array, Uint8Array>();
  const stream = new WtConnectStream(
    { readable: new ReadableStream(), writable },
    { readable: capsules.readable, writable: capsules.writable },
  );
  const channel = stream.datagrams;
  const packet = (byte: number) => new Uint8Array([0, 0, byte, byte]); // prefix, context id 0, packet
  assertEquals(channel.send(packet(1)), "sent");
  await until(() => writes.length === 1, "the first write");
  // Three more while the first is in flight: they wait, counted as queued.
  for (const b of [2, 3, 4]) assertEquals(channel.send(packet(b)), "sent");
  assertEquals(channel.queuedBytes, 4 * 4);
  channel.end();
  assertEquals(channel.send(packet(5)), "closed");
  settle.shift()!();
  await until(() => writes.length === 2, "the joined write");
  assertEquals(writes, [hex("0002 0101"), hex("0002 0202 0002 0303 0002 0404")]);
  assertEquals(closed, false, "not closed while a write is in flight");
  settle.shift()!();
  await until(() => closed, "closed after the last write");
  assertEquals(channel.queuedBytes, 0);
});

Deno.test("A joined write holds at most WT_WRITE_BATCH_BYTES (one frame if larger)", async () => {
  const writes: number[] = [];
  const settle: (() => void)[] = [];
  const writable = new WritableStream<Uint8Array>({
    write: (chunk) => {
      writes.push(chunk.length);
      return new Promise<void>((resolve) => settle.push(resolve));
    },
  });
  const capsules = new TransformStream<Uint8Array, Uint8Array>();
  const stream = new WtConnectStream(
    { readable: new ReadableStream(), writable },
    { readable: capsules.readable, writable: capsules.writable },
    { maxQueuedBytes: 1 << 20 },
  );
  const frame = 30_000; // 2 + 29998
  const buffer = new Uint8Array(2 + frame - 2);
  for (let i = 0; i < 6; i++) assertEquals(stream.datagrams.send(buffer), "sent");
  for (let round = 0; round < 4; round++) {
    await until(() => settle.length > 0, "a write");
    settle.shift()!();
  }
  // 30000, then two of 30000 (60000 <= 65536), then two, then the last one.
  assertEquals(writes.slice(0, 4), [frame, 2 * frame, 2 * frame, frame]);
  assert(WT_WRITE_BATCH_BYTES >= 2 * frame && WT_WRITE_BATCH_BYTES < 3 * frame);
});
