/**
 * Three Linux network namespaces wired client <-> relay <-> target, shared by
 * the e2e tests, the demo and the benchmark. Needs root and the `ip` and
 * `sysctl` commands (iproute2, procps).
 *
 * ```
 *  client ns               relay ns                              target ns
 *  veth-relay  <------>  veth-client        veth-target  <------>  veth-relay
 *  198.18.0.2/30         198.18.0.1/30      198.18.1.1/30          198.18.1.2/30
 *  fd00:0:0:1::2/64      fd00:0:0:1::1/64   fd00:0:0:2::1/64       fd00:0:0:2::2/64
 * ```
 *
 * The relay forwards IPv4 and IPv6. The client has no route to the target
 * link (only the VPN provides one) and the target has no route back to the
 * client link (the relay NATs). No namespace has a default route, so test
 * traffic cannot leave the namespaces.
 *
 * @module
 */

import { errorMessage } from "../../shared/errors.ts";
import { skipUnlessRoot } from "./skip.ts";

/** The role of a namespace in the topology. */
export type NamespaceRole = "client" | "relay" | "target";

/** Options for {@linkcode Topology.run}. */
export interface RunOptions {
  /** Throw when the exit code is not 0 (default true). */
  check?: boolean;
  /** Kill the command (SIGKILL) and throw after this many milliseconds (default 30000). */
  timeoutMs?: number;
  /** Bytes written to the command's stdin, which is then closed. */
  stdin?: Uint8Array;
}

/** The outcome of {@linkcode Topology.run}. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options for {@linkcode Topology.spawn}. */
export interface SpawnOptions {
  /** Names the log file `<logDir>/<name>.log` (default `<role>-<program>-<n>`). */
  name?: string;
  /** Extra environment variables, merged over the current environment. */
  env?: Record<string, string>;
}

/** A long-running process started by {@linkcode Topology.spawn}. */
export interface Process {
  /** The process id (`ip netns exec` execs the command, so this is the command itself). */
  readonly pid: number;
  /** The file that receives the process's stdout and stderr. */
  readonly logFile: string;
  /** Resolves when the process has exited and its output is in the log file. */
  readonly status: Promise<Deno.CommandStatus>;
  /** Sends a signal (default SIGTERM); does nothing when the process has already exited. */
  kill(signal?: Deno.Signal): void;
  /**
   * Resolves with the first output line (stdout or stderr, earlier lines
   * included) that matches `regex`. Rejects, with the last lines of the log
   * in the message, after `timeoutMs` milliseconds (default 10000) or when
   * the process exits first.
   */
  waitForLog(regex: RegExp, timeoutMs?: number): Promise<string>;
}

/** A client <-> relay <-> target topology; see the module documentation. */
export interface Topology {
  /** Namespace names, unique per id: `mvpn-<id>-client` and so on. */
  readonly names: { readonly client: string; readonly relay: string; readonly target: string };
  /** The relay's address on the client link: "198.18.0.1". */
  readonly relayUnderlay4: string;
  /** The relay's address on the client link: "fd00:0:0:1::1". */
  readonly relayUnderlay6: string;
  /** The client's address on the relay link: "198.18.0.2". */
  readonly clientUnderlay4: string;
  /** The client's address on the relay link: "fd00:0:0:1::2". */
  readonly clientUnderlay6: string;
  /** The target's address: "198.18.1.2". */
  readonly target4: string;
  /** The target's address: "fd00:0:0:2::2". */
  readonly target6: string;
  /** Interface names inside each namespace (for NAT rules and routes). */
  readonly interfaces: {
    readonly client: string;
    readonly relayToClient: string;
    readonly relayToTarget: string;
    readonly target: string;
  };
  /** The directory holding the logs of spawned processes; kept after teardown. */
  readonly logDir: string;
  /**
   * Runs `cmd` inside a namespace and waits for it. A `cmd[0]` of "deno" is
   * replaced by the full path of the running deno.
   */
  run(ns: NamespaceRole, cmd: string[], options?: RunOptions): Promise<RunResult>;
  /**
   * Starts a long-running `cmd` inside a namespace (via `ip netns exec`), its
   * stdout and stderr appended to a file in {@linkcode logDir}. A `cmd[0]` of
   * "deno" is replaced by the full path of the running deno.
   */
  spawn(ns: NamespaceRole, cmd: string[], options?: SpawnOptions): Process;
  /**
   * Kills spawned processes (SIGTERM, then SIGKILL after 2 s) and anything
   * else left in the namespaces, then deletes the namespaces, which deletes
   * their veths, TUN devices and nft rules. Idempotent.
   */
  teardown(): Promise<void>;
}

