/**
 * The benchmark's results: their shape (also the JSON file's), the text
 * table with ratios to wireguard-go and to the direct path, and the SVG bar
 * chart (hand-written, no dependency). Pure functions.
 *
 * @module
 */
import type { PathName } from "./_paths.ts";

/** Median values over the repeats of one path. NaN where a measure failed. */
export interface PathSummary {
  readonly name: PathName;
  /** Column label: `name`, or for wireguard-go its build (`wireguard-go 0.0.20250522`). */
  readonly label: string;
  /** For wireguard-go: the binary as given on the command line and its version (when known). */
  readonly wireguardGo?: { readonly path: string; readonly version?: string };
  /**
   * False when the path could not run (a wireguard-go build that cannot be
   * started: `repeats` is 0), could not be set up, or did not answer a ping;
   * `error` says why.
   */
  readonly ok: boolean;
  readonly error?: string;
  /** MTU of the client's interface toward the target, bytes. */
  readonly mtu: number;
  readonly repeats: number;
  /** iperf3 TCP goodput, Mbit/s: one and four streams, client to target (up) and back (down, `-R`). */
  readonly tcpMbps: {
    readonly up1: number;
    readonly down1: number;
    readonly up4: number;
    readonly down4: number;
  };
  /** iperf3 UDP client to target, 1300-byte payloads, at each offered rate. */
  readonly udp: readonly {
    readonly offeredMbps: number;
    readonly sentMbps: number;
    readonly receivedMbps: number;
    readonly lossPercent: number;
  }[];
  /** Ping round-trip times, milliseconds, with nothing else running (idle) and during a one-stream TCP upload (loaded). */
  readonly pingIdle: PingSummary;
  readonly pingLoaded: PingSummary;
  /** CPU time (user + system) per GB carried in the TCP runs, seconds; null for the direct path. */
  readonly cpuSecondsPerGb: { readonly client: number | null; readonly relay: number | null };
  /** Peak resident set (VmHWM) at the end of the path's runs, MiB; null for the direct path. */
  readonly peakRssMiB: { readonly client: number | null; readonly relay: number | null };
  /** Memory over one long full-load run (datagram mode only). */
  readonly soak?: SoakSummary;
  /** Where the packets lost in the UDP runs at {@linkcode DROP_RATE_MBPS} went, summed over the repeats. */
  readonly udpDrops?: DropPlaces;
}

/** The offered rate whose losses are traced to a place. */
export const DROP_RATE_MBPS = 300;

/**
 * Packets lost in UDP runs and the counters that explain them. Kernel
 * counters are per namespace (any UDP socket there); process counters exist
 * for the project's tunnel only.
 */
export interface DropPlaces {
  /** Lost by iperf3's count (bytes sent minus received, in datagrams). */
  readonly lost: number;
  /** Client namespace: transmit drops of the tunnel interface (its queue was full). */
  readonly clientInterface: number;
  /** Client process: a full send queue. */
  readonly clientQueueFull: number | null;
  /**
   * Sent by the client process and never read by the relay process: lost
   * in QUIC (quinn drops incoming datagrams the application has not read
   * when its receive buffer is full) or on the wire.
   */
  readonly betweenProcesses: number | null;
  /** Relay namespace: UDP receive buffer full. */
  readonly relayUdpRcvbuf: number;
  /** Relay namespace: receive drops of its tunnel interface (null without one). */
  readonly relayInterface: number | null;
  /** Transmit drops of the relay's link to the target and receive drops at the target's end. */
  readonly targetLink: number;
  /** Relay process: TUN writes refused. */
  readonly relayTunWrite: number | null;
  /** Relay process: dropped by the RFC 9484 §7 checks. */
  readonly relayPolicy: number | null;
  /** Target namespace: UDP receive buffer full (iperf3's own socket). */
  readonly targetUdpRcvbuf: number;
  /** The kernel's per-CPU input backlog was full (`/proc/net/softnet_stat`; the whole host). */
  readonly kernelBacklog: number;
}

