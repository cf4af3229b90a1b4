import { assert, assertEquals, assertRejects, assertThrows } from "../../tests/support/assert.ts";
import { hex } from "../../tests/support/bytes.ts";
import { until } from "../../tests/support/fake_quic.ts";
import { ByteBudget } from "../h3/byte_budget.ts";
import type { HeaderField } from "../h3/qpack.ts";
import { encodeCapsule } from "./capsule.ts";
import type { Capsule } from "./capsule.ts";
import { ConnectIpError } from "./h3_connect_ip.ts";
import {
  answerH2Request,
  H2_CANCEL,
  H2_ENHANCE_YOUR_CALM,
  h2ErrorName,
  h2HeaderFields,
  h2RawHeaderFields,
  openH2ConnectIpSession,
} from "./h2_connect_ip.ts";
import type { H2ServerStreamLike } from "./h2_connect_ip.ts";
import { parsePrefix } from "../ip/ip_address.ts";

/** A `node:http2` stream as far as the adapter uses it: events in, writes recorded. */
class FakeH2Stream implements H2ServerStreamLike {
  destroyed = false;
  writableLength = 0;
  rstCode: number | undefined;
  headersSent = false;
  paused = false;
  ended = false;
  response: Record<string, string> | undefined;
  readonly written: Uint8Array[] = [];
  readonly #listeners = new Map<string, ((...args: never[]) => void)[]>();

