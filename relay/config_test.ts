import { assert, assertEquals } from "../tests/support/assert.ts";
import { formatIp, formatPrefix } from "../shared/ip/ip_address.ts";
import { forwardingWarning, parseRelayConfig, RELAY_HELP } from "./config.ts";
import { DEFAULT_RELAY_LIMITS } from "./limits.ts";

/** The relay's parser with `--no-auth`, which every test here but the last needs. */
const parse = (args: string[], env?: Record<string, string>) =>
  parseRelayConfig([...args, "--no-auth"], env);

Deno.test("parseRelayConfig() applies defaults", () => {
  const result = parse(["--dev-certs", "./dev-certs"]);
  assert(result.ok === true);
  const c = result.config;
  assertEquals([c.host, c.port, c.tunName, c.mtu, c.nat], ["::", 4433, "mvpn-relay", 1500, false]);
  assertEquals(formatPrefix(c.pool4!), "10.100.0.0/24");
  assertEquals(formatPrefix(c.pool6!), "fd6d:6173:7175::/64");
  assertEquals(c.routes.map(formatPrefix), ["0.0.0.0/0", "::/0"]);
  assertEquals(c.idleTimeoutMs, 30_000);
  assert(Object.isFrozen(c));
});

Deno.test("parseRelayConfig() reads flags over environment", () => {
  const result = parse(
    [
      "--cert",
      "c.pem",
      "--key",
      "k.pem",
      "--port",
      "443",
      "--route",
      "198.18.0.0/15",
      "--log-level",
      "warn",
    ],
    { MASQUE_LOG_LEVEL: "debug" },
  );
  assert(result.ok === true);
  assertEquals(result.config.port, 443);
  assertEquals(result.config.logLevel, "warn");
  assertEquals(result.config.routes.map(formatPrefix), ["198.18.0.0/15"]);
  const env = parse(["--dev-certs", "d"], { MASQUE_LOG_LEVEL: "debug" });
  assert(env.ok === true);
  assertEquals(env.config.logLevel, "debug");
});

Deno.test("parseRelayConfig() lists every error", () => {
  const result = parse([
    "--port",
    "70000",
    "--pool4",
    "fd00::/64",
    "--pool6",
    "10.0.0.0/8",
    "--cert",
    "c.pem",
    "--tun",
    "this-name-is-far-too-long",
  ]);
  assert(result.ok === false);
  assertEquals(result.errors, [
    '--port must be an integer from 1 to 65535, not "70000"',
    '--pool4 must be an IPv4 prefix, not "fd00::/64"',
    '--pool6 must be an IPv6 prefix, not "10.0.0.0/8"',
    `--tun must be 1-15 letters, digits, '-', '_' or '.', not "this-name-is-far-too-long"`,
    "--cert and --key go together",
  ]);
});

Deno.test("parseRelayConfig() rejects unknown flags and asks for certificates", () => {
  const unknown = parse(["--bogus"]);
  assert(unknown.ok === false);
  assert(unknown.errors[0].includes("--bogus"), unknown.errors[0]);
  const none = parse([]);
  assert(none.ok === false);
  assertEquals(none.errors, [
    "Give --cert and --key, or --dev-certs DIR for a development certificate",
  ]);
  assertEquals(parse(["-h"]).ok, "help");
});

Deno.test("parseRelayConfig() accepts every --template form of RFC 9484 §3", async (t) => {
  for (
    const template of [
      "/vpn",
      "https://proxy:4433/vpn",
      "/masque{?target,ipproto}",
      "/masque/ip?t={target}&i={ipproto}",
      "/.well-known/masque/ip/{target}/{ipproto}/",
      "/?user=bob",
    ]
  ) {
    await t.step(template, () => {
      const result = parse(["--dev-certs", "d", "--template", template]);
      assert(result.ok === true, JSON.stringify(result));
      assertEquals(result.config.template, template);
    });
  }
  await t.step("an invalid template, with the rule it breaks", () => {
    const result = parse(["--dev-certs", "d", "--template", "/ip/{target}/{dns}/"]);
    assert(result.ok === false);
    assertEquals(result.errors, [
      `--template: Invalid URI template "/ip/{target}/{dns}/": {dns}: unsupported variable "dns" (only target and ipproto, RFC 9484 §4.6, have a value here)`,
    ]);
  });
});

