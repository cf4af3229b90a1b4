/**
 * The client's transports: each opens one CONNECT-IP session to the relay
 * and returns it as a {@linkcode ClientSession}, the replaceable half of
 * the `Client` (`client/client.ts`).
 *
 * - `h3`: QUIC (the dialer is passed in: `client/main.ts` grows its UDP
 *   buffers), the project's HTTP/3 (`shared/h3/`), RFC 9484 extended
 *   CONNECT (`shared/masque/h3_connect_ip.ts`); datagram or stream mode.
 * - `h2`: TLS over TCP with ALPN h2 through `node:http2`, RFC 8441
 *   extended CONNECT (`shared/masque/h2_connect_ip.ts`); packets in DATAGRAM
 *   capsules on the stream.
 * - `webtransport`: a WebTransport session over HTTP/2
 *   (`client/webtransport.ts`), packets length-prefixed on its first stream.
 *
 * @module
 */

import http2 from "node:http2";
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders } from "node:http2";
import tls from "node:tls";
import type { CounterRegistry } from "../shared/counters.ts";
import { errorMessage } from "../shared/errors.ts";
import { H3Connection } from "../shared/h3/connection.ts";
import type { QuicCloseInfoLike, QuicConnLike } from "../shared/h3/quic.ts";
import { describeClose } from "../shared/h3/quic.ts";
import { clientSettings, SETTINGS_H3_DATAGRAM } from "../shared/h3/settings.ts";
import { parseIp } from "../shared/ip/ip_address.ts";
import type { Logger } from "../shared/log.ts";
import type { HeaderField } from "../shared/h3/qpack.ts";
import { buildConnectIpRequest } from "../shared/masque/connect_ip_request.ts";
import type { PacketMode, SessionCounters } from "../shared/masque/connect_ip_session.ts";
import { openConnectIpSession } from "../shared/masque/h3_connect_ip.ts";
import { ConnectIpError } from "../shared/masque/h3_connect_ip.ts";
import {
  DEFAULT_H2_MAX_QUEUED_BYTES,
  h2ErrorName,
  h2HeaderFields,
  openH2ConnectIpSession,
} from "../shared/masque/h2_connect_ip.ts";
import { ConnectIpSession as Session } from "../shared/masque/connect_ip_session.ts";
import { WtConnectStream } from "../shared/masque/wt_connect_ip.ts";
import type { WtBidiStreamLike } from "../shared/masque/wt_connect_ip.ts";
import { ClientSession } from "./client.ts";

/** A QUIC connection to the relay, with the relay's address (`Deno.QuicConn` is one). */
export interface DialedConnection extends QuicConnLike {
  readonly remoteAddr: { readonly hostname: string; readonly port: number };
}

/** What every transport's opener needs. */
export interface SessionRequest {
  /** `:authority` of the request. */
  readonly authority: string;
  /** `:path` of the request, expanded from the relay's URI template. */
  readonly path: string;
  /** Extra request header fields (lowercase names). */
  readonly headers?: readonly HeaderField[];
  readonly log: Logger;
  /** The registry the connection counts in. */
  readonly counters: CounterRegistry;
  /** The session's counters, resolved from the same registry. */
  readonly sessionCounters: SessionCounters;
}

/**
 * HTTP/3: dials with `connect`, starts HTTP/3 (in stream mode advertising
 * SETTINGS_H3_DATAGRAM = 0, so the relay sends capsules) and opens the
 * session. Throws a clear error; closes what it opened on failure.
 */
export async function openH3ClientSession(
  connect: () => Promise<DialedConnection>,
  request: SessionRequest & { readonly mode: PacketMode },
): Promise<ClientSession> {
  const conn = await connect();
  const settings = new Map(clientSettings());
  // In stream mode we tell the relay not to send HTTP Datagrams (RFC 9297 §2.1.1).
  if (request.mode === "stream") settings.set(SETTINGS_H3_DATAGRAM, 0);
  const h3 = new H3Connection(conn, {
    role: "client",
    settings,
    log: request.log,
    counters: request.counters,
  });
  try {
    await h3.start();
    const session = await openConnectIpSession(h3, {
      authority: request.authority,
      path: request.path,
      mode: request.mode,
      log: request.log,
      counters: request.sessionCounters,
      headers: request.headers,
    });
    return new ClientSession({
      transport: "h3",
      session,
      relay: conn.remoteAddr,
      closed: h3.closed.then((info: QuicCloseInfoLike) => describeClose(info)),
      onGoaway: (callback) => h3.onGoaway(callback),
      close: () => h3.close(),
      log: request.log,
    });
  } catch (error) {
    h3.close();
    throw error;
  }
}

