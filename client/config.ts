/**
 * The client's configuration: flags over environment over defaults, parsed
 * by a pure function into a frozen, typed config or a list of clear errors.
 *
 * @module
 */

import { errorMessage } from "../shared/errors.ts";
import { parseArgs } from "node:util";
import type { LogLevel } from "../shared/log.ts";
import { parseLogLevel } from "../shared/log.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import {
  DEFAULT_URI_TEMPLATE,
  parseConnectIpTemplate,
} from "../shared/masque/connect_ip_request.ts";
import type { PacketMode } from "../shared/masque/connect_ip_session.ts";
import { parseCidr, parseInteger } from "../shared/cli.ts";
import type { ParseResult } from "../shared/cli.ts";

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

/** `--help` text; every option is listed here and in docs/. */
export const CLIENT_HELP = `masque-vpn client: tunnels IP traffic to a CONNECT-IP relay over HTTP/3.

Usage: deno task client --relay https://HOST[:PORT][/TEMPLATE] [options]

Options:
  --relay URL          the relay's URI template (RFC 9484 §3), e.g.
                       https://relay.example/vpn (no variables: any target),
                       https://relay.example/masque{?target,ipproto};
                       only HOST[:PORT]: default path ${DEFAULT_URI_TEMPLATE}
                       (default port 443)
  --ca FILE            trust this CA (PEM) in addition to the system roots
  --server-name NAME   name to check in the relay's certificate (default: URL host)
  --route CIDR         send this network through the tunnel (repeatable);
                       default: environment TARGET_CIDRS (comma-separated),
                       else every route the relay advertises
  --tun NAME           TUN device name (default mvpn0)
  --mtu N|auto         TUN MTU in bytes (default auto: what the QUIC path
                       carries, about 1412 on a 1500-byte path; 1280 minimum)
  --mode MODE          datagram (default: IP packets in HTTP Datagrams) or
                       stream (IP packets in DATAGRAM capsules: reliable, ordered)
  --tun-offload on|off TUN segmentation offloads: the kernel hands over and
                       takes 64 KB TCP super-packets, split and merged in the
                       TUN workers (default on; off for a kernel that misbehaves)
  --log-level LEVEL    debug, info, warn or error (default info;
                       environment MASQUE_LOG_LEVEL)
  --status-file FILE   write the counters (packets, drops by reason and place)
                       as JSON every 2 s; run with --allow-write=FILE
  -h, --help           show this help
`;

/**
 * Reads `--relay`, the relay's URI template (RFC 9484 §3): an absolute
 * `https://` template whose authority gives the host and port to dial and
 * the `:authority` to send, normalized as RFC 9110 §4.2.3 asks (host in
 * lowercase, no `:443`). Without a path, or with only `/`, it is the default
 * template `https://HOST:PORT/.well-known/masque/ip/{target}/{ipproto}/`.
 * Returns an error message otherwise.
 */
function parseRelayUrl(
  text: string,
): { relayHost: string; relayPort: number; authority: string; template: string } | string {
  const separator = text.indexOf("://");
  if (separator <= 0) return `--relay must be a URL like https://relay.example:4433, not "${text}"`;
  const scheme = text.slice(0, separator).toLowerCase();
  if (scheme !== "https") return `--relay must be an https URL, not "${scheme}:"`;
  let end = separator + 3;
  while (end < text.length && !"/?#".includes(text[end])) end++;
  const rest = text.slice(end);
  const template = rest === "" || rest === "/" ? text.slice(0, end) + DEFAULT_URI_TEMPLATE : text;
  try {
    parseConnectIpTemplate(template);
  } catch (error) {
    return `--relay: ${errorMessage(error)}`;
  }
  const written = text.slice(separator + 3, end);
  if (written.includes("@")) return `--relay must not carry user information, not "${written}"`;
  let url: URL;
  try {
    url = new URL(`https://${written}/`);
  } catch {
    return `--relay has an invalid host or port: "${written}"`;
  }
  return {
    relayHost: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    relayPort: url.port ? Number(url.port) : 443,
    authority: url.host,
    template,
  };
}

/**
 * Parses the client's arguments and environment (`TARGET_CIDRS`,
 * `MASQUE_LOG_LEVEL`).
 */
export function parseClientConfig(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>> = {},
): ParseResult<ClientConfig> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...args],
      strict: true,
      allowPositionals: false,
      options: {
        relay: { type: "string" },
        ca: { type: "string" },
        "server-name": { type: "string" },
        route: { type: "string", multiple: true },
        tun: { type: "string" },
        mtu: { type: "string" },
        mode: { type: "string" },
        "tun-offload": { type: "string" },
        "log-level": { type: "string" },
        "status-file": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    return { ok: false, errors: [errorMessage(error)] };
  }
  if (values.help) return { ok: "help" };
  const errors: string[] = [];
  let relayHost = "";
  let relayPort = 443;
  let template = "";
  let authority = "";
  if (values.relay === undefined) {
    errors.push("--relay URL is required, e.g. --relay https://relay.example:4433");
  } else {
    const relay = parseRelayUrl(values.relay);
    if (typeof relay === "string") errors.push(relay);
    else ({ relayHost, relayPort, authority, template } = relay);
  }
  const mtu = (values.mtu ?? "auto") === "auto"
    ? "auto"
    : parseInteger(values.mtu!, "--mtu", 1280, 65535, errors);
  const routeTexts = values.route ??
    (env.TARGET_CIDRS ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
  const routes = routeTexts.map((r) =>
    parseCidr(r, values.route ? "--route" : "TARGET_CIDRS", errors)
  );
  const mode = values.mode ?? "datagram";
  if (mode !== "datagram" && mode !== "stream") {
    errors.push(`--mode must be datagram or stream, not "${mode}"`);
  }
  const tunOffload = values["tun-offload"] ?? "on";
  if (tunOffload !== "on" && tunOffload !== "off") {
    errors.push(`--tun-offload must be on or off, not "${tunOffload}"`);
  }
  const logText = values["log-level"] ?? env.MASQUE_LOG_LEVEL ?? "info";
  const logLevel = parseLogLevel(logText);
  if (!logLevel) errors.push(`--log-level must be debug, info, warn or error, not "${logText}"`);
  const tunName = values.tun ?? "mvpn0";
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(tunName)) {
    errors.push(`--tun must be 1-15 letters, digits, '-', '_' or '.', not "${tunName}"`);
  }
  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    config: Object.freeze({
      relayHost,
      relayPort,
      authority,
      template,
      serverName: values["server-name"] ?? relayHost,
      caFile: values.ca,
      tunName,
      mtu: mtu! as number | "auto",
      routes: Object.freeze(routes as IpPrefix[]),
      mode: mode as PacketMode,
      logLevel: logLevel!,
      statusFile: values["status-file"],
      tunOffload: tunOffload === "on",
    }),
  };
}
