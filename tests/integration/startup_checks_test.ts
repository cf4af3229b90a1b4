/**
 * `deno task client` and `deno task relay` check the host before they
 * contact anyone (shared/host_requirements.ts): run as real processes
 * with something missing, each says what and how to get it, exits 1, and
 * has sent nothing to the relay's address, bound nothing and created no TUN.
 *
 * Root runs them as `nobody` (setpriv) or with a PATH without nft.
 */
import { assert, assertEquals } from "../support/assert.ts";
import { isRoot } from "../support/netns.ts";
import { skipUnlessRoot } from "../support/skip.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const opts = { ...await skipUnlessRoot(isRoot(), ["setpriv"]), sanitizeResources: false };

/** The permissions of `deno task client` / `relay:nat` (deno.json). */
const CLIENT = [
  "run",
  "--unstable-net",
  "--allow-net",
  "--allow-ffi",
  "--allow-read",
  "--allow-env=TARGET_CIDRS,MASQUE_LOG_LEVEL,MASQUE_TOKEN",
  `${ROOT}client/main.ts`,
];
const RELAY_NAT = [
  "run",
  "--unstable-net",
  "--allow-net",
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-run=nft,sysctl",
  "--allow-env=MASQUE_LOG_LEVEL",
  `${ROOT}relay/main.ts`,
  "--nat",
  // What is checked here comes before the users file would be read.
  "--no-auth",
];

async function run(command: string, args: string[], env: Record<string, string> = {}) {
  const output = await new Deno.Command(command, {
    args,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

/** Datagrams that arrive at `socket` until `done` settles and 300 ms more. */
async function countDatagrams(socket: Deno.DatagramConn, done: Promise<unknown>): Promise<number> {
  let count = 0;
  let finished = false;
  const reading = (async () => {
    try {
      for await (const _ of socket) count++;
    } catch {
      // closed
    }
  })();
  await done.finally(() => finished = true);
  assert(finished);
  await new Promise((resolve) => setTimeout(resolve, 300));
  socket.close();
  await reading;
  return count;
}

/** A DENO_DIR `nobody` may write, with this repository's dependencies cached by root. */
async function nobodyEnv(): Promise<{ dir: string; env: Record<string, string> }> {
  const dir = await Deno.makeTempDir({ prefix: "mvpn-nobody-" });
  await Deno.chmod(dir, 0o777);
  return { dir, env: { DENO_DIR: dir, HOME: dir } };
}

Deno.test({
  name: "the client without CAP_NET_ADMIN says so and sends nothing to the relay",
  ...opts,
  async fn() {
    const relay = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const port = (relay.addr as Deno.NetAddr).port;
    const { dir, env } = await nobodyEnv();
    try {
      const result = run("setpriv", [
        ...["--reuid=65534", "--regid=65534", "--clear-groups"],
        Deno.execPath(),
        ...CLIENT,
        ...["--relay", `https://127.0.0.1:${port}`, "--tun", "mvpn-chk0"],
      ], env);
      const datagrams = await countDatagrams(relay, result);
      const { code, stderr } = await result;
      assertEquals(code, 1, stderr);
      assert(stderr.includes("error: the client cannot start on this host:"), stderr);
      assert(stderr.includes("needs root or CAP_NET_ADMIN"), stderr);
      assert(stderr.includes("fix: run it as root (sudo deno task client ...)"), stderr);
      assertEquals(datagrams, 0, "nothing sent to the relay");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "the relay with --nat and no nft says so before it creates its TUN or binds its port",
  ...opts,
  async fn() {
    const tun = `mvpn-chk${crypto.randomUUID().slice(0, 4)}`;
    const probe = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const certs = await Deno.makeTempDir({ prefix: "mvpn-chk-certs-" });
    const empty = await Deno.makeTempDir({ prefix: "mvpn-chk-path-" });
    try {
      // A PATH with neither nft nor sysctl in it.
      const { code, stderr } = await run(Deno.execPath(), [
        ...RELAY_NAT,
        ...["--host", "127.0.0.1", "--port", String(port), "--tun", tun],
        ...["--dev-certs", certs],
      ], { PATH: empty });
      assertEquals(code, 1, stderr);
      assert(stderr.includes("error: the relay cannot start on this host:"), stderr);
      assert(stderr.includes("--nat needs nft (nftables), which is not installed"), stderr);
      assert(stderr.includes("fix: apt-get install -y nftables"), stderr);
      const links = await new Deno.Command("ip", { args: ["link", "show", "dev", tun] }).output();
      assert(!links.success, `${tun} was not created`);
      assertEquals([...Deno.readDirSync(certs)], [], "no certificates were made");
      // The port is still free.
      Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port }).close();
    } finally {
      await Deno.remove(certs, { recursive: true });
      await Deno.remove(empty, { recursive: true });
    }
  },
});
