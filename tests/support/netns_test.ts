import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "./assert.ts";
import { createTopology, haveCommand, isRoot } from "./netns.ts";
import { NEEDS_ROOT, RUN_AS_ROOT, skipUnless } from "./skip.ts";

const TOOLS = new URL("../e2e/tools/", import.meta.url).pathname;
const DENO_RUN = ["deno", "run", "--allow-net"];

const ROOT_ONLY = skipUnless(isRoot(), NEEDS_ROOT, RUN_AS_ROOT);

/** Hex SHA-256, computed independently of the tools (WebCrypto instead of node:crypto). */
async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The first bytes of the tools' pseudo-random stream, seed 1: xorshift32(1) is
 * 270369 = 0x00042021 (x ^= x << 13: 0x2001; x ^= x >>> 17: 0x2001;
 * x ^= x << 5: 0x42021), written little-endian.
 */
const FIRST_PSEUDO_RANDOM_BYTES = new Uint8Array([0x21, 0x20, 0x04, 0x00]);

/** A tool started on the host, for loopback tests; `port` comes from its ready line. */
async function startTool(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", ...args],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${args.join(" ")} exited before its ready line: ${text}`);
    text += value;
  }
  const ready = JSON.parse(text.split("\n")[0]);
  assertEquals(ready.ready, true);
  return {
    port: ready.port as number,
    async stop() {
      child.kill("SIGTERM");
      await reader.cancel();
      await child.status;
    },
  };
}

async function runTcpBlastClient(args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", `${TOOLS}tcp_blast.ts`, "client", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    result: JSON.parse(new TextDecoder().decode(output.stdout)),
    stderr: new TextDecoder().decode(output.stderr),
  };
}

Deno.test("http_server.ts serves a greeting and deterministic bytes with their x-sha256", async () => {
  const server = await startTool([`${TOOLS}http_server.ts`, "--host", "127.0.0.1", "--port", "0"]);
  const base = `http://127.0.0.1:${server.port}`;
  try {
    const hello = await fetch(`${base}/`);
    assertEquals(await hello.text(), "hello from target\n");

    const first = await fetch(`${base}/bytes?n=4`);
    assertEquals(new Uint8Array(await first.arrayBuffer()), FIRST_PSEUDO_RANDOM_BYTES);

    const response = await fetch(`${base}/bytes?n=100001`);
    const body = new Uint8Array(await response.arrayBuffer());
    assertEquals(body.length, 100001);
    assertEquals(response.headers.get("x-sha256"), await sha256Hex(body));
    const again = new Uint8Array(await (await fetch(`${base}/bytes?n=100001`)).arrayBuffer());
    assertEquals(again, body);
    const seeded = new Uint8Array(await (await fetch(`${base}/bytes?n=64&seed=7`)).arrayBuffer());
    assert(seeded.some((b, i) => b !== body[i]), "seed 7 must give other bytes than seed 1");

    const bad = await fetch(`${base}/bytes?n=-1`);
    assertEquals([bad.status, await bad.text()], [400, "n must be an integer 0..1073741824\n"]);
    const missing = await fetch(`${base}/nope`);
    assertEquals([missing.status, await missing.text()], [404, "not found\n"]);
  } finally {
    await server.stop();
  }
});

Deno.test("udp_echo.ts sends each datagram back to its sender", async () => {
  const server = await startTool([`${TOOLS}udp_echo.ts`, "--host", "127.0.0.1", "--port", "0"]);
  const socket = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  try {
    for (const text of ["one", "two, a little longer"]) {
      const sent = new TextEncoder().encode(text);
      await socket.send(sent, { hostname: "127.0.0.1", port: server.port, transport: "udp" });
      const [received, from] = await socket.receive();
      assertEquals(received, sent);
      assertEquals((from as Deno.NetAddr).port, server.port);
    }
  } finally {
    socket.close();
    await server.stop();
  }
});

