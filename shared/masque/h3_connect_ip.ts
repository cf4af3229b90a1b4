/**
 * CONNECT-IP over HTTP/3 (RFC 9484 §4 with RFC 9220's extended CONNECT):
 * the client opens the request ({@linkcode openConnectIpSession}), the
 * server answers it ({@linkcode answerRequest}); each side gets a
 * {@linkcode ConnectIpSession} on the request stream, which is the
 * session's `ConnectStream` (`connect_stream.ts`). The packet mode comes from here:
 * the peer's SETTINGS_H3_DATAGRAM (RFC 9297 §2.1.1) decides it, not the
 * session.
 *
 * Another transport (HTTP/2 extended CONNECT, RFC 8441) gets a file like
 * this one that makes a `ConnectStream` of its own stream.
 *
 * @module
 */

import { errorMessage } from "../errors.ts";
import type { H3Connection } from "../h3/connection.ts";
import type { HeaderField } from "../h3/qpack.ts";
import type { H3RequestStream } from "../h3/request_stream.ts";
import { SETTINGS_ENABLE_CONNECT_PROTOCOL, SETTINGS_H3_DATAGRAM } from "../h3/settings.ts";
import type { Logger } from "../log.ts";
import {
  buildConnectIpRequest,
  buildConnectIpResponse,
  isCapsuleProtocolEnabled,
  parseConnectIpRequest,
} from "./connect_ip_request.ts";
import type { ConnectIpScope } from "./connect_ip_request.ts";
import { ConnectIpSession } from "./connect_ip_session.ts";
import type { PacketMode, SessionCounters } from "./connect_ip_session.ts";

/** A session on an HTTP/3 request stream. */
export type H3ConnectIpSession = ConnectIpSession<H3RequestStream>;

/** A relay refused or failed a connect-ip request. */
export class ConnectIpError extends Error {
  /** The HTTP status the relay answered, when it answered. */
  readonly status?: number;
  constructor(message: string, status?: number) {
    super(message);
    this.name = "ConnectIpError";
    this.status = status;
  }
}

/** Options of {@linkcode openConnectIpSession}. */
export interface OpenConnectIpOptions {
  /** `:authority` of the request, e.g. `relay.example:443`. */
  readonly authority: string;
  /** `:path` expanded from the URI template. */
  readonly path: string;
  readonly mode: PacketMode;
  /** Fields added to the request: credentials (`proxy-authorization`, `shared/auth/credentials.ts`). */
  readonly headers?: readonly HeaderField[];
  readonly log?: Logger;
  /** The counters the session adds to (see `ConnectIpSessionOptions.counters`). */
  readonly counters?: SessionCounters;
}

/**
 * Client side: waits for the relay's SETTINGS, checks that it enables
 * extended CONNECT (RFC 9220 §3) and, in datagram mode, HTTP Datagrams
 * (RFC 9297 §2.1.1), sends the connect-ip request (RFC 9484 §4) and waits
 * for a 2xx. Throws {@linkcode ConnectIpError} with a clear message; for a
 * 404 it says that the relay refused the credentials or has no CONNECT-IP
 * at this path (a relay answers both the same way, so that a scan cannot
 * tell it from a plain web server).
 */
export async function openConnectIpSession(
  h3: H3Connection,
  options: OpenConnectIpOptions,
): Promise<H3ConnectIpSession> {
  let settings;
  try {
    settings = await h3.peerSettings;
  } catch (error) {
    throw new ConnectIpError(
      `Cannot open connect-ip session: no SETTINGS from the relay (${errorMessage(error)})`,
    );
  }
  if (settings.get(SETTINGS_ENABLE_CONNECT_PROTOCOL) !== 1) {
    throw new ConnectIpError(
      "Cannot open connect-ip session: the relay does not enable extended CONNECT " +
        "(SETTINGS_ENABLE_CONNECT_PROTOCOL is not 1)",
    );
  }
  const datagrams = settings.get(SETTINGS_H3_DATAGRAM) === 1;
  if (options.mode === "datagram" && !datagrams) {
    throw new ConnectIpError(
      "Cannot open connect-ip session in datagram mode: the relay does not enable HTTP " +
        "Datagrams (SETTINGS_H3_DATAGRAM is not 1); try --mode stream",
    );
  }
  let stream: H3RequestStream;
  let status: number;
  try {
    stream = await h3.request([
      ...buildConnectIpRequest({ authority: options.authority, path: options.path }),
      ...(options.headers ?? []),
    ]);
    status = await stream.readResponse();
  } catch (error) {
    throw new ConnectIpError(`Cannot open connect-ip session: ${errorMessage(error)}`);
  }
  if (status < 200 || status >= 300) {
    const reason = await readRefusalReason(stream);
    stream.abort();
    throw new ConnectIpError(
      status === 404
        ? "Cannot open connect-ip session: the relay answered 404: it refused the credentials " +
          `or has no CONNECT-IP at this path (${options.path})`
        : `Cannot open connect-ip session: the relay answered ${status}${
          reason ? `: ${reason}` : ""
        }`,
      status,
    );
  }
  if (!isCapsuleProtocolEnabled(stream.headers)) {
    stream.abort();
    throw new ConnectIpError(
      "Cannot open connect-ip session: the response lacks capsule-protocol: ?1",
      status,
    );
  }
  return new ConnectIpSession(stream, {
    mode: options.mode,
    log: options.log,
    counters: options.counters,
  });
}

