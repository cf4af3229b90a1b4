/**
 * The relay's caps against hostile peers, over real QUIC on 127.0.0.1 with
 * the real {@linkcode Relay} behind the accept loop `relay/main.ts` runs
 * (tests/support/relay_harness.ts), an in-memory TUN, and a well-behaved
 * client from another source address (127.0.0.2) pinging through the relay
 * where it matters:
 *
 * - a burst of 1,500 connections from one source holds at most
 *   maxConnectionsPerSource of them;
 * - a 5th concurrent request stream on one connection is refused by QUIC;
 * - one source cannot take more of the address pool than its share;
 * - 10k ADDRESS_REQUESTs get a bounded number of answers, and the session
 *   is closed; a polite requester gets every request id answered with the
 *   full assignment;
 * - a connection without a session is closed after sessionlessTimeoutMs;
 * - a reservation (slot and addresses) lives only as long as its request.
 *
 * Every load is bounded in count and time; assertions are on counts.
 *
 * Run: deno test --unstable-net --allow-all tests/integration/hostile_caps_test.ts
 */
import { assert, assertEquals, assertMatch, assertRejects } from "../support/assert.ts";
import { dialTestServer } from "../support/certs.ts";
import { until, within } from "../support/fake_quic.ts";
import {
  ANY_PATH,
  connectClient,
  dialFrom,
  Pinger,
  startTestRelay,
} from "../support/relay_harness.ts";
import type { TestRelay } from "../support/relay_harness.ts";
import { H3_EXCESSIVE_LOAD, H3_NO_ERROR } from "../../shared/errors.ts";
import { encodeFrameHeader, FRAME_HEADERS } from "../../shared/h3/frame.ts";
import { encodeFieldSection } from "../../shared/h3/qpack.ts";
import { encodeVarint } from "../../shared/h3/varint.ts";
import { encodeSettingsFrame, serverSettings } from "../../shared/h3/settings.ts";
import { encodeCapsule } from "../../shared/masque/capsule.ts";
import type { Capsule } from "../../shared/masque/capsule.ts";
import { buildConnectIpRequest } from "../../shared/masque/connect_ip_request.ts";
import { ConnectIpError } from "../../shared/masque/h3_connect_ip.ts";
import { formatPrefix, parsePrefix } from "../../shared/ip/ip_address.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
/** The well-behaved client's source address; hostile peers use 127.0.0.1. */
const GOOD_SOURCE = "127.0.0.2";

/** Runs `fn` with a relay, a well-behaved client pinging through it, and cleanup. */
async function withRelay(
  options: Parameters<typeof startTestRelay>[0],
  fn: (server: TestRelay, pinger: Pinger) => Promise<void>,
): Promise<void> {
  const rejections: unknown[] = [];
  const onRejection = (event: PromiseRejectionEvent) => {
    rejections.push(event.reason);
    event.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  const server = await startTestRelay(options);
  const good = await connectClient(server.port, GOOD_SOURCE);
  let pinger: Pinger | undefined;
  try {
    pinger = new Pinger(await good.open(), server.tun);
    await pinger.more(3, "the first round trips");
    await fn(server, pinger);
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

/** Runs `tasks` at most `concurrency` at a time. */
async function pool<T>(count: number, concurrency: number, task: (i: number) => Promise<T>) {
  let next = 0;
  const results: T[] = [];
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      const i = next++;
      results[i] = await task(i);
    }
  }));
  return results;
}

