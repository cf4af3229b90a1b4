/**
 * A service on the relay host for the e2e firewall tests: listens on UDP and
 * TCP on every address (IPv4 and IPv6) of its namespace at one port, logs
 * every datagram and connection as a JSON line, answers each datagram with
 * `hello <datagram>` and each connection with `hello`.
 *
 * ```
 * deno run --allow-net host_listener.ts --port N
 * ```
 *
 * Prints `{"ready":true,"port":N}` once both sockets are bound, then
 * `{"event":"udp","from":"198.18.100.2"}` or `{"event":"tcp",...}` per
 * arrival. Uses `node:dgram` and `node:net`, which need no `--unstable-net`.
 *
 * @module
 */
import dgram from "node:dgram";
import net from "node:net";
import { parseArgs } from "node:util";

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { port: { type: "string" } } });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    console.error(`host_listener: --port must be an integer 1..65535, got ${values.port}`);
    Deno.exit(1);
  }
  const log = (event: string, from: string) => console.log(JSON.stringify({ event, from }));
  const fail = (error: Error) => {
    console.error(`host_listener: ${error.message}`);
    Deno.exit(1);
  };
  // One dual-stack socket each: [::] also takes IPv4 (as ::ffff:a.b.c.d), broadcast included.
  const socket = dgram.createSocket({ type: "udp6", ipv6Only: false });
  socket.on("message", (message, peer) => {
    log("udp", peer.address);
    socket.send(`hello ${message}`, peer.port, peer.address);
  });
  socket.on("error", fail);
  const server = net.createServer((connection) => {
    log("tcp", connection.remoteAddress ?? "?");
    connection.end("hello");
  });
  server.on("error", fail);
  await Promise.all([
    new Promise<void>((resolve) => socket.bind(port, "::", resolve)),
    new Promise<void>((resolve) => server.listen({ port, host: "::" }, resolve)),
  ]);
  console.log(JSON.stringify({ ready: true, port }));
}
