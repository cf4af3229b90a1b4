/**
 * `deno task client`: connects to a relay, opens a CONNECT-IP session,
 * creates the TUN device with the assigned addresses and routes, and
 * tunnels packets until stopped. Removes routes and the TUN on exit.
 *
 * @module
 */

import { errorMessage } from "../shared/errors.ts";
import { VERSION } from "../shared/version.ts";
import { CLIENT_ENV, CLIENT_HELP, parseClientConfig } from "./config.ts";
import type { ClientConfig } from "./config.ts";
import {
  AUTO_MTU_MAX,
  AUTO_MTU_MIN,
  autoMtu,
  ClientPump,
  describeSessionEnd,
  planRoutes,
} from "./tunnel.ts";
import type { Assignment } from "./tunnel.ts";
import { describeClose } from "../shared/h3/quic.ts";
import { H3Connection } from "../shared/h3/connection.ts";
import { clientSettings, SETTINGS_H3_DATAGRAM } from "../shared/h3/settings.ts";
import { createLogger } from "../shared/log.ts";
import type { Logger } from "../shared/log.ts";
import { expandConnectIpPath } from "../shared/masque/connect_ip_request.ts";
import { MAX_DATAGRAM_HEADROOM } from "../shared/masque/connect_ip_session.ts";
import { openConnectIpSession } from "../shared/masque/h3_connect_ip.ts";
import type { ConnectIpSession, SessionEnd } from "../shared/masque/connect_ip_session.ts";
import type { IpAddressRange } from "../shared/ip/ip_address.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import { formatPrefix, parseIp } from "../shared/ip/ip_address.ts";
import { openTun, TUN_TX_QUEUE_PACKETS, type TunStats } from "../ffi/tun_linux.ts";
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
      `Cannot connect to ${config.relayHost}:${config.relayPort}: ${errorMessage(error)}`,
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
        log.warn("cleanup step failed", { error: errorMessage(error) });
      }
    }
  };
  let pump: ClientPump | undefined;
  const assignment = waitForAssignment(session, (packet) => pump?.fromRelay(packet));
  try {
    const { addresses, routes: ranges, ended } = await assignment;
    const relayAddress = parseIp(conn.remoteAddr.hostname);
    // Only for the families the relay assigned an address of (it may assign one).
    const routes = planRoutes({ addresses, routes: ranges }, config.routes, relayAddress);
    log.info("assigned", {
      addresses: addresses.map(formatPrefix).join(","),
      routes: routes.map(formatPrefix).join(",") || "none",
    });

    let mtu = await chooseMtu(config, session, log);
    // With --mtu auto the link MTU is raised as the datagram limit grows, so
    // the TUN's packet slots are sized for the largest MTU auto picks.
    const follow = config.mtu === "auto" && session.mode === "datagram";
    const tun = openTun(config.tunName, {
      mtu: follow ? Math.max(mtu, AUTO_MTU_MAX) : mtu,
      log,
      offload: config.tunOffload,
      // Room for the HTTP Datagram header in front of each packet read.
      headroom: MAX_DATAGRAM_HEADROOM,
    });
    cleanups.push(() => tun.close());
    setLinkMtu(tun.name, mtu);
    setLinkTxQueueLength(tun.name, TUN_TX_QUEUE_PACKETS);
    for (const prefix of addresses) addAddress(tun.name, prefix);
    setLinkUp(tun.name);
    for (const route of routes) {
      addRoute(route, tun.name);
      cleanups.push(() => deleteRoute(route, tun.name));
    }
    log.info("tunnel up", { tun: tun.name, mtu, offload: tun.offload });
    // With offloads, TCP super-packets are cut to what the session carries
    // (it can shrink below the MTU, or grow with path MTU discovery).
    tun.setPacketLimit(session.maxPacketSize);
    const limitTimer = setInterval(
      () => tun.setPacketLimit(session.maxPacketSize),
      MTU_FOLLOW_INTERVAL_MS,
    );
    cleanups.unshift(() => clearInterval(limitTimer));

    pump = new ClientPump(tun, session, { addresses, routes: ranges }, log);
    const stop = new Promise<string>((resolve) => {
      for (const signal of ["SIGINT", "SIGTERM"] as const) {
        const handler = () => resolve(signal);
        Deno.addSignalListener(signal, handler);
        cleanups.unshift(() => Deno.removeSignalListener(signal, handler));
      }
    });
    pump.runOutbound().catch((error) =>
      log.warn("TUN loop failed", { error: errorMessage(error) })
    );
    if (follow) {
      // QUIC's path MTU discovery keeps raising the datagram limit after the
      // session opened (from about 1290 to 1414 on a 1500-byte path); the TUN
      // MTU follows it up, never down (a smaller path gets Packet Too Big).
      const timer = setInterval(() => {
        const next = autoMtu(session.maxPacketSize);
        if (next <= mtu) return;
        try {
          setLinkMtu(tun.name, next);
          log.info("TUN MTU raised", { from: mtu, to: next });
          mtu = next;
        } catch (error) {
          log.warn("cannot raise the TUN MTU", { to: next, error: errorMessage(error) });
        }
      }, MTU_FOLLOW_INTERVAL_MS);
      cleanups.unshift(() => clearInterval(timer));
    }
    const counters = () => ({
      ...flatten(pump!.stats),
      // Drops at a full send queue (the path was slower than the sender).
      datagramsQueueFull: h3.stats.datagramsQueueFull,
      streamQueueFull: session.stats.queueFull,
      ...tunCounters(tun.stats),
    });
    if (config.statusFile) {
      const file = config.statusFile;
      let statusFailed = false;
      const timer = setInterval(() => {
        const status = {
          tun: tun.name,
          mtu,
          maxPacketSize: session.maxPacketSize,
          mode: config.mode,
          ...counters(),
        };
        Deno.writeTextFile(file, JSON.stringify(status, null, 2) + "\n").then(
          () => statusFailed = false,
          (error) => {
            // Once per run of failures (a missing --allow-write=FILE, say), not every 2 s.
            if (!statusFailed) {
              log.warn("cannot write status file", { file, error: errorMessage(error) });
            }
            statusFailed = true;
          },
        );
      }, 2000);
      cleanups.unshift(() => clearInterval(timer));
    }
    const why = await Promise.race([
      stop.then((signal) => `received ${signal}`),
      ended.then((end) => `session ended: ${describeSessionEnd(end, session)}`),
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

/** The TUN's counters as flat `tun*` fields for the status file and the "stopping" line. */
function tunCounters(stats: TunStats): Record<string, number> {
  return {
    tunWriteDrops: stats.writeDrops,
    tunWriteErrors: stats.writeErrors,
    tunOversizePackets: stats.oversizePackets,
    tunWriteRingFullEpisodes: stats.writeRingFullEpisodes,
    tunReaderRestarts: stats.readerRestarts,
    tunWriterRestarts: stats.writerRestarts,
    tunReadSuperPackets: stats.readSuperPackets,
    tunReadOffloadErrors: stats.readOffloadErrors,
    tunWriteSuperPackets: stats.writeSuperPackets,
    tunWriteMergedPackets: stats.writeMergedPackets,
  };
}

/** How long to wait for path MTU discovery to allow 1280-byte packets. */
const PMTU_WAIT_MS = 3000;
/** How often `--mtu auto` compares the TUN MTU with the datagram limit, milliseconds. */
const MTU_FOLLOW_INTERVAL_MS = 1000;

/**
 * The first TUN MTU: the configured one, or with `auto` the largest packet
 * the session carries now (datagram mode; raised later as it grows) or 1500
 * (stream mode). Waits briefly for QUIC's path MTU discovery when the path
 * does not yet carry 1280 (RFC 9484 §10.1: the tunnel must carry the IPv6
 * minimum).
 */
async function chooseMtu(config: ClientConfig, session: ConnectIpSession, log: Logger) {
  if (session.mode === "stream") return config.mtu === "auto" ? AUTO_MTU_MAX : config.mtu;
  const wanted = config.mtu === "auto" ? AUTO_MTU_MIN : config.mtu;
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
  return autoMtu(carried);
}

/**
 * Runs the session and resolves once an ADDRESS_ASSIGN with at least one
 * address (of either family or both) and a ROUTE_ADVERTISEMENT have arrived
 * (RFC 9484 §4.7). An empty ADDRESS_ASSIGN assigns nothing yet.
 */
function waitForAssignment(
  session: ConnectIpSession,
  onPacket: (packet: Uint8Array) => void,
): Promise<Assignment & { ended: Promise<SessionEnd> }> {
  return new Promise((resolve, reject) => {
    let addresses: IpPrefix[] | undefined;
    let routes: IpAddressRange[] | undefined;
    const timer = setTimeout(() => {
      const missing = [
        ...(addresses ? [] : ["an ADDRESS_ASSIGN with an address"]),
        ...(routes ? [] : ["a ROUTE_ADVERTISEMENT"]),
      ];
      reject(
        new Error(
          `The relay sent no ${missing.join(" and no ")} within ${ASSIGNMENT_TIMEOUT_MS / 1000} s`,
        ),
      );
    }, ASSIGNMENT_TIMEOUT_MS);
    const ended = session.run({
      onPacket,
      onCapsule(capsule) {
        if (capsule.type === "address_assign" && capsule.addresses.length > 0) {
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
    throw new Error(`Cannot read --ca ${path}: ${errorMessage(error)}`);
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

if (import.meta.main) Deno.exit(await main());
