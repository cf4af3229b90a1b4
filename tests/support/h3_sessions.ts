/**
 * CONNECT-IP sessions over real H3Connections on the in-memory QUIC pair
 * (`fake_quic.ts`), for the tests of the session and of its HTTP/3 helpers.
 *
 * @module
 */
import { assert } from "./assert.ts";
import { createFakeQuicPair, until, within } from "./fake_quic.ts";
import type { FakeQuicOptions } from "./fake_quic.ts";
import { H3Connection } from "../../shared/h3/connection.ts";
import { clientSettings, SETTINGS_H3_DATAGRAM } from "../../shared/h3/settings.ts";
import type { Settings } from "../../shared/h3/settings.ts";
import type { Capsule } from "../../shared/masque/capsule.ts";
import type {
  ConnectIpSession,
  PacketMode,
  SessionEnd,
} from "../../shared/masque/connect_ip_session.ts";
import { answerRequest, openConnectIpSession } from "../../shared/masque/h3_connect_ip.ts";
import type {
  AnswerRequestOptions,
  AnswerResult,
  H3ConnectIpSession,
} from "../../shared/masque/h3_connect_ip.ts";

/** RFC 9484 §4.6's default template expanded for any target and protocol. */
export const ANY_PATH = "/.well-known/masque/ip/*/*/";

/** A stand-in IPv4 packet: version/IHL 0x45 then `rest`. */
export const packet = (...rest: number[]) => new Uint8Array([0x45, ...rest]);

export interface H3SessionPair {
  client: H3Connection;
  server: H3Connection;
  clientConn: ReturnType<typeof createFakeQuicPair>[0];
  serverConn: ReturnType<typeof createFakeQuicPair>[1];
  answers: AnswerResult[];
  /** Opens a session from the client and returns both ends. */
  open(
    mode: PacketMode,
    path?: string,
  ): Promise<{ client: H3ConnectIpSession; server: H3ConnectIpSession }>;
}

/**
 * A client and a server H3Connection on the in-memory QUIC pair; the server
 * answers each request with answerRequest() (options in `answer`).
 */
export async function setupH3Sessions(
  options: FakeQuicOptions & {
    clientSettings?: Settings;
    serverSettings?: Settings;
    answer?: AnswerRequestOptions;
  } = {},
): Promise<H3SessionPair> {
  const [clientConn, serverConn] = createFakeQuicPair(options);
  const answers: AnswerResult[] = [];
  const server = new H3Connection(serverConn, {
    role: "server",
    settings: options.serverSettings,
    onRequest: (request) => {
      answerRequest(request, options.answer).then((answer) => answers.push(answer));
    },
  });
  const client = new H3Connection(clientConn, {
    role: "client",
    settings: options.clientSettings,
  });
  await Promise.all([server.start(), client.start()]);
  const open = async (mode: PacketMode, path = ANY_PATH) => {
    const before = answers.length;
    const session = await within(
      openConnectIpSession(client, { authority: "localhost", path, mode }),
      "openConnectIpSession",
    );
    await until(() => answers.length > before, "the server's answer");
    const answer = answers[before];
    assert(answer.session !== undefined, "the server refused the session");
    return { client: session, server: answer.session };
  };
  return { client, server, clientConn, serverConn, answers, open };
}

/** Runs `session`, collecting packets (copied) and capsules. */
export function collect(session: ConnectIpSession) {
  const packets: Uint8Array[] = [];
  const capsules: Capsule[] = [];
  const end: Promise<SessionEnd> = session.run({
    onPacket: (p) => packets.push(p.slice()),
    onCapsule: (c) => capsules.push(c),
  });
  return { packets, capsules, end };
}

/** A client settings map with SETTINGS_H3_DATAGRAM = `value`. */
export function clientWithDatagrams(value: 0 | 1): Settings {
  const settings = clientSettings();
  settings.set(SETTINGS_H3_DATAGRAM, value);
  return settings;
}
