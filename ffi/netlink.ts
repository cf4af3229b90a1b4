/**
 * Interface and address configuration over rtnetlink (rtnetlink(7)), the
 * way `ip link` and `ip addr` do it, without running them (routes and rules
 * of the client's own table: `policy_routing.ts`).
 *
 * Each call opens an `AF_NETLINK`/`NETLINK_ROUTE` socket, sends one request
 * with `NLM_F_ACK`, waits for the kernel's `NLMSG_ERROR` reply and closes the
 * socket. The calls are synchronous (the kernel answers while handling the
 * send) and meant for setup, not for the packet path. Failures throw a
 * {@linkcode LibcError} such as
 * `Cannot add address 198.18.100.2/32 to mvpn0: File exists (EEXIST)`.
 * Needs `--allow-ffi` and CAP_NET_ADMIN for changes.
 *
 * @module
 */

import { formatPrefix, type IpPrefix } from "../shared/ip/ip_address.ts";
import { checkPrefix } from "./_address.ts";
import {
  AF_NETLINK,
  decodeIfreqInt,
  encodeAddAddressRequest,
  encodeDeleteAddressRequest,
  encodeDeleteLinkRequest,
  encodeIfreq,
  encodePollfds,
  encodeSetLinkMtuRequest,
  encodeSetLinkTxQueueLengthRequest,
  encodeSetLinkUpRequest,
  encodeSockaddrNl,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NETLINK_ROUTE,
  type NetlinkMessage,
  NLMSG_DONE,
  NLMSG_ERROR,
  parseNetlinkAck,
  parseNetlinkMessages,
  RTM_NEWROUTE,
  RTMGRP_IPV4_IFADDR,
  RTMGRP_IPV4_ROUTE,
  RTMGRP_IPV6_IFADDR,
  RTMGRP_IPV6_ROUTE,
  RTN_ANYCAST,
  RTN_BROADCAST,
  RTN_LOCAL,
  SIOCGIFINDEX,
  SIOCGIFMTU,
  SOCKADDR_NL_SIZE,
  SOL_NETLINK,
} from "./_struct.ts";
import { encodeRouteDumpRequest, parseRouteMessage, RT_TABLE_LOCAL } from "./_rule_struct.ts";
import {
  AF_INET,
  check,
  closeQuietly,
  EAGAIN,
  errno,
  libc,
  LibcError,
  POLLIN,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_RAW,
} from "./libc.ts";

export type { IpPrefix } from "../shared/ip/ip_address.ts";
export { LibcError } from "./libc.ts";

/** How long to wait for the kernel's acknowledgement, in milliseconds. */
export const NETLINK_REPLY_TIMEOUT_MS = 2000;
const RECEIVE_BUFFER_BYTES = 65536;

let nextSeq = 1;

/**
 * The index of interface `name` (`SIOCGIFINDEX`, netdevice(7)). Throws
 * `Cannot find link mvpn9: No such device (ENODEV)` when there is none.
 */
export function linkIndex(name: string): number {
  return indexFor(name, `Cannot find link ${name}`);
}

/**
 * The MTU of interface `name` in bytes (`SIOCGIFMTU`, netdevice(7)). Throws
 * `Cannot read MTU of link mvpn9: No such device (ENODEV)` when there is none.
 */
export function linkMtu(name: string): number {
  return ifreqInt(name, SIOCGIFMTU, `Cannot read MTU of link ${name}`);
}

function indexFor(name: string, action: string): number {
  return ifreqInt(name, SIOCGIFINDEX, action);
}

/** Runs an ioctl that fills the int member of a `struct ifreq` for `name`. */
function ifreqInt(name: string, request: number, action: string): number {
  const ifreq = encodeIfreq(name);
  const fd = check(libc().socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), `${action}: socket()`);
  try {
    check(libc().ioctl(fd, BigInt(request), ifreq), action);
  } finally {
    closeQuietly(fd);
  }
  return decodeIfreqInt(ifreq);
}

/** Brings interface `name` up (`ip link set dev NAME up`). */
export function setLinkUp(name: string): void {
  const action = `Cannot set link ${name} up`;
  const seq = nextSeq++;
  talk(encodeSetLinkUpRequest(seq, indexFor(name, action)), seq, action);
}

/** Sets the MTU of interface `name` in bytes (`ip link set dev NAME mtu MTU`). */
export function setLinkMtu(name: string, mtu: number): void {
  const action = `Cannot set MTU ${mtu} on link ${name}`;
  const seq = nextSeq++;
  talk(encodeSetLinkMtuRequest(seq, indexFor(name, action), mtu), seq, action);
}

