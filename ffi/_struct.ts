/**
 * Byte layouts of the kernel structures used by the TUN and rtnetlink code,
 * as pure functions over `Uint8Array`/`DataView` (no FFI, testable without
 * root). Integers in these structs are in host byte order (netlink(7)); IP
 * addresses are in network byte order.
 *
 * - `struct ifreq` (netdevice(7)): 16-byte name + 24-byte union = 40 bytes.
 * - `struct nlmsghdr` (netlink(7)): len u32, type u16, flags u16, seq u32, pid u32.
 * - `struct ifinfomsg`, `struct ifaddrmsg`, `struct rtmsg`, `struct rtattr` (rtnetlink(7)).
 * - `struct nlmsgerr` with extended-ack TLVs (linux/netlink.h).
 * - `struct sockaddr_nl`, `struct pollfd`.
 *
 * @module
 */

import type { IpPrefix } from "../shared/ip/ip_address.ts";
import { checkPrefix } from "./_address.ts";

/** Malformed kernel data or a value that cannot be packed. */
export class StructError extends Error {
  /** @param message the full message, such as `Cannot parse netlink message: ...` */
  constructor(message: string) {
    super(message);
    this.name = "StructError";
  }
}

/** True on little-endian hosts; netlink and ioctl structs use host byte order. */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------
// struct ifreq and TUN ioctls (linux/if.h, linux/if_tun.h, linux/sockios.h)

/** Size of `ifr_name`, including the terminating NUL. */
export const IFNAMSIZ = 16;
/** `sizeof(struct ifreq)` on 64-bit Linux. */
export const IFREQ_SIZE = 40;
/** `_IOW('T', 202, int)`: attach the fd to a TUN/TAP interface. */
export const TUNSETIFF = 0x400454ca;
/** TUN (layer 3) rather than TAP. */
export const IFF_TUN = 0x0001;
/** No 4-byte packet-information header in front of each packet. */
export const IFF_NO_PI = 0x1000;
/** Allow several fds (queues) on one interface. */
export const IFF_MULTI_QUEUE = 0x0100;
/** A 10-byte `struct virtio_net_hdr` in front of every packet read and written (offloads). */
export const IFF_VNET_HDR = 0x4000;
/**
 * `_IOW('T', 208, unsigned int)`: the offloads the reader handles; the
 * `TUN_F_*` flags are passed by value. TSO without `TUN_F_CSUM` is EINVAL,
 * an unknown flag (USO before Linux 6.2) too.
 */
export const TUNSETOFFLOAD = 0x400454d0;
/** `_IOW('T', 220, int)`: `virtio_net_hdr` fields little endian (takes a pointer to an int). */
export const TUNSETVNETLE = 0x400454dc;
/** `TUNSETOFFLOAD`: the reader completes partial checksums (CHECKSUM_PARTIAL). */
export const TUN_F_CSUM = 0x01;
/** `TUNSETOFFLOAD`: the reader splits TCP over IPv4 super-packets. */
export const TUN_F_TSO4 = 0x02;
/** `TUNSETOFFLOAD`: the reader splits TCP over IPv6 super-packets. */
export const TUN_F_TSO6 = 0x04;
/** `TUNSETOFFLOAD`: the reader splits UDP over IPv4 super-packets (Linux 6.2+). */
export const TUN_F_USO4 = 0x20;
/** `TUNSETOFFLOAD`: the reader splits UDP over IPv6 super-packets (Linux 6.2+). */
export const TUN_F_USO6 = 0x40;
/** `SIOCGIFINDEX`: interface name to index. */
export const SIOCGIFINDEX = 0x8933;
/** `SIOCGIFMTU`: get the MTU. */
export const SIOCGIFMTU = 0x8921;
/** `SIOCSIFMTU`: set the MTU. */
export const SIOCSIFMTU = 0x8922;
/** Interface flag: administratively up. */
export const IFF_UP = 0x1;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Throws a {@linkcode StructError} unless `name` is a valid Linux interface
 * name (`dev_valid_name()`): 1..15 bytes, not `.` or `..`, no `/`, `:`, NUL or
 * whitespace.
 */
