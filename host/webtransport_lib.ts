/**
 * Loads `npm:@fails-components/webtransport` (pinned: the relay reaches
 * into its HTTP/2 server, see `relay/webtransport.ts`) for both programs.
 *
 * Only its WebTransport over HTTP/2 is used. Its HTTP/3 part is another
 * package (`@fails-components/webtransport-transport-http3-quiche`) that
 * downloads a prebuilt binary when installed, which fails on machines
 * without GitHub access; version 1.6.8 of the main package does not depend
 * on it (not even optionally), so nothing installs it and `deno install`
 * never runs its script. On import the main package tries to load it
 * anyway and prints "Problem loading http3-quiche transport" with a stack
 * trace; those lines are turned into one debug line here. Its `debug`
 * dependency lists the whole environment on import (`Object.keys(process.env)`),
 * which the programs' `--allow-env` lists do not allow, so it is shown an
 * empty environment while it loads.
 *
 * @module
 */

import process from "node:process";
import type { Logger } from "../shared/log.ts";

/** The package's module (its types come with it). */
export type WebTransportLib = typeof import("npm:@fails-components/webtransport@1.6.8");

let loading: Promise<WebTransportLib> | undefined;

/** The library's lines about its missing HTTP/3 part. */
function isQuicheNoise(args: unknown[]): boolean {
  const text = args.map((a) => (a instanceof Error ? a.message : String(a))).join(" ");
  return text.includes("http3-quiche") || text.includes("http3 loader");
}

/**
 * Imports the library once per process, with its complaints about the
 * missing HTTP/3 part sent to `log` at debug level instead of the console.
 */
export function loadWebTransportLib(log: Logger): Promise<WebTransportLib> {
  loading ??= (async () => {
    const original = { log: console.log, error: console.error };
    let told = false;
    const quiet = (write: (...args: unknown[]) => void) => (...args: unknown[]) => {
      if (!isQuicheNoise(args)) write(...args);
      else if (!told) {
        told = true;
        log.debug(
          "WebTransport over HTTP/3 is not available (its native package is not installed)",
        );
      }
    };
    console.log = quiet(original.log);
    console.error = quiet(original.error);
    const env = process.env;
    Object.defineProperty(process, "env", { value: {}, configurable: true, writable: true });
    try {
      const lib = await import("npm:@fails-components/webtransport@1.6.8");
      // The HTTP/3 part's import fails a few turns later; wait for it.
      await lib.quicheLoaded;
      await new Promise((resolve) => setTimeout(resolve, 10));
      return lib;
    } finally {
      Object.defineProperty(process, "env", { value: env, configurable: true, writable: true });
      console.log = original.log;
      console.error = original.error;
    }
  })();
  return loading;
}