Deno.test({
  name: "a burst of 1,500 connections from one source holds at most maxConnectionsPerSource",
  ...opts,
  fn: () =>
    withRelay({ limits: { sessionlessTimeoutMs: 120_000 } }, async (server, pinger) => {
      const { relay } = server;
      const perSource = relay.limits.maxConnectionsPerSource;
      const total = 1500;
      // Sample the relay's connection count while the burst runs.
      let maxOpen = 0;
      let maxHandshaking = 0;
      const sampler = setInterval(() => {
        maxOpen = Math.max(maxOpen, relay.connectionCounts.open);
        maxHandshaking = Math.max(maxHandshaking, relay.connectionCounts.handshaking);
      }, 5);
      const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
      const held: Deno.QuicConn[] = [];
      const closes = new Map<number, number>();
      let failed = 0;
      const roundsBefore = pinger.rounds;
      const rssBefore = Deno.memoryUsage().rss;
      try {
        await within(
          pool(total, 50, async () => {
            try {
              const conn = await dialTestServer(server.port, endpoint);
              held.push(conn);
              conn.closed.then((info) =>
                closes.set(info.closeCode, (closes.get(info.closeCode) ?? 0) + 1)
              );
            } catch {
              failed++; // refused before the handshake
            }
          }),
          "1,500 connection attempts",
          120_000,
        );
        // Let the relay's closes of the refused ones arrive.
        await until(
          () => held.length - [...closes.values()].reduce((a, b) => a + b, 0) <= perSource,
          "the over-limit connections to be closed",
          10_000,
        ).catch(() => {});
        await new Promise((resolve) => setTimeout(resolve, 500));
        const stillOpen = held.length - [...closes.values()].reduce((a, b) => a + b, 0);
        // Relay and clients share this process: a measurement, not an assertion.
        console.log(
          `burst: ${stillOpen} connections still open, process RSS +${
            ((Deno.memoryUsage().rss - rssBefore) / 2 ** 20).toFixed(0)
          } MiB`,
        );
        // What the hostile source holds at the relay: its share, no more.
        assertEquals(stillOpen, perSource, `connections the relay kept open: ${stillOpen}`);
        assert(maxOpen <= perSource + 1, `the relay held ${maxOpen} connections at once`);
        assert(maxHandshaking <= relay.limits.maxHandshakes, `${maxHandshaking} handshakes`);
        assertEquals(relay.connectionCounts.open, perSource + 1);
        // Every attempt is accounted for: admitted, refused by a limit, or failed.
        const value = (name: string, ...labels: string[]) => relay.counters.value(name, ...labels);
        const refused = (limit: string) => value("relay_connections_refused_total", limit);
        const handshakesFailed = value("relay_handshakes_failed_total");
        assertEquals(value("relay_connections_accepted_total"), perSource + 1);
        assertEquals(
          refused("handshakes") + refused("connections") + refused("per-source") + handshakesFailed,
          total - perSource,
        );
        assertEquals(closes.get(H3_EXCESSIVE_LOAD) ?? 0, refused("per-source"));
        assertEquals(failed, refused("handshakes") + refused("connections") + handshakesFailed);
        // Logged, but not once per connection.
        const logged = server.count(/INFO .*connection refused/);
        assert(logged >= 1 && logged <= 30, `${logged} "connection refused" lines`);
        // The good client was served during the burst.
        assert(pinger.rounds > roundsBefore, "no round trip during the burst");
        console.log(
          `burst: ${held.length} handshakes completed, ${failed} refused before the handshake, ` +
            `${refused("per-source")} closed per source, at most ${maxOpen} open at once, ` +
            `${logged} log lines, ${pinger.rounds - roundsBefore} round trips meanwhile`,
        );
      } finally {
        clearInterval(sampler);
        for (const conn of held) {
          try {
            conn.close({ closeCode: 0x100, reason: "" });
          } catch {
            // already closed
          }
        }
        endpoint.close();
      }
    }),
});

Deno.test({
  name: "a 5th concurrent request stream on one connection is refused by QUIC",
  ...opts,
  fn: () =>
    withRelay({}, async (server) => {
      const client = await connectClient(server.port);
      try {
        const limit = server.relay.limits.maxRequestsPerConnection;
        assertEquals(limit, 4);
        const sessions = [];
        for (let i = 0; i < limit; i++) sessions.push(await client.open());
        const error = await assertRejects(() => client.open(), ConnectIpError);
        assertMatch(error.message, /maximum number of concurrent outgoing bidirectional streams/);
        assertEquals(server.relay.sessions.length, limit + 1);
        // Ending one session gives its stream back: a new request goes through.
        await sessions[0].session.close();
        await within(sessions[0].end, "the first session's end", 5000);
        await until(
          () => server.relay.sessions.length === limit,
          "the relay to close the session",
          5000,
        );
        let again;
        for (let attempt = 0; attempt < 50 && again === undefined; attempt++) {
          again = await client.open().catch(() => undefined);
          if (again === undefined) await new Promise((resolve) => setTimeout(resolve, 20));
        }
        assert(again !== undefined, "no stream credit after a session ended");
        assertEquals(server.relay.sessions.length, limit + 1);
      } finally {
        client.close();
      }
    }),
});

