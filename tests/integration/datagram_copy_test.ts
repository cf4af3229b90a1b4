/**
 * What the datagram path relies on to reuse its buffers: Deno's
 * `QuicConn.sendDatagram` has copied the bytes when the call returns (the
 * op runs `buf.to_vec()`, and deno_core polls an async op once at the
 * call), so a buffer, or a view into a TUN ring, may be overwritten at once.
 * Checked over real QUIC on 127.0.0.1: every datagram is overwritten right
 * after the call, many per turn of the event loop, and each must arrive
 * with the bytes it had at the call.
 */
import { assert, assertEquals } from "../support/assert.ts";
import { dialTestServer, testCerts } from "../support/certs.ts";

const COUNT = 500;
/** Below the datagram limit of a new connection (about 1150 bytes before path MTU discovery). */
const SIZE = 1000;

/** A datagram whose every byte says `index` (mod 251), so that a mix shows. */
function fill(target: Uint8Array, index: number): void {
  target.fill(index % 251);
  target[0] = index >> 8;
  target[1] = index & 0xff;
}

async function pair() {
  const { certPem, keyPem } = await testCerts();
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  const listener = endpoint.listen({ alpnProtocols: ["h3"], cert: certPem, key: keyPem });
  const accepted = (async () => (await listener.incoming()).accept())();
  const client = await dialTestServer(endpoint.addr.port);
  const server = await accepted;
  return {
    client,
    server,
    close() {
      client.close();
      endpoint.close();
    },
  };
}

/** Reads datagrams until `count` arrived or 3 s passed without one. */
async function receiveAll(conn: Deno.QuicConn, count: number): Promise<Uint8Array[]> {
  const got: Uint8Array[] = [];
  while (got.length < count) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const next = await Promise.race([
      conn.readDatagram(),
      new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), 3000)),
    ]);
    clearTimeout(timer);
    if (next === null) break;
    got.push(next);
  }
  return got;
}

function check(got: Uint8Array[]): void {
  // Loopback rarely drops a datagram (quinn drops the oldest when the
  // reader lags); most must arrive, and each intact.
  assert(got.length >= COUNT * 0.5, `only ${got.length} of ${COUNT} arrived`);
  const seen = new Set<number>();
  for (const datagram of got) {
    const index = (datagram[0] << 8) | datagram[1];
    const want = new Uint8Array(SIZE);
    fill(want, index);
    assertEquals(datagram, want, `datagram ${index} changed after sendDatagram() returned`);
    seen.add(index);
  }
  assertEquals(seen.size, got.length);
}

Deno.test({
  name: "sendDatagram() has copied the bytes when it returns: one buffer overwritten at once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { client, server, close } = await pair();
    try {
      const receiving = receiveAll(server, COUNT);
      const buffer = new Uint8Array(SIZE);
      for (let i = 0; i < COUNT; i++) {
        fill(buffer, i);
        const sent = client.sendDatagram(buffer);
        buffer.fill(0xff); // the very next statement: what a reused buffer sees
        sent.catch(() => {});
        if (i % 20 === 19) await sent; // turns of the event loop in between
      }
      check(await receiving);
    } finally {
      close();
    }
  },
});

Deno.test({
  name: "sendDatagram() has copied a view into a SharedArrayBuffer (a TUN ring) when it returns",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { client, server, close } = await pair();
    try {
      const receiving = receiveAll(server, COUNT);
      const ring = new SharedArrayBuffer(16 + SIZE + 64);
      const view = new Uint8Array(ring, 16, SIZE);
      for (let i = 0; i < COUNT; i++) {
        fill(view, i);
        const sent = client.sendDatagram(view);
        view.fill(0xff);
        sent.catch(() => {});
        if (i % 20 === 19) await sent;
      }
      check(await receiving);
    } finally {
      close();
    }
  },
});
