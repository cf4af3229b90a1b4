/**
 * An in-memory pair of connected QUIC connections implementing
 * {@linkcode QuicConnLike}, so the HTTP/3 and CONNECT-IP layers can be driven
 * without sockets or TLS, and so a test can play a raw, misbehaving peer.
 *
 * What it models (RFC 9000 §2.1, RFC 9221):
 * - stream ids: client bidi 0, 4, 8...; server bidi 1, 5...; client uni 2,
 *   6...; server uni 3, 7...;
 * - a stream is a byte pipe: writes arrive at the peer's reader as copies
 *   (optionally cut into pieces of `maxChunkSize` bytes), `close()` on the
 *   writer is FIN, `cancel()` on the reader is STOP_SENDING (the writer then
 *   errors); as with `Deno.QuicSendStream`, aborting a writer only finishes
 *   the stream;
 * - datagrams: delivered in order, copied, refused above `maxDatagramSize`;
 * - `close(info)` on either side ends every stream and datagram wait and
 *   resolves `closed` on both sides: with `info` on the other side and, as
 *   Deno reports a local close, with code 0 and no reason on the closing side.
 *
 * A raw peer uses the same object: {@linkcode FakeQuicConn.openUni} and
 * {@linkcode FakeQuicConn.openBidi} write arbitrary bytes,
 * {@linkcode FakeQuicConn.sendDatagram} sends raw datagrams, and
 * {@linkcode FakeQuicConn.closeInfo} / `closed` show how the connection
 * ended.
 *
 * @module
 */

import type {
  QuicBidiStreamLike,
  QuicCloseInfoLike,
  QuicConnLike,
  QuicReceiveStreamLike,
  QuicSendStreamLike,
} from "../../shared/h3/quic.ts";

/** Options of {@linkcode createFakeQuicPair}. */
export interface FakeQuicOptions {
  /** Largest datagram either side may send, bytes; default 1200. */
  readonly maxDatagramSize?: number;
  /** Cut each stream write into pieces of at most this many bytes; default: whole. */
  readonly maxChunkSize?: number;
}

/** The receiving half of a fake stream. */
class FakeReceiveStream extends ReadableStream<Uint8Array> implements QuicReceiveStreamLike {
  readonly id: bigint;
  constructor(id: bigint, source: UnderlyingDefaultSource<Uint8Array>) {
    super(source);
    this.id = id;
  }
}

/** The sending half of a fake stream. */
class FakeSendStream extends WritableStream<Uint8Array> implements QuicSendStreamLike {
  readonly id: bigint;
  constructor(id: bigint, sink: UnderlyingSink<Uint8Array>) {
    super(sink);
    this.id = id;
  }
}

/** State shared by both ends: the close and what to end when it happens. */
class Link {
  info: QuicCloseInfoLike | undefined;
  /** The end that called close() first. */
  closedBy: "client" | "server" | undefined;
  readonly onClose = new Set<(error: Error) => void>();
  constructor(readonly maxChunkSize: number) {}

  close(info: QuicCloseInfoLike, by: "client" | "server"): void {
    if (this.info !== undefined) return;
    this.info = info;
    this.closedBy = by;
    const error = new Error(`Connection closed: code ${info.closeCode} ${info.reason}`);
    for (const end of this.onClose) end(error);
    this.onClose.clear();
  }
}

