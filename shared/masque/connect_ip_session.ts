/**
 * A CONNECT-IP session (RFC 9484): IP packets and capsules on the stream of
 * an accepted request, through the {@linkcode ConnectStream} seam, so the
 * same session runs over any transport that implements it (HTTP/3 today:
 * `shared/masque/h3_connect_ip.ts` opens and answers requests).
 *
 * Packets travel in one of two modes:
 * - `"datagram"`: each IP packet is an HTTP Datagram (RFC 9297 §2) with
 *   context id 0 (RFC 9484 §6): unreliable, unordered, no head-of-line
 *   blocking; limited by the transport's datagram size.
 * - `"stream"`: each IP packet is a DATAGRAM capsule (RFC 9297 §3.5) on the
 *   request stream: reliable and ordered, up to 65535 bytes.
 *
 * The mode this side sends in is decided outside the session (over HTTP/3,
 * from the peer's SETTINGS_H3_DATAGRAM) and passed in. Both modes are
 * always accepted on receipt when the transport has datagrams.
 *
 * @module
 */

import { counterByLabel, CounterRegistry } from "../counters.ts";
import type { Counter } from "../counters.ts";
import { CapsuleError, errorMessage } from "../errors.ts";
import { encodeVarintInto, varintSize } from "../h3/varint.ts";
import type { Logger } from "../log.ts";
import { nullLogger } from "../log.ts";
import {
  CapsuleParser,
  datagramCapsuleHeaderSize,
  encodeCapsule,
  writeDatagramCapsuleHeader,
} from "./capsule.ts";
import type { Capsule } from "./capsule.ts";
import type { ConnectStream, DatagramChannel } from "./connect_stream.ts";
import {
  CONTEXT_ID_IP_PACKET,
  contextIdSize,
  MALFORMED_CONTEXT_ID,
  parseContextId,
} from "./http_datagram.ts";

const EMPTY_SCRATCH = new Uint8Array(0);
/** Smallest datagram scratch buffer, bytes: a full-size Ethernet packet and any header. */
const MIN_SCRATCH_BYTES = 2048;
/**
 * The most bytes an HTTP Datagram header for IP packets takes: a quarter
 * stream id (a varint of up to 8 bytes) and context id 0 (1 byte), rounded
 * up to 16. A TUN that leaves this much headroom in front of each packet
 * lets {@linkcode ConnectIpSession.sendPacket} send it without a copy.
 */
export const MAX_DATAGRAM_HEADROOM = 16;
/** Bytes of context id 0 in front of an IP packet (a one-byte varint). */
const IP_CONTEXT_ID_SIZE = varintSize(CONTEXT_ID_IP_PACKET);

/** How IP packets are carried; see the module docs. */
export type PacketMode = "datagram" | "stream";

/**
 * What {@linkcode ConnectIpSession.sendPacket} did with a packet. `"sent"`
 * includes a packet dropped at a full send queue (as a router drops): the
 * session is still open and the caller goes on with the next packet.
 */
export type SendResult = "sent" | "too_big" | "closed";

/**
 * Default {@linkcode ConnectIpSessionOptions.maxPacketsQueued}: stream-mode
 * packets written to the request stream whose write has not settled yet.
 * A write waits while QUIC flow or congestion control holds the stream, and
 * nothing else bounds the writes queued behind it, so a sender faster than
 * the path would queue without limit (seconds of delay, hundreds of MiB).
 * Past this many the newest packet is dropped instead, as a router drops at
 * a full queue, and the tunnelled TCP backs off. Writes made in the current
 * turn of the event loop count too (their promises settle only after it),
 * and one turn can carry several TUN batches of 256. The same number as the
 * datagram-mode bound, `DEFAULT_MAX_DATAGRAMS_QUEUED` in `h3/connection.ts`
 * (see there why); at a 1500-byte MTU it holds about 3 MiB.
 */
export const DEFAULT_MAX_PACKETS_QUEUED = 2048;

/**
 * One session's own figures, for its entry in the relay's status and its
 * log lines. Process-wide totals are in the counter registry: packets and
 * bytes in the pump's counters (`shared/tunnel/pump.ts`), capsules and
 * dropped datagrams in {@linkcode SessionCounters}.
 */
export interface ConnectIpSessionStats {
  packetsIn: number;
  packetsOut: number;
  bytesIn: number;
  bytesOut: number;
  capsulesIn: number;
  capsulesOut: number;
  /** Packets larger than the datagram limit (answered with Packet Too Big by the caller). */
  tooBig: number;
  /** HTTP Datagrams with a context id we do not know (RFC 9484 §6: dropped). */
  unknownContext: number;
  /** Datagrams whose context id could not be parsed. */
  malformed: number;
  /**
   * Stream mode: packets dropped because
   * {@linkcode ConnectIpSessionOptions.maxPacketsQueued} writes were already
   * waiting on the request stream (datagram mode counts its drops in the
   * connection's `datagramsQueueFull`).
   */
  queueFull: number;
}