/** Addresses and interface names of the topology (see the module documentation). */
const CLIENT_LINK4 = { relay: "198.18.0.1", client: "198.18.0.2", prefix: 30 };
const CLIENT_LINK6 = { relay: "fd00:0:0:1::1", client: "fd00:0:0:1::2", prefix: 64 };
const TARGET_LINK4 = { relay: "198.18.1.1", target: "198.18.1.2", prefix: 30 };
const TARGET_LINK6 = { relay: "fd00:0:0:2::1", target: "fd00:0:0:2::2", prefix: 64 };
const INTERFACES = {
  client: "veth-relay",
  relayToClient: "veth-client",
  relayToTarget: "veth-target",
  target: "veth-relay",
} as const;

const ROLES: readonly NamespaceRole[] = ["client", "relay", "target"];
const DEFAULT_RUN_TIMEOUT_MS = 30_000;
const DEFAULT_LOG_TIMEOUT_MS = 10_000;
const KILL_GRACE_MS = 2_000;
/** How long {@linkcode Process.status} waits for output after the exit. */
const DRAIN_AFTER_EXIT_MS = 1_000;
/** Lines of output kept in memory per process for {@linkcode Process.waitForLog}. */
const MAX_LOG_LINES = 10_000;
const LAST_LINES_IN_ERRORS = 20;

/** Returns true when running as root; false when not, or when the uid cannot be read (no `--allow-sys`). */
export function isRoot(): boolean {
  try {
    return Deno.uid() === 0;
  } catch {
    return false;
  }
}

/** Returns true when `name` is a command found on the PATH. */
export { commandFound as haveCommand } from "./skip.ts";

/** Commands the topology and the tests in it run: `ip`, `sysctl`, `ping`, and `nft` for a relay with `--nat`. */
export const TOPOLOGY_COMMANDS: readonly string[] = ["ip", "sysctl", "ping", "nft"];

/**
 * Test options for tests in namespaces: they run as root with
 * {@linkcode TOPOLOGY_COMMANDS} installed, else are skipped with the reason
 * and the fix recorded (tests/support/skip.ts).
 */
export async function needsNamespaces(): Promise<{ ignore: boolean }> {
  return await skipUnlessRoot(isRoot(), TOPOLOGY_COMMANDS);
}

/** Which logs {@linkcode withTopology} prints when the test fails. */
export interface FailureLogs {
  /** Process names whose `NAME.log` to print, or "all" for every `.log` file in the log directory. */
  readonly names: readonly string[] | "all";
  /** How many last lines of each. */
  readonly lines: number;
}

/**
 * Runs `fn` with a new topology and tears it down afterwards; when `fn`
 * throws, the last lines of the logs named in `logs` are printed first.
 */
export async function withTopology(
  id: string,
  logs: FailureLogs,
  fn: (topo: Topology) => Promise<void>,
): Promise<void> {
  const topo = await createTopology({ id });
  try {
    await fn(topo);
  } catch (error) {
    const files: string[] = [];
    if (logs.names === "all") {
      for await (const entry of Deno.readDir(topo.logDir)) {
        if (entry.name.endsWith(".log")) files.push(entry.name);
      }
    } else {
      files.push(...logs.names.map((name) => `${name}.log`));
    }
    for (const file of files) {
      const log = await Deno.readTextFile(`${topo.logDir}/${file}`).catch(() => "");
      if (log || logs.names === "all") {
        console.error(`--- ${file} (last lines)\n${log.split("\n").slice(-logs.lines).join("\n")}`);
      }
    }
    throw error;
  } finally {
    await topo.teardown();
  }
}

/**
 * Creates the three namespaces and their links. Namespaces left over from an
 * earlier run with the same `id` are deleted first. `logDir` defaults to a new
 * temporary directory. On failure everything created so far is deleted.
 */
