/**
 * TCP bulk transfer with an end-to-end SHA-256 check, for e2e tests and the
 * benchmark.
 *
 * ```
 * deno run --allow-net tcp_blast.ts server --port N [--host ::] [--send]
 * deno run --allow-net tcp_blast.ts client --host H --port N --bytes N [--seed S] [--timeout-ms 60000] [--receive]
 * ```
 *
 * The server prints `{"ready":true,"port":N}` once listening. For each
 * connection it hashes every byte it receives until the peer closes its write
 * side, sends back the hex SHA-256 and a newline, closes, and prints
 * `{"received":N,"sha256":"..."}`.
 *
 * The client sends `--bytes` deterministic pseudo-random bytes (xorshift32
 * seeded with `--seed`, default 1), closes its write side, reads the digest
 * and compares it with its own. It prints
 * `{"ok":true,"bytes":N,"sha256":"...","seconds":S,"mbps":M}` or
 * `{"ok":false,"error":"..."}` and exits 1 (also after `--timeout-ms`).
 *
 * The other direction: a server started with `--send` reads one line
 * `BYTES SEED\n` from each connection and sends that many bytes of the
 * same stream, then closes; a client with `--receive` asks for `--bytes`,
 * hashes what arrives and compares it with the digest of the stream it
 * computes itself (and the count). Same output.
 *
 * @module
 */
import { errorMessage } from "../../../shared/errors.ts";
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";

/** Bytes produced per PRNG block and written per `write` call. */
const BLOCK_BYTES = 64 * 1024;
/** Length of a hex SHA-256 digest plus the newline. */
const DIGEST_LINE_BYTES = 65;

/**
 * Fills `words` with xorshift32 output (Marsaglia 2003) and returns the next
 * state. Seeded identically, the byte stream is identical on every
 * little-endian host.
 */
function xorshift32Fill(words: Uint32Array, state: number): number {
  let x = state >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  return x;
}

async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

async function serve(hostname: string, port: number): Promise<void> {
  const listener = Deno.listen({ hostname, port, transport: "tcp" });
  console.log(JSON.stringify({ ready: true, port: listener.addr.port }));
  for await (const conn of listener) void receive(conn);
}

async function receive(conn: Deno.TcpConn): Promise<void> {
  const hash = createHash("sha256");
  const buffer = new Uint8Array(256 * 1024);
  let received = 0;
  try {
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      hash.update(buffer.subarray(0, n));
      received += n;
    }
    const sha256 = hash.digest("hex");
    await writeAll(conn, new TextEncoder().encode(`${sha256}\n`));
    console.log(JSON.stringify({ received, sha256 }));
  } catch (error) {
    console.error(`tcp_blast server: connection failed after ${received} bytes: ${error}`);
  } finally {
    conn.close();
  }
}

async function serveSending(hostname: string, port: number): Promise<void> {
  const listener = Deno.listen({ hostname, port, transport: "tcp" });
  console.log(JSON.stringify({ ready: true, port: listener.addr.port }));
  for await (const conn of listener) void sendRequested(conn);
}

/** Reads `BYTES SEED\n` (at most 64 bytes) and sends that much of the stream. */
async function sendRequested(conn: Deno.TcpConn): Promise<void> {
  const line = new Uint8Array(64);
  let length = 0;
  let sent = 0;
  try {
    while (!line.subarray(0, length).includes(0x0a)) {
      if (length === line.length) throw new Error("request line longer than 64 bytes");
      const n = await conn.read(line.subarray(length));
      if (n === null) throw new Error("closed before the request line");
      length += n;
    }
    const [bytes, seed] = new TextDecoder().decode(line.subarray(0, line.indexOf(0x0a)))
      .split(" ").map(Number);
    if (!Number.isSafeInteger(bytes) || bytes < 0 || !Number.isSafeInteger(seed)) {
      throw new Error("bad request line");
    }
    const words = new Uint32Array(BLOCK_BYTES / 4);
    const block = new Uint8Array(words.buffer);
    let state = seed;
    for (; sent < bytes; sent += BLOCK_BYTES) {
      state = xorshift32Fill(words, state);
      await writeAll(conn, block.subarray(0, Math.min(BLOCK_BYTES, bytes - sent)));
    }
    console.log(JSON.stringify({ sent: bytes }));
  } catch (error) {
    console.error(`tcp_blast server: sending failed after ${sent} bytes: ${error}`);
  } finally {
    conn.close();
  }
}

