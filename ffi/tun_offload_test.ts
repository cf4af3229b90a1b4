// Root tests of TUN offloads with real TUN interfaces: two namespaces, each
// with a TUN opened with offloads, joined by a bridge in this process
// (readBatch() of one, writePacket() into the other). The kernel hands the
// first TUN TCP super-packets, which its reader worker must split (within the
// packet limit, every checksum right); the second TUN's writer worker merges
// them again, and the receiving socket must get every byte intact.
import { assert, assertEquals } from "../tests/support/assert.ts";
import { skipUnless, skipUnlessRoot } from "../tests/support/skip.ts";
import { packetProblem } from "../tests/support/offload_packets.ts";
import {
  createNetns,
  deleteNetns,
  inNetns,
  IS_ROOT,
  randomSubnet,
  udpPacket,
  uniqueName,
  v4,
  v6,
  withTimeout,
} from "./_testing.ts";
import {
  AF_INET,
  AF_INET6,
  check,
  closeQuietly,
  EAGAIN,
  errno,
  libc,
  POLLIN,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
} from "./libc.ts";
import { encodePollfds } from "./_struct.ts";
import { addAddress, setLinkUp } from "./netlink.ts";
import { openTun, type TunDevice } from "./tun_linux.ts";

const ROOT_ONLY = await skipUnlessRoot(IS_ROOT, ["ip"]);
const TOOLS = new URL("../tests/e2e/tools/", import.meta.url).pathname;
const SOL_UDP = 17;
/** `UDP_SEGMENT` (linux/udp.h): the socket sends UDP GSO super-packets of this segment size. */
const UDP_SEGMENT = 103;

/** Two namespaces, each with an offloading TUN, and the bridge between them. */
interface Pair {
  readonly nsA: string;
  readonly nsB: string;
  readonly a: TunDevice;
  readonly b: TunDevice;
  readonly subnet: number;
  /** Problems found in packets read from `a` (TCP or UDP): "length N over limit", checksums. */
  readonly problems: string[];
  /** Largest TCP or UDP packet read from `a`, bytes. */
  largestFromA: number;
  /** Packets read from `a`, in order (copies), when `keep` is set. */
  readonly keptFromA: Uint8Array[];
  keep: boolean;
}

/** A TUN in namespace `ns` with 198.19.S.H/24 and fd00:S::H/64, up. */
function openIn(ns: string, subnet: number, host: number): TunDevice {
  return inNetns(ns, () => {
    const device = openTun(uniqueName(), { mtu: 1500, offload: true });
    try {
      addAddress(device.name, { version: 4, address: v4(subnet, host), prefixLength: 24 });
      addAddress(device.name, { version: 6, address: v6(subnet, host), prefixLength: 64 });
      setLinkUp(device.name);
    } catch (error) {
      device.close();
      throw error;
    }
    return device;
  });
}

async function pump(from: TunDevice, to: TunDevice, inspect?: (packet: Uint8Array) => void) {
  for (;;) {
    const batch = await from.readBatch();
    if (batch === null) return;
    for (const packet of batch) {
      inspect?.(packet);
      to.writePacket(packet);
    }
  }
}

/** Runs `body` with a bridged pair; `limit` is given to `a` as its packet limit. */
async function withPair(limit: number, body: (pair: Pair) => Promise<void>): Promise<void> {
  const nsA = createNetns();
  const nsB = createNetns();
  const opened: TunDevice[] = [];
  try {
    const subnet = randomSubnet();
    const a = openIn(nsA, subnet, 1);
    opened.push(a);
    const b = openIn(nsB, subnet, 2);
    opened.push(b);
    a.setPacketLimit(limit);
    const pair: Pair = {
      nsA,
      nsB,
      a,
      b,
      subnet,
      problems: [],
      largestFromA: 0,
      keptFromA: [],
      keep: false,
    };
    const inspect = (packet: Uint8Array) => {
      const version = packet[0] >> 4;
      const protocol = version === 4 ? packet[9] : version === 6 ? packet[6] : -1;
      if (pair.keep) pair.keptFromA.push(packet.slice());
      if (protocol !== 6 && protocol !== 17) return;
      pair.largestFromA = Math.max(pair.largestFromA, packet.length);
      if (protocol === 6 && packet.length > limit) {
        pair.problems.push(`TCP packet of ${packet.length} bytes over limit ${limit}`);
      }
      const problem = packetProblem(packet);
      if (problem !== undefined) pair.problems.push(problem);
    };
    const pumps = [pump(a, b, inspect), pump(b, a)];
    try {
      await body(pair);
    } finally {
      for (const device of opened) device.close();
      await Promise.allSettled(pumps);
    }
  } finally {
    for (const device of opened) device.close();
    deleteNetns(nsA);
    deleteNetns(nsB);
  }
}