/** A one-way byte pipe: `send` on one connection, `receive` on the other. */
function pipe(id: bigint, link: Link): { send: FakeSendStream; receive: FakeReceiveStream } {
  let readController!: ReadableStreamDefaultController<Uint8Array>;
  let writeController!: WritableStreamDefaultController;
  let finished = false;
  const receive = new FakeReceiveStream(id, {
    start(controller) {
      readController = controller;
    },
    cancel() {
      // STOP_SENDING: the sender's stream is reset.
      writeController.error(new Error(`Stream ${id} stopped by the peer (STOP_SENDING)`));
    },
  });
  const finish = () => {
    if (finished) return;
    finished = true;
    try {
      readController.close();
    } catch {
      // the reader cancelled or errored first
    }
  };
  const send = new FakeSendStream(id, {
    start(controller) {
      writeController = controller;
    },
    write(chunk) {
      if (link.info !== undefined) throw new Error(`Stream ${id}: connection closed`);
      if (finished) throw new Error(`Stream ${id} is finished`);
      for (let at = 0; at < chunk.length; at += link.maxChunkSize) {
        readController.enqueue(chunk.slice(at, at + link.maxChunkSize));
      }
    },
    close: finish,
    abort: finish,
  });
  link.onClose.add((error) => {
    try {
      if (!finished) readController.error(error);
    } catch {
      // already cancelled
    }
    try {
      writeController.error(error);
    } catch {
      // already errored
    }
  });
  return { send, receive };
}

/** One end of a fake QUIC connection; see the module docs. */
export class FakeQuicConn implements QuicConnLike {
  /** Which side opened the connection; decides stream ids. */
  readonly role: "client" | "server";
  /** Largest datagram this side may send, bytes; tests may change it. */
  maxDatagramSize: number;
  /** Copies of every datagram this side sent, oldest first. */
  readonly datagramsSent: Uint8Array[] = [];
  readonly incomingBidirectionalStreams: ReadableStream<QuicBidiStreamLike>;
  readonly incomingUnidirectionalStreams: ReadableStream<QuicReceiveStreamLike>;
  readonly closed: Promise<QuicCloseInfoLike>;
  readonly #link: Link;
  #peer!: FakeQuicConn;
  #nextBidi: bigint;
  #nextUni: bigint;
  #bidiController!: ReadableStreamDefaultController<QuicBidiStreamLike>;
  #uniController!: ReadableStreamDefaultController<QuicReceiveStreamLike>;
  readonly #datagrams: Uint8Array[] = [];
  #datagramWaiters: { resolve(d: Uint8Array): void; reject(e: Error): void }[] = [];

