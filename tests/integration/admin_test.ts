/**
 * The admin endpoint (`host/admin.ts`) of a real Relay and Client over QUIC
 * on 127.0.0.1 (in-memory TUNs, fake netlink): `/metrics` in the Prometheus
 * text format that `promtool check metrics` accepts, its counters moving as
 * packets flow; `/healthz`; `/readyz` turning false when the relay drains;
 * `/status`; and `deno task status` (host/status.ts) reading it.
 */
import { assert, assertEquals } from "../support/assert.ts";
import { dialTestServer } from "../support/certs.ts";
import { within } from "../support/fake_quic.ts";
import { InMemoryPacketDevice } from "../support/memory_tun.ts";
import { buildIcmpv4Echo } from "../support/packet_builder.ts";
import { startTestRelay } from "../support/relay_harness.ts";
import { skipUnlessCommands } from "../support/skip.ts";
import { serveAdmin } from "../../host/admin.ts";
import type { AdminServer } from "../../host/admin.ts";
import { countProcess } from "../../host/process_metrics.ts";
import { Client } from "../../client/client.ts";
import type { ClientRouting, InstalledPlan } from "../../client/client.ts";
import type { RoutingPlan } from "../../shared/tunnel/full_tunnel.ts";
import { createLogger, nullLogger } from "../../shared/log.ts";
import { parsePrefix } from "../../shared/ip/ip_address.ts";
import { STATUS_WIDTH } from "../../shared/status_view.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const ROOT = new URL("../../", import.meta.url).pathname;

const PROMTOOL = await skipUnlessCommands(["promtool"]);

const netlink = {
  setLinkMtu() {},
  setLinkTxQueueLength() {},
  addAddress() {},
  deleteAddress() {},
  setLinkUp() {},
};

/** Policy routing that installs nothing (the plan is what the status shows). */
const routing: ClientRouting = {
  removeStale: () => ({ rules: [], routes: 0 }),
  install: (plan: RoutingPlan): InstalledPlan => ({
    plan,
    update() {},
    remove: () => [],
  }),
};

/** A relay and a client, each with its admin endpoint on a free port. */
async function withBoth(
  fn: (ctx: {
    relay: Awaited<ReturnType<typeof startTestRelay>>;
    client: Client;
    tun: InMemoryPacketDevice;
    relayAdmin: AdminServer;
    clientAdmin: AdminServer;
  }) => Promise<void>,
) {
  const relay = await startTestRelay();
  countProcess(relay.relay.counters);
  let tun!: InMemoryPacketDevice;
  const client = new Client({
    relays: [{
      name: `127.0.0.1:${relay.port}`,
      connect: () => dialTestServer(relay.port),
      authority: "localhost",
      template: "/.well-known/masque/ip/{target}/{ipproto}/",
    }],
    openTun: (name, { mtu }) => tun = new InMemoryPacketDevice({ name, mtu }),
    netlink,
    routing,
    tunName: "mvpn-test",
    mode: "datagram",
    mtu: 1280,
    routes: [parsePrefix("198.18.1.0/24")],
    log: createLogger({ level: "error", write: () => {} }),
    timing: { pmtuWaitMs: 0 },
  });
  const relayAdmin = serveAdmin({ hostname: "127.0.0.1", port: 0 }, {
    counters: relay.relay.counters,
    status: () => relay.relay.status(),
    notReady: () => (relay.relay.draining ? ["draining"] : []),
  }, nullLogger);
  const clientAdmin = serveAdmin({ hostname: "127.0.0.1", port: 0 }, {
    counters: client.counters,
    status: () => client.status(),
    notReady: () => (client.state === "up" ? [] : [`client ${client.state}`]),
  }, nullLogger);
  try {
    await within(client.start(), "the client's start", 10_000);
    await fn({ relay, client, tun, relayAdmin, clientAdmin });
  } finally {
    await client.stop();
    await relay.close();
    await relayAdmin.close();
    await clientAdmin.close();
  }
}

async function get(server: AdminServer, path: string, method = "GET") {
  const response = await fetch(`http://127.0.0.1:${server.addr.port}${path}`, { method });
  return {
    status: response.status,
    type: response.headers.get("content-type"),
    body: await response.text(),
  };
}

