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
  CONTROL_BYTES,
  HEAD,
  STATE,
  STATE_STARTING,
  STATE_STOPPED,
  stopLoop,
  TAIL,
} from "./_worker.ts";
import {
  CONSUMER_WAITING,
  ERRNO,
  ERRNO_EXCEPTION,
  PRODUCER_WAITING,
  type TunWorkerStart,
  type TunWorkerStopped,
} from "./tun_worker.ts";
import {
  type TunWriterStart,
  type TunWriterStopped,
  W_LAST_ERRNO,
  W_REFUSED64,
  W_SLOT_HEADER_BYTES,
  W_WRITTEN64,
  WRITER_WAITING,
} from "./tun_writer_worker.ts";

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
/** How `writePacket()` reaches the kernel; see {@linkcode TunOptions.writer}. */
export type TunWriterMode = "worker" | "direct";
/** Default {@linkcode TunWriterMode}. */
export const DEFAULT_WRITER: TunWriterMode = "worker";
/** How long close() waits for a worker to leave its loop, in milliseconds. */
const STOP_TIMEOUT_MS = 1000;
/**
 * With the writer worker, a packet written this long after the previous one
 * is written on the calling thread (see `WriterRing.takeQuietWrite`), ms.
 */
const QUIET_WRITE_MS = 1;
/** errno EMSGSIZE: a packet longer than a write ring slot (the MTU). */
const EMSGSIZE = 90;

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
   * `"worker"`: it queues the packet for a writer Worker and returns at once;
   * packets longer than the MTU are refused. Default {@linkcode DEFAULT_WRITER}.
   */
  readonly writer?: TunWriterMode;
  /** Write ring size in packets (writer `"worker"`), a power of two; default {@linkcode DEFAULT_WRITE_RING_SLOTS}. */
  readonly writeRingSlots?: number;
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
   * Packets refused: by the kernel, because the device was closed or, with the
   * writer worker, because the packet was longer than the MTU.
   */
  readonly writeErrors: number;
  /**
   * Packets the writer worker could not take: its ring was full, or they were
   * still queued when the device closed. Always 0 with the direct writer.
   */
  readonly writeDrops: number;
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
  /** How `writePacket()` reaches the kernel. */
  readonly writer: TunWriterMode;
  /**
   * Writes one IP packet, or with the writer worker queues a copy of it (the
   * caller keeps `packet`). Returns false and counts when the packet was
   * refused or dropped; with the worker, a later kernel refusal is only
   * counted in `stats.writeErrors`. Never throws, never blocks.
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
  const writer = options.writer ?? DEFAULT_WRITER;
  if (writer !== "worker" && writer !== "direct") {
    throw new RangeError(`Cannot open TUN ${name}: writer ${writer} is not "worker" or "direct"`);
  }
  const writeSlots = options.writeRingSlots ?? DEFAULT_WRITE_RING_SLOTS;
  if (!Number.isInteger(writeSlots) || writeSlots < 2 || (writeSlots & (writeSlots - 1)) !== 0) {
    throw new RangeError(
      `Cannot open TUN ${name}: writeRingSlots ${writeSlots} is not a power of two`,
    );
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
    return new LinuxTun(opened.fd, wakeFd, opened.name, mtu, slotCount, maxBatch, headroom, {
      mode: writer,
      slotCount: writeSlots,
    });
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
  readonly writer: TunWriterMode;
  /** The writer worker's ring, with writer "worker". */
  readonly #writerRing: WriterRing | undefined;

  constructor(
    fd: number,
    wakeFd: number,
    name: string,
    mtu: number,
    slotCount: number,
    maxBatch: number,
    headroom: number,
    writer: { mode: TunWriterMode; slotCount: number },
  ) {
    this.name = name;
    this.writer = writer.mode;
    this.#writerRing = writer.mode === "worker"
      ? new WriterRing(fd, name, mtu, writer.slotCount)
      : undefined;
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
    const ring = this.#writerRing;
    return {
      readPackets: this.#readPackets,
      readBatches: this.#readBatches,
      writtenPackets: this.#writtenPackets + (ring?.written ?? 0),
      writeErrors: this.#writeErrors + (ring?.refused ?? 0),
      writeDrops: ring?.drops ?? 0,
      lastWriteErrno: ring?.lastErrno || this.#lastWriteErrno,
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
    const ring = this.#writerRing;
    if (ring) {
      if (packet.length > this.mtu) {
        this.#writeErrors++;
        this.#lastWriteErrno = EMSGSIZE;
        return false;
      }
      if (!ring.takeQuietWrite(performance.now())) return ring.push(packet);
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
      // Wake the reader from poll(2) (the eventfd) or from Atomics.wait (TAIL).
      stopLoop(control, () => {
        libc().write(this.#wakeFd, new BigUint64Array([1n]), 8n);
        Atomics.notify(control, TAIL);
      }, STOP_TIMEOUT_MS);
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
    this.#writerRing?.stop();
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

/**
 * The main thread's side of the writer worker ({@linkcode ./tun_writer_worker.ts}):
 * `push()` copies a packet into the next free slot and publishes HEAD; the
 * worker writes slots TAIL..HEAD-1 to the fd. Never waits: a full ring drops.
 */
class WriterRing {
  readonly #worker: Worker;
  readonly #control: Int32Array<SharedArrayBuffer>;
  readonly #counters: BigInt64Array<SharedArrayBuffer>;
  readonly #lengths: Uint32Array<SharedArrayBuffer>;
  readonly #bytes: Uint8Array<SharedArrayBuffer>;
  readonly #slotCount: number;
  readonly #stride: number;
  #head = 0;
  #stopped = false;
  /** performance.now() of the last takeQuietWrite() call. */
  #lastWrite = -Infinity;
  #drops = 0;

  constructor(fd: number, name: string, mtu: number, slotCount: number) {
    this.#slotCount = slotCount;
    this.#stride = (W_SLOT_HEADER_BYTES + mtu + 7) & ~7;
    const ring = new SharedArrayBuffer(CONTROL_BYTES + slotCount * this.#stride);
    this.#control = new Int32Array(ring, 0, CONTROL_BYTES / 4);
    this.#counters = new BigInt64Array(ring, 0, CONTROL_BYTES / 8);
    this.#lengths = new Uint32Array(ring);
    this.#bytes = new Uint8Array(ring);
    this.#worker = new Worker(new URL("./tun_writer_worker.ts", import.meta.url), {
      type: "module",
      name: `tun writer ${name}`,
    });
    this.#worker.onmessage = (event: MessageEvent<TunWriterStopped>) => {
      if (event.data.exception !== undefined) this.#stopped = true;
    };
    this.#worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      this.#stopped = true;
    };
    const start: TunWriterStart = { fd, ring, slotCount, stride: this.#stride };
    this.#worker.postMessage(start);
  }

  /** Packets not queued (ring full, writer stopped) or still queued at stop(). */
  get drops(): number {
    return this.#drops;
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
    return Atomics.load(this.#control, W_LAST_ERRNO);
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
    return quiet && !this.#stopped && this.#head === Atomics.load(this.#control, TAIL);
  }

  /** Queues a copy of `packet` (at most the MTU); false when the ring is full or the writer stopped. */
  push(packet: Uint8Array): boolean {
    const control = this.#control;
    if (this.#stopped || ((this.#head - Atomics.load(control, TAIL)) | 0) >= this.#slotCount) {
      this.#drops++;
      return false;
    }
    const offset = CONTROL_BYTES + (this.#head & (this.#slotCount - 1)) * this.#stride;
    this.#lengths[offset >> 2] = packet.length;
    this.#bytes.set(packet, offset + W_SLOT_HEADER_BYTES);
    this.#head = (this.#head + 1) | 0;
    Atomics.store(control, HEAD, this.#head);
    if (Atomics.compareExchange(control, WRITER_WAITING, 1, 0) === 1) {
      Atomics.notify(control, HEAD);
    }
    return true;
  }

  /**
   * Stops the worker and waits (at most STOP_TIMEOUT_MS) until it no longer
   * touches the fd; packets still queued count as drops.
   */
  stop(): void {
    if (this.#stopped && Atomics.load(this.#control, STATE) === STATE_STOPPED) return;
    this.#stopped = true;
    const control = this.#control;
    stopLoop(control, () => Atomics.notify(control, HEAD), STOP_TIMEOUT_MS);
    this.#drops += (this.#head - Atomics.load(control, TAIL)) | 0;
    this.#worker.terminate();
  }
}
