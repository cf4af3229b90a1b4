/**
 * `deno task client`: wires the {@linkcode Client} (`client/client.ts`) to
 * this host: the config, the logger, each relay's address (resolved once,
 * so that reconnecting needs no DNS while the kill switch blocks it), QUIC
 * from a socket with larger buffers and the firewall mark, the real TUN,
 * netlink and policy routing, the kill switch and resolver
 * (`client/full_tunnel.ts`), the status file, the admin endpoint and the
 * signals. Exits 0 when stopped by a signal, 1 when the tunnel ended or
 * failed, 2 for a bad configuration.
 *
 * @module
 */

import { basicField, bearerField, parseToken } from "../shared/auth/credentials.ts";
import { errorMessage } from "../shared/errors.ts";
import type { HeaderField } from "../shared/h3/qpack.ts";
import { createLogger } from "../shared/log.ts";
import { MAX_DATAGRAM_HEADROOM } from "../shared/masque/connect_ip_session.ts";
import { VERSION } from "../shared/version.ts";
import type { Logger } from "../shared/log.ts";
import { serveAdmin } from "../host/admin.ts";
import { CleanupStack, untilSignal, writeStatusFile } from "../host/lifecycle.ts";
import { countProcess } from "../host/process_metrics.ts";
import { withPermissionHint } from "../host/link.ts";
import { countTun } from "../host/tun_counters.ts";
import { openTun } from "../ffi/tun_linux.ts";
import type { TunDevice } from "../ffi/tun_linux.ts";
import {
  addAddress,
  deleteAddress,
  setLinkMtu,
  setLinkTxQueueLength,
  setLinkUp,
} from "../ffi/netlink.ts";
import { markUdpSocket } from "../ffi/policy_routing.ts";
import { tryEnlargeUdpBuffers } from "../ffi/udp_buffers.ts";
import { commandState } from "../host/command.ts";
import { readHostFacts } from "../host/host_facts.ts";
import { checkHost, formatHostProblems } from "../shared/host_requirements.ts";
import { formatIp, parseIp } from "../shared/ip/ip_address.ts";
import { unmapIpv4 } from "../shared/tunnel/full_tunnel.ts";
import { lookup } from "node:dns/promises";
import { Client } from "./client.ts";
import type { DialedConnection } from "./client.ts";
import { FullTunnel } from "./full_tunnel.ts";
import { installKillSwitch, killSwitchInstalled, removeKillSwitch } from "./kill_switch.ts";
import { applyDns, recoverDns } from "./dns.ts";
import { installRouting, removeStaleRouting } from "./routing.ts";
import { dialH2 } from "./transports.ts";
import { dialWebTransport } from "./webtransport.ts";
import { CLIENT_ENV, CLIENT_HELP, parseClientConfig } from "./config.ts";
import type { ClientConfig, RelayEndpoint } from "./config.ts";

/** How long a signal during setup waits for the step under way, milliseconds. */
const SETUP_GRACE_MS = 5000;

async function main(): Promise<number> {
  const env = Object.fromEntries(CLIENT_ENV.map((name) => [name, Deno.env.get(name)]));
  const parsed = parseClientConfig(Deno.args, env, Deno.readTextFileSync);
  if (parsed.ok === "help") {
    console.log(CLIENT_HELP);
    return 0;
  }
  if (parsed.ok === "version") {
    console.log(`masque-vpn client ${VERSION} (Deno ${Deno.version.deno})`);
    return 0;
  }
  if (parsed.ok === "print") {
    console.log(parsed.text);
    return 0;
  }
  if (!parsed.ok) {
    for (const error of parsed.errors) console.error(`error: ${error}`);
    console.error("Run with --help for the options.");
    return 2;
  }
  const config = parsed.config;
  const killSwitch = config.killSwitch === "on";
  const problems = checkHost({ program: "client", killSwitch }, {
    ...readHostFacts(),
    commands: killSwitch ? { nft: await commandState("nft") } : undefined,
  });
  if (problems.length > 0) {
    for (const line of formatHostProblems("client", problems)) console.error(line);
    return 1;
  }
  const log = createLogger({
    level: config.logLevel,
    format: config.logFormat,
    write: (line) => console.error(line),
  }).with({ role: "client" });
  for (const warning of parsed.warnings) log.warn(warning);
  try {
    return await run(config, log);
  } catch (error) {
    log.error(errorMessage(error));
    return 1;
  }
}

