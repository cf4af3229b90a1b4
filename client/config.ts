/**
 * The client's options, declared once in {@linkcode CLIENT_OPTIONS}: from
 * that table come its flags, the environment it reads, `--help` and the
 * README's table. {@linkcode parseClientConfig} layers flags over
 * environment over defaults into a frozen, typed config or a list of clear
 * errors.
 *
 * @module
 */

import { parseToken } from "../shared/auth/credentials.ts";
import { errorMessage } from "../shared/errors.ts";
import type { LogFormat, LogLevel } from "../shared/log.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import { formatPrefix, parseIp, parsePrefix } from "../shared/ip/ip_address.ts";
import {
  checkFullTunnelOptions,
  DEFAULT_FWMARK,
  DEFAULT_ROUTING_TABLE,
  DEFAULT_RULE_PRIORITY,
  type FullTunnelOptions,
} from "../shared/tunnel/full_tunnel.ts";
import { DEFAULT_LAN_SUBNETS } from "../shared/tunnel/kill_switch.ts";
import {
  DEFAULT_URI_TEMPLATE,
  parseConnectIpTemplate,
} from "../shared/masque/connect_ip_request.ts";
import type { PacketMode } from "../shared/masque/connect_ip_session.ts";
import type { TransportName } from "../shared/masque/connect_stream.ts";
import {
  ADMIN_OPTION,
  cidr,
  CONFIG_OPTION,
  envNames,
  type HostPort,
  integer,
  INTERFACE_NAME,
  list,
  LOG_FORMAT_OPTION,
  LOG_LEVEL_OPTION,
  oneOf,
  type OptionValues,
  parseInteger,
  parseProgramOptions,
  type ParseResult,
  PRINT_CONFIG_OPTION,
  type ReadFile,
  renderHelp,
  single,
  TEXT,
  TUN_OFFLOAD_OPTION,
  type ValueType,
} from "../shared/options.ts";

/** One relay to try, from one `--relay`. */
export interface RelayEndpoint {
  /** Relay host name or address, and UDP port. */
  readonly relayHost: string;
  readonly relayPort: number;
  /** `:authority` sent in the request. */
  readonly authority: string;
  /** The relay's URI template (RFC 9484 §3), absolute. */
  readonly template: string;
  /** Name checked against the relay's certificate (`--server-name`, else its host). */
  readonly serverName: string;
}

