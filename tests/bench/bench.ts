/**
 * `deno task bench` (as root): measures the VPN against the direct routed
 * path and wireguard-go on this machine, in network namespaces, in one run.
 *
 * ```
 * sudo deno task bench          # full run, 10-12 minutes
 * sudo deno task bench:quick    # one repeat, 3 s runs, 200 sessions; about 3 minutes
 * deno run ... tests/bench/bench.ts --help
 * ```
 *
 * For each path (direct, each wireguard-go build given with
 * `--wireguard-go PATH` (default: the one in PATH), the tunnel in datagram
 * mode and in stream mode), in a fresh client <-> relay <-> target
 * topology of its own: a ping check, then per repeat an idle ping run, iperf3
 * TCP with one and four streams in both directions (a ping run alongside the
 * one-stream upload), and iperf3 UDP at fixed offered rates; CPU time per GB
 * and peak memory of the client and relay processes. Then the scale
 * measure: many sessions from a load generator (no TUN) against one relay,
 * relay memory per session and setup time percentiles.
 *
 * Prints a Markdown table of medians with ratios to the fastest wireguard-go
 * build and to the direct path (a build that cannot run keeps its column,
 * which says why), writes `bench-results/<timestamp>.json` and `.svg`, and for a
 * full run `docs/bench-chart.svg`. Everything it creates is removed at the
 * end, on failure and on Ctrl-C. docs/performance.md describes the method.
 *
 * @module
 */
import { errorMessage } from "../../shared/errors.ts";
import { createTopology, haveCommand, isRoot } from "../support/netns.ts";
import type { Process, Topology } from "../support/netns.ts";
import { startRelay } from "../support/vpn.ts";
import {
  median,
  parseIperfTcp,
  parseIperfUdp,
  parseLinkDropped,
  parsePing,
  parseProcStat,
  parseProcStatusBytes,
  parseSoftnetDropped,
  parseUdpRcvbufErrors,
  percentile,
  slope,
} from "./_measure.ts";
import type { CpuTicks } from "./_measure.ts";
import { isTunnelPath, setupPath } from "./_paths.ts";
import type { MeasuredProcess, PathSetup } from "./_paths.ts";
import { HELP, parseSettings } from "./_settings.ts";
import type { Settings } from "./_settings.ts";
import { describeWireguardGoBuilds, planPaths } from "./_wireguard_go.ts";
import type { PathPlan, WireguardGoBuild, WireguardGoProbe } from "./_wireguard_go.ts";
import {
  DROP_RATE_MBPS,
  formatClientsTable,
  formatDropTable,
  formatScaleTable,
  formatSoakTable,
  formatTable,
  formatTargetsTable,
  renderChart,
} from "./_report.ts";
import type {
  BenchReport,
  ClientsSummary,
  DropPlaces,
  PathSummary,
  PingSummary,
  RssTrend,
  ScaleSummary,
  SoakSummary,
} from "./_report.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);
const SCALE_CLIENT = decodeURIComponent(new URL("./_scale_client.ts", import.meta.url).pathname);
const RESULTS_DIR = `${ROOT}bench-results`;

const IPERF_PORT = 5201;
const UDP_RATES_MBPS = [100, 300, 1000] as const;
const UDP_PAYLOAD_BYTES = 1300;
/**
 * iperf3's socket buffers for the UDP runs (`-w`, applied on both ends). With
 * the kernel's default 208 KiB the receiving iperf3, starved of CPU on a
 * 2-core machine shared with the tunnel's processes, drops bursts in its own
 * socket (UdpRcvbufErrors in the target namespace), which measures iperf3,
 * not the path. Same for every path.
 */
const UDP_SOCKET_BUFFER = "4M";
const PINGS = 200;
const PING_INTERVAL_MS = 10;
/** The loaded ping run starts this long after the TCP upload, past its slow start. */
const LOADED_PING_DELAY_MS = 500;
const WARMUP_SECONDS = 1;
/** Added to an iperf3 run's length for its own time limit. */
const IPERF_SLACK_MS = 15_000;
const PING_CHECK_ATTEMPTS = 10;
/** The scale measure's pool: 32766 addresses, more than any session count we ask for. */
const SCALE_POOL4 = "198.18.128.0/17";
const SCALE_PER_CONNECTION = 50;
const SCALE_CONCURRENCY = 16;
/**
 * The many-clients measure: every client routes the target's address
 * through its own TUN with a prefix of its own (a route exists once per
 * prefix in the shared client namespace); iperf3 picks the tunnel with
 * `--bind-dev`. The first client is the path's own (198.18.1.0/24).
 */
const EXTRA_CLIENT_TARGETS = [
  "198.18.1.2/32",
  "198.18.1.2/31",
  "198.18.1.0/30",
  "198.18.1.0/29",
  "198.18.1.0/28",
  "198.18.1.0/27",
  "198.18.1.0/26",
];
const CLIENTS_BASE_PORT = 5301;
/** The relay writes its status file every 2 s. */
const STATUS_SETTLE_MS = 2_500;
const FULL_DEADLINE_MS = 10 * 60_000;
const QUICK_DEADLINE_MS = 2 * 60_000;
const MIB = 1024 * 1024;
const REQUIRED_COMMANDS: Record<string, string> = {
  ip: "iproute2",
  iperf3: "iperf3",
  nft: "nftables",
  ping: "iputils-ping",
  sysctl: "procps",
};

const startedAt = Date.now();

function log(message: string): void {
  const seconds = ((Date.now() - startedAt) / 1000).toFixed(1).padStart(6);
  console.error(`[${seconds}s] ${message}`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// Process accounting

let clockTicks = 100;

async function readClockTicks(): Promise<number> {
  const out = await new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).output()
    .catch(() => undefined);
  const n = out ? Number(new TextDecoder().decode(out.stdout).trim()) : NaN;
  return Number.isInteger(n) && n > 0 ? n : 100;
}

/**
 * Reads a file under /proc through `cat`: Deno asks for --allow-all to read
 * /proc/<pid>/, and --allow-run is needed anyway. Undefined when unreadable.
 */
async function readProc(path: string): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("cat", { args: [path], stdout: "piped", stderr: "null" })
      .output();
    return out.success ? new TextDecoder().decode(out.stdout) : undefined;
  } catch {
    return undefined;
  }
}

