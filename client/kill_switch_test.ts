/**
 * The kill switch in the client namespace of a client <-> relay <-> target
 * topology (root): `nft -f` accepts it, it blocks a ping and unmarked UDP
 * out of the underlay, it lets marked UDP to the relay's QUIC port through
 * for both families (IPv6 needs neighbour discovery for that), and removing
 * it brings normal traffic back.
 */
import { assert, assertEquals, assertMatch } from "../tests/support/assert.ts";
import { createTopology, needsNamespaces, type Topology } from "../tests/support/netns.ts";
import { parseIp } from "../shared/ip/ip_address.ts";
import { killSwitchRuleset, killSwitchTableName } from "../shared/tunnel/kill_switch.ts";
import {
  installKillSwitch,
  killSwitchDrops,
  killSwitchInstalled,
  NftError,
  removeKillSwitch,
} from "./kill_switch.ts";
import { assertRejects } from "../tests/support/assert.ts";

const TOOLS = new URL("../tests/e2e/tools/", import.meta.url).pathname;
const opts = { ...await needsNamespaces(), sanitizeOps: false, sanitizeResources: false };
const MARK = 0xcabc;
const PORT = 4433;
const TABLE = killSwitchTableName("mvpn0");

async function ping(topo: Topology, host: string, count = 3): Promise<{ code: number }> {
  return await topo.run("client", ["ping", "-c", String(count), "-i", "0.3", "-W", "1", host], {
    check: false,
  });
}

async function sendUdp(
  topo: Topology,
  host: string,
  port: number,
  mark: number,
): Promise<{ sent: boolean; echoed: boolean; error?: string }> {
  const result = await topo.run("client", [
    "deno",
    "run",
    "--unstable-net",
    "--allow-net",
    "--allow-ffi",
    `${TOOLS}marked_udp.ts`,
    "--host",
    host,
    "--port",
    String(port),
    "--mark",
    String(mark),
    "--timeout-ms",
    "2000",
  ]);
  return JSON.parse(result.stdout.trim());
}

Deno.test({
  name:
    "the kill switch blocks the underlay but for marked QUIC to the relay, and goes away on removal",
  ...opts,
  async fn() {
    const topo = await createTopology({ id: `ks${crypto.randomUUID().slice(0, 6)}` });
    try {
      const echo = topo.spawn("relay", [
        "deno",
        "run",
        "--allow-net",
        `${TOOLS}udp_echo.ts`,
        "--port",
        String(PORT),
      ], { name: "udp_echo" });
      await echo.waitForLog(/"ready":true/, 15_000);
      const target = { netns: topo.names.client };
      for (const host of [topo.relayUnderlay4, topo.relayUnderlay6]) {
        assertEquals((await ping(topo, host)).code, 0, `ping ${host} before the kill switch`);
      }

      const ruleset = killSwitchRuleset({
        table: TABLE,
        tunName: "mvpn0",
        fwmark: MARK,
        relays: [
          { address: parseIp(topo.relayUnderlay4)!, port: PORT },
          { address: parseIp(topo.relayUnderlay6)!, port: PORT },
          // A transport over TCP (HTTP/2): nft takes the unmarked rule.
          { address: parseIp(topo.relayUnderlay4)!, port: 443, protocol: "tcp" },
        ],
      });
      await installKillSwitch(ruleset, target);
      assert(await killSwitchInstalled(TABLE, target));
      // Installing again replaces it (what a reconnect to a new address does).
      await installKillSwitch(ruleset, target);
      // A fresh neighbour cache: IPv6 must resolve the relay's link address through the kill switch.
      await topo.run("client", ["ip", "neigh", "flush", "all"]);

      for (const host of [topo.relayUnderlay4, topo.relayUnderlay6]) {
        const blocked = await ping(topo, host, 1);
        assert(blocked.code !== 0, `ping ${host} went through the kill switch`);
        const marked = await sendUdp(topo, host, PORT, MARK);
        assertEquals(marked, { sent: true, echoed: true }, `marked UDP to ${host}`);
        const unmarked = await sendUdp(topo, host, PORT, 0);
        assertEquals(unmarked.echoed, false, `unmarked UDP to ${host}`);
        assertMatch(unmarked.error ?? "", /not permitted/i);
        const otherPort = await sendUdp(topo, host, PORT + 1, MARK);
        assertEquals(otherPort.echoed, false, `marked UDP to ${host} port ${PORT + 1}`);
      }
      const drops = await killSwitchDrops(TABLE, target);
      assert(drops && drops.output >= 6, `drops ${JSON.stringify(drops)}`);

      assertEquals(await removeKillSwitch(TABLE, target), true);
      assertEquals(await killSwitchInstalled(TABLE, target), false);
      assertEquals(await removeKillSwitch(TABLE, target), false);
      assertEquals(await killSwitchDrops(TABLE, target), undefined);
      for (const host of [topo.relayUnderlay4, topo.relayUnderlay6]) {
        assertEquals((await ping(topo, host)).code, 0, `ping ${host} after removal`);
        assertEquals((await sendUdp(topo, host, PORT, 0)).echoed, true, `unmarked UDP to ${host}`);
      }
    } finally {
      await topo.teardown();
    }
  },
});

Deno.test({
  name: "installKillSwitch() reports nft's complaint",
  ...opts,
  async fn() {
    await assertRejects(
      () => installKillSwitch("table inet x { chain c { nonsense } }\n", { netns: "mvpn-none" }),
      NftError,
      "nft -f - failed",
    );
  },
});