/**
 * The process-wide counters sessions add to, resolved once from a
 * {@linkcode CounterRegistry}: capsules each way, and datagrams or packets
 * a session dropped (an unknown or malformed context id, RFC 9484 §6; a
 * full stream-mode send queue).
 */
export class SessionCounters {
  readonly capsulesIn: Counter;
  readonly capsulesOut: Counter;
  readonly unknownContext: Counter;
  readonly malformedContext: Counter;
  readonly queueFull: Counter;

  constructor(registry: CounterRegistry) {
    const capsules = counterByLabel(
      registry,
      "session_capsules_total",
      "Capsules received from and sent to peers on CONNECT-IP request streams",
      "direction",
      ["received", "sent"],
    );
    this.capsulesIn = capsules.received;
    this.capsulesOut = capsules.sent;
    const dropped = counterByLabel(
      registry,
      "session_packets_dropped_total",
      "Packets sessions dropped: an unknown or malformed context id (received), " +
        "a full stream-mode send queue (sent)",
      "reason",
      ["unknown context", "malformed context", "queue full"],
    );
    this.unknownContext = dropped["unknown context"];
    this.malformedContext = dropped["malformed context"];
    this.queueFull = dropped["queue full"];
  }
}

/** Options of the {@linkcode ConnectIpSession} constructor. */
export interface ConnectIpSessionOptions {
  /** The mode this side sends in; `"datagram"` needs a stream with datagrams. */
  readonly mode: PacketMode;
  readonly log?: Logger;
  /** Largest capsule accepted from the peer, bytes (see `CapsuleParser`). */
  readonly maxCapsuleSize?: number;
  /**
   * Stream mode: packets whose write to the request stream may be
   * unsettled at once before further packets are dropped; default
   * {@linkcode DEFAULT_MAX_PACKETS_QUEUED}.
   */
  readonly maxPacketsQueued?: number;
  /**
   * Stream mode: a packet is dropped when this many bytes already wait in
   * the transport's write buffer (`ConnectStream.queuedBytes`; transports
   * that cannot tell are bounded by {@linkcode maxPacketsQueued} only).
   * Default: no byte bound. Over TCP every byte queued is delay for every
   * packet behind it, so HTTP/2 sets one.
   */
  readonly maxBytesQueued?: number;
  /** The process's counters (default: counters of this session's own). */
  readonly counters?: SessionCounters;
}

/** Callbacks of a running session. */
export interface ConnectIpSessionHandlers {
  /** An IP packet from the peer. The array may be reused after the call. */
  onPacket(packet: Uint8Array): void;
  /** ADDRESS_ASSIGN, ADDRESS_REQUEST and ROUTE_ADVERTISEMENT capsules. */
  onCapsule?(capsule: Capsule): void;
}

/** Why a session ended. */
export interface SessionEnd {
  /** `"closed"`: the peer ended the stream; `"error"`: a protocol error ended it. */
  readonly reason: "closed" | "error";
  readonly message: string;
}

/**
 * One CONNECT-IP session on a {@linkcode ConnectStream} of type `S` (which
 * {@linkcode stream} returns as such, so a caller that made it keeps its
 * transport's own API). Call {@linkcode run} with handlers to receive;
 * {@linkcode sendPacket} and {@linkcode sendCapsule} to send.
 */