async function readCpu(pid: number): Promise<CpuTicks | undefined> {
  const text = await readProc(`/proc/${pid}/stat`);
  try {
    return text === undefined ? undefined : parseProcStat(text);
  } catch {
    return undefined;
  }
}

/** CPU ticks of thread `tid` of process `pid` (the main thread has tid = pid). */
async function readThreadCpu(pid: number, tid: number): Promise<CpuTicks | undefined> {
  const text = await readProc(`/proc/${pid}/task/${tid}/stat`);
  try {
    return text === undefined ? undefined : parseProcStat(text);
  } catch {
    return undefined;
  }
}

async function readStatusBytes(pid: number, name: "VmHWM" | "VmRSS"): Promise<number> {
  const text = await readProc(`/proc/${pid}/status`);
  try {
    return text === undefined ? NaN : parseProcStatusBytes(text, name);
  } catch {
    return NaN;
  }
}

/** CPU seconds and bytes carried, accumulated over the TCP runs of one path. */
class CpuAccount {
  readonly seconds = new Map<"client" | "relay", number>();
  bytes = 0;
  readonly #processes: readonly MeasuredProcess[];

  constructor(processes: readonly MeasuredProcess[]) {
    this.#processes = processes;
  }

  /** Samples now; the returned function adds the CPU used since, and `bytes`. */
  async start(): Promise<(bytes: number) => Promise<void>> {
    const before = await Promise.all(this.#processes.map((p) => readCpu(p.pid)));
    return async (bytes: number) => {
      const after = await Promise.all(this.#processes.map((p) => readCpu(p.pid)));
      this.#processes.forEach((p, i) => {
        const a = before[i];
        const b = after[i];
        if (!a || !b) return;
        const used = (b.user + b.system - a.user - a.system) / clockTicks;
        this.seconds.set(p.role, (this.seconds.get(p.role) ?? 0) + used);
      });
      this.bytes += bytes;
    };
  }

  perGb(role: "client" | "relay"): number | null {
    const seconds = this.seconds.get(role);
    if (seconds === undefined || this.bytes === 0) return null;
    return seconds / (this.bytes / 1e9);
  }
}

// ---------------------------------------------------------------------------
// Traffic

class Iperf {
  readonly #topo: Topology;
  #server: Process | undefined;

  constructor(topo: Topology) {
    this.#topo = topo;
  }

  async start(): Promise<void> {
    this.#server?.kill("SIGKILL");
    this.#server = this.#topo.spawn("target", [
      ...["iperf3", "-s", "-p", String(IPERF_PORT), "--forceflush"],
    ], {
      name: "iperf3-server",
    });
    await this.#server.waitForLog(/Server listening/, 5_000);
  }

  /** One client run; returns its JSON output. Restarts the server after a failure. */
  async run(args: string[], seconds: number): Promise<string> {
    const target = this.#topo.target4;
    try {
      const { stdout } = await this.#topo.run("client", [
        ...["iperf3", "-c", target, "-p", String(IPERF_PORT), "-J", "--connect-timeout", "3000"],
        ...["-t", String(seconds), ...args],
      ], { check: false, timeoutMs: seconds * 1000 + IPERF_SLACK_MS });
      if (/"error"\s*:/.test(stdout) || stdout.trim() === "") await this.start();
      return stdout;
    } catch (error) {
      await this.start();
      throw error;
    }
  }

  async tcp(args: string[], seconds: number): Promise<{ mbps: number; bytes: number }> {
    try {
      const run = parseIperfTcp(await this.run(args, seconds));
      return { mbps: run.bitsPerSecond / 1e6, bytes: run.bytes };
    } catch (error) {
      log(`  iperf3 TCP ${args.join(" ")} failed: ${errorMessage(error)}`);
      return { mbps: NaN, bytes: 0 };
    }
  }
}

async function ping(topo: Topology, count: number): Promise<PingSummary> {
  const seconds = Math.ceil((count * PING_INTERVAL_MS) / 1000) + 3;
  try {
    const { stdout } = await topo.run("client", [
      ...["ping", "-n", "-c", String(count), "-i", String(PING_INTERVAL_MS / 1000)],
      ...["-W", "1", "-w", String(seconds), topo.target4],
    ], { check: false, timeoutMs: (seconds + 5) * 1000 });
    const run = parsePing(stdout);
    return {
      p50Ms: percentile(run.rttsMs, 50),
      p99Ms: percentile(run.rttsMs, 99),
      lossPercent: run.transmitted > 0
        ? (100 * (run.transmitted - run.rttsMs.length)) / run.transmitted
        : 100,
    };
  } catch (error) {
    log(`  ping failed: ${errorMessage(error)}`);
    return { p50Ms: NaN, p99Ms: NaN, lossPercent: NaN };
  }
}

async function checkPing(topo: Topology): Promise<void> {
  for (let attempt = 1; attempt <= PING_CHECK_ATTEMPTS; attempt++) {
    const { code } = await topo.run("client", ["ping", "-n", "-c", "1", "-W", "1", topo.target4], {
      check: false,
    });
    if (code === 0) return;
  }
  throw new Error(`no ping reply from ${topo.target4} after ${PING_CHECK_ATTEMPTS} attempts`);
}

// ---------------------------------------------------------------------------
// One path

interface RepeatResult {
  tcp: { up1: number; down1: number; up4: number; down4: number };
  udp: { offeredMbps: number; sentMbps: number; receivedMbps: number; lossPercent: number }[];
  pingIdle: PingSummary;
  pingLoaded: PingSummary;
  udpDrops?: DropPlaces;
}

