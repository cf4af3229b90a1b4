import { assert, assertEquals } from "../tests/support/assert.ts";
import { formatPrefix } from "../shared/ip/ip_address.ts";
import { expandConnectIpPath } from "../shared/masque/connect_ip_request.ts";
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
    assertEquals(
      r.config.template,
      "https://relay.example:4433/.well-known/masque/ip/{target}/{ipproto}/",
    );
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
    assertEquals(r.config.template, "https://[fd00::1]/vpn/{target}/{ipproto}");
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

Deno.test("parseClientConfig() takes the whole --relay URL as the URI template (RFC 9484 §3)", async (t) => {
  const cases: [string, { host: string; port: number; authority: string; path: string }][] = [
    // Without variables: connect-ip-go's integration proxy serves /vpn.
    ["https://proxy:4433/vpn", {
      host: "proxy",
      port: 4433,
      authority: "proxy:4433",
      path: "/vpn",
    }],
    // Form-style query: the braces are not a path, URL parsing would lose them.
    ["https://relay.example/masque{?target,ipproto}", {
      host: "relay.example",
      port: 443,
      authority: "relay.example",
      path: "/masque?target=*&ipproto=*",
    }],
    ["https://proxy.example.org:4443/masque/ip?t={target}&i={ipproto}", {
      host: "proxy.example.org",
      port: 4443,
      authority: "proxy.example.org:4443",
      path: "/masque/ip?t=*&i=*",
    }],
    ["https://masque.example.org/?user=bob", {
      host: "masque.example.org",
      port: 443,
      authority: "masque.example.org",
      path: "/?user=bob",
    }],
    // RFC 9110 §4.2.3: the default port is left out of :authority, the host lowercased.
    ["https://Relay.Example:443/vpn", {
      host: "relay.example",
      port: 443,
      authority: "relay.example",
      path: "/vpn",
    }],
    // Only host and port: the default template (RFC 9484 §3).
    ["https://[fd00::1]:4433/", {
      host: "fd00::1",
      port: 4433,
      authority: "[fd00::1]:4433",
      path: "/.well-known/masque/ip/*/*/",
    }],
  ];
  for (const [relay, expected] of cases) {
    await t.step(relay, () => {
      const r = parseClientConfig(["--relay", relay]);
      assert(r.ok === true, JSON.stringify(r));
      const { relayHost, relayPort, authority } = r.config;
      const path = expandConnectIpPath(r.config.template, {
        target: { kind: "any" },
        ipProtocol: "any",
      });
      assertEquals({ host: relayHost, port: relayPort, authority, path }, expected);
    });
  }
});

Deno.test("parseClientConfig() refuses --relay templates RFC 9484 §3 forbids, clearly", async (t) => {
  const cases: [string, string][] = [
    ["http://relay.example/vpn", '--relay must be an https URL, not "http:"'],
    [
      "https://relay.example/{user}",
      `--relay: Invalid URI template "https://relay.example/{user}": {user}: unsupported variable "user" (only target and ipproto, RFC 9484 §4.6, have a value here)`,
    ],
    [
      "https://relay.example/ip/{+target}/",
      `--relay: Invalid URI template "https://relay.example/ip/{+target}/": {+target}: the "+" operator is not allowed (RFC 9484 §3)`,
    ],
    [
      "https://relay.example/ip/{target",
      `--relay: Invalid URI template "https://relay.example/ip/{target": '{' without '}'`,
    ],
    [
      "https://user@relay.example/vpn",
      '--relay must not carry user information, not "user@relay.example"',
    ],
    [
      "https://relay.example:99999/vpn",
      '--relay has an invalid host or port: "relay.example:99999"',
    ],
    [
      "relay.example:4433",
      '--relay must be a URL like https://relay.example:4433, not "relay.example:4433"',
    ],
  ];
  for (const [relay, error] of cases) {
    await t.step(relay, () => {
      const r = parseClientConfig(["--relay", relay]);
      assert(r.ok === false, JSON.stringify(r));
      assertEquals(r.errors, [error]);
    });
  }
});

Deno.test("parseClientConfig() reads --tun-offload, on by default", () => {
  const on = parseClientConfig(["--relay", "https://relay.example"]);
  assert(on.ok === true);
  assertEquals(on.config.tunOffload, true);
  const off = parseClientConfig(["--relay", "https://relay.example", "--tun-offload", "off"]);
  assert(off.ok === true);
  assertEquals(off.config.tunOffload, false);
  const bad = parseClientConfig(["--relay", "https://relay.example", "--tun-offload", "maybe"]);
  assert(bad.ok === false);
  assertEquals(bad.errors, ['--tun-offload must be on or off, not "maybe"']);
});
