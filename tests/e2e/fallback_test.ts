/**
 * End to end, UDP blocked: nftables in the client's namespace drops UDP to
 * the relay (as a hotel or office network might). `deno task client` with
 * the default `--transport auto` connects over HTTP/2 within 5 s, and ping,
 * a TCP transfer (SHA-256 checked) and UDP work through the tunnel; when
 * the block is lifted the client moves to HTTP/3 with the same addresses,
 * and traffic goes on. The same with `--transport webtransport` (which
 * stays on WebTransport: it was chosen). Needs root; skipped otherwise.
 */
import { assert, assertEquals } from "../support/assert.ts";
import { needsNamespaces, withTopology } from "../support/netns.ts";
import type { FailureLogs, Topology } from "../support/netns.ts";
import { startClient, startRelay, startTargetServers } from "../support/vpn.ts";
import type { ClientProcess } from "../support/vpn.ts";

const TOOLS = new URL("./tools/", import.meta.url).pathname;
const opts = { ...await needsNamespaces(), sanitizeOps: false, sanitizeResources: false };
const TABLE = "masque_test_block_udp";

/** What the client's status file says about its transport. */
interface TransportStatus {
  transport?: string;
  transportReason?: string;
  addresses?: string[];
}

/** The logs printed when a test fails. */
const FAILURE_LOGS: FailureLogs = { names: ["relay", "client"], lines: 30 };

/** Drops UDP from the client's namespace to the relay, both families. */
async function blockUdp(topo: Topology): Promise<void> {
  const ruleset = `table inet ${TABLE} {
  chain output {
    type filter hook output priority 0; policy accept;
    ip daddr ${topo.relayUnderlay4} udp dport 4433 counter drop
    ip6 daddr ${topo.relayUnderlay6} udp dport 4433 counter drop
  }
}
`;
  await topo.run("client", ["nft", "-f", "-"], { stdin: new TextEncoder().encode(ruleset) });
}

async function unblockUdp(topo: Topology): Promise<void> {
  await topo.run("client", ["nft", "delete", "table", "inet", TABLE]);
}

