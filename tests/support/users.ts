/**
 * Users for tests: entries of a users file with cheap scrypt hashes
 * (N = 2^10, about 10 ms a check, instead of the relay's default 2^14), and
 * their tokens, to write with `writeUsersFile` or to hand to a
 * `UserAuthenticator` directly.
 *
 * @module
 */
import { generateToken } from "../../shared/auth/credentials.ts";
import { DEFAULT_USER_MAX_SESSIONS } from "../../shared/auth/policy.ts";
import type { UserPolicy } from "../../shared/auth/policy.ts";
import { parseScryptHash } from "../../shared/auth/scrypt_hash.ts";
import type { UserEntry } from "../../shared/auth/users_file.ts";
import { hashSecret } from "../../relay/password_hash.ts";

/** The cost of test hashes. */
export const TEST_SCRYPT = { logN: 10, r: 8, p: 1 } as const;

/** One test user: a token unless `token: false`, a password if given, and its policy. */
export interface TestUserSpec {
  readonly name: string;
  readonly token?: boolean;
  readonly password?: string;
  readonly policy?: Partial<UserPolicy>;
}

async function hashed(secret: string) {
  const hashText = await hashSecret(secret, TEST_SCRYPT);
  const hash = parseScryptHash(hashText);
  if (typeof hash === "string") throw new Error(hash);
  return { hashText, hash };
}

/** The entries and each user's token (by name). */
export async function makeUsers(
  specs: readonly TestUserSpec[],
): Promise<{ entries: UserEntry[]; tokens: Record<string, string> }> {
  const entries: UserEntry[] = [];
  const tokens: Record<string, string> = {};
  for (const spec of specs) {
    let token: UserEntry["token"];
    if (spec.token !== false) {
      const made = generateToken();
      tokens[spec.name] = made.token;
      token = { id: made.id, ...(await hashed(made.secret)) };
    }
    entries.push({
      name: spec.name,
      ...(token ? { token } : {}),
      ...(spec.password !== undefined ? { password: await hashed(spec.password) } : {}),
      policy: { maxSessions: DEFAULT_USER_MAX_SESSIONS, ...spec.policy },
    });
  }
  return { entries, tokens };
}
