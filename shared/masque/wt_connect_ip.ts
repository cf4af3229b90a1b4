/**
 * The WebTransport transport: a CONNECT-IP session's packets and capsules
 * on two bidirectional streams of one WebTransport session. This is the
 * project's own convention on top of WebTransport, not RFC 9484, which
 * defines CONNECT-IP over HTTP only; a peer must run this project to speak
 * it. The client opens, in this order:
 *
 * 1. the packet stream: each IP packet as the first prototype framed it,
 *    a 16-bit big-endian length, then the packet (`length_prefix.ts`);
 * 2. the capsule stream: the capsule protocol (RFC 9297 §3) with RFC 9484's
 *    ADDRESS_ASSIGN, ADDRESS_REQUEST and ROUTE_ADVERTISEMENT, exactly as
 *    on an HTTP request stream. DATAGRAM capsules are accepted there too,
 *    but packets are sent on the packet stream.
 *
 * Two streams keep the packet framing the prototype's and the capsules
 * RFC 9484's, and a packet never waits behind a capsule being written (or
 * the other way round) inside this side's buffers; both still share the
 * WebTransport session's HTTP/2 stream and its TCP connection.
 *
 * {@linkcode WtConnectStream} is the session's `ConnectStream`: the capsule
 * stream is its body, and the packet stream is its `DatagramChannel`, so
 * the session runs in datagram mode and hands each packet to the channel
 * with context id 0 in front (RFC 9484 §6), which the channel replaces by
 * the length. The streams are WHATWG streams, as the WebTransport API has
 * them (`@fails-components/webtransport` on both sides here).
 *
 * What waits to be written on the packet stream is bounded
 * (`maxQueuedBytes`): past it packets are dropped and counted.
 *
 * @module
 */

import type { Counter } from "../counters.ts";
import { errorMessage, H3_EXCESSIVE_LOAD, H3Error } from "../errors.ts";
import type { ByteBudget } from "../h3/byte_budget.ts";
import { CONTEXT_ID_IP_PACKET } from "./http_datagram.ts";
import type { ConnectStream, DatagramChannel, DatagramSendResult } from "./connect_stream.ts";
import {
  LENGTH_PREFIX_SIZE,
  LengthPrefixDecoder,
  MAX_LENGTH_PREFIXED_PACKET,
} from "./length_prefix.ts";

/** A bidirectional WebTransport stream as the WebTransport API has it. */
export interface WtBidiStreamLike {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
}

/** Default {@linkcode WtConnectStreamOptions.maxQueuedBytes}: 512 KiB, as over HTTP/2. */
export const DEFAULT_WT_MAX_QUEUED_BYTES = 512 * 1024;

/**
 * Most bytes of frames joined into one write on the packet stream. Each
 * write is a WT_STREAM capsule and a turn of the package's write path, and
 * the next write waits for it to settle, so packets that arrive meanwhile
 * go out together: 64 KiB, a TSO super-packet, under HTTP/2's default
 * windows so the package need not split (and copy) it.
 */
export const WT_WRITE_BATCH_BYTES = 64 * 1024;

/** Options of {@linkcode WtConnectStream}. */
export interface WtConnectStreamOptions {
  /** The connection's budget for bytes held between reads (partial capsules and packets). */
  readonly budget?: ByteBudget;
  /** Packets are dropped when this many bytes wait on the packet stream. */
  readonly maxQueuedBytes?: number;
  /** Counts packets dropped at the full packet stream. */
  readonly queueFull?: Counter;
  /**
   * Closes the whole WebTransport session (and, for a connection error such
   * as the budget's, its connection); `reason` says why.
   */
  readonly closeSession?: (reason: string) => void;
}

/** The session's capsule stream and packet stream as its `ConnectStream`; see the module docs. */
export class WtConnectStream implements ConnectStream {
  readonly #capsuleReader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #capsuleWriter: WritableStreamDefaultWriter<Uint8Array>;
  readonly #options: WtConnectStreamOptions;
  readonly datagrams: WtPacketChannel;
  /** Why the session cannot go on (a broken packet stream, our abort). */
  #error: Error | undefined;
  #ended = false;
  #writeFailed = false;
  #sessionClosed = false;

