/**
 * CONNECT-IP over HTTP/2 (RFC 9484 §4 with RFC 8441's extended CONNECT):
 * the request stream of an HTTP/2 extended CONNECT is the session's
 * {@linkcode ConnectStream}. HTTP/2 has no datagrams, so packets travel as
 * DATAGRAM capsules on the stream (RFC 9297 §3.5): the session runs in
 * stream mode, reliable and ordered, and every byte waits behind the ones
 * before it on one TCP connection.
 *
 * The HTTP/2 framing, HPACK and flow control are `node:http2`'s; this file
 * sees only the shapes of its streams ({@linkcode H2StreamLike}), so tests
 * drive it with fakes and the code stays free of the `Deno` global:
 * - {@linkcode H2ConnectStream}: a `node:http2` stream as a `ConnectStream`;
 * - {@linkcode openH2ConnectIpSession}: the client's side once the
 *   response headers are in;
 * - {@linkcode answerH2Request}: the server's answer, with the same checks
 *   in the same order as over HTTP/3 (`answerRequest`: message, then
 *   credentials, then the resource) with the same `authenticate` and
 *   `authorize` steps.
 *
 * What waits to be written is bounded: the session drops a packet when
 * {@linkcode DEFAULT_H2_MAX_QUEUED_BYTES} bytes already wait in the
 * stream's write buffer (`writableLength`), so a peer whose window never
 * opens, or a path slower than the sender, costs packets, not memory and
 * seconds of delay.
 *
 * @module
 */

import type { ByteBudget } from "../h3/byte_budget.ts";
import type { HeaderField } from "../h3/qpack.ts";
import { errorMessage, H3_EXCESSIVE_LOAD, H3Error } from "../errors.ts";
import type { Logger } from "../log.ts";
import {
  buildConnectIpResponse,
  isCapsuleProtocolEnabled,
  parseConnectIpRequest,
} from "./connect_ip_request.ts";
import type { ConnectIpScope } from "./connect_ip_request.ts";
import { ConnectIpSession } from "./connect_ip_session.ts";
import type { SessionCounters } from "./connect_ip_session.ts";
import type { ConnectStream } from "./connect_stream.ts";
import { ConnectIpError } from "./h3_connect_ip.ts";
import type { AuthorizeResult } from "./h3_connect_ip.ts";

/** HTTP/2 error codes (RFC 9113 §7) this side sends or names. */
export const H2_NO_ERROR = 0x0;
export const H2_PROTOCOL_ERROR = 0x1;
export const H2_INTERNAL_ERROR = 0x2;
export const H2_REFUSED_STREAM = 0x7;
export const H2_CANCEL = 0x8;
export const H2_ENHANCE_YOUR_CALM = 0xb;

const H2_ERROR_NAMES: Readonly<Record<number, string>> = {
  0x0: "NO_ERROR",
  0x1: "PROTOCOL_ERROR",
  0x2: "INTERNAL_ERROR",
  0x3: "FLOW_CONTROL_ERROR",
  0x4: "SETTINGS_TIMEOUT",
  0x5: "STREAM_CLOSED",
  0x6: "FRAME_SIZE_ERROR",
  0x7: "REFUSED_STREAM",
  0x8: "CANCEL",
  0x9: "COMPRESSION_ERROR",
  0xa: "CONNECT_ERROR",
  0xb: "ENHANCE_YOUR_CALM",
  0xc: "INADEQUATE_SECURITY",
  0xd: "HTTP_1_1_REQUIRED",
};

/** `CANCEL (0x8)`: an HTTP/2 error code's name (RFC 9113 §7) and value. */
export function h2ErrorName(code: number): string {
  return `${H2_ERROR_NAMES[code] ?? "unknown"} (0x${code.toString(16)})`;
}

/**
 * Default bound on the bytes that may wait in an HTTP/2 session's write
 * buffer before stream-mode packets are dropped (see the module docs):
 * 512 KiB, about 42 ms at 100 Mbit/s and 17 ms at 250 Mbit/s (over 128 KiB
 * the bench lost 22% of a 100 Mbit/s UDP stream to bursts on a busy host;
 * with 512 KiB none). Capsules are never dropped.
 */
