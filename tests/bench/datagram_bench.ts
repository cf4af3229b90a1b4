/**
 * Micro-benchmark of one QUIC datagram through Deno's API (not a test):
 *
 *   deno run --unstable-net --allow-all tests/bench/datagram_bench.ts [seconds] [rate]
 *
 * A sender on the main thread and a receiver in a Worker (each with its own
 * QUIC endpoint, so each runs its own thread's event loop, quinn and UDP
 * socket) on 127.0.0.1. For a few seconds per variant, on a fresh
 * connection each, the sender sends 1350-byte datagrams at a fixed rate
 * (default 50,000 a second, about what a one-stream TCP upload through the
 * tunnel makes) in bursts, one per turn of the event loop, with at most
 * 2048 sends waiting (as `H3Connection.sendRawDatagram` does); the receiver
 * reads them in a loop.
 * Reported per datagram: the CPU time of the sending thread and of the
 * receiving thread (utime + stime of `/proc/self/task/TID/stat`, so both
 * include quinn, TLS and the UDP system calls that run on that thread),
 * and the share of datagrams that arrived.
 *
 * Variants of the send side:
 * - `alloc + copy`: a new buffer per datagram, the header written and the
 *   packet copied in (what `ConnectIpSession.sendPacket` did);
 * - `in place`: the header written in front of the packet in a reused
 *   buffer and that view sent (possible because Deno copies the bytes
 *   before `sendDatagram` returns: `buf.to_vec()` in the op, which
 *   deno_core polls once at the call);
 * - `no .then`: as `in place`, without a callback per send (the bound on
 *   waiting sends is then not kept; the floor of the op itself).
 *
 * @module
 */
import { testCerts } from "../support/certs.ts";

const PAYLOAD_BYTES = 1350;
const MAX_WAITING = 2048;
const SECONDS = Number(Deno.args[0] ?? 3);
/** Datagrams per second offered. */
const RATE = Number(Deno.args[1] ?? 50_000);
const CLOCK_TICKS_PER_SECOND = 100;

