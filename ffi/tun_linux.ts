/**
 * Linux TUN devices (layer 3, no packet-information header) as a
 * `PacketDevice`: `openTun("mvpn0")` creates or attaches to the interface and
 * returns an object with `readBatch()`, `writePacket()` and `close()`.
 *
 * Read path: a Worker ({@linkcode ./tun_worker.ts}) reads the non-blocking fd
 * in a synchronous loop into a SharedArrayBuffer ring; `readBatch()` waits with
 * `Atomics.waitAsync` and returns every filled slot at once as views into the
 * ring. Write path: `writePacket()` is one synchronous FFI `write(2)` on the
 * main thread (a TUN write never blocks; it hands the packet to the kernel's
 * receive path), which costs a few microseconds, less than a hand-off to a
 * writer worker would.
 *
 * Needs `--allow-ffi`, `--allow-read` (to load the worker module) and
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
  TUNSETIFF,
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
  CONSUMER_WAITING,
  CONTROL_BYTES,
  ERRNO,
  ERRNO_EXCEPTION,
  HEAD,
  PRODUCER_WAITING,
  STATE,
  STATE_RUNNING,
  STATE_STARTING,
  STATE_STOPPED,
  STOP,
  TAIL,
  type TunWorkerStart,
  type TunWorkerStopped,
} from "./tun_worker.ts";

/** Path of the TUN/TAP clone device. */
export const TUN_CLONE_PATH = "/dev/net/tun";
/** Default number of ring slots (packets buffered between the worker and the reader). */
export const DEFAULT_RING_SLOTS = 1024;
/** Default largest number of packets returned by one `readBatch()`. */
export const DEFAULT_MAX_BATCH = 256;
/** How long close() waits for the worker to leave its loop, in milliseconds. */
const STOP_TIMEOUT_MS = 1000;

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
}

/** Counters of a {@linkcode TunDevice}, since it was opened. */
export interface TunStats {
  /** Packets returned by `readBatch()`. */
  readonly readPackets: number;
  /** Non-empty batches returned by `readBatch()`. */
  readonly readBatches: number;
  /** Packets accepted by the kernel in `writePacket()`. */
  readonly writtenPackets: number;
  /** Packets refused in `writePacket()` (kernel error or device closed). */
  readonly writeErrors: number;
  /** errno of the last refused write, 0 if none or the device was closed. */
  readonly lastWriteErrno: number;
}

/** A TUN interface; structurally a `PacketDevice` from `shared/`, plus counters. */
export interface TunDevice {
  /** Interface name as the kernel assigned it. */
  readonly name: string;
  /** Link MTU in bytes when opened; also the largest packet `readBatch()` returns. */
  readonly mtu: number;
  /** Free bytes in front of every packet returned by `readBatch()` (see {@linkcode TunOptions}). */
  readonly headroom: number;
  /**
   * Resolves with the next batch of one or more IP packets. Each Uint8Array is a
   * view into a SharedArrayBuffer and valid until the next call. Resolves null
   * once the device is closed. When the kernel ends the device (the link was
   * deleted), the packets already read come first, then one rejection with a
   * {@linkcode LibcError}, then null.
   */
  readBatch(): Promise<Uint8Array[] | null>;
  /** Writes one IP packet; returns false (and counts) when the kernel refused it. Never throws. */
  writePacket(packet: Uint8Array): boolean;
  /**
   * Stops the reader, closes the fd (a non-persistent interface disappears) and
   * resolves a pending `readBatch()` with null. Synchronous and idempotent.
   */
  close(): void;
  /** A snapshot of the counters. */
  readonly stats: TunStats;
}

/**
 * Opens `/dev/net/tun` and attaches it to TUN interface `name` (created when
 * missing, removed when the last fd closes unless made persistent), with
 * IFF_TUN | IFF_NO_PI (| IFF_MULTI_QUEUE). Returns the fd and the name the
 * kernel chose (`name` may be a pattern like `mvpn%d`). Lower-level than
 * {@linkcode openTun}; the caller closes the fd.
 *
 * @param options.blocking keep the fd blocking (default: O_NONBLOCK)
 */
export function openTunFd(
  name: string,
  options: { readonly multiQueue?: boolean; readonly blocking?: boolean } = {},
): { fd: number; name: string } {
  const flags = IFF_TUN | IFF_NO_PI | (options.multiQueue ? IFF_MULTI_QUEUE : 0);
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
  if (!Number.isInteger(slotCount) || slotCount < 2 || (slotCount & (slotCount - 1)) !== 0) {
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
  const opened = openTunFd(name, { multiQueue: options.multiQueue });
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
    return new LinuxTun(opened.fd, wakeFd, opened.name, mtu, slotCount, maxBatch, headroom);
  } catch (error) {
    closeQuietly(wakeFd);
    closeQuietly(opened.fd);
    throw error;
  }
}

class LinuxTun implements TunDevice {
  readonly name: string;
  readonly mtu: number;
  readonly headroom: number;
  #fd: number;
  #wakeFd: number;
  #worker: Worker;
  #ring: SharedArrayBuffer;
  #control: Int32Array<SharedArrayBuffer>;
  #words: Int32Array<SharedArrayBuffer>;
  #mask: number;
  #stride: number;
  #maxBatch: number;
  #tail = 0;
  #handedOut = 0;
  #closed = false;
  /** The worker is gone and the fds are closed (after close() or a read failure). */
  #shutDown = false;
  #failure: Error | null = null;
  #workerGone: Promise<void>;
  #resolveWorkerGone!: () => void;
  #readPackets = 0;
  #readBatches = 0;
  #writtenPackets = 0;
  #writeErrors = 0;
  #lastWriteErrno = 0;

