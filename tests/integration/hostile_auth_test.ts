/**
 * The relay with users against hostile peers, over real QUIC on 127.0.0.1
 * with the real `Relay`, `UserAuthenticator` and accept loop, while a
 * user's well-behaved client from 127.0.0.2 pings through the relay
 * throughout:
 *
 * - 10,000 bad credential attempts from many source ports: only the first
 *   few cost a hash, then the source is blocked;
 * - an authenticated user trying to exceed its session limit;
 * - a flood of connections that never send a request;
 *
 * and neither takes an address from the pool, nor holds more than its share
 * of connections. Loads are bounded in count and time; assertions are on
 * counts (process memory, which relay and clients share, is printed).
 *
 * Run: deno test --unstable-net --allow-all tests/integration/hostile_auth_test.ts
 */
import { assert, assertEquals } from "../support/assert.ts";
import { dialTestServer } from "../support/certs.ts";
import { until, within } from "../support/fake_quic.ts";
import { connectClient, dialFrom, Pinger, startTestRelay } from "../support/relay_harness.ts";
import type { TestRelay, TestRelayOptions } from "../support/relay_harness.ts";
import { makeUsers } from "../support/users.ts";
import { UserAuthenticator } from "../../relay/users.ts";
import { bearerField, generateToken } from "../../shared/auth/credentials.ts";
import { H3Connection } from "../../shared/h3/connection.ts";
import { buildConnectIpRequest } from "../../shared/masque/connect_ip_request.ts";
import { ConnectIpError } from "../../shared/masque/h3_connect_ip.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const GOOD_SOURCE = "127.0.0.2";

/** Runs `tasks` at most `concurrency` at a time. */
async function pool(count: number, concurrency: number, task: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) await task(next++);
  }));
}

/**
 * A relay with users `good` and `greedy` (2 sessions), `good` pinging from
 * 127.0.0.2; checks afterwards that the pings never failed and that nothing
 * was left unhandled.
 */
async function withUsers(
  limits: TestRelayOptions["limits"],
  fn: (server: TestRelay, pinger: Pinger, tokens: Record<string, string>) => Promise<void>,
): Promise<void> {
  const rejections: unknown[] = [];
  const onRejection = (event: PromiseRejectionEvent) => {
    rejections.push(event.reason);
    event.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  const { entries, tokens } = await makeUsers([
    { name: "good" },
    { name: "greedy", policy: { maxSessions: 2 } },
  ]);
  const server = await startTestRelay({
    authenticator: new UserAuthenticator(entries),
    limits,
  });
  const good = await connectClient(server.port, GOOD_SOURCE, [bearerField(tokens.good)]);
  let pinger: Pinger | undefined;
  try {
    pinger = new Pinger(await good.open(), server.tun);
    await pinger.more(3, "the first round trips");
    await fn(server, pinger, tokens);
    await pinger.more(3, "round trips at the end");
    await pinger.stop();
    assertEquals(pinger.failures, []);
    assertEquals(server.listenerErrors, []);
  } finally {
    await pinger?.stop();
    good.close();
    await server.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    globalThis.removeEventListener("unhandledrejection", onRejection);
  }
  assertEquals(rejections.map(String), []);
}

Deno.test({
  name: "10,000 bad credential attempts from many source ports cost a few hashes, then nothing",
  ...opts,
  fn: () =>
    withUsers({ sessionlessTimeoutMs: 120_000 }, async (server, pinger) => {
      const { relay } = server;
      const connections = 2500;
      const perConnection = 4;
      let attempts = 0;
      let answered404 = 0;
      let refusedConnections = 0;
      let maxOpen = 0;
      const sampler = setInterval(() => {
        maxOpen = Math.max(maxOpen, relay.connectionCounts.open);
      }, 5);
      const roundsBefore = pinger.rounds;
      const rssBefore = Deno.memoryUsage().rss;
      const started = performance.now();
      // 50 source ports, each used for 50 connections in turn (an endpoint per
      // connection would cost this process, which is also the relay's, ~200 KiB each).
      const endpoints = Array.from(
        { length: 50 },
        () => new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 }),
      );
      try {
        await within(
          pool(connections, 25, async (i) => {
            let conn;
            try {
              conn = await dialTestServer(server.port, endpoints[i % endpoints.length]);
            } catch {
              refusedConnections++;
              attempts += perConnection;
              return;
            }
            const h3 = new H3Connection(conn, { role: "client" });
            try {
              await h3.start().catch(() => {});
              await Promise.all(Array.from({ length: perConnection }, async () => {
                attempts++;
                try {
                  const stream = await h3.request([
                    ...buildConnectIpRequest({
                      authority: "localhost",
                      path: "/.well-known/masque/ip/*/*/",
                    }),
                    bearerField(generateToken().token),
                  ]);
                  const status = await within(stream.readResponse(), "an answer", 5000);
                  if (status === 404) answered404++;
                } catch {
                  // the connection was closed: the source is blocked
                }
              }));
            } finally {
              h3.close();
            }
          }),
          "10,000 attempts",
          180_000,
        );
      } finally {
        clearInterval(sampler);
        for (const endpoint of endpoints) endpoint.close();
      }
      const seconds = (performance.now() - started) / 1000;
      const value = (name: string, ...labels: string[]) => relay.counters.value(name, ...labels);
      const checked = value("relay_auth_failures_total", "unknown user");
      console.log(
        `10,000 attempts in ${seconds.toFixed(1)} s: ${answered404} answered 404, ${checked} ` +
          `hashed, ${value("relay_connections_refused_total", "auth-failures")} connections ` +
          `refused as blocked, ${refusedConnections} failed to connect, at most ${maxOpen} open, ` +
          `${pinger.rounds - roundsBefore} round trips meanwhile, process RSS +${
            ((Deno.memoryUsage().rss - rssBefore) / 2 ** 20).toFixed(0)
          } MiB`,
      );
      assertEquals(attempts, connections * perConnection);
      // Only the attempts before the block (10) and those already in flight on
      // the source's open connections (at most 8 x 4) cost a hash.
      assert(checked >= 10 && checked <= 10 + 8 * perConnection, `${checked} hashed`);
      // Those answered got the 404 of an unknown path; the others' connections closed first.
      assert(answered404 <= checked);
      assertEquals(value("relay_auth_sources_blocked_total"), 1);
      // All but the first wave (25 dials at a time) are closed right after the handshake.
      assert(
        value("relay_connections_refused_total", "auth-failures") >= connections - 2 * 25,
        "the blocked source's connections are closed after the handshake",
      );
      // What the relay holds: the good client's connection, at most a source's share besides.
      assert(maxOpen <= relay.limits.maxConnectionsPerSource + 1, `${maxOpen} open at once`);
      assertEquals(relay.poolUsage, { v4: 1, v6: 1 });
      assert(pinger.rounds > roundsBefore, "no round trip during the attempts");
      // Logged, but not once per attempt.
      const logged = server.count(/INFO .*(authentication failed|connection refused)/);
      assert(logged <= 40, `${logged} lines`);
    }),
});

