/**
 * Parsers and statistics for the benchmark: iperf3 JSON, ping output,
 * `/proc/<pid>/stat` and `/proc/<pid>/status`, medians and percentiles.
 * Pure functions (no I/O), so they are tested without root.
 *
 * @module
 */

/** Throughput of one iperf3 TCP run, as seen by the receiving side. */
export interface TcpRun {
  /** Bits per second received. */
  readonly bitsPerSecond: number;
  /** Bytes received. */
  readonly bytes: number;
  /** Retransmitted segments counted by the sender (0 when iperf3 does not say). */
  readonly retransmits: number;
}

/** Outcome of one iperf3 UDP run at a fixed offered rate. */
export interface UdpRun {
  /** Bits per second the sender managed to send (can be below the rate asked for). */
  readonly sentBitsPerSecond: number;
  /** Bits per second that arrived. */
  readonly receivedBitsPerSecond: number;
  /**
   * Percent of the bytes sent that did not arrive. iperf3's own `lost_percent`
   * counts only gaps before the last datagram the receiver saw, so it misses
   * everything still queued (or dropped) behind an overloaded path when the
   * run ends; this takes the larger of the two.
   */
  readonly lostPercent: number;
  /** Datagrams sent. */
  readonly packets: number;
}

/** Round-trip times of a ping run. */
export interface PingRun {
  /** One entry per reply, milliseconds, in arrival order. */
  readonly rttsMs: readonly number[];
  /** Echo requests sent (from the summary line; the number of replies when it is missing). */
  readonly transmitted: number;
}

/** CPU time of a process, clock ticks (see `getconf CLK_TCK`). */
export interface CpuTicks {
  readonly user: number;
  readonly system: number;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function field(value: unknown, ...path: string[]): unknown {
  let current = value;
  for (const key of path) {
    if (!isRecord(current)) return undefined;
    current = current[key];
  }
  return current;
}

function numberAt(value: unknown, what: string, ...path: string[]): number {
  const found = field(value, ...path);
  if (typeof found !== "number" || !Number.isFinite(found)) {
    throw new Error(`Cannot parse iperf3 ${what} result: ${path.join(".")} is not a number`);
  }
  return found;
}

function parseIperfJson(text: string, what: string): unknown {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    const start = text.trim().slice(0, 80);
    throw new Error(`Cannot parse iperf3 ${what} result: not JSON (starts "${start}")`);
  }
  const error = field(json, "error");
  if (typeof error === "string") throw new Error(`iperf3 ${what} run failed: ${error}`);
  return json;
}

/**
 * Reads a TCP run from `iperf3 --json` client output: `end.sum_received`
 * (the receiver's count, correct with and without `-R`).
 */
export function parseIperfTcp(text: string): TcpRun {
  const json = parseIperfJson(text, "TCP");
  const retransmits = field(json, "end", "sum_sent", "retransmits");
  return {
    bitsPerSecond: numberAt(json, "TCP", "end", "sum_received", "bits_per_second"),
    bytes: numberAt(json, "TCP", "end", "sum_received", "bytes"),
    retransmits: typeof retransmits === "number" ? retransmits : 0,
  };
}

/**
 * Reads a UDP run from `iperf3 --json -u` client output: what was sent
 * (`end.sum_sent`, or `end.sum` in older versions) and what the receiver
 * counted (`end.sum_received`, or `end.sum`).
 */
export function parseIperfUdp(text: string): UdpRun {
  const json = parseIperfJson(text, "UDP");
  const sent = field(json, "end", "sum_sent") !== undefined ? "sum_sent" : "sum";
  const received = field(json, "end", "sum_received") !== undefined ? "sum_received" : "sum";
  const sentBytes = numberAt(json, "UDP", "end", sent, "bytes");
  const receivedBytes = numberAt(json, "UDP", "end", received, "bytes");
  const gapLoss = numberAt(json, "UDP", "end", received, "lost_percent");
  const byteLoss = sentBytes > 0 ? 100 * (1 - receivedBytes / sentBytes) : 0;
  return {
    sentBitsPerSecond: numberAt(json, "UDP", "end", sent, "bits_per_second"),
    receivedBitsPerSecond: numberAt(json, "UDP", "end", received, "bits_per_second"),
    lostPercent: Math.max(gapLoss, byteLoss, 0),
    packets: numberAt(json, "UDP", "end", sent, "packets"),
  };
}

const PING_REPLY = /^\d+ bytes from .*time[=<]([0-9.]+) ms/;
const PING_SUMMARY = /^(\d+) packets transmitted, (\d+) (?:packets )?received/;

/**
 * Reads iputils `ping` output: the time of every reply line
 * (`64 bytes from 198.18.1.2: icmp_seq=1 ttl=63 time=0.121 ms`) and the
 * number sent from the summary line.
 */
