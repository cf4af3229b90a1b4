/**
 * Bindings to the few glibc functions the VPN needs (files, ioctl, sockets,
 * poll, eventfd), opened once per isolate through `Deno.dlopen`, plus errno
 * helpers that turn a failed call into a message such as
 * `Cannot open /dev/net/tun: No such file or directory (ENOENT)`.
 *
 * This is the only module in the project that calls `Deno.dlopen`; the library
 * is opened on first use, so importing this file needs no permission.
 *
 * @module
 */

const SYMBOLS = {
  open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  /** `read(2)` run on Deno's blocking thread pool; for comparison benchmarks only. */
  readAsync: {
    name: "read",
    parameters: ["i32", "buffer", "usize"],
    result: "isize",
    nonblocking: true,
  },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  /** `ioctl(2)` whose argument is a number, not a pointer (`TUNSETOFFLOAD`). */
  ioctlValue: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recvfrom: {
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "buffer"],
    result: "isize",
  },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  getpid: { parameters: [], result: "i32" },
  geteuid: { parameters: [], result: "u32" },
  /** `setns(2)`: moves the calling thread into a namespace (tests enter throwaway network namespaces). */
  setns: { parameters: ["i32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The symbol table returned by {@linkcode libc}. */
export type LibcSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let library: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

/**
 * Returns the glibc symbols, opening `libc.so.6` on first use (needs
 * `--allow-ffi`). Each isolate (main thread, each Worker) opens its own handle.
 */
export function libc(): LibcSymbols {
  library ??= Deno.dlopen("libc.so.6", SYMBOLS);
  return library.symbols;
}

/** `open(2)` flag: read and write. */
export const O_RDWR = 0o2;
/** `open(2)` flag: never block in read/write. */
export const O_NONBLOCK = 0o4000;
/** `open(2)` flag: close on exec, so child processes do not inherit the fd. */
export const O_CLOEXEC = 0o2000000;

/** Address family: IPv4. */
export const AF_INET = 2;
/** Address family: IPv6. */
export const AF_INET6 = 10;
/** Address family: netlink (netlink(7)). */
export const AF_NETLINK = 16;
/** Socket type: datagram. */
export const SOCK_DGRAM = 2;
/** Socket type: raw. */
export const SOCK_RAW = 3;
/** Socket type flag: close on exec. */
export const SOCK_CLOEXEC = 0o2000000;

/** `poll(2)` event: data to read. */
export const POLLIN = 0x001;
/** `poll(2)` event: error condition (revents only). */
export const POLLERR = 0x008;
/** `poll(2)` event: hang up (revents only). */
export const POLLHUP = 0x010;
/** `poll(2)` event: fd not open (revents only). */
export const POLLNVAL = 0x020;

/** `eventfd(2)` flag: close on exec. */
export const EFD_CLOEXEC = 0o2000000;
/** `eventfd(2)` flag: non-blocking. */
export const EFD_NONBLOCK = 0o4000;

/** Errno names by number (Linux asm-generic/errno*.h), for messages. */
const ERRNO_NAMES: Readonly<Record<number, string>> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  7: "E2BIG",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  25: "ENOTTY",
  28: "ENOSPC",
  34: "ERANGE",
  36: "ENAMETOOLONG",
  61: "ENODATA",
  77: "EBADFD",
  90: "EMSGSIZE",
  93: "EPROTONOSUPPORT",
  95: "EOPNOTSUPP",
  97: "EAFNOSUPPORT",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  100: "ENETDOWN",
  101: "ENETUNREACH",
  105: "ENOBUFS",
  107: "ENOTCONN",
  110: "ETIMEDOUT",
  111: "ECONNREFUSED",
  113: "EHOSTUNREACH",
};

/** Errno: no such file or directory. */
export const ENOENT = 2;
/** Errno: interrupted system call. */
export const EINTR = 4;
/** Errno: try again (nothing to read on a non-blocking fd). */
export const EAGAIN = 11;
/** Errno: file exists. */
export const EEXIST = 17;
/** Errno: no such device. */
export const ENODEV = 19;
/** Errno: invalid argument. */
export const EINVAL = 22;

/**
 * The calling thread's `errno`. Read it right after the failing call, before
 * any other FFI call on the same thread.
 */
export function errno(): number {
  const pointer = libc().__errno_location();
  if (pointer === null) return 0;
  return new Deno.UnsafePointerView(pointer).getInt32();
}

/** The symbolic name of an errno value, such as `"ENOENT"`, or `"errno 200"` when unknown. */
export function errnoName(code: number): string {
  return ERRNO_NAMES[code] ?? `errno ${code}`;
}

/** glibc's text for an errno value (`strerror(3)`), such as `"No such file or directory"`. */
export function strerror(code: number): string {
  const pointer = libc().strerror(code);
  return pointer === null ? `Unknown error ${code}` : Deno.UnsafePointerView.getCString(pointer);
}

/** `"No such file or directory (ENOENT)"`: the text and the name of an errno value. */
export function describeErrno(code: number): string {
  return `${strerror(code)} (${errnoName(code)})`;
}

/** A failed libc or kernel call; `errno` holds the positive error number. */
export class LibcError extends Error {
  /** The positive errno value, such as 2 for ENOENT. */
  readonly errno: number;
  /** The symbolic errno name, such as `"ENOENT"`. */
  readonly code: string;

  /**
   * @param action what was attempted, such as `"Cannot open /dev/net/tun"`
   * @param code the positive errno value
   * @param detail extra text from the kernel (a netlink extended ack), appended in quotes
   */
  constructor(action: string, code: number, detail?: string) {
    super(`${action}: ${describeErrno(code)}${detail ? `, kernel says "${detail}"` : ""}`);
    this.name = "LibcError";
    this.errno = code;
    this.code = errnoName(code);
  }
}

/** Throws a {@linkcode LibcError} for the current `errno` when `result` is negative; returns `result`. */
export function check<T extends number | bigint>(result: T, action: string): T {
  if (result < 0) throw new LibcError(action, errno());
  return result;
}

const encoder = new TextEncoder();

/** Encodes `text` as a NUL-terminated C string. */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(text);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** Closes `fd`, ignoring errors (used on cleanup paths). */
export function closeQuietly(fd: number): void {
  if (fd >= 0) libc().close(fd);
}
