/**
 * An HTTP/3 connection driver (RFC 9114) on a QUIC connection, with HTTP
 * Datagrams (RFC 9297 §2) and extended CONNECT (RFC 9220).
 *
 * What it does:
 * - opens this side's control stream and sends SETTINGS first (§6.2.1);
 * - reads the peer's unidirectional streams by type: one control stream
 *   whose first frame must be SETTINGS, QPACK encoder/decoder streams
 *   (read by instruction: with our zero-capacity table only Set Dynamic
 *   Table Capacity 0 and Stream Cancellation are valid, RFC 9204 §4.2),
 *   push streams refused, unknown types stopped (§6.2.3);
 * - opens request streams (client) or accepts them (server) and hands each
 *   its HEADERS, then lets the owner read DATA and write DATA;
 * - bounds what a peer can make it hold: the peer's SETTINGS must arrive
 *   within `settingsTimeoutMs`, a request's HEADERS within
 *   `headersTimeoutMs`, and the bytes kept between reads on all streams
 *   (partial frames, partial capsules, partial stream types) are copied out
 *   of the read buffers and counted in one {@linkcode ByteBudget} of
 *   `maxBufferedBytes`, past which the connection closes with
 *   H3_EXCESSIVE_LOAD; streams are read into buffers sized to what they
 *   deliver ({@linkcode StreamReader}), not 64 KiB per pending read;
 * - receives QUIC datagrams and routes them by quarter stream id to the
 *   request stream that registered for them;
 * - handles GOAWAY (§5.2).
 *
 * Written against {@linkcode QuicConnLike}, which `Deno.QuicConn` satisfies,
 * so tests can drive it with in-memory fakes.
 *
 * Deno's QUIC API cannot reset a stream with an error code (aborting a send
 * stream finishes it), so a stream error answers with an HTTP status where a
 * response is still possible and otherwise ends the stream; connection
 * errors close the connection with the RFC's error code.
 *
 * @module
 */

import {
  errorMessage,
  H3_CLOSED_CRITICAL_STREAM,
  H3_DATAGRAM_ERROR,
  H3_FRAME_UNEXPECTED,
  H3_ID_ERROR,
  H3_MISSING_SETTINGS,
  H3_NO_ERROR,
  H3_STREAM_CREATION_ERROR,
  H3Error,
} from "../errors.ts";
import { counterByLabel, CounterRegistry } from "../counters.ts";
import type { Counter } from "../counters.ts";
import type { Logger } from "../log.ts";
import { nullLogger } from "../log.ts";
import { ByteBudget, DEFAULT_MAX_BUFFERED_BYTES } from "./byte_budget.ts";
import {
  encodeGoawayFrame,
  FRAME_CANCEL_PUSH,
  FRAME_DATA,
  FRAME_GOAWAY,
  FRAME_MAX_PUSH_ID,
  FRAME_SETTINGS,
  FrameReader,
  frameTypeName,
  parseGoawayPayload,
} from "./frame.ts";
import type { FrameEvent } from "./frame.ts";
import { QpackDecoderStreamReader, QpackEncoderStreamReader } from "./qpack.ts";
import type { HeaderField } from "./qpack.ts";
import {
  clientSettings,
  encodeSettingsFrame,
  parseSettingsPayload,
  serverSettings,
} from "./settings.ts";
import type { Settings } from "./settings.ts";
import type {
  QuicBidiStreamLike,
  QuicCloseInfoLike,
  QuicConnLike,
  QuicReceiveStreamLike,
} from "./quic.ts";
import { describeClose } from "./quic.ts";
import { parseQuarterStreamId, quarterStreamIdSize } from "./quarter_stream.ts";
import { H3RequestStream } from "./request_stream.ts";
import { StreamReader } from "./stream_reader.ts";
import { decodeVarint, encodeVarint, varintSizeFromFirstByte } from "./varint.ts";

/** Unidirectional stream types (RFC 9114 §6.2, RFC 9204 §4.2). */
export const STREAM_TYPE_CONTROL = 0x00;
export const STREAM_TYPE_PUSH = 0x01;
export const STREAM_TYPE_QPACK_ENCODER = 0x02;
export const STREAM_TYPE_QPACK_DECODER = 0x03;

/**
 * One connection's own counts ({@linkcode H3Connection.stats}); the
 * process's totals are in its counter registry ({@linkcode H3Counters}).
 */
