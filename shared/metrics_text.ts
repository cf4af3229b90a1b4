/**
 * The Prometheus text exposition format (version 0.0.4) of a
 * {@linkcode CounterRegistry}: what the admin endpoint's `/metrics` serves.
 * One rendering of the same families the status files snapshot, so the two
 * never disagree.
 *
 * For each family, in registration order: `# HELP name text` (backslash and
 * newline escaped), `# TYPE name counter|gauge|histogram`, then one line per
 * sample, `name{label="value",...} number`, label values escaped (backslash,
 * double quote, newline). A histogram gives `name_bucket{le="..."}` lines
 * (cumulative, `+Inf` last), `name_sum` and `name_count`. Label values come
 * from the registry, whose labels are declared or capped, so the output is
 * bounded whatever the peers send.
 *
 * prom-client (npm) was tried under Deno 2.9 and runs, but is not used: its
 * counters cannot be set, so every scrape would copy the registry into a
 * second set of metric objects by resetting and incrementing them, and its
 * default process metrics read wrong values under Deno (resident memory 0,
 * event loop lag `Nan`). The format is these few lines.
 *
 * @module
 */

import type { CounterRegistry, Family } from "./counters.ts";

/** The `Content-Type` of {@linkcode renderPrometheus}'s output. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Every family of `registry` in the Prometheus text format; ends with a newline. */
export function renderPrometheus(registry: CounterRegistry): string {
  const lines: string[] = [];
  for (const family of registry.families()) renderFamily(family, lines);
  return lines.join("\n") + "\n";
}

function renderFamily(family: Family, lines: string[]): void {
  lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`);
  lines.push(`# TYPE ${family.name} ${family.kind}`);
  if (family.kind === "histogram") {
    for (const { le, count } of family.buckets()) {
      lines.push(`${family.name}_bucket{le="${le}"} ${count}`);
    }
    lines.push(`${family.name}_sum ${formatNumber(family.sum)}`);
    lines.push(`${family.name}_count ${family.count}`);
    return;
  }
  const names = family.labels.map((label) => label.name);
  for (const sample of family.samples()) {
    const labels = sample.labels.length === 0
      ? ""
      : `{${sample.labels.map((value, i) => `${names[i]}="${escapeLabel(value)}"`).join(",")}}`;
    lines.push(`${family.name}${labels} ${formatNumber(sample.value)}`);
  }
}

/** A sample value as Prometheus writes it: integers plainly, `NaN`, `+Inf`, `-Inf`. */
export function formatNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function escapeHelp(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

function escapeLabel(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}
