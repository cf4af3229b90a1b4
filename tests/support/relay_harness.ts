/**
 * The real {@linkcode Relay} behind the same accept loop as `relay/main.ts`
 * ({@linkcode serveListener}, with the stream caps from
 * {@linkcode quicListenLimits}) on a QUIC listener on 127.0.0.1, with an
 * in-memory TUN; clients that dial it from a chosen loopback address (so
 * tests can play several sources: 127.0.0.1, 127.0.0.2, ...); and a
 * well-behaved client's traffic ({@linkcode Pinger}) to check that it is
 * served throughout.
 *
 * @module
 */
import { assert } from "./assert.ts";
import { dialTestServer, testCerts } from "./certs.ts";
import { until } from "./fake_quic.ts";
import { InMemoryPacketDevice } from "./memory_tun.ts";
import { buildIpv4Udp } from "./packet_builder.ts";
import { quicListenLimits } from "../../relay/limits.ts";
import type { RelayLimits } from "../../relay/limits.ts";
import { serveListener } from "../../relay/listener.ts";
import { listenTcp } from "../../relay/tcp_listener.ts";
import type { TcpListener } from "../../relay/tcp_listener.ts";
import { createWebTransportBridge } from "../../relay/webtransport.ts";
import { Relay } from "../../relay/relay.ts";
import type { RelayOptions } from "../../relay/relay.ts";
import type { Authenticator } from "../../relay/sessions.ts";
import { H3Connection } from "../../shared/h3/connection.ts";
import type { HeaderField } from "../../shared/h3/qpack.ts";
import { createLogger } from "../../shared/log.ts";
import { expandConnectIpPath } from "../../shared/masque/connect_ip_request.ts";
import { openConnectIpSession } from "../../shared/masque/h3_connect_ip.ts";
import type { ConnectIpSession, SessionEnd } from "../../shared/masque/connect_ip_session.ts";
import type { Capsule } from "../../shared/masque/capsule.ts";
import { formatIp, parseIp, parsePrefix } from "../../shared/ip/ip_address.ts";

/** The connect-ip path for any target and protocol. */
export const ANY_PATH = expandConnectIpPath("/.well-known/masque/ip/{target}/{ipproto}/", {
  target: { kind: "any" },
  ipProtocol: "any",
});

/** Options of {@linkcode startTestRelay}. */
export interface TestRelayOptions {
  readonly limits?: Partial<RelayLimits>;
  readonly maxSessions?: number;
  readonly pool4?: string;
  readonly pool6?: string;
  /** `--dns` and `--dns-search` of the relay. */
  readonly dns?: {
    readonly servers: readonly string[];
    readonly searchDomains?: readonly string[];
  };
  /** Step 1 of admission; default everyone, as `anonymous` (`--no-auth`). */
  readonly authenticator?: Authenticator;
  /** Advertised routes; default 198.18.0.0/15 and fd00::/8. */
  readonly routes?: readonly string[];
  /** The relay's 404 and GET answers (`--decoy`). */
  readonly notFound?: RelayOptions["notFound"];
  readonly serveOther?: RelayOptions["serveOther"];
  /** UDP port on 127.0.0.1 (default: any free one). */
  readonly port?: number;
  /** Also serve HTTP/2 and WebTransport on a TCP listener on 127.0.0.1 (`tcpPort`). */
  readonly tcp?: boolean;
  /** The relay's idle timeout on TCP, milliseconds (default 30 s). */
  readonly idleTimeoutMs?: number;
  /** How long a TLS handshake on TCP may take, milliseconds (default 10 s). */
  readonly handshakeTimeoutMs?: number;
}

/** The relay on a QUIC listener on 127.0.0.1, its in-memory TUN and its log lines. */
export async function startTestRelay(options: TestRelayOptions = {}) {
  const { certPem, keyPem } = await testCerts();
  const tun = new InMemoryPacketDevice({ name: "relay-tun", mtu: 1500 });
  const lines: string[] = [];
  const log = createLogger({ level: "debug", write: (line) => lines.push(line) });
  const relay = new Relay(tun, {
    pool4: parsePrefix(options.pool4 ?? "198.18.100.0/24"),
    pool6: parsePrefix(options.pool6 ?? "fd00:100::/64"),
    routes: (options.routes ?? ["198.18.0.0/15", "fd00::/8"]).map(parsePrefix),
    maxSessions: options.maxSessions ?? 1024,
    limits: options.limits,
    dns: options.dns && {
      servers: options.dns.servers.map((text) => parseIp(text)!),
      searchDomains: options.dns.searchDomains ?? [],
    },
    authenticator: options.authenticator,
    notFound: options.notFound,
    serveOther: options.serveOther,
    log,
  });
  const tunDone = relay.runTun();
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: options.port ?? 0 });
  const listener = endpoint.listen({
    alpnProtocols: ["h3"],
    cert: certPem,
    key: keyPem,
    ...quicListenLimits(relay.limits),
  });
  const listenerErrors: unknown[] = [];
  const serving = serveListener(relay, listener, log).catch((error) => {
    listenerErrors.push(error);
  });
  let tcp: TcpListener | undefined;
  if (options.tcp) {
    const webTransport = await createWebTransportBridge(relay, {
      cert: certPem,
      key: keyPem,
      template: "/.well-known/masque/ip/{target}/{ipproto}/",
      log,
      maxQueuedBytes: relay.limits.maxQueuedBytes,
    });
    tcp = await listenTcp(relay, {
      hostname: "127.0.0.1",
      port: 0,
      cert: certPem,
      key: keyPem,
      limits: relay.limits,
      idleTimeoutMs: options.idleTimeoutMs ?? 30_000,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
      log,
      webTransport,
    });
  }
  return {
    relay,
    tun,
    lines,
    tunDone,
    listenerErrors,
    port: endpoint.addr.port,
    /** The TCP listener's port (HTTP/2, WebTransport), with `tcp: true`. */
    tcpPort: tcp?.port ?? 0,
    /** Log lines matching `pattern`. */
    count: (pattern: RegExp) => lines.filter((line) => pattern.test(line)).length,
    async close() {
      await relay.stop();
      await tcp?.close();
      tun.close();
      listener.stop();
      endpoint.close();
      await serving;
    },
  };
}
/** What {@linkcode startTestRelay} returns. */
export type TestRelay = Awaited<ReturnType<typeof startTestRelay>>;

