// Root tests: real TUN interfaces named mvt<random> in the current network
// namespace, with addresses in 198.19.<random>.0/24 and fd00:<random>::/64.
// Every interface is removed in a finally block.
import { assert, assertEquals, assertThrows } from "../tests/support/assert.ts";
import { skipUnlessRoot } from "../tests/support/skip.ts";
import { StructError } from "./_struct.ts";
import {
  forceDeleteLink,
  IS_ROOT,
  randomSubnet,
  showLink,
  udpPacket,
  udpPayload,
  uniqueName,
  v4,
  v6,
  withTimeout,
} from "./_testing.ts";
import { LibcError } from "./libc.ts";
import { addAddress, setLinkUp } from "./netlink.ts";
import { injectTunFault, openTun, type TunDevice, type TunOptions } from "./tun_linux.ts";
import { checkPacketDeviceContract } from "../tests/support/packet_device_contract.ts";

const ROOT_ONLY = await skipUnlessRoot(IS_ROOT, ["ip"]);

/** shared/tunnel/packet_device.ts's interface, copied (ffi/ does not import shared/). */
interface PacketDevice {
  readonly name: string;
  readonly mtu: number;
  readBatch(): Promise<Uint8Array[] | null>;
  writePacket(packet: Uint8Array): boolean;
  close(): void;
}
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A TUN with 198.19.S.1/24 and fd00:S::1/64, up; removed after `body`. */
async function withAddressedTun(
  options: TunOptions,
  body: (device: TunDevice, subnet: number) => Promise<void>,
): Promise<void> {
  const device = openTun(uniqueName(), options);
  try {
    const subnet = randomSubnet();
    addAddress(device.name, { version: 4, address: v4(subnet, 1), prefixLength: 24 });
    addAddress(device.name, { version: 6, address: v6(subnet, 1), prefixLength: 64 });
    setLinkUp(device.name);
    await body(device, subnet);
  } finally {
    device.close();
    forceDeleteLink(device.name);
  }
}

/**
 * Reads batches until one packet's UDP payload equals `text`; returns that packet (copied).
 * Takes a PacketDevice so that type checking proves a TunDevice is one.
 */
async function readUdp(device: PacketDevice, text: string): Promise<Uint8Array> {
  const read = async () => {
    for (;;) {
      const batch = await device.readBatch();
      assert(batch, "device closed while waiting");
      for (const packet of batch) {
        const payload = udpPayload(packet);
        if (payload && decoder.decode(payload) === text) return packet.slice();
      }
    }
  };
  return await withTimeout(read(), 3000, `"${text}" from ${device.name}`);
}

Deno.test({
  name: "the real TUN keeps the PacketDevice contract",
  ...ROOT_ONLY,
  fn: (t) =>
    withAddressedTun({ mtu: 1400 }, async (device, subnet) => {
      const local = { 4: v4(subnet, 1), 6: v6(subnet, 1) };
      const peer = { 4: v4(subnet, 9), 6: v6(subnet, 9) };
      const sender = Deno.listenDatagram({ transport: "udp", hostname: "::", port: 0 });
      try {
        await checkPacketDeviceContract(t, {
          device,
          name: device.name,
          mtu: 1400,
          local: (version) => local[version],
          peer: (version) => peer[version],
          arrive: async (version, payload) => {
            // The kernel routes it into the TUN: the peer is on the TUN's subnet.
            const hostname = version === 4
              ? `198.19.${subnet}.9`
              : `fd00:${subnet.toString(16)}::9`;
            await sender.send(payload, { transport: "udp", hostname, port: 5555 });
          },
          listen: (version) => {
            const hostname = version === 4
              ? `198.19.${subnet}.1`
              : `fd00:${subnet.toString(16)}::1`;
            const socket = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
            return {
              port: (socket.addr as Deno.NetAddr).port,
              next: async () => (await socket.receive())[0],
              close: () => socket.close(),
            };
          },
        });
      } finally {
        sender.close();
      }
    }),
});

