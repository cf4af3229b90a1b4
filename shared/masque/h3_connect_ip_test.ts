/**
 * CONNECT-IP over HTTP/3: openConnectIpSession() and answerRequest() over
 * real H3Connections on the in-memory QUIC pair: setting a session up, the
 * statuses of refused and malformed requests, clear client errors, and
 * when authorization runs.
 */
import { assert, assertEquals, assertRejects } from "../../tests/support/assert.ts";
import { hex } from "../../tests/support/bytes.ts";
import { createFakeQuicPair, readAll, until, within } from "../../tests/support/fake_quic.ts";
import { ANY_PATH, clientWithDatagrams, setupH3Sessions } from "../../tests/support/h3_sessions.ts";
import { H3_FRAME_UNEXPECTED } from "../errors.ts";
import { H3Connection } from "../h3/connection.ts";
import { encodeFrame, FRAME_HEADERS } from "../h3/frame.ts";
import { encodeFieldSection } from "../h3/qpack.ts";
import type { HeaderField } from "../h3/qpack.ts";
import {
  serverSettings,
  SETTINGS_ENABLE_CONNECT_PROTOCOL,
  SETTINGS_H3_DATAGRAM,
} from "../h3/settings.ts";
import { formatPrefix } from "../ip/ip_address.ts";
import { buildConnectIpRequest, DEFAULT_URI_TEMPLATE } from "./connect_ip_request.ts";
import type { SessionEnd } from "./connect_ip_session.ts";
import { answerRequest, ConnectIpError, openConnectIpSession } from "./h3_connect_ip.ts";
import type { AnswerResult } from "./h3_connect_ip.ts";

/** Opens a session for any target and protocol from `client`. */
const openAny = (client: H3Connection, mode: "datagram" | "stream") =>
  openConnectIpSession(client, { authority: "localhost", path: ANY_PATH, mode });

Deno.test("openConnectIpSession() and answerRequest() set up a session", async (t) => {
  await t.step("any target, any protocol", async () => {
    const s = await setupH3Sessions();
    const { client, server } = await s.open("datagram");
    assertEquals(client.mode, "datagram");
    assertEquals(server.mode, "datagram");
    assertEquals(client.stream.header(":status"), "200");
    assertEquals(client.stream.header("capsule-protocol"), "?1");
    assertEquals(client.stream.streamId, 0n);
    assertEquals(server.stream.streamId, 0n);
    const answer = s.answers[0];
    assert(answer.session !== undefined);
    assertEquals(answer.scope, { target: { kind: "any" }, ipProtocol: "any" });
    s.client.close();
  });
  await t.step("a scoped request: 198.18.0.0/15, UDP", async () => {
    const s = await setupH3Sessions();
    // %2F is the percent-encoded "/" of the prefix (RFC 9484 §4.6)
    await s.open("datagram", "/.well-known/masque/ip/198.18.0.0%2F15/17/");
    const answer = s.answers[0];
    assert(answer.session !== undefined);
    assert(answer.scope.target.kind === "prefix");
    assertEquals(formatPrefix(answer.scope.target.prefix), "198.18.0.0/15");
    assertEquals(answer.scope.ipProtocol, 17);
    s.client.close();
  });
  await t.step("the server answers in the mode the client's SETTINGS allow", async () => {
    const s = await setupH3Sessions({ clientSettings: clientWithDatagrams(0) });
    const { client, server } = await s.open("stream");
    assertEquals([client.mode, server.mode], ["stream", "stream"]);
    s.client.close();
  });
});

