/**
 * A DNS server for the e2e tests that knows one name: answers A and AAAA
 * queries for `--name` with `--a` and `--aaaa` (RFC 1035 §4.1), anything
 * else with NXDOMAIN. UDP on port `--port` of every address, IPv4 and IPv6.
 *
 * ```
 * deno run --allow-net dns_server.ts --port 53 --name vpn-test.example --a 198.18.1.2 --aaaa fd00:0:0:2::2
 * ```
 *
 * Prints `{"ready":true,"port":N}` once bound, then
 * `{"query":"vpn-test.example","type":1,"from":"198.18.1.1"}` per query
 * (the source address shows whether it came through the relay's NAT).
 *
 * @module
 */
import dgram from "node:dgram";
import { parseArgs } from "node:util";
import { parseIp } from "../../../shared/ip/ip_address.ts";

const TYPE_A = 1;
const TYPE_AAAA = 28;

/** The question of a query: its name, type and where the question ends. */
function readQuestion(query: Uint8Array): { name: string; type: number; end: number } | undefined {
  if (query.length < 12 || ((query[4] << 8) | query[5]) !== 1) return undefined;
  const labels: string[] = [];
  let at = 12;
  while (at < query.length && query[at] !== 0) {
    const length = query[at];
    if (length > 63 || at + 1 + length > query.length) return undefined;
    labels.push(new TextDecoder().decode(query.subarray(at + 1, at + 1 + length)));
    at += 1 + length;
  }
  if (at + 5 > query.length) return undefined;
  const type = (query[at + 1] << 8) | query[at + 2];
  return { name: labels.join(".").toLowerCase(), type, end: at + 5 };
}

/** The answer to `query`: the question, then one record or none (NXDOMAIN). */
function answer(
  query: Uint8Array,
  question: { name: string; type: number; end: number },
  records: ReadonlyMap<number, Uint8Array>,
  name: string,
): Uint8Array {
  const known = question.name === name;
  const data = known ? records.get(question.type) : undefined;
  const head = query.slice(0, question.end);
  head[2] = 0x81 | (query[2] & 0x01); // QR, opcode 0, AA, RD copied
  head[3] = 0x80 | (known ? 0 : 3); // RA, rcode NOERROR or NXDOMAIN
  head.set([0, 1, 0, data ? 1 : 0, 0, 0, 0, 0], 4); // QD 1, AN 0/1, NS 0, AR 0
  if (!data) return head;
  const record = new Uint8Array(12 + data.length);
  // Name: a pointer to the question's (offset 12); type, class IN, TTL 60, length.
  record.set([0xc0, 12, 0, question.type, 0, 1, 0, 0, 0, 60, 0, data.length]);
  record.set(data, 12);
  const out = new Uint8Array(head.length + record.length);
  out.set(head);
  out.set(record, head.length);
  return out;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string", default: "53" },
      name: { type: "string" },
      a: { type: "string" },
      aaaa: { type: "string" },
    },
  });
  const name = (values.name ?? "").toLowerCase();
  const records = new Map<number, Uint8Array>();
  if (values.a) records.set(TYPE_A, parseIp(values.a)!);
  if (values.aaaa) records.set(TYPE_AAAA, parseIp(values.aaaa)!);
  const socket = dgram.createSocket({ type: "udp6", ipv6Only: false });
  socket.on("message", (message: Uint8Array, peer: { address: string; port: number }) => {
    const question = readQuestion(message);
    if (!question) return;
    const from = peer.address.startsWith("::ffff:") ? peer.address.slice(7) : peer.address;
    console.log(JSON.stringify({ query: question.name, type: question.type, from }));
    socket.send(answer(message, question, records, name), peer.port, peer.address);
  });
  socket.on("error", (error: Error) => {
    console.error(`dns_server: ${error.message}`);
    Deno.exit(1);
  });
  const port = Number(values.port);
  socket.bind(port, "::", () => console.log(JSON.stringify({ ready: true, port })));
}
