/**
 * Micro-benchmark of the TUN read and write paths (not a test; needs root):
 *
 *   deno run --allow-ffi --allow-read tests/bench/tun_read_bench.ts [seconds]
 *
 * A sender Worker blasts 64-byte UDP datagrams with synchronous FFI sendto()
 * at an address routed into a fresh TUN; each reader counts packets for a few
 * seconds:
 * - "worker ring": openTun() + readBatch() (the product design);
 * - "naive async": one `nonblocking: true` FFI read() per packet, awaited;
 * - "sync loop": read() until EAGAIN then poll() on the main thread (ceiling).
 * Then writePacket() is timed for a run of UDP packets written into the TUN.
 * The TUN queue drops what a reader cannot keep up with, so "sent" > "read".
 *
 * @module
 */

import { encodePollfds } from "../../ffi/_struct.ts";
import { randomSubnet, udpPacket, uniqueName, v4 } from "../../ffi/_testing.ts";
import {
  AF_INET,
  check,
  closeQuietly,
  EAGAIN,
  errno,
  libc,
  POLLIN,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
} from "../../ffi/libc.ts";
import { addAddress, setLinkUp } from "../../ffi/netlink.ts";
import { openTun, openTunFd } from "../../ffi/tun_linux.ts";

const PAYLOAD_BYTES = 64;

/** struct sockaddr_in: family u16 (host order), port u16 and address in network order, 8 zero bytes. */
function sockaddrIn(address: Uint8Array, port: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(16);
  const view = new DataView(out.buffer);
  view.setUint16(0, AF_INET, true);
  view.setUint16(2, port);
  out.set(address, 4);
  return out;
}

/** Message to the sender worker. */
interface SenderStart {
  readonly subnet: number;
  /** control[0]: 1 = stop; control[1]: datagrams sent. */
  readonly control: SharedArrayBuffer;
}

function runSender({ subnet, control }: SenderStart): void {
  const words = new Int32Array(control);
  const c = libc();
  const fd = check(c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "sender socket()");
  const to = sockaddrIn(v4(subnet, 9), 9);
  const payload = new Uint8Array(PAYLOAD_BYTES);
  const size = BigInt(payload.length);
  let sent = 0;
  while (Atomics.load(words, 0) === 0) {
    for (let i = 0; i < 64; i++) if (c.sendto(fd, payload, size, 0, to, 16) > 0) sent++;
    Atomics.store(words, 1, sent);
  }
  closeQuietly(fd);
}

interface Result {
  readonly name: string;
  readonly read: number;
  readonly sent: number;
  readonly seconds: number;
  readonly batches?: number;
}

