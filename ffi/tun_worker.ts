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
 * | [7] PACKET_LIMIT  set by main: largest TCP segment to make, bytes    |
 * | [8] SUPER_PACKETS  GSO super-packets read and split (offloads on)    |
 * | [9] OFFLOAD_ERRORS  reads dropped: bad virtio_net_hdr or split       |
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
 * With offloads (`vnetHdr`: the TUN was opened with `IFF_VNET_HDR` and
 * `TUNSETOFFLOAD`), each read is a `virtio_net_hdr` and a packet of up to
 * 64 KiB, read into a buffer of the worker's own: a GSO super-packet is
 * split into ordinary packets, each in a slot of its own, TCP segments no
 * larger than PACKET_LIMIT (the session's packet limit, which the main
 * thread keeps current) and UDP datagrams at the size their sender chose;
 * a packet whose checksum the kernel left partial gets it completed
 * (`shared/ip/offload/gso_split.ts`). A read that cannot be split is dropped
 * and counted in OFFLOAD_ERRORS.
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
import {
  emptyGsoPlan,
  planGsoSplit,
  TCP_CHECKSUM_OFFSET,
  writeGsoSegment,
} from "../shared/ip/offload/gso_split.ts";
import { IP_PROTOCOL_TCP } from "../shared/ip/ip_header.ts";
import {
  emptyVirtioNetHdr,
  OffloadError,
  parseVirtioNetHdr,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_LENGTH,
  type VirtioNetHdr,
} from "../shared/ip/offload/virtio_net_hdr.ts";

/** Index of the CONSUMER_WAITING word. */
export const CONSUMER_WAITING = 4;
/** Index of the PRODUCER_WAITING word. */
export const PRODUCER_WAITING = 5;
/** Index of the ERRNO word. */
export const ERRNO = 6;
/** Index of the PACKET_LIMIT word (offloads): largest TCP segment to make, bytes; 0 = slot capacity. */
export const PACKET_LIMIT = 7;
/** Index of the SUPER_PACKETS counter (offloads): GSO super-packets read and split. */
export const SUPER_PACKETS = 8;
/** Index of the OFFLOAD_ERRORS counter (offloads): reads dropped because they could not be split. */
export const OFFLOAD_ERRORS = 9;
/**
 * Bytes of the offload read buffer: a `virtio_net_hdr`, the largest IP
 * packet (65535 bytes), and one byte more so that a longer read shows.
 */