  constructor(role: "client" | "server", link: Link, maxDatagramSize: number) {
    this.role = role;
    this.#link = link;
    this.maxDatagramSize = maxDatagramSize;
    const offset = role === "client" ? 0n : 1n;
    this.#nextBidi = offset;
    this.#nextUni = 2n + offset;
    this.incomingBidirectionalStreams = new ReadableStream({
      start: (c) => void (this.#bidiController = c),
    });
    this.incomingUnidirectionalStreams = new ReadableStream({
      start: (c) => void (this.#uniController = c),
    });
    this.closed = new Promise((resolve) => {
      link.onClose.add((error) => {
        for (const waiter of this.#datagramWaiters) waiter.reject(error);
        this.#datagramWaiters = [];
        for (const controller of [this.#bidiController, this.#uniController]) {
          try {
            controller.error(error);
          } catch {
            // reader already cancelled
          }
        }
        // As Deno's QuicConn: the end that closed sees code 0 and no
        // reason (quinn's LocallyClosed), the other end what was sent.
        resolve(link.closedBy === role ? { closeCode: 0, reason: "" } : link.info!);
      });
    });
  }

  /** Connects two ends; used by {@linkcode createFakeQuicPair}. */
  static connect(a: FakeQuicConn, b: FakeQuicConn): void {
    a.#peer = b;
    b.#peer = a;
  }

  /** How the connection closed, or undefined while it is open. */
  get closeInfo(): QuicCloseInfoLike | undefined {
    return this.#link.info;
  }

  #checkOpen(what: string): void {
    if (this.#link.info !== undefined) {
      throw new Error(`Cannot ${what}: connection closed (code ${this.#link.info.closeCode})`);
    }
  }

  createBidirectionalStream(): Promise<QuicBidiStreamLike> {
    try {
      this.#checkOpen("open a stream");
    } catch (error) {
      return Promise.reject(error);
    }
    const id = this.#nextBidi;
    this.#nextBidi += 4n;
    const out = pipe(id, this.#link);
    const back = pipe(id, this.#link);
    this.#peer.#bidiController.enqueue({ readable: out.receive, writable: back.send });
    return Promise.resolve({ readable: back.receive, writable: out.send });
  }

  createUnidirectionalStream(): Promise<QuicSendStreamLike> {
    try {
      this.#checkOpen("open a stream");
    } catch (error) {
      return Promise.reject(error);
    }
    const id = this.#nextUni;
    this.#nextUni += 4n;
    const { send, receive } = pipe(id, this.#link);
    this.#peer.#uniController.enqueue(receive);
    return Promise.resolve(send);
  }

  sendDatagram(data: Uint8Array): Promise<void> {
    try {
      this.#checkOpen("send a datagram");
      if (data.length > this.maxDatagramSize) {
        throw new Error(
          `Cannot send a datagram: ${data.length} bytes exceeds maxDatagramSize ${this.maxDatagramSize}`,
        );
      }
    } catch (error) {
      return Promise.reject(error);
    }
    const copy = data.slice();
    this.datagramsSent.push(copy);
    this.#peer.#deliver(copy.slice());
    return Promise.resolve();
  }

  #deliver(datagram: Uint8Array): void {
    const waiter = this.#datagramWaiters.shift();
    if (waiter !== undefined) waiter.resolve(datagram);
    else this.#datagrams.push(datagram);
  }

  readDatagram(): Promise<Uint8Array> {
    const queued = this.#datagrams.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    try {
      this.#checkOpen("read a datagram");
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => this.#datagramWaiters.push({ resolve, reject }));
  }

  close(info: QuicCloseInfoLike = { closeCode: 0, reason: "" }): void {
    this.#link.close({ closeCode: info.closeCode, reason: info.reason }, this.role);
  }

  /**
   * Raw peer: opens a unidirectional stream, writes `bytes`, and finishes it
   * when `options.end` is set. Returns the writer for more bytes.
   */
  async openUni(
    bytes: Uint8Array,
    options: { end?: boolean } = {},
  ): Promise<WritableStreamDefaultWriter<Uint8Array>> {
    const writer = (await this.createUnidirectionalStream()).getWriter();
    if (bytes.length > 0) await writer.write(bytes);
    if (options.end) await writer.close();
    return writer;
  }

  /**
   * Raw peer: opens a bidirectional stream, writes `bytes`, and finishes the
   * sending side when `options.end` is set.
   */
  async openBidi(bytes: Uint8Array, options: { end?: boolean } = {}): Promise<{
    id: bigint;
    writer: WritableStreamDefaultWriter<Uint8Array>;
    reader: ReadableStreamDefaultReader<Uint8Array>;
  }> {
    const stream = await this.createBidirectionalStream();
    const writer = stream.writable.getWriter();
    if (bytes.length > 0) await writer.write(bytes);
    if (options.end) await writer.close();
    return { id: stream.writable.id, writer, reader: stream.readable.getReader() };
  }
}

/**
 * Two connected ends, `[client, server]`. Neither side reads anything until
 * a test or an H3Connection does.
 */
export function createFakeQuicPair(options: FakeQuicOptions = {}): [FakeQuicConn, FakeQuicConn] {
  const link = new Link(options.maxChunkSize ?? Infinity);
  const client = new FakeQuicConn("client", link, options.maxDatagramSize ?? 1200);
  const server = new FakeQuicConn("server", link, options.maxDatagramSize ?? 1200);
  FakeQuicConn.connect(client, server);
  return [client, server];
}

/** Reads `reader` to its end (or until `timeoutMs`) and returns all bytes. */
export async function readAll(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  timeoutMs = 2000,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  await within(
    (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        parts.push(value);
      }
    })(),
    "the end of the stream",
    timeoutMs,
  );
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Rejects with `Timed out after N ms waiting for <what>` unless `promise` settles first. */
export function within<T>(promise: Promise<T>, what: string, ms = 2000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Waits until `check()` holds, polling every few milliseconds, or throws after `ms`. */
export async function until(check: () => boolean, what: string, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
