/**
 * The contract every {@linkcode PacketDevice} keeps, as steps that run
 * against any device: the in-memory TUN (`shared/tunnel/packet_device_test.ts`,
 * no root) and the real TUN (`ffi/tun_linux_test.ts`, as root). A harness
 * says how to make a packet arrive at the device and how to see what the
 * device delivered; the steps check only what `PacketDevice` promises.
 *
 * @module
 */

import type { PacketDevice } from "../../shared/tunnel/packet_device.ts";
import { formatIp } from "../../shared/ip/ip_address.ts";
import {
  IP_PROTOCOL_UDP,
  ipProtocol,
  upperLayerOffset,
  validateIpPacket,
} from "../../shared/ip/ip_header.ts";
import { assert, assertEquals } from "./assert.ts";
import { within } from "./fake_quic.ts";
import { buildIpv4Udp, buildIpv6Udp } from "./packet_builder.ts";

/** How the contract drives one device. */
export interface PacketDeviceHarness {
  readonly device: PacketDevice;
  /** The name and MTU the device was opened with. */
  readonly name: string;
  readonly mtu: number;
  /** The device's own address of `version` (4 or 16 bytes). */
  local(version: 4 | 6): Uint8Array;
  /** An address of `version` routed through the device, not its own. */
  peer(version: 4 | 6): Uint8Array;
  /** Makes a UDP datagram with `payload`, from `local` to `peer`, arrive for readBatch(). */
  arrive(version: 4 | 6, payload: Uint8Array): Promise<void>;
  /**
   * Starts listening at `local(version)` on a UDP port, for packets written
   * to the device; `next()` resolves with the next datagram's payload.
   */
  listen(version: 4 | 6): { readonly port: number; next(): Promise<Uint8Array>; close(): void };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Runs the contract's steps on the harness's device; the last step closes it. */
export async function checkPacketDeviceContract(
  t: Deno.TestContext,
  harness: PacketDeviceHarness,
): Promise<void> {
  const { device } = harness;
  await t.step("name and mtu are what the device was opened with", () => {
    assertEquals([device.name, device.mtu], [harness.name, harness.mtu]);
  });
  for (const version of [4, 6] as const) {
    await t.step(`readBatch() returns an IPv${version} packet routed into the device`, async () => {
      const text = `into the device over IPv${version} ${crypto.randomUUID()}`;
      await harness.arrive(version, encoder.encode(text));
      const packet = await within(readUdp(device, text), `"${text}" from ${device.name}`, 3000);
      assertEquals(packet[0] >> 4, version);
      assertEquals(validateIpPacket(packet), undefined);
    });
    await t.step(
      `writePacket() delivers an IPv${version} packet and keeps no view of it`,
      async () => {
        const listener = harness.listen(version);
        try {
          const text = `out of the device over IPv${version} ${crypto.randomUUID()}`;
          const build = version === 4 ? buildIpv4Udp : buildIpv6Udp;
          const packet = build({
            src: formatIp(harness.peer(version)),
            dst: formatIp(harness.local(version)),
            srcPort: 4000,
            dstPort: listener.port,
            payload: text,
          });
          assertEquals(device.writePacket(packet), true);
          packet.fill(0); // the device wrote or copied it before returning
          const received = await within(listener.next(), `"${text}" delivered`, 3000);
          assertEquals(decoder.decode(received), text);
        } finally {
          listener.close();
        }
      },
    );
  }
  await t.step(
    "close() releases a pending readBatch() with null; later calls fail quietly",
    async () => {
      const pending = readUntilClosed(device);
      device.close();
      assertEquals(await within(pending, "the pending read to end", 3000), null);
      assertEquals(await device.readBatch(), null);
      assertEquals(
        device.writePacket(buildIpv4Udp({
          src: formatIp(harness.peer(4)),
          dst: formatIp(harness.local(4)),
          srcPort: 1,
          dstPort: 2,
        })),
        false,
      );
      device.close(); // idempotent
    },
  );
}

/** Reads batches until the device closes (null); packets the kernel sends on its own are skipped. */
async function readUntilClosed(device: PacketDevice): Promise<null> {
  while ((await device.readBatch()) !== null) {
    // a router solicitation or MLD report on a real TUN
  }
  return null;
}

/** Reads batches until a UDP packet carries `text`; returns a copy of it. */
async function readUdp(device: PacketDevice, text: string): Promise<Uint8Array> {
  for (;;) {
    const batch = await device.readBatch();
    assert(batch !== null, `${device.name} closed while waiting`);
    for (const packet of batch) {
      if (ipProtocol(packet) !== IP_PROTOCOL_UDP) continue;
      const payload = packet.subarray(upperLayerOffset(packet) + 8);
      if (decoder.decode(payload) === text) return packet.slice();
    }
  }
}