/** Starts the sender, runs `reader` until `seconds` pass, stops the sender. */
async function measure(
  name: string,
  subnet: number,
  seconds: number,
  reader: (deadline: number) => Promise<{ read: number; batches?: number }>,
): Promise<Result> {
  const control = new SharedArrayBuffer(8);
  const words = new Int32Array(control);
  const sender = new Worker(import.meta.url, { type: "module", name: "sender" });
  const start: SenderStart = { subnet, control };
  sender.postMessage(start);
  const begin = performance.now();
  try {
    const counts = await reader(begin + seconds * 1000);
    const elapsed = (performance.now() - begin) / 1000;
    return { name, sent: Atomics.load(words, 1), seconds: elapsed, ...counts };
  } finally {
    Atomics.store(words, 0, 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    sender.terminate();
  }
}

/** A TUN named mvt<random> with 198.19.S.1/24, up; `openDevice` decides how it is opened. */
function configure<T extends { name: string }>(open: (name: string) => T): [T, number] {
  const device = open(uniqueName());
  const subnet = randomSubnet();
  addAddress(device.name, { version: 4, address: v4(subnet, 1), prefixLength: 24 });
  setLinkUp(device.name);
  return [device, subnet];
}

async function benchWorkerRing(seconds: number): Promise<Result> {
  const [device, subnet] = configure((name) => openTun(name));
  try {
    return await measure("worker ring", subnet, seconds, async (deadline) => {
      let read = 0;
      let batches = 0;
      while (performance.now() < deadline) {
        const batch = await device.readBatch();
        if (batch === null) break;
        read += batch.length;
        batches++;
      }
      return { read, batches };
    });
  } finally {
    device.close();
  }
}

async function benchNaiveAsync(seconds: number): Promise<Result> {
  const [tun, subnet] = configure((name) => openTunFd(name, { blocking: true }));
  try {
    return await measure("naive async", subnet, seconds, async (deadline) => {
      const buffer = new Uint8Array(2048);
      const size = BigInt(buffer.length);
      let read = 0;
      // The sender keeps running until this loop ends, so the last read returns.
      while (performance.now() < deadline) {
        if ((await libc().readAsync(tun.fd, buffer, size)) > 0) read++;
      }
      return { read };
    });
  } finally {
    closeQuietly(tun.fd);
  }
}

async function benchSyncLoop(seconds: number): Promise<Result> {
  const [tun, subnet] = configure((name) => openTunFd(name));
  try {
    return await measure("sync loop", subnet, seconds, async (deadline) => {
      await new Promise((resolve) => setTimeout(resolve, 10)); // let the sender start
      const c = libc();
      const buffer = new Uint8Array(2048);
      const size = BigInt(buffer.length);
      const pollfd = encodePollfds([tun.fd], POLLIN);
      let read = 0;
      while (performance.now() < deadline) {
        for (let i = 0; i < 256; i++) {
          if (c.read(tun.fd, buffer, size) > 0) {
            read++;
          } else if (errno() === EAGAIN) {
            c.poll(pollfd, 1n, 10);
          }
        }
      }
      return { read };
    });
  } finally {
    closeQuietly(tun.fd);
  }
}

/** Times writePacket() of UDP packets addressed to a bound (never read) local socket. */
function benchWrite(count: number): { microseconds: number; ok: number; ffiCallNs: number } {
  const [device, subnet] = configure((name) => openTun(name));
  const c = libc();
  const sink = check(c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "sink socket()");
  try {
    check(c.bind(sink, sockaddrIn(v4(subnet, 1), 9999), 16), "sink bind()");
    const packet = udpPacket(v4(subnet, 2), v4(subnet, 1), 4000, 9999, new Uint8Array(64));
    let ok = 0;
    for (let i = 0; i < 1000; i++) device.writePacket(packet); // warm up
    const begin = performance.now();
    for (let i = 0; i < count; i++) if (device.writePacket(packet)) ok++;
    const microseconds = ((performance.now() - begin) * 1000) / count;
    const callBegin = performance.now();
    for (let i = 0; i < count; i++) c.getpid();
    const ffiCallNs = ((performance.now() - callBegin) * 1e6) / count;
    return { microseconds, ok, ffiCallNs };
  } finally {
    closeQuietly(sink);
    device.close();
  }
}

function report(result: Result): void {
  const rate = Math.round(result.read / result.seconds);
  const perBatch = result.batches
    ? `, ${(result.read / result.batches).toFixed(1)} packets/batch`
    : "";
  console.log(
    `${result.name.padEnd(12)} ${String(rate).padStart(8)} packets/s read` +
      ` (${result.read} read, ${result.sent} sent in ${result.seconds.toFixed(2)} s${perBatch})`,
  );
}

/** The part of a dedicated worker's global scope the sender uses. */
interface WorkerScope {
  onmessage: ((event: MessageEvent<SenderStart>) => void) | null;
}

function isWorkerScope(scope: unknown): scope is WorkerScope {
  return typeof scope === "object" && scope !== null && "WorkerGlobalScope" in scope;
}

const scope: unknown = globalThis;
if (isWorkerScope(scope)) {
  scope.onmessage = (event) => runSender(event.data);
} else {
  const seconds = Math.min(Math.max(Number(Deno.args[0] ?? 2), 0.5), 10);
  if (libc().geteuid() !== 0) {
    console.error("tun_read_bench needs root (CAP_NET_ADMIN) to create TUN interfaces");
    Deno.exit(1);
  }
  report(await benchWorkerRing(seconds));
  report(await benchNaiveAsync(seconds));
  report(await benchSyncLoop(seconds));
  const write = benchWrite(200_000);
  console.log(
    `writePacket  ${write.microseconds.toFixed(2)} µs/packet` +
      ` (${Math.round(1e6 / write.microseconds)} packets/s, ${write.ok} accepted;` +
      ` getpid() through FFI, one syscall, costs ${write.ffiCallNs.toFixed(0)} ns)`,
  );
}
