import { assertEquals, assertThrows } from "../tests/support/assert.ts";
import { CounterRegistry } from "./counters.ts";
import { formatNumber, renderPrometheus } from "./metrics_text.ts";

Deno.test("renderPrometheus() writes HELP, TYPE and one line per sample, labels escaped", () => {
  const registry = new CounterRegistry();
  const packets = registry.counter("tunnel_packets_total", {
    help: "IP packets passed\nby direction",
    labels: [{ name: "direction", values: ["outbound", "inbound"] }],
  });
  packets.child("inbound").value += 3;
  const users = registry.counter("relay_user_bytes_total", {
    help: "Bytes per user",
    labels: [{ name: "user", cap: 2 }, { name: "direction", values: ["in"] }],
  });
  users.child('a"b\\c', "in").value = 10;
  users.child("bob", "in").value = 1;
  users.child("carol", "in").value = 2; // past the cap: "other"
  registry.gauge("relay_sessions", { help: "Sessions open", collect: () => 2 });
  const setup = registry.histogram("relay_session_setup_seconds", {
    help: "Request to session",
    buckets: [0.01, 0.1, 1],
  });
  setup.observe(0.005);
  setup.observe(0.05);
  setup.observe(5);
  assertEquals(
    renderPrometheus(registry),
    `# HELP tunnel_packets_total IP packets passed\\nby direction
# TYPE tunnel_packets_total counter
tunnel_packets_total{direction="outbound"} 0
tunnel_packets_total{direction="inbound"} 3
# HELP relay_user_bytes_total Bytes per user
# TYPE relay_user_bytes_total counter
relay_user_bytes_total{user="a\\"b\\\\c",direction="in"} 10
relay_user_bytes_total{user="bob",direction="in"} 1
relay_user_bytes_total{user="other",direction="in"} 2
# HELP relay_sessions Sessions open
# TYPE relay_sessions gauge
relay_sessions 2
# HELP relay_session_setup_seconds Request to session
# TYPE relay_session_setup_seconds histogram
relay_session_setup_seconds_bucket{le="0.01"} 1
relay_session_setup_seconds_bucket{le="0.1"} 2
relay_session_setup_seconds_bucket{le="1"} 2
relay_session_setup_seconds_bucket{le="+Inf"} 3
relay_session_setup_seconds_sum 5.055
relay_session_setup_seconds_count 3
`,
  );
  assertEquals(registry.snapshot().relay_session_setup_seconds, {
    count: 3,
    sum: 5.055,
    buckets: { "0.01": 1, "0.1": 2, "1": 2, "+Inf": 3 },
  });
});

Deno.test("formatNumber() writes what Prometheus reads", () => {
  assertEquals([NaN, Infinity, -Infinity, 1.5, 0].map(formatNumber), [
    "NaN",
    "+Inf",
    "-Inf",
    "1.5",
    "0",
  ]);
});

Deno.test("CounterRegistry.histogram() checks its bounds and its name's shape", () => {
  const registry = new CounterRegistry();
  assertThrows(
    () => registry.histogram("x_seconds", { help: "", buckets: [1, 1] }),
    Error,
    "ascending",
  );
  registry.histogram("x_seconds", { help: "", buckets: [1, 2] });
  registry.histogram("x_seconds", { help: "", buckets: [1, 2] });
  assertThrows(() => registry.counter("x_seconds", { help: "" }), Error, "another shape");
  assertThrows(
    () => registry.histogram("x_seconds", { help: "", buckets: [1] }),
    Error,
    "another shape",
  );
});