/** Resident set of one process sampled during a long TCP upload. */
export interface RssTrend {
  /** First sample after 10 s (or a third of a shorter run: past slow start and JIT warm-up), MiB. */
  readonly startMiB: number;
  readonly endMiB: number;
  readonly maxMiB: number;
  /** Least-squares slope over the samples after the first 10 s, MiB per minute. */
  readonly slopeMiBPerMin: number;
}

/** A long full-load run: one TCP stream up for `seconds`, RSS sampled every 2 s. */
export interface SoakSummary {
  readonly seconds: number;
  readonly tcpMbps: number;
  readonly client: RssTrend;
  readonly relay: RssTrend;
}

/** Round-trip time percentiles of one ping run, milliseconds, and the share of pings lost. */
export interface PingSummary {
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly lossPercent: number;
}

/** The scale measure: many sessions against one relay, no TUN on the client side. */
export interface ScaleSummary {
  readonly ok: boolean;
  readonly error?: string;
  readonly sessionsRequested: number;
  readonly sessionsOpened: number;
  /** Sessions the relay's status file listed while they were held open. */
  readonly sessionsAtRelay: number;
  readonly connections: number;
  readonly concurrency: number;
  /** Relay resident set before the sessions and with all of them open, MiB. */
  readonly relayRssBeforeMiB: number;
  readonly relayRssAfterMiB: number;
  /** (after - before) / sessions opened, KiB. */
  readonly perSessionKiB: number;
  /** From the extended CONNECT request to the ADDRESS_ASSIGN capsule, milliseconds. */
  readonly setupMsP50: number;
  readonly setupMsP99: number;
  /** QUIC handshake plus the relay's SETTINGS, milliseconds. */
  readonly connectMsP50: number;
  /** Wall time to open every connection and session, seconds. */
  readonly openSeconds: number;
  /** Relay CPU time spent opening them, seconds. */
  readonly relayCpuSeconds: number;
}

/**
 * The many-clients measure (datagram mode): one TCP stream per client,
 * first from one client alone, then from `clients` at once, each way.
 * CPU is in percent of one core over the run (200 = both cores of two).
 * The printed table adds the relay main thread's reach: throughput ÷ its
 * share of a core, what it would carry with a core to itself.
 */
export interface ClientsSummary {
  readonly ok: boolean;
  readonly error?: string;
  readonly clients: number;
  readonly seconds: number;
  readonly oneMbps: { readonly up: number; readonly down: number };
  readonly manyMbps: { readonly up: number; readonly down: number };
  /** Each client's share in the run with all of them, Mbit/s. */
  readonly perClientMbps: { readonly up: readonly number[]; readonly down: readonly number[] };
  /** The relay process, all threads. */
  readonly relayCpu: CpuPair;
  /** The relay's main thread (QUIC, TLS and the JS packet path). */
  readonly relayMainThreadCpu: CpuPair;
  /** All client processes together. */
  readonly clientsCpu: CpuPair;
  /** The whole machine (every process and the kernel), percent of all its cores. */
  readonly machineBusy: CpuPair;
}

/** CPU in percent of one core: with one client and with all, for the uploads and the downloads. */
export interface CpuPair {
  readonly up: { readonly one: number; readonly many: number };
  readonly down: { readonly one: number; readonly many: number };
}

/** Everything one run of the benchmark measured; written as JSON to bench-results/. */
export interface BenchReport {
  readonly startedAt: string;
  readonly seconds: number;
  readonly quick: boolean;
  readonly host: Readonly<Record<string, string>>;
  readonly settings: {
    readonly repeats: number;
    readonly baselineRepeats: number;
    readonly tcpSeconds: number;
    readonly udpSeconds: number;
    readonly udpRatesMbps: readonly number[];
    readonly udpPayloadBytes: number;
    /** iperf3 `-w` for the UDP runs. */
    readonly udpSocketBuffer: string;
    readonly pings: number;
    readonly pingIntervalMs: number;
    readonly sessions: number;
    readonly soakSeconds: number;
  };
  readonly paths: readonly PathSummary[];
  readonly scale?: ScaleSummary;
  readonly clients?: ClientsSummary;
}

interface Row {
  readonly label: string;
  readonly value: (p: PathSummary) => number | null;
  readonly digits: number;
  /** False where a ratio means nothing (loss percentages near 0). */
  readonly ratio?: boolean;
}