/**
 * What the server's `authenticate` and `authorize` callbacks decide for a
 * request. A refusal's `reason` becomes the response body (default
 * "request refused"), but a 404 is always answered by `notFound`.
 */
export type AuthorizeResult = { readonly accept: true } | {
  readonly accept: false;
  readonly status: number;
  readonly reason?: string;
};

/** Options of {@linkcode answerRequest}. */
export interface AnswerRequestOptions {
  /** URI template the relay serves (default RFC 9484's well-known path). */
  readonly template?: string;
  /** The authority the relay answers for; other authorities get 400. */
  readonly authority?: string;
  /**
   * Decides who may learn anything about the connect-ip resource: called
   * for every extended CONNECT with `:protocol connect-ip` that is a
   * well-formed HTTP/3 message, once the peer's SETTINGS are in, before its
   * path, authority and scope are checked (a refusal with 404 then looks
   * exactly like a request for a path this server does not have). May take
   * its time (a credential check); must not reserve anything.
   */
  readonly authenticate?: (request: H3RequestStream) => AuthorizeResult | Promise<AuthorizeResult>;
  /**
   * Decides whether a well-formed connect-ip request is served; may take its
   * time. Called after `authenticate`, and a server that reserves something
   * for an accepted request should do so synchronously at the end of the
   * call, so concurrent requests cannot all pass its limits (see
   * `relay/sessions.ts`).
   */
  readonly authorize?: (
    scope: ConnectIpScope,
    request: H3RequestStream,
  ) => AuthorizeResult | Promise<AuthorizeResult>;
  /**
   * Writes the answer to every request for something this server does not
   * have (404): another method's path, a connect-ip request for a path
   * outside the template, and whatever `authenticate` refuses with 404. One
   * function, so they are byte for byte the same. Default: 404,
   * `content-type: text/plain`, body `not found\n`.
   */
  readonly notFound?: (request: H3RequestStream) => Promise<void>;
  /**
   * Answers well-formed requests other than CONNECT (a GET for a decoy
   * website) and returns the status it sent; default: `notFound`.
   */
  readonly serveOther?: (request: H3RequestStream) => Promise<number>;
  readonly log?: Logger;
  /** The counters the session adds to (see `ConnectIpSessionOptions.counters`). */
  readonly counters?: SessionCounters;
}

/** The outcome of {@linkcode answerRequest}. */
export type AnswerResult =
  | { readonly session: H3ConnectIpSession; readonly scope: ConnectIpScope }
  | { readonly session: undefined; readonly status: number; readonly reason: string };

/** The default answer for 404: `text/plain`, `not found`. */
export async function respondNotFound(request: H3RequestStream): Promise<void> {
  await request.respond(404, [["content-type", "text/plain"]], "not found\n");
}

/**
 * Server side: answers one request. A valid connect-ip request that
 * `authenticate` and `authorize` accept gets 200 with `capsule-protocol: ?1`
 * and becomes a session. Anything else gets a proper HTTP/3 response,
 * checked in this order:
 *
 * 1. 400 for a malformed message whatever its method (RFC 9114 §4.1.2,
 *    §4.3.1: bad field names or values, misplaced or missing
 *    pseudo-headers, a plain CONNECT with `:scheme` or `:path` per §4.4);
 * 2. 405 for a plain CONNECT; other methods: `serveOther`, else 404;
 *    501 for a `:protocol` other than connect-ip;
 * 3. (after the peer's SETTINGS) the status `authenticate` refuses with;
 * 4. the request parser's status for the resource: 404 for a path outside
 *    the template, 400 for a bad authority, `capsule-protocol` or scope;
 * 5. the status `authorize` refuses with.
 *
 * Every 404 is written by `notFound`. The `reason` of the result is for the
 * log; only refusals other than 404 carry it in their body.
 *
 * A valid connect-ip request waits for the peer's SETTINGS (they decide the
 * packet mode) before `authenticate` is called, so nothing is reserved for a
 * peer that has not sent them; if the connection closes first (for example
 * at its SETTINGS time limit), the stream is abandoned and this rejects.
 */
