/**
 * The relay's configuration: flags over environment over defaults, parsed
 * by a pure function into a frozen, typed config or a list of clear errors.
 *
 * @module
 */

import { errorMessage } from "../shared/errors.ts";
import { parseArgs } from "node:util";
import { parseCidr, parseInteger, type ParseResult } from "../shared/cli.ts";
import type { LogLevel } from "../shared/log.ts";
import { parseLogLevel } from "../shared/log.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import { formatPrefix } from "../shared/ip/ip_address.ts";
import {
  DEFAULT_URI_TEMPLATE,
  parseConnectIpTemplate,
} from "../shared/masque/connect_ip_request.ts";
import { DEFAULT_RELAY_LIMITS } from "./limits.ts";
import type { RelayLimits } from "./limits.ts";
import { parseHostService } from "../shared/tunnel/host_firewall.ts";
import type { HostService } from "../shared/tunnel/host_firewall.ts";

/** The relay's configuration. */
export interface RelayConfig {
  /** Address the QUIC endpoint binds, e.g. `::` or `198.18.0.1`. */
  readonly host: string;
  /** UDP port (443 in production). */
  readonly port: number;
  /** PEM files of the server certificate chain and key. */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** Directory where a development CA and server certificate are kept or created. */
  readonly devCertsDir?: string;
  /** DNS names and IP addresses put into a created development certificate. */
  readonly devCertNames: readonly string[];
  /**
   * Pools the client addresses come from; the relay's TUN takes the first
   * host of each. `undefined` (`--pool4 none`, `--pool6 none`): clients get
   * no address of that family; at least one pool is set.
   */
  readonly pool4?: IpPrefix;
  readonly pool6?: IpPrefix;
  /** Routes advertised to clients (ROUTE_ADVERTISEMENT). */
  readonly routes: readonly IpPrefix[];
  /** Name of the relay's TUN device. */
  readonly tunName: string;
  /** MTU of the relay's TUN device, bytes. */
  readonly mtu: number;
  /** Install nftables masquerade for the pools (needs `--allow-run=nft`). */
  readonly nat: boolean;
  /** URI template of the connect-ip resource (RFC 9484 §3). */
  readonly template: string;
  /** Most sessions served at once. */
  readonly maxSessions: number;
  readonly logLevel: LogLevel;
  /** Write a JSON status file here every few seconds (sessions, counters). */
  readonly statusFile?: string;
  /** A client silent this long is gone: its session ends, its addresses return to the pool. Milliseconds. */
  readonly idleTimeoutMs: number;
  /** Caps on connections, streams and control capsules (see `relay/limits.ts`). */
  readonly limits: RelayLimits;
  /** Services on the relay host clients may reach at the gateway addresses; default none. */
  readonly allowRelayHost: readonly HostService[];
  /** Let clients reach each other's addresses; default false. */
  readonly allowClientToClient: boolean;
  /** Ask the kernel for TUN offloads (`--tun-offload on`, the default); see ffi/tun_linux.ts. */
  readonly tunOffload: boolean;
}

const D = DEFAULT_RELAY_LIMITS;

