/**
 * A Docker engine for tests, and the images the project's `Dockerfile` builds
 * on, made without Docker Hub:
 *
 * - {@linkcode dockerSkipReason}: why Docker cannot run here and what would
 *   make it run (cheap checks, for `skipUnless`), or `undefined`.
 * - {@linkcode openEngine}: the engine `DOCKER_HOST` or `/var/run/docker.sock`
 *   points at when one answers, else a `dockerd` of our own with its own data
 *   and exec roots in a temporary directory, no default bridge and no
 *   iptables, ip6tables or forwarding changes on the host; `stop()` ends only
 *   an engine this module started.
 * - {@linkcode ensureBaseImage}: `debian:bookworm-slim` (the `FROM` of the
 *   `Dockerfile`), when the engine lacks it, from `debootstrap --variant=minbase`
 *   with the mirror apt already uses, trimmed as Debian's slim images are and
 *   `docker import`ed. The root file system is kept as a tarball in a cache
 *   directory, so later runs import it in seconds without the mirror.
 * - {@linkcode ensureDenoPackage}: the npm tarball of the Deno binary for the
 *   build context (`deploy/docker/deno-cache/`), fetched with `npm pack`
 *   (npm's cache makes it offline after the first fetch).
 * - {@linkcode ensureNpmCache}: the npm packages for the build context
 *   (`deploy/docker/deno-cache/deno-dir`), fetched by this host's Deno.
 * - {@linkcode buildImages}: the relay, client and app images with the classic
 *   builder and host networking (BuildKit needs the default bridge).
 * - {@linkcode composeCommand}: `docker-compose` (v1, Debian 12's) or
 *   `docker compose` (v2).
 *
 * Needs root to start an engine and to run debootstrap.
 *
 * @module
 */

import { commandFound, RUN_AS_ROOT } from "./skip.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");

/** Tag the `Dockerfile`'s `FROM` names. */
export const BASE_IMAGE = "debian:bookworm-slim";
/** Debian suite of {@linkcode BASE_IMAGE}. */
export const BASE_SUITE = "bookworm";
/** A cached base tarball older than this is rebuilt, so security updates come in (days). */
const BASE_CACHE_MAX_AGE_DAYS = 30;
const ENGINE_START_TIMEOUT_MS = 60_000;
const ENGINE_STOP_TIMEOUT_MS = 30_000;
const DEFAULT_TIMEOUT_MS = 120_000;
const DEBOOTSTRAP_TIMEOUT_MS = 600_000;
const BUILD_TIMEOUT_MS = 900_000;
const LAST_LINES = 30;

/** Image tags built by {@linkcode buildImages}, as `compose.yaml` names them. */
export const IMAGE_TAGS = {
  app: "masque-vpn-app:dev",
  relay: "masque-vpn-relay:dev",
  client: "masque-vpn-client:dev",
} as const;

/** Options of {@linkcode run}. */
export interface RunOptions {
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Throw when the exit code is not 0 (default true). */
  check?: boolean;
  /** Kill the command (SIGKILL) and throw after this many milliseconds (default 120 s). */
  timeoutMs?: number;
  /** Working directory. */
  cwd?: string;
}

/** Output of {@linkcode run}. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion with a time limit; see {@linkcode RunOptions}. */
export async function run(cmd: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const { check = true, timeoutMs = DEFAULT_TIMEOUT_MS } = options;
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env: options.env,
    cwd: options.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // Exited meanwhile.
    }
  }, timeoutMs);
  const output = await child.output().finally(() => clearTimeout(timer));
  const result = {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  };
  if (timedOut) {
    throw new Error(
      `Command "${cmd.join(" ")}" timed out after ${timeoutMs} ms; stderr: ${
        lastLines(result.stderr)
      }`,
    );
  }
  if (check && result.code !== 0) {
    throw new Error(
      `Command "${cmd.join(" ")}" failed with exit code ${result.code}; output: ${
        lastLines(result.stdout + result.stderr)
      }`,
    );
  }
  return result;
}