/**
 * Sets the transmit queue length of interface `name` in packets (`ip link
 * set dev NAME txqueuelen N`). For a TUN device this is the queue of packets
 * the kernel holds for the reader; a full one drops (TX dropped).
 */
export function setLinkTxQueueLength(name: string, packets: number): void {
  const action = `Cannot set transmit queue length ${packets} on link ${name}`;
  const seq = nextSeq++;
  talk(encodeSetLinkTxQueueLengthRequest(seq, indexFor(name, action), packets), seq, action);
}

/**
 * Assigns `prefix` (address and prefix length) to interface `name` (`ip addr
 * add PREFIX dev NAME`, with `nodad` for IPv6). Throws EEXIST when assigned.
 */
export function addAddress(name: string, prefix: IpPrefix): void {
  checkPrefix(prefix, `Cannot add address on ${name}`);
  const action = `Cannot add address ${formatPrefix(prefix)} to ${name}`;
  const seq = nextSeq++;
  talk(encodeAddAddressRequest(seq, indexFor(name, action), prefix), seq, action);
}

/** Removes `prefix` from interface `name` (`ip addr del PREFIX dev NAME`). */
export function deleteAddress(name: string, prefix: IpPrefix): void {
  checkPrefix(prefix, `Cannot delete address on ${name}`);
  const action = `Cannot delete address ${formatPrefix(prefix)} from ${name}`;
  const seq = nextSeq++;
  talk(encodeDeleteAddressRequest(seq, indexFor(name, action), prefix), seq, action);
}

/** Deletes interface `name` (`ip link del dev NAME`). */
export function deleteLink(name: string): void {
  const action = `Cannot delete link ${name}`;
  const seq = nextSeq++;
  talk(encodeDeleteLinkRequest(seq, indexFor(name, action)), seq, action);
}

/** A fresh sequence number for a request (echoed in the kernel's replies). */
export function nextSequence(): number {
  return nextSeq++;
}

/** Sends one request and throws unless the kernel acknowledges it with error 0. */
export function talk(request: Uint8Array<ArrayBuffer>, seq: number, action: string): void {
  exchange(request, action, (message) => {
    if (message.type !== NLMSG_ERROR || message.seq !== seq) return false;
    const ack = parseNetlinkAck(message);
    if (ack.errno !== 0) throw new LibcError(action, ack.errno, ack.message);
    return true;
  });
}

/**
 * Sends one `NLM_F_DUMP` request and returns the kernel's answer messages
 * (copied out of the receive buffer) up to `NLMSG_DONE`. Throws a
 * {@linkcode LibcError} when the kernel answers with an error.
 */
export function dump(
  request: Uint8Array<ArrayBuffer>,
  seq: number,
  action: string,
): NetlinkMessage[] {
  const messages: NetlinkMessage[] = [];
  exchange(request, action, (message) => {
    if (message.seq !== seq) return false;
    if (message.type === NLMSG_DONE) return true;
    if (message.type === NLMSG_ERROR) {
      const ack = parseNetlinkAck(message);
      if (ack.errno !== 0) throw new LibcError(action, ack.errno, ack.message);
      return true;
    }
    messages.push({ ...message, payload: message.payload.slice() });
    return false;
  });
  return messages;
}

/**
 * Opens a route netlink socket, sends `request` and hands each message of
 * the replies to `onMessage` until it returns true (within
 * {@linkcode NETLINK_REPLY_TIMEOUT_MS}). Messages are views into a buffer
 * reused by the next receive.
 */
function exchange(
  request: Uint8Array<ArrayBuffer>,
  action: string,
  onMessage: (message: NetlinkMessage) => boolean,
): void {
  const c = libc();
  const fd = check(
    c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE),
    `${action}: netlink socket()`,
  );
  try {
    // Ask for the kernel's explanation text and a short echo; failures are harmless.
    const one = new Int32Array([1]);
    const oneBytes = new Uint8Array(one.buffer);
    c.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, oneBytes, 4);
    c.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, oneBytes, 4);
    const kernel = encodeSockaddrNl(0, 0);
    check(c.bind(fd, encodeSockaddrNl(0, 0), SOCKADDR_NL_SIZE), `${action}: netlink bind()`);
    const sent = c.sendto(fd, request, BigInt(request.length), 0, kernel, SOCKADDR_NL_SIZE);
    if (sent < 0) throw new LibcError(`${action}: netlink sendto()`, errno());
    const pollfd = encodePollfds([fd], POLLIN);
    const buffer = new Uint8Array(RECEIVE_BUFFER_BYTES);
    const deadline = Date.now() + NETLINK_REPLY_TIMEOUT_MS;
    for (;;) {
      const wait = deadline - Date.now();
      const ready = wait > 0 ? c.poll(pollfd, 1n, wait) : 0;
      if (ready < 0) throw new LibcError(`${action}: netlink poll()`, errno());
      if (ready === 0) {
        throw new Error(
          `${action}: no reply from the kernel within ${NETLINK_REPLY_TIMEOUT_MS} ms`,
        );
      }
      const received = c.recv(fd, buffer, BigInt(buffer.length), 0);
      if (received < 0) throw new LibcError(`${action}: netlink recv()`, errno());
      for (const message of parseNetlinkMessages(buffer.subarray(0, Number(received)))) {
        if (onMessage(message)) return;
      }
    }
  } finally {
    closeQuietly(fd);
  }
}