export function parsePing(text: string): PingRun {
  const rttsMs: number[] = [];
  let transmitted: number | undefined;
  for (const line of text.split("\n")) {
    const reply = PING_REPLY.exec(line);
    if (reply) {
      rttsMs.push(Number(reply[1]));
      continue;
    }
    const summary = PING_SUMMARY.exec(line);
    if (summary) transmitted = Number(summary[1]);
  }
  return { rttsMs, transmitted: transmitted ?? rttsMs.length };
}

/**
 * Reads utime and stime (fields 14 and 15, clock ticks) from the text of
 * `/proc/<pid>/stat`. The command name (field 2) may hold spaces and
 * parentheses, so fields are counted after its last `)`.
 */
export function parseProcStat(text: string): CpuTicks {
  const close = text.lastIndexOf(")");
  if (close < 0) throw new Error("Cannot parse /proc/<pid>/stat: no command name");
  // After ")": field 3 (state) is at index 0, so field n is at index n - 3.
  const fields = text.slice(close + 1).trim().split(/\s+/);
  const user = Number(fields[14 - 3]);
  const system = Number(fields[15 - 3]);
  if (!Number.isInteger(user) || !Number.isInteger(system)) {
    throw new Error("Cannot parse /proc/<pid>/stat: utime or stime is not an integer");
  }
  return { user, system };
}

/**
 * Reads one `kB` line of `/proc/<pid>/status` (e.g. `VmHWM`, the peak
 * resident set, or `VmRSS`) and returns it in bytes.
 */
export function parseProcStatusBytes(text: string, name: string): number {
  const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(text);
  if (!match) throw new Error(`Cannot parse /proc/<pid>/status: no ${name} line`);
  return Number(match[1]) * 1024;
}

/**
 * The `p`-th percentile (0 < p <= 100) by the nearest-rank method: the
 * smallest value with at least p% of the values at or below it. NaN for no
 * values.
 */
export function percentile(values: readonly number[], p: number): number {
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile ${p} is outside (0, 100]`);
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.ceil((p / 100) * sorted.length) - 1];
}

/** The median, averaging the two middle values of an even count; NaN values are left out. */
export function median(values: readonly number[]): number {
  const finite = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (finite.length === 0) return NaN;
  const mid = finite.length >> 1;
  return finite.length % 2 === 1 ? finite[mid] : (finite[mid - 1] + finite[mid]) / 2;
}

/**
 * Least-squares slope of `ys` over `xs` (same length, at least two distinct
 * x values); NaN otherwise.
 */
export function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = Math.min(xs.length, ys.length);
  if (n < 2) return NaN;
  let sx = 0, sy = 0;
  for (let i = 0; i < n; i++) {
    sx += xs[i];
    sy += ys[i];
  }
  const mx = sx / n, my = sy / n;
  let num = 0, den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

/**
 * Reads `RcvbufErrors` of the `Udp:` lines of `/proc/net/snmp` (datagrams
 * the kernel dropped because a socket's receive buffer was full; per
 * network namespace). The first `Udp:` line names the fields, the second
 * holds the values.
 */
export function parseUdpRcvbufErrors(text: string): number {
  const lines = text.split("\n").filter((l) => l.startsWith("Udp: "));
  if (lines.length < 2) throw new Error("Cannot parse /proc/net/snmp: no Udp lines");
  const names = lines[0].trim().split(/\s+/);
  const values = lines[1].trim().split(/\s+/);
  const index = names.indexOf("RcvbufErrors");
  const value = Number(values[index]);
  if (index < 1 || !Number.isInteger(value)) {
    throw new Error("Cannot parse /proc/net/snmp: no Udp RcvbufErrors value");
  }
  return value;
}

/**
 * Reads the drops of one link in one direction (`"rx"` or `"tx"`) from
 * `ip -s -j link show dev X` output.
 */
export function parseLinkDropped(text: string, direction: "rx" | "tx"): number {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error("Cannot parse ip -j link output: not JSON");
  }
  const dropped = Array.isArray(json) ? field(json[0], "stats64", direction, "dropped") : undefined;
  if (typeof dropped !== "number") {
    throw new Error(`Cannot parse ip -j link output: no stats64.${direction}.dropped`);
  }
  return dropped;
}

/**
 * Sums the second column (packets dropped because the CPU's input backlog,
 * `net.core.netdev_max_backlog`, was full) of `/proc/net/softnet_stat`, one
 * line of hexadecimal columns per CPU.
 */
export function parseSoftnetDropped(text: string): number {
  let dropped = 0;
  for (const line of text.split("\n")) {
    const columns = line.trim().split(/\s+/);
    if (columns.length < 2 || columns[0] === "") continue;
    const value = parseInt(columns[1], 16);
    if (!/^[0-9a-f]+$/i.test(columns[1])) {
      throw new Error(`Cannot parse /proc/net/softnet_stat: "${columns[1]}" is not hexadecimal`);
    }
    dropped += value;
  }
  return dropped;
}
