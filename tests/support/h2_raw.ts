/**
 * A raw HTTP/2 client for hostile tests: TLS with ALPN h2 to 127.0.0.1,
 * frames built by hand (RFC 9113 §4.1) and header blocks as HPACK literals
 * without indexing or Huffman (RFC 7541 §6.2.2), so a test can do what
 * `node:http2`'s client never would: ignore the stream limit, reset
 * streams at once, send a header list past the limit, never open its
 * window. Test code only; the product uses `node:http2`.
 *
 * @module
 */

/** Frame types (RFC 9113 §6). */
export const FRAME = {
  DATA: 0x0,
  HEADERS: 0x1,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

/** Flags. */
export const END_STREAM = 0x1;
export const END_HEADERS = 0x4;

/** One frame: 9-byte header then the payload. */
export function frame(
  type: number,
  flags: number,
  stream: number,
  payload: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(9 + payload.length);
  out[0] = (payload.length >> 16) & 0xff;
  out[1] = (payload.length >> 8) & 0xff;
  out[2] = payload.length & 0xff;
  out[3] = type;
  out[4] = flags;
  new DataView(out.buffer).setUint32(5, stream & 0x7fffffff);
  out.set(payload, 9);
  return out;
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefix: number, first: number): number[] {
  const max = (1 << prefix) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  value -= max;
  while (value >= 128) {
    out.push((value & 127) | 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

/** A header block of literals without indexing, new names, no Huffman (RFC 7541 §6.2.2). */
export function headerBlock(headers: readonly (readonly [string, string])[]): Uint8Array {
  const encoder = new TextEncoder();
  const out: number[] = [];
  for (const [name, value] of headers) {
    const n = encoder.encode(name);
    const v = encoder.encode(value);
    out.push(0x00, ...hpackInt(n.length, 7, 0));
    for (const byte of n) out.push(byte);
    out.push(...hpackInt(v.length, 7, 0));
    for (const byte of v) out.push(byte);
  }
  return new Uint8Array(out);
}

/** The request headers of a connect-ip extended CONNECT (RFC 8441, RFC 9484). */
export function connectIpHeaders(path = "/.well-known/masque/ip/*/*/"): [string, string][] {
  return [
    [":method", "CONNECT"],
    [":protocol", "connect-ip"],
    [":scheme", "https"],
    [":authority", "localhost"],
    [":path", path],
    ["capsule-protocol", "?1"],
  ];
}

/** A frame read back. */
export interface RawFrame {
  readonly type: number;
  readonly flags: number;
  readonly stream: number;
  readonly payload: Uint8Array;
}

/** A raw HTTP/2 connection; see the module docs. */
export class RawH2 {
  readonly #conn: Deno.TlsConn;
  #buffer = new Uint8Array(0);
  #closed = false;
  /** Every frame read so far. */
  readonly frames: RawFrame[] = [];

  private constructor(conn: Deno.TlsConn) {
    this.#conn = conn;
    this.#read();
  }

  /** TLS with ALPN h2 to 127.0.0.1:`port`, the preface and an empty SETTINGS. */
  static async connect(
    port: number,
    caPem: string,
    settings: Uint8Array = new Uint8Array(0),
  ): Promise<RawH2> {
    const conn = await Deno.connectTls({
      hostname: "127.0.0.1",
      port,
      caCerts: [caPem],
      alpnProtocols: ["h2"],
    });
    const h2 = new RawH2(conn);
    await h2.write(new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    await h2.write(frame(FRAME.SETTINGS, 0, 0, settings));
    return h2;
  }

  async #read(): Promise<void> {
    const chunk = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        const joined = new Uint8Array(this.#buffer.length + n);
        joined.set(this.#buffer);
        joined.set(chunk.subarray(0, n), this.#buffer.length);
        let at = 0;
        while (at + 9 <= joined.length) {
          const length = (joined[at] << 16) | (joined[at + 1] << 8) | joined[at + 2];
          if (at + 9 + length > joined.length) break;
          this.frames.push({
            type: joined[at + 3],
            flags: joined[at + 4],
            stream: new DataView(joined.buffer, at + 5, 4).getUint32(0) & 0x7fffffff,
            payload: joined.slice(at + 9, at + 9 + length),
          });
          // Acknowledge SETTINGS, as a peer must (RFC 9113 §6.5.3).
          if (joined[at + 3] === FRAME.SETTINGS && (joined[at + 4] & 1) === 0) {
            this.write(frame(FRAME.SETTINGS, 1, 0, new Uint8Array(0))).catch(() => {});
          }
          at += 9 + length;
        }
        this.#buffer = joined.slice(at);
      }
    } catch {
      // reset
    }
    this.#closed = true;
  }

  /** Whether the peer closed the connection. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Writes bytes as they are. */
  async write(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.length) at += await this.#conn.write(bytes.subarray(at));
  }

  /** HEADERS (END_HEADERS) for `stream` with `headers`. */
  headers(
    stream: number,
    headers: readonly (readonly [string, string])[],
    flags = 0,
  ): Promise<void> {
    return this.write(frame(FRAME.HEADERS, END_HEADERS | flags, stream, headerBlock(headers)));
  }

  /** RST_STREAM with `code`. */
  reset(stream: number, code: number): Promise<void> {
    const payload = new Uint8Array(4);
    new DataView(payload.buffer).setUint32(0, code);
    return this.write(frame(FRAME.RST_STREAM, 0, stream, payload));
  }

  /** DATA on `stream`. */
  data(stream: number, bytes: Uint8Array, flags = 0): Promise<void> {
    return this.write(frame(FRAME.DATA, flags, stream, bytes));
  }

  /** RST_STREAM frames received, as [stream, code]. */
  resets(): [number, number][] {
    return this.frames.filter((f) => f.type === FRAME.RST_STREAM).map((f) => [
      f.stream,
      new DataView(f.payload.buffer, f.payload.byteOffset).getUint32(0),
    ]);
  }

  /** Streams that got a 200 (HPACK static index 8, the form `node:http2` sends). */
  accepted(): number[] {
    return this.frames.filter((f) => f.type === FRAME.HEADERS && f.payload[0] === 0x88).map((f) =>
      f.stream
    );
  }

  /** The error code of a GOAWAY received, if any. */
  goaway(): number | undefined {
    const f = this.frames.find((x) => x.type === FRAME.GOAWAY);
    return f === undefined
      ? undefined
      : new DataView(f.payload.buffer, f.payload.byteOffset).getUint32(4);
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}
