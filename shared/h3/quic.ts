/**
 * The QUIC connection shape the HTTP/3 layer is written against.
 * `Deno.QuicConn` satisfies it structurally, so `shared/` never names the
 * `Deno` global, and tests drive the same code with in-memory fakes
 * (`tests/support/fake_quic.ts`).
 *
 * @module
 */

/** The receiving half of a QUIC stream, as `Deno.QuicReceiveStream`. */
export interface QuicReceiveStreamLike extends ReadableStream<Uint8Array> {
  readonly id: bigint;
}
/** The sending half of a QUIC stream, as `Deno.QuicSendStream`. */
export interface QuicSendStreamLike extends WritableStream<Uint8Array> {
  readonly id: bigint;
}
/** A bidirectional QUIC stream, as `Deno.QuicBidirectionalStream`. */
export interface QuicBidiStreamLike {
  readonly readable: QuicReceiveStreamLike;
  readonly writable: QuicSendStreamLike;
}
/** Why a QUIC connection closed, as `Deno.QuicCloseInfo`. */
export interface QuicCloseInfoLike {
  readonly closeCode: number;
  readonly reason: string;
}
/** The QUIC connection the driver runs on; `Deno.QuicConn` satisfies it. */
export interface QuicConnLike {
  createBidirectionalStream(): Promise<QuicBidiStreamLike>;
  createUnidirectionalStream(): Promise<QuicSendStreamLike>;
  readonly incomingBidirectionalStreams: ReadableStream<QuicBidiStreamLike>;
  readonly incomingUnidirectionalStreams: ReadableStream<QuicReceiveStreamLike>;
  /**
   * Queues one QUIC datagram. Must be done reading `data` when it returns
   * (callers reuse the buffer at once): Deno's op copies the bytes
   * (`buf.to_vec()`) while the call runs, since deno_core polls an async op
   * once at the call; `tests/integration/datagram_copy_test.ts` checks it.
   */
  sendDatagram(data: Uint8Array): Promise<void>;
  readDatagram(): Promise<Uint8Array>;
  /** Largest QUIC datagram payload that can be sent now, in bytes. */
  readonly maxDatagramSize: number;
  close(info?: QuicCloseInfoLike): void;
  readonly closed: Promise<QuicCloseInfoLike>;
}

/** Describes a close for logs: `code 0x100 "bye"`. */
export function describeClose(info: QuicCloseInfoLike): string {
  return `code 0x${info.closeCode.toString(16)}${info.reason ? ` "${info.reason}"` : ""}`;
}