/** Runs a tool in a namespace and returns its stdout's last JSON line. */
async function runTool(ns: string, args: string[], timeoutMs: number): Promise<unknown> {
  const command = new Deno.Command("ip", {
    args: ["netns", "exec", ns, Deno.execPath(), "run", "--allow-net", ...args],
    stdout: "piped",
    stderr: "piped",
  });
  const child = command.spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  try {
    const output = await child.output();
    const lines = new TextDecoder().decode(output.stdout).trim().split("\n");
    if (!output.success) {
      throw new Error(
        `${args.join(" ")} failed: ${lines.join(" ")} ${new TextDecoder().decode(output.stderr)}`,
      );
    }
    return JSON.parse(lines[lines.length - 1]);
  } finally {
    clearTimeout(timer);
  }
}

/** Starts tcp_blast's server in `ns`; resolves once it listens. */
async function startServer(ns: string, port: number): Promise<Deno.ChildProcess> {
  const child = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      ns,
      Deno.execPath(),
      "run",
      "--allow-net",
      `${TOOLS}tcp_blast.ts`,
      "server",
      "--port",
      String(port),
      "--host",
      "::",
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const ready = (async () => {
    let text = "";
    while (!text.includes('"ready"')) {
      const next = await reader.read();
      if (next.done) throw new Error("tcp_blast server exited before listening");
      text += next.value;
    }
    reader.releaseLock();
    void child.stdout.cancel().catch(() => {});
  })();
  await withTimeout(ready, 20_000, "tcp_blast server");
  return child;
}

function stopServer(child: Deno.ChildProcess): Promise<unknown> {
  try {
    child.kill("SIGKILL");
  } catch {
    // already gone
  }
  return child.status;
}

function hostText(version: 4 | 6, subnet: number, host: number): string {
  return version === 4 ? `198.19.${subnet}.${host}` : `fd00:${subnet.toString(16)}::${host}`;
}

Deno.test({
  name:
    "TCP through two offloading TUNs: super-packets are split within the limit and merged again, bytes intact",
  ...ROOT_ONLY,
  fn: async (t) => {
    // 1000 is below the MSS (1460 at MTU 1500): the reader must make
    // smaller segments than the kernel's gso_size.
    await withPair(1000, async (pair) => {
      assert(pair.a.offload !== "off", `offloads refused: ${pair.a.offload}`);
      const server = await startServer(pair.nsB, 5201);
      try {
        for (const version of [4, 6] as const) {
          await t.step(`IPv${version}: 4 MB with SHA-256`, async () => {
            const readBefore = pair.a.stats.readSuperPackets;
            const mergedBefore = pair.b.stats.writeSuperPackets;
            const result = await runTool(pair.nsA, [
              `${TOOLS}tcp_blast.ts`,
              "client",
              "--host",
              hostText(version, pair.subnet, 2),
              "--port",
              "5201",
              "--bytes",
              String(4 * 1024 * 1024),
              "--timeout-ms",
              "30000",
            ], 40_000) as { ok: boolean; bytes: number };
            assertEquals([result.ok, result.bytes], [true, 4 * 1024 * 1024]);
            assertEquals(pair.problems, []);
            assert(pair.largestFromA <= 1000, `largest ${pair.largestFromA}`);
            assert(pair.largestFromA > 900, `largest ${pair.largestFromA}: the limit was not used`);
            assert(
              pair.a.stats.readSuperPackets > readBefore,
              `no super-packet read: ${JSON.stringify(pair.a.stats)}`,
            );
            assert(
              pair.b.stats.writeSuperPackets > mergedBefore,
              `no super-packet written: ${JSON.stringify(pair.b.stats)}`,
            );
            assertEquals(pair.a.stats.readOffloadErrors, 0);
            assertEquals(pair.b.stats.writeErrors, 0);
          });
        }
      } finally {
        await stopServer(server);
      }
    });
  },
});

/** struct sockaddr_in / sockaddr_in6 for `address` (4 or 16 bytes) and `port`. */
function sockaddr(address: Uint8Array, port: number): Uint8Array<ArrayBuffer> {
  const v6 = address.length === 16;
  const out = new Uint8Array(v6 ? 28 : 16);
  const view = new DataView(out.buffer);
  view.setUint16(0, v6 ? AF_INET6 : AF_INET, true);
  view.setUint16(2, port);
  out.set(address, v6 ? 8 : 4);
  return out;
}

/** A non-blocking UDP socket in `ns`, bound to `address`:`port`. */
function udpSocket(ns: string, address: Uint8Array, port: number): number {
  return inNetns(ns, () => {
    const c = libc();
    const family = address.length === 16 ? AF_INET6 : AF_INET;
    const fd = check(c.socket(family, SOCK_DGRAM | SOCK_CLOEXEC | 0o4000, 0), "socket()");
    const bound = sockaddr(address, port);
    if (c.bind(fd, bound, bound.length) < 0) {
      const code = errno();
      closeQuietly(fd);
      throw new Error(`bind() failed: errno ${code}`);
    }
    return fd;
  });
}

