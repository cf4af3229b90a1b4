/**
 * Load generator for the benchmark's scale measure (not a test): opens many
 * CONNECT-IP sessions (RFC 9484) against one relay with the project's own
 * {@linkcode H3Connection} and {@linkcode openConnectIpSession}, without
 * TUN devices, and holds them open.
 *
 * ```
 * deno run --unstable-net --allow-net --allow-read tests/bench/_scale_client.ts \
 *   --host 198.18.0.1 --port 4433 --ca ca.pem --sessions 1000 \
 *   [--per-connection 50] [--concurrency 16] [--timeout-ms 90000] [--hold-ms 60000]
 * ```
 *
 * Sessions are spread over `ceil(sessions / per-connection)` QUIC
 * connections (a QUIC connection allows about 100 concurrent bidirectional
 * streams, each session holds one). Connections are opened first, then
 * sessions, at most `concurrency` setups in flight at once. A session's
 * setup time runs from sending the extended CONNECT request to receiving
 * the relay's ADDRESS_ASSIGN capsule.
 *
 * Prints one JSON line `{"ready":true,...}` with the counts and the setup
 * time percentiles (milliseconds), then holds every session open (QUIC
 * keep-alives every 5 s) until SIGTERM, SIGINT or `--hold-ms`, closes the
 * connections and exits: 0 when every session opened, 1 otherwise.
 *
 * @module
 */
import { errorMessage } from "../../shared/errors.ts";
import { parseArgs } from "node:util";
import { bearerField } from "../../shared/auth/credentials.ts";
import { H3Connection } from "../../shared/h3/connection.ts";
import { expandConnectIpPath } from "../../shared/masque/connect_ip_request.ts";
import { DEFAULT_URI_TEMPLATE } from "../../shared/masque/connect_ip_request.ts";
import { openConnectIpSession } from "../../shared/masque/h3_connect_ip.ts";
import type { ConnectIpSession } from "../../shared/masque/connect_ip_session.ts";
import { percentile } from "./_measure.ts";

const SESSION_TIMEOUT_MS = 10_000;
const KEEP_ALIVE_MS = 5_000;
const MAX_ERRORS_REPORTED = 5;

const { values } = parseArgs({
  args: Deno.args,
  strict: true,
  options: {
    host: { type: "string" },
    port: { type: "string", default: "4433" },
    ca: { type: "string" },
    "server-name": { type: "string" },
    sessions: { type: "string", default: "1000" },
    "per-connection": { type: "string", default: "50" },
    concurrency: { type: "string", default: "16" },
    "timeout-ms": { type: "string", default: "90000" },
    "hold-ms": { type: "string", default: "60000" },
    "token-file": { type: "string" },
  },
});
if (!values.host || !values.ca) {
  console.error("usage: _scale_client.ts --host H --ca FILE [--sessions N] (see the module docs)");
  Deno.exit(2);
}
const host = values.host;
const port = Number(values.port);
const sessionCount = Number(values.sessions);
const perConnection = Number(values["per-connection"]);
const concurrency = Number(values.concurrency);
const timeoutMs = Number(values["timeout-ms"]);
const holdMs = Number(values["hold-ms"]);
const caPem = await Deno.readTextFile(values.ca);
/** The relay's user the sessions log in as (`--token-file`), if it has users. */
const credentials = values["token-file"]
  ? [bearerField((await Deno.readTextFile(values["token-file"])).trim())]
  : [];
const authority = `${host}:${port}`;
const path = expandConnectIpPath(DEFAULT_URI_TEMPLATE, {
  target: { kind: "any" },
  ipProtocol: "any",
});

const connections: H3Connection[] = [];
const quicConnections: Deno.QuicConn[] = [];
const sessions: ConnectIpSession[] = [];
const connectMs: number[] = [];
const setupMs: number[] = [];
const errors: string[] = [];
const startedAt = performance.now();
const deadline = Date.now() + timeoutMs;

function noteError(error: unknown): void {
  if (errors.length < MAX_ERRORS_REPORTED) {
    errors.push(errorMessage(error));
  }
}

/** Runs `task(i)` for i in [0, count) with at most `limit` in flight; stops at the deadline. */
async function pool(count: number, limit: number, task: (i: number) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < count && Date.now() < deadline) {
      const i = next++;
      try {
        await task(i);
      } catch (error) {
        noteError(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}

async function openConnection(): Promise<void> {
  const t0 = performance.now();
  const conn = await Deno.connectQuic({
    hostname: host,
    port,
    serverName: values["server-name"] ?? host,
    alpnProtocols: ["h3"],
    caCerts: [caPem],
    keepAliveInterval: KEEP_ALIVE_MS,
    maxIdleTimeout: 60_000,
  });
  quicConnections.push(conn);
  const h3 = new H3Connection(conn, { role: "client" });
  await h3.start();
  await h3.peerSettings;
  connectMs.push(performance.now() - t0);
  connections.push(h3);
}

async function openSession(h3: H3Connection): Promise<void> {
  const t0 = performance.now();
  const session = await openConnectIpSession(h3, {
    authority,
    path,
    mode: "datagram",
    headers: credentials,
  });
  sessions.push(session);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no ADDRESS_ASSIGN within ${SESSION_TIMEOUT_MS} ms`)),
      SESSION_TIMEOUT_MS,
    );
    session.run({
      onPacket: () => {},
      onCapsule: (capsule) => {
        if (capsule.type !== "address_assign") return;
        clearTimeout(timer);
        resolve();
      },
    }).then((end) => {
      clearTimeout(timer);
      reject(new Error(`session ended before ADDRESS_ASSIGN: ${end.message}`));
    });
  });
  setupMs.push(performance.now() - t0);
}

const connectionCount = Math.ceil(sessionCount / perConnection);
await pool(connectionCount, concurrency, () => openConnection());
if (connections.length > 0) {
  await pool(sessionCount, concurrency, (i) => openSession(connections[i % connections.length]));
}
const round = (ms: number) => Math.round(ms * 100) / 100;
const summary = {
  ready: true,
  sessions: setupMs.length,
  failed: sessionCount - setupMs.length,
  connections: connections.length,
  concurrency,
  setupMs: {
    p50: round(percentile(setupMs, 50)),
    p99: round(percentile(setupMs, 99)),
    max: round(Math.max(...setupMs)),
  },
  connectMs: { p50: round(percentile(connectMs, 50)), p99: round(percentile(connectMs, 99)) },
  elapsedMs: round(performance.now() - startedAt),
  errors,
};
console.log(JSON.stringify(summary));

await new Promise<void>((resolve) => {
  const timer = setTimeout(resolve, holdMs);
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => {
      clearTimeout(timer);
      resolve();
    });
  }
});
for (const h3 of connections) h3.close();
await new Promise((resolve) => setTimeout(resolve, 100));
for (const conn of quicConnections) {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
Deno.exit(summary.failed === 0 ? 0 : 1);
