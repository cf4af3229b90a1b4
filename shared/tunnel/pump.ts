/**
 * The packet pump between a TUN device and CONNECT-IP sessions, used by the
 * client (one peer: the relay) and the relay (one peer per client session).
 *
 * Outbound, TUN to peer ({@linkcode TunnelPump.outbound}):
 *   1. TUN `readBatch()` (views valid until the next read; {@linkcode TunnelPump.runTun})
 *   2. parse the IP header (`validateIpPacket`)            drop `malformed`
 *   3. route: the peer owning the destination ({@linkcode PeerRouter})
 *                                                          drop `no session`
 *   3'. the peer's rate ({@linkcode PeerLimits.outbound}, bytes) drop `rate limited`
 *   4. the peer's session is open                          drop `session closed`
 *   5. fits the session (`maxPacketSize`)                  else ICMP Packet Too Big
 *      from the packet's destination, written back into the TUN (RFC 9484
 *      §10.1); drop `too big` when no ICMP may be sent (RFC 4443 §2.4)
 *   6. `session.sendPacket`: HTTP Datagram (its header in the TUN slot's
 *      headroom, no copy) or DATAGRAM capsule -> QUIC
 *
 * Inbound, peer to TUN ({@linkcode TunnelPump.inbound}):
 *   1. the session's `onPacket` (context id 0; {@linkcode TunnelPump.receive})
 *   2. the peer's policy ({@linkcode TunnelPeer.check}): the client checks
 *      the destination is its own (`checkFromRelay`); the relay checks the
 *      source, header rules and routes (`checkFromClient`), then its host
 *      firewall (RFC 9484 §7)                               drop with its reason;
 *      a destination or protocol outside the session's routes (a user's
 *      policy) is also answered with ICMP Destination Unreachable
 *      "administratively prohibited" on the peer's session, at most
 *      {@linkcode PeerLimits.prohibited}'s rate
 *   2'. the peer's rate ({@linkcode PeerLimits.inbound}, bytes) drop `rate limited`
 *   3. `tun.writePacket` (the kernel forwards it)           drop `tun write failed`
 *   3'. between peers (relay, `--allow-client-to-client`: the policy said
 *      {@linkcode TO_PEER}): route to the peer owning the destination
 *      (drop `destination not assigned`), TTL / Hop Limit decremented
 *      (drop `hop limit exceeded`), fits that session, else Packet Too Big
 *      back to the sender's session; sent on that session, never through
 *      the TUN
 *
 * Each step decides and returns a {@linkcode PumpAction} (send it on this
 * peer's session; write it to the TUN; write or send this ICMP reply; drop
 * it, with the reason), as boringtun's `TunnResult` and connect-ip-go's
 * `WritePacket` returning the ICMP do; {@linkcode TunnelPump.perform} does
 * it, and is the only code that writes to the TUN or a session. The common
 * actions are constants (one per peer for sending), so the hot path
 * allocates nothing but the one copy of the packet into its datagram.
 *
 * Both programs count the same things the same way ({@linkcode PumpCounters}):
 * packets and bytes passed each way, every drop by direction and reason,
 * Packet Too Big and prohibited answers, packets between peers; a peer with
 * {@linkcode TunnelPeer.drops} also counts its own drops (the relay: per
 * user). Inside the loop nothing throws: drops are counted and logged at
 * debug level.
 *
 * @module
 */

import { counterByLabel } from "../counters.ts";
import type { Counter, CounterRegistry } from "../counters.ts";
import { buildDestinationUnreachable, buildPacketTooBig } from "../ip/icmp.ts";
import { decrementHopLimit, readDestination, validateIpPacket } from "../ip/ip_header.ts";
import type { Logger } from "../log.ts";
import { nullLogger } from "../log.ts";
import type { TokenBucket } from "../rate_limit.ts";
import type { HostVerdict } from "./host_firewall.ts";
import { TO_CLIENT } from "./host_firewall.ts";
import type { PacketDevice } from "./packet_device.ts";
import { DROP_REASONS, POLICY_REFUSALS } from "./packet_policy.ts";