Deno.test("answerRequest() answers other requests with proper statuses", async (t) => {
  const authorized: string[] = [];
  const s = await setupH3Sessions({
    answer: {
      authorize: (scope) => {
        authorized.push(JSON.stringify(scope));
        if (scope.ipProtocol === 6) return { accept: false, status: 403 };
        if (scope.ipProtocol === 17) {
          return { accept: false, status: 503, reason: "address pool exhausted" };
        }
        return { accept: true };
      },
    },
  });
  const ask = async (headers: HeaderField[]) => {
    const before = s.answers.length;
    const stream = await s.client.request(headers, { end: true });
    const status = await within(stream.readResponse(), "the response");
    let body = "";
    for await (const chunk of stream.readBody()) body += new TextDecoder().decode(chunk);
    await until(() => s.answers.length > before, "the answer");
    return { status, body, answer: s.answers[before] };
  };
  const connectIp = (path: string): HeaderField[] =>
    buildConnectIpRequest({ authority: "localhost", path });
  const cases: [string, HeaderField[], number, string][] = [
    [
      "GET is 404",
      [[":method", "GET"], [":scheme", "https"], [":authority", "localhost"], [":path", "/"]],
      404,
      "not found",
    ],
    [
      "plain CONNECT is 405 (RFC 9114 §4.4)",
      [[":method", "CONNECT"], [":authority", "198.18.0.1:443"]],
      405,
      "plain CONNECT is not supported; use connect-ip",
    ],
    [
      "plain CONNECT with :path is malformed: 400 (RFC 9114 §4.4)",
      [[":method", "CONNECT"], [":authority", "198.18.0.1:443"], [":path", "/"]],
      400,
      "malformed CONNECT: :scheme and :path without :protocol",
    ],
    [
      "an uppercase field name is malformed: 400 whatever the method (RFC 9114 §4.2)",
      [["Upper", "x"], [":method", "CONNECT"]],
      400,
      'uppercase header name "Upper"',
    ],
    [
      "a pseudo-header after a regular field is malformed: 400 on a GET (RFC 9114 §4.3)",
      [[":method", "GET"], ["accept", "*/*"], [":scheme", "https"], [":path", "/"]],
      400,
      "pseudo-header :scheme after a regular header",
    ],
    [
      "no field lines at all: 400, not 404 (RFC 9114 §4.3.1)",
      [],
      400,
      "missing :method",
    ],
    [
      "a GET without :path is malformed: 400 (RFC 9114 §4.3.1)",
      [[":method", "GET"], [":scheme", "https"], [":authority", "localhost"]],
      400,
      "malformed request: missing :scheme or :path",
    ],
    [
      "another :protocol is 501",
      [
        [":method", "CONNECT"],
        [":protocol", "connect-udp"],
        [":scheme", "https"],
        [":authority", "localhost"],
        [":path", "/.well-known/masque/udp/198.18.0.1/53/"],
        ["capsule-protocol", "?1"],
      ],
      501,
      'unsupported :protocol "connect-udp"',
    ],
    [
      "a path outside the template is 404, answered as any unknown path",
      connectIp("/vpn"),
      404,
      `path "/vpn" does not match template "${DEFAULT_URI_TEMPLATE}"`,
    ],
    [
      "an ipproto above 255 is 400",
      connectIp("/.well-known/masque/ip/*/256/"),
      400,
      'ipproto "256" is not 0..255 or "*"',
    ],
    [
      "a request authorize() refuses gets its status: 403",
      connectIp("/.well-known/masque/ip/*/6/"),
      403,
      "request refused",
    ],
    [
      "a refusal with a reason gets its status and the reason as body: 503",
      connectIp("/.well-known/masque/ip/*/17/"),
      503,
      "address pool exhausted",
    ],
  ];
  for (const [name, headers, status, reason] of cases) {
    await t.step(name, async () => {
      const got = await ask(headers);
      assertEquals(got.status, status);
      // A 404's body is the same whatever the reason; the reason is for the log.
      assertEquals(got.body, status === 404 ? "not found\n" : `${reason}\n`);
      assertEquals(got.answer, { session: undefined, status, reason });
    });
  }
  // authorize() saw only the well-formed connect-ip request.
  assertEquals(authorized, [
    '{"target":{"kind":"any"},"ipProtocol":6}',
    '{"target":{"kind":"any"},"ipProtocol":17}',
  ]);
  assertEquals(s.serverConn.closeInfo, undefined);
  s.client.close();
});

