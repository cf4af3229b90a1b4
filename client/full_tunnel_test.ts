// The kill switch's and resolver's life cycle over fake host operations:
// when each is installed, replaced, kept and removed (the root e2e tests in
// tests/e2e/full_tunnel_test.ts check what they do to a real host).
import { assert, assertEquals, assertRejects } from "../tests/support/assert.ts";
import { parseIp, parsePrefix } from "../shared/ip/ip_address.ts";
import { createLogger } from "../shared/log.ts";
import {
  DEFAULT_FWMARK,
  DEFAULT_ROUTING_TABLE,
  DEFAULT_RULE_PRIORITY,
  planRouting,
} from "../shared/tunnel/full_tunnel.ts";
import { prefixesToRanges } from "../shared/tunnel/routes.ts";
import type { TunnelInfo } from "./client.ts";
import type { DnsSettings, RecoveryResult } from "./dns.ts";
import { FullTunnel, type FullTunnelHostOps } from "./full_tunnel.ts";
import type { KillSwitchMode } from "./config.ts";

const RELAY = { address: parseIp("198.18.0.1")!, port: 4433 };
const TABLE = "masque_vpn_ks_mvpn0";

/** Host operations that record what they were asked, with a kill switch table that may exist. */
class FakeHost implements FullTunnelHostOps {
  readonly calls: string[] = [];
  table: string | undefined;
  recovered: RecoveryResult = { kind: "none" };
  nftMissing = false;
  failDns = false;

  installKillSwitch(ruleset: string): Promise<void> {
    const relays = [...ruleset.matchAll(/ip6? daddr (\S+) (udp|tcp) dport (\d+) accept/g)]
      .map((m) => `${m[1]}:${m[3]}${m[2] === "tcp" ? "/tcp" : ""}`);
    this.calls.push(`kill switch ${relays.join(",")}`);
    this.table = TABLE;
    return Promise.resolve();
  }
  killSwitchInstalled(table: string): Promise<boolean> {
    if (this.nftMissing) return Promise.reject(new Error("The kill switch needs nft"));
    return Promise.resolve(this.table === table);
  }
  removeKillSwitch(table: string): Promise<boolean> {
    this.calls.push("remove kill switch");
    const had = this.table === table;
    this.table = undefined;
    return Promise.resolve(had);
  }
  applyDns(tunName: string, settings: DnsSettings) {
    if (this.failDns) return Promise.reject(new Error("Cannot set DNS: refused"));
    this.calls.push(`dns ${tunName} ${settings.servers.join(",")}`);
    return Promise.resolve({
      backend: "resolv.conf" as const,
      notes: [],
      restore: () => {
        this.calls.push("restore dns");
        return Promise.resolve([]);
      },
    });
  }
  recoverDns(): Promise<RecoveryResult> {
    this.calls.push("recover dns");
    return Promise.resolve(this.recovered);
  }
}

function tunnel(
  advertised: string[],
  more: { dns?: DnsSettings; relay?: typeof RELAY } = {},
): TunnelInfo {
  const plan = planRouting({
    advertised: prefixesToRanges(advertised.map(parsePrefix)),
    wanted: [],
    assigned: [parsePrefix("198.18.100.2/32"), parsePrefix("fd00:100::2/128")],
    relayAddresses: [(more.relay ?? RELAY).address],
    dnsServers: [],
  }, { table: DEFAULT_ROUTING_TABLE, priority: DEFAULT_RULE_PRIORITY, fwmark: DEFAULT_FWMARK });
  return {
    name: "mvpn0",
    mtu: 1400,
    addresses: [],
    routes: [],
    plan,
    relay: more.relay ?? RELAY,
    dns: more.dns,
  };
}

function fullTunnel(mode: KillSwitchMode, host = new FakeHost(), relays = [RELAY]) {
  const lines: string[] = [];
  const hooks = new FullTunnel({
    killSwitch: mode,
    relays,
    tunName: "mvpn0",
    fwmark: DEFAULT_FWMARK,
    allowLan: [],
    ops: host,
    log: createLogger({ level: "debug", write: (line) => lines.push(line) }),
  });
  return { hooks, host, lines };
}

const FULL = ["0.0.0.0/0", "::/0"];
const SPLIT = ["198.18.1.0/24"];

Deno.test("FullTunnel --kill-switch auto: on with a default route, kept on failure, removed by the user", async () => {
  const { hooks, host, lines } = fullTunnel("auto");
  await hooks.prepare();
  assertEquals(host.calls, ["recover dns"]); // no kill switch before the first connection
  await hooks.up(tunnel(FULL));
  assertEquals(host.calls.at(-1), "kill switch 198.18.0.1:4433");
  assert(hooks.killSwitchActive);
  await hooks.down("failure");
  assertEquals(host.table, TABLE, "a failure leaves the kill switch blocking");
  assert(lines.some((line) => line.includes("kill switch left in place")));

  const again = fullTunnel("auto", host);
  await again.hooks.prepare(); // a new start finds it and replaces it
  assertEquals(host.calls.slice(-2), ["recover dns", "kill switch 198.18.0.1:4433"]);
  await again.hooks.up(tunnel(FULL));
  assertEquals(host.calls.length, 4, "the same relay: not installed again");
  await again.hooks.down("user");
  assertEquals(host.calls.at(-1), "remove kill switch");
  assertEquals(host.table, undefined);
});

