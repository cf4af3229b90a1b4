/**
 * WebTransport over HTTP/2 on the relay's TCP listener, the same port as
 * CONNECT-IP over HTTP/2: the TCP listener hands each `:protocol
 * webtransport` stream here, and `@fails-components/webtransport` runs the
 * WebTransport session on it. Each session's first two bidirectional
 * streams carry a CONNECT-IP session in the project's own convention
 * (`shared/masque/wt_connect_ip.ts`): packets length-prefixed on the
 * first, RFC 9484 capsules on the second.
 *
 * The package has no API for serving streams of a server it did not
 * create, so this file uses its `Http2Server` without letting it listen: it
 * builds the package's HTTP/2 transport (`createTransportInt()`) and emits
 * each stream on the `node:http2` server that transport made, which is
 * where the package's own listener would have delivered it. That relies
 * on the internals of the pinned version (1.6.8); `tests/integration/
 * webtransport_test.ts` fails when they change.
 *
 * Admission is the relay's, as for the other transports: the package's
 * request callback runs {@linkcode Relay.authorize} with the request's
 * headers and the scope its path names under the relay's URI template,
 * and answers 200 or the refusal's status.
 *
 * @module
 */

import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import { errorMessage } from "../shared/errors.ts";
import type { HeaderField } from "../shared/h3/qpack.ts";
import type { Logger } from "../shared/log.ts";
import type { ConnectIpScope } from "../shared/masque/connect_ip_request.ts";
import { parseConnectIpPath } from "../shared/masque/connect_ip_request.ts";
import { ConnectIpSession, SessionCounters } from "../shared/masque/connect_ip_session.ts";
import { WtConnectStream } from "../shared/masque/wt_connect_ip.ts";
import type { WtBidiStreamLike } from "../shared/masque/wt_connect_ip.ts";
import { h2HeaderFields } from "../shared/masque/h2_connect_ip.ts";
import { loadWebTransportLib } from "../host/webtransport_lib.ts";
import type { H2ConnectionLike, Relay, RelayH2Connection, RequestAdmission } from "./relay.ts";

import type { WebTransportBridge } from "./tcp_listener.ts";

/** The package's session queue every admitted session goes to. */
const SESSION_PATH = "/masque-vpn/connect-ip";
/** How long a WebTransport session may take to open its two streams, milliseconds. */
export const WT_STREAMS_TIMEOUT_MS = 10_000;

/**
 * The package's WebTransport flow-control SETTINGS (its
 * SETTINGS_WT_INITIAL_* values), which the shared HTTP/2 server sends.
 */
const WT_SETTINGS: Readonly<Record<number, number>> = Object.freeze({
  0x2b61: 16 * 1024,
  0x2b62: 16 * 1024,
  0x2b63: 16 * 1024,
  0x2b64: 100,
  0x2b65: 100,
});

/** Options of {@linkcode createWebTransportBridge}. */
export interface WebTransportBridgeOptions {
  readonly cert: string;
  readonly key: string;
  /** The relay's URI template: a session's path names its scope under it. */
  readonly template: string;
  readonly log: Logger;
  /** Packets are dropped when this many bytes wait on a session's packet stream. */
  readonly maxQueuedBytes: number;
}

/** What one stream brought to the package, until its session arrives. */
interface PendingRequest {
  readonly connection: RelayH2Connection;
  readonly handle: H2ConnectionLike;
  readonly remote: string;
  admission?: RequestAdmission;
  scope?: ConnectIpScope;
}

/** The parts of the package's `HttpWTSession` used here. */
interface WtServerSession {
  readonly ready: Promise<unknown>;
  readonly closed: Promise<unknown>;
  readonly userData: unknown;
  readonly incomingBidirectionalStreams: ReadableStream<WtBidiStreamLike>;
  close(info?: { closeCode?: number; reason?: string }): void;
}

/**
 * Loads the package and builds its HTTP/2 transport for `relay`'s TCP
 * listener (`listenTcp`'s `webTransport` option).
 */
