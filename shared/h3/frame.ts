/**
 * HTTP/3 frame layer (RFC 9114 §7): frame types, encoders, and a streaming
 * {@linkcode FrameReader} for control and request streams.
 *
 * Every frame is `Type (i) | Length (i) | Frame Payload (..)` with QUIC
 * varints (RFC 9114 §7.1). DATA payloads are streamed as they arrive; the
 * other known frames are buffered whole up to a limit; reserved and unknown
 * frame types are skipped (RFC 9114 §9).
 *
 * @module
 */

import { ChunkQueue } from "../chunk_queue.ts";
import { H3_EXCESSIVE_LOAD, H3_FRAME_ERROR, H3_FRAME_UNEXPECTED, H3Error } from "../errors.ts";
import type { ByteBudget } from "./byte_budget.ts";
import {
  decodeVarint,
  encodeVarint,
  encodeVarintInto,
  varintSize,
  varintSizeFromFirstByte,
} from "./varint.ts";

/** DATA frame type (RFC 9114 §7.2.1). */
export const FRAME_DATA = 0x00;
/** HEADERS frame type (RFC 9114 §7.2.2). */
export const FRAME_HEADERS = 0x01;
/** CANCEL_PUSH frame type (RFC 9114 §7.2.3). */
export const FRAME_CANCEL_PUSH = 0x03;
/** SETTINGS frame type (RFC 9114 §7.2.4). */
export const FRAME_SETTINGS = 0x04;
/** PUSH_PROMISE frame type (RFC 9114 §7.2.5). */
export const FRAME_PUSH_PROMISE = 0x05;
/** GOAWAY frame type (RFC 9114 §7.2.6). */
export const FRAME_GOAWAY = 0x07;
/** MAX_PUSH_ID frame type (RFC 9114 §7.2.7). */
export const FRAME_MAX_PUSH_ID = 0x0d;

/**
 * Default limit in bytes on the payload of a buffered (non-DATA) frame that
 * {@linkcode FrameReader} accepts. DATA frames are streamed and not limited.
 */
export const DEFAULT_MAX_FRAME_PAYLOAD = 16384;

const FRAME_NAMES: ReadonlyMap<number, string> = new Map([
  [FRAME_DATA, "DATA"],
  [FRAME_HEADERS, "HEADERS"],
  [FRAME_CANCEL_PUSH, "CANCEL_PUSH"],
  [FRAME_SETTINGS, "SETTINGS"],
  [FRAME_PUSH_PROMISE, "PUSH_PROMISE"],
  [FRAME_GOAWAY, "GOAWAY"],
  [FRAME_MAX_PUSH_ID, "MAX_PUSH_ID"],
]);

/**
 * HTTP/2 frame types with no HTTP/3 counterpart; receiving one is a
 * connection error of type H3_FRAME_UNEXPECTED (RFC 9114 §7.2.8, §11.2.1).
 */
const HTTP2_ONLY_FRAMES: ReadonlyMap<number, string> = new Map([
  [0x02, "PRIORITY"],
  [0x06, "PING"],
  [0x08, "WINDOW_UPDATE"],
  [0x09, "CONTINUATION"],
]);

/** Longest frame header: two 8-byte varints. */
const MAX_FRAME_HEADER_SIZE = 16;

function hex(value: number): string {
  return `0x${value.toString(16).padStart(2, "0")}`;
}

/**
 * A name for `type` in messages: `"HEADERS"` for the frame types of RFC 9114
 * §7.2, otherwise the type in hex such as `"0x2a"`.
 */
export function frameTypeName(type: number): string {
  return FRAME_NAMES.get(type) ?? hex(type);
}

/**
 * Encodes the frame header `Type (i) | Length (i)` (RFC 9114 §7.1) into a new
 * array. `payloadLength` is in bytes. Throws a `VarintError` when either value
 * is not an integer in 0..2^53-1.
 */
