/**
 * One-shot user set-up for the compose project (its `init` service, after
 * the certificates): makes sure the relay's users file has user `--user`
 * and that the client's token file holds a token of that user.
 *
 * - no users file, or no such user: `users add` (a new token);
 * - the user exists but the token file is missing or empty (a volume was
 *   removed): `users set --new-token`;
 * - both there: nothing (a second `compose up` keeps the token).
 *
 * ```
 * deno run --allow-read=DIRS --allow-write=DIRS dev_user.ts \
 *   --users /var/lib/masque-vpn/relay-users/users.json \
 *   --token-file /var/lib/masque-vpn/client-token/token --user demo [-- users options]
 * ```
 *
 * Options after `--` go to `deno task users add` (`--route`, `--rate`,
 * ...). The token goes only to the token file (mode 0600), never to the
 * output.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { runUsers } from "../../relay/users_main.ts";

/** What {@linkcode setUpDevUser} did. */
export type DevUserOutcome = "added" | "new token" | "kept";

/** Writes `text` to `path` through a temporary file and a rename, mode 0600. */
async function writeSecret(path: string, text: string): Promise<void> {
  const slash = path.lastIndexOf("/");
  if (slash > 0) await Deno.mkdir(path.slice(0, slash), { recursive: true, mode: 0o700 });
  const temporary = `${path}.tmp`;
  await Deno.writeTextFile(temporary, text, { mode: 0o600 });
  await Deno.chmod(temporary, 0o600);
  await Deno.rename(temporary, path);
}

async function nonEmpty(path: string): Promise<boolean> {
  try {
    return (await Deno.readTextFile(path)).trim() !== "";
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Ensures `user` is in `usersFile` and its token in `tokenFile` (see the
 * module documentation). `addOptions` go to `users add`. Throws with the
 * users command's message when it fails.
 */
export async function setUpDevUser(options: {
  usersFile: string;
  tokenFile: string;
  user: string;
  addOptions?: readonly string[];
}): Promise<DevUserOutcome> {
  const slash = options.usersFile.lastIndexOf("/");
  if (slash > 0) {
    await Deno.mkdir(options.usersFile.slice(0, slash), { recursive: true, mode: 0o700 });
  }
  const list = await runUsers(["list", "--users", options.usersFile]);
  if (list.code !== 0) throw new Error(list.err.join("; "));
  const exists = list.out.some((line) => line.split(" ")[0] === options.user);
  if (exists && await nonEmpty(options.tokenFile)) return "kept";
  const result = exists
    ? await runUsers(["set", options.user, "--users", options.usersFile, "--new-token"])
    : await runUsers([
      ...["add", options.user, "--users", options.usersFile],
      ...(options.addOptions ?? []),
    ]);
  if (result.code !== 0 || result.out.length !== 1) {
    throw new Error(`users ${exists ? "set" : "add"} ${options.user}: ${result.err.join("; ")}`);
  }
  await writeSecret(options.tokenFile, `${result.out[0]}\n`);
  return exists ? "new token" : "added";
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      users: { type: "string" },
      "token-file": { type: "string" },
      user: { type: "string", default: "demo" },
    },
  });
  if (values.users === undefined || values["token-file"] === undefined) {
    console.error("dev_user: give --users FILE and --token-file FILE");
    Deno.exit(2);
  }
  try {
    const outcome = await setUpDevUser({
      usersFile: values.users,
      tokenFile: values["token-file"],
      user: values.user,
      addOptions: positionals,
    });
    console.log(
      `dev_user: ${
        outcome === "kept" ? "kept" : outcome === "added" ? "added" : "gave a new token to"
      } ` +
        `user ${values.user} (${values.users}); its token is in ${values["token-file"]}`,
    );
  } catch (error) {
    console.error(`dev_user: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
