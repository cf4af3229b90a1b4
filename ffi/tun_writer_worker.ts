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
 * | [7] SUPER_WRITES  writes of merged super-packets (offloads on)      |
 * | bytes 32..39 WRITTEN  BigInt64: packets the kernel accepted          |
 * | bytes 40..47 REFUSED  BigInt64: packets the kernel refused           |
 * | [12] MERGED  packets that went into those super-packets              |
 * | [13] (unused)                                                        |
 * | [14] BEAT  bumped at each wake from an idle wait (the watchdog's)    |
 * | [15] FAULT a test hook (_worker.ts), 0 in production                 |
 * +-- slots: slotCount x stride bytes, slot i at 64 + i * stride --------+
 * | +0 u32 length | +4..+6 | +6..+16 virtio_net_hdr, all zero | +16 packet |
 * |               |        |                 (or u32 spill end at +16)   |
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
 * With offloads (`vnetHdr`: the TUN was opened with `IFF_VNET_HDR`), the
 * worker takes up to {@linkcode WRITE_BATCH} queued packets at once and
 * merges consecutive TCP segments of one flow (and UDP datagrams when the
 * TUN took USO) into super-packets with a `virtio_net_hdr` that tells the
 * kernel how to treat them (`shared/ip/offload/coalescer.ts`, GRO in user
 * space), so the kernel's forwarding and the receiver's TCP run once per
 * super-packet instead of once per segment. A packet that cannot be merged
 * is written as it is, from its slot, behind the all-zero header kept in
 * front of it. TAIL moves once the whole batch is written.
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
import { Coalescer } from "../shared/ip/offload/coalescer.ts";
import { OffloadError, VIRTIO_NET_HDR_LENGTH } from "../shared/ip/offload/virtio_net_hdr.ts";

/** Index of the WRITER_WAITING word. */
export const WRITER_WAITING = 4;
/** Index of the LAST_ERRNO word. */
export const W_LAST_ERRNO = 5;
/** Index of the SPILL_TAIL word. */
export const W_SPILL_TAIL = 6;
/** Index of the SUPER_WRITES word (offloads): writes of merged super-packets. */
export const W_SUPER_WRITES = 7;
/** Index of the MERGED word (offloads): packets that went into super-packets. */
export const W_MERGED = 12;
/** Index of the WRITTEN counter in a BigInt64Array over the control block. */
export const W_WRITTEN64 = 4;
/** Index of the REFUSED counter in a BigInt64Array over the control block. */
export const W_REFUSED64 = 5;
/**
 * Bytes in front of each packet inside a slot: the u32 length, two unused
 * bytes and a `virtio_net_hdr` that stays all zero (a packet written as it
 * is with offloads on).
 */
export const W_SLOT_HEADER_BYTES = 16;
/** Most queued packets the worker coalesces and writes in one go (offloads). */
export const WRITE_BATCH = 256;
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
  /**
   * The fd was opened with IFF_VNET_HDR: every write starts with a
   * `virtio_net_hdr`, and batches are coalesced.
   */
  readonly vnetHdr?: boolean;
  /** With `vnetHdr`: the TUN took USO, so UDP datagrams are merged too. */
  readonly udpOffload?: boolean;
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
    const spillStart = CONTROL_BYTES + slotCount * stride;
    const spill = new Uint8Array(ring, spillStart, spillBytes);
    const spillMask = spillBytes - 1;
    const batcher = start.vnetHdr
      ? new BatchWriter(ring, slotCount, stride, spillBytes, start.udpOffload ?? false)
      : undefined;
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
      if (batcher !== undefined) {
        const taken = Math.min((head - tail) | 0, WRITE_BATCH);
        const result = batcher.writeBatch(fd, tail, taken);
        written += result.written;
        refused += result.refused;
        if (result.errno !== 0) Atomics.store(control, W_LAST_ERRNO, result.errno);
        if (result.spillEnd !== undefined) Atomics.store(control, W_SPILL_TAIL, result.spillEnd);
        tail = (tail + taken) | 0;
        Atomics.store(control, TAIL, tail);
      }
      while (batcher === undefined && tail !== head && Atomics.load(control, STOP) === 0) {
        const slot = tail & mask;
        const base = (CONTROL_BYTES + slot * stride) >> 2;
        const length = words[base];
        let n = -1;
        let code = EMSGSIZE; // a slot whose length or spill end is out of range
        if (length <= capacity) {
          n = Number(c.write(fd, packets[slot], BigInt(length)));
          code = 0;
        } else if (length <= MAX_WRITE_PACKET_BYTES) {
          const end = words[base + W_SLOT_HEADER_BYTES / 4];
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

/** What {@linkcode BatchWriter.writeBatch} did. */
interface BatchResult {
  /** Packets the kernel accepted (each packet of a super-packet counts). */
  written: number;
  /** Packets refused (by the kernel, or a slot out of range). */
  refused: number;
  /** errno of the last refusal, 0 if none. */
  errno: number;
  /** The spill counter past the batch's last spilled packet, if it had one. */
  spillEnd: number | undefined;
}

/**
 * The writer's side of offloads: coalesces a run of queued slots and writes
 * each group with its `virtio_net_hdr`; a lone packet in a slot goes from
 * the slot itself, behind the zero header kept there.
 */
class BatchWriter {
  readonly #c = libc();
  readonly #control: Int32Array;
  readonly #words: Int32Array;
  readonly #bytes: Uint8Array;
  readonly #slotCount: number;
  readonly #stride: number;
  readonly #capacity: number;
  readonly #spillStart: number;
  readonly #spillBytes: number;
  readonly #coalescer: Coalescer;
  /** Per slot: its zero virtio_net_hdr and packet room. */
  readonly #framed: Uint8Array[] = [];
  readonly #offsets = new Int32Array(WRITE_BATCH);
  readonly #lengths = new Int32Array(WRITE_BATCH);
  /** Per packet taken: its slot, or -1 for a packet in the spill ring. */
  readonly #slots = new Int32Array(WRITE_BATCH);
  readonly #out = new Uint8Array(VIRTIO_NET_HDR_LENGTH + MAX_WRITE_PACKET_BYTES);
  readonly #result: BatchResult = { written: 0, refused: 0, errno: 0, spillEnd: undefined };

  constructor(
    ring: SharedArrayBuffer,
    slotCount: number,
    stride: number,
    spillBytes: number,
    udp: boolean,
  ) {
    this.#control = new Int32Array(ring, 0, CONTROL_BYTES / 4);
    this.#words = new Int32Array(ring);
    this.#bytes = new Uint8Array(ring);
    this.#slotCount = slotCount;
    this.#stride = stride;
    this.#capacity = stride - W_SLOT_HEADER_BYTES;
    this.#spillStart = CONTROL_BYTES + slotCount * stride;
    this.#spillBytes = spillBytes;
    this.#coalescer = new Coalescer({ maxBatch: WRITE_BATCH, udp });
    const hdrAt = W_SLOT_HEADER_BYTES - VIRTIO_NET_HDR_LENGTH;
    for (let i = 0; i < slotCount; i++) {
      this.#framed.push(
        new Uint8Array(
          ring,
          CONTROL_BYTES + i * stride + hdrAt,
          VIRTIO_NET_HDR_LENGTH + this.#capacity,
        ),
      );
    }
  }

  /** Writes the `count` packets queued from counter `tail` on. */
  writeBatch(fd: number, tail: number, count: number): BatchResult {
    const result = this.#result;
    result.written = 0;
    result.refused = 0;
    result.errno = 0;
    result.spillEnd = undefined;
    const offsets = this.#offsets;
    const lengths = this.#lengths;
    const slots = this.#slots;
    const mask = this.#slotCount - 1;
    let taken = 0;
    for (let k = 0; k < count; k++) {
      const slot = (tail + k) & mask;
      const base = CONTROL_BYTES + slot * this.#stride;
      const length = this.#words[base >> 2];
      if (length >= 0 && length <= this.#capacity) {
        offsets[taken] = base + W_SLOT_HEADER_BYTES;
        lengths[taken] = length;
        slots[taken++] = slot;
        continue;
      }
      if (length > 0 && length <= MAX_WRITE_PACKET_BYTES) {
        const end = this.#words[(base + W_SLOT_HEADER_BYTES) >> 2];
        const offset = (end - spillSize(length)) & (this.#spillBytes - 1);
        result.spillEnd = end;
        if (offset + length <= this.#spillBytes) {
          offsets[taken] = this.#spillStart + offset;
          lengths[taken] = length;
          slots[taken++] = -1;
          continue;
        }
      }
      result.refused++;
      result.errno = EMSGSIZE;
    }
    const coalescer = this.#coalescer;
    const writes = coalescer.coalesce(this.#bytes, offsets, lengths, taken);
    for (let w = 0; w < writes; w++) {
      const packets = coalescer.packetCount(w);
      const first = coalescer.firstPacket(w);
      let frame: Uint8Array;
      let size: number;
      if (packets === 1 && slots[first] >= 0) {
        frame = this.#framed[slots[first]];
        size = VIRTIO_NET_HDR_LENGTH + lengths[first];
      } else {
        try {
          size = coalescer.build(w, this.#bytes, offsets, lengths, this.#out, 0);
        } catch (error) {
          if (!(error instanceof OffloadError)) throw error;
          result.refused += packets;
          result.errno = EMSGSIZE;
          continue;
        }
        frame = this.#out;
        if (packets > 1) {
          Atomics.add(this.#control, W_SUPER_WRITES, 1);
          Atomics.add(this.#control, W_MERGED, packets);
        }
      }
      const n = Number(this.#c.write(fd, frame, BigInt(size)));
      if (n === size) {
        result.written += packets;
      } else {
        result.refused += packets;
        result.errno = n < 0 ? errno() : 0;
      }
    }
    return result;
  }
}

serveLoop<TunWriterStart>(runWriteLoop);
