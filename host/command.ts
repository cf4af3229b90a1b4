/**
 * Runs a system command (`nft`, `sysctl`, `resolvectl`...) for the client's
 * and the relay's host changes: optionally inside a named network namespace
 * (`ip netns exec`, for tests), with text on stdin, and with errors that
 * say what to do about a missing permission or program.
 *
 * @module
 */

import { errorMessage } from "../shared/errors.ts";
import type { CommandState } from "../shared/host_requirements.ts";

/** Options of {@linkcode runCommand}. */
export interface RunCommandOptions {
  /** Written to the command's stdin, then closed. */
  readonly stdin?: string;
  /** Run inside this named network namespace (`ip netns exec NS ...`). */
  readonly netns?: string;
  /** Who needs the command, for error messages: "The kill switch", "--nat". */
  readonly neededBy: string;
  /** What to do without permission: "add --allow-run=nft". */
  readonly permissionHint: string;
}

/** Why {@linkcode runCommand} failed. */
export class CommandError extends Error {
  /** `"permission"`: Deno may not run it; `"missing"`: not installed; `"failed"`: a non-zero exit. */
  readonly reason: "permission" | "missing" | "failed";
  constructor(message: string, reason: "permission" | "missing" | "failed") {
    super(message);
    this.name = "CommandError";
    this.reason = reason;
  }
}

/**
 * Runs `command` with `args` and resolves with its stdout. Rejects with a
 * {@linkcode CommandError}: `nft -f - failed: <stderr>` on a non-zero exit,
 * `--nat needs permission to run nft: use ...` without permission,
 * `The kill switch needs nft: it is not installed` when it is missing.
 */
export async function runCommand(
  command: string,
  args: readonly string[],
  options: RunCommandOptions,
): Promise<string> {
  const program = options.netns ? "ip" : command;
  const fullArgs = options.netns ? ["netns", "exec", options.netns, command, ...args] : [...args];
  let child;
  try {
    child = new Deno.Command(program, {
      args: fullArgs,
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      throw new CommandError(
        `${options.neededBy} needs permission to run ${program}: ${options.permissionHint}`,
        "permission",
      );
    }
    if (error instanceof Deno.errors.NotFound) {
      throw new CommandError(
        `${options.neededBy} needs ${program}: it is not installed`,
        "missing",
      );
    }
    throw new CommandError(`Cannot run ${program}: ${errorMessage(error)}`, "failed");
  }
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  if (code !== 0) {
    throw new CommandError(
      `${command} ${args.join(" ")} failed: ${new TextDecoder().decode(stderr).trim()}`,
      "failed",
    );
  }
  return new TextDecoder().decode(stdout);
}

/**
 * Whether `command` (`nft`, `sysctl`) can be started, by running
 * `command --version`: `"found"` (whatever its exit code), `"missing"` when
 * it is not installed, `"not permitted"` when Deno may not run it.
 */
export async function commandState(command: string): Promise<CommandState> {
  try {
    await new Deno.Command(command, { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
    return "found";
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) return "not permitted";
    if (error instanceof Deno.errors.NotFound) return "missing";
    return "found"; // it exists but failed to start for another reason; installNat will say why
  }
}
