/**
 * Reads a QUIC receive stream into buffers sized to what the stream
 * delivers, so that an idle stream does not hold a large buffer.
 *
 * A default reader on a `Deno.QuicReceiveStream` allocates a fresh 64 KiB
 * buffer for every read, before any byte has arrived: each stream waiting
 * for its next byte holds 64 KiB, and a peer that opens streams and sends
 * one byte on each makes us hold 64 KiB per byte it sent. Reading with a
 * BYOB reader lets us choose the size: {@linkcode StreamReader} starts at
 * {@linkcode MIN_READ_BUFFER}, doubles the buffer after a read that filled
 * it (bulk transfer: up to {@linkcode MAX_READ_BUFFER}) and halves it after
 * {@linkcode SHRINK_AFTER} reads in a row that each used a quarter of it or
 * less (so a lull in a bulk transfer does not make it oscillate). A peer
 * that trickles bytes never fills a buffer, so it never grows. Each read still gets a buffer
 * of its own, so the bytes returned are never overwritten and may be kept
 * as views (zero-copy).
 *
 * Streams that are not byte streams (the in-memory fakes of the tests) are
 * read with a default reader.
 *
 * @module
 */

/** Smallest read buffer, bytes: holds a request's HEADERS frame or a full-size packet. */
export const MIN_READ_BUFFER = 2048;

/** Largest read buffer, bytes: what Deno's default reader uses for every read. */
export const MAX_READ_BUFFER = 65536;

/** Small reads in a row after which the buffer is halved. */
export const SHRINK_AFTER = 8;

/** Reads one stream; see the module docs. */
export class StreamReader {
  readonly #byob: ReadableStreamBYOBReader | undefined;
  readonly #default: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #size = MIN_READ_BUFFER;
  /** Reads in a row that used a quarter of the buffer or less. */
  #smallReads = 0;

  /** Locks `stream` for reading. */
  constructor(stream: ReadableStream<Uint8Array>) {
    let byob: ReadableStreamBYOBReader | undefined;
    try {
      byob = stream.getReader({ mode: "byob" });
    } catch {
      // not a byte stream
    }
    this.#byob = byob;
    this.#default = byob === undefined ? stream.getReader() : undefined;
  }

  /** The size of the next read's buffer, bytes (0 when reading with a default reader). */
  get bufferSize(): number {
    return this.#byob === undefined ? 0 : this.#size;
  }

  /**
   * Reads the next bytes: `{ done: false, value }` with at least one byte,
   * or `{ done: true }` at the end of the stream. Rejects as the stream's
   * reader does (a reset stream, a closed connection).
   */
  read(): Promise<ReadableStreamReadResult<Uint8Array>> {
    if (this.#byob === undefined) return this.#default!.read();
    return this.#byob.read(new Uint8Array(this.#size)).then(this.#adapt);
  }

  readonly #adapt = (
    result: ReadableStreamReadResult<Uint8Array>,
  ): ReadableStreamReadResult<Uint8Array> => {
    if (result.done) return { done: true, value: undefined };
    const length = result.value.length;
    if (length === this.#size) {
      if (this.#size < MAX_READ_BUFFER) this.#size *= 2;
      this.#smallReads = 0;
    } else if (length > this.#size / 4) {
      this.#smallReads = 0;
    } else if (++this.#smallReads >= SHRINK_AFTER && this.#size > MIN_READ_BUFFER) {
      this.#size /= 2;
      this.#smallReads = 0;
    }
    return result;
  };

  /** Stops reading (STOP_SENDING on a QUIC stream); never rejects. */
  cancel(): Promise<void> {
    const reader = this.#byob ?? this.#default!;
    return reader.cancel().catch(() => {});
  }
}
