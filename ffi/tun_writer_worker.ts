/**
 * The TUN write loop, run in a Worker so that the kernel work behind each
 * `write(2)` to a TUN fd (tun_get_user -> netif_receive_skb -> routing,
 * conntrack/NAT, forwarding, even the receiving socket's TCP processing in
 * softirq, all synchronous in the writer's thread) runs in parallel with the
 * main thread's QUIC work. The main thread ({@linkcode ./tun_linux.ts})
 * copies each packet into a slot of a ring in a SharedArrayBuffer and returns;
 * this loop writes every filled slot to the fd, then sleeps in `Atomics.wait`
 * until more arrive.
 *
 * ```
 * SharedArrayBuffer
 * +-- control: 16 x Int32 (64 bytes) ------------------------------------+
 * | [0] HEAD   slots filled by the main thread (counter, wraps at 2^32)  |
 * | [1] TAIL   slots written and released by the worker (counter)        |
 * | [2] STATE  0 starting, 1 running, 2 stopped (worker done with the fd)|
 * | [3] STOP   set to 1 by close(); the worker leaves after its current  |
 * |            write, packets still queued are not written               |
 * | [4] WRITER_WAITING  1 while the worker sleeps in wait(HEAD)          |
 * | [5] LAST_ERRNO  errno of the last write(2) the kernel refused        |
 * | [6], [7] (unused; an exception reaches the main thread as a message) |
 * | bytes 32..39 WRITTEN  BigInt64: packets the kernel accepted          |
 * | bytes 40..47 REFUSED  BigInt64: packets the kernel refused           |
 * +-- slots: slotCount x stride bytes, slot i at 64 + i * stride --------+
 * | +0 u32 packet length | packet ...                                    |
 * +----------------------------------------------------------------------+
 * ```
 *
 * Slots TAIL .. HEAD-1 (mod slotCount) hold packets waiting to be written.
 * The main thread only fills slots outside that window and the worker only
 * reads inside it. Wake-up: the worker sets WRITER_WAITING, re-checks HEAD and
 * sleeps; the main thread, after publishing HEAD, notifies only when it swaps
 * WRITER_WAITING from 1 to 0, so a busy writer costs no syscall per packet.
 * The main thread never waits for the worker: a full ring drops the packet.
 * The main thread owns and closes the fd, after STATE is STOPPED.
 *
 * @module
 */

import {
  CONTROL_BYTES,
  HEAD,
  serveLoop,
  STATE,
  STATE_RUNNING,
  STATE_STARTING,
  STATE_STOPPED,
  STOP,
  TAIL,
  type WorkerStopped,
} from "./_worker.ts";
import { errno, libc } from "./libc.ts";

/** Index of the WRITER_WAITING word. */
export const WRITER_WAITING = 4;
/** Index of the LAST_ERRNO word. */
export const W_LAST_ERRNO = 5;
/** Index of the WRITTEN counter in a BigInt64Array over the control block. */
export const W_WRITTEN64 = 4;
/** Index of the REFUSED counter in a BigInt64Array over the control block. */
export const W_REFUSED64 = 5;
/** Bytes in front of each packet inside a slot (the u32 length). */
export const W_SLOT_HEADER_BYTES = 4;

/** Longest sleep in Atomics.wait before re-checking STOP, in milliseconds. */
const IDLE_CHECK_MS = 1000;

/** What the main thread sends to start the loop. */
export interface TunWriterStart {
  /** The TUN fd. */
  readonly fd: number;
  /** The ring (layout above). */
  readonly ring: SharedArrayBuffer;
  /** Number of slots, a power of two. */
  readonly slotCount: number;
  /** Bytes per slot, a multiple of 8. */
  readonly stride: number;
}

/** What the worker posts when it stops. */
export type TunWriterStopped = WorkerStopped;

/**
 * Runs the write loop until STOP is set; on return STATE is STOPPED. A write
 * the kernel refuses is counted (REFUSED, LAST_ERRNO) and the loop goes on, as
 * the direct write path does. Exported for tests; the Worker calls it on its
 * first message.
 */
export function runWriteLoop(start: TunWriterStart): void {
  const { fd, ring, slotCount, stride } = start;
  const control = new Int32Array(ring, 0, CONTROL_BYTES / 4);
  const counters = new BigInt64Array(ring, 0, CONTROL_BYTES / 8);
  if (
    Atomics.compareExchange(control, STATE, STATE_STARTING, STATE_RUNNING) !==
      STATE_STARTING
  ) {
    return; // close() won the race before the loop started
  }
  try {
    const c = libc();
    const mask = slotCount - 1;
    const words = new Int32Array(ring);
    const capacity = stride - W_SLOT_HEADER_BYTES;
    const packets: Uint8Array[] = [];
    for (let i = 0; i < slotCount; i++) {
      packets.push(
        new Uint8Array(ring, CONTROL_BYTES + i * stride + W_SLOT_HEADER_BYTES, capacity),
      );
    }
    let written = Number(Atomics.load(counters, W_WRITTEN64));
    let refused = Number(Atomics.load(counters, W_REFUSED64));
    let tail = Atomics.load(control, TAIL);
    while (Atomics.load(control, STOP) === 0) {
      const head = Atomics.load(control, HEAD);
      if (head === tail) {
        Atomics.store(control, WRITER_WAITING, 1);
        if (Atomics.load(control, STOP) === 0) {
          Atomics.wait(control, HEAD, tail, IDLE_CHECK_MS);
        }
        Atomics.store(control, WRITER_WAITING, 0);
        continue;
      }
      const writtenBefore = written;
      const refusedBefore = refused;
      while (tail !== head && Atomics.load(control, STOP) === 0) {
        const slot = tail & mask;
        const length = Math.min(words[(CONTROL_BYTES + slot * stride) >> 2], capacity);
        const n = Number(c.write(fd, packets[slot], BigInt(length)));
        if (n === length) {
          written++;
        } else {
          Atomics.store(control, W_LAST_ERRNO, n < 0 ? errno() : 0);
          refused++;
        }
        tail = (tail + 1) | 0;
        Atomics.store(control, TAIL, tail);
      }
      if (written !== writtenBefore) Atomics.store(counters, W_WRITTEN64, BigInt(written));
      if (refused !== refusedBefore) Atomics.store(counters, W_REFUSED64, BigInt(refused));
    }
  } finally {
    Atomics.store(control, STATE, STATE_STOPPED);
    Atomics.notify(control, STATE);
  }
}

serveLoop<TunWriterStart>(runWriteLoop);