/** CPU seconds (user + system) of thread `tid` of this process. */
function threadCpuSeconds(tid: number): number {
  const stat = Deno.readTextFileSync(`/proc/self/task/${tid}/stat`);
  // Fields after the command name (which may hold spaces) start after ") ".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/** The thread id of the calling thread (gettid via /proc/thread-self). */
function currentTid(): number {
  return Number(Deno.readLinkSync("/proc/thread-self").split("/").pop());
}

interface ReceiverStart {
  certPem: string;
  keyPem: string;
}

type ReceiverMessage =
  | { type: "listening"; port: number; tid: number }
  | { type: "count"; received: number; cpu: number };

/** The Worker: accepts one connection and reads datagrams, answering "count" on request. */
function runReceiver(): void {
  const scope = globalThis as unknown as {
    onmessage: ((event: MessageEvent) => void) | null;
    postMessage(message: ReceiverMessage): void;
  };
  let received = 0;
  const tid = currentTid();
  scope.onmessage = async (event: MessageEvent<ReceiverStart | "count">) => {
    if (event.data === "count") {
      scope.postMessage({ type: "count", received, cpu: threadCpuSeconds(tid) });
      return;
    }
    const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
    const listener = endpoint.listen({
      alpnProtocols: ["bench"],
      cert: event.data.certPem,
      key: event.data.keyPem,
    });
    scope.postMessage({ type: "listening", port: endpoint.addr.port, tid });
    for await (const incoming of listener) {
      void (async () => {
        const conn = await incoming.accept();
        try {
          for (;;) {
            await conn.readDatagram();
            received++;
          }
        } catch {
          // connection closed
        }
      })();
    }
  };
}

if ("WorkerGlobalScope" in globalThis) {
  runReceiver();
} else if (import.meta.main) {
  await main();
}

async function main(): Promise<void> {
  const certs = await testCerts();
  const worker = new Worker(import.meta.url, { type: "module" });
  const messages: ((message: ReceiverMessage) => void)[] = [];
  worker.onmessage = (event: MessageEvent<ReceiverMessage>) => messages.shift()?.(event.data);
  const next = () => new Promise<ReceiverMessage>((resolve) => messages.push(resolve));
  const listening = next();
  worker.postMessage({ certPem: certs.certPem, keyPem: certs.keyPem });
  const ready = await listening;
  if (ready.type !== "listening") throw new Error("receiver did not start");
  const connect = () =>
    Deno.connectQuic({
      hostname: "127.0.0.1",
      port: ready.port,
      alpnProtocols: ["bench"],
      caCerts: [certs.caPem],
      serverName: "localhost",
    });
  const count = async () => {
    const reply = next();
    worker.postMessage("count");
    const message = await reply;
    if (message.type !== "count") throw new Error("unexpected reply");
    return message;
  };
  const mainTid = Deno.pid;
  const packet = new Uint8Array(PAYLOAD_BYTES - 2).fill(0x45);
  const reused = new Uint8Array(PAYLOAD_BYTES);
  reused.set(packet, 2);

  type Variant = "alloc + copy" | "in place" | "no .then";
  const run = async (variant: Variant, report = true) => {
    const conn = await connect();
    let waiting = 0;
    let sent = 0;
    let dropped = 0;
    const settled = () => {
      waiting--;
    };
    await new Promise((resolve) => setTimeout(resolve, 200));
    const before = await count();
    const cpuBefore = threadCpuSeconds(mainTid);
    const started = performance.now();
    const deadline = started + SECONDS * 1000;
    for (let now = started; now < deadline; now = performance.now()) {
      // What is due by now, as one burst (a TUN batch), then a turn of the event loop.
      const due = Math.floor((now - started) / 1000 * RATE) - sent - dropped;
      for (let k = 0; k < due; k++) {
        if (variant !== "no .then" && waiting >= MAX_WAITING) {
          dropped++;
          continue;
        }
        let datagram: Uint8Array;
        if (variant === "alloc + copy") {
          datagram = new Uint8Array(2 + packet.length);
          datagram[0] = 0x00;
          datagram[1] = 0x00;
          datagram.set(packet, 2);
        } else {
          reused[0] = 0x00;
          reused[1] = 0x00;
          datagram = reused;
        }
        const promise = conn.sendDatagram(datagram);
        if (variant === "no .then") {
          promise.catch(() => {});
        } else {
          waiting++;
          promise.then(settled, settled);
        }
        sent++;
      }
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    const cpuSend = threadCpuSeconds(mainTid) - cpuBefore;
    await new Promise((resolve) => setTimeout(resolve, 300));
    const after = await count();
    conn.close();
    const received = after.received - before.received;
    const cpuReceive = after.cpu - before.cpu;
    if (!report) return;
    console.log(
      `${variant.padEnd(13)} sent ${String(sent).padStart(8)}  dropped at the bound ${
        String(dropped).padStart(7)
      }  arrived ${(100 * received / Math.max(1, sent)).toFixed(1).padStart(5)}%  send ${
        (cpuSend / Math.max(1, sent) * 1e6).toFixed(2).padStart(5)
      } µs  receive ${(cpuReceive / Math.max(1, received) * 1e6).toFixed(2).padStart(5)} µs`,
    );
  };
  console.log(
    `${PAYLOAD_BYTES}-byte datagrams at ${RATE} a second, ${SECONDS} s per variant; CPU per ` +
      "datagram of the sending (main) and receiving (Worker) thread",
  );
  await run("alloc + copy", false); // warm-up: JIT, first connection
  for (let round = 0; round < 2; round++) {
    for (const variant of ["alloc + copy", "in place", "no .then"] as const) await run(variant);
  }
  worker.terminate();
}
