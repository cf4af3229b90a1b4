/**
 * The TUN read loop, run in a Worker so that reads are plain synchronous
 * `read(2)` calls (>200k packets/s) instead of one promise per packet. It
 * copies each packet straight from the kernel into a slot of a ring in a
 * SharedArrayBuffer; the main thread ({@linkcode ./tun_linux.ts}) takes all
 * filled slots at once, paying one promise per batch.
 *
 * ```
 * SharedArrayBuffer
 * +-- control: 16 x Int32 (64 bytes) ------------------------------------+
 * | [0] HEAD   slots filled by the worker (counter, wraps at 2^32)       |
 * | [1] TAIL   slots released by the main thread (counter)               |
 * | [2] STATE  0 starting, 1 running, 2 stopped (worker done with fds)  |
 * | [3] STOP   set to 1 by close()                                       |
 * | [4] CONSUMER_WAITING  1 while main sleeps in waitAsync(HEAD)         |
 * | [5] PRODUCER_WAITING  1 while the worker sleeps in wait(TAIL): full  |
 * | [6] ERRNO  why the worker stopped on its own (-1: JS exception)      |
 * | [14] BEAT  bumped at each wake from an idle wait (the watchdog's)    |
 * | [15] FAULT a test hook (_worker.ts), 0 in production                 |
 * +-- slots: slotCount x stride bytes, slot i at 64 + i * stride --------+
 * | +0 u32 packet length | headroom (free for the reader) | packet ...   |
 * +----------------------------------------------------------------------+
 * ```
 *
 * Slots HEAD-TAIL .. HEAD-1 (mod slotCount) hold packets. The worker only
 * writes slots outside that window, the main thread only reads inside it.
 * Wake-ups: the worker notifies HEAD only when CONSUMER_WAITING is set, main
 * notifies TAIL only when PRODUCER_WAITING is set. When the fd has nothing to
 * read, the worker sleeps in poll(2) on the TUN fd and an eventfd that close()
 * signals. The main thread owns and closes both fds, after STATE is STOPPED.
 * Every sleep is at most IDLE_CHECK_MS and bumps BEAT on waking, so a reader
 * that makes no progress (HEAD and BEAT both still) has died or is stuck, and
 * the main thread's watchdog restarts it on a fresh ring and the same fds.
 *
 * @module
 */

import { encodePollfds } from "./_struct.ts";
import {
  actOnFault,
  BEAT,
  CONTROL_BYTES,
  FAULT,
  HEAD,
  IDLE_CHECK_MS,
  serveLoop,
  STATE,
  STATE_RUNNING,
  STATE_STARTING,
  STATE_STOPPED,
  STOP,
  TAIL,
  type WorkerStopped,
} from "./_worker.ts";
import { EAGAIN, EINTR, errno, libc, POLLIN } from "./libc.ts";

/** Index of the CONSUMER_WAITING word. */
export const CONSUMER_WAITING = 4;
/** Index of the PRODUCER_WAITING word. */
export const PRODUCER_WAITING = 5;
/** Index of the ERRNO word. */
export const ERRNO = 6;

/** ERRNO value when the worker stopped because of a JavaScript exception. */
export const ERRNO_EXCEPTION = -1;

/** What the main thread sends to start the loop. */
export interface TunWorkerStart {
  /** The TUN fd, opened non-blocking. */
  readonly fd: number;
  /** An eventfd that becomes readable when close() is called. */
  readonly wakeFd: number;
  /** The ring (layout above). */
  readonly ring: SharedArrayBuffer;
  /** Number of slots, a power of two. */
  readonly slotCount: number;
  /** Bytes per slot, a multiple of 4. */
  readonly stride: number;
  /** Free bytes between the length word and the packet. */
  readonly headroom: number;
  /** Largest packet a slot holds, in bytes. */
  readonly capacity: number;
}

/** What the worker posts when it stops. */
export type TunWorkerStopped = WorkerStopped;

/**
 * Runs the read loop until STOP is set or a read fails; on return STATE is
 * STOPPED. Exported for tests; the Worker calls it on its first message.
 */
export function runReadLoop(start: TunWorkerStart): void {
  const { fd, wakeFd, ring, slotCount, stride, headroom, capacity } = start;
  const control = new Int32Array(ring, 0, CONTROL_BYTES / 4);
  const words = new Int32Array(ring);
  if (Atomics.compareExchange(control, STATE, STATE_STARTING, STATE_RUNNING) !== STATE_STARTING) {
    return; // close() won the race before the loop started
  }
  try {
    const c = libc();
    const mask = slotCount - 1;
    const packets: Uint8Array[] = [];
    for (let i = 0; i < slotCount; i++) {
      packets.push(new Uint8Array(ring, CONTROL_BYTES + i * stride + 4 + headroom, capacity));
    }
    const pollfds = encodePollfds([fd, wakeFd], POLLIN);
    const readSize = BigInt(capacity);
    let head = Atomics.load(control, HEAD);
    while (Atomics.load(control, STOP) === 0) {
      if (Atomics.load(control, FAULT) !== 0) {
        actOnFault(control);
        continue; // STOP again before touching the fd
      }
      const tail = Atomics.load(control, TAIL);
      if (((head - tail) | 0) >= slotCount) {
        Atomics.store(control, PRODUCER_WAITING, 1);
        if (Atomics.load(control, STOP) === 0) Atomics.wait(control, TAIL, tail, IDLE_CHECK_MS);
        Atomics.store(control, PRODUCER_WAITING, 0);
        Atomics.add(control, BEAT, 1);
        continue;
      }
      const slot = head & mask;
      const n = c.read(fd, packets[slot], readSize);
      if (n > 0) {
        words[(CONTROL_BYTES + slot * stride) >> 2] = Number(n);
        head = (head + 1) | 0;
        Atomics.store(control, HEAD, head);
        if (Atomics.load(control, CONSUMER_WAITING) !== 0) Atomics.notify(control, HEAD);
        continue;
      }
      const code = n < 0 ? errno() : 0;
      if (code === EAGAIN) {
        c.poll(pollfds, 2n, IDLE_CHECK_MS);
        Atomics.add(control, BEAT, 1);
      } else if (code !== EINTR) {
        // 0 (end of file) or a real error, such as EBADFD once the link was deleted.
        Atomics.store(control, ERRNO, code);
        break;
      }
    }
  } catch (error) {
    Atomics.store(control, ERRNO, ERRNO_EXCEPTION);
    throw error;
  } finally {
    Atomics.store(control, STATE, STATE_STOPPED);
    Atomics.notify(control, STATE);
    Atomics.notify(control, HEAD);
  }
}

serveLoop<TunWorkerStart>(runReadLoop);
