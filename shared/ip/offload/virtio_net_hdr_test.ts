import { assertEquals, assertThrows } from "../../../tests/support/assert.ts";
import { hex } from "../../../tests/support/bytes.ts";
import {
  emptyVirtioNetHdr,
  encodeNoOffloadHdr,
  encodeVirtioNetHdr,
  OffloadError,
  parseVirtioNetHdr,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_LENGTH,
} from "./virtio_net_hdr.ts";

/**
 * A TSO4 header as a TUN hands it out for a TCP/IPv4 super-packet with
 * timestamps: little-endian 16-bit fields (include/uapi/linux/virtio_net.h).
 */
const TSO4 = hex(
  "01" + // flags: VIRTIO_NET_HDR_F_NEEDS_CSUM
    "81" + // gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN
    "3400" + // hdr_len 52 = IPv4 20 + TCP 32 (timestamps)
    "b405" + // gso_size 1460
    "1400" + // csum_start 20
    "1000", // csum_offset 16
);

Deno.test("parseVirtioNetHdr() reads the little-endian fields of a TSO4 header", () => {
  assertEquals(parseVirtioNetHdr(TSO4), {
    flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
    gsoType: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
    hdrLen: 52,
    gsoSize: 1460,
    csumStart: 20,
    csumOffset: 16,
  });
});

Deno.test("parseVirtioNetHdr() reads at an offset into a reused object", () => {
  const bytes = new Uint8Array(4 + VIRTIO_NET_HDR_LENGTH + 3);
  bytes.set(TSO4, 4);
  const into = emptyVirtioNetHdr();
  const result = parseVirtioNetHdr(bytes, 4, into);
  assertEquals(result === into, true);
  assertEquals(into.gsoSize, 1460);
  assertEquals(into.csumOffset, 16);
});

Deno.test("encodeVirtioNetHdr() round-trips and writes only its 10 bytes", () => {
  const out = new Uint8Array(14).fill(0xee);
  encodeVirtioNetHdr(parseVirtioNetHdr(TSO4), out, 2);
  assertEquals(out.subarray(2, 12), TSO4);
  assertEquals([out[0], out[1], out[12], out[13]], [0xee, 0xee, 0xee, 0xee]);
  // Fields are taken modulo their width.
  const wide = { ...emptyVirtioNetHdr(), flags: 0x101, gsoSize: 0x12345 };
  encodeVirtioNetHdr(wide, out);
  assertEquals(out.subarray(0, 6), hex("01 00 00 00 45 23"));
  out.fill(0xee);
  encodeNoOffloadHdr(out, 1);
  assertEquals(out.subarray(1, 11), new Uint8Array(10));
  assertEquals([out[0], out[11]], [0xee, 0xee]);
});

Deno.test("virtio_net_hdr codec rejects a buffer shorter than 10 bytes", () => {
  assertThrows(
    () => parseVirtioNetHdr(TSO4.subarray(0, 9)),
    OffloadError,
    "Cannot parse virtio_net_hdr: 9 bytes, need 10",
  );
  assertThrows(
    () => parseVirtioNetHdr(TSO4, 4),
    OffloadError,
    "Cannot parse virtio_net_hdr: 6 bytes, need 10",
  );
  assertThrows(
    () => parseVirtioNetHdr(TSO4, 12),
    OffloadError,
    "Cannot parse virtio_net_hdr: 0 bytes, need 10",
  );
  assertThrows(
    () => encodeVirtioNetHdr(emptyVirtioNetHdr(), new Uint8Array(12), 3),
    OffloadError,
    "Cannot encode virtio_net_hdr: 9 bytes of room, need 10",
  );
  assertThrows(() => encodeNoOffloadHdr(new Uint8Array(5)), OffloadError, "5 bytes of room");
});
