/**
 * A hostile stream-mode client for e2e soak tests: opens a connect-ip
 * session in stream mode, waits for its ADDRESS_ASSIGN, then for `--seconds`
 * sends ICMP echo requests of `--size` bytes to `--target` as fast as the
 * stream takes them, and never reads the relay's answers (the echo replies
 * pile up on the relay's side). Bounded in time: it exits after the flood.
 *
 * ```
 * deno run --unstable-net --allow-net --allow-read stream_flood.ts \
 *   --relay 198.18.0.1:4433 --ca certs/ca.pem --target 198.18.1.2 --seconds 5 --size 1428 \
 *   [--token-file FILE]   # a user of the relay (its bearer token)
 * ```
 *
 * Prints `{"ready":true,...}` once the session is open and
 * `{"done":true,"sent":N,...}` at the end.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { H3Connection } from "../../../shared/h3/connection.ts";
import { clientSettings, SETTINGS_H3_DATAGRAM } from "../../../shared/h3/settings.ts";
import { expandConnectIpPath } from "../../../shared/masque/connect_ip_request.ts";
import { openConnectIpSession } from "../../../shared/masque/h3_connect_ip.ts";
import { bearerField } from "../../../shared/auth/credentials.ts";
import {
  CapsuleParser,
  datagramCapsuleHeaderSize,
  writeDatagramCapsuleHeader,
} from "../../../shared/masque/capsule.ts";
import { formatIp } from "../../../shared/ip/ip_address.ts";
import { buildIcmpv4Echo } from "../../support/packet_builder.ts";

/** Packets per stream write. */
const BURST = 64;
/** Stream writes not yet settled at any time. */
const WRITES_IN_FLIGHT = 4;

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      relay: { type: "string" },
      ca: { type: "string" },
      target: { type: "string", default: "198.18.1.2" },
      seconds: { type: "string", default: "5" },
      size: { type: "string", default: "1428" },
      "token-file": { type: "string" },
    },
  });
  const [host, portText] = (values.relay ?? "").split(":");
  const seconds = Number(values.seconds);
  const size = Number(values.size);
  if (!host || !portText || !values.ca || !(seconds > 0 && seconds <= 60) || !(size >= 28)) {
    console.error("stream_flood: needs --relay HOST:PORT --ca FILE, --seconds 0..60, --size >= 28");
    return 2;
  }
  const conn = await Deno.connectQuic({
    hostname: host,
    port: Number(portText),
    serverName: host,
    alpnProtocols: ["h3"],
    caCerts: [await Deno.readTextFile(values.ca)],
    keepAliveInterval: 1_000,
  });
  const settings = new Map(clientSettings());
  settings.set(SETTINGS_H3_DATAGRAM, 0);
  const h3 = new H3Connection(conn, { role: "client", settings });
  await h3.start();
  const session = await openConnectIpSession(h3, {
    authority: `${host}:${portText}`,
    path: expandConnectIpPath("/.well-known/masque/ip/{target}/{ipproto}/", {
      target: { kind: "any" },
      ipProtocol: "any",
    }),
    mode: "stream",
    headers: values["token-file"]
      ? [bearerField((await Deno.readTextFile(values["token-file"])).trim())]
      : [],
  });
  // Read only as far as the first ADDRESS_ASSIGN, then never again.
  const parser = new CapsuleParser();
  const reader = session.stream.readBody()[Symbol.asyncIterator]();
  let source: string | undefined;
  while (source === undefined) {
    const chunk = await reader.next();
    if (chunk.done) throw new Error("stream_flood: the relay ended the stream before assigning");
    parser.push(chunk.value);
    for (let capsule = parser.next(); capsule; capsule = parser.next()) {
      if (capsule.type !== "address_assign") continue;
      const v4 = capsule.addresses.find((a) => a.prefix.address.length === 4);
      if (v4) source = formatIp(v4.prefix.address);
    }
  }
  console.log(JSON.stringify({ ready: true, source }));
  const payload = new Uint8Array(size - 28).fill(0xa5);
  const packets = Array.from(
    { length: BURST },
    (_, i) =>
      buildIcmpv4Echo({
        src: source!,
        dst: values.target!,
        identifier: 0x4f4c,
        sequence: i,
        payload,
      }),
  );
  // BURST DATAGRAM capsules (RFC 9297 §3.5: type 0, length, context id 0, packet) in one write.
  const capsules = concat(packets.map((packet) => {
    const capsule = new Uint8Array(
      datagramCapsuleHeaderSize(packet.length + 1) + 1 + packet.length,
    );
    const header = writeDatagramCapsuleHeader(capsule, 0, packet.length + 1);
    capsule[header] = 0; // context id 0: an IP packet (RFC 9484 §6)
    capsule.set(packet, header + 1);
    return capsule;
  }));
  const end = Date.now() + seconds * 1000;
  let sent = 0;
  const writers = Array.from({ length: WRITES_IN_FLIGHT }, async () => {
    while (Date.now() < end) {
      await session.stream.writeData(capsules);
      sent += BURST;
    }
  });
  await Promise.all(writers);
  console.log(JSON.stringify({ done: true, sent }));
  try {
    conn.close({ closeCode: 0x100, reason: "" });
  } catch {
    // already closed
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main());
