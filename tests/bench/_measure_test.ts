/**
 * Tests of the benchmark's parsers and statistics, on output captured from
 * iperf 3.12 and iputils ping on this kind of machine (trimmed to the fields
 * the parsers read).
 */
import { assertEquals, assertThrows } from "../support/assert.ts";
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

/** `iperf3 -c 127.0.0.1 -t 1 -J`, the `end` object. */
const TCP_JSON = JSON.stringify({
  start: { version: "iperf 3.12" },
  end: {
    sum_sent: {
      seconds: 1.000225,
      bytes: 2372403200,
      bits_per_second: 18974956234.84716,
      retransmits: 20,
    },
    sum_received: { seconds: 1.000273, bytes: 2372403200, bits_per_second: 18974045685.52785 },
  },
});

/** A UDP run's `end` with the given bytes and iperf3's own gap count. */
function udpJson(sentBytes: number, receivedBytes: number, gapLossPercent: number): string {
  return JSON.stringify({
    end: {
      sum_sent: {
        bytes: sentBytes,
        bits_per_second: sentBytes * 8,
        packets: sentBytes / 1300,
        lost_percent: 0,
      },
      sum_received: {
        bytes: receivedBytes,
        bits_per_second: receivedBytes * 8,
        packets: receivedBytes / 1300,
        lost_percent: gapLossPercent,
      },
    },
  });
}

Deno.test("parseIperfTcp reads the receiver's throughput and the sender's retransmits", () => {
  assertEquals(parseIperfTcp(TCP_JSON), {
    bitsPerSecond: 18974045685.52785,
    bytes: 2372403200,
    retransmits: 20,
  });
});

Deno.test("parseIperfTcp reports iperf3's error and non-JSON output clearly", () => {
  assertThrows(
    () => parseIperfTcp(`{"start":{},"error":"unable to connect to server: Connection refused"}`),
    Error,
    "iperf3 TCP run failed: unable to connect to server: Connection refused",
  );
  assertThrows(
    () => parseIperfTcp("iperf3: error - unable to connect"),
    Error,
    'Cannot parse iperf3 TCP result: not JSON (starts "iperf3: error - unable to connect")',
  );
  assertThrows(
    () => parseIperfTcp(`{"end":{"sum_received":{}}}`),
    Error,
    "Cannot parse iperf3 TCP result: end.sum_received.bits_per_second is not a number",
  );
});

Deno.test("parseIperfUdp: no loss when every byte arrived", () => {
  // `iperf3 -u -b 50M -l 1300 -t 1 -J` on loopback: 4807 datagrams, all received.
  const run = parseIperfUdp(udpJson(6249100, 6249100, 0));
  assertEquals(run.lostPercent, 0);
  assertEquals(run.packets, 4807);
});

Deno.test("parseIperfUdp counts bytes that never arrived, which iperf3's gap count misses", () => {
  // 790 Mbit/s sent, 64 Mbit/s received, iperf3 says 3.96 % (a tunnel run
  // whose queue was still full when the run ended).
  const run = parseIperfUdp(udpJson(98_750_000, 7_967_500, 3.96));
  assertEquals(run.lostPercent.toFixed(2), "91.93");
  // When iperf3's own count is larger (reordering), it is kept.
  assertEquals(parseIperfUdp(udpJson(1300 * 100, 1300 * 99, 2.5)).lostPercent, 2.5);
});

Deno.test("parsePing reads every reply time and the transmitted count", () => {
  const text = [
    "PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.",
    "64 bytes from 127.0.0.1: icmp_seq=1 ttl=64 time=0.041 ms",
    "64 bytes from 127.0.0.1: icmp_seq=3 ttl=64 time=0.019 ms",
    "",
    "--- 127.0.0.1 ping statistics ---",
    "3 packets transmitted, 2 received, 33.3333% packet loss, time 35ms",
    "rtt min/avg/max/mdev = 0.019/0.030/0.041/0.011 ms",
  ].join("\n");
  assertEquals(parsePing(text), { rttsMs: [0.041, 0.019], transmitted: 3 });
});