/** The counters behind {@linkcode DropPlaces}, as read at one moment. */
interface DropCounters extends Omit<DropPlaces, "lost" | "betweenProcesses"> {
  readonly clientPacketsOut: number | null;
  readonly relayPacketsIn: number | null;
}

async function readDropCounters(topo: Topology, setup: PathSetup): Promise<DropCounters> {
  const text = async (ns: "client" | "relay" | "target", cmd: string[]) =>
    (await topo.run(ns, cmd, { check: false })).stdout;
  const link = (ns: "client" | "relay" | "target", name: string) =>
    text(ns, ["ip", "-s", "-j", "link", "show", "dev", name]);
  const relayIf = setup.relayInterface;
  const [client, relayIn, relayOut, targetIn, relaySnmp, targetSnmp, softnet, processDrops] =
    await Promise.all([
      link("client", setup.clientInterface),
      relayIf ? link("relay", relayIf) : Promise.resolve(undefined),
      link("relay", topo.interfaces.relayToTarget),
      link("target", topo.interfaces.target),
      text("relay", ["cat", "/proc/net/snmp"]),
      text("target", ["cat", "/proc/net/snmp"]),
      text("relay", ["cat", "/proc/net/softnet_stat"]),
      setup.processDrops?.().catch(() => undefined),
    ]);
  return {
    clientInterface: parseLinkDropped(client, "tx"),
    relayInterface: relayIn === undefined ? null : parseLinkDropped(relayIn, "rx"),
    targetLink: parseLinkDropped(relayOut, "tx") + parseLinkDropped(targetIn, "rx"),
    clientQueueFull: processDrops?.clientQueueFull ?? null,
    relayUdpRcvbuf: parseUdpRcvbufErrors(relaySnmp),
    relayTunWrite: processDrops?.relayTunWrite ?? null,
    relayPolicy: processDrops?.relayPolicy ?? null,
    targetUdpRcvbuf: parseUdpRcvbufErrors(targetSnmp),
    kernelBacklog: parseSoftnetDropped(softnet),
    clientPacketsOut: processDrops?.clientPacketsOut ?? null,
    relayPacketsIn: processDrops?.relayPacketsIn ?? null,
  };
}

function dropDelta(before: DropCounters, after: DropCounters, lost: number): DropPlaces {
  const d = (a: number | null, b: number | null) => a === null || b === null ? null : b - a;
  return {
    lost,
    clientInterface: after.clientInterface - before.clientInterface,
    clientQueueFull: d(before.clientQueueFull, after.clientQueueFull),
    relayUdpRcvbuf: after.relayUdpRcvbuf - before.relayUdpRcvbuf,
    relayInterface: d(before.relayInterface, after.relayInterface),
    targetLink: after.targetLink - before.targetLink,
    relayTunWrite: d(before.relayTunWrite, after.relayTunWrite),
    relayPolicy: d(before.relayPolicy, after.relayPolicy),
    targetUdpRcvbuf: after.targetUdpRcvbuf - before.targetUdpRcvbuf,
    kernelBacklog: after.kernelBacklog - before.kernelBacklog,
    betweenProcesses: before.clientPacketsOut === null || after.clientPacketsOut === null ||
        before.relayPacketsIn === null || after.relayPacketsIn === null ||
        before.clientQueueFull === null || after.clientQueueFull === null
      ? null
      : (after.clientPacketsOut - before.clientPacketsOut) -
        (after.clientQueueFull - before.clientQueueFull) -
        (after.relayPacketsIn - before.relayPacketsIn),
  };
}

async function measureRepeat(
  topo: Topology,
  setup: PathSetup,
  iperf: Iperf,
  cpu: CpuAccount,
  settings: Settings,
): Promise<RepeatResult> {
  const pingIdle = await ping(topo, PINGS);

  const tcp = async (args: string[]) => {
    const done = await cpu.start();
    const result = await iperf.tcp(args, settings.tcpSeconds);
    await done(result.bytes);
    return result.mbps;
  };
  const loaded = (async () => {
    await sleep(LOADED_PING_DELAY_MS);
    return await ping(topo, PINGS);
  })();
  const up1 = await tcp([]);
  const pingLoaded = await loaded;
  const down1 = await tcp(["-R"]);
  const up4 = await tcp(["-P", "4"]);
  const down4 = await tcp(["-P", "4", "-R"]);

  const udp: RepeatResult["udp"] = [];
  let udpDrops: DropPlaces | undefined;
  for (const rate of UDP_RATES_MBPS) {
    try {
      // The processes' status files are rewritten every 2 s: wait for one
      // that holds everything before the run, and one after it.
      const traced = rate === DROP_RATE_MBPS;
      if (traced && setup.processDrops) await sleep(STATUS_SETTLE_MS);
      const before = traced ? await readDropCounters(topo, setup) : undefined;
      const run = parseIperfUdp(
        await iperf.run(
          ["-u", "-b", `${rate}M`, "-l", String(UDP_PAYLOAD_BYTES), "-w", UDP_SOCKET_BUFFER],
          settings.udpSeconds,
        ),
      );
      if (before) {
        if (setup.processDrops) await sleep(STATUS_SETTLE_MS);
        const lost = Math.round((run.lostPercent / 100) * run.packets);
        udpDrops = dropDelta(before, await readDropCounters(topo, setup), lost);
      }
      udp.push({
        offeredMbps: rate,
        sentMbps: run.sentBitsPerSecond / 1e6,
        receivedMbps: run.receivedBitsPerSecond / 1e6,
        lossPercent: run.lostPercent,
      });
    } catch (error) {
      log(`  iperf3 UDP ${rate} Mbit/s failed: ${errorMessage(error)}`);
      udp.push({ offeredMbps: rate, sentMbps: NaN, receivedMbps: NaN, lossPercent: NaN });
    }
    // Let queues behind an overloaded tunnel drain before the next run.
    await sleep(300);
  }
  return { tcp: { up1, down1, up4, down4 }, udp, pingIdle, pingLoaded, udpDrops };
}