Deno.test("openTun() rejects bad names and options before touching the kernel", () => {
  assertThrows(
    () => openTun("much-too-long-name"),
    StructError,
    'Cannot use interface name "much-too-long-name": it is 18 bytes, longer than 15',
  );
  assertThrows(
    () => openTun("mvt0", { ringSlots: 3 }),
    RangeError,
    "Cannot open TUN mvt0: ringSlots 3 is not a power of two",
  );
  assertThrows(
    () => openTun("mvt0", { maxBatch: 0 }),
    RangeError,
    "Cannot open TUN mvt0: maxBatch 0 is not a positive integer",
  );
  assertThrows(
    () => openTun("mvt0", { headroom: -1 }),
    RangeError,
    "Cannot open TUN mvt0: headroom -1 is outside 0..1024",
  );
});

Deno.test({
  name: "openTun() creates a TUN interface and close() removes it",
  ...ROOT_ONLY,
  fn: async () => {
    const name = uniqueName();
    const device = openTun(name, { mtu: 1400 });
    try {
      assertEquals([device.name, device.mtu], [name, 1400]);
      const link = showLink(name);
      assert(link, `${name} should exist`);
      assertEquals(link.mtu, 1400);
      assert(link.flags.includes("POINTOPOINT") && link.flags.includes("NOARP"), `${link.flags}`);
      const pending = device.readBatch();
      device.close();
      assertEquals(showLink(name), null); // gone as soon as close() returns
      assertEquals(await pending, null); // a waiting reader is released
      assertEquals(await device.readBatch(), null);
      device.close(); // idempotent
      assertEquals(device.writePacket(new Uint8Array(28)), false);
      assertEquals(device.stats.writeErrors, 1);
    } finally {
      device.close();
      forceDeleteLink(name);
    }
  },
});

Deno.test({
  name: "openTun() of a name already open fails with EBUSY unless multi-queue",
  ...ROOT_ONLY,
  fn: () => {
    const name = uniqueName();
    const first = openTun(name);
    try {
      assertThrows(
        () => openTun(name),
        LibcError,
        `Cannot create TUN ${name}: Device or resource busy (EBUSY)`,
      );
    } finally {
      first.close();
    }
    const queue1 = openTun(name, { multiQueue: true });
    try {
      const queue2 = openTun(name, { multiQueue: true });
      assertEquals(queue2.name, name);
      queue2.close();
      assert(showLink(name), "the interface stays while one queue is open");
    } finally {
      queue1.close();
      forceDeleteLink(name);
    }
  },
});

Deno.test({
  name: "readBatch() returns packets the kernel routes into the TUN",
  ...ROOT_ONLY,
  fn: () =>
    withAddressedTun({}, async (device, subnet) => {
      const socket = Deno.listenDatagram({ transport: "udp", hostname: "::", port: 0 });
      try {
        const text4 = `to the tun over IPv4 ${crypto.randomUUID()}`;
        const target4 = `198.19.${subnet}.9`;
        await socket.send(encoder.encode(text4), {
          transport: "udp",
          hostname: target4,
          port: 5555,
        });
        const packet4 = await readUdp(device, text4);
        assertEquals(packet4[0] >> 4, 4); // IPv4
        assertEquals(packet4[9], 17); // UDP
        assertEquals(packet4.subarray(16, 20), v4(subnet, 9)); // destination
        assertEquals(packet4.subarray(12, 16), v4(subnet, 1)); // source: our address
        assertEquals((packet4[22] << 8) | packet4[23], 5555); // destination port

        const text6 = `to the tun over IPv6 ${crypto.randomUUID()}`;
        const target6 = `fd00:${subnet.toString(16)}::9`;
        await socket.send(encoder.encode(text6), {
          transport: "udp",
          hostname: target6,
          port: 5556,
        });
        const packet6 = await readUdp(device, text6);
        assertEquals(packet6[0] >> 4, 6);
        assertEquals(packet6[6], 17); // next header UDP
        assertEquals(packet6.subarray(24, 40), v6(subnet, 9));
        assertEquals((packet6[42] << 8) | packet6[43], 5556);
        assert(device.stats.readPackets >= 2);
      } finally {
        socket.close();
      }
    }),
});

