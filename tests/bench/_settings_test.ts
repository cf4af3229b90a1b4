/** Tests of the benchmark's command-line parser. */
import { assertEquals, assertThrows } from "../support/assert.ts";
import { parseSettings } from "./_settings.ts";
import type { Settings } from "./_settings.ts";

function parse(args: string[]): Settings {
  const settings = parseSettings(args, "/repo/");
  if (settings === "help") throw new Error("unexpected help");
  return settings;
}

Deno.test("parseSettings: --wireguard-go is repeatable, in order, defaulting to the one in PATH", () => {
  assertEquals(parse([]).wireguardGo, ["wireguard-go"]);
  assertEquals(
    parse([
      ...["--wireguard-go", "/usr/bin/wireguard-go"],
      ...["--wireguard-go", "../shared/bin/wireguard-go-0.0.20250522"],
    ]).wireguardGo,
    ["/usr/bin/wireguard-go", "../shared/bin/wireguard-go-0.0.20250522"],
  );
  assertEquals(parse(["--wireguard-go=a", "--wireguard-go=a"]).wireguardGo, ["a", "a"]);
  assertThrows(() => parse(["--wireguard-go", " "]), Error, "--wireguard-go: empty path");
});

Deno.test("parseSettings: --quick defaults, --paths order and errors", () => {
  const quick = parse(["--quick", "--paths", "stream,direct"]);
  assertEquals(
    [quick.repeats, quick.tcpSeconds, quick.udpSeconds, quick.sessions, quick.chart],
    [1, 3, 1, 200, undefined],
  );
  assertEquals(quick.paths, ["direct", "stream"]);
  const full = parse([]);
  assertEquals(full.paths, ["direct", "wireguard-go", "datagram", "stream", "h2", "webtransport"]);
  assertEquals(full.chart, "/repo/docs/bench-chart.svg");
  assertEquals(parse(["--paths", "datagram"]).chart, undefined, "a subset keeps the chart");
  assertEquals(parse(["--paths", "datagram", "--chart", "c.svg"]).chart, "c.svg");
  assertThrows(() => parse(["--paths", "direct,ipsec"]), Error, '--paths: unknown path "ipsec"');
  assertThrows(() => parse(["--repeats", "0"]), Error, "--repeats must be an integer >= 1");
  assertThrows(() => parse(["--wg", "x"]), Error, "Unknown option '--wg'");
  assertEquals(parseSettings(["-h"], "/repo/"), "help");
});

Deno.test("parseSettings: --clients and --tun-offload", () => {
  const defaults = parse([]);
  assertEquals([defaults.clients, defaults.tunOffload], [4, "on"]);
  const set = parse(["--clients", "0", "--tun-offload", "off"]);
  assertEquals([set.clients, set.tunOffload], [0, "off"]);
  assertThrows(() => parse(["--clients", "9"]), Error, "--clients must be at most 8");
  assertThrows(
    () => parse(["--tun-offload", "maybe"]),
    Error,
    '--tun-offload must be on or off, not "maybe"',
  );
});