/** What the pump needs of a session: a `ConnectIpSession` is one. */
export interface PacketSession {
  /** The largest IP packet the session carries now, bytes. */
  readonly maxPacketSize: number;
  /** Whether the session has ended. */
  readonly closed: boolean;
  /**
   * Sends one packet; never throws. `headroom`: bytes in front of `packet`
   * in its buffer that the session may overwrite (a TUN slot's), so that it
   * can send without copying.
   */
  sendPacket(packet: Uint8Array, headroom?: number): "sent" | "too_big" | "closed";
}

/**
 * The inbound policy's "deliver to another peer" verdict: the relay's host
 * firewall's `TO_CLIENT` (`--allow-client-to-client`).
 */
export const TO_PEER: typeof TO_CLIENT = TO_CLIENT;

/** Why the pump dropped a packet: a policy's reason or one of the pump's own. */
export const PUMP_DROP_REASONS = [
  ...DROP_REASONS,
  "no session",
  "session closed",
  "too big",
  "tun write failed",
  "rate limited",
] as const;

/** One of {@linkcode PUMP_DROP_REASONS}. */
export type PumpDropReason = typeof PUMP_DROP_REASONS[number];

/** The two directions: out of the TUN toward a peer, and from a peer into the TUN. */
export const DIRECTIONS = ["outbound", "inbound"] as const;

/** One of {@linkcode DIRECTIONS}. */
export type Direction = typeof DIRECTIONS[number];

/**
 * Send the packet on `peer`'s session: `"send"` for a packet from the TUN,
 * `"forward"` for one from another peer.
 */
export interface SendAction {
  readonly kind: "send" | "forward";
  readonly peer: TunnelPeer;
}

/** Write the packet to the TUN (inbound, passed the policy). */
export interface WriteAction {
  readonly kind: "write";
}

/** Answer with `packet` (an ICMP error): into the TUN, or on `via`'s session. */
export interface ReplyAction {
  readonly kind: "reply";
  readonly packet: Uint8Array;
  readonly via: TunnelPeer | undefined;
  readonly direction: Direction;
  /** What the answer says: Packet Too Big (RFC 9484 §10.1) or administratively prohibited (§7). */
  readonly icmp: "packet too big" | "prohibited";
}

/** The packet was dropped (and counted) for `reason`. */
export interface DropAction {
  readonly kind: "drop";
  readonly reason: PumpDropReason;
}

/** What should happen to one packet; see the module docs. */
export type PumpAction = SendAction | WriteAction | ReplyAction | DropAction;

/** The action to write a packet to the TUN. */
export const WRITE: WriteAction = Object.freeze({ kind: "write" });

/** The drop action of each reason (shared constants). */
export const DROP: Readonly<Record<PumpDropReason, DropAction>> = Object.freeze(
  Object.fromEntries(
    PUMP_DROP_REASONS.map((reason) => [reason, Object.freeze({ kind: "drop", reason })]),
  ) as Record<PumpDropReason, DropAction>,
);

/**
 * What the pump limits for one peer (the relay: per user and session).
 * Buckets count bytes; one bucket may be shared by several peers (a user's
 * sessions share its rate).
 */
export interface PeerLimits {
  /** Bytes to the peer (TUN to session); past it packets are dropped `rate limited`. */
  readonly outbound?: TokenBucket;
  /** Bytes from the peer (session to TUN or another peer), likewise. */
  readonly inbound?: TokenBucket;
  /**
   * Answer a packet the policy refused for its destination or protocol
   * ({@linkcode POLICY_REFUSALS}) with ICMP Destination Unreachable
   * "administratively prohibited", one token of `bucket` per answer, from
   * the address `from` gives for the packet's IP version (the relay's
   * gateway address).
   */
  readonly prohibited?: {
    readonly bucket: TokenBucket;
    readonly from: (version: 4 | 6) => Uint8Array | undefined;
  };
}

