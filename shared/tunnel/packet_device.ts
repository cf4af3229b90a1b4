/**
 * The one interface through which `shared/` code reads and writes IP packets.
 *
 * The TUN device in `ffi/` implements it structurally (it never imports this
 * file, see docs/DESIGN.md "Layers"); tests use the in-memory device from
 * `tests/support/memory_tun.ts`. Packets carry no link-layer header: each
 * one starts with the IPv4 (RFC 791 §3.1) or IPv6 (RFC 8200 §3) header.
 *
 * @module
 */

/** A device that reads and writes raw IP packets (no link header). */
export interface PacketDevice {
  /** The interface name, e.g. `masque0`. */
  readonly name: string;
  /** The link MTU in bytes: the largest IP packet (header included) the device carries. */
  readonly mtu: number;
  /**
   * Bytes in front of each packet `readBatch()` returns that the reader may
   * overwrite until the next call (the TUN leaves room there for the HTTP
   * Datagram header, see `ConnectIpSession.sendPacket`); 0 or absent: none.
   */
  readonly headroom?: number;
  /** Resolves with the next batch of one or more packets; each Uint8Array is valid until the next call to readBatch(). Resolves null once the device is closed. */
  readBatch(): Promise<Uint8Array[] | null>;
  /** Writes one IP packet; returns false (and counts) when the kernel refused it. Synchronous, never throws for a bad packet. */
  writePacket(packet: Uint8Array): boolean;
  /** Closes the device; a pending and every later readBatch() resolves null. Idempotent. */
  close(): void;
}
