/**
 * Hostile clients against the real relay over real QUIC on 127.0.0.1, with
 * an in-memory TUN, while a well-behaved client keeps exchanging packets
 * through the relay:
 *
 * (a) malformed capsules on connect-ip sessions;
 * (b) garbage as the control stream, and a QPACK dynamic-table reference;
 * (c) random datagrams on a connection with a session, and a truncated one;
 * (d) a flood of 1000 requests with bad headers.
 *
 * The relay must never throw or leave a rejected promise unhandled, must
 * count and log the bad input, and the good client must see every round
 * trip answered. Everything is bounded in time and count.
 *
 * Run: deno test --unstable-net --allow-net --allow-read --allow-env tests/integration/hostile_test.ts
 */
import { ANONYMOUS } from "../../relay/sessions.ts";
import type { Authenticator } from "../../relay/sessions.ts";
import { nonZero } from "../support/counters.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { fuzz, hex, type Random } from "../support/bytes.ts";
import { dialTestServer, testCerts } from "../support/certs.ts";
import { until, within } from "../support/fake_quic.ts";
import { InMemoryPacketDevice } from "../support/memory_tun.ts";
import { buildIpv4Udp } from "../support/packet_builder.ts";
import { Relay } from "../../relay/relay.ts";
import {
  H3_CLOSED_CRITICAL_STREAM,
  H3_DATAGRAM_ERROR,
  H3_EXCESSIVE_LOAD,
  H3_FRAME_ERROR,
  H3_FRAME_UNEXPECTED,
  H3_ID_ERROR,
  H3_MISSING_SETTINGS,
  H3_SETTINGS_ERROR,
  QPACK_DECOMPRESSION_FAILED,
} from "../../shared/errors.ts";
import { H3Connection } from "../../shared/h3/connection.ts";
import type { HeaderField } from "../../shared/h3/qpack.ts";
import { createLogger } from "../../shared/log.ts";
import {
  buildConnectIpRequest,
  expandConnectIpPath,
} from "../../shared/masque/connect_ip_request.ts";
import { ConnectIpError, openConnectIpSession } from "../../shared/masque/h3_connect_ip.ts";
import type { ConnectIpSession, SessionEnd } from "../../shared/masque/connect_ip_session.ts";
import type { Capsule } from "../../shared/masque/capsule.ts";
import { formatIp, parsePrefix } from "../../shared/ip/ip_address.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const ALPN = ["h3"];
/** Longest any one phase may take, milliseconds. */
const PHASE_MS = 30_000;

const ANY_PATH = expandConnectIpPath("/.well-known/masque/ip/{target}/{ipproto}/", {
  target: { kind: "any" },
  ipProtocol: "any",
});

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** The relay on a QUIC listener, its in-memory TUN, its log lines and its connections. */
async function startRelay(
  options: { maxSessions?: number; pool6?: string; authenticator?: Authenticator } = {},
) {
  const { certPem, keyPem } = await testCerts();
  const tun = new InMemoryPacketDevice({ name: "relay-tun", mtu: 1500 });
  const lines: string[] = [];
  const relay = new Relay(tun, {
    pool4: parsePrefix("198.18.100.0/24"),
    pool6: parsePrefix(options.pool6 ?? "fd00:100::/64"),
    routes: ["198.18.0.0/15", "fd00::/8"].map(parsePrefix),
    maxSessions: options.maxSessions ?? 100,
    authenticator: options.authenticator,
    log: createLogger({ level: "debug", write: (line) => lines.push(line) }),
  });
  const tunDone = relay.runTun();
  const connections = new Map<string, H3Connection>();
  const acceptErrors: unknown[] = [];
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  const listener = endpoint.listen({ alpnProtocols: ALPN, cert: certPem, key: keyPem });
  (async () => {
    for await (const incoming of listener) {
      Promise.resolve(incoming.accept()).then((conn) => {
        const remote = `${conn.remoteAddr.hostname}:${conn.remoteAddr.port}`;
        try {
          connections.set(remote, relay.acceptConnection(conn, remote));
        } catch (error) {
          acceptErrors.push(error);
        }
      }, () => {});
    }
  })().catch(() => {});
  return {
    relay,
    tun,
    lines,
    connections,
    acceptErrors,
    tunDone,
    port: endpoint.addr.port,
    /** Log lines matching `pattern`. */
    count: (pattern: RegExp) => lines.filter((line) => pattern.test(line)).length,
    async close() {
      await relay.stop();
      tun.close();
      listener.stop();
      endpoint.close();
    },
  };
}
type TestRelay = Awaited<ReturnType<typeof startRelay>>;

