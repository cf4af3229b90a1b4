/**
 * End to end in containers: builds the images, brings `compose.yaml` up, and
 * checks from the client container, through the tunnel, IPv4 and IPv6 ping,
 * an HTTP GET whose body matches its SHA-256, and a UDP echo; that the
 * client has no other path to the target; and that the compose project's own
 * `check` service passed. Everything is taken down afterwards, also on
 * failure.
 *
 * Uses the Docker engine `DOCKER_HOST` names when one answers, else starts
 * its own (`tests/support/docker.ts`: no default bridge, no iptables), and
 * builds `debian:bookworm-slim` with debootstrap when the engine lacks it (the
 * root file system is cached). Skipped where Docker cannot run, with the
 * reason and the fix recorded (tests/support/skip.ts), which fails a full
 * `deno task test`.
 *
 * About 2 to 4 minutes: base image (cached after the first run), three image
 * builds, the project up, the checks, down.
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { counter } from "../support/vpn.ts";
import {
  buildImages,
  composeCommand,
  type DockerEngine,
  dockerSkipReason,
  ensureBaseImage,
  ensureDenoPackage,
  ensureNpmCache,
  IMAGE_TAGS,
  imageSize,
  isolateNetworks,
  openEngine,
  run,
} from "../support/docker.ts";
import { skipUnless } from "../support/skip.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const skip = await dockerSkipReason();

/** Addresses of one run; random /24s so that parallel runs and other engines do not collide. */
function projectAddresses() {
  const bytes = crypto.getRandomValues(new Uint8Array(2));
  const a = 16 + bytes[0] % 120;
  const b = 136 + bytes[1] % 120;
  return {
    MASQUE_CLIENT_NET4: `198.19.${a}.0/24`,
    MASQUE_CLIENT_NET6: `fd00:19:${a.toString(16)}::/64`,
    MASQUE_TARGET_NET4: `198.19.${b}.0/24`,
    MASQUE_TARGET_NET6: `fd00:19:${b.toString(16)}::/64`,
    MASQUE_TARGET4: `198.19.${b}.10`,
    MASQUE_TARGET6: `fd00:19:${b.toString(16)}::10`,
    MASQUE_POOL4: "198.18.64.0/24",
    MASQUE_POOL6: "fd00:64::/64",
  };
}

class Project {
  readonly name = `mvpne2e${crypto.randomUUID().slice(0, 8)}`;
  readonly vars = projectAddresses();
  readonly #engine: DockerEngine;
  readonly #compose: string[];

  constructor(engine: DockerEngine, compose: string[]) {
    this.#engine = engine;
    this.#compose = compose;
  }

  compose(args: string[], timeoutMs = 180_000, check = true) {
    return run([...this.#compose, "-p", this.name, "-f", `${ROOT}/compose.yaml`, ...args], {
      env: { ...this.#engine.env, ...this.vars },
      timeoutMs,
      check,
    });
  }

  /** The container id of `service`. */
  async container(service: string): Promise<string> {
    const id = (await this.compose(["ps", "-q", service])).stdout.trim();
    if (!id) throw new Error(`no container for service ${service}`);
    return id;
  }

  /** Runs a command in the running container of `service`. */
  async exec(service: string, cmd: string[], timeoutMs = 60_000) {
    return await this.#engine.docker(["exec", await this.container(service), ...cmd], {
      check: false,
      timeoutMs,
    });
  }

  network(name: string): string {
    return `${this.name}_${name}`;
  }
}

/** Deno code run in the client container: GET /bytes and hash the body. */
function httpGetCode(url: string): string {
  return `
    const response = await fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(20000) });
    const body = new Uint8Array(await response.arrayBuffer());
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    console.log(JSON.stringify({ status: response.status, length: body.length, sha256: hex,
      header: response.headers.get("x-sha256") }));`;
}

/** Deno code run in the client container: one UDP datagram to the echo server, print the answer. */
function udpEchoCode(host: string, text: string): string {
  return `
    import dgram from "node:dgram";
    const socket = dgram.createSocket(${JSON.stringify(host.includes(":") ? "udp6" : "udp4")});
    const timer = setTimeout(() => { console.log("timeout"); Deno.exit(1); }, 5000);
    socket.on("message", (message) => {
      clearTimeout(timer);
      console.log(new TextDecoder().decode(message));
      socket.close();
    });
    socket.send(${JSON.stringify(text)}, 7007, ${JSON.stringify(host)});`;
}

function received(pingOutput: string): number | undefined {
  const match = /(\d+) received/.exec(pingOutput);
  return match ? Number(match[1]) : undefined;
}