export async function answerRequest(
  request: H3RequestStream,
  options: AnswerRequestOptions = {},
): Promise<AnswerResult> {
  const method = request.header(":method");
  const protocol = request.header(":protocol");
  const notFound = options.notFound ?? respondNotFound;
  const refuse = async (status: number, reason: string): Promise<AnswerResult> => {
    const answer = status === 404
      ? notFound(request)
      : request.respond(status, [["content-type", "text/plain"]], `${reason}\n`);
    await answer.catch(() => {});
    return { session: undefined, status, reason };
  };
  if (method === "CONNECT" && protocol === undefined) {
    // RFC 9114 §4.4: a plain CONNECT carries neither :scheme nor :path.
    if (request.header(":scheme") !== undefined || request.header(":path") !== undefined) {
      return await refuse(400, "malformed CONNECT: :scheme and :path without :protocol");
    }
  }
  // The parser checks every field line before it looks at the method, so a
  // 400 from it is a malformed message, which wins over 404 and 405.
  const parsed = parseConnectIpRequest(request.headers, {
    template: options.template,
    authority: options.authority,
  });
  if (!parsed.ok && parsed.about === "message" && parsed.status === 400) {
    return await refuse(400, parsed.reason);
  }
  if (method === "CONNECT" && protocol === undefined) {
    return await refuse(405, "plain CONNECT is not supported; use connect-ip");
  }
  if (method !== "CONNECT") {
    // RFC 9114 §4.3.1: other requests need a non-empty :scheme and :path.
    if (!request.header(":scheme") || !request.header(":path")) {
      return await refuse(400, "malformed request: missing :scheme or :path");
    }
    if (options.serveOther === undefined) return await refuse(404, "not found");
    const status = await options.serveOther(request).catch(() => 500);
    return { session: undefined, status, reason: status === 404 ? "not found" : "served" };
  }
  if (!parsed.ok && parsed.about === "message") return await refuse(parsed.status, parsed.reason);
  // Nothing is reserved for a peer whose SETTINGS have not arrived: authenticate
  // runs only after them. The wait is bounded by the connection's SETTINGS
  // time limit, which closes the connection and rejects peerSettings.
  let settings;
  try {
    settings = await request.connection.peerSettings;
  } catch (error) {
    request.abort();
    throw new Error(`Cannot answer request: no SETTINGS from the peer (${errorMessage(error)})`);
  }
  const identity = (await options.authenticate?.(request)) ?? { accept: true };
  if (!identity.accept) {
    return await refuse(identity.status, identity.reason ?? "request refused");
  }
  if (!parsed.ok) return await refuse(parsed.status, parsed.reason);
  const decision = (await options.authorize?.(parsed.scope, request)) ?? { accept: true };
  if (!decision.accept) {
    return await refuse(decision.status, decision.reason ?? "request refused");
  }
  const mode: PacketMode = settings.get(SETTINGS_H3_DATAGRAM) === 1 ? "datagram" : "stream";
  // The session registers for datagrams before the 200 lets the client send.
  const session = new ConnectIpSession(request, {
    mode,
    log: options.log,
    counters: options.counters,
  });
  await request.writeHeaders(buildConnectIpResponse(200));
  return { session, scope: parsed.scope };
}

/** The most of a refusal's body the client reads and shows, bytes. */
export const MAX_REFUSAL_REASON_BYTES = 256;
/** How long the client waits for a refusal's body, milliseconds. */
export const REFUSAL_REASON_TIMEOUT_MS = 1000;

/**
 * The reason a relay gave in the body of a refusal (`address pool
 * exhausted`), as one line of printable ASCII of at most
 * {@linkcode MAX_REFUSAL_REASON_BYTES}, or "" when it sent none within
 * {@linkcode REFUSAL_REASON_TIMEOUT_MS}. Never throws.
 */
export async function readRefusalReason(stream: H3RequestStream): Promise<string> {
  const bytes: number[] = [];
  const body = (async () => {
    for await (const chunk of stream.readBody()) {
      for (let i = 0; i < chunk.length && bytes.length < MAX_REFUSAL_REASON_BYTES; i++) {
        bytes.push(chunk[i]);
      }
      if (bytes.length >= MAX_REFUSAL_REASON_BYTES) return;
    }
  })().catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    body,
    new Promise((resolve) => timer = setTimeout(resolve, REFUSAL_REASON_TIMEOUT_MS)),
  ]);
  clearTimeout(timer);
  let text = "";
  for (const byte of bytes) text += byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : " ";
  return text.replace(/ +/g, " ").trim();
}
