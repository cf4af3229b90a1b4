/**
 * The relay's users: the users file on disk (read whole or not at all,
 * written atomically with mode 0600) and {@linkcode UserAuthenticator}, step
 * 1 of admission (`relay/sessions.ts`) for a relay with users.
 *
 * A request's credentials (`shared/auth/credentials.ts`) are checked against
 * the stored scrypt hash (`relay/password_hash.ts`): a bearer token by its
 * id, Basic by the user name. A name or token id that does not exist is
 * checked against a stand-in hash with the same cost, so the time of the
 * answer does not tell which exist. A check that passed is remembered for
 * the connection (per credential), so further sessions on it cost no hash,
 * until the user's stored hash changes. Missing or wrong credentials are
 * answered 404, as an unknown path (probe resistance).
 *
 * @module
 */

import { errorMessage } from "../shared/errors.ts";
import { parseCredentials } from "../shared/auth/credentials.ts";
import type { Credentials } from "../shared/auth/credentials.ts";
import type { UserPolicy } from "../shared/auth/policy.ts";
import { DEFAULT_SCRYPT } from "../shared/auth/scrypt_hash.ts";
import type { ScryptHash, ScryptParams } from "../shared/auth/scrypt_hash.ts";
import { checkUserAddresses, formatUsersFile, parseUsersFile } from "../shared/auth/users_file.ts";
import type { UserEntry } from "../shared/auth/users_file.ts";
import type { HeaderField } from "../shared/h3/qpack.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import { dummyHash, HashGate, verifySecret } from "./password_hash.ts";
import type {
  AdmissionRefusal,
  AdmissionRequest,
  Authenticator,
  AuthFailure,
  Identity,
} from "./sessions.ts";

/**
 * Reads and checks a users file: every problem of the file (each naming
 * the user and the field) and of the fixed addresses against `pools`, in
 * one error, or every user.
 */
export async function loadUsersFile(
  path: string,
  pools: readonly IpPrefix[] | undefined,
): Promise<readonly UserEntry[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new Error(`Cannot read users file ${path}: ${errorMessage(error)}`);
  }
  const parsed = parseUsersFile(text);
  const errors = parsed.ok
    ? (pools ? checkUserAddresses(parsed.users, pools) : [])
    : [...parsed.errors];
  if (errors.length > 0 || !parsed.ok) {
    throw new Error(`Cannot load users file ${path}:\n  ${errors.join("\n  ")}`);
  }
  return parsed.users;
}

/**
 * Writes `users` to `path` atomically: a temporary file beside it with mode
 * 0600, written and synced, then renamed over `path`; a reader sees the old
 * file or the new one, never a part. The new file keeps the owner and group
 * of the old one (the relay's user, when root runs `deno task users`).
 */
export async function writeUsersFile(path: string, users: readonly UserEntry[]): Promise<void> {
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : path.slice(0, slash) || "/";
  const name = slash < 0 ? path : path.slice(slash + 1);
  const suffix = Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16))
    .join("");
  const temp = `${dir}/.${name}.${suffix}.tmp`;
  const file = await Deno.open(temp, { write: true, createNew: true, mode: 0o600 });
  try {
    try {
      const bytes = new TextEncoder().encode(formatUsersFile(users));
      for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.chmod(temp, 0o600);
    await keepOwner(path, temp);
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw new Error(`Cannot write users file ${path}: ${errorMessage(error)}`);
  }
}

/**
 * Gives `temp` the owner and group of `path` when `path` exists and they
 * differ (root editing the file of a relay that runs as its own user), so
 * the relay can still read the file after the rename.
 */
async function keepOwner(path: string, temp: string): Promise<void> {
  const old = await Deno.stat(path).catch(() => undefined);
  if (old?.uid == null || old.gid == null) return;
  const now = await Deno.stat(temp);
  if (now.uid === old.uid && now.gid === old.gid) return;
  try {
    await Deno.chown(temp, old.uid, old.gid);
  } catch (error) {
    throw new Error(
      `cannot give the new file the owner of the old one (uid ${old.uid}, gid ${old.gid}), ` +
        `so the relay could no longer read it: ${errorMessage(error)}; run as root or as that user`,
    );
  }
}

/** Credentials a connection has proven, at most this many per connection. */
const VERIFIED_PER_CONNECTION = 4;

/** Options of {@linkcode UserAuthenticator}. */
export interface UserAuthenticatorOptions {
  /** Bounds the hash checks running and waiting (default: 2 at once, 64 waiting). */
  readonly gate?: HashGate;
}

/** The refusal for requests without valid credentials: what an unknown path gets. */
function unauthenticated(why: AuthFailure, counts = true): AdmissionRefusal {
  return { ok: false, status: 404, reason: `not authenticated: ${why}`, failure: { why, counts } };
}

