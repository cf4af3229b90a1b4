/**
 * A newcomer's first run: builds three network namespaces on this machine
 * (client <-> relay <-> target), creates a user with `deno task users add`,
 * starts the relay (with NAT and that users file) and the client (with the
 * user's token) as real processes, and shows traffic crossing the
 * CONNECT-IP tunnel (RFC 9484 over HTTP/3): IPv4 and IPv6 ping, an HTTP GET
 * over TCP, and UDP request/reply over IPv4 and IPv6; then that a client
 * without the token gets no tunnel.
 *
 * ```
 * sudo deno task demo
 * ```
 *
 * Needs root and the `ip`, `nft`, `ping` and `sysctl` commands, which it
 * installs with apt when they are missing (tests/setup.ts). Everything it
 * creates (processes, namespaces and with them the TUN devices and nft rules)
 * is removed when it ends, fails or is interrupted with Ctrl-C; the logs are
 * kept and their directory is printed. Exits 0 when all checks pass, 1 when
 * one fails, 130 on Ctrl-C.
 *
 * The same file doubles as the small HTTP and UDP probes the demo runs
 * inside the client namespace (`demo.ts probe-http URL...`,
 * `demo.ts probe-udp HOST PORT`), so no extra tool needs installing.
 *
 * @module
 */
import { errorMessage } from "../shared/errors.ts";
import dgram from "node:dgram";
import { createTopology, isRoot } from "./support/netns.ts";
import { ensureSystem } from "./setup.ts";
import type { NamespaceRole, Process, Topology } from "./support/netns.ts";

/** The topology id; a run left over after a SIGKILL is cleaned up by the next run. */
const TOPOLOGY_ID = "demo";
const RELAY_PORT = 4433;
const HTTP_PORT = 8080;
const UDP_PORT = 9000;
const POOL4 = "198.18.100.0/24";
const POOL6 = "fd00:100::/64";
const ROUTE4 = "198.18.1.0/24";
const ROUTE6 = "fd00:0:0:2::/64";
/** Bytes fetched in the second HTTP request, checked against the server's SHA-256. */
const DOWNLOAD_BYTES = 1024 * 1024;

const READY_TIMEOUT_MS = 15_000;
const PING_TIMEOUT_MS = 10_000;
const PROBE_TIMEOUT_MS = 15_000;
/** Inside a probe: per request (HTTP) or per attempt (UDP). */
const PROBE_REQUEST_TIMEOUT_MS = 5_000;
const UDP_ATTEMPTS = 3;
/** Backstop for the whole demo; every step has its own, shorter timeout. */
const DEMO_DEADLINE_MS = 90_000;
const LOG_TAIL_LINES = 15;

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");
const SELF = decodeURIComponent(new URL(import.meta.url).pathname);

const useColor = Deno.stdout.isTerminal() && !Deno.noColor;
const paint = (code: number) => (text: string) => useColor ? `\x1b[${code}m${text}\x1b[0m` : text;
const green = paint(32);
const red = paint(31);
const bold = paint(1);
const dim = paint(2);

/** One of the five traffic checks. */
interface CheckResult {
  name: string;
  ok: boolean;
}

/** The running demo: what the Ctrl-C handler and the failure path need to clean up. */
interface DemoState {
  logDir?: string;
  certDir?: string;
  creating?: Promise<unknown>;
  topology?: Topology;
  relay?: Process;
  client?: Process;
}

const state: DemoState = {};
let finishing = false;
/** Errors that {@linkcode step} has already printed. */
const reported = new WeakSet<object>();

function say(line = ""): void {
  console.log(line);
}

/** Prints an indented line under a step; quiet once Ctrl-C has cut the steps short. */
function detail(line: string): void {
  if (!finishing) say(`      ${line}`);
}

