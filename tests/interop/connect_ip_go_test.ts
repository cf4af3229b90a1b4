/**
 * Interop with connect-ip-go (quic-go's CONNECT-IP implementation), an
 * independent peer, in network namespaces (root), both directions:
 *
 * | peer                                | direction      | checks                                              |
 * | ----------------------------------- | -------------- | --------------------------------------------------- |
 * | `cipgo-client`                      | them -> relay  | session, both families, ping v4/v6, 1 MiB TCP       |
 * | `cipgo-upstream-client` (unchanged) | them -> relay  | its `ping`, `http`, `http3` cases, `--template /vpn` |
 * | `cipgo-proxy`                       | client -> them | ping v4/v6, TCP, UDP echo, a packet over the TUN MTU |
 * | `cipgo-upstream-proxy` (unchanged)  | client -> them | `/vpn`, one family: session, ping, HTTP GET         |
 * | `cipgo-proxy`, `--mode stream`      | client -> them | a clear report of who ended the stream and why      |
 *
 * The binaries come from `../shared/interop/bin/` beside the repository
 * (see its README), or the directory `MASQUE_INTEROP_BIN` names; each test
 * is skipped, saying which file is missing, when they are not there, and
 * all of them when not root (tests/support/skip.ts records why). Results and the
 * peer's known deviations: `docs/interop.md`.
 *
 * @module
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { haveCommand, isRoot, withTopology } from "../support/netns.ts";
import { missingCommand, NEEDS_ROOT, RUN_AS_ROOT, skipUnless } from "../support/skip.ts";
import type { FailureLogs, Process, Topology } from "../support/netns.ts";
import { counter, dropReasons, startRelay, startTargetServers } from "../support/vpn.ts";
import type { ClientStatus } from "../support/vpn.ts";
import { loadOrCreateDevCerts } from "../../relay/dev_certs.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
/** The connect-ip-go binaries: `MASQUE_INTEROP_BIN`, else `../shared/interop/bin/` beside the repository. */
const BIN = (Deno.env.get("MASQUE_INTEROP_BIN")?.replace(/\/?$/, "/")) ??
  new URL("../../../shared/interop/bin/", import.meta.url).pathname;
const TOOLS = `${ROOT}tests/e2e/tools/`;

const HAVE: Record<string, boolean> = {
  ethtool: await haveCommand("ethtool"),
  tcpdump: await haveCommand("tcpdump"),
};

/**
 * Test options: run when root, the commands (`ethtool`, `tcpdump`) and the
 * connect-ip-go binaries among `names` are there; else skipped, with the
 * reason and the fix recorded (tests/support/skip.ts).
 */
function needs(...names: string[]) {
  const options = { sanitizeOps: false, sanitizeResources: false };
  if (!isRoot()) return { ...options, ...skipUnless(false, NEEDS_ROOT, RUN_AS_ROOT) };
  for (const command of names.filter((name) => name in HAVE)) {
    if (!HAVE[command]) {
      const { reason, fix } = missingCommand(command);
      return { ...options, ...skipUnless(false, reason, fix) };
    }
  }
  const absent = names.filter((name) => {
    if (name in HAVE) return false;
    try {
      return !Deno.statSync(`${BIN}${name}`).isFile;
    } catch {
      return true;
    }
  });
  return {
    ...options,
    ...skipUnless(
      absent.length === 0,
      `connect-ip-go binaries missing in ${BIN}: ${absent.join(", ")}`,
      `put the binaries of ../shared/interop/README.md in ${BIN}, or set MASQUE_INTEROP_BIN ` +
        "to their directory",
    ),
  };
}

// Addresses a connect-ip-go proxy assigns (the relay namespace routes them to it).
const PROXY_POOL4 = "198.18.200.0/24";
const PROXY_POOL6 = "fd00:200::/64";
const PROXY_CLIENT4 = "198.18.200.2";
const PROXY_CLIENT6 = "fd00:200::2";
const TARGET_NETS = "198.18.1.0/24,fd00:0:0:2::/64";

