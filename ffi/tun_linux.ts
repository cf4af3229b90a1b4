/**
 * Linux TUN devices (layer 3, no packet-information header) as a
 * `PacketDevice`: `openTun("mvpn0")` creates or attaches to the interface and
 * returns an object with `readBatch()`, `writePacket()` and `close()`.
 *
 * Read path: a Worker ({@linkcode ./tun_worker.ts}) reads the non-blocking fd
 * in a synchronous loop into a SharedArrayBuffer ring; `readBatch()` waits with
 * `Atomics.waitAsync` and returns every filled slot at once as views into the
 * ring. Write path, two choices ({@linkcode TunOptions.writer}):
 * - `"direct"`: `writePacket()` is one synchronous FFI `write(2)` on the main
 *   thread. A TUN write never blocks, but it runs the kernel's whole receive
 *   and forwarding path for the packet (routing, netfilter, the next device,
 *   often the receiving socket) on the calling thread: a few microseconds.
 * - `"worker"`: `writePacket()` copies the packet into a SharedArrayBuffer ring
 *   and a writer Worker ({@linkcode ./tun_writer_worker.ts}) does the
 *   `write(2)`, so that kernel work runs in parallel with the main thread. A
 *   full ring drops the packet (`stats.writeDrops`); the main thread never waits.
 *   The default: in `deno task bench` (2 cores, datagram mode, TCP one stream)
 *   it carried 780-820 Mbit/s up and 920-960 down against 390-640 and 470-680
 *   with direct writes.
 *
 * Both paths take packets up to 65535 bytes whatever the MTU: a host's MTU
 * limits what it sends, not what it accepts (RFC 1122 §3.3.2, EMTU_R), and the
 * kernel accepts a TUN write larger than the link MTU. Write ring slots hold
 * max(MTU, 1500) bytes; a longer packet goes through a byte ring beside them
 * (`writeSpillBytes`), in order.
 *
 * Self-healing: a watchdog on the main thread (every {@linkcode WATCHDOG_MS})
 * checks that each worker makes progress: HEAD or TAIL moves, or BEAT, which a
 * healthy worker bumps at least every 250 ms even when idle. A worker that
 * died (an exception, or gone without a word) or made no progress for
 * {@linkcode STALL_MS} is logged at error level with its ring's state and
 * restarted on a fresh ring and the same fds; packets still queued in the old
 * ring count as drops. A write ring that keeps dropping for
 * {@linkcode RING_FULL_WARN_MS} is logged at warn level. `stats` counts both.
 *
 * Offloads ({@linkcode TunOptions.offload}): the TUN is opened with
 * `IFF_VNET_HDR` and `TUNSETOFFLOAD` (checksum, TSO4, TSO6, and USO4/USO6
 * where the kernel has them), so the kernel hands the reader TCP (and UDP)
 * super-packets of up to 64 KiB and takes them from the writer: the reader
 * worker splits what it reads into packets no larger than the session's
 * limit ({@linkcode TunDevice.setPacketLimit}), the writer worker merges
 * consecutive segments of a flow into super-packets. `readBatch()` and
 * `writePacket()` see plain IP packets either way. A kernel that refuses
 * the offloads gets the TUN without them (`offload` says which).
 *
 * Needs `--allow-ffi`, `--allow-read` (to load the worker modules) and
 * CAP_NET_ADMIN.
 *
 * @module
 */

import {
  decodeIfreqName,
  encodeIfreq,
  IFF_MULTI_QUEUE,
  IFF_NO_PI,
  IFF_TUN,
  IFF_VNET_HDR,
  TUN_F_CSUM,
  TUN_F_TSO4,
  TUN_F_TSO6,
  TUN_F_USO4,
  TUN_F_USO6,
  TUNSETIFF,
  TUNSETOFFLOAD,
  TUNSETVNETLE,
} from "./_struct.ts";
import {
  check,
  closeQuietly,
  cString,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  errno,
  libc,
  LibcError,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDWR,
} from "./libc.ts";
import { linkMtu, setLinkMtu } from "./netlink.ts";
import {
  BEAT,
  CONTROL_BYTES,
  FAULT,
  FAULT_STALL,
  FAULT_THROW,
  HEAD,
  STATE,
  STATE_STARTING,
  STATE_STOPPED,
  STOP,
  stopLoop,
  TAIL,
} from "./_worker.ts";
import {
  CONSUMER_WAITING,
  ERRNO,
  ERRNO_EXCEPTION,
  OFFLOAD_ERRORS,
  PACKET_LIMIT,
  PRODUCER_WAITING,
  SUPER_PACKETS,
  type TunWorkerStart,
  type TunWorkerStopped,
} from "./tun_worker.ts";
import {
  MAX_WRITE_PACKET_BYTES,
  spillSize,
  type TunWriterStart,
  type TunWriterStopped,
  W_LAST_ERRNO,
  W_MERGED,
  W_REFUSED64,
  W_SLOT_HEADER_BYTES,
  W_SPILL_TAIL,
  W_SUPER_WRITES,
  W_WRITTEN64,
  WRITER_WAITING,
} from "./tun_writer_worker.ts";

export { MAX_WRITE_PACKET_BYTES };

/** Path of the TUN/TAP clone device. */
export const TUN_CLONE_PATH = "/dev/net/tun";
/**
 * Transmit queue length the client and relay give their TUN, packets: the
 * kernel's queue in front of the reader worker (the kernel default is 500,
 * 17 ms at 300 Mbit/s). When the reader worker waits for a CPU longer than
 * that, the kernel drops ("TX dropped" of the link).
 */
export const TUN_TX_QUEUE_PACKETS = 2000;
/** Default number of ring slots (packets buffered between the worker and the reader). */
export const DEFAULT_RING_SLOTS = 1024;
/** Default largest number of packets returned by one `readBatch()`. */
export const DEFAULT_MAX_BATCH = 256;
/**
 * Default number of write ring slots (packets queued for the writer worker;
 * 6 MiB at MTU 1500). With 1024 the relay's ring filled for a moment in some
 * runs at 300 Mbit/s, when the writer waited for a CPU; 4096 absorbed that.
 */
