/**
 * An in-memory {@linkcode PacketDevice} standing in for the TUN device in
 * tests that need no root: packets are injected as if the kernel routed them
 * into the TUN, and what the code under test writes is recorded.
 * `shared/tunnel/packet_device_test.ts` runs the same contract against it
 * and against the real TUN.
 *
 * @module
 */

import type { PacketDevice } from "../../shared/tunnel/packet_device.ts";

/** Options for {@linkcode InMemoryPacketDevice}. */
export interface InMemoryPacketDeviceOptions {
  /** Default `mem0`. */
  name?: string;
  /** Default 1500. */
  mtu?: number;
  /** Most packets one readBatch() returns, default 16. */
  batchSize?: number;
  /** Called for each write; return false to simulate the kernel refusing it. */
  refuse?: (packet: Uint8Array) => boolean;
}

/**
 * A {@linkcode PacketDevice} in memory. {@linkcode inject} queues packets as
 * if the kernel routed them into the TUN; readBatch() hands them out in order,
 * copied into buffers the device owns and overwrites (with 0xdb) on the next
 * readBatch(), so code that keeps a packet past its lifetime sees garbage in
 * tests too. writePacket() records a copy of each accepted packet.
 *
 * Like the Linux TUN driver with IFF_NO_PI, a write whose first nibble is not
 * 4 or 6 is refused.
 */
export class InMemoryPacketDevice implements PacketDevice {
  readonly name: string;
  readonly mtu: number;
  /** Copies of every packet accepted by writePacket(), oldest first. */
  readonly written: Uint8Array[] = [];
  /** Writes refused so far. */
  refusedCount = 0;

  #batchSize: number;
  #refuse: ((packet: Uint8Array) => boolean) | undefined;
  #queue: Uint8Array[] = [];
  #lastBatch: Uint8Array[] = [];
  #pendingRead: ((batch: Uint8Array[] | null) => void) | undefined;
  #closed = false;
  #unconsumed = 0;
  #writeWaiters: ((packet: Uint8Array) => void)[] = [];

  constructor(options: InMemoryPacketDeviceOptions = {}) {
    this.name = options.name ?? "mem0";
    this.mtu = options.mtu ?? 1500;
    this.#batchSize = options.batchSize ?? 16;
    this.#refuse = options.refuse;
  }

  /** Whether close() has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Queues packets (copied) to be returned by readBatch(), as if read from the TUN. */
  inject(...packets: Uint8Array[]): void {
    if (this.#closed) throw new Error("Cannot inject: device is closed");
    for (const packet of packets) this.#queue.push(packet.slice());
    if (this.#pendingRead !== undefined && this.#queue.length > 0) {
      const resolve = this.#pendingRead;
      this.#pendingRead = undefined;
      resolve(this.#takeBatch());
    }
  }

  #takeBatch(): Uint8Array[] {
    for (const old of this.#lastBatch) old.fill(0xdb);
    const batch = this.#queue.splice(0, this.#batchSize);
    this.#lastBatch = batch;
    return batch;
  }

  readBatch(): Promise<Uint8Array[] | null> {
    if (this.#pendingRead !== undefined) {
      return Promise.reject(new Error("Cannot read: readBatch() is already pending"));
    }
    if (this.#closed) return Promise.resolve(null);
    if (this.#queue.length > 0) return Promise.resolve(this.#takeBatch());
    return new Promise((resolve) => {
      this.#pendingRead = resolve;
    });
  }

  writePacket(packet: Uint8Array): boolean {
    const version = packet.length > 0 ? packet[0] >> 4 : 0;
    if (this.#closed || (version !== 4 && version !== 6) || this.#refuse?.(packet)) {
      this.refusedCount++;
      return false;
    }
    const copy = packet.slice();
    this.written.push(copy);
    const waiter = this.#writeWaiters.shift();
    if (waiter !== undefined) {
      this.#unconsumed++;
      waiter(copy);
    }
    return true;
  }

  /**
   * Resolves with the oldest written packet that no earlier nextWritten()
   * returned, waiting for one up to `timeoutMs` milliseconds (default 2000).
   */
  nextWritten(timeoutMs = 2000): Promise<Uint8Array> {
    if (this.#unconsumed < this.written.length) {
      return Promise.resolve(this.written[this.#unconsumed++]);
    }
    return new Promise((resolve, reject) => {
      const waiter = (packet: Uint8Array) => {
        clearTimeout(timer);
        resolve(packet);
      };
      const timer = setTimeout(() => {
        this.#writeWaiters = this.#writeWaiters.filter((w) => w !== waiter);
        reject(new Error(`No packet written to ${this.name} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#writeWaiters.push(waiter);
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.length = 0;
    const resolve = this.#pendingRead;
    this.#pendingRead = undefined;
    resolve?.(null);
  }
}