/** No limits. */
export const NO_LIMITS: PeerLimits = Object.freeze({});

/**
 * One peer: a session and the inbound policy of its packets. Routers
 * ({@linkcode PeerRouter}) hand peers out; the pump sends with the peer's
 * own constant actions.
 */
export class TunnelPeer {
  readonly session: PacketSession;
  /** The inbound policy: forward, drop with a reason, or {@linkcode TO_PEER}. */
  readonly check: (packet: Uint8Array) => HostVerdict;
  /** The action that sends a TUN packet on this peer's session. */
  readonly send: SendAction;
  /** The action that sends another peer's packet on this peer's session. */
  readonly forward: SendAction;
  /** Rates and ICMP answers; replaced when the peer's policy changes (a reload). */
  limits: PeerLimits;
  /** Counts this peer's drops besides the pump's totals (the relay: per user), if set. */
  drops: ((direction: Direction, reason: PumpDropReason) => void) | undefined;
  /** Packets from this peer its inbound policy dropped (for the status view). */
  dropped = 0;

  constructor(
    session: PacketSession,
    check: (packet: Uint8Array) => HostVerdict,
    limits: PeerLimits = NO_LIMITS,
  ) {
    this.session = session;
    this.check = check;
    this.limits = limits;
    this.drops = undefined;
    this.send = Object.freeze({ kind: "send", peer: this });
    this.forward = Object.freeze({ kind: "forward", peer: this });
  }
}

/** Finds the peer that owns a packet's destination address. */
export interface PeerRouter {
  /** The peer for `packet` (a valid IP packet), or undefined when none owns its destination. */
  peerFor(packet: Uint8Array): TunnelPeer | undefined;
}

/**
 * The pump's counters, resolved once from a registry (names in
 * `docs/architecture.md`, "Errors"); index 0 is outbound, 1 inbound.
 */
export class PumpCounters {
  readonly packets: readonly [Counter, Counter];
  readonly bytes: readonly [Counter, Counter];
  readonly packetTooBig: readonly [Counter, Counter];
  readonly prohibited: Counter;
  readonly betweenPeers: Counter;
  readonly dropped: readonly [
    Readonly<Record<PumpDropReason, Counter>>,
    Readonly<Record<PumpDropReason, Counter>>,
  ];

  constructor(registry: CounterRegistry) {
    const both = (name: string, help: string): [Counter, Counter] => {
      const family = counterByLabel(registry, name, help, "direction", DIRECTIONS);
      return [family.outbound, family.inbound];
    };
    this.packets = both(
      "tunnel_packets_total",
      "IP packets passed: outbound sent on a session, inbound written to the TUN or another peer",
    );
    this.bytes = both("tunnel_bytes_total", "Bytes of the IP packets in tunnel_packets_total");
    this.packetTooBig = both(
      "tunnel_packet_too_big_total",
      "ICMP Packet Too Big answers sent for packets larger than a session carries",
    );
    this.prohibited = registry.counter("tunnel_prohibited_answers_total", {
      help: "ICMP Destination Unreachable (administratively prohibited) answers sent to peers " +
        "for packets outside their routes or protocols",
    }).child();
    this.betweenPeers = registry.counter("tunnel_packets_between_peers_total", {
      help: "Inbound packets delivered to another peer's session (--allow-client-to-client)",
    }).child();
    const dropped = registry.counter("tunnel_packets_dropped_total", {
      help: "IP packets dropped, by direction and reason",
      labels: [
        { name: "direction", values: DIRECTIONS },
        { name: "reason", values: PUMP_DROP_REASONS },
      ],
    });
    const byReason = (dir: Direction) =>
      Object.fromEntries(PUMP_DROP_REASONS.map((r) => [r, dropped.child(dir, r)])) as Record<
        PumpDropReason,
        Counter
      >;
    this.dropped = [byReason("outbound"), byReason("inbound")];
  }
}

const OUTBOUND = 0;
const INBOUND = 1;

