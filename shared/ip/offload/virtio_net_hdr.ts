/**
 * The `virtio_net_hdr` that a Linux TUN device opened with `IFF_VNET_HDR`
 * puts in front of every packet it hands out and expects in front of every
 * packet written to it (`include/uapi/linux/virtio_net.h`; the virtio 1.x
 * specification §5.1.6 "struct virtio_net_hdr", legacy layout without
 * `num_buffers`). It tells the reader that a packet is a GSO super-packet to
 * split (`gso_type`, `gso_size`) or that its transport checksum is still to
 * be completed (`VIRTIO_NET_HDR_F_NEEDS_CSUM`, `csum_start`, `csum_offset`),
 * and lets a writer hand the kernel such super-packets.
 *
 * ```
 *  0        1          2          4          6            8             10
 * +--------+----------+----------+----------+------------+-------------+
 * | flags  | gso_type | hdr_len  | gso_size | csum_start | csum_offset |
 * +--------+----------+----------+----------+------------+-------------+
 *   u8       u8         u16 LE     u16 LE     u16 LE       u16 LE
 * ```
 *
 * Byte order: the TUN driver reads and writes these 16-bit fields in little
 * endian when the device is set to little endian (`TUNSETVNETLE`) and, when
 * it is not, in the "legacy" order, which is the host's own
 * (`tun_is_little_endian()` in `drivers/net/tun.c`: `TUN_VNET_LE ||
 * virtio_legacy_is_little_endian()`; only `TUNSETVNETBE` on a kernel built
 * with `CONFIG_TUN_VNET_CROSS_LE` makes it big endian on a little-endian
 * host). This codec is always little endian. That is what the kernel uses on
 * every little-endian host (x86-64, arm64) whatever TUNSETVNETLE says; the
 * FFI side is to set TUNSETVNETLE anyway so that a big-endian host agrees too.
 *
 * Pure code: no Deno global, nothing allocated unless asked.
 *
 * @module
 */

/** Bytes in a legacy `virtio_net_hdr` (`sizeof(struct virtio_net_hdr)`), the TUN default. */
export const VIRTIO_NET_HDR_LENGTH = 10;

/** `flags`: the transport checksum is partial; complete it from `csum_start`, store it at `csum_start + csum_offset`. */
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 0x01;
/** `flags`: the checksum was already validated (set by the kernel on reads; ignored on writes to a TUN). */
export const VIRTIO_NET_HDR_F_DATA_VALID = 0x02;

/** `gso_type`: not a GSO packet. */
export const VIRTIO_NET_HDR_GSO_NONE = 0;
/** `gso_type`: TCP over IPv4, split into `gso_size` payload bytes per segment (TSO4). */
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
/** `gso_type`: UDP fragmentation offload (UFO, IP fragments); never enabled by this project. */
export const VIRTIO_NET_HDR_GSO_UDP = 3;
/** `gso_type`: TCP over IPv6 (TSO6). */
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
/** `gso_type`: UDP segmentation (USO, Linux 6.2+), one datagram of `gso_size` payload bytes per segment, IPv4 or IPv6. */
export const VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
/** `gso_type` bit: the TCP super-packet had CWR set (ECN); the first segment keeps CWR. */
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

/**
 * The fields of one `virtio_net_hdr`; lengths and offsets in bytes, counted
 * from the first byte of the IP header (a TUN without `IFF_TAP` has no
 * Ethernet header).
 */
export interface VirtioNetHdr {
  /** `VIRTIO_NET_HDR_F_*` bits. */
  flags: number;
  /** `VIRTIO_NET_HDR_GSO_*`, possibly with {@linkcode VIRTIO_NET_HDR_GSO_ECN}. */
  gsoType: number;
  /** IP plus transport header length (the kernel's value is advisory on reads). */
  hdrLen: number;
  /** Payload bytes per segment (GSO only). */
  gsoSize: number;
  /** Where the checksummed part starts: the transport header. */
  csumStart: number;
  /** Where the checksum field is, from `csumStart`: 16 for TCP, 6 for UDP. */
  csumOffset: number;
}

/** A malformed or unsupported offload header or super-packet; the packet is dropped. */
export class OffloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OffloadError";
  }
}

/** A fresh all-zero header (GSO none, no flags), e.g. to reuse with {@linkcode parseVirtioNetHdr}. */
export function emptyVirtioNetHdr(): VirtioNetHdr {
  return { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };
}

/**
 * Reads the header at `bytes[offset, offset + 10)`, into `into` when given
 * (nothing allocated) or into a new object. Only the length is checked here;
 * {@linkcode planGsoSplit} and {@linkcode completeChecksum} check the fields
 * against the packet.
 *
 * @throws {OffloadError} fewer than 10 bytes from `offset`
 */
export function parseVirtioNetHdr(
  bytes: Uint8Array,
  offset = 0,
  into: VirtioNetHdr = emptyVirtioNetHdr(),
): VirtioNetHdr {
  if (offset < 0 || bytes.length - offset < VIRTIO_NET_HDR_LENGTH) {
    throw new OffloadError(
      `Cannot parse virtio_net_hdr: ${Math.max(0, bytes.length - offset)} bytes, need ` +
        `${VIRTIO_NET_HDR_LENGTH}`,
    );
  }
  into.flags = bytes[offset];
  into.gsoType = bytes[offset + 1];
  into.hdrLen = bytes[offset + 2] | (bytes[offset + 3] << 8);
  into.gsoSize = bytes[offset + 4] | (bytes[offset + 5] << 8);
  into.csumStart = bytes[offset + 6] | (bytes[offset + 7] << 8);
  into.csumOffset = bytes[offset + 8] | (bytes[offset + 9] << 8);
  return into;
}

/**
 * Writes `hdr` into `out[offset, offset + 10)`. Fields are taken modulo
 * their width (8 or 16 bits).
 *
 * @throws {OffloadError} fewer than 10 bytes from `offset`
 */
export function encodeVirtioNetHdr(hdr: VirtioNetHdr, out: Uint8Array, offset = 0): void {
  if (offset < 0 || out.length - offset < VIRTIO_NET_HDR_LENGTH) {
    throw new OffloadError(
      `Cannot encode virtio_net_hdr: ${Math.max(0, out.length - offset)} bytes of room, need ` +
        `${VIRTIO_NET_HDR_LENGTH}`,
    );
  }
  out[offset] = hdr.flags;
  out[offset + 1] = hdr.gsoType;
  writeLe16(out, offset + 2, hdr.hdrLen);
  writeLe16(out, offset + 4, hdr.gsoSize);
  writeLe16(out, offset + 6, hdr.csumStart);
  writeLe16(out, offset + 8, hdr.csumOffset);
}

/** Writes 10 zero bytes at `out[offset]`: a plain packet, nothing to do for the kernel. */
export function encodeNoOffloadHdr(out: Uint8Array, offset = 0): void {
  if (offset < 0 || out.length - offset < VIRTIO_NET_HDR_LENGTH) {
    throw new OffloadError(
      `Cannot encode virtio_net_hdr: ${Math.max(0, out.length - offset)} bytes of room, need ` +
        `${VIRTIO_NET_HDR_LENGTH}`,
    );
  }
  out.fill(0, offset, offset + VIRTIO_NET_HDR_LENGTH);
}

function writeLe16(out: Uint8Array, at: number, value: number): void {
  out[at] = value & 0xff;
  out[at + 1] = (value >>> 8) & 0xff;
}