Deno.test({
  name: "containers: compose project: the client reaches the target through the tunnel only",
  ...skipUnless(skip === undefined, `Docker cannot run here: ${skip?.reason}`, skip?.fix ?? ""),
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  const started = performance.now();
  const seconds = () => Math.round((performance.now() - started) / 100) / 10;
  const timings: Record<string, number> = {};
  const logDir = await Deno.makeTempDir({ prefix: "mvpn-containers-" });
  const engine = await openEngine({ logDir });
  const compose = (await composeCommand())!;
  let project: Project | undefined;
  let unisolate: (() => Promise<void>) | undefined;
  let failed = false;
  try {
    const base = await ensureBaseImage(engine);
    timings.baseImage = seconds();
    await ensureDenoPackage();
    await ensureNpmCache();
    const builds = await buildImages(engine);
    timings.build = seconds();
    const sizes: Record<string, string> = {};
    for (const [name, tag] of Object.entries(IMAGE_TAGS)) {
      sizes[name] = `${((await imageSize(engine, tag)) / 1e6).toFixed(0)} MB`;
    }
    console.log(
      `containers: engine ${engine.owned ? "started here" : engine.host}, compose ${
        compose.join(" ")
      }, base image ${base}, builds ${JSON.stringify(builds)} s, sizes ${JSON.stringify(sizes)}`,
    );

    project = new Project(engine, compose);
    const p = project;
    await p.compose(["up", "-d", "--no-build"]);
    // Before any check: an engine without iptables does not isolate internal networks itself.
    if (engine.owned) {
      unisolate = await isolateNetworks(engine, [p.network("client-net"), p.network("target-net")]);
    }
    timings.up = seconds();
    const check = await p.container("check");
    const waited = await engine.docker(["wait", check], { timeoutMs: 120_000 });
    const checkLog = await engine.docker(["logs", check]);
    timings.checkService = seconds();
    const target4 = p.vars.MASQUE_TARGET4;
    const target6 = p.vars.MASQUE_TARGET6;

    const results = [
      await t.step("the compose project's check service passed", () => {
        assertEquals(waited.stdout.trim(), "0", checkLog.stdout + checkLog.stderr);
        assertMatch(checkLog.stdout, /all 6 checks passed/);
      }),
      await t.step("IPv4 and IPv6 ping from the client container", async () => {
        for (const target of [target4, target6]) {
          const ping = await p.exec("client", [
            "ping",
            "-n",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            target,
          ]);
          assertEquals(received(ping.stdout), 3, `ping ${target}: ${ping.stdout}${ping.stderr}`);
        }
      }),
      await t.step("HTTP GET through the tunnel: 2 MB whose SHA-256 matches", async () => {
        for (const host of [target4, `[${target6}]`]) {
          const url = `http://${host}:8080/bytes?n=2000000&seed=7`;
          const got = await p.exec("client", ["deno", "eval", httpGetCode(url)]);
          assertEquals(got.code, 0, got.stderr);
          const answer = JSON.parse(got.stdout);
          assertEquals(answer.status, 200);
          assertEquals(answer.length, 2_000_000);
          assertMatch(answer.sha256, /^[0-9a-f]{64}$/);
          assertEquals(answer.sha256, answer.header, `body hash vs x-sha256 for ${url}`);
        }
      }),
      await t.step("UDP echo through the tunnel", async () => {
        for (const target of [target4, target6]) {
          const text = `containers-${crypto.randomUUID()}`;
          const echo = await p.exec("client", ["deno", "eval", udpEchoCode(target, text)]);
          assertEquals(echo.stdout.trim(), text, `UDP echo from ${target}: ${echo.stderr}`);
        }
      }),
      await t.step("the relay counts the session", async () => {
        const status = await p.exec("relay", ["cat", "/run/masque-vpn/status.json"]);
        const parsed = JSON.parse(status.stdout);
        assert(parsed.sessions.length >= 1, `relay sessions: ${status.stdout}`);
        assert(
          counter(parsed, "tunnel_packets_total", "inbound") > 0,
          `relay counters: ${status.stdout}`,
        );
      }),
      await t.step("the relay knows the client as user demo; its token is in no log", async () => {
        const logs = await p.compose(["logs", "--no-color"], 60_000);
        assertMatch(logs.stdout, /session opened .*user=demo/);
        const token = (await p.exec("client", ["cat", "/etc/masque-vpn/token/token"])).stdout
          .trim();
        assertMatch(token, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
        assert(!(logs.stdout + logs.stderr).includes(token.slice(token.indexOf(".") + 1)));
      }),
      await t.step(
        "health from the admin endpoint; the status view in the relay container",
        async () => {
          // The HEALTHCHECKs GET the admin endpoint the images start on their loopback.
          for (const [service, path] of [["relay", "/healthz"], ["client", "/readyz"]]) {
            const health = JSON.parse(
              (await engine.docker([
                "inspect",
                "--format",
                "{{json .State.Health}}",
                await p.container(service),
              ])).stdout,
            );
            assertEquals(health.Status, "healthy", `${service}: ${JSON.stringify(health)}`);
            const last = health.Log.at(-1);
            assertEquals(last.ExitCode, 0, `${service}: ${JSON.stringify(last)}`);
            assertMatch(
              last.Output,
              new RegExp(`^healthy: http://127\\.0\\.0\\.1:9464${path} answered 200`),
            );
          }
          // `deno task status` (what it runs, with the image's cache).
          const view = await p.exec("relay", [
            "deno",
            "run",
            "--cached-only",
            "--allow-net=127.0.0.1:9464",
            "host/status.ts",
          ]);
          assertEquals(view.code, 0, view.stderr);
          assertMatch(view.stdout, /^relay: serving, 1 session\n/);
          const pool4 = p.vars.MASQUE_POOL4.split("/")[0].split(".").slice(0, 3).join(".");
          assert(view.stdout.includes(`  addresses: ${pool4}.`), view.stdout);
          const client = await p.exec("client", [
            "deno",
            "run",
            "--cached-only",
            "--allow-net=127.0.0.1:9464",
            "host/status.ts",
          ]);
          assertEquals(client.code, 0, client.stderr);
          assertMatch(client.stdout, /^client: up\n/);
        },
      ),
      await t.step("no other path from the client to the target", async () => {
        // No network in common.
        const networksOf = async (service: string) =>
          Object.keys(
            JSON.parse(
              (await engine.docker([
                "inspect",
                "--format",
                "{{json .NetworkSettings.Networks}}",
                await p.container(service),
              ])).stdout,
            ),
          );
        const clientNets = await networksOf("client");
        const targetNets = await networksOf("target");
        assertEquals(clientNets.filter((n) => targetNets.includes(n)), [], "shared networks");
        // The client took the relay's routes as they come: a full tunnel in a table of its
        // own, beside the default route Docker gives the container, which stays in main.
        const main4 = await p.exec("client", ["ip", "-4", "route", "show", "default"]);
        assertMatch(main4.stdout, /default via .* dev eth0/, `main table: ${main4.stdout}`);
        for (const family of ["-4", "-6"]) {
          const table = await p.exec("client", ["ip", family, "route", "show", "table", "51900"]);
          assertMatch(
            table.stdout,
            /default dev mvpn0/,
            `table 51900 (${family}): ${table.stdout}`,
          );
        }
        // The kill switch: nothing unmarked leaves by eth0, not even to the relay, which
        // answers on that network (the outsider below shows it).
        const killSwitch = await p.exec("client", [
          "nft",
          "list",
          "table",
          "inet",
          "masque_vpn_ks_mvpn0",
        ]);
        assertEquals(killSwitch.code, 0, `kill switch table: ${killSwitch.stderr}`);
        const blocked = await p.exec("client", [
          "ping",
          "-n",
          "-c",
          "1",
          "-W",
          "2",
          "-I",
          "eth0",
          "relay",
        ]);
        assert(
          blocked.code !== 0 && !received(blocked.stdout),
          `ping -I eth0 relay passed the kill switch: ${blocked.stdout}${blocked.stderr}`,
        );
        for (const target of [target4, target6]) {
          // The client's kernel routes the target into the TUN ...
          const route = await p.exec("client", ["ip", "route", "get", target]);
          assertMatch(route.stdout, /dev mvpn0/, `route to ${target}`);
          // ... and only the QUIC socket's mark would take the underlay.
          const marked = await p.exec("client", ["ip", "route", "get", target, "mark", "0xcabc"]);
          assert(!/dev mvpn0/.test(marked.stdout), `marked route to ${target}: ${marked.stdout}`);
        }
        // A container on the client's network without the tunnel cannot reach it either
        // (though it reaches the relay).
        for (const target of [target4, target6, "relay"]) {
          const outsider = await engine.docker([
            "run",
            "--rm",
            "--network",
            p.network("client-net"),
            "--sysctl",
            "net.ipv6.conf.all.disable_ipv6=0",
            "--cap-drop",
            "ALL",
            "--entrypoint",
            "ping",
            IMAGE_TAGS.client,
            ...["-n", "-c", "2", "-W", "1", target],
          ], { check: false, timeoutMs: 60_000 });
          if (target === "relay") {
            assertEquals(
              received(outsider.stdout),
              2,
              `control: ${outsider.stdout}${outsider.stderr}`,
            );
          } else {
            assert(
              outsider.code !== 0 && !received(outsider.stdout),
              `a container on client-net reached ${target}: ${outsider.stdout}${outsider.stderr}`,
            );
          }
        }
      }),
    ];
    timings.checks = seconds();
    failed = results.includes(false);
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    if (project && failed) {
      const logs = await project.compose(["logs", "--no-color", "--tail", "40"], 60_000, false)
        .catch((error) => ({ stdout: "", stderr: String(error) }));
      console.error(`--- compose logs (last lines)\n${logs.stdout}${logs.stderr}`);
    }
    if (project) {
      await project.compose(["down", "-v", "--timeout", "5"], 120_000, false)
        .catch((error) => console.error(`compose down failed: ${error}`));
    }
    await unisolate?.();
    await engine.stop();
    timings.down = seconds();
    console.log(`containers: seconds since start ${JSON.stringify(timings)}`);
    if (failed) console.error(`containers: dockerd log kept in ${logDir}`);
    else await Deno.remove(logDir, { recursive: true }).catch(() => {});
  }
});
