/**
 * What both entry points (`client/main.ts`, `relay/main.ts`) do around
 * their core: undo setup in reverse order on every exit path, wait for
 * SIGINT or SIGTERM, and write a JSON status file every 2 s.
 *
 * @module
 */

import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";

/**
 * Steps that undo setup, run in reverse order of {@linkcode push} by
 * {@linkcode run}. A step that fails is logged and the rest still run.
 */
export class CleanupStack {
  readonly #steps: (() => void | Promise<void>)[] = [];
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  /**
   * Adds a step, to run before every step pushed earlier; with
   * `options.last`, after all of them (signal listeners, so that a second
   * Ctrl-C during cleanup does not cut it short).
   */
  push(step: () => void | Promise<void>, options: { last?: boolean } = {}): void {
    if (options.last) this.#steps.unshift(step);
    else this.#steps.push(step);
  }

  /** Runs every step once, newest first; safe to call again (then nothing is left to run). */
  async run(): Promise<void> {
    while (this.#steps.length > 0) {
      try {
        await this.#steps.pop()!();
      } catch (error) {
        this.#log.warn("cleanup step failed", { error: errorMessage(error) });
      }
    }
  }
}

/**
 * Resolves with the name of the first SIGINT or SIGTERM. The listeners are
 * removed by the last step of `cleanups`: until then further signals are
 * ignored rather than ending the process half way through cleaning up.
 */
export function untilSignal(cleanups: CleanupStack): Promise<string> {
  return new Promise((resolve) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      const handler = () => resolve(signal);
      Deno.addSignalListener(signal, handler);
      cleanups.push(() => Deno.removeSignalListener(signal, handler), { last: true });
    }
  });
}

/** Signals as they come: {@linkcode SignalWatch.next} resolves with the next one's name. */
export interface SignalWatch {
  next(): Promise<string>;
}

/**
 * Watches `signals` until the last step of `cleanups`: each call of
 * `next()` waits for the next signal (one that came while nobody waited is
 * kept). The relay drains on the first SIGTERM and exits at once on the
 * second.
 */
export function watchSignals(
  cleanups: CleanupStack,
  signals: readonly Deno.Signal[] = ["SIGINT", "SIGTERM"],
): SignalWatch {
  const queued: string[] = [];
  let waiting: ((signal: string) => void) | undefined;
  for (const signal of signals) {
    const handler = () => {
      if (waiting) {
        const wake = waiting;
        waiting = undefined;
        wake(signal);
      } else queued.push(signal);
    };
    Deno.addSignalListener(signal, handler);
    cleanups.push(() => Deno.removeSignalListener(signal, handler), { last: true });
  }
  return {
    next: () =>
      queued.length > 0
        ? Promise.resolve(queued.shift()!)
        : new Promise((resolve) => waiting = resolve),
  };
}

/** How often the status file is written, milliseconds. */
export const STATUS_INTERVAL_MS = 2000;

/**
 * Writes `status()` as pretty JSON to `file` every {@linkcode STATUS_INTERVAL_MS},
 * with the process's memory added (`memory`: `Deno.memoryUsage()`, bytes:
 * resident set, V8 heap, and memory outside it such as ArrayBuffers); the
 * timer is cleared by a step pushed on `cleanups`. A failing write (a
 * missing `--allow-write=FILE`, say) is logged once per run of failures.
 */
export function writeStatusFile(
  file: string,
  status: () => Record<string, unknown>,
  cleanups: CleanupStack,
  log: Logger,
): void {
  let failing = false;
  const timer = setInterval(() => {
    const text = JSON.stringify({ ...status(), memory: Deno.memoryUsage() }, null, 2);
    Deno.writeTextFile(file, text + "\n").then(
      () => failing = false,
      (error) => {
        if (!failing) log.warn("cannot write status file", { file, error: errorMessage(error) });
        failing = true;
      },
    );
  }, STATUS_INTERVAL_MS);
  cleanups.push(() => clearInterval(timer));
}