/** The value of one sample line of a metrics text, or undefined. */
function sample(text: string, line: string): number | undefined {
  const found = text.split("\n").find((l) => l.startsWith(line + " "));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

Deno.test({
  name: "admin endpoint: /metrics counters move as packets flow; /healthz, /readyz, 404, 405",
  ...opts,
  fn: () =>
    withBoth(async ({ relay, tun, relayAdmin, clientAdmin }) => {
      const before = await get(clientAdmin, "/metrics");
      assertEquals(before.type, "text/plain; version=0.0.4; charset=utf-8");
      assertEquals(sample(before.body, 'tunnel_packets_total{direction="outbound"}'), 0);
      const request = buildIcmpv4Echo({ src: "198.18.100.2", dst: "198.18.1.2", sequence: 1 });
      tun.inject(request);
      await relay.tun.nextWritten(5000);
      const after = (await get(clientAdmin, "/metrics")).body;
      assertEquals(sample(after, 'tunnel_packets_total{direction="outbound"}'), 1);
      assertEquals(sample(after, 'tunnel_bytes_total{direction="outbound"}'), request.length);
      assertEquals(sample(after, "client_session_up"), 1);
      assertEquals(sample(after, "client_session_setup_seconds_count"), 1);
      const relayMetrics = (await get(relayAdmin, "/metrics")).body;
      assertEquals(sample(relayMetrics, 'tunnel_packets_total{direction="inbound"}'), 1);
      assertEquals(sample(relayMetrics, "relay_sessions"), 1);
      assertEquals(sample(relayMetrics, "relay_session_setup_seconds_count"), 1);
      assert((sample(relayMetrics, "process_resident_memory_bytes") ?? 0) > 1e6, "memory");
      assert((sample(relayMetrics, "process_cpu_seconds_total") ?? 0) > 0, "cpu");
      // Per-user bytes are sampled every second.
      const userBytes = 'relay_user_bytes_total{user="anonymous",direction="inbound"}';
      const deadline = Date.now() + 5000;
      let seen: number | undefined;
      while (Date.now() < deadline) {
        seen = sample((await get(relayAdmin, "/metrics")).body, userBytes);
        if (seen === request.length) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assertEquals(seen, request.length);

      assertEquals(await get(relayAdmin, "/healthz"), {
        status: 200,
        type: "text/plain; charset=utf-8",
        body: "ok\n",
      });
      assertEquals((await get(clientAdmin, "/readyz")).status, 200);
      assertEquals((await get(relayAdmin, "/nope")).status, 404);
      assertEquals((await get(relayAdmin, "/metrics", "POST")).status, 405);
    }),
});

Deno.test({
  name: "admin endpoint: /readyz turns false at once when the relay drains",
  ...opts,
  fn: () =>
    withBoth(async ({ relay, relayAdmin }) => {
      assertEquals((await get(relayAdmin, "/readyz")).body, "ready\n");
      const draining = relay.relay.drain();
      assertEquals(await get(relayAdmin, "/readyz"), {
        status: 503,
        type: "text/plain; charset=utf-8",
        body: "not ready: draining\n",
      });
      await draining;
      assertEquals((await get(relayAdmin, "/healthz")).status, 200);
    }),
});

Deno.test({
  name: "admin endpoint: promtool check metrics accepts /metrics of the relay and the client",
  ...PROMTOOL,
  ...opts,
  fn: () =>
    withBoth(async ({ tun, relay, relayAdmin, clientAdmin }) => {
      tun.inject(buildIcmpv4Echo({ src: "198.18.100.2", dst: "198.18.1.2", sequence: 1 }));
      await relay.tun.nextWritten(5000);
      for (const server of [relayAdmin, clientAdmin]) {
        const { body } = await get(server, "/metrics");
        const child = new Deno.Command("promtool", {
          args: ["check", "metrics"],
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const writer = child.stdin.getWriter();
        await writer.write(new TextEncoder().encode(body));
        await writer.close();
        const out = await child.output();
        const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
        assertEquals([out.code, said], [0, ""]);
      }
    }),
});

Deno.test({
  name: "deno task status shows the relay's session and the client's state in 80 columns",
  ...opts,
  fn: () =>
    withBoth(async ({ relayAdmin, clientAdmin }) => {
      const run = async (...args: string[]) => {
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "--allow-net", `${ROOT}host/status.ts`, ...args],
          stdout: "piped",
          stderr: "piped",
        }).output();
        return {
          code: out.code,
          stdout: new TextDecoder().decode(out.stdout),
          stderr: new TextDecoder().decode(out.stderr),
        };
      };
      const relayView = await run("--admin", `127.0.0.1:${relayAdmin.addr.port}`);
      assertEquals(relayView.code, 0, relayView.stderr);
      const lines = relayView.stdout.trimEnd().split("\n");
      assert(lines.every((line) => line.length <= STATUS_WIDTH), relayView.stdout);
      for (
        const expected of [
          "relay: serving, 1 session",
          "session: 1",
          "  user: anonymous",
          "  addresses: 198.18.100.2/32, fd00:100::2/128",
          "  mode: datagram over h3",
        ]
      ) assert(lines.includes(expected), `${expected}\n${relayView.stdout}`);
      const clientView = await run("--admin", `127.0.0.1:${clientAdmin.addr.port}`);
      assert(clientView.stdout.startsWith("client: up\n"), clientView.stdout);
      assert(clientView.stdout.includes("  tun: mvpn-test, mtu 1280\n"), clientView.stdout);
      const json = await run("--admin", `127.0.0.1:${relayAdmin.addr.port}`, "--json");
      const parsed = JSON.parse(json.stdout);
      assertEquals(parsed.sessions[0].user, "anonymous");
      // What the status file holds, memory included.
      assert(parsed.memory.rss > 1e6 && parsed.memory.heapUsed > 0, json.stdout);
      const missing = await run("--admin", "127.0.0.1:1");
      assertEquals(missing.code, 1);
      assert(missing.stderr.includes("Is the relay or client running with --admin 127.0.0.1:1?"));
    }),
});