Deno.test("parseProcStat reads utime and stime after a command name with spaces and parentheses", () => {
  // /proc/self/stat of `head`, with the name changed to "a) (b".
  const text =
    "718 (a) (b) R 625 625 1107 0 -1 4194304 103 0 0 0 7 3 0 0 20 0 1 0 39318 2998272 411";
  assertEquals(parseProcStat(text), { user: 7, system: 3 });
  assertThrows(
    () => parseProcStat("718 head R"),
    Error,
    "Cannot parse /proc/<pid>/stat: no command name",
  );
});

Deno.test("parseProcStatusBytes reads a kB line in bytes", () => {
  const text = "Name:\thead\nVmHWM:\t    1916 kB\nVmRSS:\t    1900 kB\n";
  assertEquals(parseProcStatusBytes(text, "VmHWM"), 1916 * 1024);
  assertEquals(parseProcStatusBytes(text, "VmRSS"), 1900 * 1024);
  assertThrows(() => parseProcStatusBytes(text, "VmPeak"), Error, "no VmPeak line");
});

Deno.test("percentile uses the nearest rank; median averages the middle pair and skips NaN", () => {
  const values = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6];
  assertEquals(percentile(values, 50), 5);
  assertEquals(percentile(values, 99), 10);
  assertEquals(percentile(values, 10), 1);
  assertEquals(percentile([], 50), NaN);
  assertThrows(() => percentile(values, 0), RangeError, "percentile 0 is outside (0, 100]");
  assertEquals(median([3, 1, 2]), 2);
  assertEquals(median([4, 1, NaN, 2, 3]), 2.5);
  assertEquals(median([NaN]), NaN);
});

Deno.test("slope fits a least-squares line", () => {
  assertEquals(slope([0, 1, 2, 3], [5, 7, 9, 11]), 2);
  assertEquals(slope([0, 1, 2, 3], [4, 4, 4, 4]), 0);
  // Noise around a flat line: the fit, not the last minus the first.
  assertEquals(slope([0, 1, 2, 3], [1, 3, 1, 3]).toFixed(2), "0.40");
  assertEquals(slope([1], [1]), NaN);
  assertEquals(slope([2, 2], [1, 3]), NaN);
});

Deno.test("parseUdpRcvbufErrors reads the Udp line of /proc/net/snmp, not UdpLite", () => {
  const text = [
    "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors",
    "Udp: 36954 17 5 37642 5 0 0 0 0",
    "UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors",
    "UdpLite: 0 0 0 0 9 0 0 0 0",
  ].join("\n");
  assertEquals(parseUdpRcvbufErrors(text), 5);
  assertThrows(() => parseUdpRcvbufErrors("Ip: 1 2\n"), Error, "no Udp lines");
});

Deno.test("parseLinkDropped reads stats64.<direction>.dropped of `ip -s -j link`", () => {
  const text = JSON.stringify([{
    ifname: "mvpn0",
    stats64: {
      rx: { bytes: 1103, packets: 15, dropped: 2 },
      tx: { bytes: 114609233, packets: 86321, errors: 0, dropped: 237 },
    },
  }]);
  assertEquals(parseLinkDropped(text, "tx"), 237);
  assertEquals(parseLinkDropped(text, "rx"), 2);
  assertThrows(() => parseLinkDropped("[]", "tx"), Error, "no stats64.tx.dropped");
  assertThrows(() => parseLinkDropped("Device does not exist", "rx"), Error, "not JSON");
});

Deno.test("parseSoftnetDropped sums the dropped column of every CPU", () => {
  const text = [
    "0a467e53 00000000 00000003 00000000 00000000 00000000 00000000",
    "0a12a381 0000001f 00000003 00000000 00000000 00000000 00000000",
    "",
  ].join("\n");
  assertEquals(parseSoftnetDropped(text), 31);
  assertThrows(() => parseSoftnetDropped("1 xyz 3"), Error, '"xyz" is not hexadecimal');
});