/** Options of {@linkcode TunnelPump}. */
export interface TunnelPumpOptions {
  readonly tun: PacketDevice;
  readonly router: PeerRouter;
  readonly counters: PumpCounters;
  readonly log?: Logger;
  /** The clock of the peers' buckets, milliseconds (default `performance.now`). */
  readonly now?: () => number;
}

/** The pump; see the module docs. */
export class TunnelPump {
  readonly #tun: PacketDevice;
  readonly #router: PeerRouter;
  readonly #counters: PumpCounters;
  readonly #log: Logger;
  readonly #now: () => number;
  #stopped = false;

  constructor(options: TunnelPumpOptions) {
    this.#tun = options.tun;
    this.#router = options.router;
    this.#counters = options.counters;
    this.#log = options.log ?? nullLogger;
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * Decides what happens to a packet read from the TUN (outbound steps 2-5)
   * and counts a drop. `packet` is not modified.
   */
  outbound(packet: Uint8Array): PumpAction {
    if (validateIpPacket(packet) !== undefined) return this.#drop(OUTBOUND, "malformed", packet);
    const peer = this.#router.peerFor(packet);
    if (peer === undefined) return this.#drop(OUTBOUND, "no session", packet);
    const rate = peer.limits.outbound;
    if (rate !== undefined && !rate.take(this.#now(), packet.length)) {
      return this.#drop(OUTBOUND, "rate limited", packet, peer);
    }
    return this.#fit(packet, peer, peer.send, undefined);
  }

  /**
   * Decides what happens to a packet from `from`'s session (inbound steps
   * 2-3') and counts a drop. Between peers it decrements the packet's TTL /
   * Hop Limit in place (RFC 9484 §7).
   */
  inbound(from: TunnelPeer, packet: Uint8Array): PumpAction {
    const verdict = from.check(packet);
    if (verdict !== TO_PEER && !verdict.ok) {
      from.dropped++;
      const dropped = this.#drop(INBOUND, verdict.reason, packet, from);
      const prohibited = from.limits.prohibited;
      if (prohibited === undefined || !POLICY_REFUSALS.has(verdict.reason)) return dropped;
      return this.#prohibit(from, packet, prohibited) ?? dropped;
    }
    const rate = from.limits.inbound;
    if (rate !== undefined && !rate.take(this.#now(), packet.length)) {
      return this.#drop(INBOUND, "rate limited", packet, from);
    }
    return verdict === TO_PEER ? this.#toPeer(from, packet) : WRITE;
  }

  /**
   * ICMP administratively prohibited for `packet` back on `from`'s session,
   * if its bucket has a token and the RFCs allow an answer (never to an
   * ICMP error, a multicast or broadcast, a later fragment).
   */
  #prohibit(
    from: TunnelPeer,
    packet: Uint8Array,
    prohibited: NonNullable<PeerLimits["prohibited"]>,
  ): ReplyAction | undefined {
    const source = prohibited.from(packet[0] >> 4 === 4 ? 4 : 6);
    if (source === undefined || !prohibited.bucket.take(this.#now())) return undefined;
    const answer = buildDestinationUnreachable(packet, "administratively prohibited", source);
    if (answer === undefined) return undefined;
    return { kind: "reply", packet: answer, via: from, direction: "inbound", icmp: "prohibited" };
  }

  #toPeer(from: TunnelPeer, packet: Uint8Array): PumpAction {
    const to = this.#router.peerFor(packet);
    if (to === undefined) return this.#drop(INBOUND, "destination not assigned", packet);
    if (!decrementHopLimit(packet)) return this.#drop(INBOUND, "hop limit exceeded", packet);
    return this.#fit(packet, to, to.forward, from);
  }

  /**
   * `send` when `peer`'s session is open and carries `packet`; else a drop,
   * or ICMP Packet Too Big to the sender: into the TUN (`from` undefined) or
   * on `from`'s session. The ICMP comes from the packet's destination: an
   * answer from one of our own addresses would be dropped by the kernel as
   * a martian; on the relay it follows the flow's conntrack entry back
   * through NAT.
   */
  #fit(
    packet: Uint8Array,
    peer: TunnelPeer,
    send: SendAction,
    from: TunnelPeer | undefined,
  ): PumpAction {
    const dir = from === undefined ? OUTBOUND : INBOUND;
    const session = peer.session;
    if (session.closed) return this.#drop(dir, "session closed", packet);
    const limit = session.maxPacketSize;
    if (packet.length <= limit) return send;
    const answer = buildPacketTooBig(packet, limit, readDestination(packet));
    if (answer === undefined) return this.#drop(dir, "too big", packet);
    return {
      kind: "reply",
      packet: answer,
      via: from,
      direction: DIRECTIONS[dir],
      icmp: "packet too big",
    };
  }

  /**
   * Does what `action` says with `packet`, and counts the outcome: a
   * packet passed, a Packet Too Big sent, or a failure (`session closed`,
   * `too big`, `tun write failed`). A drop was counted when it was decided.
   * `headroom`: bytes in front of `packet` that a send may overwrite (the
   * TUN slot's, for a packet just read; default none).
   */
  perform(action: PumpAction, packet: Uint8Array, headroom = 0): void {
    const c = this.#counters;
    switch (action.kind) {
      case "send":
      case "forward": {
        const dir = action.kind === "send" ? OUTBOUND : INBOUND;
        const result = action.peer.session.sendPacket(packet, headroom);
        if (result === "sent") {
          c.packets[dir].value++;
          c.bytes[dir].value += packet.length;
          if (dir === INBOUND) c.betweenPeers.value++;
        } else {
          // too_big only if the session's limit shrank since outbound() read it.
          this.#drop(dir, result === "closed" ? "session closed" : "too big", packet);
        }
        return;
      }
      case "write":
        if (this.#tun.writePacket(packet)) {
          c.packets[INBOUND].value++;
          c.bytes[INBOUND].value += packet.length;
        } else {
          this.#drop(INBOUND, "tun write failed", packet);
        }
        return;
      case "reply": {
        const dir = action.direction === "outbound" ? OUTBOUND : INBOUND;
        const sent = action.via === undefined
          ? this.#tun.writePacket(action.packet)
          : action.via.session.sendPacket(action.packet) === "sent";
        if (!sent) {
          this.#drop(dir, action.via === undefined ? "tun write failed" : "session closed", packet);
        } else if (action.icmp === "prohibited") c.prohibited.value++;
        else c.packetTooBig[dir].value++;
        return;
      }
      case "drop":
        return;
    }
  }

  /** A packet from `from`'s session (its `onPacket`): decided and done. */
  receive(from: TunnelPeer, packet: Uint8Array): void {
    this.perform(this.inbound(from, packet), packet);
  }

  /**
   * Reads the TUN until it closes or {@linkcode stop} is called, and does
   * what {@linkcode outbound} decides for each packet. Rejects when a TUN
   * read fails.
   */
  async runTun(): Promise<void> {
    // The TUN leaves room in front of each packet it reads: the session
    // writes the datagram's header there and sends without a copy.
    const headroom = this.#tun.headroom ?? 0;
    for (;;) {
      const batch = await this.#tun.readBatch();
      if (batch === null || this.#stopped) return;
      for (let i = 0; i < batch.length; i++) {
        const packet = batch[i];
        this.perform(this.outbound(packet), packet, headroom);
      }
    }
  }

  /** Makes {@linkcode runTun} return after the batch it waits for. */
  stop(): void {
    this.#stopped = true;
  }

  #drop(dir: number, reason: PumpDropReason, packet: Uint8Array, peer?: TunnelPeer): DropAction {
    this.#counters.dropped[dir][reason].value++;
    peer?.drops?.(DIRECTIONS[dir], reason);
    if (this.#log.enabled("debug")) {
      this.#log.debug("packet dropped", {
        direction: DIRECTIONS[dir],
        reason,
        detail: reason === "malformed" ? validateIpPacket(packet) : undefined,
        length: packet.length,
      });
    }
    return DROP[reason];
  }
}