Deno.test({
  name: "an authenticated user cannot hold more than its session limit, however it asks",
  ...opts,
  fn: () =>
    withUsers({ maxRequestsPerConnection: 8 }, async (server, pinger, tokens) => {
      const { relay } = server;
      let maxHeld = 0;
      const sampler = setInterval(() => {
        const held = relay.sessions.filter((s) => s.identity.user === "greedy").length;
        maxHeld = Math.max(maxHeld, held);
      }, 2);
      const statuses = new Map<number, number>();
      try {
        for (let round = 0; round < 3; round++) {
          const clients = await Promise.all(
            Array.from(
              { length: 4 },
              () => connectClient(server.port, "127.0.0.3", [bearerField(tokens.greedy)]),
            ),
          );
          const results = await within(
            Promise.allSettled(clients.flatMap((c) => Array.from({ length: 6 }, () => c.open()))),
            "24 requests",
            20_000,
          );
          for (const result of results) {
            const status = result.status === "fulfilled"
              ? 200
              : result.reason instanceof ConnectIpError
              ? result.reason.status ?? 0
              : -1;
            statuses.set(status, (statuses.get(status) ?? 0) + 1);
          }
          for (const client of clients) client.close();
          await until(
            () => relay.sessions.length === 1,
            "greedy's sessions to end with its connections",
            5000,
          );
        }
      } finally {
        clearInterval(sampler);
      }
      assertEquals(Object.fromEntries(statuses), { 200: 6, 429: 66 });
      assertEquals(maxHeld, 2);
      assertEquals(relay.poolUsage, { v4: 1, v6: 1 });
      assert(pinger.rounds > 0);
    }),
});

Deno.test({
  name: "a flood of connections that never send a request holds no address and goes away",
  ...opts,
  fn: () =>
    withUsers({ sessionlessTimeoutMs: 1000 }, async (server) => {
      const { relay } = server;
      const held: Awaited<ReturnType<typeof dialFrom>>[] = [];
      let maxOpen = 0;
      const sampler = setInterval(() => {
        maxOpen = Math.max(maxOpen, relay.connectionCounts.open);
      }, 5);
      try {
        // 25 sources x 12 connections: each source keeps 8, the rest are closed.
        await within(
          pool(300, 20, async (i) => {
            try {
              held.push(await dialFrom(server.port, `127.0.1.${1 + (i % 25)}`));
            } catch {
              // refused before the handshake
            }
          }),
          "300 silent connections",
          60_000,
        );
        assertEquals(relay.poolUsage, { v4: 1, v6: 1 });
        // None sends a request; within the sessionless timeout (1 s) they are all gone.
        await until(
          () => relay.connectionCounts.open === 1,
          "the silent connections to be closed",
          10_000,
        );
        assert(maxOpen <= 25 * relay.limits.maxConnectionsPerSource + 1, `${maxOpen} at once`);
        assert(relay.counters.value("relay_connections_sessionless_total") >= 25 * 8 - 5);
        assertEquals(relay.counters.value("relay_auth_failures_total"), 0);
      } finally {
        clearInterval(sampler);
        for (const d of held) d.close();
      }
    }),
});