/** Samples every this often during the soak run. */
const SOAK_SAMPLE_MS = 2_000;
/**
 * Samples before this are left out of the trend (slow start, JIT warm-up):
 * 10 s, or a third of a shorter run.
 */
const SOAK_SETTLE_MS = 10_000;

function trend(samples: readonly { ms: number; bytes: number }[], settleMs: number): RssTrend {
  const settled = samples.filter((s) => s.ms >= settleMs && !Number.isNaN(s.bytes));
  const mib = settled.map((s) => s.bytes / MIB);
  return {
    startMiB: mib[0] ?? NaN,
    endMiB: mib[mib.length - 1] ?? NaN,
    maxMiB: mib.length > 0 ? Math.max(...mib) : NaN,
    slopeMiBPerMin: slope(settled.map((s) => s.ms / 60_000), mib),
  };
}

/** One long TCP upload with the client's and relay's RSS sampled along the way. */
async function measureSoak(
  iperf: Iperf,
  processes: readonly MeasuredProcess[],
  seconds: number,
): Promise<SoakSummary> {
  const samples = new Map<string, { ms: number; bytes: number }[]>();
  const started = Date.now();
  let running = true;
  const run = iperf.tcp([], seconds).finally(() => running = false);
  while (running) {
    await Promise.race([sleep(SOAK_SAMPLE_MS), run]);
    if (!running) break;
    for (const p of processes) {
      const list = samples.get(p.role) ?? [];
      list.push({ ms: Date.now() - started, bytes: await readStatusBytes(p.pid, "VmRSS") });
      samples.set(p.role, list);
    }
  }
  const { mbps } = await run;
  const settleMs = Math.min(SOAK_SETTLE_MS, (seconds * 1000) / 3);
  return {
    seconds,
    tcpMbps: mbps,
    client: trend(samples.get("client") ?? [], settleMs),
    relay: trend(samples.get("relay") ?? [], settleMs),
  };
}

function summarize(
  plan: PathPlan,
  setup: PathSetup | undefined,
  repeats: RepeatResult[],
  cpu: CpuAccount | undefined,
  peaks: Map<string, number>,
  soak: SoakSummary | undefined,
  error?: string,
): PathSummary {
  const med = (pick: (r: RepeatResult) => number) => median(repeats.map(pick));
  const pingMedian = (pick: (r: RepeatResult) => PingSummary): PingSummary => ({
    p50Ms: med((r) => pick(r).p50Ms),
    p99Ms: med((r) => pick(r).p99Ms),
    lossPercent: med((r) => pick(r).lossPercent),
  });
  const roles = new Set(setup?.processes.map((p) => p.role) ?? []);
  const peak = (role: "client" | "relay") =>
    roles.has(role) && peaks.has(role) ? peaks.get(role)! / MIB : null;
  const build = plan.wireguardGo;
  return {
    name: plan.name,
    label: plan.label,
    ...(build
      ? {
        wireguardGo: {
          path: build.path,
          ...(build.version === undefined ? {} : { version: build.version }),
        },
      }
      : {}),
    ok: error === undefined && repeats.length > 0,
    ...(error === undefined ? {} : { error }),
    mtu: setup?.mtu ?? NaN,
    repeats: repeats.length,
    tcpMbps: {
      up1: med((r) => r.tcp.up1),
      down1: med((r) => r.tcp.down1),
      up4: med((r) => r.tcp.up4),
      down4: med((r) => r.tcp.down4),
    },
    udp: UDP_RATES_MBPS.map((rate, i) => ({
      offeredMbps: rate,
      sentMbps: med((r) => r.udp[i]?.sentMbps ?? NaN),
      receivedMbps: med((r) => r.udp[i]?.receivedMbps ?? NaN),
      lossPercent: med((r) => r.udp[i]?.lossPercent ?? NaN),
    })),
    pingIdle: pingMedian((r) => r.pingIdle),
    pingLoaded: pingMedian((r) => r.pingLoaded),
    cpuSecondsPerGb: {
      client: roles.has("client") ? cpu?.perGb("client") ?? null : null,
      relay: roles.has("relay") ? cpu?.perGb("relay") ?? null : null,
    },
    peakRssMiB: { client: peak("client"), relay: peak("relay") },
    ...(soak ? { soak } : {}),
    ...sumDrops(repeats),
  };
}

function sumDrops(repeats: RepeatResult[]): { udpDrops?: DropPlaces } {
  const all = repeats.map((r) => r.udpDrops).filter((d) => d !== undefined);
  if (all.length === 0) return {};
  const total = (pick: (d: DropPlaces) => number) => all.reduce((sum, d) => sum + pick(d), 0);
  const totalOrNull = (pick: (d: DropPlaces) => number | null) =>
    all.some((d) => pick(d) === null) ? null : total((d) => pick(d)!);
  return {
    udpDrops: {
      lost: total((d) => d.lost),
      clientInterface: total((d) => d.clientInterface),
      clientQueueFull: totalOrNull((d) => d.clientQueueFull),
      relayUdpRcvbuf: total((d) => d.relayUdpRcvbuf),
      relayInterface: totalOrNull((d) => d.relayInterface),
      targetLink: total((d) => d.targetLink),
      relayTunWrite: totalOrNull((d) => d.relayTunWrite),
      relayPolicy: totalOrNull((d) => d.relayPolicy),
      targetUdpRcvbuf: total((d) => d.targetUdpRcvbuf),
      kernelBacklog: total((d) => d.kernelBacklog),
      betweenProcesses: totalOrNull((d) => d.betweenProcesses),
    },
  };
}

let currentTopology: Topology | undefined;
/** The many-clients measure, taken on the datagram path's topology. */
let clientsMeasure: ClientsSummary | undefined;

