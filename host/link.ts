/**
 * Bringing a TUN's link up, as the client and the relay both do: MTU,
 * transmit queue, addresses, up. The netlink operations are passed in
 * (`ffi/netlink.ts`'s functions are them), so the client's tests use fakes.
 *
 * @module
 */

import type { IpPrefix } from "../shared/ip/ip_address.ts";
import { TUN_TX_QUEUE_PACKETS } from "../ffi/tun_linux.ts";

/** The rtnetlink link operations a bring-up needs. */
export interface LinkOps {
  setLinkMtu(name: string, mtu: number): void;
  setLinkTxQueueLength(name: string, packets: number): void;
  addAddress(name: string, prefix: IpPrefix): void;
  setLinkUp(name: string): void;
}

/**
 * Sets link `name`'s MTU (bytes) and transmit queue
 * ({@linkcode TUN_TX_QUEUE_PACKETS}), adds `addresses`, and sets it up.
 * Throws the netlink error of the step that failed.
 */
export function bringUpLink(
  ops: LinkOps,
  name: string,
  mtu: number,
  addresses: readonly IpPrefix[],
): void {
  ops.setLinkMtu(name, mtu);
  ops.setLinkTxQueueLength(name, TUN_TX_QUEUE_PACKETS);
  for (const prefix of addresses) ops.addAddress(name, prefix);
  ops.setLinkUp(name);
}

/**
 * Runs `open` (opening a TUN) and adds what to do to a permission error:
 * `Cannot create TUN mvpn0: Operation not permitted (EPERM)` becomes
 * `...: run as root or with CAP_NET_ADMIN (...)`.
 */
export function withPermissionHint<T>(open: () => T): T {
  try {
    return open();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (/\((EPERM|EACCES)\)/.test(message)) {
      throw new Error(
        `${message}: creating a TUN device needs root or CAP_NET_ADMIN ` +
          "(sudo, or AmbientCapabilities=CAP_NET_ADMIN in a systemd unit)",
      );
    }
    throw error;
  }
}