  /**
   * @param packets The first stream the client opened (length-prefixed packets).
   * @param capsules The second (the capsule protocol).
   */
  constructor(
    packets: WtBidiStreamLike,
    capsules: WtBidiStreamLike,
    options: WtConnectStreamOptions = {},
  ) {
    this.#options = options;
    this.#capsuleReader = capsules.readable.getReader();
    this.#capsuleWriter = capsules.writable.getWriter();
    this.#capsuleWriter.closed.catch(() => {
      this.#writeFailed = true;
    });
    this.datagrams = new WtPacketChannel(packets, options, (error) => this.#fail(error));
  }

  #fail(error: Error): void {
    if (this.#error !== undefined) return;
    this.#error = error;
    this.#capsuleReader.cancel().catch(() => {});
    this.fail(error);
  }

  async #next(): Promise<IteratorResult<Uint8Array>> {
    if (this.#error !== undefined) throw this.#error;
    let read: ReadableStreamReadResult<Uint8Array>;
    try {
      read = await this.#capsuleReader.read();
    } catch (error) {
      throw this.#error ?? new Error(`Capsule stream failed: ${errorMessage(error)}`);
    }
    if (this.#error !== undefined) throw this.#error;
    if (read.done) return { done: true, value: undefined };
    return { done: false, value: read.value };
  }

  /** Yields the capsule stream's bytes; rejects when either stream fails. */
  readBody(): AsyncIterator<Uint8Array> {
    return { next: () => this.#next() };
  }

  /** Writes capsule bytes on the capsule stream. */
  writeData(bytes: Uint8Array): Promise<void> {
    if (!this.writable) return Promise.reject(new Error("Cannot write: the stream has ended"));
    return this.#capsuleWriter.write(bytes);
  }

  /** Whether writes can still succeed. */
  get writable(): boolean {
    return !this.#ended && !this.#writeFailed && this.#error === undefined;
  }

  /** Ends both streams' sending sides cleanly. */
  async end(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    this.datagrams.end();
    await this.#capsuleWriter.close().catch(() => {});
  }

  /** Abandons both streams: reads stop, the sending sides are aborted. */
  abort(): void {
    if (this.#error === undefined) this.#fail(new Error("Stream abandoned by this side"));
    this.#ended = true;
    this.datagrams.end(true);
    this.#capsuleWriter.abort().catch(() => {});
  }

  /**
   * The budget's H3_EXCESSIVE_LOAD (from the session's capsule parser)
   * closes the WebTransport session; other errors concern the streams only.
   */
  fail(error: unknown): void {
    if (this.#sessionClosed) return;
    if (error instanceof H3Error && error.code === H3_EXCESSIVE_LOAD) {
      this.#sessionClosed = true;
      this.#options.closeSession?.(error.message);
    }
  }

  /** The connection's budget of bytes held between reads. */
  get bufferBudget(): ByteBudget | undefined {
    return this.#options.budget;
  }
}

/**
 * The packet stream as a `DatagramChannel`. The session hands it
 * `prefix (1 byte) | context id 0 | packet`; it writes the 16-bit length
 * over the prefix and the context id in a copy (a stream write keeps its
 * buffer until it settles, and the session's buffer is a TUN slot). On
 * receipt the length's low byte is overwritten with context id 0 in place,
 * and the handler gets `context id | packet`.
 */
export class WtPacketChannel implements DatagramChannel {
  /** The byte in front of the context id that, with it, becomes the length. */
  readonly prefixLength = 1;
  /** A context id and a packet of up to 65535 bytes. */
  readonly maxPayloadSize = 1 + MAX_LENGTH_PREFIXED_PACKET;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #maxQueuedBytes: number;
  readonly #queueFull: Counter | undefined;
  readonly #onError: (error: Error) => void;
  readonly #decoder: LengthPrefixDecoder;
  #handler: ((payload: Uint8Array) => void) | undefined;
  #queuedBytes = 0;
  /** Frames not yet handed to the stream, oldest first, and their bytes. */
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  /** A write is in flight; the next waits for it. */
  #writing = false;
  /** `end()` came while writing: close the stream after the last write. */
  #ending = false;
  #closed = false;
  /** Packets dropped because {@linkcode WtConnectStreamOptions.maxQueuedBytes} were waiting. */
  dropped = 0;

  constructor(
    stream: WtBidiStreamLike,
    options: WtConnectStreamOptions,
    onError: (error: Error) => void,
  ) {
    this.#writer = stream.writable.getWriter();
    this.#writer.closed.catch(() => {
      this.#closed = true;
    });
    this.#reader = stream.readable.getReader();
    this.#maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_WT_MAX_QUEUED_BYTES;
    this.#queueFull = options.queueFull;
    this.#onError = onError;
    this.#decoder = new LengthPrefixDecoder({ budget: options.budget });
    this.#readLoop();
  }

  /** Bytes handed to the packet stream, or waiting to be, whose write has not settled. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  send(buffer: Uint8Array): DatagramSendResult {
    if (this.#closed) return "closed";
    const length = buffer.length - this.prefixLength - 1;
    if (length <= 0 || length > MAX_LENGTH_PREFIXED_PACKET) return "too_big";
    if (buffer[this.prefixLength] !== CONTEXT_ID_IP_PACKET) return "sent"; // only IP packets travel here
    const frame = new Uint8Array(LENGTH_PREFIX_SIZE + length);
    if (this.#queuedBytes + frame.length > this.#maxQueuedBytes) {
      this.dropped++;
      if (this.#queueFull) this.#queueFull.value++;
      return "sent";
    }
    frame[0] = length >> 8;
    frame[1] = length & 0xff;
    frame.set(buffer.subarray(this.prefixLength + 1), LENGTH_PREFIX_SIZE);
    this.#queuedBytes += frame.length;
    this.#pending.push(frame);
    this.#pendingBytes += frame.length;
    if (!this.#writing) this.#flush();
    return "sent";
  }

  /**
   * Writes what waits, up to {@linkcode WT_WRITE_BATCH_BYTES} in one chunk
   * (the frames are a byte stream, so several make one write), and again
   * when that write settles: one write at a time, as the stream takes them.
   */
  #flush(): void {
    if (this.#pending.length === 0) {
      this.#writing = false;
      if (this.#ending) this.#writer.close().catch(() => {});
      return;
    }
    let count = 0;
    let size = 0;
    while (
      count < this.#pending.length &&
      (count === 0 || size + this.#pending[count].length <= WT_WRITE_BATCH_BYTES)
    ) {
      size += this.#pending[count++].length;
    }
    let chunk: Uint8Array;
    if (count === 1) chunk = this.#pending[0];
    else {
      chunk = new Uint8Array(size);
      let offset = 0;
      for (let i = 0; i < count; i++) {
        chunk.set(this.#pending[i], offset);
        offset += this.#pending[i].length;
      }
    }
    this.#pending.splice(0, count);
    this.#pendingBytes -= size;
    this.#writing = true;
    this.#writer.write(chunk).then(
      () => {
        this.#queuedBytes -= size;
        this.#flush();
      },
      () => {
        this.#queuedBytes -= size + this.#pendingBytes;
        this.#pending = [];
        this.#pendingBytes = 0;
        this.#writing = false;
        this.#closed = true;
      },
    );
  }

  onDatagram(handler: (payload: Uint8Array) => void): void {
    this.#handler = handler;
  }

  /** Ends the sending side; `abort` aborts it and stops reading. */
  end(abort = false): void {
    if (this.#closed && !abort) return;
    this.#closed = true;
    if (abort) {
      this.#queuedBytes -= this.#pendingBytes;
      this.#pending = [];
      this.#pendingBytes = 0;
      this.#writer.abort().catch(() => {});
      this.#reader.cancel().catch(() => {});
    } else if (this.#writing) {
      this.#ending = true; // closed once what waits is written
    } else {
      this.#writer.close().catch(() => {});
    }
  }

  async #readLoop(): Promise<void> {
    try {
      for (;;) {
        // A synchronous step per read: no chunk stays alive across the await.
        if (!this.#receive(await this.#reader.read())) break;
      }
      if (this.#decoder.buffered > 0) {
        throw new Error(
          `Cannot decode length-prefixed frame: the packet stream ended inside a frame (${this.#decoder.buffered} bytes)`,
        );
      }
    } catch (error) {
      this.#onError(error instanceof Error ? error : new Error(String(error)));
    } finally {
      this.#decoder.clear();
    }
  }

  #receive(read: ReadableStreamReadResult<Uint8Array>): boolean {
    if (read.done) return false;
    this.#decoder.push(read.value);
    let frame: Uint8Array | undefined;
    while ((frame = this.#decoder.nextFrame()) !== undefined) {
      frame[1] = CONTEXT_ID_IP_PACKET;
      this.#handler?.(frame.subarray(1));
    }
    return true;
  }
}
