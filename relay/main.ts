/**
 * `deno task relay`: listens for QUIC on UDP, serves CONNECT-IP sessions
 * to the users of `--users` (or anyone with `--no-auth`), and forwards
 * their packets through a TUN device (and NAT with `--nat`). SIGHUP
 * rereads the users file and the certificate and key.
 *
 * @module
 */

import { errorMessage } from "../shared/errors.ts";
import { VERSION } from "../shared/version.ts";
import { serveAdmin } from "../host/admin.ts";
import { CleanupStack, watchSignals, writeStatusFile } from "../host/lifecycle.ts";
import { countProcess } from "../host/process_metrics.ts";
import { bringUpLink, withPermissionHint } from "../host/link.ts";
import { countTun } from "../host/tun_counters.ts";
import { forwardingWarning, parseRelayConfig, RELAY_ENV, RELAY_HELP } from "./config.ts";
import type { RelayConfig } from "./config.ts";
import { loadOrCreateDevCerts } from "./dev_certs.ts";
import { hostInputChain, watchHostAddresses } from "./firewall.ts";
import { installNat } from "./nat.ts";
import { quicListenLimits } from "./limits.ts";
import { serveListener } from "./listener.ts";
import { fixedAddresses, onSighup, reloadUsers, setUpAccess } from "./access.ts";
import { listenTcp } from "./tcp_listener.ts";
import { createWebTransportBridge } from "./webtransport.ts";
import { Relay } from "./relay.ts";
import { MAX_DATAGRAM_HEADROOM } from "../shared/masque/connect_ip_session.ts";
import { createLogger } from "../shared/log.ts";
import type { Logger } from "../shared/log.ts";
import { formatIp, formatPrefix } from "../shared/ip/ip_address.ts";
import { formatHostService } from "../shared/tunnel/host_firewall.ts";
import { openTun } from "../ffi/tun_linux.ts";
import { addAddress, setLinkMtu, setLinkTxQueueLength, setLinkUp } from "../ffi/netlink.ts";
import { tryEnlargeUdpBuffers } from "../ffi/udp_buffers.ts";
import { commandState } from "../host/command.ts";
import { readHostFacts } from "../host/host_facts.ts";
import { checkHost, formatHostProblems } from "../shared/host_requirements.ts";

/** How often the TUN's packet limit follows the sessions' datagram limits, milliseconds. */
const PACKET_LIMIT_INTERVAL_MS = 1000;

/**
 * The largest packet a datagram-mode session carries now, bytes, or 0 (the
 * TUN's own MTU) when no session is in datagram mode.
 */
function largestPacketLimit(relay: Relay): number {
  let largest = 0;
  for (const entry of relay.sessions) {
    // WebTransport sessions take packets up to 65535 bytes on their stream.
    if (entry.transport === "h3" && entry.session.mode === "datagram") {
      largest = Math.max(largest, entry.session.maxPacketSize);
    }
  }
  return largest;
}

async function main(): Promise<number> {
  const env = Object.fromEntries(RELAY_ENV.map((name) => [name, Deno.env.get(name)]));
  const parsed = parseRelayConfig(Deno.args, env, Deno.readTextFileSync);
  if (parsed.ok === "help") {
    console.log(RELAY_HELP);
    return 0;
  }
  if (parsed.ok === "print") {
    console.log(parsed.text);
    return 0;
  }
  if (parsed.ok === "version") {
    console.log(`masque-vpn relay ${VERSION} (Deno ${Deno.version.deno})`);
    return 0;
  }
  if (!parsed.ok) {
    for (const error of parsed.errors) console.error(`error: ${error}`);
    console.error("Run with --help for the options.");
    return 2;
  }
  const config = parsed.config;
  const problems = checkHost({
    program: "relay",
    nat: config.nat,
    port: config.port,
    tcpPort: config.tcpPort,
  }, {
    ...readHostFacts(),
    commands: config.nat
      ? { nft: await commandState("nft"), sysctl: await commandState("sysctl") }
      : undefined,
  });
  if (problems.length > 0) {
    for (const line of formatHostProblems("relay", problems)) console.error(line);
    return 1;
  }
  const log = createLogger({
    level: config.logLevel,
    format: config.logFormat,
    write: (line) => console.error(line),
  }).with({ role: "relay" });
  for (const warning of parsed.warnings) log.warn(warning);
  try {
    return await run(config, log);
  } catch (error) {
    log.error(errorMessage(error));
    return 1;
  }
}

