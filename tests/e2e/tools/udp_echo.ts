/**
 * UDP echo server for e2e tests: sends every datagram back to its sender.
 *
 * ```
 * deno run --allow-net udp_echo.ts --port N [--host ::]
 * ```
 *
 * Prints `{"ready":true,"port":N}` once bound. The default host `::` also
 * accepts IPv4 (as IPv4-mapped addresses). Uses `node:dgram`, which unlike
 * `Deno.listenDatagram` needs no `--unstable-net`.
 *
 * @module
 */
import dgram from "node:dgram";
import { parseArgs } from "node:util";

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { host: { type: "string", default: "::" }, port: { type: "string" } },
  });
  const port = Number(values.port);
  if (values.port === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`udp_echo: --port must be an integer 0..65535, got ${values.port}`);
    Deno.exit(1);
  }
  const socket = dgram.createSocket(values.host.includes(":") ? "udp6" : "udp4");
  socket.on("message", (message, peer) => socket.send(message, peer.port, peer.address));
  socket.on("error", (error) => {
    console.error(`udp_echo: ${error.message}`);
    Deno.exit(1);
  });
  socket.bind(port, values.host, () => {
    console.log(JSON.stringify({ ready: true, port: socket.address().port }));
  });
}
