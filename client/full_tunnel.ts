/**
 * The kill switch and the resolver over the tunnel's life: a
 * {@linkcode TunnelHooks} of the `Client`'s long-lived `TunnelHost`
 * (the policy routing is the host's own; see `client/client.ts`).
 *
 * ```
 * prepare  (start, before the first connection)
 *          the resolver a killed client left is restored (recoverDns);
 *          the kill switch is installed with --kill-switch on, or replaced
 *          when a killed client left one (it keeps blocking meanwhile)
 * up       (the TUN, addresses and routing are in place)
 *          kill switch: on, or auto and a default route is tunnelled;
 *          otherwise one left by a killed client is removed;
 *          resolver: the tunnel's nameservers, when it has some
 * update   (DNS_ASSIGN, new routes, another relay address on reconnect)
 *          kill switch replaced in one nft transaction when the relay or
 *          the need changed; resolver set again when its settings changed
 * down     resolver restored; the kill switch removed when the user stops
 *          the client, left in place (failing closed) when it failed
 * ```
 *
 * Everything that touches the host is in {@linkcode FullTunnelHostOps}
 * (`client/kill_switch.ts` and `client/dns.ts` in `client/main.ts`), so
 * tests drive the life cycle with fakes.
 *
 * @module
 */

import { errorMessage } from "../shared/errors.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import { formatIp } from "../shared/ip/ip_address.ts";
import type { Logger } from "../shared/log.ts";
import {
  formatRelayEndpoint,
  killSwitchRuleset,
  killSwitchTableName,
} from "../shared/tunnel/kill_switch.ts";
import type { RelayEndpoint } from "../shared/tunnel/kill_switch.ts";
import type { StopReason, TunnelHooks, TunnelInfo } from "./client.ts";
import type { KillSwitchMode } from "./config.ts";
import type { AppliedDns, DnsSettings, RecoveryResult } from "./dns.ts";

/** What {@linkcode FullTunnel} does to the host. */
export interface FullTunnelHostOps {
  /** Installs or replaces (one transaction) a kill switch ruleset (`nft -f`). */
  installKillSwitch(ruleset: string): Promise<void>;
  /** Whether the kill switch table exists. */
  killSwitchInstalled(table: string): Promise<boolean>;
  /** Deletes the kill switch table; false when it was not there. */
  removeKillSwitch(table: string): Promise<boolean>;
  /** Sets the resolver for TUN `tunName` (`client/dns.ts` `applyDns`). */
  applyDns(tunName: string, settings: DnsSettings): Promise<AppliedDns>;
  /** Restores what a killed client did to the resolver (`client/dns.ts` `recoverDns`). */
  recoverDns(): Promise<RecoveryResult>;
}

/** Options of {@linkcode FullTunnel}. */
export interface FullTunnelConfig {
  readonly killSwitch: KillSwitchMode;
  /**
   * Every relay endpoint the client may use, as resolved at start: the kill
   * switch lets all of them through, so that it never blocks a reconnect to
   * another one (the session's own relay is added when it is not here).
   */
  readonly relays: readonly RelayEndpoint[];
  readonly tunName: string;
  /** The QUIC socket's firewall mark. */
  readonly fwmark: number;
  /** `--allow-lan`: destinations the kill switch lets out of the underlay. */
  readonly allowLan: readonly IpPrefix[];
  readonly ops: FullTunnelHostOps;
  readonly log: Logger;
}

/** See the module documentation. */
export class FullTunnel implements TunnelHooks {
  readonly #config: FullTunnelConfig;
  readonly #table: string;
  /** The endpoints the installed kill switch lets through, as text; undefined: none installed by us. */
  #killSwitchRelays: string | undefined;
  #dns: AppliedDns | undefined;
  #dnsSettings: DnsSettings | undefined;

  constructor(config: FullTunnelConfig) {
    this.#config = config;
    this.#table = killSwitchTableName(config.tunName);
  }

  /** The kill switch's nftables table (`inet masque_vpn_ks_<tun>`). */
  get killSwitchTable(): string {
    return this.#table;
  }

  /** Whether this client has its kill switch in place. */
  get killSwitchActive(): boolean {
    return this.#killSwitchRelays !== undefined;
  }

  /** The resolver settings in place, if any. */
  get dns(): DnsSettings | undefined {
    return this.#dnsSettings;
  }

