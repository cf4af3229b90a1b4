/**
 * Reading a {@linkcode CounterRegistry} in tests.
 *
 * @module
 */
import type { CounterRegistry, SnapshotValue } from "../../shared/counters.ts";

/**
 * The children of `name` below `labels` that are not zero, as
 * `{ labelValue: count }` (drop reasons, say), for exact comparisons.
 */
export function nonZero(
  registry: CounterRegistry,
  name: string,
  ...labels: string[]
): Record<string, number> {
  let node: SnapshotValue | undefined = registry.snapshot()[name];
  for (const label of labels) node = typeof node === "object" ? node[label] : undefined;
  const out: Record<string, number> = {};
  if (typeof node !== "object") return out;
  for (const [key, value] of Object.entries(node)) {
    if (typeof value !== "number") throw new Error(`Cannot list ${name}: ${key} has labels below`);
    if (value !== 0) out[key] = value;
  }
  return out;
}