export const DEFAULT_WRITE_RING_SLOTS = 4096;
/**
 * Smallest packet capacity of a write ring slot, bytes. Packets up to this
 * size take the fast path even on a TUN with a smaller MTU: a QUIC datagram
 * on an Ethernet path carries at most this much, so a client at MTU 1280
 * receiving 1281-1414-byte packets from the relay (issue 8) does not spill.
 */
export const WRITE_SLOT_MIN_BYTES = 1500;
/**
 * Default size of the write spill ring, bytes: packets longer than a slot
 * (stream-mode capsules, jumbo frames) queue there, up to 65535 bytes each.
 */
export const DEFAULT_WRITE_SPILL_BYTES = 1 << 20;
/** How `writePacket()` reaches the kernel; see {@linkcode TunOptions.writer}. */
export type TunWriterMode = "worker" | "direct";
/** Default {@linkcode TunWriterMode}. */
export const DEFAULT_WRITER: TunWriterMode = "worker";
/** How often the watchdog looks at the workers, milliseconds. */
export const WATCHDOG_MS = 250;
/**
 * A worker whose HEAD/TAIL and BEAT stood still this long is restarted,
 * milliseconds (a healthy one bumps BEAT at least every 250 ms).
 */
export const STALL_MS = 1000;
/**
 * A worker still starting after this long is restarted, milliseconds. Long:
 * under `deno test` a worker module is type-checked before it runs, which
 * took 4-30 s on a busy 2-core machine with a cold cache.
 */
const STARTUP_GRACE_MS = 30_000;
/** A write ring that keeps dropping this long is logged at warn level, milliseconds. */
export const RING_FULL_WARN_MS = 1000;
/** Smallest wait between restarts of one worker once they come in a run, milliseconds. */
const RESTART_BACKOFF_MIN_MS = 500;
/** Largest wait between restarts of one worker, milliseconds. */
const RESTART_BACKOFF_MAX_MS = 30_000;
/** A restart this long after the previous one starts a new run (no wait), milliseconds. */
const RESTART_QUIET_MS = 10_000;
/** How long close() waits for a worker to leave its loop, in milliseconds. */
const STOP_TIMEOUT_MS = 1000;
/**
 * With the writer worker, a packet written this long after the previous one
 * is written on the calling thread (see `WriterRing.takeQuietWrite`), ms.
 */
const QUIET_WRITE_MS = 1;
/** errno EMSGSIZE: a packet longer than 65535 bytes. */
const EMSGSIZE = 90;
/** Bytes of the `virtio_net_hdr` in front of each packet with offloads (legacy layout). */
const VNET_HDR_BYTES = 10;

/**
 * Which offloads a TUN has: `"off"` (plain packets), `"tso"` (checksum, TCP
 * over IPv4 and IPv6), `"tso+uso"` (and UDP, Linux 6.2+).
 */
export type TunOffload = "off" | "tso" | "tso+uso";

/** Fields of a log line (structurally `LogFields` of shared/log.ts). */
export type TunLogFields = Record<string, string | number | boolean>;

/** Where a TUN device reports trouble (structurally a shared/log.ts `Logger`). */
export interface TunLog {
  warn(message: string, fields?: TunLogFields): void;
  error(message: string, fields?: TunLogFields): void;
}

/** Options for {@linkcode openTun}. */
export interface TunOptions {
  /** Sets the link MTU in bytes; without it the interface's current MTU is used. */
  readonly mtu?: number;
  /** Opens one queue of a multi-queue interface (IFF_MULTI_QUEUE). */
  readonly multiQueue?: boolean;
  /** Ring size in packets, a power of two; default {@linkcode DEFAULT_RING_SLOTS}. */
  readonly ringSlots?: number;
  /** Largest batch `readBatch()` returns; default {@linkcode DEFAULT_MAX_BATCH}. */
  readonly maxBatch?: number;
  /**
   * Bytes kept free in front of every packet inside the ring, so a caller may
   * write a header in place: `new Uint8Array(p.buffer, p.byteOffset - headroom,
   * headroom + p.length)`. Default 0.
   */
  readonly headroom?: number;
  /**
   * `"direct"`: `writePacket()` calls `write(2)` on the calling thread.
   * `"worker"`: it queues the packet for a writer Worker and returns at once.
   * Default {@linkcode DEFAULT_WRITER}.
   */
  readonly writer?: TunWriterMode;
  /** Write ring size in packets (writer `"worker"`), a power of two; default {@linkcode DEFAULT_WRITE_RING_SLOTS}. */
  readonly writeRingSlots?: number;
  /**
   * Bytes of the write spill ring for packets longer than a slot, a power of
   * two from 65536 to 2^30; default {@linkcode DEFAULT_WRITE_SPILL_BYTES}.
   */
  readonly writeSpillBytes?: number;
  /** Receives worker restarts (error) and a write ring that stays full (warn); default: none. */
  readonly log?: TunLog;
  /**
   * Ask the kernel for offloads (`IFF_VNET_HDR` + `TUNSETOFFLOAD`): TCP and
   * UDP super-packets are split on reads and built on writes. Falls back to
   * a TUN without them when the kernel refuses (logged at warn); default
   * false.
   */
  readonly offload?: boolean;
}

/** Counters of a {@linkcode TunDevice}, since it was opened. */
export interface TunStats {
  /** Packets returned by `readBatch()`. */
  readonly readPackets: number;
  /** Non-empty batches returned by `readBatch()`. */
  readonly readBatches: number;
  /** Packets the kernel accepted (with the writer worker: written so far). */
  readonly writtenPackets: number;
  /**
   * Packets refused: by the kernel, because the device was closed, or
   * because they were longer than 65535 bytes.
   */
  readonly writeErrors: number;
  /**
   * Packets the writer worker could not take: its ring (or spill ring) was
   * full, or they were still queued when the device closed or the writer was
   * restarted. Always 0 with the direct writer.
   */
  readonly writeDrops: number;
  /** errno of the last refused write, 0 if none or the device was closed. */
  readonly lastWriteErrno: number;
  /** Packets longer than the MTU given to `writePacket()` (taken like any other). */
  readonly oversizePackets: number;
  /** Times the reader worker was restarted (it died or made no progress). */
  readonly readerRestarts: number;
  /** Times the writer worker was restarted (it died or made no progress). */
  readonly writerRestarts: number;
  /**
   * Runs of writer ring drops: one starts with a drop and ends after a
   * watchdog period ({@linkcode WATCHDOG_MS}) without one.
   */
  readonly writeRingFullEpisodes: number;
  /** Offloads: GSO super-packets read from the kernel and split. */
  readonly readSuperPackets: number;
  /** Offloads: reads dropped because their `virtio_net_hdr` or packet could not be split. */
  readonly readOffloadErrors: number;
  /** Offloads: super-packets the writer merged and wrote. */
  readonly writeSuperPackets: number;
  /** Offloads: packets that went into those super-packets. */
  readonly writeMergedPackets: number;
}