/** The client's configuration. */
export interface ClientConfig {
  /**
   * Every `--relay`, in order: the client tries the first, and on a failure
   * the next (failover); the fields below are the first one's.
   */
  readonly relays: readonly RelayEndpoint[];
  /** Relay host name or address, and UDP port. */
  readonly relayHost: string;
  readonly relayPort: number;
  /** `:authority` sent in the request. */
  readonly authority: string;
  /**
   * The relay's URI template (RFC 9484 §3), absolute: `--relay` as given, or
   * the default template on its host and port when it has no path.
   */
  readonly template: string;
  /** Name checked against the relay's certificate (default: relay host). */
  readonly serverName: string;
  /** PEM file of an extra CA to trust (in addition to the system roots). */
  readonly caFile?: string;
  readonly tunName: string;
  /**
   * TUN MTU in bytes, or `"auto"`: in datagram mode the largest packet the
   * QUIC path carries once path MTU discovery has run (at least 1280, the
   * IPv6 minimum; at most 1500), in stream mode 1500.
   */
  readonly mtu: number | "auto";
  /** Routes to send through the tunnel; empty: all the relay advertises. */
  readonly routes: readonly IpPrefix[];
  readonly mode: PacketMode;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  /**
   * Nothing from the relay for this long (keep-alives go every second)
   * ends the connection and starts a reconnect: QUIC's idle timeout,
   * milliseconds.
   */
  readonly relayTimeoutMs: number;
  /** Where the admin endpoint (`/metrics`, `/healthz`, `/readyz`, `/status`) listens; off when absent. */
  readonly admin?: HostPort;
  /** Where to write the counters as JSON every 2 s (needs `--allow-write` for it). */
  readonly statusFile?: string;
  /** Ask the kernel for TUN offloads (`--tun-offload on`, the default); see ffi/tun_linux.ts. */
  readonly tunOffload: boolean;
  /** The routing table, rule priorities and QUIC socket mark of the policy routing. */
  readonly fullTunnel: FullTunnelOptions;
  /**
   * `auto` (the default): on once a default route goes through the tunnel;
   * `on`: from before the first connection; `off`: never.
   */
  readonly killSwitch: KillSwitchMode;
  /** Destinations the kill switch lets out of the underlay (`--allow-lan`). */
  readonly allowLan: readonly IpPrefix[];
  /**
   * The resolver: `relay` (the relay's DNS_ASSIGN, the default), `off` (the
   * host's resolver is left alone), or these nameservers.
   */
  readonly dns: "relay" | "off" | readonly Uint8Array[];
  /** Where the saved resolver configuration and its marker live. */
  readonly stateDir: string;
  /**
   * How to authenticate: a bearer token from a file (`--token-file`) or the
   * environment (`MASQUE_TOKEN`), HTTP Basic with a password from a file,
   * or nothing (a relay with `--no-auth`). Secrets are read by `main.ts`.
   */
  readonly credentials:
    | { readonly kind: "none" }
    | { readonly kind: "token-file"; readonly file: string }
    | { readonly kind: "token"; readonly token: string }
    | { readonly kind: "basic"; readonly user: string; readonly passwordFile: string };
  /** `auto` (HTTP/3, else HTTP/2, moving back when HTTP/3 works) or one transport. */
  readonly transport: TransportName | "auto";
  /** The relays' TCP port for HTTP/2 and WebTransport (default: each URL's port). */
  readonly tcpPort?: number;
  /** `auto`: how long the QUIC handshake may take before HTTP/2 is tried, milliseconds. */
  readonly h3TimeoutMs: number;
  /** `auto` on HTTP/2: how often HTTP/3 is tried again, milliseconds. */
  readonly h3RetryMs: number;
}

/** `--kill-switch`. */
export type KillSwitchMode = "auto" | "on" | "off";

/** Where the client keeps what it must restore after a crash, by default. */
export const DEFAULT_STATE_DIR = "/var/lib/masque-vpn";

/** Where to reach the relay, from `--relay`. */
interface RelayUrl {
  readonly relayHost: string;
  readonly relayPort: number;
  readonly authority: string;
  readonly template: string;
}

/**
 * Reads `--relay`, the relay's URI template (RFC 9484 §3): an absolute
 * `https://` template whose authority gives the host and port to dial and
 * the `:authority` to send, normalized as RFC 9110 §4.2.3 asks (host in
 * lowercase, no `:443`). Without a path, or with only `/`, it is the default
 * template `https://HOST:PORT/.well-known/masque/ip/{target}/{ipproto}/`.
 * Returns an error message, which starts with `name`, otherwise.
 */
function parseRelayUrl(text: string, name: string): RelayUrl | string {
  const separator = text.indexOf("://");
  if (separator <= 0) return `${name} must be a URL like https://relay.example:4433, not "${text}"`;
  const scheme = text.slice(0, separator).toLowerCase();
  if (scheme !== "https") return `${name} must be an https URL, not "${scheme}:"`;
  let end = separator + 3;
  while (end < text.length && !"/?#".includes(text[end])) end++;
  const rest = text.slice(end);
  const template = rest === "" || rest === "/" ? text.slice(0, end) + DEFAULT_URI_TEMPLATE : text;
  try {
    parseConnectIpTemplate(template);
  } catch (error) {
    return `${name}: ${errorMessage(error)}`;
  }
  const written = text.slice(separator + 3, end);
  if (written.includes("@")) return `${name} must not carry user information, not "${written}"`;
  let url: URL;
  try {
    url = new URL(`https://${written}/`);
  } catch {
    return `${name} has an invalid host or port: "${written}"`;
  }
  return {
    relayHost: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    relayPort: url.port ? Number(url.port) : 443,
    authority: url.host,
    template,
  };
}

