/**
 * `deno task client`: wires the {@linkcode Client} (`client/client.ts`) to
 * this host: the config, the logger, QUIC with larger socket buffers, the
 * real TUN and netlink, the status file and the signals. Exits 0 when
 * stopped by a signal, 1 when the tunnel ended or failed, 2 for a bad
 * configuration.
 *
 * @module
 */

import { errorMessage } from "../shared/errors.ts";
import { createLogger } from "../shared/log.ts";
import { MAX_DATAGRAM_HEADROOM } from "../shared/masque/connect_ip_session.ts";
import { VERSION } from "../shared/version.ts";
import type { Logger } from "../shared/log.ts";
import { CleanupStack, untilSignal, writeStatusFile } from "../host/lifecycle.ts";
import { countTun } from "../host/tun_counters.ts";
import { openTun } from "../ffi/tun_linux.ts";
import type { TunDevice } from "../ffi/tun_linux.ts";
import {
  addAddress,
  addRoute,
  deleteRoute,
  setLinkMtu,
  setLinkTxQueueLength,
  setLinkUp,
} from "../ffi/netlink.ts";
import { tryEnlargeUdpBuffers } from "../ffi/udp_buffers.ts";
import { readHostFacts } from "../host/host_facts.ts";
import { checkHost, formatHostProblems } from "../shared/host_requirements.ts";
import { Client } from "./client.ts";
import type { DialedConnection } from "./client.ts";
import { CLIENT_ENV, CLIENT_HELP, parseClientConfig } from "./config.ts";
import type { ClientConfig } from "./config.ts";

async function main(): Promise<number> {
  const env = Object.fromEntries(CLIENT_ENV.map((name) => [name, Deno.env.get(name)]));
  const parsed = parseClientConfig(Deno.args, env);
  if (parsed.ok === "help") {
    console.log(CLIENT_HELP);
    return 0;
  }
  if (parsed.ok === "version") {
    console.log(`masque-vpn client ${VERSION} (Deno ${Deno.version.deno})`);
    return 0;
  }
  if (!parsed.ok) {
    for (const error of parsed.errors) console.error(`error: ${error}`);
    console.error("Run with --help for the options.");
    return 2;
  }
  const config = parsed.config;
  const problems = checkHost({ program: "client" }, readHostFacts());
  if (problems.length > 0) {
    for (const line of formatHostProblems("client", problems)) console.error(line);
    return 1;
  }
  const log = createLogger({ level: config.logLevel, write: (line) => console.error(line) })
    .with({ role: "client" });
  try {
    return await run(config, log);
  } catch (error) {
    log.error(errorMessage(error));
    return 1;
  }
}

async function run(config: ClientConfig, log: Logger): Promise<number> {
  const caCerts = config.caFile ? [await readCa(config.caFile)] : undefined;
  let tun: TunDevice | undefined;
  const client = new Client({
    connect: () => dial(config, caCerts, log),
    openTun: (name, options) =>
      tun = openTun(name, {
        ...options,
        offload: config.tunOffload,
        // Room for the HTTP Datagram header in front of each packet read.
        headroom: MAX_DATAGRAM_HEADROOM,
      }),
    netlink: { setLinkMtu, setLinkTxQueueLength, addAddress, setLinkUp, addRoute, deleteRoute },
    tunName: config.tunName,
    authority: config.authority,
    template: config.template,
    mode: config.mode,
    mtu: config.mtu,
    routes: config.routes,
    log,
  });
  countTun(client.counters, () => tun?.stats);
  const cleanups = new CleanupStack(log);
  try {
    log.info("connecting", { relay: `${config.relayHost}:${config.relayPort}`, mode: config.mode });
    await client.start();
    const stop = untilSignal(cleanups);
    if (config.statusFile) writeStatusFile(config.statusFile, () => client.status(), cleanups, log);
    const why = await Promise.race([stop.then((signal) => `received ${signal}`), client.ended]);
    log.info("stopping", { why, ...client.summary() });
    await client.stop();
    // Give QUIC a moment to put CONNECTION_CLOSE on the wire before the
    // process exits, so the relay frees our addresses at once.
    await new Promise((resolve) => setTimeout(resolve, 100));
    return why.startsWith("received") ? 0 : 1;
  } finally {
    await cleanups.run();
    await client.stop();
  }
}

/** A QUIC connection to the relay from an endpoint of our own, whose socket buffers are grown. */
async function dial(
  config: ClientConfig,
  caCerts: string[] | undefined,
  log: Logger,
): Promise<DialedConnection> {
  try {
    const endpoint = new Deno.QuicEndpoint({ hostname: "::", port: 0 });
    const buffers = tryEnlargeUdpBuffers(endpoint.addr.port);
    if (buffers instanceof Error) {
      log.warn("small UDP buffers: expect loss under load", { error: buffers.message });
    } else log.debug("UDP buffers", { receive: buffers.receiveBytes, send: buffers.sendBytes });
    return await Deno.connectQuic({
      endpoint,
      hostname: config.relayHost,
      port: config.relayPort,
      serverName: config.serverName,
      alpnProtocols: ["h3"],
      caCerts,
      // Keep-alives keep the relay's idle timer (default 30 s) from firing.
      keepAliveInterval: 1_000,
      maxIdleTimeout: 30_000,
    });
  } catch (error) {
    throw new Error(
      `Cannot connect to ${config.relayHost}:${config.relayPort}: ${errorMessage(error)}`,
    );
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