/** A TUN interface; structurally a `PacketDevice` from `shared/`, plus counters. */
export interface TunDevice {
  /** Interface name as the kernel assigned it. */
  readonly name: string;
  /** Link MTU in bytes when opened; also the largest packet `readBatch()` returns. */
  readonly mtu: number;
  /** Free bytes in front of every packet returned by `readBatch()` (see {@linkcode TunOptions}). */
  readonly headroom: number;
  /** The offloads the kernel granted ({@linkcode TunOptions.offload}). */
  readonly offload: TunOffload;
  /**
   * With offloads: the largest TCP segment, bytes, that the reader makes
   * from a super-packet (the session's packet limit; at most the MTU the
   * device was opened with). UDP datagrams and plain packets keep their
   * size. Ignored without offloads (the kernel sends at most the MTU).
   */
  setPacketLimit(bytes: number): void;
  /**
   * Resolves with the next batch of one or more IP packets. Each Uint8Array is a
   * view into a SharedArrayBuffer and valid until the next call. Resolves null
   * once the device is closed. When the kernel ends the device (the link was
   * deleted), the packets already read come first, then one rejection with a
   * {@linkcode LibcError}, then null.
   */
  readBatch(): Promise<Uint8Array[] | null>;
  /** How `writePacket()` reaches the kernel. */
  readonly writer: TunWriterMode;
  /**
   * Writes one IP packet of up to 65535 bytes (longer than the MTU is fine),
   * or with the writer worker queues a copy of it (the caller keeps
   * `packet`). Returns false and counts when the packet was refused or
   * dropped; with the worker, a later kernel refusal is only counted in
   * `stats.writeErrors`. Never throws, never blocks.
   */
  writePacket(packet: Uint8Array): boolean;
  /**
   * Stops the reader and the writer worker (packets it has not written yet are
   * dropped), closes the fd (a non-persistent interface disappears) and
   * resolves a pending `readBatch()` with null. Synchronous and idempotent.
   */
  close(): void;
  /** A snapshot of the counters. */
  readonly stats: TunStats;
}

/**
 * Faults {@linkcode injectTunFault} can inject: `kill` ends the worker's loop
 * and terminates it, so that it leaves without a word (as a thread that
 * vanished), `stall` makes it stop making progress (as if blocked in a
 * system call), `throw` makes its loop throw.
 */
export type TunFault =
  | "kill-reader"
  | "stall-reader"
  | "throw-reader"
  | "kill-writer"
  | "stall-writer"
  | "throw-writer";

/**
 * For tests: injects `fault` into a worker of `device` (from
 * {@linkcode openTun}), which the watchdog must then notice and repair.
 */
export function injectTunFault(device: TunDevice, fault: TunFault): void {
  if (!(device instanceof LinuxTun)) throw new TypeError("injectTunFault() needs a LinuxTun");
  device.injectFault(fault);
}

/**
 * Opens `/dev/net/tun` and attaches it to TUN interface `name` (created when
 * missing, removed when the last fd closes unless made persistent), with
 * IFF_TUN | IFF_NO_PI (| IFF_MULTI_QUEUE). Returns the fd and the name the
 * kernel chose (`name` may be a pattern like `mvpn%d`). Lower-level than
 * {@linkcode openTun}; the caller closes the fd.
 *
 * @param options.blocking keep the fd blocking (default: O_NONBLOCK)
 * @param options.vnetHdr IFF_VNET_HDR: a `virtio_net_hdr` in front of every packet
 */
export function openTunFd(
  name: string,
  options: {
    readonly multiQueue?: boolean;
    readonly blocking?: boolean;
    readonly vnetHdr?: boolean;
  } = {},
): { fd: number; name: string } {
  const flags = IFF_TUN | IFF_NO_PI | (options.multiQueue ? IFF_MULTI_QUEUE : 0) |
    (options.vnetHdr ? IFF_VNET_HDR : 0);
  const ifreq = encodeIfreq(name, { flags });
  const openFlags = O_RDWR | O_CLOEXEC | (options.blocking ? 0 : O_NONBLOCK);
  const fd = check(
    libc().open(cString(TUN_CLONE_PATH), openFlags, 0),
    `Cannot open ${TUN_CLONE_PATH}`,
  );
  try {
    check(libc().ioctl(fd, BigInt(TUNSETIFF), ifreq), `Cannot create TUN ${name}`);
  } catch (error) {
    closeQuietly(fd);
    throw error;
  }
  return { fd, name: decodeIfreqName(ifreq) };
}

/**
 * Creates (or attaches to) TUN interface `name` and starts its reader worker.
 * The interface still needs addresses, routes and `setLinkUp()` (netlink.ts).
 * Throws a {@linkcode LibcError} such as
 * `Cannot open /dev/net/tun: No such file or directory (ENOENT)`.
 */
