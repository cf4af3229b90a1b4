/**
 * Sends one UDP datagram from a socket carrying a firewall mark (as the
 * client's QUIC socket does) and waits for an echo, for kill-switch tests.
 *
 * ```
 * deno run --unstable-net --allow-net --allow-ffi marked_udp.ts --host H --port N [--mark M] [--timeout-ms T]
 * ```
 *
 * Prints one JSON line: `{"sent":true,"echoed":true}`, or with `"error"`
 * when the send failed (a kill switch's drop in the output hook fails it
 * with EPERM). `--mark 0` sends unmarked.
 *
 * @module
 */
import { errorMessage } from "../../../shared/errors.ts";
import { parseArgs } from "node:util";
import { markUdpSocket } from "../../../ffi/policy_routing.ts";

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      host: { type: "string" },
      port: { type: "string" },
      mark: { type: "string", default: "0" },
      "timeout-ms": { type: "string", default: "2000" },
    },
  });
  const host = values.host ?? "";
  const port = Number(values.port);
  const mark = Number(values.mark);
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: host.includes(":") ? "::" : "0.0.0.0",
    port: 0,
  });
  if (mark !== 0) markUdpSocket((socket.addr as Deno.NetAddr).port, mark);
  const result: { sent: boolean; echoed: boolean; error?: string } = { sent: false, echoed: false };
  try {
    await socket.send(new TextEncoder().encode("marked-udp"), {
      transport: "udp",
      hostname: host,
      port,
    });
    result.sent = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), Number(values["timeout-ms"]));
    });
    const reply = await Promise.race([socket.receive(), timeout]);
    clearTimeout(timer);
    result.echoed = reply !== null && new TextDecoder().decode(reply[0]) === "marked-udp";
  } catch (error) {
    result.error = errorMessage(error);
  }
  console.log(JSON.stringify(result));
  socket.close();
  Deno.exit(0);
}
