/**
 * The tunnel's resolver on the client host, for the life of the tunnel:
 *
 * - where systemd-resolved runs and manages `/etc/resolv.conf`: per-link DNS
 *   on the TUN with the routing domain `~.` (every name), through
 *   `resolvectl dns/domain/default-route`, undone with `resolvectl revert`
 *   (resolved also forgets a link's settings when the link goes away);
 * - otherwise: `/etc/resolv.conf` is replaced after its original (file,
 *   symlink, or nothing) is saved, and put back on every exit path. A
 *   marker file in the state directory records what to restore, so that
 *   the next start after a SIGKILL restores it first ({@linkcode recoverDns});
 *   a lock file held while the tunnel is up tells a live client from a dead one.
 *
 * Every function takes {@linkcode DnsHostOptions}: a root directory and a
 * network namespace name (whose resolver file is
 * `/etc/netns/<ns>/resolv.conf`, what `ip netns exec` mounts over
 * `/etc/resolv.conf`), so tests change a namespace's or a temporary
 * directory's files, never the host's.
 *
 * `client/full_tunnel.ts` calls these for the `Client`: {@linkcode recoverDns}
 * at start, {@linkcode applyDns} when the tunnel has nameservers, and the
 * returned `restore` when it goes down.
 *
 * Deno permissions: `--allow-write` for `/etc/resolv.conf` and the state
 * directory (temporary files are written in the state directory and renamed
 * over the target, so `/etc` itself need not be writable), `--allow-run`
 * for `resolvectl` where systemd-resolved runs.
 *
 * @module
 */

/** Runs a command and reports its exit code and stderr (injectable for tests). */
export type CommandRunner = (command: string, args: string[]) => Promise<{
  code: number;
  stderr: string;
}>;

/** Where the resolver configuration lives. */
export interface DnsHostOptions {
  /** Prefix of every path (default `/`); tests pass a temporary directory. */
  readonly rootDir?: string;
  /** Configure this named network namespace: its `/etc/netns/<ns>/resolv.conf`. */
  readonly netns?: string;
  /** Where the marker and the saved original live (default `<root>/var/lib/masque-vpn`). */
  readonly stateDir?: string;
  /** Runs `resolvectl` (default: `Deno.Command`). */
  readonly run?: CommandRunner;
  /** Use this backend instead of detecting one. */
  readonly backend?: DnsBackend;
}

/** How the resolver is set. */
export type DnsBackend = "resolved" | "resolv.conf";

/** What to set. */
export interface DnsSettings {
  /** Nameserver addresses as text (`198.18.1.53`, `fd00::53`), in order of preference. */
  readonly servers: readonly string[];
  /** Search domains. */
  readonly searchDomains: readonly string[];
}

/** A resolver change in place; {@linkcode restore} undoes it. */
export interface AppliedDns {
  readonly backend: DnsBackend;
  /** Things worth a log line, such as `only the first 3 of 4 nameservers fit resolv.conf`. */
  readonly notes: readonly string[];
  /** Puts the original back (idempotent); returns notes such as a file left alone. */
  restore(): Promise<string[]>;
}

/** glibc reads at most this many `nameserver` lines (`MAXNS`, resolv.conf(5)). */
export const RESOLV_CONF_MAX_NAMESERVERS = 3;
const MARKER_VERSION = 1;
const HEADER = "# Written by the masque-vpn client";

interface Marker {
  version: number;
  /** The client that wrote it (for messages; liveness is the lock, see lockPath()). */
  pid: number;
  backend: DnsBackend;
  tunName: string;
  /** The resolv.conf path that was replaced. */
  target: string;
  original:
    | { kind: "file"; backup: string }
    /** `saved`: the link itself, moved into the state directory (absent: make a new one). */
    | { kind: "symlink"; linkTarget: string; saved?: string }
    | { kind: "absent" };
  /** Directories created for the target (a namespace's /etc/netns/<ns>), removed on restore. */
  createdDirs: string[];
  /** What was written, to tell whether someone else has changed the file since. */
  written: string;
}

function root(options: DnsHostOptions): string {
  return (options.rootDir ?? "/").replace(/\/+$/, "");
}

/** The resolv.conf this client would change: `<root>/etc/resolv.conf` or a namespace's. */
export function resolvConfPath(options: DnsHostOptions = {}): string {
  const base = root(options);
  return options.netns
    ? `${base}/etc/netns/${checkNamespace(options.netns)}/resolv.conf`
    : `${base}/etc/resolv.conf`;
}

