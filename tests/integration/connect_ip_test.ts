/**
 * The HTTP/3 and CONNECT-IP layer over real QUIC on 127.0.0.1: a client
 * opens sessions to a server in the same process; no root, no TUN.
 */
import { assert, assertEquals, assertRejects } from "../support/assert.ts";
import { dialTestServer, testCerts } from "../support/certs.ts";
import { H3Connection } from "../../shared/h3/connection.ts";
import type { QuicConnLike } from "../../shared/h3/quic.ts";
import {
  clientSettings,
  serverSettings,
  SETTINGS_ENABLE_CONNECT_PROTOCOL,
  SETTINGS_H3_DATAGRAM,
} from "../../shared/h3/settings.ts";
import type { Settings } from "../../shared/h3/settings.ts";
import { ConnectIpSession } from "../../shared/masque/connect_ip_session.ts";
import {
  answerRequest,
  ConnectIpError,
  openConnectIpSession,
} from "../../shared/masque/h3_connect_ip.ts";
import type { PacketMode } from "../../shared/masque/connect_ip_session.ts";
import type { Capsule } from "../../shared/masque/capsule.ts";
import { expandConnectIpPath } from "../../shared/masque/connect_ip_request.ts";
import { parsePrefix } from "../../shared/ip/ip_address.ts";

const ALPN = ["h3"];

interface TestServer {
  port: number;
  sessions: ConnectIpSession[];
  close(): void;
}

/**
 * A server that gives session n the address 198.18.2.n/32 and a route to
 * 198.18.0.0/15, and echoes each packet back with its first byte set to n.
 */
async function startServer(settings: Settings = serverSettings()): Promise<TestServer> {
  const { certPem, keyPem } = await testCerts();
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  const listener = endpoint.listen({ alpnProtocols: ALPN, cert: certPem, key: keyPem });
  const sessions: ConnectIpSession[] = [];
  (async () => {
    for await (const incoming of listener) {
      const conn = await Promise.resolve(incoming.accept()).catch(() => undefined);
      if (!conn) continue;
      const h3 = new H3Connection(conn, {
        role: "server",
        settings,
        onRequest: async (request) => {
          const answer = await answerRequest(request);
          if (!answer.session) return;
          const session = answer.session;
          sessions.push(session);
          const n = sessions.length + 1;
          await session.sendCapsule({
            type: "address_assign",
            addresses: [{ requestId: 0, prefix: parsePrefix(`198.18.2.${n}/32`) }],
          });
          await session.sendCapsule({
            type: "route_advertisement",
            ranges: [{
              version: 4,
              start: new Uint8Array([198, 18, 0, 0]),
              end: new Uint8Array([198, 19, 255, 255]),
              ipProtocol: 0,
            }],
          });
          session.run({
            onPacket(packet) {
              const reply = packet.slice();
              reply[0] = n;
              session.sendPacket(reply);
            },
          });
        },
      });
      h3.start().catch(() => {});
    }
  })().catch(() => {});
  return {
    port: endpoint.addr.port,
    sessions,
    close() {
      listener.stop();
      endpoint.close();
    },
  };
}

interface TestClient {
  h3: H3Connection;
  conn: Deno.QuicConn;
  close(): void;
}

async function connectClient(port: number, settings: Settings = clientSettings()) {
  const conn = await dialTestServer(port);
  const h3 = new H3Connection(conn as QuicConnLike, { role: "client", settings });
  await h3.start();
  return { h3, conn, close: () => h3.close() } satisfies TestClient;
}

const path = expandConnectIpPath("/.well-known/masque/ip/{target}/{ipproto}/", {
  target: { kind: "any" },
  ipProtocol: "any",
});

/** Runs a session, collecting capsules and packets, with waiters. */
function collect(session: ConnectIpSession) {
  const capsules: Capsule[] = [];
  const packets: Uint8Array[] = [];
  let wake = () => {};
  session.run({
    onPacket: (p) => {
      packets.push(p.slice());
      wake();
    },
    onCapsule: (c) => {
      capsules.push(c);
      wake();
    },
  });
  const until = async (check: () => boolean, what: string) => {
    const deadline = Date.now() + 5000;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 50);
      });
    }
  };
  return { capsules, packets, until };
}

/** A 20-byte IPv4 header followed by `body`; the relay here only echoes. */
function packet(body: string): Uint8Array {
  const bytes = new Uint8Array(20 + body.length);
  bytes[0] = 0x45;
  bytes.set(new TextEncoder().encode(body), 20);
  return bytes;
}

const opts = { sanitizeOps: false, sanitizeResources: false };