/** A QUIC connection from its own endpoint, so the relay's view of it can be found. */
async function dial(port: number) {
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  const conn = await dialTestServer(port, endpoint);
  return {
    conn,
    remote: `127.0.0.1:${endpoint.addr.port}`,
    close() {
      try {
        conn.close({ closeCode: 0x100, reason: "" });
      } catch {
        // already closed
      }
      endpoint.close();
    },
  };
}

/** A client with an H3Connection and a connect-ip session that collects what it receives. */
async function connectClient(port: number) {
  const dialed = await dial(port);
  const h3 = new H3Connection(dialed.conn, { role: "client" });
  await h3.start();
  const open = async () => {
    const session = await openConnectIpSession(h3, {
      authority: "localhost",
      path: ANY_PATH,
      mode: "datagram",
    });
    const capsules: Capsule[] = [];
    const received: Uint8Array[] = [];
    const end: Promise<SessionEnd> = session.run({
      onPacket: (p) => received.push(p.slice()),
      onCapsule: (c) => capsules.push(c),
    });
    await until(() => capsules.length >= 2, "ADDRESS_ASSIGN and ROUTE_ADVERTISEMENT", 5000);
    const assign = capsules.find((c) => c.type === "address_assign");
    assert(assign?.type === "address_assign");
    return { session, received, end, v4: formatIp(assign.addresses[0].prefix.address) };
  };
  return { ...dialed, h3, open };
}

/**
 * The well-behaved client's traffic: UDP to 198.18.1.2 and back, one round
 * trip at a time, until stopped. A round is sent again (at most 3 times)
 * if a QUIC datagram is lost; a round that never completes is a failure.
 */
class Pinger {
  rounds = 0;
  resends = 0;
  readonly failures: string[] = [];
  readonly done: Promise<void>;
  #stopped = false;

  constructor(
    readonly session: ConnectIpSession,
    readonly v4: string,
    readonly received: Uint8Array[],
    readonly tun: InMemoryPacketDevice,
  ) {
    this.done = this.#run();
  }

  stop(): Promise<void> {
    this.#stopped = true;
    return this.done;
  }

  /** Waits until `n` more rounds have completed. */
  more(n: number, what: string): Promise<void> {
    const target = this.rounds + n;
    return until(() => this.rounds >= target || this.failures.length > 0, what, 10_000);
  }

  async #run(): Promise<void> {
    let seenWritten = 0;
    let seenReceived = 0;
    const find = (list: Uint8Array[], packet: Uint8Array, from: number) => {
      for (let i = from; i < list.length; i++) if (sameBytes(list[i], packet)) return true;
      return false;
    };
    for (let i = 0; !this.#stopped; i++) {
      const ping = buildIpv4Udp({
        src: this.v4,
        dst: "198.18.1.2",
        srcPort: 40000,
        dstPort: 7,
        payload: `ping ${i}`,
      });
      const pong = buildIpv4Udp({
        src: "198.18.1.2",
        dst: this.v4,
        srcPort: 7,
        dstPort: 40000,
        payload: `pong ${i}`,
      });
      let ok = false;
      for (let attempt = 0; attempt < 3 && !ok; attempt++) {
        if (attempt > 0) this.resends++;
        if (this.session.sendPacket(ping) !== "sent") break;
        try {
          await until(() => find(this.tun.written, ping, seenWritten), `ping ${i}`, 1000);
          this.tun.inject(pong);
          await until(() => find(this.received, pong, seenReceived), `pong ${i}`, 1000);
          ok = true;
        } catch {
          // lost: send again
        }
      }
      seenWritten = this.tun.written.length;
      seenReceived = this.received.length;
      if (ok) this.rounds++;
      else {
        this.failures.push(`round ${i}`);
        return;
      }
    }
  }
}