function stateDir(options: DnsHostOptions): string {
  return options.stateDir ?? `${root(options)}/var/lib/masque-vpn`;
}

function markerPath(options: DnsHostOptions): string {
  return `${stateDir(options)}/dns-${options.netns ?? "host"}.json`;
}

/**
 * The file a client holds an exclusive `flock(2)` on while it owns the
 * resolver. The kernel drops the lock when the process dies, however it
 * dies, so a lock that can be taken means the marker's writer is gone.
 * (Deno needs `--allow-all` to read `/proc/PID`, so the pid cannot be
 * checked there.)
 */
function lockPath(options: DnsHostOptions): string {
  return `${stateDir(options)}/dns-${options.netns ?? "host"}.lock`;
}

/** Takes the resolver lock, or returns undefined when a live client holds it. */
async function takeLock(options: DnsHostOptions): Promise<Deno.FsFile | undefined> {
  await Deno.mkdir(stateDir(options), { recursive: true, mode: 0o700 });
  const file = await Deno.open(lockPath(options), { read: true, write: true, create: true });
  if (await file.tryLock(true)) return file;
  file.close();
  return undefined;
}

function checkNamespace(name: string): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name) || name === "." || name === "..") {
    throw new Error(`Cannot use network namespace name "${name}"`);
  }
  return name;
}

const defaultRun: CommandRunner = async (command, args) => {
  try {
    const output = await new Deno.Command(command, { args, stdout: "null", stderr: "piped" })
      .output();
    return { code: output.code, stderr: new TextDecoder().decode(output.stderr).trim() };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      return { code: 127, stderr: `${command}: not found` };
    }
    if (error instanceof Deno.errors.NotCapable) {
      throw new Error(`Setting DNS needs permission to run ${command}: add --allow-run=${command}`);
    }
    throw error;
  }
};

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * `resolved` when systemd-resolved runs (its varlink socket exists) and
 * `/etc/resolv.conf` points at it (a symlink into /run/systemd/resolve/ or
 * the stub address 127.0.0.53), and `resolvectl` runs; else `resolv.conf`.
 * A namespace always gets `resolv.conf`: resolved serves the whole host.
 */
export async function detectDnsBackend(options: DnsHostOptions = {}): Promise<DnsBackend> {
  if (options.backend) return options.backend;
  if (options.netns) return "resolv.conf";
  const base = root(options);
  if (!(await exists(`${base}/run/systemd/resolve/io.systemd.Resolve`))) return "resolv.conf";
  const conf = resolvConfPath(options);
  let managed = false;
  try {
    managed = (await Deno.readLink(conf)).includes("/run/systemd/resolve/");
  } catch {
    const text = await Deno.readTextFile(conf).catch(() => "");
    managed = text.split("\n").some((line) => line.trim() === "nameserver 127.0.0.53");
  }
  if (!managed) return "resolv.conf";
  const { code } = await (options.run ?? defaultRun)("resolvectl", ["--version"]);
  return code === 0 ? "resolved" : "resolv.conf";
}

/** The resolv.conf text for `settings` (at most 3 nameservers, see resolv.conf(5)). */
export function resolvConfText(settings: DnsSettings, tunName: string, pid: number): string {
  const lines = [
    `${HEADER} (pid ${pid}) for the tunnel ${tunName}.`,
    "# The original comes back when the client stops; see docs/full-tunnel.md.",
    ...settings.servers.slice(0, RESOLV_CONF_MAX_NAMESERVERS).map((s) => `nameserver ${s}`),
  ];
  if (settings.searchDomains.length > 0) lines.push(`search ${settings.searchDomains.join(" ")}`);
  return lines.join("\n") + "\n";
}

function checkSettings(settings: DnsSettings): void {
  if (settings.servers.length === 0) throw new Error("Cannot set DNS: no nameserver given");
  for (const server of settings.servers) {
    // Addresses only: the text goes into a file and onto a command line.
    if (!/^[0-9A-Fa-f:.]{2,45}$/.test(server)) {
      throw new Error(`Cannot set DNS: "${server}" is not an IP address`);
    }
  }
  for (const domain of settings.searchDomains) {
    if (!/^[A-Za-z0-9_.-]{1,253}$/.test(domain)) {
      throw new Error(`Cannot set DNS: search domain "${domain}" is not a domain name`);
    }
  }
}

