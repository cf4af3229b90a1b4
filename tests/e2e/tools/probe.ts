/**
 * Sends UDP and TCP probes at once and reports which were answered, for the
 * e2e firewall tests.
 *
 * ```
 * deno run --allow-net probe.ts --timeout-ms 1500 '<json list of probes>'
 * ```
 *
 * Each probe is `{"proto":"udp"|"tcp","host":"198.18.100.1","port":53}`,
 * optionally with `"from"`: the local address to send from (UDP only). Prints
 * one JSON line: the probes in order, each with `"answer"`: `"reply"` (the
 * UDP answer's text), `"connected"`, `"refused"` (a TCP reset: something
 * answered), or `"silent"` after the timeout.
 *
 * @module
 */
import dgram from "node:dgram";
import net from "node:net";
import { parseArgs } from "node:util";

interface Probe {
  proto: "udp" | "tcp";
  host: string;
  port: number;
  from?: string;
}

function udp(probe: Probe, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket(probe.host.includes(":") ? "udp6" : "udp4");
    const done = (answer: string) => {
      clearTimeout(timer);
      socket.close();
      resolve(answer);
    };
    const timer = setTimeout(() => done("silent"), timeoutMs);
    socket.on("message", (message) => done(`reply ${message}`));
    socket.on("error", (error) => done(`error ${error.message}`));
    socket.bind(0, probe.from, () => socket.send("probe", probe.port, probe.host));
  });
}

function tcp(probe: Probe, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: probe.host, port: probe.port });
    const done = (answer: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done("silent"), timeoutMs);
    socket.on("connect", () => done("connected"));
    socket.on(
      "error",
      (error: Error & { code?: string }) =>
        done(error.code === "ECONNREFUSED" ? "refused" : `error ${error.code ?? error.message}`),
    );
  });
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { "timeout-ms": { type: "string", default: "1500" } },
    allowPositionals: true,
  });
  const timeoutMs = Number(values["timeout-ms"]);
  const probes: Probe[] = JSON.parse(positionals[0] ?? "[]");
  const answers = await Promise.all(
    probes.map((p) => p.proto === "udp" ? udp(p, timeoutMs) : tcp(p, timeoutMs)),
  );
  console.log(JSON.stringify(probes.map((p, i) => ({ ...p, answer: answers[i] }))));
}