Deno.test({
  name: "one source cannot take more than its share of the address pool",
  ...opts,
  fn: () =>
    withRelay({}, async (server) => {
      const { relay } = server;
      const share = relay.limits.maxConnectionsPerSource * relay.limits.maxRequestsPerConnection;
      // 20 connections from one source, each trying 10 sessions at once.
      const clients = (await Promise.allSettled(
        Array.from({ length: 20 }, () => connectClient(server.port)),
      )).flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
      try {
        const results = await within(
          Promise.allSettled(clients.flatMap((c) => Array.from({ length: 10 }, () => c.open()))),
          "200 session attempts",
          60_000,
        );
        const opened = results.filter((r) => r.status === "fulfilled").length;
        assert(opened <= share, `one source opened ${opened} sessions (share ${share})`);
        assertEquals(opened, share);
        // The pool holds the good client's addresses and the hostile source's share.
        assertEquals(relay.poolUsage, { v4: share + 1, v6: share + 1 });
        // Another source is still served.
        const other = await connectClient(server.port, "127.0.0.3");
        try {
          const session = await other.open();
          assertMatch(session.v4, /^198\.18\.100\./);
        } finally {
          other.close();
        }
      } finally {
        for (const c of clients) c.close();
      }
    }),
});

/** An ADDRESS_REQUEST capsule for `requestId` asking for any IPv4 address. */
function addressRequest(requestId: number, prefix = "0.0.0.0/32"): Capsule {
  return { type: "address_request", addresses: [{ requestId, prefix: parsePrefix(prefix) }] };
}

Deno.test({
  name: "10k ADDRESS_REQUESTs get a bounded number of answers and the session is closed",
  ...opts,
  fn: () =>
    withRelay({}, async (server) => {
      const { relay } = server;
      const client = await connectClient(server.port);
      try {
        const hostile = await client.open();
        const relaySession = relay.sessions.find((s) => s.remote === client.remote);
        assert(relaySession !== undefined);
        const answersBefore = hostile.capsules.filter((c) => c.type === "address_assign").length;
        const started = performance.now();
        const total = 10_000;
        // 100 writes of 100 capsules each, as fast as the stream takes them.
        for (let batch = 0; batch < total / 100; batch++) {
          const parts = Array.from(
            { length: 100 },
            (_, i) => encodeCapsule(addressRequest(batch * 100 + i + 1)),
          );
          const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
          let at = 0;
          for (const part of parts) {
            bytes.set(part, at);
            at += part.length;
          }
          const ok = await hostile.session.stream.writeData(bytes).then(() => true, () => false);
          if (!ok) break; // the relay stopped the stream
        }
        // The relay should close the session at once; give it 10 s, then count.
        let timer: ReturnType<typeof setTimeout> | undefined;
        const end = await Promise.race([
          hostile.end,
          new Promise<undefined>((resolve) => timer = setTimeout(() => resolve(undefined), 10_000)),
        ]);
        clearTimeout(timer);
        const seconds = (performance.now() - started) / 1000;
        const answers = hostile.capsules.filter((c) => c.type === "address_assign").length -
          answersBefore;
        const bound = relay.limits.addressRequestBurst +
          Math.ceil(relay.limits.addressRequestsPerSecond * seconds) + 1;
        console.log(
          `10k ADDRESS_REQUESTs: ${answers} answers in ${seconds.toFixed(2)} s ` +
            `(bound ${bound}), relay wrote ${relaySession.session.stats.capsulesOut} capsules, ` +
            `session end: ${end?.message ?? "none within 10 s"}`,
        );
        assert(answers <= bound, `${answers} answers, bound ${bound}`);
        assert(end !== undefined, "the relay did not close the flooding session");
        assertEquals(end.reason, "closed"); // the relay ended the stream; the connection lives
        assert(answers >= 1, "no answer at all");
        // Every answer is the full assignment and echoes only ids that were asked for.
        for (const capsule of hostile.capsules.slice(answersBefore)) {
          if (capsule.type !== "address_assign") continue;
          assertEquals(
            new Set(capsule.addresses.map((a) => formatPrefix(a.prefix))),
            new Set(relaySession.addresses.map(formatPrefix)),
          );
        }
        assertEquals(relay.counters.value("relay_address_request_overflows_total"), 1);
        assertEquals(relay.counters.value("relay_address_answers_total"), answers);
        assertEquals(server.count(/WARN .*closing session: too many ADDRESS_REQUESTs waiting/), 1);
        assertEquals(
          server.count(
            /INFO .*session closed .*reason="Too many ADDRESS_REQUESTs: more than 64 requested addresses waiting for an answer"/,
          ),
          1,
        );
        await until(() => !relay.sessions.includes(relaySession), "the session to be gone", 5000);
        assertEquals(relay.poolUsage, { v4: 1, v6: 1 });
        // The flood closed the session, not the connection: a new session opens on it.
        const again = await client.open();
        assertMatch(again.v4, /^198\.18\.100\./);
      } finally {
        client.close();
      }
    }),
});