/** Codes a hostile control stream may close the connection with. */
const CONTROL_CODES = new Set([
  H3_MISSING_SETTINGS,
  H3_CLOSED_CRITICAL_STREAM,
  H3_FRAME_UNEXPECTED,
  H3_FRAME_ERROR,
  H3_EXCESSIVE_LOAD,
  H3_SETTINGS_ERROR,
  H3_ID_ERROR,
]);

/** Requests that are not valid connect-ip requests, each with the status the relay owes. */
const BAD_REQUESTS: [HeaderField[], number][] = [
  [[[":method", "GET"], [":scheme", "https"], [":authority", "localhost"], [":path", "/"]], 404],
  [[[":method", "CONNECT"], [":authority", "198.18.1.2:80"]], 405],
  [[[":method", "CONNECT"], [":authority", "198.18.1.2:80"], [":path", "/"]], 400],
  [[
    [":method", "CONNECT"],
    [":protocol", "connect-udp"],
    [":scheme", "https"],
    [":authority", "localhost"],
    [":path", "/.well-known/masque/udp/198.18.1.2/53/"],
    ["capsule-protocol", "?1"],
  ], 501],
  [buildConnectIpRequest({ authority: "localhost", path: "/.well-known/masque/ip/*/300/" }), 400],
  [buildConnectIpRequest({ authority: "localhost", path: "/.well-known/masque/ip/host/*/" }), 400],
  [buildConnectIpRequest({ authority: "localhost", path: "/nope" }), 404],
  [
    buildConnectIpRequest({ authority: "localhost", path: ANY_PATH }).filter(([n]) =>
      n !== "capsule-protocol"
    ),
    400,
  ],
  [[[":method", "CONNECT"], [":protocol", "connect-ip"], [":path", ANY_PATH]], 400],
  [[[":method", "CONNECT"], [":protocol", "connect-ip"], [":bogus", "x"]], 400],
  [[["Upper", "x"], [":method", "CONNECT"]], 400],
  [[], 400],
];