Deno.test("parseRelayConfig() turns one address family off with --pool4 none or --pool6 none", async (t) => {
  await t.step("--pool6 none: IPv4 only, default routes IPv4 only", () => {
    const result = parse(["--dev-certs", "d", "--pool6", "none"]);
    assert(result.ok === true, JSON.stringify(result));
    assertEquals(result.config.pool6, undefined);
    assertEquals(formatPrefix(result.config.pool4!), "10.100.0.0/24");
    assertEquals(result.config.routes.map(formatPrefix), ["0.0.0.0/0"]);
  });
  await t.step("--pool4 none: IPv6 only", () => {
    const result = parse(["--dev-certs", "d", "--pool4", "none"]);
    assert(result.ok === true, JSON.stringify(result));
    assertEquals(result.config.pool4, undefined);
    assertEquals(result.config.routes.map(formatPrefix), ["::/0"]);
  });
  await t.step("both off", () => {
    const result = parse(["--dev-certs", "d", "--pool4", "none", "--pool6", "none"]);
    assert(result.ok === false);
    assertEquals(result.errors, ["--pool4 and --pool6 cannot both be none"]);
  });
  await t.step("a route of a family without a pool", () => {
    const result = parse([
      "--dev-certs",
      "d",
      "--pool6",
      "none",
      "--route",
      "198.18.0.0/15",
      "--route",
      "fd00::/8",
    ]);
    assert(result.ok === false);
    assertEquals(result.errors, [
      "--route fd00::/8 is IPv6, but --pool6 is none: clients get no IPv6 address to use it",
    ]);
  });
});

Deno.test("parseRelayConfig() reads the limits, with their defaults, and checks them", () => {
  const defaults = parse(["--dev-certs", "d"]);
  assert(defaults.ok === true);
  assertEquals(defaults.config.limits, DEFAULT_RELAY_LIMITS);
  assert(Object.isFrozen(defaults.config.limits));
  const set = parse([
    ...["--dev-certs", "d", "--max-connections", "100"],
    ...["--max-connections-per-source", "3", "--max-sessions-per-connection", "2"],
    ...["--auth-failures", "5", "--auth-backoff", "30", "--auth-failure-sources", "99"],
    ...["--max-handshakes", "10", "--max-requests-per-connection", "50", "--max-uni-streams", "5"],
    ...["--sessionless-timeout", "2", "--address-request-rate", "1"],
    ...["--address-request-burst", "2", "--max-pending-address-requests", "9"],
    ...["--max-queued-bytes", "65536"],
  ]);
  assert(set.ok === true);
  assertEquals(set.config.limits, {
    maxConnections: 100,
    maxConnectionsPerSource: 3,
    maxHandshakes: 10,
    maxRequestsPerConnection: 50,
    maxUnidirectionalStreams: 5,
    sessionlessTimeoutMs: 2000,
    addressRequestsPerSecond: 1,
    addressRequestBurst: 2,
    maxPendingAddressRequests: 9,
    maxSessionsPerConnection: 2,
    authFailuresPerMinute: 5,
    authBackoffMs: 30_000,
    authFailureSources: 99,
    maxQueuedBytes: 65536,
  });
  const bad = parse([
    ...["--dev-certs", "d", "--max-connections", "0", "--max-uni-streams", "2"],
    ...["--sessionless-timeout", "x"],
  ]);
  assert(bad.ok === false);
  assertEquals(bad.errors, [
    '--max-connections must be an integer from 1 to 1000000, not "0"',
    '--sessionless-timeout must be an integer from 1 to 3600, not "x"',
    "--max-uni-streams must be at least 3 (control and two QPACK streams)",
  ]);
  // Every limit is in --help.
  const flags = [
    ...["--max-connections", "--max-connections-per-source", "--max-handshakes"],
    ...["--max-requests-per-connection", "--max-uni-streams", "--sessionless-timeout"],
    ...["--address-request-rate", "--address-request-burst", "--max-pending-address-requests"],
  ];
  for (const flag of flags) {
    assert(RELAY_HELP.includes(flag), flag);
  }
});