export function checkInterfaceName(name: string): void {
  const bytes = encoder.encode(name).length;
  const problem = bytes === 0
    ? "is empty"
    : bytes >= IFNAMSIZ
    ? `is ${bytes} bytes, longer than ${IFNAMSIZ - 1}`
    : name === "." || name === ".."
    ? "is reserved"
    : /[\s/:\0]/.test(name)
    ? "contains '/', ':', NUL or whitespace"
    : "";
  if (problem) {
    throw new StructError(`Cannot use interface name ${JSON.stringify(name)}: it ${problem}`);
  }
}

/**
 * Packs a `struct ifreq` whose union holds a 16-bit value (`ifr_flags`) or a
 * 32-bit value (`ifr_ifindex`, `ifr_mtu`) at offset 16.
 */
export function encodeIfreq(
  name: string,
  value: { flags: number } | { int: number } | Record<never, never> = {},
): Uint8Array<ArrayBuffer> {
  checkInterfaceName(name);
  const out = new Uint8Array(IFREQ_SIZE);
  out.set(encoder.encode(name));
  const view = new DataView(out.buffer);
  if ("flags" in value) view.setUint16(IFNAMSIZ, value.flags, HOST_LITTLE_ENDIAN);
  if ("int" in value) view.setInt32(IFNAMSIZ, value.int, HOST_LITTLE_ENDIAN);
  return out;
}

/** Reads the interface name (up to the first NUL) from a `struct ifreq`. */
export function decodeIfreqName(ifreq: Uint8Array): string {
  const name = ifreq.subarray(0, IFNAMSIZ);
  const end = name.indexOf(0);
  return decoder.decode(end < 0 ? name : name.subarray(0, end));
}

/** Reads the 32-bit union member (`ifr_ifindex`, `ifr_mtu`) of a `struct ifreq`. */
export function decodeIfreqInt(ifreq: Uint8Array): number {
  if (ifreq.length < IFNAMSIZ + 4) {
    throw new StructError(`Cannot parse ifreq: ${ifreq.length} bytes, need ${IFNAMSIZ + 4}`);
  }
  return new DataView(ifreq.buffer, ifreq.byteOffset, ifreq.length).getInt32(
    IFNAMSIZ,
    HOST_LITTLE_ENDIAN,
  );
}

// ---------------------------------------------------------------------------
// netlink (linux/netlink.h, linux/rtnetlink.h)

/** Netlink protocol number for routing (rtnetlink). */
export const NETLINK_ROUTE = 0;
/** Socket option level for netlink options. */
export const SOL_NETLINK = 270;
/** Do not echo the request payload in error messages. */
export const NETLINK_CAP_ACK = 10;
/** Add extended-ack TLVs (a text message) to error messages. */
export const NETLINK_EXT_ACK = 11;

/** `sizeof(struct nlmsghdr)`. */
export const NLMSG_HDRLEN = 16;
/** `sizeof(struct sockaddr_nl)`. */
export const SOCKADDR_NL_SIZE = 12;

/** Message type: error or acknowledgement (error 0). */
export const NLMSG_ERROR = 2;
/** Message type: end of a multipart dump. */
export const NLMSG_DONE = 3;
/** rtnetlink message types. */
export const RTM_NEWLINK = 16;
/** Delete a link. */
export const RTM_DELLINK = 17;
/** Add an address. */
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
/** Add a route. */
export const RTM_NEWROUTE = 24;
/** Delete a route. */
export const RTM_DELROUTE = 25;

/** Request flag: this is a request. */
export const NLM_F_REQUEST = 0x01;
/** Request flag: reply with an acknowledgement. */
export const NLM_F_ACK = 0x04;
/** Replace an existing object. */
export const NLM_F_REPLACE = 0x100;
/** Fail with EEXIST when the object exists. */
export const NLM_F_EXCL = 0x200;
/** Create the object if it does not exist. */
export const NLM_F_CREATE = 0x400;
/** Error-message flag: the echoed request was capped to its header. */
export const NLM_F_CAPPED = 0x100;
/** Error-message flag: extended-ack TLVs follow. */
export const NLM_F_ACK_TLVS = 0x200;
/** Extended-ack TLV: NUL-terminated error text. */
export const NLMSGERR_ATTR_MSG = 1;

