/**
 * The relay host's side of the firewall of `shared/tunnel/host_firewall.ts`:
 *
 * - {@linkcode watchHostAddresses} keeps the relay told of every address its
 *   host delivers to itself (the kernel's local routing table, read over
 *   rtnetlink), re-read within {@linkcode HOST_WATCH_INTERVAL_MS} of a
 *   change and every {@linkcode HOST_FULL_REFRESH_MS} regardless. This
 *   protects the host with or without `--nat` and nftables.
 * - {@linkcode hostInputChain} is a second layer for relays that run `nft`
 *   anyway (`--nat`): an input chain in the relay's own table that drops
 *   whatever comes in on the TUN for the host itself, but the allowed
 *   services at the gateway addresses. It also covers the moment between an
 *   address being added and the next re-read.
 *
 * @module
 */

import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import { formatIp } from "../shared/ip/ip_address.ts";
import type { HostService } from "../shared/tunnel/host_firewall.ts";
import { AddressChangeWatch, localRoutes } from "../ffi/netlink.ts";

/** How often the relay looks for address and route change notifications, in milliseconds. */
export const HOST_WATCH_INTERVAL_MS = 250;
/** How often the relay re-reads the local routes even without a notification, in milliseconds. */
export const HOST_FULL_REFRESH_MS = 30_000;

/** What {@linkcode watchHostAddresses} updates; `Relay` satisfies it. */
export interface HostPrefixSink {
  setHostPrefixes(prefixes: readonly IpPrefix[]): boolean;
}

/**
 * Reads the host's local routes once (throwing if that fails: the relay must
 * not serve clients without knowing what to protect), then keeps `relay`
 * updated until `stop()`. A later failure is logged once at warn level and
 * the last known addresses stay in force.
 */
export function watchHostAddresses(relay: HostPrefixSink, log: Logger): { stop(): void } {
  const refresh = () => {
    const routes = localRoutes();
    if (relay.setHostPrefixes(routes.map((route) => route.prefix))) {
      log.info("relay host addresses closed to clients", {
        routes: routes.length,
        addresses: routes.filter((r) => r.type === "local").map((r) =>
          `${formatIp(r.prefix.address)}/${r.prefix.prefixLength}`
        ).join(","),
      });
    }
  };
  const watch = new AddressChangeWatch();
  try {
    refresh();
  } catch (error) {
    watch.close();
    throw error;
  }
  let failing = false;
  let lastFull = Date.now();
  const timer = setInterval(() => {
    try {
      const now = Date.now();
      if (watch.changed() || now - lastFull >= HOST_FULL_REFRESH_MS) {
        lastFull = now;
        refresh();
      }
      if (failing) log.info("relay host addresses readable again");
      failing = false;
    } catch (error) {
      if (!failing) {
        log.warn("cannot re-read the relay host's addresses; keeping the last ones", {
          error: errorMessage(error),
        });
      }
      failing = true;
    }
  }, HOST_WATCH_INTERVAL_MS);
  return {
    stop() {
      clearInterval(timer);
      watch.close();
    },
  };
}

/**
 * The nftables `input` chain (lines of an `nft -f` table body) that drops
 * every packet arriving on `tunName` for the host itself, except the
 * `allow`ed services at the `gateways` addresses: `udp/53` becomes
 * `iifname "mvpn-relay" ip daddr 10.100.0.1 udp dport 53 accept`, `ping`
 * an ICMP / ICMPv6 echo-request rule. The input hook sees every locally
 * delivered packet, so this covers addresses of the host that the relay has
 * not read yet.
 */
export function hostInputChain(
  tunName: string,
  gateways: readonly Uint8Array[],
  allow: readonly HostService[],
): string[] {
  const iif = `iifname "${tunName}"`;
  const rules: string[] = [];
  for (const gateway of gateways) {
    const daddr = `${gateway.length === 4 ? "ip" : "ip6"} daddr ${formatIp(gateway)}`;
    for (const service of allow) {
      if (service.protocol === "ping") {
        const icmp = gateway.length === 4 ? "icmp" : "icmpv6";
        rules.push(`    ${iif} ${daddr} ${icmp} type echo-request accept`);
      } else {
        const ports = service.firstPort === service.lastPort
          ? `${service.firstPort}`
          : `${service.firstPort}-${service.lastPort}`;
        rules.push(`    ${iif} ${daddr} ${service.protocol} dport ${ports} accept`);
      }
    }
  }
  return [
    "  chain input {",
    "    type filter hook input priority filter; policy accept;",
    ...rules,
    `    ${iif} counter drop`,
    "  }",
  ];
}
