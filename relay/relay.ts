/**
 * The relay: serves CONNECT-IP sessions on HTTP/3 connections and forwards
 * their packets through one TUN device.
 *
 * Packet path, client to world:
 *   QUIC datagram or DATAGRAM capsule -> session (context 0) ->
 *   policy (source is the session's address, destination routed, RFC 9484 §7)
 *   -> TUN write -> kernel forwarding and NAT
 *
 * World to client:
 *   TUN read (batch) -> destination address -> owning session ->
 *   session.sendPacket (datagram or capsule) -> QUIC;
 *   too big for the datagram limit -> ICMP Packet Too Big back into the TUN
 *   (RFC 9484 §10.1)
 *
 * The kernel decrements TTL when it forwards into or out of the TUN, so the
 * relay itself never does (RFC 9484 §7).
 *
 * Everything here reaches the world through a {@linkcode PacketDevice} and
 * {@linkcode QuicConnLike}, so tests run it with an in-memory TUN.
 *
 * @module
 */

import { H3Connection } from "../shared/h3/connection.ts";
import type { QuicConnLike } from "../shared/h3/connection.ts";
import type { Logger } from "../shared/log.ts";
import type { ConnectIpScope } from "../shared/masque/connect_ip_request.ts";
import { answerRequest } from "../shared/masque/connect_ip_session.ts";
import type { ConnectIpSession } from "../shared/masque/connect_ip_session.ts";
import type { IpAddressRange } from "../shared/masque/capsule.ts";
import type { IpPrefix } from "../shared/packet/ip_address.ts";
import { createPrefix, formatIp, formatPrefix } from "../shared/packet/ip_address.ts";
import {
  addressKey,
  destinationKey,
  readDestination,
  validateIpPacket,
} from "../shared/packet/ip_header.ts";
import { buildPacketTooBig } from "../shared/packet/icmp.ts";
import { AddressPool } from "../shared/tunnel/address_pool.ts";
import { checkFromClient } from "../shared/tunnel/packet_policy.ts";
import type { PacketDevice } from "../shared/tunnel/packet_device.ts";
import { prefixesToRanges, routesWithin } from "../shared/tunnel/routes.ts";

/** What the relay needs from its configuration. */
export interface RelayOptions {
  /** Client address pools; `undefined` turns a family off. At least one is set. */
  readonly pool4?: IpPrefix;
  readonly pool6?: IpPrefix;
  /** Advertised routes; those of a family without a pool are not advertised. */
  readonly routes: readonly IpPrefix[];
  readonly template?: string;
  readonly maxSessions: number;
  readonly log: Logger;
}

/** Counters of the whole relay. */
export interface RelayStats {
  sessionsOpened: number;
  sessionsClosed: number;
  sessionsRefused: number;
  packetsFromClients: number;
  packetsToClients: number;
  /** Client packets dropped, by reason (RFC 9484 §7 checks). */
  droppedFromClients: Record<string, number>;
  /** TUN packets with no session owning their destination. */
  droppedNoSession: number;
  /** TUN packets that could not be parsed. */
  droppedMalformed: number;
  /** Packet Too Big answers sent. */
  packetTooBig: number;
  tunWriteErrors: number;
}

/** One client session as the relay tracks it. */
export interface RelaySession {
  readonly id: number;
  readonly session: ConnectIpSession;
  readonly addresses: readonly IpPrefix[];
  readonly routes: readonly IpAddressRange[];
  readonly remote: string;
  readonly openedAt: number;
}

/** The relay's state: pools, sessions, and the TUN loop. */
export class Relay {
  readonly #tun: PacketDevice;
  readonly #options: RelayOptions;
  readonly #log: Logger;
  /** The client address pools that are on (one or two). */
  readonly #pools: readonly AddressPool[];
  /** Address key (of each assigned address) -> session. */
  readonly #byAddress = new Map<number | string, RelaySession>();
  readonly #sessions = new Set<RelaySession>();
  readonly #connections = new Set<H3Connection>();
  /**
   * Requests that `authorize` accepted and that are not yet open sessions.
   * answerRequest awaits (peer SETTINGS, the 200) between authorizing and
   * returning, so the session limit counts these too; each is reserved in the
   * synchronous `authorize` callback and given back when the request ends.
   * Their addresses are taken from the pools in the same callback.
   */
  #pendingSessions = 0;
  #nextId = 1;
  #stopped = false;
  readonly stats: RelayStats = {
    sessionsOpened: 0,
    sessionsClosed: 0,
    sessionsRefused: 0,
    packetsFromClients: 0,
    packetsToClients: 0,
    droppedFromClients: {},
    droppedNoSession: 0,
    droppedMalformed: 0,
    packetTooBig: 0,
    tunWriteErrors: 0,
  };