Deno.test({
  name: "hostile clients neither crash the relay nor disturb a well-behaved client",
  ...opts,
  async fn(t) {
    const rejections: unknown[] = [];
    const errors: unknown[] = [];
    const onRejection = (event: PromiseRejectionEvent) => {
      rejections.push(event.reason);
      event.preventDefault();
    };
    const onError = (event: ErrorEvent) => {
      errors.push(event.error);
      event.preventDefault();
    };
    globalThis.addEventListener("unhandledrejection", onRejection);
    globalThis.addEventListener("error", onError);
    const server = await startRelay();
    const hostiles: { close(): void }[] = [];
    const good = await connectClient(server.port);
    let pinger: Pinger | undefined;
    try {
      const goodSession = await good.open();
      pinger = new Pinger(goodSession.session, goodSession.v4, goodSession.received, server.tun);
      await pinger.more(3, "the first round trips");

      await t.step("(a) malformed capsules end only the hostile's sessions", async () => {
        await within(phaseA(server, hostiles), "phase (a)", PHASE_MS);
        await pinger!.more(3, "round trips after (a)");
      });
      await t.step("(b) garbage control streams close only the hostile connections", async () => {
        await within(
          fuzz((random) => phaseB(server, hostiles, random), 0xb),
          "phase (b)",
          PHASE_MS,
        );
        await pinger!.more(3, "round trips after (b)");
      });
      await t.step("(c) random datagrams are dropped and counted", async () => {
        await within(
          fuzz((random) => phaseC(server, hostiles, random), 0xc),
          "phase (c)",
          PHASE_MS,
        );
        await pinger!.more(3, "round trips after (c)");
      });
      await t.step("(d) 1000 requests with bad headers are all refused", async () => {
        const before = pinger!.rounds;
        await within(phaseD(server, hostiles), "phase (d)", PHASE_MS);
        // The good client kept going during the flood, not only after it.
        assert(pinger!.rounds > before, "no round trip completed during the flood");
        await pinger!.more(3, "round trips after (d)");
      });

      await pinger.stop();
      assertEquals(pinger.failures, []);
      assert(pinger.rounds >= 15, `only ${pinger.rounds} round trips`);
      // Only the good client's packets reached the TUN.
      assert(
        server.tun.written.every((p) => formatIp(p.subarray(12, 16)) === goodSession.v4),
        "a hostile packet reached the TUN",
      );
      assertEquals(server.relay.sessions.length, 1);
      assertEquals(server.relay.poolUsage, { v4: 1, v6: 1 });
      assertEquals(server.acceptErrors, []);
    } finally {
      await pinger?.stop();
      for (const hostile of hostiles) hostile.close();
      good.close();
      await server.close();
      // Let closes settle so late rejections are seen.
      await new Promise((resolve) => setTimeout(resolve, 200));
      globalThis.removeEventListener("unhandledrejection", onRejection);
      globalThis.removeEventListener("error", onError);
    }
    assertEquals(rejections.map(String), []);
    assertEquals(errors.map(String), []);
  },
});

/** (a): three sessions on one hostile connection, each sent a different malformed capsule. */
async function phaseA(server: TestRelay, hostiles: { close(): void }[]): Promise<void> {
  const hostile = await connectClient(server.port);
  hostiles.push(hostile);
  const closedBefore = server.relay.counters.value("relay_sessions_closed_total");
  const malformed = [
    // 03 ROUTE_ADVERTISEMENT, 0a length; 04 IPv4, start 198.18.0.2, end 198.18.0.1, 00 any
    "03 0a 04 c6120002 c6120001 00",
    // 01 ADDRESS_ASSIGN, 07 length; 00 id, 04 IPv4, 198.18.0.2, 21 prefix length 33
    "01 07 00 04 c6120002 21",
    // 00 DATAGRAM, 80 01 11 70: length 70000, over the limit
    "00 80011170",
  ];
  const ends: SessionEnd[] = [];
  for (const bytes of malformed) {
    const { session, end } = await hostile.open();
    await session.stream.writeData(hex(bytes));
    ends.push(await within(end, "the hostile session's end", 5000));
  }
  // The relay ended each session; the hostile client saw its stream end.
  assertEquals(ends.map((e) => e.reason), ["closed", "closed", "closed"]);
  await until(
    () => server.relay.counters.value("relay_sessions_closed_total") === closedBefore + 3,
    "sessions closed",
    5000,
  );
  assertEquals(server.relay.sessions.length, 1);
  assertEquals(server.relay.poolUsage, { v4: 1, v6: 1 });
  assertEquals(server.count(/WARN .*malformed capsule, closing session/), 3);
  assertEquals(
    server.count(
      /session closed .*reason="Cannot parse ROUTE_ADVERTISEMENT capsule: range 0 start 198.18.0.2 is after end 198.18.0.1"/,
    ),
    1,
  );
  assertEquals(server.count(/reason="Cannot parse capsule: length 70000 exceeds limit 65551"/), 1);
  // A malformed capsule is a stream error: the hostile's connection is still served.
  assertEquals(server.connections.get(hostile.remote)?.closeError, undefined);
  const again = await hostile.open();
  assert(again.v4.startsWith("198.18.100."));
  await again.session.close();
}

