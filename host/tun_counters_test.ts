import { assertEquals } from "../tests/support/assert.ts";
import { CounterRegistry } from "../shared/counters.ts";
import type { TunStats } from "../ffi/tun_linux.ts";
import { countTun } from "./tun_counters.ts";

Deno.test("countTun() reads the TUN's counters at each snapshot, zeros without a TUN", () => {
  const registry = new CounterRegistry();
  const tun: { stats?: TunStats } = {};
  countTun(registry, () => tun.stats);
  assertEquals(registry.value("tun_write_drops_total"), 0);
  tun.stats = {
    readPackets: 10,
    readBatches: 2,
    writtenPackets: 7,
    writeErrors: 1,
    writeDrops: 1,
    lastWriteErrno: 5,
    oversizePackets: 3,
    readerRestarts: 0,
    writerRestarts: 0,
    writeRingFullEpisodes: 0,
    readSuperPackets: 4,
    readOffloadErrors: 0,
    writeSuperPackets: 2,
    writeMergedPackets: 9,
  };
  const snapshot = registry.snapshot();
  assertEquals(snapshot.tun_read_packets_total, 10);
  assertEquals(snapshot.tun_written_packets_total, 7);
  assertEquals(snapshot.tun_write_drops_total, 1);
  assertEquals(snapshot.tun_oversize_packets_total, 3);
  assertEquals(snapshot.tun_last_write_errno, 5);
  assertEquals(snapshot.tun_read_super_packets_total, 4);
  assertEquals(snapshot.tun_write_merged_packets_total, 9);
  assertEquals(registry.family("tun_last_write_errno")?.kind, "gauge");
});
