import { assertEquals } from "../tests/support/assert.ts";
import { createLogger, formatJsonLogLine, formatLogLine } from "./log.ts";

const time = new Date("2026-11-25T12:00:00.000Z");

Deno.test("formatLogLine() quotes values with spaces and skips undefined", () => {
  assertEquals(
    formatLogLine(time, "warn", "packet dropped", {
      reason: "source not assigned",
      n: 3,
      x: undefined,
    }),
    '2026-11-25T12:00:00.000Z WARN  packet dropped reason="source not assigned" n=3',
  );
});

Deno.test("createLogger() writes at or above its level, with inherited fields", () => {
  const lines: string[] = [];
  const log = createLogger({ level: "info", write: (l) => lines.push(l), now: () => time });
  log.debug("hidden");
  log.with({ session: 7 }).info("up", { addr: "10.0.0.2" });
  assertEquals(lines, ["2026-11-25T12:00:00.000Z INFO  up session=7 addr=10.0.0.2"]);
  assertEquals(log.enabled("debug"), false);
  assertEquals(log.enabled("error"), true);
});

Deno.test("formatJsonLogLine() writes one object with ts, level, msg and the fields", () => {
  assertEquals(
    formatJsonLogLine(time, "info", "session opened", {
      session: 7,
      user: "anonymous",
      big: 5n,
      ok: true,
      x: undefined,
      msg: "a field called msg",
    }),
    '{"ts":"2026-11-25T12:00:00.000Z","level":"info","msg":"session opened","session":7,' +
      '"user":"anonymous","big":"5","ok":true,"field_msg":"a field called msg"}',
  );
});

Deno.test("createLogger({ format: json }) writes JSON lines with the inherited fields", () => {
  const lines: string[] = [];
  const log = createLogger({
    level: "info",
    format: "json",
    write: (l) => lines.push(l),
    now: () => time,
  });
  log.with({ role: "relay" }).with({ session: 3 }).warn('quote " and\nnewline');
  assertEquals(lines.map((line) => JSON.parse(line)), [{
    ts: "2026-11-25T12:00:00.000Z",
    level: "warn",
    msg: 'quote " and\nnewline',
    role: "relay",
    session: 3,
  }]);
});