async function withTopology<T>(id: string, body: (topo: Topology) => Promise<T>): Promise<T> {
  // The process id keeps two benches on one machine out of each other's namespaces.
  const topo = await createTopology({ id: `${id}-${Deno.pid}` });
  currentTopology = topo;
  try {
    return await body(topo);
  } finally {
    await topo.teardown();
    currentTopology = undefined;
    await Deno.remove(topo.logDir, { recursive: true }).catch(() => {});
  }
}

async function measurePath(plan: PathPlan, settings: Settings): Promise<PathSummary> {
  const name = plan.name;
  const label = plan.label;
  const repeatCount = isTunnelPath(name) ? settings.repeats : settings.baselineRepeats;
  let setup: PathSetup | undefined;
  let cpu: CpuAccount | undefined;
  const repeats: RepeatResult[] = [];
  const peaks = new Map<string, number>();
  let soak: SoakSummary | undefined;
  const problem = plan.wireguardGo?.problem;
  if (problem !== undefined) {
    log(`${label}: NOT RUN: ${problem}`);
    return summarize(plan, setup, repeats, cpu, peaks, soak, problem);
  }
  try {
    await withTopology(plan.topologyId, async (topo) => {
      log(`${label}: setting up`);
      setup = await setupPath(topo, name, plan.wireguardGo, { tunOffload: settings.tunOffload });
      await checkPing(topo);
      const iperf = new Iperf(topo);
      await iperf.start();
      await iperf.run([], WARMUP_SECONDS).catch(() => "");
      cpu = new CpuAccount(setup.processes);
      for (let r = 1; r <= repeatCount; r++) {
        const result = await measureRepeat(topo, setup, iperf, cpu, settings);
        repeats.push(result);
        const t = result.tcp;
        log(
          `${label}: repeat ${r}/${repeatCount}: TCP up/down ${t.up1.toFixed(0)}/` +
            `${t.down1.toFixed(0)} Mbit/s (4 streams ${t.up4.toFixed(0)}/${t.down4.toFixed(0)}), ` +
            `UDP loss ${result.udp.map((u) => `${u.lossPercent.toFixed(1)}%`).join("/")}, ` +
            `ping ${result.pingIdle.p50Ms} ms idle, ${result.pingLoaded.p50Ms} ms loaded`,
        );
      }
      if (name === "datagram" && settings.soakSeconds > 0) {
        log(`${name}: soak, one TCP upload of ${settings.soakSeconds} s with RSS samples`);
        soak = await measureSoak(iperf, setup.processes, settings.soakSeconds);
        log(
          `${name}: soak: ${soak.tcpMbps.toFixed(0)} Mbit/s, RSS slope client ` +
            `${soak.client.slopeMiBPerMin.toFixed(2)}, relay ` +
            `${soak.relay.slopeMiBPerMin.toFixed(2)} MiB/min`,
        );
      }
      if (name === "datagram" && settings.clients > 1 && setup.addClient) {
        log(`${name}: ${settings.clients} clients at once`);
        clientsMeasure = await measureClients(topo, setup, settings);
        log(
          `${name}: one client ${clientsMeasure.oneMbps.up.toFixed(0)}/${
            clientsMeasure.oneMbps.down.toFixed(0)
          } Mbit/s, ${settings.clients} at once ${clientsMeasure.manyMbps.up.toFixed(0)}/${
            clientsMeasure.manyMbps.down.toFixed(0)
          } Mbit/s up/down`,
        );
      }
      const dead = [];
      for (const p of setup.processes) {
        peaks.set(p.role, await readStatusBytes(p.pid, "VmHWM"));
        if ((await readCpu(p.pid)) === undefined) dead.push(p.role);
      }
      if (dead.length > 0) throw new Error(`${dead.join(" and ")} process exited during the run`);
    });
    return summarize(plan, setup, repeats, cpu, peaks, soak);
  } catch (error) {
    log(`${label}: FAILED: ${errorMessage(error)}`);
    return summarize(plan, setup, repeats, cpu, peaks, soak, errorMessage(error));
  }
}

// ---------------------------------------------------------------------------
// Many clients

/**
 * One TCP stream per client, first from the path's own client alone, then
 * from `settings.clients` clients at once (the others started here), up and
 * then down; with the CPU of the relay, its main thread and the clients.
 */
