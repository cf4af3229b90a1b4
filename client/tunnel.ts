/**
 * The client's packet pump between its TUN device and a CONNECT-IP session.
 *
 * Outbound (this machine to the relay):
 *   TUN read (batch) -> validate -> session.sendPacket (HTTP Datagram or
 *   DATAGRAM capsule) -> QUIC;
 *   too big for the datagram limit -> ICMP Packet Too Big written back into
 *   the TUN toward the sender (RFC 9484 §10.1), never a silent drop
 *
 * Inbound (relay to this machine):
 *   QUIC -> session (context 0) -> policy (destination is one of our
 *   assigned addresses, RFC 9484 §7) -> TUN write
 *
 * @module
 */

import type { Logger } from "../shared/log.ts";
import type {
  ConnectIpSession,
  ConnectIpSessionStats,
  SessionEnd,
} from "../shared/masque/connect_ip_session.ts";
import type { IpAddressRange } from "../shared/ip/ip_address.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import { readDestination, validateIpPacket } from "../shared/ip/ip_header.ts";
import { buildPacketTooBig } from "../shared/ip/icmp.ts";
import type { PacketDevice } from "../shared/tunnel/packet_device.ts";
import { checkFromRelay } from "../shared/tunnel/packet_policy.ts";
import { excludeAddress, routesWithin } from "../shared/tunnel/routes.ts";

/** Counters of the client's pump. */
export interface ClientPumpStats {
  packetsOut: number;
  packetsIn: number;
  droppedOut: Record<string, number>;
  droppedIn: Record<string, number>;
  packetTooBig: number;
}

/** What the relay gave this client. */
export interface Assignment {
  readonly addresses: readonly IpPrefix[];
  readonly routes: readonly IpAddressRange[];
}

/**
 * The routes to install for an assignment: the advertised ranges narrowed
 * to `wanted` (every advertised range when `wanted` is empty), only of the
 * IP versions the relay assigned an address of, and with the relay's own
 * address cut out so that the tunnel's QUIC packets keep their path. A
 * relay may assign one family only (RFC 9484 §4.7.1 lets it assign any set
 * of addresses; connect-ip-go's proxy assigns one): a route of the other
 * family would send packets whose source the relay must drop (RFC 9484 §7).
 */
export function planRoutes(
  assignment: Assignment,
  wanted: readonly IpPrefix[],
  relayAddress?: Uint8Array,
): IpPrefix[] {
  const versions = new Set(assignment.addresses.map((prefix) => prefix.version));
  const ranges = assignment.routes.filter((range) => versions.has(range.version));
  const routes = routesWithin(ranges, wanted);
  return relayAddress ? excludeAddress(routes, relayAddress) : routes;
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
 * Moves packets both ways until the session ends or the TUN closes.
 * `onEnd` reports why the session ended.
 */
export class ClientPump {
  readonly #tun: PacketDevice;
  readonly #session: ConnectIpSession;
  readonly #assignment: Assignment;
  readonly #log: Logger;
  readonly stats: ClientPumpStats = {
    packetsOut: 0,
    packetsIn: 0,
    droppedOut: {},
    droppedIn: {},
    packetTooBig: 0,
  };

  constructor(tun: PacketDevice, session: ConnectIpSession, assignment: Assignment, log: Logger) {
    this.#tun = tun;
    this.#session = session;
    this.#assignment = assignment;
    this.#log = log;
  }

  /** Handles one packet from the relay (the session's `onPacket`). */
  fromRelay(packet: Uint8Array): void {
    const verdict = checkFromRelay(packet, this.#assignment);
    if (!verdict.ok) {
      this.#count(this.stats.droppedIn, verdict.reason);
      return;
    }
    this.stats.packetsIn++;
    if (!this.#tun.writePacket(packet)) this.#count(this.stats.droppedIn, "tun write failed");
  }

  /** Reads the TUN and sends until the TUN or the session closes. */
  async runOutbound(): Promise<void> {
    for (;;) {
      const batch = await this.#tun.readBatch();
      if (batch === null) return;
      for (const packet of batch) {
        if (!this.#toRelay(packet)) return;
      }
    }
  }

  /** Returns false once the session has closed. */
  #toRelay(packet: Uint8Array): boolean {
    const problem = validateIpPacket(packet);
    if (problem !== undefined) {
      this.#count(this.stats.droppedOut, problem);
      return true;
    }
    // Into the TUN slot's headroom: the datagram goes out without a copy.
    const result = this.#session.sendPacket(packet, this.#tun.headroom ?? 0);
    if (result === "sent") {
      this.stats.packetsOut++;
    } else if (result === "too_big") {
      // From the packet's destination: an answer from one of our own
      // addresses would be dropped by the kernel as a martian.
      const answer = buildPacketTooBig(
        packet,
        this.#session.maxPacketSize,
        readDestination(packet),
      );
      if (answer) {
        this.stats.packetTooBig++;
        this.#tun.writePacket(answer);
      } else {
        this.#count(this.stats.droppedOut, "too big");
      }
    } else {
      return false;
    }
    return true;
  }

  #count(counters: Record<string, number>, reason: string): void {
    counters[reason] = (counters[reason] ?? 0) + 1;
    if (this.#log.enabled("debug")) this.#log.debug("packet dropped", { reason });
  }
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

/** Re-exported for callers that await the session's end. */
export type { SessionEnd };
