import { assert, assertEquals, assertMatch } from "../../tests/support/assert.ts";
import { checkStatusFile, checkUrl, judgeStatusFile } from "./healthcheck.ts";

const SCRIPT = new URL("./healthcheck.ts", import.meta.url).pathname;

Deno.test("judgeStatusFile() is healthy for a fresh JSON object, unhealthy when stale or not an object", () => {
  assert(judgeStatusFile('{"sessions":[]}', 1_500, 10_000).healthy);
  const stale = judgeStatusFile('{"sessions":[]}', 12_300, 10_000);
  assertEquals(stale, {
    healthy: false,
    reason: "status file last written 12.3 s ago (limit 10 s)",
  });
  assertMatch(judgeStatusFile('{"sessions":', 0, 10_000).reason, /^status file is not JSON: /);
  assertEquals(
    judgeStatusFile("[1]", 0, 10_000).reason,
    "status file does not hold a JSON object",
  );
  assertEquals(judgeStatusFile("null", 0, 10_000).healthy, false);
});

Deno.test("checkStatusFile() reads the file's age from its modification time", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/status.json`;
    assertMatch((await checkStatusFile(path, 10_000)).reason, /^cannot read status file /);
    await Deno.writeTextFile(path, "{}\n");
    assert((await checkStatusFile(path, 10_000)).healthy);
    const later = Date.now() + 60_000;
    assertMatch((await checkStatusFile(path, 10_000, later)).reason, /last written 6\d\.\d s ago/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkUrl() is healthy on 2xx only, and on no answer says why", async () => {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) =>
      new Response("x", { status: new URL(request.url).pathname === "/healthz" ? 200 : 503 }),
  );
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    assertEquals(await checkUrl(`${base}/healthz`, 3_000), {
      healthy: true,
      reason: `${base}/healthz answered 200`,
    });
    assertEquals((await checkUrl(`${base}/readyz`, 3_000)).healthy, false);
  } finally {
    await server.shutdown();
  }
  const refused = await checkUrl("http://127.0.0.1:1/healthz", 3_000);
  assertMatch(refused.reason, /^GET http:\/\/127\.0\.0\.1:1\/healthz failed: /);
});

Deno.test("healthcheck.ts exits 0 when healthy, 1 when not, 2 on bad arguments", async () => {
  const dir = await Deno.makeTempDir();
  const run = async (...args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", `--allow-read=${dir}`, SCRIPT, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      code: out.code,
      text: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr),
    };
  };
  try {
    await Deno.writeTextFile(`${dir}/status.json`, "{}");
    const healthy = await run("--status-file", `${dir}/status.json`);
    assertEquals(healthy.code, 0, healthy.text);
    assertMatch(healthy.text, /^healthy: status file written/);
    const missing = await run("--status-file", `${dir}/missing.json`);
    assertEquals(missing.code, 1, missing.text);
    assertMatch(missing.text, /^unhealthy: cannot read status file/);
    const both = await run();
    assertEquals(both.code, 2);
    assertMatch(both.text, /give exactly one of --status-file FILE and --url URL/);
    const badAge = await run("--status-file", `${dir}/status.json`, "--max-age", "0");
    assertEquals(badAge.code, 2);
    assertMatch(badAge.text, /--max-age must be a positive number of seconds, got "0"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