/** The logs printed when a test fails. */
const FAILURE_LOGS: FailureLogs = { names: "all", lines: 30 };

/** A development CA and a server certificate for `names`, also as `cert.pem`/`key.pem`. */
async function makeCerts(topo: Topology, names: { dns: string[]; ip: string[] }) {
  const dir = `${topo.logDir}/peer-certs`;
  await Deno.mkdir(dir, { recursive: true });
  const certs = await loadOrCreateDevCerts(dir, { dnsNames: names.dns, ipAddresses: names.ip });
  await Deno.writeTextFile(`${dir}/cert.pem`, certs.certPem);
  await Deno.writeTextFile(`${dir}/key.pem`, certs.keyPem, { mode: 0o600 });
  return { dir, ca: certs.caPath, cert: `${dir}/cert.pem`, key: `${dir}/key.pem` };
}

async function ping(topo: Topology, ns: "client" | "target", host: string, extra: string[] = []) {
  const r = await topo.run(ns, ["ping", "-c", "3", "-i", "0.2", "-W", "2", ...extra, host], {
    check: false,
  });
  assertEquals(r.code, 0, `ping ${host} from ${ns} failed:\n${r.stdout}${r.stderr}`);
  assertMatch(r.stdout, / 0% packet loss/);
}

/** Sends 1 MiB over TCP from the client namespace; the target checks its SHA-256. */
async function tcpTransfer(topo: Topology, host: string): Promise<void> {
  const bytes = 1024 * 1024;
  const r = await topo.run("client", [
    Deno.execPath(),
    "run",
    "--allow-net",
    `${TOOLS}tcp_blast.ts`,
    "client",
    ...["--host", host, "--port", "5201", "--bytes", String(bytes), "--timeout-ms", "20000"],
  ], { check: false, timeoutMs: 30_000 });
  const result = JSON.parse(r.stdout.trim().split("\n").pop() || "{}");
  assertEquals(result.ok, true, `TCP transfer to ${host} failed: ${r.stdout}${r.stderr}`);
  assertEquals(result.bytes, bytes);
  assertMatch(result.sha256, /^[0-9a-f]{64}$/);
}

/** One UDP datagram from the client namespace to the echo server; returns the echo. */
async function udpEcho(topo: Topology, host: string, text: string): Promise<string> {
  const code = `
    const s = Deno.listenDatagram({ transport: "udp", hostname: "${
    host.includes(":") ? "::" : "0.0.0.0"
  }", port: 0 });
    setTimeout(() => { console.log("timeout"); Deno.exit(1); }, 5000);
    await s.send(new TextEncoder().encode(${
    JSON.stringify(text)
  }), { transport: "udp", hostname: "${host}", port: 7 });
    const [data] = await s.receive();
    console.log(new TextDecoder().decode(data));
    Deno.exit(0);`;
  const r = await topo.run("client", [Deno.execPath(), "eval", "--unstable-net", code], {
    check: false,
  });
  return r.stdout.trim();
}

/**
 * Pings `address` (the client's) from the target with one unfragmentable
 * packet of `bytes` bytes, until the echo comes back ("arrived") or the
 * client's status counts a packet it could not write to its TUN. Each try
 * flushes the target's route cache first: until the proxy's QUIC path MTU
 * discovery has run, the proxy answers Packet Too Big, which the target
 * would remember.
 */