export async function createTopology(
  options: { id?: string; logDir?: string } = {},
): Promise<Topology> {
  const id = options.id ?? crypto.randomUUID().slice(0, 8);
  if (!/^[a-z0-9][a-z0-9-]{0,30}$/.test(id)) {
    throw new Error(`Cannot create topology: id "${id}" must match [a-z0-9][a-z0-9-]{0,30}`);
  }
  const names = {
    client: `mvpn-${id}-client`,
    relay: `mvpn-${id}-relay`,
    target: `mvpn-${id}-target`,
  };
  const logDir = options.logDir ?? await Deno.makeTempDir({ prefix: `mvpn-${id}-logs-` });
  await Deno.mkdir(logDir, { recursive: true });

  for (const role of ROLES) await deleteNamespace(names[role]);
  const topology = new NetnsTopology(names, logDir);
  try {
    await buildTopology(names);
  } catch (error) {
    await topology.teardown();
    throw new Error(`Cannot create topology ${id}: ${errorMessage(error)}`, { cause: error });
  }
  return topology;
}

async function buildTopology(names: Record<NamespaceRole, string>): Promise<void> {
  const { client, relay, target } = names;
  for (const ns of [client, relay, target]) {
    await ip("netns", "add", ns);
    await ip("-n", ns, "link", "set", "lo", "up");
  }
  await ip(
    "-n",
    client,
    ...["link", "add", INTERFACES.client, "type", "veth"],
    ...["peer", "name", INTERFACES.relayToClient, "netns", relay],
  );
  await ip(
    "-n",
    relay,
    ...["link", "add", INTERFACES.relayToTarget, "type", "veth"],
    ...["peer", "name", INTERFACES.target, "netns", target],
  );

  const addresses: [string, string, string][] = [
    [client, INTERFACES.client, `${CLIENT_LINK4.client}/${CLIENT_LINK4.prefix}`],
    [client, INTERFACES.client, `${CLIENT_LINK6.client}/${CLIENT_LINK6.prefix}`],
    [relay, INTERFACES.relayToClient, `${CLIENT_LINK4.relay}/${CLIENT_LINK4.prefix}`],
    [relay, INTERFACES.relayToClient, `${CLIENT_LINK6.relay}/${CLIENT_LINK6.prefix}`],
    [relay, INTERFACES.relayToTarget, `${TARGET_LINK4.relay}/${TARGET_LINK4.prefix}`],
    [relay, INTERFACES.relayToTarget, `${TARGET_LINK6.relay}/${TARGET_LINK6.prefix}`],
    [target, INTERFACES.target, `${TARGET_LINK4.target}/${TARGET_LINK4.prefix}`],
    [target, INTERFACES.target, `${TARGET_LINK6.target}/${TARGET_LINK6.prefix}`],
  ];
  for (const [ns, dev, address] of addresses) {
    // nodad: IPv6 addresses are usable at once instead of after duplicate address detection.
    const flags = address.includes(":") ? ["nodad"] : [];
    await ip("-n", ns, "address", "add", address, "dev", dev, ...flags);
  }
  const links = [
    [client, INTERFACES.client],
    [relay, INTERFACES.relayToClient],
    [relay, INTERFACES.relayToTarget],
    [target, INTERFACES.target],
  ];
  for (const [ns, dev] of links) await ip("-n", ns, "link", "set", dev, "up");

  for (const key of ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]) {
    await runChecked(["ip", "netns", "exec", relay, "sysctl", "-q", "-w", `${key}=1`]);
  }
}

/** SIGINT/SIGTERM tear down every live topology, then exit. */
const liveTopologies = new Set<NetnsTopology>();
const onSigint = () => void exitAfterTeardown(130);
const onSigterm = () => void exitAfterTeardown(143);

async function exitAfterTeardown(code: number): Promise<void> {
  await Promise.allSettled([...liveTopologies].map((t) => t.teardown()));
  Deno.exit(code);
}

function trackTopology(topology: NetnsTopology): void {
  if (liveTopologies.size === 0) {
    Deno.addSignalListener("SIGINT", onSigint);
    Deno.addSignalListener("SIGTERM", onSigterm);
  }
  liveTopologies.add(topology);
}

function untrackTopology(topology: NetnsTopology): void {
  if (!liveTopologies.delete(topology) || liveTopologies.size > 0) return;
  Deno.removeSignalListener("SIGINT", onSigint);
  Deno.removeSignalListener("SIGTERM", onSigterm);
}

