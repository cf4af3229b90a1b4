import { assert, assertEquals } from "../tests/support/assert.ts";
import { formatPrefix } from "../shared/packet/ip_address.ts";
import { parseClientConfig } from "./config.ts";

Deno.test("parseClientConfig() takes host, port and template from --relay", async (t) => {
  await t.step("host and port, default template", () => {
    const r = parseClientConfig(["--relay", "https://relay.example:4433"]);
    assert(r.ok === true);
    assertEquals([r.config.relayHost, r.config.relayPort, r.config.authority], [
      "relay.example",
      4433,
      "relay.example:4433",
    ]);
    assertEquals(r.config.template, "/.well-known/masque/ip/{target}/{ipproto}/");
    assertEquals([r.config.mode, r.config.tunName, r.config.mtu], ["datagram", "mvpn0", "auto"]);
    assertEquals(r.config.statusFile, undefined);
  });
  await t.step("--status-file", () => {
    const r = parseClientConfig(["--relay", "https://r", "--status-file", "/run/mvpn.json"]);
    assert(r.ok === true);
    assertEquals(r.config.statusFile, "/run/mvpn.json");
  });
  await t.step("IPv6 literal, default port 443, custom template", () => {
    const r = parseClientConfig(["--relay", "https://[fd00::1]/vpn/{target}/{ipproto}"]);
    assert(r.ok === true);
    assertEquals([r.config.relayHost, r.config.relayPort], ["fd00::1", 443]);
    assertEquals(r.config.template, "/vpn/{target}/{ipproto}");
    assertEquals(r.config.serverName, "fd00::1");
  });
});

Deno.test("parseClientConfig() takes routes from --route over TARGET_CIDRS", () => {
  const env = { TARGET_CIDRS: "198.18.1.0/24, fd00:0:0:2::/64" };
  const fromEnv = parseClientConfig(["--relay", "https://r"], env);
  assert(fromEnv.ok === true);
  assertEquals(fromEnv.config.routes.map(formatPrefix), ["198.18.1.0/24", "fd00:0:0:2::/64"]);
  const fromFlag = parseClientConfig(["--relay", "https://r", "--route", "10.0.0.0/8"], env);
  assert(fromFlag.ok === true);
  assertEquals(fromFlag.config.routes.map(formatPrefix), ["10.0.0.0/8"]);
});

Deno.test("parseClientConfig() reports bad input clearly", () => {
  const r = parseClientConfig(["--relay", "ftp://x", "--mtu", "9", "--mode", "tcp"], {
    TARGET_CIDRS: "not-a-prefix",
  });
  assert(r.ok === false);
  assertEquals(r.errors.length, 4);
  assertEquals(r.errors[0], '--relay must be an https URL, not "ftp:"');
  assertEquals(r.errors[1], '--mtu must be an integer from 1280 to 65535, not "9"');
  assert(r.errors[2].startsWith("TARGET_CIDRS: "), r.errors[2]);
  assertEquals(r.errors[3], '--mode must be datagram or stream, not "tcp"');
});