async function readMarker(options: DnsHostOptions): Promise<Marker | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(markerPath(options));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  const marker = JSON.parse(text) as Marker;
  if (marker.version !== MARKER_VERSION) {
    throw new Error(`Cannot read DNS marker ${markerPath(options)}: version ${marker.version}`);
  }
  return marker;
}

/**
 * Writes `text` to `path` through a temporary file in `tempDir` (default:
 * beside `path`) renamed over it, so that a reader never sees half a file.
 * Where `path` cannot be renamed over (a bind mount: `ip netns exec`,
 * containers) or `tempDir` is on another file system, writes in place.
 */
async function writeAtomically(path: string, text: string, tempDir?: string): Promise<void> {
  const name = path.slice(path.lastIndexOf("/") + 1);
  const temporary = `${
    tempDir ?? path.slice(0, path.lastIndexOf("/"))
  }/${name}.masque-vpn-${Deno.pid}.tmp`;
  await Deno.writeTextFile(temporary, text, { mode: 0o644 });
  try {
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    // Deno 2.9 reports EBUSY and EXDEV from rename as plain Errors with a code.
    const code = (error as { code?: unknown }).code;
    if (error instanceof Deno.errors.Busy || code === "EBUSY" || code === "EXDEV") {
      await Deno.writeTextFile(path, text);
    } else throw error;
  }
}

/** What {@linkcode recoverDns} found. */
export type RecoveryResult =
  | { readonly kind: "none" }
  | { readonly kind: "restored"; readonly pid: number; readonly notes: readonly string[] }
  | { readonly kind: "in-use"; readonly pid: number };

/**
 * At start: when a marker says a client that is no longer running changed
 * the resolver (killed by SIGKILL, or the machine lost power), restores
 * the original. While the client that wrote the marker runs (it holds the
 * resolver lock), nothing is touched (`in-use`).
 */
export async function recoverDns(options: DnsHostOptions = {}): Promise<RecoveryResult> {
  // Nothing to recover: leave the state directory alone (it may not be writable).
  if (!(await exists(markerPath(options)))) return { kind: "none" };
  const lock = await takeLock(options);
  if (!lock) return { kind: "in-use", pid: (await readMarker(options))?.pid ?? 0 };
  try {
    return await recoverLocked(options);
  } finally {
    lock.close();
  }
}

async function recoverLocked(options: DnsHostOptions): Promise<RecoveryResult> {
  const marker = await readMarker(options);
  if (!marker) return { kind: "none" };
  const notes = await undo(marker, options);
  return { kind: "restored", pid: marker.pid, notes };
}

async function undo(marker: Marker, options: DnsHostOptions): Promise<string[]> {
  const notes: string[] = [];
  if (marker.backend === "resolved") {
    const { code, stderr } = await (options.run ?? defaultRun)("resolvectl", [
      "revert",
      marker.tunName,
    ]);
    // A link that is gone has no settings left to revert.
    if (code !== 0 && !/not found|No such|Failed to resolve interface/i.test(stderr)) {
      notes.push(`resolvectl revert ${marker.tunName} failed: ${stderr}`);
    }
  } else {
    const current = await Deno.readTextFile(marker.target).catch(() => undefined);
    if (current !== undefined && current !== marker.written) {
      notes.push(
        `${marker.target} was changed by someone else since the client wrote it; left as it is`,
      );
    } else if (marker.original.kind === "file") {
      const original = await Deno.readTextFile(marker.original.backup);
      await writeAtomically(marker.target, original, stateDir(options));
    } else if (marker.original.kind === "symlink") {
      if (current !== undefined) await Deno.remove(marker.target);
      // Moving the link back needs write permission on both paths only;
      // Deno.symlink would need full --allow-read and --allow-write.
      const saved = marker.original.saved;
      if (saved !== undefined && await exists(saved)) await Deno.rename(saved, marker.target);
      else await Deno.symlink(marker.original.linkTarget, marker.target);
    } else if (current !== undefined) {
      await Deno.remove(marker.target);
    }
    for (const dir of [...marker.createdDirs].reverse()) {
      await Deno.remove(dir).catch(() => notes.push(`${dir} is not empty; left in place`));
    }
    if (marker.original.kind === "file") await Deno.remove(marker.original.backup).catch(() => {});
  }
  await Deno.remove(markerPath(options)).catch(() => {});
  return notes;
}

