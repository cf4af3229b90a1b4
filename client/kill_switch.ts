/**
 * Installs and removes the client's kill switch, an nftables table built
 * by `shared/tunnel/kill_switch.ts`, by running `nft` (needs
 * `--allow-run=nft`; docs/decisions.md says why `nft` rather than
 * netlink). The table survives the client: after a crash or SIGKILL it
 * keeps blocking until the next start replaces it or the user removes it,
 * which is what a kill switch is for.
 *
 * `client/full_tunnel.ts` decides when (`--kill-switch`).
 *
 * @module
 */

import { CommandError, runCommand } from "../host/command.ts";

/** Where `nft` runs. */
export interface NftTarget {
  /** Run inside this named network namespace (`ip netns exec NS nft`; tests). */
  readonly netns?: string;
}

/** What `nft` printed when it failed. */
export class NftError extends Error {
  /** `"permission"`: Deno may not run nft; `"missing"`: not installed; `"failed"`: it refused. */
  readonly reason: "permission" | "missing" | "failed";
  /** @param message the full message, such as `nft -f - failed: Error: ...` */
  constructor(message: string, reason: "permission" | "missing" | "failed" = "failed") {
    super(message);
    this.name = "NftError";
    this.reason = reason;
  }
}

async function nft(args: string[], target: NftTarget, stdin?: string): Promise<string> {
  try {
    return await runCommand("nft", args, {
      stdin,
      netns: target.netns,
      neededBy: "The kill switch",
      permissionHint: "add --allow-run=nft, or --kill-switch off",
    });
  } catch (error) {
    throw error instanceof CommandError ? new NftError(error.message, error.reason) : error;
  }
}

/**
 * Installs `ruleset` (from `killSwitchRuleset()`) in one `nft -f`
 * transaction: a kill switch already installed, by this client or one
 * that was killed, is replaced without a moment of no protection.
 */
export async function installKillSwitch(ruleset: string, target: NftTarget = {}): Promise<void> {
  await nft(["-f", "-"], target, ruleset);
}

/** Whether table `table` (family inet) exists. */
export async function killSwitchInstalled(table: string, target: NftTarget = {}): Promise<boolean> {
  const listing = await nft(["list", "tables", "inet"], target);
  return listing.split("\n").some((line) => line.trim() === `table inet ${table}`);
}

/**
 * Deletes the kill switch's table; returns false when it was not
 * installed. Called when the user stops the client, never on a reconnect.
 */
export async function removeKillSwitch(table: string, target: NftTarget = {}): Promise<boolean> {
  if (!(await killSwitchInstalled(table, target))) return false;
  await nft(["delete", "table", "inet", table], target);
  return true;
}

/**
 * Packets the kill switch dropped so far, per chain (`counter drop` in
 * `output` and `forward`), for the status file and leak checks. Undefined
 * when the table is not installed.
 */
export async function killSwitchDrops(
  table: string,
  target: NftTarget = {},
): Promise<{ output: number; forward: number } | undefined> {
  if (!(await killSwitchInstalled(table, target))) return undefined;
  const listing = JSON.parse(await nft(["-j", "list", "table", "inet", table], target)) as {
    nftables: { rule?: { chain: string; expr: { counter?: { packets: number } }[] } }[];
  };
  const drops = { output: 0, forward: 0 };
  for (const item of listing.nftables) {
    const rule = item.rule;
    if (!rule || (rule.chain !== "output" && rule.chain !== "forward")) continue;
    for (const expression of rule.expr) {
      if (expression.counter) drops[rule.chain] += expression.counter.packets;
    }
  }
  return drops;
}
