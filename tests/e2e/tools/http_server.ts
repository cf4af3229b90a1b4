/**
 * HTTP/1.1 server for e2e tests.
 *
 * ```
 * deno run --allow-net http_server.ts --port N [--host ::]
 * ```
 *
 * - `GET /` answers "hello from target\n".
 * - `GET /bytes?n=N[&seed=S]` answers N deterministic pseudo-random bytes
 *   (xorshift32 seeded with S, default 1: the same stream as `tcp_blast.ts`)
 *   with header `x-sha256`, the hex SHA-256 of the body.
 *
 * Prints `{"ready":true,"port":N}` once listening.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";

/** Bytes produced per PRNG block and per body chunk. */
const BLOCK_BYTES = 64 * 1024;
/** Largest body `/bytes` serves (1 GiB). */
const MAX_BYTES = 1 << 30;

/** Fills `words` with xorshift32 output and returns the next state (as in `tcp_blast.ts`). */
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

/** Yields the first `total` bytes of the stream seeded with `seed`, in blocks it reuses. */
function* pseudoRandomBlocks(total: number, seed: number): Generator<Uint8Array> {
  const words = new Uint32Array(BLOCK_BYTES / 4);
  const block = new Uint8Array(words.buffer);
  let state = seed;
  for (let produced = 0; produced < total; produced += BLOCK_BYTES) {
    state = xorshift32Fill(words, state);
    yield block.subarray(0, Math.min(BLOCK_BYTES, total - produced));
  }
}

function bytesResponse(url: URL): Response {
  const n = Number(url.searchParams.get("n"));
  const seed = Number(url.searchParams.get("seed") ?? "1");
  if (!url.searchParams.has("n") || !Number.isSafeInteger(n) || n < 0 || n > MAX_BYTES) {
    return new Response(`n must be an integer 0..${MAX_BYTES}\n`, { status: 400 });
  }
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    return new Response("seed must be an integer 0..4294967295\n", { status: 400 });
  }
  // Two passes over the same stream: the digest goes in a header, before the body.
  const hash = createHash("sha256");
  for (const block of pseudoRandomBlocks(n, seed)) hash.update(block);
  const blocks = pseudoRandomBlocks(n, seed);
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = blocks.next();
      if (next.done) controller.close();
      else controller.enqueue(next.value.slice());
    },
  });
  return new Response(body, {
    headers: {
      "content-type": "application/octet-stream",
      "content-length": String(n),
      "x-sha256": hash.digest("hex"),
    },
  });
}

function handle(request: Request): Response {
  const url = new URL(request.url);
  if (request.method !== "GET") return new Response("method not allowed\n", { status: 405 });
  if (url.pathname === "/") return new Response("hello from target\n");
  if (url.pathname === "/bytes") return bytesResponse(url);
  return new Response("not found\n", { status: 404 });
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { host: { type: "string", default: "::" }, port: { type: "string" } },
  });
  const port = Number(values.port);
  if (values.port === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`http_server: --port must be an integer 0..65535, got ${values.port}`);
    Deno.exit(1);
  }
  Deno.serve({
    hostname: values.host,
    port,
    onListen: (addr) => console.log(JSON.stringify({ ready: true, port: addr.port })),
  }, handle);
}