Deno.test("answerRequest() asks authenticate before it reveals anything about the resource", async (t) => {
  const seen: string[] = [];
  const s = await setupH3Sessions({
    answer: {
      authenticate: (request) => {
        seen.push(request.header(":path") ?? "");
        return request.header("proxy-authorization") === "Bearer good"
          ? { accept: true }
          : { accept: false, status: 404, reason: "no valid credentials" };
      },
      notFound: (request) =>
        request.respond(404, [["content-type", "text/html"], ["server", "nginx"]], "<h1>Nope</h1>"),
      serveOther: async (request) => {
        await request.respond(200, [["content-type", "text/plain"]], "hello");
        await request.end();
        return 200;
      },
    },
  });
  const ask = async (headers: HeaderField[]) => {
    const before = s.answers.length;
    const stream = await s.client.request(headers, { end: true });
    const status = await within(stream.readResponse(), "the response");
    let body = "";
    for await (const chunk of stream.readBody()) body += new TextDecoder().decode(chunk);
    await until(() => s.answers.length > before, "the answer");
    return { status, headers: stream.headers, body, answer: s.answers[before] };
  };
  const connectIp = (path: string, ...extra: HeaderField[]): HeaderField[] => [
    ...buildConnectIpRequest({ authority: "localhost", path }),
    ...extra,
  ];
  const good: HeaderField = ["proxy-authorization", "Bearer good"];
  const notFound = { status: 404, body: "<h1>Nope</h1>" };
  await t.step("unauthenticated: notFound's answer, whatever the path or scope", async () => {
    for (const path of [ANY_PATH, "/vpn", "/.well-known/masque/ip/nonsense/999/"]) {
      const got = await ask(connectIp(path));
      assertEquals({ status: got.status, body: got.body }, notFound, path);
      assertEquals(got.headers, [[":status", "404"], ["content-type", "text/html"], [
        "server",
        "nginx",
      ]]);
      assertEquals(got.answer, {
        session: undefined,
        status: 404,
        reason: "no valid credentials",
      });
    }
  });
  await t.step("authenticated: the resource's own answers", async () => {
    assertEquals((await ask(connectIp("/vpn", good))).status, 404);
    const bad = await ask(connectIp("/.well-known/masque/ip/nonsense/*/", good));
    assertEquals([bad.status, bad.body], [
      400,
      'target "nonsense" is not an IP address, IP prefix or "*"\n',
    ]);
    const stream = await s.client.request(connectIp(ANY_PATH, good));
    assertEquals(await within(stream.readResponse(), "the response"), 200);
    stream.abort();
  });
  await t.step(
    "a GET goes to serveOther; a malformed message is 400 before authentication",
    async () => {
      const get = await ask([
        [":method", "GET"],
        [":scheme", "https"],
        [":authority", "localhost"],
        [
          ":path",
          "/index.html",
        ],
      ]);
      assertEquals([get.status, get.body], [200, "hello"]);
      const malformed = await ask([["Upper", "x"], ...connectIp(ANY_PATH)]);
      assertEquals(malformed.status, 400);
    },
  );
  // authenticate saw only the connect-ip requests, before their path was checked.
  assertEquals(seen, [
    ANY_PATH,
    "/vpn",
    "/.well-known/masque/ip/nonsense/999/",
    "/vpn",
    "/.well-known/masque/ip/nonsense/*/",
    ANY_PATH,
  ]);
  s.client.close();
});

Deno.test("openConnectIpSession() says what a 404 means and sends extra header fields", async () => {
  let credentials: string | undefined;
  const s = await setupH3Sessions({
    answer: {
      authenticate: (request) => {
        credentials = request.header("proxy-authorization");
        return { accept: false, status: 404, reason: "unauthenticated" };
      },
    },
  });
  const error = await assertRejects(
    () =>
      openConnectIpSession(s.client, {
        authority: "localhost",
        path: ANY_PATH,
        mode: "datagram",
        headers: [["proxy-authorization", "Bearer x"]],
      }),
    ConnectIpError,
    "the relay answered 404: it refused the credentials or has no CONNECT-IP at this path " +
      `(${ANY_PATH})`,
  );
  assertEquals(error.status, 404);
  assertEquals(credentials, "Bearer x");
  s.client.close();
});

