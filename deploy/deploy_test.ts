/**
 * Offline checks of the deployment files: the images, units and manifests
 * run the programs with the permissions of their `deno task`s; `compose.yaml`
 * keeps its networks internal and privileges where needed; the systemd units
 * pass `systemd-analyze verify` (where systemd is installed); the Kubernetes
 * manifests validate against the API schemas of `kubernetes-models`.
 */
import { parse as parseYaml, parseAllDocuments } from "npm:yaml@2.9.1";
import { ConfigMap } from "npm:kubernetes-models@5.1.0/v1/ConfigMap";
import { Namespace } from "npm:kubernetes-models@5.1.0/v1/Namespace";
import { Service } from "npm:kubernetes-models@5.1.0/v1/Service";
import { Deployment } from "npm:kubernetes-models@5.1.0/apps/v1/Deployment";
import { assert, assertEquals, assertMatch } from "../tests/support/assert.ts";
import { NEEDS_ROOT, RUN_AS_ROOT, skipUnless, skipUnlessCommands } from "../tests/support/skip.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const read = (path: string) => Deno.readTextFileSync(`${ROOT}/${path}`);

/**
 * The permission flags (`--allow-*`, `--unstable-*`), the V8 flags (the
 * tasks' smaller young generation, docs/performance.md) and entry file of a
 * `deno run` command.
 */
function permissions(words: readonly string[]): { flags: string[]; main: string } {
  const flags = words.filter((w) =>
    w.startsWith("--allow-") || w.startsWith("--unstable-") || w.startsWith("--v8-flags")
  );
  const main = words.find((w) => w.endsWith("/main.ts"));
  if (!main) throw new Error(`no main.ts in ${words.join(" ")}`);
  return { flags: flags.sort(), main };
}

/** `deno.json` task permissions with `--allow-write=...` replaced by `write`. */
function taskPermissions(task: string, write: string): string[] {
  const tasks: Record<string, string> = JSON.parse(read("deno.json")).tasks;
  const flags = permissions(tasks[task].split(/\s+/)).flags.filter((f) =>
    !f.startsWith("--allow-write")
  );
  return [...flags, `--allow-write=${write}`].sort();
}

/** The JSON array of each Dockerfile `ENTRYPOINT`, by stage. */
function dockerfileEntrypoints(): Map<string, string[]> {
  const text = read("Dockerfile").replace(/\\\n\s*/g, "");
  const entrypoints = new Map<string, string[]>();
  let stage = "";
  for (const line of text.split("\n")) {
    const from = /^FROM \S+ AS (\S+)/.exec(line);
    if (from) stage = from[1];
    if (line.startsWith("ENTRYPOINT ")) entrypoints.set(stage, JSON.parse(line.slice(11)));
  }
  return entrypoints;
}

/** The JSON array of each Dockerfile `HEALTHCHECK ... CMD`, by stage. */
function dockerfileHealthchecks(): Map<string, string[]> {
  const text = read("Dockerfile").replace(/\\\n\s*/g, "");
  const checks = new Map<string, string[]>();
  let stage = "";
  for (const line of text.split("\n")) {
    const from = /^FROM \S+ AS (\S+)/.exec(line);
    if (from) stage = from[1];
    const cmd = line.indexOf(" CMD [");
    if (line.startsWith("HEALTHCHECK ") && cmd > 0) {
      checks.set(stage, JSON.parse(line.slice(cmd + 5)));
    }
  }
  return checks;
}

/** `ExecStart=` of a systemd unit, split into words. */
function execStart(unit: string): string[] {
  const line = read(unit).split("\n").find((l) => l.startsWith("ExecStart="));
  if (!line) throw new Error(`${unit} has no ExecStart=`);
  return line.slice("ExecStart=".length).split(/\s+/);
}

