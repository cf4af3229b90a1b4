/**
 * What the relay and the client find on the host at start-up, before they
 * contact anyone: whether `/dev/net/tun` opens, the process's effective
 * capabilities, the lowest unprivileged port and whether IP forwarding is
 * on. `shared/host_requirements.ts` judges them.
 *
 * Read through libc (`open`/`read`), because Deno asks for `--allow-all`
 * before it lets a program read `/dev` or `/proc/self` itself, and the
 * programs run with `--allow-ffi` and `--allow-read` only.
 *
 * @module
 */
import { closeQuietly, cString, errno, errnoName, libc, O_CLOEXEC, O_RDWR } from "../ffi/libc.ts";

/** See the module documentation. */
export interface HostFacts {
  /** `"ok"` when `/dev/net/tun` opens read-write, else the errno name (`"ENOENT"`, `"EACCES"`). */
  readonly tunDevice: string;
  /** `CapEff` of /proc/self/status, or undefined when it cannot be read. */
  readonly effectiveCapabilities: bigint | undefined;
  /** `net.ipv4.ip_unprivileged_port_start`, or undefined when it cannot be read. */
  readonly unprivilegedPortStart: number | undefined;
  /** Both `net.ipv4.ip_forward` and `net.ipv6.conf.all.forwarding` are 1; undefined when unreadable. */
  readonly forwarding: boolean | undefined;
}

const O_RDONLY = 0;
/** Bytes read from a /proc file; /proc/self/status is about 1.5 KB. */
const MAX_FILE_BYTES = 16 * 1024;

/** Gathers {@linkcode HostFacts} (needs `--allow-ffi`). */
export function readHostFacts(): HostFacts {
  const status = readSmallFile("/proc/self/status");
  const portStart = readSmallFile("/proc/sys/net/ipv4/ip_unprivileged_port_start");
  const forward4 = readSmallFile("/proc/sys/net/ipv4/ip_forward");
  const forward6 = readSmallFile("/proc/sys/net/ipv6/conf/all/forwarding");
  return {
    tunDevice: tunDeviceState(),
    effectiveCapabilities: status === undefined ? undefined : parseCapEff(status),
    unprivilegedPortStart: portStart === undefined || !/^\d+\s*$/.test(portStart)
      ? undefined
      : Number(portStart.trim()),
    forwarding: forward4 === undefined
      ? undefined
      : forward4.trim() === "1" && (forward6 === undefined || forward6.trim() === "1"),
  };
}

/** `"ok"` when `/dev/net/tun` opens read-write (and is closed again), else the errno name. */
export function tunDeviceState(): string {
  const fd = libc().open(cString("/dev/net/tun"), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) return errnoName(errno());
  closeQuietly(fd);
  return "ok";
}

/** The effective capability set from /proc/self/status text (`CapEff:\t000001ffffffffff`). */
export function parseCapEff(status: string): bigint | undefined {
  for (const line of status.split("\n")) {
    if (!line.startsWith("CapEff:")) continue;
    const hex = line.slice("CapEff:".length).trim();
    return /^[0-9a-fA-F]{1,16}$/.test(hex) ? BigInt(`0x${hex}`) : undefined;
  }
  return undefined;
}

/** The text of a small file read with libc, or undefined when it cannot be opened or read. */
function readSmallFile(path: string): string | undefined {
  const fd = libc().open(cString(path), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return undefined;
  try {
    const buffer = new Uint8Array(MAX_FILE_BYTES);
    let length = 0;
    while (length < buffer.length) {
      const n = Number(libc().read(fd, buffer.subarray(length), BigInt(buffer.length - length)));
      if (n < 0) return undefined;
      if (n === 0) break;
      length += n;
    }
    return new TextDecoder().decode(buffer.subarray(0, length));
  } finally {
    closeQuietly(fd);
  }
}
