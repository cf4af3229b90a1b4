/**
 * One HTTP/3 request stream (RFC 9114 §4.1): the request's or response's
 * HEADERS, then DATA both ways, and the HTTP Datagrams of this stream
 * (RFC 9297 §2), which its {@linkcode H3Connection} routes to it by quarter
 * stream id.
 *
 * After an extended CONNECT it is the transport of a CONNECT-IP session:
 * it has the shape of `ConnectStream` (`shared/masque/connect_stream.ts`),
 * with its DATA frames as the body and {@linkcode H3RequestStream.datagrams}
 * as the datagram channel.
 *
 * @module
 */

import {
  H3_FRAME_ERROR,
  H3_FRAME_UNEXPECTED,
  H3_REQUEST_CANCELLED,
  H3_REQUEST_INCOMPLETE,
  H3Error,
  h3ErrorName,
} from "../errors.ts";
import type { Logger } from "../log.ts";
import type { ByteBudget } from "./byte_budget.ts";
import type { H3Connection } from "./connection.ts";
import {
  encodeFrame,
  FRAME_CANCEL_PUSH,
  FRAME_DATA,
  FRAME_GOAWAY,
  FRAME_HEADERS,
  FRAME_MAX_PUSH_ID,
  FRAME_PUSH_PROMISE,
  FRAME_SETTINGS,
  FrameReader,
  frameTypeName,
} from "./frame.ts";
import type { FrameEvent } from "./frame.ts";
import { decodeFieldSection, encodeFieldSection } from "./qpack.ts";
import type { HeaderField } from "./qpack.ts";
import type { QuicBidiStreamLike } from "./quic.ts";
import { quarterStreamId } from "./quarter_stream.ts";
import { StreamReader } from "./stream_reader.ts";
import { encodeVarintInto, varintSize } from "./varint.ts";

const textEncoder = new TextEncoder();

/**
 * One request stream: the request's or response's HEADERS, then DATA both
 * ways, and the HTTP Datagrams of this stream.
 */
export class H3RequestStream {
  readonly #h3: H3Connection;
  readonly #reader: StreamReader;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #frames: FrameReader;
  readonly #log: Logger;
  readonly #maxFieldSectionSize?: number;
  readonly #streamId: bigint;
  readonly #quarterStreamId: number;
  /** No HEADERS frame has begun yet: a DATA frame, even an empty one, is unexpected (§4.1). */
  #beforeHeaders = true;
  #headers: HeaderField[] = [];
  #ended = false;
  #writeFailed = false;
  /** This side abandoned the stream (abort()): reads end in a stream error. */
  #aborted = false;
  /** This stream's HTTP Datagrams (RFC 9297 §2). */
  readonly datagrams: H3Datagrams;