export interface H3ConnectionStats {
  datagramsIn: number;
  datagramsOut: number;
  /** Datagrams for a stream that is unknown or not taking datagrams. */
  datagramsUnroutable: number;
  /** Datagrams whose quarter stream id could not be parsed. */
  datagramsMalformed: number;
  /**
   * Datagrams dropped on the way out because the QUIC layer's send buffer was
   * full and {@linkcode H3ConnectionOptions.maxDatagramsQueued} more were
   * already waiting for room: the path is congested.
   */
  datagramsQueueFull: number;
  requestStreams: number;
  /** Reads from the peer's streams that delivered bytes (request, control, QPACK, type). */
  streamReads: number;
  /** Request streams closed because their HEADERS did not arrive within `headersTimeoutMs`. */
  headersTimeouts: number;
  /** 1 when the connection closed because SETTINGS did not arrive within `settingsTimeoutMs`. */
  settingsTimeouts: number;
  /** 1 when the connection closed because the peer passed `maxBufferedBytes`. */
  bufferBudgetExceeded: number;
}

/**
 * The counters an {@linkcode H3Connection} adds to, resolved once from a
 * {@linkcode CounterRegistry} (names in `docs/architecture.md`, "Errors").
 */
export class H3Counters {
  readonly datagramsIn: Counter;
  readonly datagramsOut: Counter;
  readonly datagramsUnroutable: Counter;
  readonly datagramsMalformed: Counter;
  readonly datagramsQueueFull: Counter;
  readonly requestStreams: Counter;
  readonly streamReads: Counter;
  readonly headersTimeouts: Counter;
  readonly settingsTimeouts: Counter;
  readonly bufferBudgetExceeded: Counter;

  constructor(registry: CounterRegistry) {
    const datagrams = counterByLabel(
      registry,
      "h3_datagrams_total",
      "HTTP/3 datagrams received from and sent to peers",
      "direction",
      ["received", "sent"],
    );
    this.datagramsIn = datagrams.received;
    this.datagramsOut = datagrams.sent;
    const dropped = counterByLabel(
      registry,
      "h3_datagrams_dropped_total",
      "HTTP/3 datagrams dropped: for no stream taking them, malformed, or at a full send queue",
      "reason",
      ["unroutable", "malformed", "queue full"],
    );
    this.datagramsUnroutable = dropped.unroutable;
    this.datagramsMalformed = dropped.malformed;
    this.datagramsQueueFull = dropped["queue full"];
    const one = (name: string, help: string) => registry.counter(name, { help }).child();
    this.requestStreams = one(
      "h3_request_streams_total",
      "HTTP/3 request streams opened or accepted",
    );
    this.streamReads = one(
      "h3_stream_reads_total",
      "Reads that delivered bytes from peers' streams",
    );
    this.headersTimeouts = one(
      "h3_headers_timeouts_total",
      "Request streams closed for no HEADERS within the time limit",
    );
    this.settingsTimeouts = one(
      "h3_settings_timeouts_total",
      "Connections closed for no SETTINGS within the time limit",
    );
    this.bufferBudgetExceeded = one(
      "h3_buffer_budget_exceeded_total",
      "Connections closed for holding more bytes between reads than their budget",
    );
  }
}

/** Timers for the connection's time limits; tests pass a fake clock. */
export interface H3Timers {
  /** Calls `callback` once after `ms` milliseconds; returns a function that cancels the call. */
  schedule(callback: () => void, ms: number): () => void;
}

const REAL_TIMERS: H3Timers = {
  schedule(callback, ms) {
    const id = setTimeout(callback, ms);
    return () => clearTimeout(id);
  },
};

/**
 * Default {@linkcode H3ConnectionOptions.headersTimeoutMs}: a request stream
 * must deliver its whole HEADERS frame within 10 s of being opened. A
 * client sends HEADERS at once, in one or two packets; a stream that holds
 * a partial HEADERS longer is a peer holding the stream (and its memory).
 */
export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;

/**
 * Default {@linkcode H3ConnectionOptions.settingsTimeoutMs}: the peer's
 * SETTINGS must arrive within 10 s of {@linkcode H3Connection.start}. Each
 * side sends SETTINGS first thing on its control stream (RFC 9114 §6.2.1),
 * so a peer that has not done so in 10 s is not speaking HTTP/3.
 */