async function run(config: ClientConfig, log: Logger): Promise<number> {
  const caCerts = config.caFile ? [await readCa(config.caFile)] : undefined;
  const credentials = await readCredentials(config.credentials);
  const relays = await Promise.all(
    config.relays.map(async (relay) => ({
      ...relay,
      address: await resolveRelay(relay.relayHost),
    })),
  );
  let tun: TunDevice | undefined;
  const dnsHost = { stateDir: config.stateDir };
  const fullTunnel = new FullTunnel({
    killSwitch: config.killSwitch,
    // Every relay: a reconnect to the next one is never blocked. HTTP/2 and
    // WebTransport: TCP to its TCP port, which Deno cannot mark.
    relays: relays.flatMap((relay) => [
      { address: relay.address, port: relay.relayPort },
      ...(config.transport === "h3" ? [] : [{
        address: relay.address,
        port: config.tcpPort ?? relay.relayPort,
        protocol: "tcp" as const,
      }]),
    ]),
    tunName: config.tunName,
    fwmark: config.fullTunnel.fwmark,
    allowLan: config.allowLan,
    ops: {
      installKillSwitch: (ruleset) => installKillSwitch(ruleset),
      killSwitchInstalled: (table) => killSwitchInstalled(table),
      removeKillSwitch: (table) => removeKillSwitch(table),
      applyDns: (tunName, settings) => applyDns(tunName, settings, dnsHost),
      recoverDns: () => recoverDns(dnsHost),
    },
    log,
  });
  const client = new Client({
    relays: relays.map((relay) => {
      // HTTP/2 to the address the kill switch lets through, the name for TLS;
      // WebTransport checks the certificate against the URL's host: the name.
      const tcp = {
        port: config.tcpPort ?? relay.relayPort,
        serverName: relay.serverName,
        caCerts,
        log,
      };
      return {
        name: `${
          relay.relayHost.includes(":") ? `[${relay.relayHost}]` : relay.relayHost
        }:${relay.relayPort}`,
        connect: () => dial(config, relay, formatIp(relay.address), caCerts, log),
        connectH2: () => dialH2({ ...tcp, hostname: formatIp(relay.address) }),
        connectWebTransport: (path: string) =>
          dialWebTransport({ ...tcp, hostname: relay.relayHost }, path),
        authority: relay.authority,
        template: relay.template,
      };
    }),
    transport: config.transport,
    timing: { h3HandshakeTimeoutMs: config.h3TimeoutMs, h3RetryIntervalMs: config.h3RetryMs },
    openTun: (name, options) =>
      tun = withPermissionHint(() =>
        openTun(name, {
          ...options,
          offload: config.tunOffload,
          // Room for the HTTP Datagram header in front of each packet read.
          headroom: MAX_DATAGRAM_HEADROOM,
        })
      ),
    netlink: { setLinkMtu, setLinkTxQueueLength, addAddress, deleteAddress, setLinkUp },
    routing: { install: installRouting, removeStale: removeStaleRouting },
    fullTunnel: config.fullTunnel,
    dns: config.dns,
    hooks: [fullTunnel],
    tunName: config.tunName,
    mode: config.mode,
    headers: credentials,
    mtu: config.mtu,
    routes: config.routes,
    log,
  });
  countTun(client.counters, () => tun?.stats);
  countProcess(client.counters);
  const cleanups = new CleanupStack(log);
  // Listening from the start: a signal during setup still undoes what was done.
  const signal = untilSignal(cleanups);
  let stopReason: "user" | "failure" = "failure";
  try {
    log.info("credentials", {
      transport: config.transport,
      kind: config.credentials.kind === "basic"
        ? `basic user=${config.credentials.user}`
        : config.credentials.kind,
    });
    if (config.admin) {
      const admin = serveAdmin(config.admin, {
        counters: client.counters,
        status: () => client.status(),
        notReady: () => (client.state === "up" ? [] : [`client ${client.state}`]),
      }, log);
      cleanups.push(() => admin.close());
    }
    const started = client.start().then(() => undefined);
    const early = await Promise.race([started, signal]);
    if (early !== undefined) {
      stopReason = "user";
      log.info("stopping", { why: `received ${early} during setup` });
      // Let the setup step under way finish (or fail) before undoing it all.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        started.catch(() => {}),
        new Promise((resolve) => timer = setTimeout(resolve, SETUP_GRACE_MS)),
      ]);
      clearTimeout(timer);
      return 0;
    }
    if (config.statusFile) writeStatusFile(config.statusFile, () => client.status(), cleanups, log);
    const why = await Promise.race([
      signal.then((name) => `received ${name}`),
      client.ended,
    ]);
    if (why.startsWith("received")) stopReason = "user";
    log.info("stopping", { why, ...client.summary() });
    return stopReason === "user" ? 0 : 1;
  } finally {
    await client.stop(stopReason);
    // Give QUIC a moment to put CONNECTION_CLOSE on the wire before the
    // process exits, on every path (also a failure after the session
    // opened), so the relay frees our addresses at once.
    await new Promise((resolve) => setTimeout(resolve, 100));
    await cleanups.run();
  }
}