  constructor(
    h3: H3Connection,
    stream: QuicBidiStreamLike,
    log: Logger,
    maxFieldSectionSize?: number,
  ) {
    this.#h3 = h3;
    this.#streamId = stream.writable.id;
    this.#quarterStreamId = quarterStreamId(this.#streamId);
    this.#reader = new StreamReader(stream.readable);
    this.#writer = stream.writable.getWriter();
    this.#writer.closed.catch(() => {
      this.#writeFailed = true;
    });
    this.#frames = new FrameReader({
      budget: h3.bufferBudget,
      onFrameStart: (type) => {
        if (!this.#beforeHeaders) return;
        if (type === FRAME_HEADERS) this.#beforeHeaders = false;
        if (type === FRAME_DATA) {
          throw new H3Error(H3_FRAME_UNEXPECTED, "DATA frame before HEADERS on a request stream");
        }
      },
    });
    this.#log = log;
    this.#maxFieldSectionSize = maxFieldSectionSize;
    this.datagrams = new H3Datagrams(h3, this);
  }

  /** The QUIC stream id. */
  get streamId(): bigint {
    return this.#streamId;
  }

  /** The stream id divided by four, as HTTP Datagrams carry it (RFC 9297 §2.1). */
  get quarterStreamId(): number {
    return this.#quarterStreamId;
  }

  /** The connection this stream belongs to. */
  get connection(): H3Connection {
    return this.#h3;
  }

  /** The connection's budget of bytes held between reads (a session's partial capsule counts in it). */
  get bufferBudget(): ByteBudget {
    return this.#h3.bufferBudget;
  }

  /**
   * Closes the connection when `error` is an HTTP/3 connection error (an
   * {@linkcode H3Error} with `connection` set: RFC 9114 §8), such as the
   * budget's H3_EXCESSIVE_LOAD from a session's capsule parser; other errors
   * concern only this stream and are left to its owner.
   */
  fail(error: unknown): void {
    this.#closeOnConnectionError(error);
  }

  /** The request headers (server) or response headers (client) read so far. */
  get headers(): readonly HeaderField[] {
    return this.#headers;
  }

  /** The value of the first header named `name`, if any. */
  header(name: string): string | undefined {
    return this.#headers.find(([n]) => n === name)?.[1];
  }

  /** Writes a HEADERS frame. */
  async writeHeaders(headers: readonly HeaderField[]): Promise<void> {
    const block = encodeFieldSection(headers);
    await this.#writer.write(encodeFrame(FRAME_HEADERS, block));
  }

  /**
   * Answers the request with `status` and `headers`. A non-2xx answer ends
   * the stream; `body`, when given, is sent in one DATA frame first.
   */
  async respond(
    status: number,
    headers: readonly HeaderField[] = [],
    body?: string,
  ): Promise<void> {
    await this.writeHeaders([[":status", String(status)], ...headers]);
    if (body !== undefined) await this.writeData(textEncoder.encode(body));
    if (status < 200 || status >= 300) {
      await this.end();
      // A server that refused a request needs nothing more from it (RFC 9114 §4.1.1).
      if (this.#h3.role === "server") this.#stopReading();
    }
  }

  /**
   * Writes one DATA frame with `payload`. Rejects when the stream is gone.
   */
  writeData(payload: Uint8Array): Promise<void> {
    return this.#writer.write(encodeFrame(FRAME_DATA, payload));
  }

  /** Whether writes can still succeed. */
  get writable(): boolean {
    return !this.#ended && !this.#writeFailed;
  }

  /** Ends the sending side cleanly (FIN). */
  async end(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    this.#h3.unregisterDatagramHandler(this.quarterStreamId);
    await this.#writer.close().catch(() => {});
  }

  /**
   * Abandons the stream: stops reading (STOP_SENDING) and ends the sending
   * side. Used for stream errors.
   */
  abort(): void {
    this.#aborted = true;
    this.#stopReading();
    this.end();
  }

  /** Stops reading (STOP_SENDING) and gives what is buffered back to the budget. */
  #stopReading(): void {
    this.#reader.cancel();
    this.#frames.clear();
  }

  /**
   * Reads the next frame event; null at a clean end of stream. Errors:
   * H3Error (stream ends inside a frame: H3_FRAME_ERROR, RFC 9114 §7.1; the
   * peer reset the stream: a stream error with the peer's code, §4.1.1).
   */
  async #nextEvent(): Promise<FrameEvent | null> {
    for (;;) {
      const event = this.#frames.next();
      if (event !== undefined) return event;
      let more: boolean;
      try {
        // The read goes straight to #received: no local holds it across the next
        // await (see H3Connection's #feed).
        more = this.#received(await this.#reader.read());
      } catch (error) {
        if (error instanceof H3Error) throw error;
        this.#frames.clear();
        if (this.#aborted) throw abandoned();
        throw peerResetError(error) ?? error;
      }
      if (!more) return null;
    }
  }

  /** Pushes one read into the frame reader; false at a clean end of the stream. */
  #received(read: ReadableStreamReadResult<Uint8Array>): boolean {
    if (read.done) {
      if (this.#aborted) throw abandoned();
      const boundary = this.#frames.atFrameBoundary;
      this.#frames.clear();
      if (!boundary) throw new H3Error(H3_FRAME_ERROR, "Request stream ended inside a frame");
      return false;
    }
    this.#h3.countStreamRead();
    this.#frames.push(read.value);
    return true;
  }

  #decodeHeaders(payload: Uint8Array): HeaderField[] {
    return decodeFieldSection(payload, { maxFieldSectionSize: this.#maxFieldSectionSize });
  }

  /**
   * Closes the connection when `error` is a connection error (RFC 9114 §8),
   * on either side, and returns it for rethrowing.
   */
  #closeOnConnectionError(error: unknown): unknown {
    if (error instanceof H3Error && error.connection) this.#h3.fail(error);
    return error;
  }

  /**
   * Reads the next HEADERS frame: the request's on the server, the response's
   * on the client. Errors: the stream ends first (H3_REQUEST_INCOMPLETE, a
   * stream error), DATA before HEADERS (H3_FRAME_UNEXPECTED), QPACK errors;
   * connection errors also close the connection.
   */
  async readHeaders(): Promise<readonly HeaderField[]> {
    try {
      return await this.#readHeaders();
    } catch (error) {
      throw this.#closeOnConnectionError(error);
    }
  }

  async #readHeaders(): Promise<readonly HeaderField[]> {
    for (;;) {
      const headers = this.#headersFrom(await this.#nextEvent());
      if (headers !== undefined) return headers;
    }
  }

  /** The decoded HEADERS if `event` is that frame; undefined to read on. */
  #headersFrom(event: FrameEvent | null): HeaderField[] | undefined {
    if (event === null) {
      throw new H3Error(H3_REQUEST_INCOMPLETE, "Request stream ended before HEADERS", {
        connection: false,
      });
    }
    if (event.kind === "data") {
      throw new H3Error(H3_FRAME_UNEXPECTED, "DATA frame before HEADERS on a request stream");
    }
    this.#checkRequestStreamFrame(event.type);
    if (event.type !== FRAME_HEADERS) return undefined;
    this.#headers = this.#decodeHeaders(event.payload);
    return this.#headers;
  }

  /**
   * Client side: reads the response's HEADERS, skipping interim (1xx)
   * responses, and returns the status. Errors as {@linkcode readHeaders}.
   */
  async readResponse(): Promise<number> {
    for (;;) {
      const headers = await this.readHeaders().catch((error) => {
        if (error instanceof H3Error && error.code === H3_REQUEST_INCOMPLETE) {
          throw new H3Error(H3_REQUEST_INCOMPLETE, "Stream ended before a response arrived", {
            connection: false,
          });
        }
        throw error;
      });
      const status = headers.find(([name]) => name === ":status")?.[1];
      const code = status !== undefined && isStatusCode(status) ? Number(status) : NaN;
      if (Number.isNaN(code) || code === 101) {
        throw new H3Error(0x10e, `Malformed response: :status ${JSON.stringify(status)}`, {
          connection: false,
        });
      }
      if (code >= 200) return code;
    }
  }

  #checkRequestStreamFrame(type: number): void {
    if (
      type === FRAME_SETTINGS || type === FRAME_GOAWAY || type === FRAME_CANCEL_PUSH ||
      type === FRAME_MAX_PUSH_ID || (type === FRAME_PUSH_PROMISE && this.#h3.role === "server")
    ) {
      throw new H3Error(
        H3_FRAME_UNEXPECTED,
        `Unexpected ${frameTypeName(type)} frame on a request stream`,
      );
    }
  }

  /**
   * Yields the payload of the DATA frames after the headers, chunk by chunk,
   * until the peer ends the stream. Trailing HEADERS end the body. Errors as
   * {@linkcode readHeaders}; connection errors also close the connection.
   */
  async *readBody(): AsyncGenerator<Uint8Array> {
    // `chunk` is cleared after each yield: a local left set would pin the
    // chunk's read buffer while the next read waits (see H3Connection's #feed).
    // Callers should likewise not iterate with `for await`, whose loop
    // variable stays set during the wait, but call next() themselves.
    let chunk: Uint8Array | null | undefined;
    for (;;) {
      try {
        chunk = this.#bodyChunkFrom(await this.#nextEvent());
      } catch (error) {
        throw this.#closeOnConnectionError(error);
      }
      if (chunk === null) return;
      if (chunk === undefined) continue;
      yield chunk;
      chunk = undefined;
    }
  }

  /** A DATA chunk from `event`, null at the end of the body, undefined to read on. */
  #bodyChunkFrom(event: FrameEvent | null): Uint8Array | null | undefined {
    if (event === null) return null;
    if (event.kind === "data") return event.chunk;
    this.#checkRequestStreamFrame(event.type);
    if (event.type === FRAME_HEADERS) {
      this.#decodeHeaders(event.payload); // trailers: validated and ignored
      return null;
    }
    return undefined;
  }

  /** Logs with this stream's id. */
  get log(): Logger {
    return this.#log.with({ stream: this.#streamId });
  }
}