function udpRow(rate: number, label: string, pick: "lossPercent" | "receivedMbps"): Row {
  return {
    label,
    value: (p) => p.udp.find((u) => u.offeredMbps === rate)?.[pick] ?? NaN,
    digits: pick === "lossPercent" ? 2 : 0,
    ratio: pick !== "lossPercent",
  };
}

function rows(rates: readonly number[]): Row[] {
  return [
    { label: "TCP 1 stream up, Mbit/s", value: (p) => p.tcpMbps.up1, digits: 0 },
    { label: "TCP 1 stream down, Mbit/s", value: (p) => p.tcpMbps.down1, digits: 0 },
    { label: "TCP 4 streams up, Mbit/s", value: (p) => p.tcpMbps.up4, digits: 0 },
    { label: "TCP 4 streams down, Mbit/s", value: (p) => p.tcpMbps.down4, digits: 0 },
    ...rates.map((r) => udpRow(r, `UDP ${r} Mbit/s offered: loss %`, "lossPercent")),
    ...rates.map((r) => udpRow(r, `UDP ${r} Mbit/s offered: received Mbit/s`, "receivedMbps")),
    { label: "ping idle p50, ms", value: (p) => p.pingIdle.p50Ms, digits: 3 },
    { label: "ping idle p99, ms", value: (p) => p.pingIdle.p99Ms, digits: 3 },
    { label: "ping under TCP load p50, ms", value: (p) => p.pingLoaded.p50Ms, digits: 3 },
    { label: "ping under TCP load p99, ms", value: (p) => p.pingLoaded.p99Ms, digits: 3 },
    { label: "CPU s/GB client", value: (p) => p.cpuSecondsPerGb.client, digits: 2 },
    { label: "CPU s/GB relay", value: (p) => p.cpuSecondsPerGb.relay, digits: 2 },
    { label: "peak RSS client, MiB", value: (p) => p.peakRssMiB.client, digits: 1 },
    { label: "peak RSS relay, MiB", value: (p) => p.peakRssMiB.relay, digits: 1 },
  ];
}

function formatNumber(value: number | null, digits: number): string {
  if (value === null || Number.isNaN(value)) return "—";
  if (digits > 0 && Math.abs(value) >= 100) digits = Math.min(digits, 1);
  return value.toFixed(digits);
}

function formatRatio(value: number | null, reference: number | null): string {
  if (value === null || reference === null || Number.isNaN(value) || Number.isNaN(reference)) {
    return "—";
  }
  if (reference === 0) return value === 0 ? "1.00×" : "—";
  const ratio = value / reference;
  return `${ratio >= 10 ? ratio.toFixed(1) : ratio.toFixed(2)}×`;
}

const TUNNEL_MODES: readonly PathName[] = ["datagram", "stream"];

/**
 * The wireguard-go column that ratios are taken against: of those that
 * ran, the one with the most TCP one-stream throughput (upload plus
 * download); undefined when none ran.
 */
export function fastestWireguardGo(paths: readonly PathSummary[]): PathSummary | undefined {
  const speed = (p: PathSummary) => {
    const total = p.tcpMbps.up1 + p.tcpMbps.down1;
    return Number.isNaN(total) ? -1 : total;
  };
  let best: PathSummary | undefined;
  for (const p of paths) {
    if (p.name !== "wireguard-go" || !p.ok) continue;
    if (best === undefined || speed(p) > speed(best)) best = p;
  }
  return best;
}

/** A column's header: its label, marked when the path did not run or failed. */
function columnHeader(p: PathSummary): string {
  if (p.ok) return p.label;
  return `${p.label} (${p.repeats === 0 ? "not run" : "failed"})`;
}

/** `wireguard-go 0.0.20250522` → `wg 0.0.20250522` for ratio headers. */
function shortLabel(p: PathSummary): string {
  return p.name === "wireguard-go" ? p.label.replace(/^wireguard-go/, "wg") : p.label;
}

