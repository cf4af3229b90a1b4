/**
 * Container health check of the relay and client images (`HEALTHCHECK`).
 *
 * ```
 * deno run --allow-read=/run/masque-vpn healthcheck.ts --status-file FILE [--max-age SEC]
 * deno run --allow-net=127.0.0.1:9464 healthcheck.ts --url http://127.0.0.1:9464/healthz
 * ```
 *
 * - `--url`: healthy when a GET answers 2xx within `--timeout` seconds
 *   (default 3). The images use it on the admin endpoint they start on
 *   their loopback (`--admin 127.0.0.1:9464`): the relay's `/healthz`, the
 *   client's `/readyz` (200 while its session is up).
 * - `--status-file`: healthy while the program keeps rewriting its JSON status
 *   file (every 2 s): the file parses as a JSON object and was modified less
 *   than `--max-age` seconds ago (default 10). A hung event loop or a dead
 *   tunnel loop stops the writes. For a program run without `--admin`.
 *
 * Prints one line saying why, exits 0 (healthy) or 1 (unhealthy), as Docker
 * expects; 2 for bad arguments.
 *
 * @module
 */
import { parseArgs } from "node:util";

/** Verdict of a check: healthy or not, and why. */
export interface Health {
  readonly healthy: boolean;
  readonly reason: string;
}

/**
 * Judges a status file from its text and age: healthy when `text` is a JSON
 * object and `ageMs` (milliseconds since its last write) is at most `maxAgeMs`.
 */
export function judgeStatusFile(text: string, ageMs: number, maxAgeMs: number): Health {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return {
      healthy: false,
      reason: `status file is not JSON: ${error instanceof Error ? error.message : error}`,
    };
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return { healthy: false, reason: "status file does not hold a JSON object" };
  }
  if (ageMs > maxAgeMs) {
    return {
      healthy: false,
      reason: `status file last written ${(ageMs / 1000).toFixed(1)} s ago (limit ${
        maxAgeMs / 1000
      } s)`,
    };
  }
  return { healthy: true, reason: `status file written ${(ageMs / 1000).toFixed(1)} s ago` };
}

/** Checks the status file at `path` (see {@linkcode judgeStatusFile}); a missing file is unhealthy. */
export async function checkStatusFile(
  path: string,
  maxAgeMs: number,
  now: number = Date.now(),
): Promise<Health> {
  let text: string;
  let mtime: Date | null;
  try {
    [text, mtime] = await Promise.all([
      Deno.readTextFile(path),
      Deno.stat(path).then((info) => info.mtime),
    ]);
  } catch (error) {
    return {
      healthy: false,
      reason: `cannot read status file ${path}: ${error instanceof Error ? error.message : error}`,
    };
  }
  if (mtime === null) return { healthy: false, reason: `no modification time for ${path}` };
  return judgeStatusFile(text, Math.max(0, now - mtime.getTime()), maxAgeMs);
}

/** GETs `url`; healthy on a 2xx answer within `timeoutMs` milliseconds. */
export async function checkUrl(url: string, timeoutMs: number): Promise<Health> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await response.body?.cancel();
    return response.ok
      ? { healthy: true, reason: `${url} answered ${response.status}` }
      : { healthy: false, reason: `${url} answered ${response.status}` };
  } catch (error) {
    return {
      healthy: false,
      reason: `GET ${url} failed: ${error instanceof Error ? error.message : error}`,
    };
  }
}

function positiveSeconds(text: string | undefined, name: string, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`${name} must be a positive number of seconds, got "${text}"`);
  }
  return value;
}

if (import.meta.main) {
  let health: Health;
  try {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        "status-file": { type: "string" },
        "max-age": { type: "string" },
        url: { type: "string" },
        timeout: { type: "string" },
      },
    });
    if ((values["status-file"] === undefined) === (values.url === undefined)) {
      throw new Error("give exactly one of --status-file FILE and --url URL");
    }
    health = values.url !== undefined
      ? await checkUrl(values.url, positiveSeconds(values.timeout, "--timeout", 3) * 1000)
      : await checkStatusFile(
        values["status-file"]!,
        positiveSeconds(values["max-age"], "--max-age", 10) * 1000,
      );
  } catch (error) {
    console.error(`healthcheck: ${error instanceof Error ? error.message : error}`);
    Deno.exit(2);
  }
  console.log(`${health.healthy ? "healthy" : "unhealthy"}: ${health.reason}`);
  Deno.exit(health.healthy ? 0 : 1);
}
