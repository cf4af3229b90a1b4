/**
 * Micro-benchmark of the TUN layer alone (not a test; needs root and
 * iperf3): two network namespaces, each with a TUN opened by `openTun()`,
 * joined by a bridge on this process's main thread (`readBatch()` of one,
 * `writePacket()` into the other), and one iperf3 TCP stream across, with
 * offloads on and then off:
 *
 *   deno run --allow-all tests/bench/tun_bridge_bench.ts [seconds]
 *
 * What the reader and writer workers and the kernel's TUN cost without QUIC:
 * the ceiling of the tunnel's TUN ends on this machine.
 *
 * @module
 */
import { createNetns, deleteNetns, inNetns, v4 } from "../../ffi/_testing.ts";
import { addAddress, setLinkUp } from "../../ffi/netlink.ts";
import { openTun, type TunDevice } from "../../ffi/tun_linux.ts";
import { parseIperfTcp } from "./_measure.ts";

const SECONDS = Number(Deno.args[0] ?? 5);

async function bridge(from: TunDevice, to: TunDevice): Promise<void> {
  for (;;) {
    const batch = await from.readBatch();
    if (batch === null) return;
    for (const packet of batch) to.writePacket(packet);
  }
}

async function run(offload: boolean): Promise<void> {
  const namespaces = [createNetns(), createNetns()];
  const devices: TunDevice[] = [];
  try {
    namespaces.forEach((ns, i) =>
      devices.push(inNetns(ns, () => {
        const device = openTun(`mvbr${i}`, { mtu: 1500, offload });
        addAddress(device.name, { version: 4, address: v4(9, i + 1), prefixLength: 24 });
        setLinkUp(device.name);
        return device;
      }))
    );
    const [a, b] = devices;
    const pumps = [bridge(a, b), bridge(b, a)];
    const server = new Deno.Command("ip", {
      args: ["netns", "exec", namespaces[1], "iperf3", "-s", "-1"],
      stdout: "null",
      stderr: "null",
    }).spawn();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const client = await new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        namespaces[0],
        "iperf3",
        "-c",
        "198.19.9.2",
        "-t",
        `${SECONDS}`,
        "-J",
      ],
      stdout: "piped",
    }).output();
    const result = parseIperfTcp(new TextDecoder().decode(client.stdout));
    await server.status;
    const s = [a.stats, b.stats];
    console.log(
      `offload ${a.offload.padEnd(7)} ${(result.bitsPerSecond / 1e6).toFixed(0).padStart(6)} ` +
        `Mbit/s; super-packets read ${s[0].readSuperPackets}, written ${s[1].writeSuperPackets} ` +
        `(${s[1].writeMergedPackets} packets merged); packets read ${s[0].readPackets}`,
    );
    for (const device of devices) device.close();
    await Promise.all(pumps);
  } finally {
    for (const device of devices) device.close();
    for (const ns of namespaces) deleteNetns(ns);
  }
}

await run(true);
await run(false);
