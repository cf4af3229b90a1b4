/**
 * The relay's options, declared once in {@linkcode RELAY_OPTIONS}: from that
 * table come its flags, the environment it reads, `--help` and the README's
 * tables. {@linkcode parseRelayConfig} layers flags over environment over
 * defaults into a frozen, typed config or a list of clear errors.
 *
 * @module
 */

import { errorMessage } from "../shared/errors.ts";
import {
  ADMIN_OPTION,
  cidr,
  CONFIG_OPTION,
  DOMAIN_NAME,
  envNames,
  type HostPort,
  integer,
  INTERFACE_NAME,
  IP_ADDRESS,
  list,
  LOG_FORMAT_OPTION,
  LOG_LEVEL_OPTION,
  type OptionValues,
  parseCidr,
  parseProgramOptions,
  type ParseResult,
  PRINT_CONFIG_OPTION,
  type ReadFile,
  renderHelp,
  type Resolved,
  single,
  TEXT,
  toggle,
  TUN_OFFLOAD_OPTION,
  type ValueType,
} from "../shared/options.ts";
import type { LogFormat, LogLevel } from "../shared/log.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import {
  formatIp,
  formatPrefix,
  hasHostBits,
  parseIp,
  parsePrefix,
} from "../shared/ip/ip_address.ts";
import { AddressPool } from "../shared/tunnel/address_pool.ts";
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
  readonly logFormat: LogFormat;
  /** Where the admin endpoint (`/metrics`, `/healthz`, `/readyz`, `/status`) listens; off when absent. */
  readonly admin?: HostPort;
  /**
   * How long a SIGTERM lets existing sessions run after GOAWAY before they
   * are closed, milliseconds.
   */
  readonly drainTimeoutMs: number;
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
  /** Nameservers sent to clients in DNS_ASSIGN (draft-ietf-masque-connect-ip-dns); empty: none sent. */
  readonly dnsServers: readonly Uint8Array[];
  /** Search domains sent with them. */
  readonly dnsSearch: readonly string[];
  /** The users file (`relay/users.ts`); `undefined` only with {@linkcode noAuth}. */
  readonly usersFile?: string;
  /** Serve everyone as `anonymous` (`--no-auth`): an open relay. */
  readonly noAuth: boolean;
  /** A directory of static files served to GET requests, and its 404 page (`relay/decoy.ts`). */
  readonly decoyDir?: string;
  /**
   * TCP port of the TLS listener for HTTP/2 and WebTransport (default: the
   * UDP port); `undefined` with `--no-tcp`.
   */
  readonly tcpPort?: number;
}

const D = DEFAULT_RELAY_LIMITS;

/** A client pool: an IPv4 or IPv6 prefix no longer than `maxLength`, or `none`. */
function pool(version: 4 | 6, maxLength: number): ValueType<IpPrefix | "none"> {
  return {
    kind: `IPv${version} prefix of /${maxLength} or larger, or none`,
    parse(text, name, errors) {
      if (text === "none") return "none";
      const prefix = parseCidr(text, name, errors, version);
      if (prefix && prefix.prefixLength > maxLength) {
        errors.push(`${name} must be /${maxLength} or larger`);
        return undefined;
      }
      return prefix;
    },
  };
}

/** A service on the relay host: `udp/PORT`, `tcp/FIRST-LAST`, `ping`. */
const HOST_SERVICE: ValueType<HostService> = {
  kind: "udp/PORT, tcp/PORT, udp/FIRST-LAST, tcp/FIRST-LAST or ping",
  parse(text, name, errors) {
    const service = parseHostService(text);
    if (typeof service !== "string") return service;
    errors.push(name + service.slice("--allow-relay-host".length));
    return undefined;
  },
};

/** A URI template (RFC 9484 §3): a path or an https URL. */
const TEMPLATE: ValueType<string> = {
  kind: "URI template",
  parse(text, name, errors) {
    try {
      parseConnectIpTemplate(text);
      return text;
    } catch (error) {
      errors.push(`${name}: ${errorMessage(error)}`);
      return undefined;
    }
  },
};

const LIMITS = "limits";