function seconds(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Prints `title ... OK (time)` around `fn`; rethrows after printing FAILED. */
async function step<T>(title: string, fn: () => Promise<T>): Promise<T> {
  const start = performance.now();
  say(bold(`> ${title}`));
  try {
    const value = await fn();
    detail(`${green("ok")} ${dim(`(${seconds(performance.now() - start)})`)}`);
    return value;
  } catch (error) {
    if (finishing) throw error;
    detail(`${red("FAILED")} ${dim(`(${seconds(performance.now() - start)})`)}`);
    for (const line of errorMessage(error).split("\n").slice(0, 12)) detail(red(line));
    if (error instanceof Error) reported.add(error);
    throw error;
  }
}

async function tail(file: string, lines: number): Promise<string[]> {
  try {
    const text = await Deno.readTextFile(file);
    return text.trimEnd().split("\n").slice(-lines);
  } catch (error) {
    return [`(cannot read ${file}: ${errorMessage(error)})`];
  }
}

async function printLogTails(): Promise<void> {
  for (const [name, process] of [["relay", state.relay], ["client", state.client]] as const) {
    if (!process) continue;
    say();
    say(bold(`Last lines of the ${name} log (${process.logFile}):`));
    for (const line of await tail(process.logFile, LOG_TAIL_LINES)) say(`  ${line}`);
  }
}

/** Kills the processes, deletes the namespaces (and with them the TUNs and nft rules). */
async function cleanUp(): Promise<void> {
  if (state.creating) await state.creating.catch(() => {});
  const start = performance.now();
  if (state.topology) {
    await state.topology.teardown();
    say(
      dim(
        `Cleaned up: processes stopped, namespaces deleted (${
          seconds(performance.now() - start)
        }).`,
      ),
    );
  }
  if (state.certDir) await Deno.remove(state.certDir, { recursive: true }).catch(() => {});
  if (state.logDir) say(`Logs are kept in ${state.logDir}`);
}

function onInterrupt(): void {
  if (finishing) return;
  finishing = true;
  say();
  say(red("Interrupted: stopping the processes and deleting the namespaces..."));
  // tests/support/netns.ts also tears down on SIGINT and then exits; the
  // teardown is shared and idempotent, and the log directory was printed above.
  if (state.logDir) say(`Logs are kept in ${state.logDir}`);
  cleanUp().finally(() => Deno.exit(130));
}

async function checkPrerequisites(): Promise<boolean> {
  if (!isRoot()) {
    say(red("The demo must run as root: it creates network namespaces, TUN devices and"));
    say(red("nftables rules, and installs the packages it needs. Run it again as root:"));
    say(red("  sudo npx -y deno@2.9.6 task demo"));
    return false;
  }
  // Installs what is missing (iproute2, nftables, iputils-ping, procps) with apt, saying why.
  return await ensureSystem("demo", { say });
}

/** Parses `key=value` fields from one of our log lines (values may be JSON strings). */
function logField(line: string, key: string): string | undefined {
  const match = line.match(new RegExp(`\\s${key}=("(?:[^"\\\\]|\\\\.)*"|\\S+)`));
  if (!match) return undefined;
  const raw = match[1];
  return raw.startsWith('"') ? JSON.parse(raw) : raw;
}

/** Runs `ping` in the client namespace and shows its summary lines. */
async function pingCheck(topology: Topology, family: 4 | 6, target: string): Promise<void> {
  const result = await topology.run(
    "client",
    ["ping", `-${family}`, "-c", "3", "-i", "0.2", "-W", "2", target],
    { check: false, timeoutMs: PING_TIMEOUT_MS },
  );
  const lines = result.stdout.split("\n");
  const summary = lines.filter((line) => /packets transmitted|^rtt /.test(line));
  for (const line of summary) detail(line);
  if (result.code !== 0) {
    throw new Error(
      `ping exited with code ${result.code}${
        summary.length ? "" : `: ${(result.stderr || result.stdout).trim()}`
      }`,
    );
  }
}

/**
 * Runs a second client without credentials: the relay answers 404, as for
 * an unknown path, and the client says so and exits 1.
 */
async function refusedClientCheck(topology: Topology, certDir: string): Promise<void> {
  const result = await topology.run("client", [
    "deno",
    "run",
    "--unstable-net",
    "--allow-net",
    "--allow-ffi",
    "--allow-read",
    "--allow-env=TARGET_CIDRS,MASQUE_LOG_LEVEL,MASQUE_TOKEN",
    `${ROOT}/client/main.ts`,
    ...["--relay", `https://${topology.relayUnderlay4}:${RELAY_PORT}`],
    ...["--ca", `${certDir}/ca.pem`, "--tun", "mvpn-anon"],
  ], { check: false, timeoutMs: PROBE_TIMEOUT_MS });
  const line = result.stderr.split("\n").find((l) => l.includes("answered 404"));
  if (result.code !== 1 || line === undefined) {
    throw new Error(`expected a refusal, got exit ${result.code}: ${result.stderr.trim()}`);
  }
  detail(line.slice(line.indexOf("Cannot")));
}

/** Runs this file as a probe inside `ns` and returns the lines it printed. */
async function runProbe(
  topology: Topology,
  ns: NamespaceRole,
  allowNet: string,
  args: string[],
): Promise<string[]> {
  const result = await topology.run(
    ns,
    ["deno", "run", `--allow-net=${allowNet}`, SELF, ...args],
    { check: false, timeoutMs: PROBE_TIMEOUT_MS },
  );
  const lines = result.stdout.trimEnd().split("\n").filter((line) => line !== "");
  for (const line of lines) detail(line);
  if (result.code !== 0) {
    throw new Error(result.stderr.trim() || `probe exited with code ${result.code}`);
  }
  return lines;
}

function bracket(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

async function main(): Promise<number> {
  say(bold("MASQUE VPN demo: CONNECT-IP (RFC 9484) over HTTP/3 between network namespaces"));
  say();
  if (!(await checkPrerequisites())) return 1;

  Deno.addSignalListener("SIGINT", onInterrupt);
  Deno.addSignalListener("SIGTERM", onInterrupt);
  const demoStart = performance.now();
  state.logDir = await Deno.makeTempDir({ prefix: "mvpn-demo-logs-" });
  state.certDir = await Deno.makeTempDir({ prefix: "mvpn-demo-certs-" });
  const certDir = state.certDir;
  say(dim(`Logs go to ${state.logDir}`));
  say();

  const topology = await step("Creating the namespaces client <-> relay <-> target", async () => {
    state.creating = createTopology({ id: TOPOLOGY_ID, logDir: state.logDir });
    const topology = await state.creating as Topology;
    state.topology = topology;
    const { names } = topology;
    detail(
      `client  ${
        names.client.padEnd(18)
      } ${topology.clientUnderlay4}, ${topology.clientUnderlay6}` +
        "  (no route to the target: only the tunnel leads there)",
    );
    detail(
      `relay   ${names.relay.padEnd(18)} ${topology.relayUnderlay4}, ${topology.relayUnderlay6}`,
    );
    detail(
      `target  ${names.target.padEnd(18)} ${topology.target4}, ${topology.target6}` +
        "  (no route back to the client: the relay NATs)",
    );
    return topology;
  });

  await step("Starting an HTTP server and a UDP echo server in the target namespace", async () => {
    const http = topology.spawn("target", [
      "deno",
      "run",
      `--allow-net=[::]:${HTTP_PORT}`,
      `${ROOT}/tests/e2e/tools/http_server.ts`,
      "--port",
      String(HTTP_PORT),
    ], { name: "http_server" });
    const udp = topology.spawn("target", [
      "deno",
      "run",
      "--allow-net",
      `${ROOT}/tests/e2e/tools/udp_echo.ts`,
      "--port",
      String(UDP_PORT),
    ], { name: "udp_echo" });
    await Promise.all([
      http.waitForLog(/"ready":true/, READY_TIMEOUT_MS),
      udp.waitForLog(/"ready":true/, READY_TIMEOUT_MS),
    ]);
    detail(
      `http://${topology.target4}:${HTTP_PORT}/  and  udp ${topology.target4}:${UDP_PORT}` +
        ` (also on ${topology.target6})`,
    );
  });

  const usersFile = `${state.logDir}/users.json`;
  const tokenFile = `${certDir}/demo.token`;
  await step("Creating a user: deno task users add demo", async () => {
    const args = [
      ...["add", "demo", "--users", usersFile, "--route", ROUTE4, "--route", ROUTE6],
      ...["--max-sessions", "2"],
    ];
    const output = await new Deno.Command("deno", {
      args: ["run", "--allow-read", "--allow-write", `${ROOT}/relay/users_main.ts`, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr).trim();
    if (!output.success) throw new Error(`users add failed: ${stderr}`);
    const token = new TextDecoder().decode(output.stdout).trim();
    // The token is printed once; the demo keeps it in a file only the client reads.
    await Deno.writeTextFile(tokenFile, `${token}\n`, { mode: 0o600 });
    detail(`deno task users ${args.join(" ")}`);
    detail(stderr.split("\n")[0]);
    detail(`its token (printed once) is in ${tokenFile}; ${usersFile} keeps only its scrypt hash`);
  });

  await step("Starting the relay (with NAT) in the relay namespace", async () => {
    state.relay = topology.spawn("relay", [
      "deno",
      "run",
      "--unstable-net",
      "--allow-net",
      "--allow-ffi",
      "--allow-read",
      `--allow-write=${certDir}`,
      "--allow-run=nft,sysctl",
      "--allow-env=MASQUE_LOG_LEVEL",
      `${ROOT}/relay/main.ts`,
      ...["--dev-certs", certDir, "--dev-cert-name", topology.relayUnderlay4],
      ...["--port", String(RELAY_PORT), "--pool4", POOL4, "--pool6", POOL6, "--nat"],
      ...["--users", usersFile],
    ], { name: "relay" });
    const line = await state.relay.waitForLog(/\blistening\b/, READY_TIMEOUT_MS);
    const addr = logField(line, "addr") ?? `:${RELAY_PORT}`;
    const colon = addr.lastIndexOf(":");
    detail(
      `listening on UDP ${bracket(addr.slice(0, colon))}:${addr.slice(colon + 1)}` +
        `, TUN ${logField(line, "tun") ?? "?"}`,
    );
    detail(`client address pools ${POOL4}, ${POOL6}; masquerading them towards the target`);
    detail(`users from ${usersFile}; a request without valid credentials gets 404`);
    detail(dim(
      `throwaway development CA and certificate for ${topology.relayUnderlay4} in ${certDir}`,
    ));
  });

  await step("Starting the client in the client namespace", async () => {
    state.client = topology.spawn("client", [
      "deno",
      "run",
      "--unstable-net",
      "--allow-net",
      "--allow-ffi",
      "--allow-read",
      "--allow-env=TARGET_CIDRS,MASQUE_LOG_LEVEL,MASQUE_TOKEN",
      `${ROOT}/client/main.ts`,
      ...["--relay", `https://${topology.relayUnderlay4}:${RELAY_PORT}`],
      ...["--ca", `${certDir}/ca.pem`, "--route", ROUTE4, "--route", ROUTE6],
      ...["--token-file", tokenFile],
    ], { name: "client" });
    detail(
      `CONNECT-IP request to https://${topology.relayUnderlay4}:${RELAY_PORT} over HTTP/3, ` +
        "as user demo (Proxy-Authorization: Bearer)",
    );
    const assigned = await state.client.waitForLog(/\bassigned\b/, READY_TIMEOUT_MS);
    const up = await state.client.waitForLog(/\btunnel up\b/, READY_TIMEOUT_MS);
    const addresses = logField(assigned, "addresses")?.split(",").join(", ") ?? "?";
    const routes = logField(assigned, "routes")?.split(",").join(", ") ?? "?";
    detail(`assigned addresses  ${addresses}`);
    detail(`routes via tunnel   ${routes}`);
    detail(`TUN ${logField(up, "tun") ?? "?"}, MTU ${logField(up, "mtu") ?? "?"} bytes`);
  });

  say();
  say(bold("Traffic through the tunnel (from the client namespace to the target):"));
  const checks: [string, () => Promise<unknown>][] = [
    [
      `IPv4 ping ${topology.target4}`,
      () => pingCheck(topology, 4, topology.target4),
    ],
    [
      `IPv6 ping ${topology.target6}`,
      () => pingCheck(topology, 6, topology.target6),
    ],
    [
      `HTTP GET over TCP/IPv4 http://${topology.target4}:${HTTP_PORT}/`,
      () =>
        runProbe(topology, "client", `${topology.target4}:${HTTP_PORT}`, [
          "probe-http",
          `http://${topology.target4}:${HTTP_PORT}/`,
          `http://${topology.target4}:${HTTP_PORT}/bytes?n=${DOWNLOAD_BYTES}`,
        ]),
    ],
    [
      `UDP request and reply over IPv4 to ${topology.target4}:${UDP_PORT}`,
      () =>
        runProbe(topology, "client", `0.0.0.0,${topology.target4}:${UDP_PORT}`, [
          "probe-udp",
          topology.target4,
          String(UDP_PORT),
        ]),
    ],
    [
      `UDP request and reply over IPv6 to [${topology.target6}]:${UDP_PORT}`,
      () =>
        runProbe(topology, "client", `[::],[${topology.target6}]:${UDP_PORT}`, [
          "probe-udp",
          topology.target6,
          String(UDP_PORT),
        ]),
    ],
    [
      "a client without the token gets no tunnel",
      () => refusedClientCheck(topology, certDir),
    ],
  ];
  const results: CheckResult[] = [];
  for (const [index, [name, run]] of checks.entries()) {
    if (finishing) break;
    try {
      await step(`Check ${index + 1}/${checks.length}: ${name}`, run);
      results.push({ name, ok: true });
    } catch {
      // After Ctrl-C, onInterrupt() cleans up and exits; a check it cut short is no failure.
      if (finishing) await new Promise<never>(() => {});
      results.push({ name, ok: false });
    }
  }

  const failed = results.filter((result) => !result.ok);
  say();
  const total = seconds(performance.now() - demoStart);
  if (failed.length === 0) {
    say(green(bold(`All ${results.length} checks passed`)) + ` in ${total}.`);
  } else {
    say(red(bold(`${failed.length} of ${results.length} checks failed:`)));
    for (const result of failed) say(red(`  - ${result.name}`));
    await printLogTails();
  }
  return failed.length === 0 ? 0 : 1;
}

/** Probe: GETs each URL, prints status and body (or size and SHA-256 check). */
async function probeHttp(urls: string[]): Promise<number> {
  for (const url of urls) {
    const start = performance.now();
    const response = await fetch(url, { signal: AbortSignal.timeout(PROBE_REQUEST_TIMEOUT_MS) });
    const body = new Uint8Array(await response.arrayBuffer());
    const ms = performance.now() - start;
    const expected = response.headers.get("x-sha256");
    if (!response.ok) throw new Error(`GET ${url} answered ${response.status}`);
    if (expected === null) {
      const text = new TextDecoder().decode(body);
      console.log(
        `GET ${new URL(url).pathname} -> ${response.status}, body ${JSON.stringify(text)}` +
          ` (${seconds(ms)})`,
      );
      continue;
    }
    const digest = await crypto.subtle.digest("SHA-256", body);
    const actual = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0"))
      .join("");
    if (actual !== expected) {
      throw new Error(
        `GET ${url}: SHA-256 ${actual} of ${body.length} bytes, expected ${expected}`,
      );
    }
    const mbits = (body.length * 8) / (ms / 1000) / 1e6;
    console.log(
      `GET ${new URL(url).pathname}${new URL(url).search} -> ${response.status}, ` +
        `${body.length} bytes, SHA-256 matches (${seconds(ms)}, ${mbits.toFixed(0)} Mbit/s)`,
    );
  }
  return 0;
}

/** Probe: sends one datagram to `host:port` and waits for the same bytes back (retries). */
async function probeUdp(host: string, port: number): Promise<number> {
  const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  try {
    for (let attempt = 1; attempt <= UDP_ATTEMPTS; attempt++) {
      const message = `hello over udp, attempt ${attempt}, nonce ${
        crypto.randomUUID().slice(0, 8)
      }`;
      const start = performance.now();
      const reply = await new Promise<{ data: string; from: string } | undefined>((resolve) => {
        const timer = setTimeout(() => done(undefined), PROBE_REQUEST_TIMEOUT_MS / 2);
        const onMessage = (data: Uint8Array, peer: dgram.RemoteInfo) => {
          const text = new TextDecoder().decode(data);
          if (text === message) done({ data: text, from: `${bracket(peer.address)}:${peer.port}` });
        };
        const done = (value: { data: string; from: string } | undefined) => {
          clearTimeout(timer);
          socket.off("message", onMessage);
          resolve(value);
        };
        socket.on("message", onMessage);
        socket.send(message, port, host);
      });
      const ms = performance.now() - start;
      if (reply) {
        console.log(`sent ${JSON.stringify(message)} (${message.length} bytes)`);
        console.log(
          `got the same ${reply.data.length} bytes back from ${reply.from} in ${seconds(ms)}`,
        );
        return 0;
      }
      console.log(`attempt ${attempt}: no reply within ${seconds(PROBE_REQUEST_TIMEOUT_MS / 2)}`);
    }
    throw new Error(`No UDP reply from ${bracket(host)}:${port} after ${UDP_ATTEMPTS} attempts`);
  } finally {
    socket.close();
  }
}

async function probeMain(args: string[]): Promise<number> {
  try {
    const [kind, ...rest] = args;
    if (kind === "probe-http") return await probeHttp(rest);
    return await probeUdp(rest[0], Number(rest[1]));
  } catch (error) {
    console.error(errorMessage(error));
    return 1;
  }
}

if (import.meta.main) {
  if (Deno.args[0] === "probe-http" || Deno.args[0] === "probe-udp") {
    Deno.exit(await probeMain(Deno.args));
  }
  let code: number;
  let deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    deadlineTimer = setTimeout(
      () => reject(new Error(`The demo did not finish within ${seconds(DEMO_DEADLINE_MS)}`)),
      DEMO_DEADLINE_MS,
    );
  });
  try {
    code = await Promise.race([main(), deadline]);
  } catch (error) {
    code = 1;
    if (!finishing) {
      if (!(error instanceof Error && reported.has(error))) say(red(errorMessage(error)));
      say();
      say(red(bold("The demo stopped before the checks could run.")));
      await printLogTails();
    }
  } finally {
    clearTimeout(deadlineTimer);
  }
  if (!finishing) {
    finishing = true;
    say();
    await cleanUp();
    Deno.exit(code);
  }
}