Deno.test("images and systemd units run relay and client with the permissions and V8 flags of their tasks", () => {
  const entrypoints = dockerfileEntrypoints();
  const relay = entrypoints.get("relay")!;
  const client = entrypoints.get("client")!;
  assertEquals(permissions(relay), {
    flags: taskPermissions("relay:nat", "/run/masque-vpn"),
    main: "relay/main.ts",
  });
  assertEquals(permissions(client), {
    flags: taskPermissions("client", "/run/masque-vpn,/etc/resolv.conf,/var/lib/masque-vpn"),
    main: "client/main.ts",
  });
  assertEquals(permissions(execStart("deploy/systemd/masque-relay.service")), {
    flags: taskPermissions("relay:nat", "/run/masque-vpn"),
    main: "relay/main.ts",
  });
  assertEquals(permissions(execStart("deploy/systemd/masque-client.service")), {
    flags: taskPermissions(
      "client",
      "/run/masque-vpn-client,/etc/resolv.conf,/var/lib/masque-vpn",
    ),
    main: "client/main.ts",
  });
  // Dependencies come from the image's or the install's cache, never from the network.
  for (const words of [relay, client, execStart("deploy/systemd/masque-relay.service")]) {
    assert(words.includes("--cached-only"), words.join(" "));
  }
});

Deno.test("the images' health checks ask the admin endpoint each image starts on its loopback", () => {
  const entrypoints = dockerfileEntrypoints();
  const checks = dockerfileHealthchecks();
  const paths: Record<string, string> = { relay: "/healthz", client: "/readyz" };
  for (const stage of ["relay", "client"]) {
    const words = entrypoints.get(stage)!;
    const admin = words[words.indexOf("--admin") + 1];
    assertEquals(admin, "127.0.0.1:9464", `${stage}: --admin in the ENTRYPOINT`);
    assertEquals(checks.get(stage), [
      "deno",
      "run",
      "--cached-only",
      `--allow-net=${admin}`,
      "deploy/docker/healthcheck.ts",
      "--url",
      `http://${admin}${paths[stage]}`,
    ], `${stage}: HEALTHCHECK`);
  }
  // The Kubernetes probes ask the same endpoint from inside the container.
  const relay = read("deploy/kubernetes/relay.yaml");
  for (const probe of ["livenessProbe", "readinessProbe"]) {
    const path = probe === "livenessProbe" ? "/healthz" : "/readyz";
    const at = relay.indexOf(`${probe}:`);
    assert(at > 0, `relay.yaml: ${probe}`);
    assert(
      relay.slice(at, at + 400).includes(`- --url=http://127.0.0.1:9464${path}\n`),
      `relay.yaml: ${probe} GETs ${path}`,
    );
  }
});

interface ComposeService {
  image?: string;
  init?: boolean;
  read_only?: boolean;
  cap_add?: string[];
  cap_drop?: string[];
  devices?: string[];
  security_opt?: string[];
  networks?: Record<string, unknown>;
  network_mode?: string;
  user?: string;
}

Deno.test("compose.yaml: internal networks in the test ranges, NET_ADMIN and the TUN only for relay and client", () => {
  const compose = parseYaml(read("compose.yaml"), { merge: true }) as {
    services: Record<string, ComposeService>;
    networks: Record<string, { internal: boolean; ipam: { config: { subnet: string }[] } }>;
  };
  assertEquals(Object.keys(compose.services).sort(), [
    "check",
    "client",
    "init",
    "relay",
    "target",
  ]);
  for (const [name, network] of Object.entries(compose.networks)) {
    assertEquals(network.internal, true, `${name} is internal`);
    const subnets = network.ipam.config.map((c) =>
      c.subnet.replace(/^\$\{[A-Z0-9_]+:-(.*)\}$/, "$1")
    );
    assertEquals(subnets.length, 2);
    assertMatch(subnets[0], /^198\.1[89]\./, `${name} IPv4 in 198.18.0.0/15`);
    assertMatch(subnets[1], /^fd/, `${name} IPv6 in fd00::/8`);
  }
  for (const [name, service] of Object.entries(compose.services)) {
    assertEquals(service.init, true, `${name}: init reaps children`);
    assertEquals(service.read_only, true, `${name}: read-only root`);
    assertEquals(service.cap_drop, ["ALL"], `${name}: drops every capability`);
    assertEquals(service.security_opt, ["no-new-privileges:true"], name);
    const privileged = name === "relay" || name === "client";
    assertEquals(service.cap_add, privileged ? ["NET_ADMIN"] : undefined, `${name}: cap_add`);
    assertEquals(service.devices, privileged ? ["/dev/net/tun"] : undefined, `${name}: devices`);
  }
  const { relay, client, target, check, init } = compose.services;
  assertEquals(Object.keys(relay.networks!).sort(), ["client-net", "target-net"]);
  assertEquals(Object.keys(client.networks!), ["client-net"]);
  assertEquals(Object.keys(target.networks!), ["target-net"]);
  assertEquals(check.network_mode, "service:client");
  assertEquals(init.network_mode, "none");
  assertEquals(target.user, "10001:10001");
});