export const DEFAULT_SETTINGS_TIMEOUT_MS = 10_000;

/** Options of {@linkcode H3Connection}. */
export interface H3ConnectionOptions {
  /** `"client"` opens requests; `"server"` accepts them. */
  readonly role: "client" | "server";
  /** Called for each request a client opens (server role only). */
  readonly onRequest?: (request: H3RequestStream) => void;
  readonly log?: Logger;
  /** Limit on a decoded field section (RFC 9114 §4.2.2), bytes. */
  readonly maxFieldSectionSize?: number;
  /** Settings to send instead of the role's defaults. */
  readonly settings?: Settings;
  /**
   * Datagrams that may wait for room in the QUIC layer's send buffer before
   * further ones are dropped; default {@linkcode DEFAULT_MAX_DATAGRAMS_QUEUED}.
   */
  readonly maxDatagramsQueued?: number;
  /**
   * Most bytes the peer may make this side hold between reads on all its
   * streams together (partial frames, partial capsules, partial stream
   * types), in bytes; default {@linkcode DEFAULT_MAX_BUFFERED_BYTES}. Past
   * it the connection closes with H3_EXCESSIVE_LOAD.
   */
  readonly maxBufferedBytes?: number;
  /**
   * Server: milliseconds a request stream may take to deliver its whole
   * HEADERS frame before it is closed; default
   * {@linkcode DEFAULT_HEADERS_TIMEOUT_MS}.
   */
  readonly headersTimeoutMs?: number;
  /**
   * Milliseconds after {@linkcode H3Connection.start} by which the peer's
   * SETTINGS must have arrived, else the connection closes with
   * H3_MISSING_SETTINGS; default {@linkcode DEFAULT_SETTINGS_TIMEOUT_MS}.
   */
  readonly settingsTimeoutMs?: number;
  /** Timers to use instead of the global ones (tests). */
  readonly timers?: H3Timers;
  /**
   * The registry to count in, shared with the process's other connections
   * (default: a registry of this connection's own).
   */
  readonly counters?: CounterRegistry;
}

/** The limits among {@linkcode H3ConnectionOptions}, for a server's configuration. */
export type H3Limits = Pick<
  H3ConnectionOptions,
  "maxBufferedBytes" | "headersTimeoutMs" | "settingsTimeoutMs"
>;

/**
 * Default {@linkcode H3ConnectionOptions.maxDatagramsQueued}. Deno's
 * `sendDatagram` waits while quinn's datagram send buffer (1 MiB) is full,
 * and nothing else bounds the calls waiting behind it: a sender faster than
 * the path would queue without limit, adding seconds of delay and memory.
 * Past this many waiting datagrams the newest is dropped instead, as a
 * router drops at a full queue, and the tunnelled TCP backs off. The count
 * includes datagrams sent in the current turn of the event loop (their
 * promises settle only after it), and one turn can carry several TUN
 * batches of 256 (`readBatch()` resolves as a microtask while the ring has
 * packets). At 512, bursts at 300 Mbit/s lost up to 0.9% here with quinn's
 * buffer not full; at 2048 (about 2.8 MiB at 1400 bytes) none did, with the
 * same throughput and delay under load.
 */
export const DEFAULT_MAX_DATAGRAMS_QUEUED = 2048;

const EMPTY = new Uint8Array(0);

/**
 * One HTTP/3 connection. Create it, call {@linkcode H3Connection.start},
 * then open requests (client) or receive them through `onRequest` (server).
 */