export function openTun(name: string, options: TunOptions = {}): TunDevice {
  const slotCount = options.ringSlots ?? DEFAULT_RING_SLOTS;
  if (!isPowerOfTwo(slotCount, 2, 1 << 20)) {
    throw new RangeError(`Cannot open TUN ${name}: ringSlots ${slotCount} is not a power of two`);
  }
  const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) {
    throw new RangeError(`Cannot open TUN ${name}: maxBatch ${maxBatch} is not a positive integer`);
  }
  const headroom = options.headroom ?? 0;
  if (!Number.isInteger(headroom) || headroom < 0 || headroom > 1024) {
    throw new RangeError(`Cannot open TUN ${name}: headroom ${headroom} is outside 0..1024`);
  }
  const writer = options.writer ?? DEFAULT_WRITER;
  if (writer !== "worker" && writer !== "direct") {
    throw new RangeError(`Cannot open TUN ${name}: writer ${writer} is not "worker" or "direct"`);
  }
  const writeSlots = options.writeRingSlots ?? DEFAULT_WRITE_RING_SLOTS;
  if (!isPowerOfTwo(writeSlots, 2, 1 << 20)) {
    throw new RangeError(
      `Cannot open TUN ${name}: writeRingSlots ${writeSlots} is not a power of two`,
    );
  }
  const spillBytes = options.writeSpillBytes ?? DEFAULT_WRITE_SPILL_BYTES;
  if (!isPowerOfTwo(spillBytes, 1 << 16, 1 << 30)) {
    throw new RangeError(
      `Cannot open TUN ${name}: writeSpillBytes ${spillBytes} is not a power of two ` +
        "from 65536 to 2^30",
    );
  }
  let opened: { fd: number; name: string };
  let offload: TunOffload = "off";
  if (options.offload) {
    const granted = openOffloadTun(name, options.multiQueue ?? false, options.log);
    opened = granted.opened;
    offload = granted.offload;
  } else {
    opened = openTunFd(name, { multiQueue: options.multiQueue });
  }
  let wakeFd = -1;
  try {
    let mtu: number;
    if (options.mtu === undefined) {
      mtu = linkMtu(opened.name);
    } else {
      setLinkMtu(opened.name, options.mtu);
      mtu = options.mtu;
    }
    wakeFd = check(
      libc().eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK),
      `Cannot open TUN ${opened.name}: eventfd()`,
    );
    return new LinuxTun({
      fd: opened.fd,
      wakeFd,
      name: opened.name,
      mtu,
      slotCount,
      maxBatch,
      headroom,
      writer,
      writeSlots,
      spillBytes,
      log: options.log,
      offload,
    });
  } catch (error) {
    closeQuietly(wakeFd);
    closeQuietly(opened.fd);
    throw error;
  }
}

/**
 * Opens the TUN with IFF_VNET_HDR and asks for checksum, TSO and USO
 * offloads, then without USO (before Linux 6.2 an unknown flag is EINVAL);
 * when the kernel refuses both, reopens it without IFF_VNET_HDR.
 */
function openOffloadTun(
  name: string,
  multiQueue: boolean,
  log: TunLog | undefined,
): { opened: { fd: number; name: string }; offload: TunOffload } {
  const opened = openTunFd(name, { multiQueue, vnetHdr: true });
  const c = libc();
  // The virtio_net_hdr codec is little endian; this makes a big-endian host agree.
  c.ioctl(opened.fd, BigInt(TUNSETVNETLE), new Int32Array([1]));
  const tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
  if (c.ioctlValue(opened.fd, BigInt(TUNSETOFFLOAD), BigInt(tso | TUN_F_USO4 | TUN_F_USO6)) === 0) {
    return { opened, offload: "tso+uso" };
  }
  if (c.ioctlValue(opened.fd, BigInt(TUNSETOFFLOAD), BigInt(tso)) === 0) {
    return { opened, offload: "tso" };
  }
  const code = errno();
  closeQuietly(opened.fd);
  log?.warn("TUN offloads refused by the kernel, continuing without them", {
    tun: opened.name,
    error: new LibcError("TUNSETOFFLOAD", code).message,
  });
  return { opened: openTunFd(name, { multiQueue }), offload: "off" };
}

function isPowerOfTwo(value: number, min: number, max: number): boolean {
  return Number.isInteger(value) && value >= min && value <= max && (value & (value - 1)) === 0;
}

/** What LinuxTun's constructor needs, checked by openTun(). */
interface LinuxTunSetup {
  readonly fd: number;
  readonly wakeFd: number;
  readonly name: string;
  readonly mtu: number;
  readonly slotCount: number;
  readonly maxBatch: number;
  readonly headroom: number;
  readonly writer: TunWriterMode;
  readonly writeSlots: number;
  readonly spillBytes: number;
  readonly log: TunLog | undefined;
  readonly offload: TunOffload;
}

/** The main thread's watch on one worker: has it moved since the last look? */
class ProgressWatch {
  #beat = 0;
  #index = 0;
  #since: number;

  constructor(now: number) {
    this.#since = now;
  }

  /**
   * Milliseconds since BEAT or the word at `index` last changed, as seen at
   * the calls to this method; 0 when they changed since the last call.
   */
  stillFor(control: Int32Array<SharedArrayBuffer>, index: number, now: number): number {
    const beat = Atomics.load(control, BEAT);
    const position = Atomics.load(control, index);
    if (beat !== this.#beat || position !== this.#index) {
      this.#beat = beat;
      this.#index = position;
      this.#since = now;
    }
    return now - this.#since;
  }
}

/** When a worker may be restarted again: at once at first, then with a growing wait. */
class RestartPolicy {
  count = 0;
  #last = -Infinity;
  #delay = 0;

  /** Whether a restart may happen at `now` (milliseconds, performance.now()). */
  due(now: number): boolean {
    return now - this.#last >= this.#delay;
  }