/** Polls `condition` every 10 ms for up to 3 s (the writer worker counts asynchronously). */
async function eventually(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

for (const writer of ["direct", "worker"] as const) {
  Deno.test({
    name: `writePacket() hands packets to the kernel (writer ${writer})`,
    ...ROOT_ONLY,
    fn: (t) =>
      withAddressedTun({ writer }, async (device, subnet) => {
        assertEquals(device.writer, writer);
        for (const version of [4, 6]) {
          await t.step(`IPv${version}`, async () => {
            const local = version === 4 ? v4(subnet, 1) : v6(subnet, 1);
            const remote = version === 4 ? v4(subnet, 2) : v6(subnet, 2);
            const hostname = version === 4
              ? `198.19.${subnet}.1`
              : `fd00:${subnet.toString(16)}::1`;
            const socket = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
            try {
              const port = (socket.addr as Deno.NetAddr).port;
              // Two back to back: with the writer worker the first (after a
              // quiet spell) is written at once, the second goes through the ring.
              const texts = [1, 2].map((n) => `from the tun ${n} ${crypto.randomUUID()}`);
              for (const text of texts) {
                const packet = udpPacket(remote, local, 4000, port, encoder.encode(text));
                assertEquals(device.writePacket(packet), true);
                packet.fill(0); // the worker wrote a copy, not the caller's buffer
              }
              for (const text of texts) {
                const [data, from] = await withTimeout(socket.receive(), 3000, "the datagram");
                assertEquals(decoder.decode(data), text);
                assertEquals((from as Deno.NetAddr).port, 4000);
              }
            } finally {
              socket.close();
            }
          });
        }
        await eventually(() => device.stats.writtenPackets === 4, "4 written packets");
        // A packet the kernel refuses (not IP) is counted, not thrown. Right
        // after another write it goes through the worker's ring, which learns
        // of the refusal after writePacket() returned true.
        const notIp = new Uint8Array([0x10, 0, 0, 0]);
        await new Promise((resolve) => setTimeout(resolve, 5));
        assertEquals(device.writePacket(notIp), false); // quiet: written at once
        assertEquals(device.stats.writeErrors, 1);
        assertEquals(device.writePacket(notIp), writer === "worker");
        await eventually(() => device.stats.writeErrors === 2, "the second refused write");
        assert(device.stats.lastWriteErrno > 0, "errno of the refused write");
        assertEquals(device.stats.writeDrops, 0);
      }),
  });
}

Deno.test({
  name:
    "writePacket() refuses packets over 65535 bytes; the writer worker drops (counted) when full",
  ...ROOT_ONLY,
  fn: () =>
    withAddressedTun({ writer: "worker", writeRingSlots: 4, mtu: 1280 }, async (device, subnet) => {
      assertEquals(device.writePacket(new Uint8Array(65536)), false);
      assertEquals(device.stats.writeErrors, 1);
      assertEquals(device.stats.lastWriteErrno, 90); // EMSGSIZE
      const socket = Deno.listenDatagram({
        transport: "udp",
        hostname: `198.19.${subnet}.1`,
        port: 0,
      });
      try {
        const port = (socket.addr as Deno.NetAddr).port;
        const packet = udpPacket(v4(subnet, 2), v4(subnet, 1), 4000, port, new Uint8Array(100));
        // 100 in one turn: the worker cannot keep up with a 4-slot ring.
        let accepted = 0;
        for (let i = 0; i < 100; i++) if (device.writePacket(packet)) accepted++;
        assert(accepted >= 4 && accepted < 100, `accepted ${accepted}`);
        assertEquals(device.stats.writeDrops, 100 - accepted);
        assertEquals(device.stats.writeRingFullEpisodes, 1);
        await eventually(() => device.stats.writtenPackets === accepted, `${accepted} written`);
      } finally {
        socket.close();
      }
    }),
});

/** A UDP packet from 198.19.S.2 to 198.19.S.1:`port` of `size` bytes whose payload starts with `tag`. */
function sizedPacket(subnet: number, port: number, size: number, tag: number): Uint8Array {
  const payload = new Uint8Array(size - 28);
  for (let i = 0; i < payload.length; i++) payload[i] = (tag + i) & 0xff;
  new DataView(payload.buffer).setUint32(0, tag);
  return udpPacket(v4(subnet, 2), v4(subnet, 1), 4000, port, payload);
}

for (const writer of ["worker", "direct"] as const) {
  Deno.test({
    name: `a TUN with MTU 1280 takes 1400-, 9000- and 65535-byte packets (writer ${writer})`,
    ...ROOT_ONLY,
    fn: () =>
      withAddressedTun({ writer, mtu: 1280, writeSpillBytes: 1 << 17 }, async (device, subnet) => {
        const socket = Deno.listenDatagram({
          transport: "udp",
          hostname: `198.19.${subnet}.1`,
          port: 0,
        });
        try {
          const port = (socket.addr as Deno.NetAddr).port;
          // Back to back, so that after the first (written at once after a
          // quiet spell) they go through the ring: slots up to 1500 bytes,
          // the spill ring beyond. Three rounds wrap the 128 KiB spill ring.
          const sizes = [100, 1400, 100, 9000, 1281, 65535, 9000, 9000, 100, 9000, 9000];
          const rounds = 3;
          let tag = 1;
          for (let round = 0; round < rounds; round++) {
            const sent = sizes.map((size) => sizedPacket(subnet, port, size, tag++));
            for (const packet of sent) assertEquals(device.writePacket(packet), true);
            for (const packet of sent) {
              const [data] = await withTimeout(socket.receive(), 3000, "a datagram");
              assertEquals(data.length, packet.length - 28);
              assertEquals(data, packet.subarray(28)); // intact and in order
            }
          }
          const oversize = sizes.filter((size) => size > 1280).length * rounds;
          assertEquals(device.stats.oversizePackets, oversize);
          await eventually(
            () => device.stats.writtenPackets === sizes.length * rounds,
            "every packet written",
          );
          assertEquals(device.stats.writeErrors, 0);
          assertEquals(device.stats.writeDrops, 0);
          // The kernel counts them as received on the link, larger than its MTU or not.
          assertEquals(device.mtu, 1280);
        } finally {
          socket.close();
        }
      }),
  });
}

Deno.test({
  name: "readBatch() keeps order through a small full ring and honours maxBatch and headroom",
  ...ROOT_ONLY,
  fn: () =>
    withAddressedTun({ ringSlots: 4, maxBatch: 3, headroom: 16 }, async (device, subnet) => {
      const socket = Deno.listenDatagram({ transport: "udp", hostname: "0.0.0.0", port: 0 });
      try {
        const count = 40;
        const tag = crypto.randomUUID().slice(0, 8);
        for (let i = 0; i < count; i++) {
          await socket.send(encoder.encode(`${tag} ${i}`), {
            transport: "udp",
            hostname: `198.19.${subnet}.9`,
            port: 7000,
          });
        }
        await new Promise((resolve) => setTimeout(resolve, 50)); // the worker fills all 4 slots
        const seen: number[] = [];
        const sizes: number[] = [];
        await withTimeout(
          (async () => {
            while (seen.length < count) {
              const batch = await device.readBatch();
              assert(batch);
              sizes.push(batch.length);
              for (const packet of batch) {
                // The headroom in front of the packet is ours to write.
                const room = new Uint8Array(packet.buffer, packet.byteOffset - 16, 16);
                room.fill(0xff);
                const text = decoder.decode(udpPayload(packet) ?? new Uint8Array());
                if (text.startsWith(`${tag} `)) seen.push(Number(text.split(" ")[1]));
              }
            }
          })(),
          3000,
          `${count} datagrams`,
        );
        assertEquals(seen, Array.from({ length: count }, (_, i) => i));
        assertEquals(sizes[0], 3); // the ring held 4 packets, maxBatch 3
        assert(sizes.every((size) => size >= 1 && size <= 3), `batch sizes ${sizes}`);
      } finally {
        socket.close();
      }
    }),
});

Deno.test({
  name: "a closed device does not keep the process alive",
  ...ROOT_ONLY,
  fn: async () => {
    // A child process opens a TUN, starts a read, closes the device, and must exit on its own.
    const script = `
      import { openTun } from ${JSON.stringify(new URL("./tun_linux.ts", import.meta.url).href)};
      const device = openTun(${JSON.stringify(uniqueName())});
      const pending = device.readBatch();
      setTimeout(() => device.close(), 50);
      console.log(String(await pending));
    `;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", "--no-config", script],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = await withTimeout(child.output(), 10000, "the child process to exit").catch(
      (error) => {
        child.kill("SIGKILL");
        throw error;
      },
    );
    assertEquals(decoder.decode(output.stderr), "");
    assertEquals(decoder.decode(output.stdout).trim(), "null");
    assertEquals(output.code, 0);
  },
});

