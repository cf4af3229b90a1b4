/**
 * Tests of the benchmark's report: columns per wireguard-go build, ratios
 * against the fastest one, and builds that could not run kept in the table.
 */
import { assert, assertEquals } from "../support/assert.ts";
import {
  fastestWireguardGo,
  formatClientsTable,
  formatDropTable,
  formatTable,
  formatTargetsTable,
  renderChart,
} from "./_report.ts";
import type { BenchReport, PathSummary } from "./_report.ts";
import type { PathName } from "./_paths.ts";

const NO_DROPS = {
  lost: 0,
  clientInterface: 0,
  clientQueueFull: null,
  betweenProcesses: null,
  relayUdpRcvbuf: 0,
  relayInterface: 0,
  targetLink: 0,
  relayTunWrite: null,
  relayPolicy: null,
  targetUdpRcvbuf: 0,
  kernelBacklog: 0,
};

/** A path whose TCP one-stream up and down are `up` and `down` Mbit/s; other measures fixed. */
function path(name: PathName, label: string, up: number, down: number, ok = true): PathSummary {
  return {
    name,
    label,
    ok,
    ...(ok ? {} : { error: "wg not found (apt-get install wireguard-tools)" }),
    mtu: 1420,
    repeats: ok ? 1 : 0,
    tcpMbps: { up1: up, down1: down, up4: up, down4: down },
    udp: [{ offeredMbps: 300, sentMbps: 300, receivedMbps: 300, lossPercent: 0 }],
    pingIdle: { p50Ms: 0.5, p99Ms: 1, lossPercent: 0 },
    pingLoaded: { p50Ms: 5, p99Ms: 10, lossPercent: 0 },
    cpuSecondsPerGb: { client: 10, relay: 10 },
    peakRssMiB: { client: 50, relay: 50 },
    udpDrops: NO_DROPS,
  };
}

function report(paths: PathSummary[]): BenchReport {
  return {
    startedAt: "2026-12-01T00:00:00.000Z",
    seconds: 100,
    quick: true,
    host: {},
    settings: {
      repeats: 1,
      baselineRepeats: 1,
      tcpSeconds: 3,
      udpSeconds: 1,
      udpRatesMbps: [300],
      udpPayloadBytes: 1300,
      udpSocketBuffer: "4M",
      pings: 200,
      pingIntervalMs: 10,
      sessions: 200,
      soakSeconds: 0,
    },
    paths,
  };
}

const wg2022 = path("wireguard-go", "wireguard-go 0.0.20220316", 300, 300);
const wg2025 = path("wireguard-go", "wireguard-go 0.0.20250522", 1500, 1400);
const datagram = path("datagram", "datagram", 750, 700);
const direct = path("direct", "direct", 12000, 12000);

/** The cells of the table's line whose first cell is `label`. */
function line(table: string, label: string): string[] {
  const row = table.split("\n").find((l) => l.startsWith(`| ${label} `));
  if (row === undefined) throw new Error(`no row "${label}" in\n${table}`);
  return row.split("|").slice(1, -1).map((c) => c.trim());
}

Deno.test("fastestWireguardGo picks the ran build with the most one-stream TCP", () => {
  assertEquals(fastestWireguardGo([direct, wg2022, wg2025, datagram]), wg2025);
  assertEquals(fastestWireguardGo([wg2025, wg2022]), wg2025);
  // One that did not run is never the reference, however fast it looks.
  const notRun = path("wireguard-go", "wireguard-go /x", 9999, 9999, false);
  assertEquals(fastestWireguardGo([wg2022, notRun]), wg2022);
  // A build whose TCP runs failed (NaN) loses to one that measured something.
  const broken = path("wireguard-go", "wireguard-go broken", NaN, NaN);
  assertEquals(fastestWireguardGo([broken, wg2022]), wg2022);
  assertEquals(fastestWireguardGo([datagram, notRun]), undefined);
});

Deno.test("formatTable: one column per wireguard-go build, ratios against the fastest", () => {
  const table = formatTable(report([direct, wg2022, wg2025, datagram]));
  assertEquals(line(table, "measure (median)"), [
    "measure (median)",
    "direct",
    "wireguard-go 0.0.20220316",
    "wireguard-go 0.0.20250522",
    "datagram",
    "datagram ÷ wg 0.0.20250522",
    "datagram ÷ direct",
  ]);
  // 750 / 1500 and 700 / 1400 against 2025, not 2.50× against 2022.
  assertEquals(line(table, "TCP 1 stream up, Mbit/s"), [
    "TCP 1 stream up, Mbit/s",
    "12000",
    "300",
    "1500",
    "750",
    "0.50×",
    "0.06×",
  ]);
  assertEquals(line(table, "TCP 1 stream down, Mbit/s").slice(5), ["0.50×", "0.06×"]);
  assert(!table.includes("did not run"), table);
});

