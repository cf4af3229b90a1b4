/**
 * Length-prefixed packet framing on a byte stream, as the project's first
 * prototype sent IP packets over a plain stream before HTTP Datagrams, and
 * as the WebTransport transport sends them on its packet stream
 * (`wt_connect_ip.ts`; the project's own convention, not RFC 9484):
 *
 * ```
 * Frame { Length (16, big-endian, 1..65535), Packet (Length bytes) }
 * ```
 *
 * Zero-length frames are errors: no IP packet is empty, and a zero length
 * almost always means the reader has lost its place in the stream, so the
 * stream is abandoned rather than resynchronized. Errors are
 * {@linkcode LengthPrefixError}s.
 *
 * @module
 */

import { ChunkQueue } from "../chunk_queue.ts";
import type { ByteBudget } from "../h3/byte_budget.ts";

/** The largest packet a frame holds: the 16-bit length field's maximum, in bytes. */
export const MAX_LENGTH_PREFIXED_PACKET = 65535;

/** The size in bytes of the length field in front of each packet. */
export const LENGTH_PREFIX_SIZE = 2;

/** A frame that cannot be written or read. */
export class LengthPrefixError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LengthPrefixError";
  }
}

/**
 * Encodes one frame: a big-endian 16-bit length then a copy of `packet`.
 * Throws a {@linkcode LengthPrefixError} for an empty packet or one longer
 * than {@linkcode MAX_LENGTH_PREFIXED_PACKET} bytes.
 */
export function encodeLengthPrefixed(packet: Uint8Array): Uint8Array {
  if (packet.length === 0) {
    throw new LengthPrefixError("Cannot encode length-prefixed frame: packet is empty");
  }
  if (packet.length > MAX_LENGTH_PREFIXED_PACKET) {
    throw new LengthPrefixError(
      `Cannot encode length-prefixed frame: length ${packet.length} exceeds limit ${MAX_LENGTH_PREFIXED_PACKET}`,
    );
  }
  const out = new Uint8Array(LENGTH_PREFIX_SIZE + packet.length);
  out[0] = packet.length >> 8;
  out[1] = packet.length & 0xff;
  out.set(packet, LENGTH_PREFIX_SIZE);
  return out;
}

/**
 * Splits a byte stream delivered in chunks of any size into packets.
 *
 * Feed bytes with {@linkcode LengthPrefixDecoder.push}, drain with
 * {@linkcode LengthPrefixDecoder.next} (or {@linkcode LengthPrefixDecoder.nextFrame})
 * until it returns `undefined`. A frame that lies inside one pushed chunk
 * is returned as a view of it (no copy), so callers must not reuse a
 * chunk's memory after pushing it. When `next()` returns `undefined` the
 * bytes of a partial frame are copied into storage the decoder owns (see
 * `ChunkQueue.compact`), reserved in `budget` when one is given, so no
 * pushed chunk is kept while the stream waits; the storage is sized to the
 * frame, whose last bytes then land in place. A zero length field throws a
 * {@linkcode LengthPrefixError}, and so does every later call; the budget's
 * error (an `H3Error`, a connection error) is thrown as it is. At the end
 * of the stream, `buffered === 0` means it ended between frames.
 */
export class LengthPrefixDecoder {
  readonly #queue: ChunkQueue;
  #error: Error | undefined;

  /** @param options.budget The connection's budget, in which a partial frame kept between reads is reserved. */
  constructor(options: { budget?: ByteBudget } = {}) {
    this.#queue = new ChunkQueue({
      budget: options.budget,
      what: "a partial length-prefixed packet",
    });
  }

  /** Adds bytes read from the stream; see the class notes on ownership. */
  push(chunk: Uint8Array): void {
    if (this.#error !== undefined) return;
    this.#queue.push(chunk);
  }

  /** Bytes held: a partial frame, or whole frames not yet returned. */
  get buffered(): number {
    return this.#queue.byteLength;
  }

  /** Bytes of storage the decoder owns now (a partial frame kept between reads). */
  get retainedBytes(): number {
    return this.#queue.retainedBytes;
  }

  /** Returns the next packet, or `undefined` when more bytes are needed. */
  next(): Uint8Array | undefined {
    return this.nextFrame()?.subarray(LENGTH_PREFIX_SIZE);
  }

  /**
   * Returns the next whole frame, length field included (a view the caller
   * may write into: the WebTransport channel puts a context id in place of
   * the length's low byte), or `undefined` when more bytes are needed.
   */
  nextFrame(): Uint8Array | undefined {
    if (this.#error !== undefined) throw this.#error;
    try {
      const high = this.#queue.peekByte(0);
      const low = this.#queue.peekByte(1);
      if (high === undefined || low === undefined) {
        this.#queue.compact(LENGTH_PREFIX_SIZE);
        return undefined;
      }
      const length = (high << 8) | low;
      if (length === 0) {
        throw new LengthPrefixError(
          "Cannot decode length-prefixed frame: length 0 (an empty packet or a desynchronized stream)",
        );
      }
      if (this.#queue.byteLength < LENGTH_PREFIX_SIZE + length) {
        this.#queue.compact(LENGTH_PREFIX_SIZE + length);
        return undefined;
      }
      return this.#queue.take(LENGTH_PREFIX_SIZE + length);
    } catch (error) {
      this.#error = error instanceof Error ? error : new LengthPrefixError(String(error));
      this.#queue.clear();
      throw this.#error;
    }
  }

  /** Drops what is buffered and gives its storage back to the budget (the stream is done). */
  clear(): void {
    this.#queue.clear();
  }
}