async function download(hostname: string, port: number, bytes: number, seed: number) {
  const started = performance.now();
  const conn = await Deno.connect({ hostname, port, transport: "tcp" });
  try {
    await writeAll(conn, new TextEncoder().encode(`${bytes} ${seed}\n`));
    const hash = createHash("sha256");
    const buffer = new Uint8Array(256 * 1024);
    let received = 0;
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      hash.update(buffer.subarray(0, n));
      received += n;
    }
    const seconds = (performance.now() - started) / 1000;
    const sha256 = hash.digest("hex");
    const expected = createHash("sha256");
    const words = new Uint32Array(BLOCK_BYTES / 4);
    const block = new Uint8Array(words.buffer);
    let state = seed;
    for (let done = 0; done < bytes; done += BLOCK_BYTES) {
      state = xorshift32Fill(words, state);
      expected.update(block.subarray(0, Math.min(BLOCK_BYTES, bytes - done)));
    }
    const want = expected.digest("hex");
    if (received !== bytes) throw new Error(`received ${received} bytes, asked for ${bytes}`);
    if (sha256 !== want) throw new Error(`received digest ${sha256} differs from ${want}`);
    const mbps = Number((bytes * 8 / seconds / 1e6).toFixed(2));
    return { ok: true, bytes, sha256, seconds: Number(seconds.toFixed(3)), mbps };
  } finally {
    conn.close();
  }
}

async function send(hostname: string, port: number, bytes: number, seed: number) {
  const started = performance.now();
  const conn = await Deno.connect({ hostname, port, transport: "tcp" });
  const hash = createHash("sha256");
  const words = new Uint32Array(BLOCK_BYTES / 4);
  const block = new Uint8Array(words.buffer);
  let state = seed;
  try {
    for (let sent = 0; sent < bytes; sent += BLOCK_BYTES) {
      state = xorshift32Fill(words, state);
      const chunk = block.subarray(0, Math.min(BLOCK_BYTES, bytes - sent));
      hash.update(chunk);
      await writeAll(conn, chunk);
    }
    await conn.closeWrite();
    const reply = await readReply(conn);
    const seconds = (performance.now() - started) / 1000;
    const sha256 = hash.digest("hex");
    if (reply !== sha256) {
      throw new Error(`server digest ${JSON.stringify(reply)} differs from sent ${sha256}`);
    }
    const mbps = Number((bytes * 8 / seconds / 1e6).toFixed(2));
    return { ok: true, bytes, sha256, seconds: Number(seconds.toFixed(3)), mbps };
  } finally {
    conn.close();
  }
}

async function readReply(conn: Deno.TcpConn): Promise<string> {
  const reply = new Uint8Array(DIGEST_LINE_BYTES);
  let length = 0;
  while (length < reply.length) {
    const n = await conn.read(reply.subarray(length));
    if (n === null) break;
    length += n;
  }
  return new TextDecoder().decode(reply.subarray(0, length)).trim();
}

function fail(message: string): never {
  console.log(JSON.stringify({ ok: false, error: message }));
  console.error(`tcp_blast: ${message}`);
  Deno.exit(1);
}

function integer(name: string, value: string | undefined, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  const n = Number(value);
  if (value === undefined || !Number.isSafeInteger(n) || n < 0) {
    fail(`--${name} must be a non-negative integer, got ${value}`);
  }
  return n;
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      host: { type: "string" },
      port: { type: "string" },
      bytes: { type: "string" },
      seed: { type: "string" },
      "timeout-ms": { type: "string" },
      send: { type: "boolean" },
      receive: { type: "boolean" },
    },
  });
  const port = integer("port", values.port);
  if (positionals[0] === "server") {
    await (values.send ? serveSending : serve)(values.host ?? "::", port);
  } else if (positionals[0] === "client") {
    if (values.host === undefined) fail("client needs --host");
    const bytes = integer("bytes", values.bytes);
    const seed = integer("seed", values.seed, 1);
    const timeoutMs = integer("timeout-ms", values["timeout-ms"], 60_000);
    const timer = setTimeout(
      () => fail(`gave up after ${timeoutMs} ms sending ${bytes} bytes to ${values.host}:${port}`),
      timeoutMs,
    );
    try {
      const transfer = values.receive ? download : send;
      console.log(JSON.stringify(await transfer(values.host, port, bytes, seed)));
    } catch (error) {
      fail(
        `transfer to ${values.host}:${port} failed: ${errorMessage(error)}`,
      );
    } finally {
      clearTimeout(timer);
    }
  } else {
    fail(
      "usage: tcp_blast.ts server --port N [--host H] [--send] | " +
        "client --host H --port N --bytes N [--receive]",
    );
  }
}
