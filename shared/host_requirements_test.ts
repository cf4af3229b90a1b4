import { assertEquals } from "../tests/support/assert.ts";
import {
  CAP_NET_ADMIN,
  CAP_NET_BIND_SERVICE,
  checkHost,
  formatHostProblems,
  hasCapability,
  type HostState,
} from "./host_requirements.ts";

/** Root's effective set on Linux 6.x: capabilities 0 to 40 (`CapEff: 000001ffffffffff`). */
const ROOT_CAPS = 0x1ffffffffffn;
const NET_ADMIN_ONLY = 1n << BigInt(CAP_NET_ADMIN);

function state(overrides: Partial<HostState>): HostState {
  return {
    tunDevice: "ok",
    effectiveCapabilities: ROOT_CAPS,
    unprivilegedPortStart: 1024,
    forwarding: false,
    commands: { nft: "found", sysctl: "found" },
    ...overrides,
  };
}

Deno.test("hasCapability() reads bits of the CapEff mask", () => {
  assertEquals(hasCapability(ROOT_CAPS, CAP_NET_ADMIN), true);
  assertEquals(hasCapability(NET_ADMIN_ONLY, CAP_NET_ADMIN), true);
  assertEquals(hasCapability(NET_ADMIN_ONLY, CAP_NET_BIND_SERVICE), false);
  assertEquals(hasCapability(0n, CAP_NET_ADMIN), false);
});

Deno.test("checkHost() finds nothing wrong for root with a TUN device and nft", () => {
  assertEquals(checkHost({ program: "relay", nat: true, port: 443 }, state({})), []);
  assertEquals(checkHost({ program: "client" }, state({ commands: undefined })), []);
  // CAP_NET_ADMIN alone is enough on an unprivileged port; unknown facts are not held against it.
  assertEquals(
    checkHost({ program: "relay", port: 4433 }, state({ effectiveCapabilities: NET_ADMIN_ONLY })),
    [],
  );
  assertEquals(
    checkHost({ program: "relay", port: 443 }, {
      tunDevice: "ok",
      effectiveCapabilities: undefined,
      unprivilegedPortStart: undefined,
      forwarding: undefined,
    }),
    [],
  );
});

Deno.test("checkHost() says a user without CAP_NET_ADMIN needs root, and how", () => {
  const problems = checkHost(
    { program: "client" },
    state({ effectiveCapabilities: 0n, tunDevice: "EACCES" }),
  );
  assertEquals(problems, [
    {
      problem: "the client needs root or CAP_NET_ADMIN to create its TUN device and set its " +
        "addresses and routes",
      fix: "run it as root (sudo deno task client ...), or with CAP_NET_ADMIN only: the systemd " +
        "unit in deploy/systemd, or a container with --cap-add NET_ADMIN",
    },
    {
      problem: "/dev/net/tun cannot be opened (EACCES)",
      fix: "run it as root (sudo deno task client ...)",
    },
  ]);
  assertEquals(formatHostProblems("client", problems.slice(1)), [
    "error: the client cannot start on this host:",
    "  - /dev/net/tun cannot be opened (EACCES)",
    "    fix: run it as root (sudo deno task client ...)",
  ]);
});

Deno.test("checkHost() says how to get a missing TUN device", () => {
  for (const errno of ["ENOENT", "ENODEV", "ENXIO"]) {
    assertEquals(checkHost({ program: "client" }, state({ tunDevice: errno })), [{
      problem: `there is no TUN device: /dev/net/tun cannot be opened (${errno})`,
      fix: "load the driver as root: modprobe tun; in a container, pass the device: " +
        "docker run --device /dev/net/tun (compose: devices: [/dev/net/tun])",
    }]);
  }
});

