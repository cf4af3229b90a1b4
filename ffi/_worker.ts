/**
 * The Worker side of the TUN loops ({@linkcode ./tun_worker.ts},
 * {@linkcode ./tun_writer_worker.ts}): run a synchronous loop on the first
 * message and post {@linkcode WorkerStopped} when it returns or throws.
 *
 * @module
 */

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
