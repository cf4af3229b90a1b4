/**
 * A queue of bytes received from a stream in chunks of any size, read
 * across chunk boundaries without first concatenating the chunks. The
 * streaming frame and capsule parsers keep their unread
 * bytes in one.
 *
 * @module
 */

import type { ByteBudget } from "./h3/byte_budget.ts";

const EMPTY = new Uint8Array(0);

/** How many used-up chunk slots may pile up before the list is compacted. */
const COMPACT_AFTER = 1024;

/** Smallest storage {@linkcode ChunkQueue.compact} allocates beyond what it holds, bytes. */
const MIN_GROWTH = 64;

/**
 * Holds pushed chunks until their bytes are consumed.
 *
 * Every read checks {@linkcode ChunkQueue.byteLength} itself: asking for more
 * bytes than are queued returns `undefined` (or `false`) and consumes
 * nothing, so a parser can treat it as "wait for more bytes".
 *
 * Buffer ownership: a pushed chunk is kept as it is (a view, no copy) until
 * {@linkcode ChunkQueue.compact}, which copies the unconsumed bytes of every
 * pushed chunk into storage the queue owns. A parser calls `compact()`
 * before it waits for more bytes, so that a chunk that is a view into a
 * large read buffer (Deno's QUIC streams return views into a fresh 64 KiB
 * buffer per read) is not pinned by the few bytes it still has to offer.
 * {@linkcode ChunkQueue.take} returns a view into a pushed chunk or into
 * that storage when the bytes lie in one, so callers must not reuse a
 * chunk's memory after pushing it. The storage is never written again
 * where it has handed out bytes, so returned views stay valid.
 *
 * With a {@linkcode ByteBudget}, the storage (its whole size) is reserved in
 * the budget while it exists; `compact()` throws the budget's
 * {@linkcode H3Error} when it would pass the limit.
 */
export class ChunkQueue {
  readonly #budget: ByteBudget | undefined;
  readonly #what: string;
  /** Owned storage; its unconsumed bytes `#store[#storeStart..#storeEnd)` come first. */
  #store: Uint8Array | undefined;
  #storeStart = 0;
  #storeEnd = 0;
  /** Chunks pushed since the last compact(), after the stored bytes. */
  #chunks: Uint8Array[] = [];
  #first = 0; // index of the first chunk still in use; avoids O(n) shift()
  #head = 0; // offset into chunks[#first]
  #byteLength = 0;

  /**
   * @param options.budget Where the owned storage is reserved (see the class notes).
   * @param options.what What the bytes are, for the budget's error message.
   */
  constructor(options: { budget?: ByteBudget; what?: string } = {}) {
    this.#budget = options.budget;
    this.#what = options.what ?? "buffered bytes";
  }

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

  /** Size of the storage the queue owns now (reserved in the budget), bytes. */
  get retainedBytes(): number {
    return this.#store?.length ?? 0;
  }