/** `--relay`: the relay's URI template, read by {@linkcode parseRelayUrl}. */
const RELAY_URL: ValueType<RelayUrl> = {
  kind: "https URI template",
  parse(text, name, errors) {
    const relay = parseRelayUrl(text, name);
    if (typeof relay !== "string") return relay;
    errors.push(relay);
    return undefined;
  },
};

/**
 * `MASQUE_TOKEN`: a bearer token from the environment. Given as a flag it is
 * refused: the command line of a process is visible to every user of the
 * machine (`ps`).
 */
const TOKEN: ValueType<string> = {
  kind: "token",
  parse(text, name, errors) {
    if (name.startsWith("--")) {
      errors.push(
        `${name} is refused: a command line is visible to every user of this machine (ps); ` +
          "give the token in a file with --token-file FILE, or in MASQUE_TOKEN",
      );
      return undefined;
    }
    if (parseToken(text.trim()) === undefined) {
      errors.push(`${name} does not hold a token (<id>.<secret>, as deno task users add prints)`);
      return undefined;
    }
    return text.trim();
  },
};

/** `--mtu`: `auto` or bytes from the IPv6 minimum up. */
const MTU: ValueType<number | "auto"> = {
  kind: "auto or integer 1280..65535",
  parse: (text, name, errors) =>
    text === "auto" ? "auto" : parseInteger(text, name, 1280, 65535, errors),
};

/** `--fwmark`: decimal or `0x` hexadecimal, 1..2^32-1. */
const MARK: ValueType<number> = {
  kind: "integer 1..4294967295, decimal or 0x hex",
  parse(text, name, errors) {
    const hex = text.startsWith("0x") || text.startsWith("0X");
    const digits = hex ? text.slice(2) : text;
    const valid = digits.length > 0 && digits.length <= 10 &&
      [...digits].every((c) => (hex ? "0123456789abcdefABCDEF" : "0123456789").includes(c));
    const value = valid ? Number.parseInt(digits, hex ? 16 : 10) : NaN;
    if (value >= 1 && value <= 0xffffffff) return value;
    errors.push(
      `${name} must be an integer from 1 to 4294967295 (or 0x1..0xffffffff), not "${text}"`,
    );
    return undefined;
  },
};

/** `--allow-lan`: a prefix, or `local` for {@linkcode DEFAULT_LAN_SUBNETS}. */
const LAN: ValueType<readonly IpPrefix[]> = {
  kind: "`local` or IP prefix",
  parse(text, name, errors) {
    if (text === "local") return DEFAULT_LAN_SUBNETS.map(parsePrefix);
    try {
      return [parsePrefix(text.trim())];
    } catch {
      errors.push(`${name} must be local or an IP prefix such as 192.168.1.0/24, not "${text}"`);
      return undefined;
    }
  },
};

/** `--dns`: `off` or a nameserver's address. */
const DNS: ValueType<Uint8Array | "off"> = {
  kind: "IP address or off",
  parse(text, name, errors) {
    if (text === "off") return "off";
    const address = parseIp(text.trim());
    if (address === undefined) errors.push(`${name} must be an IP address or off, not "${text}"`);
    return address;
  },
};

const FULL_TUNNEL = "full tunnel";

/**
 * Every client option, by the key its config file will use, in the order of
 * `--help` and the README. Errors are reported in this order.
 */
