/**
 * The client's decisions about its tunnel that need no I/O: the TUN MTU
 * `--mtu auto` picks and how to describe a session's end (the routes are
 * `shared/tunnel/full_tunnel.ts`'s plan). `client/client.ts` uses them; the packet path
 * itself is the shared pump (`shared/tunnel/pump.ts`).
 *
 * @module
 */

import type { ConnectIpSessionStats, SessionEnd } from "../shared/masque/connect_ip_session.ts";
import type { IpAddressRange } from "../shared/ip/ip_address.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";

/** What the relay gave this client. */
export interface Assignment {
  readonly addresses: readonly IpPrefix[];
  readonly routes: readonly IpAddressRange[];
}

/** The IPv6 minimum link MTU (RFC 8200 §5), the least `--mtu auto` picks. */
export const AUTO_MTU_MIN = 1280;
/** The largest MTU `--mtu auto` picks, as on Ethernet; also the TUN's packet capacity then. */
export const AUTO_MTU_MAX = 1500;

/**
 * The TUN MTU `--mtu auto` wants in datagram mode when the session carries
 * IP packets of up to `carried` bytes (its `maxPacketSize`), in bytes:
 * `carried` within {@linkcode AUTO_MTU_MIN}..{@linkcode AUTO_MTU_MAX}.
 */
export function autoMtu(carried: number): number {
  return Math.min(AUTO_MTU_MAX, Math.max(AUTO_MTU_MIN, Math.floor(carried)));
}

/**
 * Says which side ended a session and, as far as this side can tell, why.
 * A FIN from the relay in stream mode after our DATAGRAM capsules and none
 * back is what a relay that does not accept DATAGRAM capsules (RFC 9297
 * §3.5) does (connect-ip-go's proxy ends the stream on "unknown capsule
 * type: 0"), so the text says so and suggests datagram mode.
 */
export function describeSessionEnd(
  end: SessionEnd,
  session: { readonly mode: "datagram" | "stream"; readonly stats: ConnectIpSessionStats },
): string {
  // Errors already name their side ("Stream reset by the peer with ...",
  // "Cannot parse capsule: ...").
  if (end.reason === "error") return end.message;
  const { packetsOut } = session.stats;
  let text = "the relay ended the request stream (FIN, no error code)";
  if (refusesCapsules(end, session)) {
    text += ` after ${packetsOut} IP packet${packetsOut === 1 ? "" : "s"} from us in DATAGRAM ` +
      "capsules and none back: it probably does not accept DATAGRAM capsules (RFC 9297 §3.5); " +
      "try --mode datagram";
  }
  return text;
}

/** The first reconnect waits at most this long, milliseconds (half of it at least). */
export const BACKOFF_FIRST_MS = 500;
/** Reconnect waits grow to at most this, milliseconds. */
export const BACKOFF_CAP_MS = 30_000;

/**
 * How long the client waits before reconnect attempt `attempt` (0 first),
 * milliseconds: exponential backoff with "equal jitter", so that clients
 * that lost the same relay do not all come back at once. The wait before
 * attempt n is uniform in [d/2, d) with d = min(cap, first * 2^n): 250-500
 * ms first, then 0.5-1 s, 1-2 s, ... up to 15-30 s. `random` gives a number
 * in [0, 1).
 */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** Math.min(attempt, 30));
  return Math.floor(ceiling / 2 + random() * (ceiling / 2));
}

/**
 * Whether a session's end says the relay does not accept DATAGRAM capsules
 * (see {@linkcode describeSessionEnd}): a FIN in stream mode after packets
 * from us and none back. Reconnecting would end the same way, so the
 * client stops with that message instead.
 */
export function refusesCapsules(
  end: SessionEnd,
  session: { readonly mode: "datagram" | "stream"; readonly stats: ConnectIpSessionStats },
): boolean {
  const { packetsOut, packetsIn } = session.stats;
  return end.reason !== "error" && session.mode === "stream" && packetsOut > 0 && packetsIn === 0;
}