/** `--help` text; every option is listed here and in docs/. */
export const RELAY_HELP = `masque-vpn relay: serves CONNECT-IP (RFC 9484) over HTTP/3.

Usage: deno task relay [options]

Options:
  --host ADDR          address to listen on (default ::, all addresses)
  --port N             UDP port (default 4433; 443 in production)
  --cert FILE          server certificate chain, PEM
  --key FILE           server private key, PEM
  --dev-certs DIR      use (or create when missing) a development CA and server
                       certificate in DIR; clients trust DIR/ca.pem with --ca
  --dev-cert-name NAME DNS name or IP address for the created certificate
                       (repeatable; default localhost, 127.0.0.1, ::1)
  --pool4 CIDR|none    IPv4 client pool (default 10.100.0.0/24)
  --pool6 CIDR|none    IPv6 client pool (default fd6d:6173:7175::/64); each
                       client gets one address from each pool, and while
                       either pool is used up new clients get 503; none
                       turns a family off (sessions get the other one only)
  --route CIDR         route advertised to clients (repeatable; default
                       0.0.0.0/0 and ::/0, each if its pool is on)
  --tun NAME           TUN device name (default mvpn-relay)
  --mtu N              TUN MTU in bytes (default 1500; packets too big for a
                       client's QUIC path get ICMP Packet Too Big)
  --tun-offload on|off TUN segmentation offloads: the kernel hands over and
                       takes 64 KB TCP super-packets, split and merged in the
                       TUN workers (default on; off for a kernel that misbehaves)
  --nat                masquerade the pools on egress with nftables
                       (run with --allow-run=nft); removed on exit. The
                       same table drops what clients send to the relay
                       host, a second time
  --template T         URI template (RFC 9484 §3) requests must match: a path
                       or https:// URL, with {target} and {ipproto} in the
                       path or query, {?target,ipproto}, or no variable
                       (e.g. /vpn); default ${DEFAULT_URI_TEMPLATE}
  --max-sessions N     most concurrent sessions (default 1024)
  --status-file FILE   write a JSON status (sessions, counters) every 2 s
  --idle-timeout SEC   end a session whose client is silent this long
                       (default 30; clients send keep-alives every 1 s)
  --allow-relay-host S let clients reach service S on the relay host at its
                       TUN (gateway) addresses: udp/PORT, tcp/PORT,
                       udp/FIRST-LAST, tcp/FIRST-LAST or ping (repeatable;
                       default none: every address of the relay host is
                       closed to clients)
  --allow-client-to-client
                       let clients reach each other's addresses (default:
                       dropped)

Limits (what one peer, or all together, can make the relay hold):
  --max-connections N  open connections plus handshakes; more are refused
                       (default ${D.maxConnections})
  --max-connections-per-source N
                       open connections from one IPv4 address or IPv6 /64;
                       more are closed with H3_EXCESSIVE_LOAD (default ${D.maxConnectionsPerSource})
  --max-handshakes N   connections in the QUIC handshake at once; more are
                       refused (default ${D.maxHandshakes})
  --max-requests-per-connection N
                       concurrent request streams per connection, so
                       sessions per connection (default ${D.maxRequestsPerConnection})
  --max-uni-streams N  concurrent unidirectional streams per connection
                       (control, QPACK, GREASE; default ${D.maxUnidirectionalStreams})
  --sessionless-timeout SEC
                       close a connection with no session for this long
                       (default ${D.sessionlessTimeoutMs / 1000})
  --address-request-rate N
                       ADDRESS_ASSIGN answers per second per session; requests
                       that arrive meanwhile are merged (default ${D.addressRequestsPerSecond})
  --address-request-burst N
                       answers at once before the rate applies (default ${D.addressRequestBurst})
  --max-pending-address-requests N
                       requested addresses waiting for an answer before the
                       session is closed (default ${D.maxPendingAddressRequests})
  --log-level LEVEL    debug, info, warn or error (default info;
                       environment MASQUE_LOG_LEVEL)
  -h, --help           show this help
`;

/**
 * Parses the relay's arguments and environment. Returns the config, the
 * list of every error found, or `"help"`.
 */