/** A QUIC connection from its own endpoint on `hostname` (a loopback address). */
export async function dialFrom(port: number, hostname = "127.0.0.1") {
  const endpoint = new Deno.QuicEndpoint({ hostname, port: 0 });
  try {
    const conn = await dialTestServer(port, endpoint);
    return {
      conn,
      endpoint,
      remote: `${hostname}:${endpoint.addr.port}`,
      close() {
        try {
          conn.close({ closeCode: 0x100, reason: "" });
        } catch {
          // already closed
        }
        endpoint.close();
      },
    };
  } catch (error) {
    endpoint.close();
    throw error;
  }
}

/** A client session and what it has received. */
export interface TestSession {
  readonly session: ConnectIpSession;
  readonly received: Uint8Array[];
  readonly capsules: Capsule[];
  readonly end: Promise<SessionEnd>;
  /** The IPv4 address the relay assigned. */
  readonly v4: string;
}

/**
 * A client with an H3Connection on which `open()` opens connect-ip sessions,
 * sending `headers` (credentials) with each request.
 */
export async function connectClient(
  port: number,
  hostname = "127.0.0.1",
  headers: readonly HeaderField[] = [],
) {
  const dialed = await dialFrom(port, hostname);
  const h3 = new H3Connection(dialed.conn, { role: "client" });
  await h3.start();
  const open = async (path = ANY_PATH): Promise<TestSession> => {
    const session = await openConnectIpSession(h3, {
      authority: "localhost",
      path,
      mode: "datagram",
      headers,
    });
    const capsules: Capsule[] = [];
    const received: Uint8Array[] = [];
    const end = session.run({
      onPacket: (p) => received.push(p.slice()),
      onCapsule: (c) => capsules.push(c),
    });
    await until(() => capsules.length >= 2, "ADDRESS_ASSIGN and ROUTE_ADVERTISEMENT", 5000);
    const assign = capsules.find((c) => c.type === "address_assign");
    assert(assign?.type === "address_assign");
    return { session, received, capsules, end, v4: formatIp(assign.addresses[0].prefix.address) };
  };
  return { ...dialed, h3, open };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * A well-behaved client's traffic: UDP to 198.18.1.2 and back through the
 * relay (the test plays the far side on the relay's in-memory TUN), one
 * round trip at a time, until stopped. A round is sent again (at most 3
 * times) if a QUIC datagram is lost; a round that never completes is a
 * failure.
 */
export class Pinger {
  rounds = 0;
  resends = 0;
  readonly failures: string[] = [];
  readonly done: Promise<void>;
  #stopped = false;

  constructor(readonly client: TestSession, readonly tun: InMemoryPacketDevice) {
    this.done = this.#run();
  }

  stop(): Promise<void> {
    this.#stopped = true;
    return this.done;
  }

  /** Waits until `n` more rounds have completed. */
  more(n: number, what: string, ms = 10_000): Promise<void> {
    const target = this.rounds + n;
    return until(() => this.rounds >= target || this.failures.length > 0, what, ms);
  }

  async #run(): Promise<void> {
    const { session, received, v4 } = this.client;
    let seenWritten = 0;
    let seenReceived = 0;
    const find = (list: Uint8Array[], packet: Uint8Array, from: number) => {
      for (let i = from; i < list.length; i++) if (sameBytes(list[i], packet)) return true;
      return false;
    };
    for (let i = 0; !this.#stopped; i++) {
      const udp = (src: string, dst: string, payload: string) =>
        buildIpv4Udp({ src, dst, srcPort: 40000, dstPort: 40000, payload });
      const ping = udp(v4, "198.18.1.2", `ping ${i}`);
      const pong = udp("198.18.1.2", v4, `pong ${i}`);
      let ok = false;
      for (let attempt = 0; attempt < 3 && !ok; attempt++) {
        if (attempt > 0) this.resends++;
        if (session.sendPacket(ping) !== "sent") break;
        try {
          await until(() => find(this.tun.written, ping, seenWritten), `ping ${i}`, 2000);
          this.tun.inject(pong);
          await until(() => find(received, pong, seenReceived), `pong ${i}`, 2000);
          ok = true;
        } catch {
          // lost: send again
        }
      }
      seenWritten = this.tun.written.length;
      seenReceived = received.length;
      if (ok) this.rounds++;
      else {
        this.failures.push(`round ${i}`);
        return;
      }
    }
  }
}
