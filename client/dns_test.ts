import { assert, assertEquals, assertRejects } from "../tests/support/assert.ts";
import { isRoot } from "../tests/support/netns.ts";
import { skipUnlessRoot } from "../tests/support/skip.ts";
import {
  applyDns,
  type CommandRunner,
  detectDnsBackend,
  recoverDns,
  resolvConfPath,
  resolvConfText,
} from "./dns.ts";

const SETTINGS = { servers: ["198.18.1.53", "fd00:0:0:2::53"], searchDomains: ["corp.example"] };
const ORIGINAL = "nameserver 10.255.255.53\noptions edns0\n";

/** A temporary root with `etc/` for each test, removed afterwards. */
async function withRoot(body: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "mvpn-dns-" });
  try {
    await Deno.mkdir(`${root}/etc`);
    await body(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

const ROOT_ONLY = await skipUnlessRoot(isRoot(), ["ip", "unshare", "mount"]);
Deno.test("resolvConfText() lists at most three nameservers and the search domains", () => {
  assertEquals(
    resolvConfText(
      {
        servers: ["198.18.1.53", "fd00::53", "198.18.1.54", "198.18.1.55"],
        searchDomains: ["a.example", "b.example"],
      },
      "mvpn0",
      42,
    ),
    `# Written by the masque-vpn client (pid 42) for the tunnel mvpn0.
# The original comes back when the client stops; see docs/full-tunnel.md.
nameserver 198.18.1.53
nameserver fd00::53
nameserver 198.18.1.54
search a.example b.example
`,
  );
});

Deno.test("applyDns() replaces resolv.conf and restore() puts the original file back", async () => {
  await withRoot(async (root) => {
    await Deno.writeTextFile(`${root}/etc/resolv.conf`, ORIGINAL);
    const applied = await applyDns("mvpn0", SETTINGS, { rootDir: root });
    assertEquals(applied.backend, "resolv.conf");
    const written = await Deno.readTextFile(`${root}/etc/resolv.conf`);
    assert(
      written.includes("nameserver 198.18.1.53\nnameserver fd00:0:0:2::53\nsearch corp.example\n"),
      written,
    );
    assert(await exists(`${root}/var/lib/masque-vpn/dns-host.json`));
    assertEquals(await applied.restore(), []);
    assertEquals(await Deno.readTextFile(`${root}/etc/resolv.conf`), ORIGINAL);
    // Marker and backup gone; the (unlocked) lock file stays.
    assertEquals([...Deno.readDirSync(`${root}/var/lib/masque-vpn`)].map((e) => e.name), [
      "dns-host.lock",
    ]);
    assertEquals(await applied.restore(), []); // idempotent
  });
});

Deno.test("applyDns() restores a symlinked resolv.conf as the same symlink", async () => {
  await withRoot(async (root) => {
    await Deno.mkdir(`${root}/run/systemd/resolve`, { recursive: true });
    await Deno.writeTextFile(
      `${root}/run/systemd/resolve/stub-resolv.conf`,
      "nameserver 127.0.0.53\n",
    );
    await Deno.symlink("../run/systemd/resolve/stub-resolv.conf", `${root}/etc/resolv.conf`);
    const link = (await Deno.lstat(`${root}/etc/resolv.conf`)).ino;
    // No resolved socket in this root: the file is replaced, the link target untouched.
    const applied = await applyDns("mvpn0", SETTINGS, { rootDir: root });
    assertEquals(applied.backend, "resolv.conf");
    assert(!(await Deno.lstat(`${root}/etc/resolv.conf`)).isSymlink);
    assertEquals(
      await Deno.readTextFile(`${root}/run/systemd/resolve/stub-resolv.conf`),
      "nameserver 127.0.0.53\n",
    );
    await applied.restore();
    assertEquals(
      await Deno.readLink(`${root}/etc/resolv.conf`),
      "../run/systemd/resolve/stub-resolv.conf",
    );
    // The same link moved back (Deno.symlink would need full read and write permissions).
    assertEquals((await Deno.lstat(`${root}/etc/resolv.conf`)).ino, link);
  });
});

Deno.test("applyDns() for a namespace creates /etc/netns/<ns>/resolv.conf and removes it again", async () => {
  await withRoot(async (root) => {
    const options = { rootDir: root, netns: "mvpn-x-client" };
    assertEquals(resolvConfPath(options), `${root}/etc/netns/mvpn-x-client/resolv.conf`);
    const applied = await applyDns("mvpn0", SETTINGS, options);
    assert((await Deno.readTextFile(resolvConfPath(options))).includes("nameserver 198.18.1.53"));
    assert(await exists(`${root}/var/lib/masque-vpn/dns-mvpn-x-client.json`));
    await applied.restore();
    assertEquals(await exists(`${root}/etc/netns`), false);
  });
});

Deno.test("restore() leaves a resolv.conf that someone else rewrote meanwhile", async () => {
  await withRoot(async (root) => {
    await Deno.writeTextFile(`${root}/etc/resolv.conf`, ORIGINAL);
    const applied = await applyDns("mvpn0", SETTINGS, { rootDir: root });
    await Deno.writeTextFile(`${root}/etc/resolv.conf`, "nameserver 192.0.2.1\n"); // a DHCP client, say
    const notes = await applied.restore();
    assertEquals(notes, [
      `${root}/etc/resolv.conf was changed by someone else since the client wrote it; left as it is`,
    ]);
    assertEquals(await Deno.readTextFile(`${root}/etc/resolv.conf`), "nameserver 192.0.2.1\n");
    assertEquals(await exists(`${root}/var/lib/masque-vpn/dns-host.json`), false);
  });
});

Deno.test("recoverDns() restores what a client killed by SIGKILL left, and not while it runs", async () => {
  await withRoot(async (root) => {
    await Deno.writeTextFile(`${root}/etc/resolv.conf`, ORIGINAL);
    const options = { rootDir: root };
    const code = `
      import { applyDns } from ${JSON.stringify(new URL("./dns.ts", import.meta.url).href)};
      await applyDns("mvpn0", ${JSON.stringify(SETTINGS)}, ${JSON.stringify(options)});
      console.log("applied");
      setTimeout(() => {}, 60_000);`;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    try {
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      const { value } = await reader.read();
      assertEquals(value?.trim(), "applied");
      reader.releaseLock();
      assertEquals(await recoverDns(options), { kind: "in-use", pid: child.pid });
      await assertRejects(
        () => applyDns("mvpn1", SETTINGS, options),
        Error,
        `Cannot set DNS: the client with pid ${child.pid} manages it`,
      );
      child.kill("SIGKILL");
      await child.status;
      await child.stdout.cancel().catch(() => {});
      assert((await Deno.readTextFile(`${root}/etc/resolv.conf`)).includes("198.18.1.53"));
      // The next start.
      assertEquals(await recoverDns(options), { kind: "restored", pid: child.pid, notes: [] });
      assertEquals(await Deno.readTextFile(`${root}/etc/resolv.conf`), ORIGINAL);
      assertEquals(await recoverDns(options), { kind: "none" });
    } finally {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
  });
});

Deno.test({
  name: "applyDns() changes only a network namespace's resolver, as `ip netns exec` sees it",
  ...ROOT_ONLY,
  async fn() {
    const ns = `mvt-dns-${crypto.randomUUID().slice(0, 6)}`;
    const stateDir = await Deno.makeTempDir({ prefix: "mvpn-dns-state-" });
    const catIn = async () => {
      const out = await new Deno.Command("ip", {
        args: ["netns", "exec", ns, "cat", "/etc/resolv.conf"],
        stdout: "piped",
      }).output();
      return new TextDecoder().decode(out.stdout);
    };
    await new Deno.Command("ip", { args: ["netns", "add", ns] }).output();
    try {
      const host = await Deno.readTextFile("/etc/resolv.conf");
      const applied = await applyDns("mvpn0", SETTINGS, { netns: ns, stateDir });
      assert((await catIn()).includes("nameserver 198.18.1.53"));
      assertEquals(await Deno.readTextFile("/etc/resolv.conf"), host); // the host's is untouched
      await applied.restore();
      assertEquals(await exists(`/etc/netns/${ns}`), false);
      assertEquals(await catIn(), host);
    } finally {
      await new Deno.Command("ip", { args: ["netns", "del", ns] }).output();
      await Deno.remove(`/etc/netns/${ns}`, { recursive: true }).catch(() => {});
      await Deno.remove(stateDir, { recursive: true });
    }
  },
});

/** A fake `resolvectl` that records its calls and fails the ones `fail` names. */
function recorder(fail: string[] = []): { calls: string[]; run: CommandRunner } {
  const calls: string[] = [];
  return {
    calls,
    run: (command, args) => {
      const line = [command, ...args].join(" ");
      calls.push(line);
      const failed = fail.some((prefix) => line.startsWith(prefix));
      return Promise.resolve({ code: failed ? 1 : 0, stderr: failed ? "Failed to set" : "" });
    },
  };
}

Deno.test("with systemd-resolved, applyDns() sets per-link DNS with ~. on the TUN and reverts it", async () => {
  // There is no resolved on the test machines: this checks the commands given to resolvectl.
  await withRoot(async (root) => {
    const { calls, run } = recorder();
    const applied = await applyDns("mvpn0", SETTINGS, { rootDir: root, run, backend: "resolved" });
    assertEquals(applied.backend, "resolved");
    assertEquals(calls, [
      "resolvectl dns mvpn0 198.18.1.53 fd00:0:0:2::53",
      "resolvectl domain mvpn0 ~. corp.example",
      "resolvectl default-route mvpn0 yes",
    ]);
    assertEquals(await exists(`${root}/etc/resolv.conf`), false); // resolved's file is not touched
    await applied.restore();
    assertEquals(calls.at(-1), "resolvectl revert mvpn0");

    // A failed step is undone and reported.
    const failing = recorder(["resolvectl domain"]);
    await assertRejects(
      () => applyDns("mvpn0", SETTINGS, { rootDir: root, run: failing.run, backend: "resolved" }),
      Error,
      "Cannot set DNS: resolvectl domain mvpn0 ~. corp.example failed: Failed to set",
    );
    assertEquals(failing.calls.at(-1), "resolvectl revert mvpn0");
    assertEquals(await recoverDns({ rootDir: root }), { kind: "none" });
  });
});

Deno.test("detectDnsBackend() picks resolved only where it runs and owns resolv.conf", async () => {
  await withRoot(async (root) => {
    const { run } = recorder();
    await Deno.mkdir(`${root}/run/systemd/resolve`, { recursive: true });
    await Deno.writeTextFile(`${root}/etc/resolv.conf`, ORIGINAL);
    assertEquals(await detectDnsBackend({ rootDir: root, run }), "resolv.conf"); // not running
    await Deno.writeTextFile(`${root}/run/systemd/resolve/io.systemd.Resolve`, "");
    assertEquals(await detectDnsBackend({ rootDir: root, run }), "resolv.conf"); // a static file
    await Deno.writeTextFile(`${root}/etc/resolv.conf`, "nameserver 127.0.0.53\n");
    assertEquals(await detectDnsBackend({ rootDir: root, run }), "resolved");
    assertEquals(
      await detectDnsBackend({ rootDir: root, run: recorder(["resolvectl"]).run }),
      "resolv.conf",
    );
    assertEquals(await detectDnsBackend({ rootDir: root, run, netns: "x" }), "resolv.conf");
  });
});

Deno.test("applyDns() refuses settings that are not addresses and domain names", async () => {
  await withRoot(async (root) => {
    await assertRejects(
      () =>
        applyDns("mvpn0", { servers: ["1.2.3.4\nsearch evil"], searchDomains: [] }, {
          rootDir: root,
        }),
      Error,
      "is not an IP address",
    );
    await assertRejects(
      () => applyDns("mvpn0", { servers: ["1.2.3.4"], searchDomains: ["a b"] }, { rootDir: root }),
      Error,
      'search domain "a b" is not a domain name',
    );
    await assertRejects(
      () => applyDns("mvpn0", { servers: [], searchDomains: [] }, { rootDir: root }),
      Error,
      "no nameserver given",
    );
    assertEquals(await exists(`${root}/etc/resolv.conf`), false);
  });
});

Deno.test({
  name: "applyDns() writes a bind-mounted resolv.conf in place (containers, `ip netns exec`)",
  ...ROOT_ONLY,
  async fn() {
    await withRoot(async (root) => {
      await Deno.writeTextFile(`${root}/etc/resolv.conf`, "placeholder\n");
      await Deno.writeTextFile(`${root}/mounted`, ORIGINAL);
      // In a private mount namespace, bind-mount a file over resolv.conf: rename(2) onto it
      // fails with EBUSY, so the client must write the file in place, and restore it so too.
      const code = `
        import { applyDns } from ${JSON.stringify(new URL("./dns.ts", import.meta.url).href)};
        const applied = await applyDns("mvpn0", ${JSON.stringify(SETTINGS)}, { rootDir: ${
        JSON.stringify(root)
      } });
        console.log(JSON.stringify(await Deno.readTextFile(${
        JSON.stringify(`${root}/etc/resolv.conf`)
      })));
        await applied.restore();`;
      const script = `mount --bind ${root}/mounted ${root}/etc/resolv.conf && exec "$0" eval "$1"`;
      const output = await new Deno.Command("unshare", {
        args: ["--mount", "--propagation", "private", "sh", "-c", script, Deno.execPath(), code],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(new TextDecoder().decode(output.stderr), "");
      assert(
        JSON.parse(new TextDecoder().decode(output.stdout)).includes("nameserver 198.18.1.53"),
      );
      // The bind-mounted file was written in place and then restored; the file under the mount never changed.
      assertEquals(await Deno.readTextFile(`${root}/mounted`), ORIGINAL);
      assertEquals(await Deno.readTextFile(`${root}/etc/resolv.conf`), "placeholder\n");
    });
  },
});