/**
 * Every relay option, by the key its config file will use, in the order of
 * `--help` and the README. Errors are reported in this order.
 */
export const RELAY_OPTIONS = {
  host: single({
    flag: "host",
    valueName: "ADDR",
    type: TEXT,
    default: "::",
    defaultText: "`::`, all addresses",
    help: "address to listen on",
  }),
  port: single({
    flag: "port",
    valueName: "N",
    type: integer(1, 65535),
    default: 4433,
    help: "UDP port; 443 in production",
  }),
  cert: single({
    flag: "cert",
    valueName: "FILE",
    type: TEXT,
    help: "server certificate chain, PEM; with `--key`",
  }),
  key: single({ flag: "key", valueName: "FILE", type: TEXT, help: "server private key, PEM" }),
  devCerts: single({
    flag: "dev-certs",
    valueName: "DIR",
    type: TEXT,
    help: "use, or create when missing, a development CA and server certificate in DIR; " +
      "clients trust DIR/ca.pem with `--ca`",
  }),
  devCertNames: list({
    flag: "dev-cert-name",
    valueName: "NAME",
    type: TEXT,
    default: ["localhost", "127.0.0.1", "::1"],
    help: "DNS name or IP address for the created certificate",
  }),
  pool4: single({
    flag: "pool4",
    valueName: "CIDR|none",
    type: pool(4, 30),
    default: "10.100.0.0/24",
    help: "IPv4 client pool; each client gets one address from each pool, the relay's TUN " +
      "the first host; while a pool is used up new clients get 503; `none`: no IPv4",
  }),
  pool6: single({
    flag: "pool6",
    valueName: "CIDR|none",
    type: pool(6, 126),
    default: "fd6d:6173:7175::/64",
    help: "IPv6 client pool, likewise; `none`: no IPv6; at least one pool stays on",
  }),
  routes: list({
    flag: "route",
    valueName: "CIDR",
    type: cidr(),
    defaultText: "0.0.0.0/0 and ::/0, each if its pool is on",
    help: "route advertised to clients, of a family with a pool",
  }),
  tun: single({
    flag: "tun",
    valueName: "NAME",
    type: INTERFACE_NAME,
    default: "mvpn-relay",
    help: "TUN device name",
  }),
  mtu: single({
    flag: "mtu",
    valueName: "N",
    type: integer(1280, 65535),
    default: 1500,
    help: "TUN MTU, bytes; packets too big for a client's QUIC path get ICMP Packet Too Big",
  }),
  tunOffload: TUN_OFFLOAD_OPTION,
  nat: toggle({
    flag: "nat",
    help: "masquerade the pools on egress with nftables (use `deno task relay:nat`, which " +
      "adds `--allow-run=nft,sysctl`); removed on exit. The same table drops what clients " +
      "send to the relay host, a second time",
  }),
  template: single({
    flag: "template",
    valueName: "T",
    type: TEMPLATE,
    default: DEFAULT_URI_TEMPLATE,
    defaultText: `\`${DEFAULT_URI_TEMPLATE}\``,
    help: "URI template (RFC 9484 §3) requests must match: a path or `https://` URL, with " +
      "{target} and {ipproto} in the path or query, `{?target,ipproto}`, or no variable " +
      "(`/vpn`)",
  }),
  maxSessions: single({
    flag: "max-sessions",
    valueName: "N",
    type: integer(1, 1e6),
    default: 1024,
    help: "most concurrent sessions; more get 503",
  }),
  idleTimeout: single({
    flag: "idle-timeout",
    valueName: "SEC",
    type: integer(1, 3600),
    default: 30,
    help: "end a session whose client is silent this long; clients send keep-alives every 1 s",
  }),
  allowRelayHost: list({
    flag: "allow-relay-host",
    valueName: "S",
    type: HOST_SERVICE,
    default: [],
    defaultText: "none",
    help: "let clients reach service S on the relay host at its TUN (gateway) addresses: " +
      "`udp/PORT`, `tcp/PORT`, `udp/FIRST-LAST`, `tcp/FIRST-LAST` or `ping`; " +
      "every other address of the relay host is closed to clients",
  }),
  allowClientToClient: toggle({
    flag: "allow-client-to-client",
    help: "let clients reach each other's addresses; otherwise such packets are dropped",
  }),
  statusFile: single({
    flag: "status-file",
    valueName: "FILE",
    type: TEXT,
    help: "write a JSON status (sessions, counters) every 2 s",
  }),
  dns: list({
    flag: "dns",
    valueName: "ADDR",
    type: IP_ADDRESS,
    defaultText: "none",
    help: "nameserver (plain DNS, port 53) sent to clients in a DNS_ASSIGN capsule after the " +
      "routes; a TUN (gateway) address implies `--allow-relay-host udp/53,tcp/53`",
  }),
  dnsSearch: list({
    flag: "dns-search",
    valueName: "DOMAIN",
    type: DOMAIN_NAME,
    defaultText: "none",
    help: "search domain sent with `--dns`",
  }),
  logLevel: LOG_LEVEL_OPTION,
  users: single({
    flag: "users",
    valueName: "FILE",
    type: TEXT,
    help: "the users file (made with `deno task users`): who may connect, with a bearer " +
      "token or HTTP Basic, and each user's routes, protocols, sessions, rate and address; " +
      "reread on SIGHUP. Required unless `--no-auth`",
  }),
  noAuth: toggle({
    flag: "no-auth",
    help: "let anyone in, without credentials (an open relay: for tests and interop only; " +
      "warns at every start)",
  }),
  decoy: single({
    flag: "decoy",
    valueName: "DIR",
    type: TEXT,
    help: "serve the files in DIR to GET requests, and DIR/404.html as the answer to unknown " +
      "paths and to requests without valid credentials, so the host looks like a small website",
  }),
  logFormat: LOG_FORMAT_OPTION,
  admin: ADMIN_OPTION,
  drainTimeout: single({
    flag: "drain-timeout",
    valueName: "SEC",
    type: integer(0, 3600),
    default: 10,
    help: "on SIGTERM: send GOAWAY, refuse new connections and requests, and let existing " +
      "sessions run this long before closing them; a second SIGTERM or SIGINT exits at once",
  }),
  config: CONFIG_OPTION,
  printConfig: PRINT_CONFIG_OPTION,
  maxConnections: single({
    flag: "max-connections",
    valueName: "N",
    type: integer(1, 1e6),
    default: D.maxConnections,
    group: LIMITS,
    help: "open connections plus connections in the handshake; more are refused before " +
      "the handshake",
  }),
  maxConnectionsPerSource: single({
    flag: "max-connections-per-source",
    valueName: "N",
    type: integer(1, 1e6),
    default: D.maxConnectionsPerSource,
    group: LIMITS,
    help: "open connections from one IPv4 address or IPv6 /64; more are closed after the " +
      "handshake with `H3_EXCESSIVE_LOAD`",
  }),
  maxHandshakes: single({
    flag: "max-handshakes",
    valueName: "N",
    type: integer(1, 1e6),
    default: D.maxHandshakes,
    group: LIMITS,
    help: "connections in the QUIC handshake at once; more are refused",
  }),
  maxRequestsPerConnection: single({
    flag: "max-requests-per-connection",
    valueName: "N",
    type: integer(1, 1000),
    default: D.maxRequestsPerConnection,
    group: LIMITS,
    help: "concurrent request streams per connection (QUIC stream limit), so sessions per " +
      "connection",
  }),
  maxUniStreams: single({
    flag: "max-uni-streams",
    valueName: "N",
    type: integer(1, 100),
    default: D.maxUnidirectionalStreams,
    group: LIMITS,
    help: "concurrent unidirectional streams per connection (control, QPACK encoder and " +
      "decoder, GREASE); at least 3",
  }),
  sessionlessTimeout: single({
    flag: "sessionless-timeout",
    valueName: "SEC",
    type: integer(1, 3600),
    default: D.sessionlessTimeoutMs / 1000,
    group: LIMITS,
    help: "close a connection that has had no session this long (from the handshake, or " +
      "from the end of its last session)",
  }),
  addressRequestRate: single({
    flag: "address-request-rate",
    valueName: "N",
    type: integer(1, 1000),
    default: D.addressRequestsPerSecond,
    group: LIMITS,
    help: "ADDRESS_ASSIGN answers per second per session; ADDRESS_REQUESTs that arrive " +
      "meanwhile are merged into the next answer",
  }),
  addressRequestBurst: single({
    flag: "address-request-burst",
    valueName: "N",
    type: integer(1, 1000),
    default: D.addressRequestBurst,
    group: LIMITS,
    help: "answers at once before the rate applies",
  }),
  maxPendingAddressRequests: single({
    flag: "max-pending-address-requests",
    valueName: "N",
    type: integer(1, 10_000),
    default: D.maxPendingAddressRequests,
    group: LIMITS,
    help: "requested addresses of one session waiting for their answer; one more closes " +
      "the session",
  }),
  maxSessionsPerConnection: single({
    flag: "max-sessions-per-connection",
    valueName: "N",
    type: integer(1, 1000),
    default: D.maxSessionsPerConnection,
    group: LIMITS,
    help: "sessions of one connection at once, on any transport; more get 429 (on HTTP/3 " +
      "`--max-requests-per-connection` may bind first)",
  }),
  authFailures: single({
    flag: "auth-failures",
    valueName: "N",
    type: integer(1, 1_000_000),
    default: D.authFailuresPerMinute,
    group: LIMITS,
    help: "failed authentications per minute from one IPv4 address or IPv6 /64 that block " +
      "it: its connections are closed, and new ones right after the handshake",
  }),
  authBackoff: single({
    flag: "auth-backoff",
    valueName: "SEC",
    type: integer(1, 86_400),
    default: D.authBackoffMs / 1000,
    group: LIMITS,
    help: "how long a source is blocked the first time; doubled at each block after, " +
      "up to 1 h",
  }),
  authFailureSources: single({
    flag: "auth-failure-sources",
    valueName: "N",
    type: integer(1, 10_000_000),
    default: D.authFailureSources,
    group: LIMITS,
    help: "sources the failure limiter remembers; past it the oldest that are not blocked " +
      "are forgotten first",
  }),
  tcpPort: single({
    flag: "tcp-port",
    valueName: "N",
    type: integer(1, 65535),
    defaultText: "the UDP port (`--port`)",
    help: "TCP port of the TLS listener (ALPN h2) that serves CONNECT-IP over HTTP/2 and " +
      "WebTransport, for clients whose UDP is blocked",
  }),
  noTcp: toggle({
    flag: "no-tcp",
    help: "serve HTTP/3 only: no TCP listener",
  }),
  maxQueuedBytes: single({
    flag: "max-queued-bytes",
    valueName: "N",
    type: integer(4096, 64 * 1024 * 1024),
    default: D.maxQueuedBytes,
    group: LIMITS,
    help: "bytes a session over TCP (HTTP/2, WebTransport) may have waiting to be written; " +
      "packets past it are dropped and counted",
  }),
};

