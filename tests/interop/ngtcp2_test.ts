/**
 * Interop with a third-party HTTP/3 stack: Debian's ngtcp2 examples
 * (`gtlsclient` from ngtcp2-client, `gtlsserver` from ngtcp2-server, both
 * on nghttp3 with GnuTLS), on 127.0.0.1.
 *
 * - gtlsclient against our server side: its requests are QPACK-encoded by
 *   nghttp3 (Huffman-coded literals), so our decoder reads a real peer's
 *   bytes; we check what it downloaded, what it printed, what our server
 *   decoded, and that the connection closed with H3_NO_ERROR.
 * - our client against gtlsserver: a GET for a file in its document root,
 *   and a connect-ip request, which gtlsserver cannot serve: it does not
 *   send SETTINGS_ENABLE_CONNECT_PROTOCOL, so `openConnectIpSession`
 *   refuses before sending, and the raw request is reset by the server with
 *   H3_MESSAGE_ERROR, which `readResponse()` must report clearly.
 *
 * The tests are ignored, with a message, when the tools are not installed.
 * gtlsclient does not verify the server certificate (it has no option to
 * trust a CA), so only our client checks certificates here.
 *
 * Run: deno test --unstable-net --allow-net --allow-read --allow-write
 * --allow-run --allow-env tests/interop/
 */
import { assert, assertEquals, assertMatch, assertRejects } from "../support/assert.ts";
import { testCerts } from "../support/certs.ts";
import { missingCommand, skipUnless } from "../support/skip.ts";
import { H3Connection } from "../../shared/h3/connection.ts";
import type { QuicCloseInfoLike, QuicConnLike } from "../../shared/h3/quic.ts";
import type { H3RequestStream } from "../../shared/h3/request_stream.ts";
import type { HeaderField } from "../../shared/h3/qpack.ts";
import { SETTINGS_ENABLE_CONNECT_PROTOCOL } from "../../shared/h3/settings.ts";
import { H3_MESSAGE_ERROR, H3_NO_ERROR, H3Error } from "../../shared/errors.ts";
import { createLogger } from "../../shared/log.ts";
import {
  answerRequest,
  ConnectIpError,
  openConnectIpSession,
} from "../../shared/masque/h3_connect_ip.ts";
import {
  buildConnectIpRequest,
  expandConnectIpPath,
} from "../../shared/masque/connect_ip_request.ts";

const ALPN = ["h3"];
/** Longest a single wait in these tests may take, milliseconds. */
const STEP_TIMEOUT_MS = 8000;
const opts = { sanitizeOps: false, sanitizeResources: false };

/** Finds `name` in PATH or the usual bin directories; undefined when absent. */
function findTool(name: string): string | undefined {
  let dirs = ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"];
  try {
    dirs = [...(Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== ""), ...dirs];
  } catch {
    // no --allow-env: the usual directories only
  }
  for (const dir of dirs) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch {
      // not here
    }
  }
  return undefined;
}

const GTLSCLIENT = findTool("gtlsclient");
const GTLSSERVER = findTool("gtlsserver");
const { reason: noClient, fix: installClient } = missingCommand("gtlsclient");
const { reason: noServer, fix: installServer } = missingCommand("gtlsserver");

