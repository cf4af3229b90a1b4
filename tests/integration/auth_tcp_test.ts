/**
 * Issue 10's authentication over HTTP/2 and WebTransport (issue 13): the
 * relay's one admission (`Relay #admissionFor`) runs for every transport,
 * so the same users file, the same "no" for missing or wrong credentials
 * and an unknown path, the same per-user limits and the same failure
 * limiter hold over TLS and TCP as over QUIC (tests/integration/auth_test.ts).
 * WebTransport carries the credentials in the path's query
 * (`proxy-authorization=`), since its client sends no header of ours.
 */
import { assert, assertEquals } from "../support/assert.ts";
import { testCerts } from "../support/certs.ts";
import { until } from "../support/fake_quic.ts";
import { startTestRelay } from "../support/relay_harness.ts";
import { makeUsers } from "../support/users.ts";
import { UserAuthenticator } from "../../relay/users.ts";
import { basicField, bearerField } from "../../shared/auth/credentials.ts";
import type { HeaderField } from "../../shared/h3/qpack.ts";
import { CounterRegistry } from "../../shared/counters.ts";
import { createLogger } from "../../shared/log.ts";
import { SessionCounters } from "../../shared/masque/connect_ip_session.ts";
import { ConnectIpError } from "../../shared/masque/h3_connect_ip.ts";
import {
  dialH2,
  openH2ClientSession,
  openWebTransportClientSession,
} from "../../client/transports.ts";
import type { ClientSession } from "../../client/client.ts";
import { dialWebTransport } from "../../client/webtransport.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const PATH = "/.well-known/masque/ip/*/*/";
const log = createLogger({ level: "error", write: () => {} });

async function startAuthRelay(limits: Record<string, number> = {}) {
  const { entries, tokens } = await makeUsers([
    { name: "alice" },
    { name: "bob", token: false, password: "correct horse" },
    { name: "carol", policy: { maxSessions: 2 } },
  ]);
  const server = await startTestRelay({
    tcp: true,
    authenticator: new UserAuthenticator(entries),
    limits,
  });
  const { caPem } = await testCerts();
  const tcp = {
    hostname: "127.0.0.1",
    port: server.tcpPort,
    serverName: "localhost",
    caCerts: [caPem],
    log,
  };
  const request = (headers: HeaderField[], path = PATH) => {
    const counters = new CounterRegistry();
    return {
      authority: "localhost",
      path,
      headers,
      log,
      counters,
      sessionCounters: new SessionCounters(counters),
    };
  };
  const h2 = (headers: HeaderField[], path?: string) =>
    openH2ClientSession(() => dialH2(tcp), request(headers, path));
  const wt = (query: string) =>
    openWebTransportClientSession(
      () => dialWebTransport(tcp, `${PATH}${query}`),
      request([]),
    );
  return { server, tokens, h2, wt };
}

/** The status a refused open got, or "opened". */
async function statusOf(open: Promise<ClientSession>): Promise<number | string> {
  try {
    const session = await open;
    await session.close();
    return "opened";
  } catch (error) {
    return error instanceof ConnectIpError ? error.status ?? "no status" : String(error);
  }
}

Deno.test({
  name:
    "HTTP/2: no or wrong credentials get the answer of an unknown path; valid ones open sessions",
  ...opts,
  async fn() {
    const { server, tokens, h2 } = await startAuthRelay({ authFailuresPerMinute: 100 });
    try {
      const wrong = tokens.alice.slice(0, -4) + "AAAA";
      // One at a time: each attempt starts when the one before has been answered.
      const cases: [string, () => Promise<ClientSession>][] = [
        ["an unknown path, with a valid token", () => h2([bearerField(tokens.alice)], "/nope")],
        ["no credentials", () => h2([])],
        ["a wrong token", () => h2([bearerField(wrong)])],
        ["a known Basic user, wrong password", () => h2([basicField("bob", "x")])],
        ["a malformed header", () => h2([["proxy-authorization", "Bearer !!"]])],
      ];
      for (const [what, open] of cases) assertEquals(await statusOf(open()), 404, what);
      assertEquals(server.relay.counters.value("relay_auth_failures_total"), 4);
      assertEquals(server.relay.poolUsage, { v4: 0, v6: 0 });
      // Valid bearer and Basic credentials: sessions of those users, over HTTP/2.
      const a = await h2([bearerField(tokens.alice)]);
      const b = await h2([basicField("bob", "correct horse")]);
      try {
        const users = server.relay.sessions.map((s) => `${s.identity.user} ${s.transport}`);
        assertEquals(users.sort(), ["alice h2", "bob h2"]);
        // The unknown path's valid token counted too: credentials come before the path.
        assertEquals(server.relay.counters.value("relay_auth_successes_total"), 3);
      } finally {
        await a.close();
        await b.close();
      }
    } finally {
      await server.close();
    }
  },
});

Deno.test({
  name: "HTTP/2: a user's session limit holds as over HTTP/3 (429 past it)",
  ...opts,
  async fn() {
    const { server, tokens, h2 } = await startAuthRelay();
    const open: ClientSession[] = [];
    try {
      open.push(await h2([bearerField(tokens.carol)]));
      open.push(await h2([bearerField(tokens.carol)]));
      assertEquals(await statusOf(h2([bearerField(tokens.carol)])), 429);
      assertEquals(server.relay.sessions.length, 2);
    } finally {
      for (const session of open) await session.close();
      await server.close();
    }
  },
});

Deno.test({
  name: "HTTP/2: failed authentications block the source; its new TCP connections are refused",
  ...opts,
  async fn() {
    const { server, tokens, h2 } = await startAuthRelay({ authFailuresPerMinute: 3 });
    try {
      for (let i = 0; i < 2; i++) {
        assertEquals(await statusOf(h2([bearerField("AAAAAAAA.nope")])), 404);
      }
      // The third blocks the source; its connection is closed (ENHANCE_YOUR_CALM).
      assert((await statusOf(h2([bearerField("AAAAAAAA.nope")]))) !== "opened");
      assertEquals(server.relay.counters.value("relay_auth_sources_blocked_total"), 1);
      // Blocked: even a valid token cannot get in from this source now.
      const status = await statusOf(h2([bearerField(tokens.alice)]));
      assert(status !== "opened", `a blocked source opened a session (${status})`);
      assert(
        server.relay.counters.value("relay_connections_refused_total", "auth-failures") >= 1,
        "the TCP connection was refused for the source's failures",
      );
      assertEquals(server.relay.sessions.length, 0);
    } finally {
      await server.close();
    }
  },
});

Deno.test({
  name: "WebTransport: credentials in the path's query; none or wrong ones are refused",
  ...opts,
  async fn() {
    const { server, tokens, wt } = await startAuthRelay({ authFailuresPerMinute: 100 });
    try {
      const param = (token: string) =>
        `?proxy-authorization=${encodeURIComponent(`Bearer ${token}`)}`;
      assert((await statusOf(wt(""))) !== "opened", "no credentials");
      assert((await statusOf(wt(param("AAAAAAAA.nope")))) !== "opened", "a wrong token");
      assertEquals(server.relay.counters.value("relay_auth_failures_total"), 2);
      assertEquals(server.relay.sessions.length, 0);
      const session = await wt(param(tokens.alice));
      try {
        await until(() => server.relay.sessions.length === 1, "the session at the relay", 5000);
        const users = server.relay.sessions.map((s) => `${s.identity.user} ${s.transport}`);
        assertEquals(users, ["alice webtransport"]);
      } finally {
        await session.close();
      }
    } finally {
      await server.close();
    }
  },
});
