/**
 * `deno task client`: connects to a relay, opens a CONNECT-IP session,
 * creates the TUN device with the assigned addresses and routes, and
 * tunnels packets until stopped. Removes routes and the TUN on exit.
 *
 * @module
 */

import { CLIENT_HELP, parseClientConfig } from "./config.ts";
import type { ClientConfig } from "./config.ts";
import { ClientPump } from "./tunnel.ts";
import type { Assignment } from "./tunnel.ts";
import { describeClose, H3Connection } from "../shared/h3/connection.ts";
import { clientSettings, SETTINGS_H3_DATAGRAM } from "../shared/h3/settings.ts";
import { createLogger } from "../shared/log.ts";
import type { Logger } from "../shared/log.ts";
import { expandConnectIpPath } from "../shared/masque/connect_ip_request.ts";
import { openConnectIpSession } from "../shared/masque/connect_ip_session.ts";
import type { ConnectIpSession } from "../shared/masque/connect_ip_session.ts";
import type { IpAddressRange } from "../shared/masque/capsule.ts";
import type { IpPrefix } from "../shared/packet/ip_address.ts";
import { formatPrefix, parseIp } from "../shared/packet/ip_address.ts";
import { excludeAddress, routesWithin } from "../shared/tunnel/routes.ts";
import { openTun, TUN_TX_QUEUE_PACKETS } from "../ffi/tun_linux.ts";
import {
  addAddress,
  addRoute,
  deleteRoute,
  setLinkMtu,
  setLinkTxQueueLength,
  setLinkUp,
} from "../ffi/netlink.ts";
import { tryEnlargeUdpBuffers } from "../ffi/udp_buffers.ts";

const ASSIGNMENT_TIMEOUT_MS = 10_000;

async function main(): Promise<number> {
  const parsed = parseClientConfig(Deno.args, {
    TARGET_CIDRS: Deno.env.get("TARGET_CIDRS"),
    MASQUE_LOG_LEVEL: Deno.env.get("MASQUE_LOG_LEVEL"),
  });
  if (parsed.ok === "help") {
    console.log(CLIENT_HELP);
    return 0;
  }
  if (!parsed.ok) {
    for (const error of parsed.errors) console.error(`error: ${error}`);
    console.error("Run with --help for the options.");
    return 2;
  }
  const config = parsed.config;
  const log = createLogger({ level: config.logLevel, write: (line) => console.error(line) })
    .with({ role: "client" });
  try {
    return await run(config, log);
  } catch (error) {
    log.error(error instanceof Error ? error.message : String(error));
    return 1;
  }
}