/** A destination the host takes for itself, from its local routing table. */
export interface LocalRoute {
  /**
   * `local`: an address of the host (or a wider AnyIP route such as
   * 127.0.0.0/8); `broadcast`: an IPv4 broadcast address of one of its
   * networks; `anycast`: an IPv6 anycast address of the host, such as the
   * Subnet-Router anycast address of each prefix while forwarding is on
   * (RFC 4291 §2.6.1).
   */
  readonly type: "local" | "broadcast" | "anycast";
  readonly prefix: IpPrefix;
}

const LOCAL_ROUTE_TYPES = new Map<number, LocalRoute["type"]>([
  [RTN_LOCAL, "local"],
  [RTN_BROADCAST, "broadcast"],
  [RTN_ANYCAST, "anycast"],
]);

/**
 * Every local, broadcast and anycast route of the kernel's local routing
 * table (table 255, what `ip route show table local` and
 * `ip -6 route show table local` list): the destinations the host delivers
 * to itself, including addresses on every interface and ones added after the
 * program started. Multicast routes are left out. Dumps the routes of both
 * families over rtnetlink (`RTM_GETROUTE`, `NLM_F_DUMP`); needs no privilege.
 */
export function localRoutes(): LocalRoute[] {
  const routes: LocalRoute[] = [];
  for (const family of [4, 6] as const) {
    const seq = nextSequence();
    const action = `Cannot list the IPv${family} local routes`;
    for (const message of dump(encodeRouteDumpRequest(seq, family), seq, action)) {
      if (message.type !== RTM_NEWROUTE) continue;
      const route = parseRouteMessage(message);
      const type = LOCAL_ROUTE_TYPES.get(route.typeNumber);
      if (route.table === RT_TABLE_LOCAL && type !== undefined) {
        routes.push({ type, prefix: route.destination });
      }
    }
  }
  return routes;
}

/** `recv(2)` flag: do not block. */
const MSG_DONTWAIT = 0x40;
/** errno: the socket's receive buffer overflowed and notifications were lost. */
const ENOBUFS = 105;

/**
 * Notices, without blocking, when the host's addresses or routes change: a
 * netlink socket subscribed to the IPv4 and IPv6 address and route groups
 * (as `ip monitor address route` is). {@linkcode changed} drains what arrived
 * and says whether anything did; the caller then reads the new state with
 * {@linkcode localRoutes}. Needs no privilege.
 */
export class AddressChangeWatch {
  #fd: number;
  readonly #buffer = new Uint8Array(RECEIVE_BUFFER_BYTES);

  constructor() {
    const action = "Cannot watch address changes";
    const c = libc();
    this.#fd = check(
      c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE),
      `${action}: netlink socket()`,
    );
    const groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR |
      RTMGRP_IPV6_ROUTE;
    if (c.bind(this.#fd, encodeSockaddrNl(0, groups), SOCKADDR_NL_SIZE) < 0) {
      const error = new LibcError(`${action}: netlink bind()`, errno());
      this.close();
      throw error;
    }
  }

  /**
   * Whether any address or route changed since the last call (true also when
   * the kernel dropped notifications because they were not read in time).
   * Never blocks. Throws a {@linkcode LibcError} on any other receive error,
   * and once {@linkcode close} has been called.
   */
  changed(): boolean {
    if (this.#fd < 0) throw new Error("Cannot read address changes: the watch is closed");
    const c = libc();
    let changed = false;
    for (;;) {
      const received = Number(
        c.recv(this.#fd, this.#buffer, BigInt(this.#buffer.length), MSG_DONTWAIT),
      );
      if (received > 0) {
        changed = true;
        continue;
      }
      if (received === 0) return changed;
      const code = errno();
      if (code === EAGAIN) return changed;
      if (code === ENOBUFS) {
        changed = true;
        continue;
      }
      throw new LibcError("Cannot read address changes: netlink recv()", code);
    }
  }

  /** Closes the socket; idempotent. */
  close(): void {
    closeQuietly(this.#fd);
    this.#fd = -1;
  }
}