/** (b): control streams of garbage, each on its own connection, then a QPACK dynamic reference. */
async function phaseB(
  server: TestRelay,
  hostiles: { close(): void }[],
  random: Random,
): Promise<void> {
  const closes: number[] = [];
  const cases: Uint8Array[] = [
    // 00 CONTROL, then 01 HEADERS, 02 length, 00 00: not SETTINGS first
    hex("00 01020000"),
    // 00 CONTROL, 04 SETTINGS, 02 length, 33 07: H3_DATAGRAM = 7
    hex("00 0402 3307"),
  ];
  for (let i = 0; i < 20; i++) {
    // 00 CONTROL, then random bytes; the stream is finished, so it ends one way or another.
    cases.push(Uint8Array.from([0, ...Array.from({ length: 1 + (i % 30) }, () => random() * 256)]));
  }
  for (const bytes of cases) {
    const hostile = await dial(server.port);
    hostiles.push(hostile);
    const stream = await hostile.conn.createUnidirectionalStream();
    const writer = stream.getWriter();
    await writer.write(bytes).catch(() => {});
    await writer.close().catch(() => {});
    const info = await within(
      hostile.conn.closed,
      "the relay closing the hostile connection",
      5000,
    );
    closes.push(info.closeCode);
    assert(
      CONTROL_CODES.has(info.closeCode),
      `control stream ${
        [...bytes].map((b) => b.toString(16)).join(" ")
      } closed with ${info.closeCode}`,
    );
  }
  assertEquals(closes.slice(0, 2), [H3_MISSING_SETTINGS, H3_SETTINGS_ERROR]);
  assertEquals(server.count(/WARN .*closing HTTP\/3 connection .*code=0x10a/) >= 1, true);
  assertEquals(server.count(/WARN .*closing HTTP\/3 connection/) >= cases.length, true);

  // A request whose HEADERS references the QPACK dynamic table: 01 HEADERS, 03 length,
  // 01 Required Insert Count 1, 00 base, d1 `:method GET`.
  const qpack = await dial(server.port);
  hostiles.push(qpack);
  const bidi = await qpack.conn.createBidirectionalStream();
  const writer = bidi.writable.getWriter();
  await writer.write(hex("01 03 0100 d1")).catch(() => {});
  const info = await within(qpack.conn.closed, "the QPACK error close", 5000);
  assertEquals(info.closeCode, QPACK_DECOMPRESSION_FAILED);
  assertEquals(
    info.reason,
    "Cannot decode field section: dynamic table reference with a zero-capacity table",
  );
}

