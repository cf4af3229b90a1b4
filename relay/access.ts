/**
 * Who may use the relay, as `relay/main.ts` sets it up from the config:
 * the users file (`--users`) and its {@linkcode UserAuthenticator}, or
 * everyone (`--no-auth`, with a warning at every start), the decoy site
 * (`--decoy`), and the reload on SIGHUP of the users file and of the
 * certificate and key.
 *
 * @module
 */

import { errorMessage } from "../shared/errors.ts";
import type { UserEntry } from "../shared/auth/users_file.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import type { Logger } from "../shared/log.ts";
import type { H3RequestStream } from "../shared/h3/request_stream.ts";
import { loadDecoy } from "./decoy.ts";
import type { Relay } from "./relay.ts";
import { ALLOW_EVERYONE } from "./sessions.ts";
import type { Authenticator } from "./sessions.ts";
import { loadUsersFile, UserAuthenticator } from "./users.ts";

/** What the relay is given: `RelayOptions.authenticator`, `notFound`, `serveOther`. */
export interface Access {
  readonly authenticator: Authenticator;
  readonly notFound?: (request: H3RequestStream) => Promise<void>;
  readonly serveOther?: (request: H3RequestStream) => Promise<number>;
  /** The users, when the relay has a users file. */
  readonly users?: UserAuthenticator;
}

/** The fixed addresses of `users`, which the pools keep for them. */
export function fixedAddresses(users: readonly UserEntry[]): Uint8Array[] {
  return users.flatMap((user) =>
    [user.policy.address4, user.policy.address6].filter((a) => a !== undefined)
  );
}

/**
 * Loads the users file (or, with `noAuth`, lets everyone in and warns) and
 * the decoy site. Throws a clear error for a users file that does not load.
 */
export async function setUpAccess(
  config: { usersFile?: string; noAuth: boolean; decoyDir?: string },
  pools: readonly IpPrefix[],
  log: Logger,
): Promise<Access> {
  const decoy = config.decoyDir === undefined ? undefined : await loadDecoy(config.decoyDir);
  if (decoy) log.info("serving a decoy site", { dir: config.decoyDir });
  if (config.usersFile === undefined) {
    log.warn(
      "authentication is off (--no-auth): anyone who reaches this relay can use it and its " +
        "address pool",
    );
    return { authenticator: ALLOW_EVERYONE, ...decoy };
  }
  const entries = await loadUsersFile(config.usersFile, pools);
  const users = new UserAuthenticator(entries);
  log.info("users loaded", { file: config.usersFile, users: entries.length });
  return { authenticator: users, users, ...decoy };
}

/**
 * Rereads the users file and applies it to the relay's sessions
 * ({@linkcode Relay.applyPolicies}). A file that fails to load changes
 * nothing; the error is logged. Returns whether the new users are in force.
 */
export async function reloadUsers(
  relay: Relay,
  users: UserAuthenticator,
  file: string,
  pools: readonly IpPrefix[],
  log: Logger,
): Promise<boolean> {
  let entries: readonly UserEntry[];
  try {
    entries = await loadUsersFile(file, pools);
  } catch (error) {
    log.error("users file not reloaded; the previous users stay in force", {
      error: errorMessage(error),
    });
    return false;
  }
  users.setUsers(entries);
  const applied = relay.applyPolicies(
    (name) => users.policyOf(name),
    fixedAddresses(entries),
    (identity) => users.holds(identity),
  );
  log.info("users reloaded", {
    file,
    users: entries.length,
    sessionsEnded: applied.ended,
    sessionsRerouted: applied.rerouted,
  });
  return true;
}

/**
 * Calls `reload` on every SIGHUP, one reload at a time (a SIGHUP during a
 * reload runs one more after it). Returns a function that stops listening.
 */
export function onSighup(reload: () => Promise<void>, log: Logger): () => void {
  let running: Promise<void> | undefined;
  let again = false;
  const run = () => {
    if (running) {
      again = true;
      return;
    }
    running = reload().catch((error) => {
      log.error("reload failed", { error: errorMessage(error) });
    }).finally(() => {
      running = undefined;
      if (again) {
        again = false;
        run();
      }
    });
  };
  Deno.addSignalListener("SIGHUP", run);
  return () => Deno.removeSignalListener("SIGHUP", run);
}