/** `--help` text, from {@linkcode RELAY_OPTIONS}. */
export const RELAY_HELP: string = renderHelp(RELAY_OPTIONS, {
  title: "masque-vpn relay: serves CONNECT-IP (RFC 9484) over HTTP/3 and HTTP/2.",
  usage: "Usage: deno task relay [options]",
  groups: [
    { heading: "Options" },
    { id: LIMITS, heading: "Limits (what one peer, or all together, can make the relay hold)" },
  ],
});

/** The environment variables the relay reads; `main.ts` passes exactly these. */
export const RELAY_ENV: readonly string[] = Object.freeze(envNames(RELAY_OPTIONS));

/**
 * Parses the relay's arguments and environment (the variables in
 * {@linkcode RELAY_ENV}). Returns the config, the list of every error found,
 * `"help"` or `"version"`.
 */
export function parseRelayConfig(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>> = {},
  readFile?: ReadFile,
): ParseResult<RelayConfig> {
  return parseProgramOptions(
    { table: RELAY_OPTIONS, check: checkRelay, warn: warnRelay, build: buildRelay },
    args,
    env,
    readFile,
  );
}

type RelayValues = OptionValues<typeof RELAY_OPTIONS>;

/**
 * What a relay configuration will do that its user may not expect: a pool
 * written with host bits (they are cleared), a session limit larger than
 * the pools can serve (the pools run out first: 503).
 */