async function run(config: ClientConfig, log: Logger): Promise<number> {
  const caCerts = config.caFile ? [await readCa(config.caFile)] : undefined;
  log.info("connecting", { relay: `${config.relayHost}:${config.relayPort}`, mode: config.mode });
  let conn: Deno.QuicConn;
  try {
    // An endpoint of our own, so that its socket's buffers can be grown.
    const endpoint = new Deno.QuicEndpoint({ hostname: "::", port: 0 });
    const buffers = tryEnlargeUdpBuffers(endpoint.addr.port);
    if (buffers instanceof Error) {
      log.warn("small UDP buffers: expect loss under load", { error: buffers.message });
    } else log.debug("UDP buffers", { receive: buffers.receiveBytes, send: buffers.sendBytes });
    conn = await Deno.connectQuic({
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
      `Cannot connect to ${config.relayHost}:${config.relayPort}: ${errorText(error)}`,
    );
  }
  const settings = new Map(clientSettings());
  // In stream mode we tell the relay not to send HTTP Datagrams (RFC 9297 §2.1.1).
  if (config.mode === "stream") settings.set(SETTINGS_H3_DATAGRAM, 0);
  const h3 = new H3Connection(conn, { role: "client", settings, log });
  await h3.start();
  const path = expandConnectIpPath(config.template, {
    target: { kind: "any" },
    ipProtocol: "any",
  });
  const session = await openConnectIpSession(h3, {
    authority: config.authority,
    path,
    mode: config.mode,
    log,
  });
  log.info("session open", { stream: session.stream.streamId });

  const cleanups: (() => void)[] = [];
  const cleanup = () => {
    while (cleanups.length > 0) {
      try {
        cleanups.pop()!();
      } catch (error) {
        log.warn("cleanup step failed", { error: errorText(error) });
      }
    }
  };
  let pump: ClientPump | undefined;
  const assignment = waitForAssignment(session, (packet) => pump?.fromRelay(packet));
  try {
    const { addresses, routes: ranges, ended } = await assignment;
    const relayAddress = parseIp(conn.remoteAddr.hostname);
    let routes = routesWithin(ranges, config.routes);
    if (relayAddress) routes = excludeAddress(routes, relayAddress);
    log.info("assigned", {
      addresses: addresses.map(formatPrefix).join(","),
      routes: routes.map(formatPrefix).join(",") || "none",
    });

    const mtu = await chooseMtu(config, session, log);
    const tun = openTun(config.tunName, { mtu });
    cleanups.push(() => tun.close());
    setLinkMtu(tun.name, mtu);
    setLinkTxQueueLength(tun.name, TUN_TX_QUEUE_PACKETS);
    for (const prefix of addresses) addAddress(tun.name, prefix);
    setLinkUp(tun.name);
    for (const route of routes) {
      addRoute(route, tun.name);
      cleanups.push(() => deleteRoute(route, tun.name));
    }
    log.info("tunnel up", { tun: tun.name, mtu });

    pump = new ClientPump(tun, session, { addresses, routes: ranges }, log);
    const stop = new Promise<string>((resolve) => {
      for (const signal of ["SIGINT", "SIGTERM"] as const) {
        const handler = () => resolve(signal);
        Deno.addSignalListener(signal, handler);
        cleanups.unshift(() => Deno.removeSignalListener(signal, handler));
      }
    });
    pump.runOutbound().catch((error) => log.warn("TUN loop failed", { error: errorText(error) }));
    const counters = () => ({
      ...flatten(pump!.stats),
      // Drops at a full send queue (the path was slower than the sender).
      datagramsQueueFull: h3.stats.datagramsQueueFull,
      streamQueueFull: session.stats.queueFull,
      tunWriteDrops: tun.stats.writeDrops,
    });
    if (config.statusFile) {
      const file = config.statusFile;
      let statusFailed = false;
      const timer = setInterval(() => {
        const status = { tun: tun.name, mtu, mode: config.mode, ...counters() };
        Deno.writeTextFile(file, JSON.stringify(status, null, 2) + "\n").then(
          () => statusFailed = false,
          (error) => {
            // Once per run of failures (a missing --allow-write=FILE, say), not every 2 s.
            if (!statusFailed) {
              log.warn("cannot write status file", { file, error: errorText(error) });
            }
            statusFailed = true;
          },
        );
      }, 2000);
      cleanups.unshift(() => clearInterval(timer));
    }
    const why = await Promise.race([
      stop.then((signal) => `received ${signal}`),
      ended.then((end) => `session ended: ${end.message}`),
      h3.closed.then((info) => `connection closed: ${describeClose(info)}`),
    ]);
    log.info("stopping", { why, ...counters() });
    cleanup();
    await session.close().catch(() => {});
    h3.close();
    // Give QUIC a moment to put CONNECTION_CLOSE on the wire before the
    // process exits, so the relay frees our addresses at once.
    await new Promise((resolve) => setTimeout(resolve, 100));
    return why.startsWith("received") ? 0 : 1;
  } finally {
    cleanup();
    h3.close();
  }
}

/** The IPv6 minimum link MTU (RFC 8200 §5), which the tunnel must carry (RFC 9484 §10.1). */
const IPV6_MIN_MTU = 1280;
/** The largest MTU `--mtu auto` picks, as on Ethernet. */
const AUTO_MTU_MAX = 1500;
/** How long to wait for path MTU discovery to allow 1280-byte packets. */
const PMTU_WAIT_MS = 3000;

/**
 * The TUN MTU: the configured one, or with `auto` the largest packet the
 * session carries now (datagram mode) or 1500 (stream mode). Waits briefly
 * for QUIC's path MTU discovery when the path does not yet carry 1280.
 */
async function chooseMtu(config: ClientConfig, session: ConnectIpSession, log: Logger) {
  if (session.mode === "stream") return config.mtu === "auto" ? AUTO_MTU_MAX : config.mtu;
  const wanted = config.mtu === "auto" ? IPV6_MIN_MTU : config.mtu;
  const deadline = Date.now() + PMTU_WAIT_MS;
  while (session.maxPacketSize < wanted && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const carried = session.maxPacketSize;
  if (carried < wanted) {
    log.warn(
      "the QUIC path carries smaller packets than the TUN MTU; larger ones get Packet Too Big",
      {
        mtu: wanted,
        maxPacket: carried,
      },
    );
  }
  if (config.mtu !== "auto") return config.mtu;
  return Math.min(AUTO_MTU_MAX, Math.max(IPV6_MIN_MTU, carried));
}

/**
 * Runs the session and resolves once both ADDRESS_ASSIGN and
 * ROUTE_ADVERTISEMENT have arrived (RFC 9484 §4.7).
 */
function waitForAssignment(
  session: ConnectIpSession,
  onPacket: (packet: Uint8Array) => void,
): Promise<Assignment & { ended: Promise<{ message: string }> }> {
  return new Promise((resolve, reject) => {
    let addresses: IpPrefix[] | undefined;
    let routes: IpAddressRange[] | undefined;
    const timer = setTimeout(
      () => reject(new Error("The relay sent no ADDRESS_ASSIGN and ROUTE_ADVERTISEMENT in time")),
      ASSIGNMENT_TIMEOUT_MS,
    );
    const ended = session.run({
      onPacket,
      onCapsule(capsule) {
        if (capsule.type === "address_assign") {
          addresses = capsule.addresses.map((a) => a.prefix);
        } else if (capsule.type === "route_advertisement") {
          routes = [...capsule.ranges];
        }
        if (addresses && routes) {
          clearTimeout(timer);
          resolve({ addresses, routes, ended });
        }
      },
    });
    ended.then((end) => {
      clearTimeout(timer);
      reject(new Error(`Session ended before the relay assigned addresses: ${end.message}`));
    });
  });
}

async function readCa(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new Error(`Cannot read --ca ${path}: ${errorText(error)}`);
  }
}

function flatten(stats: object): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, value] of Object.entries(stats)) {
    if (typeof value === "number") out[key] = value;
    else {for (const [k, v] of Object.entries(value as Record<string, number>)) {
        out[`${key}.${k}`] = v;
      }}
  }
  return out;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

if (import.meta.main) Deno.exit(await main());