  /**
   * Returns the byte `index` bytes past the first unconsumed one without
   * consuming anything, or `undefined` when fewer than `index + 1` bytes are
   * queued.
   */
  peekByte(index: number): number | undefined {
    if (index < 0 || index >= this.#byteLength) return undefined;
    const stored = this.#storeEnd - this.#storeStart;
    if (index < stored) return this.#store![this.#storeStart + index];
    let i = this.#head + index - stored;
    for (let c = this.#first; c < this.#chunks.length; c++) {
      const chunk = this.#chunks[c];
      if (i < chunk.length) return chunk[i];
      i -= chunk.length;
    }
    return undefined; // unreachable: index < #byteLength
  }

  /**
   * Copies up to `out.length` queued bytes into `out` without consuming
   * them and returns how many it copied.
   */
  peekInto(out: Uint8Array): number {
    let copied = 0;
    if (this.#store !== undefined) {
      const n = Math.min(out.length, this.#storeEnd - this.#storeStart);
      out.set(this.#store.subarray(this.#storeStart, this.#storeStart + n), 0);
      copied = n;
    }
    let offset = this.#head;
    for (let c = this.#first; c < this.#chunks.length && copied < out.length; c++) {
      const chunk = this.#chunks[c];
      const n = Math.min(out.length - copied, chunk.length - offset);
      out.set(chunk.subarray(offset, offset + n), copied);
      copied += n;
      offset = 0;
    }
    return copied;
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
    if (this.#store !== undefined) {
      const n = Math.min(count, this.#storeEnd - this.#storeStart);
      this.#storeStart += n;
      count -= n;
      if (this.#storeStart === this.#storeEnd) this.#dropStore();
    }
    while (count > 0) {
      const available = this.#chunks[this.#first].length - this.#head;
      if (count < available) {
        this.#head += count;
        return true;
      }
      count -= available;
      this.#nextChunk();
    }
    return true;
  }

  /**
   * Consumes and returns the next `length` bytes: a view into a pushed chunk
   * or into the queue's storage when they lie in one, otherwise a new copy;
   * a shared empty array for `length` 0. Returns `undefined` and consumes
   * nothing when fewer than `length` bytes are queued. A negative `length`
   * throws a `RangeError`.
   */
  take(length: number): Uint8Array | undefined {
    if (length < 0) throw new RangeError(`Cannot take ${length} bytes: length is negative`);
    if (length > this.#byteLength) return undefined;
    if (length === 0) return EMPTY;
    const stored = this.#storeEnd - this.#storeStart;
    if (
      stored >= length || (stored === 0 && this.#chunks[this.#first].length - this.#head >= length)
    ) {
      return this.#takeUpTo(length);
    }
    const out = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      const piece = this.#takeUpTo(length - filled);
      out.set(piece, filled);
      filled += piece.length;
    }
    return out;
  }

  /**
   * Consumes and returns between 1 and `max` (> 0) bytes without copying:
   * what the oldest piece (the storage, else the oldest pushed chunk) holds,
   * up to `max`. Returns `undefined` when the queue is empty.
   */
  takeUpTo(max: number): Uint8Array | undefined {
    if (this.#byteLength === 0 || max <= 0) return undefined;
    return this.#takeUpTo(max);
  }

  /** takeUpTo() once the caller has checked that bytes are queued and `max` > 0. */
  #takeUpTo(max: number): Uint8Array {
    if (this.#store !== undefined) {
      const n = Math.min(max, this.#storeEnd - this.#storeStart);
      const out = this.#store.subarray(this.#storeStart, this.#storeStart + n);
      this.#storeStart += n;
      this.#byteLength -= n;
      if (this.#storeStart === this.#storeEnd) this.#dropStore();
      return out;
    }
    const chunk = this.#chunks[this.#first];
    const left = chunk.length - this.#head;
    if (max < left) {
      const out = chunk.subarray(this.#head, this.#head + max);
      this.#head += max;
      this.#byteLength -= max;
      return out;
    }
    const out = this.#head === 0 ? chunk : chunk.subarray(this.#head);
    this.#byteLength -= left;
    this.#nextChunk();
    return out;
  }

  /**
   * Copies the unconsumed bytes of every pushed chunk into storage the queue
   * owns, so that no pushed chunk is referenced any more (see the class
   * notes). The storage grows by doubling, so bytes trickling in are copied
   * a bounded number of times each. `want`, when known, is how many bytes
   * the caller expects to hold in all before it can go on (for example the
   * rest of a frame it has begun): the storage never grows past it, so the
   * bytes that complete the frame are appended in place and the frame can be
   * taken as a view, without a second copy. Near the budget's limit it
   * allocates only what it holds. Throws the budget's
   * {@linkcode H3Error} when the budget cannot hold the new storage; the
   * queue is then unchanged.
   */
  compact(want = Infinity): void {
    const stored = this.#storeEnd - this.#storeStart;
    const pushed = this.#byteLength - stored;
    if (pushed === 0) return;
    let store = this.#store;
    if (store === undefined || store.length - this.#storeEnd < pushed) {
      const held = this.#byteLength;
      const old = store?.length ?? 0;
      let size = Math.max(held, Math.min(want, 2 * held + MIN_GROWTH));
      // Near the limit, room to grow is not worth failing for: take what is held.
      const budget = this.#budget;
      if (budget !== undefined && budget.used + size - old > budget.limit) size = held;
      this.#budget?.reserve(size - old, this.#what);
      if (size < old) this.#budget?.release(old - size);
      const next = new Uint8Array(size);
      if (store !== undefined) next.set(store.subarray(this.#storeStart, this.#storeEnd), 0);
      store = next;
      this.#store = next;
      this.#storeStart = 0;
      this.#storeEnd = stored;
    }
    let at = this.#storeEnd;
    for (let c = this.#first; c < this.#chunks.length; c++) {
      const chunk = this.#chunks[c];
      const piece = c === this.#first && this.#head > 0 ? chunk.subarray(this.#head) : chunk;
      store.set(piece, at);
      at += piece.length;
    }
    this.#storeEnd = at;
    this.#chunks = [];
    this.#first = 0;
    this.#head = 0;
  }

  /** Drops every queued byte, releases the chunks and gives back the storage. */
  clear(): void {
    this.#dropStore();
    this.#chunks = [];
    this.#first = 0;
    this.#head = 0;
    this.#byteLength = 0;
  }

  #dropStore(): void {
    if (this.#store === undefined) return;
    this.#budget?.release(this.#store.length);
    this.#store = undefined;
    this.#storeStart = 0;
    this.#storeEnd = 0;
  }

  #nextChunk(): void {
    this.#head = 0;
    if (++this.#first === this.#chunks.length) {
      this.#chunks = [];
      this.#first = 0;
    } else if (this.#first >= COMPACT_AFTER) {
      this.#chunks = this.#chunks.slice(this.#first);
      this.#first = 0;
    }
  }
}
