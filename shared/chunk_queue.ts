/**
 * A queue of bytes received from a stream in chunks of any size, read
 * across chunk boundaries without first concatenating the chunks. The
 * streaming parsers of capsules (RFC 9297 §3.2) and of length-prefixed
 * packets keep their unread bytes in one.
 *
 * @module
 */

const EMPTY = new Uint8Array(0);

/** How many used-up chunk slots may pile up before the list is compacted. */
const COMPACT_AFTER = 1024;

/**
 * Holds pushed chunks until their bytes are consumed.
 *
 * Every read checks {@linkcode ChunkQueue.byteLength} itself: asking for more
 * bytes than are queued returns `undefined` (or `false`) and consumes
 * nothing, so a parser can treat it as "wait for more bytes".
 *
 * Buffer ownership: the queue keeps each pushed chunk, without copying, until
 * its last byte is consumed, and {@linkcode ChunkQueue.take} returns a view
 * into a chunk when the bytes lie in one, so callers must not reuse a chunk's
 * memory after pushing it.
 */
export class ChunkQueue {
  #chunks: Uint8Array[] = [];
  #first = 0; // index of the first chunk still in use; avoids O(n) shift()
  #head = 0; // offset into chunks[#first]
  #byteLength = 0;

  /** Appends `chunk` (kept, not copied). An empty chunk is ignored. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#byteLength += chunk.length;
  }

  /** Bytes queued and not yet consumed. */
  get byteLength(): number {
    return this.#byteLength;
  }

  /**
   * Returns the byte `index` bytes past the first unconsumed one without
   * consuming anything, or `undefined` when fewer than `index + 1` bytes are
   * queued.
   */
  peekByte(index: number): number | undefined {
    if (index < 0 || index >= this.#byteLength) return undefined;
    let i = this.#head + index;
    for (let c = this.#first; c < this.#chunks.length; c++) {
      const chunk = this.#chunks[c];
      if (i < chunk.length) return chunk[i];
      i -= chunk.length;
    }
    return undefined; // unreachable: index < #byteLength
  }

  /**
   * Consumes `count` bytes and returns `true`, or returns `false` and
   * consumes nothing when fewer than `count` bytes are queued. A negative
   * `count` throws a `RangeError`.
   */
  discard(count: number): boolean {
    if (count < 0) throw new RangeError(`Cannot discard ${count} bytes: count is negative`);
    if (count > this.#byteLength) return false;
    this.#byteLength -= count;
    while (count > 0) {
      const available = this.#chunks[this.#first].length - this.#head;
      if (count < available) {
        this.#head += count;
        return true;
      }
      count -= available;
      this.#head = 0;
      if (++this.#first === this.#chunks.length) {
        this.#chunks = [];
        this.#first = 0;
      } else if (this.#first >= COMPACT_AFTER) {
        this.#chunks = this.#chunks.slice(this.#first);
        this.#first = 0;
      }
    }
    return true;
  }

  /**
   * Consumes and returns the next `length` bytes: a view into a pushed chunk
   * when they lie in one, otherwise a new copy; a shared empty array for
   * `length` 0. Returns `undefined` and consumes nothing when fewer than
   * `length` bytes are queued. A negative `length` throws a `RangeError`.
   */
  take(length: number): Uint8Array | undefined {
    if (length < 0) throw new RangeError(`Cannot take ${length} bytes: length is negative`);
    if (length > this.#byteLength) return undefined;
    if (length === 0) return EMPTY;
    const first = this.#chunks[this.#first];
    if (first.length - this.#head >= length) {
      const view = first.subarray(this.#head, this.#head + length);
      this.discard(length);
      return view;
    }
    const out = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      const chunk = this.#chunks[this.#first];
      const count = Math.min(chunk.length - this.#head, length - filled);
      out.set(chunk.subarray(this.#head, this.#head + count), filled);
      filled += count;
      this.discard(count);
    }
    return out;
  }

  /** Drops every queued byte and releases the chunks. */
  clear(): void {
    this.#chunks = [];
    this.#first = 0;
    this.#head = 0;
    this.#byteLength = 0;
  }
}