/** `sizeof(struct ifinfomsg)`. */
export const IFINFOMSG_SIZE = 16;
/** `sizeof(struct ifaddrmsg)`. */
export const IFADDRMSG_SIZE = 8;
/** `sizeof(struct rtmsg)`. */
export const RTMSG_SIZE = 12;

/** Link attribute: MTU (u32). */
export const IFLA_MTU = 4;
/** Link attribute: transmit queue length in packets (u32). */
export const IFLA_TXQLEN = 13;
/** Address attribute: address (peer address on point-to-point links). */
export const IFA_ADDRESS = 1;
/** Address attribute: local address. */
export const IFA_LOCAL = 2;
/** Address flag: skip IPv6 duplicate address detection. */
export const IFA_F_NODAD = 0x02;
/** Route attribute: destination prefix. */
export const RTA_DST = 1;
/** Route attribute: output interface index (u32). */
export const RTA_OIF = 4;

/** Routing table: main. */
export const RT_TABLE_MAIN = 254;
/** Route origin: installed by an administrator / at boot (what `ip route add` uses). */
export const RTPROT_BOOT = 3;
/** Scope: global. */
export const RT_SCOPE_UNIVERSE = 0;
/** Scope: directly attached (no gateway). */
export const RT_SCOPE_LINK = 253;
/** Scope: "any", used when deleting. */
export const RT_SCOPE_NOWHERE = 255;
/** Route type: unicast. */
export const RTN_UNICAST = 1;

/** Address family numbers used in these messages (linux/socket.h). */
export const AF_UNSPEC = 0;
/** IPv4. */
export const AF_INET = 2;
/** IPv6. */
export const AF_INET6 = 10;
/** Netlink. */
export const AF_NETLINK = 16;

/** Rounds `length` up to the 4-byte netlink/rtattr alignment (`NLMSG_ALIGN`, `RTA_ALIGN`). */
export function align4(length: number): number {
  return (length + 3) & ~3;
}

/** Header fields of a netlink message. */
export interface NetlinkHeader {
  /** Message type, such as {@linkcode RTM_NEWROUTE}. */
  readonly type: number;
  /** `NLM_F_*` flags. */
  readonly flags: number;
  /** Sequence number, echoed in the reply. */
  readonly seq: number;
  /** Sender port id; 0 lets the kernel fill it in. */
  readonly pid: number;
}

/** A parsed netlink message: its header and its payload (a view into the input). */
export interface NetlinkMessage extends NetlinkHeader {
  /** The bytes after the 16-byte header, without trailing padding. */
  readonly payload: Uint8Array;
}

function concat(parts: readonly Uint8Array[], total: number, into: Uint8Array, offset: number) {
  for (const part of parts) {
    into.set(part, offset);
    offset += align4(part.length);
  }
  if (offset !== total) throw new StructError(`Cannot pack: wrote ${offset} of ${total} bytes`);
}

/** Packs an `rtattr`: len u16 (4 + payload), type u16, payload, zero padding to 4 bytes. */
export function encodeRtattr(type: number, payload: Uint8Array): Uint8Array<ArrayBuffer> {
  const length = 4 + payload.length;
  if (length > 0xffff) {
    throw new StructError(`Cannot pack rtattr ${type}: length ${length} exceeds 65535`);
  }
  const out = new Uint8Array(align4(length));
  const view = new DataView(out.buffer);
  view.setUint16(0, length, HOST_LITTLE_ENDIAN);
  view.setUint16(2, type, HOST_LITTLE_ENDIAN);
  out.set(payload, 4);
  return out;
}