/** Where and how to reach the relay over TLS and TCP. */
export interface TcpDialOptions {
  readonly hostname: string;
  readonly port: number;
  /** The name checked in the relay's certificate (SNI too, unless an IP address). */
  readonly serverName: string;
  /** Extra CAs to trust beside the system roots, PEM. */
  readonly caCerts?: readonly string[];
  /** How long the TCP and TLS handshakes and SETTINGS may take, milliseconds. */
  readonly timeoutMs?: number;
  readonly log: Logger;
}

/** Each HTTP/2 stream's receive window, bytes. */
const H2_STREAM_WINDOW_BYTES = 1024 * 1024;
/** The HTTP/2 connection's receive window, bytes. */
const H2_CONNECTION_WINDOW_BYTES = 4 * 1024 * 1024;
/** How often the client pings the relay over HTTP/2, milliseconds (the relay's idle timeout is 30 s). */
const H2_PING_INTERVAL_MS = 10_000;

/**
 * `extra` for `node:tls`'s `ca` option. In Node, `ca` replaces the system
 * roots; Deno's `node:tls` passes it to Deno's TLS, which adds it to them
 * (as `Deno.connectTls`'s `caCerts`), so `--ca` means "also trust" as it
 * does for QUIC. Reading the roots (`tls.rootCertificates`) would need
 * `--allow-sys`.
 */
export function trustedCas(extra: readonly string[] | undefined): string[] | undefined {
  if (extra === undefined || extra.length === 0) return undefined;
  return [...extra];
}

/** An HTTP/2 connection to the relay whose SETTINGS allow extended CONNECT. */
export interface H2Dialed {
  readonly session: ClientHttp2Session;
  readonly relayAddress: string | undefined;
  /** The relay's TCP port. */
  readonly relayPort: number;
}

/**
 * Opens TLS over TCP with ALPN h2 and waits for the relay's SETTINGS with
 * SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 §3). Throws a clear error.
 */
export async function dialH2(options: TcpDialOptions): Promise<H2Dialed> {
  const where = `${options.hostname}:${options.port}`;
  const authority = options.hostname.includes(":") ? `[${options.hostname}]` : options.hostname;
  const session = http2.connect(`https://${authority}:${options.port}`, {
    ca: trustedCas(options.caCerts),
    servername: parseIp(options.serverName) === undefined ? options.serverName : undefined,
    checkServerIdentity: (_host: string, cert: tls.PeerCertificate) =>
      tls.checkServerIdentity(options.serverName, cert),
    ALPNProtocols: ["h2"],
    settings: { enablePush: false, initialWindowSize: H2_STREAM_WINDOW_BYTES },
  });
  session.on("error", () => {});
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Error(`no HTTP/2 SETTINGS within ${(options.timeoutMs ?? 10_000) / 1000} s`)),
        options.timeoutMs ?? 10_000,
      );
      const done = (error?: Error) => {
        clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      };
      session.once("remoteSettings", (settings: http2.Settings) => {
        if (settings.enableConnectProtocol !== true) {
          done(
            new Error(
              "the relay does not enable extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL is not 1)",
            ),
          );
        } else done();
      });
      session.once("error", (error: Error) => done(error));
      session.once("close", () => done(new Error("connection closed during setup")));
    });
  } catch (error) {
    session.destroy();
    throw new Error(`Cannot connect to ${where} over HTTP/2: ${errorMessage(error)}`);
  }
  try {
    session.setLocalWindowSize(H2_CONNECTION_WINDOW_BYTES);
  } catch (error) {
    options.log.debug("cannot set the HTTP/2 connection window", { error: errorMessage(error) });
  }
  return { session, relayAddress: session.socket?.remoteAddress, relayPort: options.port };
}

/**
 * HTTP/2: dials with `dial`, sends the extended CONNECT (RFC 8441 §4, RFC
 * 9484 §4) and makes a stream-mode session of a 2xx. Throws
 * {@linkcode ConnectIpError} with the status for a refusal; closes the
 * connection on failure.
 */