/** A TunLog that keeps what it is told. */
function memoryLog() {
  const lines: { level: string; message: string; fields: Record<string, unknown> }[] = [];
  return {
    lines,
    warn: (message: string, fields: Record<string, unknown> = {}) => {
      if (Deno.env.get("TUNDBG")) console.log(performance.now(), "WARN", message, fields);
      lines.push({ level: "warn", message, fields });
    },
    error: (message: string, fields: Record<string, unknown> = {}) => {
      if (Deno.env.get("TUNDBG")) console.log(performance.now(), "ERROR", message, fields);
      lines.push({ level: "error", message, fields });
    },
  };
}

/** How long after a fault forwarding must work again, ms (the watchdog needs STALL_MS + WATCHDOG_MS). */
const RECOVERY_BOUND_MS = 3000;

for (const fault of ["kill-writer", "stall-writer", "throw-writer"] as const) {
  Deno.test({
    name: `a writer worker that fails under load (${fault}) is restarted and forwarding recovers`,
    ...ROOT_ONLY,
    fn: async () => {
      const log = memoryLog();
      await withAddressedTun(
        { writer: "worker", writeRingSlots: 256, log },
        async (device, subnet) => {
          const socket = Deno.listenDatagram({
            transport: "udp",
            hostname: `198.19.${subnet}.1`,
            port: 0,
          });
          // Load: a socket that is never read, so the kernel drops at its buffer.
          const sink = Deno.listenDatagram({
            transport: "udp",
            hostname: `198.19.${subnet}.1`,
            port: 0,
          });
          let loading = true;
          try {
            const port = (socket.addr as Deno.NetAddr).port;
            const sinkPort = (sink.addr as Deno.NetAddr).port;
            const load = udpPacket(
              v4(subnet, 2),
              v4(subnet, 1),
              4001,
              sinkPort,
              new Uint8Array(1000),
            );
            const loader = (async () => {
              while (loading) {
                for (let i = 0; i < 300; i++) device.writePacket(load);
                await new Promise((resolve) => setTimeout(resolve, 2));
              }
            })();
            // Markers every 20 ms: "seq sentAt".
            let seq = 0;
            const sentAt = new Map<number, number>();
            const marker = setInterval(() => {
              seq++;
              sentAt.set(seq, performance.now());
              device.writePacket(
                udpPacket(v4(subnet, 2), v4(subnet, 1), 4000, port, encoder.encode(`m ${seq}`)),
              );
            }, 20);
            try {
              // Forwarding works under load before the fault.
              const before = await withTimeout(socket.receive(), 3000, "a marker before the fault");
              assert(decoder.decode(before[0]).startsWith("m "));
              const faultAt = performance.now();
              injectTunFault(device, fault);
              // The first marker sent after the fault that arrives.
              const recovered = await withTimeout(
                (async () => {
                  for (;;) {
                    const [data] = await socket.receive();
                    const n = Number(decoder.decode(data).split(" ")[1]);
                    if (sentAt.get(n)! > faultAt + 50) return performance.now() - faultAt;
                  }
                })(),
                RECOVERY_BOUND_MS + 2000,
                "a marker after the fault",
              );
              console.log(
                `  ${fault}: forwarding back ${Math.round(recovered)} ms after the fault`,
              );
              assert(recovered < RECOVERY_BOUND_MS, `recovered after ${recovered} ms`);
            } finally {
              clearInterval(marker);
              loading = false;
              await loader;
            }
            const stats = device.stats;
            assertEquals(stats.writerRestarts, 1);
            assertEquals(stats.readerRestarts, 0);
            const restart = log.lines.find((l) => l.message === "TUN writer worker restarted");
            assert(restart, `no restart logged: ${JSON.stringify(log.lines)}`);
            assertEquals(restart.level, "error");
            for (const field of ["why", "head", "tail", "state", "lastErrno", "dropped"]) {
              assert(
                field in restart.fields,
                `restart log lacks ${field}: ${JSON.stringify(restart)}`,
              );
            }
            assertEquals(restart.fields.tun, device.name);
            if (fault === "throw-writer") {
              assertEquals(restart.fields.why, "died: fault injected by a test");
            } else {
              assert(
                String(restart.fields.why).startsWith("no progress for "),
                `${restart.fields.why}`,
              );
              // The ring filled while the writer was gone: a warning with its state.
              const full = log.lines.find((l) => l.message === "TUN write ring full, dropping");
              assert(full, `no ring-full warning: ${JSON.stringify(log.lines)}`);
              assertEquals(full.level, "warn");
              for (const field of ["head", "tail", "lastErrno", "dropped", "ms"]) {
                assert(
                  field in full.fields,
                  `ring-full log lacks ${field}: ${JSON.stringify(full)}`,
                );
              }
              assert(
                stats.writeDrops > 0 && stats.writeRingFullEpisodes >= 1,
                JSON.stringify(stats),
              );
            }
          } finally {
            loading = false;
            socket.close();
            sink.close();
          }
        },
      );
    },
  });
}