Deno.test("tcp_blast.ts client", async (t) => {
  await t.step("reports ok with the digest of the xorshift32 stream", async () => {
    const server = await startTool([`${TOOLS}tcp_blast.ts`, "server", "--port", "0"]);
    try {
      const small = await runTcpBlastClient(["--host", "127.0.0.1", "--port", `${server.port}`]
        .concat(["--bytes", "3"]));
      assertEquals(small.code, 0, small.stderr);
      assertEquals(small.result.ok, true);
      assertEquals(small.result.sha256, await sha256Hex(FIRST_PSEUDO_RANDOM_BYTES.slice(0, 3)));

      const big = await runTcpBlastClient(["--host", "::1", "--port", `${server.port}`]
        .concat(["--bytes", "1000003"]));
      assertEquals(big.code, 0, big.stderr);
      assertEquals([big.result.ok, big.result.bytes], [true, 1000003]);
      assertMatch(big.result.sha256, /^[0-9a-f]{64}$/);
      assert(big.result.seconds > 0 && big.result.mbps > 0, JSON.stringify(big.result));
    } finally {
      await server.stop();
    }
  });

  await t.step("--receive gets the same stream from a --send server, checked", async () => {
    const server = await startTool([`${TOOLS}tcp_blast.ts`, "server", "--port", "0", "--send"]);
    try {
      const small = await runTcpBlastClient(["--host", "127.0.0.1", "--port", `${server.port}`]
        .concat(["--bytes", "3", "--receive"]));
      assertEquals(small.code, 0, small.stderr);
      assertEquals(small.result.ok, true);
      assertEquals(small.result.sha256, await sha256Hex(FIRST_PSEUDO_RANDOM_BYTES.slice(0, 3)));
      const big = await runTcpBlastClient(["--host", "::1", "--port", `${server.port}`]
        .concat(["--bytes", "1000003", "--receive", "--seed", "7"]));
      assertEquals(big.code, 0, big.stderr);
      assertEquals([big.result.ok, big.result.bytes], [true, 1000003]);
    } finally {
      await server.stop();
    }
  });

  await t.step("exits 1 when nothing listens", async () => {
    const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = closed.addr.port;
    closed.close();
    const run = await runTcpBlastClient([
      "--host",
      "127.0.0.1",
      "--port",
      `${port}`,
      "--bytes",
      "10",
    ]);
    assertEquals(run.code, 1);
    assertEquals(run.result.ok, false);
    assertMatch(run.result.error, /^transfer to 127\.0\.0\.1:\d+ failed: Connection refused/);
  });

  await t.step("gives up after --timeout-ms when the server never answers", async () => {
    const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const accepted = silent.accept();
    const run = await runTcpBlastClient(
      ["--host", "127.0.0.1", "--port", `${silent.addr.port}`, "--bytes", "10"]
        .concat(["--timeout-ms", "300"]),
    );
    (await accepted).close();
    silent.close();
    assertEquals(run.code, 1);
    assertEquals(run.result, {
      ok: false,
      error: `gave up after 300 ms sending 10 bytes to 127.0.0.1:${silent.addr.port}`,
    });
  });
});