  on(event: string, listener: (...args: never[]) => void): this {
    this.#listeners.set(event, [...(this.#listeners.get(event) ?? []), listener]);
    return this;
  }
  emit(event: string, ...args: unknown[]): void {
    for (const listener of this.#listeners.get(event) ?? []) {
      (listener as (...args: unknown[]) => void)(...args);
    }
  }
  write(chunk: Uint8Array, callback: (error?: Error | null) => void): boolean {
    this.written.push(chunk.slice());
    queueMicrotask(() => callback(null));
    return true;
  }
  end(): void {
    this.ended = true;
  }
  close(code = 0): void {
    this.rstCode = code;
    this.destroyed = true;
    this.emit("close");
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  respond(headers: Record<string, string>): void {
    this.response = headers;
    this.headersSent = true;
  }
  /** The body written after the headers, as text. */
  get body(): string {
    return this.written.map((b) => new TextDecoder().decode(b)).join("");
  }
}

const REQUEST: HeaderField[] = [
  [":method", "CONNECT"],
  [":protocol", "connect-ip"],
  [":scheme", "https"],
  [":authority", "relay.example"],
  [":path", "/.well-known/masque/ip/*/*/"],
  ["capsule-protocol", "?1"],
];

Deno.test("h2RawHeaderFields() and h2HeaderFields() keep node:http2's header lines", () => {
  assertEquals(h2RawHeaderFields([":method", "CONNECT", "a", "1", "a", "2"]), [
    [":method", "CONNECT"],
    ["a", "1"],
    ["a", "2"],
  ]);
  assertEquals(h2HeaderFields({ ":status": 200, "set-x": ["1", "2"] }), [
    [":status", "200"],
    ["set-x", "1"],
    ["set-x", "2"],
  ]);
  assertEquals(h2ErrorName(H2_CANCEL), "CANCEL (0x8)");
  assertEquals(h2ErrorName(0x99), "unknown (0x99)");
});

Deno.test("answerH2Request() refuses in HTTP/3's order, with the reason as the body", async (t) => {
  const cases: [string, HeaderField[], number, string][] = [
    ["a plain CONNECT", [[":method", "CONNECT"], [":authority", "relay.example"]], 405, "plain"],
    [
      "a GET",
      [[":method", "GET"], [":scheme", "https"], [":path", "/"], [
        ":authority",
        "x",
      ]],
      404,
      "not found",
    ],
    [
      "a plain CONNECT with :path (malformed wins)",
      [[":method", "CONNECT"], [":path", "/"], [":authority", "x"]],
      400,
      "malformed CONNECT",
    ],
    [
      "another path",
      REQUEST.map(([n, v]) => [n, n === ":path" ? "/vpn" : v] as HeaderField),
      404,
      "",
    ],
    [
      "another protocol",
      REQUEST.map(([n, v]) => [n, n === ":protocol" ? "connect-udp" : v] as HeaderField),
      501,
      "unsupported :protocol",
    ],
  ];
  for (const [what, headers, status, reason] of cases) {
    await t.step(what, async () => {
      const stream = new FakeH2Stream();
      let authorized = false;
      const result = await answerH2Request(stream, headers, {
        authorize: () => {
          authorized = true;
          return { accept: true };
        },
      });
      assertEquals(result.session, undefined);
      assertEquals(stream.response?.[":status"], String(status));
      assert(stream.body.includes(reason), `body ${stream.body} lacks ${reason}`);
      assert(stream.ended, "the refused stream is ended");
      assertEquals(authorized, false, "authorize is not asked about a bad request");
    });
  }
  await t.step("a header list past the limit: 431", async () => {
    const stream = new FakeH2Stream();
    const result = await answerH2Request(stream, [...REQUEST, ["x-big", "a".repeat(20_000)]]);
    assertEquals(result.session === undefined && result.status, 431);
    assertEquals(stream.response?.[":status"], "431");
    assert(stream.body.startsWith("header list of 20"), stream.body);
  });
  await t.step("authorize refuses: its status and reason", async () => {
    const stream = new FakeH2Stream();
    const result = await answerH2Request(stream, REQUEST, {
      authorize: () => Promise.resolve({ accept: false, status: 403, reason: "not you" }),
    });
    assertEquals(result.session === undefined && result.status, 403);
    assertEquals(stream.response?.[":status"], "403");
    assertEquals(stream.body, "not you\n");
  });
  await t.step("authenticate runs before the resource is looked at, as over HTTP/3", async () => {
    // A path outside the template, without valid credentials: authenticate's answer,
    // so an unauthenticated client learns nothing about the relay's paths.
    const stream = new FakeH2Stream();
    const order: string[] = [];
    const result = await answerH2Request(
      stream,
      REQUEST.map(([n, v]) => [n, n === ":path" ? "/vpn" : v] as HeaderField),
      {
        authenticate: () => {
          order.push("authenticate");
          return { accept: false, status: 404, reason: "not found" };
        },
        authorize: () => {
          order.push("authorize");
          return { accept: true };
        },
      },
    );
    assertEquals(result.session === undefined && result.status, 404);
    assertEquals(order, ["authenticate"]);
  });
});

Deno.test("answerH2Request() accepts with 200 and capsule-protocol, and runs a stream-mode session", async () => {
  const stream = new FakeH2Stream();
  const result = await answerH2Request(stream, REQUEST);
  assert(result.session !== undefined);
  assertEquals(stream.response, { ":status": "200", "capsule-protocol": "?1" });
  const session = result.session;
  assertEquals(session.mode, "stream");
  assertEquals(session.maxPacketSize, 65535);
  const capsules: Capsule[] = [];
  const packets: Uint8Array[] = [];
  const end = session.run({
    onPacket: (p) => packets.push(p.slice()),
    onCapsule: (c) => capsules.push(c),
  });
  // ADDRESS_REQUEST split across two DATA frames, then a DATAGRAM capsule:
  // type 0x00, length 5, context id 0, packet 45 00 00 01.
  const request = encodeCapsule({
    type: "address_request",
    addresses: [{ requestId: 1, prefix: parsePrefix("198.18.0.9/32") }],
  });
  stream.emit("data", request.subarray(0, 3));
  stream.emit("data", request.subarray(3));
  stream.emit("data", hex("00 05 00 45000001"));
  await until(() => packets.length === 1, "the packet");
  assertEquals(capsules.map((c) => c.type), ["address_request"]);
  assertEquals(packets[0], hex("45000001"));
  // A packet out: a DATAGRAM capsule written on the stream.
  assertEquals(session.sendPacket(hex("45000002")), "sent");
  assertEquals(stream.written.at(-1), hex("00 05 00 45000002"));
  stream.emit("end");
  stream.emit("close");
  assertEquals((await end).message, "peer ended the stream");
  assertEquals(stream.rstCode, undefined, "after the peer's clean end our side ends cleanly");
  assert(stream.ended);
});

Deno.test("H2ConnectStream pauses the peer while a chunk waits and resumes when it is taken", async () => {
  const stream = new FakeH2Stream();
  const result = await answerH2Request(stream, REQUEST);
  assert(result.session !== undefined);
  const body = result.session.stream.readBody();
  stream.emit("data", hex("aa"));
  assert(stream.paused, "a chunk nobody waits for pauses the stream");
  stream.emit("data", hex("bb"));
  assertEquals((await body.next()).value, hex("aa"));
  assert(stream.paused, "still paused: a chunk waits");
  assertEquals((await body.next()).value, hex("bb"));
  assertEquals(stream.paused, false);
  const waiting = body.next();
  stream.emit("data", hex("cc"));
  assertEquals((await waiting).value, hex("cc"));
});

Deno.test("A reset by the peer ends the session with the HTTP/2 error code", async () => {
  const stream = new FakeH2Stream();
  const result = await answerH2Request(stream, REQUEST);
  assert(result.session !== undefined);
  const end = result.session.run({ onPacket: () => {} });
  stream.rstCode = H2_CANCEL;
  stream.destroyed = true;
  stream.emit("close");
  const ended = await end;
  assertEquals(ended, { reason: "error", message: "Stream reset with CANCEL (0x8)" });
});

Deno.test("A malformed capsule ends the session and resets the stream with CANCEL", async () => {
  const stream = new FakeH2Stream();
  const result = await answerH2Request(stream, REQUEST);
  assert(result.session !== undefined);
  const end = result.session.run({ onPacket: () => {} });
  // ADDRESS_ASSIGN (type 1) with length 3: too short for an assigned address.
  stream.emit("data", hex("01 03 000000"));
  const ended = await end;
  assertEquals(ended.reason, "error");
  assert(ended.message.startsWith("Cannot parse ADDRESS_ASSIGN capsule"), ended.message);
  assertEquals(stream.rstCode, H2_CANCEL);
});

Deno.test("Stream-mode packets are dropped when the write buffer holds maxQueuedBytes", async () => {
  const stream = new FakeH2Stream();
  const result = await answerH2Request(stream, REQUEST, { maxQueuedBytes: 3000 });
  assert(result.session !== undefined);
  const session = result.session;
  const packet = new Uint8Array(1400).fill(0x45);
  assertEquals(session.sendPacket(packet), "sent");
  stream.writableLength = 1600; // the peer's window is closed; the buffer fills
  assertEquals(session.sendPacket(packet), "sent"); // 1600 + 1404 > 3000: dropped
  assertEquals(session.stats.queueFull, 1);
  assertEquals(stream.written.length, 1);
  stream.writableLength = 0;
  assertEquals(session.sendPacket(packet), "sent");
  assertEquals(stream.written.length, 2);
  // Capsules are never dropped.
  stream.writableLength = 1 << 20;
  await session.sendCapsule({ type: "route_advertisement", ranges: [] });
  assertEquals(stream.written.length, 3);
});

Deno.test("A partial capsule past the connection's budget closes the connection with ENHANCE_YOUR_CALM", async () => {
  const stream = new FakeH2Stream();
  const closed: [number, string][] = [];
  const result = await answerH2Request(stream, REQUEST, {
    budget: new ByteBudget(100),
    failConnection: (code, reason) => closed.push([code, reason]),
  });
  assert(result.session !== undefined);
  const end = result.session.run({ onPacket: () => {} });
  // A DATAGRAM capsule of 1000 bytes, of which 200 arrive: 200 > 100 held.
  stream.emit("data", new Uint8Array([0x00, 0x43, 0xe8, ...new Uint8Array(200)]));
  const ended = await end;
  assertEquals(ended.reason, "error");
  assertEquals(closed.length, 1);
  assertEquals(closed[0][0], H2_ENHANCE_YOUR_CALM);
  assert(closed[0][1].startsWith("Cannot buffer"), closed[0][1]);
});

Deno.test("openH2ConnectIpSession() checks the response", async (t) => {
  await t.step("a 2xx with capsule-protocol: a stream-mode session", () => {
    const stream = new FakeH2Stream();
    const session = openH2ConnectIpSession(stream, [[":status", "200"], [
      "capsule-protocol",
      "?1",
    ]]);
    assertEquals(session.mode, "stream");
    assertEquals(stream.rstCode, undefined);
  });
  await t.step("a 403: ConnectIpError with the status, the stream reset", () => {
    const stream = new FakeH2Stream();
    const error = assertThrows(
      () => openH2ConnectIpSession(stream, [[":status", "403"]]),
      ConnectIpError,
      "Cannot open connect-ip session: the relay answered 403",
    );
    assertEquals(error.status, 403);
    assertEquals(stream.rstCode, H2_CANCEL);
  });
  await t.step("a 200 without capsule-protocol", () => {
    assertThrows(
      () => openH2ConnectIpSession(new FakeH2Stream(), [[":status", "200"]]),
      ConnectIpError,
      "lacks capsule-protocol",
    );
  });
});

Deno.test("answerH2Request() rejects when the stream was reset while authorize ran", async () => {
  const stream = new FakeH2Stream();
  await assertRejects(
    () =>
      answerH2Request(stream, REQUEST, {
        authorize: () => {
          stream.close(H2_CANCEL);
          return { accept: true };
        },
      }),
    Error,
    "the stream was reset while it was authorized",
  );
});
