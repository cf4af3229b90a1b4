/**
 * The benchmark's command line: `--help` text and the parser that turns
 * the arguments into {@linkcode Settings}. Pure; bench.ts passes
 * `Deno.args` in.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { PATH_NAMES } from "./_paths.ts";
import type { PathName } from "./_paths.ts";

/** The `--help` text. */
export const HELP = `deno task bench [options]    (needs root; see docs/performance.md)

  --quick                one repeat, 3 s TCP runs, 1 s UDP runs, 200 sessions
  --repeats N            repeats of the tunnel paths (default 3; --quick 1)
  --baseline-repeats N   repeats of direct and wireguard-go (default 1)
  --tcp-seconds S        length of each iperf3 TCP run (default 10; --quick 3)
  --udp-seconds S        length of each iperf3 UDP run (default 2; --quick 1)
  --sessions N           sessions in the scale measure (default 1000; --quick 200)
  --soak-seconds S       datagram mode: one TCP upload this long with client and
                         relay RSS sampled every 2 s (default 60; --quick 12; 0 skips)
  --paths LIST           comma-separated subset of ${PATH_NAMES.join(",")}
  --wireguard-go PATH    a wireguard-go binary to compare with, one column each;
                         repeat it for several builds (default: wireguard-go from
                         PATH). Ratios are against the fastest of them, e.g.
                         --wireguard-go /usr/bin/wireguard-go
                         --wireguard-go ../shared/bin/wireguard-go-0.0.20250522
  --clients N            datagram mode: also N clients at once, one TCP stream
                         each, against one client (default 4; 0 skips; at most 8)
  --tun-offload on|off   passed to the project's client and relay (default on)
  --no-scale             skip the scale measure
  --chart FILE           also write the chart here (default docs/bench-chart.svg
                         for a full run of every path; none for --quick or --paths)
  -h, --help             this text
`;

/** Most clients of the many-clients measure (each routes its own prefix length to the target). */
export const MAX_CLIENTS = 8;

/** What one run of the benchmark measures. */
export interface Settings {
  readonly quick: boolean;
  /** Repeats of the tunnel paths (datagram, stream, h2, webtransport). */
  readonly repeats: number;
  /** Repeats of the reference paths (direct, each wireguard-go). */
  readonly baselineRepeats: number;
  readonly tcpSeconds: number;
  readonly udpSeconds: number;
  readonly sessions: number;
  readonly soakSeconds: number;
  /** In the measuring order of {@linkcode PATH_NAMES}. */
  readonly paths: readonly PathName[];
  /** `--wireguard-go` arguments in the order given, duplicates kept; `["wireguard-go"]` by default. */
  readonly wireguardGo: readonly string[];
  readonly scale: boolean;
  readonly chart: string | undefined;
  /** Clients at once in the many-clients measure (datagram mode); 0: not measured. */
  readonly clients: number;
  /** `--tun-offload` for the project's client and relay. */
  readonly tunOffload: "on" | "off";
}

/**
 * Parses the benchmark's arguments; `"help"` for `-h`/`--help`. Throws an
 * `Error` naming the option on a bad value or an unknown option.
 *
 * @param root the repository root, ending in `/` (for the default chart file)
 */
export function parseSettings(args: readonly string[], root: string): Settings | "help" {
  const { values } = parseArgs({
    args: [...args],
    strict: true,
    options: {
      quick: { type: "boolean" },
      repeats: { type: "string" },
      "baseline-repeats": { type: "string" },
      "tcp-seconds": { type: "string" },
      "udp-seconds": { type: "string" },
      sessions: { type: "string" },
      "soak-seconds": { type: "string" },
      paths: { type: "string" },
      "wireguard-go": { type: "string", multiple: true },
      "no-scale": { type: "boolean" },
      clients: { type: "string" },
      "tun-offload": { type: "string" },
      chart: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return "help";
  const quick = values.quick ?? false;
  const int = (text: string | undefined, fallback: number, name: string, min: number) => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}`);
    return n;
  };
  const paths = (values.paths?.split(",") ?? [...PATH_NAMES]).map((p) => p.trim());
  for (const p of paths) {
    if (!(PATH_NAMES as readonly string[]).includes(p)) {
      throw new Error(`--paths: unknown path "${p}" (known: ${PATH_NAMES.join(", ")})`);
    }
  }
  const wireguardGo = values["wireguard-go"] ?? ["wireguard-go"];
  const tunOffload = values["tun-offload"] ?? "on";
  if (tunOffload !== "on" && tunOffload !== "off") {
    throw new Error(`--tun-offload must be on or off, not "${tunOffload}"`);
  }
  const clients = int(values.clients, 4, "clients", 0);
  if (clients > MAX_CLIENTS) throw new Error(`--clients must be at most ${MAX_CLIENTS}`);
  if (wireguardGo.some((p) => p.trim() === "")) throw new Error("--wireguard-go: empty path");
  return {
    quick,
    repeats: int(values.repeats, quick ? 1 : 3, "repeats", 1),
    baselineRepeats: int(values["baseline-repeats"], 1, "baseline-repeats", 1),
    tcpSeconds: int(values["tcp-seconds"], quick ? 3 : 10, "tcp-seconds", 1),
    udpSeconds: int(values["udp-seconds"], quick ? 1 : 2, "udp-seconds", 1),
    sessions: int(values.sessions, quick ? 200 : 1000, "sessions", 1),
    soakSeconds: int(values["soak-seconds"], quick ? 12 : 60, "soak-seconds", 0),
    // Keep the measuring order of PATH_NAMES.
    paths: PATH_NAMES.filter((p) => paths.includes(p)),
    wireguardGo,
    scale: !values["no-scale"],
    // Only a full run of every path replaces the committed chart.
    chart: values.chart ??
      (quick || !PATH_NAMES.every((p) => paths.includes(p))
        ? undefined
        : `${root}docs/bench-chart.svg`),
    clients,
    tunOffload,
  };
}
