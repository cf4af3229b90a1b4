/**
 * The status view of `deno task status`, in the manner of `wg show`: from
 * the JSON of a relay's or client's `/status` (the status file's), a few
 * lines per session that fit an 80-column terminal. Pure: `host/status.ts`
 * fetches the JSON and prints what {@linkcode renderStatus} returns.
 *
 * A relay: a header (sessions, draining), then per session its user,
 * endpoint, addresses, mode and transport, age, last packet received,
 * transfer and packets each way, drops. A client: its state, the relay, the
 * TUN with addresses and routes, transfer, reconnects with the last cause,
 * and the last error.
 *
 * @module
 */

/** The width every line fits in. */
export const STATUS_WIDTH = 80;

/** Bytes as `wg show` writes them: `1.20 MiB`. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(2)} ${units[unit]}`;
}

/** A duration as `1 hour, 2 minutes, 3 seconds` (largest two units), from milliseconds. */
export function formatDuration(ms: number): string {
  let seconds = Math.max(0, Math.floor(ms / 1000));
  const parts: string[] = [];
  for (const [name, size] of [["day", 86400], ["hour", 3600], ["minute", 60]] as const) {
    const n = Math.floor(seconds / size);
    seconds -= n * size;
    if (n > 0) parts.push(`${n} ${name}${n === 1 ? "" : "s"}`);
  }
  if (seconds > 0 || parts.length === 0) parts.push(`${seconds} second${seconds === 1 ? "" : "s"}`);
  return parts.slice(0, 2).join(", ");
}

/** `text` wrapped at `, ` to fit after `indent` columns; continuation lines are indented. */
function field(label: string, value: string, indent = 2): string[] {
  const head = `${" ".repeat(indent)}${label}: `;
  const width = STATUS_WIDTH - head.length;
  const lines: string[] = [];
  let line = "";
  for (const item of value.split(", ")) {
    const next = line === "" ? item : `${line}, ${item}`;
    if (line !== "" && next.length > width) {
      lines.push(line + ",");
      line = item;
    } else line = next;
  }
  lines.push(line);
  return lines.map((text, i) => (i === 0 ? head : " ".repeat(head.length)) + cut(text, width));
}

function cut(text: string, width: number): string {
  return text.length <= width ? text : text.slice(0, width - 3) + "...";
}

type Json = Record<string, unknown>;

const num = (value: unknown): number => (typeof value === "number" ? value : 0);
const str = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined);
const list = (value: unknown): string[] =>
  Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];

function ago(iso: string | undefined, now: number): string {
  if (iso === undefined) return "never";
  const at = Date.parse(iso);
  return Number.isNaN(at) ? "unknown" : `${formatDuration(now - at)} ago`;
}

/** One counter of a status's `counters` snapshot, summed below the labels given. */
function counter(status: Json, name: string, ...labels: string[]): number {
  let node = (status.counters as Json | undefined)?.[name];
  for (const label of labels) node = typeof node === "object" && node ? (node as Json)[label] : 0;
  const sum = (v: unknown): number =>
    typeof v === "number"
      ? v
      : typeof v === "object" && v
      ? Object.values(v).reduce<number>((t, c) => t + sum(c), 0)
      : 0;
  return sum(node);
}

/**
 * The lines of a relay's or a client's status (`role` says which), each
 * at most {@linkcode STATUS_WIDTH} columns; `now` in milliseconds since the
 * epoch.
 */
export function renderStatus(status: unknown, now: number): string {
  if (typeof status !== "object" || status === null) return "status: not an object\n";
  const s = status as Json;
  const lines = s.role === "client" ? renderClient(s, now) : renderRelay(s, now);
  return lines.join("\n") + "\n";
}

function renderRelay(s: Json, now: number): string[] {
  const sessions = Array.isArray(s.sessions) ? s.sessions as Json[] : [];
  const lines = [
    `relay: ${s.draining ? "draining" : "serving"}, ${sessions.length} session${
      sessions.length === 1 ? "" : "s"
    }`,
    ...field(
      "traffic",
      `${formatBytes(counter(s, "tunnel_bytes_total", "inbound"))} from clients, ` +
        `${formatBytes(counter(s, "tunnel_bytes_total", "outbound"))} to clients`,
    ),
    ...field(
      "drops",
      `${counter(s, "tunnel_packets_dropped_total", "inbound")} from clients, ` +
        `${counter(s, "tunnel_packets_dropped_total", "outbound")} to clients`,
    ),
  ];
  for (const session of sessions) {
    const drops = num(session.droppedByPolicy) + num(session.tooBig) + num(session.queueFull) +
      num(session.unknownContext) + num(session.malformed);
    lines.push(
      "",
      `session: ${session.id}`,
      ...field("user", str(session.user) ?? "unknown"),
      ...field("endpoint", str(session.remote) ?? "unknown"),
      ...field("addresses", list(session.addresses).join(", ") || "none"),
      ...field("mode", `${str(session.mode) ?? "?"} over ${str(session.transport) ?? "h3"}`),
      ...field("age", formatDuration(now - Date.parse(str(session.openedAt) ?? ""))),
      ...field("last packet received", ago(str(session.lastPacketAt), now)),
      ...field(
        "transfer",
        `${formatBytes(num(session.bytesIn))} received, ${formatBytes(num(session.bytesOut))} sent`,
      ),
      ...field("packets", `${num(session.packetsIn)} received, ${num(session.packetsOut)} sent`),
      ...field(
        "drops",
        drops === 0
          ? "none"
          : `${drops} (policy ${num(session.droppedByPolicy)}, too big ${
            num(session.tooBig)
          }, queue full ${num(session.queueFull)})`,
      ),
    );
  }
  return lines;
}

function renderClient(s: Json, now: number): string[] {
  const relays = list(s.relays);
  const relay = str(s.relay);
  const reconnects = Array.isArray(s.reconnects) ? s.reconnects as Json[] : [];
  const last = reconnects.at(-1);
  const lines = [
    `client: ${str(s.state) ?? "unknown"}`,
    ...field(
      "relay",
      relay === undefined
        ? `none (trying ${relays.join(", ") || "?"})`
        : `${relay}${
          relays.length > 1 ? ` (${relays.indexOf(relay) + 1} of ${relays.length})` : ""
        }`,
    ),
  ];
  if (str(s.since)) lines.push(...field("connected", ago(str(s.since), now)));
  lines.push(
    ...field("mode", `${str(s.mode) ?? "?"} over ${str(s.transport) ?? "h3"}`),
    ...field("tun", `${str(s.tun) ?? "none"}, mtu ${num(s.mtu)}`),
    ...field("addresses", list(s.addresses).join(", ") || "none"),
    ...field("routes", list(s.routes).join(", ") || "none"),
    ...field(
      "transfer",
      `${formatBytes(counter(s, "tunnel_bytes_total", "inbound"))} received, ` +
        `${formatBytes(counter(s, "tunnel_bytes_total", "outbound"))} sent`,
    ),
    ...field(
      "drops",
      `${counter(s, "tunnel_packets_dropped_total", "outbound", "no session")} while down, ` +
        `${counter(s, "tunnel_packets_dropped_total")} in all`,
    ),
    ...field(
      "reconnects",
      last === undefined
        ? "none"
        : `${counter(s, "client_reconnects_total")}, last ${ago(str(last.at), now)}: ${
          str(last.cause) ?? "?"
        }${
          typeof last.downMs === "number" ? `, back after ${(last.downMs / 1000).toFixed(1)} s` : ""
        }`,
    ),
  );
  if (str(s.lastError)) lines.push(...field("last error", str(s.lastError)!));
  return lines;
}