for (const mode of ["datagram", "stream"] as PacketMode[]) {
  Deno.test({
    name: `connect-ip session exchanges capsules and packets in ${mode} mode`,
    ...opts,
    async fn() {
      const server = await startServer();
      // A stream-mode client advertises H3_DATAGRAM=0, so the relay answers in capsules.
      const settings = new Map(clientSettings());
      if (mode === "stream") settings.set(SETTINGS_H3_DATAGRAM, 0);
      const client = await connectClient(server.port, settings);
      try {
        const session = await openConnectIpSession(client.h3, {
          authority: "localhost",
          path,
          mode,
        });
        assertEquals(session.mode, mode);
        const got = collect(session);
        await got.until(() => got.capsules.length >= 2, "ADDRESS_ASSIGN and ROUTE_ADVERTISEMENT");
        const assign = got.capsules.find((c) => c.type === "address_assign");
        assert(assign?.type === "address_assign");
        assertEquals([...assign.addresses[0].prefix.address], [198, 18, 2, 2]);
        assert(got.capsules.some((c) => c.type === "route_advertisement"));
        assertEquals(server.sessions[0].mode, mode);

        for (let i = 0; i < 20; i++) assertEquals(session.sendPacket(packet(`ping ${i}`)), "sent");
        await got.until(() => got.packets.length >= (mode === "stream" ? 20 : 15), "echoes");
        const bodies = got.packets.map((p) => new TextDecoder().decode(p.subarray(20)));
        assert(bodies.includes("ping 1"), `echoes: ${bodies.join(",")}`);
        assert(got.packets.every((p) => p[0] === 2));
        if (mode === "stream") {
          // Reliable and ordered.
          assertEquals(bodies, Array.from({ length: 20 }, (_, i) => `ping ${i}`));
          assertEquals(session.stats.packetsOut, 20);
          assertEquals(client.h3.stats.datagramsOut, 0);
        } else {
          assert(client.h3.stats.datagramsOut >= 20);
        }
      } finally {
        client.close();
        server.close();
      }
    },
  });
}

Deno.test({
  name:
    "sendPacket() in datagram mode: packets with headroom go in place, others through a reused buffer, all intact",
  ...opts,
  async fn() {
    const server = await startServer();
    const client = await connectClient(server.port);
    try {
      const session = await openConnectIpSession(client.h3, {
        authority: "localhost",
        path,
        mode: "datagram",
      });
      const got = collect(session);
      await got.until(() => got.capsules.length >= 2, "the assignment");
      // A ring like the TUN's: 16 bytes of headroom in front of each packet.
      const headroom = 16;
      const stride = headroom + 64;
      const count = 100;
      const ring = new SharedArrayBuffer(count * stride);
      const bytes = new Uint8Array(ring);
      bytes.fill(0xee);
      for (let i = 0; i < count; i++) {
        const body = packet(`ring ${String(i).padStart(3, "0")}`);
        const inRing = new Uint8Array(ring, i * stride + headroom, body.length);
        inRing.set(body);
        // In one turn of the event loop: each send must take its own bytes.
        assertEquals(session.sendPacket(inRing, headroom), "sent");
        assertEquals(session.sendPacket(packet(`copy ${String(i).padStart(3, "0")}`)), "sent");
      }
      // The header (quarter stream id 0, context id 0) went into the headroom.
      assertEquals([...bytes.subarray(stride - 64 - 3, stride - 64)], [0xee, 0x00, 0x00]);
      await got.until(() => got.packets.length >= 2 * count * 0.8, "echoes");
      const bodies = new Set(got.packets.map((p) => new TextDecoder().decode(p.subarray(20))));
      assertEquals(bodies.size, got.packets.length, "an echo came twice: a buffer was shared");
      for (const body of bodies) assert(/^(ring|copy) \d{3}$/.test(body), body);
    } finally {
      client.close();
      server.close();
    }
  },
});

Deno.test({
  name: "a packet larger than the datagram limit is reported too big, not sent",
  ...opts,
  async fn() {
    const server = await startServer();
    const client = await connectClient(server.port);
    try {
      const session = await openConnectIpSession(client.h3, {
        authority: "localhost",
        path,
        mode: "datagram",
      });
      const before = client.h3.stats.datagramsOut;
      assertEquals(session.sendPacket(new Uint8Array(session.maxPacketSize + 1)), "too_big");
      assertEquals(session.stats.tooBig, 1);
      assertEquals(client.h3.stats.datagramsOut, before);
      assertEquals(session.sendPacket(packet("fits")), "sent");
    } finally {
      client.close();
      server.close();
    }
  },
});