/**
 * Sets `settings` as the host's (or namespace's) resolver for TUN
 * `tunName`: first recovers from a killed client ({@linkcode recoverDns}),
 * then records a marker, then changes the resolver. Throws when another
 * running client owns the resolver, or when a step fails (after undoing
 * what it did).
 */
export async function applyDns(
  tunName: string,
  settings: DnsSettings,
  options: DnsHostOptions = {},
): Promise<AppliedDns> {
  checkSettings(settings);
  const lock = await takeLock(options);
  if (!lock) {
    const pid = (await readMarker(options))?.pid;
    throw new Error(`Cannot set DNS: the client with pid ${pid ?? "?"} manages it`);
  }
  try {
    return await applyLocked(tunName, settings, options, lock);
  } catch (error) {
    lock.close();
    throw error;
  }
}

async function applyLocked(
  tunName: string,
  settings: DnsSettings,
  options: DnsHostOptions,
  lock: Deno.FsFile,
): Promise<AppliedDns> {
  await recoverLocked(options);
  const backend = await detectDnsBackend(options);
  const notes: string[] = [];
  const marker: Marker = {
    version: MARKER_VERSION,
    pid: Deno.pid,
    backend,
    tunName,
    target: resolvConfPath(options),
    original: { kind: "absent" },
    createdDirs: [],
    written: "",
  };
  if (backend === "resolved") {
    await writeAtomically(markerPath(options), JSON.stringify(marker, null, 2) + "\n");
    const run = options.run ?? defaultRun;
    const steps: [string[], boolean][] = [
      [["dns", tunName, ...settings.servers], true],
      [["domain", tunName, "~.", ...settings.searchDomains], true],
      // resolved before version 240 has no default-route; `~.` alone then routes every name.
      [["default-route", tunName, "yes"], false],
    ];
    for (const [args, required] of steps) {
      const { code, stderr } = await run("resolvectl", args);
      if (code === 0) continue;
      if (!required) {
        notes.push(`resolvectl ${args.join(" ")} failed: ${stderr}`);
        continue;
      }
      await undo(marker, options);
      throw new Error(`Cannot set DNS: resolvectl ${args.join(" ")} failed: ${stderr}`);
    }
  } else {
    const target = marker.target;
    const dir = target.slice(0, target.lastIndexOf("/"));
    for (let d = dir; !(await exists(d)); d = d.slice(0, d.lastIndexOf("/"))) {
      marker.createdDirs.unshift(d);
    }
    if (marker.createdDirs.length > 0) await Deno.mkdir(dir, { recursive: true });
    let info: Deno.FileInfo | undefined;
    try {
      info = await Deno.lstat(target);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    if (info?.isSymlink) {
      marker.original = { kind: "symlink", linkTarget: await Deno.readLink(target) };
    } else if (info) {
      const backup = `${stateDir(options)}/resolv.conf.${options.netns ?? "host"}.orig`;
      await Deno.copyFile(target, backup);
      marker.original = { kind: "file", backup };
    }
    if (settings.servers.length > RESOLV_CONF_MAX_NAMESERVERS) {
      notes.push(
        `only the first ${RESOLV_CONF_MAX_NAMESERVERS} of ${settings.servers.length} nameservers fit resolv.conf`,
      );
    }
    marker.written = resolvConfText(settings, tunName, Deno.pid);
    await writeAtomically(markerPath(options), JSON.stringify(marker, null, 2) + "\n");
    try {
      if (info?.isSymlink && marker.original.kind === "symlink") {
        // Kept as it is, to be moved back (the marker says where first, for
        // a crash right after); on another file system: removed, made again.
        const saved = `${stateDir(options)}/resolv.conf.${options.netns ?? "host"}.link`;
        marker.original.saved = saved;
        await writeAtomically(markerPath(options), JSON.stringify(marker, null, 2) + "\n");
        try {
          await Deno.rename(target, saved);
        } catch {
          await Deno.remove(target);
        }
      }
      await writeAtomically(target, marker.written, stateDir(options));
    } catch (error) {
      await undo(marker, options).catch(() => {});
      throw error;
    }
  }
  let restored: Promise<string[]> | undefined;
  return {
    backend,
    notes,
    restore: () => restored ??= undo(marker, options).finally(() => lock.close()),
  };
}