export function encodeFrameHeader(type: number, payloadLength: number): Uint8Array {
  const out = new Uint8Array(varintSize(type) + varintSize(payloadLength));
  encodeVarintInto(out, encodeVarintInto(out, 0, type), payloadLength);
  return out;
}

/**
 * Encodes a whole frame (RFC 9114 §7.1): header followed by a copy of
 * `payload`, in one new array that the caller owns.
 */
export function encodeFrame(type: number, payload: Uint8Array): Uint8Array {
  const headerSize = varintSize(type) + varintSize(payload.length);
  const out = new Uint8Array(headerSize + payload.length);
  encodeVarintInto(out, encodeVarintInto(out, 0, type), payload.length);
  out.set(payload, headerSize);
  return out;
}

/**
 * Encodes a whole GOAWAY frame (RFC 9114 §7.2.6) carrying `id`: the last
 * client-initiated bidirectional stream ID a server may process, or the last
 * push ID a client may accept.
 */
export function encodeGoawayFrame(id: number): Uint8Array {
  return encodeFrame(FRAME_GOAWAY, encodeVarint(id));
}

/**
 * Parses a GOAWAY payload (RFC 9114 §7.2.6), which is exactly one varint: a
 * stream ID or push ID. Anything else is a connection error of type
 * H3_FRAME_ERROR (RFC 9114 §7.1), thrown as an {@linkcode H3Error}. IDs above
 * 2^53 lose precision.
 */
export function parseGoawayPayload(payload: Uint8Array): number {
  if (payload.length === 0) {
    throw new H3Error(H3_FRAME_ERROR, "Cannot parse GOAWAY: payload is empty");
  }
  const size = varintSizeFromFirstByte(payload[0]);
  if (size > payload.length) {
    throw new H3Error(
      H3_FRAME_ERROR,
      `Cannot parse GOAWAY: ID needs ${size} bytes, payload has ${payload.length}`,
    );
  }
  if (size < payload.length) {
    throw new H3Error(
      H3_FRAME_ERROR,
      `Cannot parse GOAWAY: ${payload.length - size} trailing bytes after the ID`,
    );
  }
  return decodeVarint(payload, 0);
}

/**
 * What {@linkcode FrameReader.next} produces.
 *
 * - `frame`: a whole HEADERS, SETTINGS, GOAWAY, CANCEL_PUSH, PUSH_PROMISE or
 *   MAX_PUSH_ID frame. Which frames are allowed on which stream is the
 *   caller's decision (RFC 9114 §7.2).
 * - `data`: the next non-empty piece of a DATA frame's payload (RFC 9114
 *   §7.2.1), in stream order. Frame boundaries between DATA frames are not
 *   reported; HTTP/3 gives them no meaning.
 *
 * Payloads and chunks may be views into arrays passed to
 * {@linkcode FrameReader.push}.
 */
export type FrameEvent =
  | { readonly kind: "frame"; readonly type: number; readonly payload: Uint8Array }
  | { readonly kind: "data"; readonly chunk: Uint8Array };

// Reader phases: which part of the stream the next bytes belong to.
/** Between frames: the next bytes are a frame header. */
const PHASE_HEADER = 0;
/** Inside a DATA payload: bytes are handed out as they arrive. */
const PHASE_DATA = 1;
/** Inside a reserved or unknown frame's payload: bytes are dropped. */
const PHASE_SKIP = 2;
/** Waiting for the whole payload of a buffered frame type. */
const PHASE_BUFFER = 3;
type Phase = typeof PHASE_HEADER | typeof PHASE_DATA | typeof PHASE_SKIP | typeof PHASE_BUFFER;