/**
 * The relay's address: `host` itself when it is an IP literal, otherwise
 * the first address the system resolver gives (getaddrinfo order). Looked
 * up once: the kill switch lets QUIC through to this address only, and
 * while it is on no name can be resolved outside the tunnel.
 */
async function resolveRelay(host: string): Promise<Uint8Array> {
  const literal = parseIp(host);
  if (literal) return unmapIpv4(literal);
  try {
    const { address } = await lookup(host);
    const parsed = parseIp(address);
    if (parsed === undefined) throw new Error(`not an IP address: ${address}`);
    return unmapIpv4(parsed);
  } catch (error) {
    throw new Error(`Cannot resolve the relay's name ${host}: ${errorMessage(error)}`);
  }
}

/**
 * A QUIC connection to `relay` at `address` from an endpoint of our own,
 * whose socket buffers are grown and whose packets carry the firewall mark
 * (so they leave by the main table, not into the tunnel). The certificate
 * is checked against `--server-name` (default: the `--relay` host).
 * Nothing from the relay for `--relay-timeout` (with keep-alives every
 * second) closes it, also during the handshake.
 */
async function dial(
  config: ClientConfig,
  relay: RelayEndpoint,
  address: string,
  caCerts: string[] | undefined,
  log: Logger,
): Promise<DialedConnection> {
  let endpoint: Deno.QuicEndpoint | undefined;
  try {
    endpoint = new Deno.QuicEndpoint({ hostname: "::", port: 0 });
    const buffers = tryEnlargeUdpBuffers(endpoint.addr.port);
    if (buffers instanceof Error) {
      log.warn("small UDP buffers: expect loss under load", { error: buffers.message });
    } else log.debug("UDP buffers", { receive: buffers.receiveBytes, send: buffers.sendBytes });
    // Before the first packet: an unmarked handshake would go into the tunnel's table.
    markUdpSocket(endpoint.addr.port, config.fullTunnel.fwmark);
    const conn = await Deno.connectQuic({
      endpoint,
      hostname: address,
      port: relay.relayPort,
      serverName: relay.serverName,
      alpnProtocols: ["h3"],
      caCerts,
      keepAliveInterval: 1_000,
      maxIdleTimeout: config.relayTimeoutMs,
    });
    // The endpoint goes with the connection: a reconnect dials from a new one.
    const used = endpoint;
    conn.closed.finally(() => used.close()).catch(() => {});
    return conn;
  } catch (error) {
    endpoint?.close();
    throw new Error(
      `Cannot connect to ${relay.relayHost}:${relay.relayPort}: ${errorMessage(error)}`,
    );
  }
}

/**
 * The request's credential field: a bearer token (from `--token-file` or
 * `MASQUE_TOKEN`) or HTTP Basic (`--user`, `--password-file`). Errors name
 * the file, never its content.
 */
async function readCredentials(
  credentials: ClientConfig["credentials"],
): Promise<HeaderField[]> {
  const read = async (flag: string, path: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (error) {
      throw new Error(`Cannot read ${flag} ${path}: ${errorMessage(error)}`);
    }
  };
  switch (credentials.kind) {
    case "none":
      return [];
    case "token":
      return [bearerField(credentials.token)];
    case "token-file": {
      const token = (await read("--token-file", credentials.file)).trim();
      if (parseToken(token) === undefined) {
        throw new Error(
          `--token-file ${credentials.file} does not hold a token (<id>.<secret>, as deno task ` +
            "users add prints)",
        );
      }
      return [bearerField(token)];
    }
    case "basic": {
      const password = (await read("--password-file", credentials.passwordFile)).split("\n")[0]
        .replace(/\r$/, "");
      if (password === "") throw new Error(`--password-file ${credentials.passwordFile} is empty`);
      return [basicField(credentials.user, password)];
    }
  }
}

async function readCa(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new Error(`Cannot read --ca ${path}: ${errorMessage(error)}`);
  }
}

if (import.meta.main) Deno.exit(await main());