/** The value of `--NAME=VALUE` or `--NAME VALUE` among `words`. */
function optionValue(words: readonly string[], name: string): string | undefined {
  for (let i = 0; i < words.length; i++) {
    if (words[i] === `--${name}`) return words[i + 1];
    if (words[i].startsWith(`--${name}=`)) return words[i].slice(name.length + 3);
  }
  return undefined;
}

Deno.test("every relay these files start has a users file, and the compose client a token file", () => {
  const compose = parseYaml(read("compose.yaml"), { merge: true }) as {
    services: Record<string, { command: string[]; volumes: string[] }>;
  };
  const relayOnly = parseYaml(read("deploy/compose.relay.yaml")) as typeof compose;
  const cmd = JSON.parse(
    read("Dockerfile").replace(/\\\n\s*/g, "").split("\n").find((l) =>
      l.startsWith('CMD ["--port')
    )!
      .slice(4),
  );
  const k8s = manifests().find((m) => m.kind === "Deployment")!.spec.template.spec;
  const starts: [string, string[], string[]][] = [
    ["compose.yaml relay", compose.services.relay.command, compose.services.relay.volumes],
    [
      "deploy/compose.relay.yaml",
      relayOnly.services.relay.command,
      relayOnly.services.relay.volumes,
    ],
    ["Dockerfile relay CMD", cmd, []],
    [
      "deploy/systemd/relay.env.example",
      read("deploy/systemd/relay.env.example").split("\n").find((l) =>
        l.startsWith("RELAY_OPTIONS=")
      )!
        .split(/\s+/),
      [],
    ],
    [
      "deploy/kubernetes/relay.yaml",
      k8s.containers[0].args,
      k8s.containers[0].volumeMounts.map((m: { mountPath: string }) => `x:${m.mountPath}`),
    ],
  ];
  for (const [where, words, volumes] of starts) {
    assert(!words.includes("--no-auth"), `${where}: --no-auth`);
    const users = optionValue(words, "users") ?? "";
    assert(users?.endsWith(".json"), `${where}: no --users in ${words.join(" ")}`);
    // Mounted as a directory, so that a rename on the other side shows (SIGHUP).
    if (volumes.length > 0) {
      const dir = users.slice(0, users.lastIndexOf("/"));
      assert(volumes.some((v) => v.split(":")[1] === dir), `${where}: ${dir} not mounted`);
    }
  }
  const client = compose.services.client;
  const token = optionValue(client.command, "token-file");
  assertEquals(token, "/etc/masque-vpn/token/token");
  assert(client.volumes.includes("client-token:/etc/masque-vpn/token:ro"), "token volume");
  assertMatch(read("compose.yaml"), /deploy\/docker\/dev_user\.ts/);
});

Deno.test(".dockerignore keeps tests, dev certificates and bench results out of the images", () => {
  const lines = read(".dockerignore").split("\n").filter((l) => l && !l.startsWith("#"));
  assertEquals(lines[0], "*", "everything is out unless listed");
  for (const kept of lines.filter((l) => l.startsWith("!"))) {
    assert(!/^!tests\/?$|^!dev-certs|^!bench-results|^!\.git/.test(kept), `${kept} let in`);
  }
  for (const excluded of ["**/*_test.ts", "**/dev-certs/", "**/bench-results/"]) {
    assert(lines.includes(excluded), `${excluded} excluded`);
  }
});

const systemdAnalyze = await skipUnlessCommands(
  ["systemd-analyze"],
  () =>
    new Deno.Command("sh", {
      args: ["-c", "command -v systemd-analyze"],
      stdout: "null",
      stderr: "null",
    }).output().then((o) => o.success, () => false),
);