/**
 * Splits a stream's bytes, pushed in arbitrary chunks, into HTTP/3 frames
 * (RFC 9114 §7.1).
 *
 * - DATA payloads are handed out as they arrive, as `data` events, without
 *   being buffered whole; when a piece lies inside one pushed array it is a
 *   zero-copy `subarray` of it.
 * - HEADERS, SETTINGS, GOAWAY, CANCEL_PUSH, PUSH_PROMISE and MAX_PUSH_ID are
 *   buffered and handed out whole as `frame` events. A payload longer than
 *   `maxFramePayload` is a connection error of type H3_EXCESSIVE_LOAD, raised
 *   as soon as its header is read.
 * - The HTTP/2-only types 0x02, 0x06, 0x08 and 0x09 are a connection error of
 *   type H3_FRAME_UNEXPECTED (RFC 9114 §7.2.8).
 * - Every other type, reserved (GREASE) or unknown, is skipped whatever its
 *   length, without buffering (RFC 9114 §9).
 *
 * Errors are thrown from {@linkcode FrameReader.next} as {@linkcode H3Error};
 * after one, every later call throws the same error. At the end of the stream
 * the caller checks {@linkcode FrameReader.atFrameBoundary}: ending inside a
 * frame is a connection error of type H3_FRAME_ERROR (RFC 9114 §7.1).
 *
 * Ownership: returned payloads and chunks may be views into pushed arrays,
 * so callers must not reuse an array after pushing it. The reader itself
 * keeps no pushed array once `next()` has returned `undefined` (it needs
 * more bytes) or a `frame` event: it copies the bytes it still holds (a
 * partial frame, or what follows the frame) into storage of its own, sized
 * to what they are and reserved in `budget` when one is given. Only between
 * `data` events does it still refer to the array they come from. So a view
 * into a large read buffer is never pinned while the stream waits for its
 * next read, and DATA stays zero-copy when whole frames arrive together.
 *
 * Lengths above 2^53 are read approximately; such a DATA or skipped frame
 * would take petabytes to finish, and a buffered one exceeds any limit.
 *
 * Rules about which frame may come first (RFC 9114 §4.1, §6.2.1) also count
 * frames that give no event (an empty DATA frame, a reserved one): the
 * `onFrameStart` option sees the type of every frame header as it is read,
 * and an {@linkcode H3Error} it throws is thrown from `next()`.
 */
export class FrameReader {
  readonly #maxFramePayload: number;
  readonly #onFrameStart: ((type: number) => void) | undefined;
  readonly #queue: ChunkQueue;
  #phase: Phase = PHASE_HEADER;
  /** Type of the frame being read (Data, Skip, Buffer phases). */
  #type = 0;
  /** Payload bytes of the current frame not yet consumed. */
  #remaining = 0;
  #error: H3Error | undefined;
  readonly #scratch = new Uint8Array(MAX_FRAME_HEADER_SIZE);

  /**
   * @param options.maxFramePayload Largest payload in bytes accepted for a
   *   buffered (non-DATA) frame; defaults to
   *   {@linkcode DEFAULT_MAX_FRAME_PAYLOAD}.
   * @param options.onFrameStart Called with the type of each frame header as
   *   it is read, before the frame's payload; see the class notes.
   * @param options.budget The connection's budget, in which the bytes kept
   *   between reads are reserved; past it `next()` throws H3_EXCESSIVE_LOAD.
   */
  constructor(
    options: {
      maxFramePayload?: number;
      onFrameStart?: (type: number) => void;
      budget?: ByteBudget;
    } = {},
  ) {
    const max = options.maxFramePayload ?? DEFAULT_MAX_FRAME_PAYLOAD;
    if (!Number.isSafeInteger(max) || max < 0) {
      throw new RangeError(`Cannot create FrameReader: maxFramePayload ${max} is not a byte count`);
    }
    this.#maxFramePayload = max;
    this.#onFrameStart = options.onFrameStart;
    this.#queue = new ChunkQueue({ budget: options.budget, what: "a partial HTTP/3 frame" });
  }

  /** Appends bytes read from the stream; see the class notes on ownership. */
  push(chunk: Uint8Array): void {
    this.#queue.push(chunk);
  }

  /**
   * True when no partial frame is pending: nothing is buffered and no frame
   * has been started but not finished. Meaningful after
   * {@linkcode FrameReader.next} has returned `undefined`.
   */
  get atFrameBoundary(): boolean {
    return this.#phase === PHASE_HEADER && this.#queue.byteLength === 0;
  }