/** Rejects with `Timed out after N ms waiting for <what>` unless `promise` settles first. */
function within<T>(promise: Promise<T>, what: string, ms = STEP_TIMEOUT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A child process whose stdout and stderr are collected as they arrive. */
class Tool {
  readonly #child: Deno.ChildProcess;
  readonly #name: string;
  #text = "";
  #wake = () => {};
  readonly #drained: Promise<void>;
  readonly status: Promise<Deno.CommandStatus>;

  constructor(path: string, args: string[]) {
    this.#name = path.split("/").pop() ?? path;
    this.#child = new Deno.Command(path, { args, stdout: "piped", stderr: "piped" }).spawn();
    this.status = this.#child.status;
    this.#drained = Promise.all([this.#drain(this.#child.stdout), this.#drain(this.#child.stderr)])
      .then(() => {});
  }

  async #drain(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      this.#text += decoder.decode(chunk, { stream: true });
      this.#wake();
    }
  }

  /** Everything printed so far. */
  get output(): string {
    return this.#text;
  }

  /** Waits until the output matches `pattern`, or the process exits, or time runs out. */
  async waitFor(pattern: RegExp, ms = STEP_TIMEOUT_MS): Promise<void> {
    let exited = false;
    this.status.then(() => {
      exited = true;
      this.#wake();
    });
    const deadline = Date.now() + ms;
    while (!pattern.test(this.#text)) {
      if (exited) {
        await this.#drained;
        if (pattern.test(this.#text)) return;
        throw new Error(`${this.#name} exited before printing ${pattern}:\n${this.tail()}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`Timed out waiting for ${this.#name} to print ${pattern}:\n${this.tail()}`);
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 100);
      });
    }
  }

  /** Waits for the process to exit by itself; kills it when time runs out. */
  async exited(ms = STEP_TIMEOUT_MS): Promise<Deno.CommandStatus> {
    const status = await within(this.status, `${this.#name} to exit`, ms).catch((error) => {
      this.kill();
      throw new Error(`${error.message}:\n${this.tail()}`);
    });
    await this.#drained;
    return status;
  }

  /** Kills the process (if it still runs) and waits until it is gone. */
  async kill(): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await this.status;
    await this.#drained;
  }

  /** The last lines of output, for failure messages. */
  tail(lines = 30): string {
    return this.#text.split("\n").slice(-lines).join("\n");
  }
}

/** Writes the test certificates as PEM files into a new temporary directory. */
async function certDir(): Promise<{ dir: string; key: string; cert: string }> {
  const { certPem, keyPem } = await testCerts();
  const dir = await Deno.makeTempDir({ prefix: "ngtcp2_interop_" });
  await Deno.writeTextFile(`${dir}/key.pem`, keyPem);
  await Deno.writeTextFile(`${dir}/cert.pem`, certPem);
  return { dir, key: `${dir}/key.pem`, cert: `${dir}/cert.pem` };
}

interface ServedConnection {
  h3: H3Connection;
  requests: HeaderField[][];
  statuses: number[];
  closed: Promise<QuicCloseInfoLike>;
}

/** Our server side, as in tests/integration: H3Connection + answerRequest. */
async function startOurServer() {
  const { certPem, keyPem } = await testCerts();
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  const listener = endpoint.listen({ alpnProtocols: ALPN, cert: certPem, key: keyPem });
  const connections: ServedConnection[] = [];
  const logLines: string[] = [];
  const log = createLogger({ level: "debug", write: (line) => logLines.push(line) });
  let wake = () => {};
  (async () => {
    for await (const incoming of listener) {
      const conn = await Promise.resolve(incoming.accept()).catch(() => undefined);
      if (!conn) continue;
      const served: Omit<ServedConnection, "h3" | "closed"> = { requests: [], statuses: [] };
      const h3 = new H3Connection(conn, {
        role: "server",
        log,
        onRequest: async (request) => {
          served.requests.push([...request.headers]);
          const answer = await answerRequest(request);
          if (answer.session) {
            await answer.session.close();
            served.statuses.push(200);
          } else {
            served.statuses.push(answer.status);
          }
        },
      });
      connections.push({ ...served, h3, closed: h3.closed });
      wake();
      h3.start().catch((error) => logLines.push(`start failed: ${error}`));
    }
  })().catch(() => {});
  return {
    port: endpoint.addr.port,
    connections,
    logLines,
    /** Waits for the nth (0-based) connection. */
    async connection(n: number): Promise<ServedConnection> {
      const deadline = Date.now() + STEP_TIMEOUT_MS;
      while (connections.length <= n) {
        if (Date.now() > deadline) throw new Error(`Timed out waiting for connection ${n}`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 100);
        });
      }
      return connections[n];
    },
    close() {
      for (const c of connections) c.h3.close();
      listener.stop();
      endpoint.close();
    },
  };
}