async function packetOverTunMtu(
  topo: Topology,
  client: { status(): Promise<ClientStatus> },
  address: string,
  bytes: number,
): Promise<"arrived" | "dropped at the TUN write"> {
  const v6 = address.includes(":");
  const payload = String(bytes - (v6 ? 48 : 28));
  const deadline = Date.now() + 15_000;
  let last = "";
  while (Date.now() < deadline) {
    await topo.run("target", ["ip", ...(v6 ? ["-6"] : []), "route", "flush", "cache"], {
      check: false,
    });
    const r = await topo.run("target", [
      ...["ping", "-c", "1", "-W", "1", "-M", "do", "-s", payload, address],
    ], { check: false });
    if (r.code === 0) return "arrived";
    last = r.stdout + r.stderr;
    const status = await client.status().catch(() => undefined);
    if (counter(status, "tunnel_packets_dropped_total", "inbound", "tun write failed") > 0) {
      return "dropped at the TUN write";
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`A ${bytes}-byte packet to ${address} neither arrived nor was dropped:\n${last}`);
}

/** Routes the proxy's client addresses from the target back to the relay namespace. */
async function routeProxyPoolsFromTarget(topo: Topology): Promise<void> {
  await topo.run("target", ["ip", "route", "add", PROXY_POOL4, "via", "198.18.1.1"]);
  await topo.run("target", ["ip", "-6", "route", "add", PROXY_POOL6, "via", "fd00:0:0:2::1"]);
}

/**
 * `cipgo-proxy` in the relay namespace on 198.18.0.1:4433, assigning both
 * families and advertising the target's networks; its TUN is brought up
 * and routes the client addresses, as its README asks of the caller.
 */
async function startCipgoProxy(
  topo: Topology,
  certs: { cert: string; key: string },
): Promise<Process> {
  const proxy = topo.spawn("relay", [
    `${BIN}cipgo-proxy`,
    ...["-listen", `${topo.relayUnderlay4}:4433`],
    // It compares only the host and port with :authority.
    ...["-template", `https://${topo.relayUnderlay4}:4433/vpn`],
    ...["-cert", certs.cert, "-key", certs.key, "-tun", "cipgo-px"],
    ...["-assign", `${PROXY_CLIENT4}/32,${PROXY_CLIENT6}/128`],
    ...["-route", TARGET_NETS],
  ], { name: "cipgo-proxy" });
  await proxy.waitForLog(/listening on/);
  await topo.run("relay", ["ip", "link", "set", "cipgo-px", "up"]);
  await topo.run("relay", ["ip", "route", "add", PROXY_POOL4, "dev", "cipgo-px"]);
  await topo.run("relay", ["ip", "-6", "route", "add", PROXY_POOL6, "dev", "cipgo-px"]);
  return proxy;
}

/** Our client as a process in the client namespace, with a status file; waits for "tunnel up". */
async function startOurClient(
  topo: Topology,
  options: { relay: string; ca: string; args?: string[]; wait?: boolean },
): Promise<{ process: Process; status(): Promise<ClientStatus> }> {
  const statusFile = `${topo.logDir}/client-status.json`;
  const process = topo.spawn("client", [
    Deno.execPath(),
    "run",
    "--unstable-net",
    "--allow-net",
    "--allow-ffi",
    "--allow-read",
    "--allow-env=TARGET_CIDRS,MASQUE_LOG_LEVEL,MASQUE_TOKEN",
    `--allow-write=${statusFile}`,
    `${ROOT}client/main.ts`,
    ...["--relay", options.relay, "--ca", options.ca, "--status-file", statusFile],
    ...(options.args ?? []),
  ], { name: "client", env: { TARGET_CIDRS: TARGET_NETS } });
  if (options.wait !== false) await process.waitForLog(/tunnel up/, 20_000);
  return {
    process,
    status: async () => JSON.parse(await Deno.readTextFile(statusFile)),
  };
}

/** Polls `read` every 250 ms until `check` holds; returns that value. */
async function waitFor<T>(
  read: () => Promise<T>,
  check: (value: T) => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (check(value)) return value;
    if (Date.now() > deadline) {
      throw new Error(`${what} never came; last: ${JSON.stringify(value)}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

Deno.test({
  name: "connect-ip-go client -> our relay: both families assigned, ping v4/v6, 1 MiB TCP",
  ...needs("cipgo-client"),
  async fn() {
    await withTopology("cipgo-c", FAILURE_LOGS, async (topo) => {
      await startTargetServers(topo);
      // connect-ip-go's clients cannot send credentials: this relay runs with
      // --no-auth (docs/interop.md).
      const relay = await startRelay(topo, [
        "--route",
        "198.18.1.0/24",
        "--route",
        "fd00:0:0:2::/64",
      ], { noAuth: true });
      // connect-ip-go's client takes only templates without variables: the
      // RFC 9484 §3 default path, expanded to any target and protocol.
      const client = topo.spawn("client", [
        `${BIN}cipgo-client`,
        ...["-proxy", `${topo.relayUnderlay4}:4433`],
        ...["-template", `https://${topo.relayUnderlay4}:4433/.well-known/masque/ip/*/*/`],
        ...["-ca", `${relay.certDir}/ca.pem`, "-tun", "cipgo0"],
      ], { name: "cipgo-client" });
      const assigned = await client.waitForLog(/RESULT address-assign/);
      assertMatch(assigned, /\[198\.18\.100\.\d+\/32 fd00:100::[0-9a-f]+\/128\]/);
      const routes = await client.waitForLog(/RESULT route-advertisement/);
      assertMatch(routes, /198\.18\.1\.0-198\.18\.1\.255\/proto=0 fd00:0:0:2::-/);
      await client.waitForLog(/tunnel up on cipgo0/);
      // It installs the advertised routes itself; make sure they are there.
      await topo.run("client", ["ip", "route", "replace", "198.18.1.0/24", "dev", "cipgo0"]);
      await topo.run("client", [
        "ip",
        "-6",
        "route",
        "replace",
        "fd00:0:0:2::/64",
        "dev",
        "cipgo0",
      ]);

      await ping(topo, "client", topo.target4);
      await ping(topo, "client", topo.target6);
      await tcpTransfer(topo, topo.target4);
      const status = await waitFor(
        () => relay.status().catch(() => undefined),
        (s) => s !== undefined && counter(s, "tunnel_packets_total", "inbound") > 700,
        "relay status with the transfer's packets",
      );
      assert(status !== undefined);
      assertEquals(status.sessions.length, 1);
      assertEquals(status.sessions[0].mode, "datagram");
      // Its TUN also sends IPv6 link-local packets (router solicitations),
      // which RFC 9484 §7 makes the relay drop as "source not assigned".
      const dropped = Object.keys(dropReasons(status, "inbound"));
      assert(dropped.every((reason) => reason === "source not assigned"), dropped.join());
    });
  },
});

