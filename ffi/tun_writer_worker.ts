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
 * | [6] SPILL_TAIL  spill bytes released by the worker (counter)         |
 * | [7] (unused)                                                         |
 * | bytes 32..39 WRITTEN  BigInt64: packets the kernel accepted          |
 * | bytes 40..47 REFUSED  BigInt64: packets the kernel refused           |
 * | [12], [13] (unused)                                                  |
 * | [14] BEAT  bumped at each wake from an idle wait (the watchdog's)    |
 * | [15] FAULT a test hook (_worker.ts), 0 in production                 |
 * +-- slots: slotCount x stride bytes, slot i at 64 + i * stride --------+
 * | +0 u32 packet length | packet (length <= capacity)                   |
 * |                      | u32 spill end (length > capacity)             |
 * +-- spill: spillBytes, a byte ring for packets longer than a slot -----+
 * | packet, padded to 8 bytes, ending at (spill end mod spillBytes)      |
 * +----------------------------------------------------------------------+
 * ```
 *
 * Slots TAIL .. HEAD-1 (mod slotCount) hold packets waiting to be written.
 * The main thread only fills slots outside that window and the worker only
 * reads inside it. A packet longer than a slot (a host accepts packets larger
 * than its MTU, RFC 1122 §3.3.2) goes to the spill ring, in slot order: its
 * slot holds the spill counter just past it, and the worker publishes that
 * counter as SPILL_TAIL once the packet is written. Wake-up: the worker sets
 * WRITER_WAITING, re-checks HEAD and sleeps (at most IDLE_CHECK_MS, then it
 * bumps BEAT); the main thread, after publishing HEAD, notifies only when it
 * swaps WRITER_WAITING from 1 to 0, so a busy writer costs no syscall per
 * packet. The main thread never waits for the worker: a full ring drops the
 * packet. The main thread owns and closes the fd, after STATE is STOPPED; a
 * writer whose TAIL and BEAT stand still is restarted on a fresh ring.
 *
 * @module
 */

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
import { errno, libc } from "./libc.ts";

/** Index of the WRITER_WAITING word. */
export const WRITER_WAITING = 4;
/** Index of the LAST_ERRNO word. */
export const W_LAST_ERRNO = 5;
/** Index of the SPILL_TAIL word. */
export const W_SPILL_TAIL = 6;
/** Index of the WRITTEN counter in a BigInt64Array over the control block. */
export const W_WRITTEN64 = 4;
/** Index of the REFUSED counter in a BigInt64Array over the control block. */
export const W_REFUSED64 = 5;
/** Bytes in front of each packet inside a slot (the u32 length). */
export const W_SLOT_HEADER_BYTES = 4;
/** Largest packet the write path takes, bytes (the IPv4 total length and IPv6 payload length limit). */
export const MAX_WRITE_PACKET_BYTES = 65535;
/** errno EMSGSIZE. */
const EMSGSIZE = 90;

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
  /** Bytes of the spill ring after the slots, a power of two. */
  readonly spillBytes: number;
}

/** What the worker posts when it stops. */
export type TunWriterStopped = WorkerStopped;

/** Bytes a packet of `length` takes in the spill ring. */
export function spillSize(length: number): number {
  return (length + 7) & ~7;
}

/**
 * Runs the write loop until STOP is set; on return STATE is STOPPED. A write
 * the kernel refuses is counted (REFUSED, LAST_ERRNO) and the loop goes on, as
 * the direct write path does. Exported for tests; the Worker calls it on its
 * first message.
 */
export function runWriteLoop(start: TunWriterStart): void {
  const { fd, ring, slotCount, stride, spillBytes } = start;
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
    const spill = new Uint8Array(ring, CONTROL_BYTES + slotCount * stride, spillBytes);
    const spillMask = spillBytes - 1;
    let written = Number(Atomics.load(counters, W_WRITTEN64));
    let refused = Number(Atomics.load(counters, W_REFUSED64));
    let tail = Atomics.load(control, TAIL);
    while (Atomics.load(control, STOP) === 0) {
      if (Atomics.load(control, FAULT) !== 0) {
        actOnFault(control);
        continue; // STOP again before touching the fd
      }
      const head = Atomics.load(control, HEAD);
      if (head === tail) {
        Atomics.store(control, WRITER_WAITING, 1);
        if (Atomics.load(control, STOP) === 0) {
          Atomics.wait(control, HEAD, tail, IDLE_CHECK_MS);
        }
        Atomics.store(control, WRITER_WAITING, 0);
        Atomics.add(control, BEAT, 1);
        continue;
      }
      const writtenBefore = written;
      const refusedBefore = refused;
      while (tail !== head && Atomics.load(control, STOP) === 0) {
        const slot = tail & mask;
        const base = (CONTROL_BYTES + slot * stride) >> 2;
        const length = words[base];
        let n = -1;
        let code = EMSGSIZE; // a slot whose length or spill end is out of range
        if (length <= capacity) {
          n = Number(c.write(fd, packets[slot], BigInt(length)));
          code = 0;
        } else if (length <= MAX_WRITE_PACKET_BYTES) {
          const end = words[base + 1];
          const offset = (end - spillSize(length)) & spillMask;
          if (offset + length <= spillBytes) {
            n = Number(c.write(fd, spill.subarray(offset, offset + length), BigInt(length)));
            code = 0;
          }
          Atomics.store(control, W_SPILL_TAIL, end);
        }
        if (n === length) {
          written++;
        } else {
          Atomics.store(control, W_LAST_ERRNO, code || (n < 0 ? errno() : 0));
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
