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
  const { packetsOut, packetsIn } = session.stats;
  let text = "the relay ended the request stream (FIN, no error code)";
  if (session.mode === "stream" && packetsOut > 0 && packetsIn === 0) {
    text += ` after ${packetsOut} IP packet${packetsOut === 1 ? "" : "s"} from us in DATAGRAM ` +
      "capsules and none back: it probably does not accept DATAGRAM capsules (RFC 9297 §3.5); " +
      "try --mode datagram";
  }
  return text;
}
