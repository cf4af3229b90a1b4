/**
 * The process's own figures as collected families of a registry: memory
 * (`Deno.memoryUsage()`), CPU time (`node:process` `cpuUsage()`), start
 * time and open file descriptors, with the names Prometheus client
 * libraries use (`process_resident_memory_bytes`, `process_cpu_seconds_total`).
 *
 * @module
 */

import { cpuUsage } from "node:process";
import type { CounterRegistry } from "../shared/counters.ts";

/** Registers the process families in `registry`; they are read at each snapshot. */
export function countProcess(registry: CounterRegistry): void {
  const start = Date.now() / 1000 - performance.now() / 1000;
  registry.gauge("process_resident_memory_bytes", {
    help: "Resident memory size in bytes",
    collect: () => Deno.memoryUsage().rss,
  });
  registry.gauge("process_heap_bytes", {
    help: "JavaScript heap in use and reserved, bytes",
    labels: [{ name: "state", values: ["used", "total"] }],
    collect: () => {
      const memory = Deno.memoryUsage();
      return { used: memory.heapUsed, total: memory.heapTotal };
    },
  });
  registry.gauge("process_external_memory_bytes", {
    help: "Memory of buffers and other objects outside the JavaScript heap, bytes",
    collect: () => Deno.memoryUsage().external,
  });
  registry.counter("process_cpu_seconds_total", {
    help: "User and system CPU time spent, seconds",
    collect: () => {
      const { user, system } = cpuUsage();
      return (user + system) / 1e6;
    },
  });
  registry.gauge("process_start_time_seconds", {
    help: "Start time of the process since the Unix epoch, seconds",
    collect: () => Math.round(start),
  });
  registry.gauge("process_open_fds", {
    help: "Open file descriptors",
    collect: () => {
      let count = 0;
      try {
        for (const _ of Deno.readDirSync("/proc/self/fd")) count++;
      } catch {
        return NaN;
      }
      return count;
    },
  });
}