/**
 * A Markdown table: one row per measure, one column per path in the report
 * (a path that did not run or failed keeps its column, marked so, with
 * what it measured and `—` elsewhere), then the tunnel modes divided by the
 * fastest wireguard-go ({@linkcode fastestWireguardGo}) and by the direct
 * path (`—` where either side is missing or the reference is 0). Below the
 * table, one line per path that did not run or failed, with the reason.
 */
export function formatTable(report: BenchReport): string {
  const paths = report.paths;
  const ok = paths.filter((p) => p.ok);
  const references = [fastestWireguardGo(ok), ok.find((p) => p.name === "direct")]
    .filter((p) => p !== undefined);
  const ratios: { label: string; mode: PathSummary; reference: PathSummary }[] = [];
  for (const mode of TUNNEL_MODES) {
    const modePath = ok.find((p) => p.name === mode);
    if (!modePath) continue;
    for (const reference of references) {
      ratios.push({ label: `${mode} ÷ ${shortLabel(reference)}`, mode: modePath, reference });
    }
  }
  const header = ["measure (median)", ...paths.map(columnHeader), ...ratios.map((r) => r.label)];
  const body = rows(report.settings.udpRatesMbps).map((row) => [
    row.label,
    ...paths.map((p) => formatNumber(row.value(p), row.digits)),
    ...ratios.map((r) =>
      row.ratio === false ? "—" : formatRatio(row.value(r.mode), row.value(r.reference))
    ),
  ]);
  const notes = paths.filter((p) => !p.ok).map((p) =>
    `- ${p.label} ${p.repeats === 0 ? "did not run" : "failed"}: ${p.error ?? "unknown error"}`
  );
  return [markdownTable(header, body), ...(notes.length > 0 ? ["", ...notes] : [])].join("\n");
}

/** The soak run as a Markdown table, one row per process. */
export function formatSoakTable(soak: SoakSummary): string {
  const row = (name: string, t: RssTrend) => [
    name,
    formatNumber(t.startMiB, 1),
    formatNumber(t.endMiB, 1),
    formatNumber(t.maxMiB, 1),
    t.slopeMiBPerMin.toFixed(2),
  ];
  return markdownTable(
    [
      `RSS during ${soak.seconds} s of TCP at ${soak.tcpMbps.toFixed(0)} Mbit/s`,
      "settled, MiB",
      "end, MiB",
      "max, MiB",
      "slope, MiB/min",
    ],
    [row("client", soak.client), row("relay", soak.relay)],
  );
}

/** Where the UDP losses went, one column per path that has them. */
export function formatDropTable(report: BenchReport): string {
  const paths = report.paths.filter((p) => p.udpDrops);
  const n = (v: number | null) => v === null ? "—" : String(v);
  const rows: [string, (d: DropPlaces) => number | null][] = [
    ["lost (iperf3)", (d) => d.lost],
    ["client tunnel interface queue", (d) => d.clientInterface],
    ["client send queue full", (d) => d.clientQueueFull],
    ["between client and relay (QUIC)", (d) => d.betweenProcesses],
    ["relay UDP receive buffer", (d) => d.relayUdpRcvbuf],
    ["relay TUN write refused", (d) => d.relayTunWrite],
    ["relay tunnel interface input", (d) => d.relayInterface],
    ["relay policy", (d) => d.relayPolicy],
    ["relay to target link", (d) => d.targetLink],
    ["target UDP receive buffer", (d) => d.targetUdpRcvbuf],
    ["kernel input backlog (host)", (d) => d.kernelBacklog],
  ];
  return markdownTable(
    [`UDP ${DROP_RATE_MBPS} Mbit/s, packets (sum of repeats)`, ...paths.map((p) => p.label)],
    rows.map(([label, pick]) => [label, ...paths.map((p) => n(pick(p.udpDrops!)))]),
  );
}

