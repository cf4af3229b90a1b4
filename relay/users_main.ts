/**
 * `deno task users`: manages the relay's users file.
 *
 * ```
 * deno task users add alice [--route 198.18.1.0/24] [--max-sessions 2] [--rate 50mbit]
 * deno task users add bob --password-file bob.pw --no-token
 * deno task users set alice --rate 10mbit --new-token
 * deno task users remove alice
 * deno task users list
 * ```
 *
 * `add` and `set --new-token` print the new token once, on stdout; the
 * file keeps only its scrypt hash. The file is written atomically with
 * mode 0600 (`relay/users.ts`). A running relay rereads it on SIGHUP.
 *
 * @module
 */

import { generateToken } from "../shared/auth/credentials.ts";
import { DEFAULT_USER_MAX_SESSIONS } from "../shared/auth/policy.ts";
import type { UserPolicy } from "../shared/auth/policy.ts";
import { DEFAULT_SCRYPT, parseScryptHash } from "../shared/auth/scrypt_hash.ts";
import type { ScryptParams } from "../shared/auth/scrypt_hash.ts";
import {
  formatRate,
  formatUsersFile,
  isUserName,
  parseIpProtocol,
  parseRate,
  parseUsersFile,
} from "../shared/auth/users_file.ts";
import type { UserEntry } from "../shared/auth/users_file.ts";
import { errorMessage } from "../shared/errors.ts";
import { formatIp, formatPrefix, parseIp } from "../shared/ip/ip_address.ts";
import {
  cidr,
  integer,
  list,
  type OptionValues,
  parseProgramOptions,
  renderHelp,
  single,
  TEXT,
  toggle,
  type ValueType,
} from "../shared/options.ts";
import { hashSecret } from "./password_hash.ts";
import { writeUsersFile } from "./users.ts";

/** The subcommands. */
export const USERS_COMMANDS = ["add", "set", "remove", "list"] as const;
type Command = typeof USERS_COMMANDS[number];

const RATE: ValueType<number | "none"> = {
  kind: "rate like 50mbit, or none",
  parse(text, name, errors) {
    if (text === "none") return "none";
    const rate = parseRate(text);
    if (typeof rate === "number") return rate;
    errors.push(`${name}: ${rate}`);
    return undefined;
  },
};

const PROTOCOL: ValueType<number> = {
  kind: "IP protocol",
  parse(text, name, errors) {
    const protocol = parseIpProtocol(text);
    if (typeof protocol === "number") return protocol;
    errors.push(`${name}: ${protocol}`);
    return undefined;
  },
};

function address(version: 4 | 6): ValueType<Uint8Array | "none"> {
  return {
    kind: `IPv${version} address, or none`,
    parse(text, name, errors) {
      if (text === "none") return "none";
      const parsed = parseIp(text);
      if (parsed !== undefined && parsed.length === (version === 4 ? 4 : 16)) return parsed;
      errors.push(`${name} must be an IPv${version} address or none, not "${text}"`);
      return undefined;
    },
  };
}

/** The options of `deno task users`. */
export const USERS_OPTIONS = {
  users: single({
    flag: "users",
    valueName: "FILE",
    type: TEXT,
    default: "users.json",
    help: "the users file (created by the first `add`)",
  }),
  routes: list({
    flag: "route",
    valueName: "CIDR",
    type: cidr(),
    help: "a prefix the user may reach (repeatable; `set` replaces the list); default: every " +
      "route of the relay",
  }),
  allRoutes: toggle({ flag: "all-routes", help: "`set`: every route of the relay again" }),
  protocols: list({
    flag: "protocol",
    valueName: "P",
    type: PROTOCOL,
    help: "an IP protocol the user may use: 1..255, tcp, udp, icmp, icmpv6 (repeatable); " +
      "default any; ICMP always passes",
  }),
  allProtocols: toggle({ flag: "all-protocols", help: "`set`: any protocol again" }),
  maxSessions: single({
    flag: "max-sessions",
    valueName: "N",
    type: integer(1, 100_000),
    help: `sessions at once across the user's connections; default ${DEFAULT_USER_MAX_SESSIONS}`,
  }),
  rate: single({
    flag: "rate",
    valueName: "R",
    type: RATE,
    help: "bits per second in each direction over all the user's sessions (`50mbit`, " +
      "`500kbit`, `1gbit`); `none`: no limit (the default)",
  }),
  address4: single({
    flag: "address4",
    valueName: "A",
    type: address(4),
    help: "a fixed IPv4 address from the relay's pool, kept for this user; `none` to drop it",
  }),
  address6: single({
    flag: "address6",
    valueName: "A",
    type: address(6),
    help: "a fixed IPv6 address, likewise",
  }),
  passwordFile: single({
    flag: "password-file",
    valueName: "FILE",
    type: TEXT,
    help: "set a password for HTTP Basic, read from the first line of FILE",
  }),
  noPassword: toggle({ flag: "no-password", help: "`set`: remove the password" }),
  noToken: toggle({ flag: "no-token", help: "`add`: no token (the user logs in with Basic)" }),
  newToken: toggle({
    flag: "new-token",
    help: "`set`: a new token, printed once; the old one stops working at the relay's next " +
      "reload",
  }),
  scryptLn: single({
    flag: "scrypt-ln",
    valueName: "N",
    type: integer(10, 20),
    default: DEFAULT_SCRYPT.logN,
    help: "scrypt cost of new hashes: log2 of N (memory 128 * 8 * 2^N bytes)",
  }),
};