function warnRelay(
  v: RelayValues,
  name: Resolved<typeof RELAY_OPTIONS>["names"],
  settings: Resolved<typeof RELAY_OPTIONS>["settings"],
): string[] {
  const warnings: string[] = [];
  const pools: [IpPrefix, string][] = [];
  for (const key of ["pool4", "pool6"] as const) {
    const pool = v[key];
    if (pool === "none") continue;
    pools.push([pool, name[key]]);
    const raw = settings[key]?.raw;
    if (typeof raw !== "string") continue;
    const slash = raw.indexOf("/");
    const written = parseIp(raw.slice(0, slash).trim());
    if (written && hasHostBits(written, pool.prefixLength)) {
      warnings.push(
        `${name[key]} ${raw} has host bits set: the pool is ${formatPrefix(pool)} ` +
          `(write it that way to silence this warning)`,
      );
    }
  }
  const capacities = pools.map(([pool, poolName]) => ({
    poolName,
    pool,
    size: new AddressPool(pool).size,
  }));
  const smallest = capacities.reduce<typeof capacities[number] | undefined>(
    (min, c) => (min === undefined || c.size < min.size ? c : min),
    undefined,
  );
  // Only when given: the default (1024) with a small pool is the pool's limit, as documented.
  const given = settings.maxSessions?.from !== "default";
  if (given && smallest !== undefined && v.maxSessions > smallest.size) {
    warnings.push(
      `${name.maxSessions} ${v.maxSessions} is more than ${smallest.poolName} ` +
        `${formatPrefix(smallest.pool)} can serve: it has ${smallest.size} client addresses, ` +
        `so at most ${smallest.size} sessions; more get 503 "address pool exhausted"`,
    );
  }
  return warnings;
}