export const DEFAULT_H2_MAX_QUEUED_BYTES = 512 * 1024;

/**
 * What the adapter uses of a `node:http2` `Http2Stream` (client or server):
 * a Duplex whose readable side pauses the peer through HTTP/2 flow control
 * and whose write callback runs once the bytes are handed to the session.
 */
export interface H2StreamLike {
  readonly destroyed: boolean;
  /** Bytes written and not yet handed to the HTTP/2 session. */
  readonly writableLength: number;
  /** The RST_STREAM code once the stream closed (the peer's or ours). */
  readonly rstCode?: number;
  write(chunk: Uint8Array, callback: (error?: Error | null) => void): boolean;
  end(): unknown;
  /** Sends RST_STREAM with `code`. */
  close(code?: number): void;
  pause(): unknown;
  resume(): unknown;
  on(event: "data", listener: (chunk: Uint8Array) => void): unknown;
  on(event: "end" | "close", listener: () => void): unknown;
  on(event: "error", listener: (error: Error) => void): unknown;
}

/** A server-side stream: it can send the response headers. */
export interface H2ServerStreamLike extends H2StreamLike {
  readonly headersSent: boolean;
  respond(headers: Record<string, string>, options?: { endStream?: boolean }): void;
}

/** Options of {@linkcode H2ConnectStream}. */
export interface H2ConnectStreamOptions {
  /** The connection's budget for bytes held between reads (a partial capsule). */
  readonly budget?: ByteBudget;
  /**
   * Closes the HTTP/2 connection (GOAWAY with `code`), for an error that
   * concerns the whole connection: the budget's H3_EXCESSIVE_LOAD becomes
   * ENHANCE_YOUR_CALM.
   */
  readonly failConnection?: (code: number, reason: string) => void;
}

/**
 * A `node:http2` stream after a 2xx to an extended CONNECT, as the
 * session's {@linkcode ConnectStream}: its DATA are the capsule bytes both
 * ways, and it has no datagrams.
 */
export class H2ConnectStream implements ConnectStream {
  readonly #stream: H2StreamLike;
  readonly #options: H2ConnectStreamOptions;
  /** Chunks delivered by `data` events that `readBody` has not taken yet. */
  #chunks: Uint8Array[] = [];
  #waiter:
    | { resolve: (result: IteratorResult<Uint8Array>) => void; reject: (error: Error) => void }
    | undefined;
  /** The peer ended its side cleanly (END_STREAM). */
  #peerEnded = false;
  /** Why reading cannot go on: a reset, a closed stream, our own abort. */
  #error: Error | undefined;
  #ended = false;
  #aborted = false;

