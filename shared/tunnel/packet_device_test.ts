// The PacketDevice contract (tests/support/packet_device_contract.ts) on the
// in-memory TUN. ffi/tun_linux_test.ts runs the same contract on the real TUN
// as root, since shared/ never imports ffi/.
import { formatIp, parseIp } from "../ip/ip_address.ts";
import { upperLayerOffset } from "../ip/ip_header.ts";
import { InMemoryPacketDevice } from "../../tests/support/memory_tun.ts";
import { buildIpv4Udp, buildIpv6Udp } from "../../tests/support/packet_builder.ts";
import { checkPacketDeviceContract } from "../../tests/support/packet_device_contract.ts";

const LOCAL = { 4: parseIp("198.18.0.1")!, 6: parseIp("fd00::1")! };
const PEER = { 4: parseIp("198.18.0.9")!, 6: parseIp("fd00::9")! };

Deno.test("the in-memory TUN keeps the PacketDevice contract", async (t) => {
  const device = new InMemoryPacketDevice({ name: "mem7", mtu: 1400 });
  await checkPacketDeviceContract(t, {
    device,
    name: "mem7",
    mtu: 1400,
    local: (version) => LOCAL[version],
    peer: (version) => PEER[version],
    arrive: (version, payload) => {
      const build = version === 4 ? buildIpv4Udp : buildIpv6Udp;
      device.inject(build({
        src: formatIp(LOCAL[version]),
        dst: formatIp(PEER[version]),
        srcPort: 5000,
        dstPort: 5555,
        payload,
      }));
      return Promise.resolve();
    },
    listen: () => ({
      port: 7777,
      next: async () => {
        const packet = await device.nextWritten();
        return packet.subarray(upperLayerOffset(packet) + 8);
      },
      close: () => {},
    }),
  });
});