Deno.test({
  name: "two sessions on one connection and on two connections keep their packets apart",
  ...opts,
  async fn() {
    const server = await startServer();
    const a = await connectClient(server.port);
    const b = await connectClient(server.port);
    try {
      const open = (c: TestClient) =>
        openConnectIpSession(c.h3, { authority: "localhost", path, mode: "datagram" });
      const s1 = await open(a);
      const g1 = collect(s1);
      await g1.until(() => g1.capsules.length >= 2, "capsules 1");
      const s2 = await open(a);
      const g2 = collect(s2);
      await g2.until(() => g2.capsules.length >= 2, "capsules 2");
      const s3 = await open(b);
      const g3 = collect(s3);
      await g3.until(() => g3.capsules.length >= 2, "capsules 3");
      assert(s1.stream.quarterStreamId !== s2.stream.quarterStreamId);
      for (let i = 0; i < 10; i++) {
        s1.sendPacket(packet("one"));
        s2.sendPacket(packet("two"));
        s3.sendPacket(packet("three"));
      }
      await g1.until(() => g1.packets.length >= 5, "echoes 1");
      await g2.until(() => g2.packets.length >= 5, "echoes 2");
      await g3.until(() => g3.packets.length >= 5, "echoes 3");
      const text = (p: Uint8Array) => new TextDecoder().decode(p.subarray(20));
      assert(g1.packets.every((p) => p[0] === 2 && text(p) === "one"));
      assert(g2.packets.every((p) => p[0] === 3 && text(p) === "two"));
      assert(g3.packets.every((p) => p[0] === 4 && text(p) === "three"));
    } finally {
      a.close();
      b.close();
      server.close();
    }
  },
});

Deno.test({
  name: "a server that does not enable extended CONNECT makes the client fail clearly",
  ...opts,
  async fn() {
    const settings = new Map(serverSettings());
    settings.delete(SETTINGS_ENABLE_CONNECT_PROTOCOL);
    const server = await startServer(settings);
    const client = await connectClient(server.port);
    try {
      await assertRejects(
        () => openConnectIpSession(client.h3, { authority: "localhost", path, mode: "datagram" }),
        ConnectIpError,
        "the relay does not enable extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL is not 1)",
      );
    } finally {
      client.close();
      server.close();
    }
  },
});

Deno.test({
  name: "the server answers non-connect-ip requests with proper HTTP/3 responses",
  ...opts,
  async fn(t) {
    const server = await startServer();
    const client = await connectClient(server.port);
    try {
      const ask = async (headers: [string, string][]) => {
        const stream = await client.h3.request(headers);
        const status = await stream.readResponse();
        let body = "";
        for await (const chunk of stream.readBody()) body += new TextDecoder().decode(chunk);
        return { status, body };
      };
      await t.step("GET / is 404", async () => {
        const r = await ask([
          [":method", "GET"],
          [":scheme", "https"],
          [":authority", "localhost"],
          [
            ":path",
            "/",
          ],
        ]);
        assertEquals(r, { status: 404, body: "not found\n" });
      });
      await t.step("plain CONNECT is 405", async () => {
        const r = await ask([[":method", "CONNECT"], [":authority", "198.18.0.1:80"]]);
        assertEquals(r.status, 405);
      });
      await t.step("connect-ip with a bad ipproto is 400", async () => {
        const r = await ask([
          [":method", "CONNECT"],
          [":protocol", "connect-ip"],
          [":scheme", "https"],
          [":authority", "localhost"],
          [":path", "/.well-known/masque/ip/*/300/"],
          ["capsule-protocol", "?1"],
        ]);
        assertEquals(r.status, 400);
      });
      await t.step("an unknown :protocol is 501", async () => {
        const r = await ask([
          [":method", "CONNECT"],
          [":protocol", "connect-udp"],
          [":scheme", "https"],
          [":authority", "localhost"],
          [":path", "/.well-known/masque/udp/a/1/"],
          ["capsule-protocol", "?1"],
        ]);
        assertEquals(r.status, 501);
      });
    } finally {
      client.close();
      server.close();
    }
  },
});

Deno.test({
  name: "H3Connection.closed reports the code and reason this side closed with over real QUIC",
  ...opts,
  async fn() {
    const server = await startServer();
    const client = await connectClient(server.port);
    try {
      client.h3.close(0x100, "bye");
      // Deno's own QuicConn says code 0 for a local close; H3Connection says what it sent.
      assertEquals({ ...(await client.conn.closed) }, { closeCode: 0, reason: "" });
      assertEquals(await client.h3.closed, { closeCode: 0x100, reason: "bye" });
    } finally {
      server.close();
    }
  },
});