/** Why Docker cannot run here, and the command (or step) that would make it run. */
export interface DockerSkip {
  readonly reason: string;
  readonly fix: string;
}

const INSTALL = "apt-get install -y --no-install-recommends";

/**
 * Why Docker cannot run here, or `undefined` when it may. Cheap: looks at
 * the platform, the user and the commands (those {@linkcode openEngine},
 * {@linkcode ensureBaseImage} and {@linkcode ensureDenoPackage} run), and
 * asks an engine that is already configured; does not start one.
 */
export async function dockerSkipReason(): Promise<DockerSkip | undefined> {
  if (Deno.build.os !== "linux") {
    return { reason: `Docker tests run on Linux only, not ${Deno.build.os}`, fix: "run on Linux" };
  }
  if (!await commandFound("docker")) {
    return { reason: "no docker CLI", fix: `${INSTALL} docker.io docker-compose` };
  }
  if (await composeCommand() === undefined) {
    return {
      reason: "neither docker-compose nor `docker compose`",
      fix: `${INSTALL} docker-compose`,
    };
  }
  if (!await commandFound("npm") && !await exists(denoPackagePath(Deno.version.deno))) {
    return { reason: "npm is missing (it fetches Deno for the images)", fix: `${INSTALL} npm` };
  }
  if (await reachableEngineHost() !== undefined) return undefined;
  if (!isRoot()) {
    return {
      reason: "no Docker engine answers and starting one needs root",
      fix: RUN_AS_ROOT,
    };
  }
  if (!await commandFound("dockerd")) {
    return {
      reason: "no Docker engine answers and dockerd is missing",
      fix: `${INSTALL} docker.io`,
    };
  }
  if (!await commandFound("nft")) {
    return {
      reason: "nft is missing (it isolates our engine's networks)",
      fix: `${INSTALL} nftables`,
    };
  }
  if (!await commandFound("debootstrap") && !await exists(baseTarballPath())) {
    return {
      reason: `debootstrap is missing (it builds ${BASE_IMAGE}, and no cached copy exists)`,
      fix: `${INSTALL} debootstrap`,
    };
  }
  return undefined;
}

/** A Docker engine to run `docker` and compose against. */
export interface DockerEngine {
  /** `DOCKER_HOST` value, e.g. `unix:///var/tmp/mvpn-docker-x/docker.sock`. */
  readonly host: string;
  /** True when {@linkcode openEngine} started it; `stop()` then ends it. */
  readonly owned: boolean;
  /** Environment for `docker` and compose: `DOCKER_HOST`, classic builder. */
  readonly env: Record<string, string>;
  /** Runs `docker ARGS` against this engine. */
  docker(args: readonly string[], options?: RunOptions): Promise<RunResult>;
  /** Ends an engine this module started (containers stopped, data root removed); else nothing. */
  stop(): Promise<void>;
}

/**
 * The engine at `DOCKER_HOST` or `/var/run/docker.sock` when one answers,
 * else a new `dockerd` (needs root) whose log goes to `logDir/dockerd.log`.
 */
export async function openEngine(options: { logDir: string }): Promise<DockerEngine> {
  const existing = await reachableEngineHost();
  if (existing !== undefined) return new Engine(existing, undefined);
  return await startEngine(options.logDir);
}

async function reachableEngineHost(): Promise<string | undefined> {
  const candidates: string[] = [];
  const configured = Deno.env.get("DOCKER_HOST");
  if (configured) candidates.push(configured);
  else if (await exists("/var/run/docker.sock")) candidates.push("unix:///var/run/docker.sock");
  for (const host of candidates) {
    const result = await run(["docker", "version", "--format", "{{.Server.Version}}"], {
      env: { DOCKER_HOST: host },
      check: false,
      timeoutMs: 10_000,
    }).catch(() => undefined);
    if (result?.code === 0) return host;
  }
  return undefined;
}