export const CLIENT_OPTIONS = {
  relay: list({
    flag: "relay",
    valueName: "URL",
    type: RELAY_URL,
    required: "e.g. --relay https://relay.example:4433",
    help: "the relay's URI template (RFC 9484 §3), e.g. `https://relay.example/vpn`; only " +
      `\`https://HOST[:PORT]\`: the default template \`${DEFAULT_URI_TEMPLATE}\` on that ` +
      "host, port 443 if not given. Several: tried in order when connecting and reconnecting " +
      "(failover)",
  }),
  ca: single({
    flag: "ca",
    valueName: "FILE",
    type: TEXT,
    help: "also trust this CA (PEM); the system roots are always trusted",
  }),
  serverName: single({
    flag: "server-name",
    valueName: "NAME",
    type: TEXT,
    defaultText: "the URL's host",
    help: "name checked in the relay's certificate",
  }),
  tun: single({
    flag: "tun",
    valueName: "NAME",
    type: INTERFACE_NAME,
    default: "mvpn0",
    help: "TUN device name",
  }),
  mtu: single({
    flag: "mtu",
    valueName: "N|auto",
    type: MTU,
    default: "auto",
    help: "TUN MTU, bytes; `auto`: what the QUIC path carries (at least 1280), raised as " +
      "path MTU discovery goes on (about 1414 on a 1500-byte path); 1500 in stream mode",
  }),
  routes: list({
    flag: "route",
    valueName: "CIDR",
    type: cidr(),
    env: "TARGET_CIDRS",
    defaultText: "all the relay advertises",
    help: "send this network through the tunnel",
  }),
  mode: single({
    flag: "mode",
    valueName: "MODE",
    type: oneOf(["datagram", "stream"]),
    default: "datagram",
    help: "`datagram`: packets in HTTP Datagrams; `stream`: DATAGRAM capsules on the " +
      "request stream (reliable, ordered)",
  }),
  tunOffload: TUN_OFFLOAD_OPTION,
  relayTimeout: single({
    flag: "relay-timeout",
    valueName: "SEC",
    type: integer(2, 300),
    default: 5,
    help: "reconnect when nothing came from the relay for this long (QUIC idle timeout; " +
      "the client sends keep-alives every second)",
  }),
  logLevel: LOG_LEVEL_OPTION,
  logFormat: LOG_FORMAT_OPTION,
  statusFile: single({
    flag: "status-file",
    valueName: "FILE",
    type: TEXT,
    help: "write the counters (packets, drops by reason and place) as JSON every 2 s; " +
      "needs `--allow-write=FILE` added to the command",
  }),
  killSwitch: single({
    flag: "kill-switch",
    valueName: "MODE",
    type: oneOf(["auto", "on", "off"]),
    default: "auto",
    group: FULL_TUNNEL,
    help: "an nftables table that drops what would leave by any interface but the TUN, except " +
      "the QUIC packets to the relay; `auto`: once a default route goes through the tunnel; " +
      "`on`: also before the first connection; stays while the tunnel is down and after a " +
      "crash, removed when you stop the client (needs `nft`)",
  }),
  allowLan: list({
    flag: "allow-lan",
    valueName: "CIDR|local",
    type: LAN,
    defaultText: "none",
    group: FULL_TUNNEL,
    help: "let the kill switch pass traffic to this network outside the tunnel; `local`: the " +
      "private, link-local, ULA and multicast ranges",
  }),
  dns: list({
    flag: "dns",
    valueName: "ADDR|off",
    type: DNS,
    defaultText: "the relay's DNS_ASSIGN",
    group: FULL_TUNNEL,
    help: "set this nameserver for the life of the tunnel (through systemd-resolved or " +
      "/etc/resolv.conf) instead of the relay's; `off`: leave the resolver alone",
  }),
  routingTable: single({
    flag: "routing-table",
    valueName: "N",
    type: integer(1, 0xffffffff),
    default: DEFAULT_ROUTING_TABLE,
    group: FULL_TUNNEL,
    help: "the client's own routing table: the tunnel's routes go there, never into main",
  }),
  rulePriority: single({
    flag: "rule-priority",
    valueName: "N",
    type: integer(1, 32762),
    default: DEFAULT_RULE_PRIORITY,
    group: FULL_TUNNEL,
    help: "the first of the 4 FIB rule priorities the client uses (a later start removes what " +
      "a killed client left at them)",
  }),
  fwmark: single({
    flag: "fwmark",
    valueName: "MARK",
    type: MARK,
    default: `0x${DEFAULT_FWMARK.toString(16)}`,
    group: FULL_TUNNEL,
    help: "firewall mark of the QUIC socket: its packets bypass the tunnel's table",
  }),
  stateDir: single({
    flag: "state-dir",
    valueName: "DIR",
    type: TEXT,
    default: DEFAULT_STATE_DIR,
    group: FULL_TUNNEL,
    help: "where the original resolver configuration is saved while the tunnel is up",
  }),
  tokenFile: single({
    flag: "token-file",
    valueName: "FILE",
    type: TEXT,
    help: "the bearer token `deno task users add` printed, in a file (sent as " +
      "`Proxy-Authorization: Bearer`)",
  }),
  token: single({
    flag: "token",
    valueName: "T",
    type: TOKEN,
    env: "MASQUE_TOKEN",
    secret: true,
    help: "the bearer token, from the environment only; on the command line it is refused " +
      "(`ps` shows it)",
  }),
  user: single({
    flag: "user",
    valueName: "NAME",
    type: TEXT,
    help: "user name for HTTP Basic, with `--password-file`",
  }),
  passwordFile: single({
    flag: "password-file",
    valueName: "FILE",
    type: TEXT,
    help: "the password for HTTP Basic, on the first line of FILE",
  }),
  transport: single({
    flag: "transport",
    valueName: "T",
    type: oneOf(["auto", "h3", "h2", "webtransport"]),
    default: "auto",
    help: "`auto`: HTTP/3, and HTTP/2 over TCP when no QUIC handshake completes in " +
      "`--h3-timeout` (UDP blocked), moving back to HTTP/3 when it works again; `h3`, `h2`: " +
      "only that; `webtransport`: the project's WebTransport over HTTP/2 transport",
  }),
  tcpPort: single({
    flag: "tcp-port",
    valueName: "N",
    type: integer(1, 65535),
    defaultText: "the URL's port",
    help: "the relay's TCP port for HTTP/2 and WebTransport",
  }),
  h3Timeout: single({
    flag: "h3-timeout",
    valueName: "SEC",
    type: integer(1, 60),
    default: 2,
    help: "`--transport auto`: how long the QUIC handshake may take before HTTP/2 is used",
  }),
  h3Retry: single({
    flag: "h3-retry",
    valueName: "SEC",
    type: integer(5, 86_400),
    default: 300,
    help: "`--transport auto` on HTTP/2: how often to try HTTP/3 again; the tunnel moves " +
      "when a new HTTP/3 session gets the same addresses",
  }),
  admin: ADMIN_OPTION,
  config: CONFIG_OPTION,
  printConfig: PRINT_CONFIG_OPTION,
};