for (const fault of ["kill-reader", "stall-reader", "throw-reader"] as const) {
  Deno.test({
    name:
      `a reader worker that fails (${fault}) is restarted and a waiting readBatch() gets packets`,
    ...ROOT_ONLY,
    fn: async () => {
      const log = memoryLog();
      await withAddressedTun({ log }, async (device, subnet) => {
        const socket = Deno.listenDatagram({ transport: "udp", hostname: "0.0.0.0", port: 0 });
        try {
          const send = (text: string) =>
            socket.send(encoder.encode(text), {
              transport: "udp",
              hostname: `198.19.${subnet}.9`,
              port: 7000,
            });
          await send("before");
          await readUdp(device, "before");
          const faultAt = performance.now();
          injectTunFault(device, fault);
          const pending = readUdp(device, "after"); // waits on the ring of the failed reader
          await new Promise((resolve) => setTimeout(resolve, 100));
          await send("after");
          await pending;
          const recovered = performance.now() - faultAt;
          console.log(`  ${fault}: reading again ${Math.round(recovered)} ms after the fault`);
          assert(recovered < RECOVERY_BOUND_MS, `recovered after ${recovered} ms`);
          assertEquals(device.stats.readerRestarts, 1);
          const restart = log.lines.find((l) => l.message === "TUN reader worker restarted");
          assert(restart, `no restart logged: ${JSON.stringify(log.lines)}`);
          assertEquals(restart.level, "error");
          for (const field of ["why", "head", "tail", "state", "errno"]) {
            assert(
              field in restart.fields,
              `restart log lacks ${field}: ${JSON.stringify(restart)}`,
            );
          }
        } finally {
          socket.close();
        }
      });
    },
  });
}