export class ConnectIpSession<S extends ConnectStream = ConnectStream> {
  readonly #stream: S;
  readonly #datagrams: DatagramChannel | undefined;
  readonly #mode: PacketMode;
  readonly #log: Logger;
  readonly #maxCapsuleSize?: number;
  readonly #maxPacketsQueued: number;
  readonly #maxBytesQueued: number;
  readonly #counters: SessionCounters;
  /** Stream mode: packet writes that have not settled yet. */
  #packetsQueued = 0;
  /**
   * Datagram mode: where a packet without headroom is put behind its HTTP
   * Datagram header. Reused for every such packet: `DatagramChannel.send`
   * is done with the bytes when it returns.
   */
  #scratch = EMPTY_SCRATCH;
  readonly #packetWritten = () => {
    this.#packetsQueued--;
  };
  readonly #packetWriteFailed = () => {
    this.#packetsQueued--;
    this.#closed = true;
  };
  /** Capsule writes ({@linkcode sendCapsule}) that have not settled yet. */
  #capsulesQueued = 0;
  #handlers: ConnectIpSessionHandlers | undefined;
  #closed = false;
  /** Counters, updated as the session runs. */
  readonly stats: ConnectIpSessionStats = {
    packetsIn: 0,
    packetsOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    capsulesIn: 0,
    capsulesOut: 0,
    tooBig: 0,
    unknownContext: 0,
    malformed: 0,
    queueFull: 0,
  };

  /**
   * Starts receiving the stream's datagrams at once (before a server's 2xx
   * lets the client send). Throws when `options.mode` is `"datagram"` and
   * the stream has no datagrams.
   */
  constructor(stream: S, options: ConnectIpSessionOptions) {
    this.#stream = stream;
    this.#datagrams = stream.datagrams;
    this.#mode = options.mode;
    if (this.#mode === "datagram" && this.#datagrams === undefined) {
      throw new Error("Cannot run a session in datagram mode: the transport has no datagrams");
    }
    this.#log = options.log ?? nullLogger;
    this.#maxCapsuleSize = options.maxCapsuleSize;
    this.#maxPacketsQueued = options.maxPacketsQueued ?? DEFAULT_MAX_PACKETS_QUEUED;
    this.#maxBytesQueued = options.maxBytesQueued ?? Infinity;
    this.#counters = options.counters ?? new SessionCounters(new CounterRegistry());
    this.#datagrams?.onDatagram((payload) => this.#receiveDatagramPayload(payload));
  }

  /** The mode this side sends in. */
  get mode(): PacketMode {
    return this.#mode;
  }

  /** The stream carrying the session. */
  get stream(): S {
    return this.#stream;
  }

  /**
   * The largest IP packet that {@linkcode sendPacket} can send now, bytes:
   * the datagram payload limit minus the context id in datagram mode (over
   * HTTP/3: the QUIC datagram limit minus the quarter stream id and context
   * id), 65535 in stream mode.
   */
  get maxPacketSize(): number {
    if (this.#datagrams === undefined || this.#mode === "stream") return 65535;
    return Math.max(0, this.#datagrams.maxPayloadSize - IP_CONTEXT_ID_SIZE);
  }

  /** Whether the session has ended. */
  get closed(): boolean {
    return this.#closed;
  }

  #receiveDatagramPayload(payload: Uint8Array): void {
    const contextId = parseContextId(payload);
    if (contextId === MALFORMED_CONTEXT_ID) {
      this.stats.malformed++;
      this.#counters.malformedContext.value++;
      return;
    }
    if (contextId !== CONTEXT_ID_IP_PACKET) {
      this.stats.unknownContext++;
      this.#counters.unknownContext.value++;
      return;
    }
    const packet = payload.subarray(contextIdSize(payload));
    this.stats.packetsIn++;
    this.stats.bytesIn += packet.length;
    this.#handlers?.onPacket(packet);
  }

  /**
   * Sends one IP packet in this session's mode. Returns `"too_big"` when it
   * exceeds {@linkcode maxPacketSize} (RFC 9484 §10.1: the caller answers
   * with ICMP Packet Too Big), `"closed"` when the session has ended.
   * When the send queue is full the packet is dropped and `"sent"` returned
   * all the same: in stream mode when
   * {@linkcode ConnectIpSessionOptions.maxPacketsQueued} writes are
   * unsettled or {@linkcode ConnectIpSessionOptions.maxBytesQueued} bytes
   * wait in the transport (counted in `stats.queueFull`), in datagram mode as the
   * transport's {@linkcode DatagramChannel.send} decides. Never throws.
   *
   * @param headroom bytes in front of `packet` in its buffer that this call
   *   may overwrite (a TUN ring slot's headroom, see
   *   {@linkcode MAX_DATAGRAM_HEADROOM}). In datagram mode the datagram is
   *   `prefix | context id | packet`, the prefix being the transport's
   *   (`DatagramChannel.prefixLength`, filled in place by `send`): when the
   *   headroom holds prefix and context id they are written there and the
   *   datagram sent from the packet's own buffer; otherwise the packet is
   *   copied behind them into a buffer the session reuses. Either way
   *   nothing is allocated per packet but a view. Default 0.
   */
  sendPacket(packet: Uint8Array, headroom = 0): SendResult {
    if (this.#closed || !this.#stream.writable) return "closed";
    if (packet.length > this.maxPacketSize) {
      this.stats.tooBig++;
      return "too_big";
    }
    const datagrams = this.#datagrams;
    if (this.#mode === "datagram" && datagrams !== undefined) {
      // the transport's prefix, context id 0, then the packet (RFC 9484 §6)
      const header = datagrams.prefixLength + IP_CONTEXT_ID_SIZE;
      let datagram: Uint8Array;
      if (headroom >= header && packet.byteOffset >= header) {
        datagram = new Uint8Array(
          packet.buffer,
          packet.byteOffset - header,
          header + packet.length,
        );
      } else {
        if (this.#scratch.length < header + packet.length) {
          this.#scratch = new Uint8Array(Math.max(MIN_SCRATCH_BYTES, header + packet.length));
        }
        this.#scratch.set(packet, header);
        datagram = this.#scratch.subarray(0, header + packet.length);
      }
      encodeVarintInto(datagram, datagrams.prefixLength, CONTEXT_ID_IP_PACKET);
      const sent = datagrams.send(datagram);
      if (sent !== "sent") {
        // too_big: the limit shrank since maxPacketSize was read (path MTU)
        if (sent === "too_big") this.stats.tooBig++;
        return sent;
      }
    } else {
      // DATAGRAM capsule: type, length, context id 0, then the packet
      const header = datagramCapsuleHeaderSize(packet.length + 1);
      if (
        this.#packetsQueued >= this.#maxPacketsQueued ||
        (this.#stream.queuedBytes ?? 0) + header + 1 + packet.length > this.#maxBytesQueued
      ) {
        this.stats.queueFull++;
        this.#counters.queueFull.value++;
        return "sent";
      }
      const capsule = new Uint8Array(header + 1 + packet.length);
      writeDatagramCapsuleHeader(capsule, 0, packet.length + 1);
      capsule[header] = CONTEXT_ID_IP_PACKET;
      capsule.set(packet, header + 1);
      this.#packetsQueued++;
      this.#stream.writeData(capsule).then(this.#packetWritten, this.#packetWriteFailed);
    }
    this.stats.packetsOut++;
    this.stats.bytesOut += packet.length;
    return "sent";
  }

  /**
   * Sends a capsule on the request stream. Never dropped, whatever the
   * packet queue holds: these carry addresses and routes (RFC 9484 §4.7).
   */
  async sendCapsule(capsule: Capsule): Promise<void> {
    this.stats.capsulesOut++;
    this.#counters.capsulesOut.value++;
    this.#capsulesQueued++;
    try {
      await this.#stream.writeData(encodeCapsule(capsule));
    } finally {
      this.#capsulesQueued--;
    }
  }

  /**
   * Capsules passed to {@linkcode sendCapsule} whose write has not settled:
   * still waiting behind earlier writes, or for QUIC flow control because
   * the peer does not read. Stream-mode packets are not counted (see
   * {@linkcode ConnectIpSessionOptions.maxPacketsQueued}).
   */
  get pendingCapsuleWrites(): number {
    return this.#capsulesQueued;
  }

  /**
   * Reads capsules until the peer ends the stream or sends something
   * malformed (which ends only this session, RFC 9297 §3.3), and resolves
   * with why it ended. Never rejects.
   */
  async run(handlers: ConnectIpSessionHandlers): Promise<SessionEnd> {
    this.#handlers = handlers;
    // A partial capsule kept between reads counts in the connection's budget.
    const parser = new CapsuleParser({
      maxCapsuleSize: this.#maxCapsuleSize,
      budget: this.#stream.bufferBudget,
    });
    try {
      // Not `for await`: its loop variable would pin each chunk's read buffer
      // while the next read waits; #receiveBody takes the chunk instead.
      const body = this.#stream.readBody();
      while (this.#receiveBody(parser, await body.next())) {
        // each chunk is parsed in #receiveBody
      }
      parser.finish(); // throws when the stream ended inside a capsule (RFC 9297 §3.3)
      return this.#end({ reason: "closed", message: "peer ended the stream" });
    } catch (error) {
      const message = errorMessage(error);
      if (error instanceof CapsuleError) {
        this.#log.warn("malformed capsule, closing session", { error: message });
      } else {
        // The transport closes its connection if this is a connection error.
        this.#stream.fail(error);
      }
      return this.#end({ reason: "error", message });
    } finally {
      parser.clear();
    }
  }

  /** Parses one chunk of the body into capsules; false at the end of the body. */
  #receiveBody(parser: CapsuleParser, read: IteratorResult<Uint8Array>): boolean {
    if (read.done) return false;
    parser.push(read.value);
    let capsule: Capsule | undefined;
    while ((capsule = parser.next()) !== undefined) this.#receiveCapsule(capsule);
    return true;
  }

  #receiveCapsule(capsule: Capsule): void {
    this.stats.capsulesIn++;
    this.#counters.capsulesIn.value++;
    if (capsule.type === "datagram") {
      this.#receiveDatagramPayload(capsule.payload);
    } else {
      this.#handlers?.onCapsule?.(capsule);
    }
  }

  #end(end: SessionEnd): SessionEnd {
    this.#closed = true;
    this.#stream.abort();
    return end;
  }

  /** Ends the session: FIN on the stream, no more datagrams. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#stream.end();
  }
}