/** Runs gtlsclient to completion with `args` before the host and port, then `uris`. */
async function runGtlsclient(port: number, args: string[], uris: string[]): Promise<Tool> {
  const tool = new Tool(GTLSCLIENT!, [
    "--no-quic-dump",
    "--exit-on-all-streams-close",
    "--timeout=5s",
    "--handshake-timeout=5s",
    ...args,
    "127.0.0.1",
    String(port),
    ...uris,
  ]);
  try {
    const status = await tool.exited();
    assertEquals(status.code, 0, `gtlsclient failed:\n${tool.tail()}`);
  } finally {
    await tool.kill();
  }
  return tool;
}

/** What gtlsclient prints for a response it received on stream `id`. */
function printedResponse(id: number, status: number, bodyBytes: number): RegExp {
  const s = `http: stream 0x${id.toString(16)}`;
  return new RegExp(
    `${s} response headers started\\n${s} \\[:status: ${status}\\]\\n` +
      `${s} \\[content-type: text/plain\\]\\n${s} headers ended\\n${s} body ${bodyBytes} bytes\\n`,
  );
}

function byPath(a: HeaderField[], b: HeaderField[]): number {
  const path = (h: HeaderField[]) => h.find(([n]) => n === ":path")?.[1] ?? "";
  return path(a) < path(b) ? -1 : 1;
}

Deno.test({
  name: "gtlsclient (ngtcp2) fetches from our HTTP/3 server and closes with H3_NO_ERROR",
  ...skipUnless(GTLSCLIENT !== undefined, noClient, installClient),
  ...opts,
  async fn(t) {
    const server = await startOurServer();
    const download = await Deno.makeTempDir({ prefix: "ngtcp2_download_" });
    const origin = `https://localhost:${server.port}`;
    const userAgent: HeaderField = ["user-agent", "nghttp3/ngtcp2 client"];
    try {
      await t.step("three GETs on one connection are answered 404 with a body", async () => {
        const tool = await runGtlsclient(server.port, [`--download=${download}`], [
          `${origin}/a/first`,
          `${origin}/b/second?q=%20x&y=1`,
          `${origin}/.well-known/masque/ip/*/*/`,
        ]);
        for (const id of [0, 4, 8]) {
          assertMatch(tool.output, printedResponse(id, 404, 10));
          assert(
            tool.output.includes(`HTTP stream ${id} closed with error code 256\n`),
            `stream ${id} not closed with H3_NO_ERROR (256):\n${tool.tail()}`,
          );
        }
        // gtlsclient names a file after the last path segment, index.html for "/".
        for (const file of ["first", "second?q=%20x&y=1", "index.html"]) {
          assertEquals(await Deno.readTextFile(`${download}/${file}`), "not found\n", file);
        }

        const conn = await server.connection(0);
        const info = await within(conn.closed, "our server to see the connection close");
        assertEquals(info.closeCode, H3_NO_ERROR);
        assertEquals(conn.h3.closeError, undefined);
        // nghttp3 Huffman-codes these literals; our QPACK decoder read them back.
        assertEquals(conn.requests.sort(byPath), [
          [
            [":method", "GET"],
            [":scheme", "https"],
            [":authority", `localhost:${server.port}`],
            [":path", "/.well-known/masque/ip/*/*/"],
            userAgent,
          ],
          [
            [":method", "GET"],
            [":scheme", "https"],
            [":authority", `localhost:${server.port}`],
            [":path", "/a/first"],
            userAgent,
          ],
          [
            [":method", "GET"],
            [":scheme", "https"],
            [":authority", `localhost:${server.port}`],
            [":path", "/b/second?q=%20x&y=1"],
            userAgent,
          ],
        ]);
        assertEquals(conn.statuses, [404, 404, 404]);
      });

      await t.step("a POST with a body is answered 404", async () => {
        const body = `${download}/body.txt`;
        await Deno.writeTextFile(body, "hello body\n");
        const tool = await runGtlsclient(server.port, ["-m", "POST", `--data=${body}`], [
          `${origin}/post`,
        ]);
        assertMatch(tool.output, printedResponse(0, 404, 10));
        const conn = await server.connection(1);
        assertEquals((await within(conn.closed, "close")).closeCode, H3_NO_ERROR);
        assertEquals(conn.requests, [[
          [":method", "POST"],
          [":scheme", "https"],
          [":authority", `localhost:${server.port}`],
          [":path", "/post"],
          userAgent,
          ["content-length", "11"],
        ]]);
      });

      await t.step(
        "a CONNECT with :scheme and :path but no :protocol is malformed: 400",
        async () => {
          const tool = await runGtlsclient(server.port, ["-m", "CONNECT"], [`${origin}/x`]);
          // gtlsclient sends :scheme and :path, which RFC 9114 §4.4 forbids on a
          // plain CONNECT: "malformed CONNECT: :scheme and :path without :protocol\n"
          assertMatch(tool.output, printedResponse(0, 400, 55));
          const conn = await server.connection(2);
          assertEquals((await within(conn.closed, "close")).closeCode, H3_NO_ERROR);
          assertEquals(conn.statuses, [400]);
        },
      );

      const complaints = server.logLines.filter((line) => !/ (DEBUG|INFO) /.test(line));
      assertEquals(complaints, [], "our server logged warnings or errors");
    } finally {
      server.close();
      await Deno.remove(download, { recursive: true });
    }
  },
});