/** Packs an `rtattr` holding a host-order u32. */
export function encodeRtattrU32(type: number, value: number): Uint8Array<ArrayBuffer> {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, value, HOST_LITTLE_ENDIAN);
  return encodeRtattr(type, payload);
}

/**
 * Packs a netlink message: a 16-byte `nlmsghdr` followed by `parts` (a fixed
 * struct, then attributes), each padded to 4 bytes.
 */
export function encodeNetlinkMessage(
  header: NetlinkHeader,
  parts: readonly Uint8Array[],
): Uint8Array<ArrayBuffer> {
  const total = parts.reduce((sum, part) => sum + align4(part.length), NLMSG_HDRLEN);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setUint32(0, total, HOST_LITTLE_ENDIAN);
  view.setUint16(4, header.type, HOST_LITTLE_ENDIAN);
  view.setUint16(6, header.flags, HOST_LITTLE_ENDIAN);
  view.setUint32(8, header.seq, HOST_LITTLE_ENDIAN);
  view.setUint32(12, header.pid, HOST_LITTLE_ENDIAN);
  concat(parts, total, out, NLMSG_HDRLEN);
  return out;
}

/** Fields of a `struct ifinfomsg`. */
export interface IfInfoMsg {
  /** Address family, normally {@linkcode AF_UNSPEC}. */
  readonly family: number;
  /** Device type (`ARPHRD_*`), 0 in requests. */
  readonly type: number;
  /** Interface index. */
  readonly index: number;
  /** `IFF_*` flags to set. */
  readonly flags: number;
  /** Mask of the flags to change. */
  readonly change: number;
}

/** Packs a `struct ifinfomsg`: family u8, pad u8, type u16, index i32, flags u32, change u32. */
export function encodeIfinfomsg(msg: IfInfoMsg): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(IFINFOMSG_SIZE);
  const view = new DataView(out.buffer);
  view.setUint8(0, msg.family);
  view.setUint16(2, msg.type, HOST_LITTLE_ENDIAN);
  view.setInt32(4, msg.index, HOST_LITTLE_ENDIAN);
  view.setUint32(8, msg.flags, HOST_LITTLE_ENDIAN);
  view.setUint32(12, msg.change, HOST_LITTLE_ENDIAN);
  return out;
}

/** Fields of a `struct ifaddrmsg`. */
export interface IfAddrMsg {
  /** {@linkcode AF_INET} or {@linkcode AF_INET6}. */
  readonly family: number;
  /** Prefix length in bits. */
  readonly prefixLength: number;
  /** `IFA_F_*` flags. */
  readonly flags: number;
  /** `RT_SCOPE_*`. */
  readonly scope: number;
  /** Interface index. */
  readonly index: number;
}

/** Packs a `struct ifaddrmsg`: family u8, prefixlen u8, flags u8, scope u8, index u32. */
export function encodeIfaddrmsg(msg: IfAddrMsg): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(IFADDRMSG_SIZE);
  const view = new DataView(out.buffer);
  view.setUint8(0, msg.family);
  view.setUint8(1, msg.prefixLength);
  view.setUint8(2, msg.flags);
  view.setUint8(3, msg.scope);
  view.setUint32(4, msg.index, HOST_LITTLE_ENDIAN);
  return out;
}

/** Fields of a `struct rtmsg`. */
export interface RtMsg {
  /** {@linkcode AF_INET} or {@linkcode AF_INET6}. */
  readonly family: number;
  /** Destination prefix length in bits. */
  readonly dstLength: number;
  /** Source prefix length in bits. */
  readonly srcLength: number;
  /** Type of service. */
  readonly tos: number;
  /** Routing table id, such as {@linkcode RT_TABLE_MAIN}. */
  readonly table: number;
  /** `RTPROT_*` origin. */
  readonly protocol: number;
  /** `RT_SCOPE_*`. */
  readonly scope: number;
  /** `RTN_*` route type. */
  readonly type: number;
  /** `RTM_F_*` flags. */
  readonly flags: number;
}