Deno.test({
  name: "a steady stream of ADDRESS_REQUESTs is paced and merged, and every id is answered",
  ...opts,
  fn: () =>
    withRelay({}, async (server, pinger) => {
      const { relay } = server;
      const client = await connectClient(server.port);
      try {
        const s = await client.open();
        const before = s.capsules.length;
        const roundsBefore = pinger.rounds;
        const started = performance.now();
        // 60 requests, one every 40 ms (25 per second) for 2.4 s.
        const count = 60;
        for (let id = 1; id <= count; id++) {
          await s.session.sendCapsule(addressRequest(id));
          await new Promise((resolve) => setTimeout(resolve, 40));
        }
        const answered = () => {
          const ids = new Set<number>();
          for (const c of s.capsules.slice(before)) {
            if (c.type === "address_assign") { for (const a of c.addresses) ids.add(a.requestId); }
          }
          ids.delete(0);
          return ids;
        };
        await until(() => answered().size === count, "every request id to be answered", 5000);
        const seconds = (performance.now() - started) / 1000;
        const answers = s.capsules.slice(before).filter((c) => c.type === "address_assign").length;
        const bound = relay.limits.addressRequestBurst +
          Math.ceil(relay.limits.addressRequestsPerSecond * seconds) + 1;
        console.log(
          `steady requests: ${count} ids in ${answers} answers over ${seconds.toFixed(2)} s`,
        );
        assert(answers <= bound, `${answers} answers for ${count} requests, bound ${bound}`);
        assert(answers < count, "no request was merged");
        // Each id answered exactly once.
        const ids = s.capsules.slice(before).flatMap((c) =>
          c.type === "address_assign" ? c.addresses.map((a) => a.requestId).filter((i) => i) : []
        );
        assertEquals(ids.length, count);
        // Paced, not closed: the session is still up and the good client was served meanwhile.
        assertEquals(relay.counters.value("relay_address_request_overflows_total"), 0);
        assert(!s.session.closed);
        assert(pinger.rounds > roundsBefore, "no round trip while the requests came in");
      } finally {
        client.close();
      }
    }),
});

