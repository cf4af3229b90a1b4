/**
 * The relay's TCP listener, for clients whose UDP is blocked: TLS with ALPN
 * `h2` on a TCP port, serving CONNECT-IP over HTTP/2 (RFC 9484 with
 * RFC 8441's extended CONNECT) and, when a bridge is given, WebTransport
 * over HTTP/2 on the same port. HTTP/2 itself (framing, HPACK, flow
 * control, TLS) is `node:http2`'s.
 *
 * ```
 * node:net accept -> Relay.beginHandshake(address): per source, handshakes
 *   and total, before TLS (refused: destroyed, nothing read)
 * -> node:http2 TLS handshake (handshakeTimeoutMs; ALPN h2 only)
 * -> 'session' -> Relay.endHandshake, Relay.admitH2Connection (per source
 *   and total again; else GOAWAY ENHANCE_YOUR_CALM); idle timeout
 * -> 'stream' by :protocol: webtransport -> the bridge; anything else ->
 *   RelayH2Connection.serveStream (answerH2Request: 200 and a session, or
 *   the status HTTP/3 would give)
 * ```
 *
 * The limits `node:http2` applies before any request reaches the relay
 * are set here ({@linkcode h2ServerOptions}) and listed in
 * `docs/security.md`.
 *
 * @module
 */

import http2 from "node:http2";
import type { IncomingHttpHeaders, ServerHttp2Session, ServerHttp2Stream } from "node:http2";
import net from "node:net";
import { Buffer } from "node:buffer";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { H2_NO_ERROR, h2RawHeaderFields } from "../shared/masque/h2_connect_ip.ts";
import type { RelayLimits } from "./limits.ts";
import type { H2ConnectionLike, Relay, RelayH2Connection } from "./relay.ts";

/** How long a TLS handshake may take, milliseconds. */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
/** The largest request header list taken (SETTINGS_MAX_HEADER_LIST_SIZE), bytes. */
export const H2_MAX_HEADER_LIST_BYTES = 16 * 1024;
/** Each stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE), bytes. */
export const H2_STREAM_WINDOW_BYTES = 1024 * 1024;
/** The connection's receive window, bytes. */
export const H2_CONNECTION_WINDOW_BYTES = 4 * 1024 * 1024;
/** `node:http2`'s `maxSessionMemory`: what one connection's HTTP/2 state may hold, MB. */
export const H2_MAX_SESSION_MEMORY_MB = 8;

/**
 * Serves `:protocol webtransport` streams (`relay/webtransport.ts`): the
 * HTTP/2 SETTINGS it needs, and each such stream with the connection it
 * arrived on.
 */
export interface WebTransportBridge {
  /** SETTINGS the WebTransport side adds (its flow-control initial values). */
  readonly customSettings: Readonly<Record<number, number>>;
  serveStream(
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    connection: RelayH2Connection,
    handle: H2ConnectionLike,
    remote: string,
  ): void;
}

/** Options of {@linkcode listenTcp}. */
export interface TcpListenerOptions {
  readonly hostname: string;
  readonly port: number;
  /** PEM of the certificate chain and key (the same as the QUIC listener's). */
  readonly cert: string;
  readonly key: string;
  readonly limits: RelayLimits;
  /** A connection silent this long is closed, milliseconds. */
  readonly idleTimeoutMs: number;
  readonly handshakeTimeoutMs?: number;
  readonly log: Logger;
  readonly webTransport?: WebTransportBridge;
}

/** The listener once bound. */
export interface TcpListener {
  /** The bound TCP port. */
  readonly port: number;
  /** Stops accepting and closes every connection. */
  close(): Promise<void>;
}

/**
 * The `node:http2` server options: the limits applied before any request
 * reaches the relay (concurrent streams, header list size, session memory,
 * handshake time) and the windows.
 */
export function h2ServerOptions(
  options: Pick<TcpListenerOptions, "cert" | "key" | "limits" | "handshakeTimeoutMs">,
  customSettings: Readonly<Record<number, number>> = {},
): http2.SecureServerOptions {
  return {
    cert: options.cert,
    key: options.key,
    allowHTTP1: false,
    ALPNProtocols: ["h2"],
    handshakeTimeout: options.handshakeTimeoutMs ?? TLS_HANDSHAKE_TIMEOUT_MS,
    maxSessionMemory: H2_MAX_SESSION_MEMORY_MB,
    maxHeaderListPairs: 128,
    settings: {
      enableConnectProtocol: true,
      enablePush: false,
      maxConcurrentStreams: options.limits.maxRequestsPerConnection,
      maxHeaderListSize: H2_MAX_HEADER_LIST_BYTES,
      initialWindowSize: H2_STREAM_WINDOW_BYTES,
      ...(Object.keys(customSettings).length > 0 ? { customSettings } : {}),
    },
  } as http2.SecureServerOptions;
}