Deno.test({
  name:
    "connect-ip-go's integration client (unchanged) -> our relay with --template /vpn: ping, http, http3",
  ...needs("cipgo-upstream-client", "cipgo-upstream-server", "tcpdump"),
  async fn() {
    await withTopology("cipgo-uc", FAILURE_LOGS, async (topo) => {
      // Its server: HTTP on :80 and HTTP/3 on :443, cert.pem/key.pem in its directory.
      const certs = await makeCerts(topo, { dns: ["server"], ip: [topo.target4] });
      const server = topo.spawn("target", [
        "sh",
        "-c",
        `cd '${certs.dir}' && exec '${BIN}cipgo-upstream-server'`,
      ], { name: "upstream-server" });
      const relay = await startRelay(topo, [
        ...["--template", "/vpn"],
        ...["--route", "198.18.1.0/24", "--route", "fd00:0:0:2::/64"],
      ], { noAuth: true });
      await new Promise((r) => setTimeout(r, 300));
      // Each case dials, opens a session, sets up its TUN from our capsules,
      // runs, and exits 0 only when it passed; these are its own success lines.
      const cases: [string, RegExp][] = [
        ["ping", /ping test: transmitted 50, received 50/],
        ["http", /HTTP test: got body "Hello, World!\\n"/],
        ["http3", /HTTP test: got body "Hello, World!\\n"/],
      ];
      const work = `${topo.logDir}/upstream-client`;
      await Deno.mkdir(work, { mode: 0o777 });
      await Deno.chmod(work, 0o777);
      for (const [testcase, success] of cases) {
        // It writes keys.txt and (through tcpdump, as user tcpdump) client.pcap
        // into its working directory.
        const r = await topo.run("client", [
          "sh",
          "-c",
          `cd '${work}' && exec env PROXY_ADDR=${topo.relayUnderlay4} PROXY_PORT=4433 ` +
          `SERVER_ADDR=${topo.target4} TESTCASE=${testcase} '${BIN}cipgo-upstream-client'`,
        ], { check: false, timeoutMs: 30_000 });
        const output = (r.stdout + r.stderr).split("\n").filter((l) => !/bytes from/.test(l));
        assertEquals(r.code, 0, `${testcase} failed:\n${output.join("\n")}`);
        assertMatch(output.join("\n"), success);
      }
      await waitFor(
        () => relay.status().catch(() => undefined),
        (s) => s !== undefined && counter(s, "relay_sessions_opened_total") === 3,
        "three sessions in the relay's status",
      );
      server.kill();
    });
  },
});