Deno.test("parseRelayConfig() reads the firewall options", async (t) => {
  await t.step("defaults: nothing on the relay host, no client to client", () => {
    const result = parse(["--dev-certs", "d"]);
    assert(result.ok === true);
    assertEquals(result.config.allowRelayHost, []);
    assertEquals(result.config.allowClientToClient, false);
  });
  await t.step("repeated --allow-relay-host and --allow-client-to-client", () => {
    const result = parse([
      "--dev-certs",
      "d",
      "--allow-relay-host",
      "udp/53",
      "--allow-relay-host",
      "tcp/8000-8080",
      "--allow-relay-host",
      "ping",
      "--allow-client-to-client",
    ]);
    assert(result.ok === true);
    assertEquals(result.config.allowRelayHost, [
      { protocol: "udp", firstPort: 53, lastPort: 53 },
      { protocol: "tcp", firstPort: 8000, lastPort: 8080 },
      { protocol: "ping" },
    ]);
    assertEquals(result.config.allowClientToClient, true);
    assert(Object.isFrozen(result.config.allowRelayHost));
  });
  await t.step("every bad service is reported", () => {
    const result = parse([
      "--dev-certs",
      "d",
      "--allow-relay-host",
      "icmp",
      "--allow-relay-host",
      "udp/0",
    ]);
    assert(result.ok === false);
    assertEquals(result.errors, [
      '--allow-relay-host "icmp": expected udp/PORT, tcp/PORT, udp/FIRST-LAST, tcp/FIRST-LAST or ping',
      '--allow-relay-host "udp/0": port 0 is outside 1..65535',
    ]);
  });
});

Deno.test("parseRelayConfig() reads --tun-offload, on by default", () => {
  const on = parse(["--dev-certs", "./dev-certs"]);
  assert(on.ok === true);
  assertEquals(on.config.tunOffload, true);
  const off = parse(["--dev-certs", "./dev-certs", "--tun-offload", "off"]);
  assert(off.ok === true);
  assertEquals(off.config.tunOffload, false);
  const bad = parse(["--dev-certs", "./dev-certs", "--tun-offload", "yes"]);
  assert(bad.ok === false);
  assertEquals(bad.errors, ['--tun-offload must be on or off, not "yes"']);
});

Deno.test("parseRelayConfig() reads --dns and --dns-search", async (t) => {
  await t.step("none by default", () => {
    const result = parse([
      "--dev-certs",
      "d",
    ]);
    assert(result.ok === true);
    assertEquals([result.config.dnsServers, result.config.dnsSearch], [[], []]);
  });
  await t.step("repeated, both families", () => {
    const result = parse([
      "--dev-certs",
      "d",
      "--dns",
      "10.100.0.1",
      "--dns",
      "fd6d:6173:7175::1",
      "--dns-search",
      "corp.example",
    ]);
    assert(result.ok === true);
    assertEquals(result.config.dnsServers.map(formatIp), ["10.100.0.1", "fd6d:6173:7175::1"]);
    assertEquals(result.config.dnsSearch, ["corp.example"]);
  });
  await t.step("every mistake is reported", () => {
    const result = parse([
      "--dev-certs",
      "d",
      "--pool6",
      "none",
      "--dns",
      "dns.example",
      "--dns",
      "fd00::53",
      "--dns-search",
      "a..b",
    ]);
    assert(result.ok === false);
    assertEquals(result.errors, [
      '--dns must be an IP address, not "dns.example"',
      '--dns-search "a..b" has an empty label',
    ]);
    const family = parse([
      "--dev-certs",
      "d",
      "--pool6",
      "none",
      "--dns",
      "fd00::53",
    ]);
    assert(family.ok === false);
    assertEquals(family.errors, [
      "--dns fd00::53 is IPv6, but --pool6 is none: clients could not reach it",
    ]);
    const alone = parse([
      "--dev-certs",
      "d",
      "--dns-search",
      "corp.example",
    ]);
    assert(alone.ok === false);
    assertEquals(alone.errors, ["--dns-search needs --dns"]);
  });
});