/** Returns a UDP port on 127.0.0.1 that was free a moment ago. */
function freeUdpPort(): number {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (socket.addr as Deno.NetAddr).port;
  socket.close();
  return port;
}

/** Whether some process has a UDP socket bound to 127.0.0.1:`port` (from /proc/net/udp). */
async function udpBound(port: number): Promise<boolean> {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  // Deno asks for --allow-all to read /proc directly; cat needs only --allow-run.
  const { stdout } = await new Deno.Command("cat", { args: ["/proc/net/udp"] }).output();
  const table = new TextDecoder().decode(stdout);
  return table.split("\n").some((line) => line.trim().split(/\s+/)[1] === local);
}

/** Starts gtlsserver on 127.0.0.1 with the test certificates; resolves once it listens. */
async function startGtlsserver(htdocs: string, certs: { key: string; cert: string }) {
  const port = freeUdpPort();
  const tool = new Tool(GTLSSERVER!, [
    "--no-quic-dump",
    "--timeout=10s",
    `--htdocs=${htdocs}`,
    "127.0.0.1",
    String(port),
    certs.key,
    certs.cert,
  ]);
  try {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    while (!(await udpBound(port))) {
      const exited = await Promise.race([
        tool.status.then(() => true),
        new Promise<false>((resolve) => setTimeout(() => resolve(false), 50)),
      ]);
      if (exited) throw new Error(`gtlsserver exited at start:\n${tool.tail()}`);
      if (Date.now() > deadline) throw new Error(`gtlsserver did not bind port ${port}`);
    }
  } catch (error) {
    await tool.kill();
    throw error;
  }
  return { port, tool };
}

async function connectOurClient(port: number): Promise<H3Connection> {
  const { caPem } = await testCerts();
  const conn = await within(
    Promise.resolve(Deno.connectQuic({
      hostname: "127.0.0.1",
      port,
      alpnProtocols: ALPN,
      caCerts: [caPem],
      serverName: "localhost",
    })),
    "the QUIC handshake with gtlsserver",
  );
  const h3 = new H3Connection(conn as QuicConnLike, { role: "client" });
  await within(h3.start(), "our SETTINGS to be written");
  return h3;
}

/** A GET; the request stream is ended (FIN) at once, as a server waits for the whole request. */
async function get(h3: H3Connection, authority: string, path: string) {
  const stream: H3RequestStream = await h3.request([
    [":method", "GET"],
    [":scheme", "https"],
    [":authority", authority],
    [":path", path],
  ], { end: true });
  const status = await within(stream.readResponse(), `the response to GET ${path}`);
  const chunks: Uint8Array[] = [];
  const read = async () => {
    for await (const chunk of stream.readBody()) chunks.push(chunk.slice());
  };
  await within(read(), `the body of GET ${path}`);
  const body = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return { status, headers: stream.headers, body, chunks: chunks.length };
}

