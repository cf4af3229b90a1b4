/**
 * The client's options, declared once in {@linkcode CLIENT_OPTIONS}: from
 * that table come its flags, the environment it reads, `--help` and the
 * README's table. {@linkcode parseClientConfig} layers flags over
 * environment over defaults into a frozen, typed config or a list of clear
 * errors.
 *
 * @module
 */

import { errorMessage } from "../shared/errors.ts";
import type { LogLevel } from "../shared/log.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import {
  DEFAULT_URI_TEMPLATE,
  parseConnectIpTemplate,
} from "../shared/masque/connect_ip_request.ts";
import type { PacketMode } from "../shared/masque/connect_ip_session.ts";
import {
  cidr,
  envNames,
  INTERFACE_NAME,
  list,
  LOG_LEVEL_OPTION,
  oneOf,
  type OptionValues,
  parseInteger,
  parseProgramOptions,
  type ParseResult,
  renderHelp,
  single,
  TEXT,
  TUN_OFFLOAD_OPTION,
  type ValueType,
} from "../shared/options.ts";

/** The client's configuration. */
export interface ClientConfig {
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
  /** Where to write the counters as JSON every 2 s (needs `--allow-write` for it). */
  readonly statusFile?: string;
  /** Ask the kernel for TUN offloads (`--tun-offload on`, the default); see ffi/tun_linux.ts. */
  readonly tunOffload: boolean;
}

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

/** `--mtu`: `auto` or bytes from the IPv6 minimum up. */
const MTU: ValueType<number | "auto"> = {
  kind: "auto or integer 1280..65535",
  parse: (text, name, errors) =>
    text === "auto" ? "auto" : parseInteger(text, name, 1280, 65535, errors),
};

/**
 * Every client option, by the key its config file will use, in the order of
 * `--help` and the README. Errors are reported in this order.
 */
export const CLIENT_OPTIONS = {
  relay: single({
    flag: "relay",
    valueName: "URL",
    type: RELAY_URL,
    required: "e.g. --relay https://relay.example:4433",
    help: "the relay's URI template (RFC 9484 §3), e.g. `https://relay.example/vpn`; only " +
      `\`https://HOST[:PORT]\`: the default template \`${DEFAULT_URI_TEMPLATE}\` on that ` +
      "host, port 443 if not given",
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
  logLevel: LOG_LEVEL_OPTION,
  statusFile: single({
    flag: "status-file",
    valueName: "FILE",
    type: TEXT,
    help: "write the counters (packets, drops by reason and place) as JSON every 2 s; " +
      "needs `--allow-write=FILE` added to the command",
  }),
};

/** The environment variables the client reads; `main.ts` passes exactly these. */
export const CLIENT_ENV: readonly string[] = Object.freeze(envNames(CLIENT_OPTIONS));

/** `--help` text, from {@linkcode CLIENT_OPTIONS}. */
export const CLIENT_HELP: string = renderHelp(CLIENT_OPTIONS, {
  title: "masque-vpn client: tunnels IP traffic to a CONNECT-IP relay over HTTP/3.",
  usage: "Usage: deno task client --relay https://HOST[:PORT][/TEMPLATE] [options]",
  groups: [{ heading: "Options" }],
});

/** The config from values that all read without error. */
function buildClient(v: OptionValues<typeof CLIENT_OPTIONS>): ClientConfig {
  return Object.freeze({
    ...v.relay,
    serverName: v.serverName ?? v.relay.relayHost,
    caFile: v.ca,
    tunName: v.tun,
    mtu: v.mtu,
    routes: v.routes ?? Object.freeze([]),
    mode: v.mode,
    logLevel: v.logLevel,
    statusFile: v.statusFile,
    tunOffload: v.tunOffload === "on",
  });
}

/**
 * Parses the client's arguments and environment (the variables in
 * {@linkcode CLIENT_ENV}). Returns the config, the list of every error
 * found, `"help"` or `"version"`.
 */
export function parseClientConfig(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>> = {},
): ParseResult<ClientConfig> {
  return parseProgramOptions({ table: CLIENT_OPTIONS, build: buildClient }, args, env);
}