Deno.test({
  name: "createTopology() wires client, relay and target namespaces and tears them down",
  ...ROOT_ONLY,
  async fn(t) {
    for (const command of ["ip", "sysctl", "ping"]) {
      assert(await haveCommand(command), `${command} is missing: apt-get install -y iproute2`);
    }
    const id = `test-${Deno.pid}`;
    const prefix = `mvpn-${id}-`;

    // A stale namespace from an earlier run, with a process inside, must be cleaned first.
    await new Deno.Command("ip", { args: ["netns", "add", `${prefix}client`] }).output();
    const stale = new Deno.Command("ip", {
      args: ["netns", "exec", `${prefix}client`, "sleep", "60"],
    }).spawn();

    const topology = await createTopology({ id });
    let torn = false;
    try {
      await t.step("createTopology() deletes a stale namespace with the same id", async () => {
        assertEquals((await stale.status).signal, "SIGKILL");
        assertEquals(topology.names, {
          client: `${prefix}client`,
          relay: `${prefix}relay`,
          target: `${prefix}target`,
        });
      });

      await t.step("client reaches the relay underlay over IPv4 and IPv6", async () => {
        for (const address of [topology.relayUnderlay4, topology.relayUnderlay6]) {
          const ping = await topology.run("client", ["ping", "-c", "1", "-W", "2", address]);
          assertMatch(ping.stdout, /1 received/);
        }
      });

      await t.step("relay reaches the target over IPv4 and IPv6", async () => {
        for (const address of [topology.target4, topology.target6]) {
          const ping = await topology.run("relay", ["ping", "-c", "1", "-W", "2", address]);
          assertMatch(ping.stdout, /1 received/);
        }
      });

      await t.step("client cannot reach the target: it has no route", async () => {
        for (const address of [topology.target4, topology.target6]) {
          const ping = await topology.run("client", ["ping", "-c", "1", "-W", "2", address], {
            check: false,
          });
          assert(ping.code !== 0, `ping ${address} from the client must fail`);
          assertMatch(ping.stderr, /Network is unreachable/);
        }
      });

      await t.step("target has no route back to the client link", async () => {
        for (const address of [topology.clientUnderlay4, topology.clientUnderlay6]) {
          const route = await topology.run("target", ["ip", "route", "get", address], {
            check: false,
          });
          assert(route.code !== 0, `target must have no route to ${address}`);
          assertMatch(route.stderr, /Network is unreachable/);
        }
      });

      await t.step("no namespace has a default route", async () => {
        for (const ns of ["client", "relay", "target"] as const) {
          for (const family of ["-4", "-6"]) {
            const routes = await topology.run(ns, ["ip", family, "route", "show", "default"]);
            assertEquals(routes.stdout, "", `${ns} ${family} default route`);
          }
        }
      });

      await t.step("only the relay forwards", async () => {
        const sysctl = ["sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"];
        assertEquals((await topology.run("relay", sysctl)).stdout, "1\n1\n");
        assertEquals((await topology.run("client", sysctl)).stdout, "0\n0\n");
      });

      await t.step("run() throws with stderr unless check is false", async () => {
        const failing = ["sh", "-c", "echo oops >&2; exit 2"];
        await assertRejects(() => topology.run("client", failing), Error, "exit code 2");
        await assertRejects(() => topology.run("client", failing), Error, "oops");
        const result = await topology.run("client", failing, { check: false });
        assertEquals(result, { code: 2, stdout: "", stderr: "oops\n" });
        const echoed = await topology.run("target", ["cat"], {
          stdin: new TextEncoder().encode("through stdin"),
        });
        assertEquals(echoed.stdout, "through stdin");
        await assertRejects(
          () => topology.run("relay", ["sleep", "5"], { timeoutMs: 200 }),
          Error,
          "timed out after 200 ms",
        );
      });

      await t.step("waitForLog() rejects with the last lines on exit and on timeout", async () => {
        const quitter = topology.spawn("client", ["sh", "-c", "echo one; echo two >&2; exit 3"], {
          name: "quitter",
        });
        await assertRejects(() => quitter.waitForLog(/never/), Error, "exited (code 3)");
        // stdout and stderr are separate pipes: their relative order is not kept.
        const exited = await quitter.waitForLog(/never/).catch((error) => error.message);
        assertMatch(exited, /last lines:\n(one\ntwo|two\none)$/);
        assertEquals(await quitter.waitForLog(/tw/), "two");
        assertEquals((await quitter.status).code, 3);
        const log = await Deno.readTextFile(quitter.logFile);
        assertMatch(
          log,
          /^# .* started: ip netns exec \S+ sh -c echo one;.*\n(one\ntwo|two\none)\n$/,
        );

        const sleeper = topology.spawn("client", ["sleep", "60"], { name: "sleeper" });
        await assertRejects(() => sleeper.waitForLog(/x/, 200), Error, "timed out after 200 ms");
      });

      await t.step(
        "a UDP datagram from the relay comes back from udp_echo in the target",
        async () => {
          const echo = topology.spawn(
            "target",
            [...DENO_RUN, `${TOOLS}udp_echo.ts`, "--port", "7007"],
            { name: "udp-echo" },
          );
          assertEquals(await echo.waitForLog(/"ready"/), '{"ready":true,"port":7007}');
          for (const [host, type] of [[topology.target4, "udp4"], [topology.target6, "udp6"]]) {
            const probe = `
            import dgram from "node:dgram";
            const socket = dgram.createSocket("${type}");
            const timer = setTimeout(() => { console.error("no echo in 3000 ms"); Deno.exit(1); }, 3000);
            socket.on("message", (message, peer) => {
              console.log(JSON.stringify({ text: message.toString(), from: peer.address }));
              clearTimeout(timer);
              socket.close();
            });
            socket.send("hello ${host}", 7007, "${host}");`;
            const result = await topology.run("relay", ["deno", "eval", probe]);
            assertEquals(JSON.parse(result.stdout), { text: `hello ${host}`, from: host });
          }
        },
      );

      await t.step("tcp_blast moves 10 MB from the relay to the target intact", async () => {
        const server = topology.spawn(
          "target",
          [...DENO_RUN, `${TOOLS}tcp_blast.ts`, "server", "--port", "5201"],
          { name: "tcp-blast-server" },
        );
        await server.waitForLog(/"ready"/);
        const client = await topology.run("relay", [
          ...DENO_RUN,
          `${TOOLS}tcp_blast.ts`,
          "client",
          ...["--host", topology.target4, "--port", "5201", "--bytes", "10000000"],
        ]);
        const result = JSON.parse(client.stdout);
        assertEquals([result.ok, result.bytes], [true, 10_000_000]);
        const received = await server.waitForLog(/"received"/);
        assertEquals(JSON.parse(received), { received: 10_000_000, sha256: result.sha256 });
      });

      const leftRunning = topology.spawn("target", ["sleep", "60"], { name: "left-running" });
      await topology.teardown();
      torn = true;

      await t.step(
        "teardown() kills processes, deletes the namespaces and is idempotent",
        async () => {
          assertEquals((await leftRunning.status).signal, "SIGTERM");
          const { stdout } = await new Deno.Command("ip", { args: ["netns", "list"] }).output();
          assertEquals(
            new TextDecoder().decode(stdout).split("\n").filter((line) => line.startsWith(prefix)),
            [],
          );
          await topology.teardown();
          assertThrows(
            () => topology.spawn("client", ["true"]),
            Error,
            `Cannot spawn: topology ${prefix}relay was torn down`,
          );
          await Deno.remove(topology.logDir, { recursive: true });
        },
      );
    } finally {
      if (!torn) await topology.teardown();
    }
  },
});