  constructor(
    fd: number,
    wakeFd: number,
    name: string,
    mtu: number,
    slotCount: number,
    maxBatch: number,
    headroom: number,
  ) {
    this.name = name;
    this.mtu = mtu;
    this.headroom = headroom;
    this.#fd = fd;
    this.#wakeFd = wakeFd;
    this.#maxBatch = maxBatch;
    this.#mask = slotCount - 1;
    this.#stride = (4 + headroom + mtu + 7) & ~7;
    this.#ring = new SharedArrayBuffer(CONTROL_BYTES + slotCount * this.#stride);
    this.#control = new Int32Array(this.#ring, 0, CONTROL_BYTES / 4);
    this.#words = new Int32Array(this.#ring);
    this.#workerGone = new Promise((resolve) => this.#resolveWorkerGone = resolve);
    this.#worker = new Worker(new URL("./tun_worker.ts", import.meta.url), {
      type: "module",
      name: `tun ${name}`,
    });
    this.#worker.onmessage = (event: MessageEvent<TunWorkerStopped>) => {
      this.#onWorkerStopped(event.data.exception);
    };
    this.#worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      this.#onWorkerStopped(event.message);
    };
    const start: TunWorkerStart = {
      fd,
      wakeFd,
      ring: this.#ring,
      slotCount,
      stride: this.#stride,
      headroom,
      capacity: mtu,
    };
    this.#worker.postMessage(start);
  }

  get stats(): TunStats {
    return {
      readPackets: this.#readPackets,
      readBatches: this.#readBatches,
      writtenPackets: this.#writtenPackets,
      writeErrors: this.#writeErrors,
      lastWriteErrno: this.#lastWriteErrno,
    };
  }

  async readBatch(): Promise<Uint8Array[] | null> {
    this.#release();
    const control = this.#control;
    for (;;) {
      if (this.#closed) return null;
      const head = Atomics.load(control, HEAD);
      if (head !== this.#tail) return this.#take(head);
      if (Atomics.load(control, STATE) === STATE_STOPPED) {
        await this.#workerGone;
        if (this.#closed) return null;
        const failure = this.#failure;
        this.#failure = null;
        if (failure) throw failure;
        return null;
      }
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
    const written = libc().write(this.#fd, packet, BigInt(packet.length));
    if (written === BigInt(packet.length)) {
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
    const control = this.#control;
    if (!this.#shutDown) {
      Atomics.store(control, STOP, 1);
      // Either the worker never started (it will see STOPPED and leave the fds
      // alone), or wake it from poll(2) / Atomics.wait and wait for it to stop.
      if (
        Atomics.compareExchange(control, STATE, STATE_STARTING, STATE_STOPPED) !== STATE_STARTING
      ) {
        libc().write(this.#wakeFd, new BigUint64Array([1n]), 8n);
        Atomics.notify(control, TAIL);
        const deadline = Date.now() + STOP_TIMEOUT_MS;
        while (Atomics.load(control, STATE) === STATE_RUNNING && Date.now() < deadline) {
          Atomics.wait(control, STATE, STATE_RUNNING, deadline - Date.now());
        }
      }
      this.#shutdown();
    }
    Atomics.notify(control, HEAD); // resolves a pending readBatch() with null
  }

  /** Called once the worker posted "stopped" or failed to run. */
  #onWorkerStopped(exception: string | undefined): void {
    const control = this.#control;
    Atomics.compareExchange(control, STATE, STATE_STARTING, STATE_STOPPED);
    if (this.#shutDown) return;
    const code = Atomics.load(control, ERRNO);
    if (exception !== undefined || code === ERRNO_EXCEPTION) {
      this.#failure = new Error(
        `Cannot read from TUN ${this.name}: reader worker failed: ${exception}`,
      );
    } else if (code > 0) {
      this.#failure = new LibcError(`Cannot read from TUN ${this.name}`, code);
    } else if (!this.#closed) {
      this.#failure = new Error(`Cannot read from TUN ${this.name}: end of file`);
    }
    this.#shutdown();
    Atomics.notify(control, HEAD);
  }

  /** Closes both fds and ends the worker; the ring stays readable for draining. */
  #shutdown(): void {
    if (this.#shutDown) return;
    this.#shutDown = true;
    this.#worker.terminate();
    closeQuietly(this.#fd);
    closeQuietly(this.#wakeFd);
    this.#resolveWorkerGone();
  }

  /** Returns the slots handed out by the previous readBatch() to the worker. */
  #release(): void {
    if (this.#handedOut === 0) return;
    this.#tail = (this.#tail + this.#handedOut) | 0;
    this.#handedOut = 0;
    Atomics.store(this.#control, TAIL, this.#tail);
    if (Atomics.load(this.#control, PRODUCER_WAITING) !== 0) Atomics.notify(this.#control, TAIL);
  }

  #take(head: number): Uint8Array[] {
    const count = Math.min((head - this.#tail) | 0, this.#maxBatch);
    const batch: Uint8Array[] = new Array(count);
    let index = this.#tail;
    for (let k = 0; k < count; k++) {
      const offset = CONTROL_BYTES + (index & this.#mask) * this.#stride;
      const length = Math.min(this.#words[offset >> 2], this.mtu);
      batch[k] = new Uint8Array(this.#ring, offset + 4 + this.headroom, length);
      index = (index + 1) | 0;
    }
    this.#handedOut = count;
    this.#readPackets += count;
    this.#readBatches++;
    return batch;
  }
}