/** (c): 2000 random datagrams on a connection with a session, then one truncated datagram. */
async function phaseC(
  server: TestRelay,
  hostiles: { close(): void }[],
  random: Random,
): Promise<void> {
  const hostile = await connectClient(server.port);
  hostiles.push(hostile);
  const { session } = await hostile.open();
  const qsid = session.stream.quarterStreamId;
  const h3 = server.connections.get(hostile.remote);
  assert(h3 !== undefined, "the relay's side of the hostile connection");
  const relaySession = server.relay.sessions.find((s) => s.remote === hostile.remote);
  assert(relaySession !== undefined);
  const droppedBefore = Object.values(
    nonZero(server.relay.counters, "tunnel_packets_dropped_total", "inbound"),
  )
    .reduce((a, b) => a + b, 0);
  const writtenBefore = server.tun.written.length;
  const inBefore = h3.stats.datagramsIn;
  const unroutableBefore = h3.stats.datagramsUnroutable;
  const sent = 2000;
  for (let i = 0; i < sent; i++) {
    const length = 9 + Math.floor(random() * 200);
    const datagram = Uint8Array.from({ length }, () => random() * 256);
    // Half go to the hostile's own session (its quarter stream id, then a random context
    // id and payload); the rest start with a random 1-, 2- or 4-byte quarter stream id.
    // Lengths of 9+ bytes keep every quarter stream id whole, so none is a connection error.
    if (i % 2 === 0) datagram[0] = qsid;
    else datagram[0] = Math.floor(random() * 0xc0);
    // Every fourth datagram has context id 0: a random "IP packet" for the policy to drop.
    if (i % 4 === 0) datagram[1] = 0;
    await hostile.conn.sendDatagram(datagram).catch(() => {});
    if (i % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 1));
  }
  // Everything that arrived is accounted for: unroutable, unknown context, malformed,
  // or an IP packet the policy dropped. QUIC may lose some datagrams, not most.
  const s = relaySession.session.stats;
  const accounted = () =>
    (h3.stats.datagramsUnroutable - unroutableBefore) + s.unknownContext + s.malformed +
    s.packetsIn;
  await until(
    () =>
      h3.stats.datagramsIn - inBefore >= sent * 0.9 &&
      accounted() === h3.stats.datagramsIn - inBefore,
    "the relay to read the datagrams",
    10_000,
  );
  assert(
    s.unknownContext > 0 && s.packetsIn > 0 && h3.stats.datagramsUnroutable > unroutableBefore,
  );
  const droppedAfter = Object.values(
    nonZero(server.relay.counters, "tunnel_packets_dropped_total", "inbound"),
  )
    .reduce((a, b) => a + b, 0);
  assertEquals(droppedAfter - droppedBefore, s.packetsIn);
  // Nothing from the hostile reached the TUN.
  const hostileV4 = formatIp(relaySession.addresses[0].address);
  assertEquals(
    server.tun.written.slice(writtenBefore).filter((p) =>
      formatIp(p.subarray(12, 16)) === hostileV4
    ).length,
    0,
  );
  assert(server.count(/DEBUG .*packet dropped direction=inbound/) >= s.packetsIn);
  assertEquals(h3.closeError, undefined);

  // 40: the first byte of a 2-byte quarter stream id, alone: H3_DATAGRAM_ERROR (RFC 9297 §2.1).
  await hostile.conn.sendDatagram(hex("40")).catch(() => {});
  const info = await within(hostile.conn.closed, "the datagram error close", 5000);
  assertEquals(info.closeCode, H3_DATAGRAM_ERROR);
  assertEquals(h3.stats.datagramsMalformed, 1);
  await until(() => server.relay.sessions.length === 1, "the hostile session to close", 5000);
}

/** (d): 1000 requests with bad headers, 50 at a time, on one connection. */
async function phaseD(server: TestRelay, hostiles: { close(): void }[]): Promise<void> {
  const hostile = await connectClient(server.port);
  hostiles.push(hostile);
  const refusedBefore = server.relay.counters.value("relay_sessions_refused_total");
  const logBefore = server.count(/INFO .*request refused/);
  const total = 1000;
  const statuses = new Map<number, number>();
  const wrong: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      const [headers, expected] = BAD_REQUESTS[i % BAD_REQUESTS.length];
      const stream = await hostile.h3.request(headers, { end: true });
      const status = await stream.readResponse();
      for await (const _ of stream.readBody()) {
        // drain the reason text
      }
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (status !== expected) wrong.push(`request ${i}: ${status}, expected ${expected}`);
    }
  };
  await Promise.all(Array.from({ length: 50 }, worker));
  assertEquals(wrong, []);
  assertEquals([...statuses.values()].reduce((a, b) => a + b, 0), total);
  await until(
    () => server.relay.counters.value("relay_sessions_refused_total") === refusedBefore + total,
    "the refusals to be counted",
    5000,
  );
  assertEquals(server.count(/INFO .*request refused/) - logBefore, total);
  assertEquals(server.connections.get(hostile.remote)?.closeError, undefined);
  assertEquals(server.relay.sessions.length, 1);
}

/**
 * Two connections racing 10 connect-ip requests each against a relay started
 * with `options`; hands `check` the relay (still running) and how many
 * sessions opened and how many got 503, then closes everything.
 */