async function startEngine(logDir: string): Promise<DockerEngine> {
  // Short paths: containerd's sockets live under the exec root (108-byte limit).
  const base = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "mvpn-docker-" });
  const host = `unix://${base}/docker.sock`;
  await Deno.mkdir(logDir, { recursive: true });
  const logFile = `${logDir}/dockerd.log`;
  const args = [
    "--iptables=false",
    "--ip6tables=false",
    "--ip-forward=false",
    "--ip-masq=false",
    "--bridge=none",
    `--data-root=${base}/data`,
    `--exec-root=${base}/exec`,
    `--pidfile=${base}/dockerd.pid`,
    `--host=${host}`,
  ];
  // The shell execs dockerd with both output streams appended to the log file.
  const child = new Deno.Command("sh", {
    args: ["-c", 'log="$1"; shift; exec dockerd "$@" >>"$log" 2>&1', "sh", logFile, ...args],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const done = child.status.then(() => {});
  const engine = new Engine(host, { child, base, done, logFile });
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = Date.now() + ENGINE_START_TIMEOUT_MS;
  while (Date.now() < deadline && !exited) {
    const answer = await run(["docker", "version", "--format", "{{.Server.Version}}"], {
      env: { DOCKER_HOST: host },
      check: false,
      timeoutMs: 5_000,
    }).catch(() => undefined);
    if (answer?.code === 0) return engine;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  await engine.stop();
  const tail = lastLines(await Deno.readTextFile(logFile).catch(() => ""));
  throw new Error(
    `Cannot start dockerd: ${exited ? "it exited" : "no answer"} within ${
      ENGINE_START_TIMEOUT_MS / 1000
    } s; log ${logFile}:\n${tail}`,
  );
}

interface OwnedProcess {
  child: Deno.ChildProcess;
  base: string;
  done: Promise<void>;
  logFile: string;
}

class Engine implements DockerEngine {
  readonly host: string;
  readonly owned: boolean;
  readonly env: Record<string, string>;
  #process: OwnedProcess | undefined;
  #stopped: Promise<void> | undefined;

  constructor(host: string, process: OwnedProcess | undefined) {
    this.host = host;
    this.owned = process !== undefined;
    this.#process = process;
    this.env = { DOCKER_HOST: host, DOCKER_BUILDKIT: "0", COMPOSE_DOCKER_CLI_BUILD: "0" };
  }

  docker(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    return run(["docker", ...args], { ...options, env: { ...this.env, ...options.env } });
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    const owned = this.#process;
    if (!owned) return;
    const { child, base, done } = owned;
    try {
      child.kill("SIGTERM");
    } catch {
      // Exited already.
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Exited meanwhile.
        }
        resolve();
      }, ENGINE_STOP_TIMEOUT_MS);
    });
    await Promise.race([child.status.then(() => {}), killed]);
    await child.status;
    clearTimeout(timer);
    await done;
    // Mounts a killed engine left behind would make the removal fail.
    await run([
      "sh",
      "-c",
      `grep -o " ${base}/[^ ]*" /proc/self/mounts | sort -r | xargs -r umount -l`,
    ], {
      check: false,
    }).catch(() => {});
    await Deno.remove(base, { recursive: true }).catch((error) => {
      console.warn(`docker.ts: cannot remove ${base}: ${error}`);
    });
  }
}

/** Options of {@linkcode ensureBaseImage}. */
export interface BaseImageOptions {
  /** Where the root file system tarball is kept (default `MASQUE_CACHE_DIR` or `/var/cache/masque-vpn`). */
  cacheDir?: string;
  /** Debian mirror URL ending in `/debian` (default: the one apt uses on this host). */
  mirror?: string;
}

/**
 * Makes {@linkcode BASE_IMAGE} exist in `engine`: `"present"` when it did,
 * `"imported"` from the cached tarball, `"built"` with debootstrap (needs
 * root and `debootstrap`; about a minute).
 */
