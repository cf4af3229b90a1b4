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

const H3_ERROR_NAMES: ReadonlyMap<number, string> = new Map([
  [H3_NO_ERROR, "H3_NO_ERROR"],
  [H3_GENERAL_PROTOCOL_ERROR, "H3_GENERAL_PROTOCOL_ERROR"],
  [H3_INTERNAL_ERROR, "H3_INTERNAL_ERROR"],
  [H3_STREAM_CREATION_ERROR, "H3_STREAM_CREATION_ERROR"],
  [H3_CLOSED_CRITICAL_STREAM, "H3_CLOSED_CRITICAL_STREAM"],
  [H3_FRAME_UNEXPECTED, "H3_FRAME_UNEXPECTED"],
  [H3_FRAME_ERROR, "H3_FRAME_ERROR"],
  [H3_EXCESSIVE_LOAD, "H3_EXCESSIVE_LOAD"],
  [H3_ID_ERROR, "H3_ID_ERROR"],
  [H3_SETTINGS_ERROR, "H3_SETTINGS_ERROR"],
  [H3_MISSING_SETTINGS, "H3_MISSING_SETTINGS"],
  [H3_REQUEST_REJECTED, "H3_REQUEST_REJECTED"],
  [H3_REQUEST_CANCELLED, "H3_REQUEST_CANCELLED"],
  [H3_REQUEST_INCOMPLETE, "H3_REQUEST_INCOMPLETE"],
  [H3_MESSAGE_ERROR, "H3_MESSAGE_ERROR"],
  [H3_CONNECT_ERROR, "H3_CONNECT_ERROR"],
  [H3_VERSION_FALLBACK, "H3_VERSION_FALLBACK"],
  [QPACK_DECOMPRESSION_FAILED, "QPACK_DECOMPRESSION_FAILED"],
  [QPACK_ENCODER_STREAM_ERROR, "QPACK_ENCODER_STREAM_ERROR"],
  [QPACK_DECODER_STREAM_ERROR, "QPACK_DECODER_STREAM_ERROR"],
  [H3_DATAGRAM_ERROR, "H3_DATAGRAM_ERROR"],
]);

/**
 * Names an HTTP/3 error code for messages: `H3_MESSAGE_ERROR (0x10e)` for
 * a code from RFC 9114 §8.1, RFC 9204 §6 or RFC 9297 §5.2, and
 * `error 0x1f (unknown)` for any other (including the reserved GREASE codes
 * of RFC 9114 §8.1, which carry no meaning).
 */
export function h3ErrorName(code: number): string {
  const hex = `0x${code.toString(16)}`;
  const name = H3_ERROR_NAMES.get(code);
  return name === undefined ? `error ${hex} (unknown)` : `${name} (${hex})`;
}

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

/**
 * The message of a thrown value, for logs and error texts: `error.message`
 * for an `Error`, the value as a string for anything else that was thrown.
 */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