/**
 * The warning for a relay without `--nat` on a host that does not forward
 * (`ipv4`/`ipv6`: `net.ipv4.ip_forward` and `net.ipv6.conf.all.forwarding`
 * are on, `undefined` when unknown), for the families with a pool; or
 * nothing. With `--nat` the relay turns forwarding on itself.
 */
export function forwardingWarning(
  config: Pick<RelayConfig, "nat" | "pool4" | "pool6">,
  forwarding: { readonly ipv4?: boolean; readonly ipv6?: boolean },
): string | undefined {
  if (config.nat) return undefined;
  const off = [
    ...(config.pool4 && forwarding.ipv4 === false ? ["net.ipv4.ip_forward"] : []),
    ...(config.pool6 && forwarding.ipv6 === false ? ["net.ipv6.conf.all.forwarding"] : []),
  ];
  if (off.length === 0) return undefined;
  return `${off.join(" and ")} ${off.length === 1 ? "is" : "are"} 0 and --nat is not given: ` +
    "clients' packets reach the relay's TUN and go no further. Give --nat, or turn forwarding " +
    `on (sysctl -w ${off.map((key) => `${key}=1`).join(" ")}) and route the pools back here`;
}

/** Errors that involve several options. */
function checkRelay(
  v: Partial<OptionValues<typeof RELAY_OPTIONS>>,
  name: { readonly [K in keyof OptionValues<typeof RELAY_OPTIONS>]: string },
): string[] {
  const errors: string[] = [];
  if (v.maxUniStreams !== undefined && v.maxUniStreams < 3) {
    errors.push(`${name.maxUniStreams} must be at least 3 (control and two QPACK streams)`);
  }
  if (v.pool4 === "none" && v.pool6 === "none") {
    errors.push(`${name.pool4} and ${name.pool6} cannot both be none`);
  }
  for (const route of v.routes ?? []) {
    const off = route.version === 4 ? v.pool4 === "none" : v.pool6 === "none";
    if (off) {
      const pool = route.version === 4 ? name.pool4 : name.pool6;
      errors.push(
        `${name.routes} ${
          formatPrefix(route)
        } is IPv${route.version}, but ${pool} is none: clients get no IPv${route.version} address to use it`,
      );
    }
  }
  for (const server of v.dns ?? []) {
    const version = server.length === 4 ? 4 : 6;
    if (version === 4 ? v.pool4 === "none" : v.pool6 === "none") {
      errors.push(
        `${name.dns} ${formatIp(server)} is IPv${version}, but ${
          version === 4 ? name.pool4 : name.pool6
        } is none: clients could not reach it`,
      );
    }
  }
  if (v.dnsSearch !== undefined && v.dnsSearch.length > 0 && (v.dns ?? []).length === 0) {
    errors.push(`${name.dnsSearch} needs ${name.dns}`);
  }
  if ((v.cert === undefined) !== (v.key === undefined)) {
    errors.push(`${name.cert} and ${name.key} go together`);
  }
  if (v.cert === undefined && v.devCerts === undefined) {
    errors.push("Give --cert and --key, or --dev-certs DIR for a development certificate");
  }
  if (v.noTcp && v.tcpPort !== undefined) {
    errors.push(`Give either ${name.tcpPort} or ${name.noTcp}, not both`);
  }
  if (v.cert !== undefined && v.devCerts !== undefined) {
    errors.push(`Give either ${name.cert}/${name.key} or ${name.devCerts}, not both`);
  }
  if (v.users === undefined && !v.noAuth) {
    errors.push(
      `Give ${name.users} FILE (make one with: deno task users add NAME --users FILE), or ` +
        `${name.noAuth} to run an open relay`,
    );
  }
  if (v.users !== undefined && v.noAuth) {
    errors.push(`Give either ${name.users} or ${name.noAuth}, not both`);
  }
  return errors;
}