/** The scale measure as a two-column Markdown table. */
export function formatScaleTable(scale: ScaleSummary): string {
  const body: string[][] = [
    ["sessions opened / requested", `${scale.sessionsOpened} / ${scale.sessionsRequested}`],
    ["sessions listed by the relay", String(scale.sessionsAtRelay)],
    [
      "QUIC connections (sessions each)",
      `${scale.connections} (${
        scale.connections > 0 ? Math.ceil(scale.sessionsRequested / scale.connections) : 0
      })`,
    ],
    ["setups in flight at once", String(scale.concurrency)],
    [
      "relay RSS before → with all sessions, MiB",
      `${formatNumber(scale.relayRssBeforeMiB, 1)} → ${formatNumber(scale.relayRssAfterMiB, 1)}`,
    ],
    ["relay memory per session, KiB", formatNumber(scale.perSessionKiB, 1)],
    ["session setup p50, ms", formatNumber(scale.setupMsP50, 2)],
    ["session setup p99, ms", formatNumber(scale.setupMsP99, 2)],
    ["connection setup p50, ms", formatNumber(scale.connectMsP50, 2)],
    ["time to open all, s", formatNumber(scale.openSeconds, 2)],
    ["relay CPU to open all, s", formatNumber(scale.relayCpuSeconds, 2)],
  ];
  if (!scale.ok) body.push(["error", scale.error ?? "unknown"]);
  return markdownTable(["scale measure", "value"], body);
}

/** The many-clients table: one client against all of them at once, each direction. */
export function formatClientsTable(c: ClientsSummary): string {
  const n = c.clients;
  const ratio = (many: number, one: number) =>
    one > 0 && Number.isFinite(many) ? `${(many / one).toFixed(2)}×` : "—";
  const cpu = (pair: { one: number; many: number }) =>
    `${formatNumber(pair.one, 0)} → ${formatNumber(pair.many, 0)}`;
  const cpuRow = (label: string, pair: CpuPair) => [label, cpu(pair.up), cpu(pair.down)];
  // What the relay's main thread would carry with a core to itself: the
  // throughput divided by the share of a core it took for it.
  const gbps = (mbps: number, percent: number) =>
    percent > 0 && Number.isFinite(mbps) ? formatNumber(mbps / percent / 10, 1) : "—";
  const reach = (oneMbps: number, one: number, manyMbps: number, many: number) =>
    `${gbps(oneMbps, one)} → ${gbps(manyMbps, many)}`;
  const body: string[][] = [
    ["one client, Mbit/s", formatNumber(c.oneMbps.up, 0), formatNumber(c.oneMbps.down, 0)],
    [
      `${n} clients at once, total Mbit/s`,
      formatNumber(c.manyMbps.up, 0),
      formatNumber(c.manyMbps.down, 0),
    ],
    [
      `${n} clients ÷ one`,
      ratio(c.manyMbps.up, c.oneMbps.up),
      ratio(c.manyMbps.down, c.oneMbps.down),
    ],
    [
      "each client, Mbit/s",
      c.perClientMbps.up.map((v) => formatNumber(v, 0)).join(" / "),
      c.perClientMbps.down.map((v) => formatNumber(v, 0)).join(" / "),
    ],
    cpuRow("relay CPU, % of a core (one → all)", c.relayCpu),
    cpuRow("relay main thread, % of a core", c.relayMainThreadCpu),
    [
      "relay main thread's reach, Gbit/s per core",
      reach(c.oneMbps.up, c.relayMainThreadCpu.up.one, c.manyMbps.up, c.relayMainThreadCpu.up.many),
      reach(
        c.oneMbps.down,
        c.relayMainThreadCpu.down.one,
        c.manyMbps.down,
        c.relayMainThreadCpu.down.many,
      ),
    ],
    cpuRow("clients' CPU, % of a core", c.clientsCpu),
    cpuRow("machine busy, % of all cores", c.machineBusy),
  ];
  if (!c.ok) body.push(["error", c.error ?? "unknown", ""]);
  return markdownTable(
    [`datagram mode, ${n} clients, one TCP stream each (${c.seconds} s)`, "up", "down"],
    body,
  );
}