Deno.test({
  name:
    "our client -> connect-ip-go proxy (both families): ping v4/v6, TCP, UDP echo, a packet over the TUN MTU",
  ...needs("cipgo-proxy"),
  async fn(t) {
    await withTopology("cipgo-p", FAILURE_LOGS, async (topo) => {
      await startTargetServers(topo);
      const certs = await makeCerts(topo, { dns: [], ip: [topo.relayUnderlay4] });
      const proxy = await startCipgoProxy(topo, certs);
      await routeProxyPoolsFromTarget(topo);
      // A TUN MTU below what the QUIC path carries, so that packets between the two exist.
      const client = await startOurClient(topo, {
        relay: `https://${topo.relayUnderlay4}:4433/vpn`,
        ca: certs.ca,
        args: ["--mtu", "1280"],
      });
      const assigned = await client.process.waitForLog(/assigned/);
      assertMatch(assigned, new RegExp(`addresses=${PROXY_CLIENT4}/32,${PROXY_CLIENT6}/128 `));

      await t.step("ping v4 and v6", async () => {
        await ping(topo, "client", topo.target4);
        await ping(topo, "client", topo.target6);
      });
      await t.step("1 MiB TCP with SHA-256", () => tcpTransfer(topo, topo.target4));
      await t.step("UDP echo v4 and v6", async () => {
        assertEquals(await udpEcho(topo, topo.target4, "hello v4"), "hello v4");
        assertEquals(await udpEcho(topo, topo.target6, "hello v6"), "hello v6");
      });
      await t.step(
        "a 1400-byte packet from the target arrives through the client's 1280-byte TUN",
        async () => {
          // Larger than the client's TUN MTU (RFC 1122 §3.3.2 EMTU_R): it must arrive.
          const outcome = await packetOverTunMtu(topo, client, PROXY_CLIENT4, 1400);
          assertEquals(outcome, "arrived");
        },
      );
      proxy.kill();
    });
  },
});