/** The config from values that all read without error. */
function buildRelay(v: RelayValues): RelayConfig {
  const pool4 = v.pool4 === "none" ? undefined : v.pool4;
  const pool6 = v.pool6 === "none" ? undefined : v.pool6;
  const routes = v.routes ?? [
    ...(pool4 ? [parsePrefix("0.0.0.0/0")] : []),
    ...(pool6 ? [parsePrefix("::/0")] : []),
  ];
  return Object.freeze({
    host: v.host,
    port: v.port,
    certFile: v.cert,
    keyFile: v.key,
    devCertsDir: v.devCerts,
    devCertNames: v.devCertNames,
    pool4,
    pool6,
    routes: Object.freeze(routes),
    tunName: v.tun,
    mtu: v.mtu,
    nat: v.nat,
    template: v.template,
    maxSessions: v.maxSessions,
    logLevel: v.logLevel,
    logFormat: v.logFormat,
    admin: v.admin,
    drainTimeoutMs: v.drainTimeout * 1000,
    statusFile: v.statusFile,
    idleTimeoutMs: v.idleTimeout * 1000,
    limits: Object.freeze({
      maxConnections: v.maxConnections,
      maxConnectionsPerSource: v.maxConnectionsPerSource,
      maxHandshakes: v.maxHandshakes,
      maxRequestsPerConnection: v.maxRequestsPerConnection,
      maxUnidirectionalStreams: v.maxUniStreams,
      sessionlessTimeoutMs: v.sessionlessTimeout * 1000,
      addressRequestsPerSecond: v.addressRequestRate,
      addressRequestBurst: v.addressRequestBurst,
      maxPendingAddressRequests: v.maxPendingAddressRequests,
      maxSessionsPerConnection: v.maxSessionsPerConnection,
      authFailuresPerMinute: v.authFailures,
      authBackoffMs: v.authBackoff * 1000,
      authFailureSources: v.authFailureSources,
      maxQueuedBytes: v.maxQueuedBytes,
    }),
    allowRelayHost: v.allowRelayHost,
    allowClientToClient: v.allowClientToClient,
    tunOffload: v.tunOffload === "on",
    dnsServers: v.dns ?? Object.freeze([]),
    dnsSearch: v.dnsSearch ?? Object.freeze([]),
    usersFile: v.users,
    noAuth: v.noAuth,
    decoyDir: v.decoy,
    tcpPort: v.noTcp ? undefined : v.tcpPort ?? v.port,
  });
}