function markdownTable(header: string[], body: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join(" | ")} |`;
  const rule = `|${
    widths.map((w, i) => i === 0 ? `-${"-".repeat(w)}-` : `-${"-".repeat(w)}:`).join("|")
  }|`;
  return [line(header), rule, ...body.map(line)].join("\n");
}

const COLORS: Readonly<Record<PathName, string>> = {
  "direct": "#9e9e9e",
  "wireguard-go": "#e67e22",
  "datagram": "#2e86de",
  "stream": "#27ae60",
  "h2": "#16a085",
  "webtransport": "#7f8c8d",
};
/** The second and later wireguard-go columns. */
const MORE_WIREGUARD_COLORS = ["#c0392b", "#8e44ad", "#b7950b", "#6e2c00"];

/** Bar colour of each column: by path, and one per wireguard-go build. */
function colorsOf(paths: readonly PathSummary[]): string[] {
  let wg = 0;
  return paths.map((p) => {
    if (p.name !== "wireguard-go") return COLORS[p.name];
    wg++;
    return wg === 1
      ? COLORS["wireguard-go"]
      : MORE_WIREGUARD_COLORS[(wg - 2) % MORE_WIREGUARD_COLORS.length];
  });
}

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function shortNumber(value: number): string {
  if (value >= 1000) return `${(value / 1000).toFixed(value >= 10_000 ? 0 : 1)}k`;
  if (value >= 10) return value.toFixed(0);
  if (value >= 1) return value.toFixed(1);
  return value.toFixed(value >= 0.1 ? 2 : 3);
}

interface Panel {
  readonly title: string;
  readonly unit: string;
  readonly groups: readonly { label: string; value: (p: PathSummary) => number }[];
}

/**
 * Renders a bar chart as SVG: TCP throughput (Mbit/s) and ping round-trip
 * times (ms), one bar per path in each group, logarithmic axes (the direct
 * path can be a hundred times the tunnel), the value above each bar.
 */
export function renderChart(report: BenchReport): string {
  const paths = report.paths.filter((p) => p.ok);
  const colors = colorsOf(paths);
  const panels: Panel[] = [
    {
      title: "TCP throughput (iperf3, median), Mbit/s — higher is better",
      unit: "Mbit/s",
      groups: [
        { label: "1 stream up", value: (p) => p.tcpMbps.up1 },
        { label: "1 stream down", value: (p) => p.tcpMbps.down1 },
        { label: "4 streams up", value: (p) => p.tcpMbps.up4 },
        { label: "4 streams down", value: (p) => p.tcpMbps.down4 },
      ],
    },
    {
      title: "Ping round-trip time (median of runs), ms — lower is better",
      unit: "ms",
      groups: [
        { label: "idle p50", value: (p) => p.pingIdle.p50Ms },
        { label: "idle p99", value: (p) => p.pingIdle.p99Ms },
        { label: "under load p50", value: (p) => p.pingLoaded.p50Ms },
        { label: "under load p99", value: (p) => p.pingLoaded.p99Ms },
      ],
    },
  ];
  const width = 860;
  const panelHeight = 300;
  const top = 70;
  const left = 70;
  const right = 20;
  const plotHeight = 200;
  const height = top + panels.length * panelHeight + 10;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${left}" y="24" font-size="16" font-weight="bold">` +
      `${
        escapeXml(
          `masque-vpn benchmark — ${report.startedAt.slice(0, 10)}` +
            (report.quick ? " (--quick)" : ""),
        )
      }</text>`,
  );
  // Legend
  let legendX = left;
  paths.forEach((p, i) => {
    out.push(
      `<rect x="${legendX}" y="38" width="14" height="14" fill="${colors[i]}"/>`,
      `<text x="${legendX + 20}" y="50">${escapeXml(p.label)}</text>`,
    );
    legendX += Math.max(110, 30 + 7 * p.label.length);
  });
  panels.forEach((panel, index) => {
    const y0 = top + index * panelHeight + 30;
    const values = paths.flatMap((p) => panel.groups.map((g) => g.value(p)))
      .filter((v) => Number.isFinite(v) && v > 0);
    const lo = Math.floor(Math.log10(values.length > 0 ? Math.min(...values) : 1));
    const hi = Math.ceil(Math.log10(values.length > 0 ? Math.max(...values) : 10));
    const decades = Math.max(1, hi - lo);
    const yOf = (v: number) => y0 + plotHeight - ((Math.log10(v) - lo) / decades) * plotHeight;
    out.push(
      `<text x="${left}" y="${y0 - 12}" font-weight="bold">${escapeXml(panel.title)}</text>`,
    );
    for (let d = lo; d <= lo + decades; d++) {
      const y = yOf(10 ** d);
      out.push(
        `<line x1="${left}" y1="${y}" x2="${width - right}" y2="${y}" stroke="#e0e0e0"/>`,
        `<text x="${left - 6}" y="${y + 4}" text-anchor="end">${
          escapeXml(shortNumber(10 ** d))
        }</text>`,
      );
    }
    out.push(
      `<line x1="${left}" y1="${y0 + plotHeight}" x2="${width - right}" ` +
        `y2="${y0 + plotHeight}" stroke="#333"/>`,
    );
    const groupWidth = (width - left - right) / panel.groups.length;
    const barWidth = Math.min(36, (groupWidth - 20) / Math.max(1, paths.length));
    panel.groups.forEach((group, g) => {
      const gx = left + g * groupWidth + (groupWidth - barWidth * paths.length) / 2;
      paths.forEach((p, i) => {
        const value = group.value(p);
        const x = gx + i * barWidth;
        if (!Number.isFinite(value) || value <= 0) {
          out.push(
            `<text x="${x + barWidth / 2}" y="${y0 + plotHeight - 4}" text-anchor="middle" ` +
              `font-size="10">n/a</text>`,
          );
          return;
        }
        const y = Math.min(yOf(value), y0 + plotHeight - 1);
        out.push(
          `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(barWidth - 3).toFixed(1)}" ` +
            `height="${(y0 + plotHeight - y).toFixed(1)}" fill="${colors[i]}">` +
            `<title>${
              escapeXml(`${p.label} ${group.label}: ${value} ${panel.unit}`)
            }</title></rect>`,
          `<text x="${(x + (barWidth - 3) / 2).toFixed(1)}" y="${(y - 3).toFixed(1)}" ` +
            `text-anchor="middle" font-size="10">${escapeXml(shortNumber(value))}</text>`,
        );
      });
      out.push(
        `<text x="${(left + g * groupWidth + groupWidth / 2).toFixed(1)}" ` +
          `y="${y0 + plotHeight + 18}" text-anchor="middle">${escapeXml(group.label)}</text>`,
      );
    });
  });
  out.push("</svg>", "");
  return out.join("\n");
}