/** The environment variables the client reads; `main.ts` passes exactly these. */
export const CLIENT_ENV: readonly string[] = Object.freeze(envNames(CLIENT_OPTIONS));

/** `--help` text, from {@linkcode CLIENT_OPTIONS}. */
export const CLIENT_HELP: string = renderHelp(CLIENT_OPTIONS, {
  title: "masque-vpn client: tunnels IP traffic to a CONNECT-IP relay (HTTP/3, HTTP/2).",
  usage: "Usage: deno task client --relay https://HOST[:PORT][/TEMPLATE] [options]",
  groups: [
    { heading: "Options" },
    {
      id: FULL_TUNNEL,
      heading: "Routing, kill switch and DNS (docs/full-tunnel.md)",
    },
  ],
});

/** Errors that involve several options: one way to authenticate, Basic in two parts. */
function checkClient(
  v: Partial<OptionValues<typeof CLIENT_OPTIONS>>,
  name: { readonly [K in keyof OptionValues<typeof CLIENT_OPTIONS>]: string },
): string[] {
  const errors: string[] = [];
  if (v.dns !== undefined && v.dns.includes("off") && v.dns.length > 1) {
    errors.push(`${name.dns} off cannot be combined with addresses`);
  }
  if (v.routingTable !== undefined && v.rulePriority !== undefined && v.fwmark !== undefined) {
    const problems = checkFullTunnelOptions({
      table: v.routingTable,
      priority: v.rulePriority,
      fwmark: v.fwmark,
    });
    for (const problem of problems) errors.push(problem);
  }
  const ways = [
    v.tokenFile !== undefined ? name.tokenFile : undefined,
    v.token !== undefined ? name.token : undefined,
    v.user !== undefined || v.passwordFile !== undefined ? `${name.user}` : undefined,
  ].filter((way) => way !== undefined);
  if (ways.length > 1) errors.push(`Give one of ${ways.join(", ")}, not several`);
  if ((v.user === undefined) !== (v.passwordFile === undefined)) {
    errors.push(`${name.user} and ${name.passwordFile} go together`);
  }
  return errors;
}