export const OFFLOAD_READ_BYTES = VIRTIO_NET_HDR_LENGTH + 65535 + 1;

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
  /** The fd was opened with IFF_VNET_HDR and TUNSETOFFLOAD: split what it hands out. */
  readonly vnetHdr?: boolean;
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
    const splitter = start.vnetHdr ? new Splitter(ring, stride, headroom, capacity) : undefined;
    const readBuffer = splitter?.buffer;
    const readSize = BigInt(readBuffer?.length ?? capacity);
    let head = Atomics.load(control, HEAD);
    /** Waits while the ring is full; false when STOP was set meanwhile. */
    const waitForSlot = (): boolean => {
      for (;;) {
        if (Atomics.load(control, STOP) !== 0) return false;
        const tail = Atomics.load(control, TAIL);
        if (((head - tail) | 0) < slotCount) return true;
        Atomics.store(control, PRODUCER_WAITING, 1);
        if (Atomics.load(control, STOP) === 0) Atomics.wait(control, TAIL, tail, IDLE_CHECK_MS);
        Atomics.store(control, PRODUCER_WAITING, 0);
        Atomics.add(control, BEAT, 1);
      }
    };
    const publish = (slot: number, length: number) => {
      words[(CONTROL_BYTES + slot * stride) >> 2] = length;
      head = (head + 1) | 0;
      Atomics.store(control, HEAD, head);
      if (Atomics.load(control, CONSUMER_WAITING) !== 0) Atomics.notify(control, HEAD);
    };
    while (Atomics.load(control, STOP) === 0) {
      if (Atomics.load(control, FAULT) !== 0) {
        actOnFault(control);
        continue; // STOP again before touching the fd
      }
      if (!waitForSlot()) break;
      const slot = head & mask;
      const n = readBuffer === undefined
        ? c.read(fd, packets[slot], readSize)
        : c.read(fd, readBuffer, readSize);
      if (n > 0) {
        if (splitter === undefined) {
          publish(slot, Number(n));
          continue;
        }
        const count = splitter.plan(Number(n), Atomics.load(control, PACKET_LIMIT));
        if (count === 0) {
          Atomics.add(control, OFFLOAD_ERRORS, 1);
          continue;
        }
        if (count > 1 || splitter.isSuperPacket) Atomics.add(control, SUPER_PACKETS, 1);
        for (let i = 0; i < count; i++) {
          if (i > 0 && !waitForSlot()) break;
          const at = head & mask;
          publish(at, splitter.write(i, at));
        }
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

/**
 * A plain TCP packet longer than `limit` is cut like a super-packet (TSO
 * segments are cut to the limit too; without offloads the main thread would
 * answer it with ICMP Packet Too Big): rewrites `hdr` to describe it as one
 * and returns the GSO type, or `VIRTIO_NET_HDR_GSO_NONE` when the packet is
 * not TCP over IPv4 or IPv6 without extension headers. `planGsoSplit`
 * checks the rest; each segment gets a full checksum of its own.
 */
function asTcpSuperPacket(
  hdr: VirtioNetHdr,
  packet: Uint8Array,
  start: number,
  limit: number,
): number {
  const version = packet[start] >> 4;
  let gso = VIRTIO_NET_HDR_GSO_NONE;
  let ipHeader = 0;
  if (version === 4 && packet[start + 9] === IP_PROTOCOL_TCP) {
    gso = VIRTIO_NET_HDR_GSO_TCPV4;
    ipHeader = (packet[start] & 0x0f) * 4;
  } else if (version === 6 && packet[start + 6] === IP_PROTOCOL_TCP) {
    gso = VIRTIO_NET_HDR_GSO_TCPV6;
    ipHeader = 40;
  }
  if (gso === VIRTIO_NET_HDR_GSO_NONE) return gso;
  hdr.gsoType = gso;
  hdr.gsoSize = limit; // planGsoSplit takes min(gso_size, limit - headers)
  hdr.csumStart = ipHeader;
  hdr.csumOffset = TCP_CHECKSUM_OFFSET;
  return gso;
}

/**
 * Turns one read from a TUN with IFF_VNET_HDR into packets in ring slots:
 * `plan()` checks it, `write()` copies segment `i` into a slot.
 */
class Splitter {
  /** Where each read goes: a virtio_net_hdr, then the packet. */
  readonly buffer = new Uint8Array(OFFLOAD_READ_BYTES);
  readonly #ring: Uint8Array;
  readonly #stride: number;
  readonly #headroom: number;
  readonly #capacity: number;
  readonly #hdr = emptyVirtioNetHdr();
  readonly #plan = emptyGsoPlan();

  constructor(ring: SharedArrayBuffer, stride: number, headroom: number, capacity: number) {
    this.#ring = new Uint8Array(ring);
    this.#stride = stride;
    this.#headroom = headroom;
    this.#capacity = capacity;
  }

  /** Whether the last planned read was a GSO super-packet. */
  get isSuperPacket(): boolean {
    return this.#plan.gsoType !== VIRTIO_NET_HDR_GSO_NONE;
  }

  /**
   * Plans the split of a read of `n` bytes: returns the number of packets
   * it makes, 0 when it must be dropped. TCP segments are made no larger
   * than `limit` (0: the slot capacity); UDP datagrams and plain packets
   * keep their size, up to the slot capacity (a packet over the session's
   * limit then gets ICMP Packet Too Big from the main thread).
   */
  plan(n: number, limit: number): number {
    if (n < VIRTIO_NET_HDR_LENGTH || n > this.buffer.length - 1) return 0;
    try {
      const hdr = parseVirtioNetHdr(this.buffer, 0, this.#hdr);
      let max = limit > 0 ? Math.min(limit, this.#capacity) : this.#capacity;
      let gso = hdr.gsoType & ~VIRTIO_NET_HDR_GSO_ECN;
      if (gso === VIRTIO_NET_HDR_GSO_NONE && n - VIRTIO_NET_HDR_LENGTH > max) {
        gso = asTcpSuperPacket(hdr, this.buffer, VIRTIO_NET_HDR_LENGTH, max);
      }
      const tcp = gso === VIRTIO_NET_HDR_GSO_TCPV4 || gso === VIRTIO_NET_HDR_GSO_TCPV6;
      if (!tcp) max = this.#capacity;
      return planGsoSplit(hdr, this.buffer, VIRTIO_NET_HDR_LENGTH, n, max, this.#plan).segmentCount;
    } catch (error) {
      if (error instanceof OffloadError) return 0;
      throw error;
    }
  }

  /** Writes packet `i` of the planned read into ring slot `slot`; returns its length. */
  write(i: number, slot: number): number {
    const at = CONTROL_BYTES + slot * this.#stride + 4 + this.#headroom;
    return writeGsoSegment(
      this.#plan,
      this.buffer,
      VIRTIO_NET_HDR_LENGTH,
      i,
      this.#ring,
      at,
      at + this.#capacity,
    );
  }
}

serveLoop<TunWorkerStart>(runReadLoop);
