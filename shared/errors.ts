/**
 * Error codes and typed errors shared by the HTTP/3 and MASQUE layers.
 *
 * @module
 */

/** HTTP/3 error codes (RFC 9114 §8.1, RFC 9204 §6, RFC 9297 §5). */
export const H3_NO_ERROR = 0x100;
export const H3_GENERAL_PROTOCOL_ERROR = 0x101;
export const H3_INTERNAL_ERROR = 0x102;
export const H3_STREAM_CREATION_ERROR = 0x103;
export const H3_CLOSED_CRITICAL_STREAM = 0x104;
export const H3_FRAME_UNEXPECTED = 0x105;
export const H3_FRAME_ERROR = 0x106;
export const H3_EXCESSIVE_LOAD = 0x107;
export const H3_ID_ERROR = 0x108;
export const H3_SETTINGS_ERROR = 0x109;
export const H3_MISSING_SETTINGS = 0x10a;
export const H3_REQUEST_REJECTED = 0x10b;
export const H3_REQUEST_CANCELLED = 0x10c;
export const H3_REQUEST_INCOMPLETE = 0x10d;
export const H3_MESSAGE_ERROR = 0x10e;
export const H3_CONNECT_ERROR = 0x10f;
export const H3_VERSION_FALLBACK = 0x110;
export const QPACK_DECOMPRESSION_FAILED = 0x200;
export const QPACK_ENCODER_STREAM_ERROR = 0x201;
export const QPACK_DECODER_STREAM_ERROR = 0x202;
/** RFC 9297 §5.2. */
export const H3_DATAGRAM_ERROR = 0x33;

/**
 * An HTTP/3 protocol error carrying the error code that the connection or
 * stream is closed with. Messages read like
 * `Cannot parse SETTINGS: duplicate setting 0x33`.
 */
export class H3Error extends Error {
  /** The HTTP/3 error code (RFC 9114 §8.1). */
  readonly code: number;
  /** Whether the error ends the whole connection (true) or only a stream. */
  readonly connection: boolean;

  constructor(code: number, message: string, options: { connection?: boolean } = {}) {
    super(message);
    this.name = "H3Error";
    this.code = code;
    this.connection = options.connection ?? true;
  }
}

/** A malformed capsule or capsule sequence (RFC 9297 §3.3, RFC 9484 §4.7). */
export class CapsuleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CapsuleError";
  }
}