/** Receives datagrams on `fd` until `count` arrived or `ms` passed. */
async function receiveDatagrams(fd: number, count: number, ms: number): Promise<Uint8Array[]> {
  const c = libc();
  const got: Uint8Array[] = [];
  const buffer = new Uint8Array(65536);
  const pollfds = encodePollfds([fd], POLLIN);
  const deadline = Date.now() + ms;
  while (got.length < count && Date.now() < deadline) {
    const n = Number(c.recv(fd, buffer, BigInt(buffer.length), 0));
    if (n >= 0) {
      got.push(buffer.slice(0, n));
      continue;
    }
    if (errno() !== EAGAIN) throw new Error(`recv() failed: errno ${errno()}`);
    c.poll(pollfds, 1n, 0);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return got;
}

/** `udpPacket()` with IPv4 identification `id` (a run of them may be merged). */
function udpPacketWithId(
  local: Uint8Array,
  remote: Uint8Array,
  port: number,
  payload: Uint8Array,
  id: number,
): Uint8Array {
  const packet = udpPacket(local, remote, 4000, port, payload);
  if (local.length === 4) {
    packet[4] = id >> 8;
    packet[5] = id & 0xff;
    packet[10] = 0;
    packet[11] = 0;
    let sum = 0;
    for (let i = 0; i < 20; i += 2) sum += (packet[i] << 8) | packet[i + 1];
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    packet[10] = (~sum >> 8) & 0xff;
    packet[11] = ~sum & 0xff;
  }
  return packet;
}

function datagramPayload(index: number, length: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (index * 31 + i * 7) & 0xff;
  return out;
}

Deno.test({
  name: "UDP through an offloading TUN: a UDP_SEGMENT send is split, merged writes arrive whole",
  ...ROOT_ONLY,
  fn: async (t) => {
    await withPair(1400, async (pair) => {
      const segment = 1200;
      const count = 10;
      const uso = skipUnless(
        pair.a.offload === "tso+uso",
        `this kernel's TUN does not take USO (offloads granted: ${pair.a.offload}), so UDP_SEGMENT sends cannot be checked`,
        "run on Linux 6.2 or later",
      );
      for (const version of [4, 6] as const) {
        const local = version === 4 ? v4(pair.subnet, 1) : v6(pair.subnet, 1);
        const remote = version === 4 ? v4(pair.subnet, 2) : v6(pair.subnet, 2);
        await t.step({
          name: `IPv${version}: one send of ${count} segments becomes ${count} datagrams`,
          ...uso,
          fn: async () => {
            const receiver = udpSocket(pair.nsB, remote, 7000 + version);
            const sender = udpSocket(pair.nsA, local, 0);
            try {
              const size = new Int32Array([segment]);
              check(
                libc().setsockopt(sender, SOL_UDP, UDP_SEGMENT, size, 4),
                "setsockopt(UDP_SEGMENT)",
              );
              const payload = new Uint8Array(segment * count);
              for (let i = 0; i < count; i++) payload.set(datagramPayload(i, segment), i * segment);
              const to = sockaddr(remote, 7000 + version);
              const superBefore = pair.a.stats.readSuperPackets;
              const sent = Number(
                libc().sendto(sender, payload, BigInt(payload.length), 0, to, to.length),
              );
              assertEquals(sent, payload.length);
              const got = await receiveDatagrams(receiver, count, 5000);
              assertEquals(got.length, count);
              for (let i = 0; i < count; i++) assertEquals(got[i], datagramPayload(i, segment));
              assertEquals(pair.a.stats.readSuperPackets, superBefore + 1);
              assertEquals(pair.problems, []);
            } finally {
              closeQuietly(sender);
              closeQuietly(receiver);
            }
          },
        });
        await t.step(
          `IPv${version}: a burst of datagrams written to the TUN arrives whole`,
          async () => {
            const port = 7100 + version;
            const receiver = udpSocket(pair.nsB, remote, port);
            try {
              // The writer merges what queued while it was busy, so a burst
              // may go out unmerged when the worker keeps pace; up to 10
              // bursts, each of which must arrive whole.
              const burst = 32;
              const mergedBefore = pair.b.stats.writeMergedPackets;
              for (let round = 0; round < 10; round++) {
                // Built first, then written back to back, so that they queue together.
                const packets = Array.from(
                  { length: burst },
                  (_, i) => udpPacketWithId(local, remote, port, datagramPayload(i, 1000), i),
                );
                for (const packet of packets) assert(pair.b.writePacket(packet));
                const got = await receiveDatagrams(receiver, burst, 5000);
                assertEquals(got.length, burst);
                for (let i = 0; i < burst; i++) assertEquals(got[i], datagramPayload(i, 1000));
                if (pair.b.stats.writeMergedPackets > mergedBefore) break;
              }
              if (pair.b.offload === "tso+uso") {
                assert(
                  pair.b.stats.writeMergedPackets > mergedBefore,
                  `nothing merged: ${JSON.stringify(pair.b.stats)}`,
                );
              }
            } finally {
              closeQuietly(receiver);
            }
          },
        );
      }
    });
  },
});

Deno.test({
  name: "openTun() without offload keeps plain packets and says so",
  ...ROOT_ONLY,
  fn: () => {
    const device = openTun(uniqueName(), { mtu: 1500 });
    try {
      assertEquals(device.offload, "off");
      device.setPacketLimit(1000); // ignored without offloads, must not throw
    } finally {
      device.close();
    }
  },
});
