/**
 * The relay's accept loop: incoming QUIC connections -> handshake limit and
 * total limit (refused before anything is read from them) -> `accept()` ->
 * per-source limit -> {@linkcode Relay.admitConnection}. `relay/main.ts` and
 * the integration tests run this same loop.
 *
 * @module
 */

import type { QuicConnLike } from "../shared/h3/quic.ts";
import { H3_INTERNAL_ERROR } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import type { PeerAddress, Relay } from "./relay.ts";

/** What the loop needs of a `Deno.QuicIncoming`. */
export interface QuicIncomingLike {
  accept(): QuicAcceptedLike | Promise<QuicAcceptedLike>;
  /** Refuses the connection (QUIC CONNECTION_REFUSED) without a handshake. */
  refuse(): void;
}

/** A connection `accept()` returned: `Deno.QuicConn` satisfies it. */
export interface QuicAcceptedLike extends QuicConnLike {
  readonly remoteAddr: PeerAddress;
}

/**
 * Serves every incoming connection of `listener` on `relay` until the
 * listener stops. Nothing is read from an incoming connection before
 * `accept()` (in Deno 2.9, reading its `remoteAddr` consumes it and
 * `accept()` then fails), so the limits that need no address (handshakes
 * in flight, connections in total) are applied first with `refuse()`, and
 * the per-source limit after the handshake on `conn.remoteAddr`. Never
 * throws for one connection's sake; rejects only if the listener does.
 */
export async function serveListener(
  relay: Relay,
  listener: AsyncIterable<QuicIncomingLike>,
  log: Logger,
): Promise<void> {
  for await (const incoming of listener) {
    if (!relay.beginHandshake()) {
      try {
        incoming.refuse();
      } catch {
        // already gone
      }
      continue;
    }
    let accepting: Promise<QuicAcceptedLike>;
    try {
      accepting = Promise.resolve(incoming.accept());
    } catch (error) {
      relay.endHandshake(error);
      continue;
    }
    accepting.then(
      (conn) => {
        relay.endHandshake();
        // A throw here would be an unhandled rejection and end the relay.
        try {
          relay.admitConnection(conn, conn.remoteAddr);
        } catch (error) {
          log.warn("could not serve a connection", { error: String(error) });
          try {
            conn.close({ closeCode: H3_INTERNAL_ERROR, reason: "internal error" });
          } catch {
            // already closed
          }
        }
      },
      (error) => relay.endHandshake(error ?? "handshake failed"),
    );
  }
}
