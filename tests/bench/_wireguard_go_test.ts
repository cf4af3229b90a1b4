/**
 * Tests of the wireguard-go build descriptions and the column plan, on the
 * `--version` output of Debian 12's wireguard-go 0.0.20220316 and of the
 * 0.0.20250522 release build.
 */
import { assertEquals } from "../support/assert.ts";
import { describeWireguardGoBuilds, parseWireguardGoVersion, planPaths } from "./_wireguard_go.ts";
import type { WireguardGoProbe } from "./_wireguard_go.ts";

/** `wireguard-go --version`, Debian 12 (the 2025 build prints the same with its version). */
const VERSION_2022 = [
  "wireguard-go v0.0.20220316",
  "",
  "Userspace WireGuard daemon for linux-amd64.",
  "Information available at https://www.wireguard.com.",
  "Copyright (C) Jason A. Donenfeld <Jason@zx2c4.com>.",
  "",
].join("\n");
const VERSION_2025 = VERSION_2022.replace("v0.0.20220316", "v0.0.20250522");

const debian: WireguardGoProbe = {
  path: "wireguard-go",
  command: "wireguard-go",
  versionOutput: VERSION_2022,
  haveWg: true,
};
const current: WireguardGoProbe = {
  path: "../shared/bin/wireguard-go-0.0.20250522",
  command: "/work/shared/bin/wireguard-go-0.0.20250522",
  versionOutput: VERSION_2025,
  haveWg: true,
};

Deno.test("parseWireguardGoVersion reads the first line's version without its v", () => {
  assertEquals(parseWireguardGoVersion(VERSION_2022), "0.0.20220316");
  assertEquals(parseWireguardGoVersion(VERSION_2025), "0.0.20250522");
  assertEquals(parseWireguardGoVersion("wireguard-go 1.2\n"), "1.2");
  assertEquals(parseWireguardGoVersion("boringtun 0.6.0\n"), undefined);
  assertEquals(parseWireguardGoVersion("wireguard-go\n"), undefined);
  assertEquals(parseWireguardGoVersion(""), undefined);
});

Deno.test("describeWireguardGoBuilds labels each runnable build with its version", () => {
  assertEquals(describeWireguardGoBuilds([debian, current]), [
    {
      path: "wireguard-go",
      label: "wireguard-go 0.0.20220316",
      command: "wireguard-go",
      version: "0.0.20220316",
    },
    {
      path: "../shared/bin/wireguard-go-0.0.20250522",
      label: "wireguard-go 0.0.20250522",
      command: "/work/shared/bin/wireguard-go-0.0.20250522",
      version: "0.0.20250522",
    },
  ]);
});

Deno.test("describeWireguardGoBuilds keeps a build that cannot run, with the reason", async (t) => {
  await t.step("missing binary", () => {
    const [b] = describeWireguardGoBuilds([
      { path: "/opt/wg/wireguard-go", notFound: "no such file", haveWg: true },
    ]);
    assertEquals(b, {
      path: "/opt/wg/wireguard-go",
      label: "wireguard-go /opt/wg/wireguard-go",
      problem: "/opt/wg/wireguard-go: no such file",
    });
  });
  await t.step("missing wg: the version is known, the build cannot be configured", () => {
    const [b] = describeWireguardGoBuilds([{ ...current, haveWg: false }]);
    assertEquals(b.label, "wireguard-go 0.0.20250522");
    assertEquals(b.command, undefined);
    assertEquals(b.problem, "wg not found (apt-get install wireguard-tools)");
  });
  await t.step("--version fails", () => {
    const [b] = describeWireguardGoBuilds([
      { path: "./wg-arm64", command: "/x/wg-arm64", versionError: "exit status 126", haveWg: true },
    ]);
    assertEquals(b.label, "wireguard-go ./wg-arm64");
    assertEquals(b.problem, "`./wg-arm64 --version` failed: exit status 126");
  });
  await t.step("--version names something else", () => {
    const [b] = describeWireguardGoBuilds([
      { path: "/bin/true", command: "/bin/true", versionOutput: "", haveWg: true },
    ]);
    assertEquals(
      b.problem,
      '`/bin/true --version` does not name a wireguard-go version (it printed "")',
    );
  });
});

Deno.test("describeWireguardGoBuilds makes labels unique", () => {
  const copy = { ...debian, path: "/usr/bin/wireguard-go", command: "/usr/bin/wireguard-go" };
  assertEquals(describeWireguardGoBuilds([debian, copy, current]).map((b) => b.label), [
    "wireguard-go 0.0.20220316 (wireguard-go)",
    "wireguard-go 0.0.20220316 (/usr/bin/wireguard-go)",
    "wireguard-go 0.0.20250522",
  ]);
  assertEquals(describeWireguardGoBuilds([current, current]).map((b) => b.label), [
    "wireguard-go 0.0.20250522 (../shared/bin/wireguard-go-0.0.20250522) #1",
    "wireguard-go 0.0.20250522 (../shared/bin/wireguard-go-0.0.20250522) #2",
  ]);
});

Deno.test("planPaths gives each wireguard-go build its own column and topology", () => {
  const builds = describeWireguardGoBuilds([
    debian,
    { path: "/nope", notFound: "no such file", haveWg: true },
  ]);
  const plans = planPaths(["direct", "wireguard-go", "datagram"], builds);
  assertEquals(plans.map((p) => [p.name, p.label, p.topologyId, p.wireguardGo?.path]), [
    ["direct", "direct", "bench-direct", undefined],
    ["wireguard-go", "wireguard-go 0.0.20220316", "bench-wg1", "wireguard-go"],
    ["wireguard-go", "wireguard-go /nope", "bench-wg2", "/nope"],
    ["datagram", "datagram", "bench-datagram", undefined],
  ]);
  // Not asked for: no column, whatever builds were given.
  assertEquals(planPaths(["stream"], builds).map((p) => p.label), ["stream"]);
});