  constructor(tun: PacketDevice, options: RelayOptions) {
    this.#tun = tun;
    this.#options = options;
    this.#log = options.log;
    const pools = [options.pool4, options.pool6].filter((p) => p !== undefined);
    if (pools.length === 0) throw new Error("Cannot start relay: no address pool (pool4 or pool6)");
    this.#pools = pools.map((prefix) => new AddressPool(prefix));
  }

  #pool(version: 4 | 6): AddressPool | undefined {
    return this.#pools.find((pool) => pool.prefix.version === version);
  }

  /**
   * The relay's own TUN addresses: the first host of each pool with the
   * pool's prefix length (`198.18.100.1/24`), so the kernel routes the whole
   * pool to the TUN.
   */
  get gatewayAddresses(): readonly IpPrefix[] {
    return this.#pools.map((pool) => ({
      version: pool.prefix.version,
      address: pool.gateway,
      prefixLength: pool.prefix.prefixLength,
    }));
  }

  /** The sessions now open. */
  get sessions(): readonly RelaySession[] {
    return [...this.#sessions];
  }

  /** Addresses in use in each pool. */
  get poolUsage(): { v4: number; v6: number } {
    return { v4: this.#pool(4)?.inUse ?? 0, v6: this.#pool(6)?.inUse ?? 0 };
  }

  /** Serves HTTP/3 on a new QUIC connection from `remote`. */
  acceptConnection(conn: QuicConnLike, remote: string): H3Connection {
    const log = this.#log.with({ peer: remote });
    const h3 = new H3Connection(conn, {
      role: "server",
      log,
      onRequest: (request) => {
        this.#serveRequest(request, remote, log).catch((error) => {
          log.warn("request failed", {
            error: error instanceof Error ? error.message : String(error),
          });
        });
      },
    });
    this.#connections.add(h3);
    h3.onClose((info) => {
      this.#connections.delete(h3);
      log.debug("connection closed", { code: info.closeCode, reason: info.reason });
    });
    h3.start().catch((error) => {
      log.warn("connection setup failed", {
        error: error instanceof Error ? error.message : String(error),
      });
    });
    return h3;
  }

  async #serveRequest(
    request: Parameters<NonNullable<ConstructorParameters<typeof H3Connection>[1]["onRequest"]>>[0],
    remote: string,
    log: Logger,
  ): Promise<void> {
    // Reserved in the synchronous authorize callback, so that concurrent
    // requests cannot all pass the checks: a session slot and one address of
    // each pool. A request the relay cannot serve gets 503 and no session,
    // rather than a 200 and a session closed at once.
    let addresses: IpPrefix[] | undefined;
    let answer: Awaited<ReturnType<typeof answerRequest>>;
    try {
      answer = await answerRequest(request, {
        template: this.#options.template,
        log,
        authorize: () => {
          if (this.#sessions.size + this.#pendingSessions >= this.#options.maxSessions) {
            return { accept: false, status: 503, reason: "session limit reached" };
          }
          addresses = this.#allocateAddresses();
          if (addresses === undefined) {
            return { accept: false, status: 503, reason: "address pool exhausted" };
          }
          this.#pendingSessions++;
          return { accept: true };
        },
      });
    } catch (error) {
      if (addresses !== undefined) this.#releaseAddresses(addresses);
      throw error;
    } finally {
      // From here on the session, if any, counts in #sessions (no await
      // until #open) or was refused.
      if (addresses !== undefined) this.#pendingSessions--;
    }
    if (!answer.session) {
      // answerRequest returns no session only for requests it refused before
      // or in authorize, which then reserved nothing.
      this.stats.sessionsRefused++;
      log.info("request refused", { status: answer.status, reason: answer.reason });
      return;
    }
    if (addresses === undefined) throw new Error("Cannot open session: no addresses reserved");
    const routes = this.#routesFor(answer.scope);
    const entry: RelaySession = {
      id: this.#nextId++,
      session: answer.session,
      addresses,
      routes,
      remote,
      openedAt: Date.now(),
    };
    this.#open(entry);
    const slog = log.with({ session: entry.id });
    slog.info("session opened", {
      mode: answer.session.mode,
      addresses: addresses.map(formatPrefix).join(","),
    });
    try {
      await answer.session.sendCapsule({
        type: "address_assign",
        addresses: addresses.map((prefix) => ({ requestId: 0, prefix })),
      });
      await answer.session.sendCapsule({ type: "route_advertisement", ranges: routes });
    } catch (error) {
      slog.warn("could not send capsules", { error: String(error) });
    }
    const end = await answer.session.run({
      onPacket: (packet) => this.#fromClient(entry, packet, slog),
      onCapsule: (capsule) => {
        // ADDRESS_REQUEST: we assign one address of each family up front and
        // answer a request with the same assignment (RFC 9484 §4.7.2).
        if (capsule.type === "address_request") {
          answer.session.sendCapsule({
            type: "address_assign",
            addresses: capsule.addresses.flatMap((req) =>
              entry.addresses.filter((a) => a.version === req.prefix.version).map((prefix) => ({
                requestId: req.requestId,
                prefix,
              }))
            ),
          }).catch(() => {});
        }
      },
    });
    this.#close(entry);
    slog.info("session closed", {
      reason: end.message,
      packetsIn: answer.session.stats.packetsIn,
      packetsOut: answer.session.stats.packetsOut,
    });
  }

  /**
   * One client address from each pool that is on (a /32 and/or a /128), or
   * `undefined` with nothing taken when any of them is exhausted.
   */
  #allocateAddresses(): IpPrefix[] | undefined {
    const taken: IpPrefix[] = [];
    for (const pool of this.#pools) {
      const address = pool.allocate();
      if (address === undefined) {
        this.#releaseAddresses(taken);
        return undefined;
      }
      taken.push(createPrefix(address, address.length * 8));
    }
    return taken;
  }

  #releaseAddresses(addresses: readonly IpPrefix[]): void {
    for (const prefix of addresses) this.#pool(prefix.version)?.release(prefix.address);
  }

  /**
   * The advertised routes of the families the relay assigns addresses of,
   * narrowed to what the client asked for (RFC 9484 §4.6).
   */
  #routesFor(scope: ConnectIpScope): IpAddressRange[] {
    const protocol = scope.ipProtocol === "any" ? 0 : scope.ipProtocol;
    const all = prefixesToRanges(
      this.#options.routes.filter((route) => this.#pool(route.version) !== undefined),
      protocol,
    );
    if (scope.target.kind === "any") return all;
    return prefixesToRanges(routesWithin(all, [scope.target.prefix]), protocol);
  }

  #open(entry: RelaySession): void {
    this.#sessions.add(entry);
    for (const prefix of entry.addresses) this.#byAddress.set(addressKey(prefix.address), entry);
    this.stats.sessionsOpened++;
  }

  #close(entry: RelaySession): void {
    if (!this.#sessions.delete(entry)) return;
    for (const prefix of entry.addresses) {
      const key = addressKey(prefix.address);
      if (this.#byAddress.get(key) === entry) this.#byAddress.delete(key);
    }
    this.#releaseAddresses(entry.addresses);
    this.stats.sessionsClosed++;
  }

  #fromClient(entry: RelaySession, packet: Uint8Array, log: Logger): void {
    const verdict = checkFromClient(packet, entry);
    if (!verdict.ok) {
      this.stats.droppedFromClients[verdict.reason] =
        (this.stats.droppedFromClients[verdict.reason] ?? 0) + 1;
      if (log.enabled("debug")) log.debug("dropped packet from client", { reason: verdict.reason });
      return;
    }
    this.stats.packetsFromClients++;
    if (!this.#tun.writePacket(packet)) this.stats.tunWriteErrors++;
  }

  /**
   * Reads the TUN until it closes and sends each packet to the session that
   * owns its destination address.
   */
  async runTun(): Promise<void> {
    for (;;) {
      const batch = await this.#tun.readBatch();
      if (batch === null || this.#stopped) return;
      for (const packet of batch) this.#toClient(packet);
    }
  }

  #toClient(packet: Uint8Array): void {
    if (validateIpPacket(packet) !== undefined) {
      this.stats.droppedMalformed++;
      return;
    }
    const entry = this.#byAddress.get(destinationKey(packet));
    if (entry === undefined) {
      this.stats.droppedNoSession++;
      return;
    }
    const result = entry.session.sendPacket(packet);
    if (result === "sent") {
      this.stats.packetsToClients++;
    } else if (result === "too_big") {
      // From the client's address (the packet's destination): the kernel
      // routes it back like any client packet, and conntrack relates it to
      // the flow so NAT applies. An answer from the relay's own address
      // would be dropped as a martian.
      const answer = buildPacketTooBig(
        packet,
        entry.session.maxPacketSize,
        readDestination(packet),
      );
      if (answer) {
        this.stats.packetTooBig++;
        this.#tun.writePacket(answer);
      }
    }
  }

  /** Closes every connection (GOAWAY first) and stops the TUN loop. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all([...this.#connections].map(async (h3) => {
      await h3.goaway(0);
      h3.close();
    }));
  }

  /** A JSON-friendly snapshot for the status file and logs. */
  status(): Record<string, unknown> {
    return {
      sessions: this.sessions.map((s) => ({
        id: s.id,
        remote: s.remote,
        mode: s.session.mode,
        addresses: s.addresses.map(formatPrefix),
        openedAt: new Date(s.openedAt).toISOString(),
        ...s.session.stats,
      })),
      pools: this.poolUsage,
      gateway: this.#pools.map((pool) => formatIp(pool.gateway)),
      stats: this.stats,
    };
  }
}