Deno.test("FullTunnel --kill-switch auto: a split tunnel has none, and removes one a killed client left", async () => {
  const { hooks, host } = fullTunnel("auto");
  await hooks.prepare();
  await hooks.up(tunnel(SPLIT));
  assertEquals(host.calls, ["recover dns"]);
  await hooks.down("user");
  assertEquals(host.calls, ["recover dns"], "nothing of ours to remove");

  host.table = TABLE;
  const next = fullTunnel("auto", host);
  await next.hooks.prepare();
  await next.hooks.up(tunnel(SPLIT));
  assertEquals(host.calls.slice(-2), ["kill switch 198.18.0.1:4433", "remove kill switch"]);
  assertEquals(host.table, undefined);
});

Deno.test("FullTunnel --kill-switch on: before the first connection, replaced when the relay moves", async () => {
  const { hooks, host } = fullTunnel("on");
  await hooks.prepare();
  assertEquals(host.calls, ["recover dns", "kill switch 198.18.0.1:4433"]);
  await hooks.up(tunnel(SPLIT)); // on means on, split tunnel or not
  assertEquals(host.calls.length, 2);
  const moved = { address: parseIp("fd00:0:0:1::1")!, port: 443 };
  await hooks.update(tunnel(SPLIT, { relay: moved }));
  assertEquals(host.calls.at(-1), "kill switch 198.18.0.1:4433,fd00:0:0:1::1:443");
  await hooks.down("user");
  assertEquals(host.table, undefined);
});

Deno.test("FullTunnel: the kill switch lets every configured relay through, so a reconnect to another is not blocked", async () => {
  const second = { address: parseIp("fd00:0:0:1::1")!, port: 443 };
  const overTcp = { address: parseIp("198.18.0.1")!, port: 443, protocol: "tcp" as const };
  const { hooks, host } = fullTunnel("on", new FakeHost(), [RELAY, second, overTcp]);
  await hooks.prepare();
  assertEquals(
    host.calls.at(-1),
    "kill switch 198.18.0.1:4433,fd00:0:0:1::1:443,198.18.0.1:443/tcp",
  );
  await hooks.up(tunnel(FULL));
  await hooks.update(tunnel(FULL, { relay: second })); // a session to the second relay
  await hooks.update(tunnel(FULL, { relay: { ...RELAY, address: parseIp("::ffff:198.18.0.1")! } }));
  assertEquals(host.calls.length, 2, "each relay was in from the start: nothing replaced");
  await hooks.down("user");
  assertEquals(host.table, undefined);
});

Deno.test("FullTunnel --kill-switch off never runs nft; auto without nft still starts", async () => {
  const off = fullTunnel("off");
  off.host.nftMissing = true;
  await off.hooks.prepare();
  await off.hooks.up(tunnel(FULL));
  await off.hooks.down("user");
  assertEquals(off.host.calls, ["recover dns"]);

  const auto = fullTunnel("auto");
  auto.host.nftMissing = true;
  await auto.hooks.prepare(); // cannot look for a stale one: not an error
  assertEquals(auto.host.calls, ["recover dns"]);
});

Deno.test("FullTunnel sets the resolver, changes it when the settings change, and restores it", async () => {
  const { hooks, host } = fullTunnel("off");
  await hooks.prepare();
  await hooks.up(tunnel(FULL));
  assertEquals(host.calls, ["recover dns"], "no nameservers yet");
  const dns = { servers: ["198.18.100.1"], searchDomains: ["corp.example"] };
  await hooks.update(tunnel(FULL, { dns })); // the relay's DNS_ASSIGN after its routes
  assertEquals(host.calls.at(-1), "dns mvpn0 198.18.100.1");
  await hooks.update(tunnel(FULL, { dns: { ...dns } })); // the same: nothing
  assertEquals(host.calls.length, 2);
  await hooks.update(tunnel(FULL, { dns: { servers: ["fd00:100::1"], searchDomains: [] } }));
  assertEquals(host.calls.slice(-2), ["restore dns", "dns mvpn0 fd00:100::1"]);
  await hooks.down("failure");
  assertEquals(host.calls.at(-1), "restore dns", "restored on every exit path");
  assertEquals(hooks.dns, undefined);
});

Deno.test("FullTunnel: a resolver that cannot be set fails the setup with the reason", async () => {
  const { hooks, host } = fullTunnel("off");
  host.failDns = true;
  await assertRejects(
    () => hooks.up(tunnel(FULL, { dns: { servers: ["198.18.100.1"], searchDomains: [] } })),
    Error,
    "Cannot set DNS: refused",
  );
});

Deno.test("FullTunnel.prepare() reports the resolver a killed client left", async () => {
  const { hooks, host, lines } = fullTunnel("off");
  host.recovered = { kind: "restored", pid: 4242, notes: ["/etc/resolv.conf was changed"] };
  await hooks.prepare();
  assert(
    lines.some((line) => /restored the resolver a previous client left .*pid=4242/.test(line)),
  );
  assert(lines.some((line) => line.includes("/etc/resolv.conf was changed")));
});