Deno.test("openConnectIpSession() fails clearly", async (t) => {
  await t.step("the relay refuses: ConnectIpError with the status", async () => {
    const s = await setupH3Sessions({
      answer: { authorize: () => ({ accept: false, status: 403 }) },
    });
    const error = await assertRejects(
      () => openAny(s.client, "datagram"),
      ConnectIpError,
      "Cannot open connect-ip session: the relay answered 403",
    );
    assertEquals(error.status, 403);
    s.client.close();
  });
  // [step, the relay's SETTINGS changed by, mode, the error]
  const settingsCases: [
    string,
    (settings: Map<number, number>) => void,
    "datagram" | "stream",
    string,
  ][] = [
    [
      "the relay does not enable extended CONNECT",
      (settings) => settings.delete(SETTINGS_ENABLE_CONNECT_PROTOCOL),
      "stream",
      "the relay does not enable extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL is not 1)",
    ],
    [
      "datagram mode when the relay does not enable HTTP Datagrams",
      (settings) => settings.set(SETTINGS_H3_DATAGRAM, 0),
      "datagram",
      "SETTINGS_H3_DATAGRAM is not 1); try --mode stream",
    ],
  ];
  for (const [name, change, mode, message] of settingsCases) {
    await t.step(name, async () => {
      const settings = serverSettings();
      change(settings);
      const s = await setupH3Sessions({ serverSettings: settings });
      await assertRejects(() => openAny(s.client, mode), ConnectIpError, message);
      s.client.close();
    });
  }
  await t.step("the connection closes before SETTINGS", async () => {
    const [clientConn, serverConn] = createFakeQuicPair();
    const client = new H3Connection(clientConn, { role: "client" });
    await client.start();
    serverConn.close({ closeCode: 0x10a, reason: "no" });
    await assertRejects(
      () =>
        openConnectIpSession(client, { authority: "localhost", path: ANY_PATH, mode: "stream" }),
      ConnectIpError,
      'Cannot open connect-ip session: no SETTINGS from the relay (Connection closed before SETTINGS: code 0x10a "no")',
    );
  });
  await t.step("a 200 without capsule-protocol", async () => {
    const [clientConn, raw] = createFakeQuicPair();
    const client = new H3Connection(clientConn, { role: "client" });
    await client.start();
    // 00 control stream; 04 SETTINGS 04 length; 08 01 extended CONNECT; 33 01 datagrams
    await raw.openUni(hex("00 0404 0801 3301"));
    const bidi = raw.incomingBidirectionalStreams.getReader();
    const opening = openConnectIpSession(client, {
      authority: "localhost",
      path: ANY_PATH,
      mode: "datagram",
    });
    const { value: request } = await within(bidi.read(), "the request");
    assert(request !== undefined);
    const writer = request.writable.getWriter();
    // 01 HEADERS, 03 length, 00 00 prefix, d9 static 25 `:status 200`
    await writer.write(hex("01 03 0000 d9"));
    await assertRejects(
      () => opening,
      ConnectIpError,
      "Cannot open connect-ip session: the response lacks capsule-protocol: ?1",
    );
    // The client gave up on the stream: its request HEADERS, then FIN; and STOP_SENDING.
    const sent = await readAll(request.readable.getReader());
    assertEquals(sent[0], 0x01);
    await assertRejects(() => within(writer.closed, "STOP_SENDING"), Error, "STOP_SENDING");
    raw.close();
  });
});

