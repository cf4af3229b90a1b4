/**
 * Access control over real QUIC on 127.0.0.1, with the real `Relay` behind
 * the accept loop `relay/main.ts` runs and the real `UserAuthenticator` on
 * users with cheap hashes (tests/support/users.ts), no root:
 *
 * - probe resistance: no credentials, a wrong token, an unknown Basic user,
 *   a malformed header, a bad scope: each answer is byte for byte the
 *   answer to an unknown path (raw stream bytes, HEADERS and DATA);
 * - `--decoy`: files served, nothing outside the site, one 404 page;
 * - a valid bearer token and valid Basic credentials open a session;
 * - per-user and per-connection session limits hold under concurrent
 *   requests;
 * - after 10 failures the source is refused, and another source is not; a
 *   user's connection from the blocked source stays until it fails itself;
 * - a user removed from the users file loses its session within 1 s of a
 *   SIGHUP, while another user's session takes its new routes; a replaced
 *   token's sessions end too;
 * - a user's fixed address (the newest session takes it) and protocols
 *   (TCP outside them answered with ICMP administratively prohibited);
 * - no token or password reaches a log line or the status.
 *
 * Run: deno test --unstable-net --allow-all tests/integration/auth_test.ts
 */
import { assert, assertEquals, assertRejects } from "../support/assert.ts";
import { dialTestServer } from "../support/certs.ts";
import { until, within } from "../support/fake_quic.ts";
import { ANY_PATH, connectClient, dialFrom, startTestRelay } from "../support/relay_harness.ts";

import { makeUsers } from "../support/users.ts";
import { fixedAddresses, onSighup, reloadUsers } from "../../relay/access.ts";
import { buildIpv4, buildIpv4Udp } from "../support/packet_builder.ts";
import { UserAuthenticator, writeUsersFile } from "../../relay/users.ts";
import { loadDecoy, MAX_DECOY_FILE_BYTES } from "../../relay/decoy.ts";
import { basicField, bearerField } from "../../shared/auth/credentials.ts";
import { H3Connection } from "../../shared/h3/connection.ts";
import { encodeFrame, FRAME_HEADERS } from "../../shared/h3/frame.ts";
import { encodeFieldSection } from "../../shared/h3/qpack.ts";
import type { HeaderField } from "../../shared/h3/qpack.ts";
import { formatIp, parseIp, parsePrefix } from "../../shared/ip/ip_address.ts";
import { buildConnectIpRequest } from "../../shared/masque/connect_ip_request.ts";
import { ConnectIpError, openConnectIpSession } from "../../shared/masque/h3_connect_ip.ts";
import { createLogger } from "../../shared/log.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** A relay with three users: alice (token), bob (password), carol (token, 2 sessions). */
async function startAuthRelay(options: Parameters<typeof startTestRelay>[0] = {}) {
  const { entries, tokens } = await makeUsers([
    { name: "alice" },
    { name: "bob", token: false, password: "correct horse" },
    { name: "carol", policy: { maxSessions: 2 } },
  ]);
  const users = new UserAuthenticator(entries);
  const server = await startTestRelay({ ...options, authenticator: users });
  return { server, users, entries, tokens };
}

/**
 * Sends one request on a raw QUIC stream of a connection that speaks
 * HTTP/3 (its control stream and SETTINGS from an H3Connection), and
 * returns every byte of the answer up to the stream's end.
 */