/**
 * The HTTP Datagrams of one request stream (RFC 9297 §2.1): each QUIC
 * datagram starts with the stream's quarter stream id, written here in
 * place in front of the session's payload.
 */
export class H3Datagrams {
  readonly #h3: H3Connection;
  readonly #stream: H3RequestStream;
  readonly #quarterStreamId: number;
  /** Bytes of the quarter stream id varint in front of each payload. */
  readonly prefixLength: number;

  constructor(h3: H3Connection, stream: H3RequestStream) {
    this.#h3 = h3;
    this.#stream = stream;
    this.#quarterStreamId = stream.quarterStreamId;
    this.prefixLength = varintSize(this.#quarterStreamId);
  }

  /** The largest payload a QUIC datagram carries now, bytes (the path's limit minus the prefix). */
  get maxPayloadSize(): number {
    return Math.max(0, this.#h3.maxDatagramSize - this.prefixLength);
  }

  /**
   * Writes the quarter stream id into the first {@linkcode prefixLength}
   * bytes of `buffer` and sends it as one QUIC datagram; the connection is
   * done with `buffer` when this returns (`QuicConnLike.sendDatagram`). See
   * `DatagramChannel.send` for the results; a full send queue drops the
   * datagram and counts it in the connection's `datagramsQueueFull`.
   */
  send(buffer: Uint8Array): "sent" | "too_big" | "closed" {
    if (!this.#stream.writable) return "closed";
    if (buffer.length > this.#h3.maxDatagramSize) return "too_big";
    encodeVarintInto(buffer, 0, this.#quarterStreamId);
    return this.#h3.sendRawDatagram(buffer) ? "sent" : "closed";
  }

  /** Receives this stream's datagrams (payload after the quarter stream id) until the stream ends. */
  onDatagram(handler: (payload: Uint8Array) => void): void {
    this.#h3.registerDatagramHandler(this.#quarterStreamId, handler);
  }
}

/** Whether `text` is three digits 100..599 (RFC 9114 §4.3.2), checked without a regular expression. */
function isStatusCode(text: string): boolean {
  if (text.length !== 3) return false;
  const a = text.charCodeAt(0);
  const b = text.charCodeAt(1);
  const c = text.charCodeAt(2);
  return a >= 0x31 && a <= 0x35 && b >= 0x30 && b <= 0x39 && c >= 0x30 && c <= 0x39;
}

/** The stream error for reads on a stream this side abandoned (abort()). */
function abandoned(): H3Error {
  return new H3Error(H3_REQUEST_CANCELLED, "Request stream abandoned by this side", {
    connection: false,
  });
}

/**
 * The H3Error for a receive stream that the peer reset (RESET_STREAM), or
 * undefined for any other error. Deno reports a reset as a
 * `Deno.errors.ConnectionReset` reading `stream reset by peer: error 270`.
 */
function peerResetError(error: unknown): H3Error | undefined {
  const match = error instanceof Error ? /reset by peer: error (\d+)/.exec(error.message) : null;
  if (match === null) return undefined;
  const code = Number(match[1]);
  return new H3Error(code, `Stream reset by the peer with ${h3ErrorName(code)}`, {
    connection: false,
  });
}
