/**
 * Checks the tunnel from the client's side: what the compose project's
 * `check` service runs in the client container's network namespace, so that
 * `docker compose up` shows the client reaching the target.
 *
 * ```
 * deno run --allow-net --allow-run=ping tunnel_check.ts \
 *   --target 198.19.2.10 --target fd00:19:2::10 [--http-port 8080] [--udp-port 7007]
 *   [--bytes 1048576] [--wait 30]
 * ```
 *
 * For each target address: ping (3 echo requests), an HTTP GET of
 * `/bytes?n=N` from `tests/e2e/tools/http_server.ts` whose body must be N
 * bytes with the SHA-256 the server put in `x-sha256`, and a UDP datagram
 * that `udp_echo.ts` must send back unchanged. A check that fails is retried
 * until `--wait` seconds have passed since the start. Prints one JSON line
 * per check, then a summary; exits 0 when every check passed, else 1.
 *
 * @module
 */
import { createHash } from "node:crypto";
import dgram from "node:dgram";
import { parseArgs } from "node:util";

/** Outcome of one check. */
export interface CheckResult {
  readonly check: string;
  readonly target: string;
  readonly ok: boolean;
  readonly detail: string;
  /** Tries made, the last one deciding. */
  readonly tries: number;
}

/** Reads "3 packets transmitted, 3 received" from ping's summary; undefined when absent. */
export function parsePingSummary(output: string): { sent: number; received: number } | undefined {
  for (const line of output.split("\n")) {
    const words = line.trim().split(/[\s,]+/);
    const sentAt = words.indexOf("transmitted");
    const receivedAt = words.indexOf("received");
    if (sentAt >= 2 && receivedAt >= 1) {
      const sent = Number(words[sentAt - 2]);
      const received = Number(words[receivedAt - 1]);
      if (Number.isInteger(sent) && Number.isInteger(received)) return { sent, received };
    }
  }
  return undefined;
}

function hostForUrl(address: string): string {
  return address.includes(":") ? `[${address}]` : address;
}

async function ping(target: string): Promise<[boolean, string]> {
  const { stdout, stderr } = await new Deno.Command("ping", {
    args: ["-n", "-c", "3", "-i", "0.2", "-W", "2", target],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  const summary = parsePingSummary(text);
  if (!summary) return [false, `no ping summary: ${text.trim().split("\n").pop()}`];
  return [summary.received === summary.sent, `${summary.received}/${summary.sent} answered`];
}

async function httpGet(target: string, port: number, bytes: number): Promise<[boolean, string]> {
  const url = `http://${hostForUrl(target)}:${port}/bytes?n=${bytes}`;
  const response = await fetch(url, { signal: AbortSignal.timeout(15_000) });
  const hash = createHash("sha256");
  let length = 0;
  for await (const chunk of response.body ?? []) {
    hash.update(chunk);
    length += chunk.length;
  }
  const expected = response.headers.get("x-sha256");
  const actual = hash.digest("hex");
  const ok = response.status === 200 && length === bytes && expected === actual;
  return [
    ok,
    `GET ${url}: ${response.status}, ${length} bytes, sha256 ${actual.slice(0, 16)}… ${
      expected === actual ? "matches" : `expected ${expected}`
    }`,
  ];
}

function udpEcho(target: string, port: number): Promise<[boolean, string]> {
  const token = `masque-check-${crypto.randomUUID()}`;
  return new Promise((resolve) => {
    const socket = dgram.createSocket(target.includes(":") ? "udp6" : "udp4");
    const done = (result: [boolean, string]) => {
      clearTimeout(timer);
      socket.close();
      resolve(result);
    };
    const timer = setTimeout(() => done([false, `no echo from ${target}:${port} in 3 s`]), 3_000);
    socket.on("message", (message) => {
      const text = new TextDecoder().decode(message);
      done([text === token, text === token ? `echo from ${target}:${port}` : `wrong echo ${text}`]);
    });
    socket.on("error", (error) => done([false, `UDP error: ${error.message}`]));
    socket.send(token, port, target);
  });
}

async function retried(
  check: string,
  target: string,
  deadline: number,
  attempt: () => Promise<[boolean, string]>,
): Promise<CheckResult> {
  let tries = 0;
  while (true) {
    tries++;
    let ok: boolean;
    let detail: string;
    try {
      [ok, detail] = await attempt();
    } catch (error) {
      [ok, detail] = [false, error instanceof Error ? error.message : String(error)];
    }
    if (ok || Date.now() >= deadline) return { check, target, ok, detail, tries };
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      target: { type: "string", multiple: true, default: [] },
      "http-port": { type: "string", default: "8080" },
      "udp-port": { type: "string", default: "7007" },
      bytes: { type: "string", default: String(1 << 20) },
      wait: { type: "string", default: "30" },
    },
  });
  const [httpPort, udpPort, bytes, wait] = [
    values["http-port"],
    values["udp-port"],
    values.bytes,
    values.wait,
  ].map(Number);
  if (values.target.length === 0 || ![httpPort, udpPort, bytes, wait].every(Number.isFinite)) {
    console.error("tunnel_check: give --target ADDRESS (repeatable) and numeric ports and sizes");
    Deno.exit(2);
  }
  const deadline = Date.now() + wait * 1000;
  const results: CheckResult[] = [];
  for (const target of values.target) {
    for (
      const [check, attempt] of [
        ["ping", () => ping(target)],
        ["http", () => httpGet(target, httpPort, bytes)],
        ["udp", () => udpEcho(target, udpPort)],
      ] as const
    ) {
      const result = await retried(check, target, deadline, attempt);
      console.log(JSON.stringify(result));
      results.push(result);
    }
  }
  const failed = results.filter((result) => !result.ok).length;
  console.log(
    failed === 0
      ? `tunnel check: all ${results.length} checks passed through the tunnel`
      : `tunnel check: ${failed} of ${results.length} checks FAILED`,
  );
  Deno.exit(failed === 0 ? 0 : 1);
}