export class H3Connection {
  readonly #conn: QuicConnLike;
  readonly #role: "client" | "server";
  readonly #log: Logger;
  readonly #onRequest?: (request: H3RequestStream) => void;
  readonly #maxFieldSectionSize?: number;
  readonly #settings: Settings;
  readonly #datagramHandlers = new Map<number, (payload: Uint8Array) => void>();
  readonly #peerSettings: Promise<Settings>;
  #resolvePeerSettings!: (settings: Settings) => void;
  #rejectPeerSettings!: (error: Error) => void;
  #sawControlStream = false;
  #sawEncoderStream = false;
  #sawDecoderStream = false;
  #goawayId: number | undefined;
  #closeError: H3Error | undefined;
  #closing = false;
  /** What close() sent, when this side closed first. */
  #localClose: QuicCloseInfoLike | undefined;
  readonly #maxDatagramsQueued: number;
  readonly #budget: ByteBudget;
  readonly #headersTimeoutMs: number;
  readonly #settingsTimeoutMs: number;
  readonly #timers: H3Timers;
  /** Cancels the SETTINGS time limit while it runs. */
  #cancelSettingsTimer: (() => void) | undefined;
  #sawSettings = false;
  /** Cancel functions of the time limits of request streams still waiting for HEADERS. */
  readonly #headersTimers = new Set<() => void>();
  /** sendDatagram() calls that have not resolved yet. */
  #datagramsQueued = 0;
  readonly #datagramSent = () => {
    this.#datagramsQueued--;
  };
  readonly #closed: Promise<QuicCloseInfoLike>;
  /** The process's counters this connection adds to (see `H3ConnectionOptions.counters`). */
  readonly #counters: H3Counters;
  /** This connection's own counts, updated as it runs. */
  readonly stats: H3ConnectionStats = {
    datagramsIn: 0,
    datagramsOut: 0,
    datagramsUnroutable: 0,
    datagramsMalformed: 0,
    datagramsQueueFull: 0,
    requestStreams: 0,
    streamReads: 0,
    headersTimeouts: 0,
    settingsTimeouts: 0,
    bufferBudgetExceeded: 0,
  };

  constructor(conn: QuicConnLike, options: H3ConnectionOptions) {
    this.#conn = conn;
    this.#role = options.role;
    this.#log = options.log ?? nullLogger;
    this.#onRequest = options.onRequest;
    this.#maxFieldSectionSize = options.maxFieldSectionSize;
    this.#maxDatagramsQueued = options.maxDatagramsQueued ?? DEFAULT_MAX_DATAGRAMS_QUEUED;
    this.#counters = new H3Counters(options.counters ?? new CounterRegistry());
    this.#budget = new ByteBudget(options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES, {
      onExceeded: () => {
        // Once per connection: it closes, and reservations in flight fail too.
        if (this.stats.bufferBudgetExceeded === 0) this.#counters.bufferBudgetExceeded.value++;
        this.stats.bufferBudgetExceeded = 1;
      },
    });
    this.#headersTimeoutMs = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
    this.#settingsTimeoutMs = options.settingsTimeoutMs ?? DEFAULT_SETTINGS_TIMEOUT_MS;
    this.#timers = options.timers ?? REAL_TIMERS;
    this.#settings = options.settings ??
      (options.role === "server" ? serverSettings() : clientSettings());
    this.#peerSettings = new Promise((resolve, reject) => {
      this.#resolvePeerSettings = resolve;
      this.#rejectPeerSettings = reject;
    });
    this.#peerSettings.catch(() => {});
    this.#closed = conn.closed.then(
      // Deno reports a close of our own as code 0 with no reason; what we sent is more useful.
      (info) => this.#localClose ?? info,
      (error) => ({ closeCode: 0, reason: errorMessage(error) }),
    ).then((info) => {
      this.#closing = true;
      this.#stopTimers();
      this.#rejectPeerSettings(
        this.#closeError ?? new Error(`Connection closed before SETTINGS: ${describeClose(info)}`),
      );
      for (const handler of this.#closeHandlers) handler(info);
      return info;
    });
  }

  readonly #closeHandlers: ((info: QuicCloseInfoLike) => void)[] = [];

  /** The role this side plays. */
  get role(): "client" | "server" {
    return this.#role;
  }

  /** The peer's SETTINGS; rejects if the connection closes first. */
  get peerSettings(): Promise<Settings> {
    return this.#peerSettings;
  }

  /** Resolves when the QUIC connection has closed, with why. */
  get closed(): Promise<QuicCloseInfoLike> {
    return this.#closed;
  }

  /** The connection error that closed this connection, if it was ours. */
  get closeError(): H3Error | undefined {
    return this.#closeError;
  }

  /** The stream id limit from the peer's GOAWAY, if one arrived. */
  get goawayId(): number | undefined {
    return this.#goawayId;
  }

  /**
   * The budget of bytes held between reads on this connection's streams;
   * a session's capsule parser reserves its partial capsule in it.
   */
  get bufferBudget(): ByteBudget {
    return this.#budget;
  }

  /** Largest HTTP Datagram (with its quarter stream id) that fits now, bytes. */
  get maxDatagramSize(): number {
    return this.#conn.maxDatagramSize;
  }

  /** Counts one read of a request stream that delivered bytes (for `H3RequestStream`). */
  countStreamRead(): void {
    this.stats.streamReads++;
    this.#counters.streamReads.value++;
  }

  /** Registers `fn` to run once the connection has closed. */
  onClose(fn: (info: QuicCloseInfoLike) => void): void {
    this.#closeHandlers.push(fn);
  }

  readonly #goawayHandlers: ((id: number) => void)[] = [];

  /**
   * Registers `fn` to run when the peer's GOAWAY arrives (RFC 9114 §5.2),
   * with its id; a client then opens no new request on this connection.
   */
  onGoaway(fn: (id: number) => void): void {
    this.#goawayHandlers.push(fn);
  }

  /**
   * Opens the control stream, sends SETTINGS, and starts reading the peer's
   * streams and datagrams. Resolves once SETTINGS has been written.
   */
  async start(): Promise<void> {
    if (!this.#sawSettings && !this.#closing) {
      this.#cancelSettingsTimer = this.#timers.schedule(() => {
        this.#cancelSettingsTimer = undefined;
        this.stats.settingsTimeouts = 1;
        this.#counters.settingsTimeouts.value++;
        this.fail(
          new H3Error(
            H3_MISSING_SETTINGS,
            `No SETTINGS from the peer within ${this.#settingsTimeoutMs} ms`,
          ),
        );
      }, this.#settingsTimeoutMs);
    }
    this.#acceptUnidirectional();
    this.#readDatagrams();
    if (this.#role === "server") this.#acceptRequests();
    else this.#refuseServerBidi();
    const control = await this.#conn.createUnidirectionalStream();
    const writer = control.getWriter();
    // The control stream stays open for the connection's lifetime (§6.2.1).
    await writer.write(
      concat(encodeVarint(STREAM_TYPE_CONTROL), encodeSettingsFrame(this.#settings)),
    );
    this.#controlWriter = writer;
  }

  #controlWriter: WritableStreamDefaultWriter<Uint8Array> | undefined;

  /**
   * Opens a request stream and sends `headers` (RFC 9114 §4.1). The returned
   * stream's {@linkcode H3RequestStream.readResponse} waits for the answer.
   * With `options.end`, the request has no body and the sending side is
   * finished at once (a GET); extended CONNECT keeps it open.
   */
  async request(
    headers: readonly HeaderField[],
    options: { end?: boolean } = {},
  ): Promise<H3RequestStream> {
    if (this.#role !== "client") throw new Error("Cannot open a request: this side is the server");
    if (this.#goawayId !== undefined) {
      throw new Error("Cannot open a request: the server sent GOAWAY");
    }
    const stream = await this.#conn.createBidirectionalStream();
    const request = new H3RequestStream(this, stream, this.#log, this.#maxFieldSectionSize);
    this.stats.requestStreams++;
    this.#counters.requestStreams.value++;
    await request.writeHeaders(headers);
    if (options.end) await request.end();
    return request;
  }

  /**
   * Sends GOAWAY on the control stream (RFC 9114 §5.2). A server passes the
   * first request stream id it will not process; a client passes 0.
   */
  async goaway(id = 0): Promise<void> {
    if (this.#controlWriter) {
      await this.#controlWriter.write(encodeGoawayFrame(id)).catch(() => {});
    }
  }

  /** Closes the connection with `code` (default H3_NO_ERROR) and `reason`. */
  close(code = H3_NO_ERROR, reason = ""): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#localClose = { closeCode: code, reason };
    try {
      this.#conn.close({ closeCode: code, reason });
    } catch {
      // already closed
    }
  }

  /** Closes the connection because of `error` (a connection error). */
  fail(error: H3Error): void {
    if (this.#closing) return;
    this.#closeError = error;
    this.#log.warn("closing HTTP/3 connection", {
      code: hexCode(error.code),
      error: error.message,
    });
    this.#rejectPeerSettings(error);
    this.close(error.code, error.message.slice(0, 200));
  }

  /** Registers `handler` for HTTP Datagrams of quarter stream id `qsid`. */
  registerDatagramHandler(qsid: number, handler: (payload: Uint8Array) => void): void {
    this.#datagramHandlers.set(qsid, handler);
  }

  /** Removes the handler of `qsid`. */
  unregisterDatagramHandler(qsid: number): void {
    this.#datagramHandlers.delete(qsid);
  }

  /**
   * Sends a QUIC datagram that already starts with its quarter stream id.
   * Returns false when it is larger than {@linkcode maxDatagramSize} or the
   * connection is closing. Datagrams are unreliable (RFC 9297 §2): when the
   * send queue is full (see {@linkcode H3ConnectionOptions.maxDatagramsQueued})
   * this one is dropped, counted in `stats.datagramsQueueFull`, and true is
   * returned all the same. Never throws. The caller may reuse `datagram`
   * as soon as this returns: the connection's `sendDatagram` is done with
   * it by then (see {@linkcode QuicConnLike.sendDatagram}).
   */
  sendRawDatagram(datagram: Uint8Array): boolean {
    if (this.#closing || datagram.length > this.#conn.maxDatagramSize) return false;
    if (this.#datagramsQueued >= this.#maxDatagramsQueued) {
      this.stats.datagramsQueueFull++;
      this.#counters.datagramsQueueFull.value++;
      return true;
    }
    this.stats.datagramsOut++;
    this.#counters.datagramsOut.value++;
    this.#datagramsQueued++;
    // Rejected only when the connection is gone; close() reports that.
    this.#conn.sendDatagram(datagram).then(this.#datagramSent, this.#datagramSent);
    return true;
  }

  #stopTimers(): void {
    this.#cancelSettingsTimer?.();
    this.#cancelSettingsTimer = undefined;
    for (const cancel of this.#headersTimers) cancel();
    this.#headersTimers.clear();
  }

  async #readDatagrams(): Promise<void> {
    for (;;) {
      let datagram: Uint8Array;
      try {
        datagram = await this.#conn.readDatagram();
      } catch {
        return; // connection closed
      }
      this.stats.datagramsIn++;
      this.#counters.datagramsIn.value++;
      let qsid: number;
      try {
        qsid = parseQuarterStreamId(datagram);
      } catch (error) {
        // RFC 9297 §2.1: a datagram that cannot be parsed is a connection error.
        this.stats.datagramsMalformed++;
        this.#counters.datagramsMalformed.value++;
        this.fail(
          error instanceof H3Error ? error : new H3Error(H3_DATAGRAM_ERROR, errorMessage(error)),
        );
        return;
      }
      const handler = this.#datagramHandlers.get(qsid);
      if (handler === undefined) {
        this.stats.datagramsUnroutable++;
        this.#counters.datagramsUnroutable.value++;
        continue;
      }
      handler(datagram.subarray(quarterStreamIdSize(datagram)));
    }
  }

  async #acceptRequests(): Promise<void> {
    const reader = this.#conn.incomingBidirectionalStreams.getReader();
    for (;;) {
      let next: ReadableStreamReadResult<QuicBidiStreamLike>;
      try {
        next = await reader.read();
      } catch {
        return;
      }
      if (next.done) return;
      const request = new H3RequestStream(this, next.value, this.#log, this.#maxFieldSectionSize);
      this.stats.requestStreams++;
      this.#counters.requestStreams.value++;
      this.#serveRequest(request);
    }
  }

  async #serveRequest(request: H3RequestStream): Promise<void> {
    let timedOut = false;
    const cancel = this.#timers.schedule(() => {
      this.#headersTimers.delete(cancel);
      timedOut = true;
      this.stats.headersTimeouts++;
      this.#counters.headersTimeouts.value++;
      this.#log.debug("request stream closed: no HEADERS in time", {
        stream: request.streamId,
        timeoutMs: this.#headersTimeoutMs,
      });
      request.abort();
    }, this.#headersTimeoutMs);
    this.#headersTimers.add(cancel);
    try {
      await request.readHeaders();
    } catch (error) {
      if (!timedOut) this.#streamError(request, error);
      return;
    } finally {
      this.#headersTimers.delete(cancel);
      cancel();
    }
    if (this.#onRequest) this.#onRequest(request);
    else await request.respond(404).catch(() => {});
  }

  #streamError(request: H3RequestStream, error: unknown): void {
    if (error instanceof H3Error && error.connection) {
      this.fail(error);
      return;
    }
    this.#log.debug("request stream error", {
      stream: request.streamId,
      error: errorMessage(error),
    });
    request.abort();
  }

  async #refuseServerBidi(): Promise<void> {
    const reader = this.#conn.incomingBidirectionalStreams.getReader();
    try {
      const next = await reader.read();
      if (!next.done) {
        this.fail(
          new H3Error(
            H3_STREAM_CREATION_ERROR,
            "Server opened a bidirectional stream (RFC 9114 §6.1)",
          ),
        );
      }
    } catch {
      // connection closed
    }
  }

  async #acceptUnidirectional(): Promise<void> {
    const reader = this.#conn.incomingUnidirectionalStreams.getReader();
    for (;;) {
      let next: ReadableStreamReadResult<QuicReceiveStreamLike>;
      try {
        next = await reader.read();
      } catch {
        return;
      }
      if (next.done) return;
      this.#readUnidirectional(next.value).catch((error) => {
        if (error instanceof H3Error) this.fail(error);
        else if (!this.#closing) {
          this.#log.debug("unidirectional stream failed", { error: String(error) });
        }
      });
    }
  }

  async #readUnidirectional(stream: QuicReceiveStreamLike): Promise<void> {
    const reader = new StreamReader(stream);
    const start = await this.#readStreamType(reader);
    if (start === undefined) return; // no type yet: nothing to do (§6.2)
    const type = start.type;
    switch (type) {
      case STREAM_TYPE_CONTROL:
        if (this.#sawControlStream) {
          throw new H3Error(H3_STREAM_CREATION_ERROR, "Peer opened a second control stream");
        }
        this.#sawControlStream = true;
        return await this.#readControl(reader, start);
      case STREAM_TYPE_PUSH:
        // We never send MAX_PUSH_ID, so a push stream is always an error (§4.6, §6.2.2).
        throw new H3Error(
          this.#role === "server" ? H3_STREAM_CREATION_ERROR : H3_ID_ERROR,
          "Peer opened a push stream, which was never allowed",
        );
      case STREAM_TYPE_QPACK_ENCODER:
      case STREAM_TYPE_QPACK_DECODER: {
        const encoder = type === STREAM_TYPE_QPACK_ENCODER;
        if (encoder ? this.#sawEncoderStream : this.#sawDecoderStream) {
          throw new H3Error(
            H3_STREAM_CREATION_ERROR,
            `Peer opened a second QPACK ${encoder ? "encoder" : "decoder"} stream`,
          );
        }
        if (encoder) this.#sawEncoderStream = true;
        else this.#sawDecoderStream = true;
        // With a zero-capacity table almost every instruction is an error
        // (RFC 9204 §4.3, §4.4); the readers keep no bytes across reads.
        const instructions = encoder
          ? new QpackEncoderStreamReader()
          : new QpackDecoderStreamReader();
        instructions.push(start.rest);
        start.rest = EMPTY;
        while (this.#feed(instructions, await reader.read())) {
          // each read goes to the instruction reader
        }
        if (!this.#closing) {
          throw new H3Error(H3_CLOSED_CRITICAL_STREAM, "Peer closed a QPACK stream");
        }
        return;
      }
      default:
        // Unknown or reserved stream type: stop reading it (§6.2, §9).
        await reader.cancel();
    }
  }

  /**
   * Reads a unidirectional stream's type (§6.2), a varint whose bytes are
   * copied out of the reads: a type trickled in byte by byte pins no read
   * buffer, and 8 bytes are reserved in the budget while it is partial.
   * Returns the type and the rest of the last read (to be consumed and
   * dropped by the caller), or undefined when the stream ends first.
   */
  async #readStreamType(
    reader: StreamReader,
  ): Promise<StreamStart | undefined> {
    const start: StreamStart = { type: 0, rest: EMPTY, typeBytes: new Uint8Array(8), have: 0 };
    let reserved = false;
    try {
      while (start.have === 0 || varintSizeFromFirstByte(start.typeBytes[0]) > start.have) {
        if (start.have > 0 && !reserved) {
          this.#budget.reserve(start.typeBytes.length, "a partial stream type");
          reserved = true;
        }
        if (!this.#takeTypeBytes(start, await reader.read())) return undefined;
      }
    } finally {
      if (reserved) this.#budget.release(start.typeBytes.length);
    }
    start.type = decodeVarint(start.typeBytes, 0);
    return start;
  }

  /** Copies type bytes from one read into `start`; false at the end of the stream. */
  #takeTypeBytes(start: StreamStart, read: ReadableStreamReadResult<Uint8Array>): boolean {
    if (read.done) return false;
    const value = read.value;
    if (value.length > 0) this.countStreamRead();
    let i = 0;
    while (
      i < value.length &&
      (start.have === 0 || varintSizeFromFirstByte(start.typeBytes[0]) > start.have)
    ) {
      start.typeBytes[start.have++] = value[i++];
    }
    start.rest = value.subarray(i);
    return true;
  }

  /**
   * Hands one read's bytes to `sink` and counts the read; false at the end
   * of the stream. The read loops call it as `#feed(sink, await read())`
   * on purpose: V8 keeps an async function's locals alive across its next
   * `await`, so a chunk held in a local (a view into the 64 KiB buffer of a
   * QUIC read) would stay pinned while the stream waits.
   */
  #feed(
    sink: { push(chunk: Uint8Array): void },
    read: ReadableStreamReadResult<Uint8Array>,
  ): boolean {
    if (read.done) return false;
    this.countStreamRead();
    sink.push(read.value);
    return true;
  }

  async #readControl(reader: StreamReader, start: StreamStart) {
    // The first frame, even an empty DATA or a reserved one, must be SETTINGS (§6.2.1).
    let firstHeader = true;
    const frames = new FrameReader({
      budget: this.#budget,
      onFrameStart: (type) => {
        if (!firstHeader) return;
        firstHeader = false;
        if (type !== FRAME_SETTINGS) {
          throw new H3Error(
            H3_MISSING_SETTINGS,
            `Peer's control stream began with ${frameTypeName(type)}, not SETTINGS`,
          );
        }
      },
    });
    frames.push(start.rest);
    start.rest = EMPTY;
    let sawSettings = false;
    for (;;) {
      let event: FrameEvent | undefined;
      while ((event = frames.next()) !== undefined) {
        const type = event.kind === "data" ? FRAME_DATA : event.type;
        if (!sawSettings) {
          // onFrameStart made sure this first event is the SETTINGS frame.
          sawSettings = true;
          const settings = parseSettingsPayload((event as { payload: Uint8Array }).payload);
          this.#sawSettings = true;
          this.#cancelSettingsTimer?.();
          this.#cancelSettingsTimer = undefined;
          this.#log.debug("peer SETTINGS", {
            settings: [...settings].map(([k, v]) => `${hexCode(k)}=${v}`).join(","),
          });
          this.#resolvePeerSettings(settings);
          continue;
        }
        switch (type) {
          case FRAME_GOAWAY: {
            const payload = (event as { payload: Uint8Array }).payload;
            const id = parseGoawayPayload(payload);
            // From a server the id is a client-initiated bidirectional stream
            // (a multiple of 4); from a client it is a push id, any value
            // (§5.2). The varint's last byte holds its two low bits exactly.
            if (this.#role === "client" && (payload[payload.length - 1] & 0x03) !== 0) {
              throw new H3Error(
                H3_ID_ERROR,
                `GOAWAY id ${id} is not a client-initiated bidirectional stream`,
              );
            }
            if (this.#goawayId !== undefined && id > this.#goawayId) {
              throw new H3Error(
                H3_ID_ERROR,
                `GOAWAY id ${id} larger than previous ${this.#goawayId}`,
              );
            }
            this.#goawayId = id;
            this.#log.info("peer sent GOAWAY", { id });
            for (const handler of this.#goawayHandlers) handler(id);
            break;
          }
          case FRAME_CANCEL_PUSH:
          case FRAME_MAX_PUSH_ID:
            if (type === FRAME_MAX_PUSH_ID && this.#role === "client") {
              throw new H3Error(H3_FRAME_UNEXPECTED, "Server sent MAX_PUSH_ID");
            }
            break;
          default:
            throw new H3Error(
              H3_FRAME_UNEXPECTED,
              `Unexpected ${frameTypeName(type)} frame on the control stream`,
            );
        }
      }
      if (!this.#feed(frames, await reader.read())) {
        frames.clear();
        if (this.#closing) return;
        throw new H3Error(H3_CLOSED_CRITICAL_STREAM, "Peer closed its control stream");
      }
    }
  }
}

/** A unidirectional stream's type and the bytes that followed it in the same read. */
interface StreamStart {
  type: number;
  /** The rest of the read that completed the type; the reader drops it once consumed. */
  rest: Uint8Array;
  readonly typeBytes: Uint8Array;
  have: number;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function hexCode(code: number): string {
  return `0x${code.toString(16)}`;
}
