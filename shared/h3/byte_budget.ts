/**
 * A budget of bytes that one peer may make this side buffer: the partial
 * frames, partial capsules and partial stream headers held across reads on
 * all the streams of one HTTP/3 connection.
 *
 * Every parser that keeps bytes between reads (`FrameReader`, `CapsuleParser`
 * through `ChunkQueue`, the unidirectional stream type) reserves what it
 * keeps here and releases it when the bytes are consumed or the stream ends.
 * A reservation past the limit is a connection error of type
 * H3_EXCESSIVE_LOAD (RFC 9114 §8.1: "a behavior that might be generating
 * excessive load"), thrown as an {@linkcode H3Error}.
 *
 * @module
 */

import { H3_EXCESSIVE_LOAD, H3Error } from "../errors.ts";

/**
 * Default limit of a connection's {@linkcode ByteBudget}, bytes. What a
 * well-behaved peer makes us hold is one partial capsule per session
 * (normally at most one packet) and, briefly, a partial HEADERS frame
 * (at most 16 KiB, `DEFAULT_MAX_FRAME_PAYLOAD`): 256 KiB holds three
 * partial capsules of the largest size (64 KiB) and a partial HEADERS on
 * top, and bounds what each connection can pin.
 */
export const DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024;

/** Counts bytes held for one connection against a limit; see the module docs. */
export class ByteBudget {
  readonly #limit: number;
  readonly #onExceeded: ((error: H3Error) => void) | undefined;
  #used = 0;
  #peak = 0;

  /**
   * @param limit Most bytes that may be reserved at once.
   * @param options.onExceeded Called with the error before a reservation
   *   past the limit throws it (for counting and logging).
   */
  constructor(limit: number, options: { onExceeded?: (error: H3Error) => void } = {}) {
    if (!Number.isSafeInteger(limit) || limit < 0) {
      throw new RangeError(`Cannot create ByteBudget: limit ${limit} is not a byte count`);
    }
    this.#limit = limit;
    this.#onExceeded = options.onExceeded;
  }

  /** The limit, bytes. */
  get limit(): number {
    return this.#limit;
  }

  /** Bytes reserved now. */
  get used(): number {
    return this.#used;
  }

  /** The most bytes reserved at any one time. */
  get peak(): number {
    return this.#peak;
  }

  /**
   * Reserves `bytes` for `what` (a phrase such as "a partial HEADERS frame"
   * for the message). Throws an {@linkcode H3Error} H3_EXCESSIVE_LOAD, a
   * connection error, and reserves nothing when the limit would be passed.
   */
  reserve(bytes: number, what: string): void {
    if (bytes <= 0) return;
    if (this.#used + bytes > this.#limit) {
      const error = new H3Error(
        H3_EXCESSIVE_LOAD,
        `Cannot buffer ${bytes} more bytes for ${what}: ${this.#used} of ${this.#limit} bytes already buffered on this connection`,
      );
      this.#onExceeded?.(error);
      throw error;
    }
    this.#used += bytes;
    if (this.#used > this.#peak) this.#peak = this.#used;
  }

  /** Gives back `bytes` reserved earlier. */
  release(bytes: number): void {
    if (bytes <= 0) return;
    this.#used = Math.max(0, this.#used - bytes);
  }
}