/** The config from values that all read without error. */
function buildClient(v: OptionValues<typeof CLIENT_OPTIONS>): ClientConfig {
  const relays = v.relay.map((relay) =>
    Object.freeze({ ...relay, serverName: v.serverName ?? relay.relayHost })
  );
  return Object.freeze({
    ...relays[0],
    relays: Object.freeze(relays),
    caFile: v.ca,
    tunName: v.tun,
    mtu: v.mtu,
    routes: v.routes ?? Object.freeze([]),
    mode: v.mode,
    logLevel: v.logLevel,
    logFormat: v.logFormat,
    relayTimeoutMs: v.relayTimeout * 1000,
    admin: v.admin,
    statusFile: v.statusFile,
    tunOffload: v.tunOffload === "on",
    credentials: credentialsOf(v),
    transport: v.transport,
    tcpPort: v.tcpPort,
    h3TimeoutMs: v.h3Timeout * 1000,
    h3RetryMs: v.h3Retry * 1000,
    fullTunnel: Object.freeze({
      table: v.routingTable,
      priority: v.rulePriority,
      fwmark: v.fwmark,
    }),
    killSwitch: v.killSwitch,
    allowLan: Object.freeze(uniquePrefixes((v.allowLan ?? []).flat())),
    dns: v.dns === undefined ? "relay" : v.dns[0] === "off" ? "off" : Object.freeze(
      v.dns.filter((entry): entry is Uint8Array => entry !== "off"),
    ),
    stateDir: v.stateDir,
  });
}

function uniquePrefixes(prefixes: readonly IpPrefix[]): IpPrefix[] {
  const seen = new Set<string>();
  return prefixes.filter((prefix) => {
    const key = formatPrefix(prefix);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function credentialsOf(v: OptionValues<typeof CLIENT_OPTIONS>): ClientConfig["credentials"] {
  if (v.tokenFile !== undefined) return { kind: "token-file", file: v.tokenFile };
  if (v.token !== undefined) return { kind: "token", token: v.token };
  if (v.user !== undefined && v.passwordFile !== undefined) {
    return { kind: "basic", user: v.user, passwordFile: v.passwordFile };
  }
  return { kind: "none" };
}

/**
 * Parses the client's arguments and environment (the variables in
 * {@linkcode CLIENT_ENV}). Returns the config, the list of every error
 * found, `"help"` or `"version"`.
 */
export function parseClientConfig(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>> = {},
  readFile?: ReadFile,
): ParseResult<ClientConfig> {
  return parseProgramOptions(
    { table: CLIENT_OPTIONS, check: checkClient, build: buildClient },
    args,
    env,
    readFile,
  );
}
