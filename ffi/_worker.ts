/**
 * The Worker side of the TUN loops ({@linkcode ./tun_worker.ts},
 * {@linkcode ./tun_writer_worker.ts}): run a synchronous loop on the first
 * message and post {@linkcode WorkerStopped} when it returns or throws.
 *
 * @module
 */

// The words both TUN rings (read and write) keep at the start of their
// control block, an Int32Array over the SharedArrayBuffer.
/** Index of HEAD: slots filled by the producer (a counter, wraps at 2^32). */
export const HEAD = 0;
/** Index of TAIL: slots released by the consumer (a counter). */
export const TAIL = 1;
/** Index of STATE: one of the STATE_ values. */
export const STATE = 2;
/** Index of STOP: set to 1 by the main thread to end the loop. */
export const STOP = 3;
/**
 * Index of BEAT: a counter the worker bumps each time it wakes from an idle
 * wait (at least every {@linkcode IDLE_CHECK_MS} while it is healthy). With
 * HEAD or TAIL it is how the main thread's watchdog sees progress.
 */
export const BEAT = 14;
/** Index of FAULT: a test hook, one of the FAULT_ values; 0 in production. */
export const FAULT = 15;
/** Size of the control block in bytes (slots start here). */
export const CONTROL_BYTES = 64;

/**
 * Longest a healthy worker sleeps (in poll(2) or Atomics.wait) before it
 * checks STOP and bumps BEAT again, in milliseconds.
 */
export const IDLE_CHECK_MS = 250;

/** FAULT: none. */
export const FAULT_NONE = 0;
/** FAULT (tests): the worker stops making progress, as if blocked in a system call, until STOP. */
export const FAULT_STALL = 1;
/** FAULT (tests): the worker's loop throws. */
export const FAULT_THROW = 2;

/** STATE: the worker has not looked at the ring yet. */
export const STATE_STARTING = 0;
/** STATE: the worker's loop runs. */
export const STATE_RUNNING = 1;
/** STATE: the worker no longer touches the fd or the ring. */
export const STATE_STOPPED = 2;

/**
 * Main thread: ends a worker's loop. Sets STOP; if the loop never started,
 * marks it STOPPED so that it never will; else calls `wake` (which makes the
 * worker see STOP) and waits up to `timeoutMs` for STATE to leave RUNNING.
 */
export function stopLoop(control: Int32Array, wake: () => void, timeoutMs: number): void {
  Atomics.store(control, STOP, 1);
  if (Atomics.compareExchange(control, STATE, STATE_STARTING, STATE_STOPPED) === STATE_STARTING) {
    return;
  }
  wake();
  const deadline = Date.now() + timeoutMs;
  while (Atomics.load(control, STATE) === STATE_RUNNING && Date.now() < deadline) {
    Atomics.wait(control, STATE, STATE_RUNNING, deadline - Date.now());
  }
}

/**
 * Worker: acts on a FAULT set by a test (see `injectTunFault` in
 * tun_linux.ts). STALL sleeps without bumping BEAT until STOP is set; THROW
 * throws. Called once per turn of a loop, only when FAULT is not 0.
 */
export function actOnFault(control: Int32Array): void {
  const fault = Atomics.load(control, FAULT);
  if (fault === FAULT_THROW) throw new Error("fault injected by a test");
  while (Atomics.load(control, FAULT) === FAULT_STALL && Atomics.load(control, STOP) === 0) {
    Atomics.wait(control, FAULT, FAULT_STALL, 50);
  }
}

/** What a TUN worker posts when its loop has ended. */
export interface WorkerStopped {
  /** Always "stopped". */
  readonly type: "stopped";
  /** Text of a JavaScript exception that ended the loop, if any. */
  readonly exception?: string;
}

/** The parts of a dedicated worker's global scope used here. */
interface WorkerScope {
  onmessage: ((event: MessageEvent) => void) | null;
  postMessage(message: WorkerStopped): void;
}

function isWorkerScope(scope: unknown): scope is WorkerScope {
  return typeof scope === "object" && scope !== null && "WorkerGlobalScope" in scope &&
    "postMessage" in scope;
}

/**
 * When this code runs in a Worker (not when the main thread or a test
 * imports the module), runs `loop` with the first message's data and posts
 * {@linkcode WorkerStopped} once it returns or throws.
 */
export function serveLoop<T>(loop: (start: T) => void): void {
  const scope: unknown = globalThis;
  if (!isWorkerScope(scope)) return;
  scope.onmessage = (event: MessageEvent) => {
    let exception: string | undefined;
    try {
      loop(event.data as T);
    } catch (error) {
      exception = error instanceof Error ? error.message : String(error);
    }
    scope.postMessage(
      exception === undefined ? { type: "stopped" } : { type: "stopped", exception },
    );
  };
}