/**
 * Binds the TCP listener and serves it on `relay` until
 * {@linkcode TcpListener.close}. Rejects when the port cannot be bound,
 * naming it.
 */
export async function listenTcp(relay: Relay, options: TcpListenerOptions): Promise<TcpListener> {
  const { log } = options;
  const server = http2.createSecureServer(
    h2ServerOptions(options, options.webTransport?.customSettings),
  );
  /** Raw sockets whose TLS handshake is under way, by `address:port`. */
  const handshaking = new Map<string, (error?: unknown) => void>();
  const sessions = new Set<ServerHttp2Session>();

  server.on(
    "tlsClientError",
    (error: Error, socket: { remoteAddress?: string; remotePort?: number }) => {
      handshaking.get(`${socket.remoteAddress}:${socket.remotePort}`)?.(error);
    },
  );
  server.on(
    "sessionError",
    (error: Error) => log.debug("HTTP/2 session error", { error: error.message }),
  );
  server.on("session", (session: ServerHttp2Session) => {
    const socket = session.socket;
    const hostname = socket.remoteAddress ?? "unknown";
    const port = socket.remotePort ?? 0;
    const remote = `${hostname}:${port}`;
    session.on(
      "error",
      (error: Error) =>
        log.debug("HTTP/2 connection error", { peer: remote, error: error.message }),
    );
    const settle = handshaking.get(remote);
    if (settle === undefined) {
      // Not one of ours (cannot happen: every socket comes through accept).
      session.destroy();
      return;
    }
    settle();
    const handle = h2Handle(session);
    const connection = relay.admitH2Connection(handle, { hostname, port });
    if (connection === undefined) return;
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    try {
      session.setLocalWindowSize(H2_CONNECTION_WINDOW_BYTES);
    } catch (error) {
      log.debug("cannot set the HTTP/2 connection window", { error: errorMessage(error) });
    }
    session.setTimeout(options.idleTimeoutMs, () => {
      handle.close(H2_NO_ERROR, `idle for ${options.idleTimeoutMs / 1000} s`);
    });
    session.on(
      "stream",
      (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, raw: string[]) => {
        // An 'error' without a listener would throw out of the emitter.
        stream.on("error", () => {});
        if (headers[":protocol"] === "webtransport" && options.webTransport !== undefined) {
          options.webTransport.serveStream(stream, headers, connection, handle, remote);
          return;
        }
        connection.serveStream(stream, h2RawHeaderFields(raw ?? []));
      },
    );
  });

  const tcp = net.createServer((socket) => {
    socket.on("error", () => {});
    const hostname = socket.remoteAddress ?? "unknown";
    const key = `${hostname}:${socket.remotePort}`;
    if (!relay.beginHandshake(hostname)) {
      socket.destroy();
      return;
    }
    let settled = false;
    const settle = (error?: unknown) => {
      if (settled) return;
      settled = true;
      handshaking.delete(key);
      relay.endHandshake(error);
    };
    handshaking.set(key, settle);
    socket.once("close", () => settle("connection closed during the TLS handshake"));
    server.emit("connection", socket);
  });
  await new Promise<void>((resolve, reject) => {
    const failed = (error: Error) =>
      reject(
        new Error(
          `Cannot listen on TCP ${options.hostname}:${options.port}: ${errorMessage(error)}`,
        ),
      );
    tcp.once("error", failed);
    tcp.listen({ host: options.hostname, port: options.port, ipv6Only: false }, () => {
      tcp.off("error", failed);
      resolve();
    });
  });
  tcp.on("error", (error: Error) => log.warn("TCP listener error", { error: error.message }));
  const address = tcp.address();
  const port = typeof address === "object" && address !== null ? address.port : options.port;
  return {
    port,
    async close() {
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
      for (const session of sessions) session.destroy();
      server.close();
    },
  };
}

/** A `node:http2` server session as the relay's {@linkcode H2ConnectionLike}. */
function h2Handle(session: ServerHttp2Session): H2ConnectionLike {
  let closing = false;
  return {
    close(code, reason) {
      if (closing || session.destroyed) return;
      closing = true;
      try {
        session.goaway(code, 0, Buffer.from(reason));
      } catch {
        // already closing
      }
      // Let the GOAWAY reach the socket, then end the streams and the connection.
      const timer = setTimeout(() => session.destroy(), 50);
      Deno.unrefTimer(timer);
    },
    onClose(listener) {
      if (session.destroyed) queueMicrotask(listener);
      else session.once("close", listener);
    },
  };
}