  /** Records a restart at `now`. */
  record(now: number): void {
    this.#delay = now - this.#last < RESTART_QUIET_MS
      ? Math.min(Math.max(this.#delay * 2, RESTART_BACKOFF_MIN_MS), RESTART_BACKOFF_MAX_MS)
      : 0;
    this.#last = now;
    this.count++;
  }
}

/** A counter word of a control block, read as unsigned 32 bits. */
function counter(control: Int32Array<SharedArrayBuffer>, index: number): number {
  return Atomics.load(control, index) >>> 0;
}

/** Why a worker needs a restart, or undefined when it is fine. */
function workerTrouble(
  control: Int32Array<SharedArrayBuffer>,
  index: number,
  watch: ProgressWatch,
  ended: string | undefined,
  startedAt: number,
  now: number,
): string | undefined {
  if (ended !== undefined) return ended;
  const still = watch.stillFor(control, index, now);
  if (Atomics.load(control, STATE) === STATE_STARTING) {
    return now - startedAt >= STARTUP_GRACE_MS
      ? `not started after ${Math.round(now - startedAt)} ms`
      : undefined;
  }
  return still >= STALL_MS ? `no progress for ${Math.round(still)} ms` : undefined;
}

class LinuxTun implements TunDevice {
  readonly name: string;
  readonly mtu: number;
  readonly headroom: number;
  readonly writer: TunWriterMode;
  readonly offload: TunOffload;
  readonly #setup: LinuxTunSetup;
  /** With offloads: a virtio_net_hdr (all zero) and room for a packet, for writes on this thread. */
  readonly #frame: Uint8Array<ArrayBuffer> | undefined;
  /** PACKET_LIMIT for every reader ring, bytes (0: the slot capacity). */
  #packetLimit = 0;
  /** Offload counters of rings retired by a restart. */
  #retiredSuper = 0;
  #retiredOffloadErrors = 0;
  #retiredSuperWrites = 0;
  #retiredMerged = 0;
  readonly #log: TunLog | undefined;
  #reader: ReaderRing;
  /** The writer worker's ring, with writer "worker". */
  #writerRing: WriterRing | undefined;
  readonly #readerRestarts = new RestartPolicy();
  readonly #writerRestarts = new RestartPolicy();
  readonly #watchdog: ReturnType<typeof setInterval>;
  #closed = false;
  /** The workers are gone and the fds are closed (after close() or a read failure). */
  #shutDown = false;
  #failure: Error | null = null;
  #readPackets = 0;
  #readBatches = 0;
  #writtenPackets = 0;
  #writeErrors = 0;
  #writeDrops = 0;
  #lastWriteErrno = 0;
  #oversizePackets = 0;
  /** Counters of writer rings retired by a restart. */
  #retiredWritten = 0;
  #retiredRefused = 0;
  #retiredErrno = 0;
  /** performance.now() of the first drop of the current run of drops, or -1. */
  #fullSince = -1;
  #fullEpisodes = 0;
  #fullWarned = false;
  #dropsAtLastLook = 0;
  #fullDropsBase = 0;