type UsersOptions = OptionValues<typeof USERS_OPTIONS>;

/** `deno task users --help`. */
export const USERS_HELP: string = renderHelp(USERS_OPTIONS, {
  title: "masque-vpn users: manages the relay's users file (--users of the relay).",
  usage: "Usage: deno task users add|set|remove|list [NAME] [options]",
  groups: [{ heading: "Options" }],
});

/** What a run did: lines for stdout (the token, the list) and for stderr. */
export interface UsersResult {
  readonly code: number;
  readonly out: readonly string[];
  readonly err: readonly string[];
}

async function readUsers(path: string): Promise<UserEntry[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw new Error(`Cannot read users file ${path}: ${errorMessage(error)}`);
  }
  const parsed = parseUsersFile(text);
  if (!parsed.ok) {
    throw new Error(`Cannot load users file ${path}:\n  ${parsed.errors.join("\n  ")}`);
  }
  return [...parsed.users];
}

async function readPassword(path: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new Error(`Cannot read --password-file ${path}: ${errorMessage(error)}`);
  }
  const password = text.split("\n")[0].replace(/\r$/, "");
  if (password.length === 0) throw new Error(`--password-file ${path} has an empty first line`);
  return password;
}

async function hashed(secret: string, params: ScryptParams) {
  const hashText = await hashSecret(secret, params);
  const hash = parseScryptHash(hashText);
  if (typeof hash === "string") throw new Error(`Cannot hash: ${hash}`);
  return { hashText, hash };
}

/** The policy `o` makes of `base` (the user's, for `set`; the defaults, for `add`). */
function applyPolicy(base: UserPolicy, o: Partial<UsersOptions>): UserPolicy {
  const policy: { -readonly [K in keyof UserPolicy]: UserPolicy[K] } = { ...base };
  if (o.allRoutes) delete policy.routes;
  if (o.routes) policy.routes = o.routes;
  if (o.allProtocols) delete policy.protocols;
  if (o.protocols) policy.protocols = [...new Set(o.protocols)].sort((a, b) => a - b);
  if (o.maxSessions !== undefined) policy.maxSessions = o.maxSessions;
  if (o.rate === "none") delete policy.rateBitsPerSecond;
  else if (o.rate !== undefined) policy.rateBitsPerSecond = o.rate;
  if (o.address4 === "none") delete policy.address4;
  else if (o.address4 !== undefined) policy.address4 = o.address4;
  if (o.address6 === "none") delete policy.address6;
  else if (o.address6 !== undefined) policy.address6 = o.address6;
  return policy;
}

function describe(user: UserEntry): string {
  const p = user.policy;
  const parts = [
    user.name,
    `credentials=${
      [user.token ? `token:${user.token.id}` : "", user.password ? "password" : ""]
        .filter(Boolean).join(",")
    }`,
    `routes=${p.routes ? p.routes.map(formatPrefix).join(",") || "none" : "all"}`,
    `protocols=${p.protocols ? p.protocols.join(",") : "any"}`,
    `maxSessions=${p.maxSessions}`,
    `rate=${p.rateBitsPerSecond === undefined ? "none" : formatRate(p.rateBitsPerSecond)}`,
  ];
  if (p.address4) parts.push(`address4=${formatIp(p.address4)}`);
  if (p.address6) parts.push(`address6=${formatIp(p.address6)}`);
  return parts.join(" ");
}

/**
 * Runs `deno task users` with `args`; returns the exit code and the lines
 * to print. Never prints a token but the one it creates.
 */
