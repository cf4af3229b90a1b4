/**
 * The TUN device's counters (`TunDevice.stats`, kept by `ffi/tun_linux.ts`,
 * which imports nothing from the registry) as families of a process's
 * counter registry, read when a snapshot is taken.
 *
 * @module
 */

import type { CounterRegistry } from "../shared/counters.ts";
import type { TunStats } from "../ffi/tun_linux.ts";

/** Each counter of {@linkcode TunStats}: its name in the registry and its help text. */
const TUN_COUNTERS: Readonly<Record<Exclude<keyof TunStats, "lastWriteErrno">, string>> = {
  readPackets: "tun_read_packets_total Packets read from the TUN",
  readBatches: "tun_read_batches_total Non-empty batches read from the TUN",
  writtenPackets: "tun_written_packets_total Packets the kernel accepted from the TUN writer",
  writeErrors:
    "tun_write_errors_total Packets refused: by the kernel, a closed device, or over 65535 bytes",
  writeDrops:
    "tun_write_drops_total Packets the writer ring could not take (full, or left when it closed or restarted)",
  oversizePackets: "tun_oversize_packets_total Packets written that were longer than the TUN MTU",
  readerRestarts: "tun_reader_restarts_total Restarts of the TUN reader worker",
  writerRestarts: "tun_writer_restarts_total Restarts of the TUN writer worker",
  writeRingFullEpisodes:
    "tun_write_ring_full_episodes_total Runs of writer ring drops (each ends after a watchdog period without one)",
  readSuperPackets: "tun_read_super_packets_total Offloads: GSO super-packets read and split",
  readOffloadErrors:
    "tun_read_offload_errors_total Offloads: reads dropped because they could not be split",
  writeSuperPackets: "tun_write_super_packets_total Offloads: super-packets the writer merged",
  writeMergedPackets:
    "tun_write_merged_packets_total Offloads: packets that went into those super-packets",
};

/**
 * Registers the TUN's counters in `registry`, read from `stats()` at each
 * snapshot (a function, so a TUN opened later or replaced is followed;
 * zeros while there is none).
 */
export function countTun(registry: CounterRegistry, stats: () => TunStats | undefined): void {
  for (const [field, text] of Object.entries(TUN_COUNTERS)) {
    const space = text.indexOf(" ");
    registry.counter(text.slice(0, space), {
      help: text.slice(space + 1),
      collect: () => stats()?.[field as keyof TunStats] ?? 0,
    });
  }
  registry.gauge("tun_last_write_errno", {
    help: "errno of the TUN's last refused write, 0 if none",
    collect: () => stats()?.lastWriteErrno ?? 0,
  });
}