Deno.test({
  name: "ADDRESS_REQUEST answers list the full assignment and answer every request id",
  ...opts,
  fn: () =>
    withRelay({}, async (server) => {
      const client = await connectClient(server.port);
      try {
        const s = await client.open();
        const assigned = server.relay.sessions.find((e) => e.remote === client.remote)!.addresses
          .map(formatPrefix);
        const answers = () => s.capsules.filter((c) => c.type === "address_assign");
        const show = (c: Capsule) =>
          c.type === "address_assign"
            ? c.addresses.map((a) => `${a.requestId} ${formatPrefix(a.prefix)}`)
            : [];
        // An IPv4 request: the answer still carries the IPv6 address (RFC 9484 §4.7.1).
        await s.session.sendCapsule(addressRequest(5));
        await until(() => answers().length === 2, "the first answer", 5000);
        assertEquals(show(answers()[1]), [`5 ${assigned[0]}`, `0 ${assigned[1]}`]);
        // Two ids in one capsule, one per version: each is answered.
        await s.session.sendCapsule({
          type: "address_request",
          addresses: [
            { requestId: 6, prefix: parsePrefix("::/64") },
            { requestId: 7, prefix: parsePrefix("0.0.0.0/32") },
          ],
        });
        await until(() => answers().length === 3, "the second answer", 5000);
        assertEquals(show(answers()[2]), [`7 ${assigned[0]}`, `6 ${assigned[1]}`]);
        assertEquals(server.relay.counters.value("relay_address_requests_total"), 2);
      } finally {
        client.close();
      }
    }),
});

Deno.test({
  name: "ADDRESS_REQUEST for a specific free address moves the session there, once per IP version",
  ...opts,
  fn: () =>
    withRelay({}, async (server) => {
      const first = await connectClient(server.port);
      const client = await connectClient(server.port);
      try {
        const held = (await first.open()).v4;
        const s = await client.open();
        const v6 = formatPrefix(
          server.relay.sessions.find((e) => e.remote === client.remote)!.addresses[1],
        );
        const entry = () => server.relay.sessions.find((e) => e.remote === client.remote)!;
        const answers = () => s.capsules.filter((c) => c.type === "address_assign");
        const show = (c: Capsule) =>
          c.type === "address_assign"
            ? c.addresses.map((a) => `${a.requestId} ${formatPrefix(a.prefix)}`)
            : [];
        const ask = (id: number, prefix: string) =>
          s.session.sendCapsule({
            type: "address_request",
            addresses: [{ requestId: id, prefix: parsePrefix(prefix) }],
          });
        // Taken by another session: not granted; the answer is the assignment as it is.
        await ask(1, `${held}/32`);
        await until(() => answers().length === 2, "the first answer", 5000);
        assertEquals(show(answers()[1]), [`1 ${s.v4}/32`, `0 ${v6}`]);
        // Free: granted, and packets from the new address pass, from the old one not.
        await ask(2, "198.18.100.50/32");
        await until(() => answers().length === 3, "the second answer", 5000);
        assertEquals(show(answers()[2]), ["2 198.18.100.50/32", `0 ${v6}`]);
        assertEquals(entry().addresses.map(formatPrefix), ["198.18.100.50/32", v6]);
        const usage = server.relay.poolUsage;
        // A second move of the same IP version is refused: a session cannot walk the pool.
        await ask(3, "198.18.100.60/32");
        await until(() => answers().length === 4, "the third answer", 5000);
        assertEquals(show(answers()[3]), ["3 198.18.100.50/32", `0 ${v6}`]);
        assertEquals(server.relay.counters.value("relay_addresses_granted_total"), 1);
        assertEquals(server.relay.poolUsage, usage); // the old address went back
        // Outside the pool: not granted either (the IPv6 version may still move once).
        await ask(4, "fd00:999::1/128");
        await until(() => answers().length === 5, "the fourth answer", 5000);
        assertEquals(show(answers()[4]), ["0 198.18.100.50/32", `4 ${v6}`]);
      } finally {
        client.close();
        first.close();
      }
    }),
});

Deno.test({
  name: "a connection without a session is closed after sessionlessTimeoutMs",
  ...opts,
  fn: () =>
    withRelay({ limits: { sessionlessTimeoutMs: 500 } }, async (server) => {
      const { relay } = server;
      // A bare QUIC connection that never speaks HTTP/3.
      const bare = await dialFrom(server.port);
      // An HTTP/3 connection that sends SETTINGS and no request.
      const quiet = await connectClient(server.port);
      // One with a session: kept while the session lasts, closed after it ends.
      const busy = await connectClient(server.port);
      try {
        const session = await busy.open();
        const bareClose = await within(bare.conn.closed, "the bare connection's close", 5000);
        const quietClose = await within(quiet.conn.closed, "the quiet connection's close", 5000);
        for (const info of [bareClose, quietClose]) {
          assertEquals(info.closeCode, H3_NO_ERROR);
          assertEquals(info.reason, "no session for 0.5 s");
        }
        assertEquals(relay.counters.value("relay_connections_sessionless_total"), 2);
        // Well past the timeout, the connection with a session is still up.
        await new Promise((resolve) => setTimeout(resolve, 1000));
        assertEquals(relay.sessions.length, 2);
        await session.session.close();
        const busyClose = await within(busy.conn.closed, "the close after the session", 5000);
        assertEquals(busyClose.closeCode, H3_NO_ERROR);
        assertEquals(relay.counters.value("relay_connections_sessionless_total"), 3);
        assertEquals(relay.connectionCounts.open, 1);
        assert(server.count(/INFO .*closing connection without a session/) >= 1);
      } finally {
        bare.close();
        quiet.close();
        busy.close();
      }
    }),
});