export async function runUsers(args: readonly string[]): Promise<UsersResult> {
  const fail = (...err: string[]): UsersResult => ({ code: 2, out: [], err });
  if (args.length === 0 || args[0] === "--help" || args[0] === "-h") {
    return { code: 0, out: [USERS_HELP], err: [] };
  }
  const command = args[0] as Command;
  if (!USERS_COMMANDS.includes(command)) {
    return fail(`Unknown command "${args[0]}": use ${USERS_COMMANDS.join(", ")}`);
  }
  const needsName = command !== "list";
  const name = needsName ? args[1] : undefined;
  if (needsName && (name === undefined || name.startsWith("-"))) {
    return fail(`users ${command} needs a user name: deno task users ${command} NAME`);
  }
  if (name !== undefined && !isUserName(name)) {
    return fail(
      `"${name}" is not a user name: 1..64 letters, digits, '.', '_', '-' or '@', not ` +
        "starting with '-'",
    );
  }
  const parsed = parseProgramOptions(
    { table: USERS_OPTIONS, build: (v) => v },
    args.slice(needsName ? 2 : 1),
    {},
  );
  if (parsed.ok === "help" || parsed.ok === "version") {
    return { code: 0, out: [USERS_HELP], err: [] };
  }
  // (Its table has no --print-config, so this does not happen.)
  if (parsed.ok === "print") return { code: 0, out: [parsed.text], err: [] };
  if (!parsed.ok) return fail(...parsed.errors);
  const o = parsed.config;
  const params: ScryptParams = { ...DEFAULT_SCRYPT, logN: o.scryptLn };
  try {
    const users = await readUsers(o.users);
    const index = users.findIndex((user) => user.name === name);
    const out: string[] = [];
    const err: string[] = [];
    switch (command) {
      case "list":
        if (users.length === 0) err.push(`no users in ${o.users}`);
        for (const user of users) out.push(describe(user));
        return { code: 0, out, err };
      case "remove":
        if (index < 0) return fail(`No user "${name}" in ${o.users}`);
        users.splice(index, 1);
        await writeUsersFile(o.users, users);
        err.push(`removed ${name}; a running relay ends its sessions on SIGHUP`);
        return { code: 0, out, err };
      case "add": {
        if (index >= 0) return fail(`User "${name}" exists in ${o.users}; use users set`);
        if (o.noToken && o.passwordFile === undefined) {
          return fail("--no-token needs --password-file: the user could never log in");
        }
        const user: UserEntry = {
          name: name!,
          policy: applyPolicy({ maxSessions: DEFAULT_USER_MAX_SESSIONS }, o),
        };
        let token: string | undefined;
        if (!o.noToken) {
          const made = generateToken();
          token = made.token;
          Object.assign(user, { token: { id: made.id, ...(await hashed(made.secret, params)) } });
        }
        if (o.passwordFile !== undefined) {
          Object.assign(user, {
            password: await hashed(await readPassword(o.passwordFile), params),
          });
        }
        users.push(user);
        checked(users);
        await writeUsersFile(o.users, users);
        err.push(`added ${describe(user)}`);
        if (token !== undefined) {
          err.push("its token, shown once (give it to the client with --token-file):");
          out.push(token);
        }
        return { code: 0, out, err };
      }
      case "set": {
        if (index < 0) return fail(`No user "${name}" in ${o.users}; use users add`);
        const old = users[index];
        const user: { -readonly [K in keyof UserEntry]: UserEntry[K] } = {
          ...old,
          policy: applyPolicy(old.policy, o),
        };
        let token: string | undefined;
        if (o.newToken) {
          const made = generateToken();
          token = made.token;
          user.token = { id: made.id, ...(await hashed(made.secret, params)) };
        }
        if (o.noPassword) delete user.password;
        if (o.passwordFile !== undefined) {
          user.password = await hashed(await readPassword(o.passwordFile), params);
        }
        users[index] = user;
        checked(users);
        await writeUsersFile(o.users, users);
        err.push(`set ${describe(user)}; a running relay applies it on SIGHUP`);
        if (token !== undefined) {
          err.push("its new token, shown once:");
          out.push(token);
        }
        return { code: 0, out, err };
      }
    }
  } catch (error) {
    return { code: 1, out: [], err: [errorMessage(error)] };
  }
}

/** Throws when `users` would not load (a fixed address twice, a user without credentials). */
function checked(users: readonly UserEntry[]): void {
  const result = parseUsersFile(formatUsersFile(users));
  if (!result.ok) throw new Error(`Cannot write users file:\n  ${result.errors.join("\n  ")}`);
}

if (import.meta.main) {
  const result = await runUsers(Deno.args);
  for (const line of result.err) console.error(line);
  for (const line of result.out) console.log(line);
  Deno.exit(result.code);
}