/** Datagram mode's peak RSS target of issue 15, MiB per process. */
export const RSS_TARGET_MIB = 150;

/**
 * Issue 15's targets, each with datagram mode's value, the fastest
 * wireguard-go's ({@linkcode fastestWireguardGo}), the ratio or difference
 * the target is stated in, and whether it is met (`yes`, `no`, or `—` when a
 * value is missing): TCP one stream up and down at least 0.7× (aim 1.0×),
 * CPU s/GB of client plus relay at most 1.5×, ping p50 under TCP load and
 * idle ping p50 added over the direct path at most wireguard-go's, UDP at
 * 300 Mbit/s with 0% median loss, peak RSS at most
 * {@linkcode RSS_TARGET_MIB} per process, and N clients at once at least
 * 1.5× one client's aggregate TCP.
 */
export function formatTargetsTable(report: BenchReport): string {
  const ok = report.paths.filter((p) => p.ok);
  const mode = ok.find((p) => p.name === "datagram");
  const wg = fastestWireguardGo(ok);
  const direct = ok.find((p) => p.name === "direct");
  const finite = (...values: (number | null | undefined)[]) =>
    values.every((v) => typeof v === "number" && Number.isFinite(v));
  const verdict = (met: boolean | undefined) => met === undefined ? "—" : met ? "yes" : "no";
  const times = (a: number, b: number) => b > 0 ? `${(a / b).toFixed(2)}×` : "—";
  type Target = [string, string, string, string, boolean | undefined];
  const rows: Target[] = [];
  const ratioRow = (label: string, pick: (p: PathSummary) => number | null, atLeast: number) => {
    const v = mode ? pick(mode) : NaN;
    const w = wg ? pick(wg) : NaN;
    const usable = finite(v, w) && (w as number) > 0;
    rows.push([
      label,
      formatNumber(v, 0),
      formatNumber(w, 0),
      usable ? times(v as number, w as number) : "—",
      usable ? (v as number) / (w as number) >= atLeast : undefined,
    ]);
  };
  ratioRow("TCP 1 stream up, Mbit/s: at least 0.7× (aim 1.0×)", (p) => p.tcpMbps.up1, 0.7);
  ratioRow("TCP 1 stream down, Mbit/s: at least 0.7× (aim 1.0×)", (p) => p.tcpMbps.down1, 0.7);
  {
    const cpu = (p: PathSummary | undefined) =>
      p && finite(p.cpuSecondsPerGb.client, p.cpuSecondsPerGb.relay)
        ? p.cpuSecondsPerGb.client! + p.cpuSecondsPerGb.relay!
        : NaN;
    const v = cpu(mode);
    const w = cpu(wg);
    rows.push([
      "CPU s/GB, client + relay: at most 1.5× (aim 1.0×)",
      formatNumber(v, 2),
      formatNumber(w, 2),
      finite(v, w) ? times(v, w) : "—",
      finite(v, w) && w > 0 ? v / w <= 1.5 : undefined,
    ]);
  }
  {
    const v = mode?.pingLoaded.p50Ms ?? NaN;
    const w = wg?.pingLoaded.p50Ms ?? NaN;
    rows.push([
      "ping under TCP load p50, ms: at most wireguard-go's",
      formatNumber(v, 3),
      formatNumber(w, 3),
      finite(v, w) ? times(v, w) : "—",
      finite(v, w) ? v <= w : undefined,
    ]);
  }
  {
    const base = direct?.pingIdle.p50Ms ?? NaN;
    const v = (mode?.pingIdle.p50Ms ?? NaN) - base;
    const w = (wg?.pingIdle.p50Ms ?? NaN) - base;
    rows.push([
      "idle ping p50 added over direct, ms: at most wireguard-go's",
      formatNumber(v, 3),
      formatNumber(w, 3),
      finite(v, w) && w > 0 ? times(v, w) : "—",
      finite(v, w) ? v <= w : undefined,
    ]);
  }
  {
    const loss = (p: PathSummary | undefined) =>
      p?.udp.find((u) => u.offeredMbps === DROP_RATE_MBPS)?.lossPercent ?? NaN;
    const v = loss(mode);
    rows.push([
      `UDP ${DROP_RATE_MBPS} Mbit/s offered, median loss %: 0`,
      formatNumber(v, 2),
      formatNumber(loss(wg), 2),
      "—",
      finite(v) ? v === 0 : undefined,
    ]);
  }
  {
    const rss = (p: PathSummary | undefined) => p ? [p.peakRssMiB.client, p.peakRssMiB.relay] : [];
    const v = rss(mode);
    const both = (values: (number | null)[]) =>
      values.length === 2 ? values.map((x) => formatNumber(x, 1)).join(" / ") : "—";
    rows.push([
      `peak RSS client / relay, MiB: at most ${RSS_TARGET_MIB} each`,
      both(v),
      both(rss(wg)),
      "—",
      v.length === 2 && finite(...v) ? v.every((x) => x! <= RSS_TARGET_MIB) : undefined,
    ]);
  }
  {
    const c = report.clients;
    const up = c ? c.manyMbps.up / c.oneMbps.up : NaN;
    const down = c ? c.manyMbps.down / c.oneMbps.down : NaN;
    rows.push([
      `${c?.clients ?? "N"} clients at once ÷ one, TCP up / down: at least 1.5×`,
      c ? `${formatNumber(c.manyMbps.up, 0)} / ${formatNumber(c.manyMbps.down, 0)}` : "—",
      "—",
      finite(up, down) ? `${up.toFixed(2)}× / ${down.toFixed(2)}×` : "—",
      finite(up, down) ? up >= 1.5 && down >= 1.5 : undefined,
    ]);
  }
  return markdownTable(
    [
      "issue 15 target",
      "datagram",
      wg ? wg.label : "wireguard-go (none ran)",
      "datagram ÷ wg",
      "met?",
    ],
    rows.map(([label, v, w, r, met]) => [label, v, w, r, verdict(met)]),
  );
}
