import { assert, assertEquals } from "../tests/support/assert.ts";
import { formatBytes, formatDuration, renderStatus, STATUS_WIDTH } from "./status_view.ts";

const NOW = Date.parse("2026-12-01T12:00:00.000Z");

Deno.test("renderStatus() shows a relay's sessions like wg show, in 80 columns", () => {
  const text = renderStatus({
    role: "relay",
    draining: false,
    sessions: [{
      id: 3,
      remote: "198.18.0.2:51234",
      user: "anonymous",
      transport: "h3",
      mode: "datagram",
      addresses: ["198.18.100.2/32", "fd00:100::2/128"],
      openedAt: "2026-12-01T11:58:55.000Z",
      lastPacketAt: "2026-12-01T11:59:59.000Z",
      droppedByPolicy: 2,
      tooBig: 1,
      queueFull: 0,
      packetsIn: 1234,
      packetsOut: 2345,
      bytesIn: 1258291,
      bytesOut: 3565158,
    }],
    counters: {
      tunnel_bytes_total: { outbound: 3565158, inbound: 1258291 },
      tunnel_packets_dropped_total: { outbound: { "no session": 4 }, inbound: { "relay host": 2 } },
    },
  }, NOW);
  assertEquals(
    text,
    `relay: serving, 1 session
  traffic: 1.20 MiB from clients, 3.40 MiB to clients
  drops: 2 from clients, 4 to clients

session: 3
  user: anonymous
  endpoint: 198.18.0.2:51234
  addresses: 198.18.100.2/32, fd00:100::2/128
  mode: datagram over h3
  age: 1 minute, 5 seconds
  last packet received: 1 second ago
  transfer: 1.20 MiB received, 3.40 MiB sent
  packets: 1234 received, 2345 sent
  drops: 3 (policy 2, too big 1, queue full 0)
`,
  );
});

Deno.test("renderStatus() shows a client's state, reconnects and last error", () => {
  const routes = Array.from({ length: 12 }, (_, i) => `198.18.${i}.0/24`);
  const text = renderStatus({
    role: "client",
    state: "up",
    relay: "relay-b:4433",
    relays: ["relay-a:4433", "relay-b:4433"],
    transport: "h3",
    since: "2026-12-01T11:55:00.000Z",
    tun: "mvpn0",
    mtu: 1414,
    addresses: ["198.18.100.2/32"],
    routes,
    mode: "datagram",
    reconnects: [{ at: "2026-12-01T11:54:58.000Z", cause: "goaway", downMs: 812 }],
    lastError: "Cannot connect to relay-a:4433: connection refused",
    counters: {
      tunnel_bytes_total: { outbound: 2048, inbound: 1024 },
      tunnel_packets_dropped_total: { outbound: { "no session": 7 }, inbound: {} },
      client_reconnects_total: { goaway: 1, "session ended": 0 },
    },
  }, NOW);
  const lines = text.trimEnd().split("\n");
  assert(lines.every((line) => line.length <= STATUS_WIDTH), text);
  assertEquals(lines.slice(0, 7), [
    "client: up",
    "  relay: relay-b:4433 (2 of 2)",
    "  connected: 5 minutes ago",
    "  mode: datagram over h3",
    "  tun: mvpn0, mtu 1414",
    "  addresses: 198.18.100.2/32",
    "  routes: 198.18.0.0/24, 198.18.1.0/24, 198.18.2.0/24, 198.18.3.0/24,",
  ]);
  assertEquals(lines.slice(-5), [
    "          198.18.8.0/24, 198.18.9.0/24, 198.18.10.0/24, 198.18.11.0/24",
    "  transfer: 1.00 KiB received, 2.00 KiB sent",
    "  drops: 7 while down, 7 in all",
    "  reconnects: 1, last 5 minutes, 2 seconds ago: goaway, back after 0.8 s",
    "  last error: Cannot connect to relay-a:4433: connection refused",
  ]);
});

Deno.test("formatBytes() and formatDuration() read like wg show", () => {
  assertEquals([0, 1023, 1024, 5 * 1024 ** 3].map(formatBytes), [
    "0 B",
    "1023 B",
    "1.00 KiB",
    "5.00 GiB",
  ]);
  assertEquals([0, 1000, 61_000, 3_725_000, 90_000_000].map(formatDuration), [
    "0 seconds",
    "1 second",
    "1 minute, 1 second",
    "1 hour, 2 minutes",
    "1 day, 1 hour",
  ]);
});