/** Packs a `struct rtmsg`: eight u8 fields (family .. type) then flags u32. */
export function encodeRtmsg(msg: RtMsg): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(RTMSG_SIZE);
  const view = new DataView(out.buffer);
  out.set([
    msg.family,
    msg.dstLength,
    msg.srcLength,
    msg.tos,
    msg.table,
    msg.protocol,
    msg.scope,
    msg.type,
  ]);
  view.setUint32(8, msg.flags, HOST_LITTLE_ENDIAN);
  return out;
}

/** Packs a `struct sockaddr_nl`: family u16, pad u16, pid u32, groups u32. */
export function encodeSockaddrNl(pid = 0, groups = 0): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(SOCKADDR_NL_SIZE);
  const view = new DataView(out.buffer);
  view.setUint16(0, AF_NETLINK, HOST_LITTLE_ENDIAN);
  view.setUint32(4, pid, HOST_LITTLE_ENDIAN);
  view.setUint32(8, groups, HOST_LITTLE_ENDIAN);
  return out;
}

/** Packs an array of `struct pollfd` (fd i32, events i16, revents i16). */
export function encodePollfds(fds: readonly number[], events: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(8 * fds.length);
  const view = new DataView(out.buffer);
  fds.forEach((fd, i) => {
    view.setInt32(8 * i, fd, HOST_LITTLE_ENDIAN);
    view.setInt16(8 * i + 4, events, HOST_LITTLE_ENDIAN);
  });
  return out;
}

/** Reads `revents` of entry `index` in a `struct pollfd` array. */
export function pollRevents(pollfds: Uint8Array, index: number): number {
  return new DataView(pollfds.buffer, pollfds.byteOffset, pollfds.length).getInt16(
    8 * index + 6,
    HOST_LITTLE_ENDIAN,
  );
}

/**
 * Splits a buffer received from a netlink socket into messages. Throws a
 * {@linkcode StructError} when a length field is impossible.
 */
export function parseNetlinkMessages(bytes: Uint8Array): NetlinkMessage[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const messages: NetlinkMessage[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const left = bytes.length - offset;
    if (left < NLMSG_HDRLEN) {
      throw new StructError(
        `Cannot parse netlink message: ${left} bytes left, shorter than the ${NLMSG_HDRLEN}-byte header`,
      );
    }
    const length = view.getUint32(offset, HOST_LITTLE_ENDIAN);
    if (length < NLMSG_HDRLEN || length > left) {
      throw new StructError(
        `Cannot parse netlink message: length ${length} is outside ${NLMSG_HDRLEN}..${left}`,
      );
    }
    messages.push({
      type: view.getUint16(offset + 4, HOST_LITTLE_ENDIAN),
      flags: view.getUint16(offset + 6, HOST_LITTLE_ENDIAN),
      seq: view.getUint32(offset + 8, HOST_LITTLE_ENDIAN),
      pid: view.getUint32(offset + 12, HOST_LITTLE_ENDIAN),
      payload: bytes.subarray(offset + NLMSG_HDRLEN, offset + length),
    });
    offset += align4(length);
  }
  return messages;
}

/** One attribute: its type and payload (a view into the input). */
export interface Rtattr {
  /** Attribute type, such as {@linkcode RTA_DST}. */
  readonly type: number;
  /** The payload without padding. */
  readonly payload: Uint8Array;
}

/** Splits a run of `rtattr`s. Throws a {@linkcode StructError} on an impossible length. */
export function parseRtattrs(bytes: Uint8Array): Rtattr[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const attrs: Rtattr[] = [];
  let offset = 0;
  while (bytes.length - offset >= 4) {
    const length = view.getUint16(offset, HOST_LITTLE_ENDIAN);
    const left = bytes.length - offset;
    if (length < 4 || length > left) {
      throw new StructError(`Cannot parse rtattr: length ${length} is outside 4..${left}`);
    }
    attrs.push({
      type: view.getUint16(offset + 2, HOST_LITTLE_ENDIAN),
      payload: bytes.subarray(offset + 4, offset + length),
    });
    offset += align4(length);
  }
  return attrs;
}