export async function openH2ClientSession(
  dial: () => Promise<H2Dialed>,
  request: SessionRequest & { readonly maxQueuedBytes?: number },
): Promise<ClientSession> {
  const { session, relayAddress, relayPort } = await dial();
  const closed = new Promise<string>((resolve) => {
    let why = "the relay closed the connection";
    session.once("goaway", (code: number) => {
      why = `the relay sent GOAWAY with ${h2ErrorName(code)}`;
    });
    session.once("error", (error: Error) => {
      why = `connection failed: ${error.message}`;
    });
    session.once("close", () => resolve(why));
  });
  const ping = setInterval(() => {
    if (!session.destroyed) session.ping(() => {});
  }, H2_PING_INTERVAL_MS);
  closed.then(() => clearInterval(ping));
  try {
    const headers: Record<string, string> = {};
    for (
      const [name, value] of [
        ...buildConnectIpRequest({ authority: request.authority, path: request.path }),
        ...(request.headers ?? []),
      ]
    ) headers[name] = value;
    const stream = session.request(headers, { endStream: false });
    stream.on("error", () => {});
    const response = await h2Response(stream);
    const connectIp = openH2ConnectIpSession(stream, h2HeaderFields(response), {
      log: request.log,
      counters: request.sessionCounters,
      maxQueuedBytes: request.maxQueuedBytes ?? DEFAULT_H2_MAX_QUEUED_BYTES,
    });
    return new ClientSession({
      transport: "h2",
      session: connectIp,
      relay: { hostname: relayAddress ?? "", port: relayPort },
      log: request.log,
      closed,
      // A GOAWAY that lets open streams finish: the relay is draining.
      onGoaway: (callback) =>
        session.once("goaway", (code: number, lastStreamId: number) => {
          if (code === 0) callback(lastStreamId);
        }),
      close: () => {
        clearInterval(ping);
        if (!session.destroyed) session.close();
        const timer = setTimeout(() => session.destroy(), 1000);
        Deno.unrefTimer(timer);
      },
    });
  } catch (error) {
    clearInterval(ping);
    session.destroy();
    if (error instanceof ConnectIpError) throw error;
    throw new ConnectIpError(`Cannot open connect-ip session over HTTP/2: ${errorMessage(error)}`);
  }
}

/** The response headers of `stream`, or why none came. */
function h2Response(stream: ClientHttp2Stream): Promise<IncomingHttpHeaders> {
  return new Promise((resolve, reject) => {
    stream.once("response", (headers: IncomingHttpHeaders) => resolve(headers));
    stream.once("error", (error: Error) => reject(error));
    stream.once("close", () => {
      reject(
        new Error(
          stream.rstCode
            ? `the relay reset the request with ${h2ErrorName(stream.rstCode)}`
            : "the relay closed the request",
        ),
      );
    });
  });
}

/** What the client uses of a WebTransport session (the WebTransport API's shape). */
export interface WebTransportLike {
  readonly ready: Promise<unknown>;
  readonly closed: Promise<unknown>;
  createBidirectionalStream(): Promise<WtBidiStreamLike>;
  close(info?: { closeCode?: number; reason?: string }): void;
}

/** A WebTransport session to the relay, ready (`client/webtransport.ts`). */
export interface WebTransportDialed {
  readonly session: WebTransportLike;
  readonly relayAddress: string | undefined;
  /** The relay's TCP port. */
  readonly relayPort: number;
}

/**
 * WebTransport: dials with `dial`, opens the packet stream and then the
 * capsule stream (`shared/masque/wt_connect_ip.ts`) and makes a session on
 * them. The relay's refusal comes as the session failing to get ready (in
 * `dial`). Closes the WebTransport session on failure.
 */
export async function openWebTransportClientSession(
  dial: () => Promise<WebTransportDialed>,
  request: SessionRequest & { readonly maxQueuedBytes?: number },
): Promise<ClientSession> {
  const { session: wt, relayAddress, relayPort } = await dial();
  const close = (reason = "") => {
    try {
      wt.close({ closeCode: 0, reason });
    } catch {
      // already closed
    }
  };
  try {
    const packets = await wt.createBidirectionalStream();
    const capsules = await wt.createBidirectionalStream();
    const stream = new WtConnectStream(packets, capsules, {
      maxQueuedBytes: request.maxQueuedBytes,
      queueFull: request.sessionCounters.queueFull,
      closeSession: close,
    });
    const session = new Session(stream, {
      mode: "datagram",
      log: request.log,
      counters: request.sessionCounters,
    });
    return new ClientSession({
      transport: "webtransport",
      session,
      relay: { hostname: relayAddress ?? "", port: relayPort },
      log: request.log,
      closed: wt.closed.then(
        (info) => `the WebTransport session ended (${JSON.stringify(info)})`,
        (error) => errorMessage(error),
      ),
      close: () => close(),
    });
  } catch (error) {
    close();
    throw new ConnectIpError(
      `Cannot open connect-ip session over WebTransport: ${errorMessage(error)}`,
    );
  }
}