/** UDP datagrams the block dropped. */
async function droppedUdp(topo: Topology): Promise<number> {
  const out = await topo.run("client", ["nft", "list", "table", "inet", TABLE]);
  return [...out.stdout.matchAll(/counter packets (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
}

/** Ping (v4 and v6), a UDP echo and a 4 MB TCP transfer with its SHA-256, through the tunnel. */
async function traffic(topo: Topology, what: string): Promise<void> {
  for (const host of [topo.target4, topo.target6]) {
    const ping = await topo.run("client", ["ping", "-c", "3", "-i", "0.2", "-W", "2", host], {
      check: false,
    });
    assertEquals(ping.code, 0, `${what}: ping ${host} failed:\n${ping.stdout}${ping.stderr}`);
  }
  const text = `hello ${what}`;
  const code = `
    const s = Deno.listenDatagram({ transport: "udp", hostname: "0.0.0.0", port: 0 });
    const timer = setTimeout(() => { console.log("timeout"); Deno.exit(1); }, 5000);
    await s.send(new TextEncoder().encode(${JSON.stringify(text)}),
      { transport: "udp", hostname: "${topo.target4}", port: 7 });
    const [data] = await s.receive();
    clearTimeout(timer);
    console.log(new TextDecoder().decode(data));
    s.close();`;
  const udp = await topo.run("client", [Deno.execPath(), "eval", code], { check: false });
  assertEquals(udp.stdout.trim(), text, `${what}: UDP echo`);
  const blast = await topo.run("client", [
    Deno.execPath(),
    "run",
    "--allow-net",
    `${TOOLS}tcp_blast.ts`,
    "client",
    ...["--host", topo.target4, "--port", "5201", "--bytes", String(4 * 1024 * 1024)],
    ...["--timeout-ms", "60000"],
  ], { check: false, timeoutMs: 70_000 });
  const result = JSON.parse(blast.stdout.trim().split("\n").pop() ?? "{}");
  assertEquals(result.ok, true, `${what}: TCP transfer failed: ${blast.stdout}${blast.stderr}`);
  console.log(`  ${what}: 4 MB TCP in ${result.seconds} s (${result.mbps} Mbit/s), SHA-256 equal`);
}

/** Polls the client's status file until `check` holds. */
async function statusWhen(
  client: ClientProcess,
  check: (status: TransportStatus) => boolean,
  what: string,
  ms = 20_000,
): Promise<TransportStatus> {
  const deadline = Date.now() + ms;
  let last: TransportStatus = {};
  while (Date.now() < deadline) {
    last = await client.status().catch(() => ({})) as TransportStatus;
    if (check(last)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`Timed out waiting for ${what}; last status ${JSON.stringify(last)}`);
}

/** Milliseconds between the client's "connecting" and "tunnel up" log lines. */
async function setupMs(topo: Topology): Promise<number> {
  const log = await Deno.readTextFile(`${topo.logDir}/client.log`);
  const at = (pattern: RegExp) => {
    const line = log.split("\n").find((l) => pattern.test(l));
    assert(line !== undefined, `no log line ${pattern}`);
    return Date.parse(line.split(" ")[0]);
  };
  return at(/ connecting /) - 0 > 0 ? at(/ tunnel up /) - at(/ connecting /) : NaN;
}

Deno.test({
  name:
    "e2e UDP blocked: --transport auto connects over HTTP/2 within 5 s, moves back to HTTP/3 with its addresses",
  ...opts,
  async fn() {
    await withTopology("e2e-fallback", FAILURE_LOGS, async (topo) => {
      await startTargetServers(topo);
      const relay = await startRelay(topo);
      await blockUdp(topo);
      // The default transport is auto; --h3-retry 5 makes the test wait 5 s, not 5 min.
      const client = await startClient(topo, relay, { extraArgs: ["--h3-retry", "5"] });
      const took = await setupMs(topo);
      assert(took < 5000, `connected in ${took} ms`);
      console.log(`  auto with UDP blocked: tunnel up over HTTP/2 in ${took} ms`);
      const onH2 = await statusWhen(client, (s) => s.transport === "h2", "HTTP/2");
      assert(
        onH2.transportReason?.startsWith("auto: HTTP/2 because HTTP/3 failed"),
        onH2.transportReason,
      );
      assertEquals(onH2.addresses, client.addresses);
      assert(await droppedUdp(topo) > 0, "the block dropped the QUIC handshake");
      await traffic(topo, "over HTTP/2");

      await unblockUdp(topo);
      const onH3 = await statusWhen(
        client,
        (s) => s.transport === "h3",
        "the move to HTTP/3",
        30_000,
      );
      assertEquals(onH3.transportReason, "auto: moved back to HTTP/3, which works again");
      assertEquals(onH3.addresses, client.addresses, "the same addresses after the move");
      await client.process.waitForLog(/moved to HTTP\/3/, 5000);
      await traffic(topo, "after the move to HTTP/3");
      const relayStatus = await relay.status();
      assertEquals(relayStatus.sessions.length, 1);
    });
  },
});

Deno.test({
  name: "e2e UDP blocked: --transport webtransport carries ping, TCP and UDP",
  ...opts,
  async fn() {
    await withTopology("e2e-wt", FAILURE_LOGS, async (topo) => {
      await startTargetServers(topo);
      const relay = await startRelay(topo);
      await blockUdp(topo);
      const client = await startClient(topo, relay, { extraArgs: ["--transport", "webtransport"] });
      const took = await setupMs(topo);
      assert(took < 5000, `connected in ${took} ms`);
      console.log(`  webtransport with UDP blocked: tunnel up in ${took} ms`);
      const status = await statusWhen(
        client,
        (s) => s.transport === "webtransport",
        "WebTransport",
      );
      assertEquals(status.transportReason, "--transport webtransport");
      await traffic(topo, "over WebTransport");
      await unblockUdp(topo);
      await traffic(topo, "over WebTransport, UDP open again");
      const after = await statusWhen(client, (s) => s.transport !== undefined, "status");
      assertEquals(after.transport, "webtransport", "a chosen transport stays");
      assertEquals(after.addresses, client.addresses);
    });
  },
});