/** The outcome carried by an `NLMSG_ERROR` message. */
export interface NetlinkAck {
  /** 0 for success, otherwise the positive errno value. */
  readonly errno: number;
  /** The kernel's extended-ack text, such as `"Invalid prefix for given prefix length"`. */
  readonly message?: string;
}

/**
 * Parses the payload of an `NLMSG_ERROR` message (`struct nlmsgerr`: error i32,
 * the request's `nlmsghdr`, the request's payload unless
 * {@linkcode NLM_F_CAPPED}, then TLVs when {@linkcode NLM_F_ACK_TLVS}).
 */
export function parseNetlinkAck(message: NetlinkMessage): NetlinkAck {
  const { payload, flags } = message;
  if (message.type !== NLMSG_ERROR) {
    throw new StructError(`Cannot parse netlink ack: message type ${message.type} is not 2`);
  }
  if (payload.length < 4 + NLMSG_HDRLEN) {
    throw new StructError(
      `Cannot parse netlink ack: ${payload.length} bytes, need ${4 + NLMSG_HDRLEN}`,
    );
  }
  const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
  const error = view.getInt32(0, HOST_LITTLE_ENDIAN);
  if (error > 0) throw new StructError(`Cannot parse netlink ack: error ${error} is positive`);
  const errnoValue = error === 0 ? 0 : -error;
  if ((flags & NLM_F_ACK_TLVS) === 0) return { errno: errnoValue };
  let offset = 4 + NLMSG_HDRLEN;
  if ((flags & NLM_F_CAPPED) === 0) {
    const echoed = view.getUint32(4, HOST_LITTLE_ENDIAN);
    if (echoed < NLMSG_HDRLEN || 4 + echoed > payload.length) {
      throw new StructError(
        `Cannot parse netlink ack: echoed request length ${echoed} is outside ${NLMSG_HDRLEN}..${
          payload.length - 4
        }`,
      );
    }
    offset = 4 + align4(echoed);
  }
  for (const attr of parseRtattrs(payload.subarray(offset))) {
    if (attr.type === NLMSGERR_ATTR_MSG) {
      const end = attr.payload.indexOf(0);
      const text = decoder.decode(end < 0 ? attr.payload : attr.payload.subarray(0, end));
      return text ? { errno: errnoValue, message: text } : { errno: errnoValue };
    }
  }
  return { errno: errnoValue };
}

// ---------------------------------------------------------------------------
// rtnetlink requests (what `ip link set`, `ip addr add`, `ip route add/del` send)

const REQUEST_ACK = NLM_F_REQUEST | NLM_F_ACK;

function family(prefix: IpPrefix): number {
  return prefix.version === 4 ? AF_INET : AF_INET6;
}

/** `RTM_NEWLINK` that sets {@linkcode IFF_UP} on interface `index` (`ip link set dev X up`). */
export function encodeSetLinkUpRequest(seq: number, index: number): Uint8Array<ArrayBuffer> {
  return encodeNetlinkMessage({ type: RTM_NEWLINK, flags: REQUEST_ACK, seq, pid: 0 }, [
    encodeIfinfomsg({ family: AF_UNSPEC, type: 0, index, flags: IFF_UP, change: IFF_UP }),
  ]);
}

/** `RTM_NEWLINK` with `IFLA_MTU` (`ip link set dev X mtu N`); `mtu` in bytes. */
export function encodeSetLinkMtuRequest(
  seq: number,
  index: number,
  mtu: number,
): Uint8Array<ArrayBuffer> {
  return encodeSetLinkU32Request(seq, index, IFLA_MTU, mtu, "MTU");
}

/**
 * `RTM_NEWLINK` with `IFLA_TXQLEN` (`ip link set dev X txqueuelen N`);
 * `packets` is the length of the link's transmit queue.
 */
export function encodeSetLinkTxQueueLengthRequest(
  seq: number,
  index: number,
  packets: number,
): Uint8Array<ArrayBuffer> {
  return encodeSetLinkU32Request(seq, index, IFLA_TXQLEN, packets, "transmit queue length");
}