Deno.test({
  name:
    "our client -> connect-ip-go's integration proxy (unchanged; /vpn, IPv4 only): session, ping, HTTP GET",
  ...needs("cipgo-upstream-proxy", "cipgo-upstream-server", "ethtool"),
  async fn() {
    await withTopology("cipgo-up", FAILURE_LOGS, async (topo) => {
      // It serves https://proxy:PORT/vpn and compares :authority with
      // "proxy:4433" byte for byte, so the client must dial the name "proxy":
      // `ip netns exec` puts /etc/netns/NS/hosts over /etc/hosts.
      const hostsDir = `/etc/netns/${topo.names.client}`;
      await Deno.mkdir(hostsDir, { recursive: true });
      await Deno.writeTextFile(`${hostsDir}/hosts`, `${topo.relayUnderlay4} proxy\n`);
      try {
        const certs = await makeCerts(topo, { dns: ["proxy", "server"], ip: [topo.target4] });
        topo.spawn("target", [
          "sh",
          "-c",
          `cd '${certs.dir}' && exec '${BIN}cipgo-upstream-server'`,
        ], { name: "upstream-server" });
        // It moves packets between the session and raw sockets on the target
        // link: the relay namespace must not forward them itself, the target
        // routes the client's address to it, and the target's checksums must
        // be complete (no TX checksum offload), since the proxy copies them.
        for (const key of ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]) {
          await topo.run("relay", ["sysctl", "-q", "-w", `${key}=0`]);
        }
        await topo.run("target", [
          "ip",
          "route",
          "add",
          `${PROXY_CLIENT4}/32`,
          "via",
          "198.18.1.1",
        ]);
        await topo.run("target", ["ethtool", "-K", topo.interfaces.target, "tx", "off"]);
        topo.spawn("relay", [
          "sh",
          "-c",
          `cd '${certs.dir}' && exec '${BIN}cipgo-upstream-proxy'`,
        ], {
          name: "upstream-proxy",
          env: {
            PROXY_ADDR: topo.relayUnderlay4,
            PROXY_PORT: "4433",
            ASSIGN_ADDR: PROXY_CLIENT4,
            ROUTE: "198.18.1.0/24",
            FILTER_IP_PROTOCOL: "0",
            SERVER_INTERFACE: topo.interfaces.relayToTarget,
          },
        });
        await new Promise((r) => setTimeout(r, 500));
        const client = await startOurClient(topo, {
          relay: "https://proxy:4433/vpn",
          ca: certs.ca,
        });
        const assigned = await client.process.waitForLog(/assigned/);
        // One family only: one address, and routes of that family only.
        assertMatch(
          assigned,
          new RegExp(`addresses=${PROXY_CLIENT4}/32 routes=198.18.1.0/24 full=none dns=none$`),
        );
        await ping(topo, "client", topo.target4);
        const get = await topo.run("client", [
          Deno.execPath(),
          "eval",
          `const r = await fetch("http://${topo.target4}/hello"); console.log(r.status, JSON.stringify(await r.text()));`,
        ], { check: false, timeoutMs: 15_000 });
        assertEquals(get.stdout.trim(), '200 "Hello, World!\\n"', get.stderr);
        // --mtu auto: the TUN MTU follows the datagram limit up (1280..1500).
        await waitFor(
          () => client.status().catch(() => ({} as Record<string, unknown>)),
          (s) =>
            typeof s.mtu === "number" &&
            s.mtu === Math.min(1500, Math.max(1280, Number(s.maxPacketSize))),
          "the TUN MTU following the datagram limit",
        );
      } finally {
        await Deno.remove(hostsDir, { recursive: true }).catch(() => {});
      }
    });
  },
});

Deno.test({
  name:
    "our client in --mode stream -> connect-ip-go proxy: says which side ended the stream and why",
  ...needs("cipgo-proxy"),
  async fn() {
    await withTopology("cipgo-s", FAILURE_LOGS, async (topo) => {
      const certs = await makeCerts(topo, { dns: [], ip: [topo.relayUnderlay4] });
      const proxy = await startCipgoProxy(topo, certs);
      const client = await startOurClient(topo, {
        relay: `https://${topo.relayUnderlay4}:4433/vpn`,
        ca: certs.ca,
        args: ["--mode", "stream"],
        wait: false,
      });
      await client.process.waitForLog(/tunnel up/, 20_000);
      // The first packet goes out as a DATAGRAM capsule (RFC 9297 §3.5); the
      // proxy does not know capsule type 0 and ends the stream.
      await topo.run("client", ["ping", "-c", "1", "-W", "1", topo.target4], { check: false });
      const proxyEnd = await proxy.waitForLog(/unknown capsule type: 0/);
      assertMatch(proxyEnd, /handling stream failed/);
      const stopping = await client.process.waitForLog(/stopping/);
      assertMatch(
        stopping,
        /why="session ended: the relay ended the request stream \(FIN, no error code\) after \d+ IP packets? from us in DATAGRAM capsules and none back: it probably does not accept DATAGRAM capsules \(RFC 9297 §3\.5\); try --mode datagram"/,
      );
      // Not a hang: the client exits at once, with an error code.
      const exit = await Promise.race([
        client.process.status,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 10_000)),
      ]);
      assertEquals(exit?.code, 1, "the client did not exit within 10 s of the stream's end");
    });
  },
});