  async prepare(): Promise<void> {
    const { log, ops, killSwitch } = this.#config;
    const recovered = await ops.recoverDns();
    if (recovered.kind === "restored") {
      log.info("restored the resolver a previous client left", { pid: recovered.pid });
      for (const note of recovered.notes) log.warn(note);
    } else if (recovered.kind === "in-use") {
      // Only a problem if this client gets nameservers: applyDns then refuses.
      log.warn("another client manages the resolver", { pid: recovered.pid });
    }
    if (killSwitch === "off") return;
    // A killed client's kill switch still blocks; replaced, it lets this relay through.
    const stale = killSwitch === "auto" && await this.#installed();
    if (killSwitch === "on" || stale) {
      await this.#install(undefined);
      log.info(stale ? "kill switch left by a previous client replaced" : "kill switch on", {
        table: this.#table,
      });
    }
  }

  async up(tunnel: TunnelInfo): Promise<void> {
    await this.#follow(tunnel);
  }

  async update(tunnel: TunnelInfo): Promise<void> {
    await this.#follow(tunnel);
  }

  async down(reason: StopReason): Promise<void> {
    const { log, ops } = this.#config;
    const problems: string[] = [];
    await this.#restoreDns().catch((error) => problems.push(errorMessage(error)));
    if (reason === "user" && this.#killSwitchRelays !== undefined) {
      try {
        if (await ops.removeKillSwitch(this.#table)) {
          log.info("kill switch removed", { table: this.#table });
        }
        this.#killSwitchRelays = undefined;
      } catch (error) {
        problems.push(errorMessage(error));
      }
    } else if (this.#killSwitchRelays !== undefined) {
      log.warn(
        "kill switch left in place: nothing leaves but QUIC to the relay until the client " +
          `runs again or \`nft delete table inet ${this.#table}\``,
      );
    }
    if (problems.length > 0) throw new Error(problems.join("; "));
  }

  /** Brings the kill switch and the resolver in line with `tunnel`. */
  async #follow(tunnel: TunnelInfo): Promise<void> {
    const { killSwitch, log } = this.#config;
    const wanted = killSwitch === "on" || (killSwitch === "auto" && tunnel.plan.full.length > 0);
    if (wanted) {
      if (this.#killSwitchRelays !== this.#endpoints(tunnel.relay).join(",")) {
        await this.#install(tunnel.relay);
        log.info("kill switch on", {
          table: this.#table,
          relay: `${formatIp(tunnel.relay.address)}:${tunnel.relay.port}`,
        });
      }
    } else if (killSwitch === "auto" && this.#killSwitchRelays !== undefined) {
      // No default route through the tunnel (a split tunnel): nothing to protect.
      await this.#config.ops.removeKillSwitch(this.#table);
      this.#killSwitchRelays = undefined;
      log.info("kill switch removed: no default route goes through the tunnel");
    }
    if (!sameSettings(this.#dnsSettings, tunnel.dns)) {
      await this.#restoreDns();
      if (tunnel.dns) {
        this.#dns = await this.#config.ops.applyDns(tunnel.name, tunnel.dns);
        this.#dnsSettings = tunnel.dns;
        log.info("resolver set", {
          via: this.#dns.backend,
          servers: tunnel.dns.servers.join(","),
          search: tunnel.dns.searchDomains.join(",") || "none",
        });
        for (const note of this.#dns.notes) log.warn(note);
      }
    }
  }

  /** The configured relays and `current` (the session's), as sorted unique text. */
  #endpoints(current: RelayEndpoint | undefined): string[] {
    const all = current ? [...this.#config.relays, current] : this.#config.relays;
    return [...new Set(all.map(formatRelayEndpoint))].sort();
  }

  async #install(current: RelayEndpoint | undefined): Promise<void> {
    const { tunName, fwmark, allowLan, ops, relays } = this.#config;
    await ops.installKillSwitch(killSwitchRuleset({
      table: this.#table,
      tunName,
      fwmark,
      relays: current ? [...relays, current] : relays,
      allowedSubnets: allowLan,
    }));
    this.#killSwitchRelays = this.#endpoints(current).join(",");
  }

  /** Whether a kill switch table exists, false when nft may not or cannot run (auto mode). */
  async #installed(): Promise<boolean> {
    try {
      return await this.#config.ops.killSwitchInstalled(this.#table);
    } catch (error) {
      this.#config.log.debug("cannot look for a kill switch left behind", {
        error: errorMessage(error),
      });
      return false;
    }
  }

  async #restoreDns(): Promise<void> {
    const applied = this.#dns;
    this.#dns = undefined;
    this.#dnsSettings = undefined;
    if (applied === undefined) return;
    const notes = await applied.restore();
    for (const note of notes) this.#config.log.warn(note);
    this.#config.log.info("resolver restored", { via: applied.backend });
  }
}

function sameSettings(a: DnsSettings | undefined, b: DnsSettings | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.servers.join(",") === b.servers.join(",") &&
    a.searchDomains.join(",") === b.searchDomains.join(",");
}
