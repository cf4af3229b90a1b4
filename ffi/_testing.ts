/**
 * Helpers for the root tests and the benchmark of `ffi/`: unique interface
 * names and subnets, `ip -j` queries (tests may run `ip`; product code does
 * not), and hand-built IPv4/IPv6 UDP packets with correct checksums.
 *
 * @module
 */

import { libc } from "./libc.ts";

/** True when the tests that create interfaces can run (effective uid 0; needs --allow-ffi). */
export const IS_ROOT = libc().geteuid() === 0;

/** A fresh interface name such as `mvt3fa9c1` (9 bytes). */
export function uniqueName(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(3));
  return `mvt${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** A random number in 1..254, used as the third byte of 198.19.x.0/24 and fd00:x::/64. */
export function randomSubnet(): number {
  return 1 + (crypto.getRandomValues(new Uint8Array(1))[0] % 254);
}

/** 198.19.`subnet`.`host` as bytes. */
export function v4(subnet: number, host: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array([198, 19, subnet, host]);
}

/** fd00:`subnet`::`host` as bytes. */
export function v6(subnet: number, host: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(16);
  out[0] = 0xfd;
  out[3] = subnet;
  out[15] = host;
  return out;
}

/** Runs `ip -j ARGS` and returns the parsed JSON, or null when `ip` fails (no such device). */
export function ipJson(...args: string[]): unknown {
  const output = new Deno.Command("ip", { args: ["-j", ...args], stdout: "piped", stderr: "piped" })
    .outputSync();
  if (!output.success) return null;
  const text = new TextDecoder().decode(output.stdout).trim();
  return text ? JSON.parse(text) : [];
}

/** Fields of `ip -j addr show` entries that the tests look at. */
export interface IpLink {
  ifname: string;
  ifindex: number;
  mtu: number;
  flags: string[];
  link_type?: string;
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

/** `ip -j addr show dev NAME`, or null when the link does not exist. */
export function showLink(name: string): IpLink | null {
  const links = ipJson("addr", "show", "dev", name);
  if (!Array.isArray(links) || links.length !== 1) return null;
  return links[0];
}

/** Deletes the link with `ip`, ignoring errors (test cleanup when product code failed). */
export function forceDeleteLink(name: string): void {
  new Deno.Command("ip", { args: ["link", "del", "dev", name], stdout: "null", stderr: "null" })
    .outputSync();
}

function sum16(bytes: Uint8Array, start = 0): number {
  let sum = start;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (bytes.length % 2) sum += bytes[bytes.length - 1] << 8;
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** A UDP datagram inside an IPv4 (4-byte addresses) or IPv6 (16-byte) header, checksums set. */
export function udpPacket(
  source: Uint8Array,
  destination: Uint8Array,
  sourcePort: number,
  destinationPort: number,
  payload: Uint8Array,
): Uint8Array<ArrayBuffer> {
  const udpLength = 8 + payload.length;
  const udp = new Uint8Array(udpLength);
  const u = new DataView(udp.buffer);
  u.setUint16(0, sourcePort);
  u.setUint16(2, destinationPort);
  u.setUint16(4, udpLength);
  udp.set(payload, 8);
  // Pseudo-header: addresses, protocol 17, UDP length (RFC 768, RFC 8200 section 8.1).
  let pseudo = sum16(source) + sum16(destination) + 17 + udpLength;
  pseudo = sum16(udp, pseudo);
  u.setUint16(6, fold(pseudo) || 0xffff);
  if (source.length === 4) {
    const packet = new Uint8Array(20 + udpLength);
    const p = new DataView(packet.buffer);
    p.setUint8(0, 0x45); // version 4, IHL 5
    p.setUint16(2, packet.length);
    p.setUint8(8, 64); // TTL
    p.setUint8(9, 17); // UDP
    packet.set(source, 12);
    packet.set(destination, 16);
    p.setUint16(10, fold(sum16(packet.subarray(0, 20))));
    packet.set(udp, 20);
    return packet;
  }
  const packet = new Uint8Array(40 + udpLength);
  const p = new DataView(packet.buffer);
  p.setUint8(0, 0x60); // version 6
  p.setUint16(4, udpLength);
  p.setUint8(6, 17); // next header: UDP
  p.setUint8(7, 64); // hop limit
  packet.set(source, 8);
  packet.set(destination, 24);
  packet.set(udp, 40);
  return packet;
}

/** The UDP payload of an IPv4 or IPv6 packet carrying UDP directly, or null. */
export function udpPayload(packet: Uint8Array): Uint8Array | null {
  const version = packet[0] >> 4;
  if (version === 4 && packet.length >= 28 && packet[9] === 17) {
    return packet.subarray((packet[0] & 0xf) * 4 + 8);
  }
  if (version === 6 && packet.length >= 48 && packet[6] === 17) return packet.subarray(48);
  return null;
}

/** Rejects after `ms` milliseconds unless `promise` settles first; clears its timer. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** `CLONE_NEWNET` (linux/sched.h): the namespace type for `setns(2)`. */
const CLONE_NEWNET = 0x40000000;
const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;

/**
 * Creates a named network namespace `mvt<random>` with `lo` up (`ip netns
 * add`), for root tests that change rules and routes without touching the
 * host's. Delete it with {@linkcode deleteNetns}.
 */
export function createNetns(): string {
  const name = uniqueName();
  runIp(["netns", "add", name]);
  runIp(["-n", name, "link", "set", "lo", "up"]);
  return name;
}

/** Deletes a namespace made by {@linkcode createNetns}, ignoring errors. */
export function deleteNetns(name: string): void {
  new Deno.Command("ip", { args: ["netns", "del", name], stdout: "null", stderr: "null" })
    .outputSync();
}

/** Runs `ip ARGS` and throws with its stderr when it fails. */
export function runIp(args: string[]): string {
  const output = new Deno.Command("ip", { args, stdout: "piped", stderr: "piped" }).outputSync();
  if (!output.success) {
    throw new Error(`ip ${args.join(" ")} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
  return new TextDecoder().decode(output.stdout);
}

/**
 * Runs `body` with the calling thread inside network namespace `name`
 * (`setns(2)` on `/run/netns/NAME`), then moves the thread back. Netlink
 * sockets opened by `body` talk to that namespace. `body` must be
 * synchronous: nothing else may run on the thread while it is inside.
 */
export function inNetns<T>(name: string, body: () => T): T {
  const c = libc();
  const open = (path: string) => {
    const fd = c.open(new TextEncoder().encode(`${path}\0`), O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) throw new Error(`Cannot open ${path}`);
    return fd;
  };
  const home = open("/proc/thread-self/ns/net");
  try {
    const target = open(`/run/netns/${name}`);
    try {
      if (c.setns(target, CLONE_NEWNET) !== 0) throw new Error(`Cannot enter namespace ${name}`);
    } finally {
      c.close(target);
    }
    let back = -1;
    let result: T;
    try {
      result = body();
    } finally {
      back = c.setns(home, CLONE_NEWNET);
    }
    if (back !== 0) {
      throw new Error(`Cannot return from namespace ${name}: the thread is still inside`);
    }
    return result;
  } finally {
    c.close(home);
  }
}