Deno.test("formatTable keeps a build that could not run: column marked, reason below", () => {
  const notRun = path("wireguard-go", "wireguard-go 0.0.20250522", NaN, NaN, false);
  const table = formatTable(report([wg2022, notRun, datagram]));
  const header = line(table, "measure (median)");
  assertEquals(header, [
    "measure (median)",
    "wireguard-go 0.0.20220316",
    "wireguard-go 0.0.20250522 (not run)",
    "datagram",
    "datagram ÷ wg 0.0.20220316",
  ]);
  assertEquals(line(table, "TCP 1 stream up, Mbit/s").slice(2), ["—", "750", "2.50×"]);
  assert(
    table.endsWith(
      "\n\n- wireguard-go 0.0.20250522 did not run: wg not found (apt-get install wireguard-tools)",
    ),
    table,
  );
});

Deno.test("formatTable without any wireguard-go that ran has no wg ratio", () => {
  const notRun = path("wireguard-go", "wireguard-go /nope", NaN, NaN, false);
  const header = line(formatTable(report([notRun, datagram, direct])), "measure (median)");
  assertEquals(header.slice(1), [
    "wireguard-go /nope (not run)",
    "datagram",
    "direct",
    "datagram ÷ direct",
  ]);
});

Deno.test("formatDropTable and renderChart name wireguard-go columns by build", () => {
  const r = report([wg2022, wg2025, datagram]);
  assertEquals(line(formatDropTable(r), "UDP 300 Mbit/s, packets (sum of repeats)").slice(1), [
    "wireguard-go 0.0.20220316",
    "wireguard-go 0.0.20250522",
    "datagram",
  ]);
  const svg = renderChart(r);
  assert(svg.includes(">wireguard-go 0.0.20220316</text>"), "legend of 2022");
  assert(svg.includes(">wireguard-go 0.0.20250522</text>"), "legend of 2025");
  // Two builds, two colours.
  const legendColors = [...svg.matchAll(/<rect x="\d+" y="38" [^>]*fill="(#[0-9a-f]{6})"/g)]
    .map((m) => m[1]);
  assertEquals(new Set(legendColors).size, 3);
});

Deno.test("formatClientsTable: one client against all at once, with the ratio and CPU", () => {
  const pair = (one: number, many: number) => ({ one, many });
  const text = formatClientsTable({
    ok: true,
    clients: 4,
    seconds: 10,
    oneMbps: { up: 600, down: 800 },
    manyMbps: { up: 900, down: 400 },
    perClientMbps: { up: [200, 250, 200, 250], down: [100, 100, 100, 100] },
    relayCpu: { up: pair(50, 70), down: pair(60, 65) },
    relayMainThreadCpu: { up: pair(30, 45), down: pair(40, 42) },
    clientsCpu: { up: pair(60, 110), down: pair(70, 100) },
    machineBusy: { up: pair(90, 100), down: pair(95, 100) },
  });
  const rows = text.split("\n");
  assertEquals(rows[0].split("|").map((c) => c.trim()).slice(1, 4), [
    "datagram mode, 4 clients, one TCP stream each (10 s)",
    "up",
    "down",
  ]);
  const row = (label: string) =>
    rows.find((r) => r.startsWith(`| ${label}`))!.split("|").map((c) => c.trim()).slice(2, 4);
  assertEquals(row("one client, Mbit/s"), ["600", "800"]);
  assertEquals(row("4 clients at once, total Mbit/s"), ["900", "400"]);
  assertEquals(row("4 clients ÷ one"), ["1.50×", "0.50×"]);
  assertEquals(row("each client, Mbit/s"), ["200 / 250 / 200 / 250", "100 / 100 / 100 / 100"]);
  assertEquals(row("relay main thread, % of a core"), ["30 → 45", "40 → 42"]);
  // 600 Mbit/s for 30% of a core: 2 Gbit/s per core; 900 for 45%: 2.0; 800 / 40; 400 / 42.
  assertEquals(row("relay main thread's reach, Gbit/s per core"), ["2.0 → 2.0", "2.0 → 1.0"]);
  assertEquals(row("machine busy, % of all cores"), ["90 → 100", "95 → 100"]);
  assert(!text.includes("error"));
});