export async function ensureBaseImage(
  engine: DockerEngine,
  options: BaseImageOptions = {},
): Promise<"present" | "imported" | "built"> {
  const inspect = await engine.docker(["image", "inspect", BASE_IMAGE], { check: false });
  if (inspect.code === 0) return "present";
  const tarball = baseTarballPath(options.cacheDir);
  let how: "imported" | "built" = "imported";
  const info = await Deno.stat(tarball).catch(() => undefined);
  const ageDays = info?.mtime ? (Date.now() - info.mtime.getTime()) / 86_400_000 : Infinity;
  if (ageDays > BASE_CACHE_MAX_AGE_DAYS) {
    await buildBaseTarball(tarball, options.mirror ?? await debianMirror());
    how = "built";
  }
  await engine.docker([
    "import",
    "--change",
    'CMD ["bash"]',
    "--change",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    tarball,
    BASE_IMAGE,
  ], { timeoutMs: 300_000 });
  return how;
}

/** Where {@linkcode ensureBaseImage} keeps the root file system tarball. */
function baseTarballPath(cacheDir?: string): string {
  const dir = cacheDir ?? Deno.env.get("MASQUE_CACHE_DIR") ?? "/var/cache/masque-vpn";
  return `${dir}/debian-${BASE_SUITE}-minbase-${Deno.build.arch}.tar`;
}

/** The Debian mirror apt uses on this host: the first `deb` source whose URL ends in `/debian`. */
export async function debianMirror(): Promise<string> {
  const texts: string[] = [];
  for (const file of ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"]) {
    texts.push(await Deno.readTextFile(file).catch(() => ""));
  }
  for (const line of texts.join("\n").split("\n")) {
    const words = line.trim().split(/\s+/);
    const url = words[0] === "URIs:"
      ? words[1]
      : words[0] === "deb"
      ? words[words[1]?.startsWith("[") ? 2 : 1]
      : undefined;
    if (url && /^https?:\/\//.test(url) && url.replace(/\/+$/, "").endsWith("/debian")) {
      return url.replace(/\/+$/, "");
    }
  }
  throw new Error(
    "Cannot find the Debian mirror apt uses (no URL ending in /debian in /etc/apt/sources.list " +
      "or sources.list.d/debian.sources): pass it as `mirror`",
  );
}

/** Files that make later `apt-get install`s in the image leave no docs, caches or lists (as Debian's slim images). */
const SLIM_CONFIG: Record<string, string> = {
  "etc/dpkg/dpkg.cfg.d/docker-slim": [
    "path-exclude /usr/share/doc/*",
    "path-include /usr/share/doc/*/copyright",
    "path-exclude /usr/share/man/*",
    "path-exclude /usr/share/groff/*",
    "path-exclude /usr/share/info/*",
    "path-exclude /usr/share/lintian/*",
    "path-exclude /usr/share/linda/*",
    "path-exclude /usr/share/locale/*",
    "path-include /usr/share/locale/locale.alias",
    "",
  ].join("\n"),
  "etc/apt/apt.conf.d/docker-clean": [
    'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };',
    'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };',
    'Dir::Cache::pkgcache "";',
    'Dir::Cache::srcpkgcache "";',
    "",
  ].join("\n"),
  "etc/apt/apt.conf.d/docker-no-languages": 'Acquire::Languages "none";\n',
  "etc/apt/apt.conf.d/docker-no-recommends": [
    'APT::Install-Recommends "false";',
    'APT::Install-Suggests "false";',
    "",
  ].join("\n"),
};