/** Writes a connect-ip request's HEADERS on a new stream of `conn`, raw. */
async function rawRequest(conn: Deno.QuicConn) {
  const stream = await conn.createBidirectionalStream();
  const block = encodeFieldSection(
    buildConnectIpRequest({ authority: "localhost", path: ANY_PATH }),
  );
  const writer = stream.writable.getWriter();
  await writer.write(
    Uint8Array.from([...encodeFrameHeader(FRAME_HEADERS, block.length), ...block]),
  );
  return { stream, writer };
}

Deno.test({
  name: "a reservation lives only as long as its request, on every way out",
  ...opts,
  fn: () =>
    withRelay({ maxSessions: 4, limits: { sessionlessTimeoutMs: 1000 } }, async (server) => {
      const { relay } = server;
      const baseline = () => assertEquals(relay.poolUsage, { v4: 1, v6: 1 });
      const settled = (what: string) =>
        until(() => relay.poolUsage.v4 === 1 && relay.poolUsage.v6 === 1, what, 5000);

      // Refused: three sessions fill maxSessions 4 with the good one; the 5th attempt gets 503.
      const full = await connectClient(server.port);
      const sessions = [await full.open(), await full.open(), await full.open()];
      const refused = await connectClient(server.port);
      const error = await assertRejects(() => refused.open(), ConnectIpError);
      assertEquals(error.status, 503);
      assertEquals(relay.poolUsage, { v4: 4, v6: 4 });
      refused.close();
      // Session ended by the client (FIN), and connection closed after the 200.
      await sessions[0].session.close();
      await until(() => relay.poolUsage.v4 === 3, "the FIN'd session's addresses", 5000);
      full.close();
      await settled("the closed connection's addresses");
      baseline();

      // Requests sent before SETTINGS, never answered, on a connection the client leaves
      // open: whatever they reserve goes when the relay closes the sessionless connection.
      const silent = await dialFrom(server.port);
      const raw = [];
      for (let i = 0; i < relay.limits.maxRequestsPerConnection; i++) {
        raw.push(await rawRequest(silent.conn));
      }
      const closed = await within(
        silent.conn.closed,
        `the sessionless close (pool in use: ${JSON.stringify(relay.poolUsage)})`,
        5000,
      );
      assertEquals(closed.closeCode, H3_NO_ERROR);
      await settled("the unanswered requests' reservations");
      baseline();
      silent.close();

      // Failed while answering: the request's stream is stopped before the relay's 200 goes
      // out (the relay waits for SETTINGS, which come after the STOP_SENDING).
      const stopper = await dialFrom(server.port);
      const { stream } = await rawRequest(stopper.conn);
      await stream.readable.cancel().catch(() => {});
      const control = await stopper.conn.createUnidirectionalStream();
      const writer = control.getWriter();
      await writer.write(
        Uint8Array.from([...encodeVarint(0x00), ...encodeSettingsFrame(serverSettings())]),
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      await settled("the failed answer's reservation");
      baseline();
      assertEquals(relay.sessions.length, 1);
      stopper.close();
      const opened = relay.counters.value("relay_sessions_opened_total");
      const closedCount = relay.counters.value("relay_sessions_closed_total");
      // Every session that opened, other than the good client's, has closed.
      assertEquals(opened - closedCount, 1);
    }),
});
