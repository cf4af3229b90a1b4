import { assertEquals, assertRejects, assertStrictEquals } from "./assert.ts";
import { InMemoryPacketDevice } from "./memory_tun.ts";
import { buildIpv4Udp, buildIpv6Udp } from "./packet_builder.ts";
import type { PacketDevice } from "../../shared/tunnel/packet_device.ts";

const packetN = (n: number) =>
  buildIpv4Udp({
    src: "198.18.0.2",
    dst: "198.18.0.1",
    srcPort: 1000 + n,
    dstPort: 7,
    payload: `#${n}`,
  });

Deno.test("InMemoryPacketDevice.readBatch() returns injected packets in order and in batches", async () => {
  const device: PacketDevice & InMemoryPacketDevice = new InMemoryPacketDevice({
    batchSize: 2,
    mtu: 1280,
  });
  assertStrictEquals(device.mtu, 1280);
  assertStrictEquals(device.name, "mem0");
  device.inject(packetN(1), packetN(2), packetN(3));
  assertEquals(await device.readBatch(), [packetN(1), packetN(2)]);
  assertEquals(await device.readBatch(), [packetN(3)]);
  device.close();
});

Deno.test("InMemoryPacketDevice.readBatch() overwrites the previous batch, as a TUN ring would", async () => {
  const device = new InMemoryPacketDevice();
  device.inject(packetN(1));
  const [first] = (await device.readBatch())!;
  const kept = first;
  device.inject(packetN(2));
  await device.readBatch();
  assertEquals(kept, new Uint8Array(packetN(1).length).fill(0xdb));
  device.close();
});

Deno.test("InMemoryPacketDevice.readBatch() waits for a packet and resolves null on close()", async (t) => {
  await t.step("a pending read is woken by inject()", async () => {
    const device = new InMemoryPacketDevice();
    const pending = device.readBatch();
    device.inject(packetN(4));
    assertEquals(await pending, [packetN(4)]);
    device.close();
  });
  await t.step("a pending read resolves null on close(), and so do later reads", async () => {
    const device = new InMemoryPacketDevice();
    const pending = device.readBatch();
    device.close();
    device.close(); // idempotent
    assertStrictEquals(await pending, null);
    assertStrictEquals(await device.readBatch(), null);
    assertStrictEquals(device.closed, true);
  });
  await t.step("a second concurrent read is refused", async () => {
    const device = new InMemoryPacketDevice();
    const pending = device.readBatch();
    await assertRejects(
      () => device.readBatch(),
      Error,
      "Cannot read: readBatch() is already pending",
    );
    device.close();
    assertStrictEquals(await pending, null);
  });
});

Deno.test("InMemoryPacketDevice.writePacket() records copies and refuses like a TUN", async (t) => {
  await t.step("accepted packets are copied", () => {
    const device = new InMemoryPacketDevice();
    const packet = packetN(5);
    assertStrictEquals(device.writePacket(packet), true);
    packet.fill(0);
    assertEquals(device.written, [packetN(5)]);
    device.close();
  });
  await t.step("bad version, empty, refuse() and closed are refused and counted", () => {
    const device = new InMemoryPacketDevice({ refuse: (p) => p.length > 100 });
    assertStrictEquals(device.writePacket(new Uint8Array([0x50, 0, 0, 0])), false);
    assertStrictEquals(device.writePacket(new Uint8Array(0)), false);
    assertStrictEquals(
      device.writePacket(
        buildIpv6Udp({
          src: "fd00::1",
          dst: "fd00::2",
          srcPort: 1,
          dstPort: 2,
          payload: new Uint8Array(80),
        }),
      ),
      false,
    );
    device.close();
    assertStrictEquals(device.writePacket(packetN(6)), false);
    assertStrictEquals(device.refusedCount, 4);
    assertEquals(device.written, []);
  });
});

Deno.test("InMemoryPacketDevice.nextWritten() hands out each written packet once", async (t) => {
  await t.step("already written, then written later", async () => {
    const device = new InMemoryPacketDevice();
    device.writePacket(packetN(7));
    assertEquals(await device.nextWritten(), packetN(7));
    const later = device.nextWritten();
    device.writePacket(packetN(8));
    assertEquals(await later, packetN(8));
    device.close();
  });
  await t.step("times out with a clear message", async () => {
    const device = new InMemoryPacketDevice({ name: "tun-test" });
    await assertRejects(
      () => device.nextWritten(20),
      Error,
      "No packet written to tun-test within 20 ms",
    );
    // The timed-out waiter must not swallow the next packet.
    device.writePacket(packetN(9));
    assertEquals(await device.nextWritten(), packetN(9));
    device.close();
  });
});