async function buildBaseTarball(tarball: string, mirror: string): Promise<void> {
  if (!isRoot()) throw new Error(`Cannot build ${BASE_IMAGE}: debootstrap needs root`);
  if (!await commandFound("debootstrap")) {
    throw new Error(`Cannot build ${BASE_IMAGE}: apt-get install debootstrap`);
  }
  const cacheDir = tarball.slice(0, tarball.lastIndexOf("/"));
  await Deno.mkdir(cacheDir, { recursive: true });
  const work = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "mvpn-rootfs-" });
  const rootfs = `${work}/rootfs`;
  try {
    await run(["debootstrap", "--variant=minbase", BASE_SUITE, rootfs, mirror], {
      timeoutMs: DEBOOTSTRAP_TIMEOUT_MS,
    });
    const security = mirror.replace(/\/debian$/, "/debian-security");
    await Deno.writeTextFile(
      `${rootfs}/etc/apt/sources.list`,
      [
        `deb ${mirror} ${BASE_SUITE} main`,
        `deb ${mirror} ${BASE_SUITE}-updates main`,
        `deb ${security} ${BASE_SUITE}-security main`,
        "",
      ].join("\n"),
    );
    for (const [path, text] of Object.entries(SLIM_CONFIG)) {
      await Deno.writeTextFile(`${rootfs}/${path}`, text);
    }
    await run([
      "sh",
      "-c",
      [
        'cd "$1"',
        "rm -rf var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb",
        "rm -rf var/log/apt/* var/log/*.log usr/share/man/* usr/share/info/* usr/share/locale/*",
        "find usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete",
        "find usr/share/doc -mindepth 1 -type d -empty -delete",
        // Per-machine identity must not be baked into an image.
        ": > etc/machine-id",
        "rm -f etc/hostname var/lib/dbus/machine-id",
      ].join(" && "),
      "sh",
      rootfs,
    ]);
    const partial = `${tarball}.${Deno.pid}.partial`;
    await run(["tar", "--numeric-owner", "-C", rootfs, "-cf", partial, "."], {
      timeoutMs: 300_000,
    });
    await Deno.rename(partial, tarball);
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/** npm package that ships the Deno binary for this machine (as the `deno` npm package's optional dependencies name it). */
export function denoNpmPackage(): string {
  return Deno.build.arch === "aarch64" ? "linux-arm64-glibc" : "linux-x64-glibc";
}

function denoPackagePath(version: string, dir = `${ROOT}/deploy/docker/deno-cache`): string {
  return `${dir}/${denoNpmPackage()}-${version}.tgz`;
}

/**
 * Puts `<package>-<version>.tgz` of the Deno binary into `dir` (default
 * `deploy/docker/deno-cache/`, which the `Dockerfile` looks in before it
 * downloads), with `npm pack`. Returns its path.
 */
export async function ensureDenoPackage(
  version: string = Deno.version.deno,
  dir = `${ROOT}/deploy/docker/deno-cache`,
): Promise<string> {
  const name = denoNpmPackage();
  const file = denoPackagePath(version, dir);
  if ((await Deno.stat(file).catch(() => undefined))?.size) return file;
  if (!await commandFound("npm")) throw new Error(`Cannot fetch @deno/${name}: npm is missing`);
  const work = await Deno.makeTempDir({ prefix: "mvpn-deno-pack-" });
  try {
    await run(["npm", "pack", "--silent", `@deno/${name}@${version}`], {
      cwd: work,
      timeoutMs: 300_000,
    });
    await Deno.mkdir(dir, { recursive: true });
    await Deno.copyFile(`${work}/deno-${name}-${version}.tgz`, `${file}.${Deno.pid}.partial`);
    await Deno.rename(`${file}.${Deno.pid}.partial`, file);
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
  return file;
}

/**
 * Fills `deploy/docker/deno-cache/deno-dir` (a DENO_DIR) with the npm
 * packages of `deno.lock` by running `deno cache` on this host, where the
 * network and its certificate authorities are the user's, so the image
 * build's `deno cache` downloads nothing. Cheap when nothing is missing.
 * Returns the directory.
 */
export async function ensureNpmCache(dir = `${ROOT}/deploy/docker/deno-cache/deno-dir`): Promise<
  string
> {
  await Deno.mkdir(dir, { recursive: true });
  await run([
    Deno.execPath(),
    "cache",
    "--frozen",
    `${ROOT}/relay/main.ts`,
    `${ROOT}/client/main.ts`,
  ], { cwd: ROOT, env: { DENO_DIR: dir }, timeoutMs: 300_000 });
  return dir;
}

/**
 * Builds the `Dockerfile`'s `app`, `relay` and `client` targets with the
 * classic builder and host networking (for `apt-get` in `RUN`), tagged as
 * {@linkcode IMAGE_TAGS}. Returns the seconds each took.
 */
export async function buildImages(
  engine: DockerEngine,
  options: { denoVersion?: string } = {},
): Promise<Record<keyof typeof IMAGE_TAGS, number>> {
  const seconds = { app: 0, relay: 0, client: 0 };
  for (const target of ["app", "relay", "client"] as const) {
    const start = performance.now();
    await engine.docker([
      "build",
      "--network",
      "host",
      "--target",
      target,
      "--tag",
      IMAGE_TAGS[target],
      ...(options.denoVersion ? ["--build-arg", `DENO_VERSION=${options.denoVersion}`] : []),
      ROOT,
    ], { timeoutMs: BUILD_TIMEOUT_MS });
    seconds[target] = Math.round((performance.now() - start) / 100) / 10;
  }
  return seconds;
}

/** Size of an image in bytes, as `docker image inspect` reports it. */
export async function imageSize(engine: DockerEngine, tag: string): Promise<number> {
  const { stdout } = await engine.docker(["image", "inspect", "--format", "{{.Size}}", tag]);
  return Number(stdout.trim());
}

/**
 * The compose command: `MASQUE_COMPOSE` (e.g. `docker compose`) when set,
 * else `docker-compose` (v1) when installed, else `docker compose` (v2) when
 * the plugin answers, else `undefined`.
 */
export async function composeCommand(): Promise<string[] | undefined> {
  const chosen = Deno.env.get("MASQUE_COMPOSE");
  if (chosen) return chosen.trim().split(/\s+/);
  if (await commandFound("docker-compose")) return ["docker-compose"];
  const plugin = await run(["docker", "compose", "version"], { check: false, timeoutMs: 10_000 })
    .catch(() => undefined);
  return plugin?.code === 0 ? ["docker", "compose"] : undefined;
}

function isRoot(): boolean {
  try {
    return Deno.uid() === 0;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

function lastLines(text: string, count = LAST_LINES): string {
  return text.trimEnd().split("\n").slice(-count).join("\n");
}

/**
 * Drops what the engine's internal networks would otherwise let through the
 * host: forwarding from or to their bridges, and packets from them to the
 * host. An engine started with `--iptables=false` installs none of Docker's
 * isolation rules, and still gives containers on internal networks a default
 * route to the host's bridge address. An nftables table `masque_docker_<id>`;
 * the returned function deletes it.
 */
export async function isolateNetworks(
  engine: DockerEngine,
  networks: readonly string[],
): Promise<() => Promise<void>> {
  const bridges: string[] = [];
  for (const network of networks) {
    const { stdout } = await engine.docker([
      "network",
      "inspect",
      "--format",
      "{{json .}}",
      network,
    ]);
    const info: { Id: string; Options?: Record<string, string> } = JSON.parse(stdout);
    bridges.push(info.Options?.["com.docker.network.bridge.name"] ?? `br-${info.Id.slice(0, 12)}`);
  }
  const table = `masque_docker_${crypto.randomUUID().slice(0, 8)}`;
  // Per bridge, "in one, out of another": with br_netfilter (which Docker loads) packets
  // bridged between two containers of one network also pass the forward hook, in and out
  // of the same bridge; those stay allowed.
  const forward = bridges.flatMap((bridge) => [
    `    iifname "${bridge}" oifname != "${bridge}" drop`,
    `    oifname "${bridge}" iifname != "${bridge}" drop`,
  ]);
  const ruleset = [
    `table inet ${table} {`,
    "  chain forward {",
    "    type filter hook forward priority filter - 10; policy accept;",
    ...forward,
    "  }",
    "  chain input {",
    "    type filter hook input priority filter - 10; policy accept;",
    ...bridges.map((bridge) => `    iifname "${bridge}" drop`),
    "  }",
    "}",
    "",
  ].join("\n");
  const file = await Deno.makeTempFile({ prefix: "mvpn-nft-" });
  try {
    await Deno.writeTextFile(file, ruleset);
    await run(["nft", "-f", file]);
  } finally {
    await Deno.remove(file).catch(() => {});
  }
  return async () => {
    await run(["nft", "delete", "table", "inet", table], { check: false });
  };
}