Deno.test("parseRelayConfig() needs --users or --no-auth, and reads --decoy", async (t) => {
  await t.step("neither: an error that says how to make a users file", () => {
    const result = parseRelayConfig(["--dev-certs", "d"]);
    assert(result.ok === false);
    assertEquals(result.errors, [
      "Give --users FILE (make one with: deno task users add NAME --users FILE), or --no-auth " +
      "to run an open relay",
    ]);
  });
  await t.step("both: an error", () => {
    const result = parseRelayConfig(["--dev-certs", "d", "--users", "u.json", "--no-auth"]);
    assert(result.ok === false);
    assertEquals(result.errors, ["Give either --users or --no-auth, not both"]);
  });
  await t.step("--users and --decoy", () => {
    const result = parseRelayConfig(["--dev-certs", "d", "--users", "u.json", "--decoy", "www"]);
    assert(result.ok === true);
    assertEquals(
      [result.config.usersFile, result.config.noAuth, result.config.decoyDir],
      ["u.json", false, "www"],
    );
  });
  await t.step("--no-auth", () => {
    const result = parseRelayConfig(["--dev-certs", "d", "--no-auth"]);
    assert(result.ok === true);
    assertEquals([result.config.usersFile, result.config.noAuth], [undefined, true]);
  });
});

Deno.test("parseRelayConfig() warns about a pool with host bits and more sessions than addresses", () => {
  const result = parseRelayConfig([
    "--dev-certs",
    "d",
    "--no-auth",
    "--pool4",
    "10.0.0.1/24",
    "--pool6",
    "fd00:1::/121",
    "--max-sessions",
    "300",
  ]);
  assert(result.ok === true);
  assertEquals(formatPrefix(result.config.pool4!), "10.0.0.0/24");
  assertEquals(result.warnings, [
    "--pool4 10.0.0.1/24 has host bits set: the pool is 10.0.0.0/24 (write it that way to " +
    "silence this warning)",
    "--max-sessions 300 is more than --pool6 fd00:1::/121 can serve: it has 126 client " +
    'addresses, so at most 126 sessions; more get 503 "address pool exhausted"',
  ]);
  // The default session limit with a small pool is the documented pool limit: no warning.
  const quiet = parseRelayConfig(["--dev-certs", "d", "--no-auth", "--pool4", "10.0.0.0/28"]);
  assert(quiet.ok === true);
  assertEquals(quiet.warnings, []);
});

Deno.test("forwardingWarning() speaks up for a relay without --nat on a host that does not forward", () => {
  const result = parseRelayConfig(["--dev-certs", "d", "--no-auth"]);
  assert(result.ok === true);
  const config = result.config;
  assertEquals(
    forwardingWarning(config, { ipv4: false, ipv6: true }),
    "net.ipv4.ip_forward is 0 and --nat is not given: clients' packets reach the relay's TUN " +
      "and go no further. Give --nat, or turn forwarding on (sysctl -w net.ipv4.ip_forward=1) " +
      "and route the pools back here",
  );
  assertEquals(forwardingWarning(config, { ipv4: true, ipv6: true }), undefined);
  assertEquals(
    forwardingWarning({ ...config, nat: true }, { ipv4: false, ipv6: false }),
    undefined,
  );
  assertEquals(
    forwardingWarning({ ...config, pool6: undefined }, { ipv4: true, ipv6: false }),
    undefined,
  );
});

Deno.test("parseRelayConfig() puts the TCP listener on the UDP port, another port, or none", () => {
  const same = parseRelayConfig(["--dev-certs", "d", "--no-auth", "--port", "8443"]);
  assert(same.ok === true);
  assertEquals(same.config.tcpPort, 8443);
  const other = parseRelayConfig(["--dev-certs", "d", "--no-auth", "--tcp-port", "443"]);
  assert(other.ok === true);
  assertEquals([other.config.port, other.config.tcpPort], [4433, 443]);
  const none = parseRelayConfig(["--dev-certs", "d", "--no-auth", "--no-tcp"]);
  assert(none.ok === true);
  assertEquals(none.config.tcpPort, undefined);
  const both = parseRelayConfig(["--dev-certs", "d", "--no-auth", "--no-tcp", "--tcp-port", "443"]);
  assert(both.ok === false);
  assertEquals(both.errors, ["Give either --tcp-port or --no-tcp, not both"]);
});
