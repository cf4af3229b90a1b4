/**
 * A CONNECT-IP session (RFC 9484) on an HTTP/3 request stream: opening it
 * (client), answering it (server), and moving IP packets and capsules.
 *
 * Packets travel in one of two modes:
 * - `"datagram"`: each IP packet is an HTTP Datagram (RFC 9297 §2) with
 *   context id 0 (RFC 9484 §6) in a QUIC DATAGRAM frame: unreliable,
 *   unordered, no head-of-line blocking; limited by the QUIC datagram size.
 * - `"stream"`: each IP packet is a DATAGRAM capsule (RFC 9297 §3.5) on the
 *   request stream: reliable and ordered, up to 65535 bytes.
 *
 * A side sends in datagram mode only when the peer's SETTINGS_H3_DATAGRAM
 * is 1; a client in stream mode advertises 0, so the relay answers with
 * capsules. Both modes are always accepted on receipt.
 *
 * @module
 */

import { CapsuleError, errorMessage, H3Error } from "../errors.ts";
import type { H3RequestStream } from "../h3/request_stream.ts";
import type { H3Connection } from "../h3/connection.ts";
import { SETTINGS_ENABLE_CONNECT_PROTOCOL, SETTINGS_H3_DATAGRAM } from "../h3/settings.ts";
import type { Logger } from "../log.ts";
import { nullLogger } from "../log.ts";
import {
  CapsuleParser,
  datagramCapsuleHeaderSize,
  encodeCapsule,
  writeDatagramCapsuleHeader,
} from "./capsule.ts";
import type { Capsule } from "./capsule.ts";
import {
  buildConnectIpRequest,
  buildConnectIpResponse,
  isCapsuleProtocolEnabled,
  parseConnectIpRequest,
} from "./connect_ip_request.ts";
import type { ConnectIpScope } from "./connect_ip_request.ts";
import {
  CONTEXT_ID_IP_PACKET,
  contextIdSize,
  httpDatagramHeaderSize,
  MALFORMED_CONTEXT_ID,
  parseContextId,
  writeHttpDatagramHeader,
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

/** Counters of one session. */
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

/** Options of the {@linkcode ConnectIpSession} constructor. */
export interface ConnectIpSessionOptions {
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
 * One CONNECT-IP session. Call {@linkcode run} with handlers to receive;
 * {@linkcode sendPacket} and {@linkcode sendCapsule} to send.
 */
export class ConnectIpSession {
  readonly #stream: H3RequestStream;
  readonly #mode: PacketMode;
  readonly #log: Logger;
  readonly #maxCapsuleSize?: number;
  readonly #maxPacketsQueued: number;
  /** Stream mode: packet writes that have not settled yet. */
  #packetsQueued = 0;
  /**
   * Datagram mode: where a packet without headroom is put behind its HTTP
   * Datagram header. Reused for every such packet: `sendRawDatagram` is done
   * with the bytes when it returns (see `QuicConnLike.sendDatagram`).
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

  constructor(stream: H3RequestStream, options: ConnectIpSessionOptions) {
    this.#stream = stream;
    this.#mode = options.mode;
    this.#log = options.log ?? nullLogger;
    this.#maxCapsuleSize = options.maxCapsuleSize;
    this.#maxPacketsQueued = options.maxPacketsQueued ?? DEFAULT_MAX_PACKETS_QUEUED;
    stream.onDatagram((payload) => this.#receiveDatagramPayload(payload));
  }

  /** The mode this side sends in. */
  get mode(): PacketMode {
    return this.#mode;
  }

  /** The request stream carrying the session. */
  get stream(): H3RequestStream {
    return this.#stream;
  }

  /**
   * The largest IP packet that {@linkcode sendPacket} can send now, bytes:
   * the QUIC datagram limit minus the quarter stream id and context id in
   * datagram mode, 65535 in stream mode.
   */
  get maxPacketSize(): number {
    if (this.#mode === "stream") return 65535;
    const header = httpDatagramHeaderSize(this.#stream.quarterStreamId, CONTEXT_ID_IP_PACKET);
    return Math.max(0, this.#stream.connection.maxDatagramSize - header);
  }

  /** Whether the session has ended. */
  get closed(): boolean {
    return this.#closed;
  }

  #receiveDatagramPayload(payload: Uint8Array): void {
    const contextId = parseContextId(payload);
    if (contextId === MALFORMED_CONTEXT_ID) {
      this.stats.malformed++;
      return;
    }
    if (contextId !== CONTEXT_ID_IP_PACKET) {
      this.stats.unknownContext++;
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
   * unsettled (counted in `stats.queueFull`), in datagram mode as
   * `H3Connection.sendRawDatagram` decides. Never throws.
   *
   * @param headroom bytes in front of `packet` in its buffer that this call
   *   may overwrite (a TUN ring slot's headroom, see
   *   {@linkcode MAX_DATAGRAM_HEADROOM}). In datagram mode, when they hold
   *   the HTTP Datagram header, the header is written there and the
   *   datagram sent from the packet's own buffer; otherwise the packet is
   *   copied behind the header into a buffer the session reuses. Either way
   *   nothing is allocated per packet but a view. Default 0.
   */
  sendPacket(packet: Uint8Array, headroom = 0): SendResult {
    if (this.#closed || !this.#stream.writable) return "closed";
    if (packet.length > this.maxPacketSize) {
      this.stats.tooBig++;
      return "too_big";
    }
    if (this.#mode === "datagram") {
      // quarter stream id, context id 0, then the packet (RFC 9484 §6)
      const qsid = this.#stream.quarterStreamId;
      const header = httpDatagramHeaderSize(qsid, CONTEXT_ID_IP_PACKET);
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
      writeHttpDatagramHeader(datagram, 0, qsid, CONTEXT_ID_IP_PACKET);
      if (!this.#stream.connection.sendRawDatagram(datagram)) return "closed";
    } else {
      if (this.#packetsQueued >= this.#maxPacketsQueued) {
        this.stats.queueFull++;
        return "sent";
      }
      // DATAGRAM capsule: type, length, context id 0, then the packet
      const header = datagramCapsuleHeaderSize(packet.length + 1);
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
      budget: this.#stream.connection.bufferBudget,
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
      if (error instanceof H3Error && error.connection) {
        this.#stream.connection.fail(error);
      } else if (error instanceof CapsuleError) {
        this.#log.warn("malformed capsule, closing session", { error: message });
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

  /** Ends the session: FIN on the request stream, no more datagrams. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#stream.end();
  }
}

/** A relay refused or failed a connect-ip request. */
export class ConnectIpError extends Error {
  /** The HTTP status the relay answered, when it answered. */
  readonly status?: number;
  constructor(message: string, status?: number) {
    super(message);
    this.name = "ConnectIpError";
    this.status = status;
  }
}

/** Options of {@linkcode openConnectIpSession}. */
export interface OpenConnectIpOptions {
  /** `:authority` of the request, e.g. `relay.example:443`. */
  readonly authority: string;
  /** `:path` expanded from the URI template. */
  readonly path: string;
  readonly mode: PacketMode;
  readonly log?: Logger;
}

/**
 * Client side: waits for the relay's SETTINGS, checks that it enables
 * extended CONNECT (RFC 9220 §3) and, in datagram mode, HTTP Datagrams
 * (RFC 9297 §2.1.1), sends the connect-ip request (RFC 9484 §4) and waits
 * for a 2xx. Throws {@linkcode ConnectIpError} with a clear message.
 */
export async function openConnectIpSession(
  h3: H3Connection,
  options: OpenConnectIpOptions,
): Promise<ConnectIpSession> {
  let settings;
  try {
    settings = await h3.peerSettings;
  } catch (error) {
    throw new ConnectIpError(
      `Cannot open connect-ip session: no SETTINGS from the relay (${errorMessage(error)})`,
    );
  }
  if (settings.get(SETTINGS_ENABLE_CONNECT_PROTOCOL) !== 1) {
    throw new ConnectIpError(
      "Cannot open connect-ip session: the relay does not enable extended CONNECT " +
        "(SETTINGS_ENABLE_CONNECT_PROTOCOL is not 1)",
    );
  }
  const datagrams = settings.get(SETTINGS_H3_DATAGRAM) === 1;
  if (options.mode === "datagram" && !datagrams) {
    throw new ConnectIpError(
      "Cannot open connect-ip session in datagram mode: the relay does not enable HTTP " +
        "Datagrams (SETTINGS_H3_DATAGRAM is not 1); try --mode stream",
    );
  }
  let stream: H3RequestStream;
  let status: number;
  try {
    stream = await h3.request(
      buildConnectIpRequest({ authority: options.authority, path: options.path }),
    );
    status = await stream.readResponse();
  } catch (error) {
    throw new ConnectIpError(`Cannot open connect-ip session: ${errorMessage(error)}`);
  }
  if (status < 200 || status >= 300) {
    stream.abort();
    throw new ConnectIpError(
      `Cannot open connect-ip session: the relay answered ${status}`,
      status,
    );
  }
  if (!isCapsuleProtocolEnabled(stream.headers)) {
    stream.abort();
    throw new ConnectIpError(
      "Cannot open connect-ip session: the response lacks capsule-protocol: ?1",
      status,
    );
  }
  return new ConnectIpSession(stream, { mode: options.mode, log: options.log });
}

/**
 * What the server's `authorize` callback decides for a parsed request. A
 * refusal's `reason` becomes the response body (default "request refused").
 */
export type AuthorizeResult = { readonly accept: true } | {
  readonly accept: false;
  readonly status: number;
  readonly reason?: string;
};

/** Options of {@linkcode answerRequest}. */
export interface AnswerRequestOptions {
  /** URI template the relay serves (default RFC 9484's well-known path). */
  readonly template?: string;
  /** The authority the relay answers for; other authorities get 400. */
  readonly authority?: string;
  /** Decides whether a well-formed connect-ip request is served. */
  readonly authorize?: (scope: ConnectIpScope, request: H3RequestStream) => AuthorizeResult;
  readonly log?: Logger;
}

/** The outcome of {@linkcode answerRequest}. */
export type AnswerResult =
  | { readonly session: ConnectIpSession; readonly scope: ConnectIpScope }
  | { readonly session: undefined; readonly status: number; readonly reason: string };

/**
 * Server side: answers one request. A valid connect-ip request that
 * `authorize` accepts gets 200 with `capsule-protocol: ?1` and becomes a
 * session. Anything else gets a proper HTTP/3 response, checked in this
 * order: 400 for a malformed message whatever its method (RFC 9114 §4.1.2,
 * §4.3.1: bad field names or values, misplaced or missing pseudo-headers, a
 * plain CONNECT with `:scheme` or `:path` per §4.4); 405 for a plain CONNECT;
 * 404 for other methods; then the status from the request parser (400, 501)
 * or from `authorize` for bad or refused connect-ip requests.
 *
 * A valid connect-ip request waits for the peer's SETTINGS (they decide the
 * packet mode) before `authorize` is called, so nothing is reserved for a
 * peer that has not sent them; if the connection closes first (for example
 * at its SETTINGS time limit), the stream is abandoned and this rejects.
 */
export async function answerRequest(
  request: H3RequestStream,
  options: AnswerRequestOptions = {},
): Promise<AnswerResult> {
  const method = request.header(":method");
  const protocol = request.header(":protocol");
  const refuse = async (status: number, reason: string): Promise<AnswerResult> => {
    await request.respond(status, [["content-type", "text/plain"]], `${reason}\n`)
      .catch(() => {});
    return { session: undefined, status, reason };
  };
  if (method === "CONNECT" && protocol === undefined) {
    // RFC 9114 §4.4: a plain CONNECT carries neither :scheme nor :path.
    if (request.header(":scheme") !== undefined || request.header(":path") !== undefined) {
      return await refuse(400, "malformed CONNECT: :scheme and :path without :protocol");
    }
  }
  // The parser checks every field line before it looks at the method, so a
  // 400 from it is a malformed message, which wins over 404 and 405.
  const parsed = parseConnectIpRequest(request.headers, {
    template: options.template,
    authority: options.authority,
  });
  if (!parsed.ok && parsed.status === 400) return await refuse(400, parsed.reason);
  if (method === "CONNECT" && protocol === undefined) {
    return await refuse(405, "plain CONNECT is not supported; use connect-ip");
  }
  if (method !== "CONNECT") {
    // RFC 9114 §4.3.1: other requests need a non-empty :scheme and :path.
    if (!request.header(":scheme") || !request.header(":path")) {
      return await refuse(400, "malformed request: missing :scheme or :path");
    }
    return await refuse(404, "not found");
  }
  if (!parsed.ok) return await refuse(parsed.status, parsed.reason);
  // Nothing is reserved for a peer whose SETTINGS have not arrived: authorize
  // runs only after them. The wait is bounded by the connection's SETTINGS
  // time limit, which closes the connection and rejects peerSettings.
  let settings;
  try {
    settings = await request.connection.peerSettings;
  } catch (error) {
    request.abort();
    throw new Error(`Cannot answer request: no SETTINGS from the peer (${errorMessage(error)})`);
  }
  const decision = options.authorize?.(parsed.scope, request) ?? { accept: true };
  if (!decision.accept) {
    return await refuse(decision.status, decision.reason ?? "request refused");
  }
  const mode: PacketMode = settings.get(SETTINGS_H3_DATAGRAM) === 1 ? "datagram" : "stream";
  // The session registers for datagrams before the 200 lets the client send.
  const session = new ConnectIpSession(request, { mode, log: options.log });
  await request.writeHeaders(buildConnectIpResponse(200));
  return { session, scope: parsed.scope };
}