async function measureClients(
  topo: Topology,
  setup: PathSetup,
  settings: Settings,
): Promise<ClientsSummary> {
  const n = settings.clients;
  const seconds = settings.tcpSeconds;
  const relay = setup.processes.find((p) => p.role === "relay")!;
  const clients: { tun: string; process: MeasuredProcess }[] = [{
    tun: setup.clientInterface,
    process: setup.processes.find((p) => p.role === "client")!,
  }];
  const servers: Process[] = [];
  const nan = { one: NaN, many: NaN };
  const empty: ClientsSummary = {
    ok: false,
    clients: n,
    seconds,
    oneMbps: { up: NaN, down: NaN },
    manyMbps: { up: NaN, down: NaN },
    perClientMbps: { up: [], down: [] },
    relayCpu: { up: nan, down: nan },
    relayMainThreadCpu: { up: nan, down: nan },
    clientsCpu: { up: nan, down: nan },
    machineBusy: { up: nan, down: nan },
  };
  try {
    for (let i = 1; i < n; i++) {
      const tun = `mvpnb${i}`;
      clients.push({
        tun,
        process: await setup.addClient!(`client${i + 1}`, tun, EXTRA_CLIENT_TARGETS[i - 1]),
      });
    }
    for (let i = 0; i < n; i++) {
      const server = topo.spawn("target", [
        ...["iperf3", "-s", "-p", String(CLIENTS_BASE_PORT + i), "--forceflush"],
      ], { name: `iperf3-server-${i + 1}` });
      servers.push(server);
      await server.waitForLog(/Server listening/, 5_000);
    }
    const cpuOf = async () => {
      const relayTicks = await readCpu(relay.pid);
      const mainTicks = await readThreadCpu(relay.pid, relay.pid);
      const clientTicks = await Promise.all(clients.map((c) => readCpu(c.process.pid)));
      const total = (t: CpuTicks | undefined) => t ? t.user + t.system : NaN;
      // The machine: the first line of /proc/stat, busy and all ticks of every CPU.
      const cpuLine = (await readProc("/proc/stat"))?.split("\n", 1)[0].trim().split(/\s+/)
        .slice(1).map(Number) ?? [];
      const idle = (cpuLine[3] ?? NaN) + (cpuLine[4] ?? 0);
      const all = cpuLine.slice(0, 8).reduce((a, b) => a + b, 0);
      return {
        at: performance.now(),
        relay: total(relayTicks),
        main: total(mainTicks),
        clients: clientTicks.reduce((sum, t) => sum + total(t), 0),
        machineBusy: all - idle,
        machineAll: all,
      };
    };
    type Sample = Awaited<ReturnType<typeof cpuOf>>;
    const percent = (a: Sample, b: Sample, pick: (s: Sample) => number) =>
      (100 * (pick(b) - pick(a)) / clockTicks) / ((b.at - a.at) / 1000);
    const run = async (count: number, reverse: boolean) => {
      const before = await cpuOf();
      const results = await Promise.all(
        clients.slice(0, count).map(async (c, i) => {
          const { stdout } = await topo.run("client", [
            ...["iperf3", "-c", topo.target4, "-p", String(CLIENTS_BASE_PORT + i), "-J"],
            ...["--connect-timeout", "3000", "--bind-dev", c.tun, "-t", String(seconds)],
            ...(reverse ? ["-R"] : []),
          ], { check: false, timeoutMs: seconds * 1000 + IPERF_SLACK_MS });
          try {
            return parseIperfTcp(stdout).bitsPerSecond / 1e6;
          } catch (error) {
            log(`  client ${i + 1} via ${c.tun}: iperf3 failed: ${errorMessage(error)}`);
            return NaN;
          }
        }),
      );
      const after = await cpuOf();
      return {
        mbps: results,
        machine: 100 * (after.machineBusy - before.machineBusy) /
          (after.machineAll - before.machineAll),
        relay: percent(before, after, (s) => s.relay),
        main: percent(before, after, (s) => s.main),
        clients: percent(before, after, (s) => s.clients),
      };
    };
    const oneUp = await run(1, false);
    const manyUp = await run(n, false);
    const oneDown = await run(1, true);
    const manyDown = await run(n, true);
    const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
    const failed = [...manyUp.mbps, ...manyDown.mbps, oneUp.mbps[0], oneDown.mbps[0]]
      .some((v) => Number.isNaN(v));
    return {
      ok: !failed,
      ...(failed ? { error: "an iperf3 run failed (see the log)" } : {}),
      clients: n,
      seconds,
      oneMbps: { up: oneUp.mbps[0], down: oneDown.mbps[0] },
      manyMbps: { up: sum(manyUp.mbps), down: sum(manyDown.mbps) },
      perClientMbps: { up: manyUp.mbps, down: manyDown.mbps },
      relayCpu: {
        up: { one: oneUp.relay, many: manyUp.relay },
        down: { one: oneDown.relay, many: manyDown.relay },
      },
      relayMainThreadCpu: {
        up: { one: oneUp.main, many: manyUp.main },
        down: { one: oneDown.main, many: manyDown.main },
      },
      clientsCpu: {
        up: { one: oneUp.clients, many: manyUp.clients },
        down: { one: oneDown.clients, many: manyDown.clients },
      },
      machineBusy: {
        up: { one: oneUp.machine, many: manyUp.machine },
        down: { one: oneDown.machine, many: manyDown.machine },
      },
    } satisfies ClientsSummary;
  } catch (error) {
    log(`clients: FAILED: ${errorMessage(error)}`);
    return { ...empty, error: errorMessage(error) };
  } finally {
    for (const server of servers) server.kill("SIGKILL");
    for (const c of clients.slice(1)) c.process.process.kill("SIGTERM");
    await Promise.all(clients.slice(1).map((c) => c.process.process.status));
  }
}

// ---------------------------------------------------------------------------
// Scale

