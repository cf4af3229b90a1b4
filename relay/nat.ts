/**
 * NAT for the relay's pools: an nftables table that masquerades packets
 * from the pools leaving through any interface but the TUN, and IP
 * forwarding switched on. Runs `nft` (needs `--allow-run=nft`) and writes
 * `/proc/sys/net/...` (needs `--allow-write` on those files).
 *
 * @module
 */

import type { IpPrefix } from "../shared/packet/ip_address.ts";
import { formatPrefix } from "../shared/packet/ip_address.ts";

/** An installed NAT table; `remove()` deletes it. */
export interface InstalledNat {
  readonly table: string;
  remove(): Promise<void>;
}

const FORWARDING_FILES = [
  "/proc/sys/net/ipv4/ip_forward",
  "/proc/sys/net/ipv6/conf/all/forwarding",
];

/** The nftables ruleset for `pools` egressing anywhere but `tunName`. */
export function natRuleset(table: string, pools: readonly IpPrefix[], tunName: string): string {
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
    "}",
    "",
  ].join("\n");
}

async function nft(args: string[], stdin?: string): Promise<void> {
  let child;
  try {
    child = new Deno.Command("nft", {
      args,
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      throw new Error("--nat needs permission to run nft: use `deno task relay:nat`");
    }
    throw new Error(`Cannot run nft: ${error instanceof Error ? error.message : error}`);
  }
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const { code, stderr } = await child.output();
  if (code !== 0) {
    throw new Error(`nft ${args.join(" ")} failed: ${new TextDecoder().decode(stderr).trim()}`);
  }
}

/** Turns on IPv4 and IPv6 forwarding; returns what was on before. */
async function enableForwarding(): Promise<void> {
  for (const file of FORWARDING_FILES) {
    try {
      if ((await Deno.readTextFile(file)).trim() !== "1") await Deno.writeTextFile(file, "1\n");
    } catch (error) {
      throw new Error(
        `Cannot enable forwarding in ${file}: ${error instanceof Error ? error.message : error}`,
      );
    }
  }
}

/**
 * Installs masquerade for `pools` and enables forwarding. The table is
 * named after the TUN so two relays on one host do not collide.
 */
export async function installNat(
  pools: readonly IpPrefix[],
  tunName: string,
): Promise<InstalledNat> {
  const table = `masque_vpn_${tunName.replace(/[^A-Za-z0-9_]/g, "_")}`;
  await enableForwarding();
  // A table left by a relay that was killed is replaced, not duplicated.
  await nft(["delete", "table", "inet", table]).catch(() => {});
  await nft(["-f", "-"], natRuleset(table, pools, tunName));
  return {
    table,
    remove: () => nft(["delete", "table", "inet", table]),
  };
}