  /** Bytes of storage the reader owns now (a partial frame kept between reads). */
  get retainedBytes(): number {
    return this.#queue.retainedBytes;
  }

  /**
   * Returns the next event, or `undefined` when more bytes are needed.
   * Throws an {@linkcode H3Error} on a connection error (see the class notes).
   */
  next(): FrameEvent | undefined {
    if (this.#error) throw this.#error;
    try {
      const event = this.#next();
      if (event === undefined || event.kind === "frame") this.#compact();
      return event;
    } catch (error) {
      if (error instanceof H3Error) {
        this.#error = error;
        this.#queue.clear();
      }
      throw error;
    }
  }

  /** Drops what is buffered and gives its storage back to the budget (the stream is done). */
  clear(): void {
    this.#queue.clear();
  }

  /** Copies what is left of pushed arrays into owned storage; see the class notes. */
  #compact(): void {
    const want = this.#phase === PHASE_BUFFER ? this.#remaining : MAX_FRAME_HEADER_SIZE;
    this.#queue.compact(want);
  }

  #next(): FrameEvent | undefined {
    const queue = this.#queue;
    while (true) {
      switch (this.#phase) {
        case PHASE_HEADER:
          if (!this.#readHeader()) return undefined;
          break;
        case PHASE_DATA: {
          if (this.#remaining === 0) {
            this.#phase = PHASE_HEADER;
            break;
          }
          const chunk = queue.takeUpTo(this.#remaining);
          if (chunk === undefined) return undefined;
          this.#remaining -= chunk.length;
          if (this.#remaining === 0) this.#phase = PHASE_HEADER;
          return { kind: "data", chunk };
        }
        case PHASE_SKIP: {
          const n = Math.min(this.#remaining, queue.byteLength);
          queue.discard(n);
          this.#remaining -= n;
          if (this.#remaining > 0) return undefined;
          this.#phase = PHASE_HEADER;
          break;
        }
        case PHASE_BUFFER: {
          const payload = queue.take(this.#remaining);
          if (payload === undefined) return undefined;
          this.#phase = PHASE_HEADER;
          this.#remaining = 0;
          return { kind: "frame", type: this.#type, payload };
        }
      }
    }
  }

  /** Reads a whole frame header if buffered and moves to its payload phase. */
  #readHeader(): boolean {
    const queue = this.#queue;
    if (queue.byteLength === 0) return false;
    const scratch = this.#scratch;
    const peeked = queue.peekInto(scratch);
    const typeSize = varintSizeFromFirstByte(scratch[0]);
    if (peeked < typeSize + 1) return false;
    const lengthSize = varintSizeFromFirstByte(scratch[typeSize]);
    if (peeked < typeSize + lengthSize) return false;
    const type = decodeVarint(scratch, 0);
    const length = decodeVarint(scratch, typeSize);
    queue.discard(typeSize + lengthSize);
    this.#onFrameStart?.(type);

    this.#type = type;
    this.#remaining = length;
    if (type === FRAME_DATA) {
      this.#phase = PHASE_DATA;
    } else if (FRAME_NAMES.has(type)) {
      if (length > this.#maxFramePayload) {
        throw new H3Error(
          H3_EXCESSIVE_LOAD,
          `Cannot parse frame: ${
            frameTypeName(type)
          } payload ${length} exceeds limit ${this.#maxFramePayload}`,
        );
      }
      this.#phase = PHASE_BUFFER;
    } else if (HTTP2_ONLY_FRAMES.has(type)) {
      throw new H3Error(
        H3_FRAME_UNEXPECTED,
        `Cannot parse frame: HTTP/2 frame type ${hex(type)} (${
          HTTP2_ONLY_FRAMES.get(type)
        }) is not allowed in HTTP/3`,
      );
    } else {
      this.#phase = PHASE_SKIP;
    }
    return true;
  }
}