async function measureScale(settings: Settings): Promise<ScaleSummary> {
  const sessions = settings.sessions;
  const openTimeoutMs = settings.quick ? 40_000 : 120_000;
  const empty = {
    sessionsRequested: sessions,
    sessionsOpened: 0,
    sessionsAtRelay: 0,
    connections: 0,
    concurrency: SCALE_CONCURRENCY,
    relayRssBeforeMiB: NaN,
    relayRssAfterMiB: NaN,
    perSessionKiB: NaN,
    setupMsP50: NaN,
    setupMsP99: NaN,
    connectMsP50: NaN,
    openSeconds: NaN,
    relayCpuSeconds: NaN,
  };
  try {
    return await withTopology("bench-scale", async (topo) => {
      log(`scale: relay with pool ${SCALE_POOL4}, ${sessions} sessions`);
      const relay = await startRelay(topo, [
        ...["--pool4", SCALE_POOL4, "--max-sessions", String(sessions + 100)],
        // One generator, one source address, SCALE_PER_CONNECTION sessions per connection.
        ...["--max-requests-per-connection", String(SCALE_PER_CONNECTION)],
        ...["--max-sessions-per-connection", String(SCALE_PER_CONNECTION)],
        ...["--max-connections-per-source", String(Math.ceil(sessions / SCALE_PER_CONNECTION))],
      ], { users: [{ name: "scale", policy: { maxSessions: sessions + 100 } }] });
      // The generator logs in as that user; the token stays in a file.
      const tokenFile = `${topo.logDir}/scale.token`;
      await Deno.writeTextFile(tokenFile, `${relay.tokens.scale}\n`, { mode: 0o600 });
      const pid = relay.process.pid;
      await sleep(1000);
      const rssBefore = await readStatusBytes(pid, "VmRSS");
      const cpuBefore = await readCpu(pid);
      const generator = topo.spawn("client", [
        ...["deno", "run", "--unstable-net", "--allow-net", "--allow-read", SCALE_CLIENT],
        ...["--host", topo.relayUnderlay4, "--port", "4433", "--ca", `${relay.certDir}/ca.pem`],
        ...["--sessions", String(sessions), "--per-connection", String(SCALE_PER_CONNECTION)],
        ...["--concurrency", String(SCALE_CONCURRENCY), "--timeout-ms", String(openTimeoutMs)],
        ...["--hold-ms", String(openTimeoutMs)],
        ...["--token-file", tokenFile],
      ], { name: "scale-client" });
      const line = await generator.waitForLog(/^\{"ready":true/, openTimeoutMs + 15_000);
      const result = JSON.parse(line) as {
        sessions: number;
        failed: number;
        connections: number;
        setupMs: { p50: number; p99: number };
        connectMs: { p50: number };
        elapsedMs: number;
        errors: string[];
      };
      await sleep(STATUS_SETTLE_MS);
      const rssAfter = await readStatusBytes(pid, "VmRSS");
      const cpuAfter = await readCpu(pid);
      const status = await relay.status().catch(() => undefined);
      generator.kill("SIGTERM");
      await generator.status;
      const error = result.failed > 0
        ? `${result.failed} sessions failed: ${result.errors.join("; ")}`
        : undefined;
      return {
        ok: error === undefined,
        ...(error === undefined ? {} : { error }),
        sessionsRequested: sessions,
        sessionsOpened: result.sessions,
        sessionsAtRelay: status?.sessions.length ?? NaN,
        connections: result.connections,
        concurrency: SCALE_CONCURRENCY,
        relayRssBeforeMiB: rssBefore / MIB,
        relayRssAfterMiB: rssAfter / MIB,
        perSessionKiB: result.sessions > 0 ? (rssAfter - rssBefore) / 1024 / result.sessions : NaN,
        setupMsP50: result.setupMs.p50,
        setupMsP99: result.setupMs.p99,
        connectMsP50: result.connectMs.p50,
        openSeconds: result.elapsedMs / 1000,
        relayCpuSeconds: cpuBefore && cpuAfter
          ? (cpuAfter.user + cpuAfter.system - cpuBefore.user - cpuBefore.system) / clockTicks
          : NaN,
      };
    });
  } catch (error) {
    log(`scale: FAILED: ${errorMessage(error)}`);
    return { ok: false, error: errorMessage(error), ...empty };
  }
}

// ---------------------------------------------------------------------------
// Main

async function commandVersion(cmd: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(cmd[0], { args: cmd.slice(1), stdout: "piped" }).output();
    return new TextDecoder().decode(out.stdout).split("\n")[0].trim();
  } catch {
    return "not installed";
  }
}

/** `--version` of a wireguard-go build must answer within this time. */
const VERSION_TIMEOUT_MS = 5_000;

/** Finds `path` (a file, or a name in PATH) and runs its `--version`. */
async function probeWireguardGo(path: string, haveWg: boolean): Promise<WireguardGoProbe> {
  let command: string | undefined;
  let notFound: string | undefined;
  if (path.includes("/")) {
    try {
      const real = await Deno.realPath(path);
      const info = await Deno.stat(real);
      if (!info.isFile) notFound = "not a file";
      else if (((info.mode ?? 0) & 0o111) === 0) notFound = "not executable";
      else command = real;
    } catch (error) {
      notFound = error instanceof Deno.errors.NotFound ? "no such file" : errorMessage(error);
    }
  } else if (await haveCommand(path)) {
    command = path;
  } else {
    notFound = "not found in PATH (apt-get install wireguard-go)";
  }
  if (command === undefined) return { path, notFound, haveWg };
  try {
    const out = await new Deno.Command(command, {
      args: ["--version"],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(VERSION_TIMEOUT_MS),
    }).output();
    const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    if (!out.success) {
      const why = out.signal ? `killed by ${out.signal}` : `exit status ${out.code}`;
      const said = text(out.stderr).trim().split("\n", 1)[0];
      return { path, command, versionError: said ? `${why}: ${said}` : why, haveWg };
    }
    return { path, command, versionOutput: text(out.stdout), haveWg };
  } catch (error) {
    return { path, command, versionError: errorMessage(error), haveWg };
  }
}

async function hostInfo(builds: readonly WireguardGoBuild[]): Promise<Record<string, string>> {
  const cpuinfo = await readProc("/proc/cpuinfo") ?? "";
  return {
    cpu: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown",
    cpus: String(navigator.hardwareConcurrency),
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
    iperf3: await commandVersion(["iperf3", "--version"]),
    wireguardGo: builds.map((b) =>
      b.version === undefined ? `${b.path} (unknown version)` : `wireguard-go ${b.version}`
    ).join(", "),
    loadAtStart: await loadAverage(),
  };
}

/** `/proc/loadavg`'s 1, 5 and 15 minute averages: how busy the machine was besides the bench. */
async function loadAverage(): Promise<string> {
  return (await readProc("/proc/loadavg"))?.split(" ").slice(0, 3).join(" ") ?? "unknown";
}

function plannedSeconds(settings: Settings, plans: readonly PathPlan[]): number {
  const perRepeat = 4 * (settings.tcpSeconds + 0.5) +
    UDP_RATES_MBPS.length * (settings.udpSeconds + 0.8) +
    (PINGS * PING_INTERVAL_MS) / 1000 + 1;
  let total = 0;
  for (const { name: p, wireguardGo } of plans) {
    if (wireguardGo?.problem !== undefined) continue;
    const repeats = isTunnelPath(p) ? settings.repeats : settings.baselineRepeats;
    // The traced UDP run waits twice for the tunnel processes' status files.
    const tracing = isTunnelPath(p) ? (2 * STATUS_SETTLE_MS) / 1000 : 0;
    // The many-clients measure: its clients start, then 4 TCP runs.
    const clients = settings.clients > 1 ? 5 * settings.clients + 4 * (settings.tcpSeconds + 1) : 0;
    total += 6 + repeats * (perRepeat + tracing) +
      (p === "datagram" ? settings.soakSeconds + clients : 0);
  }
  return total + (settings.scale ? 15 + settings.sessions / 40 : 0);
}