Deno.test("checkHost() with --nat: nft missing or not permitted, sysctl while forwarding is off", async (t) => {
  await t.step("nft and sysctl missing, forwarding off", () => {
    const problems = checkHost(
      { program: "relay", nat: true, port: 4433 },
      state({ commands: { nft: "missing", sysctl: "missing" } }),
    );
    assertEquals(problems.map((p) => p.fix), [
      "apt-get install -y nftables",
      "apt-get install -y procps, or set net.ipv4.ip_forward=1 and net.ipv6.conf.all.forwarding=1 " +
      "before the relay starts (/etc/sysctl.d)",
    ]);
  });
  await t.step("sysctl is not needed while forwarding is on", () => {
    assertEquals(
      checkHost(
        { program: "relay", nat: true, port: 4433 },
        state({ forwarding: true, commands: { nft: "found", sysctl: "missing" } }),
      ),
      [],
    );
  });
  await t.step("plain `deno task relay --nat` may not run nft", () => {
    assertEquals(
      checkHost(
        { program: "relay", nat: true, port: 4433 },
        state({ commands: { nft: "not permitted", sysctl: "not permitted" } }),
      ),
      [{
        problem: "--nat runs nft and sysctl, and this Deno may not run them",
        fix: "use deno task relay:nat, which grants --allow-run=nft,sysctl",
      }],
    );
  });
  await t.step("without --nat nft is not asked for", () => {
    assertEquals(
      checkHost({ program: "relay", port: 4433 }, state({ commands: { nft: "missing" } })),
      [],
    );
  });
});

Deno.test("checkHost() with --kill-switch on: nft missing or not permitted", () => {
  assertEquals(
    checkHost({ program: "client", killSwitch: true }, state({ commands: { nft: "missing" } })),
    [{
      problem: "--kill-switch on needs nft (nftables), which is not installed",
      fix: "apt-get install -y nftables, or --kill-switch off",
    }],
  );
  assertEquals(
    checkHost(
      { program: "client", killSwitch: true },
      state({ commands: { nft: "not permitted" } }),
    ).map((p) => p.problem),
    ["--kill-switch on runs nft, and this Deno may not run it"],
  );
  assertEquals(
    checkHost({ program: "client", killSwitch: true }, state({ commands: { nft: "found" } })),
    [],
  );
  // auto decides once the routes are known: not a start-up problem.
  assertEquals(checkHost({ program: "client" }, state({ commands: { nft: "missing" } })), []);
});

Deno.test("checkHost() flags a privileged port without CAP_NET_BIND_SERVICE", () => {
  const caps = { effectiveCapabilities: NET_ADMIN_ONLY };
  assertEquals(checkHost({ program: "relay", port: 443 }, state(caps)).map((p) => p.problem), [
    "UDP port 443 is below 1024: binding it needs root or CAP_NET_BIND_SERVICE",
  ]);
  // A lowered ip_unprivileged_port_start, or port 0 (any), needs nothing.
  assertEquals(
    checkHost({ program: "relay", port: 443 }, state({ ...caps, unprivilegedPortStart: 443 })),
    [],
  );
  assertEquals(checkHost({ program: "relay", port: 0 }, state(caps)), []);
  // The TCP port of HTTP/2 and WebTransport is checked the same way.
  assertEquals(
    checkHost({ program: "relay", port: 443, tcpPort: 443 }, state(caps)).map((p) => p.problem),
    [
      "UDP port 443 is below 1024: binding it needs root or CAP_NET_BIND_SERVICE",
      "TCP port 443 is below 1024: binding it needs root or CAP_NET_BIND_SERVICE",
    ],
  );
  assertEquals(
    checkHost({ program: "relay", port: 4433, tcpPort: 80 }, state(caps)).map((p) => p.fix),
    [
      "run it as root, or grant CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=" +
      "CAP_NET_ADMIN CAP_NET_BIND_SERVICE), or lower net.ipv4.ip_unprivileged_port_start, " +
      "or choose --tcp-port 1024 or above (or --no-tcp)",
    ],
  );
  assertEquals(
    checkHost(
      { program: "relay", port: 443 },
      state({ effectiveCapabilities: NET_ADMIN_ONLY | (1n << BigInt(CAP_NET_BIND_SERVICE)) }),
    ),
    [],
  );
});
