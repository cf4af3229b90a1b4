/**
 * NAT for the relay's pools: an nftables table that masquerades packets
 * from the pools leaving through any interface but the TUN, and IP
 * forwarding switched on. The same table holds the input chain of
 * `relay/firewall.ts` (`hostInputChain`), so both go when the table goes.
 * Runs `nft` and `sysctl` (needs `--allow-run=nft,sysctl`).
 *
 * @module
 */

import { runCommand } from "../host/command.ts";
import { errorMessage } from "../shared/errors.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import { formatPrefix } from "../shared/ip/ip_address.ts";

/** An installed NAT table; `remove()` deletes it. */
export interface InstalledNat {
  readonly table: string;
  remove(): Promise<void>;
}

const FORWARDING_SYSCTLS = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"];

/**
 * The nftables ruleset for `pools` egressing anywhere but `tunName`, plus
 * `extraChains` (lines of further chains of the same table).
 */
export function natRuleset(
  table: string,
  pools: readonly IpPrefix[],
  tunName: string,
  extraChains: readonly string[] = [],
): string {
  const rules = pools.map((pool) =>
    `    ${pool.version === 4 ? "ip" : "ip6"} saddr ${
      formatPrefix(pool)
    } oifname != "${tunName}" masquerade`
  );
  return [
    `table inet ${table} {`,
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    ...rules,
    "  }",
    ...extraChains,
    "}",
    "",
  ].join("\n");
}

/** Runs nft or sysctl for --nat and returns its standard output. */
function run(command: string, args: string[], stdin?: string): Promise<string> {
  return runCommand(command, args, {
    stdin,
    neededBy: "--nat",
    permissionHint: "use `deno task relay:nat`",
  });
}

async function nft(args: string[], stdin?: string): Promise<void> {
  await run("nft", args, stdin);
}

/**
 * Turns on IPv4 and IPv6 forwarding with sysctl (Deno refuses writes under
 * /proc), writing only what is off: in a container /proc/sys is read-only and
 * the runtime sets them (compose.yaml's `sysctls`), and under systemd with
 * `ProtectKernelTunables=` /etc/sysctl.d does.
 */
async function enableForwarding(): Promise<void> {
  const off: string[] = [];
  for (const name of FORWARDING_SYSCTLS) {
    const value = await run("sysctl", ["-n", name]).catch(() => "");
    if (value.trim() !== "1") off.push(name);
  }
  if (off.length === 0) return;
  try {
    await run("sysctl", ["-q", "-w", ...off.map((name) => `${name}=1`)]);
  } catch (error) {
    throw new Error(
      `${errorMessage(error)} (set ${
        off.map((name) => `${name}=1`).join(" ")
      } before the relay starts: /etc/sysctl.d, or \`sysctls:\` in a container)`,
    );
  }
}

/**
 * Installs masquerade for `pools`, and `extraChains` in the same table, and
 * enables forwarding. The table is named after the TUN so two relays on one
 * host do not collide.
 */
export async function installNat(
  pools: readonly IpPrefix[],
  tunName: string,
  extraChains: readonly string[] = [],
): Promise<InstalledNat> {
  const table = `masque_vpn_${tunName.replace(/[^A-Za-z0-9_]/g, "_")}`;
  await enableForwarding();
  // A table left by a relay that was killed is replaced, not duplicated.
  await nft(["delete", "table", "inet", table]).catch(() => {});
  await nft(["-f", "-"], natRuleset(table, pools, tunName, extraChains));
  return {
    table,
    remove: () => nft(["delete", "table", "inet", table]),
  };
}