async function main(): Promise<number> {
  let settings: Settings | "help";
  try {
    settings = parseSettings(Deno.args, ROOT);
  } catch (error) {
    console.error(`error: ${errorMessage(error)}\n\n${HELP}`);
    return 2;
  }
  if (settings === "help") {
    console.log(HELP);
    return 0;
  }
  if (!isRoot()) {
    console.error("error: the benchmark needs root (network namespaces): sudo deno task bench");
    return 2;
  }
  const missing = [];
  for (const [command, pkg] of Object.entries(REQUIRED_COMMANDS)) {
    if (!(await haveCommand(command))) missing.push(`${command} (apt-get install ${pkg})`);
  }
  if (missing.length > 0) {
    console.error(`error: missing commands: ${missing.join(", ")}`);
    return 2;
  }
  // Every wireguard-go build keeps its column: one that cannot run says
  // why in the log, the table and the JSON.
  let builds: WireguardGoBuild[] = [];
  if (settings.paths.includes("wireguard-go")) {
    const haveWg = await haveCommand("wg");
    const probes = [];
    for (const path of settings.wireguardGo) probes.push(await probeWireguardGo(path, haveWg));
    builds = describeWireguardGoBuilds(probes);
    for (const b of builds) {
      log(
        b.problem === undefined
          ? `${b.label}: ${b.command}`
          : `${b.label}: CANNOT RUN: ${b.problem}`,
      );
    }
  }
  const plans = planPaths(settings.paths, builds);
  clockTicks = await readClockTicks();

  // The fixed limits fit the default plan; more wireguard-go builds get more time.
  const planned = plannedSeconds(settings, plans);
  const deadlineMs = Math.max(
    settings.quick ? QUICK_DEADLINE_MS : FULL_DEADLINE_MS,
    2 * planned * 1000,
  );
  const backstop = setTimeout(async () => {
    log(`ERROR: the benchmark exceeded its ${deadlineMs / 1000} s limit; tearing down`);
    await currentTopology?.teardown();
    Deno.exit(1);
  }, deadlineMs);
  log(
    `plan: ${plans.map((p) => p.label).join(", ")}; ${settings.repeats} repeat(s) of the tunnel, ` +
      `${settings.baselineRepeats} of the references; TCP ${settings.tcpSeconds} s, ` +
      `UDP ${settings.udpSeconds} s per run; ${settings.scale ? settings.sessions : 0} sessions; ` +
      `about ${Math.round(planned)} s`,
  );

  const startedIso = new Date(startedAt).toISOString();
  const host = await hostInfo(builds);
  const summaries: PathSummary[] = [];
  for (const plan of plans) summaries.push(await measurePath(plan, settings));
  const scale = settings.scale ? await measureScale(settings) : undefined;
  clearTimeout(backstop);

  host.loadAtEnd = await loadAverage();
  const report: BenchReport = {
    startedAt: startedIso,
    seconds: Math.round((Date.now() - startedAt) / 100) / 10,
    quick: settings.quick,
    host,
    settings: {
      repeats: settings.repeats,
      baselineRepeats: settings.baselineRepeats,
      tcpSeconds: settings.tcpSeconds,
      udpSeconds: settings.udpSeconds,
      udpRatesMbps: UDP_RATES_MBPS,
      udpPayloadBytes: UDP_PAYLOAD_BYTES,
      udpSocketBuffer: UDP_SOCKET_BUFFER,
      pings: PINGS,
      pingIntervalMs: PING_INTERVAL_MS,
      sessions: settings.sessions,
      soakSeconds: settings.soakSeconds,
    },
    paths: summaries,
    ...(scale ? { scale } : {}),
    ...(clientsMeasure ? { clients: clientsMeasure } : {}),
  };

  await Deno.mkdir(RESULTS_DIR, { recursive: true });
  const stamp = startedIso.replace(/[:.]/g, "-");
  const jsonFile = `${RESULTS_DIR}/${stamp}.json`;
  await Deno.writeTextFile(jsonFile, JSON.stringify(report, null, 2) + "\n");
  const chart = renderChart(report);
  await Deno.writeTextFile(`${RESULTS_DIR}/${stamp}.svg`, chart);
  if (settings.chart) await Deno.writeTextFile(settings.chart, chart);

  console.log(
    `\n## Results (${startedIso}, ${report.seconds} s${settings.quick ? ", --quick" : ""})\n`,
  );
  console.log(
    `${host.cpus} × ${host.cpu}, Linux ${host.kernel}, Deno ${host.deno}, ${host.iperf3}` +
      `${host.wireguardGo ? `, ${host.wireguardGo}` : ""}; load average ${host.loadAtStart} ` +
      `at the start, ${host.loadAtEnd} at the end\n`,
  );
  console.log(formatTable(report));
  console.log(`\n${formatTargetsTable(report)}`);
  for (const p of summaries) if (p.soak) console.log(`\n${formatSoakTable(p.soak)}`);
  if (summaries.some((p) => p.udpDrops)) console.log(`\n${formatDropTable(report)}`);
  if (clientsMeasure) console.log(`\n${formatClientsTable(clientsMeasure)}`);
  if (scale) console.log(`\n${formatScaleTable(scale)}`);
  console.log(
    `\nJSON: ${jsonFile}${settings.chart ? `\nchart: ${settings.chart}` : ""}\n`,
  );
  const failed = summaries.some((s) => !s.ok) || (scale !== undefined && !scale.ok);
  return failed ? 1 : 0;
}

Deno.exit(await main());
