/**
 * Larger kernel buffers for the UDP socket behind a Deno QUIC endpoint.
 *
 * Deno's QUIC (quinn) keeps the kernel's default socket buffers (Linux
 * `net.core.rmem_default`, 208 KiB: about 150 full-size datagrams, 5 ms at
 * 300 Mbit/s). When the relay's or client's event loop is busy for longer
 * than that, the kernel drops whole GRO batches of QUIC packets
 * (`UdpRcvbufErrors` in `nstat`), and every tunnelled flow sees loss.
 * wireguard-go and quic-go raise their buffers to about 7 MiB for this
 * reason. Deno does not expose the socket, so {@linkcode enlargeUdpBuffers}
 * finds it among the process's file descriptors by its bound port and sets
 * `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` (root or CAP_NET_ADMIN, above
 * `net.core.rmem_max`), falling back to `SO_RCVBUF`/`SO_SNDBUF` (capped at
 * `rmem_max`/`wmem_max`).
 *
 * @module
 */
import { AF_INET, AF_INET6, check, libc, SOCK_DGRAM } from "./libc.ts";

const SOL_SOCKET = 1;
const SO_TYPE = 3;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
/** File descriptors searched for the socket: 3 up to this (exclusive). */
const MAX_FD = 4096;

/** Default size asked for, bytes (as wireguard-go's `socketBufferSize`). */
export const DEFAULT_UDP_BUFFER_BYTES = 7 * 1024 * 1024;

/** What {@linkcode enlargeUdpBuffers} got, as `getsockopt` reports it. */
export interface UdpBufferSizes {
  /** The socket's file descriptor. */
  readonly fd: number;
  /** `SO_RCVBUF` after the change, bytes (the kernel doubles the request for its bookkeeping). */
  readonly receiveBytes: number;
  /** `SO_SNDBUF` after the change, bytes. */
  readonly sendBytes: number;
}

function getIntOption(fd: number, option: number): number {
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  check(
    libc().getsockopt(fd, SOL_SOCKET, option, value, length),
    `Cannot read socket option ${option} of fd ${fd}`,
  );
  return value[0];
}

function setIntOption(fd: number, option: number, value: number): boolean {
  return libc().setsockopt(fd, SOL_SOCKET, option, new Int32Array([value]), 4) === 0;
}

/**
 * The bound port of `fd` when it is an IPv4 or IPv6 UDP socket, else
 * undefined (closed fds, files and other sockets are skipped).
 */
function udpPortOf(fd: number): number | undefined {
  const type = new Int32Array(1);
  const typeLength = new Uint32Array([4]);
  if (libc().getsockopt(fd, SOL_SOCKET, SO_TYPE, type, typeLength) !== 0) return undefined;
  if (type[0] !== SOCK_DGRAM) return undefined;
  // struct sockaddr_in / sockaddr_in6: u16 family (host order), u16 port (network order), ...
  const address = new Uint8Array(128);
  const addressLength = new Uint32Array([address.length]);
  if (libc().getsockname(fd, address, addressLength) !== 0) return undefined;
  const view = new DataView(address.buffer);
  const family = view.getUint16(0, true);
  if (family !== AF_INET && family !== AF_INET6) return undefined;
  return view.getUint16(2, false);
}

/**
 * Finds this process's UDP socket bound to `port` (the QUIC endpoint's) and
 * sets its receive and send buffers to `bytes`. Throws an Error when no
 * such socket exists, a `LibcError` when the sizes cannot be read
 * back. Needs `--allow-ffi`.
 */
export function enlargeUdpBuffers(
  port: number,
  bytes: number = DEFAULT_UDP_BUFFER_BYTES,
): UdpBufferSizes {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`Cannot enlarge UDP buffers: port ${port} is outside 1..65535`);
  }
  if (!Number.isInteger(bytes) || bytes < 4096 || bytes > 0x3fffffff) {
    throw new RangeError(`Cannot enlarge UDP buffers: ${bytes} bytes is outside 4096..2^30-1`);
  }
  const fd = findUdpSocket(port);
  if (fd === undefined) {
    throw new Error(
      `Cannot enlarge UDP buffers: no UDP socket of this process is bound to port ${port}`,
    );
  }
  if (!setIntOption(fd, SO_RCVBUFFORCE, bytes)) setIntOption(fd, SO_RCVBUF, bytes);
  if (!setIntOption(fd, SO_SNDBUFFORCE, bytes)) setIntOption(fd, SO_SNDBUF, bytes);
  return {
    fd,
    receiveBytes: getIntOption(fd, SO_RCVBUF),
    sendBytes: getIntOption(fd, SO_SNDBUF),
  };
}

/**
 * The file descriptor of this process's IPv4 or IPv6 UDP socket bound to
 * `port` (such as a Deno QUIC endpoint's, which Deno does not expose), or
 * undefined when there is none. Searches fds 3..4095. Needs `--allow-ffi`.
 */
export function findUdpSocket(port: number): number | undefined {
  for (let fd = 3; fd < MAX_FD; fd++) {
    if (udpPortOf(fd) === port) return fd;
  }
  return undefined;
}

/**
 * {@linkcode enlargeUdpBuffers}, returning its error instead of throwing: a
 * VPN still works with small buffers, only with more loss under load.
 */
export function tryEnlargeUdpBuffers(
  port: number,
  bytes: number = DEFAULT_UDP_BUFFER_BYTES,
): UdpBufferSizes | Error {
  try {
    return enlargeUdpBuffers(port, bytes);
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}
