import { assert, assertEquals } from "../tests/support/assert.ts";
import { formatIp, formatPrefix } from "../shared/ip/ip_address.ts";
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

Deno.test("parseClientConfig() reads the full tunnel's options", async (t) => {
  await t.step(
    "defaults: table 51900, priorities from 32760, mark 0xcabc, kill switch auto",
    () => {
      const r = parseClientConfig(["--relay", "https://r"]);
      assert(r.ok === true);
      assertEquals(r.config.fullTunnel, { table: 51900, priority: 32760, fwmark: 0xcabc });
      assertEquals(r.config.killSwitch, "auto");
      assertEquals(r.config.allowLan, []);
      assertEquals(r.config.dns, "relay");
      assertEquals(r.config.stateDir, "/var/lib/masque-vpn");
    },
  );
  await t.step("every option given", () => {
    const r = parseClientConfig([
      "--relay",
      "https://r",
      "--routing-table",
      "100",
      "--rule-priority",
      "1000",
      "--fwmark",
      "0x10",
      "--kill-switch",
      "on",
      "--allow-lan",
      "192.168.1.0/24",
      "--allow-lan",
      "local",
      "--dns",
      "198.18.1.53",
      "--dns",
      "fd00::53",
      "--state-dir",
      "/tmp/state",
    ]);
    assert(r.ok === true);
    assertEquals(r.config.fullTunnel, { table: 100, priority: 1000, fwmark: 16 });
    assertEquals(r.config.killSwitch, "on");
    // Given first, then the local ranges; 192.168.0.0/16 is listed once.
    assertEquals(r.config.allowLan.map(formatPrefix).slice(0, 3), [
      "192.168.1.0/24",
      "10.0.0.0/8",
      "172.16.0.0/12",
    ]);
    assertEquals(r.config.allowLan.length, 9);
    assert(Array.isArray(r.config.dns));
    assertEquals(r.config.dns.map(formatIp), ["198.18.1.53", "fd00::53"]);
    assertEquals(r.config.stateDir, "/tmp/state");
  });
  await t.step("--dns off", () => {
    const r = parseClientConfig(["--relay", "https://r", "--dns", "off"]);
    assert(r.ok === true);
    assertEquals(r.config.dns, "off");
  });
  await t.step("mistakes, each with its reason", () => {
    const r = parseClientConfig([
      "--relay",
      "https://r",
      "--kill-switch",
      "yes",
      "--allow-lan",
      "lan",
      "--dns",
      "dns.example",
      "--fwmark",
      "0xfffffffff",
      "--routing-table",
      "254",
    ]);
    assert(r.ok === false);
    assertEquals(r.errors, [
      '--kill-switch must be auto, on or off, not "yes"',
      '--allow-lan must be local or an IP prefix such as 192.168.1.0/24, not "lan"',
      '--dns must be an IP address or off, not "dns.example"',
      '--fwmark must be an integer from 1 to 4294967295 (or 0x1..0xffffffff), not "0xfffffffff"',
    ]);
    const table = parseClientConfig(["--relay", "https://r", "--routing-table", "254"]);
    assert(table.ok === false);
    assertEquals(table.errors, [
      "routing table 254 must be 1..4294967295 and not 253..255 (default, main, local)",
    ]);
    const off = parseClientConfig(["--relay", "https://r", "--dns", "off", "--dns", "1.1.1.1"]);
    assert(off.ok === false);
    assertEquals(off.errors, ["--dns off cannot be combined with addresses"]);
  });
});

Deno.test("parseClientConfig() reads credentials, and refuses a token on the command line", async (t) => {
  const relay = ["--relay", "https://relay.example"];
  const token = "q3Xk0aZB.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde";
  await t.step("none by default", () => {
    const r = parseClientConfig(relay);
    assert(r.ok === true);
    assertEquals(r.config.credentials, { kind: "none" });
  });
  await t.step("--token-file", () => {
    const r = parseClientConfig([...relay, "--token-file", "/etc/masque/token"]);
    assert(r.ok === true);
    assertEquals(r.config.credentials, { kind: "token-file", file: "/etc/masque/token" });
  });
  await t.step("MASQUE_TOKEN", () => {
    const r = parseClientConfig(relay, { MASQUE_TOKEN: `${token}\n` });
    assert(r.ok === true);
    assertEquals(r.config.credentials, { kind: "token", token });
  });
  await t.step("MASQUE_TOKEN that is not a token: named, not quoted", () => {
    const r = parseClientConfig(relay, { MASQUE_TOKEN: "hunter2" });
    assert(r.ok === false);
    assertEquals(r.errors, [
      "MASQUE_TOKEN does not hold a token (<id>.<secret>, as deno task users add prints)",
    ]);
  });
  await t.step("--token on the command line is refused, without repeating it", () => {
    const r = parseClientConfig([...relay, "--token", token]);
    assert(r.ok === false);
    assertEquals(r.errors, [
      "--token is refused: a command line is visible to every user of this machine (ps); " +
      "give the token in a file with --token-file FILE, or in MASQUE_TOKEN",
    ]);
    assert(!r.errors.join("").includes(token));
  });
  await t.step("--user with --password-file", () => {
    const r = parseClientConfig([...relay, "--user", "bob", "--password-file", "bob.pw"]);
    assert(r.ok === true);
    assertEquals(r.config.credentials, { kind: "basic", user: "bob", passwordFile: "bob.pw" });
  });
  await t.step("--user alone, or two ways at once", () => {
    const alone = parseClientConfig([...relay, "--user", "bob"]);
    assert(alone.ok === false);
    assertEquals(alone.errors, ["--user and --password-file go together"]);
    const two = parseClientConfig([
      ...relay,
      "--token-file",
      "t",
      "--user",
      "b",
      "--password-file",
      "p",
    ]);
    assert(two.ok === false);
    assertEquals(two.errors, ["Give one of --token-file, --user, not several"]);
  });
});