async function loadCerts(config: RelayConfig, log: Logger): Promise<{ cert: string; key: string }> {
  if (config.certFile && config.keyFile) {
    const read = async (path: string, what: string) => {
      try {
        return await Deno.readTextFile(path);
      } catch (error) {
        throw new Error(
          `Cannot read ${what} ${path}: ${errorMessage(error)}`,
        );
      }
    };
    return {
      cert: await read(config.certFile, "--cert"),
      key: await read(config.keyFile, "--key"),
    };
  }
  const names = config.devCertNames;
  const isIp = (n: string) => /^[0-9.]+$/.test(n) || n.includes(":");
  const certs = await loadOrCreateDevCerts(config.devCertsDir!, {
    dnsNames: names.filter((n) => !isIp(n)),
    ipAddresses: names.filter(isIp),
  });
  log.info(certs.created ? "created development certificates" : "using development certificates", {
    ca: certs.caPath,
  });
  return { cert: certs.certPem, key: certs.keyPem };
}

/** Whether a forwarding sysctl is on; `undefined` when it cannot be read. */
function sysctlOn(path: string): boolean | undefined {
  try {
    return Deno.readTextFileSync(path).trim() !== "0";
  } catch {
    return undefined;
  }
}

/** `host:port` with an IPv6 host in brackets. */
function hostPort(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

async function run(config: RelayConfig, log: Logger): Promise<number> {
  const forwarding = forwardingWarning(config, {
    ipv4: sysctlOn("/proc/sys/net/ipv4/ip_forward"),
    ipv6: sysctlOn("/proc/sys/net/ipv6/conf/all/forwarding"),
  });
  if (forwarding) log.warn(forwarding);
  const { cert, key } = await loadCerts(config, log);
  const pools = [config.pool4, config.pool6].filter((pool) => pool !== undefined);
  const access = await setUpAccess(config, pools, log);
  const tun = withPermissionHint(() =>
    openTun(config.tunName, {
      mtu: config.mtu,
      log,
      offload: config.tunOffload,
      // Room for the HTTP Datagram header in front of each packet read.
      headroom: MAX_DATAGRAM_HEADROOM,
    })
  );
  const cleanups = new CleanupStack(log);
  cleanups.push(() => tun.close());
  try {
    const relay = new Relay(tun, {
      pool4: config.pool4,
      pool6: config.pool6,
      routes: config.routes,
      template: config.template,
      maxSessions: config.maxSessions,
      limits: config.limits,
      allowRelayHost: config.allowRelayHost,
      allowClientToClient: config.allowClientToClient,
      dns: { servers: config.dnsServers, searchDomains: config.dnsSearch },
      authenticator: access.authenticator,
      notFound: access.notFound,
      serveOther: access.serveOther,
      log,
    });
    if (access.users) relay.applyPolicies(() => undefined, fixedAddresses(access.users.users));
    countTun(relay.counters, () => tun.stats);
    countProcess(relay.counters);
    bringUpLink(
      { setLinkMtu, setLinkTxQueueLength, addAddress, setLinkUp },
      tun.name,
      config.mtu,
      relay.gatewayAddresses,
    );
    const hostWatch = watchHostAddresses(relay, log);
    cleanups.push(() => hostWatch.stop());
    if (config.nat) {
      const gateways = relay.gatewayAddresses.map((prefix) => prefix.address);
      const nat = await installNat(
        pools,
        tun.name,
        hostInputChain(tun.name, gateways, relay.hostServices),
      );
      cleanups.push(() => nat.remove());
      log.info("NAT installed", { table: nat.table });
    }
    let endpoint: Deno.QuicEndpoint;
    try {
      endpoint = new Deno.QuicEndpoint({ hostname: config.host, port: config.port });
    } catch (error) {
      throw new Error(
        `Cannot listen on ${hostPort(config.host, config.port)} (UDP, QUIC): ${
          errorMessage(error)
        }`,
      );
    }
    cleanups.push(() => endpoint.close());
    const buffers = tryEnlargeUdpBuffers(endpoint.addr.port);
    if (buffers instanceof Error) {
      log.warn("small UDP buffers: expect loss under load", { error: buffers.message });
    } else log.debug("UDP buffers", { receive: buffers.receiveBytes, send: buffers.sendBytes });
    const listen = (tls: { cert: string; key: string }) =>
      endpoint.listen({
        alpnProtocols: ["h3"],
        ...tls,
        ...quicListenLimits(config.limits, config.idleTimeoutMs),
      });
    let listener = listen({ cert, key });
    log.info("listening", {
      addr: `${endpoint.addr.hostname}:${endpoint.addr.port}`,
      tun: tun.name,
      pools: [config.pool4, config.pool6].filter((p) => p !== undefined).map(formatPrefix)
        .join(","),
      tunAddresses: relay.gatewayAddresses.map(formatPrefix).join(","),
      tunOffload: tun.offload,
      routes: config.routes.map(formatPrefix).join(","),
      allowRelayHost: relay.hostServices.map(formatHostService).join(",") || "none",
      dns: config.dnsServers.map(formatIp).join(",") || "none",
      allowClientToClient: config.allowClientToClient,
    });
    if (config.tcpPort !== undefined) {
      const webTransport = await createWebTransportBridge(relay, {
        cert,
        key,
        template: config.template,
        log,
        maxQueuedBytes: config.limits.maxQueuedBytes,
      });
      const tcp = await listenTcp(relay, {
        hostname: config.host,
        port: config.tcpPort,
        cert,
        key,
        limits: config.limits,
        idleTimeoutMs: config.idleTimeoutMs,
        log,
        webTransport,
      });
      cleanups.push(() => tcp.close());
      log.info("listening on TCP", {
        addr: `${config.host}:${tcp.port}`,
        protocols: "HTTP/2 CONNECT-IP, WebTransport",
      });
    }
    relay.runTun().catch((error) => log.error("TUN loop failed", { error: String(error) }));
    if (tun.offload !== "off") {
      // TCP super-packets from the TUN are cut to the largest datagram-mode
      // session limit; a session with a smaller one gets ICMP Packet Too Big
      // as without offloads (one shared limit: the reader does not look up
      // destinations).
      const timer = setInterval(
        () => tun.setPacketLimit(largestPacketLimit(relay)),
        PACKET_LIMIT_INTERVAL_MS,
      );
      cleanups.push(() => clearInterval(timer));
    }
    if (config.statusFile) writeStatusFile(config.statusFile, () => relay.status(), cleanups, log);
    // The accept loop of the listener in use ends the relay when it stops; one
    // replaced on a reload does not.
    let listenerEnded!: (why: string) => void;
    const accept = new Promise<string>((resolve) => listenerEnded = resolve);
    const serve = (current: Deno.QuicListener) =>
      serveListener(relay, current, log).then(
        () => current === listener && listenerEnded("listener stopped"),
        (error) => current === listener && listenerEnded(`listener failed: ${error}`),
      );
    serve(listener);
    // SIGHUP: the users file (sessions of removed users end, the others take
    // their new policy) and the certificate and key (new handshakes use
    // them; open connections keep theirs). A part that fails keeps its old state.
    cleanups.push(onSighup(async () => {
      if (access.users && config.usersFile) {
        await reloadUsers(relay, access.users, config.usersFile, pools, log);
      }
      let tls;
      try {
        tls = await loadCerts(config, log);
      } catch (error) {
        log.error("certificate not reloaded; the previous one stays in use", {
          error: errorMessage(error),
        });
        return;
      }
      const previous = listener;
      listener = listen(tls);
      previous.stop();
      serve(listener);
      log.info("certificate reloaded");
    }, log));
    // SIGINT/SIGTERM: the first drains, a second exits at once.
    const signals = watchSignals(cleanups);
    if (config.admin) {
      const admin = serveAdmin(config.admin, {
        counters: relay.counters,
        status: () => relay.status(),
        notReady: () => (relay.draining ? ["draining"] : []),
      }, log);
      cleanups.push(() => admin.close());
    }
    const stopped = accept;
    const why = await Promise.race([signals.next().then((s) => `received ${s}`), stopped]);
    if (why.startsWith("received") && relay.sessions.length > 0 && config.drainTimeoutMs > 0) {
      // Drain: GOAWAY, no new connections or requests (/readyz says so at
      // once), open sessions go on until they end, the time is up, or a
      // second signal.
      log.info("draining", {
        why,
        sessions: relay.sessions.length,
        timeoutSeconds: config.drainTimeoutMs / 1000,
      });
      await relay.drain();
      const drained = await Promise.race([
        signals.next().then((s) => `received ${s} again`),
        new Promise<string>((resolve) => {
          const deadline = Date.now() + config.drainTimeoutMs;
          const timer = setInterval(() => {
            if (relay.sessions.length === 0) resolve("every session ended");
            else if (Date.now() >= deadline) resolve("drain timeout");
            else return;
            clearInterval(timer);
          }, 100);
          cleanups.push(() => clearInterval(timer));
        }),
        stopped,
      ]);
      log.info("drain over", { why: drained, sessions: relay.sessions.length });
    }
    log.info("stopping", { why, sessions: relay.sessions.length });
    listener.stop();
    await relay.stop();
    await new Promise((resolve) => setTimeout(resolve, 100));
    return 0;
  } finally {
    await cleanups.run();
  }
}

if (import.meta.main) Deno.exit(await main());