function encodeSetLinkU32Request(
  seq: number,
  index: number,
  attribute: number,
  value: number,
  what: string,
): Uint8Array<ArrayBuffer> {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new StructError(`Cannot pack ${what} ${value}: not a u32`);
  }
  return encodeNetlinkMessage({ type: RTM_NEWLINK, flags: REQUEST_ACK, seq, pid: 0 }, [
    encodeIfinfomsg({ family: AF_UNSPEC, type: 0, index, flags: 0, change: 0 }),
    encodeRtattrU32(attribute, value),
  ]);
}

/** `RTM_DELLINK` for interface `index` (`ip link del dev X`). */
export function encodeDeleteLinkRequest(seq: number, index: number): Uint8Array<ArrayBuffer> {
  return encodeNetlinkMessage({ type: RTM_DELLINK, flags: REQUEST_ACK, seq, pid: 0 }, [
    encodeIfinfomsg({ family: AF_UNSPEC, type: 0, index, flags: 0, change: 0 }),
  ]);
}

/**
 * `RTM_NEWADDR` with `IFA_LOCAL` and `IFA_ADDRESS` (`ip addr add P dev X`,
 * plus `nodad` for IPv6: a tunnel has no neighbours to collide with, and DAD
 * would leave the address unusable for about a second).
 */
export function encodeAddAddressRequest(
  seq: number,
  index: number,
  prefix: IpPrefix,
): Uint8Array<ArrayBuffer> {
  checkPrefix(prefix, "Cannot pack address");
  return encodeNetlinkMessage(
    { type: RTM_NEWADDR, flags: REQUEST_ACK | NLM_F_CREATE | NLM_F_EXCL, seq, pid: 0 },
    [
      encodeIfaddrmsg({
        family: family(prefix),
        prefixLength: prefix.prefixLength,
        flags: prefix.version === 6 ? IFA_F_NODAD : 0,
        scope: RT_SCOPE_UNIVERSE,
        index,
      }),
      encodeRtattr(IFA_LOCAL, prefix.address),
      encodeRtattr(IFA_ADDRESS, prefix.address),
    ],
  );
}

/** `RTM_DELADDR` for `prefix` on interface `index` (`ip addr del P dev X`). */
export function encodeDeleteAddressRequest(
  seq: number,
  index: number,
  prefix: IpPrefix,
): Uint8Array<ArrayBuffer> {
  checkPrefix(prefix, "Cannot pack address");
  return encodeNetlinkMessage(
    { type: RTM_DELADDR, flags: REQUEST_ACK, seq, pid: 0 },
    [
      encodeIfaddrmsg({
        family: family(prefix),
        prefixLength: prefix.prefixLength,
        flags: 0,
        scope: RT_SCOPE_UNIVERSE,
        index,
      }),
      encodeRtattr(IFA_LOCAL, prefix.address),
      encodeRtattr(IFA_ADDRESS, prefix.address),
    ],
  );
}

// ---------------------------------------------------------------------------
// rtnetlink route types and notification groups (what `ip route show table local` and `ip monitor` use)

/** Route type: a local address, delivered to the host. */
export const RTN_LOCAL = 2;
/** Route type: a broadcast address, delivered to the host (and sent as broadcast). */
export const RTN_BROADCAST = 3;
/** Route type: an anycast address of the host (IPv6 Subnet-Router anycast, for one). */
export const RTN_ANYCAST = 4;
/** Legacy multicast group bit (`sockaddr_nl.nl_groups`): IPv4 address changes. */
export const RTMGRP_IPV4_IFADDR = 0x10;
/** Legacy multicast group bit: IPv4 route changes. */
export const RTMGRP_IPV4_ROUTE = 0x40;
/** Legacy multicast group bit: IPv6 address changes. */
export const RTMGRP_IPV6_IFADDR = 0x100;
/** Legacy multicast group bit: IPv6 route changes. */
export const RTMGRP_IPV6_ROUTE = 0x400;