class NetnsTopology implements Topology {
  readonly names: Topology["names"];
  readonly relayUnderlay4 = CLIENT_LINK4.relay;
  readonly relayUnderlay6 = CLIENT_LINK6.relay;
  readonly clientUnderlay4 = CLIENT_LINK4.client;
  readonly clientUnderlay6 = CLIENT_LINK6.client;
  readonly target4 = TARGET_LINK4.target;
  readonly target6 = TARGET_LINK6.target;
  readonly interfaces = INTERFACES;
  readonly logDir: string;
  #processes: NetnsProcess[] = [];
  #spawnCount = 0;
  #teardown: Promise<void> | undefined;

  constructor(names: Topology["names"], logDir: string) {
    this.names = Object.freeze({ ...names });
    this.logDir = logDir;
    trackTopology(this);
  }

  run(ns: NamespaceRole, cmd: string[], options: RunOptions = {}): Promise<RunResult> {
    this.#assertAlive("run");
    return runCommand(["ip", "netns", "exec", this.names[ns], ...resolveDeno(cmd)], options);
  }

  spawn(ns: NamespaceRole, cmd: string[], options: SpawnOptions = {}): Process {
    this.#assertAlive("spawn");
    this.#spawnCount++;
    const program = (cmd[0] ?? "process").split("/").pop();
    const name = options.name ?? `${ns}-${program}-${this.#spawnCount}`;
    const logFile = `${this.logDir}/${name.replace(/[^A-Za-z0-9._-]/g, "_")}.log`;
    const process = new NetnsProcess(
      name,
      ["ip", "netns", "exec", this.names[ns], ...resolveDeno(cmd)],
      logFile,
      options.env,
    );
    this.#processes.push(process);
    return process;
  }

  teardown(): Promise<void> {
    this.#teardown ??= this.#doTeardown();
    return this.#teardown;
  }

  async #doTeardown(): Promise<void> {
    await Promise.all(this.#processes.map((p) => p.stop()));
    for (const role of ROLES) await deleteNamespace(this.names[role]);
    await Promise.all(this.#processes.map((p) => p.closed));
    untrackTopology(this);
  }

  #assertAlive(what: string): void {
    if (this.#teardown) {
      throw new Error(`Cannot ${what}: topology ${this.names.relay} was torn down`);
    }
  }
}

type Waiter = {
  regex: RegExp;
  resolve: (line: string) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
};

class NetnsProcess implements Process {
  readonly pid: number;
  readonly logFile: string;
  readonly status: Promise<Deno.CommandStatus>;
  /** Resolves once both output streams are drained and the log file is closed. */
  readonly closed: Promise<void>;
  #name: string;
  #child: Deno.ChildProcess;
  #lines: string[] = [];
  #waiters = new Set<Waiter>();
  #exitedWith: Deno.CommandStatus | undefined;

  constructor(name: string, cmd: string[], logFile: string, env?: Record<string, string>) {
    this.#name = name;
    this.logFile = logFile;
    const file = Deno.openSync(logFile, { append: true, create: true });
    file.writeSync(
      new TextEncoder().encode(`# ${new Date().toISOString()} started: ${cmd.join(" ")}\n`),
    );
    try {
      this.#child = new Deno.Command(cmd[0], {
        args: cmd.slice(1),
        env,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      file.close();
      throw error;
    }
    this.pid = this.#child.pid;

    let writes = Promise.resolve();
    const append = (chunk: Uint8Array) => {
      writes = writes.then(() => writeAll(file, chunk));
      return writes;
    };
    const drained = Promise.all([
      this.#pump(this.#child.stdout, append),
      this.#pump(this.#child.stderr, append),
    ]);
    this.closed = drained.then(() => writes).finally(() => file.close()).catch(() => {});
    this.status = this.#child.status.then(async (status) => {
      // The last lines reach the log file and the waiters first, unless a
      // grandchild keeps the pipes open.
      await withTimeout(this.closed, DRAIN_AFTER_EXIT_MS);
      this.#exitedWith = status;
      for (const waiter of this.#waiters) {
        this.#settle(waiter);
        waiter.reject(new Error(this.#describe(`exited (code ${status.code})`, waiter.regex)));
      }
      return status;
    });
  }

  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (this.#exitedWith) return;
    try {
      this.#child.kill(signal);
    } catch {
      // Already exited but not yet reaped.
    }
  }