  constructor(setup: LinuxTunSetup) {
    this.#setup = setup;
    this.name = setup.name;
    this.mtu = setup.mtu;
    this.headroom = setup.headroom;
    this.writer = setup.writer;
    this.offload = setup.offload;
    this.#frame = setup.offload === "off"
      ? undefined
      : new Uint8Array(VNET_HDR_BYTES + MAX_WRITE_PACKET_BYTES);
    this.#log = setup.log;
    this.#writerRing = setup.writer === "worker" ? this.#newWriterRing() : undefined;
    try {
      this.#reader = this.#newReaderRing();
    } catch (error) {
      this.#writerRing?.stop();
      throw error;
    }
    this.#watchdog = setInterval(() => this.#look(), WATCHDOG_MS);
    Deno.unrefTimer(this.#watchdog);
  }

  get stats(): TunStats {
    const ring = this.#writerRing;
    return {
      readPackets: this.#readPackets,
      readBatches: this.#readBatches,
      writtenPackets: this.#writtenPackets + this.#retiredWritten + (ring?.written ?? 0),
      writeErrors: this.#writeErrors + this.#retiredRefused + (ring?.refused ?? 0),
      writeDrops: this.#writeDrops,
      lastWriteErrno: ring?.lastErrno || this.#retiredErrno || this.#lastWriteErrno,
      oversizePackets: this.#oversizePackets,
      readerRestarts: this.#readerRestarts.count,
      writerRestarts: this.#writerRestarts.count,
      writeRingFullEpisodes: this.#fullEpisodes,
      readSuperPackets: this.#retiredSuper + counter(this.#reader.control, SUPER_PACKETS),
      readOffloadErrors: this.#retiredOffloadErrors +
        counter(this.#reader.control, OFFLOAD_ERRORS),
      writeSuperPackets: this.#retiredSuperWrites +
        (ring ? counter(ring.control, W_SUPER_WRITES) : 0),
      writeMergedPackets: this.#retiredMerged + (ring ? counter(ring.control, W_MERGED) : 0),
    };
  }

  setPacketLimit(bytes: number): void {
    if (!Number.isInteger(bytes) || bytes < 0) return;
    this.#packetLimit = Math.min(bytes, 0x7fffffff);
    Atomics.store(this.#reader.control, PACKET_LIMIT, this.#packetLimit);
  }

  async readBatch(): Promise<Uint8Array[] | null> {
    this.#reader.release();
    for (;;) {
      if (this.#closed) return null;
      const reader = this.#reader;
      const control = reader.control;
      const head = Atomics.load(control, HEAD);
      if (head !== reader.tail) {
        const batch = reader.take(head, this.#setup.maxBatch);
        this.#readPackets += batch.length;
        this.#readBatches++;
        return batch;
      }
      if (this.#shutDown) {
        const failure = this.#failure;
        this.#failure = null;
        if (failure) throw failure;
        return null;
      }
      // Woken by the worker (new packets), close(), a device failure or a
      // restart (which notifies the old ring); the watchdog repeats a wake-up
      // that went missing.
      Atomics.store(control, CONSUMER_WAITING, 1);
      const wait = Atomics.waitAsync(control, HEAD, head);
      if (wait.async) await wait.value;
      Atomics.store(control, CONSUMER_WAITING, 0);
    }
  }

  writePacket(packet: Uint8Array): boolean {
    if (this.#shutDown || this.#closed) {
      this.#writeErrors++;
      this.#lastWriteErrno = 0;
      return false;
    }
    if (packet.length > this.mtu) {
      if (packet.length > MAX_WRITE_PACKET_BYTES) {
        this.#writeErrors++;
        this.#lastWriteErrno = EMSGSIZE;
        return false;
      }
      this.#oversizePackets++;
    }
    const ring = this.#writerRing;
    if (ring && !ring.takeQuietWrite(performance.now())) {
      if (ring.push(packet)) return true;
      this.#writeDrops++;
      if (this.#fullSince < 0) {
        this.#fullSince = performance.now();
        this.#fullEpisodes++;
        this.#fullDropsBase = this.#writeDrops - 1;
      }
      return false;
    }
    let written: bigint;
    let size: number;
    const frame = this.#frame;
    if (frame === undefined) {
      size = packet.length;
      written = libc().write(this.#setup.fd, packet, BigInt(size));
    } else {
      // An all-zero virtio_net_hdr: a plain packet, nothing for the kernel to do.
      frame.set(packet, VNET_HDR_BYTES);
      size = VNET_HDR_BYTES + packet.length;
      written = libc().write(this.#setup.fd, frame, BigInt(size));
    }
    if (written === BigInt(size)) {
      this.#writtenPackets++;
      return true;
    }
    this.#lastWriteErrno = written < 0 ? errno() : 0;
    this.#writeErrors++;
    return false;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const control = this.#reader.control;
    if (!this.#shutDown) {
      // Wake the reader from poll(2) (the eventfd) or from Atomics.wait (TAIL).
      stopLoop(control, () => {
        libc().write(this.#setup.wakeFd, new BigUint64Array([1n]), 8n);
        Atomics.notify(control, TAIL);
      }, STOP_TIMEOUT_MS);
      this.#shutdown();
    }
    Atomics.notify(control, HEAD); // resolves a pending readBatch() with null
  }

  /** See {@linkcode injectTunFault}. */
  injectFault(fault: TunFault): void {
    const [action, which] = fault.split("-");
    const ring = which === "reader" ? this.#reader : this.#writerRing;
    if (!ring) throw new RangeError(`Cannot inject ${fault}: no writer worker`);
    if (action === "kill") {
      // terminate() alone does not stop a worker busy in its synchronous loop
      // (Deno 2.9 ends it only when the loop returns): end the loop, then
      // terminate, so the worker leaves without a word.
      Atomics.store(ring.control, STOP, 1);
      Atomics.notify(ring.control, HEAD);
      Atomics.notify(ring.control, TAIL);
      ring.worker.terminate();
    } else {
      Atomics.store(ring.control, FAULT, action === "stall" ? FAULT_STALL : FAULT_THROW);
      Atomics.notify(ring.control, HEAD);
      Atomics.notify(ring.control, TAIL);
    }
  }

  #newReaderRing(): ReaderRing {
    const s = this.#setup;
    const ring = new ReaderRing(
      s.fd,
      s.wakeFd,
      s.name,
      s.slotCount,
      s.headroom,
      s.mtu,
      s.offload !== "off",
      (ring, exception) => this.#onReaderEnded(ring, exception),
    );
    Atomics.store(ring.control, PACKET_LIMIT, this.#packetLimit);
    return ring;
  }

  #newWriterRing(): WriterRing {
    const s = this.#setup;
    const capacity = Math.max(s.mtu, WRITE_SLOT_MIN_BYTES);
    return new WriterRing(
      s.fd,
      s.name,
      capacity,
      s.writeSlots,
      s.spillBytes,
      s.offload,
      (ring, exception) => this.#onWriterEnded(ring, exception),
    );
  }

  /** The reader posted "stopped" or failed to run. */
  #onReaderEnded(reader: ReaderRing, exception: string | undefined): void {
    if (reader !== this.#reader || this.#shutDown) return; // retired, or closing
    const control = reader.control;
    Atomics.compareExchange(control, STATE, STATE_STARTING, STATE_STOPPED);
    const code = Atomics.load(control, ERRNO);
    const stopped = Atomics.load(control, STOP) !== 0; // not by close(): it was killed
    if (exception === undefined && code !== ERRNO_EXCEPTION && !stopped) {
      // The kernel ended the device: an errno such as EBADFD once the link
      // was deleted, or end of file. No restart can help.
      this.#failure = code > 0
        ? new LibcError(`Cannot read from TUN ${this.name}`, code)
        : new Error(`Cannot read from TUN ${this.name}: end of file`);
      this.#shutdown();
      Atomics.notify(control, HEAD);
      return;
    }
    reader.ended = `died: ${exception ?? (stopped ? "exited" : "exception")}`;
    this.#look();
  }

  /** The writer posted "stopped" or failed to run. */
  #onWriterEnded(ring: WriterRing, exception: string | undefined): void {
    if (ring !== this.#writerRing || this.#shutDown) return;
    ring.ended = `died: ${exception ?? "exited"}`;
    this.#look();
  }

  /** The watchdog: restarts a worker in trouble; warns of a write ring that stays full. */
  #look(): void {
    if (this.#shutDown) return;
    const now = performance.now();
    const reader = this.#reader;
    const readerTrouble = reader.trouble(now);
    if (readerTrouble !== undefined) {
      if (this.#readerRestarts.due(now)) this.#restartReader(readerTrouble, now);
    } else if (
      Atomics.load(reader.control, CONSUMER_WAITING) !== 0 &&
      Atomics.load(reader.control, HEAD) !== reader.tail
    ) {
      Atomics.notify(reader.control, HEAD); // a wake-up that went missing
    }
    const ring = this.#writerRing;
    if (ring === undefined) return;
    const writerTrouble = ring.trouble(now);
    if (writerTrouble !== undefined && this.#writerRestarts.due(now)) {
      this.#restartWriter(writerTrouble, now);
    }
    this.#lookAtDrops(now);
  }

  /** Ends a run of drops after a quiet period, or warns once when it lasts. */
  #lookAtDrops(now: number): void {
    const drops = this.#writeDrops;
    if (this.#fullSince >= 0) {
      const fields = () => ({
        tun: this.name,
        ms: Math.round(now - this.#fullSince),
        dropped: drops - this.#fullDropsBase,
      });
      if (drops === this.#dropsAtLastLook) {
        if (this.#fullWarned) this.#log?.warn("TUN write ring drains again", fields());
        this.#fullSince = -1;
        this.#fullWarned = false;
      } else if (!this.#fullWarned && now - this.#fullSince >= RING_FULL_WARN_MS) {
        this.#fullWarned = true;
        this.#log?.warn("TUN write ring full, dropping", {
          ...fields(),
          ...(this.#writerRing?.describe() ?? {}),
        });
      }
    }
    this.#dropsAtLastLook = drops;
  }

  #restartReader(why: string, now: number): void {
    const old = this.#reader;
    let fresh: ReaderRing;
    try {
      fresh = this.#newReaderRing();
    } catch (error) {
      this.#readerRestarts.record(now);
      this.#log?.error("TUN reader worker cannot be restarted", {
        tun: this.name,
        why,
        error: error instanceof Error ? error.message : String(error),
      });
      return;
    }
    const state = old.describe();
    old.retire();
    this.#retiredSuper += counter(old.control, SUPER_PACKETS);
    this.#retiredOffloadErrors += counter(old.control, OFFLOAD_ERRORS);
    this.#reader = fresh;
    this.#readerRestarts.record(now);
    this.#log?.error("TUN reader worker restarted", {
      tun: this.name,
      why,
      ...state,
      restarts: this.#readerRestarts.count,
    });
    Atomics.notify(old.control, HEAD); // a readBatch() waiting on the old ring moves over
  }

  #restartWriter(why: string, now: number): void {
    const old = this.#writerRing!;
    let fresh: WriterRing;
    try {
      fresh = this.#newWriterRing();
    } catch (error) {
      this.#writerRestarts.record(now);
      this.#log?.error("TUN writer worker cannot be restarted", {
        tun: this.name,
        why,
        error: error instanceof Error ? error.message : String(error),
      });
      return;
    }
    const state = old.describe();
    const queued = old.retire();
    this.#writeDrops += queued;
    this.#retiredWritten += old.written;
    this.#retiredRefused += old.refused;
    this.#retiredErrno = old.lastErrno || this.#retiredErrno;
    this.#retiredSuperWrites += counter(old.control, W_SUPER_WRITES);
    this.#retiredMerged += counter(old.control, W_MERGED);
    this.#writerRing = fresh;
    this.#writerRestarts.record(now);
    this.#log?.error("TUN writer worker restarted", {
      tun: this.name,
      why,
      ...state,
      dropped: queued,
      restarts: this.#writerRestarts.count,
    });
  }

