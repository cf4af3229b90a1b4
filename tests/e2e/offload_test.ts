/**
 * End to end, TUN offloads: 10 MB of TCP each way (client to target and
 * target to client), checked by SHA-256, through the tunnel in datagram
 * mode with `--tun-offload on` (the default) and with `--tun-offload off`
 * on both programs (the fallback for kernels without offloads). With them
 * on, the counters show that super-packets were really read and written
 * on both sides; with them off, that none were. Needs root; skipped
 * otherwise.
 */
import { assert, assertEquals } from "../support/assert.ts";
import { createTopology, needsNamespaces } from "../support/netns.ts";
import type { Topology } from "../support/netns.ts";
import { counter, startClient, startRelay } from "../support/vpn.ts";
import type { ClientProcess, RelayProcess, RelayStatus } from "../support/vpn.ts";

const TOOLS = new URL("./tools/", import.meta.url).pathname;
const BYTES = 10 * 1024 * 1024;
const UPLOAD_PORT = 5201;
const DOWNLOAD_PORT = 5202;
const needs = await needsNamespaces();

async function startServers(topo: Topology): Promise<void> {
  const deno = Deno.execPath();
  const tool = `${TOOLS}tcp_blast.ts`;
  const up = topo.spawn("target", [deno, "run", "--allow-net", tool, "server", "--port", "5201"], {
    name: "tcp_blast_up",
  });
  const down = topo.spawn(
    "target",
    [deno, "run", "--allow-net", tool, "server", "--port", String(DOWNLOAD_PORT), "--send"],
    { name: "tcp_blast_down" },
  );
  await up.waitForLog(/"ready":true/, 15_000);
  await down.waitForLog(/"ready":true/, 15_000);
}

/** 10 MB one way through the tunnel; returns tcp_blast's result line. */
async function transfer(topo: Topology, direction: "up" | "down") {
  const run = await topo.run("client", [
    Deno.execPath(),
    "run",
    "--allow-net",
    `${TOOLS}tcp_blast.ts`,
    "client",
    ...["--host", topo.target4, "--bytes", String(BYTES), "--timeout-ms", "60000"],
    ...(direction === "up"
      ? ["--port", String(UPLOAD_PORT)]
      : ["--port", String(DOWNLOAD_PORT), "--receive"]),
  ], { check: false, timeoutMs: 70_000 });
  const result = JSON.parse(run.stdout.trim().split("\n").pop() ?? "{}");
  assertEquals(result.ok, true, `TCP ${direction} failed: ${run.stdout}${run.stderr}`);
  assertEquals(result.bytes, BYTES);
  return result as { ok: true; bytes: number; sha256: string; seconds: number; mbps: number };
}

/** The client's and relay's offload counters, once their status files show the transfer. */
async function counters(client: ClientProcess, relay: RelayProcess) {
  // Both write their status every 2 s.
  await new Promise((resolve) => setTimeout(resolve, 2_500));
  const c = await client.status();
  const r: RelayStatus = await relay.status();
  return {
    clientRead: counter(c, "tun_read_super_packets_total"),
    clientWritten: counter(c, "tun_write_super_packets_total"),
    clientErrors: counter(c, "tun_read_offload_errors_total"),
    relayRead: counter(r, "tun_read_super_packets_total"),
    relayWritten: counter(r, "tun_write_super_packets_total"),
    relayErrors: counter(r, "tun_read_offload_errors_total"),
  };
}

for (const offload of ["on", "off"] as const) {
  Deno.test({
    name: `e2e datagram mode, --tun-offload ${offload}: 10 MB TCP each way, SHA-256 checked`,
    ...needs,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const topo = await createTopology({ id: `e2e-offload-${offload}` });
      try {
        await startServers(topo);
        const args = ["--tun-offload", offload];
        const relay = await startRelay(topo, args);
        const client = await startClient(topo, relay, { extraArgs: args });
        await relay.process.waitForLog(
          new RegExp(`tunOffload=${offload === "on" ? "tso" : "off"}`),
          1000,
        );

        const up = await transfer(topo, "up");
        const afterUp = await counters(client, relay);
        const down = await transfer(topo, "down");
        const afterDown = await counters(client, relay);
        console.log(
          `  --tun-offload ${offload}: up ${up.mbps} Mbit/s, down ${down.mbps} Mbit/s; ` +
            `super-packets ${JSON.stringify(afterDown)}`,
        );
        assertEquals([afterDown.clientErrors, afterDown.relayErrors], [0, 0]);
        if (offload === "on") {
          // Upload: the client's kernel hands its TUN TSO super-packets, the
          // relay's writer merges segments again.
          assert(afterUp.clientRead > 0, `client read no super-packet: ${JSON.stringify(afterUp)}`);
          assert(
            afterUp.relayWritten > 0,
            `relay wrote no super-packet: ${JSON.stringify(afterUp)}`,
          );
          // Download: the target's TSO reaches the relay's TUN whole; the
          // client's writer merges.
          assert(
            afterDown.relayRead > afterUp.relayRead,
            `relay read no super-packet: ${JSON.stringify(afterDown)}`,
          );
          assert(
            afterDown.clientWritten > afterUp.clientWritten,
            `client wrote no super-packet: ${JSON.stringify(afterDown)}`,
          );
        } else {
          assertEquals(afterDown, {
            clientRead: 0,
            clientWritten: 0,
            clientErrors: 0,
            relayRead: 0,
            relayWritten: 0,
            relayErrors: 0,
          });
        }
      } catch (error) {
        for (const name of ["relay", "client"]) {
          const log = await Deno.readTextFile(`${topo.logDir}/${name}.log`).catch(() => "");
          if (log) console.error(`--- ${name}.log\n${log.split("\n").slice(-20).join("\n")}`);
        }
        throw error;
      } finally {
        await topo.teardown();
      }
    },
  });
}