Deno.test({
  name: "our HTTP/3 client against gtlsserver (ngtcp2): GET works, connect-ip fails clearly",
  ...skipUnless(GTLSSERVER !== undefined, noServer, installServer),
  ...opts,
  async fn(t) {
    const certs = await certDir();
    let server: Awaited<ReturnType<typeof startGtlsserver>> | undefined;
    let h3: H3Connection | undefined;
    try {
      const htdocs = `${certs.dir}/htdocs`;
      await Deno.mkdir(htdocs);
      const index = "<h1>hello from ngtcp2</h1>\n";
      await Deno.writeTextFile(`${htdocs}/index.html`, index);
      // 300 kB: hundreds of QUIC packets, read in more than one chunk.
      const big = new Uint8Array(300_000).map((_, i) => (i * 7 + (i >> 8)) & 0xff);
      await Deno.writeFile(`${htdocs}/big.bin`, big);
      server = await startGtlsserver(htdocs, certs);
      const tool = server.tool;
      const authority = `localhost:${server.port}`;
      h3 = await connectOurClient(server.port);
      const client = h3;
      const settings = await within(client.peerSettings, "gtlsserver's SETTINGS");
      assertEquals(settings.get(SETTINGS_ENABLE_CONNECT_PROTOCOL), undefined);

      await t.step("GET / returns index.html", async () => {
        const r = await get(client, authority, "/");
        assertEquals(r.status, 200);
        assertEquals(r.headers, [
          [":status", "200"],
          ["server", "nghttp3/ngtcp2 server"],
          ["content-type", "text/html"],
          ["content-length", String(index.length)],
        ]);
        assertEquals(new TextDecoder().decode(r.body), index);
      });

      await t.step("GET of a missing file is 404 with gtlsserver's HTML body", async () => {
        const r = await get(client, authority, "/missing");
        assertEquals(r.status, 404);
        const length = r.headers.find(([n]) => n === "content-length")?.[1];
        assertEquals(length, String(r.body.length));
        assertMatch(new TextDecoder().decode(r.body), /404/);
      });

      await t.step("GET of a 300 kB file arrives whole, over several DATA chunks", async () => {
        const r = await get(client, authority, "/big.bin");
        assertEquals(r.status, 200);
        assertEquals(r.body.length, big.length);
        assertEquals(r.body, big);
        assert(r.chunks > 1, `body came in ${r.chunks} chunk(s)`);
      });

      const path = expandConnectIpPath("/.well-known/masque/ip/{target}/{ipproto}/", {
        target: { kind: "any" },
        ipProtocol: "any",
      });

      await t.step("openConnectIpSession() refuses: no extended CONNECT", async () => {
        const before = client.stats.requestStreams;
        await assertRejects(
          () => openConnectIpSession(client, { authority, path, mode: "datagram" }),
          ConnectIpError,
          "Cannot open connect-ip session: the relay does not enable extended CONNECT " +
            "(SETTINGS_ENABLE_CONNECT_PROTOCOL is not 1)",
        );
        assertEquals(client.stats.requestStreams, before, "a request was sent anyway");
      });

      await t.step("a raw connect-ip request is reset with H3_MESSAGE_ERROR", async () => {
        const stream = await client.request(buildConnectIpRequest({ authority, path }));
        const error = await within(
          stream.readResponse().then(
            () => undefined,
            (e: unknown) => e,
          ),
          "the reset",
        );
        assert(error instanceof H3Error, `not an H3Error: ${error}`);
        assertEquals(error.message, "Stream reset by the peer with H3_MESSAGE_ERROR (0x10e)");
        assertEquals(error.code, H3_MESSAGE_ERROR);
        assertEquals(error.connection, false);
        // gtlsserver logs (to stderr, unbuffered) the reset it sent.
        await tool.waitFor(
          new RegExp(
            `RESET_STREAM\\(0x04\\) id=0x${
              stream.streamId.toString(16)
            } app_error_code=\\(unknown\\)\\(0x10e\\)`,
          ),
        );
      });

      await t.step("the connection still works after the stream error", async () => {
        const r = await get(client, authority, "/");
        assertEquals(r.status, 200);
        assertEquals(new TextDecoder().decode(r.body), index);
      });

      client.close();
      await tool.waitFor(/CONNECTION_CLOSE\(0x1d\) error_code=\(unknown\)\(0x100\)/);
    } finally {
      h3?.close();
      await server?.tool.kill();
      await Deno.remove(certs.dir, { recursive: true });
    }
  },
});