/** Step 1 of admission for a relay with users; see the module docs. */
export class UserAuthenticator implements Authenticator {
  #users: readonly UserEntry[] = [];
  #byName = new Map<string, UserEntry>();
  #byToken = new Map<string, UserEntry>();
  #dummyToken: ScryptHash = dummyHash();
  #dummyPassword: ScryptHash = dummyHash();
  readonly #gate: HashGate;
  /** Connection -> credential -> the stored hash it was checked against, and whose. */
  readonly #verified = new WeakMap<object, Map<string, { user: string; hashText: string }>>();

  constructor(users: readonly UserEntry[], options: UserAuthenticatorOptions = {}) {
    this.#gate = options.gate ?? new HashGate();
    this.setUsers(users);
  }

  /** The users now. */
  get users(): readonly UserEntry[] {
    return this.#users;
  }

  /** The hash checks refused because too many waited, since start. */
  get overloaded(): number {
    return this.#gate.refused;
  }

  /**
   * Replaces the users (a reload). Checks remembered on connections stay
   * valid for users whose stored hash is unchanged.
   */
  setUsers(users: readonly UserEntry[]): void {
    this.#users = users;
    this.#byName = new Map(users.map((user) => [user.name, user]));
    this.#byToken = new Map(
      users.flatMap((user) => user.token ? [[user.token.id, user] as const] : []),
    );
    // The stand-ins cost what the stored hashes cost (the first of each kind).
    const params = (hash: ScryptHash | undefined): ScryptParams =>
      hash ? { logN: hash.logN, r: hash.r, p: hash.p } : DEFAULT_SCRYPT;
    this.#dummyToken = dummyHash(params(users.find((u) => u.token)?.token?.hash));
    this.#dummyPassword = dummyHash(params(users.find((u) => u.password)?.password?.hash));
  }

  /**
   * Whether `identity` still holds: its user exists and, when it names the
   * credential it logged in with, that token or password is still the
   * user's (not replaced by `deno task users set --new-token`).
   */
  holds(identity: Identity): boolean {
    const user = this.#byName.get(identity.user);
    if (user === undefined) return false;
    if (identity.credential === undefined) return true;
    return user.token?.hashText === identity.credential ||
      user.password?.hashText === identity.credential;
  }

  /** The policy of user `name`, or `undefined` when there is no such user. */
  policyOf(name: string): UserPolicy | undefined {
    return this.#byName.get(name)?.policy;
  }

  async authenticate(
    request: AdmissionRequest,
  ): Promise<{ readonly ok: true; readonly identity: Identity } | AdmissionRefusal> {
    const credentials = parseCredentials(request.headers);
    if (credentials.kind === "none") return unauthenticated("no credentials");
    if (credentials.kind === "malformed") return unauthenticated("malformed credentials");
    const key = credentialKey(credentials);
    const cache = this.#verified.get(request.connection);
    const cached = cache?.get(key);
    if (cached !== undefined) {
      const user = this.#byName.get(cached.user);
      if (user !== undefined && storedHash(user, credentials)?.hashText === cached.hashText) {
        return {
          ok: true,
          identity: { user: user.name, policy: user.policy, credential: cached.hashText },
        };
      }
      cache!.delete(key);
    }
    const user = credentials.kind === "bearer"
      ? this.#byToken.get(credentials.id)
      : this.#byName.get(credentials.user);
    const stored = user === undefined ? undefined : storedHash(user, credentials);
    const hash = stored?.hash ??
      (credentials.kind === "bearer" ? this.#dummyToken : this.#dummyPassword);
    const secret = credentials.kind === "bearer" ? credentials.secret : credentials.password;
    const check = this.#gate.run(() => verifySecret(secret, hash));
    if (check === undefined) return unauthenticated("overloaded", false);
    const ok = await check;
    if (user === undefined || stored === undefined) return unauthenticated("unknown user");
    if (!ok) return unauthenticated("wrong secret");
    let verified = this.#verified.get(request.connection);
    if (verified === undefined) {
      verified = new Map();
      this.#verified.set(request.connection, verified);
    }
    if (verified.size >= VERIFIED_PER_CONNECTION) verified.delete(verified.keys().next().value!);
    verified.set(key, { user: user.name, hashText: stored.hashText });
    return {
      ok: true,
      identity: { user: user.name, policy: user.policy, credential: stored.hashText },
    };
  }

  async imitate(headers: readonly HeaderField[]): Promise<void> {
    const credentials = parseCredentials(headers);
    if (credentials.kind !== "bearer" && credentials.kind !== "basic") return;
    const hash = credentials.kind === "bearer" ? this.#dummyToken : this.#dummyPassword;
    await this.#gate.run(() => verifySecret("", hash));
  }
}

/** The stored hash a credential is checked against: the token's, or the password's. */
function storedHash(
  user: UserEntry,
  credentials: Credentials,
): { hashText: string; hash: ScryptHash } | undefined {
  return credentials.kind === "bearer" ? user.token : user.password;
}

/** A connection's cache key for a credential (kept in memory only, never logged). */
function credentialKey(credentials: Credentials): string {
  if (credentials.kind === "bearer") return `b\0${credentials.id}\0${credentials.secret}`;
  if (credentials.kind === "basic") return `u\0${credentials.user}\0${credentials.password}`;
  return "";
}