  /** Closes both fds and ends the workers; the read ring stays readable for draining. */
  #shutdown(): void {
    if (this.#shutDown) return;
    this.#shutDown = true;
    clearInterval(this.#watchdog);
    this.#reader.worker.terminate();
    if (this.#writerRing) this.#writeDrops += this.#writerRing.stop();
    closeQuietly(this.#setup.fd);
    closeQuietly(this.#setup.wakeFd);
  }
}

/**
 * The main thread's side of one reader worker ({@linkcode ./tun_worker.ts})
 * and its ring: `take()` hands out filled slots as views, `release()` gives
 * them back. A restart replaces the whole object.
 */
class ReaderRing {
  readonly worker: Worker;
  readonly control: Int32Array<SharedArrayBuffer>;
  readonly #ring: SharedArrayBuffer;
  readonly #words: Int32Array<SharedArrayBuffer>;
  readonly #mask: number;
  readonly #stride: number;
  readonly #headroom: number;
  readonly #capacity: number;
  readonly #startedAt = performance.now();
  readonly #watch = new ProgressWatch(this.#startedAt);
  /** Slots released so far (a counter like TAIL). */
  tail = 0;
  #handedOut = 0;
  /** Set when the worker posted "stopped" or failed: why. */
  ended: string | undefined;

  constructor(
    fd: number,
    wakeFd: number,
    name: string,
    slotCount: number,
    headroom: number,
    capacity: number,
    vnetHdr: boolean,
    onEnded: (ring: ReaderRing, exception: string | undefined) => void,
  ) {
    this.#mask = slotCount - 1;
    this.#headroom = headroom;
    this.#capacity = capacity;
    this.#stride = (4 + headroom + capacity + 7) & ~7;
    this.#ring = new SharedArrayBuffer(CONTROL_BYTES + slotCount * this.#stride);
    this.control = new Int32Array(this.#ring, 0, CONTROL_BYTES / 4);
    this.#words = new Int32Array(this.#ring);
    this.worker = new Worker(new URL("./tun_worker.ts", import.meta.url), {
      type: "module",
      name: `tun ${name}`,
    });
    this.worker.onmessage = (event: MessageEvent<TunWorkerStopped>) => {
      onEnded(this, event.data.exception);
    };
    this.worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      onEnded(this, event.message);
    };
    const start: TunWorkerStart = {
      fd,
      wakeFd,
      ring: this.#ring,
      slotCount,
      stride: this.#stride,
      headroom,
      capacity,
      vnetHdr,
    };
    this.worker.postMessage(start);
  }

  /** Why the worker needs a restart, or undefined. */
  trouble(now: number): string | undefined {
    const used = (Atomics.load(this.control, HEAD) - this.tail) | 0;
    if (used < 0 || used > this.#mask + 1) return `ring indices out of range (${used} used)`;
    return workerTrouble(this.control, HEAD, this.#watch, this.ended, this.#startedAt, now);
  }

  /** The ring's state for a log line. */
  describe(): TunLogFields {
    const c = this.control;
    return {
      head: Atomics.load(c, HEAD),
      tail: Atomics.load(c, TAIL),
      state: Atomics.load(c, STATE),
      errno: Atomics.load(c, ERRNO),
    };
  }

  /** Tells the worker to stop and terminates it, without waiting; the ring is abandoned. */
  retire(): void {
    Atomics.store(this.control, STOP, 1);
    Atomics.notify(this.control, TAIL);
    this.worker.terminate();
  }

  /** Returns the slots handed out by the previous take() to the worker. */
  release(): void {
    if (this.#handedOut === 0) return;
    this.tail = (this.tail + this.#handedOut) | 0;
    this.#handedOut = 0;
    Atomics.store(this.control, TAIL, this.tail);
    if (Atomics.load(this.control, PRODUCER_WAITING) !== 0) Atomics.notify(this.control, TAIL);
  }

  /** Views of up to `maxBatch` filled slots from TAIL on. */
  take(head: number, maxBatch: number): Uint8Array[] {
    const count = Math.min((head - this.tail) | 0, maxBatch);
    const batch: Uint8Array[] = new Array(count);
    let index = this.tail;
    for (let k = 0; k < count; k++) {
      const offset = CONTROL_BYTES + (index & this.#mask) * this.#stride;
      const length = Math.min(this.#words[offset >> 2], this.#capacity);
      batch[k] = new Uint8Array(this.#ring, offset + 4 + this.#headroom, length);
      index = (index + 1) | 0;
    }
    this.#handedOut = count;
    return batch;
  }
}

/**
 * The main thread's side of one writer worker ({@linkcode ./tun_writer_worker.ts}):
 * `push()` copies a packet into the next free slot (or the spill ring) and
 * publishes HEAD; the worker writes slots TAIL..HEAD-1 to the fd. Never
 * waits: a full ring refuses. A restart replaces the whole object.
 */
class WriterRing {
  readonly worker: Worker;
  readonly control: Int32Array<SharedArrayBuffer>;
  readonly #counters: BigInt64Array<SharedArrayBuffer>;
  readonly #lengths: Uint32Array<SharedArrayBuffer>;
  readonly #bytes: Uint8Array<SharedArrayBuffer>;
  readonly #slotCount: number;
  readonly #stride: number;
  readonly #capacity: number;
  readonly #spillStart: number;
  readonly #spillBytes: number;
  readonly #startedAt = performance.now();
  readonly #watch = new ProgressWatch(this.#startedAt);
  #head = 0;
  #spillHead = 0;
  /** performance.now() of the last takeQuietWrite() call. */
  #lastWrite = -Infinity;
  /** Set when the worker posted "stopped" or failed: why. */
  ended: string | undefined;

  constructor(
    fd: number,
    name: string,
    capacity: number,
    slotCount: number,
    spillBytes: number,
    offload: TunOffload,
    onEnded: (ring: WriterRing, exception: string | undefined) => void,
  ) {
    this.#slotCount = slotCount;
    this.#capacity = capacity;
    this.#stride = (W_SLOT_HEADER_BYTES + capacity + 7) & ~7;
    this.#spillStart = CONTROL_BYTES + slotCount * this.#stride;
    this.#spillBytes = spillBytes;
    const ring = new SharedArrayBuffer(this.#spillStart + spillBytes);
    this.control = new Int32Array(ring, 0, CONTROL_BYTES / 4);
    this.#counters = new BigInt64Array(ring, 0, CONTROL_BYTES / 8);
    this.#lengths = new Uint32Array(ring);
    this.#bytes = new Uint8Array(ring);
    this.worker = new Worker(new URL("./tun_writer_worker.ts", import.meta.url), {
      type: "module",
      name: `tun writer ${name}`,
    });
    this.worker.onmessage = (event: MessageEvent<TunWriterStopped>) => {
      onEnded(this, event.data.exception);
    };
    this.worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      onEnded(this, event.message);
    };
    const start: TunWriterStart = {
      fd,
      ring,
      slotCount,
      stride: this.#stride,
      spillBytes,
      vnetHdr: offload !== "off",
      udpOffload: offload === "tso+uso",
    };
    this.worker.postMessage(start);
  }

  /** Packets the kernel accepted. */
  get written(): number {
    return Number(Atomics.load(this.#counters, W_WRITTEN64));
  }

  /** Packets the kernel refused. */
  get refused(): number {
    return Number(Atomics.load(this.#counters, W_REFUSED64));
  }

  /** errno of the last refused write, 0 if none. */
  get lastErrno(): number {
    return Atomics.load(this.control, W_LAST_ERRNO);
  }

  /** Why the worker needs a restart, or undefined. */
  trouble(now: number): string | undefined {
    const used = (this.#head - Atomics.load(this.control, TAIL)) | 0;
    if (used < 0 || used > this.#slotCount) return `ring indices out of range (${used} used)`;
    return workerTrouble(this.control, TAIL, this.#watch, this.ended, this.#startedAt, now);
  }

  /** The ring's state for a log line. */
  describe(): TunLogFields {
    const c = this.control;
    return {
      head: this.#head,
      tail: Atomics.load(c, TAIL),
      state: Atomics.load(c, STATE),
      lastErrno: Atomics.load(c, W_LAST_ERRNO),
    };
  }

  /**
   * Called for every packet before it is written: true when the caller
   * should write this one itself, on its own thread, because it comes after
   * a quiet spell ({@linkcode QUIET_WRITE_MS}) and nothing is queued (so order
   * is kept: TAIL moves only after a write returned). Waking the worker costs
   * a thread wake-up, about 0.1 ms on a virtual machine, which a lone packet
   * (a ping, a keystroke) would pay at each end; a flow goes to the worker.
   */
  takeQuietWrite(now: number): boolean {
    const quiet = now - this.#lastWrite >= QUIET_WRITE_MS;
    this.#lastWrite = now;
    return quiet && this.#head === Atomics.load(this.control, TAIL);
  }

  /**
   * Queues a copy of `packet` (at most {@linkcode MAX_WRITE_PACKET_BYTES});
   * false when the ring, or for a packet longer than a slot the spill ring,
   * is full.
   */
  push(packet: Uint8Array): boolean {
    const control = this.control;
    if (((this.#head - Atomics.load(control, TAIL)) | 0) >= this.#slotCount) return false;
    const offset = CONTROL_BYTES + (this.#head & (this.#slotCount - 1)) * this.#stride;
    const length = packet.length;
    if (length <= this.#capacity) {
      this.#bytes.set(packet, offset + W_SLOT_HEADER_BYTES);
    } else {
      // Contiguous in the spill ring: skip to its start when the packet would wrap.
      const size = spillSize(length);
      const bytes = this.#spillBytes;
      const at = this.#spillHead & (bytes - 1);
      const skip = at + size > bytes ? bytes - at : 0;
      const used = (this.#spillHead - Atomics.load(control, W_SPILL_TAIL)) | 0;
      if (used + skip + size > bytes) return false;
      this.#bytes.set(packet, this.#spillStart + (skip === 0 ? at : 0));
      this.#spillHead = (this.#spillHead + skip + size) | 0;
      this.#lengths[(offset + W_SLOT_HEADER_BYTES) >> 2] = this.#spillHead;
    }
    this.#lengths[offset >> 2] = length;
    this.#head = (this.#head + 1) | 0;
    Atomics.store(control, HEAD, this.#head);
    if (Atomics.compareExchange(control, WRITER_WAITING, 1, 0) === 1) {
      Atomics.notify(control, HEAD);
    }
    return true;
  }

  /**
   * Tells the worker to stop and terminates it, without waiting; the ring is
   * abandoned. Returns the number of packets still queued.
   */
  retire(): number {
    Atomics.store(this.control, STOP, 1);
    Atomics.notify(this.control, HEAD);
    this.worker.terminate();
    return (this.#head - Atomics.load(this.control, TAIL)) | 0;
  }

  /**
   * Stops the worker and waits (at most STOP_TIMEOUT_MS) until it no longer
   * touches the fd; returns the number of packets still queued.
   */
  stop(): number {
    const control = this.control;
    stopLoop(control, () => Atomics.notify(control, HEAD), STOP_TIMEOUT_MS);
    this.worker.terminate();
    return (this.#head - Atomics.load(control, TAIL)) | 0;
  }
}