export function parseRelayConfig(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>> = {},
): ParseResult<RelayConfig> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...args],
      strict: true,
      allowPositionals: false,
      options: {
        host: { type: "string" },
        port: { type: "string" },
        cert: { type: "string" },
        key: { type: "string" },
        "dev-certs": { type: "string" },
        "dev-cert-name": { type: "string", multiple: true },
        pool4: { type: "string" },
        pool6: { type: "string" },
        route: { type: "string", multiple: true },
        tun: { type: "string" },
        mtu: { type: "string" },
        nat: { type: "boolean" },
        template: { type: "string" },
        "max-sessions": { type: "string" },
        "status-file": { type: "string" },
        "idle-timeout": { type: "string" },
        "max-connections": { type: "string" },
        "max-connections-per-source": { type: "string" },
        "max-handshakes": { type: "string" },
        "max-requests-per-connection": { type: "string" },
        "max-uni-streams": { type: "string" },
        "sessionless-timeout": { type: "string" },
        "address-request-rate": { type: "string" },
        "address-request-burst": { type: "string" },
        "max-pending-address-requests": { type: "string" },
        "allow-relay-host": { type: "string", multiple: true },
        "allow-client-to-client": { type: "boolean" },
        "tun-offload": { type: "string" },
        "log-level": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    return { ok: false, errors: [errorMessage(error)] };
  }
  if (values.help) return { ok: "help" };
  const errors: string[] = [];
  const port = parseInteger(values.port ?? "4433", "--port", 1, 65535, errors);
  const tunOffload = values["tun-offload"] ?? "on";
  if (tunOffload !== "on" && tunOffload !== "off") {
    errors.push(`--tun-offload must be on or off, not "${tunOffload}"`);
  }
  const mtu = parseInteger(values.mtu ?? "1500", "--mtu", 1280, 65535, errors);
  const maxSessions = parseInteger(
    values["max-sessions"] ?? "1024",
    "--max-sessions",
    1,
    1e6,
    errors,
  );
  const idleTimeout = parseInteger(
    values["idle-timeout"] ?? "30",
    "--idle-timeout",
    1,
    3600,
    errors,
  );
  const limit = (flag: string, fallback: number, max: number) =>
    parseInteger(
      (values as Record<string, string | undefined>)[flag] ?? String(fallback),
      `--${flag}`,
      1,
      max,
      errors,
    );
  const limits: RelayLimits = {
    maxConnections: limit("max-connections", D.maxConnections, 1e6)!,
    maxConnectionsPerSource: limit("max-connections-per-source", D.maxConnectionsPerSource, 1e6)!,
    maxHandshakes: limit("max-handshakes", D.maxHandshakes, 1e6)!,
    maxRequestsPerConnection: limit(
      "max-requests-per-connection",
      D.maxRequestsPerConnection,
      1000,
    )!,
    maxUnidirectionalStreams: limit("max-uni-streams", D.maxUnidirectionalStreams, 100)!,
    sessionlessTimeoutMs: limit("sessionless-timeout", D.sessionlessTimeoutMs / 1000, 3600)! *
      1000,
    addressRequestsPerSecond: limit("address-request-rate", D.addressRequestsPerSecond, 1000)!,
    addressRequestBurst: limit("address-request-burst", D.addressRequestBurst, 1000)!,
    maxPendingAddressRequests: limit(
      "max-pending-address-requests",
      D.maxPendingAddressRequests,
      10_000,
    )!,
  };
  if (limits.maxUnidirectionalStreams < 3) {
    errors.push("--max-uni-streams must be at least 3 (control and two QPACK streams)");
  }
  const pool4Text = values.pool4 ?? "10.100.0.0/24";
  const pool6Text = values.pool6 ?? "fd6d:6173:7175::/64";
  const pool4 = pool4Text === "none" ? undefined : parseCidr(pool4Text, "--pool4", errors, 4);
  const pool6 = pool6Text === "none" ? undefined : parseCidr(pool6Text, "--pool6", errors, 6);
  if (pool4 && pool4.prefixLength > 30) errors.push("--pool4 must be /30 or larger");
  if (pool6 && pool6.prefixLength > 126) errors.push("--pool6 must be /126 or larger");
  if (pool4Text === "none" && pool6Text === "none") {
    errors.push("--pool4 and --pool6 cannot both be none");
  }
  const defaultRoutes = [
    ...(pool4Text === "none" ? [] : ["0.0.0.0/0"]),
    ...(pool6Text === "none" ? [] : ["::/0"]),
  ];
  const routes = (values.route ?? defaultRoutes).map((r) => parseCidr(r, "--route", errors));
  for (const route of routes) {
    const off = route?.version === 4 ? pool4Text === "none" : pool6Text === "none";
    if (route && off) {
      errors.push(
        `--route ${
          formatPrefix(route)
        } is IPv${route.version}, but --pool${route.version} is none: clients get no IPv${route.version} address to use it`,
      );
    }
  }
  const logText = values["log-level"] ?? env.MASQUE_LOG_LEVEL ?? "info";
  const logLevel = parseLogLevel(logText);
  if (!logLevel) errors.push(`--log-level must be debug, info, warn or error, not "${logText}"`);
  const tunName = values.tun ?? "mvpn-relay";
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(tunName)) {
    errors.push(`--tun must be 1-15 letters, digits, '-', '_' or '.', not "${tunName}"`);
  }
  const certFile = values.cert;
  const keyFile = values.key;
  const devCertsDir = values["dev-certs"];
  if ((certFile === undefined) !== (keyFile === undefined)) {
    errors.push("--cert and --key go together");
  }
  if (certFile === undefined && devCertsDir === undefined) {
    errors.push("Give --cert and --key, or --dev-certs DIR for a development certificate");
  }
  if (certFile !== undefined && devCertsDir !== undefined) {
    errors.push("Give either --cert/--key or --dev-certs, not both");
  }
  const allowRelayHost: HostService[] = [];
  for (const text of values["allow-relay-host"] ?? []) {
    const service = parseHostService(text);
    if (typeof service === "string") errors.push(service);
    else allowRelayHost.push(service);
  }
  const template = values.template ?? DEFAULT_URI_TEMPLATE;
  try {
    parseConnectIpTemplate(template);
  } catch (error) {
    errors.push(`--template: ${errorMessage(error)}`);
  }
  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    config: Object.freeze({
      host: values.host ?? "::",
      port: port!,
      certFile,
      keyFile,
      devCertsDir,
      devCertNames: Object.freeze(values["dev-cert-name"] ?? ["localhost", "127.0.0.1", "::1"]),
      pool4,
      pool6,
      routes: Object.freeze(routes as IpPrefix[]),
      tunName,
      mtu: mtu!,
      nat: values.nat ?? false,
      template,
      maxSessions: maxSessions!,
      logLevel: logLevel!,
      statusFile: values["status-file"],
      idleTimeoutMs: idleTimeout! * 1000,
      limits: Object.freeze(limits),
      allowRelayHost: Object.freeze(allowRelayHost),
      allowClientToClient: values["allow-client-to-client"] ?? false,
      tunOffload: tunOffload === "on",
    }),
  };
}