async function race(
  options: Parameters<typeof startRelay>[0],
  check: (server: Awaited<ReturnType<typeof startRelay>>, opened: number, refused: number) => void,
): Promise<void> {
  const server = await startRelay(options);
  const clients = await Promise.all([connectClient(server.port), connectClient(server.port)]);
  try {
    const results = await within(
      Promise.allSettled(clients.flatMap((c) => Array.from({ length: 10 }, () => c.open()))),
      "20 concurrent session requests",
      15_000,
    );
    const opened = results.filter((r) => r.status === "fulfilled").length;
    const refused = results.filter((r) =>
      r.status === "rejected" && r.reason instanceof ConnectIpError && r.reason.status === 503
    ).length;
    check(server, opened, refused);
  } finally {
    for (const c of clients) c.close();
    await server.close();
  }
}

Deno.test({
  name: "the relay's session limit holds against concurrent requests",
  ...opts,
  fn: () =>
    race({ maxSessions: 3 }, (server, opened, refused) => {
      assertEquals({ opened, refused }, { opened: 3, refused: 17 });
      assertEquals(server.relay.sessions.length, 3);
      assertEquals(server.relay.poolUsage, { v4: 3, v6: 3 });
      // Each refusal is counted and logged.
      assertEquals(server.relay.counters.value("relay_sessions_refused_total"), 17);
      assertEquals(server.count(/INFO .*request refused .*status=503/), 17);
    }),
});

/**
 * An authenticator that takes its time, as a credential check does: each
 * request waits 0, 1, 2 or 3 timer turns, so requests that arrived together
 * finish authenticating in a different order and interleave with each
 * other's admission.
 */
function slowAuthenticator(): Authenticator & { calls: number } {
  const authenticator = {
    calls: 0,
    async authenticate() {
      const turns = authenticator.calls++ % 4;
      for (let i = 0; i < turns; i++) await new Promise((resolve) => setTimeout(resolve, 1));
      return { ok: true as const, identity: ANONYMOUS };
    },
  };
  return authenticator;
}

Deno.test({
  name:
    "the relay's session limit holds against concurrent requests with an authenticator that awaits",
  ...opts,
  fn: () => {
    const authenticator = slowAuthenticator();
    return race({ maxSessions: 3, authenticator }, (server, opened, refused) => {
      assertEquals({ opened, refused }, { opened: 3, refused: 17 });
      assertEquals(authenticator.calls, 20);
      assertEquals(server.relay.sessions.length, 3);
      assertEquals(server.relay.poolUsage, { v4: 3, v6: 3 });
      assertEquals(server.relay.counters.value("relay_sessions_refused_total"), 17);
      assertEquals(
        server.count(/INFO .*request refused .*status=503 reason="session limit reached"/),
        17,
      );
    });
  },
});

Deno.test({
  name:
    "the relay's address pool holds against concurrent requests with an authenticator that awaits",
  ...opts,
  fn: () =>
    race(
      { pool6: "fd00:100::/126", authenticator: slowAuthenticator() },
      (server, opened, refused) => {
        assertEquals({ opened, refused }, { opened: 2, refused: 18 });
        assertEquals(server.relay.poolUsage, { v4: 2, v6: 2 });
      },
    ),
});

Deno.test({
  // A pool with two addresses (fd00:100::/126) and no session limit in the
  // way: each address goes to one request only, and the rest get 503 before
  // any 200.
  name: "the relay's address pool holds against concurrent requests",
  ...opts,
  fn: () =>
    race({ pool6: "fd00:100::/126" }, (server, opened, refused) => {
      assertEquals({ opened, refused }, { opened: 2, refused: 18 });
      assertEquals(server.relay.sessions.length, 2);
      assertEquals(server.relay.counters.value("relay_sessions_opened_total"), 2);
      assertEquals(server.relay.poolUsage, { v4: 2, v6: 2 });
      assertEquals(server.relay.counters.value("relay_sessions_refused_total"), 18);
      assertEquals(
        server.count(/INFO .*request refused .*status=503 reason="address pool exhausted"/),
        18,
      );
    }),
});
