/**
 * Length-prefixed packet framing on a byte stream, as the project's first
 * prototype sent IP packets over a plain stream before HTTP Datagrams:
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
 * {@linkcode LengthPrefixDecoder.next} until it returns `undefined`. A packet
 * that lies inside one pushed chunk is returned as a view of it (no copy),
 * so callers must not reuse a chunk's memory after pushing it; a packet
 * spanning chunks is copied. A zero length field throws a
 * {@linkcode LengthPrefixError}, and so does every later `next()`.
 * At the end of the stream, `buffered === 0` means it ended between frames.
 */
export class LengthPrefixDecoder {
  #chunks: Uint8Array[] = [];
  #first = 0; // index of the first chunk still in use; avoids O(n) shift()
  #head = 0; // offset into chunks[#first]
  #buffered = 0;
  #error: LengthPrefixError | undefined;

  /** Adds bytes read from the stream. The decoder keeps `chunk` until its packets are returned. */
  push(chunk: Uint8Array): void {
    if (this.#error !== undefined || chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /** Bytes held: a partial frame, or whole frames not yet returned. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Returns the next packet, or `undefined` when more bytes are needed. */
  next(): Uint8Array | undefined {
    if (this.#error !== undefined) throw this.#error;
    if (this.#buffered < LENGTH_PREFIX_SIZE) return undefined;
    const length = (this.#byteAt(0) << 8) | this.#byteAt(1);
    if (length === 0) {
      this.#error = new LengthPrefixError(
        "Cannot decode length-prefixed frame: length 0 (an empty packet or a desynchronized stream)",
      );
      this.#chunks = [];
      this.#first = 0;
      this.#head = 0;
      this.#buffered = 0;
      throw this.#error;
    }
    if (this.#buffered < LENGTH_PREFIX_SIZE + length) return undefined;
    this.#discard(LENGTH_PREFIX_SIZE);
    return this.#take(length);
  }

  #byteAt(index: number): number {
    let i = this.#head + index;
    for (let c = this.#first; c < this.#chunks.length; c++) {
      const chunk = this.#chunks[c];
      if (i < chunk.length) return chunk[i];
      i -= chunk.length;
    }
    return 0; // unreachable: callers check #buffered first
  }

  #discard(count: number): void {
    this.#buffered -= count;
    while (count > 0) {
      const available = this.#chunks[this.#first].length - this.#head;
      if (count < available) {
        this.#head += count;
        return;
      }
      count -= available;
      this.#head = 0;
      if (++this.#first === this.#chunks.length) {
        this.#chunks = [];
        this.#first = 0;
      } else if (this.#first >= 1024) {
        this.#chunks = this.#chunks.slice(this.#first);
        this.#first = 0;
      }
    }
  }

  #take(length: number): Uint8Array {
    const first = this.#chunks[this.#first];
    if (first.length - this.#head >= length) {
      const view = first.subarray(this.#head, this.#head + length);
      this.#discard(length);
      return view;
    }
    const out = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      const chunk = this.#chunks[this.#first];
      const count = Math.min(chunk.length - this.#head, length - filled);
      out.set(chunk.subarray(this.#head, this.#head + count), filled);
      filled += count;
      this.#discard(count);
    }
    return out;
  }
}