  waitForLog(regex: RegExp, timeoutMs = DEFAULT_LOG_TIMEOUT_MS): Promise<string> {
    const pattern = new RegExp(regex.source, regex.flags.replace(/[gy]/g, ""));
    const seen = this.#lines.find((line) => pattern.test(line));
    if (seen !== undefined) return Promise.resolve(seen);
    if (this.#exitedWith) {
      const what = `exited (code ${this.#exitedWith.code})`;
      return Promise.reject(new Error(this.#describe(what, pattern)));
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        regex: pattern,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#settle(waiter);
          reject(new Error(this.#describe(`timed out after ${timeoutMs} ms`, pattern)));
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  /** SIGTERM, then SIGKILL after {@linkcode KILL_GRACE_MS}; resolves once exited. */
  async stop(): Promise<void> {
    this.kill("SIGTERM");
    if (!(await withTimeout(this.status, KILL_GRACE_MS))) this.kill("SIGKILL");
    await this.status;
  }

  async #pump(
    stream: ReadableStream<Uint8Array>,
    append: (chunk: Uint8Array) => Promise<void>,
  ): Promise<void> {
    const decoder = new TextDecoder();
    let partial = "";
    for await (const chunk of stream) {
      void append(chunk);
      const lines = (partial + decoder.decode(chunk, { stream: true })).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) this.#addLine(line);
    }
    partial += decoder.decode();
    if (partial !== "") this.#addLine(partial);
  }

  #addLine(line: string): void {
    this.#lines.push(line);
    if (this.#lines.length > MAX_LOG_LINES) this.#lines.shift();
    for (const waiter of this.#waiters) {
      if (waiter.regex.test(line)) {
        this.#settle(waiter);
        waiter.resolve(line);
      }
    }
  }

  #settle(waiter: Waiter): void {
    clearTimeout(waiter.timer);
    this.#waiters.delete(waiter);
  }

  #describe(what: string, regex: RegExp): string {
    const last = this.#lines.slice(-LAST_LINES_IN_ERRORS).join("\n");
    return `Process "${this.#name}" (pid ${this.pid}) ${what} before ${regex} appeared ` +
      `in its log ${this.logFile}; last lines:\n${last}`;
  }
}

/** Runs a command on the host (not inside a namespace). */
async function runCommand(cmd: string[], options: RunOptions = {}): Promise<RunResult> {
  const { check = true, timeoutMs = DEFAULT_RUN_TIMEOUT_MS, stdin } = options;
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: stdin ? "piped" : "null",
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
  const writeStdin = async () => {
    if (!stdin) return;
    const writer = child.stdin.getWriter();
    try {
      await writer.write(stdin);
      await writer.close();
    } catch {
      // The command exited without reading all of its input; its exit code tells.
    }
  };
  const [output] = await Promise.all([child.output(), writeStdin()]).finally(() =>
    clearTimeout(timer)
  );
  const result = {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  };
  if (timedOut) {
    throw new Error(
      `Command "${cmd.join(" ")}" timed out after ${timeoutMs} ms; stderr: ${result.stderr}`,
    );
  }
  if (check && result.code !== 0) {
    throw new Error(
      `Command "${cmd.join(" ")}" failed with exit code ${result.code}; stderr: ${result.stderr}`,
    );
  }
  return result;
}

function runChecked(cmd: string[]): Promise<RunResult> {
  return runCommand(cmd, { check: true });
}

function ip(...args: string[]): Promise<RunResult> {
  return runChecked(["ip", ...args]);
}

/** Kills whatever still runs in namespace `name`, then deletes it; no-op if absent. */
async function deleteNamespace(name: string): Promise<void> {
  const { stdout } = await ip("netns", "list");
  const exists = stdout.split("\n").some((line) => line.split(" ")[0] === name);
  if (!exists) return;
  const pids = await runCommand(["ip", "netns", "pids", name], { check: false });
  for (const pid of pids.stdout.split(/\s+/).filter((s) => s !== "")) {
    try {
      Deno.kill(Number(pid), "SIGKILL");
    } catch {
      // Exited meanwhile.
    }
  }
  await ip("netns", "delete", name);
}

/** `ip netns exec` searches the PATH, which need not contain the running deno. */
function resolveDeno(cmd: string[]): string[] {
  if (cmd.length === 0) throw new Error("Cannot run an empty command");
  return cmd[0] === "deno" ? [Deno.execPath(), ...cmd.slice(1)] : cmd;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await file.write(bytes.subarray(written));
}

/** Resolves true when `promise` settles within `ms` milliseconds, false otherwise. */
async function withTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([promise.then(() => true, () => true), expired]);
  } finally {
    clearTimeout(timer);
  }
}