  constructor(stream: H2StreamLike, options: H2ConnectStreamOptions = {}) {
    this.#stream = stream;
    this.#options = options;
    stream.on("data", (chunk: Uint8Array) => this.#onData(chunk));
    stream.on("end", () => {
      this.#peerEnded = true;
      this.#wake();
    });
    stream.on("error", (error: Error) => this.#fail(this.#describe(error)));
    stream.on("close", () => {
      if (!this.#peerEnded) this.#fail(this.#describe(undefined));
    });
  }

  #describe(error: Error | undefined): Error {
    if (this.#aborted) return new Error("Stream abandoned by this side");
    const code = this.#stream.rstCode;
    if (code !== undefined && code !== H2_NO_ERROR) {
      return new Error(`Stream reset with ${h2ErrorName(code)}`);
    }
    if (error !== undefined) return new Error(`Stream failed: ${errorMessage(error)}`);
    return new Error("Stream closed before the peer ended it");
  }

  #onData(chunk: Uint8Array): void {
    if (this.#error !== undefined || chunk.length === 0) return;
    const waiter = this.#waiter;
    if (waiter !== undefined && this.#chunks.length === 0) {
      this.#waiter = undefined;
      waiter.resolve({ done: false, value: chunk });
      return;
    }
    this.#chunks.push(chunk);
    // Backpressure: while a chunk waits, the peer's window stays closed.
    this.#stream.pause();
  }

  #fail(error: Error): void {
    if (this.#error !== undefined) return;
    this.#error = error;
    this.#chunks = [];
    this.#wake();
  }

  #wake(): void {
    const waiter = this.#waiter;
    if (waiter === undefined) return;
    if (this.#chunks.length > 0) return; // a chunk is handed out on the next call
    this.#waiter = undefined;
    if (this.#error !== undefined) waiter.reject(this.#error);
    else if (this.#peerEnded) waiter.resolve({ done: true, value: undefined });
  }

  #next(): Promise<IteratorResult<Uint8Array>> {
    const chunk = this.#chunks.shift();
    if (chunk !== undefined) {
      if (this.#chunks.length === 0) this.#stream.resume();
      return Promise.resolve({ done: false, value: chunk });
    }
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.#peerEnded) return Promise.resolve({ done: true, value: undefined });
    this.#stream.resume();
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  /** Yields the stream's DATA as it arrives; see `ConnectStream.readBody`. */
  readBody(): AsyncIterator<Uint8Array> {
    return { next: () => this.#next() };
  }

  /** Writes capsule bytes; settles when the HTTP/2 session has taken them. */
  writeData(bytes: Uint8Array): Promise<void> {
    if (!this.writable) return Promise.reject(new Error("Cannot write: the stream has ended"));
    return new Promise((resolve, reject) => {
      try {
        this.#stream.write(bytes, (error) => (error ? reject(error) : resolve()));
      } catch (error) {
        reject(error);
      }
    });
  }

  /** Whether writes can still succeed. */
  get writable(): boolean {
    return !this.#ended && !this.#aborted && !this.#stream.destroyed;
  }

  /** Bytes written and not yet taken by the HTTP/2 session (the stream's write buffer). */
  get queuedBytes(): number {
    return this.#stream.writableLength;
  }

  /** Ends the sending side (END_STREAM). */
  end(): Promise<void> {
    if (this.#ended || this.#stream.destroyed) return Promise.resolve();
    this.#ended = true;
    try {
      this.#stream.end();
    } catch {
      // already closed
    }
    return Promise.resolve();
  }

  /**
   * Abandons the stream: after the peer's clean end, our side ends
   * cleanly too; otherwise RST_STREAM with CANCEL. A waiting read rejects
   * with "Stream abandoned by this side".
   */
  abort(): void {
    if (this.#aborted) return;
    if (this.#peerEnded && this.#error === undefined) {
      void this.end();
      this.#aborted = true;
      return;
    }
    this.#aborted = true;
    this.#fail(new Error("Stream abandoned by this side"));
    try {
      if (!this.#stream.destroyed) this.#stream.close(H2_CANCEL);
    } catch {
      // already closed
    }
  }

  /**
   * The budget's H3_EXCESSIVE_LOAD (a partial capsule past the
   * connection's byte budget) closes the HTTP/2 connection with
   * ENHANCE_YOUR_CALM (RFC 9113 §7); other errors concern this stream only.
   */
  fail(error: unknown): void {
    if (error instanceof H3Error && error.code === H3_EXCESSIVE_LOAD) {
      this.#options.failConnection?.(H2_ENHANCE_YOUR_CALM, error.message);
    }
  }

  /** The connection's budget of bytes held between reads. */
  get bufferBudget(): ByteBudget | undefined {
    return this.#options.budget;
  }
}

/** A session on an HTTP/2 stream. */
export type H2ConnectIpSession = ConnectIpSession<H2ConnectStream>;

/** Options of {@linkcode openH2ConnectIpSession} and {@linkcode answerH2Request}. */
export interface H2SessionOptions {
  readonly log?: Logger;
  /** The counters the session adds to (see `ConnectIpSessionOptions.counters`). */
  readonly counters?: SessionCounters;
  /** Packets are dropped when this many bytes wait to be written; default {@linkcode DEFAULT_H2_MAX_QUEUED_BYTES}. */
  readonly maxQueuedBytes?: number;
  /** See {@linkcode H2ConnectStreamOptions}. */
  readonly budget?: ByteBudget;
  readonly failConnection?: (code: number, reason: string) => void;
}

/**
 * The response headers of a `node:http2` response as field lines: each
 * value of a repeated header on its own line, names as `node:http2` gives
 * them (lowercase).
 */
export function h2HeaderFields(headers: Readonly<Record<string, unknown>>): HeaderField[] {
  const fields: HeaderField[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (Array.isArray(value)) { for (const v of value) fields.push([name, String(v)]); }
    else if (value !== undefined) fields.push([name, String(value)]);
  }
  return fields;
}

/**
 * `node:http2`'s raw header list (`[name, value, name, value, ...]`, as the
 * `stream` event's fourth argument) as field lines, in order.
 */
export function h2RawHeaderFields(raw: readonly string[]): HeaderField[] {
  const fields: HeaderField[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) fields.push([raw[i], raw[i + 1]]);
  return fields;
}

/**
 * Client side, once the response to an extended CONNECT with `:protocol
 * connect-ip` (RFC 8441 §4) has arrived on `stream`: checks for a 2xx with
 * `capsule-protocol: ?1` (RFC 9484 §4.2) and makes a stream-mode session.
 * Throws {@linkcode ConnectIpError} with the status otherwise, and resets
 * the stream.
 */
export function openH2ConnectIpSession(
  stream: H2StreamLike,
  response: readonly HeaderField[],
  options: H2SessionOptions = {},
): H2ConnectIpSession {
  const statusText = response.find(([name]) => name === ":status")?.[1];
  const status = Number(statusText);
  const refuse = (message: string) => {
    try {
      stream.close(H2_CANCEL);
    } catch {
      // already closed
    }
    return new ConnectIpError(message, Number.isInteger(status) ? status : undefined);
  };
  if (!Number.isInteger(status) || status < 200 || status >= 300) {
    throw refuse(`Cannot open connect-ip session: the relay answered ${statusText ?? "nothing"}`);
  }
  if (!isCapsuleProtocolEnabled(response)) {
    throw refuse("Cannot open connect-ip session: the response lacks capsule-protocol: ?1");
  }
  return new ConnectIpSession(
    new H2ConnectStream(stream, { budget: options.budget }),
    {
      mode: "stream",
      log: options.log,
      counters: options.counters,
      maxBytesQueued: options.maxQueuedBytes ?? DEFAULT_H2_MAX_QUEUED_BYTES,
    },
  );
}

/**
 * Default {@linkcode AnswerH2RequestOptions.maxHeaderListBytes}: 16 KiB, the
 * most a CONNECT-IP request needs many times over (HTTP/3's limit here is
 * the same).
 */
export const DEFAULT_H2_MAX_HEADER_LIST_BYTES = 16 * 1024;

/**
 * The size of a header list as SETTINGS_MAX_HEADER_LIST_SIZE counts it
 * (RFC 9113 §6.5.2): each field's name and value lengths plus 32, in
 * bytes (characters here: `node:http2` hands out strings).
 */
export function headerListSize(headers: readonly HeaderField[]): number {
  let size = 0;
  for (const [name, value] of headers) size += name.length + value.length + 32;
  return size;
}

/** Options of {@linkcode answerH2Request}. */
export interface AnswerH2RequestOptions extends H2SessionOptions {
  /**
   * Requests whose header list is larger get 431 (RFC 6585 §5); default
   * {@linkcode DEFAULT_H2_MAX_HEADER_LIST_BYTES}. Deno 2.9's `node:http2`
   * does not apply SETTINGS_MAX_HEADER_LIST_SIZE itself.
   */
  readonly maxHeaderListBytes?: number;
  /** URI template the relay serves (default RFC 9484's well-known path). */
  readonly template?: string;
  /** The authority the relay answers for; other authorities get 400. */
  readonly authority?: string;
  /**
   * Checks the request's credentials, as `AnswerRequestOptions.authenticate`
   * over HTTP/3: after the message checks and before anything about the
   * connect-ip resource (path, authority, scope) is looked at; must not
   * reserve anything.
   */
  readonly authenticate?: () => AuthorizeResult | Promise<AuthorizeResult>;
  /**
   * Decides whether a well-formed connect-ip request is served, as
   * `AnswerRequestOptions.authorize` over HTTP/3 (a reservation is made
   * synchronously at its end).
   */
  readonly authorize?: (scope: ConnectIpScope) => AuthorizeResult | Promise<AuthorizeResult>;
}

/** The outcome of {@linkcode answerH2Request}. */
export type AnswerH2Result =
  | { readonly session: H2ConnectIpSession; readonly scope: ConnectIpScope }
  | { readonly session: undefined; readonly status: number; readonly reason: string };

/**
 * Server side: answers one HTTP/2 request whose field lines are `headers`
 * (`node:http2`'s raw list, {@linkcode h2RawHeaderFields}). A valid
 * connect-ip request that `authorize` accepts gets 200 with
 * `capsule-protocol: ?1` and becomes a stream-mode session; anything else
 * gets 431 (a header list past `maxHeaderListBytes`) or the status
 * the checks of `answerRequest`, `authenticate` or `authorize` decide, with the
 * reason as a text body, and the stream ends. If the stream is reset while
 * `authorize` runs, this rejects (a caller that reserved something
 * releases it).
 */
export async function answerH2Request(
  stream: H2ServerStreamLike,
  headers: readonly HeaderField[],
  options: AnswerH2RequestOptions = {},
): Promise<AnswerH2Result> {
  const refuse = (status: number, reason: string): AnswerH2Result => {
    try {
      if (!stream.destroyed && !stream.headersSent) {
        stream.respond({ ":status": String(status), "content-type": "text/plain" });
        stream.write(new TextEncoder().encode(`${reason}\n`), () => {});
        stream.end();
      }
    } catch {
      // the peer went away
    }
    return { session: undefined, status, reason };
  };
  const size = headerListSize(headers);
  const maxSize = options.maxHeaderListBytes ?? DEFAULT_H2_MAX_HEADER_LIST_BYTES;
  if (size > maxSize) {
    return refuse(431, `header list of ${size} bytes exceeds limit ${maxSize}`);
  }
  // The order of answerRequest over HTTP/3 (RFC 9113 §8.1.1, §8.3.1, §8.5
  // for HTTP/2): a malformed message (400) wins over 404 and 405; then the
  // credentials, before anything about the resource is revealed.
  const first = (name: string) => headers.find(([n]) => n === name)?.[1];
  const method = first(":method");
  const protocol = first(":protocol");
  const plainConnect = method === "CONNECT" && protocol === undefined;
  if (plainConnect && (first(":scheme") !== undefined || first(":path") !== undefined)) {
    return refuse(400, "malformed CONNECT: :scheme and :path without :protocol");
  }
  const parsed = parseConnectIpRequest(headers, {
    template: options.template,
    authority: options.authority,
  });
  if (!parsed.ok && parsed.about === "message" && parsed.status === 400) {
    return refuse(400, parsed.reason);
  }
  if (plainConnect) return refuse(405, "plain CONNECT is not supported; use connect-ip");
  if (method !== "CONNECT") {
    if (!first(":scheme") || !first(":path")) {
      return refuse(400, "malformed request: missing :scheme or :path");
    }
    return refuse(404, "not found");
  }
  if (!parsed.ok && parsed.about === "message") return refuse(parsed.status, parsed.reason);
  const identity = (await options.authenticate?.()) ?? { accept: true };
  if (!identity.accept) return refuse(identity.status, identity.reason ?? "request refused");
  if (!parsed.ok) return refuse(parsed.status, parsed.reason);
  const decision = (await options.authorize?.(parsed.scope)) ?? { accept: true };
  if (!decision.accept) return refuse(decision.status, decision.reason ?? "request refused");
  if (stream.destroyed) {
    throw new Error("Cannot answer request: the stream was reset while it was authorized");
  }
  const session = new ConnectIpSession(
    new H2ConnectStream(stream, { budget: options.budget, failConnection: options.failConnection }),
    {
      mode: "stream",
      log: options.log,
      counters: options.counters,
      maxBytesQueued: options.maxQueuedBytes ?? DEFAULT_H2_MAX_QUEUED_BYTES,
    },
  );
  const response: Record<string, string> = {};
  for (const [name, value] of buildConnectIpResponse(200)) response[name] = value;
  try {
    stream.respond(response);
  } catch (error) {
    session.stream.abort();
    throw new Error(`Cannot answer request: ${errorMessage(error)}`);
  }
  return { session, scope: parsed.scope };
}
