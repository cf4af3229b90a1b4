/**
 * An in-memory pair of {@linkcode ConnectStream}s: what a CONNECT-IP session
 * needs of its transport and nothing of HTTP/3, so tests can run sessions
 * (and the pump on top of them) without any transport, and check what a
 * session hands the transport byte for byte.
 *
 * - The body is a byte pipe: `writeData()` arrives at the peer's
 *   `readBody()` as a copy; `end()` is a clean end; `abort()` makes this
 *   side's pending read reject with a stream error of this side's making.
 * - Datagrams (unless `datagrams: false`): a copy of the sender's buffer,
 *   prefix included, is recorded in `datagramsSent`; the peer gets the payload
 *   after `prefixLength` bytes, which must be `0xee` filler that the fake
 *   "transport" wrote, so a session that wrote into the prefix is caught.
 *
 * @module
 */

import type { ByteBudget } from "../../shared/h3/byte_budget.ts";
import type {
  ConnectStream,
  DatagramChannel,
  DatagramSendResult,
} from "../../shared/masque/connect_stream.ts";

/** Options of {@linkcode createConnectStreamPair}. */
export interface FakeConnectStreamOptions {
  /** Give the streams datagrams (default true). */
  readonly datagrams?: boolean;
  /** Bytes the fake transport puts in front of each payload (default 2). */
  readonly prefixLength?: number;
  /** Largest datagram payload, bytes (default 1200). */
  readonly maxPayloadSize?: number;
  /** A budget for the sessions' partial capsules. */
  readonly bufferBudget?: ByteBudget;
}

/** The prefix byte the fake transport writes, and checks on receipt. */
const PREFIX_FILL = 0xee;

/** The datagrams of one fake stream. */
export class FakeDatagrams implements DatagramChannel {
  readonly prefixLength: number;
  maxPayloadSize: number;
  /** Every buffer passed to send() and sent, prefix filled in. */
  readonly datagramsSent: Uint8Array[] = [];
  peer: FakeDatagrams | undefined;
  #handler: ((payload: Uint8Array) => void) | undefined;
  #stream: FakeConnectStream;

  constructor(stream: FakeConnectStream, prefixLength: number, maxPayloadSize: number) {
    this.#stream = stream;
    this.prefixLength = prefixLength;
    this.maxPayloadSize = maxPayloadSize;
  }

  send(buffer: Uint8Array): DatagramSendResult {
    if (!this.#stream.writable) return "closed";
    if (buffer.length - this.prefixLength > this.maxPayloadSize) return "too_big";
    buffer.fill(PREFIX_FILL, 0, this.prefixLength);
    // Copied at once, as Deno's sendDatagram does: the caller may reuse the buffer.
    const copy = buffer.slice();
    this.datagramsSent.push(copy);
    const peer = this.peer;
    queueMicrotask(() => peer?.deliver(copy));
    return "sent";
  }

  onDatagram(handler: (payload: Uint8Array) => void): void {
    this.#handler = handler;
  }

  /** A datagram from the peer: checks the prefix and hands over the payload. */
  deliver(datagram: Uint8Array): void {
    for (let i = 0; i < this.prefixLength; i++) {
      if (datagram[i] !== PREFIX_FILL) throw new Error("the session wrote into the prefix");
    }
    if (!this.#stream.ended) this.#handler?.(datagram.subarray(this.prefixLength));
  }
}

/** One end of a fake stream; see the module docs. */
export class FakeConnectStream implements ConnectStream {
  readonly datagrams: FakeDatagrams | undefined;
  readonly bufferBudget: ByteBudget | undefined;
  /** Errors the session passed to fail(). */
  readonly failures: unknown[] = [];
  peer: FakeConnectStream | undefined;
  /** Chunks written by the peer and not read yet; null marks the peer's end. */
  readonly #incoming: (Uint8Array | null)[] = [];
  #wake: (() => void) | undefined;
  #ended = false;
  #aborted = false;

  constructor(options: FakeConnectStreamOptions) {
    this.bufferBudget = options.bufferBudget;
    this.datagrams = options.datagrams === false
      ? undefined
      : new FakeDatagrams(this, options.prefixLength ?? 2, options.maxPayloadSize ?? 1200);
  }

  /** Whether end() or abort() was called. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Whether abort() was called. */
  get aborted(): boolean {
    return this.#aborted;
  }

  get writable(): boolean {
    return !this.#ended;
  }

  async *readBody(): AsyncGenerator<Uint8Array> {
    for (;;) {
      if (this.#aborted) throw new Error("Stream abandoned by this side");
      const next = this.#incoming.shift();
      if (next === null) return;
      if (next !== undefined) {
        yield next;
        continue;
      }
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  writeData(bytes: Uint8Array): Promise<void> {
    if (this.#ended) return Promise.reject(new Error("Cannot write: the stream has ended"));
    this.peer?.receive(bytes.slice());
    return Promise.resolve();
  }

  end(): Promise<void> {
    if (!this.#ended) {
      this.#ended = true;
      this.peer?.receive(null);
    }
    return Promise.resolve();
  }

  abort(): void {
    this.#aborted = true;
    this.end();
    this.#wakeReader();
  }

  fail(error: unknown): void {
    this.failures.push(error);
  }

  /** Bytes (or the end, null) from the peer. */
  receive(chunk: Uint8Array | null): void {
    this.#incoming.push(chunk);
    this.#wakeReader();
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/** Two connected fake streams: [client side, server side]. */
export function createConnectStreamPair(
  options: FakeConnectStreamOptions = {},
): [FakeConnectStream, FakeConnectStream] {
  const a = new FakeConnectStream(options);
  const b = new FakeConnectStream(options);
  a.peer = b;
  b.peer = a;
  if (a.datagrams && b.datagrams) {
    a.datagrams.peer = b.datagrams;
    b.datagrams.peer = a.datagrams;
  }
  return [a, b];
}