export async function createWebTransportBridge(
  relay: Relay,
  options: WebTransportBridgeOptions,
): Promise<WebTransportBridge> {
  const { log } = options;
  const lib = await loadWebTransportLib(log);
  const secret = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16))
    .join("");
  const server = new lib.Http2Server({
    port: 0,
    host: "127.0.0.1",
    secret,
    cert: options.cert,
    privKey: options.key,
    defaultDatagramsReadableMode: "bytes",
  });
  const internal = server as unknown as {
    createTransportInt(): Promise<void>;
    transportInt?: { serverInt?: { emit(event: string, ...args: unknown[]): boolean } };
  };
  await internal.createTransportInt();
  const inner = internal.transportInt?.serverInt;
  if (inner === undefined) {
    throw new Error(
      "Cannot serve WebTransport: @fails-components/webtransport has no HTTP/2 server to feed",
    );
  }
  const pending = new WeakMap<object, PendingRequest>();
  const counters = new SessionCounters(relay.counters);

  server.setRequestCallback(async ({ header }: { header: IncomingHttpHeaders }) => {
    const request = pending.get(header);
    if (request === undefined) return { status: 500 };
    const { path, credentials } = splitWtPath(String(header[":path"] ?? ""));
    const fields: HeaderField[] = h2HeaderFields(header as Record<string, unknown>);
    // The package's client sends no header of ours: the credentials come in
    // the path's query (the project's convention, docs/decisions.md).
    if (credentials !== undefined && !fields.some(([name]) => name === "proxy-authorization")) {
      fields.push(["proxy-authorization", credentials]);
    }
    // Credentials first, then the scope the path names, as over HTTP/3.
    let scope: ConnectIpScope | undefined;
    const admission = await relay.admitSession(request.handle, fields, request.remote, () => {
      const parsed = parseConnectIpPath(path, options.template);
      if (parsed.ok) scope = parsed.scope;
      return parsed;
    });
    if (!admission.ok || scope === undefined) {
      const status = admission.ok ? 500 : admission.status;
      log.info("request refused", {
        transport: "webtransport",
        status,
        reason: admission.ok ? "no scope" : admission.reason,
      });
      return { status };
    }
    request.admission = admission.admission;
    request.scope = scope;
    return { status: 200, path: SESSION_PATH, userData: request };
  });

  // The package's session type does not declare `userData`, which it sets.
  const sessions = server.sessionStream(SESSION_PATH) as unknown as ReadableStream<
    WtServerSession
  >;
  (async () => {
    const reader = sessions.getReader();
    for (;;) {
      const { value: session, done } = await reader.read();
      if (done) return;
      serveSession(relay, session, counters, options).catch((error) =>
        log.warn("WebTransport session failed", { error: errorMessage(error) })
      );
    }
  })().catch((error) => log.warn("WebTransport sessions stopped", { error: errorMessage(error) }));

  return {
    customSettings: WT_SETTINGS,
    serveStream(
      stream: ServerHttp2Stream,
      headers: IncomingHttpHeaders,
      connection: RelayH2Connection,
      handle: H2ConnectionLike,
      remote: string,
    ) {
      pending.set(headers, { connection, handle, remote });
      // Where the package's own HTTP/2 server would have delivered it.
      inner.emit("stream", stream, headers);
    },
  };
}

/**
 * One WebTransport session: waits (bounded) for its packet and capsule
 * streams and runs the CONNECT-IP session on them with the reservation the
 * request callback made; gives the reservation back if it never gets that
 * far.
 */
async function serveSession(
  relay: Relay,
  session: WtServerSession,
  counters: SessionCounters,
  options: WebTransportBridgeOptions,
): Promise<void> {
  session.closed.catch(() => {});
  const request = session.userData as PendingRequest | undefined;
  const admission = request?.admission;
  const reservation = admission?.reservation;
  if (
    request === undefined || admission === undefined || reservation === undefined ||
    request.scope === undefined
  ) {
    session.close({ closeCode: 1, reason: "not admitted" });
    return;
  }
  const release = request.connection.hold();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await session.ready;
    const incoming = session.incomingBidirectionalStreams.getReader();
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(`no packet and capsule streams within ${WT_STREAMS_TIMEOUT_MS / 1000} s`),
          ),
        WT_STREAMS_TIMEOUT_MS,
      );
    });
    const next = async () => {
      const read = await Promise.race([incoming.read(), timeout]);
      if (read.done) throw new Error("the session ended before it opened its streams");
      return read.value;
    };
    const packets = await next();
    const capsules = await next();
    clearTimeout(timer);
    incoming.releaseLock();
    const stream = new WtConnectStream(packets, capsules, {
      budget: request.connection.budget,
      maxQueuedBytes: options.maxQueuedBytes,
      queueFull: counters.queueFull,
      closeSession: (reason) => session.close({ closeCode: 1, reason }),
    });
    const connectIp = new ConnectIpSession(stream, {
      mode: "datagram",
      log: options.log,
      counters,
    });
    const served = relay.serveSession(
      request.handle,
      connectIp,
      request.scope,
      admission,
      request.remote,
      "webtransport",
    );
    await served;
  } catch (error) {
    reservation.release();
    throw error;
  } finally {
    clearTimeout(timer);
    release();
    try {
      session.close({ closeCode: 0, reason: "" });
    } catch {
      // already closed
    }
  }
}

/** The query parameter that carries the credentials on a WebTransport request's path. */
export const WT_CREDENTIALS_PARAM = "proxy-authorization";

/**
 * A WebTransport request's path without its query, and the credentials
 * (a `Proxy-Authorization` value) the query carries, if any.
 */
export function splitWtPath(raw: string): { path: string; credentials: string | undefined } {
  const at = raw.indexOf("?");
  if (at < 0) return { path: raw, credentials: undefined };
  const query = new URLSearchParams(raw.slice(at + 1));
  return { path: raw.slice(0, at), credentials: query.get(WT_CREDENTIALS_PARAM) ?? undefined };
}