async function rawAnswer(h3conn: Deno.QuicConn, headers: HeaderField[]): Promise<Uint8Array> {
  const stream = await h3conn.createBidirectionalStream();
  const writer = stream.writable.getWriter();
  await writer.write(encodeFrame(FRAME_HEADERS, encodeFieldSection(headers)));
  await writer.close();
  const chunks: Uint8Array[] = [];
  const reader = stream.readable.getReader();
  for (;;) {
    const { value, done } = await within(reader.read(), "the answer's bytes", 5000);
    if (done) break;
    chunks.push(value.slice());
  }
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

const hexOf = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

Deno.test({
  name: "a request without valid credentials gets byte for byte the answer to an unknown path",
  ...opts,
  async fn() {
    // More failures than the default limit of 10 come from this one source.
    const { server, tokens } = await startAuthRelay({ limits: { authFailuresPerMinute: 100 } });
    const conn = await dialTestServer(server.port);
    const h3 = new H3Connection(conn, { role: "client" });
    try {
      await h3.start();
      const connectIp = (path: string, ...extra: HeaderField[]) => [
        ...buildConnectIpRequest({ authority: "localhost", path }),
        ...extra,
      ];
      const wrongToken = tokens.alice.slice(0, -4) + "AAAA";
      const otherId = "AAAAAAAA" + tokens.alice.slice(8);
      const cases: [string, HeaderField[]][] = [
        ["GET of an unknown path", [[":method", "GET"], [":scheme", "https"], [
          ":authority",
          "localhost",
        ], [":path", "/nope"]]],
        [
          "connect-ip to an unknown path, with a valid token",
          connectIp("/nope", bearerField(tokens.alice)),
        ],
        ["no credentials", connectIp(ANY_PATH)],
        ["a wrong token", connectIp(ANY_PATH, bearerField(wrongToken))],
        ["a token id nobody has", connectIp(ANY_PATH, bearerField(otherId))],
        ["an unknown Basic user", connectIp(ANY_PATH, basicField("mallory", "correct horse"))],
        ["a known Basic user, wrong password", connectIp(ANY_PATH, basicField("bob", "x"))],
        ["Basic for a token-only user", connectIp(ANY_PATH, basicField("alice", tokens.alice))],
        ["a malformed header", connectIp(ANY_PATH, ["proxy-authorization", "Bearer !!"])],
        ["another scheme", connectIp(ANY_PATH, ["authorization", "Digest x"])],
        ["a bad scope, no credentials", connectIp("/.well-known/masque/ip/nonsense/999/")],
        ["a bad authority, no credentials", [
          ...buildConnectIpRequest({ authority: "elsewhere.example", path: ANY_PATH }),
        ]],
      ];
      const answers: [string, string][] = [];
      for (const [name, headers] of cases) {
        answers.push([name, hexOf(await rawAnswer(conn, headers))]);
      }
      const expected = answers[0][1];
      // HEADERS (:status 404, content-type text/plain) and DATA "not found\n", then FIN.
      assert(expected.length > 0);
      assert(expected.includes(hexOf(new TextEncoder().encode("not found\n"))));
      for (const [name, bytes] of answers) assertEquals(bytes, expected, name);
      // The same status from the relay's view: refused, nothing reserved.
      assertEquals(server.relay.poolUsage, { v4: 0, v6: 0 });
      assertEquals(server.relay.counters.value("relay_auth_failures_total"), 10);
      // With a valid token the bad scope is the resource's own 400.
      const bad = await rawAnswer(
        conn,
        connectIp("/.well-known/masque/ip/nonsense/*/", bearerField(tokens.alice)),
      );
      assert(hexOf(bad) !== expected);
    } finally {
      h3.close();
      await server.close();
    }
  },
});

Deno.test({
  name:
    "--decoy: GETs get the site's files; traversal, links out, hidden and oversized files get its 404, as missing credentials do",
  ...opts,
  async fn() {
    const site = await Deno.makeTempDir({ prefix: "mvpn-decoy-" });
    const outside = await Deno.makeTempDir({ prefix: "mvpn-outside-" });
    await Deno.writeTextFile(`${site}/index.html`, "<h1>Welcome</h1>\n");
    await Deno.writeTextFile(`${site}/404.html`, "<h1>Nothing here</h1>\n");
    await Deno.writeTextFile(`${site}/.htpasswd`, "secret\n");
    await Deno.writeFile(`${site}/big.bin`, new Uint8Array(MAX_DECOY_FILE_BYTES + 1));
    await Deno.writeTextFile(`${outside}/secret.txt`, "outside the site\n");
    await Deno.symlink(`${outside}/secret.txt`, `${site}/link.txt`);
    await Deno.symlink(outside, `${site}/dir`);
    const decoy = await loadDecoy(site);
    const { server, tokens } = await startAuthRelay({
      notFound: decoy.notFound,
      serveOther: decoy.serveOther,
    });
    const conn = await dialTestServer(server.port);
    const h3 = new H3Connection(conn, { role: "client" });
    const get = (path: string): HeaderField[] => [
      [":method", "GET"],
      [":scheme", "https"],
      [":authority", "localhost"],
      [":path", path],
    ];
    const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    try {
      await h3.start();
      const index = await rawAnswer(conn, get("/"));
      assert(text(index).includes("<h1>Welcome</h1>"), text(index));
      const notFound = hexOf(await rawAnswer(conn, get("/missing.html")));
      assert(notFound.includes(hexOf(new TextEncoder().encode("<h1>Nothing here</h1>\n"))));
      for (
        const path of [
          "/../../etc/passwd",
          "/%2e%2e/%2e%2e/etc/passwd",
          "/.htpasswd",
          "/link.txt",
          "/dir/secret.txt",
          "/big.bin",
          "/404.html/x",
        ]
      ) {
        assertEquals(hexOf(await rawAnswer(conn, get(path))), notFound, path);
      }
      // A CONNECT-IP request without credentials, or with wrong ones, gets the same page.
      const connectIp = (...extra: HeaderField[]) => [
        ...buildConnectIpRequest({ authority: "localhost", path: ANY_PATH }),
        ...extra,
      ];
      assertEquals(hexOf(await rawAnswer(conn, connectIp())), notFound, "no credentials");
      assertEquals(
        hexOf(await rawAnswer(conn, connectIp(bearerField(tokens.alice.slice(0, -4) + "AAAA")))),
        notFound,
        "a wrong token",
      );
      assert(!server.lines.some((line) => line.includes("outside the site")));
    } finally {
      h3.close();
      await server.close();
      await Deno.remove(site, { recursive: true });
      await Deno.remove(outside, { recursive: true });
    }
  },
});

Deno.test({
  name: "a valid bearer token and valid Basic credentials open sessions, as their users",
  ...opts,
  async fn() {
    const { server, tokens } = await startAuthRelay();
    const a = await connectClient(server.port, "127.0.0.1", [bearerField(tokens.alice)]);
    const b = await connectClient(server.port, "127.0.0.1", [basicField("bob", "correct horse")]);
    try {
      const sa = await a.open();
      const sb = await b.open();
      // A second session on alice's connection: the check is remembered, not hashed again.
      await a.open();
      const users = server.relay.sessions.map((s) => s.identity.user).sort();
      assertEquals(users, ["alice", "alice", "bob"]);
      assertEquals(server.relay.counters.value("relay_auth_successes_total"), 3);
      // Traffic goes through.
      assert(sa.v4 !== sb.v4);
      assert(server.count(/INFO .*session opened .*user=alice /) === 2);
      const failure = await assertRejects(
        async () => {
          const c = await connectClient(server.port, "127.0.0.1", [bearerField("AAAAAAAA.x")]);
          try {
            await c.open();
          } finally {
            c.close();
          }
        },
        ConnectIpError,
        "the relay answered 404: it refused the credentials or has no CONNECT-IP at this path",
      );
      assertEquals(failure.status, 404);
    } finally {
      a.close();
      b.close();
      await server.close();
    }
  },
});

Deno.test({
  name: "per-user and per-connection session limits hold under concurrent requests",
  ...opts,
  async fn() {
    const { server, tokens } = await startAuthRelay({
      limits: { maxSessionsPerConnection: 3, maxRequestsPerConnection: 16 },
    });
    const carol = await Promise.all([
      connectClient(server.port, "127.0.0.1", [bearerField(tokens.carol)]),
      connectClient(server.port, "127.0.0.1", [bearerField(tokens.carol)]),
    ]);
    const alice = await connectClient(server.port, "127.0.0.2", [bearerField(tokens.alice)]);
    try {
      // Carol (maxSessions 2): 2 x 5 requests at once over two connections.
      const results = await within(
        Promise.allSettled(carol.flatMap((c) => Array.from({ length: 5 }, () => c.open()))),
        "10 of carol's requests",
        15_000,
      );
      const refused = results.flatMap((r) =>
        r.status === "rejected" && r.reason instanceof ConnectIpError ? [r.reason.status] : []
      );
      assertEquals(results.filter((r) => r.status === "fulfilled").length, 2);
      assertEquals(refused, Array(8).fill(429));
      // Alice (maxSessions 4, connection cap 3): 6 requests on one connection.
      const many = await within(
        Promise.allSettled(Array.from({ length: 6 }, () => alice.open())),
        "6 of alice's requests",
        15_000,
      );
      assertEquals(many.filter((r) => r.status === "fulfilled").length, 3);
      assert(
        server.count(/request refused .*status=429 .*session limit of this connection/) === 3,
      );
      assertEquals(
        server.relay.sessions.map((s) => s.identity.user).sort(),
        ["alice", "alice", "alice", "carol", "carol"],
      );
      assertEquals(server.relay.poolUsage, { v4: 5, v6: 5 });
    } finally {
      for (const c of [...carol, alice]) c.close();
      await server.close();
    }
  },
});

Deno.test({
  name:
    "after 10 failures the source is refused, its unauthenticated connections closed; other sources go on",
  ...opts,
  async fn() {
    const { server, tokens } = await startAuthRelay();
    const good = await connectClient(server.port, "127.0.0.2", [bearerField(tokens.alice)]);
    const bad = await connectClient(server.port, "127.0.0.1", [basicField("bob", "guess")]);
    const idle = await dialFrom(server.port, "127.0.0.1");
    // A user behind the same address as the prober (one NAT), logged in before the block.
    const neighbour = await connectClient(server.port, "127.0.0.1", [bearerField(tokens.carol)]);
    try {
      await good.open();
      const neighbourSession = await neighbour.open();
      for (let i = 0; i < 9; i++) {
        await assertRejects(() => bad.open(), ConnectIpError, "answered 404");
      }
      assertEquals(server.relay.counters.value("relay_auth_sources_blocked_total"), 0);
      // The 10th failure blocks 127.0.0.1: this connection and its other one close.
      await assertRejects(() => bad.open(), ConnectIpError);
      const closed = await within(bad.conn.closed, "the bad connection's close", 5000);
      assertEquals(closed.closeCode, 0x107); // H3_EXCESSIVE_LOAD
      await within(idle.conn.closed, "the other connection from 127.0.0.1 to close", 5000);
      assertEquals(server.relay.counters.value("relay_auth_sources_blocked_total"), 1);
      // A new connection from the blocked source is closed after the handshake,
      // even with a valid token.
      const again = await dialFrom(server.port, "127.0.0.1");
      const info = await within(again.conn.closed, "the refused connection's close", 5000);
      assertEquals(info.closeCode, 0x107);
      again.close();
      assertEquals(
        server.relay.counters.value("relay_connections_refused_total", "auth-failures"),
        1,
      );
      assert(
        server.count(/WARN .*source blocked for failed authentications source=127.0.0.1 /) === 1,
      );
      // 127.0.0.2 is not affected.
      await good.open();
      // The neighbour's connection stays open, and its session carries on...
      assert(server.count(/source blocked .*connectionsClosed=2 authenticatedKept=1/) === 1);
      assertEquals(server.relay.sessions.length, 3);
      await neighbour.open();
      assertEquals(server.relay.sessions.length, 4);
      const settled = await Promise.race([
        neighbourSession.end.then(() => "ended", () => "ended"),
        new Promise((resolve) => setTimeout(() => resolve("running"), 50)),
      ]);
      assertEquals(settled, "running");
      // ...until it fails itself while its source is blocked: then it is closed too.
      await assertRejects(() =>
        openConnectIpSession(neighbour.h3, {
          authority: "localhost",
          path: ANY_PATH,
          mode: "datagram",
          headers: [bearerField(tokens.carol.slice(0, -2) + "AA")],
        })
      );
      const neighbourClosed = await within(neighbour.conn.closed, "the neighbour's close", 5000);
      assertEquals(neighbourClosed.closeCode, 0x107);
      await until(
        () => server.relay.sessions.length === 2,
        "the neighbour's sessions to end",
        5000,
      );
    } finally {
      good.close();
      bad.close();
      idle.close();
      neighbour.close();
      await server.close();
    }
  },
});

Deno.test({
  name:
    "SIGHUP rereads the users file: a removed user's session ends within 1 s, another's routes change",
  ...opts,
  async fn() {
    const dir = await Deno.makeTempDir();
    const file = `${dir}/users.json`;
    const { entries, tokens } = await makeUsers([
      { name: "alice" },
      { name: "dave", policy: { routes: [parsePrefix("198.18.1.0/24")] } },
    ]);
    await writeUsersFile(file, entries);
    assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600);
    const users = new UserAuthenticator(entries);
    const server = await startTestRelay({ authenticator: users });
    const pools = ["198.18.100.0/24", "fd00:100::/64"].map(parsePrefix);
    const lines: string[] = [];
    const log = createLogger({ level: "debug", write: (line) => lines.push(line) });
    const stop = onSighup(async () => {
      await reloadUsers(server.relay, users, file, pools, log);
    }, log);
    const a = await connectClient(server.port, "127.0.0.1", [bearerField(tokens.alice)]);
    const d = await connectClient(server.port, "127.0.0.1", [bearerField(tokens.dave)]);
    try {
      const sa = await a.open();
      const sd = await d.open();
      const routes = () =>
        sd.capsules.filter((c) => c.type === "route_advertisement").map((c) =>
          c.type === "route_advertisement"
            ? c.ranges.map((r) => `${formatIp(r.start)}-${formatIp(r.end)}`).join(",")
            : ""
        );
      assertEquals(routes(), ["198.18.1.0-198.18.1.255"]);
      // A broken file is refused whole; nothing changes.
      await Deno.writeTextFile(file, '{"users": [{"name": "alice"}]}');
      Deno.kill(Deno.pid, "SIGHUP");
      await until(() => lines.some((l) => l.includes("users file not reloaded")), "the refusal");
      assert(lines.some((l) => l.includes(`users[0] \\"alice\\": has neither`)), lines.join("\n"));
      assertEquals(server.relay.sessions.length, 2);
      // Now alice goes, and dave may reach 198.18.2.0/24 instead.
      await writeUsersFile(file, [
        { ...entries[1], policy: { ...entries[1].policy, routes: [parsePrefix("198.18.2.0/24")] } },
      ]);
      const started = performance.now();
      Deno.kill(Deno.pid, "SIGHUP");
      const end = await within(sa.end, "alice's session to end", 1000);
      const took = performance.now() - started;
      assert(took < 1000, `${took} ms`);
      assertEquals(end.reason, "closed");
      await until(() => server.relay.sessions.length === 1, "the relay to drop alice's session");
      assertEquals(server.relay.sessions[0].identity.user, "dave");
      assertEquals(server.relay.poolUsage, { v4: 1, v6: 1 });
      await until(() => routes().length === 2, "dave's new ROUTE_ADVERTISEMENT");
      assertEquals(routes()[1], "198.18.2.0-198.18.2.255");
      assert(server.count(/session closed .*user=alice .*reason="user removed"/) === 1);
      assert(
        lines.some((l) => /users reloaded .*users=1 sessionsEnded=1 sessionsRerouted=1/.test(l)),
      );
      // Alice's token no longer opens a session.
      await assertRejects(() => a.open(), ConnectIpError, "answered 404");
    } finally {
      stop();
      a.close();
      d.close();
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "SIGHUP after users set --new-token: sessions opened with the old token end within 1 s, the user's Basic session stays",
  ...opts,
  async fn() {
    const dir = await Deno.makeTempDir();
    const file = `${dir}/users.json`;
    const { entries, tokens } = await makeUsers([{ name: "frank", password: "frank's pw" }]);
    await writeUsersFile(file, entries);
    const users = new UserAuthenticator(entries);
    const server = await startTestRelay({ authenticator: users });
    const pools = ["198.18.100.0/24", "fd00:100::/64"].map(parsePrefix);
    const log = createLogger({ level: "error", write: () => {} });
    const stop = onSighup(async () => {
      await reloadUsers(server.relay, users, file, pools, log);
    }, log);
    const byToken = await connectClient(server.port, "127.0.0.1", [bearerField(tokens.frank)]);
    const byPassword = await connectClient(server.port, "127.0.0.1", [
      basicField("frank", "frank's pw"),
    ]);
    try {
      const st = await byToken.open();
      const sp = await byPassword.open();
      // The token is replaced (what `deno task users set frank --new-token` writes).
      const { entries: renewed } = await makeUsers([{ name: "frank" }]);
      await writeUsersFile(file, [{ ...entries[0], token: renewed[0].token }]);
      const started = performance.now();
      Deno.kill(Deno.pid, "SIGHUP");
      await within(st.end, "the old token's session to end", 1000);
      assert(performance.now() - started < 1000);
      await until(() => server.relay.sessions.length === 1, "one session left");
      assert(server.count(/session closed .*user=frank .*reason="credentials replaced"/) === 1);
      const settled = await Promise.race([
        sp.end.then(() => "ended", () => "ended"),
        new Promise((resolve) => setTimeout(() => resolve("running"), 100)),
      ]);
      assertEquals(settled, "running");
      // The old token opens nothing more, even on the connection that had proved it.
      await assertRejects(() => byToken.open(), ConnectIpError, "answered 404");
    } finally {
      stop();
      byToken.close();
      byPassword.close();
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "a user's fixed address and protocols: its sessions get the address, the newest takes it over, TCP outside its protocols gets ICMP prohibited",
  ...opts,
  async fn() {
    const fixed4 = "198.18.100.50";
    const { entries, tokens } = await makeUsers([
      {
        name: "erin",
        policy: { protocols: [17], address4: parseIp(fixed4)!, address6: parseIp("fd00:100::50")! },
      },
    ]);
    const users = new UserAuthenticator(entries);
    const server = await startTestRelay({ authenticator: users });
    // What relay/main.ts does with the users file at start.
    server.relay.applyPolicies((name) => users.policyOf(name), fixedAddresses(entries));
    const first = await connectClient(server.port, "127.0.0.1", [bearerField(tokens.erin)]);
    const second = await connectClient(server.port, "127.0.0.1", [bearerField(tokens.erin)]);
    try {
      const s1 = await first.open();
      assertEquals(s1.v4, fixed4);
      // UDP passes to the TUN.
      const udp = buildIpv4Udp({
        src: fixed4,
        dst: "198.18.1.2",
        srcPort: 4000,
        dstPort: 53,
        payload: "erin",
      });
      assertEquals(s1.session.sendPacket(udp), "sent");
      const forwarded = await server.tun.nextWritten();
      assertEquals(forwarded.length, udp.length);
      // TCP is outside erin's protocols: dropped, counted, and answered.
      const tcp = buildIpv4({
        src: fixed4,
        dst: "198.18.1.2",
        protocol: 6,
        payload: new Uint8Array(20),
      });
      assertEquals(s1.session.sendPacket(tcp), "sent");
      await until(() => s1.received.length >= 1, "the ICMP answer");
      const icmp = s1.received[0];
      assertEquals([icmp[9], icmp[20], icmp[21]], [1, 3, 13]); // ICMP, unreachable, prohibited
      // From the relay's gateway address, as a router answers; quoting erin's packet.
      assertEquals(formatIp(icmp.subarray(12, 16)), "198.18.100.1");
      assertEquals(formatIp(icmp.subarray(16, 20)), fixed4);
      assertEquals(formatIp(icmp.subarray(28 + 16, 28 + 20)), "198.18.1.2");
      assertEquals(icmp[28 + 9], 6);
      assertEquals(
        server.relay.counters.value(
          "relay_user_packets_dropped_total",
          "erin",
          "inbound",
          "protocol not allowed",
        ),
        1,
      );
      // A second session of erin (a client that reconnected) takes the address over.
      const s2 = await second.open();
      assertEquals(s2.v4, fixed4);
      await within(s1.end, "the older session to end", 2000);
      await until(() => server.relay.sessions.length === 1, "one session of erin left");
    } finally {
      first.close();
      second.close();
      await server.close();
    }
  },
});

Deno.test({
  name: "no token or password reaches a log line or the status",
  ...opts,
  async fn() {
    const { server, tokens } = await startAuthRelay();
    const clients = [
      await connectClient(server.port, "127.0.0.1", [bearerField(tokens.alice)]),
      await connectClient(server.port, "127.0.0.1", [basicField("bob", "correct horse")]),
      await connectClient(server.port, "127.0.0.2", [
        bearerField(tokens.carol.slice(0, -2) + "xx"),
      ]),
      await connectClient(server.port, "127.0.0.2", [basicField("bob", "wrong horse")]),
    ];
    try {
      await clients[0].open();
      await clients[1].open();
      await assertRejects(() => clients[2].open(), ConnectIpError);
      await assertRejects(() => clients[3].open(), ConnectIpError);
      clients[0].close();
      await until(() => server.relay.sessions.length === 1, "alice's session to close");
      const status = JSON.stringify(server.relay.status());
      assert(status.includes('"user":"bob"'));
      const secrets = [
        tokens.alice,
        tokens.alice.split(".")[1],
        tokens.carol.split(".")[1].slice(0, -2),
        "correct horse",
        "wrong horse",
        btoa("bob:correct horse"),
      ];
      // The debug log holds every line the relay wrote (sessions, refusals, failures).
      assert(server.lines.length > 5);
      assert(server.lines.some((l) => l.includes("authentication failed")));
      for (const secret of secrets) {
        for (const line of server.lines) assert(!line.includes(secret), `log line: ${line}`);
        assert(!status.includes(secret), "status file");
      }
    } finally {
      for (const c of clients) c.close();
      await server.close();
    }
  },
});