Deno.test("a connection error on a session's stream closes the whole connection", async () => {
  const [raw, serverConn] = createFakeQuicPair();
  const ends: Promise<SessionEnd>[] = [];
  const server = new H3Connection(serverConn, {
    role: "server",
    onRequest: async (request) => {
      const answer = await answerRequest(request);
      if (answer.session) ends.push(answer.session.run({ onPacket: () => {} }));
    },
  });
  await server.start();
  // The client's control stream: 00, SETTINGS 04 02: 33 01 (datagrams on).
  await raw.openUni(hex("00 0402 3301"));
  const headers = encodeFieldSection(
    buildConnectIpRequest({ authority: "localhost", path: ANY_PATH }),
  );
  const { reader, writer } = await raw.openBidi(encodeFrame(FRAME_HEADERS, headers));
  const { value: response } = await within(reader.read(), "the response");
  // 01 HEADERS frame, its length, 00 00, d9 `:status 200`, then capsule-protocol
  assertEquals(response?.subarray(2, 5), hex("0000 d9"));
  await until(() => ends.length === 1, "the session");
  // 04 SETTINGS, 00 length: a frame that is a connection error on a request stream
  await writer.write(hex("04 00"));
  assertEquals(await within(ends[0], "the session's end"), {
    reason: "error",
    message: "Unexpected SETTINGS frame on a request stream",
  });
  const info = await within(raw.closed, "the close");
  assertEquals(info, {
    closeCode: H3_FRAME_UNEXPECTED,
    reason: "Unexpected SETTINGS frame on a request stream",
  });
});

Deno.test("answerRequest() calls authorize only once the peer's SETTINGS have arrived", async (t) => {
  /** A server that answers with answerRequest(), facing a raw client that sends no SETTINGS yet. */
  async function serverWithoutClientSettings(settingsTimeoutMs: number) {
    const [clientConn, serverConn] = createFakeQuicPair();
    const authorized: number[] = [];
    const answers: Promise<AnswerResult>[] = [];
    const server = new H3Connection(serverConn, {
      role: "server",
      settingsTimeoutMs,
      onRequest: (request) => {
        const answer = answerRequest(request, {
          authorize: () => {
            authorized.push(Number(request.streamId));
            return { accept: true };
          },
        });
        answer.catch(() => {});
        answers.push(answer);
      },
    });
    await server.start();
    // Requests on raw streams: HEADERS of a connect-ip request, the stream left open.
    const block = encodeFieldSection(
      buildConnectIpRequest({ authority: "localhost", path: ANY_PATH }),
    );
    const request = encodeFrame(FRAME_HEADERS, block);
    const streams = [];
    for (let i = 0; i < 5; i++) streams.push(await clientConn.openBidi(request));
    await until(() => answers.length === 5, "the five requests to reach answerRequest");
    await new Promise((resolve) => setTimeout(resolve, 20));
    return { server, clientConn, authorized, answers, streams };
  }

  await t.step("requests before SETTINGS wait; SETTINGS let them through", async () => {
    const s = await serverWithoutClientSettings(5000);
    assertEquals(s.authorized, []);
    // 00 CONTROL; 04 SETTINGS, 02 length; 33 01 SETTINGS_H3_DATAGRAM = 1
    await s.clientConn.openUni(hex("00 0402 3301"));
    const answers = await within(Promise.all(s.answers), "the answers");
    assertEquals(s.authorized, [0, 4, 8, 12, 16]);
    assert(answers.every((a) => a.session?.mode === "datagram"));
    s.clientConn.close();
  });
  await t.step(
    "no SETTINGS before the time limit: nothing authorized, every answer rejects",
    async () => {
      const s = await serverWithoutClientSettings(100);
      const results = await within(Promise.allSettled(s.answers), "the answers", 3000);
      assertEquals(s.authorized, []);
      for (const result of results) {
        assert(result.status === "rejected");
        assertEquals(
          String(result.reason),
          "Error: Cannot answer request: no SETTINGS from the peer (No SETTINGS from the peer within 100 ms)",
        );
      }
      assertEquals((await within(s.clientConn.closed, "the close")).closeCode, 0x10a);
    },
  );
});