Deno.test("formatTargetsTable: issue 15's targets against the fastest wireguard-go, met or not", () => {
  const mode: PathSummary = {
    ...path("datagram", "datagram", 1100, 700),
    cpuSecondsPerGb: { client: 7, relay: 7 },
    pingIdle: { p50Ms: 0.9, p99Ms: 2, lossPercent: 0 },
    pingLoaded: { p50Ms: 9, p99Ms: 20, lossPercent: 0 },
    peakRssMiB: { client: 120, relay: 151 },
  };
  const fast: PathSummary = {
    ...wg2025,
    cpuSecondsPerGb: { client: 4.5, relay: 4.5 },
    pingIdle: { p50Ms: 0.6, p99Ms: 1, lossPercent: 0 },
    pingLoaded: { p50Ms: 8, p99Ms: 10, lossPercent: 0 },
    udp: [{ offeredMbps: 300, sentMbps: 300, receivedMbps: 290, lossPercent: 2.6 }],
  };
  const base: PathSummary = { ...direct, pingIdle: { p50Ms: 0.1, p99Ms: 0.2, lossPercent: 0 } };
  const text = formatTargetsTable({
    ...report([base, wg2022, fast, mode]),
    clients: {
      ok: true,
      clients: 4,
      seconds: 10,
      oneMbps: { up: 600, down: 800 },
      manyMbps: { up: 900, down: 1000 },
      perClientMbps: { up: [], down: [] },
      relayCpu: { up: { one: 0, many: 0 }, down: { one: 0, many: 0 } },
      relayMainThreadCpu: { up: { one: 0, many: 0 }, down: { one: 0, many: 0 } },
      clientsCpu: { up: { one: 0, many: 0 }, down: { one: 0, many: 0 } },
      machineBusy: { up: { one: 0, many: 0 }, down: { one: 0, many: 0 } },
    },
  });
  assertEquals(line(text, "issue 15 target").slice(1, 3), [
    "datagram",
    "wireguard-go 0.0.20250522",
  ]);
  // 1100 / 1500 and 700 / 1400.
  assertEquals(line(text, "TCP 1 stream up, Mbit/s: at least 0.7× (aim 1.0×)").slice(1), [
    "1100",
    "1500",
    "0.73×",
    "yes",
  ]);
  assertEquals(line(text, "TCP 1 stream down, Mbit/s: at least 0.7× (aim 1.0×)").slice(3), [
    "0.50×",
    "no",
  ]);
  // 14 / 9 = 1.56 > 1.5.
  assertEquals(line(text, "CPU s/GB, client + relay: at most 1.5× (aim 1.0×)").slice(1), [
    "14.00",
    "9.00",
    "1.56×",
    "no",
  ]);
  assertEquals(line(text, "ping under TCP load p50, ms: at most wireguard-go's").at(-1), "no");
  // 0.8 ms added against 0.5 ms.
  assertEquals(line(text, "idle ping p50 added over direct, ms: at most wireguard-go's").slice(1), [
    "0.800",
    "0.500",
    "1.60×",
    "no",
  ]);
  assertEquals(line(text, "UDP 300 Mbit/s offered, median loss %: 0").slice(1), [
    "0.00",
    "2.60",
    "—",
    "yes",
  ]);
  assertEquals(line(text, "peak RSS client / relay, MiB: at most 150 each").slice(1), [
    "120.0 / 151.0",
    "50.0 / 50.0",
    "—",
    "no",
  ]);
  assertEquals(line(text, "4 clients at once ÷ one, TCP up / down: at least 1.5×").slice(3), [
    "1.50× / 1.25×",
    "no",
  ]);
});

Deno.test("formatTargetsTable: without wireguard-go or the clients measure, nothing is judged", () => {
  const text = formatTargetsTable(report([direct, datagram]));
  assertEquals(line(text, "issue 15 target")[2], "wireguard-go (none ran)");
  assertEquals(line(text, "TCP 1 stream up, Mbit/s: at least 0.7× (aim 1.0×)").slice(2), [
    "—",
    "—",
    "—",
  ]);
  assertEquals(line(text, "N clients at once ÷ one, TCP up / down: at least 1.5×").at(-1), "—");
  // What needs no reference is still judged: 0% loss, 50 MiB.
  assertEquals(line(text, "UDP 300 Mbit/s offered, median loss %: 0").at(-1), "yes");
  assertEquals(line(text, "peak RSS client / relay, MiB: at most 150 each").at(-1), "yes");
});
