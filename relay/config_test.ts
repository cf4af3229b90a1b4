import { assert, assertEquals } from "../tests/support/assert.ts";
import { formatPrefix } from "../shared/packet/ip_address.ts";
import { parseRelayConfig } from "./config.ts";

Deno.test("parseRelayConfig() applies defaults", () => {
  const result = parseRelayConfig(["--dev-certs", "./dev-certs"]);
  assert(result.ok === true);
  const c = result.config;
  assertEquals([c.host, c.port, c.tunName, c.mtu, c.nat], ["::", 4433, "mvpn-relay", 1500, false]);
  assertEquals(formatPrefix(c.pool4), "10.100.0.0/24");
  assertEquals(c.routes.map(formatPrefix), ["0.0.0.0/0", "::/0"]);
  assertEquals(c.idleTimeoutMs, 30_000);
  assert(Object.isFrozen(c));
});

Deno.test("parseRelayConfig() reads flags over environment", () => {
  const result = parseRelayConfig(
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
  const env = parseRelayConfig(["--dev-certs", "d"], { MASQUE_LOG_LEVEL: "debug" });
  assert(env.ok === true);
  assertEquals(env.config.logLevel, "debug");
});

Deno.test("parseRelayConfig() lists every error", () => {
  const result = parseRelayConfig([
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
  const unknown = parseRelayConfig(["--bogus"]);
  assert(unknown.ok === false);
  assert(unknown.errors[0].includes("--bogus"), unknown.errors[0]);
  const none = parseRelayConfig([]);
  assert(none.ok === false);
  assertEquals(none.errors, [
    "Give --cert and --key, or --dev-certs DIR for a development certificate",
  ]);
  assertEquals(parseRelayConfig(["-h"]).ok, "help");
});