Deno.test({
  name: "systemd units: systemd-analyze verify accepts them without a warning",
  ...systemdAnalyze,
}, async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "mvpn-units-" });
  // verify checks that ExecStart's program exists; point it at this Deno when
  // /usr/local/bin/deno (where docs/deploy.md installs it) is not there.
  const deno = await Deno.stat("/usr/local/bin/deno").then(
    () => "/usr/local/bin/deno",
    () => Deno.execPath(),
  );
  const verify = async (names: string[]) => {
    const out = await new Deno.Command("systemd-analyze", {
      args: ["verify", "--man=no", ...names.map((name) => `${dir}/${name}`)],
      stdout: "piped",
      stderr: "piped",
      env: { SYSTEMD_LOG_COLOR: "0" },
    }).output();
    return {
      code: out.code,
      text: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr),
    };
  };
  try {
    const units = ["masque-relay.service", "masque-client.service"];
    for (const unit of units) {
      const text = read(`deploy/systemd/${unit}`).replaceAll("/usr/local/bin/deno", deno);
      await Deno.writeTextFile(`${dir}/${unit}`, text);
    }
    await t.step("both units", async () => {
      const result = await verify(units);
      assertEquals(result.code, 0, result.text);
      assertEquals(result.text.trim(), "", "no warnings");
    });
    await t.step("control: a unit with a mistake is reported", async () => {
      const broken = read("deploy/systemd/masque-relay.service")
        .replaceAll("/usr/local/bin/deno", deno)
        .replace("NoNewPrivileges=yes", "NoNewPrivileges=yes\nRestrictAddressFamilies=AF_BOGUS");
      await Deno.writeTextFile(`${dir}/broken.service`, broken);
      assertMatch((await verify(["broken.service"])).text, /Failed to parse address family/);
    });
    await t.step("each unit has what the deployment guide relies on", () => {
      for (const unit of units) {
        const text = read(`deploy/systemd/${unit}`);
        // The relay also binds port 443 (UDP, and TCP for HTTP/2 and WebTransport).
        const caps = unit === "masque-relay.service"
          ? "CAP_NET_ADMIN CAP_NET_BIND_SERVICE"
          : "CAP_NET_ADMIN";
        for (
          const line of [
            `AmbientCapabilities=${caps}`,
            `CapabilityBoundingSet=${caps}`,
            "User=masque-vpn",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK AF_UNIX",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "DeviceAllow=/dev/net/tun rw",
          ]
        ) {
          assert(text.split("\n").includes(line), `${unit}: ${line}`);
        }
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// deno-lint-ignore no-explicit-any
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  "v1/Namespace": Namespace,
  "v1/ConfigMap": ConfigMap,
  "v1/Service": Service,
  "apps/v1/Deployment": Deployment,
};

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  // deno-lint-ignore no-explicit-any
  spec?: any;
}

function manifests(): Manifest[] {
  const dir = `${ROOT}/deploy/kubernetes`;
  const files = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".yaml"));
  return files.sort().flatMap((file) =>
    parseAllDocuments(Deno.readTextFileSync(`${dir}/${file}`)).map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0].message}`);
      return doc.toJS() as Manifest;
    })
  );
}

Deno.test("kubernetes manifests validate against the API schemas (offline; not run on a cluster)", async (t) => {
  const all = manifests();
  await t.step("every document is a known kind that validates", () => {
    for (const manifest of all) {
      const Model = MODELS[`${manifest.apiVersion}/${manifest.kind}`];
      assert(Model, `no schema for ${manifest.apiVersion} ${manifest.kind}`);
      new Model(manifest).validate();
      if (manifest.kind !== "Namespace") assertEquals(manifest.metadata.namespace, "masque-vpn");
    }
  });
  await t.step("control: a schema violation is reported", () => {
    const deployment = structuredClone(all.find((m) => m.kind === "Deployment")!);
    deployment.spec.template.spec.containers[0].ports[0].containerPort = "443";
    let message = "";
    try {
      new Deployment(deployment).validate();
    } catch (error) {
      message = String(error);
    }
    assertMatch(message, /containerPort must be integer/);
  });
  await t.step("the relay pod: NET_ADMIN only, the TUN, probes, one replica, port 443", () => {
    const deployment = all.find((m) => m.kind === "Deployment")!;
    const pod = deployment.spec.template.spec;
    const relay = pod.containers[0];
    assertEquals(relay.securityContext.capabilities, { drop: ["ALL"], add: ["NET_ADMIN"] });
    assertEquals(relay.securityContext.allowPrivilegeEscalation, false);
    assert(relay.livenessProbe && relay.readinessProbe, "probes");
    assert(
      relay.volumeMounts.some((m: { mountPath: string }) => m.mountPath === "/dev/net/tun"),
      "TUN mounted",
    );
    assertEquals(deployment.spec.replicas, 1);
    assertEquals(deployment.spec.strategy.type, "Recreate");
    const service = all.find((m) => m.kind === "Service")!;
    assertEquals(service.spec.ports[0].protocol, "UDP");
    assertEquals(service.spec.ports[0].port, 443);
    assertEquals(service.spec.ports[1].protocol, "TCP");
    assertEquals(service.spec.ports[1].port, 443);
    assertEquals(
      relay.ports.map((p: { containerPort: number; protocol: string }) =>
        `${p.containerPort}/${p.protocol}`
      ),
      ["443/UDP", "443/TCP"],
    );
    // Port 443 without CAP_NET_BIND_SERVICE (the relay checks at start-up).
    assert(
      pod.securityContext.sysctls.some((s: { name: string; value: string }) =>
        s.name === "net.ipv4.ip_unprivileged_port_start" && s.value === "0"
      ),
      "ip_unprivileged_port_start 0",
    );
  });
});

async function commandWorks(cmd: string[]): Promise<boolean> {
  return await new Deno.Command(cmd[0], { args: cmd.slice(1), stdout: "null", stderr: "null" })
    .output().then((o) => o.success, () => false);
}

async function output(cmd: string[], env?: Record<string, string>) {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdout: "piped",
    stderr: "piped",
    env,
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, text };
}

const canCheckNft = Deno.uid() === 0
  ? await skipUnlessCommands(["nft", "ip"], (command) => commandWorks([command, "-V"]))
  : skipUnless(false, NEEDS_ROOT, RUN_AS_ROOT);

Deno.test({
  name: "deploy/nftables/masque-relay.nft passes `nft -c` (in a namespace of its own)",
  ...canCheckNft,
}, async () => {
  const ns = `mvpn-nftcheck-${crypto.randomUUID().slice(0, 8)}`;
  await output(["ip", "netns", "add", ns]);
  try {
    const file = `${ROOT}/deploy/nftables/masque-relay.nft`;
    const good = await output(["ip", "netns", "exec", ns, "nft", "-c", "-f", file]);
    assertEquals(good.code, 0, good.text);
    const broken = await Deno.makeTempFile({ suffix: ".nft" });
    await Deno.writeTextFile(
      broken,
      read("deploy/nftables/masque-relay.nft").replace("udp dport 443", "udp dport 99999"),
    );
    const bad = await output(["ip", "netns", "exec", ns, "nft", "-c", "-f", broken]);
    await Deno.remove(broken);
    assert(bad.code !== 0, "control: a wrong port is refused");
  } finally {
    await output(["ip", "netns", "del", ns]);
  }
});

const composeV1 = await skipUnlessCommands(
  ["docker-compose"],
  () => commandWorks(["docker-compose", "version"]),
);

Deno.test({
  name: "compose files pass `docker-compose config` (v1, Debian 12's)",
  ...composeV1,
}, async () => {
  for (const file of ["compose.yaml", "deploy/compose.relay.yaml"]) {
    const result = await output(["docker-compose", "-f", `${ROOT}/${file}`, "config", "-q"], {
      DOCKER_HOST: "unix:///nonexistent.sock",
    });
    assertEquals(result.code, 0, `${file}: ${result.text}`);
  }
});

Deno.test("docs/deploy.md marks every command block with what runs it or why nothing here can", () => {
  const text = read("docs/deploy.md");
  const blocks = [...text.matchAll(/```sh\n([^\n]*)\n/g)].map((m) => m[1]);
  assert(blocks.length >= 8, `${blocks.length} command blocks`);
  for (const first of blocks) {
    assertMatch(
      first,
      /^# (run by: \S|needs the real Internet|needs a real server|not yet: issue \d+)/,
    );
  }
});
